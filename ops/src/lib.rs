//! A Rust framework for Juju sidecar charms, modelled on the Python `ops` package.
#![warn(missing_docs)]

pub mod context;
mod dispatch;
pub mod event;
pub mod hookcmds;
pub mod model;
pub mod pebble;
pub mod storage;

pub use context::JujuContext;
pub use dispatch::{dispatch, main, Charm, DispatchError, DispatchOutcome};
pub use event::Event;
pub use hookcmds::{Port, RelationId, SecretContent};
pub use model::{Bag, Config, Model, ModelError, Status};
#[cfg(feature = "testing")]
pub mod testing;
