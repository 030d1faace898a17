//! The [`Model`]: everything a charm handler reads and changes, in domain
//! terms.
//!
//! Charm code talks only to the model; it never sees argv or stderr. The
//! model turns hook command failures into [`ModelError`]s the way ops does,
//! checks leadership before the writes that need it (so a non-leader gets a
//! clear error instead of Juju's terse one), and caches what cannot change
//! during a hook: leadership, config, relation membership and bags (updated
//! by this hook's own writes), action parameters. That keeps a no-op hook to
//! a handful of hook command calls.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::runtime::Runtime;

use crate::context::JujuContext;
use crate::event::Event;
use crate::hookcmds::{
    self, AppStatusReport, Backend, Call, CloudSpec, CommandOutput, GoalState, HookCmdError,
    HookCmdErrorKind, LogLevel, Network, Port, RelationId, RelationModel, RevokeScope,
    SecretContent, SecretInfo, SecretMeta, SecretOwner, SecretRead, StatusName, StatusReport,
    StorageInfo,
};
use crate::pebble;
use crate::storage::{Storage, StorageError};

/// A model operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The relation does not exist (any more): Juju said `relation not found`.
    #[error("relation not found: {0}")]
    RelationNotFound(#[source] HookCmdError),
    /// The secret does not exist or is not visible to this unit.
    #[error("secret not found: {0}")]
    SecretNotFound(#[source] HookCmdError),
    /// Any other hook command failure (ops' `ModelError`).
    #[error(transparent)]
    HookCommand(HookCmdError),
    /// The operation needs leadership and this unit is not the leader.
    #[error("cannot {0}: this unit is not the leader")]
    NotLeader(String),
    /// A config option does not have the type asked for.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Stored state could not be read or written.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A Pebble operation failed.
    #[error(transparent)]
    Pebble(#[from] pebble::Error),
    /// An operation that is only valid in some events was used elsewhere.
    #[error("{0}")]
    InvalidUse(String),
}

impl From<HookCmdError> for ModelError {
    fn from(e: HookCmdError) -> ModelError {
        match e.kind() {
            HookCmdErrorKind::RelationNotFound => ModelError::RelationNotFound(e),
            HookCmdErrorKind::SecretNotFound => ModelError::SecretNotFound(e),
            HookCmdErrorKind::Other => ModelError::HookCommand(e),
        }
    }
}

/// A config option is missing or has another type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config option {key:?}: {message}")]
pub struct ConfigError {
    /// The option name.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// The charm's configuration, as `config-get` reports it: every option with
/// a value or a default. `secret` options are secret URIs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    values: BTreeMap<String, Value>,
}

impl Config {
    /// A config from explicit values (tests, or after your own parsing).
    pub fn from_values(values: BTreeMap<String, Value>) -> Config {
        Config { values }
    }

    /// Every option that has a value.
    pub fn values(&self) -> &BTreeMap<String, Value> {
        &self.values
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key).filter(|v| !v.is_null())
    }

    fn typed<T>(
        &self,
        key: &str,
        want: &str,
        f: impl Fn(&Value) -> Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => f(v).map(Some).ok_or_else(|| ConfigError {
                key: key.to_owned(),
                message: format!("expected {want}, got {v}"),
            }),
        }
    }

    /// A `string` option.
    pub fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        self.typed(key, "a string", |v| v.as_str().map(str::to_owned))
    }

    /// An `int` option.
    pub fn int(&self, key: &str) -> Result<Option<i64>, ConfigError> {
        self.typed(key, "an integer", Value::as_i64)
    }

    /// A `float` option (integers are accepted).
    pub fn float(&self, key: &str) -> Result<Option<f64>, ConfigError> {
        self.typed(key, "a number", Value::as_f64)
    }

    /// A `boolean` option.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        self.typed(key, "a boolean", Value::as_bool)
    }

    /// A `secret` option: the URI of a (user) secret, or `None` when unset.
    pub fn secret(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.string(key)? {
            None => Ok(None),
            Some(s) if s.is_empty() => Ok(None),
            Some(s) if s.starts_with("secret:") => Ok(Some(s)),
            // The value is not echoed: an operator may have pasted the
            // secret itself into the option by mistake.
            Some(_) => Err(ConfigError {
                key: key.to_owned(),
                message: "expected a secret URI (secret:…); run `juju add-secret` and set the option to the URI it prints".into(),
            }),
        }
    }

    /// Deserialises the whole configuration into a typed struct (option
    /// names as they are, so use `#[serde(rename = "log-level")]` or
    /// `rename_all = "kebab-case"`).
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let map: serde_json::Map<String, Value> = self
            .values
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        serde_json::from_value(Value::Object(map)).map_err(|e| ConfigError {
            key: "*".into(),
            message: e.to_string(),
        })
    }
}

/// A status to set: a name and a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Status {
    /// The status name.
    pub name: StatusName,
    /// The message shown by `juju status`.
    pub message: String,
}

impl Status {
    /// `active` with a message (often empty).
    pub fn active(message: impl Into<String>) -> Status {
        Status {
            name: StatusName::Active,
            message: message.into(),
        }
    }
    /// `blocked`: a human must act; the message says how.
    pub fn blocked(message: impl Into<String>) -> Status {
        Status {
            name: StatusName::Blocked,
            message: message.into(),
        }
    }
    /// `waiting`: for something outside this unit.
    pub fn waiting(message: impl Into<String>) -> Status {
        Status {
            name: StatusName::Waiting,
            message: message.into(),
        }
    }
    /// `maintenance`: busy with something that will finish on its own.
    pub fn maintenance(message: impl Into<String>) -> Status {
        Status {
            name: StatusName::Maintenance,
            message: message.into(),
        }
    }
    /// `unknown` with no message: what Juju shows before anything is set.
    pub fn unknown() -> Status {
        Status {
            name: StatusName::Unknown,
            message: String::new(),
        }
    }
}

/// Which databag of a relation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Bag {
    /// This unit's bag.
    LocalUnit,
    /// This application's bag (reading needs leadership, except on peer
    /// relations; writing always needs it).
    LocalApp,
    /// The remote application's bag.
    RemoteApp,
    /// A remote (or peer) unit's bag, by unit name.
    Unit(String),
}

/// A read a handler is about to make, fetched ahead with
/// [`Model::prefetch`] (or [`crate::Charm::prefetch`] at the start of a
/// dispatch) together with other reads, in one batch of concurrent hook
/// commands. The answers wait until the handler asks for them through the
/// ordinary methods, which then cost no process; errors surface there too,
/// exactly as without prefetching. Only reads: nothing here changes the
/// model, so fetching one the handler ends up not needing is harmless.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Read {
    /// [`Model::config`].
    Config,
    /// [`Model::is_leader`].
    Leader,
    /// [`Model::goal_state`].
    GoalState,
    /// [`Model::relations`] of an endpoint.
    RelationIds(String),
    /// [`Model::relation_data`]. A remote application's bag is fetched only
    /// when the application is already known (no extra command to learn it).
    RelationData(RelationId, Bag),
}

impl Read {
    /// The command for reads that need nothing from the model.
    pub(crate) fn call(&self) -> Option<Call> {
        Some(match self {
            Read::Config => hookcmds::config_get_call(false),
            Read::Leader => hookcmds::is_leader_call(),
            Read::GoalState => hookcmds::goal_state_call(),
            Read::RelationIds(endpoint) => hookcmds::relation_ids_call(endpoint),
            Read::RelationData(..) => return None,
        })
    }
}

/// The model's backend: answers fetched ahead in a batch are handed out
/// once each, to the first call with the same argv; everything else goes to
/// the real backend.
pub(crate) struct Prefetching {
    inner: Box<dyn Backend>,
    ready: RefCell<HashMap<Call, CommandOutput>>,
}

impl Prefetching {
    pub(crate) fn new(inner: Box<dyn Backend>) -> Prefetching {
        Prefetching {
            inner,
            ready: RefCell::new(HashMap::new()),
        }
    }

    /// Runs `calls` as one batch and keeps their answers. A command that
    /// could not be started is not kept: the later call tries again and
    /// reports the failure itself.
    pub(crate) fn fetch(&self, mut calls: Vec<Call>) {
        {
            let ready = self.ready.borrow();
            calls.retain(|c| !ready.contains_key(c));
        }
        calls.dedup();
        match calls.len() {
            0 => return,
            // A batch of one gains nothing; the call runs when asked for.
            1 => return,
            _ => {}
        }
        let outputs = self.inner.run_batch(&calls);
        let mut ready = self.ready.borrow_mut();
        for (call, out) in calls.into_iter().zip(outputs) {
            if let Ok(out) = out {
                ready.insert(call, out);
            }
        }
    }
}

impl Backend for Prefetching {
    fn run(
        &self,
        command: &str,
        args: &[String],
        stdin: Option<&[u8]>,
    ) -> std::io::Result<CommandOutput> {
        if stdin.is_none() && !self.ready.borrow().is_empty() {
            let mut ready = self.ready.borrow_mut();
            let key = ready
                .keys()
                .find(|c| c.command == command && c.args == args)
                .cloned();
            if let Some(out) = key.and_then(|k| ready.remove(&k)) {
                return Ok(out);
            }
        }
        self.inner.run(command, args, stdin)
    }

    fn run_batch(&self, calls: &[Call]) -> Vec<std::io::Result<CommandOutput>> {
        self.inner.run_batch(calls)
    }
}

/// The model a handler works with. Built by [`crate::dispatch`] once per
/// dispatch and shared by the deferred events re-run before the new one.
pub struct Model {
    ctx: JujuContext,
    backend: Prefetching,
    storage: Storage,
    /// The relation of a `-relation-broken` dispatch: hidden from
    /// [`Model::relations`] as ops hides it.
    broken: Option<RelationId>,
    /// Set by [`Model::defer`] while handling the current event.
    defer_current: bool,
    current_is_action: bool,
    leader: Option<bool>,
    config: Option<Config>,
    relation_ids: HashMap<String, Vec<RelationId>>,
    relation_units: HashMap<RelationId, Vec<String>>,
    relation_apps: HashMap<RelationId, Option<String>>,
    bags: HashMap<(RelationId, Bag), BTreeMap<String, String>>,
    secrets: HashMap<(Option<String>, Option<String>), SecretContent>,
    action_params: Option<serde_json::Map<String, Value>>,
    opened_ports: Option<Vec<Port>>,
    runtime: Option<Rc<Runtime>>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("unit", &self.ctx.unit_name)
            .field("dispatch_path", &self.ctx.dispatch_path)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// A model over `backend` for the hook described by `ctx`, with stored
    /// state already loaded.
    pub fn new(ctx: JujuContext, backend: Box<dyn Backend>, storage: Storage) -> Model {
        Model::with_prefetching(ctx, Prefetching::new(backend), storage)
    }

    pub(crate) fn with_prefetching(
        ctx: JujuContext,
        backend: Prefetching,
        mut storage: Storage,
    ) -> Model {
        let broken: Option<RelationId> = if ctx.dispatch_path.ends_with("-relation-broken") {
            ctx.relation_id.as_deref().and_then(|r| r.parse().ok())
        } else {
            None
        };
        if let Some(gone) = &broken {
            storage.forget_relation(&gone.to_string());
        }
        Model {
            ctx,
            backend,
            storage,
            broken,
            defer_current: false,
            current_is_action: false,
            leader: None,
            config: None,
            relation_ids: HashMap::new(),
            relation_units: HashMap::new(),
            relation_apps: HashMap::new(),
            bags: HashMap::new(),
            secrets: HashMap::new(),
            action_params: None,
            opened_ports: None,
            runtime: None,
        }
    }

    // -- identity ---------------------------------------------------------

    /// The hook environment.
    pub fn context(&self) -> &JujuContext {
        &self.ctx
    }
    /// This unit, for example `livepatch/0`.
    pub fn unit_name(&self) -> &str {
        &self.ctx.unit_name
    }
    /// This application.
    pub fn app_name(&self) -> &str {
        &self.ctx.app_name
    }
    /// The model name.
    pub fn model_name(&self) -> &str {
        &self.ctx.model_name
    }
    /// The model UUID.
    pub fn model_uuid(&self) -> &str {
        &self.ctx.model_uuid
    }
    /// The hook command backend, for commands the model does not wrap
    /// (call the functions of [`crate::hookcmds`] with it).
    pub fn backend(&self) -> &dyn Backend {
        &self.backend
    }

    /// Fetches `reads` in one batch of concurrent hook commands (see
    /// [`Read`]); what the model already holds is not asked again.
    pub fn prefetch(&mut self, reads: &[Read]) {
        let mut calls = Vec::new();
        for read in reads {
            let cached = match read {
                Read::Config => self.config.is_some(),
                Read::Leader => self.leader.is_some(),
                Read::GoalState => false,
                Read::RelationIds(endpoint) => self.relation_ids.contains_key(endpoint),
                Read::RelationData(relation, bag) => {
                    self.bags.contains_key(&(relation.clone(), bag.clone()))
                }
            };
            if cached {
                continue;
            }
            let call = match read {
                Read::RelationData(relation, bag) => {
                    let target = match bag {
                        Bag::LocalUnit => Some((self.ctx.unit_name.clone(), false)),
                        Bag::LocalApp => Some((self.ctx.app_name.clone(), true)),
                        Bag::Unit(u) => Some((u.clone(), false)),
                        Bag::RemoteApp => self.known_relation_app(relation).map(|a| (a, true)),
                    };
                    target.map(|(t, app)| hookcmds::relation_get_call(relation, &t, app))
                }
                other => other.call(),
            };
            calls.extend(call);
        }
        self.backend.fetch(calls);
    }

    /// The remote application when known without a hook command.
    fn known_relation_app(&self, relation: &RelationId) -> Option<String> {
        if let Some(a) = self.relation_apps.get(relation) {
            return a.clone();
        }
        let key = relation.to_string();
        match self.storage.remote_app(&key) {
            Some(app) => Some(app.to_owned()),
            None if self.ctx.relation_id.as_deref() == Some(key.as_str()) => {
                self.ctx.remote_app.clone()
            }
            None => None,
        }
    }

    // -- dispatch support ---------------------------------------------------

    pub(crate) fn begin_event(&mut self, event: &Event) {
        self.defer_current = false;
        self.current_is_action = event.is_action();
    }

    pub(crate) fn take_defer(&mut self) -> bool {
        std::mem::take(&mut self.defer_current)
    }

    pub(crate) fn storage_mut(&mut self) -> &mut Storage {
        &mut self.storage
    }

    pub(crate) fn save_storage(&self) -> Result<bool, StorageError> {
        self.storage.save(&self.backend)
    }

    /// Defers the event being handled: it is stored in Juju and re-run,
    /// before the new event, at the start of every later dispatch until a
    /// handler does not defer it. Actions cannot be deferred.
    ///
    /// A deferred relation event may run after its relation is gone: expect
    /// [`ModelError::RelationNotFound`] there and do not fail the hook on it
    /// (that would fail every later hook too).
    pub fn defer(&mut self) -> Result<(), ModelError> {
        if self.current_is_action {
            return Err(ModelError::InvalidUse(
                "actions cannot be deferred: fail the action instead".into(),
            ));
        }
        self.defer_current = true;
        Ok(())
    }

    // -- stored state -----------------------------------------------------

    /// A value the charm stored earlier (in any hook, in any pod).
    pub fn stored<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ModelError> {
        Ok(self.storage.get(key)?)
    }

    /// Stores a value; written to Juju when the dispatch succeeds.
    pub fn set_stored<T: Serialize>(&mut self, key: &str, value: &T) -> Result<(), ModelError> {
        Ok(self.storage.set(key, value)?)
    }

    /// Forgets a stored value.
    pub fn remove_stored(&mut self, key: &str) {
        self.storage.remove(key);
    }

    // -- leadership and config ----------------------------------------------

    /// Whether this unit is the leader (asked once per dispatch: the lease
    /// outlives a hook).
    pub fn is_leader(&mut self) -> Result<bool, ModelError> {
        if let Some(l) = self.leader {
            return Ok(l);
        }
        let l = hookcmds::is_leader(&self.backend)?;
        self.leader = Some(l);
        Ok(l)
    }

    fn require_leader(&mut self, what: impl FnOnce() -> String) -> Result<(), ModelError> {
        if self.is_leader()? {
            Ok(())
        } else {
            Err(ModelError::NotLeader(what()))
        }
    }

    /// The configuration (read once per dispatch).
    pub fn config(&mut self) -> Result<Config, ModelError> {
        if let Some(c) = &self.config {
            return Ok(c.clone());
        }
        let values = hookcmds::config_get(&self.backend, false)?;
        let c = Config { values };
        self.config = Some(c.clone());
        Ok(c)
    }

    // -- relations ----------------------------------------------------------

    /// The relations of `endpoint` (a broken relation is hidden).
    pub fn relations(&mut self, endpoint: &str) -> Result<Vec<RelationId>, ModelError> {
        let ids = match self.relation_ids.get(endpoint) {
            Some(ids) => ids.clone(),
            None => {
                let ids = hookcmds::relation_ids(&self.backend, endpoint)?;
                self.relation_ids.insert(endpoint.to_owned(), ids.clone());
                ids
            }
        };
        Ok(ids
            .into_iter()
            .filter(|r| Some(r) != self.broken.as_ref())
            .collect())
    }

    /// The one relation of an endpoint with `limit: 1` (the first, if more).
    pub fn relation(&mut self, endpoint: &str) -> Result<Option<RelationId>, ModelError> {
        Ok(self.relations(endpoint)?.into_iter().next())
    }

    /// The remote units of a relation (for a peer relation, the other units).
    pub fn relation_units(&mut self, relation: &RelationId) -> Result<Vec<String>, ModelError> {
        if let Some(u) = self.relation_units.get(relation) {
            return Ok(u.clone());
        }
        let units = hookcmds::relation_list(&self.backend, relation)?;
        self.relation_units.insert(relation.clone(), units.clone());
        Ok(units)
    }

    /// The remote application of a relation.
    ///
    /// It never changes for a relation, so it is learnt once (from the
    /// event's `JUJU_REMOTE_APP` or one `relation-list --app`) and kept
    /// with the stored state.
    pub fn relation_app(&mut self, relation: &RelationId) -> Result<Option<String>, ModelError> {
        if let Some(a) = self.relation_apps.get(relation) {
            return Ok(a.clone());
        }
        let key = relation.to_string();
        let known = match self.storage.remote_app(&key) {
            Some(app) => Some(app.to_owned()),
            None if self.ctx.relation_id.as_deref() == Some(key.as_str()) => {
                self.ctx.remote_app.clone()
            }
            None => None,
        };
        let app = match known {
            Some(app) => Some(app),
            None => hookcmds::relation_list_app(&self.backend, relation)?,
        };
        if let Some(a) = &app {
            if self.broken.as_ref() != Some(relation) {
                self.storage.set_remote_app(&key, a);
            }
        }
        self.relation_apps.insert(relation.clone(), app.clone());
        Ok(app)
    }

    fn bag_target(
        &mut self,
        relation: &RelationId,
        bag: &Bag,
    ) -> Result<(String, bool), ModelError> {
        Ok(match bag {
            Bag::LocalUnit => (self.ctx.unit_name.clone(), false),
            Bag::LocalApp => (self.ctx.app_name.clone(), true),
            Bag::Unit(u) => (u.clone(), false),
            Bag::RemoteApp => match self.relation_app(relation)? {
                Some(app) => (app, true),
                None => {
                    return Err(ModelError::InvalidUse(format!(
                        "relation {relation} has no remote application yet"
                    )))
                }
            },
        })
    }

    /// A databag of a relation (read once per dispatch; this hook's own
    /// writes are reflected).
    pub fn relation_data(
        &mut self,
        relation: &RelationId,
        bag: &Bag,
    ) -> Result<BTreeMap<String, String>, ModelError> {
        let key = (relation.clone(), bag.clone());
        if let Some(b) = self.bags.get(&key) {
            return Ok(b.clone());
        }
        let (target, app) = self.bag_target(relation, bag)?;
        let data = hookcmds::relation_get(&self.backend, relation, &target, app)?;
        self.bags.insert(key, data.clone());
        Ok(data)
    }

    /// Updates this unit's (`app == false`) or this application's bag.
    /// An empty value deletes the key. The application bag needs leadership.
    pub fn set_relation_data<K, V, I>(
        &mut self,
        relation: &RelationId,
        app: bool,
        changes: I,
    ) -> Result<(), ModelError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let changes: BTreeMap<String, String> = changes
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        if changes.is_empty() {
            return Ok(());
        }
        if app {
            self.require_leader(|| {
                format!("write the application databag of relation {relation}")
            })?;
        }
        hookcmds::relation_set(&self.backend, relation, app, &changes)?;
        let bag = if app { Bag::LocalApp } else { Bag::LocalUnit };
        if let Some(cached) = self.bags.get_mut(&(relation.clone(), bag)) {
            for (k, v) in changes {
                if v.is_empty() {
                    cached.remove(&k);
                } else {
                    cached.insert(k, v);
                }
            }
        }
        Ok(())
    }

    /// The remote model of a relation (cross-model relations).
    pub fn relation_model(&mut self, relation: &RelationId) -> Result<RelationModel, ModelError> {
        Ok(hookcmds::relation_model_get(&self.backend, relation)?)
    }

    // -- status -------------------------------------------------------------

    /// Sets this unit's status (applied at once, even if the hook fails).
    pub fn set_unit_status(&mut self, status: Status) -> Result<(), ModelError> {
        Ok(hookcmds::status_set(
            &self.backend,
            false,
            status.name,
            &status.message,
        )?)
    }

    /// Sets the application's status (leader only).
    pub fn set_app_status(&mut self, status: Status) -> Result<(), ModelError> {
        self.require_leader(|| "set the application status".into())?;
        Ok(hookcmds::status_set(
            &self.backend,
            true,
            status.name,
            &status.message,
        )?)
    }

    /// This unit's current status.
    pub fn unit_status(&mut self) -> Result<StatusReport, ModelError> {
        Ok(hookcmds::status_get(&self.backend)?)
    }

    /// The application's status and its units' (leader only).
    pub fn app_status(&mut self) -> Result<AppStatusReport, ModelError> {
        self.require_leader(|| "read the application status".into())?;
        Ok(hookcmds::status_get_app(&self.backend)?)
    }

    /// Sets the workload version shown by `juju status`.
    pub fn set_workload_version(&mut self, version: &str) -> Result<(), ModelError> {
        Ok(hookcmds::application_version_set(&self.backend, version)?)
    }

    // -- ports --------------------------------------------------------------

    /// The ports this unit has open.
    pub fn opened_ports(&mut self) -> Result<Vec<Port>, ModelError> {
        if let Some(p) = &self.opened_ports {
            return Ok(p.clone());
        }
        let ports = hookcmds::opened_ports(&self.backend)?;
        self.opened_ports = Some(ports.clone());
        Ok(ports)
    }

    /// Opens a port.
    pub fn open_port(&mut self, port: Port) -> Result<(), ModelError> {
        hookcmds::open_port(&self.backend, &port, &[])?;
        if let Some(p) = &mut self.opened_ports {
            if !p.contains(&port) {
                p.push(port);
            }
        }
        Ok(())
    }

    /// Closes a port.
    pub fn close_port(&mut self, port: Port) -> Result<(), ModelError> {
        hookcmds::close_port(&self.backend, &port, &[])?;
        if let Some(p) = &mut self.opened_ports {
            p.retain(|x| *x != port);
        }
        Ok(())
    }

    /// Makes exactly `ports` open: opens the missing ones, closes the rest.
    pub fn set_ports(&mut self, ports: &[Port]) -> Result<(), ModelError> {
        let current = self.opened_ports()?;
        for p in current.iter().filter(|p| !ports.contains(p)) {
            self.close_port(*p)?;
        }
        for p in ports.iter().filter(|p| !current.contains(p)) {
            self.open_port(*p)?;
        }
        Ok(())
    }

    // -- secrets --------------------------------------------------------------

    /// The content of a secret at the revision this unit tracks (the first
    /// read starts tracking). With both an id and a label, the label is bound
    /// to the secret for later label-only reads.
    pub fn get_secret(
        &mut self,
        id: Option<&str>,
        label: Option<&str>,
    ) -> Result<SecretContent, ModelError> {
        let key = (id.map(str::to_owned), label.map(str::to_owned));
        if let Some(c) = self.secrets.get(&key) {
            return Ok(c.clone());
        }
        let c = hookcmds::secret_get(&self.backend, id, label, SecretRead::Tracked)?;
        self.secrets.insert(key, c.clone());
        Ok(c)
    }

    /// The latest revision's content, without moving tracking.
    pub fn peek_secret(
        &mut self,
        id: Option<&str>,
        label: Option<&str>,
    ) -> Result<SecretContent, ModelError> {
        Ok(hookcmds::secret_get(
            &self.backend,
            id,
            label,
            SecretRead::Peek,
        )?)
    }

    /// The latest revision's content, moving tracking to it (do this on
    /// `secret-changed`).
    pub fn refresh_secret(
        &mut self,
        id: Option<&str>,
        label: Option<&str>,
    ) -> Result<SecretContent, ModelError> {
        let c = hookcmds::secret_get(&self.backend, id, label, SecretRead::Refresh)?;
        // Whatever was cached for this secret is stale now.
        self.secrets.clear();
        Ok(c)
    }

    /// Metadata of a secret this unit or application owns.
    pub fn secret_info(
        &mut self,
        id: Option<&str>,
        label: Option<&str>,
    ) -> Result<SecretInfo, ModelError> {
        Ok(hookcmds::secret_info_get(&self.backend, id, label)?)
    }

    /// Creates a secret and returns its URI. Application-owned secrets need
    /// leadership.
    pub fn add_secret(
        &mut self,
        content: &SecretContent,
        meta: &SecretMeta,
        owner: SecretOwner,
    ) -> Result<String, ModelError> {
        if owner == SecretOwner::Application {
            self.require_leader(|| "add an application-owned secret".into())?;
        }
        Ok(hookcmds::secret_add(&self.backend, content, meta, owner)?)
    }

    /// Sets new content (a new revision) and/or metadata of an owned secret.
    pub fn set_secret(
        &mut self,
        id: &str,
        content: Option<&SecretContent>,
        meta: &SecretMeta,
    ) -> Result<(), ModelError> {
        hookcmds::secret_set(&self.backend, id, content, meta)?;
        self.secrets.clear();
        Ok(())
    }

    /// Grants an owned secret to the remote side of a relation (or one unit).
    pub fn grant_secret(
        &mut self,
        id: &str,
        relation: &RelationId,
        unit: Option<&str>,
    ) -> Result<(), ModelError> {
        Ok(hookcmds::secret_grant(&self.backend, id, relation, unit)?)
    }

    /// Revokes a grant.
    pub fn revoke_secret(
        &mut self,
        id: &str,
        relation: &RelationId,
        scope: &RevokeScope,
    ) -> Result<(), ModelError> {
        Ok(hookcmds::secret_revoke(&self.backend, id, relation, scope)?)
    }

    /// Removes one revision of an owned secret, or all of them.
    pub fn remove_secret(&mut self, id: &str, revision: Option<u32>) -> Result<(), ModelError> {
        hookcmds::secret_remove(&self.backend, id, revision)?;
        self.secrets.clear();
        Ok(())
    }

    /// The URIs of the secrets this unit/application owns.
    pub fn secret_ids(&mut self) -> Result<Vec<String>, ModelError> {
        Ok(hookcmds::secret_ids(&self.backend)?)
    }

    // -- actions --------------------------------------------------------------

    fn require_action(&self, what: &str) -> Result<(), ModelError> {
        if self.current_is_action {
            Ok(())
        } else {
            Err(ModelError::InvalidUse(format!(
                "{what} is only possible while handling an action"
            )))
        }
    }

    /// The action's parameters (defaults filled in by Juju).
    pub fn action_params(&mut self) -> Result<serde_json::Map<String, Value>, ModelError> {
        self.require_action("reading action parameters")?;
        if let Some(p) = &self.action_params {
            return Ok(p.clone());
        }
        let p = hookcmds::action_get(&self.backend)?;
        self.action_params = Some(p.clone());
        Ok(p)
    }

    /// One action parameter as `T`.
    pub fn action_param<T: DeserializeOwned>(
        &mut self,
        key: &str,
    ) -> Result<Option<T>, ModelError> {
        let params = self.action_params()?;
        match params.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone()).map(Some).map_err(|e| {
                ModelError::InvalidUse(format!(
                    "action parameter {key:?} has an unexpected type: {e}"
                ))
            }),
        }
    }

    /// Sets action results. Nested objects become dotted keys; other values
    /// their string form.
    pub fn set_action_results(
        &mut self,
        results: &serde_json::Map<String, Value>,
    ) -> Result<(), ModelError> {
        self.require_action("setting action results")?;
        let mut flat = BTreeMap::new();
        flatten("", results, &mut flat);
        Ok(hookcmds::action_set(&self.backend, &flat)?)
    }

    /// Fails the action with `message`; the hook still commits its changes.
    pub fn fail_action(&mut self, message: &str) -> Result<(), ModelError> {
        self.require_action("failing an action")?;
        Ok(hookcmds::action_fail(&self.backend, message)?)
    }

    /// Logs progress to the action's output, visible at once.
    pub fn action_log(&mut self, message: &str) -> Result<(), ModelError> {
        self.require_action("logging action progress")?;
        Ok(hookcmds::action_log(&self.backend, message)?)
    }

    // -- logging --------------------------------------------------------------

    /// Writes to the unit's log (`juju debug-log`).
    pub fn log(&mut self, level: LogLevel, message: &str) -> Result<(), ModelError> {
        Ok(hookcmds::juju_log(&self.backend, level, message)?)
    }

    // -- network, goal state, cloud, resources, storage -------------------

    /// Network information for a binding (an endpoint name), optionally as
    /// seen over one relation.
    pub fn network(
        &mut self,
        binding: &str,
        relation: Option<&RelationId>,
    ) -> Result<Network, ModelError> {
        Ok(hookcmds::network_get(&self.backend, binding, relation)?)
    }

    /// Juju's goal state for this application.
    pub fn goal_state(&mut self) -> Result<GoalState, ModelError> {
        Ok(hookcmds::goal_state(&self.backend)?)
    }

    /// How many units Juju plans for this application.
    pub fn planned_units(&mut self) -> Result<usize, ModelError> {
        Ok(self.goal_state()?.planned_units())
    }

    /// The cloud spec and credential (needs `juju trust`).
    pub fn cloud_spec(&mut self) -> Result<CloudSpec, ModelError> {
        Ok(hookcmds::credential_get(&self.backend)?)
    }

    /// The local path of a file resource.
    pub fn resource(&mut self, name: &str) -> Result<std::path::PathBuf, ModelError> {
        Ok(hookcmds::resource_get(&self.backend, name)?)
    }

    /// The instances of a storage (`data/0`, …).
    pub fn storages(&mut self, name: &str) -> Result<Vec<String>, ModelError> {
        Ok(hookcmds::storage_list(&self.backend, Some(name))?)
    }

    /// Where a storage instance is and what kind it is.
    pub fn storage(&mut self, id: &str) -> Result<StorageInfo, ModelError> {
        Ok(hookcmds::storage_get(&self.backend, id)?)
    }

    /// Asks Juju for `count` more instances of storage `name` (committed
    /// with the hook).
    pub fn add_storage(&mut self, name: &str, count: u32) -> Result<(), ModelError> {
        Ok(hookcmds::storage_add(&self.backend, name, count)?)
    }

    // -- Pebble ---------------------------------------------------------------

    /// The tokio runtime the Pebble clients run on (current-thread, created
    /// on first use). Use it for your own async clients too, with
    /// `block_on`.
    pub fn runtime(&mut self) -> Result<Rc<Runtime>, ModelError> {
        if let Some(rt) = &self.runtime {
            return Ok(rt.clone());
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ModelError::InvalidUse(format!("cannot start the async runtime: {e}")))?;
        let rt = Rc::new(rt);
        self.runtime = Some(rt.clone());
        Ok(rt)
    }

    /// A Pebble client for workload container `name`. Connecting happens on
    /// the first call; a missing socket is [`pebble::Error::Connection`].
    pub fn container(&mut self, name: &str) -> Result<pebble::Client, ModelError> {
        let rt = self.runtime()?;
        Ok(pebble::Client::with_runtime(
            self.ctx.pebble_socket(name),
            rt,
        ))
    }
}

fn flatten(prefix: &str, map: &serde_json::Map<String, Value>, out: &mut BTreeMap<String, String>) {
    for (k, v) in map {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Object(inner) => flatten(&key, inner, out),
            Value::String(s) => {
                out.insert(key, s.clone());
            }
            other => {
                out.insert(key, other.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Answers a few read commands and counts every process it would start.
    #[derive(Default)]
    struct Counting {
        runs: RefCell<Vec<String>>,
        batches: RefCell<Vec<usize>>,
    }

    impl Backend for std::rc::Rc<Counting> {
        fn run(
            &self,
            command: &str,
            _args: &[String],
            _stdin: Option<&[u8]>,
        ) -> std::io::Result<CommandOutput> {
            self.runs.borrow_mut().push(command.to_owned());
            let (code, stdout, stderr) = match command {
                "is-leader" => (0, "true", ""),
                "config-get" => (0, r#"{"port": 8080}"#, ""),
                "relation-ids" => (2, "", "ERROR no endpoint \"nope\""),
                _ => (1, "", "ERROR unexpected"),
            };
            Ok(CommandOutput {
                code,
                stdout: stdout.into(),
                stderr: stderr.into(),
            })
        }

        fn run_batch(&self, calls: &[Call]) -> Vec<std::io::Result<CommandOutput>> {
            self.batches.borrow_mut().push(calls.len());
            calls
                .iter()
                .map(|c| self.run(c.command, &c.args, None))
                .collect()
        }
    }

    fn model_over(backend: std::rc::Rc<Counting>) -> Model {
        let ctx = JujuContext::from_vars([
            ("JUJU_DISPATCH_PATH", "hooks/config-changed"),
            ("JUJU_HOOK_NAME", "config-changed"),
            ("JUJU_UNIT_NAME", "app/0"),
            ("JUJU_MODEL_NAME", "m"),
            ("JUJU_MODEL_UUID", "f2a2c8b0-1111-4222-8333-444455556666"),
            ("JUJU_CHARM_DIR", "/tmp"),
            ("JUJU_VERSION", "3.6.4"),
        ])
        .unwrap();
        Model::new(ctx, Box::new(backend), Storage::default())
    }

    #[test]
    fn prefetched_reads_run_once_in_one_batch_and_keep_their_errors_for_the_caller() {
        let backend = std::rc::Rc::new(Counting::default());
        let mut model = model_over(backend.clone());
        model.prefetch(&[Read::Leader, Read::Config, Read::RelationIds("nope".into())]);
        assert_eq!(*backend.batches.borrow(), vec![3]);
        assert!(model.is_leader().unwrap());
        assert_eq!(
            model.config().unwrap().int("port").unwrap(),
            Some(8080),
            "the prefetched answer is the one read"
        );
        let err = model.relations("nope").unwrap_err();
        assert!(err.to_string().contains("no endpoint"), "{err}");
        assert_eq!(
            *backend.runs.borrow(),
            vec!["is-leader", "config-get", "relation-ids"],
            "nothing ran twice"
        );
        // A failed read is not cached by the model: asking again runs it again.
        let _ = model.relations("nope");
        assert_eq!(backend.runs.borrow().len(), 4);
    }

    #[test]
    fn reads_the_model_already_holds_are_not_fetched_again() {
        let backend = std::rc::Rc::new(Counting::default());
        let mut model = model_over(backend.clone());
        assert!(model.is_leader().unwrap());
        model.prefetch(&[Read::Leader, Read::Config]);
        // One read left is not worth a batch: it runs when asked for.
        assert!(backend.batches.borrow().is_empty());
        model.config().unwrap();
        assert_eq!(*backend.runs.borrow(), vec!["is-leader", "config-get"]);
    }

    #[test]
    fn hook_command_failures_map_to_domain_errors() {
        let failed = |cmd: &str, stderr: &str| HookCmdError::Failed {
            command: cmd.into(),
            code: 1,
            stderr: stderr.into(),
        };
        assert!(matches!(
            ModelError::from(failed(
                "relation-get",
                "ERROR invalid value \"db:9\" for option -r: relation not found"
            )),
            ModelError::RelationNotFound(_)
        ));
        assert!(matches!(
            ModelError::from(failed("secret-get", "ERROR secret \"x\" not found")),
            ModelError::SecretNotFound(_)
        ));
        assert!(matches!(
            ModelError::from(failed("storage-get", "ERROR storage not found")),
            ModelError::HookCommand(_)
        ));
    }

    #[test]
    fn config_getters_check_types_and_secret_uris() {
        let c = Config::from_values(BTreeMap::from([
            ("port".to_owned(), json!(8080)),
            ("ratio".to_owned(), json!(0.5)),
            ("debug".to_owned(), json!(true)),
            ("name".to_owned(), json!("x")),
            ("creds".to_owned(), json!("secret:cj1sq3ivr6rc7a3q1sbg")),
            ("bad-creds".to_owned(), json!("hunter2")),
            ("unset".to_owned(), Value::Null),
        ]));
        assert_eq!(c.int("port").unwrap(), Some(8080));
        assert_eq!(c.float("port").unwrap(), Some(8080.0));
        assert_eq!(c.float("ratio").unwrap(), Some(0.5));
        assert_eq!(c.bool("debug").unwrap(), Some(true));
        assert_eq!(c.string("name").unwrap().as_deref(), Some("x"));
        assert_eq!(c.string("unset").unwrap(), None);
        assert_eq!(c.string("missing").unwrap(), None);
        assert_eq!(
            c.secret("creds").unwrap().as_deref(),
            Some("secret:cj1sq3ivr6rc7a3q1sbg")
        );
        assert_eq!(
            c.int("name").unwrap_err().to_string(),
            "config option \"name\": expected an integer, got \"x\""
        );
        let err = c.secret("bad-creds").unwrap_err().to_string();
        assert!(
            err.contains("expected a secret URI") && !err.contains("hunter2"),
            "{err}"
        );
        #[derive(serde::Deserialize)]
        struct Typed {
            port: u16,
            debug: bool,
        }
        let t: Typed = c.deserialize().unwrap();
        assert_eq!((t.port, t.debug), (8080, true));
    }

    #[test]
    fn action_results_flatten_to_dotted_keys() {
        let mut out = BTreeMap::new();
        let m = json!({"a": {"b": "c", "n": 3}, "ok": true})
            .as_object()
            .unwrap()
            .clone();
        flatten("", &m, &mut out);
        assert_eq!(
            out,
            BTreeMap::from([
                ("a.b".to_owned(), "c".to_owned()),
                ("a.n".to_owned(), "3".to_owned()),
                ("ok".to_owned(), "true".to_owned()),
            ])
        );
    }
}
