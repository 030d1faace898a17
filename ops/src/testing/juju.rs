//! A fake Juju: answers hook command argv from a [`State`], as Juju would.
//!
//! One engine serves both the in-process harness (as the model's
//! [`crate::hookcmds::Backend`]) and the binary-level fakes (one process per
//! command, the session persisted in a JSON file between them). It follows
//! juju.md §2 to the letter where the reference is explicit: `ERROR …`
//! texts on stderr, exit 2 for flag and argument errors (including an
//! unknown relation) and 1 for runtime errors, leadership checks, own writes
//! visible to later reads in the same hook, and the commit rule of §1.5:
//! [`Session::finish`] keeps buffered changes only when the charm exited 0,
//! while `status-set`, `application-version-set`, `juju-log` and
//! `action-log` take effect at once.
//!
//! Where Juju's exact wording is not in the reference, messages are written
//! in Juju's style and say what is wrong.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::meta::Meta;
use super::state::{canonical_secret_id, new_secret_id, Secret, State};
use crate::event::Event;
use crate::hookcmds::{
    validate_action_key, validate_secret_key, CommandOutput, LogLevel, Network, Port, RotatePolicy,
    SecretContent, SecretOwner, StatusName,
};
use crate::model::Status;
use crate::storage::{Storage, STATE_KEY};

/// Every hook command the fake answers (juju.md §2).
pub const COMMANDS: &[&str] = &[
    "action-fail",
    "action-get",
    "action-log",
    "action-set",
    "application-version-set",
    "close-port",
    "config-get",
    "credential-get",
    "goal-state",
    "is-leader",
    "juju-log",
    "leader-get",
    "leader-set",
    "network-get",
    "open-port",
    "opened-ports",
    "pod-spec-set",
    "relation-get",
    "relation-ids",
    "relation-list",
    "relation-model-get",
    "relation-set",
    "resource-get",
    "secret-add",
    "secret-get",
    "secret-grant",
    "secret-ids",
    "secret-info-get",
    "secret-remove",
    "secret-revoke",
    "secret-set",
    "state-delete",
    "state-get",
    "state-set",
    "status-get",
    "status-set",
    "storage-add",
    "storage-get",
    "storage-list",
];

/// The commands that never change the session (beyond recording the call),
/// so the binary-level fakes need not rewrite it.
pub const READ_ONLY: &[&str] = &[
    "action-get",
    "config-get",
    "credential-get",
    "goal-state",
    "is-leader",
    "leader-get",
    "network-get",
    "opened-ports",
    "relation-get",
    "relation-ids",
    "relation-list",
    "relation-model-get",
    "resource-get",
    "secret-ids",
    "secret-info-get",
    "state-get",
    "status-get",
    "storage-get",
    "storage-list",
];

/// Juju's limits on unit state (juju.md §2).
const MAX_STATE_KEY: usize = 256;
const MAX_STATE_VALUE: usize = 64 * 1024;
const MAX_STATE_TOTAL: usize = 2 * 1024 * 1024;

/// One hook command the charm ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookCall {
    /// The command name.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// What it was fed on stdin, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
}

/// One `juju-log` line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// The level.
    pub level: LogLevel,
    /// The message.
    pub message: String,
}

/// What a hook did besides changing state: Juju's side channels.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Record {
    /// Every hook command call, in order.
    pub calls: Vec<HookCall>,
    /// Every unit status set, in order.
    pub unit_status_history: Vec<Status>,
    /// Every application status set, in order.
    pub app_status_history: Vec<Status>,
    /// Every workload version set, in order.
    pub workload_version_history: Vec<String>,
    /// Every `juju-log` line.
    pub juju_log: Vec<LogLine>,
    /// Action results set with `action-set` (dotted keys).
    pub action_results: BTreeMap<String, String>,
    /// The `action-fail` message, if the action was failed.
    pub action_failure: Option<String>,
    /// `action-log` messages.
    pub action_logs: Vec<String>,
}

/// This unit's identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitId {
    /// The application name.
    pub app: String,
    /// The unit number.
    pub number: u32,
}

impl UnitId {
    /// `app/number`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.app, self.number)
    }
}

/// One hook's worth of fake Juju: declarations, identity, the event, the
/// state before the hook and the working copy the commands change.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Session {
    /// What the charm declares.
    pub meta: Meta,
    /// This unit.
    pub unit: UnitId,
    /// The Juju version reported in `JUJU_VERSION`.
    pub juju_version: String,
    /// The event being run.
    pub event: Event,
    /// Action parameters with defaults filled in (actions only).
    pub action_params: Option<serde_json::Map<String, Value>>,
    /// The state before the hook (kept for a failed hook).
    pub input: State,
    /// The working state: buffered changes are visible here at once.
    pub state: State,
    /// Side channels.
    pub record: Record,
}

struct Fail(i32, String);

fn usage(msg: impl Into<String>) -> Fail {
    Fail(2, msg.into())
}

fn runtime(msg: impl Into<String>) -> Fail {
    Fail(1, msg.into())
}

/// Flags parsed the way Juju's gnuflag does: `--f=v`, `--f v`, `-f v`,
/// booleans with an optional `=true|false`, flags anywhere, `--` ending them.
struct Args {
    values: BTreeMap<&'static str, String>,
    bools: BTreeSet<&'static str>,
    pos: Vec<String>,
}

impl Args {
    fn parse(
        args: &[String],
        values: &[&'static str],
        bools: &[&'static str],
    ) -> Result<Args, Fail> {
        // Spec entries look like "r|relation": the first name is canonical.
        let find = |spec: &[&'static str], name: &str| {
            spec.iter()
                .copied()
                .find(|s| s.split('|').any(|alias| alias == name))
        };
        let canon = |s: &'static str| s.split('|').next().expect("non-empty spec");
        let mut out = Args {
            values: BTreeMap::new(),
            bools: BTreeSet::new(),
            pos: vec![],
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "--" {
                out.pos.extend(it.by_ref().cloned());
                break;
            }
            if !a.starts_with('-') || a == "-" {
                out.pos.push(a.clone());
                continue;
            }
            let body = a.trim_start_matches('-');
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (body, None),
            };
            if let Some(spec) = find(values, name) {
                let v = match inline {
                    Some(v) => v,
                    None => it
                        .next()
                        .cloned()
                        .ok_or_else(|| usage(format!("flag needs an argument: {a}")))?,
                };
                out.values.insert(canon(spec), v);
            } else if let Some(spec) = find(bools, name) {
                match inline.as_deref() {
                    None | Some("true") | Some("True") | Some("1") => {
                        out.bools.insert(canon(spec));
                    }
                    Some("false") | Some("False") | Some("0") => {
                        out.bools.remove(canon(spec));
                    }
                    Some(other) => {
                        return Err(usage(format!(
                            "invalid boolean value {other:?} for -{name}"
                        )))
                    }
                }
            } else {
                return Err(usage(format!(
                    "flag provided but not defined: {}",
                    a.split('=').next().unwrap_or(a)
                )));
            }
        }
        Ok(out)
    }

    fn flag(&self, name: &str) -> bool {
        self.bools.contains(name)
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    fn max_pos(&self, n: usize) -> Result<(), Fail> {
        if self.pos.len() > n {
            Err(usage(format!(
                "unrecognized args: {:?}",
                self.pos[n..].to_vec()
            )))
        } else {
            Ok(())
        }
    }

    /// Renders `v` in the requested `--format` (json, yaml, or Juju's
    /// "smart" default: bare strings, YAML otherwise).
    fn render(&self, v: &Value) -> Result<Vec<u8>, Fail> {
        match self.value("format").unwrap_or("smart") {
            "json" => Ok(format!("{v}\n").into_bytes()),
            "yaml" => Ok(serde_yaml_ng::to_string(v).unwrap_or_default().into_bytes()),
            "smart" => Ok(match v {
                Value::String(s) => format!("{s}\n").into_bytes(),
                Value::Null => Vec::new(),
                other => serde_yaml_ng::to_string(other)
                    .unwrap_or_default()
                    .into_bytes(),
            }),
            other => Err(usage(format!(
                "invalid value {other:?} for option --format: unknown format {other:?}"
            ))),
        }
    }
}

const FORMAT: &str = "format";

fn string_map(v: &Value) -> Option<BTreeMap<String, String>> {
    let obj = v.as_object()?;
    obj.iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            Some((k.clone(), s))
        })
        .collect()
}

/// Reads `--file` input (a path, or `-` for stdin) as a YAML/JSON map of
/// strings.
fn read_map_file(path: &str, stdin: Option<&[u8]>) -> Result<BTreeMap<String, String>, Fail> {
    let text = if path == "-" {
        String::from_utf8_lossy(stdin.unwrap_or_default()).into_owned()
    } else {
        std::fs::read_to_string(path).map_err(|e| usage(format!("cannot read {path}: {e}")))?
    };
    if text.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let v: Value =
        serde_yaml_ng::from_str(&text).map_err(|e| usage(format!("cannot parse settings: {e}")))?;
    string_map(&v).ok_or_else(|| usage("expected a map of strings"))
}

fn key_values(items: &[String]) -> Result<BTreeMap<String, String>, Fail> {
    items
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| usage(format!("expected \"key=value\", got {kv:?}")))
        })
        .collect()
}

impl Session {
    /// A session for running `event` against `state`.
    ///
    /// The charm's stored values and deferred events are turned into the
    /// unit-state document the framework reads (`ops.v1`).
    pub fn new(
        meta: Meta,
        unit: UnitId,
        juju_version: &str,
        event: Event,
        action_params: Option<serde_json::Map<String, Value>>,
        mut state: State,
    ) -> Session {
        // The State's stored values and deferred events are authoritative;
        // the framework's own bookkeeping in the document (remote
        // application names) is kept.
        let mut doc = state
            .unit_state
            .get(STATE_KEY)
            .and_then(|t| Storage::parse(Some(t)).ok())
            .unwrap_or_default();
        doc.set_values(std::mem::take(&mut state.stored));
        doc.set_deferred(std::mem::take(&mut state.deferred));
        if doc.is_empty() {
            state.unit_state.remove(STATE_KEY);
        } else {
            state.unit_state.insert(STATE_KEY.to_owned(), doc.to_json());
        }
        let action_params = match (&event, action_params) {
            (Event::Action(a), given) => {
                Some(meta.action_params_with_defaults(&a.name, &given.unwrap_or_default()))
            }
            _ => None,
        };
        Session {
            meta,
            unit,
            juju_version: juju_version.to_owned(),
            event,
            action_params,
            input: state.clone(),
            state,
            record: Record::default(),
        }
    }

    /// The environment Juju gives the charm for this hook (without `PATH`,
    /// the charm directory and the containers directory, which the caller
    /// knows).
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("JUJU_UNIT_NAME".to_owned(), self.unit.name()),
            ("JUJU_MODEL_NAME".to_owned(), self.state.model.name.clone()),
            ("JUJU_MODEL_UUID".to_owned(), self.state.model.uuid.clone()),
            ("JUJU_VERSION".to_owned(), self.juju_version.clone()),
            (
                "JUJU_CONTEXT_ID".to_owned(),
                format!("{}-{}", self.unit.name(), self.event.name()),
            ),
            (
                "JUJU_AGENT_SOCKET_ADDRESS".to_owned(),
                "@fake-juju".to_owned(),
            ),
            ("JUJU_AGENT_SOCKET_NETWORK".to_owned(), "unix".to_owned()),
            ("JUJU_API_ADDRESSES".to_owned(), "10.0.0.1:17070".to_owned()),
            ("JUJU_AVAILABILITY_ZONE".to_owned(), String::new()),
            ("JUJU_MACHINE_ID".to_owned(), String::new()),
            ("JUJU_PRINCIPAL_UNIT".to_owned(), String::new()),
            ("JUJU_CHARM_HTTP_PROXY".to_owned(), String::new()),
            ("JUJU_CHARM_HTTPS_PROXY".to_owned(), String::new()),
            ("JUJU_CHARM_FTP_PROXY".to_owned(), String::new()),
            ("JUJU_CHARM_NO_PROXY".to_owned(), String::new()),
        ];
        env.extend(self.event.env_vars());
        env
    }

    /// Runs one hook command. `None` when the command does not exist.
    pub fn run(
        &mut self,
        command: &str,
        args: &[String],
        stdin: Option<&[u8]>,
    ) -> Option<CommandOutput> {
        if !COMMANDS.contains(&command) {
            return None;
        }
        self.record.calls.push(HookCall {
            command: command.to_owned(),
            args: args.to_vec(),
            stdin: stdin.map(|s| String::from_utf8_lossy(s).into_owned()),
        });
        Some(match self.dispatch(command, args, stdin) {
            Ok(stdout) => CommandOutput {
                code: 0,
                stdout,
                stderr: vec![],
            },
            Err(Fail(code, msg)) => CommandOutput {
                code,
                stdout: vec![],
                stderr: format!("ERROR {msg}\n").into_bytes(),
            },
        })
    }

    /// Ends the hook: with `success` the working state is the result;
    /// otherwise the state from before the hook, plus the changes Juju
    /// applies at once (statuses, workload version).
    pub fn finish(self, success: bool) -> (State, Record) {
        let mut state = if success {
            self.state
        } else {
            let mut s = self.input;
            s.unit_status = self.state.unit_status;
            s.app_status = self.state.app_status;
            s.workload_version = self.state.workload_version;
            s
        };
        if let Some(doc) = state.unit_state.remove(STATE_KEY) {
            match Storage::parse(Some(&doc)) {
                Ok(mut st) => {
                    state.stored = st.values().clone();
                    state.deferred = st.deferred().to_vec();
                    st.set_values(Default::default());
                    st.set_deferred(Vec::new());
                    if !st.is_empty() {
                        state.unit_state.insert(STATE_KEY.to_owned(), st.to_json());
                    }
                }
                // Keep what the charm wrote, even unreadable, for the test
                // to look at.
                Err(_) => {
                    state.unit_state.insert(STATE_KEY.to_owned(), doc);
                }
            }
        }
        (state, self.record)
    }

    fn is_leader(&self) -> bool {
        self.state.leader
    }

    fn dispatch(
        &mut self,
        command: &str,
        args: &[String],
        stdin: Option<&[u8]>,
    ) -> Result<Vec<u8>, Fail> {
        match command {
            "config-get" => self.config_get(args),
            "relation-ids" => self.relation_ids(args),
            "relation-list" => self.relation_list(args),
            "relation-get" => self.relation_get(args),
            "relation-set" => self.relation_set(args, stdin),
            "relation-model-get" => self.relation_model_get(args),
            "status-set" => self.status_set(args),
            "status-get" => self.status_get(args),
            "application-version-set" => self.application_version_set(args),
            "is-leader" => {
                let a = Args::parse(args, &[FORMAT], &[])?;
                a.max_pos(0)?;
                a.render(&json!(self.is_leader()))
            }
            "leader-get" => self.leader_get(args),
            "leader-set" => self.leader_set(args),
            "action-get" => self.action_get(args),
            "action-set" => self.action_set(args),
            "action-fail" => self.action_fail(args),
            "action-log" => self.action_log(args),
            "juju-log" => self.juju_log(args),
            "state-get" => self.state_get(args),
            "state-set" => self.state_set(args, stdin),
            "state-delete" => self.state_delete(args),
            "secret-add" => self.secret_add(args),
            "secret-get" => self.secret_get(args),
            "secret-info-get" => self.secret_info_get(args),
            "secret-set" => self.secret_set(args),
            "secret-grant" => self.secret_grant(args),
            "secret-revoke" => self.secret_revoke(args),
            "secret-remove" => self.secret_remove(args),
            "secret-ids" => self.secret_ids(args),
            "open-port" => self.port_change(args, true),
            "close-port" => self.port_change(args, false),
            "opened-ports" => self.opened_ports(args),
            "network-get" => self.network_get(args),
            "goal-state" => self.goal_state(args),
            "credential-get" => self.credential_get(args),
            "resource-get" => self.resource_get(args),
            "storage-list" => self.storage_list(args),
            "storage-get" => self.storage_get(args),
            "storage-add" => self.storage_add(args),
            "pod-spec-set" => {
                Args::parse(args, &["file", "k8s-resources"], &[])?;
                Err(runtime("pod-spec-set is not supported by sidecar charms (the charm declares containers)"))
            }
            _ => unreachable!("COMMANDS lists every command dispatched"),
        }
    }

    // -- config ---------------------------------------------------------------

    fn config_get(&self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &[FORMAT], &["all|a"])?;
        a.max_pos(1)?;
        let cfg = self.meta.effective_config(&self.state.config);
        match a.pos.first() {
            Some(key) => a.render(cfg.get(key).unwrap_or(&Value::Null)),
            None => {
                let map: serde_json::Map<String, Value> = cfg
                    .into_iter()
                    .filter(|(_, v)| a.flag("all") || !v.is_null())
                    .collect();
                a.render(&Value::Object(map))
            }
        }
    }

    // -- relations --------------------------------------------------------------

    fn event_relation(&self) -> Option<String> {
        match &self.event {
            Event::RelationCreated(e)
            | Event::RelationJoined(e)
            | Event::RelationChanged(e)
            | Event::RelationBroken(e) => Some(e.relation.to_string()),
            Event::RelationDeparted(e) => Some(e.relation.to_string()),
            _ => None,
        }
    }

    /// Resolves `-r` (or the event's relation) to an index in the state.
    fn relation_index(&self, given: Option<&str>, flag: &str) -> Result<usize, Fail> {
        let text = match given {
            Some(t) => t.to_owned(),
            None => self
                .event_relation()
                .ok_or_else(|| usage("no relation id specified"))?,
        };
        let not_found = || {
            usage(format!(
                "invalid value {text:?} for option {flag}: relation not found"
            ))
        };
        let (endpoint, id) = match text.rsplit_once(':') {
            Some((ep, id)) => (Some(ep), id),
            None => (None, text.as_str()),
        };
        let id: u64 = id.parse().map_err(|_| not_found())?;
        self.state
            .relations
            .iter()
            .position(|r| r.id == id && endpoint.is_none_or(|ep| ep == r.endpoint))
            .ok_or_else(not_found)
    }

    fn remote_app_of(&self, idx: usize) -> String {
        self.state.relations[idx]
            .remote_app_name(&self.unit.app)
            .to_owned()
    }

    fn relation_ids(&self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &[FORMAT], &[])?;
        a.max_pos(1)?;
        let endpoint = match a.pos.first() {
            Some(e) => e.clone(),
            None => match &self.event {
                Event::RelationCreated(e)
                | Event::RelationJoined(e)
                | Event::RelationChanged(e)
                | Event::RelationBroken(e) => e.relation.endpoint.clone(),
                Event::RelationDeparted(e) => e.relation.endpoint.clone(),
                _ => return Err(usage("no endpoint name specified")),
            },
        };
        let mut rels: Vec<&super::state::Relation> = self
            .state
            .relations
            .iter()
            .filter(|r| r.endpoint == endpoint)
            .collect();
        rels.sort_by_key(|r| r.id);
        let ids: Vec<Value> = rels
            .iter()
            .map(|r| json!(format!("{}:{}", r.endpoint, r.id)))
            .collect();
        a.render(&Value::Array(ids))
    }

    fn relation_list(&self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &[FORMAT, "r|relation"], &["app"])?;
        a.max_pos(0)?;
        let idx = self.relation_index(a.value("r"), "-r")?;
        let rel = &self.state.relations[idx];
        let app = self.remote_app_of(idx);
        if a.flag("app") {
            return a.render(&json!(app));
        }
        let broken_here =
            matches!(&self.event, Event::RelationBroken(e) if e.relation.id == rel.id);
        let departing = match &self.event {
            Event::RelationDeparted(e) if e.relation.id == rel.id => Some(e.departing_unit.clone()),
            _ => None,
        };
        let units: Vec<Value> = if broken_here {
            vec![]
        } else {
            rel.remote_units
                .keys()
                .map(|n| format!("{app}/{n}"))
                .filter(|u| departing.as_ref() != Some(u))
                .map(Value::String)
                .collect()
        };
        a.render(&Value::Array(units))
    }

    fn relation_get(&self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &[FORMAT, "r|relation"], &["app"])?;
        a.max_pos(2)?;
        let idx = self.relation_index(a.value("r"), "-r")?;
        let rel = &self.state.relations[idx];
        let key = a.pos.first().cloned().unwrap_or_else(|| "-".into());
        let remote_app = self.remote_app_of(idx);
        let app = a.flag("app");
        let target = match a.pos.get(1) {
            Some(t) => t.clone(),
            None => {
                let from_event = match &self.event {
                    Event::RelationCreated(e)
                    | Event::RelationJoined(e)
                    | Event::RelationChanged(e)
                    | Event::RelationBroken(e) => {
                        if app {
                            Some(e.remote_app.clone())
                        } else {
                            e.remote_unit.clone()
                        }
                    }
                    Event::RelationDeparted(e) => {
                        if app {
                            Some(e.remote_app.clone())
                        } else {
                            e.remote_unit.clone()
                        }
                    }
                    _ => None,
                };
                from_event.ok_or_else(|| usage("no unit or application specified"))?
            }
        };
        let bag = if app {
            if target == self.unit.app {
                if !rel.peer && !self.is_leader() {
                    return Err(runtime("permission denied"));
                }
                &rel.local_app_data
            } else if target == remote_app {
                &rel.remote_app_data
            } else {
                return Err(runtime(format!(
                    "cannot read settings for application {target:?} in relation {:?}: application not found",
                    format!("{}:{}", rel.endpoint, rel.id)
                )));
            }
        } else if target == self.unit.name() {
            &rel.local_unit_data
        } else {
            let n = target
                .strip_prefix(&format!("{remote_app}/"))
                .and_then(|n| n.parse::<u32>().ok());
            match n.and_then(|n| rel.remote_units.get(&n)) {
                Some(bag) => bag,
                None => {
                    return Err(runtime(format!(
                        "cannot read settings for unit {target:?} in relation {:?}: unit {target:?}: settings not found",
                        format!("{}:{}", rel.endpoint, rel.id)
                    )))
                }
            }
        };
        if key == "-" {
            a.render(&json!(bag))
        } else {
            a.render(&bag.get(&key).map_or(Value::Null, |v| json!(v)))
        }
    }

    fn relation_set(&mut self, args: &[String], stdin: Option<&[u8]>) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &["r|relation", "file", FORMAT], &["app"])?;
        let idx = self.relation_index(a.value("r"), "-r")?;
        let mut changes = match a.value("file") {
            Some(path) => read_map_file(path, stdin)?,
            None => BTreeMap::new(),
        };
        changes.extend(key_values(&a.pos)?);
        if a.flag("app") && !self.is_leader() {
            return Err(runtime("cannot write relation settings"));
        }
        let rel = &mut self.state.relations[idx];
        let bag = if a.flag("app") {
            &mut rel.local_app_data
        } else {
            &mut rel.local_unit_data
        };
        for (k, v) in changes {
            if v.is_empty() {
                bag.remove(&k);
            } else {
                bag.insert(k, v);
            }
        }
        Ok(vec![])
    }

    fn relation_model_get(&self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &[FORMAT, "r|relation"], &[])?;
        a.max_pos(0)?;
        let idx = self.relation_index(a.value("r"), "-r")?;
        let uuid = self.state.relations[idx]
            .remote_model_uuid
            .clone()
            .unwrap_or_else(|| self.state.model.uuid.clone());
        a.render(&json!({ "uuid": uuid }))
    }

    // -- status ---------------------------------------------------------------

    fn status_set(&mut self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &[], &["application"])?;
        let Some(name) = a.pos.first() else {
            return Err(usage("invalid args, require <status> [message] [data]"));
        };
        let status = match StatusName::parse(name) {
            Some(
                s @ (StatusName::Active
                | StatusName::Blocked
                | StatusName::Maintenance
                | StatusName::Waiting),
            ) => s,
            _ => {
                return Err(usage(format!(
                    "invalid status {name:?}, expected one of [maintenance blocked waiting active]"
                )))
            }
        };
        let message = a.pos[1..].join(" ");
        let value = Status {
            name: status,
            message,
        };
        if a.flag("application") {
            if !self.is_leader() {
                return Err(runtime(
                    "setting application status: this unit is not the leader",
                ));
            }
            self.record.app_status_history.push(value.clone());
            self.state.app_status = value;
        } else {
            self.record.unit_status_history.push(value.clone());
            self.state.unit_status = value;
        }
        Ok(vec![])
    }

    fn status_json(s: &Status) -> Value {
        json!({"message": s.message, "status": s.name.as_str(), "status-data": {}})
    }

    fn status_get(&self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &[FORMAT], &["application", "include-data"])?;
        a.max_pos(0)?;
        if a.flag("application") {
            if !self.is_leader() {
                return Err(runtime(
                    "finding application status: this unit is not the leader",
                ));
            }
            return a.render(&json!({
                "application-status": Self::status_json(&self.state.app_status),
                "units": { self.unit.name(): Self::status_json(&self.state.unit_status) },
            }));
        }
        if a.flag("include-data") {
            a.render(&Self::status_json(&self.state.unit_status))
        } else {
            a.render(&json!(self.state.unit_status.name.as_str()))
        }
    }

    fn application_version_set(&mut self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &[], &[])?;
        a.max_pos(1)?;
        let v = a
            .pos
            .first()
            .cloned()
            .ok_or_else(|| usage("no version specified"))?;
        self.record.workload_version_history.push(v.clone());
        self.state.workload_version = v;
        Ok(vec![])
    }

    // -- leader settings ------------------------------------------------------

    fn leader_get(&self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &[FORMAT], &[])?;
        a.max_pos(1)?;
        match a.pos.first() {
            Some(k) if k != "-" => a.render(
                &self
                    .state
                    .leader_settings
                    .get(k)
                    .map_or(Value::Null, |v| json!(v)),
            ),
            _ => a.render(&json!(self.state.leader_settings)),
        }
    }

    fn leader_set(&mut self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &["file"], &[])?;
        let changes = key_values(&a.pos)?;
        if !self.is_leader() {
            return Err(runtime("cannot write settings: not the leader"));
        }
        for (k, v) in changes {
            if v.is_empty() {
                self.state.leader_settings.remove(&k);
            } else {
                self.state.leader_settings.insert(k, v);
            }
        }
        Ok(vec![])
    }

    // -- actions --------------------------------------------------------------

    fn action(&self) -> Result<&serde_json::Map<String, Value>, Fail> {
        self.action_params
            .as_ref()
            .ok_or_else(|| runtime("not running an action"))
    }

    fn action_get(&self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &[FORMAT], &[])?;
        a.max_pos(1)?;
        let params = Value::Object(self.action()?.clone());
        match a.pos.first() {
            None => a.render(&params),
            Some(key) => {
                let mut v = &params;
                for part in key.split('.') {
                    v = v.get(part).unwrap_or(&Value::Null);
                }
                a.render(v)
            }
        }
    }

    fn action_set(&mut self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &[], &[])?;
        self.action()?;
        let kvs = key_values(&a.pos)?;
        for k in kvs.keys() {
            validate_action_key(k).map_err(usage)?;
        }
        self.record.action_results.extend(kvs);
        Ok(vec![])
    }

    fn action_fail(&mut self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &[], &[])?;
        self.action()?;
        let msg = a.pos.join(" ");
        self.record.action_failure = Some(if msg.is_empty() {
            "action failed without reason given".into()
        } else {
            msg
        });
        Ok(vec![])
    }

    fn action_log(&mut self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &[], &[])?;
        self.action()?;
        if a.pos.is_empty() {
            return Err(usage("no message specified"));
        }
        self.record.action_logs.push(a.pos.join(" "));
        Ok(vec![])
    }

    fn juju_log(&mut self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &["l|log-level"], &["debug"])?;
        let level = match a.value("l") {
            Some(l) => {
                LogLevel::parse(l).ok_or_else(|| usage(format!("invalid log level {l:?}")))?
            }
            None if a.flag("debug") => LogLevel::Debug,
            None => LogLevel::Info,
        };
        if a.pos.is_empty() {
            return Err(usage("no message specified"));
        }
        self.record.juju_log.push(LogLine {
            level,
            message: a.pos.join(" "),
        });
        Ok(vec![])
    }

    // -- unit state -----------------------------------------------------------

    fn state_get(&self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &[FORMAT], &["strict"])?;
        a.max_pos(1)?;
        match a.pos.first() {
            None => a.render(&json!(self.state.unit_state)),
            Some(k) => match self.state.unit_state.get(k) {
                Some(v) => a.render(&json!(v)),
                None if a.flag("strict") => Err(runtime(format!("{k:?} not found"))),
                None => Ok(vec![]),
            },
        }
    }

    fn state_set(&mut self, args: &[String], stdin: Option<&[u8]>) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &["file"], &[])?;
        let mut changes = match a.value("file") {
            Some(p) => read_map_file(p, stdin)?,
            None => BTreeMap::new(),
        };
        changes.extend(key_values(&a.pos)?);
        let mut next = self.state.unit_state.clone();
        for (k, v) in changes {
            if k.len() > MAX_STATE_KEY {
                return Err(runtime(format!(
                    "key {k:?} too long: {} > {MAX_STATE_KEY} bytes",
                    k.len()
                )));
            }
            if v.len() > MAX_STATE_VALUE {
                return Err(runtime(format!(
                    "value of key {k:?} too large: {} > {MAX_STATE_VALUE} bytes",
                    v.len()
                )));
            }
            next.insert(k, v);
        }
        let total: usize = next.iter().map(|(k, v)| k.len() + v.len()).sum();
        if total > MAX_STATE_TOTAL {
            return Err(runtime(format!(
                "unit state of {total} bytes exceeds the maximum of {MAX_STATE_TOTAL} bytes (max-charm-state-size)"
            )));
        }
        self.state.unit_state = next;
        Ok(vec![])
    }

    fn state_delete(&mut self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &[], &[])?;
        a.max_pos(1)?;
        let k = a.pos.first().ok_or_else(|| usage("no key specified"))?;
        self.state.unit_state.remove(k);
        Ok(vec![])
    }

    // -- secrets --------------------------------------------------------------

    fn find_secret(&self, id: &str) -> Result<usize, Fail> {
        let want = canonical_secret_id(id);
        self.state
            .secrets
            .iter()
            .position(|s| canonical_secret_id(&s.id) == want)
            .ok_or_else(|| runtime(format!("secret {want:?} not found")))
    }

    fn find_secret_by_label(&self, label: &str) -> Result<usize, Fail> {
        self.state
            .secrets
            .iter()
            .position(|s| s.label.as_deref() == Some(label))
            .ok_or_else(|| runtime(format!("secret with label {label:?} not found")))
    }

    /// The secret at `idx` must be manageable by this unit.
    fn require_owner(&self, idx: usize) -> Result<(), Fail> {
        match self.state.secrets[idx].owner {
            Some(SecretOwner::Unit) => Ok(()),
            Some(SecretOwner::Application) if self.is_leader() => Ok(()),
            _ => Err(runtime("permission denied")),
        }
    }

    fn parse_content(items: &[String]) -> Result<SecretContent, Fail> {
        let mut content = BTreeMap::new();
        for item in items {
            let (key, value) = if let Some((k, path)) = item.split_once("#file=") {
                let v = std::fs::read_to_string(path).map_err(|e| {
                    usage(format!(
                        "cannot read secret content file for key {k:?}: {e}"
                    ))
                })?;
                (k.to_owned(), v)
            } else if let Some((k, b64)) = item.split_once("#base64=") {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| usage(format!("invalid base64 value for key {k:?}")))?;
                (k.to_owned(), String::from_utf8_lossy(&bytes).into_owned())
            } else if let Some((k, v)) = item.split_once('=') {
                (k.to_owned(), v.to_owned())
            } else {
                return Err(usage(format!(
                    "expected key=value, key#file=path or key#base64=value, got {:?}",
                    item.split('=').next().unwrap_or("")
                )));
            };
            validate_secret_key(&key).map_err(usage)?;
            content.insert(key, value);
        }
        Ok(SecretContent(content))
    }

    fn apply_meta(&mut self, idx: usize, a: &Args) -> Result<(), Fail> {
        if let Some(label) = a.value("label") {
            if self
                .state
                .secrets
                .iter()
                .enumerate()
                .any(|(i, s)| i != idx && s.label.as_deref() == Some(label))
            {
                return Err(runtime(format!(
                    "secret with label {label:?} already exists"
                )));
            }
        }
        let rotate = match a.value("rotate") {
            Some(r) => Some(
                RotatePolicy::parse(r)
                    .ok_or_else(|| usage(format!("invalid rotate policy {r:?}")))?,
            ),
            None => None,
        };
        let s = &mut self.state.secrets[idx];
        if let Some(l) = a.value("label") {
            s.label = Some(l.to_owned());
        }
        if let Some(d) = a.value("description") {
            s.description = Some(d.to_owned());
        }
        if let Some(e) = a.value("expire") {
            s.expire = Some(e.to_owned());
        }
        if rotate.is_some() {
            s.rotate = rotate;
        }
        Ok(())
    }

    fn secret_add(&mut self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(
            args,
            &["label", "description", "expire", "rotate", "owner"],
            &[],
        )?;
        let owner = match a.value("owner").unwrap_or("application") {
            "application" => SecretOwner::Application,
            "unit" => SecretOwner::Unit,
            other => {
                return Err(usage(format!(
                    "owner {other:?} not valid, expected \"application\" or \"unit\""
                )))
            }
        };
        let content = Self::parse_content(&a.pos)?;
        if content.0.is_empty() {
            return Err(usage("missing secret value"));
        }
        if owner == SecretOwner::Application && !self.is_leader() {
            return Err(runtime("permission denied"));
        }
        let secret = Secret {
            id: new_secret_id(),
            owner: Some(owner),
            revisions: BTreeMap::from([(1, content)]),
            tracked: 1,
            ..Secret::default()
        };
        let uri = secret.id.clone();
        self.state.secrets.push(secret);
        let idx = self.state.secrets.len() - 1;
        if let Err(e) = self.apply_meta(idx, &a) {
            self.state.secrets.pop();
            return Err(e);
        }
        Ok(format!("{uri}\n").into_bytes())
    }

    fn secret_get(&mut self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &[FORMAT, "label"], &["peek", "refresh"])?;
        a.max_pos(1)?;
        if a.flag("peek") && a.flag("refresh") {
            return Err(usage("specify one of --peek or --refresh but not both"));
        }
        let idx = match (a.pos.first(), a.value("label")) {
            (Some(uri), label) => {
                let idx = self.find_secret(uri)?;
                if let Some(l) = label {
                    if self
                        .state
                        .secrets
                        .iter()
                        .enumerate()
                        .any(|(i, s)| i != idx && s.label.as_deref() == Some(l))
                    {
                        return Err(runtime(format!("secret with label {l:?} already exists")));
                    }
                    self.state.secrets[idx].label = Some(l.to_owned());
                }
                idx
            }
            (None, Some(label)) => self.find_secret_by_label(label)?,
            (None, None) => return Err(usage("require either a secret URI or label")),
        };
        let s = &mut self.state.secrets[idx];
        let latest = s.latest_revision();
        let rev = if a.flag("peek") {
            latest
        } else if a.flag("refresh") {
            s.tracked = latest;
            latest
        } else {
            s.tracked
        };
        let content = s.revisions.get(&rev).ok_or_else(|| {
            runtime(format!(
                "secret {:?} revision {rev} not found",
                canonical_secret_id(&s.id)
            ))
        })?;
        a.render(&json!(content))
    }

    fn secret_info_get(&self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &[FORMAT, "label"], &[])?;
        a.max_pos(1)?;
        let idx = match (a.pos.first(), a.value("label")) {
            (Some(_), Some(_)) => {
                return Err(usage("specify either a secret URI or label but not both"))
            }
            (Some(uri), None) => self.find_secret(uri)?,
            (None, Some(l)) => self.find_secret_by_label(l)?,
            (None, None) => return Err(usage("require either a secret URI or label")),
        };
        let s = &self.state.secrets[idx];
        let Some(owner) = s.owner else {
            return Err(runtime(format!(
                "secret {:?} not found",
                canonical_secret_id(&s.id)
            )));
        };
        if owner == SecretOwner::Application && !self.is_leader() {
            return Err(runtime("permission denied"));
        }
        let mut info = serde_json::Map::new();
        info.insert("revision".into(), json!(s.latest_revision()));
        if let Some(l) = &s.label {
            info.insert("label".into(), json!(l));
        }
        info.insert("owner".into(), json!(owner.as_str()));
        if let Some(d) = &s.description {
            info.insert("description".into(), json!(d));
        }
        if let Some(r) = s.rotate {
            info.insert("rotation".into(), json!(r.as_str()));
        }
        if let Some(e) = &s.expire {
            info.insert("expiry".into(), json!(e));
        }
        let access: Vec<Value> = s
            .grants
            .iter()
            .flat_map(|(rel, who)| {
                let scope = self
                    .state
                    .relation(*rel)
                    .map_or_else(|| rel.to_string(), |r| format!("{}:{}", r.endpoint, r.id));
                who.iter()
                    .map(move |w| json!({"target": w, "scope": scope, "role": "view"}))
            })
            .collect();
        if !access.is_empty() {
            info.insert("access".into(), Value::Array(access));
        }
        a.render(&json!({ canonical_secret_id(&s.id): info }))
    }

    fn secret_set(&mut self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(
            args,
            &["label", "description", "expire", "rotate", "owner"],
            &[],
        )?;
        let uri = a.pos.first().ok_or_else(|| usage("missing secret URI"))?;
        let idx = self.find_secret(uri)?;
        self.require_owner(idx)?;
        let content = Self::parse_content(&a.pos[1..])?;
        self.apply_meta(idx, &a)?;
        let s = &mut self.state.secrets[idx];
        // Juju 3.6+: no new revision when the content is unchanged.
        if !content.0.is_empty() && s.latest_content() != Some(&content) {
            let next = s.latest_revision() + 1;
            s.revisions.insert(next, content);
        }
        Ok(vec![])
    }

    fn grant_target(&self, a: &Args, rel_idx: usize) -> String {
        match a.value("unit") {
            Some(u) => u.to_owned(),
            None => a
                .value("app")
                .map_or_else(|| self.remote_app_of(rel_idx), str::to_owned),
        }
    }

    fn secret_grant(&mut self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &["r|relation", "unit"], &[])?;
        a.max_pos(1)?;
        let uri = a.pos.first().ok_or_else(|| usage("missing secret URI"))?;
        let Some(rel) = a.value("r") else {
            return Err(usage("missing relation"));
        };
        let rel_idx = self.relation_index(Some(rel), "--relation")?;
        let idx = self.find_secret(uri)?;
        self.require_owner(idx)?;
        let target = self.grant_target(&a, rel_idx);
        let rel_id = self.state.relations[rel_idx].id;
        self.state.secrets[idx]
            .grants
            .entry(rel_id)
            .or_default()
            .insert(target);
        Ok(vec![])
    }

    fn secret_revoke(&mut self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &["r|relation", "unit", "app"], &[])?;
        a.max_pos(1)?;
        let uri = a.pos.first().ok_or_else(|| usage("missing secret URI"))?;
        let idx = self.find_secret(uri)?;
        self.require_owner(idx)?;
        match a.value("r") {
            None => {
                self.state.secrets[idx].grants.clear();
            }
            Some(rel) => {
                let rel_idx = self.relation_index(Some(rel), "--relation")?;
                let rel_id = self.state.relations[rel_idx].id;
                let scoped = a.value("unit").is_some() || a.value("app").is_some();
                let target = self.grant_target(&a, rel_idx);
                let grants = &mut self.state.secrets[idx].grants;
                if scoped {
                    if let Some(who) = grants.get_mut(&rel_id) {
                        who.remove(&target);
                        if who.is_empty() {
                            grants.remove(&rel_id);
                        }
                    }
                } else {
                    grants.remove(&rel_id);
                }
            }
        }
        Ok(vec![])
    }

    fn secret_remove(&mut self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &["revision"], &[])?;
        a.max_pos(1)?;
        let uri = a.pos.first().ok_or_else(|| usage("missing secret URI"))?;
        let idx = self.find_secret(uri)?;
        self.require_owner(idx)?;
        match a.value("revision") {
            Some(r) => {
                let rev: u32 = r
                    .parse()
                    .map_err(|_| usage(format!("invalid revision {r:?}")))?;
                let s = &mut self.state.secrets[idx];
                if s.revisions.remove(&rev).is_none() {
                    return Err(runtime(format!("secret revision {rev} not found")));
                }
                s.removed_revisions.insert(rev);
            }
            None => {
                self.state.secrets.remove(idx);
            }
        }
        Ok(vec![])
    }

    fn secret_ids(&self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &[FORMAT], &[])?;
        a.max_pos(0)?;
        let ids: Vec<Value> = self
            .state
            .secrets
            .iter()
            .filter(|s| match s.owner {
                Some(SecretOwner::Unit) => true,
                Some(SecretOwner::Application) => self.is_leader(),
                None => false,
            })
            .map(|s| json!(s.id))
            .collect();
        a.render(&Value::Array(ids))
    }

    // -- ports and network ----------------------------------------------------

    fn port_change(&mut self, args: &[String], open: bool) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &["endpoints"], &[])?;
        a.max_pos(1)?;
        let text = a
            .pos
            .first()
            .ok_or_else(|| usage("no port or range specified"))?;
        let port: Port = text.parse().map_err(|_| usage(format!("invalid port {text:?}: expected <port>[/<protocol>], <from>-<to>[/<protocol>] or icmp")))?;
        if let Some(eps) = a.value("endpoints") {
            for ep in eps.split(',').filter(|e| !e.is_empty()) {
                if !self.meta.endpoints.contains_key(ep) {
                    return Err(runtime(format!("endpoint {ep:?} not found")));
                }
            }
        }
        if open {
            self.state.opened_ports.insert(port);
        } else {
            self.state.opened_ports.remove(&port);
        }
        Ok(vec![])
    }

    fn opened_ports(&self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &[FORMAT], &["endpoints"])?;
        a.max_pos(0)?;
        let ports: Vec<Value> = self
            .state
            .opened_ports
            .iter()
            .map(|p| {
                if a.flag("endpoints") {
                    json!(format!("{p} (*)"))
                } else {
                    json!(p.to_string())
                }
            })
            .collect();
        a.render(&Value::Array(ports))
    }

    fn default_network() -> Network {
        serde_json::from_value(json!({
            "bind-addresses": [{"mac-address": "", "interface-name": "eth0",
                                "addresses": [{"hostname": "", "value": "10.0.0.10", "cidr": "10.0.0.0/24"}]}],
            "egress-subnets": ["10.0.0.10/32"],
            "ingress-addresses": ["10.0.0.10"],
        }))
        .expect("a literal network parses")
    }

    fn network_get(&self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(
            args,
            &[FORMAT, "r|relation"],
            &[
                "primary-address",
                "bind-address",
                "ingress-address",
                "egress-subnets",
            ],
        )?;
        a.max_pos(1)?;
        if let Some(r) = a.value("r") {
            self.relation_index(Some(r), "-r")?;
        }
        let binding = a
            .pos
            .first()
            .ok_or_else(|| usage("no endpoint specified"))?;
        let net = match self.state.networks.get(binding) {
            Some(n) => n.clone(),
            None if self.meta.endpoints.contains_key(binding) || binding == "juju-info" => {
                Self::default_network()
            }
            None => {
                return Err(runtime(format!(
                    "no network config found for binding {binding:?}"
                )))
            }
        };
        a.render(&serde_json::to_value(net).expect("networks serialise"))
    }

    fn goal_state(&self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &[FORMAT], &[])?;
        a.max_pos(0)?;
        let since = "2026-01-01T00:00:00Z";
        let mut names: Vec<String> = vec![self.unit.name()];
        for rel in self.state.relations.iter().filter(|r| r.peer) {
            for n in rel.remote_units.keys() {
                let u = format!("{}/{n}", self.unit.app);
                if !names.contains(&u) {
                    names.push(u);
                }
            }
        }
        let mut next = 0;
        while names.len() < self.state.planned_units as usize {
            let u = format!("{}/{next}", self.unit.app);
            if !names.contains(&u) {
                names.push(u);
            }
            next += 1;
        }
        let planned = self.state.planned_units as usize;
        let units: serde_json::Map<String, Value> = names
            .iter()
            .enumerate()
            .map(|(i, u)| {
                // Units beyond the plan are on their way out.
                let status = if i < planned.max(1) {
                    "active"
                } else {
                    "dying"
                };
                (u.clone(), json!({"status": status, "since": since}))
            })
            .collect();
        let mut relations = serde_json::Map::new();
        for rel in self.state.relations.iter().filter(|r| !r.peer) {
            let entry = relations
                .entry(rel.endpoint.clone())
                .or_insert_with(|| json!({}));
            entry[&rel.remote_app] = json!({"status": "joined", "since": since});
            for n in rel.remote_units.keys() {
                entry[format!("{}/{n}", rel.remote_app)] =
                    json!({"status": "active", "since": since});
            }
        }
        a.render(&json!({"units": units, "relations": relations}))
    }

    fn credential_get(&self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &[FORMAT], &[])?;
        a.max_pos(0)?;
        match &self.state.cloud_spec {
            Some(spec) => a.render(&serde_json::to_value(spec).expect("cloud specs serialise")),
            None => Err(runtime("cannot access cloud credentials: permission denied (run `juju trust` on the application)")),
        }
    }

    fn resource_get(&self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &[], &[])?;
        a.max_pos(1)?;
        let name = a
            .pos
            .first()
            .ok_or_else(|| usage("missing required resource name"))?;
        match self.state.resources.get(name) {
            Some(p) => Ok(format!("{}\n", p.display()).into_bytes()),
            None => Err(runtime(format!(
                "could not download resource: resource {name:?} not found"
            ))),
        }
    }

    // -- storage --------------------------------------------------------------

    fn storage_list(&self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &[FORMAT], &[])?;
        a.max_pos(1)?;
        let ids: Vec<Value> = self
            .state
            .storages
            .iter()
            .filter(|s| a.pos.first().is_none_or(|n| *n == s.name))
            .map(|s| json!(format!("{}/{}", s.name, s.index)))
            .collect();
        a.render(&Value::Array(ids))
    }

    fn storage_get(&self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &[FORMAT, "s"], &[])?;
        a.max_pos(1)?;
        let id = match (a.value("s"), &self.event) {
            (Some(s), _) => s.to_owned(),
            (None, Event::StorageAttached(e) | Event::StorageDetaching(e)) => e.storage_id.clone(),
            (None, _) => return Err(usage("no storage instance specified")),
        };
        let found = self
            .state
            .storages
            .iter()
            .find(|s| format!("{}/{}", s.name, s.index) == id);
        let Some(s) = found else {
            return Err(usage(format!(
                "invalid value {id:?} for option -s: storage instance not found"
            )));
        };
        let info = json!({"kind": s.kind, "location": s.location});
        match a.pos.first() {
            Some(k) => a.render(info.get(k.as_str()).unwrap_or(&Value::Null)),
            None => a.render(&info),
        }
    }

    fn storage_add(&mut self, args: &[String]) -> Result<Vec<u8>, Fail> {
        let a = Args::parse(args, &[], &[])?;
        if a.pos.is_empty() {
            return Err(usage("storage add requires a storage directive"));
        }
        for item in &a.pos {
            let (name, count) = match item.split_once('=') {
                Some((n, c)) => (
                    n,
                    c.parse::<u32>()
                        .map_err(|_| usage(format!("invalid storage count in {item:?}")))?,
                ),
                None => (item.as_str(), 1),
            };
            if !self.meta.storage.contains_key(name) {
                return Err(runtime(format!("storage {name:?} not found")));
            }
            *self
                .state
                .storage_requested
                .entry(name.to_owned())
                .or_default() += count;
        }
        Ok(vec![])
    }
}

#[cfg(test)]
mod tests;
