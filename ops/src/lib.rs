//! `ops`: a Rust framework for Juju sidecar (Kubernetes) charms, modelled on
//! the Python `ops` package, with a state-in/state-out test harness.
//!
//! # Writing a charm
//!
//! A charm is a binary that Juju runs as `dispatch` for every event. It
//! implements [`Charm`]: one handler taking the [`Event`] and the [`Model`].
//! Match the event without a wildcard arm, so that a new kind of event is a
//! compile error, and make the work idempotent: Juju promises little about
//! ordering, so most charms run one "reconcile" for most events.
//!
//! ```no_run
//! use ops::pebble::{Layer, Service};
//! use ops::{Charm, Event, Model, Port, Status};
//!
//! #[derive(Default)]
//! struct MyCharm;
//!
//! impl Charm for MyCharm {
//!     fn handle(&mut self, event: &Event, model: &mut Model) -> anyhow::Result<()> {
//!         match event {
//!             Event::Action(a) if a.name == "ping" => {
//!                 let results = serde_json::json!({"reply": "pong"});
//!                 model.set_action_results(results.as_object().unwrap())?;
//!                 Ok(())
//!             }
//!             Event::Action(_) => Ok(model.fail_action("unknown action")?),
//!             Event::Stop | Event::Remove | Event::CollectMetrics => Ok(()),
//!             Event::Unknown(_) => Ok(()),
//!             Event::Install
//!             | Event::Start
//!             | Event::ConfigChanged
//!             | Event::UpdateStatus
//!             | Event::UpgradeCharm
//!             | Event::LeaderElected
//!             | Event::LeaderSettingsChanged
//!             | Event::RelationCreated(_)
//!             | Event::RelationJoined(_)
//!             | Event::RelationChanged(_)
//!             | Event::RelationDeparted(_)
//!             | Event::RelationBroken(_)
//!             | Event::PebbleReady(_)
//!             | Event::PebbleCustomNotice(_)
//!             | Event::PebbleCheckFailed(_)
//!             | Event::PebbleCheckRecovered(_)
//!             | Event::StorageAttached(_)
//!             | Event::StorageDetaching(_)
//!             | Event::SecretChanged(_)
//!             | Event::SecretRotate(_)
//!             | Event::SecretExpired(_)
//!             | Event::SecretRemove(_) => reconcile(model),
//!         }
//!     }
//! }
//!
//! fn reconcile(model: &mut Model) -> anyhow::Result<()> {
//!     let port = model.config()?.int("port")?.unwrap_or(8080);
//!     let app = model.container("app")?;
//!     if !app.can_connect() {
//!         // Pebble is not up yet: try again at the next event.
//!         model.set_unit_status(Status::waiting("waiting for Pebble"))?;
//!         model.defer()?;
//!         return Ok(());
//!     }
//!     let mut layer = Layer::default();
//!     layer.services.insert("app".into(), Service::new(format!("/bin/app --port {port}")));
//!     app.add_layer("my-charm", &layer, true)?;
//!     app.replan()?;
//!     model.set_ports(&[Port::tcp(port as u16)])?;
//!     model.set_unit_status(Status::active(""))?;
//!     Ok(())
//! }
//!
//! fn main() {
//!     ops::main(MyCharm)
//! }
//! ```
//!
//! [`main`] reads the environment into a [`JujuContext`], parses the
//! [`Event`] (unknown events exit 0 without touching anything), loads stored
//! state and the deferred queue from Juju (one `state-get`), re-runs deferred
//! events in order, runs the new event, and saves state (one `state-set`,
//! only if it changed). A handler error exits 1 after logging it with
//! `juju-log`; Juju then discards every buffered change of the hook and
//! retries.
//!
//! # The model
//!
//! [`Model`] is all a handler needs, in domain terms:
//!
//! - identity: [`Model::unit_name`], [`Model::app_name`], [`Model::context`];
//! - [`Model::is_leader`] and [`Model::config`] (typed getters, `secret`
//!   options as URIs, or [`Config::deserialize`] into your own struct);
//! - relations: [`Model::relations`], [`Model::relation`],
//!   [`Model::relation_units`], [`Model::relation_data`] with a [`Bag`],
//!   [`Model::set_relation_data`] (an empty value deletes a key; the
//!   application bag needs leadership);
//! - status: [`Model::set_unit_status`], [`Model::set_app_status`] with a
//!   [`Status`]; [`Model::set_workload_version`];
//! - ports: [`Model::open_port`], [`Model::close_port`], [`Model::set_ports`];
//! - secrets, consumer side: [`Model::get_secret`] (binds a label when given
//!   with the URI), [`Model::peek_secret`], [`Model::refresh_secret`]; owner
//!   side: [`Model::add_secret`], [`Model::set_secret`],
//!   [`Model::grant_secret`], [`Model::revoke_secret`],
//!   [`Model::remove_secret`], [`Model::secret_info`]. Secret values travel
//!   in private files, never on a command line, and [`SecretContent`]'s
//!   `Debug` shows keys only;
//! - actions: [`Model::action_params`], [`Model::action_param`],
//!   [`Model::set_action_results`] (nested objects become dotted keys),
//!   [`Model::fail_action`] (the hook still commits), [`Model::action_log`];
//! - [`Model::log`] (`juju-log`), [`Model::defer`], stored values with
//!   [`Model::stored`] / [`Model::set_stored`];
//! - Pebble: [`Model::container`] gives a blocking [`pebble::Client`];
//!   [`Model::runtime`] is the current-thread tokio runtime behind it, for
//!   your own async clients.
//!
//! Reads that cannot change during a hook are cached: leadership, config,
//! relation ids, units and bags (updated by your own writes). Failures are
//! [`ModelError`]s, mapped from hook command errors as ops maps them:
//! `relation not found` → [`ModelError::RelationNotFound`], `not found` from
//! a `secret-*` command → [`ModelError::SecretNotFound`], anything else →
//! [`ModelError::HookCommand`].
//!
//! # Layers
//!
//! - [`context`]: [`JujuContext`], the hook environment, read once.
//! - [`event`]: the closed [`Event`] enum, parsed from `JUJU_DISPATCH_PATH`.
//! - [`hookcmds`]: one function per Juju hook command behind the
//!   [`hookcmds::Backend`] seam (real processes, or a fake Juju in tests).
//! - [`model`]: the [`Model`] facade.
//! - [`storage`]: stored state and deferred events under unit-state key
//!   `ops.v1`, which survives pod churn (the charm directory does not).
//! - [`pebble`]: the Pebble client.
//! - `testing` (feature `testing`): the state-in/state-out harness
//!   (`testing::Context::run`), the fake Juju, the Pebble double and the
//!   binary-level fakes (`ops-fake-juju`, `ops-pebble-double`).
//!
//! # Testing a charm
//!
//! With the `testing` feature, describe the world as a `testing::State`, run
//! one event with `testing::Context::run`, and assert on the returned
//! `testing::Output` (new state, status history, log lines, action results,
//! every hook command call). The harness uses the same [`dispatch`] path as
//! the binary, a fake Juju that answers hook commands exactly as juju.md
//! describes, and a Pebble double on a real Unix socket per container; see
//! the `testing` module and `examples/demo-charm` for a complete charm and
//! its tests.
#![warn(missing_docs)]

pub mod context;
mod dispatch;
pub mod event;
pub mod hookcmds;
pub mod model;
pub mod pebble;
pub mod storage;
#[cfg(feature = "testing")]
pub mod testing;

pub use context::JujuContext;
pub use dispatch::{dispatch, main, Charm, DispatchError, DispatchOutcome};
pub use event::Event;
pub use hookcmds::{Port, RelationId, SecretContent};
pub use model::{Bag, Config, Model, ModelError, Read, Status};
