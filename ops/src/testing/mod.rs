//! State-in, state-out testing for charms (feature `testing`).
//!
//! A test describes the world as a [`State`], runs one event through the
//! charm with [`Context::run`], and asserts on the [`Output`]: the new
//! state plus what Juju saw on its side channels (statuses set, log lines,
//! action results, every hook command call).
//!
//! ```
//! use ops::testing::{Context, State};
//! use ops::{Charm, Event, Model, Status};
//!
//! struct Hello;
//! impl Charm for Hello {
//!     fn handle(&mut self, event: &Event, model: &mut Model) -> anyhow::Result<()> {
//!         if let Event::ConfigChanged = event {
//!             let name = model.config()?.string("name")?.unwrap_or_default();
//!             model.set_unit_status(Status::active(format!("hello {name}")))?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let ctx = Context::new(
//!     "name: hello\n",
//!     "options:\n  name: {type: string, default: world}\n",
//!     "",
//! )
//! .unwrap();
//! let out = ctx.run(Hello, Event::ConfigChanged, &State::default()).unwrap();
//! assert_eq!(out.state.unit_status, Status::active("hello world"));
//! ```
//!
//! What runs is what runs in production: the harness builds the hook
//! environment Juju would, calls [`crate::dispatch`] (the function the
//! binary's `main` calls), and the charm's hook commands reach a fake Juju
//! ([`juju::Session`]) that answers with Juju's own output and errors. Each
//! reachable container gets a [`pebble::PebbleDouble`] on a real Unix socket
//! under a temporary `OPS_CONTAINERS_DIR`, so the real Pebble client runs
//! too. Before running, [`consistency::check`] rejects states Juju could not
//! produce. When the charm fails, buffered changes are discarded as Juju
//! discards them (juju.md §1.5) and the run returns [`RunError::Charm`]
//! carrying the output.
//!
//! The same engine backs the binary-level fakes ([`fakes`]): one
//! executable answering as every hook command, so a compiled charm can be
//! run exactly as Juju runs it.

pub mod consistency;
pub mod fakes;
pub mod juju;
pub mod meta;
pub mod pebble;
pub mod state;

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use serde_json::Value;

pub use juju::{HookCall, LogLine, Record, Session, UnitId};
pub use meta::{Meta, MetaError};
pub use state::{
    Container, ExecHandler, ExecRecord, FsEntry, LabelledLayer, ModelInfo, Relation, Secret, State,
    StorageInstance,
};

use crate::context::{JujuContext, CONTAINERS_DIR_ENV};
use crate::dispatch::{dispatch, Charm};
use crate::event::{ActionEvent, Event};
use crate::hookcmds::{Backend, CommandOutput};
use crate::model::Status;

/// A charm made of a closure, for tests of one behaviour:
/// `FnCharm(|event, model| { …; Ok(()) })`.
pub struct FnCharm<F>(pub F);

impl<F> Charm for FnCharm<F>
where
    F: FnMut(&Event, &mut crate::Model) -> anyhow::Result<()>,
{
    fn handle(&mut self, event: &Event, model: &mut crate::Model) -> anyhow::Result<()> {
        (self.0)(event, model)
    }
}

/// The fake Juju as a [`Backend`]: hook commands answered in process.
#[derive(Clone)]
pub struct FakeJuju(pub Rc<RefCell<Session>>);

impl Backend for FakeJuju {
    fn run(
        &self,
        command: &str,
        args: &[String],
        stdin: Option<&[u8]>,
    ) -> std::io::Result<CommandOutput> {
        self.0
            .borrow_mut()
            .run(command, args, stdin)
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{command}: command not found"),
                )
            })
    }
}

/// A charm's declarations and identity, ready to run events.
#[derive(Clone, Debug)]
pub struct Context {
    meta: Meta,
    unit: UnitId,
    juju_version: String,
}

/// What a run produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    /// The state after the hook (before it, plus immediate effects, if the
    /// charm failed).
    pub state: State,
    /// Every unit status set, in order.
    pub unit_status_history: Vec<Status>,
    /// Every application status set, in order.
    pub app_status_history: Vec<Status>,
    /// Every workload version set.
    pub workload_version_history: Vec<String>,
    /// `juju-log` lines.
    pub juju_log: Vec<LogLine>,
    /// Action results (dotted keys).
    pub action_results: std::collections::BTreeMap<String, String>,
    /// The `action-fail` message, if the action failed.
    pub action_failure: Option<String>,
    /// `action-log` messages.
    pub action_logs: Vec<String>,
    /// Every hook command the charm ran.
    pub hook_calls: Vec<HookCall>,
    /// Whether the dispatch ignored the event as unknown.
    pub ignored: bool,
}

impl Output {
    /// The names of the hook commands run, in order.
    pub fn hook_command_names(&self) -> Vec<&str> {
        self.hook_calls.iter().map(|c| c.command.as_str()).collect()
    }

    /// How many times `command` ran.
    pub fn count_calls(&self, command: &str) -> usize {
        self.hook_calls
            .iter()
            .filter(|c| c.command == command)
            .count()
    }
}

/// A run could not happen, or the charm failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The state or event is impossible for this charm.
    #[error("inconsistent test input:\n- {}", .0.join("\n- "))]
    Inconsistent(Vec<String>),
    /// The harness could not set up (temporary directories, sockets).
    #[error("cannot set up the run: {0}")]
    Setup(String),
    /// The charm's dispatch failed: the hook would be in error.
    #[error("the charm failed: {message}")]
    Charm {
        /// The error, as the binary would log it.
        message: String,
        /// What happened anyway (buffered changes discarded).
        output: Box<Output>,
    },
}

impl Context {
    /// A context from the text of `metadata.yaml`, `config.yaml` and
    /// `actions.yaml` (either may be empty). The unit is `<charm name>/0`.
    pub fn new(metadata: &str, config: &str, actions: &str) -> Result<Context, MetaError> {
        Ok(Context::from_meta(Meta::parse(metadata, config, actions)?))
    }

    /// A context from a charm directory's declaration files.
    pub fn from_charm_dir(dir: &Path) -> Result<Context, MetaError> {
        Ok(Context::from_meta(Meta::from_dir(dir)?))
    }

    /// A context from parsed declarations.
    pub fn from_meta(meta: Meta) -> Context {
        let unit = UnitId {
            app: meta.name.clone(),
            number: 0,
        };
        Context {
            meta,
            unit,
            juju_version: "3.6.4".into(),
        }
    }

    /// Runs as unit `app/number` instead.
    pub fn with_unit(mut self, app: &str, number: u32) -> Context {
        self.unit = UnitId {
            app: app.into(),
            number,
        };
        self
    }

    /// Reports `version` as `JUJU_VERSION`.
    pub fn with_juju_version(mut self, version: &str) -> Context {
        self.juju_version = version.into();
        self
    }

    /// The declarations.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// This unit.
    pub fn unit(&self) -> &UnitId {
        &self.unit
    }

    /// Runs `event` through a fresh `charm` against `state`.
    pub fn run<C: Charm>(&self, charm: C, event: Event, state: &State) -> Result<Output, RunError> {
        self.run_with_params(charm, event, None, state)
    }

    /// Runs action `name` with `params` (a JSON object).
    pub fn run_action<C: Charm>(
        &self,
        charm: C,
        name: &str,
        params: Value,
        state: &State,
    ) -> Result<Output, RunError> {
        let params = match params {
            Value::Object(m) => m,
            Value::Null => serde_json::Map::new(),
            other => {
                return Err(RunError::Inconsistent(vec![format!(
                    "action parameters must be an object, got {other}"
                )]))
            }
        };
        let event = Event::Action(ActionEvent {
            name: name.into(),
            uuid: "1".into(),
        });
        self.run_with_params(charm, event, Some(params), state)
    }

    fn run_with_params<C: Charm>(
        &self,
        mut charm: C,
        event: Event,
        params: Option<serde_json::Map<String, Value>>,
        state: &State,
    ) -> Result<Output, RunError> {
        consistency::check(&self.meta, &self.unit.app, state, &event, params.as_ref())
            .map_err(RunError::Inconsistent)?;
        let setup = |e: std::io::Error| RunError::Setup(e.to_string());
        let dir = tempfile::Builder::new()
            .prefix("ops-harness-")
            .tempdir()
            .map_err(setup)?;
        let charm_dir = dir.path().join("charm");
        let containers_dir = dir.path().join("containers");
        std::fs::create_dir_all(&charm_dir).map_err(setup)?;
        std::fs::create_dir_all(&containers_dir).map_err(setup)?;

        // The doubles run on their own runtime thread: the charm blocks on
        // its own runtime while they answer.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(setup)?;
        let mut doubles = Vec::new();
        for c in state.containers.iter().filter(|c| c.can_connect) {
            let socket = containers_dir.join(&c.name).join("pebble.socket");
            let d = rt
                .block_on(pebble::PebbleDouble::start(&socket, c))
                .map_err(|e| RunError::Setup(e.to_string()))?;
            doubles.push(d);
        }

        let session = Session::new(
            self.meta.clone(),
            self.unit.clone(),
            &self.juju_version,
            event,
            params,
            state.clone(),
        );
        let mut env = session.env();
        env.push(("JUJU_CHARM_DIR".into(), charm_dir.display().to_string()));
        env.push((
            CONTAINERS_DIR_ENV.into(),
            containers_dir.display().to_string(),
        ));
        let session = Rc::new(RefCell::new(session));
        let ctx = JujuContext::from_vars(env).map_err(|e| RunError::Setup(e.to_string()))?;
        let result = dispatch(&mut charm, ctx, Box::new(FakeJuju(session.clone())));

        let snapshots: Vec<Container> =
            doubles.iter().map(pebble::PebbleDouble::snapshot).collect();
        rt.block_on(async {
            for d in doubles {
                d.stop().await;
            }
        });
        let session = Rc::try_unwrap(session)
            .map_err(|_| RunError::Setup("the charm kept the hook command backend alive".into()))?
            .into_inner();
        let (mut new_state, record) = session.finish(result.is_ok());
        // Pebble is outside Juju's transaction: what the charm did to the
        // workload stays, whatever the exit status.
        for snap in snapshots {
            if let Some(c) = new_state
                .containers
                .iter_mut()
                .find(|c| c.name == snap.name)
            {
                *c = snap;
            }
        }
        let output = Output {
            state: new_state,
            unit_status_history: record.unit_status_history,
            app_status_history: record.app_status_history,
            workload_version_history: record.workload_version_history,
            juju_log: record.juju_log,
            action_results: record.action_results,
            action_failure: record.action_failure,
            action_logs: record.action_logs,
            hook_calls: record.calls,
            ignored: result.as_ref().is_ok_and(|o| o.ignored),
        };
        match result {
            Ok(_) => Ok(output),
            Err(e) => Err(RunError::Charm {
                message: e.to_string(),
                output: Box::new(output),
            }),
        }
    }
}
