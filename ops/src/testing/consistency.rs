//! Rejects test inputs Juju could never produce, before the charm runs.
//!
//! Every problem is reported (not just the first), each naming what is
//! wrong and what the declarations allow, so a broken test says how to fix
//! it.

use std::collections::BTreeSet;

use serde_json::Value;

use super::meta::{Meta, Role};
use super::state::{canonical_secret_id, State};
use crate::event::Event;

fn declared<T>(names: impl Iterator<Item = T>) -> String
where
    T: AsRef<str>,
{
    let list: Vec<String> = names.map(|n| n.as_ref().to_owned()).collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

/// Checks `state` and `event` (with `params` for actions) against `meta`.
/// `app` is this unit's application name.
pub fn check(
    meta: &Meta,
    app: &str,
    state: &State,
    event: &Event,
    params: Option<&serde_json::Map<String, Value>>,
) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    check_state(meta, state, &mut errors);
    check_event(meta, app, state, event, params, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn check_state(meta: &Meta, state: &State, errors: &mut Vec<String>) {
    for (key, value) in &state.config {
        match meta.config.get(key) {
            None => errors.push(format!(
                "config option {key:?} is not declared in config.yaml (declared: {})",
                declared(meta.config.keys())
            )),
            Some(opt) if !opt.accepts(value) => errors.push(format!(
                "config option {key:?} is of type {} but the state gives {value}",
                opt.option_type.as_str()
            )),
            Some(_) => {}
        }
    }

    let mut ids = BTreeSet::new();
    for rel in &state.relations {
        if !ids.insert(rel.id) {
            errors.push(format!(
                "relation id {} is used by more than one relation",
                rel.id
            ));
        }
        match meta.endpoints.get(&rel.endpoint) {
            None => errors.push(format!(
                "relation {} is on endpoint {:?}, which metadata.yaml does not declare (declared: {})",
                rel.id,
                rel.endpoint,
                declared(meta.endpoints.keys())
            )),
            Some(ep) => {
                if (ep.role == Role::Peers) != rel.peer {
                    errors.push(format!(
                        "relation {} on endpoint {:?}: the endpoint is {} but the relation {} a peer relation (use Relation::{})",
                        rel.id,
                        rel.endpoint,
                        if ep.role == Role::Peers { "a peer endpoint" } else { "not a peer endpoint" },
                        if rel.peer { "is" } else { "is not" },
                        if ep.role == Role::Peers { "peer" } else { "new" },
                    ));
                }
            }
        }
        if !rel.peer && rel.remote_app.is_empty() {
            errors.push(format!("relation {} has no remote application", rel.id));
        }
    }

    for (name, ep) in &meta.endpoints {
        let n = state
            .relations
            .iter()
            .filter(|r| &r.endpoint == name)
            .count();
        if let Some(limit) = ep.limit.filter(|l| n > *l as usize) {
            errors.push(format!(
                "endpoint {name:?} has limit {limit} but the state has {n} relations on it"
            ));
        }
    }

    let mut names = BTreeSet::new();
    for c in &state.containers {
        if !names.insert(&c.name) {
            errors.push(format!("container {:?} appears twice", c.name));
        }
        if !meta.containers.contains(&c.name) {
            errors.push(format!(
                "container {:?} is not declared in metadata.yaml (declared: {})",
                c.name,
                declared(meta.containers.iter())
            ));
        }
        for path in c.filesystem.keys() {
            if !path.starts_with('/') {
                errors.push(format!(
                    "container {:?}: file path {path:?} is not absolute",
                    c.name
                ));
            }
        }
    }

    let mut secret_ids = BTreeSet::new();
    let mut labels = BTreeSet::new();
    for s in &state.secrets {
        let id = canonical_secret_id(&s.id);
        if !s.id.starts_with("secret:") || id.is_empty() {
            errors.push(format!(
                "secret id {:?} is not a secret URI (secret:<id>)",
                s.id
            ));
        }
        if !secret_ids.insert(id.to_owned()) {
            errors.push(format!("secret {:?} appears twice", s.id));
        }
        if let Some(l) = &s.label {
            if !labels.insert(l.clone()) {
                errors.push(format!("secret label {l:?} is used by more than one secret (labels are unique per application)"));
            }
        }
        if s.revisions.is_empty() {
            errors.push(format!("secret {:?} has no revisions", s.id));
        } else if !s.revisions.contains_key(&s.tracked) {
            errors.push(format!(
                "secret {:?} tracks revision {} which it does not have",
                s.id, s.tracked
            ));
        }
    }

    for st in &state.storages {
        if !meta.storage.contains_key(&st.name) {
            errors.push(format!(
                "storage {:?} is not declared in metadata.yaml (declared: {})",
                st.name,
                declared(meta.storage.keys())
            ));
        }
    }
}

fn json_type_ok(schema: &Value, v: &Value) -> bool {
    match schema.get("type").and_then(Value::as_str) {
        None => true,
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        Some("array") => v.is_array(),
        Some("object") => v.is_object(),
        Some("null") => v.is_null(),
        Some(_) => true,
    }
}

fn check_event(
    meta: &Meta,
    app: &str,
    state: &State,
    event: &Event,
    params: Option<&serde_json::Map<String, Value>>,
    errors: &mut Vec<String>,
) {
    let relation_check = |errors: &mut Vec<String>,
                          rel: &crate::hookcmds::RelationId,
                          remote_app: &str,
                          unit: Option<&str>| {
        let Some(r) = state.relation(rel.id) else {
            errors.push(format!(
                "the event is about relation {rel}, which is not in the state's relations"
            ));
            return;
        };
        if r.endpoint != rel.endpoint {
            errors.push(format!(
                "the event names relation {rel} but relation {} is on endpoint {:?}",
                r.id, r.endpoint
            ));
        }
        let expected_app = r.remote_app_name(app);
        if remote_app != r.remote_app && remote_app != expected_app {
            errors.push(format!("the event's remote application {remote_app:?} is not relation {rel}'s ({expected_app:?})"));
        }
        if let Some(u) = unit {
            let n = u.rsplit_once('/').and_then(|(_, n)| n.parse::<u32>().ok());
            if n.is_none_or(|n| !r.remote_units.contains_key(&n)) {
                errors.push(format!(
                    "the event's remote unit {u:?} is not among relation {rel}'s remote units ({})",
                    declared(r.remote_units.keys().map(|n| format!("{expected_app}/{n}")))
                ));
            }
        }
    };
    let container_check = |errors: &mut Vec<String>, name: &str| {
        if !meta.containers.iter().any(|c| c == name) {
            errors.push(format!(
                "the event is about container {name:?}, which metadata.yaml does not declare"
            ));
        } else if state.container(name).is_none() {
            errors.push(format!(
                "the event is about container {name:?}, which is not in the state's containers"
            ));
        }
    };
    let secret_check = |errors: &mut Vec<String>, id: &str, owned: bool| {
        match state.secret(id) {
        None => errors.push(format!("the event is about secret {id:?}, which is not in the state's secrets")),
        Some(s) if owned && s.owner.is_none() => {
            errors.push(format!("the event only goes to a secret's owner, but this unit does not own {id:?}"))
        }
        Some(s) if !owned && s.owner.is_some() => errors.push(format!(
            "secret-changed goes to consumers, but this unit owns {id:?} (owners get secret-rotate, -expired and -remove)"
        )),
        Some(_) => {}
    }
    };
    match event {
        Event::RelationCreated(e) | Event::RelationChanged(e) | Event::RelationBroken(e) => {
            relation_check(errors, &e.relation, &e.remote_app, e.remote_unit.as_deref())
        }
        Event::RelationJoined(e) => {
            if e.remote_unit.is_none() {
                errors.push("-relation-joined is always about a remote unit".into());
            }
            relation_check(errors, &e.relation, &e.remote_app, e.remote_unit.as_deref())
        }
        Event::RelationDeparted(e) => {
            relation_check(errors, &e.relation, &e.remote_app, e.remote_unit.as_deref())
        }
        Event::PebbleReady(e) => container_check(errors, &e.container),
        Event::PebbleCustomNotice(e) => container_check(errors, &e.container),
        Event::PebbleCheckFailed(e) | Event::PebbleCheckRecovered(e) => {
            container_check(errors, &e.container);
            if let Some(c) = state.container(&e.container) {
                if !c.plan().checks.contains_key(&e.check) {
                    errors.push(format!(
                        "check {:?} is not in container {:?}'s plan",
                        e.check, e.container
                    ));
                }
            }
        }
        Event::StorageAttached(e) | Event::StorageDetaching(e) => {
            if !meta.storage.contains_key(&e.name) {
                errors.push(format!(
                    "the event is about storage {:?}, which metadata.yaml does not declare",
                    e.name
                ));
            }
            if !state
                .storages
                .iter()
                .any(|s| format!("{}/{}", s.name, s.index) == e.storage_id)
            {
                errors.push(format!(
                    "storage instance {:?} is not in the state's storages",
                    e.storage_id
                ));
            }
        }
        Event::SecretChanged(e) => secret_check(errors, &e.id, false),
        Event::SecretRotate(e) => secret_check(errors, &e.id, true),
        Event::SecretExpired(e) | Event::SecretRemove(e) => secret_check(errors, &e.id, true),
        Event::LeaderElected if !state.leader => errors.push(
            "leader-elected goes to the new leader, but the state says this unit is not the leader"
                .into(),
        ),
        Event::Action(a) => match meta.actions.get(&a.name) {
            None => errors.push(format!(
                "action {:?} is not declared in actions.yaml (declared: {})",
                a.name,
                declared(meta.actions.keys())
            )),
            Some(decl) => {
                let empty = serde_json::Map::new();
                let given = params.unwrap_or(&empty);
                for r in &decl.required {
                    if !given.contains_key(r)
                        && decl.params.get(r).and_then(|p| p.get("default")).is_none()
                    {
                        errors.push(format!("action {:?} requires parameter {r:?}", a.name));
                    }
                }
                for (k, v) in given {
                    match decl.params.get(k) {
                        None if !decl.additional_properties => errors.push(format!(
                            "action {:?} has no parameter {k:?} (declared: {})",
                            a.name,
                            declared(decl.params.keys())
                        )),
                        Some(schema) if !json_type_ok(schema, v) => errors.push(format!(
                            "action {:?} parameter {k:?} must be of type {} but is {v}",
                            a.name,
                            schema.get("type").and_then(Value::as_str).unwrap_or("?")
                        )),
                        _ => {}
                    }
                }
            }
        },
        _ => {}
    }
}
