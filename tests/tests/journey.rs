//! The simulated unit: the packed charm binary driven by the binary-level
//! fake Juju (`ops-fake-juju`), its workload container a Pebble double in
//! real mode with the container's view (`ops-pebble-double --real-root …
//! --container-view`), so the layer's service is the real `livepatch-server`
//! of this build with the environment the charm computed, the schema tool
//! really migrates a real PostgreSQL (TLS, scram-sha-256) offered through a
//! postgresql_client databag and its secrets, and the checks really poll.
//!
//! One journey, as an operator lives it: deploy → Blocked (no database) →
//! integrate → schema upgraded by the leader → Blocked (no sync token) →
//! `get-resource-token` against a contracts service on loopback behind a
//! private CA (`contracts.ca`) → Active → `create-auth-token` → the
//! reference client enrols, checks in and downloads a patch uploaded with
//! `livepatch-admin` and promoted, verifying its SHA-256 → a bad `juju
//! config` → Blocked while the server keeps serving → the database secret
//! rotates → the server reconnects with the new password → a second,
//! non-leader unit joins (in a pod network of its own, since the charm fixes
//! port 8080) while the schema is behind, waits for the leader to migrate,
//! then serves.
//!
//! Every credential is a unique marker; at the end every line any part
//! logged (charm, server, Pebble double, admin CLI, client) is searched for
//! them. Only the action results that hand a token to the operator may
//! hold one.
//!
//! It needs root (the container view mounts overlays in a private mount
//! namespace; the second pod is a network namespace); otherwise it says so
//! and passes without running.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use ops::testing::{Container, Relation, Secret, State};
use ops::Status;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use testkit::{workspace_bin, PgCluster, TestCa};

const APP: &str = "livepatch-server-k8s";
const PEER_ID: u64 = 1;
const DB_ID: u64 = 3;
const DB_USER: &str = "relation-3";
const DB_NAME: &str = "livepatch-server";
const DB_SECRET: &str = "secret:d1b0a5e0c7b3f2a9e8d1";
const TLS_SECRET: &str = "secret:7157000000000000000a";
/// The public port the charm gives the server (charm-contract.md).
const PORT: u16 = 8080;
const KERNEL: &str = "5.15.0-107.117";
const PATCH: &str = "livepatch-5.15.0-107.117-generic-107.1-amd64.tar.bz2";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the workspace")
        .to_path_buf()
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Every line any part of the deployment wrote, by source.
#[derive(Default, Clone)]
struct Logs(Arc<Mutex<Vec<(String, String)>>>);

impl Logs {
    fn add(&self, source: &str, text: &str) {
        if !text.is_empty() {
            self.0
                .lock()
                .unwrap()
                .push((source.to_string(), text.to_string()));
        }
    }
}

/// The credentials of the journey: unique, recognisable strings.
struct Markers(Vec<(String, String)>);

impl Markers {
    fn add(&mut self, name: &str, value: &str) {
        assert!(value.len() >= 8, "{name} is too short to search for");
        self.0.push((name.to_string(), value.to_string()));
    }
}

fn marker(name: &str) -> String {
    format!("MARK{}{}", name, testkit::random_hex(12))
}

// ---------------------------------------------------------------------------
// The unit: state file, charm directory, Pebble double.

struct Unit {
    name: String,
    dir: PathBuf,
    charm: PathBuf,
    logs: Logs,
    double: Option<Child>,
    /// Whether the unit's pod has its own network namespace (the double's,
    /// shared by the charm's processes and the helpers started in it).
    pod_network: bool,
    helpers: Vec<Child>,
}

impl Unit {
    fn new(base: &Path, n: u32, charm: &Path, state: &State, logs: &Logs) -> Unit {
        let dir = base.join(format!("unit-{n}"));
        std::fs::create_dir_all(dir.join("containers/livepatch")).unwrap();
        let unit = Unit {
            name: format!("{APP}/{n}"),
            dir,
            charm: charm.to_path_buf(),
            logs: logs.clone(),
            double: None,
            pod_network: false,
            helpers: Vec::new(),
        };
        unit.set_state(state);
        unit
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    fn root(&self) -> PathBuf {
        self.dir.join("root")
    }
    fn socket(&self) -> PathBuf {
        self.dir.join("containers/livepatch/pebble.socket")
    }
    fn state(&self) -> State {
        serde_json::from_slice(&std::fs::read(self.state_path()).unwrap()).unwrap()
    }
    fn set_state(&self, state: &State) {
        ops::testing::fakes::write_json(&self.state_path(), state).unwrap();
    }
    fn change(&self, f: impl FnOnce(&mut State)) {
        let mut s = self.state();
        f(&mut s);
        self.set_state(&s);
    }

    /// The container's image: the server and the schema tool of this build
    /// where the charm's layer expects them, and a stand-in
    /// `update-ca-certificates` that records its call and rebuilds the
    /// bundle from what the charm installed.
    fn lay_out_image(&self) {
        let bin = self.root().join("usr/local/bin");
        std::fs::create_dir_all(&bin).unwrap();
        for tool in ["livepatch-server", "livepatch-schema-tool"] {
            std::os::unix::fs::symlink(workspace_bin(tool), bin.join(tool)).unwrap();
        }
        let sbin = self.root().join("usr/sbin");
        std::fs::create_dir_all(&sbin).unwrap();
        let stand_in = sbin.join("update-ca-certificates");
        std::fs::write(
            &stand_in,
            "#!/bin/sh\n\
             # Stand-in: record the call, rebuild the bundle from the system's and the local CAs.\n\
             set -e\n\
             mkdir -p /var/log\n\
             echo \"update-ca-certificates $*\" >> /var/log/update-ca-certificates.calls\n\
             cat /etc/ssl/certs/ca-certificates.crt /usr/local/share/ca-certificates/*.crt > /etc/ssl/certs/.bundle.new 2>/dev/null || true\n\
             mv /etc/ssl/certs/.bundle.new /etc/ssl/certs/ca-certificates.crt\n\
             echo '1 added, 0 removed; done.'\n",
        )
        .unwrap();
        std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Starts the container's Pebble: real processes, the container's view.
    fn start_pebble(&mut self) {
        self.lay_out_image();
        let file = self.dir.join("livepatch.json");
        ops::testing::fakes::write_json(&file, &Container::new("livepatch")).unwrap();
        let log = std::fs::File::create(self.dir.join("pebble.log")).unwrap();
        let mut cmd = if self.pod_network {
            // A pod of its own: a new network namespace with its loopback up.
            let mut c = Command::new("unshare");
            c.args([
                "--net",
                "--",
                "sh",
                "-c",
                "ip link set lo up && exec \"$@\"",
                "sh",
            ])
            .arg(workspace_bin("ops-pebble-double"));
            c
        } else {
            Command::new(workspace_bin("ops-pebble-double"))
        };
        let child = cmd
            .arg("--socket")
            .arg(self.socket())
            .arg("--container-file")
            .arg(&file)
            .arg("--real-root")
            .arg(self.root())
            .arg("--container-view")
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LANG", "C.UTF-8")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.double = Some(child);
        wait_for(
            "the Pebble double to listen",
            Duration::from_secs(20),
            || UnixStream::connect(self.socket()).is_ok(),
        );
    }

    /// A command run in this unit's pod (its network namespace, if it has one).
    fn in_pod(&self, program: &Path) -> Command {
        match (&self.double, self.pod_network) {
            (Some(d), true) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/proc/{}/ns/net", d.id()))
                    .arg("--")
                    .arg(program);
                c
            }
            _ => Command::new(program),
        }
    }

    /// Starts a helper process in the pod, stopped with the unit.
    fn spawn_in_pod(&mut self, program: &Path, args: &[&str]) {
        let child = self
            .in_pod(program)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.helpers.push(child);
    }

    fn dispatch(&self, what: &[String], source: &str) -> Value {
        let report = self.dir.join("report.json");
        let _ = std::fs::remove_file(&report);
        let output = self
            .in_pod(&workspace_bin("ops-fake-juju"))
            .arg("dispatch")
            .arg("--state")
            .arg(self.state_path())
            .arg("--meta-dir")
            .arg(&self.charm)
            .args(what)
            .args(["--unit", &self.name])
            .arg("--containers-dir")
            .arg(self.dir.join("containers"))
            .arg("--charm-dir")
            .arg(&self.charm)
            .arg("--session-dir")
            .arg(self.dir.join("session"))
            .arg("--report")
            .arg(&report)
            .arg("--")
            .arg(self.charm.join("dispatch"))
            .output()
            .unwrap();
        self.logs
            .add("ops-fake-juju", &String::from_utf8_lossy(&output.stderr));
        let Ok(bytes) = std::fs::read(&report) else {
            panic!(
                "{source}: the driver failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let report: Value = serde_json::from_slice(&bytes).unwrap();
        let tag = format!("{} {source}", self.name);
        self.logs.add(
            &format!("{tag} charm stdout"),
            report["stdout"].as_str().unwrap_or(""),
        );
        self.logs.add(
            &format!("{tag} charm stderr"),
            report["stderr"].as_str().unwrap_or(""),
        );
        for line in report["record"]["juju_log"]
            .as_array()
            .into_iter()
            .flatten()
        {
            self.logs.add(
                &format!("{tag} juju-log"),
                line["message"].as_str().unwrap_or(""),
            );
        }
        for line in report["record"]["action_logs"]
            .as_array()
            .into_iter()
            .flatten()
        {
            self.logs
                .add(&format!("{tag} action-log"), line.as_str().unwrap_or(""));
        }
        if let Some(failure) = report["record"]["action_failure"].as_str() {
            self.logs.add(&format!("{tag} action-fail"), failure);
        }
        assert_eq!(report["exit_code"], 0, "{tag}: {report:#}");
        report
    }

    fn hook(&self, event: &str) -> Value {
        self.dispatch(&["--event".into(), event.into()], event)
    }

    fn event(&self, event: &ops::Event) -> Value {
        let text = serde_json::to_string(event).unwrap();
        self.dispatch(&["--event".into(), text], &format!("{event:?}"))
    }

    /// Runs an action; returns its results (the action must succeed).
    fn action(&self, name: &str, params: Value) -> serde_json::Map<String, Value> {
        let report = self.dispatch(
            &[
                "--action".into(),
                name.into(),
                "--params".into(),
                params.to_string(),
            ],
            name,
        );
        assert_eq!(
            report["record"]["action_failure"],
            Value::Null,
            "{name}: {report:#}"
        );
        report["record"]["action_results"]
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    fn status(&self) -> Status {
        self.state().unit_status
    }

    /// The body of a Pebble API GET over the unit's socket.
    fn pebble_raw(&self, path: &str) -> String {
        let mut s = UnixStream::connect(self.socket()).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        text.split_once("\r\n\r\n")
            .map_or(String::new(), |(_, b)| b.to_string())
    }

    /// A Pebble API GET answering JSON.
    fn pebble_get(&self, path: &str) -> Value {
        let body = self.pebble_raw(path);
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }

    /// Whether the server service is active in the unit's Pebble.
    fn service_running(&self) -> bool {
        let v = self.pebble_get("/v1/services?names=livepatch");
        v["result"][0]["current"] == "active"
    }

    fn exec_calls(&self) -> Vec<Vec<String>> {
        let c: Value =
            serde_json::from_slice(&std::fs::read(self.dir.join("livepatch.json")).unwrap())
                .unwrap();
        c["exec_history"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                r["command"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect()
            })
            .collect()
    }

    /// Collects the double's own output and every service line it kept.
    fn collect_logs(&self) {
        let logs = self.pebble_raw("/v1/logs?n=-1");
        for line in logs.lines().filter(|l| !l.trim().is_empty()) {
            let entry: Value = serde_json::from_str(line).unwrap();
            self.logs.add(
                &format!("{} service {}", self.name, entry["service"]),
                entry["message"].as_str().unwrap_or(""),
            );
        }
        let own = std::fs::read_to_string(self.dir.join("pebble.log")).unwrap_or_default();
        self.logs.add(&format!("{} pebble double", self.name), &own);
    }
}

impl Drop for Unit {
    fn drop(&mut self) {
        for mut h in self.helpers.drain(..) {
            let _ = h.kill();
            let _ = h.wait();
        }
        if let Some(mut c) = self.double.take() {
            // SIGTERM: the double stops the services it started.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What a second unit of the application sees when it joins: the
/// application's config, secrets and relation data, the leader as a peer,
/// nothing of the leader's own unit state.
fn follower_state(leader: &State) -> State {
    let relations = leader
        .relations
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.local_unit_data = ops::testing::state::default_unit_bag("10.1.0.11");
            if r.peer {
                r.remote_units = [(0, leader_unit_bag(leader, r.id))].into();
            }
            r
        })
        .collect();
    State {
        config: leader.config.clone(),
        leader: false,
        model: leader.model.clone(),
        secrets: leader.secrets.clone(),
        planned_units: 2,
        containers: vec![Container::new("livepatch")],
        relations,
        ..State::default()
    }
}

fn leader_unit_bag(leader: &State, relation: u64) -> std::collections::BTreeMap<String, String> {
    leader.relation(relation).unwrap().local_unit_data.clone()
}

/// The charm as `charmcraft pack` lays it out (scripts/pack-charm): the
/// compiled charm as `dispatch` beside its metadata.
fn pack_charm(base: &Path) -> PathBuf {
    let dir = base.join("charm");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(workspace_bin("livepatch-charm"), dir.join("dispatch")).unwrap();
    std::fs::set_permissions(dir.join("dispatch"), std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["metadata.yaml", "config.yaml", "actions.yaml"] {
        std::fs::copy(repo_root().join(f), dir.join(f)).unwrap();
    }
    dir
}

// ---------------------------------------------------------------------------
// The contracts service: real HTTPS on loopback, certificate from a private CA.

struct Contracts {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

fn contracts_service(
    ca: &TestCa,
    contract_token: &str,
    machine_token: &str,
    resource_token: &str,
) -> Contracts {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let issued = ca.issue(&["localhost"]);
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let (contract, machine, resource) = (
        contract_token.to_string(),
        machine_token.to_string(),
        resource_token.to_string(),
    );
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, stream);
            let Some((method, path, auth)) = read_request(&mut tls) else {
                continue;
            };
            log.lock().unwrap().push(format!("{method} {path}"));
            let (status, body) = match (method.as_str(), path.as_str()) {
                ("POST", "/v1/context/machines/token") if auth == format!("Bearer {contract}") => {
                    (200, json!({ "machineToken": machine }).to_string())
                }
                ("GET", "/v1/resources/livepatch-onprem/context/machines/livepatch-onprem")
                    if auth == format!("Bearer {machine}") =>
                {
                    (200, json!({ "resourceToken": resource }).to_string())
                }
                ("POST", "/v1/context/machines/token")
                | ("GET", "/v1/resources/livepatch-onprem/context/machines/livepatch-onprem") => {
                    (401, r#"{"code":"unauthorized"}"#.to_string())
                }
                _ => (404, r#"{"code":"not-found"}"#.to_string()),
            };
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.write_all(reply.as_bytes());
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    Contracts { port, seen }
}

/// Method, path and Authorization of one HTTP/1.1 request (its body read and dropped).
fn read_request(stream: &mut impl Read) -> Option<(String, String, String)> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let (mut auth, mut length) = (String::new(), 0usize);
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.to_ascii_lowercase().as_str() {
                "authorization" => auth = v.trim().to_string(),
                "content-length" => length = v.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((method, path, auth))
}

// ---------------------------------------------------------------------------
// Helpers around the running server.

fn http_status(path: &str) -> Option<(u16, String)> {
    testkit::http_get(PORT, path).ok()
}

fn serving() -> bool {
    matches!(http_status("/debug/status"), Some((200, body)) if body.contains("OK"))
}

fn run_tool(logs: &Logs, source: &str, cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    logs.add(
        &format!("{source} stdout"),
        &String::from_utf8_lossy(&out.stdout),
    );
    logs.add(
        &format!("{source} stderr"),
        &String::from_utf8_lossy(&out.stderr),
    );
    out
}

fn client(
    logs: &Logs,
    base: &Path,
    token_file: &Path,
    machine: &str,
    extra: &[&str],
) -> std::process::Output {
    client_in(None, logs, base, token_file, machine, extra)
}

/// The reference client, run from inside `pod`'s network when given.
fn client_in(
    pod: Option<&Unit>,
    logs: &Logs,
    base: &Path,
    token_file: &Path,
    machine: &str,
    extra: &[&str],
) -> std::process::Output {
    let dir = base.join(format!("downloads-{machine}"));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = workspace_bin("livepatch-client");
    run_tool(
        logs,
        "livepatch-client",
        pod.map_or_else(|| Command::new(&bin), |u| u.in_pod(&bin))
            .args(["--url", &format!("http://127.0.0.1:{PORT}")])
            .arg("--auth-token-file")
            .arg(token_file)
            .args(["--machine-id", machine, "--kernel", KERNEL])
            .args(["--flavour", "generic", "--arch", "amd64"])
            .arg("--download-dir")
            .arg(&dir)
            .args(extra)
            .env_remove("LIVEPATCH_AUTH_TOKEN"),
    )
}

#[test]
fn a_simulated_unit_serves_machines_from_deploy_to_secret_rotation_and_logs_no_credential() {
    if !running_as_root() {
        eprintln!(
            "skipped: the simulated unit runs its processes in a private mount namespace \
             (overlays), which needs root; run the tests as root (CI does)"
        );
        return;
    }
    // Nothing may listen on the unit's public port already.
    if TcpListener::bind(("0.0.0.0", PORT)).is_err() {
        panic!("port {PORT} is taken: the simulated unit's server needs it (the charm fixes it)");
    }
    let base = tempfile::tempdir().unwrap();
    let logs = Logs::default();
    let mut markers = Markers(Vec::new());

    let db_password = marker("dbpw");
    let db_password_2 = marker("dbpwrotated");
    let contracts_password = marker("contractspw");
    let contract_token = marker("contracttoken");
    let machine_token = marker("contractsmachinetoken");
    let resource_token = marker("resourcetoken");
    markers.add("database password", &db_password);
    markers.add("rotated database password", &db_password_2);
    markers.add("contracts password", &contracts_password);
    markers.add("contract token", &contract_token);
    markers.add("contracts machine token", &machine_token);
    markers.add("resource (sync) token", &resource_token);

    // A real PostgreSQL: TLS only, scram-sha-256.
    let cluster = PgCluster::builder()
        .tls("localhost")
        .scram()
        .hostssl_only()
        .start()
        .expect("cannot start PostgreSQL");
    cluster.create_user(DB_USER, &db_password).unwrap();
    cluster.create_database(DB_NAME, Some(DB_USER)).unwrap();
    let db_ca = cluster.ca_pem().unwrap().to_string();

    // The contracts service behind a private CA.
    let private_ca = TestCa::new("journey contracts CA");
    let contracts = contracts_service(
        &private_ca,
        &contract_token,
        &machine_token,
        &resource_token,
    );
    let contracts_url = format!("https://localhost:{}", contracts.port);

    let charm = pack_charm(base.path());

    // deploy: one leader unit, its peer relation, the operator's config.
    let state = State::default()
        .with_leader(true)
        .with_config(
            "server.url-template",
            format!("http://127.0.0.1:{PORT}/v1/patches/{{filename}}"),
        )
        .with_config("contracts.url", contracts_url.clone())
        .with_config(
            "contracts.ca",
            base64::engine::general_purpose::STANDARD.encode(private_ca.cert_pem()),
        )
        .with_config("contracts.user", "journey-contracts-user")
        .with_config("contracts.password", contracts_password.clone())
        // The most the server says, for the hygiene check to search.
        .with_config("server.log-level", "debug")
        .with_config("patch-sync.enabled", true)
        .with_config("patch-sync.upstream-url", contracts_url.clone())
        .with_config("patch-storage.type", "postgres")
        .with_relation(Relation::peer("livepatch", PEER_ID))
        .with_container(Container::new("livepatch"));
    let mut unit = Unit::new(base.path(), 0, &charm, &state, &logs);
    unit.hook("install");
    unit.hook("leader-elected");
    let admin_id =
        unit.state().relation(PEER_ID).unwrap().local_app_data["admin-secret-id"].clone();
    let admin = unit
        .state()
        .secret(&admin_id)
        .unwrap()
        .latest_content()
        .unwrap()
        .clone();
    let admin_user = admin.0["username"].clone();
    let admin_password = admin.0["password"].clone();
    markers.add("charm admin password", &admin_password);

    unit.start_pebble();
    unit.event(&Container::new("livepatch").pebble_ready_event());
    unit.hook("config-changed");
    assert_eq!(
        unit.status(),
        Status::blocked("Waiting for postgres relation to be established."),
        "deployed without a database"
    );

    // integrate: the charm asks, postgresql-k8s answers with secrets.
    let rel = Relation::new("database", DB_ID, "postgresql-k8s");
    unit.change(|s| s.relations.push(rel.clone()));
    unit.event(&rel.created_event());
    let asked = unit.state().relation(DB_ID).unwrap().local_app_data.clone();
    assert_eq!(asked["database"], DB_NAME);
    unit.change(|s| {
        s.secrets.push(
            Secret::new(&[("username", DB_USER), ("password", &db_password)]).with_id(DB_SECRET),
        );
        s.secrets
            .push(Secret::new(&[("tls", "True"), ("tls-ca", &db_ca)]).with_id(TLS_SECRET));
        let r = s.relations.iter_mut().find(|r| r.id == DB_ID).unwrap();
        r.remote_units
            .insert(0, ops::testing::state::default_unit_bag("10.1.0.5"));
        r.remote_app_data.extend([
            ("database".to_string(), DB_NAME.to_string()),
            (
                "endpoints".to_string(),
                format!("localhost:{}", cluster.port()),
            ),
            ("secret-user".to_string(), DB_SECRET.to_string()),
            ("secret-tls".to_string(), TLS_SECRET.to_string()),
        ]);
    });
    let rel = unit.state().relation(DB_ID).unwrap().clone();
    unit.event(&rel.changed_event(None));

    // The leader upgraded the schema with the real tool, over verify-full TLS.
    let calls = unit.exec_calls();
    assert!(
        calls.iter().any(|c| c
            .first()
            .is_some_and(|e| e.ends_with("livepatch-schema-tool"))
            && c.get(1).is_some_and(|a| a == "upgrade")),
        "no schema upgrade ran: {calls:?}"
    );
    let tables = cluster
        .psql(
            DB_NAME,
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .unwrap();
    assert!(
        tables.trim().parse::<u32>().unwrap() > 3,
        "tables: {tables}"
    );
    assert_eq!(
        unit.status(),
        Status::blocked("✘ patch-sync token not set, run get-resource-token action")
    );
    // The private contracts CA went into the container's trust store.
    let ca_calls =
        std::fs::read_to_string(unit.root().join("var/log/update-ca-certificates.calls"))
            .unwrap_or_default();
    assert!(
        ca_calls.contains("update-ca-certificates --fresh"),
        "{ca_calls:?}; exec'd: {:?}; the double said: {}",
        unit.exec_calls(),
        std::fs::read_to_string(unit.dir.join("pebble.log")).unwrap_or_default()
    );
    let installed = std::fs::read_to_string(
        unit.root()
            .join("usr/local/share/ca-certificates/trusted-contracts.ca.crt"),
    )
    .unwrap();
    assert_eq!(installed.trim(), private_ca.cert_pem().trim());

    // get-resource-token: the contract token traded over HTTPS.
    let results = unit.action(
        "get-resource-token",
        json!({ "contract-token": contract_token }),
    );
    assert_eq!(results["result"], "resource token set");
    // The resource token goes into a secret, not back to the operator.
    assert!(!Value::Object(results.clone())
        .to_string()
        .contains(&resource_token));
    assert_eq!(
        contracts.seen.lock().unwrap()[..2],
        [
            "POST /v1/context/machines/token".to_string(),
            "GET /v1/resources/livepatch-onprem/context/machines/livepatch-onprem".to_string()
        ]
    );
    // The next hook applies it (Juju runs update-status, secret and peer
    // hooks in between; any hook reconciles).
    unit.hook("update-status");
    wait_for("the server to serve", Duration::from_secs(30), serving);
    unit.hook("update-status");
    assert_eq!(
        unit.status().name,
        ops::hookcmds::StatusName::Active,
        "{:?}",
        unit.status()
    );
    let plan = unit.pebble_get("/v1/plan?format=yaml");
    assert!(plan.to_string().contains("LP_PATCH_SYNC_TOKEN"), "{plan}");
    assert!(unit.service_running());

    // create-auth-token → the reference client enrols, checks in, downloads.
    let results = unit.action(
        "create-auth-token",
        json!({ "tier": "stable", "id": "journey" }),
    );
    let auth_token = results["token"].as_str().unwrap().to_string();
    markers.add("auth token", &auth_token);
    let token_file = base.path().join("auth-token");
    std::fs::write(&token_file, &auth_token).unwrap();

    // A patch uploaded with the admin CLI and promoted to the token's tier.
    let patch_bytes: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let patch_file = base.path().join(PATCH);
    std::fs::write(&patch_file, &patch_bytes).unwrap();
    let sha = Sha256::digest(&patch_bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    let admin_cli = |args: &[&str]| {
        let out = run_tool(
            &logs,
            "livepatch-admin",
            Command::new(workspace_bin("livepatch-admin"))
                .args(["--url", &format!("http://127.0.0.1:{PORT}")])
                .args(args)
                .env("XDG_CONFIG_HOME", base.path().join("admin-config")),
        );
        assert!(
            out.status.success(),
            "livepatch-admin {:?}: {}",
            args.first(),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    admin_cli(&["login", "-a", &format!("{admin_user}:{admin_password}")]);
    admin_cli(&["patch", "upload", patch_file.to_str().unwrap()]);
    admin_cli(&["patch", "promote", "107.1", "stable"]);

    // With TLS downloads required, the plain-HTTP URL is refused, nothing kept.
    let refused = client(
        &logs,
        base.path(),
        &token_file,
        "machine-0001",
        &["--tls-patch-download"],
    );
    let text = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{text}");
    assert!(
        text.contains("tls-patch-download is on and the URL is not https"),
        "{text}"
    );
    let downloads = base.path().join("downloads-machine-0001");
    assert_eq!(std::fs::read_dir(&downloads).unwrap().count(), 0);

    let ok = client(
        &logs,
        base.path(),
        &token_file,
        "machine-0001",
        &["--require-patch"],
    );
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(out.contains(&format!("sha256 {sha} verified")), "{out}");
    assert_eq!(std::fs::read(downloads.join(PATCH)).unwrap(), patch_bytes);

    // A bad value: Blocked, and the running server is left alone.
    let before = unit.pebble_get("/v1/services?names=livepatch");
    unit.change(|s| {
        s.config
            .insert("server.log-level".into(), json!("very-loud"));
    });
    unit.hook("config-changed");
    assert_eq!(unit.status().name, ops::hookcmds::StatusName::Blocked);
    assert!(
        unit.status().message.contains("server.log-level"),
        "{:?}",
        unit.status()
    );
    assert!(
        serving(),
        "the server stopped serving after a bad config value"
    );
    assert_eq!(unit.pebble_get("/v1/services?names=livepatch"), before);
    unit.change(|s| {
        s.config.insert("server.log-level".into(), json!("debug"));
    });
    unit.hook("config-changed");
    assert_eq!(
        unit.status().name,
        ops::hookcmds::StatusName::Active,
        "{:?}",
        unit.status()
    );

    // The database secret rotates: PostgreSQL first, then the new revision.
    cluster
        .psql(
            "postgres",
            &format!("ALTER ROLE \"{DB_USER}\" PASSWORD '{db_password_2}'"),
        )
        .unwrap();
    unit.change(|s| {
        let secret = s.secrets.iter_mut().find(|x| x.id == DB_SECRET).unwrap();
        *secret = secret
            .clone()
            .with_latest(&[("username", DB_USER), ("password", &db_password_2)]);
    });
    let secret = unit.state().secret(DB_SECRET).unwrap().clone();
    unit.event(&secret.changed_event());
    let plan = unit.pebble_get("/v1/plan?format=yaml").to_string();
    assert!(
        plan.contains(&db_password_2),
        "the plan kept the old password"
    );
    wait_for("the server to reconnect", Duration::from_secs(30), serving);
    // A new machine enrols and downloads: the database answers the server.
    let again = client(
        &logs,
        base.path(),
        &token_file,
        "machine-0002",
        &["--require-patch"],
    );
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let enrolled = cluster
        .psql(DB_NAME, "SELECT count(*) FROM machine")
        .unwrap_or_default();
    assert_eq!(enrolled.trim(), "2", "machines: {enrolled}");
    unit.hook("update-status");
    assert_eq!(
        unit.status().name,
        ops::hookcmds::StatusName::Active,
        "{:?}",
        unit.status()
    );

    // A second unit joins: a non-leader in a pod of its own (its own network
    // namespace, so its server has port 8080 to itself), reaching PostgreSQL
    // through a forwarder as a pod reaches the database's service.
    let pg_sock = base.path().join("pg.sock");
    let host_forward = Command::new(workspace_bin("e2e-forward"))
        .args(["unix-to-tcp", pg_sock.to_str().unwrap()])
        .arg(format!("127.0.0.1:{}", cluster.port()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Stopped however the journey ends.
    struct KillOnDrop(Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let host_forward = KillOnDrop(host_forward);
    let mut unit1 = Unit::new(
        base.path(),
        1,
        &charm,
        &follower_state(&unit.state()),
        &logs,
    );
    unit1.pod_network = true;
    unit1.start_pebble();
    unit1.spawn_in_pod(
        &workspace_bin("e2e-forward"),
        &[
            "tcp-to-unix",
            &format!("127.0.0.1:{}", cluster.port()),
            pg_sock.to_str().unwrap(),
        ],
    );
    let web_sock = base.path().join("unit1-web.sock");
    unit1.spawn_in_pod(
        &workspace_bin("e2e-forward"),
        &[
            "unix-to-tcp",
            web_sock.to_str().unwrap(),
            &format!("127.0.0.1:{PORT}"),
        ],
    );
    // It joins while the schema is behind this build's (as after a charm
    // upgrade that brings a migration, before the leader has run it): the
    // last migration (0002_sync.sql) is undone for real. Should a later
    // migration be added, the status assertion below fails and this list
    // needs its tables too.
    cluster
        .psql(
            DB_NAME,
            "BEGIN; DROP TABLE downstream_machine_report; DROP TABLE downstream_server; \
             DROP TABLE sync_run; ALTER TABLE patch DROP COLUMN blocklist_source; \
             DELETE FROM schema_version WHERE version = 2; COMMIT;",
        )
        .unwrap();
    unit1.hook("install");
    unit1.event(&Container::new("livepatch").pebble_ready_event());
    unit1.hook("config-changed");
    assert_eq!(
        unit1.status(),
        Status::waiting("Waiting for the leader to upgrade the database schema")
    );
    assert!(
        !unit1.service_running(),
        "the second unit started before the schema was ready"
    );
    // The leader's next hook migrates; then the second unit serves.
    unit.hook("update-status");
    let version = cluster
        .psql(DB_NAME, "SELECT max(version) FROM schema_version")
        .unwrap();
    assert_eq!(version.trim(), "2", "the leader did not upgrade the schema");
    unit1.hook("update-status");
    // The non-leader checks the schema and never upgrades it.
    let calls = unit1.exec_calls();
    let tool = |verb: &str| {
        calls.iter().any(|c| {
            c.first()
                .is_some_and(|e| e.ends_with("livepatch-schema-tool"))
                && c.get(1).is_some_and(|a| a == verb)
        })
    };
    assert!(tool("check") && !tool("upgrade"), "{calls:?}");
    let unit1_serving = || {
        let Ok(mut s) = UnixStream::connect(&web_sock) else {
            return false;
        };
        let _ = write!(s, "GET /debug/status HTTP/1.0\r\nHost: localhost\r\n\r\n");
        let mut raw = String::new();
        let _ = s.read_to_string(&mut raw);
        raw.starts_with("HTTP/1.1 200") || raw.starts_with("HTTP/1.0 200")
    };
    wait_for(
        "the second unit to serve",
        Duration::from_secs(30),
        unit1_serving,
    );
    unit1.hook("update-status");
    assert_eq!(
        unit1.status().name,
        ops::hookcmds::StatusName::Active,
        "{:?}",
        unit1.status()
    );
    let plan = unit1.pebble_get("/v1/plan?format=yaml").to_string();
    assert!(
        plan.contains("LP_SERVER_IS_LEADER: \\\"false\\\"")
            || plan.contains("LP_SERVER_IS_LEADER: 'false'")
            || plan.contains("LP_SERVER_IS_LEADER: false"),
        "{plan}"
    );
    // A machine served by the second unit gets the same patch.
    let third = client_in(
        Some(&unit1),
        &logs,
        base.path(),
        &token_file,
        "machine-0003",
        &["--require-patch"],
    );
    assert!(
        third.status.success(),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
    assert_eq!(
        std::fs::read(base.path().join("downloads-machine-0003").join(PATCH)).unwrap(),
        patch_bytes
    );
    unit1.collect_logs();
    drop(unit1);
    drop(host_forward);

    // Secret hygiene: no credential in any line logged, anywhere.
    unit.collect_logs();
    let lines = logs.0.lock().unwrap().clone();
    assert!(
        lines.iter().any(|(s, _)| s.contains("service")),
        "no server output was captured"
    );
    let mut leaks = Vec::new();
    for (source, text) in &lines {
        for (name, value) in &markers.0 {
            if text.contains(value.as_str()) {
                leaks.push(format!("{name} in {source}: {text}"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "credentials leaked:\n{}",
        leaks.join("\n")
    );
    // What was searched, for the record.
    let mut sources: std::collections::BTreeMap<String, usize> = Default::default();
    for (source, text) in &lines {
        *sources.entry(source.clone()).or_default() += text.lines().count();
    }
    eprintln!("searched {} markers in: {sources:#?}", markers.0.len());
    drop(unit);
    drop(cluster);
}
