//! The Livepatch Server K8s charm.
//!
//! Juju runs the `dispatch` binary once per event; every hook goes through the
//! same reconcile: check the configuration once ([`config`]), read what the
//! model and the workload container hold into a [`desired::Snapshot`], compute
//! the whole target state with the pure [`desired::desired`], and apply only
//! the difference. Actions ([`migrate`], [`contracts`], the admin API) are
//! separate entry points that share the same pieces.

pub mod actions;
pub mod admin;
pub mod ca;
pub mod charm;
pub mod config;
pub mod contracts;
pub mod desired;
pub mod dsn;
pub mod gather;
pub mod layer;
pub mod meta;
pub mod migrate;
pub mod netpol;
pub mod options;
pub mod reconcile;
pub mod redact;
pub mod relations;
pub mod schema;
pub mod status;
pub mod users;
