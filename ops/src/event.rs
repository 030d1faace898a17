//! Which event this dispatch is: the closed [`Event`] enum.
//!
//! Juju names the event in `JUJU_DISPATCH_PATH` (`hooks/<hook>` or
//! `actions/<action>`) and passes its details in other variables
//! (juju.md §1.2–1.3). [`Event::from_context`] turns that into one value of a
//! closed enum, so a charm handles events with a `match` that has no wildcard
//! arm and a new event kind is a compile error, not a silent no-op.
//!
//! Endpoint, container and storage names may contain `-`, so per-endpoint
//! hook names are parsed by their suffix (`-relation-changed`,
//! `-pebble-ready`, …). Names we do not know become [`Event::Unknown`], which
//! the dispatcher ignores with exit status 0 (juju.md §1.1: that keeps
//! rollbacks working).
//!
//! Events are `Serialize`/`Deserialize` with every field they need, because
//! a deferred event is stored in Juju's unit state and re-run in a later hook
//! where the environment describes a different event.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::context::JujuContext;
use crate::hookcmds::RelationId;

/// A Juju event, with everything the charm needs to handle it.
///
/// Deliberately not `#[non_exhaustive]`: charms match it exhaustively.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", content = "data", rename_all = "kebab-case")]
pub enum Event {
    /// `install`: the first hook of a new unit (and of every new pod).
    Install,
    /// `start`.
    Start,
    /// `stop`: the pod is going away (refresh, reschedule, removal).
    Stop,
    /// `remove`: the last hook of a unit.
    Remove,
    /// `config-changed`: also after install, upgrade, trust and address changes.
    ConfigChanged,
    /// `update-status`: periodic (5 minutes by default).
    UpdateStatus,
    /// `upgrade-charm`: a new charm revision is in place.
    UpgradeCharm,
    /// `leader-elected`: this unit is now the leader.
    LeaderElected,
    /// `leader-settings-changed` (deprecated by Juju).
    LeaderSettingsChanged,
    /// `collect-metrics` (restricted context; gone in Juju 3.6.11+/4).
    CollectMetrics,
    /// `<endpoint>-relation-created`.
    RelationCreated(RelationEvent),
    /// `<endpoint>-relation-joined`: one per remote unit.
    RelationJoined(RelationEvent),
    /// `<endpoint>-relation-changed`: `remote_unit` is `None` when the remote
    /// application bag changed.
    RelationChanged(RelationEvent),
    /// `<endpoint>-relation-departed`.
    RelationDeparted(RelationDepartedEvent),
    /// `<endpoint>-relation-broken`: the relation is gone; the model hides it.
    RelationBroken(RelationEvent),
    /// `<container>-pebble-ready`: only a hint that Pebble was up.
    PebbleReady(WorkloadEvent),
    /// `<container>-pebble-custom-notice`.
    PebbleCustomNotice(NoticeEvent),
    /// `<container>-pebble-check-failed`.
    PebbleCheckFailed(CheckEvent),
    /// `<container>-pebble-check-recovered`.
    PebbleCheckRecovered(CheckEvent),
    /// `<storage>-storage-attached`.
    StorageAttached(StorageEvent),
    /// `<storage>-storage-detaching`.
    StorageDetaching(StorageEvent),
    /// `secret-changed`: a secret this unit consumes has a new revision.
    SecretChanged(SecretEvent),
    /// `secret-rotate`: an owned secret is due for rotation.
    SecretRotate(SecretEvent),
    /// `secret-expired`: a revision of an owned secret expired.
    SecretExpired(SecretRevisionEvent),
    /// `secret-remove`: a revision of an owned secret is no longer tracked.
    SecretRemove(SecretRevisionEvent),
    /// An action from `actions.yaml`.
    Action(ActionEvent),
    /// An event this framework does not know. The dispatcher exits 0 without
    /// calling the charm; the variant exists so a handler's `match` can be
    /// exhaustive.
    Unknown(String),
}

/// The details of a relation event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationEvent {
    /// The relation, `<endpoint>:<id>`.
    pub relation: RelationId,
    /// The remote application (`JUJU_REMOTE_APP`).
    pub remote_app: String,
    /// The remote unit (`JUJU_REMOTE_UNIT`), when the event is about one.
    pub remote_unit: Option<String>,
}

/// The details of a `-relation-departed` event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationDepartedEvent {
    /// The relation, `<endpoint>:<id>`.
    pub relation: RelationId,
    /// The remote application.
    pub remote_app: String,
    /// The remote unit the hook is about.
    pub remote_unit: Option<String>,
    /// The unit leaving (`JUJU_DEPARTING_UNIT`); may be this unit itself.
    pub departing_unit: String,
}

/// The details of a workload (`pebble-ready`) event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadEvent {
    /// The container name (`JUJU_WORKLOAD_NAME`).
    pub container: String,
}

/// The details of a `-pebble-custom-notice` event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeEvent {
    /// The container name.
    pub container: String,
    /// `JUJU_NOTICE_ID`.
    pub notice_id: String,
    /// `JUJU_NOTICE_TYPE` (`custom`).
    pub notice_type: String,
    /// `JUJU_NOTICE_KEY`, for example `example.com/reload`.
    pub notice_key: String,
}

/// The details of a `-pebble-check-failed` / `-recovered` event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckEvent {
    /// The container name.
    pub container: String,
    /// The check (`JUJU_PEBBLE_CHECK_NAME`).
    pub check: String,
}

/// The details of a storage event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageEvent {
    /// The storage name from metadata, for example `data`.
    pub name: String,
    /// The storage instance, `JUJU_STORAGE_ID` (for example `data/0`).
    pub storage_id: String,
    /// `JUJU_STORAGE_LOCATION`.
    pub location: Option<PathBuf>,
    /// `JUJU_STORAGE_KIND`.
    pub kind: Option<String>,
}

/// The details of `secret-changed` and `secret-rotate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretEvent {
    /// The secret URI (`JUJU_SECRET_ID`).
    pub id: String,
    /// The label this unit gave the secret, if any (`JUJU_SECRET_LABEL`).
    pub label: Option<String>,
}

/// The details of `secret-expired` and `secret-remove`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRevisionEvent {
    /// The secret URI.
    pub id: String,
    /// The label, if any.
    pub label: Option<String>,
    /// The revision concerned (`JUJU_SECRET_REVISION`).
    pub revision: u32,
}

/// The details of an action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionEvent {
    /// The action name (`JUJU_ACTION_NAME`).
    pub name: String,
    /// The action id (`JUJU_ACTION_UUID`, for example `"12"`).
    pub uuid: String,
}

/// The environment describes a known event but lacks what it needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse event {hook:?}: {problem}")]
pub struct EventError {
    /// The hook or action name from `JUJU_DISPATCH_PATH`.
    pub hook: String,
    /// What is missing or wrong.
    pub problem: String,
}

const SIMPLE: &[(&str, Event)] = &[
    ("install", Event::Install),
    ("start", Event::Start),
    ("stop", Event::Stop),
    ("remove", Event::Remove),
    ("config-changed", Event::ConfigChanged),
    ("update-status", Event::UpdateStatus),
    ("upgrade-charm", Event::UpgradeCharm),
    ("leader-elected", Event::LeaderElected),
    ("leader-settings-changed", Event::LeaderSettingsChanged),
    ("collect-metrics", Event::CollectMetrics),
];

/// The per-endpoint/container/storage suffixes, each mapped to a kind.
#[derive(Clone, Copy)]
enum Suffixed {
    Relation(RelKind),
    PebbleReady,
    CustomNotice,
    CheckFailed,
    CheckRecovered,
    StorageAttached,
    StorageDetaching,
}

#[derive(Clone, Copy, PartialEq)]
enum RelKind {
    Created,
    Joined,
    Changed,
    Departed,
    Broken,
}

const SUFFIXES: &[(&str, Suffixed)] = &[
    ("-relation-created", Suffixed::Relation(RelKind::Created)),
    ("-relation-joined", Suffixed::Relation(RelKind::Joined)),
    ("-relation-changed", Suffixed::Relation(RelKind::Changed)),
    ("-relation-departed", Suffixed::Relation(RelKind::Departed)),
    ("-relation-broken", Suffixed::Relation(RelKind::Broken)),
    ("-pebble-ready", Suffixed::PebbleReady),
    ("-pebble-custom-notice", Suffixed::CustomNotice),
    ("-pebble-check-failed", Suffixed::CheckFailed),
    ("-pebble-check-recovered", Suffixed::CheckRecovered),
    ("-storage-attached", Suffixed::StorageAttached),
    ("-storage-detaching", Suffixed::StorageDetaching),
];

impl Event {
    /// Parses the event this process was dispatched for.
    ///
    /// Unknown hook names give `Ok(Event::Unknown(..))`; a known event whose
    /// variables are missing or inconsistent is an [`EventError`].
    pub fn from_context(ctx: &JujuContext) -> Result<Event, EventError> {
        let path = ctx.dispatch_path.as_str();
        if let Some(action) = path.strip_prefix("actions/") {
            let err = |problem: &str| EventError {
                hook: action.to_owned(),
                problem: problem.to_owned(),
            };
            if action.is_empty() {
                return Ok(Event::Unknown(path.to_owned()));
            }
            if let Some(name) = &ctx.action_name {
                if name != action {
                    return Err(err(&format!(
                        "JUJU_ACTION_NAME is {name:?} but the dispatch path names {action:?}"
                    )));
                }
            }
            let uuid = ctx
                .action_uuid
                .clone()
                .ok_or_else(|| err("JUJU_ACTION_UUID is not set"))?;
            return Ok(Event::Action(ActionEvent {
                name: action.to_owned(),
                uuid,
            }));
        }
        let Some(hook) = path.strip_prefix("hooks/") else {
            return Ok(Event::Unknown(path.to_owned()));
        };
        if let Some((_, event)) = SIMPLE.iter().find(|(name, _)| *name == hook) {
            return Ok(event.clone());
        }
        let err = |problem: String| EventError {
            hook: hook.to_owned(),
            problem,
        };
        let need = |value: &Option<String>, var: &str| {
            value
                .clone()
                .ok_or_else(|| err(format!("{var} is not set")))
        };
        match hook {
            "secret-changed" | "secret-rotate" => {
                let ev = SecretEvent {
                    id: need(&ctx.secret_id, "JUJU_SECRET_ID")?,
                    label: ctx.secret_label.clone(),
                };
                return Ok(if hook == "secret-changed" {
                    Event::SecretChanged(ev)
                } else {
                    Event::SecretRotate(ev)
                });
            }
            "secret-expired" | "secret-remove" => {
                let ev = SecretRevisionEvent {
                    id: need(&ctx.secret_id, "JUJU_SECRET_ID")?,
                    label: ctx.secret_label.clone(),
                    revision: ctx
                        .secret_revision
                        .ok_or_else(|| err("JUJU_SECRET_REVISION is not set".to_owned()))?,
                };
                return Ok(if hook == "secret-expired" {
                    Event::SecretExpired(ev)
                } else {
                    Event::SecretRemove(ev)
                });
            }
            _ => {}
        }
        let Some((prefix, kind)) = SUFFIXES.iter().find_map(|(suffix, kind)| {
            hook.strip_suffix(suffix)
                .filter(|p| !p.is_empty())
                .map(|p| (p, *kind))
        }) else {
            return Ok(Event::Unknown(hook.to_owned()));
        };

        match kind {
            Suffixed::Relation(rel) => {
                let id_text = need(&ctx.relation_id, "JUJU_RELATION_ID")?;
                let relation: RelationId = id_text.parse().map_err(|_| {
                    err(format!(
                        "JUJU_RELATION_ID {id_text:?} is not of the form <endpoint>:<id>"
                    ))
                })?;
                if relation.endpoint != prefix {
                    return Err(err(format!(
                        "JUJU_RELATION_ID {id_text:?} is not a relation of endpoint {prefix:?}"
                    )));
                }
                let remote_app = need(&ctx.remote_app, "JUJU_REMOTE_APP")?;
                let remote_unit = ctx.remote_unit.clone();
                let ev = RelationEvent {
                    relation,
                    remote_app,
                    remote_unit,
                };
                Ok(match rel {
                    RelKind::Created => Event::RelationCreated(ev),
                    RelKind::Joined => Event::RelationJoined(ev),
                    RelKind::Changed => Event::RelationChanged(ev),
                    RelKind::Broken => Event::RelationBroken(ev),
                    RelKind::Departed => Event::RelationDeparted(RelationDepartedEvent {
                        departing_unit: need(&ctx.departing_unit, "JUJU_DEPARTING_UNIT")?,
                        relation: ev.relation,
                        remote_app: ev.remote_app,
                        remote_unit: ev.remote_unit,
                    }),
                })
            }
            Suffixed::PebbleReady
            | Suffixed::CustomNotice
            | Suffixed::CheckFailed
            | Suffixed::CheckRecovered => {
                let container = match &ctx.workload_name {
                    Some(name) if name != prefix => {
                        return Err(err(format!(
                            "JUJU_WORKLOAD_NAME is {name:?} but the hook names container {prefix:?}"
                        )))
                    }
                    _ => prefix.to_owned(),
                };
                Ok(match kind {
                    Suffixed::PebbleReady => Event::PebbleReady(WorkloadEvent { container }),
                    Suffixed::CustomNotice => Event::PebbleCustomNotice(NoticeEvent {
                        container,
                        notice_id: need(&ctx.notice_id, "JUJU_NOTICE_ID")?,
                        notice_type: need(&ctx.notice_type, "JUJU_NOTICE_TYPE")?,
                        notice_key: need(&ctx.notice_key, "JUJU_NOTICE_KEY")?,
                    }),
                    Suffixed::CheckFailed => Event::PebbleCheckFailed(CheckEvent {
                        container,
                        check: need(&ctx.pebble_check_name, "JUJU_PEBBLE_CHECK_NAME")?,
                    }),
                    _ => Event::PebbleCheckRecovered(CheckEvent {
                        container,
                        check: need(&ctx.pebble_check_name, "JUJU_PEBBLE_CHECK_NAME")?,
                    }),
                })
            }
            Suffixed::StorageAttached | Suffixed::StorageDetaching => {
                let storage_id = need(&ctx.storage_id, "JUJU_STORAGE_ID")?;
                if storage_id.split_once('/').map(|(n, _)| n) != Some(prefix) {
                    return Err(err(format!(
                        "JUJU_STORAGE_ID {storage_id:?} is not an instance of storage {prefix:?}"
                    )));
                }
                let ev = StorageEvent {
                    name: prefix.to_owned(),
                    storage_id,
                    location: ctx.storage_location.clone(),
                    kind: ctx.storage_kind.clone(),
                };
                Ok(if matches!(kind, Suffixed::StorageAttached) {
                    Event::StorageAttached(ev)
                } else {
                    Event::StorageDetaching(ev)
                })
            }
        }
    }

    /// The hook or action name Juju would dispatch this event as, for example
    /// `db-relation-changed` or `backup` (for an action).
    pub fn name(&self) -> String {
        match self {
            Event::Install => "install".into(),
            Event::Start => "start".into(),
            Event::Stop => "stop".into(),
            Event::Remove => "remove".into(),
            Event::ConfigChanged => "config-changed".into(),
            Event::UpdateStatus => "update-status".into(),
            Event::UpgradeCharm => "upgrade-charm".into(),
            Event::LeaderElected => "leader-elected".into(),
            Event::LeaderSettingsChanged => "leader-settings-changed".into(),
            Event::CollectMetrics => "collect-metrics".into(),
            Event::RelationCreated(e) => format!("{}-relation-created", e.relation.endpoint),
            Event::RelationJoined(e) => format!("{}-relation-joined", e.relation.endpoint),
            Event::RelationChanged(e) => format!("{}-relation-changed", e.relation.endpoint),
            Event::RelationDeparted(e) => format!("{}-relation-departed", e.relation.endpoint),
            Event::RelationBroken(e) => format!("{}-relation-broken", e.relation.endpoint),
            Event::PebbleReady(e) => format!("{}-pebble-ready", e.container),
            Event::PebbleCustomNotice(e) => format!("{}-pebble-custom-notice", e.container),
            Event::PebbleCheckFailed(e) => format!("{}-pebble-check-failed", e.container),
            Event::PebbleCheckRecovered(e) => format!("{}-pebble-check-recovered", e.container),
            Event::StorageAttached(e) => format!("{}-storage-attached", e.name),
            Event::StorageDetaching(e) => format!("{}-storage-detaching", e.name),
            Event::SecretChanged(_) => "secret-changed".into(),
            Event::SecretRotate(_) => "secret-rotate".into(),
            Event::SecretExpired(_) => "secret-expired".into(),
            Event::SecretRemove(_) => "secret-remove".into(),
            Event::Action(a) => a.name.clone(),
            Event::Unknown(name) => name.clone(),
        }
    }

    /// The `JUJU_DISPATCH_PATH` of this event.
    pub fn dispatch_path(&self) -> String {
        match self {
            Event::Action(a) => format!("actions/{}", a.name),
            Event::Unknown(name) if name.contains('/') => name.clone(),
            other => format!("hooks/{}", other.name()),
        }
    }

    /// True for actions, which Juju runs on request and which cannot be
    /// deferred.
    pub fn is_action(&self) -> bool {
        matches!(self, Event::Action(_))
    }

    /// The event-specific environment variables Juju sets for this event
    /// (juju.md §1.2), including `JUJU_DISPATCH_PATH` and `JUJU_HOOK_NAME`.
    ///
    /// This is the inverse of [`Event::from_context`]; the test harness and
    /// the binary-level fakes use it to run a charm exactly as Juju would.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = Vec::new();
        let mut set = |k: &str, v: &str| vars.push((k.to_owned(), v.to_owned()));
        set("JUJU_DISPATCH_PATH", &self.dispatch_path());
        let hook_name = if self.is_action() {
            String::new()
        } else {
            self.name()
        };
        set("JUJU_HOOK_NAME", &hook_name);
        let relation = |set: &mut dyn FnMut(&str, &str), e: &RelationEvent| {
            set("JUJU_RELATION", &e.relation.endpoint);
            set("JUJU_RELATION_ID", &e.relation.to_string());
            set("JUJU_REMOTE_APP", &e.remote_app);
            set("JUJU_REMOTE_UNIT", e.remote_unit.as_deref().unwrap_or(""));
        };
        match self {
            Event::RelationCreated(e)
            | Event::RelationJoined(e)
            | Event::RelationChanged(e)
            | Event::RelationBroken(e) => relation(&mut set, e),
            Event::RelationDeparted(e) => {
                set("JUJU_RELATION", &e.relation.endpoint);
                set("JUJU_RELATION_ID", &e.relation.to_string());
                set("JUJU_REMOTE_APP", &e.remote_app);
                set("JUJU_REMOTE_UNIT", e.remote_unit.as_deref().unwrap_or(""));
                set("JUJU_DEPARTING_UNIT", &e.departing_unit);
            }
            Event::PebbleReady(e) => set("JUJU_WORKLOAD_NAME", &e.container),
            Event::PebbleCustomNotice(e) => {
                set("JUJU_WORKLOAD_NAME", &e.container);
                set("JUJU_NOTICE_ID", &e.notice_id);
                set("JUJU_NOTICE_TYPE", &e.notice_type);
                set("JUJU_NOTICE_KEY", &e.notice_key);
            }
            Event::PebbleCheckFailed(e) | Event::PebbleCheckRecovered(e) => {
                set("JUJU_WORKLOAD_NAME", &e.container);
                set("JUJU_PEBBLE_CHECK_NAME", &e.check);
            }
            Event::StorageAttached(e) | Event::StorageDetaching(e) => {
                set("JUJU_STORAGE_ID", &e.storage_id);
                if let Some(l) = &e.location {
                    set("JUJU_STORAGE_LOCATION", &l.to_string_lossy());
                }
                if let Some(k) = &e.kind {
                    set("JUJU_STORAGE_KIND", k);
                }
            }
            Event::SecretChanged(e) | Event::SecretRotate(e) => {
                set("JUJU_SECRET_ID", &e.id);
                set("JUJU_SECRET_LABEL", e.label.as_deref().unwrap_or(""));
            }
            Event::SecretExpired(e) | Event::SecretRemove(e) => {
                set("JUJU_SECRET_ID", &e.id);
                set("JUJU_SECRET_LABEL", e.label.as_deref().unwrap_or(""));
                set("JUJU_SECRET_REVISION", &e.revision.to_string());
            }
            Event::Action(a) => {
                set("JUJU_ACTION_NAME", &a.name);
                set("JUJU_ACTION_UUID", &a.uuid);
                set("JUJU_ACTION_TAG", &format!("action-{}", a.uuid));
            }
            Event::Install
            | Event::Start
            | Event::Stop
            | Event::Remove
            | Event::ConfigChanged
            | Event::UpdateStatus
            | Event::UpgradeCharm
            | Event::LeaderElected
            | Event::LeaderSettingsChanged
            | Event::CollectMetrics
            | Event::Unknown(_) => {}
        }
        vars
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(extra: &[(&str, &str)]) -> JujuContext {
        let mut vars = vec![
            ("JUJU_UNIT_NAME", "app/0"),
            ("JUJU_MODEL_NAME", "m"),
            ("JUJU_MODEL_UUID", "u"),
            ("JUJU_CHARM_DIR", "/c"),
            ("JUJU_VERSION", "3.6.4"),
        ];
        vars.extend_from_slice(extra);
        JujuContext::from_vars(vars).unwrap()
    }

    fn rel(ep: &str, id: u64) -> RelationId {
        RelationId::new(ep, id)
    }

    /// Parses `path` with `env` and compares with `expected`; then checks the
    /// event's own environment parses back to the same event.
    fn check(path: &str, env: &[(&str, &str)], expected: Event) {
        let mut vars = vec![("JUJU_DISPATCH_PATH", path)];
        vars.extend_from_slice(env);
        let got = Event::from_context(&ctx(&vars)).unwrap();
        assert_eq!(got, expected, "{path}");
        let round: Vec<(String, String)> = got.env_vars();
        let round: Vec<(&str, &str)> = round
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            Event::from_context(&ctx(&round)).unwrap(),
            expected,
            "round trip of {path}"
        );
        let json = serde_json::to_string(&got).unwrap();
        assert_eq!(
            serde_json::from_str::<Event>(&json).unwrap(),
            expected,
            "{json}"
        );
    }

    #[test]
    fn lifecycle_hooks_parse_by_exact_name() {
        for (name, event) in SIMPLE {
            check(&format!("hooks/{name}"), &[], event.clone());
            assert_eq!(event.name(), *name);
        }
    }

    #[test]
    fn relation_hooks_parse_by_suffix_even_with_hyphenated_endpoints() {
        let env = [
            ("JUJU_RELATION", "nginx-route"),
            ("JUJU_RELATION_ID", "nginx-route:12"),
            ("JUJU_REMOTE_APP", "ingress-k8s"),
            ("JUJU_REMOTE_UNIT", "ingress-k8s/1"),
        ];
        let ev = || RelationEvent {
            relation: rel("nginx-route", 12),
            remote_app: "ingress-k8s".into(),
            remote_unit: Some("ingress-k8s/1".into()),
        };
        check(
            "hooks/nginx-route-relation-joined",
            &env,
            Event::RelationJoined(ev()),
        );
        check(
            "hooks/nginx-route-relation-changed",
            &env,
            Event::RelationChanged(ev()),
        );
        let mut app_level = env;
        app_level[3] = ("JUJU_REMOTE_UNIT", "");
        check(
            "hooks/nginx-route-relation-changed",
            &app_level,
            Event::RelationChanged(RelationEvent {
                remote_unit: None,
                ..ev()
            }),
        );
        check(
            "hooks/nginx-route-relation-created",
            &app_level,
            Event::RelationCreated(RelationEvent {
                remote_unit: None,
                ..ev()
            }),
        );
        check(
            "hooks/nginx-route-relation-broken",
            &app_level,
            Event::RelationBroken(RelationEvent {
                remote_unit: None,
                ..ev()
            }),
        );
        let mut departed = env.to_vec();
        departed.push(("JUJU_DEPARTING_UNIT", "ingress-k8s/1"));
        check(
            "hooks/nginx-route-relation-departed",
            &departed,
            Event::RelationDeparted(RelationDepartedEvent {
                relation: rel("nginx-route", 12),
                remote_app: "ingress-k8s".into(),
                remote_unit: Some("ingress-k8s/1".into()),
                departing_unit: "ingress-k8s/1".into(),
            }),
        );
    }

    #[test]
    fn an_endpoint_named_like_a_suffix_still_parses() {
        // The endpoint itself ends in "-pebble-ready": only the final suffix counts.
        let env = [
            ("JUJU_RELATION_ID", "x-pebble-ready:3"),
            ("JUJU_REMOTE_APP", "other"),
            ("JUJU_REMOTE_UNIT", "other/0"),
        ];
        check(
            "hooks/x-pebble-ready-relation-changed",
            &env,
            Event::RelationChanged(RelationEvent {
                relation: rel("x-pebble-ready", 3),
                remote_app: "other".into(),
                remote_unit: Some("other/0".into()),
            }),
        );
        check(
            "hooks/db-relation-pebble-ready",
            &[("JUJU_WORKLOAD_NAME", "db-relation")],
            Event::PebbleReady(WorkloadEvent {
                container: "db-relation".into(),
            }),
        );
    }

    #[test]
    fn workload_hooks_parse_with_their_details() {
        check(
            "hooks/live-patch-pebble-ready",
            &[("JUJU_WORKLOAD_NAME", "live-patch")],
            Event::PebbleReady(WorkloadEvent {
                container: "live-patch".into(),
            }),
        );
        check(
            "hooks/web-pebble-custom-notice",
            &[
                ("JUJU_WORKLOAD_NAME", "web"),
                ("JUJU_NOTICE_ID", "7"),
                ("JUJU_NOTICE_TYPE", "custom"),
                ("JUJU_NOTICE_KEY", "example.com/reload"),
            ],
            Event::PebbleCustomNotice(NoticeEvent {
                container: "web".into(),
                notice_id: "7".into(),
                notice_type: "custom".into(),
                notice_key: "example.com/reload".into(),
            }),
        );
        let check_env = [
            ("JUJU_WORKLOAD_NAME", "web"),
            ("JUJU_PEBBLE_CHECK_NAME", "up"),
        ];
        let ce = || CheckEvent {
            container: "web".into(),
            check: "up".into(),
        };
        check(
            "hooks/web-pebble-check-failed",
            &check_env,
            Event::PebbleCheckFailed(ce()),
        );
        check(
            "hooks/web-pebble-check-recovered",
            &check_env,
            Event::PebbleCheckRecovered(ce()),
        );
    }

    #[test]
    fn storage_hooks_parse_with_hyphenated_names() {
        let env = [
            ("JUJU_STORAGE_ID", "patch-store/0"),
            ("JUJU_STORAGE_LOCATION", "/srv/patches"),
            ("JUJU_STORAGE_KIND", "filesystem"),
        ];
        let ev = || StorageEvent {
            name: "patch-store".into(),
            storage_id: "patch-store/0".into(),
            location: Some("/srv/patches".into()),
            kind: Some("filesystem".into()),
        };
        check(
            "hooks/patch-store-storage-attached",
            &env,
            Event::StorageAttached(ev()),
        );
        check(
            "hooks/patch-store-storage-detaching",
            &env,
            Event::StorageDetaching(ev()),
        );
    }

    #[test]
    fn secret_hooks_parse_with_label_and_revision() {
        let uri = "secret:cj1sq3ivr6rc7a3q1sbg";
        check(
            "hooks/secret-changed",
            &[
                ("JUJU_SECRET_ID", uri),
                ("JUJU_SECRET_LABEL", "db.7.user.secret"),
            ],
            Event::SecretChanged(SecretEvent {
                id: uri.into(),
                label: Some("db.7.user.secret".into()),
            }),
        );
        check(
            "hooks/secret-rotate",
            &[("JUJU_SECRET_ID", uri), ("JUJU_SECRET_LABEL", "")],
            Event::SecretRotate(SecretEvent {
                id: uri.into(),
                label: None,
            }),
        );
        let rev = |revision| SecretRevisionEvent {
            id: uri.into(),
            label: None,
            revision,
        };
        check(
            "hooks/secret-remove",
            &[("JUJU_SECRET_ID", uri), ("JUJU_SECRET_REVISION", "3")],
            Event::SecretRemove(rev(3)),
        );
        check(
            "hooks/secret-expired",
            &[("JUJU_SECRET_ID", uri), ("JUJU_SECRET_REVISION", "1")],
            Event::SecretExpired(rev(1)),
        );
    }

    #[test]
    fn actions_parse_from_the_dispatch_path() {
        check(
            "actions/get-resource-token",
            &[
                ("JUJU_ACTION_NAME", "get-resource-token"),
                ("JUJU_ACTION_UUID", "12"),
            ],
            Event::Action(ActionEvent {
                name: "get-resource-token".into(),
                uuid: "12".into(),
            }),
        );
        let event = Event::Action(ActionEvent {
            name: "backup".into(),
            uuid: "3".into(),
        });
        let vars = event.env_vars();
        assert!(
            vars.contains(&("JUJU_HOOK_NAME".into(), "".into())),
            "{vars:?}"
        );
        assert!(
            vars.contains(&("JUJU_ACTION_TAG".into(), "action-3".into())),
            "{vars:?}"
        );
    }

    #[test]
    fn unknown_names_become_unknown_events() {
        for (path, name) in [
            ("hooks/meter-status-changed", "meter-status-changed"),
            ("hooks/-relation-changed", "-relation-changed"),
            ("hooks/something-new", "something-new"),
            ("weird/thing", "weird/thing"),
            ("actions/", "actions/"),
        ] {
            let got = Event::from_context(&ctx(&[("JUJU_DISPATCH_PATH", path)])).unwrap();
            assert_eq!(got, Event::Unknown(name.into()), "{path}");
        }
    }

    #[test]
    fn known_events_with_missing_or_inconsistent_variables_are_errors() {
        fn check_err(path: &str, env: &[(&str, &str)], expected: &str) {
            let mut vars = vec![("JUJU_DISPATCH_PATH", path)];
            vars.extend_from_slice(env);
            let err = Event::from_context(&ctx(&vars)).unwrap_err();
            assert_eq!(err.to_string(), expected);
        }
        check_err(
            "hooks/db-relation-changed",
            &[("JUJU_REMOTE_APP", "pg")],
            "cannot parse event \"db-relation-changed\": JUJU_RELATION_ID is not set",
        );
        check_err(
            "hooks/db-relation-changed",
            &[("JUJU_RELATION_ID", "other:1"), ("JUJU_REMOTE_APP", "pg")],
            "cannot parse event \"db-relation-changed\": JUJU_RELATION_ID \"other:1\" is not a relation of endpoint \"db\"",
        );
        check_err(
            "hooks/db-relation-changed",
            &[("JUJU_RELATION_ID", "db:x"), ("JUJU_REMOTE_APP", "pg")],
            "cannot parse event \"db-relation-changed\": JUJU_RELATION_ID \"db:x\" is not of the form <endpoint>:<id>",
        );
        check_err(
            "hooks/db-relation-departed",
            &[("JUJU_RELATION_ID", "db:1"), ("JUJU_REMOTE_APP", "pg")],
            "cannot parse event \"db-relation-departed\": JUJU_DEPARTING_UNIT is not set",
        );
        check_err(
            "hooks/secret-remove",
            &[("JUJU_SECRET_ID", "secret:x")],
            "cannot parse event \"secret-remove\": JUJU_SECRET_REVISION is not set",
        );
        check_err(
            "actions/backup",
            &[],
            "cannot parse event \"backup\": JUJU_ACTION_UUID is not set",
        );
        check_err(
            "hooks/web-pebble-ready",
            &[("JUJU_WORKLOAD_NAME", "db")],
            "cannot parse event \"web-pebble-ready\": JUJU_WORKLOAD_NAME is \"db\" but the hook names container \"web\"",
        );
    }
}
