//! The Pebble wire protocol: request builders, the response envelope, and
//! the JSON types of pebble.md — with no I/O.
//!
//! Everything here is a pure function of its inputs, so it is tested
//! without a socket, and the Pebble double serialises the same types the
//! client decodes: one definition of each wire shape.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::Error;

/// Characters left unescaped in query values (the RFC 3986 unreserved set,
/// plus `/` for readability of paths).
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Builds `GET path?query`.
pub fn get(path: &str, query: &[(&str, String)]) -> Request<Bytes> {
    let mut uri = path.to_owned();
    for (i, (k, v)) in query.iter().enumerate() {
        uri.push(if i == 0 { '?' } else { '&' });
        uri.push_str(k);
        uri.push('=');
        uri.push_str(&utf8_percent_encode(v, QUERY).to_string());
    }
    Request::builder()
        .method(Method::GET)
        .uri(uri)
        .header(header::HOST, "localhost")
        .header(header::ACCEPT, "application/json")
        .body(Bytes::new())
        .expect("static request parts are valid")
}

/// Builds `POST path` with a JSON body.
pub fn post_json(path: &str, body: &Value) -> Request<Bytes> {
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::HOST, "localhost")
        .header(header::ACCEPT, "application/json")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Bytes::from(
            serde_json::to_vec(body).expect("JSON values serialise"),
        ))
        .expect("static request parts are valid")
}

/// The `type` of a response envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponseType {
    /// The result is in this response.
    Sync,
    /// A change was started; its id is in `change`.
    Async,
    /// The request failed.
    Error,
}

/// A decoded response envelope (pebble.md §2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// sync, async or error.
    #[serde(rename = "type")]
    pub kind: ResponseType,
    /// The HTTP status, repeated.
    #[serde(rename = "status-code")]
    pub status_code: u16,
    /// The reason phrase.
    pub status: String,
    /// For async responses, the change id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    /// The payload.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub result: Value,
}

impl Envelope {
    /// A sync envelope (HTTP 200).
    pub fn sync(result: Value) -> Envelope {
        Envelope {
            kind: ResponseType::Sync,
            status_code: 200,
            status: "OK".into(),
            change: None,
            result,
        }
    }

    /// An async envelope (HTTP 202) for `change`.
    pub fn async_change(change: &str, result: Value) -> Envelope {
        Envelope {
            kind: ResponseType::Async,
            status_code: 202,
            status: "Accepted".into(),
            change: Some(change.to_owned()),
            result,
        }
    }

    /// An error envelope: `{"message", "kind"?}` with the reason phrase of
    /// `code`.
    pub fn error(code: StatusCode, message: &str, kind: Option<&str>) -> Envelope {
        let mut result = json!({ "message": message });
        if let Some(k) = kind {
            result["kind"] = json!(k);
        }
        Envelope {
            kind: ResponseType::Error,
            status_code: code.as_u16(),
            status: code.canonical_reason().unwrap_or("").to_owned(),
            change: None,
            result,
        }
    }

    /// Decodes the result as `T`.
    pub fn result_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_value(self.result.clone())
            .map_err(|e| Error::Protocol(format!("unexpected result {}: {e}", self.result)))
    }

    /// The change id of an async response.
    pub fn change_id(&self) -> Result<ChangeId, Error> {
        self.change
            .clone()
            .map(ChangeId)
            .ok_or_else(|| Error::Protocol("async response without a change id".into()))
    }
}

/// Decodes a JSON response, whatever its HTTP status (the unhealthy
/// `/v1/health` answer is a sync body under 502). Error envelopes become
/// [`Error::Api`].
pub fn decode(
    status: StatusCode,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Envelope, Error> {
    let ctype = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    if ctype != "application/json" {
        return Err(Error::Protocol(format!(
            "expected Content-Type \"application/json\", got {ctype:?} (HTTP {status})"
        )));
    }
    let env: Envelope = serde_json::from_slice(body).map_err(|e| {
        Error::Protocol(format!(
            "cannot decode response (HTTP {status}): {e}: {:?}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))
    })?;
    if env.kind == ResponseType::Error {
        return Err(Error::Api {
            code: env.status_code,
            status: env.status.clone(),
            message: env.result["message"].as_str().unwrap_or("").to_owned(),
            kind: env.result["kind"].as_str().map(str::to_owned),
        });
    }
    Ok(env)
}

/// A change id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChangeId(pub String);

impl fmt::Display for ChangeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `GET /v1/system-info`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemInfo {
    /// The boot id.
    #[serde(rename = "boot-id", default)]
    pub boot_id: String,
    /// Pebble's version, for example `v1.32.1`.
    pub version: String,
    /// The HTTP address, if Pebble listens on one.
    #[serde(
        rename = "http-address",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub http_address: Option<String>,
    /// The HTTPS address, if any.
    #[serde(
        rename = "https-address",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub https_address: Option<String>,
}

/// Whether a service starts on replan/autostart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceStartup {
    /// `startup: enabled`.
    Enabled,
    /// Anything else.
    Disabled,
}

/// A service's current state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceStatus {
    /// Starting or running.
    Active,
    /// Never started, stopped, or stopping.
    Inactive,
    /// Waiting to be restarted after exiting.
    Backoff,
    /// Exited and not restarted.
    Error,
}

/// One entry of `GET /v1/services`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// The service name.
    pub name: String,
    /// Its startup setting.
    pub startup: ServiceStartup,
    /// Its current state.
    pub current: ServiceStatus,
    /// When `current` last changed (RFC 3339).
    #[serde(
        rename = "current-since",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub current_since: Option<String>,
}

impl ServiceInfo {
    /// True when the service is active.
    pub fn is_running(&self) -> bool {
        self.current == ServiceStatus::Active
    }
}

/// A change: long-running work made of tasks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The change id.
    pub id: String,
    /// The kind, for example `start`, `replan`, `exec`.
    pub kind: String,
    /// A human summary such as `Start service "web"`.
    pub summary: String,
    /// `Do`, `Doing`, `Done`, `Error`, …
    pub status: String,
    /// The tasks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<Task>,
    /// Whether it finished (Done, Undone, Error or Hold).
    pub ready: bool,
    /// The concatenated task errors, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub err: Option<String>,
    /// When it was created.
    #[serde(rename = "spawn-time")]
    pub spawn_time: String,
    /// When it became ready.
    #[serde(
        rename = "ready-time",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ready_time: Option<String>,
    /// API data attached to the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Map<String, Value>>,
}

/// One task of a change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// The task id.
    pub id: String,
    /// The kind, for example `start` or `exec`.
    pub kind: String,
    /// A human summary.
    pub summary: String,
    /// Its status.
    pub status: String,
    /// The last log entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<String>,
    /// Progress.
    pub progress: TaskProgress,
    /// When it was created.
    #[serde(rename = "spawn-time")]
    pub spawn_time: String,
    /// When it became ready.
    #[serde(
        rename = "ready-time",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ready_time: Option<String>,
    /// Task data, for example `{"exit-code": 0}` for exec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Map<String, Value>>,
}

/// Task progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskProgress {
    /// Label.
    pub label: String,
    /// Units done.
    pub done: u64,
    /// Units in total.
    pub total: u64,
}

/// The kind of a file in a listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileType {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A Unix socket.
    Socket,
    /// A FIFO.
    NamedPipe,
    /// A device.
    Device,
    /// Anything else.
    Unknown,
}

/// One entry of `GET /v1/files?action=list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FileInfo {
    /// The full path.
    pub path: String,
    /// The base name.
    pub name: String,
    /// The kind.
    #[serde(rename = "type")]
    pub file_type: FileType,
    /// Size in bytes (regular files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Permission bits, for example `0o644`.
    #[serde(with = "octal")]
    pub permissions: u32,
    /// Last modification (RFC 3339, seconds).
    pub last_modified: String,
    /// Owner UID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<u32>,
    /// Owner name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Group GID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<u32>,
    /// Group name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// Permissions on the wire are three (or four) octal digits as a string.
pub mod octal {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `0o644` as `"644"`.
    pub fn serialize<S: Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{mode:03o}"))
    }

    /// Reads `"644"` as `0o644`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let text = String::deserialize(d)?;
        u32::from_str_radix(&text, 8).map_err(serde::de::Error::custom)
    }
}

/// A check's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Passing (or not yet failed `threshold` times).
    Up,
    /// Failed `threshold` times in a row.
    Down,
    /// Not running.
    Inactive,
}

/// One entry of `GET /v1/checks`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CheckInfo {
    /// The check name.
    pub name: String,
    /// `alive` or `ready`, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// `enabled` or `disabled` (newer Pebble).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<String>,
    /// Its state.
    pub status: CheckStatus,
    /// Successes since it last came up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successes: Option<u64>,
    /// Failures in a row.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failures: u64,
    /// The failure threshold.
    pub threshold: u32,
    /// The change running the check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_id: Option<String>,
    /// The previous change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_change_id: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A notice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Notice {
    /// The notice id.
    pub id: String,
    /// The owner UID; `None` for public notices.
    pub user_id: Option<u32>,
    /// `custom`, `warning`, `change-update`.
    #[serde(rename = "type")]
    pub notice_type: String,
    /// The key, for example `example.com/reload`.
    pub key: String,
    /// First occurrence (RFC 3339).
    pub first_occurred: String,
    /// Last occurrence.
    pub last_occurred: String,
    /// Last time it was repeated.
    pub last_repeated: String,
    /// How many times it occurred.
    pub occurrences: u64,
    /// Data of the last occurrence.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub last_data: BTreeMap<String, String>,
    /// Minimum time between repeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_after: Option<String>,
    /// When it expires after its last repeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_after: Option<String>,
}

/// A per-path result of the files API: `{path, error?: {message, kind}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathResult {
    /// The path.
    pub path: String,
    /// Why it failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<PathErrorBody>,
}

/// The error of a [`PathResult`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathErrorBody {
    /// Go's message, for example `stat /x: no such file or directory`.
    pub message: String,
    /// `not-found`, `permission-denied` or `generic-file-error`.
    pub kind: String,
}

/// Turns a per-path result list into the outcome for `path`.
pub fn path_outcome(results: &[PathResult], path: &str) -> Result<(), Error> {
    let item = results
        .iter()
        .find(|r| r.path == path)
        .ok_or_else(|| Error::Protocol(format!("path {path:?} not in the response")))?;
    match &item.error {
        Some(e) => Err(Error::Path {
            kind: e.kind.clone(),
            message: e.message.clone(),
        }),
        None => Ok(()),
    }
}

/// Ownership and mode options for pushes and new directories.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileOwnership {
    /// Permission bits (default 0o644 for files, 0o755 for directories).
    pub permissions: Option<u32>,
    /// Owner UID.
    pub user_id: Option<u32>,
    /// Owner name.
    pub user: Option<String>,
    /// Group GID.
    pub group_id: Option<u32>,
    /// Group name.
    pub group: Option<String>,
}

impl FileOwnership {
    fn write_into(&self, obj: &mut Map<String, Value>) {
        if let Some(p) = self.permissions {
            obj.insert("permissions".into(), json!(format!("{p:03o}")));
        }
        if let Some(v) = self.user_id {
            obj.insert("user-id".into(), json!(v));
        }
        if let Some(v) = &self.user {
            obj.insert("user".into(), json!(v));
        }
        if let Some(v) = self.group_id {
            obj.insert("group-id".into(), json!(v));
        }
        if let Some(v) = &self.group {
            obj.insert("group".into(), json!(v));
        }
    }
}

/// `POST /v1/layers`: add `layer` (YAML) under `label`.
pub fn add_layer(label: &str, layer_yaml: &str, combine: bool) -> Request<Bytes> {
    post_json(
        "/v1/layers",
        &json!({"action": "add", "label": label, "format": "yaml", "layer": layer_yaml, "combine": combine}),
    )
}

/// `GET /v1/plan?format=yaml`.
pub fn get_plan() -> Request<Bytes> {
    get("/v1/plan", &[("format", "yaml".into())])
}

/// `GET /v1/services[?names=a,b]`.
pub fn get_services(names: &[&str]) -> Request<Bytes> {
    if names.is_empty() {
        get("/v1/services", &[])
    } else {
        get("/v1/services", &[("names", names.join(","))])
    }
}

/// `POST /v1/services` with `action` (`start`, `stop`, `restart`, `replan`,
/// `autostart`).
pub fn services_action(action: &str, names: &[&str]) -> Request<Bytes> {
    post_json(
        "/v1/services",
        &json!({"action": action, "services": names}),
    )
}

/// `GET /v1/changes/{id}`.
pub fn get_change(id: &ChangeId) -> Request<Bytes> {
    get(&format!("/v1/changes/{id}"), &[])
}

/// `GET /v1/changes/{id}/wait[?timeout=…]`.
pub fn wait_change(id: &ChangeId, timeout: Option<std::time::Duration>) -> Request<Bytes> {
    let query: Vec<(&str, String)> = timeout
        .map(|t| ("timeout", format!("{:.3}s", t.as_secs_f64())))
        .into_iter()
        .collect();
    get(&format!("/v1/changes/{id}/wait"), &query)
}

/// `GET /v1/system-info`.
pub fn get_system_info() -> Request<Bytes> {
    get("/v1/system-info", &[])
}

/// `GET /v1/health[?level=…][&names=…]`.
pub fn get_health(level: Option<&str>, names: &[&str]) -> Request<Bytes> {
    let mut q = vec![];
    if let Some(l) = level {
        q.push(("level", l.to_owned()));
    }
    if !names.is_empty() {
        q.push(("names", names.join(",")));
    }
    get("/v1/health", &q)
}

/// `GET /v1/checks[?level=…][&names=…]`.
pub fn get_checks(level: Option<&str>, names: &[&str]) -> Request<Bytes> {
    let mut q = vec![];
    if let Some(l) = level {
        q.push(("level", l.to_owned()));
    }
    if !names.is_empty() {
        q.push(("names", names.join(",")));
    }
    get("/v1/checks", &q)
}

/// `POST /v1/checks` with `start` or `stop`.
pub fn checks_action(action: &str, names: &[&str]) -> Request<Bytes> {
    post_json("/v1/checks", &json!({"action": action, "checks": names}))
}

/// `GET /v1/files?action=read&path=…` (answered as multipart).
pub fn pull(path: &str) -> Request<Bytes> {
    let mut req = get(
        "/v1/files",
        &[("action", "read".into()), ("path", path.to_owned())],
    );
    req.headers_mut().insert(
        header::ACCEPT,
        http::HeaderValue::from_static("multipart/form-data"),
    );
    req
}

/// `POST /v1/files` (multipart) writing `content` to `path`.
///
/// `boundary` must be at least 32 characters; the caller picks it at random
/// so it cannot occur in the content.
pub fn push(
    path: &str,
    content: &[u8],
    make_dirs: bool,
    ownership: &FileOwnership,
    boundary: &str,
) -> Request<Bytes> {
    let mut file = Map::new();
    file.insert("path".into(), json!(path));
    if make_dirs {
        file.insert("make-dirs".into(), json!(true));
    }
    ownership.write_into(&mut file);
    let request = json!({"action": "write", "files": [Value::Object(file)]});
    let escaped = path.replace('\\', "\\\\").replace('"', "\\\"");
    let mut body = Vec::with_capacity(content.len() + 512);
    body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
    body.extend_from_slice(b"Content-Type: application/json\r\n");
    body.extend_from_slice(b"Content-Disposition: form-data; name=\"request\"\r\n\r\n");
    body.extend_from_slice(request.to_string().as_bytes());
    body.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
    body.extend_from_slice(b"Content-Type: application/octet-stream\r\n");
    body.extend_from_slice(
        format!("Content-Disposition: form-data; name=\"files\"; filename=\"{escaped}\"\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Request::builder()
        .method(Method::POST)
        .uri("/v1/files")
        .header(header::HOST, "localhost")
        .header(header::ACCEPT, "application/json")
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary=\"{boundary}\""),
        )
        .body(Bytes::from(body))
        .expect("static request parts are valid")
}

/// `GET /v1/files?action=list&path=…[&pattern=…][&itself=true]`.
pub fn list_files(path: &str, pattern: Option<&str>, itself: bool) -> Request<Bytes> {
    let mut q = vec![("action", "list".to_owned()), ("path", path.to_owned())];
    if let Some(p) = pattern {
        q.push(("pattern", p.to_owned()));
    }
    if itself {
        q.push(("itself", "true".into()));
    }
    get("/v1/files", &q)
}

/// `POST /v1/files` `make-dirs` for one directory.
pub fn make_dir(path: &str, make_parents: bool, ownership: &FileOwnership) -> Request<Bytes> {
    let mut dir = Map::new();
    dir.insert("path".into(), json!(path));
    if make_parents {
        dir.insert("make-parents".into(), json!(true));
    }
    ownership.write_into(&mut dir);
    post_json(
        "/v1/files",
        &json!({"action": "make-dirs", "dirs": [Value::Object(dir)]}),
    )
}

/// `POST /v1/files` `remove` for one path.
pub fn remove_path(path: &str, recursive: bool) -> Request<Bytes> {
    let mut p = Map::new();
    p.insert("path".into(), json!(path));
    if recursive {
        p.insert("recursive".into(), json!(true));
    }
    post_json(
        "/v1/files",
        &json!({"action": "remove", "paths": [Value::Object(p)]}),
    )
}

/// `POST /v1/notices` adding a custom notice.
pub fn notify(
    key: &str,
    data: &BTreeMap<String, String>,
    repeat_after: Option<&str>,
) -> Request<Bytes> {
    let mut body = json!({"action": "add", "type": "custom", "key": key});
    if !data.is_empty() {
        body["data"] = json!(data);
    }
    if let Some(r) = repeat_after {
        body["repeat-after"] = json!(r);
    }
    post_json("/v1/notices", &body)
}

/// `GET /v1/notices[?types=…][&keys=…]`.
pub fn get_notices(types: &[&str], keys: &[&str]) -> Request<Bytes> {
    let mut q = vec![];
    if !types.is_empty() {
        q.push(("types", types.join(",")));
    }
    if !keys.is_empty() {
        q.push(("keys", keys.join(",")));
    }
    get("/v1/notices", &q)
}

/// `POST /v1/signals`.
pub fn send_signal(signal: &str, services: &[&str]) -> Request<Bytes> {
    post_json(
        "/v1/signals",
        &json!({"signal": signal, "services": services}),
    )
}

/// What `POST /v1/exec` takes (pebble.md §9.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecRequest {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Take environment/user/group/working dir from this service.
    pub service_context: Option<String>,
    /// Extra environment variables.
    pub environment: BTreeMap<String, String>,
    /// Working directory.
    pub working_dir: Option<String>,
    /// Kill the command after this long.
    pub timeout: Option<std::time::Duration>,
    /// Run as this UID.
    pub user_id: Option<u32>,
    /// Run as this user.
    pub user: Option<String>,
    /// Run as this GID.
    pub group_id: Option<u32>,
    /// Run as this group.
    pub group: Option<String>,
    /// Keep stderr apart from stdout (the usual choice).
    pub split_stderr: bool,
}

/// `POST /v1/exec`.
pub fn exec(req: &ExecRequest) -> Request<Bytes> {
    post_json(
        "/v1/exec",
        &json!({
            "command": req.command,
            "service-context": req.service_context,
            "environment": req.environment,
            "working-dir": req.working_dir,
            "timeout": req.timeout.map(|t| format!("{:.3}s", t.as_secs_f64())),
            "user-id": req.user_id,
            "user": req.user,
            "group-id": req.group_id,
            "group": req.group,
            "split-stderr": req.split_stderr,
        }),
    )
}

/// The exit code an exec change reports in its task data, or `None` when
/// the change errored before the process exited.
pub fn exec_exit_code(change: &Change) -> Option<i32> {
    change
        .tasks
        .first()
        .and_then(|t| t.data.as_ref())
        .and_then(|d| d.get("exit-code"))
        .and_then(Value::as_i64)
        .and_then(|c| i32::try_from(c).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_json(req: &Request<Bytes>) -> Value {
        serde_json::from_slice(req.body()).unwrap()
    }

    #[test]
    fn requests_carry_pebbles_paths_queries_and_bodies() {
        let r = add_layer("charm", "services: {}\n", true);
        assert_eq!(
            (r.method().as_str(), r.uri().to_string()),
            ("POST", "/v1/layers".into())
        );
        assert_eq!(
            body_json(&r),
            json!({"action":"add","label":"charm","format":"yaml","layer":"services: {}\n","combine":true})
        );
        assert_eq!(get_plan().uri(), "/v1/plan?format=yaml");
        assert_eq!(get_services(&["a", "b"]).uri(), "/v1/services?names=a%2Cb");
        assert_eq!(get_services(&[]).uri(), "/v1/services");
        assert_eq!(
            body_json(&services_action("replan", &[])),
            json!({"action":"replan","services":[]})
        );
        assert_eq!(
            wait_change(
                &ChangeId("4".into()),
                Some(std::time::Duration::from_secs(4))
            )
            .uri(),
            "/v1/changes/4/wait?timeout=4.000s"
        );
        assert_eq!(
            list_files("/etc/my app", Some("*.crt"), true).uri(),
            "/v1/files?action=list&path=/etc/my%20app&pattern=%2A.crt&itself=true"
        );
        let p = pull("/etc/x");
        assert_eq!(p.headers()[header::ACCEPT], "multipart/form-data");
        assert_eq!(
            body_json(&make_dir(
                "/d",
                true,
                &FileOwnership {
                    permissions: Some(0o700),
                    user: Some("u".into()),
                    ..Default::default()
                }
            )),
            json!({"action":"make-dirs","dirs":[{"path":"/d","make-parents":true,"permissions":"700","user":"u"}]})
        );
        assert_eq!(
            body_json(&remove_path("/d", true)),
            json!({"action":"remove","paths":[{"path":"/d","recursive":true}]})
        );
        assert_eq!(
            get_health(Some("ready"), &[]).uri(),
            "/v1/health?level=ready"
        );
    }

    #[test]
    fn exec_sends_every_field_with_nulls_for_unset_ones() {
        let req = ExecRequest {
            command: vec!["echo".into(), "hi".into()],
            timeout: Some(std::time::Duration::from_millis(1500)),
            split_stderr: true,
            ..Default::default()
        };
        assert_eq!(
            body_json(&exec(&req)),
            json!({"command":["echo","hi"],"service-context":null,"environment":{},"working-dir":null,
                   "timeout":"1.500s","user-id":null,"user":null,"group-id":null,"group":null,"split-stderr":true})
        );
    }

    #[test]
    fn push_builds_a_multipart_body_with_the_request_part_first() {
        let b = "b".repeat(32);
        let r = push(
            "/etc/a \"b\".conf",
            b"data",
            true,
            &FileOwnership {
                permissions: Some(0o600),
                ..Default::default()
            },
            &b,
        );
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            format!("multipart/form-data; boundary=\"{b}\"").as_str()
        );
        let body = String::from_utf8(r.body().to_vec()).unwrap();
        let expected = format!(
            "--{b}\r\nContent-Type: application/json\r\nContent-Disposition: form-data; name=\"request\"\r\n\r\n\
             {{\"action\":\"write\",\"files\":[{{\"make-dirs\":true,\"path\":\"/etc/a \\\"b\\\".conf\",\"permissions\":\"600\"}}]}}\r\n\
             --{b}\r\nContent-Type: application/octet-stream\r\nContent-Disposition: form-data; name=\"files\"; filename=\"/etc/a \\\"b\\\".conf\"\r\n\r\n\
             data\r\n--{b}--\r\n"
        );
        assert_eq!(body, expected);
    }

    #[test]
    fn decode_maps_error_envelopes_and_rejects_other_content() {
        let ok = decode(
            StatusCode::OK,
            Some("application/json"),
            br#"{"type":"sync","status-code":200,"status":"OK","result":true}"#,
        )
        .unwrap();
        assert_eq!(ok.result, json!(true));
        let err = decode(
            StatusCode::BAD_REQUEST,
            Some("application/json; charset=utf-8"),
            br#"{"type":"error","status-code":400,"status":"Bad Request","result":{"message":"label must be set"}}"#,
        )
        .unwrap_err();
        match err {
            Error::Api {
                code,
                status,
                message,
                kind,
            } => {
                assert_eq!(
                    (code, status.as_str(), message.as_str(), kind),
                    (400, "Bad Request", "label must be set", None)
                );
            }
            other => panic!("{other:?}"),
        }
        // An unhealthy health answer is a sync body under 502.
        let unhealthy = decode(StatusCode::BAD_GATEWAY, Some("application/json"), br#"{"type":"sync","status-code":502,"status":"Bad Gateway","result":{"healthy":false}}"#).unwrap();
        assert_eq!(unhealthy.result["healthy"], json!(false));
        assert!(matches!(
            decode(StatusCode::OK, Some("text/html"), b"<html>"),
            Err(Error::Protocol(_))
        ));
        assert!(matches!(
            decode(StatusCode::OK, Some("application/json"), b"{"),
            Err(Error::Protocol(_))
        ));
    }

    #[test]
    fn envelopes_serialise_in_pebbles_key_order() {
        let e = Envelope::async_change("3", Value::Null);
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"type":"async","status-code":202,"status":"Accepted","change":"3"}"#
        );
        let e = Envelope::error(
            StatusCode::NOT_FOUND,
            "invalid API endpoint requested",
            None,
        );
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"type":"error","status-code":404,"status":"Not Found","result":{"message":"invalid API endpoint requested"}}"#
        );
    }

    #[test]
    fn path_results_become_path_errors() {
        let results = vec![PathResult {
            path: "/x".into(),
            error: Some(PathErrorBody {
                message: "stat /x: no such file or directory".into(),
                kind: "not-found".into(),
            }),
        }];
        match path_outcome(&results, "/x") {
            Err(Error::Path { kind, message }) => {
                assert_eq!(
                    (kind.as_str(), message.as_str()),
                    ("not-found", "stat /x: no such file or directory")
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            path_outcome(&results, "/y"),
            Err(Error::Protocol(_))
        ));
    }

    #[test]
    fn file_info_permissions_are_octal_strings() {
        let info: FileInfo = serde_json::from_value(json!({
            "path": "/a", "name": "a", "type": "file", "size": 3, "permissions": "640",
            "last-modified": "2026-11-23T00:00:00Z", "user-id": 0, "user": "root", "group-id": 0, "group": "root"
        }))
        .unwrap();
        assert_eq!(info.permissions, 0o640);
        assert_eq!(
            serde_json::to_value(&info).unwrap()["permissions"],
            json!("640")
        );
    }
}
