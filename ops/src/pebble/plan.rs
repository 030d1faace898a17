//! Pebble's plan logic: parsing and validating a layer, combining layers
//! into a plan, printing the plan, and ordering services.
//!
//! Pure data and functions, as Pebble's own `internals/plan` is. The Pebble
//! double uses it to answer `/v1/layers` and `/v1/plan` exactly as Pebble
//! does (pebble.md §4), and a charm may use it to compare a desired layer
//! with the plan it read back. Error texts are Pebble's.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml_ng::Value;

use super::duration;
use super::layer::{Check, Layer, LogTarget, Service, MERGE, REPLACE};

const TOP_KEYS: &[&str] = &[
    "summary",
    "description",
    "services",
    "checks",
    "log-targets",
];
const SERVICE_KEYS: &[&str] = &[
    "summary",
    "description",
    "startup",
    "override",
    "command",
    "after",
    "before",
    "requires",
    "workload",
    "environment",
    "user-id",
    "user",
    "group-id",
    "group",
    "working-dir",
    "on-success",
    "on-failure",
    "on-check-failure",
    "backoff-delay",
    "backoff-factor",
    "backoff-limit",
    "kill-delay",
];
const CHECK_KEYS: &[&str] = &[
    "override",
    "level",
    "startup",
    "period",
    "timeout",
    "threshold",
    "http",
    "tcp",
    "exec",
];
const HTTP_KEYS: &[&str] = &["url", "headers"];
const TCP_KEYS: &[&str] = &["port", "host"];
const EXEC_KEYS: &[&str] = &[
    "command",
    "service-context",
    "environment",
    "user-id",
    "user",
    "group-id",
    "group",
    "working-dir",
];
const LOG_TARGET_KEYS: &[&str] = &["type", "location", "services", "override", "labels"];

/// Parses layer YAML and runs Pebble's per-layer validation.
///
/// Errors read as Pebble's (without the `cannot parse layer YAML: ` prefix
/// the API adds).
pub fn parse_layer(text: &str) -> Result<Layer, String> {
    let value: Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    let mut map = match value {
        Value::Null => return Ok(Layer::default()),
        Value::Mapping(m) => m,
        _ => return Err("layer must be a YAML mapping".into()),
    };
    for key in map.keys() {
        let key = key.as_str().unwrap_or_default();
        if !TOP_KEYS.contains(&key) {
            return Err(format!("unknown section {key:?}"));
        }
    }
    for (section, keys, type_name, numeric) in [
        (
            "services",
            SERVICE_KEYS,
            "plan.Service",
            &["user-id", "group-id", "backoff-factor"][..],
        ),
        ("checks", CHECK_KEYS, "plan.Check", &["threshold"][..]),
        ("log-targets", LOG_TARGET_KEYS, "plan.LogTarget", &[][..]),
    ] {
        let Some(Value::Mapping(entries)) = map.get_mut(section) else {
            continue;
        };
        for (name, entry) in entries.iter_mut() {
            let name = name.as_str().unwrap_or_default().to_owned();
            if name.is_empty() {
                let what = match section {
                    "services" => "service",
                    "checks" => "check",
                    _ => "log target",
                };
                return Err(format!("cannot use empty string as {what} name"));
            }
            match entry {
                Value::Null => {
                    let what = match section {
                        "services" => "service",
                        "checks" => "check",
                        _ => "log target",
                    };
                    return Err(format!("{what} object cannot be null for {what} {name:?}"));
                }
                Value::Mapping(fields) => {
                    check_keys(fields, keys, type_name)?;
                    for (nested, nested_keys, nested_type) in [
                        ("http", HTTP_KEYS, "plan.HTTPCheck"),
                        ("tcp", TCP_KEYS, "plan.TCPCheck"),
                        ("exec", EXEC_KEYS, "plan.ExecCheck"),
                    ] {
                        if section == "checks" {
                            if let Some(Value::Mapping(n)) = fields.get(nested) {
                                check_keys(n, nested_keys, nested_type)?;
                            }
                        }
                    }
                    // Pebble reads scalars as the target type: `port: 8080`
                    // under `environment` is the string "8080".
                    for (k, v) in fields.iter_mut() {
                        let k = k.as_str().unwrap_or_default();
                        if !numeric.contains(&k) {
                            stringify(v, &["port", "user-id", "group-id"]);
                        }
                    }
                }
                _ => return Err(format!("cannot unmarshal {section} entry {name:?}")),
            }
        }
    }
    for key in ["summary", "description"] {
        if let Some(v) = map.get_mut(key) {
            stringify(v, &[]);
        }
    }
    let layer: Layer = serde_yaml_ng::from_value(Value::Mapping(map)).map_err(|e| e.to_string())?;
    validate_layer(&layer)?;
    Ok(layer)
}

fn check_keys(
    fields: &serde_yaml_ng::Mapping,
    known: &[&str],
    type_name: &str,
) -> Result<(), String> {
    for key in fields.keys() {
        let key = key.as_str().unwrap_or_default();
        if !known.contains(&key) {
            return Err(format!("field {key} not found in type {type_name}"));
        }
    }
    Ok(())
}

/// Turns scalar leaves into strings, except under the keys named (which are
/// numbers in Pebble's schema).
fn stringify(v: &mut Value, keep: &[&str]) {
    match v {
        Value::Bool(b) => *v = Value::String(b.to_string()),
        Value::Number(n) => *v = Value::String(n.to_string()),
        Value::Sequence(items) => items.iter_mut().for_each(|i| stringify(i, keep)),
        Value::Mapping(m) => {
            for (k, val) in m.iter_mut() {
                if !keep.contains(&k.as_str().unwrap_or_default()) {
                    stringify(val, keep);
                }
            }
        }
        _ => {}
    }
}

const SUCCESS_ACTIONS: &[&str] = &["restart", "shutdown", "failure-shutdown", "ignore"];
const FAILURE_ACTIONS: &[&str] = &["restart", "shutdown", "success-shutdown", "ignore"];
const CHECK_FAILURE_ACTIONS: &[&str] = &["restart", "shutdown", "success-shutdown", "ignore"];

fn validate_layer(layer: &Layer) -> Result<(), String> {
    for (name, svc) in &layer.services {
        if name == "pebble" {
            return Err(format!("cannot use reserved service name {name:?}"));
        }
        if name.starts_with('-') {
            return Err(format!(
                "cannot use service name {name:?}: starting with \"-\" not allowed"
            ));
        }
        if let Some(cmd) = &svc.command {
            split_command(cmd)
                .map_err(|e| format!("plan service {name:?} command invalid: {e}"))?;
        }
        for (field, value, allowed) in [
            ("on-success", &svc.on_success, SUCCESS_ACTIONS),
            ("on-failure", &svc.on_failure, FAILURE_ACTIONS),
        ] {
            if let Some(v) = value {
                if !allowed.contains(&v.as_str()) {
                    return Err(format!(
                        "plan service {name:?} {field} action {v:?} invalid"
                    ));
                }
            }
        }
        for (check, action) in &svc.on_check_failure {
            if !CHECK_FAILURE_ACTIONS.contains(&action.as_str()) {
                return Err(format!(
                    "plan service {name:?} on-check-failure action {action:?} invalid for check {check:?}"
                ));
            }
        }
        if let Some(f) = svc.backoff_factor {
            if f < 1.0 {
                return Err(format!(
                    "plan service {name:?} backoff-factor must be 1.0 or greater, not {f}"
                ));
            }
        }
        for (field, value) in [
            ("backoff-delay", &svc.backoff_delay),
            ("backoff-limit", &svc.backoff_limit),
            ("kill-delay", &svc.kill_delay),
        ] {
            if let Some(v) = value {
                duration::parse(v).map_err(|e| format!("plan service {name:?} {field}: {e}"))?;
            }
        }
    }
    for (name, check) in &layer.checks {
        if let Some(level) = &check.level {
            if level != "alive" && level != "ready" {
                return Err(format!(
                    "plan check {name:?} level must be \"alive\" or \"ready\""
                ));
            }
        }
        if let Some(startup) = &check.startup {
            if startup != "enabled" && startup != "disabled" {
                return Err(format!(
                    "plan check {name:?} startup must be \"enabled\" or \"disabled\""
                ));
            }
        }
        for (field, value) in [("period", &check.period), ("timeout", &check.timeout)] {
            if let Some(v) = value {
                let d =
                    duration::parse(v).map_err(|e| format!("plan check {name:?} {field}: {e}"))?;
                if d.is_zero() {
                    return Err(format!("plan check {name:?} {field} must not be zero"));
                }
            }
        }
        if let Some(exec) = &check.exec {
            if let Some(cmd) = &exec.command {
                split_command(cmd)
                    .map_err(|e| format!("plan check {name:?} command invalid: {e}"))?;
            }
        }
    }
    for (name, target) in &layer.log_targets {
        if let Some(t) = &target.target_type {
            if !["loki", "opentelemetry", "syslog"].contains(&t.as_str()) {
                return Err(format!(
                    "log target {name:?} has unsupported type {t:?}, must be \"loki\", \"opentelemetry\" or \"syslog\""
                ));
            }
        }
    }
    Ok(())
}

/// Splits a service or exec-check command like Pebble: shell-style words,
/// never run by a shell, with an optional trailing `[ … ]` group of default
/// arguments. Returns (base arguments, default arguments).
pub fn split_command(command: &str) -> Result<(Vec<String>, Vec<String>), String> {
    let words = shell_split(command)?;
    if words.is_empty() {
        return Err("empty command".into());
    }
    let open = words.iter().position(|w| w == "[");
    let close = words.iter().rposition(|w| w == "]");
    match (open, close) {
        (None, None) => Ok((words, vec![])),
        (Some(o), Some(c)) if c == words.len() - 1 && o < c => {
            let inner = &words[o + 1..c];
            if inner.iter().any(|w| w == "[" || w == "]") {
                return Err("cannot nest [ ... ] groups".into());
            }
            Ok((words[..o].to_vec(), inner.to_vec()))
        }
        (Some(_), None) => Err("cannot start [ ... ] group without closing ]".into()),
        (None, Some(_)) => Err("cannot have ] without opening [".into()),
        _ => Err("cannot have any arguments after [ ... ] group".into()),
    }
}

/// Shell-like word splitting (quotes and backslashes; no expansion).
fn shell_split(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => cur.push(ch),
                        None => return Err("EOF found when expecting closing quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(ch @ ('"' | '\\' | '$' | '`')) => cur.push(ch),
                            Some('\n') => {}
                            Some(ch) => {
                                cur.push('\\');
                                cur.push(ch);
                            }
                            None => return Err("EOF found after escape character".into()),
                        },
                        Some(ch) => cur.push(ch),
                        None => return Err("EOF found when expecting closing quote".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(ch) => {
                    in_word = true;
                    cur.push(ch);
                }
                None => return Err("EOF found after escape character".into()),
            },
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Combines `layers` (bottom first) into a plan, as Pebble does.
///
/// Each entry in each layer must say `override: replace` or `merge`.
pub fn combine(layers: &[(String, Layer)]) -> Result<Layer, String> {
    let mut plan = Layer::default();
    for (label, layer) in layers {
        if layer.summary.is_some() {
            plan.summary = layer.summary.clone();
        }
        if layer.description.is_some() {
            plan.description = layer.description.clone();
        }
        for (name, svc) in &layer.services {
            match override_of(label, "service", name, svc.override_.as_deref())? {
                Override::Replace => {
                    plan.services.insert(name.clone(), svc.clone());
                }
                Override::Merge => match plan.services.get_mut(name) {
                    Some(old) => merge_service(old, svc),
                    None => {
                        plan.services.insert(name.clone(), svc.clone());
                    }
                },
            }
        }
        for (name, check) in &layer.checks {
            match override_of(label, "check", name, check.override_.as_deref())? {
                Override::Replace => {
                    plan.checks.insert(name.clone(), check.clone());
                }
                Override::Merge => match plan.checks.get_mut(name) {
                    Some(old) => merge_check(old, check),
                    None => {
                        plan.checks.insert(name.clone(), check.clone());
                    }
                },
            }
        }
        for (name, target) in &layer.log_targets {
            match override_of(label, "log target", name, target.override_.as_deref())? {
                Override::Replace => {
                    plan.log_targets.insert(name.clone(), target.clone());
                }
                Override::Merge => match plan.log_targets.get_mut(name) {
                    Some(old) => merge_log_target(old, target),
                    None => {
                        plan.log_targets.insert(name.clone(), target.clone());
                    }
                },
            }
        }
    }
    Ok(plan)
}

enum Override {
    Replace,
    Merge,
}

fn override_of(
    label: &str,
    what: &str,
    name: &str,
    value: Option<&str>,
) -> Result<Override, String> {
    match value {
        Some(v) if v == REPLACE => Ok(Override::Replace),
        Some(v) if v == MERGE => Ok(Override::Merge),
        None | Some("") => Err(format!(
            "layer {label:?} must define \"override\" for {what} {name:?}"
        )),
        Some(_) => Err(format!(
            "layer {label:?} has invalid \"override\" value for {what} {name:?}"
        )),
    }
}

fn set_if_some<T: Clone>(old: &mut Option<T>, new: &Option<T>) {
    if new.is_some() {
        old.clone_from(new);
    }
}

fn set_if_nonempty(old: &mut Option<String>, new: &Option<String>) {
    if new.as_deref().is_some_and(|s| !s.is_empty()) {
        old.clone_from(new);
    }
}

fn merge_service(old: &mut Service, new: &Service) {
    set_if_nonempty(&mut old.summary, &new.summary);
    set_if_nonempty(&mut old.description, &new.description);
    set_if_nonempty(&mut old.startup, &new.startup);
    set_if_nonempty(&mut old.command, &new.command);
    old.after.extend(new.after.iter().cloned());
    old.before.extend(new.before.iter().cloned());
    old.requires.extend(new.requires.iter().cloned());
    set_if_nonempty(&mut old.workload, &new.workload);
    old.environment.extend(new.environment.clone());
    set_if_some(&mut old.user_id, &new.user_id);
    set_if_nonempty(&mut old.user, &new.user);
    set_if_some(&mut old.group_id, &new.group_id);
    set_if_nonempty(&mut old.group, &new.group);
    set_if_nonempty(&mut old.working_dir, &new.working_dir);
    set_if_nonempty(&mut old.on_success, &new.on_success);
    set_if_nonempty(&mut old.on_failure, &new.on_failure);
    old.on_check_failure.extend(new.on_check_failure.clone());
    set_if_some(&mut old.backoff_delay, &new.backoff_delay);
    set_if_some(&mut old.backoff_factor, &new.backoff_factor);
    set_if_some(&mut old.backoff_limit, &new.backoff_limit);
    set_if_some(&mut old.kill_delay, &new.kill_delay);
}

fn merge_check(old: &mut Check, new: &Check) {
    set_if_nonempty(&mut old.level, &new.level);
    set_if_nonempty(&mut old.startup, &new.startup);
    set_if_some(&mut old.period, &new.period);
    set_if_some(&mut old.timeout, &new.timeout);
    if new.threshold.is_some_and(|t| t != 0) {
        old.threshold = new.threshold;
    }
    if let Some(n) = &new.http {
        let o = old.http.get_or_insert_with(Default::default);
        set_if_nonempty(&mut o.url, &n.url);
        o.headers.extend(n.headers.clone());
    }
    if let Some(n) = &new.tcp {
        let o = old.tcp.get_or_insert_with(Default::default);
        if n.port.is_some_and(|p| p != 0) {
            o.port = n.port;
        }
        set_if_nonempty(&mut o.host, &n.host);
    }
    if let Some(n) = &new.exec {
        let o = old.exec.get_or_insert_with(Default::default);
        set_if_nonempty(&mut o.command, &n.command);
        set_if_nonempty(&mut o.service_context, &n.service_context);
        o.environment.extend(n.environment.clone());
        set_if_some(&mut o.user_id, &n.user_id);
        set_if_nonempty(&mut o.user, &n.user);
        set_if_some(&mut o.group_id, &n.group_id);
        set_if_nonempty(&mut o.group, &n.group);
        set_if_nonempty(&mut o.working_dir, &n.working_dir);
    }
}

fn merge_log_target(old: &mut LogTarget, new: &LogTarget) {
    set_if_nonempty(&mut old.target_type, &new.target_type);
    set_if_nonempty(&mut old.location, &new.location);
    old.services.extend(new.services.iter().cloned());
    old.labels.extend(new.labels.clone());
}

/// Validates a combined plan (Pebble's combined-plan errors, bare messages)
/// and normalises it for printing: durations in Go form, check thresholds
/// defaulted to 3.
pub fn finish_plan(mut plan: Layer) -> Result<Layer, String> {
    for (name, svc) in &mut plan.services {
        if svc.command.as_deref().unwrap_or("").is_empty() {
            return Err(format!("plan must define \"command\" for service {name:?}"));
        }
        for d in [
            &mut svc.backoff_delay,
            &mut svc.backoff_limit,
            &mut svc.kill_delay,
        ]
        .into_iter()
        .flatten()
        {
            *d = duration::format(duration::parse(d)?);
        }
    }
    let service_names: BTreeSet<String> = plan.services.keys().cloned().collect();
    for (name, check) in &mut plan.checks {
        let kinds = [
            check.http.is_some(),
            check.tcp.is_some(),
            check.exec.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(format!(
                "plan must specify one of \"http\", \"tcp\", or \"exec\" for check {name:?}"
            ));
        }
        if let Some(h) = &check.http {
            if h.url.as_deref().unwrap_or("").is_empty() {
                return Err(format!("plan must set \"url\" for http check {name:?}"));
            }
        }
        if let Some(t) = &check.tcp {
            if t.port.unwrap_or(0) == 0 {
                return Err(format!("plan must set \"port\" for tcp check {name:?}"));
            }
        }
        if let Some(e) = &check.exec {
            if e.command.as_deref().unwrap_or("").is_empty() {
                return Err(format!("plan must set \"command\" for exec check {name:?}"));
            }
            if let Some(ctx) = &e.service_context {
                if !service_names.contains(ctx) {
                    return Err(format!(
                        "plan check {name:?} service context specifies non-existent service {ctx:?}"
                    ));
                }
            }
        }
        for d in [&mut check.period, &mut check.timeout]
            .into_iter()
            .flatten()
        {
            *d = duration::format(duration::parse(d)?);
        }
        if check.threshold.unwrap_or(0) == 0 {
            check.threshold = Some(3);
        }
    }
    for (name, target) in &plan.log_targets {
        if target.target_type.as_deref().unwrap_or("").is_empty() {
            return Err(format!("plan must define \"type\" for log target {name:?}"));
        }
        if target.location.as_deref().unwrap_or("").is_empty() {
            return Err(format!(
                "plan must define \"location\" for log target {name:?}"
            ));
        }
        for s in &target.services {
            let s = s.strip_prefix('-').unwrap_or(s);
            if s != "all" && !service_names.contains(s) {
                return Err(format!(
                    "log target {name:?} specifies unknown service {s:?}"
                ));
            }
        }
    }
    if let Some(cycle) = find_loop(&plan) {
        return Err(format!(
            "services in before/after loop: {}",
            cycle.join(", ")
        ));
    }
    Ok(plan)
}

/// Edges "a must start before b" from after/before, among plan services.
fn order_edges(plan: &Layer) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, svc) in &plan.services {
        edges.entry(name.clone()).or_default();
        for a in &svc.after {
            if plan.services.contains_key(a) {
                edges.entry(a.clone()).or_default().insert(name.clone());
            }
        }
        for b in &svc.before {
            if plan.services.contains_key(b) {
                edges.entry(name.clone()).or_default().insert(b.clone());
            }
        }
    }
    edges
}

fn find_loop(plan: &Layer) -> Option<Vec<String>> {
    let edges = order_edges(plan);
    // Kahn's algorithm: whatever cannot be ordered is in (or behind) a loop;
    // of those, report the ones that can reach themselves.
    let mut indegree: BTreeMap<&str, usize> = edges.keys().map(|k| (k.as_str(), 0)).collect();
    for targets in edges.values() {
        for t in targets {
            *indegree
                .get_mut(t.as_str())
                .expect("edge targets are services") += 1;
        }
    }
    let mut ready: Vec<&str> = indegree
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(k, _)| *k)
        .collect();
    while let Some(n) = ready.pop() {
        indegree.remove(n);
        for t in &edges[n] {
            if let Some(d) = indegree.get_mut(t.as_str()) {
                *d -= 1;
                if *d == 0 {
                    ready.push(t);
                }
            }
        }
    }
    if indegree.is_empty() {
        return None;
    }
    let reaches_itself = |start: &str| {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&str> = edges[start].iter().map(String::as_str).collect();
        while let Some(n) = stack.pop() {
            if n == start {
                return true;
            }
            if seen.insert(n) {
                stack.extend(edges[n].iter().map(String::as_str));
            }
        }
        false
    };
    Some(
        indegree
            .keys()
            .filter(|n| reaches_itself(n))
            .map(|n| (*n).to_owned())
            .collect(),
    )
}

/// The services `start` launches for `names`: the named ones plus everything
/// they (transitively) require, ordered by after/before, then by name.
/// Unknown names are an error: `service "x" does not exist`.
pub fn start_order(plan: &Layer, names: &[String]) -> Result<Vec<String>, String> {
    let mut set = BTreeSet::new();
    let mut stack: Vec<String> = names.to_vec();
    while let Some(n) = stack.pop() {
        let Some(svc) = plan.services.get(&n) else {
            return Err(format!("service {n:?} does not exist"));
        };
        if set.insert(n.clone()) {
            stack.extend(svc.requires.iter().cloned());
        }
    }
    Ok(topo_order(plan, &set))
}

/// The services `stop` stops for `names`: the named ones plus every service
/// that (transitively) requires them, in reverse start order.
pub fn stop_order(plan: &Layer, names: &[String]) -> Result<Vec<String>, String> {
    let mut set = BTreeSet::new();
    let mut stack: Vec<String> = names.to_vec();
    while let Some(n) = stack.pop() {
        if !plan.services.contains_key(&n) {
            return Err(format!("service {n:?} does not exist"));
        }
        if set.insert(n.clone()) {
            for (other, svc) in &plan.services {
                if svc.requires.contains(&n) {
                    stack.push(other.clone());
                }
            }
        }
    }
    let mut order = topo_order(plan, &set);
    order.reverse();
    Ok(order)
}

fn topo_order(plan: &Layer, set: &BTreeSet<String>) -> Vec<String> {
    let edges = order_edges(plan);
    let mut indegree: BTreeMap<&String, usize> = set.iter().map(|k| (k, 0)).collect();
    for (from, targets) in &edges {
        if !set.contains(from) {
            continue;
        }
        for t in targets {
            if let Some(d) = indegree.get_mut(t) {
                *d += 1;
            }
        }
    }
    let mut out = Vec::new();
    while !indegree.is_empty() {
        // The smallest name among those ready keeps the order deterministic.
        let next = indegree
            .iter()
            .find(|(_, d)| **d == 0)
            .map(|(k, _)| (*k).clone())
            .unwrap_or_else(|| (*indegree.keys().next().expect("non-empty")).clone());
        indegree.remove(&next);
        if let Some(targets) = edges.get(&next) {
            for t in targets {
                if let Some(d) = indegree.get_mut(t) {
                    *d = d.saturating_sub(1);
                }
            }
        }
        out.push(next);
    }
    out
}

/// Prints a plan as `GET /v1/plan?format=yaml` does: `services`, `checks`,
/// `log-targets` (empty ones omitted; an empty plan is `{}`), names sorted,
/// fields in schema order, four-space indentation.
pub fn plan_to_yaml(plan: &Layer) -> String {
    let printed = Layer {
        summary: None,
        description: None,
        services: plan.services.clone(),
        checks: plan.checks.clone(),
        log_targets: plan.log_targets.clone(),
    };
    let value = serde_yaml_ng::to_value(&printed).expect("a plan always serialises");
    let mut out = String::new();
    match &value {
        Value::Mapping(m) if !m.is_empty() => emit_mapping(m, 0, &mut out),
        _ => out.push_str("{}\n"),
    }
    out
}

fn emit_mapping(m: &serde_yaml_ng::Mapping, indent: usize, out: &mut String) {
    for (k, v) in m {
        out.push_str(&" ".repeat(indent));
        out.push_str(&scalar(k));
        out.push(':');
        emit_value(v, indent, out);
    }
}

fn emit_value(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Mapping(m) if m.is_empty() => out.push_str(" {}\n"),
        Value::Mapping(m) => {
            out.push('\n');
            emit_mapping(m, indent + 4, out);
        }
        Value::Sequence(s) if s.is_empty() => out.push_str(" []\n"),
        Value::Sequence(s) => {
            out.push('\n');
            for item in s {
                out.push_str(&" ".repeat(indent + 4));
                out.push_str("- ");
                out.push_str(&scalar(item));
                out.push('\n');
            }
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

/// A scalar in YAML: plain when that cannot be misread (also by YAML 1.1
/// readers such as PyYAML, for which `on` is a boolean), else double-quoted.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => {
            if is_plain_safe(s) {
                s.clone()
            } else {
                serde_json::to_string(s).expect("strings serialise")
            }
        }
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => "null".into(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

fn is_plain_safe(s: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
    ];
    if s.is_empty() || KEYWORDS.contains(&s.to_ascii_lowercase().as_str()) {
        return false;
    }
    if s.parse::<f64>().is_ok()
        || s.starts_with(|c: char| c.is_ascii_digit() || c == '.' || c == '+')
            && s.chars()
                .all(|c| c.is_ascii_digit() || "._:+-eE".contains(c))
    {
        return false;
    }
    let first = s.chars().next().expect("non-empty");
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) || first.is_whitespace() {
        return false;
    }
    if s.ends_with(char::is_whitespace) || s.ends_with(':') {
        return false;
    }
    !(s.contains(": ") || s.contains(" #") || s.contains('\n') || s.contains('\t'))
        && s.chars().all(|c| !c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(items: &[(&str, &str)]) -> Result<Layer, String> {
        let parsed: Vec<(String, Layer)> = items
            .iter()
            .map(|(l, y)| (l.to_string(), parse_layer(y).unwrap()))
            .collect();
        combine(&parsed).and_then(finish_plan)
    }

    #[test]
    fn parse_rejects_unknown_sections_and_fields_with_pebbles_messages() {
        fn check(yaml: &str, expected: &str) {
            assert_eq!(parse_layer(yaml).unwrap_err(), expected, "{yaml}");
        }
        check("foo: {}", "unknown section \"foo\"");
        check(
            "services: {s: {override: replace, command: x, foo: 1}}",
            "field foo not found in type plan.Service",
        );
        check(
            "checks: {c: {override: replace, http: {url: x, bad: 1}}}",
            "field bad not found in type plan.HTTPCheck",
        );
        check(
            "services: {pebble: {override: replace, command: x}}",
            "cannot use reserved service name \"pebble\"",
        );
        check(
            "services: {-x: {override: replace, command: x}}",
            "cannot use service name \"-x\": starting with \"-\" not allowed",
        );
        check(
            "services: {s: null}",
            "service object cannot be null for service \"s\"",
        );
        check(
            "services: {s: {override: replace, command: x, on-failure: explode}}",
            "plan service \"s\" on-failure action \"explode\" invalid",
        );
        check(
            "services: {s: {override: replace, command: x, backoff-factor: 0.5}}",
            "plan service \"s\" backoff-factor must be 1.0 or greater, not 0.5",
        );
        check(
            "checks: {c: {override: replace, level: sometimes, http: {url: x}}}",
            "plan check \"c\" level must be \"alive\" or \"ready\"",
        );
        check(
            "checks: {c: {override: replace, period: 0s, http: {url: x}}}",
            "plan check \"c\" period must not be zero",
        );
        check(
            "services: {s: {override: replace, command: \"x 'unclosed\"}}",
            "plan service \"s\" command invalid: EOF found when expecting closing quote",
        );
    }

    #[test]
    fn scalars_are_read_as_strings_where_pebble_expects_strings() {
        let layer = parse_layer(
            "services:\n  s:\n    override: replace\n    command: 123\n    environment:\n      PORT: 8080\n      DEBUG: true\n    user-id: 1000\n",
        )
        .unwrap();
        let s = &layer.services["s"];
        assert_eq!(s.command.as_deref(), Some("123"));
        assert_eq!(s.environment["PORT"], "8080");
        assert_eq!(s.environment["DEBUG"], "true");
        assert_eq!(s.user_id, Some(1000));
    }

    #[test]
    fn merge_and_replace_follow_pebbles_rules() {
        let plan = layers(&[
            (
                "base",
                "services:\n  web:\n    override: replace\n    command: /bin/web\n    after: [db]\n    environment: {A: '1', B: '2'}\n    user: alice\n  db:\n    override: replace\n    command: /bin/db\n",
            ),
            (
                "top",
                "services:\n  web:\n    override: merge\n    after: [db]\n    environment: {B: '3'}\n    user: ''\n    backoff-delay: 90s\n  db:\n    override: replace\n    command: /bin/db2\n",
            ),
        ])
        .unwrap();
        let web = &plan.services["web"];
        assert_eq!(web.command.as_deref(), Some("/bin/web"));
        assert_eq!(web.after, ["db", "db"], "lists append, duplicates kept");
        assert_eq!(web.environment["A"], "1");
        assert_eq!(web.environment["B"], "3");
        assert_eq!(
            web.user.as_deref(),
            Some("alice"),
            "empty strings do not overwrite"
        );
        assert_eq!(
            web.override_.as_deref(),
            Some("replace"),
            "the earlier override stays"
        );
        assert_eq!(web.backoff_delay.as_deref(), Some("1m30s"));
        assert_eq!(plan.services["db"].command.as_deref(), Some("/bin/db2"));
    }

    #[test]
    fn combined_plan_errors_are_bare_messages() {
        fn check(items: &[(&str, &str)], expected: &str) {
            assert_eq!(layers(items).unwrap_err(), expected);
        }
        check(
            &[("a", "services: {s: {command: x}}")],
            "layer \"a\" must define \"override\" for service \"s\"",
        );
        check(
            &[("a", "services: {s: {override: sideways, command: x}}")],
            "layer \"a\" has invalid \"override\" value for service \"s\"",
        );
        check(
            &[("a", "services: {s: {override: merge}}")],
            "plan must define \"command\" for service \"s\"",
        );
        check(
            &[("a", "checks: {c: {override: replace}}")],
            "plan must specify one of \"http\", \"tcp\", or \"exec\" for check \"c\"",
        );
        check(
            &[("a", "services:\n  a: {override: replace, command: x, after: [b]}\n  b: {override: replace, command: x, after: [a]}\n  c: {override: replace, command: x, after: [a]}\n")],
            "services in before/after loop: a, b",
        );
        check(
            &[(
                "a",
                "checks: {c: {override: replace, exec: {command: x, service-context: nope}}}",
            )],
            "plan check \"c\" service context specifies non-existent service \"nope\"",
        );
    }

    #[test]
    fn plan_yaml_is_printed_like_pebble() {
        let plan = layers(&[(
            "base",
            "services:\n  web:\n    override: replace\n    command: /bin/web --port 8080\n    startup: enabled\n    after: [db]\n    environment: {PORT: '8080', MODE: 'on'}\n  db:\n    override: replace\n    command: /bin/db\nchecks:\n  up:\n    override: replace\n    level: alive\n    period: 90s\n    http: {url: 'http://localhost:8080/'}\n",
        )])
        .unwrap();
        assert_eq!(
            plan_to_yaml(&plan),
            "services:
    db:
        override: replace
        command: /bin/db
    web:
        startup: enabled
        override: replace
        command: /bin/web --port 8080
        after:
            - db
        environment:
            MODE: \"on\"
            PORT: \"8080\"
checks:
    up:
        override: replace
        level: alive
        period: 1m30s
        threshold: 3
        http:
            url: http://localhost:8080/
"
        );
        assert_eq!(plan_to_yaml(&Layer::default()), "{}\n");
        // What we print, a YAML reader reads back unchanged.
        assert_eq!(Layer::from_yaml(&plan_to_yaml(&plan)).unwrap(), plan);
    }

    #[test]
    fn start_and_stop_orders_follow_requires_and_after_before() {
        let plan = layers(&[(
            "a",
            "services:\n  web: {override: replace, command: x, requires: [db], after: [db, cache]}\n  db: {override: replace, command: x}\n  cache: {override: replace, command: x}\n  other: {override: replace, command: x, before: [web]}\n",
        )])
        .unwrap();
        assert_eq!(start_order(&plan, &["web".into()]).unwrap(), ["db", "web"]);
        assert_eq!(
            start_order(&plan, &["web".into(), "cache".into(), "other".into()]).unwrap(),
            ["cache", "db", "other", "web"]
        );
        assert_eq!(stop_order(&plan, &["db".into()]).unwrap(), ["web", "db"]);
        assert_eq!(
            start_order(&plan, &["nope".into()]).unwrap_err(),
            "service \"nope\" does not exist"
        );
    }

    #[test]
    fn commands_split_like_pebble() {
        assert_eq!(
            split_command("/bin/x --a 'b c' [ --d e ]").unwrap(),
            (
                vec!["/bin/x".into(), "--a".into(), "b c".into()],
                vec!["--d".into(), "e".into()]
            )
        );
        assert_eq!(
            split_command("x [ [ y ] ]").unwrap_err(),
            "cannot nest [ ... ] groups"
        );
        assert!(split_command("x [ y ] z").is_err());
        assert_eq!(
            split_command("sh -c \"echo \\\"hi\\\"\"").unwrap().0,
            ["sh", "-c", "echo \"hi\""]
        );
    }
}
