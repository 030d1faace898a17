//! A Rust framework for Juju sidecar charms, modelled on the Python `ops`
//! package. Work in progress: see issue 2.
#![warn(missing_docs)]
