//! The Pebble client: [`AsyncClient`] does the work, [`Client`] is the
//! blocking facade charm code uses (charm handlers are synchronous, like
//! Python ops).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{header, Request, Response};
use rand::distr::{Alphanumeric, SampleString};
use serde_json::Value;
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::Message;

use super::layer::Layer;
use super::protocol::{
    self, Change, ChangeId, CheckInfo, Envelope, ExecRequest, FileInfo, FileOwnership, Notice,
    PathResult, ServiceInfo, SystemInfo,
};
use super::transport::{Transport, UnixTransport, WebSocket};
use super::Error;

/// How long a single request may take before [`Error::Timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long service actions wait for their change by default.
pub const DEFAULT_CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Options for [`AsyncClient::push`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushOptions {
    /// Create missing parent directories (mode 0755, same owner).
    pub make_dirs: bool,
    /// Mode and owner of the file.
    pub ownership: FileOwnership,
}

impl PushOptions {
    /// Creates missing parent directories.
    pub fn make_dirs(mut self) -> PushOptions {
        self.make_dirs = true;
        self
    }
    /// Sets the permission bits.
    pub fn permissions(mut self, mode: u32) -> PushOptions {
        self.ownership.permissions = Some(mode);
        self
    }
    /// Sets the owner (and, by default, the owner's group).
    pub fn user(mut self, user: impl Into<String>) -> PushOptions {
        self.ownership.user = Some(user.into());
        self
    }
    /// Sets the group.
    pub fn group(mut self, group: impl Into<String>) -> PushOptions {
        self.ownership.group = Some(group.into());
        self
    }
}

/// A command to run in the workload container with [`AsyncClient::exec`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ExecOptions {
    /// What Pebble is asked to run.
    pub request: ExecRequest,
    /// Bytes fed to the command's standard input (then end of file).
    pub stdin: Vec<u8>,
}

impl std::fmt::Debug for ExecOptions {
    // The environment and stdin commonly carry credentials: show names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecOptions")
            .field("command", &self.request.command)
            .field(
                "environment",
                &self.request.environment.keys().collect::<Vec<_>>(),
            )
            .field("working_dir", &self.request.working_dir)
            .field("timeout", &self.request.timeout)
            .field("stdin_bytes", &self.stdin.len())
            .finish_non_exhaustive()
    }
}

impl ExecOptions {
    /// Runs `command` (first item: the executable, looked up in Pebble's
    /// `PATH`), with stderr kept apart from stdout.
    pub fn new<I, S>(command: I) -> ExecOptions
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ExecOptions {
            request: ExecRequest {
                command: command.into_iter().map(Into::into).collect(),
                split_stderr: true,
                ..ExecRequest::default()
            },
            stdin: Vec::new(),
        }
    }
    /// Adds an environment variable (the place for secrets: never argv).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> ExecOptions {
        self.request.environment.insert(key.into(), value.into());
        self
    }
    /// Sets the working directory.
    pub fn working_dir(mut self, dir: impl Into<String>) -> ExecOptions {
        self.request.working_dir = Some(dir.into());
        self
    }
    /// Kills the command after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> ExecOptions {
        self.request.timeout = Some(timeout);
        self
    }
    /// Runs as `user`.
    pub fn user(mut self, user: impl Into<String>) -> ExecOptions {
        self.request.user = Some(user.into());
        self
    }
    /// Runs as `group`.
    pub fn group(mut self, group: impl Into<String>) -> ExecOptions {
        self.request.group = Some(group.into());
        self
    }
    /// Takes environment, user and working directory from a plan service.
    pub fn service_context(mut self, service: impl Into<String>) -> ExecOptions {
        self.request.service_context = Some(service.into());
        self
    }
    /// Feeds `stdin` to the command.
    pub fn stdin(mut self, stdin: impl Into<Vec<u8>>) -> ExecOptions {
        self.stdin = stdin.into();
        self
    }
    /// Sends stderr into stdout, like a terminal shows them.
    pub fn combine_stderr(mut self) -> ExecOptions {
        self.request.split_stderr = false;
        self
    }
}

/// What a command that exited 0 printed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    /// Standard output as text (lossy).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    /// Standard error as text (lossy).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// An asynchronous Pebble client.
#[derive(Clone, Debug)]
pub struct AsyncClient<T = UnixTransport> {
    transport: T,
    request_timeout: Duration,
}

impl AsyncClient<UnixTransport> {
    /// A client for the Pebble listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> AsyncClient<UnixTransport> {
        AsyncClient::with_transport(UnixTransport::new(socket))
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        self.transport.socket()
    }
}

impl<T: Transport> AsyncClient<T> {
    /// A client over any transport (tests use a scripted one).
    pub fn with_transport(transport: T) -> AsyncClient<T> {
        AsyncClient {
            transport,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// Changes the per-request timeout.
    pub fn set_request_timeout(&mut self, timeout: Duration) {
        self.request_timeout = timeout;
    }

    async fn send(&self, req: Request<Bytes>, timeout: Duration) -> Result<Response<Bytes>, Error> {
        let what = format!("{} {}", req.method(), req.uri());
        match tokio::time::timeout(timeout, self.transport.send(req)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout(format!(
                "no answer from Pebble to {what} within {timeout:?}"
            ))),
        }
    }

    async fn call_with_timeout(
        &self,
        req: Request<Bytes>,
        timeout: Duration,
    ) -> Result<Envelope, Error> {
        let resp = self.send(req, timeout).await?;
        let ctype = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        protocol::decode(resp.status(), ctype.as_deref(), resp.body())
    }

    async fn call(&self, req: Request<Bytes>) -> Result<Envelope, Error> {
        self.call_with_timeout(req, self.request_timeout).await
    }

    /// `GET /v1/system-info`: also the cheapest "is Pebble there?" probe.
    pub async fn system_info(&self) -> Result<SystemInfo, Error> {
        self.call(protocol::get_system_info()).await?.result_as()
    }

    /// `GET /v1/health`: true when no selected check is down.
    pub async fn health(&self, level: Option<&str>, names: &[&str]) -> Result<bool, Error> {
        let env = self.call(protocol::get_health(level, names)).await?;
        env.result["healthy"]
            .as_bool()
            .ok_or_else(|| Error::Protocol(format!("unexpected health result {}", env.result)))
    }

    /// Adds `layer` under `label`; with `combine`, merges it into an existing
    /// layer of that label. Never starts or stops services.
    pub async fn add_layer(&self, label: &str, layer: &Layer, combine: bool) -> Result<(), Error> {
        self.add_layer_yaml(label, &layer.to_yaml(), combine).await
    }

    /// Like [`AsyncClient::add_layer`] with the layer as YAML text.
    pub async fn add_layer_yaml(
        &self,
        label: &str,
        yaml: &str,
        combine: bool,
    ) -> Result<(), Error> {
        self.call(protocol::add_layer(label, yaml, combine)).await?;
        Ok(())
    }

    /// The combined plan.
    pub async fn plan(&self) -> Result<Layer, Error> {
        let env = self.call(protocol::get_plan()).await?;
        let text = env.result.as_str().ok_or_else(|| {
            Error::Protocol(format!("plan result is not a string: {}", env.result))
        })?;
        Layer::from_yaml(text).map_err(|e| Error::Protocol(format!("cannot parse plan YAML: {e}")))
    }

    /// The named services (all when `names` is empty), sorted by name.
    pub async fn services(&self, names: &[&str]) -> Result<Vec<ServiceInfo>, Error> {
        self.call(protocol::get_services(names)).await?.result_as()
    }

    /// Starts a service action and returns its change without waiting.
    pub async fn services_action(&self, action: &str, names: &[&str]) -> Result<ChangeId, Error> {
        self.call(protocol::services_action(action, names))
            .await?
            .change_id()
    }

    async fn services_action_wait(&self, action: &str, names: &[&str]) -> Result<Change, Error> {
        let id = self.services_action(action, names).await?;
        self.wait_change(&id, Some(DEFAULT_CHANGE_TIMEOUT)).await
    }

    /// Starts services (and what they require) and waits for the change.
    pub async fn start(&self, names: &[&str]) -> Result<Change, Error> {
        self.services_action_wait("start", names).await
    }

    /// Stops services (and what requires them) and waits.
    pub async fn stop(&self, names: &[&str]) -> Result<Change, Error> {
        self.services_action_wait("stop", names).await
    }

    /// Restarts services and waits.
    pub async fn restart(&self, names: &[&str]) -> Result<Change, Error> {
        self.services_action_wait("restart", names).await
    }

    /// Restarts services whose configuration changed, starts enabled ones,
    /// and waits.
    pub async fn replan(&self) -> Result<Change, Error> {
        self.services_action_wait("replan", &[]).await
    }

    /// Starts the enabled services and waits.
    pub async fn autostart(&self) -> Result<Change, Error> {
        self.services_action_wait("autostart", &[]).await
    }

    /// `GET /v1/changes/{id}`.
    pub async fn change(&self, id: &ChangeId) -> Result<Change, Error> {
        self.call(protocol::get_change(id)).await?.result_as()
    }

    /// Waits until change `id` is ready (at most `timeout`, if given). A
    /// change that failed is [`Error::Change`].
    pub async fn wait_change(
        &self,
        id: &ChangeId,
        timeout: Option<Duration>,
    ) -> Result<Change, Error> {
        let change = self.wait_change_ready(id, timeout).await?;
        match &change.err {
            Some(err) => Err(Error::Change {
                err: err.clone(),
                change: Box::new(change),
            }),
            None => Ok(change),
        }
    }

    /// Waits for readiness without judging the outcome.
    async fn wait_change_ready(
        &self,
        id: &ChangeId,
        timeout: Option<Duration>,
    ) -> Result<Change, Error> {
        let deadline = timeout.map(|t| Instant::now() + t);
        // Ask the server in slices shorter than the request timeout, so a
        // long wait never looks like a dead socket.
        let slice = self
            .request_timeout
            .saturating_sub(Duration::from_secs(1))
            .max(Duration::from_secs(1));
        loop {
            let this = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Error::Timeout(format!(
                            "timed out waiting for change {id} ({:?})",
                            timeout.unwrap_or_default()
                        )));
                    }
                    left.min(slice)
                }
                None => slice,
            };
            match self
                .call_with_timeout(
                    protocol::wait_change(id, Some(this)),
                    this + Duration::from_secs(5),
                )
                .await
            {
                Ok(env) => return env.result_as(),
                Err(Error::Api { code: 504, .. }) => continue,
                Err(Error::Api { code: 404, .. }) => {
                    return self.poll_change(id, deadline, timeout).await
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Polling fallback for a Pebble without the wait endpoint.
    async fn poll_change(
        &self,
        id: &ChangeId,
        deadline: Option<Instant>,
        timeout: Option<Duration>,
    ) -> Result<Change, Error> {
        loop {
            let change = self.change(id).await?;
            if change.ready {
                return Ok(change);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::Timeout(format!(
                    "timed out waiting for change {id} ({:?})",
                    timeout.unwrap_or_default()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Writes `content` to `path` in the container.
    pub async fn push(
        &self,
        path: &str,
        content: impl Into<Bytes>,
        options: &PushOptions,
    ) -> Result<(), Error> {
        let content: Bytes = content.into();
        // 40 random alphanumerics: Pebble wants at least 32, and a boundary
        // that cannot plausibly occur in the content.
        let boundary = Alphanumeric.sample_string(&mut rand::rng(), 40);
        let req = protocol::push(
            path,
            &content,
            options.make_dirs,
            &options.ownership,
            &boundary,
        );
        let results: Vec<PathResult> = self.call(req).await?.result_as()?;
        protocol::path_outcome(&results, path)
    }

    /// Reads the file at `path` from the container.
    pub async fn pull(&self, path: &str) -> Result<Vec<u8>, Error> {
        let resp = self
            .send(protocol::pull(path), self.request_timeout)
            .await?;
        let ctype = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if ctype.starts_with("application/json") {
            // A whole-request error (bad query) comes back as an envelope.
            protocol::decode(resp.status(), Some(&ctype), resp.body())?;
            return Err(Error::Protocol(
                "expected a multipart answer to a file read".into(),
            ));
        }
        if !ctype.starts_with("multipart/form-data") {
            return Err(Error::Protocol(format!(
                "expected Content-Type \"multipart/form-data\", got {ctype:?}"
            )));
        }
        let boundary = multer::parse_boundary(&ctype)
            .map_err(|e| Error::Protocol(format!("invalid multipart boundary: {e}")))?;
        let body = resp.into_body();
        let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
        let mut multipart = multer::Multipart::new(stream, boundary);
        let mut content = None;
        let mut response = None;
        let bad = |e: multer::Error| Error::Protocol(format!("malformed multipart answer: {e}"));
        while let Some(field) = multipart.next_field().await.map_err(bad)? {
            match field.name() {
                Some("files") => {
                    let name = field.file_name().unwrap_or_default().to_owned();
                    let data = field.bytes().await.map_err(bad)?;
                    if name != path {
                        return Err(Error::Protocol(format!("path not expected: {name:?}")));
                    }
                    content = Some(data.to_vec());
                }
                Some("response") => {
                    let data = field.bytes().await.map_err(bad)?;
                    let env: Envelope = serde_json::from_slice(&data)
                        .map_err(|e| Error::Protocol(format!("bad response part: {e}")))?;
                    response = Some(env);
                }
                other => {
                    return Err(Error::Protocol(format!(
                        "unexpected multipart field {other:?}"
                    )))
                }
            }
        }
        let env = response
            .ok_or_else(|| Error::Protocol("no \"response\" field in multipart body".into()))?;
        let results: Vec<PathResult> = env.result_as()?;
        protocol::path_outcome(&results, path)?;
        content.ok_or_else(|| Error::Protocol("no file content in multipart response".into()))
    }

    /// Lists `path` (a directory's entries, or the file itself; with
    /// `itself`, the directory itself), optionally filtered by a glob.
    pub async fn list_files(
        &self,
        path: &str,
        pattern: Option<&str>,
        itself: bool,
    ) -> Result<Vec<FileInfo>, Error> {
        match self.call(protocol::list_files(path, pattern, itself)).await {
            Ok(env) => env.result_as(),
            Err(Error::Api {
                message,
                kind: Some(kind),
                ..
            }) => Err(Error::Path { kind, message }),
            Err(e) => Err(e),
        }
    }

    /// Creates a directory.
    pub async fn make_dir(
        &self,
        path: &str,
        make_parents: bool,
        ownership: &FileOwnership,
    ) -> Result<(), Error> {
        let results: Vec<PathResult> = self
            .call(protocol::make_dir(path, make_parents, ownership))
            .await?
            .result_as()?;
        protocol::path_outcome(&results, path)
    }

    /// Removes a file or empty directory (a whole tree with `recursive`).
    pub async fn remove_path(&self, path: &str, recursive: bool) -> Result<(), Error> {
        let results: Vec<PathResult> = self
            .call(protocol::remove_path(path, recursive))
            .await?
            .result_as()?;
        protocol::path_outcome(&results, path)
    }

    /// The named checks (all when `names` is empty).
    pub async fn checks(
        &self,
        level: Option<&str>,
        names: &[&str],
    ) -> Result<Vec<CheckInfo>, Error> {
        self.call(protocol::get_checks(level, names))
            .await?
            .result_as()
    }

    /// Starts or stops checks; returns the ones that really changed.
    pub async fn checks_action(&self, action: &str, names: &[&str]) -> Result<Vec<String>, Error> {
        let env = self.call(protocol::checks_action(action, names)).await?;
        let changed = env
            .result
            .get("changed")
            .cloned()
            .unwrap_or(Value::Array(vec![]));
        serde_json::from_value(changed).map_err(|e| Error::Protocol(e.to_string()))
    }

    /// Records a custom notice; returns its id.
    pub async fn notify(
        &self,
        key: &str,
        data: &BTreeMap<String, String>,
    ) -> Result<String, Error> {
        let env = self.call(protocol::notify(key, data, None)).await?;
        env.result["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::Protocol(format!("unexpected notify result {}", env.result)))
    }

    /// Lists notices, optionally filtered by type and key.
    pub async fn notices(&self, types: &[&str], keys: &[&str]) -> Result<Vec<Notice>, Error> {
        self.call(protocol::get_notices(types, keys))
            .await?
            .result_as()
    }

    /// Sends `signal` (for example `SIGHUP`) to services' main processes.
    pub async fn send_signal(&self, signal: &str, services: &[&str]) -> Result<(), Error> {
        self.call(protocol::send_signal(signal, services)).await?;
        Ok(())
    }

    /// Runs a command in the container and waits for it. A non-zero exit is
    /// [`Error::Exec`] carrying the code and both outputs.
    pub async fn exec(&self, options: &ExecOptions) -> Result<ExecOutput, Error> {
        if options.request.command.is_empty() {
            return Err(Error::Protocol("exec needs a command".into()));
        }
        let env = self.call(protocol::exec(&options.request)).await?;
        let change = env.change_id()?;
        let task = env.result["task-id"]
            .as_str()
            .ok_or_else(|| Error::Protocol(format!("exec result without task-id: {}", env.result)))?
            .to_owned();
        let ws = |id: &str| format!("/v1/tasks/{task}/websocket/{id}");
        // Order matters: Pebble starts the command once stdio (and stderr)
        // are connected; control first so no signal can be missed.
        let control = self.transport.websocket(&ws("control")).await;
        let io = async {
            let control = control?;
            let stdio = self.transport.websocket(&ws("stdio")).await?;
            let stderr = if options.request.split_stderr {
                Some(self.transport.websocket(&ws("stderr")).await?)
            } else {
                None
            };
            Ok::<_, Error>((control, stdio, stderr))
        }
        .await;
        let (control, stdio, stderr) = match io {
            Ok(sockets) => sockets,
            Err(e) => {
                // The change probably failed before the command started
                // (spawn error, bad user): report that rather than the socket.
                if let Ok(c) = self
                    .wait_change_ready(&change, Some(Duration::from_secs(5)))
                    .await
                {
                    if let Some(err) = c.err.clone() {
                        return Err(change_error(err, c));
                    }
                }
                return Err(e);
            }
        };
        let (stdout, stderr_bytes) =
            tokio::join!(pump_stdio(stdio, &options.stdin), read_stream(stderr),);
        let (stdout, stderr_bytes) = (stdout?, stderr_bytes?);
        drop(control);
        let wait = options.request.timeout.map(|t| t + Duration::from_secs(1));
        let done = self
            .wait_change_ready(&change, wait.or(Some(Duration::from_secs(300))))
            .await?;
        if let Some(err) = done.err.clone() {
            return Err(change_error(err, done));
        }
        let code = protocol::exec_exit_code(&done).ok_or_else(|| {
            Error::Protocol(format!(
                "exec change {change} finished without an exit code"
            ))
        })?;
        if code != 0 {
            return Err(Error::Exec {
                command: options.request.command.clone(),
                code,
                stdout,
                stderr: stderr_bytes,
            });
        }
        Ok(ExecOutput {
            stdout,
            stderr: stderr_bytes,
        })
    }
}

fn change_error(err: String, change: Change) -> Error {
    if err.contains("timed out after") {
        Error::Timeout(err)
    } else {
        Error::Change {
            err,
            change: Box::new(change),
        }
    }
}

const END: &str = r#"{"command":"end"}"#;

/// Sends `stdin` then end-of-file on the stdio socket while reading the
/// command's output from it until Pebble's end marker.
async fn pump_stdio(ws: WebSocket, stdin: &[u8]) -> Result<Vec<u8>, Error> {
    let (mut sink, stream) = ws.split();
    let send = async {
        for chunk in stdin.chunks(64 * 1024) {
            sink.send(Message::Binary(Bytes::copy_from_slice(chunk)))
                .await
                .map_err(|e| Error::Protocol(format!("cannot send stdin: {e}")))?;
        }
        sink.send(Message::Text(END.into()))
            .await
            .map_err(|e| Error::Protocol(format!("cannot send stdin end: {e}")))?;
        Ok::<_, Error>(())
    };
    let (_stdin_refused, out) = tokio::join!(send, read_until_end(stream));
    // A command that exits without reading stdin (or before we wrote its
    // end marker) closes the socket under our writes. Once its output has
    // been read to the end, that refusal says nothing: the change's exit
    // code is the command's outcome. Whether it wrote any stdout is no
    // guide — `sh -c 'exit 3'` writes none.
    out
}

async fn read_stream(ws: Option<WebSocket>) -> Result<Vec<u8>, Error> {
    match ws {
        Some(ws) => read_until_end(ws.split().1).await,
        None => Ok(Vec::new()),
    }
}

async fn read_until_end<S>(mut stream: S) -> Result<Vec<u8>, Error>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut out = Vec::new();
    while let Some(msg) = stream.next().await {
        match msg.map_err(|e| Error::Protocol(format!("exec output stream failed: {e}")))? {
            Message::Binary(b) => out.extend_from_slice(&b),
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                if v["command"] == "end" {
                    return Ok(out);
                }
            }
            Message::Close(_) => return Ok(out),
            _ => {}
        }
    }
    Ok(out)
}

/// A blocking Pebble client for synchronous charm code.
///
/// It runs [`AsyncClient`] on a current-thread tokio runtime it shares with
/// the [`crate::Model`]. Do not call it from inside an async context (use
/// [`Client::as_async`] there).
#[derive(Clone, Debug)]
pub struct Client {
    inner: AsyncClient<UnixTransport>,
    runtime: Rc<Runtime>,
}

impl Client {
    /// A client for `socket`, with its own runtime.
    pub fn new(socket: impl Into<PathBuf>) -> std::io::Result<Client> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Client::with_runtime(socket, Rc::new(runtime)))
    }

    /// A client for `socket` sharing `runtime`.
    pub fn with_runtime(socket: impl Into<PathBuf>, runtime: Rc<Runtime>) -> Client {
        Client {
            inner: AsyncClient::new(socket),
            runtime,
        }
    }

    /// The asynchronous client underneath.
    pub fn as_async(&self) -> &AsyncClient<UnixTransport> {
        &self.inner
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        self.inner.socket()
    }

    /// See [`AsyncClient::system_info`].
    pub fn system_info(&self) -> Result<SystemInfo, Error> {
        self.runtime.block_on(self.inner.system_info())
    }
    /// True when Pebble answers at all: the way to probe a container.
    pub fn can_connect(&self) -> bool {
        self.system_info().is_ok()
    }
    /// See [`AsyncClient::health`].
    pub fn health(&self, level: Option<&str>, names: &[&str]) -> Result<bool, Error> {
        self.runtime.block_on(self.inner.health(level, names))
    }
    /// See [`AsyncClient::add_layer`].
    pub fn add_layer(&self, label: &str, layer: &Layer, combine: bool) -> Result<(), Error> {
        self.runtime
            .block_on(self.inner.add_layer(label, layer, combine))
    }
    /// See [`AsyncClient::add_layer_yaml`].
    pub fn add_layer_yaml(&self, label: &str, yaml: &str, combine: bool) -> Result<(), Error> {
        self.runtime
            .block_on(self.inner.add_layer_yaml(label, yaml, combine))
    }
    /// See [`AsyncClient::plan`].
    pub fn plan(&self) -> Result<Layer, Error> {
        self.runtime.block_on(self.inner.plan())
    }
    /// See [`AsyncClient::services`].
    pub fn services(&self, names: &[&str]) -> Result<Vec<ServiceInfo>, Error> {
        self.runtime.block_on(self.inner.services(names))
    }
    /// See [`AsyncClient::start`].
    pub fn start(&self, names: &[&str]) -> Result<Change, Error> {
        self.runtime.block_on(self.inner.start(names))
    }
    /// See [`AsyncClient::stop`].
    pub fn stop(&self, names: &[&str]) -> Result<Change, Error> {
        self.runtime.block_on(self.inner.stop(names))
    }
    /// See [`AsyncClient::restart`].
    pub fn restart(&self, names: &[&str]) -> Result<Change, Error> {
        self.runtime.block_on(self.inner.restart(names))
    }
    /// See [`AsyncClient::replan`].
    pub fn replan(&self) -> Result<Change, Error> {
        self.runtime.block_on(self.inner.replan())
    }
    /// See [`AsyncClient::autostart`].
    pub fn autostart(&self) -> Result<Change, Error> {
        self.runtime.block_on(self.inner.autostart())
    }
    /// See [`AsyncClient::change`].
    pub fn change(&self, id: &ChangeId) -> Result<Change, Error> {
        self.runtime.block_on(self.inner.change(id))
    }
    /// See [`AsyncClient::wait_change`].
    pub fn wait_change(&self, id: &ChangeId, timeout: Option<Duration>) -> Result<Change, Error> {
        self.runtime.block_on(self.inner.wait_change(id, timeout))
    }
    /// See [`AsyncClient::push`].
    pub fn push(
        &self,
        path: &str,
        content: impl Into<Bytes>,
        options: &PushOptions,
    ) -> Result<(), Error> {
        self.runtime
            .block_on(self.inner.push(path, content, options))
    }
    /// See [`AsyncClient::pull`].
    pub fn pull(&self, path: &str) -> Result<Vec<u8>, Error> {
        self.runtime.block_on(self.inner.pull(path))
    }
    /// See [`AsyncClient::list_files`].
    pub fn list_files(
        &self,
        path: &str,
        pattern: Option<&str>,
        itself: bool,
    ) -> Result<Vec<FileInfo>, Error> {
        self.runtime
            .block_on(self.inner.list_files(path, pattern, itself))
    }
    /// See [`AsyncClient::make_dir`].
    pub fn make_dir(
        &self,
        path: &str,
        make_parents: bool,
        ownership: &FileOwnership,
    ) -> Result<(), Error> {
        self.runtime
            .block_on(self.inner.make_dir(path, make_parents, ownership))
    }
    /// See [`AsyncClient::remove_path`].
    pub fn remove_path(&self, path: &str, recursive: bool) -> Result<(), Error> {
        self.runtime
            .block_on(self.inner.remove_path(path, recursive))
    }
    /// See [`AsyncClient::checks`].
    pub fn checks(&self, level: Option<&str>, names: &[&str]) -> Result<Vec<CheckInfo>, Error> {
        self.runtime.block_on(self.inner.checks(level, names))
    }
    /// See [`AsyncClient::checks_action`].
    pub fn checks_action(&self, action: &str, names: &[&str]) -> Result<Vec<String>, Error> {
        self.runtime
            .block_on(self.inner.checks_action(action, names))
    }
    /// See [`AsyncClient::notify`].
    pub fn notify(&self, key: &str, data: &BTreeMap<String, String>) -> Result<String, Error> {
        self.runtime.block_on(self.inner.notify(key, data))
    }
    /// See [`AsyncClient::notices`].
    pub fn notices(&self, types: &[&str], keys: &[&str]) -> Result<Vec<Notice>, Error> {
        self.runtime.block_on(self.inner.notices(types, keys))
    }
    /// See [`AsyncClient::send_signal`].
    pub fn send_signal(&self, signal: &str, services: &[&str]) -> Result<(), Error> {
        self.runtime
            .block_on(self.inner.send_signal(signal, services))
    }
    /// See [`AsyncClient::exec`].
    pub fn exec(&self, options: &ExecOptions) -> Result<ExecOutput, Error> {
        self.runtime.block_on(self.inner.exec(options))
    }
}
