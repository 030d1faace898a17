//! Test helpers shared by the crates of this workspace (a dev-dependency only).
//!
//! - [`PgCluster`]: a throwaway PostgreSQL cluster from the installed binaries, optionally with TLS
//!   (a generated CA and server certificate), scram-sha-256 and `hostssl`-only access. It starts in a
//!   few hundred milliseconds because `initdb` runs once per machine into a cached template that
//!   each cluster copies.
//! - [`TestDb`] / [`test_database`]: a fresh database on a cluster shared by the tests of one process
//!   (under nextest every test is its own process, so that is one cluster per test).
//! - [`TestCa`]: a certificate authority that issues server certificates for a host name.
//! - [`workspace_bin`], [`free_port`]: locate binaries cargo built for the workspace, pick ports.
//! - [`ServerProcess`]: a real `livepatch-server` process with a given environment, started and
//!   waited for until `/debug/info` answers, its output captured, stopped with SIGTERM.
//!
//! Everything here is synchronous so it can be used from any test, async or not.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Where the PostgreSQL 15 server binaries are installed on Debian.
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn pg_bin(name: &str) -> PathBuf {
    let dir =
        std::env::var_os("TESTKIT_PG_BIN").map_or_else(|| PathBuf::from(PG_BIN), PathBuf::from);
    dir.join(name)
}

fn other<E: std::fmt::Display>(context: &str) -> impl FnOnce(E) -> io::Error + '_ {
    move |e| io::Error::other(format!("{context}: {e}"))
}

/// True when this process runs as root: PostgreSQL refuses to run as root, so the cluster's
/// processes then run as the `postgres` user and its directory belongs to that user.
fn running_as_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// The uid/gid of the `postgres` system user, read from `id` (no libc, no unsafe).
fn postgres_ids() -> io::Result<(u32, u32)> {
    let read = |flag: &str| -> io::Result<u32> {
        let out = Command::new("id").arg(flag).arg("postgres").output()?;
        if !out.status.success() {
            return Err(io::Error::other(
                "there is no `postgres` user to run PostgreSQL as root",
            ));
        }
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(other("cannot parse the output of id"))
    };
    Ok((read("-u")?, read("-g")?))
}

/// A command that runs `program` as the cluster's owner: `postgres` when we are root, else us.
fn as_owner(program: &Path) -> Command {
    if running_as_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--clear-groups",
            "--",
        ])
        .arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    if path.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

fn run(cmd: &mut Command, what: &str) -> io::Result<String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(other(what))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A free TCP port on 127.0.0.1 (bound, then released: good enough for tests, which retry on a race).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind an ephemeral port on 127.0.0.1")
}

/// A binary of this workspace built by cargo for the current profile: the `target/<profile>/`
/// directory next to the running test executable (`target/<profile>/deps/<test>`).
///
/// Cargo builds a package's own binaries before its integration tests; other packages' binaries are
/// there when the whole workspace is built (as `cargo nextest run --workspace` does) — otherwise
/// build them first with `cargo build -p workload --bins`.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("cannot find the test executable");
    let mut dir = exe
        .parent()
        .expect("test executable has no directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} does not exist: build it first (cargo build -p workload --bins)",
        path.display()
    );
    path
}

// ---------------------------------------------------------------------------------------------
// Certificates

/// A throwaway certificate authority (ECDSA P-256) that issues server certificates.
pub struct TestCa {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    cert_pem: String,
}

/// A certificate issued by a [`TestCa`], with its private key, both PEM.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub key_pem: String,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().expect("CA key");
        let cert_pem = params.self_signed(&key).expect("self-signed CA").pem();
        Self {
            params,
            key,
            cert_pem,
        }
    }

    /// The CA certificate (PEM), what a client trusts.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server certificate for `hosts` (DNS names or IP addresses).
    pub fn issue(&self, hosts: &[&str]) -> IssuedCert {
        let mut params =
            rcgen::CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
                .expect("server cert params");
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            hosts.first().copied().unwrap_or("server"),
        );
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().expect("server key");
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("signed server cert");
        IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// How a [`PgCluster`] is set up. Start from [`PgCluster::builder`].
#[derive(Clone, Debug, Default)]
pub struct PgBuilder {
    tls_host: Option<String>,
    scram: bool,
    hostssl_only: bool,
}

impl PgBuilder {
    /// Serve TLS with a certificate for `host`, issued by a CA generated for this cluster
    /// ([`PgCluster::ca_file`]).
    pub fn tls(mut self, host: &str) -> Self {
        self.tls_host = Some(host.to_string());
        self
    }

    /// Require scram-sha-256 passwords on TCP connections (the default trusts loopback).
    pub fn scram(mut self) -> Self {
        self.scram = true;
        self
    }

    /// Accept TCP connections only over TLS (`hostssl` lines only). Implies nothing else.
    pub fn hostssl_only(mut self) -> Self {
        self.hostssl_only = true;
        self
    }

    /// Starts the cluster (retrying once on a port race).
    pub fn start(self) -> io::Result<PgCluster> {
        let mut last = None;
        for _ in 0..3 {
            match PgCluster::start_with(&self) {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }
}

/// A running throwaway PostgreSQL cluster on 127.0.0.1; stopped (`pg_ctl -m immediate`) and
/// removed on drop.
pub struct PgCluster {
    dir: tempfile::TempDir,
    port: u16,
    password: String,
    ca_file: Option<PathBuf>,
    ca_pem: Option<String>,
}

impl std::fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCluster")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .finish()
    }
}

/// The superuser's password: tests are not about this one, and a fixed value keeps DSNs readable
/// in failures. Clusters only listen on loopback.
const SUPERUSER_PASSWORD: &str = "testkit-superuser";

fn template_dir() -> io::Result<PathBuf> {
    let base = std::env::temp_dir().join("livepatch-testkit");
    fs::create_dir_all(&base)?;
    let template = base.join("pg15-template-v1");
    if template.join("PG_VERSION").exists() {
        return Ok(template);
    }
    // Build into a private directory, then rename: concurrent test processes race harmlessly and
    // nobody ever sees a half-built template.
    let staging = tempfile::Builder::new()
        .prefix("pg15-template-staging-")
        .tempdir_in(&base)?;
    let data = staging.path().join("data");
    fs::create_dir(&data)?;
    if running_as_root() {
        let (uid, gid) = postgres_ids()?;
        chown_tree(staging.path(), uid, gid)?;
    }
    run(
        as_owner(&pg_bin("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ])
            .env("TZ", "UTC"),
        "initdb",
    )?;
    match fs::rename(&data, &template) {
        Ok(()) => {}
        Err(_) if template.join("PG_VERSION").exists() => {}
        Err(e) => return Err(e),
    }
    Ok(template)
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    // `cp -a` keeps owners and modes, which PostgreSQL checks (the data dir must be 0700).
    run(
        Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", from.display()))
            .arg(to),
        "cp -a template",
    )?;
    Ok(())
}

impl PgCluster {
    /// A builder for a cluster with options.
    pub fn builder() -> PgBuilder {
        PgBuilder::default()
    }

    /// A plain cluster: no TLS, loopback trusted.
    pub fn start() -> io::Result<Self> {
        Self::builder().start()
    }

    fn start_with(opts: &PgBuilder) -> io::Result<Self> {
        let template = template_dir()?;
        let dir = tempfile::Builder::new().prefix("testkit-pg-").tempdir()?;
        let data = dir.path().join("data");
        fs::create_dir(&data)?;
        fs::set_permissions(&data, fs::Permissions::from_mode(0o700))?;
        copy_tree(&template, &data)?;
        let port = free_port();

        let mut ca_file = None;
        let mut ca_pem = None;
        let mut extra = String::new();
        if let Some(host) = &opts.tls_host {
            let ca = TestCa::new("testkit PostgreSQL CA");
            let cert = ca.issue(&[host.as_str()]);
            fs::write(data.join("server.crt"), &cert.cert_pem)?;
            fs::write(data.join("server.key"), &cert.key_pem)?;
            fs::set_permissions(data.join("server.key"), fs::Permissions::from_mode(0o600))?;
            let ca_path = dir.path().join("ca.crt");
            fs::write(&ca_path, ca.cert_pem())?;
            ca_file = Some(ca_path);
            ca_pem = Some(ca.cert_pem().to_string());
            extra.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        }
        let method = if opts.scram { "scram-sha-256" } else { "trust" };
        let mut hba = String::from("local all all trust\n");
        hba.push_str(&format!("hostssl all all 127.0.0.1/32 {method}\n"));
        if !opts.hostssl_only {
            hba.push_str(&format!("host all all 127.0.0.1/32 {method}\n"));
        }
        fs::write(data.join("pg_hba.conf"), hba)?;
        let socket_dir = dir.path().join("sock");
        fs::create_dir(&socket_dir)?;
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n\
             shared_buffers = '32MB'\npassword_encryption = 'scram-sha-256'\nlog_min_messages = warning\n\
             timezone = 'UTC'\n{extra}",
            socket_dir.display()
        );
        fs::write(data.join("postgresql.auto.conf"), conf)?;
        if running_as_root() {
            let (uid, gid) = postgres_ids()?;
            chown_tree(dir.path(), uid, gid)?;
        }
        let cluster = PgCluster {
            dir,
            port,
            password: SUPERUSER_PASSWORD.to_string(),
            ca_file,
            ca_pem,
        };
        run(
            as_owner(&pg_bin("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(cluster.dir.path().join("server.log"))
                .args(["-w", "-t", "30", "start"]),
            "pg_ctl start",
        )
        .map_err(|e| {
            let log = fs::read_to_string(cluster.dir.path().join("server.log")).unwrap_or_default();
            io::Error::other(format!("{e}\nserver log:\n{log}"))
        })?;
        cluster.psql(
            "postgres",
            &format!("ALTER USER postgres PASSWORD '{SUPERUSER_PASSWORD}'"),
        )?;
        Ok(cluster)
    }

    /// Stops the server as an operator would (`pg_ctl stop -m fast`: sessions are ended, committed
    /// work is checkpointed), for tests of what clients do while the database is down.
    pub fn stop(&self) -> io::Result<()> {
        run(
            as_owner(&pg_bin("pg_ctl"))
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .args(["-m", "fast", "-w", "-t", "60", "stop"]),
            "pg_ctl stop",
        )
        .map(drop)
    }

    /// Starts a cluster stopped with [`PgCluster::stop`] again, on the same port and data.
    pub fn start_again(&self) -> io::Result<()> {
        run(
            as_owner(&pg_bin("pg_ctl"))
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .arg("-l")
                .arg(self.dir.path().join("server.log"))
                .args(["-w", "-t", "60", "start"]),
            "pg_ctl start",
        )
        .map(drop)
    }

    /// The TCP port (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser `postgres`'s password (it needs one when [`PgBuilder::scram`] is on).
    pub fn superuser_password(&self) -> &str {
        &self.password
    }

    /// The CA certificate file clients must trust, when the cluster serves TLS.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// The CA certificate (PEM), when the cluster serves TLS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The server's log so far (useful in assertion messages).
    pub fn server_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Runs SQL as the superuser over the Unix socket (`psql -v ON_ERROR_STOP=1`) and returns the
    /// unaligned, tuples-only output.
    pub fn psql(&self, database: &str, sql: &str) -> io::Result<String> {
        run(
            Command::new(pg_bin("psql"))
                .arg("-h")
                .arg(self.dir.path().join("sock"))
                .args([
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "-d",
                    database,
                ])
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql]),
            "psql",
        )
    }

    /// A plain-SQL dump of `database` (`pg_dump`), e.g. to prove a secret is stored nowhere.
    pub fn dump(&self, database: &str) -> io::Result<String> {
        run(
            Command::new(pg_bin("pg_dump"))
                .arg("-h")
                .arg(self.dir.path().join("sock"))
                .args([
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "--inserts",
                    database,
                ]),
            "pg_dump",
        )
    }

    /// Creates a database (owned by `owner` when given).
    pub fn create_database(&self, name: &str, owner: Option<&str>) -> io::Result<()> {
        let owner = owner.map(|o| format!(" OWNER \"{o}\"")).unwrap_or_default();
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\"{owner}"))
            .map(drop)
    }

    /// Creates a login role with a (scram-sha-256) password.
    pub fn create_user(&self, name: &str, password: &str) -> io::Result<()> {
        self.psql(
            "postgres",
            &format!("CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'"),
        )
        .map(drop)
    }

    /// A `postgresql://` DSN for the superuser on `database` (no sslmode).
    pub fn dsn(&self, database: &str) -> String {
        self.dsn_for("postgres", &self.password, "127.0.0.1", database)
    }

    /// A DSN for `user`/`password` on `database`, reaching the cluster under the host name `host`
    /// (use `localhost` for a certificate issued to `localhost`).
    pub fn dsn_for(&self, user: &str, password: &str, host: &str, database: &str) -> String {
        format!(
            "postgresql://{user}:{password}@{host}:{}/{database}",
            self.port
        )
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = as_owner(&pg_bin("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A database of its own on the cluster shared by this process, dropped with it.
pub struct TestDb {
    cluster: Arc<PgCluster>,
    name: String,
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDb")
            .field("name", &self.name)
            .field("port", &self.cluster.port)
            .finish()
    }
}

impl TestDb {
    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A superuser DSN for this database.
    pub fn dsn(&self) -> String {
        self.cluster.dsn(&self.name)
    }

    /// The cluster it lives on.
    pub fn cluster(&self) -> &PgCluster {
        &self.cluster
    }

    /// Runs SQL on this database as the superuser (see [`PgCluster::psql`]).
    pub fn psql(&self, sql: &str) -> io::Result<String> {
        self.cluster.psql(&self.name, sql)
    }
}

static SHARED: Mutex<Weak<PgCluster>> = Mutex::new(Weak::new());

/// A fresh empty database on a plain cluster shared with the other tests of this process; the
/// cluster stops when the last [`TestDb`] is dropped.
pub fn test_database() -> TestDb {
    let cluster = {
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        match shared.upgrade() {
            Some(c) => c,
            None => {
                let c = Arc::new(
                    PgCluster::start().expect("cannot start a throwaway PostgreSQL cluster"),
                );
                *shared = Arc::downgrade(&c);
                c
            }
        }
    };
    let name = format!("test_{}", random_hex(8));
    cluster
        .create_database(&name, None)
        .expect("cannot create a test database");
    TestDb { cluster, name }
}

/// `n` random bytes as hex, from the kernel's generator (no RNG crate needed for names).
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("/dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// A real server process

/// A `livepatch-server` (or any binary serving `/debug/info`) running as a child process, its
/// stdout and stderr captured in a file. Killed on drop if still running.
pub struct ServerProcess {
    child: Option<Child>,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl std::fmt::Debug for ServerProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerProcess")
            .field("port", &self.port)
            .finish()
    }
}

impl ServerProcess {
    /// Starts `bin` with exactly `env` (plus `PATH`) and `LP_SERVER_SERVER_ADDRESS` set to a free
    /// loopback port, then waits up to 30 s for `GET /debug/info` to answer 200.
    pub fn start(bin: &Path, env: &[(&str, &str)]) -> io::Result<Self> {
        let port = free_port();
        let log = tempfile::NamedTempFile::new()?;
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LP_SERVER_SERVER_ADDRESS", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.reopen()?)
            .stderr(log.reopen()?);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn()?;
        let mut server = ServerProcess {
            child: Some(child),
            port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = http_get(port, "/debug/info") {
                return Ok(server);
            }
            if let Some(status) = server
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(io::Error::other(format!(
                    "server exited before it was ready ({status}); output:\n{}",
                    server.output()
                )));
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "server not ready after 30 s; output:\n{}",
                    server.output()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything it printed so far (stdout and stderr interleaved).
    pub fn output(&self) -> String {
        fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Sends SIGTERM (through `kill`, so no unsafe code) without waiting.
    pub fn terminate(&self) -> io::Result<()> {
        if let Some(pid) = self.pid() {
            run(
                Command::new("kill").args(["-TERM", &pid.to_string()]),
                "kill -TERM",
            )?;
        }
        Ok(())
    }

    /// Sends SIGTERM and waits for the exit status, killing the process after `timeout`.
    pub fn stop(&mut self, timeout: Duration) -> io::Result<std::process::ExitStatus> {
        self.terminate()?;
        let mut child = self
            .child
            .take()
            .ok_or_else(|| io::Error::other("already stopped"))?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other(
                    "server did not exit in time after SIGTERM",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A minimal blocking HTTP/1.1 GET on 127.0.0.1 returning (status, body); enough to probe
/// readiness without an HTTP client dependency.
pub fn http_get(port: u16, path: &str) -> io::Result<(u16, String)> {
    let r = http_request(port, "GET", path, &[], &[])?;
    Ok((r.status, String::from_utf8_lossy(&r.body).into_owned()))
}

/// A response read by [`http_request`].
#[derive(Clone, Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body (`Connection: close`, so everything until EOF).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A blocking HTTP/1.1 request to 127.0.0.1:`port` with `Connection: close`; the body is sent
/// with a `Content-Length`. Enough for tests that drive a real server process.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<HttpResponse> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// Parses a complete HTTP/1.1 response (headers and a body read to EOF, chunked or not).
pub fn parse_response(raw: &[u8]) -> io::Result<HttpResponse> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other("malformed status line"))?;
    let headers = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect::<Vec<_>>();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body)?;
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| io::Error::other("bad chunk"))?;
        let size_text = String::from_utf8_lossy(&data[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| io::Error::other("bad chunk size"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err(io::Error::other("truncated chunk"));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_database_accepts_queries_and_is_private_to_its_test() {
        let a = test_database();
        let b = test_database();
        assert_ne!(a.name(), b.name());
        a.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (42)")
            .unwrap();
        assert_eq!(a.psql("SELECT x FROM t").unwrap().trim(), "42");
        assert!(
            b.psql("SELECT x FROM t").is_err(),
            "the table must not exist in the other database"
        );
    }

    #[test]
    fn a_tls_cluster_with_scram_serves_its_ca_and_refuses_plain_tcp_when_hostssl_only() {
        let c = PgCluster::builder()
            .tls("localhost")
            .scram()
            .hostssl_only()
            .start()
            .unwrap();
        assert!(c.ca_pem().unwrap().contains("BEGIN CERTIFICATE"));
        let out = Command::new(pg_bin("psql"))
            .arg(format!(
                "postgresql://postgres:{}@127.0.0.1:{}/postgres?sslmode=disable",
                SUPERUSER_PASSWORD,
                c.port()
            ))
            .args(["-X", "-c", "SELECT 1"])
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "a non-TLS connection must be refused"
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("no pg_hba.conf entry"));
        let ok = Command::new(pg_bin("psql"))
            .arg(format!(
                "postgresql://postgres:{}@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
                SUPERUSER_PASSWORD,
                c.port(),
                c.ca_file().unwrap().display()
            ))
            .args([
                "-X",
                "-A",
                "-t",
                "-c",
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            ])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&ok.stdout).trim(),
            "t",
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
    }
}
