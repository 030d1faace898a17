//! The Pebble double's HTTP API: pebble.md's routes, envelopes and error
//! texts, over axum.
//!
//! Handlers only translate HTTP into operations on [`Shared`] (the plan,
//! services, changes, checks, notices) and the [`super::workload::Workload`]
//! (files, processes), like Pebble's own daemon package.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, Notify};

use super::workload::{ExecSpec, FsError, Ownership, Workload};
use crate::pebble::duration;
use crate::pebble::layer::Layer;
use crate::pebble::plan;
use crate::pebble::protocol::{
    Change, CheckInfo, CheckStatus, Envelope, Notice, PathErrorBody, PathResult, ServiceInfo,
    ServiceStartup, ServiceStatus, Task, TaskProgress,
};

/// The double's Pebble-side state.
pub(crate) struct Inner {
    pub(crate) layers: Vec<(String, Layer)>,
    pub(crate) plan: Layer,
    pub(crate) services: BTreeMap<String, SvcState>,
    pub(crate) changes: BTreeMap<u64, Change>,
    next_change: u64,
    next_task: u64,
    exec_slots: HashMap<String, ExecSlots>,
    /// Task id → change id, for websocket lookups.
    task_change: HashMap<String, u64>,
    pub(crate) check_overrides: BTreeMap<String, CheckStatus>,
    running_checks: BTreeMap<String, String>,
    /// Outcomes of checks that really run (workloads that run checks).
    check_results: BTreeMap<String, CheckResult>,
    /// The tasks running them, with the definition they run.
    check_runners: BTreeMap<String, (crate::pebble::layer::Check, tokio::task::JoinHandle<()>)>,
    pub(crate) notices: Vec<Notice>,
}

#[derive(Clone, Copy, Debug, Default)]
struct CheckResult {
    failures: u64,
    successes: u64,
    down: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct SvcState {
    pub(crate) current: ServiceStatus,
    since: String,
    /// The definition it was last started with, to find changed services
    /// on replan.
    started_with: Option<crate::pebble::layer::Service>,
}

struct ExecSlots {
    split_stderr: bool,
    control: Option<oneshot::Sender<WebSocket>>,
    stdio: Option<oneshot::Sender<WebSocket>>,
    stderr: Option<oneshot::Sender<WebSocket>>,
}

/// Called after every state change.
pub(crate) type ChangeHook = Box<dyn Fn(&Shared) + Send + Sync>;

/// State shared by all handlers of one double.
pub(crate) struct Shared {
    pub(crate) inner: Mutex<Inner>,
    /// Woken whenever a change moves, for `/v1/changes/{id}/wait`.
    changed: Notify,
    pub(crate) workload: Arc<dyn Workload>,
    boot_id: String,
    /// Called after every state change (the standalone binary persists).
    pub(crate) on_change: Option<ChangeHook>,
}

pub(crate) fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("now formats")
}

impl Shared {
    pub(crate) fn new(
        layers: Vec<(String, Layer)>,
        services: BTreeMap<String, ServiceStatus>,
        check_overrides: BTreeMap<String, CheckStatus>,
        notices: Vec<Notice>,
        workload: Arc<dyn Workload>,
    ) -> Result<Shared, String> {
        let plan = plan::combine(&layers).and_then(plan::finish_plan)?;
        let since = now();
        let services = services
            .into_iter()
            .map(|(name, current)| {
                let started_with = (current == ServiceStatus::Active)
                    .then(|| plan.services.get(&name).cloned())
                    .flatten();
                (
                    name,
                    SvcState {
                        current,
                        since: since.clone(),
                        started_with,
                    },
                )
            })
            .collect();
        let mut inner = Inner {
            layers,
            plan,
            services,
            changes: BTreeMap::new(),
            next_change: 1,
            next_task: 1,
            exec_slots: HashMap::new(),
            task_change: HashMap::new(),
            check_overrides,
            running_checks: BTreeMap::new(),
            check_results: BTreeMap::new(),
            check_runners: BTreeMap::new(),
            notices,
        };
        start_checks(&mut inner);
        Ok(Shared {
            inner: Mutex::new(inner),
            changed: Notify::new(),
            workload,
            boot_id: uuid_like(),
            on_change: None,
        })
    }

    fn touched(&self) {
        self.changed.notify_waiters();
        if let Some(f) = &self.on_change {
            f(self);
        }
    }
}

fn uuid_like() -> String {
    let s = Alphanumeric
        .sample_string(&mut rand::rng(), 32)
        .to_lowercase();
    format!(
        "{}-{}-{}-{}-{}",
        &s[0..8],
        &s[8..12],
        &s[12..16],
        &s[16..20],
        &s[20..32]
    )
}

/// An error answer: the envelope with `result: {message, kind?}`.
pub(crate) struct ApiError {
    code: StatusCode,
    message: String,
    kind: Option<&'static str>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError {
        code: StatusCode::BAD_REQUEST,
        message: message.into(),
        kind: None,
    }
}

fn not_found_err(message: impl Into<String>) -> ApiError {
    ApiError {
        code: StatusCode::NOT_FOUND,
        message: message.into(),
        kind: None,
    }
}

fn internal(message: impl Into<String>) -> ApiError {
    ApiError {
        code: StatusCode::INTERNAL_SERVER_ERROR,
        message: message.into(),
        kind: None,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        reply(Envelope::error(self.code, &self.message, self.kind))
    }
}

fn reply(env: Envelope) -> Response {
    let code = StatusCode::from_u16(env.status_code).unwrap_or(StatusCode::OK);
    let body = serde_json::to_vec(&env).expect("envelopes serialise");
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("static response parts are valid")
}

fn sync(result: Value) -> Response {
    reply(Envelope::sync(result))
}

type ApiResult = Result<Response, ApiError>;

/// Query parameters; list values accept repetition and commas, blanks dropped.
struct Query(BTreeMap<String, Vec<String>>);

impl Query {
    fn parse(raw: Option<String>) -> Query {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            map.entry(decode(k)).or_default().push(decode(v));
        }
        Query(map)
    }
    fn one(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.first()).map(String::as_str)
    }
    fn all(&self, key: &str) -> Vec<String> {
        self.0
            .get(key)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .to_vec()
    }
    fn list(&self, key: &str) -> Vec<String> {
        self.0
            .get(key)
            .into_iter()
            .flatten()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad(format!("cannot decode request body: {e}")))
}

async fn method_not_allowed(method: Method) -> Response {
    ApiError {
        code: StatusCode::METHOD_NOT_ALLOWED,
        message: format!("method {:?} not allowed", method.as_str()),
        kind: None,
    }
    .into_response()
}

async fn not_found() -> Response {
    not_found_err("invalid API endpoint requested").into_response()
}

fn route(m: MethodRouter<Arc<Shared>>) -> MethodRouter<Arc<Shared>> {
    m.fallback(method_not_allowed)
}

/// Every route of the double, as data (like Pebble's `api.go`).
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/system-info", route(get(system_info)))
        .route("/v1/health", route(get(health)))
        .route("/v1/layers", route(post(add_layer)))
        .route("/v1/plan", route(get(get_plan)))
        .route(
            "/v1/services",
            route(get(list_services).post(services_action)),
        )
        .route(
            "/v1/services/{name}",
            route(get(|| async { bad("not implemented") })),
        )
        .route("/v1/changes", route(get(list_changes)))
        .route(
            "/v1/changes/{id}",
            route(get(get_change).post(abort_change)),
        )
        .route("/v1/changes/{id}/wait", route(get(wait_change)))
        .route("/v1/files", route(get(files_get).post(files_post)))
        .route("/v1/exec", route(post(exec)))
        .route("/v1/tasks/{task}/websocket/{ws}", route(get(websocket)))
        .route("/v1/checks", route(get(list_checks).post(checks_action)))
        .route("/v1/checks/refresh", route(post(refresh_check)))
        .route("/v1/notices", route(get(list_notices).post(add_notice)))
        .route("/v1/notices/{id}", route(get(get_notice)))
        .route("/v1/signals", route(post(signals)))
        .route("/v1/logs", route(get(logs)))
        .fallback(not_found)
        .with_state(shared)
}

// -- system ----------------------------------------------------------------

async fn system_info(State(s): State<Arc<Shared>>) -> Response {
    sync(json!({"boot-id": s.boot_id, "version": "v1.32.1"}))
}

fn check_infos(inner: &Inner, level: Option<&str>, names: &[String]) -> Vec<CheckInfo> {
    inner
        .plan
        .checks
        .iter()
        .filter(|(n, _)| names.is_empty() || names.contains(n))
        .filter(|(_, c)| match level {
            None => true,
            // "ready" implies "alive".
            Some("ready") => matches!(c.level.as_deref(), Some("ready") | Some("alive")),
            Some(l) => c.level.as_deref() == Some(l),
        })
        .map(|(name, c)| {
            let running = inner.running_checks.get(name);
            let result = inner.check_results.get(name).copied().unwrap_or_default();
            let status = match (inner.check_overrides.get(name), running) {
                (Some(s), _) => *s,
                (None, Some(_)) if result.down => CheckStatus::Down,
                (None, Some(_)) => CheckStatus::Up,
                (None, None) => CheckStatus::Inactive,
            };
            let failures = match inner.check_overrides.get(name) {
                Some(CheckStatus::Down) => u64::from(c.threshold.unwrap_or(3)),
                Some(_) => 0,
                None => result.failures,
            };
            CheckInfo {
                name: name.clone(),
                level: c.level.clone(),
                startup: Some(c.startup.clone().unwrap_or_else(|| "enabled".into())),
                status,
                successes: Some(result.successes),
                failures,
                threshold: c.threshold.unwrap_or(3),
                change_id: running.cloned(),
                prev_change_id: None,
            }
        })
        .collect()
}

async fn health(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> ApiResult {
    let q = Query::parse(q);
    let level = q.one("level").filter(|l| !l.is_empty());
    if let Some(l) = level {
        if l != "alive" && l != "ready" {
            return Err(bad("level must be \"alive\" or \"ready\""));
        }
    }
    let inner = s.inner.lock().expect("not poisoned");
    let healthy = check_infos(&inner, level, &q.list("names"))
        .iter()
        .all(|c| c.status != CheckStatus::Down);
    let mut env = Envelope::sync(json!({ "healthy": healthy }));
    if !healthy {
        env.status_code = 502;
        env.status = "Bad Gateway".into();
    }
    Ok(reply(env))
}

// -- layers and plan -----------------------------------------------------------

async fn add_layer(State(s): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let v = parse_body(&body)?;
    let action = v["action"].as_str().unwrap_or("");
    if action != "add" {
        return Err(bad(format!("invalid action {action:?}")));
    }
    let label = v["label"].as_str().unwrap_or("");
    if label.is_empty() {
        return Err(bad("label must be set"));
    }
    let format = v["format"].as_str().unwrap_or("");
    if format != "yaml" {
        return Err(bad(format!("invalid format {format:?}")));
    }
    if label.starts_with("pebble-") {
        return Err(bad(format!(
            "cannot use reserved label prefix \"pebble-\" in label {label:?}"
        )));
    }
    let layer = plan::parse_layer(v["layer"].as_str().unwrap_or(""))
        .map_err(|e| bad(format!("cannot parse layer YAML: {e}")))?;
    let combine = v["combine"].as_bool().unwrap_or(false);
    {
        let mut inner = s.inner.lock().expect("not poisoned");
        let mut layers = inner.layers.clone();
        match layers.iter_mut().find(|(l, _)| l == label) {
            Some((_, existing)) if combine => {
                *existing = plan::combine(&[
                    (label.to_owned(), existing.clone()),
                    (label.to_owned(), layer),
                ])
                .map_err(bad)?;
            }
            Some(_) => return Err(bad(format!("layer {label:?} already exists"))),
            None => layers.push((label.to_owned(), layer)),
        }
        // A failed add leaves the plan unchanged.
        let new_plan = plan::combine(&layers)
            .and_then(plan::finish_plan)
            .map_err(bad)?;
        inner.layers = layers;
        inner.plan = new_plan;
        // Adding a layer (re)starts checks at once; never services.
        start_checks(&mut inner);
    }
    sync_check_runners(&s);
    s.touched();
    Ok(sync(json!(true)))
}

fn start_checks(inner: &mut Inner) {
    let enabled: Vec<String> = inner
        .plan
        .checks
        .iter()
        .filter(|(_, c)| c.startup.as_deref() != Some("disabled"))
        .map(|(n, _)| n.clone())
        .collect();
    inner
        .running_checks
        .retain(|n, _| inner.plan.checks.contains_key(n));
    for name in enabled {
        if inner.running_checks.contains_key(&name) {
            continue;
        }
        let kind = match &inner.plan.checks[&name] {
            c if c.http.is_some() => "HTTP",
            c if c.tcp.is_some() => "TCP",
            _ => "exec",
        };
        let id = new_change(
            inner,
            "perform-check",
            &format!("Perform {kind} check {name:?}"),
            &[("perform-check", format!("Perform {kind} check {name:?}"))],
        );
        // A running check's task stays Doing.
        let change = inner.changes.get_mut(&id).expect("just made");
        change.status = "Doing".into();
        for t in &mut change.tasks {
            t.status = "Doing".into();
        }
        inner.running_checks.insert(name, id.to_string());
    }
}

/// Starts (or restarts, when the definition changed) a task per running
/// check when the workload really runs checks, and stops the others.
pub(crate) fn sync_check_runners(s: &Arc<Shared>) {
    if !s.workload.runs_checks() {
        return;
    }
    let mut inner = s.inner.lock().expect("not poisoned");
    let wanted: BTreeMap<String, crate::pebble::layer::Check> = inner
        .running_checks
        .keys()
        .filter_map(|n| inner.plan.checks.get(n).map(|c| (n.clone(), c.clone())))
        .collect();
    let stale: Vec<String> = inner
        .check_runners
        .iter()
        .filter(|(n, (def, _))| wanted.get(*n) != Some(def))
        .map(|(n, _)| n.clone())
        .collect();
    for n in stale {
        if let Some((_, task)) = inner.check_runners.remove(&n) {
            task.abort();
        }
        inner.check_results.remove(&n);
    }
    for (name, check) in wanted {
        if inner.check_runners.contains_key(&name) {
            continue;
        }
        let task = tokio::spawn(run_check_forever(s.clone(), name.clone(), check.clone()));
        inner.check_runners.insert(name, (check, task));
    }
}

/// One check's life: first run one period after start, then every period;
/// `threshold` failures in a row make it down, a success brings it up.
async fn run_check_forever(s: Arc<Shared>, name: String, check: crate::pebble::layer::Check) {
    let period = check
        .period
        .as_deref()
        .and_then(|p| duration::parse(p).ok())
        .unwrap_or(Duration::from_secs(10));
    let threshold = u64::from(check.threshold.unwrap_or(3));
    loop {
        tokio::time::sleep(period).await;
        let outcome = s.workload.run_check(&name, &check).await;
        {
            let mut inner = s.inner.lock().expect("not poisoned");
            let r = inner.check_results.entry(name.clone()).or_default();
            match outcome {
                Ok(()) => {
                    r.failures = 0;
                    r.successes += 1;
                    r.down = false;
                }
                Err(_) => {
                    r.failures += 1;
                    if r.failures >= threshold {
                        r.down = true;
                        r.successes = 0;
                    }
                }
            }
        }
        s.touched();
    }
}

async fn get_plan(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> ApiResult {
    let q = Query::parse(q);
    let format = q.one("format").unwrap_or("");
    if format != "yaml" {
        return Err(bad(format!("invalid format {format:?}")));
    }
    let inner = s.inner.lock().expect("not poisoned");
    Ok(sync(json!(plan::plan_to_yaml(&inner.plan))))
}

// -- services and changes --------------------------------------------------------

async fn list_services(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let names = Query::parse(q).list("names");
    let mut inner = s.inner.lock().expect("not poisoned");
    // A real service that exited on its own is in error (the double does
    // not restart it).
    let since = now();
    for (name, st) in inner.services.iter_mut() {
        if st.current == ServiceStatus::Active && s.workload.service_exit(name).is_some() {
            st.current = ServiceStatus::Error;
            st.since = since.clone();
        }
    }
    let list: Vec<ServiceInfo> = inner
        .plan
        .services
        .iter()
        .filter(|(n, _)| names.is_empty() || names.contains(n))
        .map(|(name, svc)| {
            let state = inner.services.get(name);
            ServiceInfo {
                name: name.clone(),
                startup: if svc.is_enabled() {
                    ServiceStartup::Enabled
                } else {
                    ServiceStartup::Disabled
                },
                current: state.map_or(ServiceStatus::Inactive, |s| s.current),
                current_since: state.map(|s| s.since.clone()),
            }
        })
        .collect();
    sync(serde_json::to_value(list).expect("service infos serialise"))
}

fn new_change(inner: &mut Inner, kind: &str, summary: &str, tasks: &[(&str, String)]) -> u64 {
    let id = inner.next_change;
    inner.next_change += 1;
    let spawn = now();
    let tasks = tasks
        .iter()
        .map(|(kind, summary)| {
            let tid = inner.next_task;
            inner.next_task += 1;
            inner.task_change.insert(tid.to_string(), id);
            Task {
                id: tid.to_string(),
                kind: (*kind).to_owned(),
                summary: summary.clone(),
                status: "Do".into(),
                log: vec![],
                progress: TaskProgress {
                    label: String::new(),
                    done: 0,
                    total: 1,
                },
                spawn_time: spawn.clone(),
                ready_time: None,
                data: None,
            }
        })
        .collect::<Vec<_>>();
    let ready = tasks.is_empty();
    inner.changes.insert(
        id,
        Change {
            id: id.to_string(),
            kind: kind.to_owned(),
            summary: summary.to_owned(),
            status: if ready { "Done".into() } else { "Do".into() },
            tasks,
            ready,
            err: None,
            spawn_time: spawn.clone(),
            ready_time: ready.then_some(spawn),
            data: None,
        },
    );
    id
}

/// Recomputes a change's status from its tasks (pebble.md §5 priority).
fn settle(change: &mut Change) {
    const PRIORITY: &[&str] = &[
        "Abort", "Undoing", "Undo", "Doing", "Do", "Wait", "Error", "Undone", "Done", "Hold",
    ];
    let status = PRIORITY
        .iter()
        .find(|p| change.tasks.iter().any(|t| t.status == **p))
        .copied()
        .unwrap_or("Done");
    change.status = status.to_owned();
    change.ready = matches!(status, "Done" | "Undone" | "Error" | "Hold");
    if change.ready && change.ready_time.is_none() {
        change.ready_time = Some(now());
    }
    let errors: Vec<String> = change
        .tasks
        .iter()
        .filter(|t| t.status == "Error")
        .map(|t| {
            let detail = t
                .log
                .iter()
                .rev()
                .find(|l| l.contains(" ERROR "))
                .and_then(|l| l.split_once(" ERROR "))
                .map_or(String::new(), |(_, m)| m.to_owned());
            format!("- {} ({detail})", t.summary)
        })
        .collect();
    if change.ready && !errors.is_empty() {
        change.err = Some(format!(
            "cannot perform the following tasks:\n{}",
            errors.join("\n")
        ));
    }
}

fn update_task(s: &Shared, change: u64, task: usize, f: impl FnOnce(&mut Task)) {
    {
        let mut inner = s.inner.lock().expect("not poisoned");
        if let Some(c) = inner.changes.get_mut(&change) {
            if let Some(t) = c.tasks.get_mut(task) {
                f(t);
                if matches!(t.status.as_str(), "Done" | "Error" | "Hold" | "Undone") {
                    t.progress.done = 1;
                    t.ready_time.get_or_insert_with(now);
                }
            }
            settle(c);
        }
    }
    s.touched();
}

fn settle_change(s: &Shared, change: u64) {
    if let Some(c) = s
        .inner
        .lock()
        .expect("not poisoned")
        .changes
        .get_mut(&change)
    {
        settle(c);
    }
    s.touched();
}

fn log_line(level: &str, text: &str) -> String {
    format!("{} {level} {text}", now())
}

fn set_service(
    s: &Shared,
    name: &str,
    current: ServiceStatus,
    started_with: Option<crate::pebble::layer::Service>,
) {
    let mut inner = s.inner.lock().expect("not poisoned");
    let since = now();
    let entry = inner.services.entry(name.to_owned()).or_insert(SvcState {
        current: ServiceStatus::Inactive,
        since: since.clone(),
        started_with: None,
    });
    if entry.current != current {
        entry.since = since;
    }
    entry.current = current;
    if current == ServiceStatus::Active {
        entry.started_with = started_with;
    }
}

/// Runs the tasks of a services change in order (stops before starts), the
/// way Pebble's service manager does, then settles the change.
async fn run_service_change(s: Arc<Shared>, change: u64, ops: Vec<(bool, String)>) {
    let mut failed = false;
    for (i, (start, name)) in ops.iter().enumerate() {
        if failed {
            update_task(&s, change, i, |t| t.status = "Hold".into());
            continue;
        }
        update_task(&s, change, i, |t| t.status = "Doing".into());
        let (current, svc) = {
            let inner = s.inner.lock().expect("not poisoned");
            (
                inner
                    .services
                    .get(name)
                    .map_or(ServiceStatus::Inactive, |st| st.current),
                inner.plan.services.get(name).cloned(),
            )
        };
        if *start {
            if current == ServiceStatus::Active {
                update_task(&s, change, i, |t| {
                    t.log.push(log_line(
                        "INFO",
                        &format!("Service {name:?} already started."),
                    ));
                    t.status = "Done".into();
                });
                continue;
            }
            let svc = svc.unwrap_or_default();
            match s.workload.start_service(name, &svc).await {
                Ok(()) => {
                    set_service(&s, name, ServiceStatus::Active, Some(svc));
                    update_task(&s, change, i, |t| t.status = "Done".into());
                }
                Err(e) => {
                    failed = true;
                    set_service(&s, name, ServiceStatus::Backoff, None);
                    update_task(&s, change, i, |t| {
                        t.log.push(log_line("ERROR", &e));
                        t.status = "Error".into();
                    });
                }
            }
        } else {
            if current == ServiceStatus::Inactive {
                update_task(&s, change, i, |t| {
                    t.log.push(log_line(
                        "INFO",
                        &format!("Service {name:?} has never been started."),
                    ));
                    t.status = "Done".into();
                });
                continue;
            }
            match s.workload.stop_service(name).await {
                Ok(()) => {
                    set_service(&s, name, ServiceStatus::Inactive, None);
                    update_task(&s, change, i, |t| t.status = "Done".into());
                }
                Err(e) => {
                    failed = true;
                    update_task(&s, change, i, |t| {
                        t.log.push(log_line("ERROR", &e));
                        t.status = "Error".into();
                    });
                }
            }
        }
    }
    // Whatever happened, the change's own status follows its tasks.
    settle_change(&s, change);
}

fn summary(verb: &str, names: &[String]) -> String {
    match names {
        [] => format!("{verb} - no services"),
        [one] => format!("{verb} service {one:?}"),
        [first, rest @ ..] => format!("{verb} service {first:?} and {} more", rest.len()),
    }
}

async fn services_action(State(s): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let v = parse_body(&body)?;
    let action = v["action"].as_str().unwrap_or("").to_owned();
    let names: Vec<String> = v["services"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let (change, ops) = {
        let mut inner = s.inner.lock().expect("not poisoned");
        let plan_ref = &inner.plan;
        let active = |inner: &Inner, n: &str| {
            inner
                .services
                .get(n)
                .is_some_and(|st| st.current == ServiceStatus::Active)
        };
        let mut ops: Vec<(bool, String)> = Vec::new();
        let verb = match action.as_str() {
            "start" | "stop" | "restart" => {
                if names.is_empty() {
                    return Err(bad(format!("must specify services for {action} action")));
                }
                match action.as_str() {
                    "start" => {
                        let order = plan::start_order(plan_ref, &names)
                            .map_err(|e| bad(format!("cannot start services: {e}")))?;
                        ops.extend(order.into_iter().map(|n| (true, n)));
                        "Start"
                    }
                    "stop" => {
                        let order = plan::stop_order(plan_ref, &names)
                            .map_err(|e| bad(format!("cannot stop services: {e}")))?;
                        ops.extend(order.into_iter().map(|n| (false, n)));
                        "Stop"
                    }
                    _ => {
                        let stop = plan::stop_order(plan_ref, &names)
                            .map_err(|e| bad(format!("cannot restart services: {e}")))?;
                        let start = plan::start_order(plan_ref, &names)
                            .map_err(|e| bad(format!("cannot restart services: {e}")))?;
                        ops.extend(
                            stop.into_iter()
                                .filter(|n| names.contains(n) && active(&inner, n))
                                .map(|n| (false, n)),
                        );
                        ops.extend(
                            start
                                .into_iter()
                                .filter(|n| names.contains(n))
                                .map(|n| (true, n)),
                        );
                        "Restart"
                    }
                }
            }
            "replan" | "autostart" => {
                if !names.is_empty() {
                    return Err(bad(format!("{action} accepts no service names")));
                }
                let enabled: Vec<String> = plan_ref
                    .services
                    .iter()
                    .filter(|(_, svc)| svc.is_enabled())
                    .map(|(n, _)| n.clone())
                    .collect();
                if action == "autostart" {
                    if enabled.is_empty() {
                        return Err(ApiError {
                            code: StatusCode::BAD_REQUEST,
                            message: "no default services".into(),
                            kind: Some("no-default-services"),
                        });
                    }
                    let order = plan::start_order(plan_ref, &enabled).map_err(bad)?;
                    ops.extend(order.into_iter().map(|n| (true, n)));
                    "Autostart"
                } else {
                    // Services whose definition changed since they were
                    // started are restarted; enabled ones are started.
                    let changed: Vec<String> = inner
                        .services
                        .iter()
                        .filter(|(n, st)| {
                            st.current == ServiceStatus::Active
                                && st.started_with.as_ref() != plan_ref.services.get(*n)
                        })
                        .map(|(n, _)| n.clone())
                        .filter(|n| plan_ref.services.contains_key(n))
                        .collect();
                    let stop = plan::stop_order(plan_ref, &changed).map_err(bad)?;
                    ops.extend(
                        stop.into_iter()
                            .filter(|n| active(&inner, n))
                            .map(|n| (false, n)),
                    );
                    let mut to_start: Vec<String> = enabled
                        .iter()
                        .filter(|n| !active(&inner, n))
                        .cloned()
                        .collect();
                    to_start.extend(changed.iter().cloned());
                    to_start.sort();
                    to_start.dedup();
                    let start = plan::start_order(plan_ref, &to_start).map_err(bad)?;
                    ops.extend(start.into_iter().map(|n| (true, n)));
                    start_checks(&mut inner);
                    "Replan"
                }
            }
            other => return Err(bad(format!("invalid action {other:?}"))),
        };
        let mut touched: Vec<String> = Vec::new();
        for (_, n) in &ops {
            if !touched.contains(n) {
                touched.push(n.clone());
            }
        }
        let tasks: Vec<(&str, String)> = ops
            .iter()
            .map(|(start, n)| {
                if *start {
                    ("start", format!("Start service {n:?}"))
                } else {
                    ("stop", format!("Stop service {n:?}"))
                }
            })
            .collect();
        let change = new_change(&mut inner, &action, &summary(verb, &touched), &tasks);
        (change, ops)
    };
    sync_check_runners(&s);
    s.touched();
    if !ops.is_empty() {
        // Simulated services start at once, so this finishes within a few
        // polls; the client waits on the change as with a real Pebble.
        tokio::spawn(run_service_change(s.clone(), change, ops));
    }
    Ok(reply(Envelope::async_change(
        &change.to_string(),
        Value::Null,
    )))
}

fn find_change(inner: &Inner, id: &str) -> Result<Change, ApiError> {
    id.parse::<u64>()
        .ok()
        .and_then(|n| inner.changes.get(&n))
        .cloned()
        .ok_or_else(|| not_found_err(format!("cannot find change with id {id:?}")))
}

async fn list_changes(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> ApiResult {
    let q = Query::parse(q);
    let select = q.one("select").unwrap_or("in-progress");
    if !["all", "in-progress", "ready"].contains(&select) {
        return Err(bad("select should be one of: all,in-progress,ready"));
    }
    let inner = s.inner.lock().expect("not poisoned");
    let list: Vec<&Change> = inner
        .changes
        .values()
        .filter(|c| match select {
            "all" => true,
            "ready" => c.ready,
            _ => !c.ready,
        })
        .collect();
    Ok(sync(serde_json::to_value(list).expect("changes serialise")))
}

async fn get_change(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult {
    let inner = s.inner.lock().expect("not poisoned");
    Ok(sync(
        serde_json::to_value(find_change(&inner, &id)?).expect("changes serialise"),
    ))
}

async fn abort_change(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let v = parse_body(&body)?;
    if v["action"] != "abort" {
        return Err(bad(format!(
            "invalid action {:?}",
            v["action"].as_str().unwrap_or("")
        )));
    }
    let inner = s.inner.lock().expect("not poisoned");
    let change = find_change(&inner, &id)?;
    if change.ready {
        return Err(bad(format!(
            "cannot abort change {id} with nothing pending"
        )));
    }
    Ok(sync(
        serde_json::to_value(change).expect("changes serialise"),
    ))
}

async fn wait_change(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let q = Query::parse(q);
    let timeout = match q.one("timeout").filter(|t| !t.is_empty()) {
        Some(t) => Some(duration::parse(t).map_err(bad)?),
        None => None,
    };
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    loop {
        // Register interest before looking, so no update is missed.
        let notified = s.changed.notified();
        {
            let inner = s.inner.lock().expect("not poisoned");
            let change = find_change(&inner, &id)?;
            if change.ready {
                return Ok(sync(
                    serde_json::to_value(change).expect("changes serialise"),
                ));
            }
        }
        match deadline {
            Some(d) => {
                if tokio::time::timeout_at(d, notified).await.is_err() {
                    return Err(ApiError {
                        code: StatusCode::GATEWAY_TIMEOUT,
                        message: format!(
                            "timed out waiting for change after {}",
                            duration::format(timeout.unwrap_or_default())
                        ),
                        kind: None,
                    });
                }
            }
            None => notified.await,
        }
    }
}

// -- files ----------------------------------------------------------------

fn path_result(path: &str, r: Result<(), FsError>) -> PathResult {
    PathResult {
        path: path.to_owned(),
        error: r.err().map(|e| PathErrorBody {
            message: e.message,
            kind: e.kind.to_owned(),
        }),
    }
}

async fn files_get(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let q = Query::parse(q);
    match q.one("action").unwrap_or("") {
        "read" => {
            let accept = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !accept.contains("multipart/form-data") {
                return Err(bad("must accept multipart/form-data"));
            }
            let paths = q.all("path");
            if paths.is_empty() {
                return Err(bad("must specify one or more paths"));
            }
            let boundary = Alphanumeric.sample_string(&mut rand::rng(), 40);
            let mut body = Vec::new();
            let mut results = Vec::new();
            for p in &paths {
                match s.workload.read(p) {
                    Ok(data) => {
                        let escaped = p.replace('\\', "\\\\").replace('"', "\\\"");
                        body.extend_from_slice(
                            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{escaped}\"\r\n\r\n").as_bytes(),
                        );
                        body.extend_from_slice(&data);
                        body.extend_from_slice(b"\r\n");
                        results.push(path_result(p, Ok(())));
                    }
                    Err(e) => results.push(path_result(p, Err(e))),
                }
            }
            let env = Envelope::sync(serde_json::to_value(results).expect("results serialise"));
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Type: application/json\r\nContent-Disposition: form-data; name=\"response\"\r\n\r\n").as_bytes(),
            );
            body.extend_from_slice(&serde_json::to_vec(&env).expect("envelopes serialise"));
            body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header(
                    header::CONTENT_TYPE,
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(Body::from(body))
                .expect("static response parts are valid"))
        }
        "list" => {
            let path = q.one("path").unwrap_or("");
            if !path.starts_with('/') {
                return Err(bad(format!("path must be absolute, got {path:?}")));
            }
            let itself = q.one("itself") == Some("true");
            match s
                .workload
                .list(path, q.one("pattern").filter(|p| !p.is_empty()), itself)
            {
                Ok(list) => Ok(sync(
                    serde_json::to_value(list).expect("file infos serialise"),
                )),
                Err(e) => {
                    let code = match e.kind {
                        "not-found" => StatusCode::NOT_FOUND,
                        "permission-denied" => StatusCode::FORBIDDEN,
                        _ => StatusCode::BAD_REQUEST,
                    };
                    Err(ApiError {
                        code,
                        message: e.message,
                        kind: Some(e.kind),
                    })
                }
            }
        }
        other => Err(bad(format!("invalid action {other:?}"))),
    }
}

fn ownership(v: &Value) -> Result<Ownership, String> {
    let permissions = match v.get("permissions").and_then(Value::as_str) {
        None | Some("") => None,
        Some(p) if p.len() == 3 && p.bytes().all(|b| (b'0'..=b'7').contains(&b)) => {
            Some(u32::from_str_radix(p, 8).expect("checked octal"))
        }
        Some(p) => {
            return Err(format!(
                "permissions must be a 3-digit octal string, got {p:?}"
            ))
        }
    };
    let id = |k: &str| {
        v.get(k)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
    };
    let name = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    Ok(Ownership {
        permissions,
        user_id: id("user-id"),
        user: name("user"),
        group_id: id("group-id"),
        group: name("group"),
    })
}

async fn files_post(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> ApiResult {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let results = if ctype.starts_with("multipart/form-data") {
        write_files(&s, &ctype, body).await?
    } else {
        let bytes = axum::body::to_bytes(body, 64 * 1024 * 1024)
            .await
            .map_err(|e| bad(format!("cannot read request body: {e}")))?;
        let v = parse_body(&bytes)?;
        match v["action"].as_str().unwrap_or("") {
            "make-dirs" => v["dirs"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|d| {
                    let path = d["path"].as_str().unwrap_or("").to_owned();
                    let r = ownership(d).map_err(FsError::generic_msg).and_then(|own| {
                        s.workload.make_dir(
                            &path,
                            d["make-parents"].as_bool().unwrap_or(false),
                            &own,
                        )
                    });
                    path_result(&path, r)
                })
                .collect(),
            "remove" => v["paths"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    let path = p["path"].as_str().unwrap_or("").to_owned();
                    let r = s
                        .workload
                        .remove(&path, p["recursive"].as_bool().unwrap_or(false));
                    path_result(&path, r)
                })
                .collect(),
            "write" => return Err(bad("must use multipart with \"write\" action")),
            other => return Err(bad(format!("invalid action {other:?}"))),
        }
    };
    s.touched();
    Ok(sync(
        serde_json::to_value(results).expect("results serialise"),
    ))
}

impl FsError {
    fn generic_msg(message: String) -> FsError {
        FsError {
            kind: "generic-file-error",
            message,
        }
    }
}

async fn write_files(s: &Shared, ctype: &str, body: Body) -> Result<Vec<PathResult>, ApiError> {
    // Read the whole body before answering, errors included: answering
    // while the client is still sending its (chunked) body makes hyper drop
    // the connection and the client see a broken pipe.
    let bytes = axum::body::to_bytes(body, 1 << 30)
        .await
        .map_err(|e| bad(format!("cannot read request body: {e}")))?;
    let boundary = multer::parse_boundary(ctype).map_err(|_| bad("invalid boundary"))?;
    if boundary.len() < 32 {
        return Err(bad("invalid boundary"));
    }
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(bytes) });
    let mut mp = multer::Multipart::new(stream, boundary);
    let first = mp
        .next_field()
        .await
        .map_err(|e| bad(format!("cannot read multipart body: {e}")))?
        .ok_or_else(|| bad("must specify \"request\" field"))?;
    if first.name() != Some("request") {
        return Err(bad("must specify \"request\" field first"));
    }
    let request: Value =
        serde_json::from_slice(&first.bytes().await.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(format!("cannot decode request: {e}")))?;
    if request["action"] != "write" {
        return Err(bad(format!(
            "invalid action {:?}",
            request["action"].as_str().unwrap_or("")
        )));
    }
    let files: Vec<Value> = request["files"].as_array().cloned().unwrap_or_default();
    let mut results: BTreeMap<String, Result<(), FsError>> = BTreeMap::new();
    while let Some(field) = mp
        .next_field()
        .await
        .map_err(|e| bad(format!("cannot read multipart body: {e}")))?
    {
        if field.name() != Some("files") {
            return Err(bad(format!(
                "unexpected multipart field {:?}",
                field.name().unwrap_or("")
            )));
        }
        let path = field.file_name().unwrap_or("").to_owned();
        let Some(meta) = files
            .iter()
            .find(|f| f["path"].as_str() == Some(path.as_str()))
        else {
            return Err(bad(format!("no metadata for path {path:?}")));
        };
        let data = field
            .bytes()
            .await
            .map_err(|e| bad(format!("cannot read file content: {e}")))?;
        let r = ownership(meta)
            .map_err(FsError::generic_msg)
            .and_then(|own| {
                s.workload.write(
                    &path,
                    &data,
                    meta["make-dirs"].as_bool().unwrap_or(false),
                    &own,
                )
            });
        results.insert(path, r);
    }
    Ok(files
        .iter()
        .map(|f| {
            let path = f["path"].as_str().unwrap_or("").to_owned();
            let r = results.remove(&path).unwrap_or_else(|| {
                Err(FsError::generic_msg(format!(
                    "no file content for path {path:?}"
                )))
            });
            path_result(&path, r)
        })
        .collect())
}

// -- exec -----------------------------------------------------------------

const END: &str = r#"{"command":"end"}"#;

async fn exec(State(s): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let v = parse_body(&body)?;
    let command: Vec<String> = v["command"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if command.is_empty() {
        return Err(bad("must specify command"));
    }
    let str_of = |k: &str| v[k].as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    let timeout = match str_of("timeout") {
        Some(t) => Some(duration::parse(&t).map_err(bad)?),
        None => None,
    };
    let split_stderr = v["split-stderr"].as_bool().unwrap_or(false);
    let mut environment: BTreeMap<String, String> = BTreeMap::new();
    let mut working_dir = str_of("working-dir");
    let mut user = str_of("user");
    let mut group = str_of("group");
    if let Some(ctx) = str_of("service-context") {
        let inner = s.inner.lock().expect("not poisoned");
        let svc = inner
            .plan
            .services
            .get(&ctx)
            .ok_or_else(|| bad(format!("context service {ctx:?} not found")))?;
        environment.extend(svc.environment.clone());
        working_dir = working_dir.or_else(|| svc.working_dir.clone());
        user = user.or_else(|| svc.user.clone());
        group = group.or_else(|| svc.group.clone());
    }
    if let Some(env) = v["environment"].as_object() {
        for (k, val) in env {
            environment.insert(k.clone(), val.as_str().unwrap_or_default().to_owned());
        }
    }
    s.workload.find_executable(&command).map_err(bad)?;
    if let Some(wd) = &working_dir {
        if !s.workload.is_dir(wd) {
            return Err(internal(format!(
                "cannot call exec: working directory {wd:?} does not exist"
            )));
        }
    }
    let mut final_env = BTreeMap::from([
        (
            "PATH".to_owned(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
        ),
        (
            "HOME".to_owned(),
            if user.as_deref().unwrap_or("root") == "root" {
                "/root".into()
            } else {
                format!("/home/{}", user.as_deref().unwrap_or_default())
            },
        ),
        (
            "USER".to_owned(),
            user.clone().unwrap_or_else(|| "root".into()),
        ),
        ("LANG".to_owned(), "C.UTF-8".to_owned()),
    ]);
    final_env.extend(environment.clone());
    let shown_wd = working_dir
        .clone()
        .unwrap_or_else(|| final_env["HOME"].clone());
    let spec = ExecSpec {
        command: command.clone(),
        environment,
        working_dir,
        user,
        group,
    };

    let (change, task_id, rx) = {
        let mut inner = s.inner.lock().expect("not poisoned");
        let name = command[0]
            .rsplit('/')
            .next()
            .unwrap_or(&command[0])
            .to_owned();
        let summary = format!("Execute command {name:?}");
        let change = new_change(&mut inner, "exec", &summary, &[("exec", summary.clone())]);
        let task_id = inner.changes[&change].tasks[0].id.clone();
        let (control_tx, control_rx) = oneshot::channel();
        let (stdio_tx, stdio_rx) = oneshot::channel();
        let (stderr_tx, stderr_rx) = oneshot::channel();
        inner.exec_slots.insert(
            task_id.clone(),
            ExecSlots {
                split_stderr,
                control: Some(control_tx),
                stdio: Some(stdio_tx),
                stderr: split_stderr.then_some(stderr_tx),
            },
        );
        let c = inner.changes.get_mut(&change).expect("just made");
        c.status = "Doing".into();
        c.tasks[0].status = "Doing".into();
        (
            change,
            task_id,
            (control_rx, stdio_rx, split_stderr.then_some(stderr_rx)),
        )
    };
    tokio::spawn(run_exec(s.clone(), change, spec, timeout, rx));
    Ok(reply(Envelope::async_change(
        &change.to_string(),
        json!({"task-id": task_id, "environment": final_env, "working-dir": shown_wd}),
    )))
}

type ExecReceivers = (
    oneshot::Receiver<WebSocket>,
    oneshot::Receiver<WebSocket>,
    Option<oneshot::Receiver<WebSocket>>,
);

async fn run_exec(
    s: Arc<Shared>,
    change: u64,
    spec: ExecSpec,
    timeout: Option<Duration>,
    rx: ExecReceivers,
) {
    let (control_rx, stdio_rx, stderr_rx) = rx;
    let task_label = {
        let inner = s.inner.lock().expect("not poisoned");
        inner
            .changes
            .get(&change)
            .map(|c| c.tasks[0].id.clone())
            .unwrap_or_default()
    };
    // The command starts only once stdio (and stderr) are connected.
    let connected = tokio::time::timeout(Duration::from_secs(5), async {
        let stdio = stdio_rx.await.ok()?;
        let stderr = match stderr_rx {
            Some(rx) => Some(rx.await.ok()?),
            None => None,
        };
        Some((stdio, stderr))
    })
    .await;
    let Ok(Some((stdio, stderr_ws))) = connected else {
        fail_exec(&s, change, &format!("exec {task_label}: timeout waiting for websocket connections: context deadline exceeded"));
        return;
    };
    let control = tokio::spawn(async move { control_rx.await.ok() });

    let (mut stdio_tx, mut stdio_rx) = stdio.split();
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(16);
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(16);
    let (err_tx, mut err_rx) = mpsc::channel::<Bytes>(16);

    // Client → process stdin, until its end marker or the socket closes.
    let stdin_pump = tokio::spawn(async move {
        let mut tx = Some(stdin_tx);
        while let Some(Ok(msg)) = stdio_rx.next().await {
            match msg {
                Message::Binary(b) => {
                    if let Some(t) = &tx {
                        let _ = t.send(b).await;
                    }
                }
                Message::Text(t) if t.as_str().contains("\"end\"") => {
                    tx = None;
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        drop(tx);
    });

    let process = s.workload.exec(spec, stdin_rx, out_tx, err_tx);
    let result = match timeout {
        Some(t) => match tokio::time::timeout(t, process).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "timed out after {}: context deadline exceeded",
                duration::format(t)
            )),
        },
        None => process.await,
    };
    // Drain output to the sockets, then send each stream's end marker.
    let (mut stderr_sink, _stderr_stream) = match stderr_ws {
        Some(ws) => {
            let (a, b) = ws.split();
            (Some(a), Some(b))
        }
        None => (None, None),
    };
    while let Some(chunk) = out_rx.recv().await {
        let _ = stdio_tx.send(Message::Binary(chunk)).await;
    }
    while let Some(chunk) = err_rx.recv().await {
        match &mut stderr_sink {
            Some(sink) => {
                let _ = sink.send(Message::Binary(chunk)).await;
            }
            None => {
                let _ = stdio_tx.send(Message::Binary(chunk)).await;
            }
        }
    }
    let _ = stdio_tx.send(Message::Text(END.into())).await;
    if let Some(sink) = &mut stderr_sink {
        let _ = sink.send(Message::Text(END.into())).await;
    }
    stdin_pump.abort();
    match result {
        Ok(code) => {
            update_task(&s, change, 0, |t| {
                t.data = Some(serde_json::Map::from_iter([(
                    "exit-code".to_owned(),
                    json!(code),
                )]));
                t.status = "Done".into();
            });
        }
        Err(e) => fail_exec(&s, change, &e),
    }
    // Pebble closes the control socket when the process is done.
    if let Ok(Some(mut ctl)) = control.await {
        let _ = ctl.send(Message::Close(None)).await;
    }
}

fn fail_exec(s: &Shared, change: u64, message: &str) {
    update_task(s, change, 0, |t| {
        t.log.push(log_line("ERROR", message));
        t.data = Some(serde_json::Map::from_iter([(
            "exit-code".to_owned(),
            json!(-1),
        )]));
        t.status = "Error".into();
    });
}

async fn websocket(
    State(s): State<Arc<Shared>>,
    Path((task, ws_id)): Path<(String, String)>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult {
    let sender = {
        let mut inner = s.inner.lock().expect("not poisoned");
        let Some(change) = inner.task_change.get(&task).copied() else {
            return Err(not_found_err(format!("cannot find task with id {task:?}")));
        };
        let kind = inner.changes[&change]
            .tasks
            .iter()
            .find(|t| t.id == task)
            .map(|t| t.kind.clone())
            .unwrap_or_default();
        let Some(slots) = inner.exec_slots.get_mut(&task) else {
            return Err(bad(format!("{kind:?} tasks do not have websockets")));
        };
        let slot = match ws_id.as_str() {
            "control" => &mut slots.control,
            "stdio" => &mut slots.stdio,
            "stderr" if slots.split_stderr => &mut slots.stderr,
            _ => {
                return Err(not_found_err(format!(
                    "cannot find {ws_id} websocket for task {task:?}"
                )))
            }
        };
        if upgrade.is_err() {
            return Err(bad(format!(
                "{ws_id} websocket for task {task:?} needs a websocket upgrade"
            )));
        }
        slot.take().ok_or_else(|| {
            internal(format!(
                "{ws_id} websocket for task {task:?} already connected"
            ))
        })?
    };
    let upgrade = upgrade.map_err(|e| bad(e.to_string()))?;
    Ok(upgrade.on_upgrade(move |socket| async move {
        let _ = sender.send(socket);
    }))
}

// -- checks, notices, signals, logs -------------------------------------------

async fn list_checks(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> ApiResult {
    let q = Query::parse(q);
    let level = q.one("level").filter(|l| !l.is_empty());
    if let Some(l) = level {
        if l != "alive" && l != "ready" {
            return Err(bad("level must be \"alive\" or \"ready\""));
        }
    }
    let inner = s.inner.lock().expect("not poisoned");
    Ok(sync(
        serde_json::to_value(check_infos(&inner, level, &q.list("names")))
            .expect("check infos serialise"),
    ))
}

async fn checks_action(State(s): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let v = parse_body(&body)?;
    let action = v["action"].as_str().unwrap_or("").to_owned();
    let names: Vec<String> = v["checks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut changed = Vec::new();
    {
        let mut inner = s.inner.lock().expect("not poisoned");
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| !inner.plan.checks.contains_key(*n))
            .collect();
        if !missing.is_empty() {
            let list = missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(bad(format!(
                "cannot {action} checks: cannot find checks in plan: {list}"
            )));
        }
        match action.as_str() {
            "start" => {
                for n in &names {
                    if !inner.running_checks.contains_key(n) {
                        let id = new_change(
                            &mut inner,
                            "perform-check",
                            &format!("Perform check {n:?}"),
                            &[("perform-check", format!("Perform check {n:?}"))],
                        );
                        inner.running_checks.insert(n.clone(), id.to_string());
                        changed.push(n.clone());
                    }
                }
            }
            "stop" => {
                for n in &names {
                    if inner.running_checks.remove(n).is_some() {
                        changed.push(n.clone());
                    }
                }
            }
            other => return Err(bad(format!("invalid action {other:?}"))),
        }
    }
    changed.sort();
    sync_check_runners(&s);
    s.touched();
    Ok(sync(json!({ "changed": changed })))
}

async fn refresh_check(State(s): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let v = parse_body(&body)?;
    let name = v["name"].as_str().unwrap_or("").to_owned();
    let check = {
        let inner = s.inner.lock().expect("not poisoned");
        inner.plan.checks.get(&name).cloned()
    };
    let Some(check) = check else {
        return Err(not_found_err(format!(
            "cannot find check with name {name:?}"
        )));
    };
    let outcome = s.workload.run_check(&name, &check).await;
    let inner = s.inner.lock().expect("not poisoned");
    let info = check_infos(&inner, None, std::slice::from_ref(&name)).pop();
    let mut result = json!({ "info": info });
    if let Err(e) = outcome {
        result["error"] = json!(e);
    }
    Ok(sync(result))
}

fn valid_notice_key(key: &str) -> bool {
    // A domain (with a dot) followed by a path: example.com/path.
    match key.split_once('/') {
        Some((domain, path)) => {
            domain.contains('.') && !domain.starts_with('.') && !path.is_empty() && key.len() <= 256
        }
        None => false,
    }
}

async fn add_notice(State(s): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let v = parse_body(&body)?;
    if v["action"] != "add" {
        return Err(bad(format!(
            "invalid action {:?}",
            v["action"].as_str().unwrap_or("")
        )));
    }
    if v["type"] != "custom" {
        return Err(bad(format!(
            "invalid type {:?} (can only add \"custom\" notices)",
            v["type"].as_str().unwrap_or("")
        )));
    }
    let key = v["key"].as_str().unwrap_or("").to_owned();
    if !valid_notice_key(&key) {
        return Err(bad(format!(
            "invalid key {key:?} (must be in \"example.com/path\" format)"
        )));
    }
    let data: BTreeMap<String, String> = v["data"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    if serde_json::to_vec(&data).map_or(0, |b| b.len()) > 4096 {
        return Err(bad("total size of data must be 4KB or less"));
    }
    let id = {
        let mut inner = s.inner.lock().expect("not poisoned");
        let t = now();
        match inner
            .notices
            .iter_mut()
            .find(|n| n.notice_type == "custom" && n.key == key)
        {
            Some(n) => {
                n.occurrences += 1;
                n.last_occurred = t.clone();
                n.last_repeated = t;
                n.last_data = data;
                n.id.clone()
            }
            None => {
                let id = (inner.notices.len() + 1).to_string();
                inner.notices.push(Notice {
                    id: id.clone(),
                    user_id: Some(0),
                    notice_type: "custom".into(),
                    key,
                    first_occurred: t.clone(),
                    last_occurred: t.clone(),
                    last_repeated: t,
                    occurrences: 1,
                    last_data: data,
                    repeat_after: v["repeat-after"].as_str().map(str::to_owned),
                    expire_after: Some("168h0m0s".into()),
                });
                id
            }
        }
    };
    s.touched();
    Ok(sync(json!({ "id": id })))
}

async fn list_notices(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let q = Query::parse(q);
    let (types, keys) = (q.list("types"), q.list("keys"));
    let inner = s.inner.lock().expect("not poisoned");
    let list: Vec<&Notice> = inner
        .notices
        .iter()
        .filter(|n| types.is_empty() || types.contains(&n.notice_type))
        .filter(|n| keys.is_empty() || keys.contains(&n.key))
        .collect();
    sync(serde_json::to_value(list).expect("notices serialise"))
}

async fn get_notice(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> ApiResult {
    let inner = s.inner.lock().expect("not poisoned");
    match inner.notices.iter().find(|n| n.id == id) {
        Some(n) => Ok(sync(serde_json::to_value(n).expect("notices serialise"))),
        None => Err(not_found_err(format!("cannot find notice with ID {id:?}"))),
    }
}

async fn signals(State(s): State<Arc<Shared>>, body: Bytes) -> ApiResult {
    let v = parse_body(&body)?;
    let names: Vec<String> = v["services"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        return Err(bad("must specify one or more services"));
    }
    let inner = s.inner.lock().expect("not poisoned");
    let errors: Vec<String> = names
        .iter()
        .filter(|n| {
            inner
                .services
                .get(*n)
                .is_none_or(|st| st.current != ServiceStatus::Active)
        })
        .map(|n| format!("cannot send signal to {n:?}: service is not running"))
        .collect();
    if !errors.is_empty() {
        return Err(internal(errors.join("; ")));
    }
    Ok(sync(json!(true)))
}

async fn logs(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let q = Query::parse(q);
    let services = q.list("services");
    let n: i64 = q.one("n").and_then(|n| n.parse().ok()).unwrap_or(30);
    let lines = s.workload.logs(&services);
    let skip = if n < 0 {
        0
    } else {
        lines.len().saturating_sub(n as usize)
    };
    let time = now();
    let mut body = String::new();
    for (service, message) in &lines[skip..] {
        body.push_str(&json!({"time": time, "service": service, "message": message}).to_string());
        body.push('\n');
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from(body))
        .expect("static response parts are valid")
}
