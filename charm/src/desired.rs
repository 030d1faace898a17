//! The pure core of every hook: `desired(config, snapshot) -> Desired`.
//!
//! A [`Snapshot`] is everything the charm learned from Juju and Pebble in
//! this hook (relations, secrets, leadership, the schema tool's answer); the
//! [`Desired`] result is the whole target state: the Pebble layer (or whether
//! to leave the service alone or stop it), files to push or remove, ports,
//! relation data and the unit status. The executor compares it with what is
//! there and applies only the difference. No I/O happens here, so every rule
//! of charm-contract.md can be tested as a table.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::config::{CharmConfig, IngressInterface, PatchStorage, Sensitive, PUBLIC_PORT};
use crate::dsn::{DB_CA_PATH, METRICS_DB_CA_PATH};
use crate::layer;
use crate::options::env_name;
use crate::relations::{self, Bag};
use crate::status::{self, Status};
use crate::users::{self, User};
use ops::pebble::Layer;

/// Where `contracts.ca` is installed in the workload container.
pub const CONTRACTS_CA_PATH: &str = "/usr/local/share/ca-certificates/trusted-contracts.ca.crt";
/// Directory for the charm's pushed files, owned by the server's user.
pub const CONFIG_DIR: &str = "/etc/livepatch";
/// Environment variable carrying a digest of the pushed files, so a changed
/// file changes the layer and restarts the server exactly like a changed
/// option does.
pub const FILES_DIGEST_ENV: &str = "LIVEPATCH_CHARM_FILES_SHA256";

/// The model's proxy settings (`JUJU_CHARM_*_PROXY`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proxies {
    /// `JUJU_CHARM_HTTP_PROXY`.
    pub http: String,
    /// `JUJU_CHARM_HTTPS_PROXY`.
    pub https: String,
    /// `JUJU_CHARM_NO_PROXY`.
    pub no_proxy: String,
}

/// A usable database connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbReady {
    /// The connection string the server gets.
    pub dsn: Sensitive,
    /// The provider's CA (PEM) when TLS is on.
    pub ca: Option<String>,
}

/// The main database, as the relations stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbState {
    /// No database relation.
    Absent,
    /// The database relation was removed and none has come back.
    Removed,
    /// Both `database` and `database-legacy` are related.
    Conflict,
    /// Related, credentials not (yet) usable; the text says why, for the log.
    Waiting(String),
    /// Ready to connect.
    Ready(DbReady),
}

/// What the schema tool said in this hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schema {
    /// Not run yet in this hook.
    NotRun,
    /// `check` exited 0 (or `upgrade` succeeded).
    UpToDate,
    /// `check` exited 2 and this unit may not upgrade (non-leader).
    Pending,
    /// `upgrade` failed; the tool's message, redacted.
    UpgradeFailed(String),
    /// `check` failed (exit other than 0 and 2); the tool's message, redacted.
    CheckFailed(String),
    /// The container's Pebble could not run the tool.
    Unreachable,
}

/// The schema step the executor must run before the service may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaStep {
    /// `check`, and `upgrade` when it exits 2 (the leader).
    CheckAndUpgrade,
    /// `check` only (other units).
    CheckOnly,
}

/// Credentials read from the operator's `*-secret` options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedSecrets {
    /// Users from `auth.basic.users-secret`, hashed.
    pub users: Vec<User>,
    /// `user` from `contracts.password-secret`.
    pub contracts_user: Option<String>,
    /// `password` from `contracts.password-secret`.
    pub contracts_password: Option<Sensitive>,
    /// `access-key`, `secret-key` from `patch-storage.s3-credentials-secret`.
    pub s3: Option<(Sensitive, Sensitive)>,
    /// `username`, `api-key` from `patch-storage.swift-credentials-secret`.
    pub swift: Option<(Sensitive, Sensitive)>,
    /// `token` from `patch-sync.token-secret`.
    pub sync_token: Option<Sensitive>,
}

/// The charm's internal admin user, from its app-owned secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminCredential {
    /// Login name.
    pub username: String,
    /// Password, for the admin actions.
    pub password: Sensitive,
    /// bcrypt hash of the password, for the server.
    pub hash: String,
}

impl std::fmt::Debug for AdminCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AdminCredential({:?}, <redacted>)", self.username)
    }
}

/// Everything the charm knows in this hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Application name.
    pub app: String,
    /// Unit name (`app/N`).
    pub unit: String,
    /// Model name (the Kubernetes namespace).
    pub model: String,
    /// Model UUID (`patch-sync.id`).
    pub model_uuid: String,
    /// Whether this unit leads.
    pub leader: bool,
    /// Units the application is meant to have (goal state).
    pub planned_units: u32,
    /// Whether the peer relation exists.
    pub peer: bool,
    /// Whether the workload container's Pebble answers.
    pub container: bool,
    /// The model's proxies.
    pub proxies: Proxies,
    /// The main database.
    pub database: DbState,
    /// The metrics database, when related and ready.
    pub metrics_db: Option<DbReady>,
    /// URL from the `ingress` provider.
    pub ingress_url: Option<String>,
    /// Relation id of `database`, if related.
    pub database_relation: Option<u64>,
    /// Relation id of `database-legacy`, if related.
    pub legacy_database_relation: Option<u64>,
    /// Relation id of `metrics-db`, if related.
    pub metrics_db_relation: Option<u64>,
    /// Relation id of `ingress`, if related.
    pub ingress_relation: Option<u64>,
    /// Relation id of `nginx-route`, if related.
    pub nginx_route_relation: Option<u64>,
    /// Contracts URL from `pro-airgapped-server`.
    pub airgapped_url: Option<String>,
    /// CVE service URL from `cve-catalog`.
    pub cve_catalog_url: Option<String>,
    /// Operator secrets, read.
    pub secrets: ResolvedSecrets,
    /// Problems reading operator secrets (each names its option).
    pub secret_problems: Vec<String>,
    /// The internal admin user, once the leader has created it.
    pub admin: Option<AdminCredential>,
    /// The resource token set by `get-resource-token`.
    pub resource_token: Option<Sensitive>,
    /// What the schema tool said.
    pub schema: Schema,
}

/// What to do with the service.
#[derive(Clone, PartialEq)]
pub enum ServiceGoal {
    /// Leave it as it is: running servers keep their last good configuration.
    Keep,
    /// Stop it.
    Stop,
    /// Run it with this layer (restarting when the layer differs).
    Run(Layer),
}

/// Debug names the goal and the environment's variables, never their values
/// (the database password is one of them).
impl std::fmt::Debug for ServiceGoal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceGoal::Keep => f.write_str("Keep"),
            ServiceGoal::Stop => f.write_str("Stop"),
            ServiceGoal::Run(layer) => {
                let vars: Vec<&String> = layer::environment(layer)
                    .into_iter()
                    .flat_map(|e| e.keys())
                    .collect();
                write!(f, "Run(environment: {vars:?})")
            }
        }
    }
}

/// A file the container must hold.
#[derive(Clone, PartialEq, Eq)]
pub struct File {
    /// Absolute path.
    pub path: &'static str,
    /// Content.
    pub content: String,
    /// Octal permissions, as Pebble takes them.
    pub permissions: &'static str,
}

/// Debug shows the path and size only: a file may hold a key one day.
impl std::fmt::Debug for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "File({}, {} bytes)", self.path, self.content.len())
    }
}

/// A relation bag the charm writes (leader for app bags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BagWrite {
    /// Endpoint name.
    pub endpoint: &'static str,
    /// Relation id.
    pub relation_id: u64,
    /// App bag (leader only) or the unit's own bag.
    pub app: bool,
    /// Content for `relation-set` (`""` deletes).
    pub content: Bag,
}

/// The whole target state.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// Unit status.
    pub status: Status,
    /// The service.
    pub service: ServiceGoal,
    /// Files that must exist with this content (pushed before the schema
    /// step and before the layer).
    pub files: Vec<File>,
    /// Files that must not exist.
    pub absent: Vec<&'static str>,
    /// Directories the server's user must own.
    pub dirs: Vec<String>,
    /// Ports to open.
    pub ports: Vec<u16>,
    /// Relation data to write.
    pub bags: Vec<BagWrite>,
    /// A schema step to run, after which `desired` is asked again.
    pub schema_step: Option<SchemaStep>,
}

/// Computes the target state.
pub fn desired(cfg: &CharmConfig, snap: &Snapshot) -> Desired {
    let mut d = Desired {
        status: Status::active(""),
        service: ServiceGoal::Keep,
        files: Vec::new(),
        absent: Vec::new(),
        dirs: Vec::new(),
        ports: ports(cfg),
        bags: bags(cfg, snap),
        schema_step: None,
    };

    // The checks run in the previous charm's order (livepatch-server.md
    // §14.4), with the new ones where they belong; the first one that fails
    // decides the status.
    if !snap.peer {
        d.status = Status::waiting(status::NO_PEER);
        return d;
    }
    if !snap.container {
        d.status = Status::waiting(status::NO_CONTAINER);
        return d;
    }
    if let Some(problem) = snap.secret_problems.first() {
        d.status = Status::blocked(problem.clone());
        return d;
    }
    if matches!(cfg.storage, PatchStorage::Filesystem { .. }) && snap.planned_units > 1 {
        d.status = Status::blocked(status::filesystem_shared(snap.planned_units));
        return d;
    }
    let db = match &snap.database {
        DbState::Absent => {
            d.status = Status::blocked(status::NO_DATABASE);
            d.service = ServiceGoal::Stop;
            return d;
        }
        DbState::Removed => {
            d.status = Status::blocked(status::DATABASE_REMOVED);
            d.service = ServiceGoal::Stop;
            return d;
        }
        DbState::Conflict => {
            d.status = Status::blocked(status::TWO_DATABASES);
            return d;
        }
        DbState::Waiting(_) => {
            d.status = Status::waiting(status::NO_DB_CREDENTIALS);
            return d;
        }
        DbState::Ready(db) => db,
    };
    let Some(admin) = &snap.admin else {
        d.status = Status::waiting(status::WAITING_FOR_ADMIN);
        return d;
    };

    // Files the database connection and the server need, before the schema
    // tool runs (its DSN names the CA file).
    d.files = files(cfg, snap, db);
    d.absent = absent_files(cfg, snap, db);
    d.dirs = dirs(cfg);

    match &snap.schema {
        Schema::NotRun => {
            d.schema_step = Some(if snap.leader {
                SchemaStep::CheckAndUpgrade
            } else {
                SchemaStep::CheckOnly
            });
            d.status = Status::maintenance("checking the database schema");
            return d;
        }
        Schema::Unreachable => {
            d.status = Status::waiting(status::NO_CONTAINER);
            return d;
        }
        Schema::UpgradeFailed(message) => {
            d.status = Status::blocked(status::schema_failed(message));
            return d;
        }
        Schema::CheckFailed(message) => {
            d.status = Status::blocked(format!("schema check failed: {message}"));
            return d;
        }
        Schema::Pending => {
            d.status = Status::waiting(status::WAITING_FOR_SCHEMA);
            return d;
        }
        Schema::UpToDate => {}
    }

    let sync = sync_decision(cfg, snap);
    if sync.blocked {
        d.status = Status::blocked(status::NO_SYNC_TOKEN);
        return d;
    }
    let Some(url_template) = url_template(cfg, snap) else {
        d.status = Status::blocked(status::NO_URL_TEMPLATE);
        return d;
    };

    let mut env = environment(cfg, snap, db, admin, &url_template, &sync);
    env.insert(FILES_DIGEST_ENV.to_string(), files_digest(&d.files));
    d.service = ServiceGoal::Run(layer::livepatch_layer(env));
    d.status = if sync.enabled {
        Status::active("")
    } else {
        Status::active(status::SYNC_DISABLED)
    };
    d
}

/// Ports the application's Service exposes.
fn ports(cfg: &CharmConfig) -> Vec<u16> {
    let mut ports = vec![PUBLIC_PORT];
    ports.extend(cfg.admin_port);
    ports
}

/// How patch sync is configured, all sources considered.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SyncDecision {
    enabled: bool,
    token: Option<Sensitive>,
    blocked: bool,
}

fn sync_decision(cfg: &CharmConfig, snap: &Snapshot) -> SyncDecision {
    let configured = snap
        .secrets
        .sync_token
        .clone()
        .or_else(|| cfg.sync_token.clone());
    let airgapped = snap.airgapped_url.is_some();
    if airgapped {
        // Air-gapped: only a configured token (another on-prem upstream)
        // keeps sync on; the hosted service is out of reach.
        return SyncDecision {
            enabled: cfg.sync_enabled && configured.is_some(),
            token: configured,
            blocked: false,
        };
    }
    let token = configured.or_else(|| snap.resource_token.clone());
    SyncDecision {
        enabled: cfg.sync_enabled,
        blocked: cfg.sync_enabled && token.is_none(),
        token,
    }
}

/// `server.url-template`, or `<ingress url>/v1/patches/{filename}` when it is
/// unset and Traefik gave a URL.
fn url_template(cfg: &CharmConfig, snap: &Snapshot) -> Option<String> {
    cfg.url_template.clone().or_else(|| {
        (cfg.ingress == IngressInterface::Ingress)
            .then_some(snap.ingress_url.as_ref())
            .flatten()
            .map(|url| format!("{url}/v1/patches/{{filename}}"))
    })
}

fn files(cfg: &CharmConfig, snap: &Snapshot, db: &DbReady) -> Vec<File> {
    let mut files = Vec::new();
    if let Some(ca) = &cfg.contracts_ca {
        files.push(File {
            path: CONTRACTS_CA_PATH,
            content: ca.pem.clone(),
            permissions: "644",
        });
    }
    if let Some(ca) = &db.ca {
        files.push(File {
            path: DB_CA_PATH,
            content: ca.clone(),
            permissions: "644",
        });
    }
    if let Some(ca) = snap.metrics_db.as_ref().and_then(|m| m.ca.as_ref()) {
        files.push(File {
            path: METRICS_DB_CA_PATH,
            content: ca.clone(),
            permissions: "644",
        });
    }
    files
}

fn absent_files(cfg: &CharmConfig, snap: &Snapshot, db: &DbReady) -> Vec<&'static str> {
    let mut absent = Vec::new();
    if cfg.contracts_ca.is_none() {
        absent.push(CONTRACTS_CA_PATH);
    }
    if db.ca.is_none() {
        absent.push(DB_CA_PATH);
    }
    if snap
        .metrics_db
        .as_ref()
        .and_then(|m| m.ca.as_ref())
        .is_none()
    {
        absent.push(METRICS_DB_CA_PATH);
    }
    absent
}

fn dirs(cfg: &CharmConfig) -> Vec<String> {
    let mut dirs = vec![CONFIG_DIR.to_string()];
    if let PatchStorage::Filesystem { path } = &cfg.storage {
        dirs.push(path.clone());
    }
    dirs
}

/// Hex SHA-256 over every pushed file's path and content.
pub fn files_digest(files: &[File]) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.path.as_bytes());
        h.update([0]);
        h.update(f.content.as_bytes());
        h.update([0]);
    }
    users::hex(&h.finalize())
}

/// The server's environment (charm-contract.md, "Environment").
fn environment(
    cfg: &CharmConfig,
    snap: &Snapshot,
    db: &DbReady,
    admin: &AdminCredential,
    url_template: &str,
    sync: &SyncDecision,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = cfg
        .direct
        .iter()
        .map(|(name, value)| (env_name(name), value.clone()))
        .collect();
    let mut set = |key: &str, value: &str| {
        if !value.is_empty() {
            env.insert(key.to_string(), value.to_string());
        }
    };

    set("LP_SERVER_SERVER_ADDRESS", &format!(":{PUBLIC_PORT}"));
    set(
        "LP_SERVER_IS_LEADER",
        if snap.leader { "true" } else { "false" },
    );
    if let Some(port) = cfg.admin_port {
        set("LP_SERVER_ADMIN_ADDRESS", &format!(":{port}"));
    }
    if let Some(np) = &cfg.network_policy {
        // The server fences the admin routes and /metrics by peer address
        // itself: a NetworkPolicy cannot tell /metrics from the public API on
        // port 8080. The pod's loopback always stays allowed, for the charm's
        // own admin actions.
        set(
            "LP_SERVER_ADMIN_ALLOWED_CIDRS",
            &with_loopback(&np.admin_cidrs),
        );
        set(
            "LP_SERVER_METRICS_ALLOWED_CIDRS",
            &with_loopback(&np.metrics_cidrs),
        );
    }
    set("LP_SERVER_URL_TEMPLATE", url_template);
    set("LP_DATABASE_CONNECTION_STRING", db.dsn.expose());
    if let Some(metrics) = &snap.metrics_db {
        set("LP_TIMESCALE_DB_CONNECTION_STRING", metrics.dsn.expose());
    }

    // Admin users: the charm's own user always, the operator's when enabled.
    let mut all_users = vec![User {
        name: admin.username.clone(),
        hash: admin.hash.clone(),
    }];
    if cfg.basic_auth_enabled {
        for u in cfg.basic_users.iter().chain(&snap.secrets.users) {
            if !all_users.iter().any(|have| have.name == u.name) {
                all_users.push(u.clone());
            }
        }
    }
    set("LP_AUTH_BASIC_ENABLED", "true");
    set("LP_AUTH_BASIC_USERS", &users::users_env(&all_users));

    // Patch storage.
    set("LP_PATCH_STORAGE_TYPE", cfg.storage.type_name());
    match &cfg.storage {
        PatchStorage::Filesystem { .. } => {}
        PatchStorage::S3 {
            access_key,
            secret_key,
        } => {
            let (ak, sk) = match &snap.secrets.s3 {
                Some((ak, sk)) => (Some(ak), Some(sk)),
                None => (access_key.as_ref(), secret_key.as_ref()),
            };
            set(
                "LP_PATCH_STORAGE_S3_ACCESS_KEY",
                ak.map_or("", Sensitive::expose),
            );
            set(
                "LP_PATCH_STORAGE_S3_SECRET_KEY",
                sk.map_or("", Sensitive::expose),
            );
        }
        PatchStorage::Swift { username, api_key } => {
            let (user, key) = match &snap.secrets.swift {
                Some((u, k)) => (Some(u), Some(k)),
                None => (username.as_ref(), api_key.as_ref()),
            };
            set(
                "LP_PATCH_STORAGE_SWIFT_USERNAME",
                user.map_or("", Sensitive::expose),
            );
            set(
                "LP_PATCH_STORAGE_SWIFT_API_KEY",
                key.map_or("", Sensitive::expose),
            );
        }
        PatchStorage::Postgres { dsn } => {
            // Unset: the server stores patches in its main database.
            set(
                "LP_PATCH_STORAGE_POSTGRES_CONNECTION_STRING",
                dsn.as_ref().map_or("", Sensitive::expose),
            );
        }
    }

    // Contracts: an air-gapped Pro server, when related, replaces the
    // configured service.
    match &snap.airgapped_url {
        Some(url) => {
            set("LP_CONTRACTS_ENABLED", "true");
            set("LP_CONTRACTS_URL", url);
        }
        None => {
            if let Some(enabled) = cfg.contracts_enabled {
                set(
                    "LP_CONTRACTS_ENABLED",
                    if enabled { "true" } else { "false" },
                );
            }
            set("LP_CONTRACTS_URL", &cfg.contracts_url);
        }
    }
    let contracts_user = snap
        .secrets
        .contracts_user
        .clone()
        .or_else(|| cfg.contracts_user.clone());
    let contracts_password = snap
        .secrets
        .contracts_password
        .clone()
        .or_else(|| cfg.contracts_password.clone());
    set("LP_CONTRACTS_USER", contracts_user.as_deref().unwrap_or(""));
    set(
        "LP_CONTRACTS_PASSWORD",
        contracts_password.as_ref().map_or("", Sensitive::expose),
    );

    // Patch sync.
    set(
        "LP_PATCH_SYNC_ENABLED",
        if sync.enabled { "true" } else { "false" },
    );
    if let Some(token) = &sync.token {
        set("LP_PATCH_SYNC_TOKEN", token.expose());
    }
    if sync.enabled && snap.airgapped_url.is_none() {
        set("LP_PATCH_SYNC_ID", &snap.model_uuid);
    }

    // CVE and LSN data: the catalog relation wins on the leader, which is the
    // only unit that syncs.
    let catalog = snap.cve_catalog_url.as_ref().filter(|_| snap.leader);
    let cve = catalog.or(cfg.cve_source_url.as_ref());
    let lsn = catalog.or(cfg.lsn_source_url.as_ref());
    set("LP_CVE_SYNC_SOURCE_URL", cve.map_or("", String::as_str));
    set("LP_LSN_SYNC_SOURCE_URL", lsn.map_or("", String::as_str));

    // The model's proxies, lower-case, only when any is set.
    let p = &snap.proxies;
    if !(p.http.is_empty() && p.https.is_empty() && p.no_proxy.is_empty()) {
        env.insert("http_proxy".into(), p.http.clone());
        env.insert("https_proxy".into(), p.https.clone());
        env.insert("no_proxy".into(), p.no_proxy.clone());
    }
    env
}

/// `cidrs` plus the loopback networks, comma-separated.
fn with_loopback(cidrs: &[crate::options::Cidr]) -> String {
    let mut out: Vec<String> = cidrs.iter().map(ToString::to_string).collect();
    for lo in ["127.0.0.0/8", "::1/128"] {
        if !out.iter().any(|c| c == lo) {
            out.push(lo.to_string());
        }
    }
    out.join(",")
}

/// Relation data the charm writes: the database requests and the chosen
/// ingress (the other one cleared).
fn bags(cfg: &CharmConfig, snap: &Snapshot) -> Vec<BagWrite> {
    let mut out = Vec::new();
    if snap.leader {
        // The requests carry no credential: the provider answers with secret
        // references (juju.md §5.1).
        for (endpoint, id, database) in [
            ("database", snap.database_relation, relations::DATABASE_NAME),
            (
                "metrics-db",
                snap.metrics_db_relation,
                relations::METRICS_DATABASE_NAME,
            ),
        ] {
            if let Some(id) = id {
                out.push(BagWrite {
                    endpoint,
                    relation_id: id,
                    app: true,
                    content: relations::postgres_request(database),
                });
            }
        }
        if let Some(id) = snap.legacy_database_relation {
            out.push(BagWrite {
                endpoint: "database-legacy",
                relation_id: id,
                app: true,
                content: [("database".to_string(), relations::DATABASE_NAME.to_string())].into(),
            });
        }
    }
    if let Some(id) = snap.ingress_relation {
        let (app, unit) = if cfg.ingress == IngressInterface::Ingress {
            (
                relations::ingress_app_bag(&snap.model, &snap.app),
                relations::ingress_unit_bag(&snap.unit, &snap.app, &snap.model),
            )
        } else {
            (Bag::new(), Bag::new())
        };
        if snap.leader {
            out.push(BagWrite {
                endpoint: "ingress",
                relation_id: id,
                app: true,
                content: relations::full_write(&app, relations::INGRESS_APP_KEYS),
            });
        }
        out.push(BagWrite {
            endpoint: "ingress",
            relation_id: id,
            app: false,
            content: relations::full_write(&unit, relations::INGRESS_UNIT_KEYS),
        });
    }
    if let (Some(id), true) = (snap.nginx_route_relation, snap.leader) {
        let bag = if cfg.ingress == IngressInterface::NginxRoute {
            relations::nginx_route_bag(&snap.app, &snap.model)
        } else {
            Bag::new()
        };
        out.push(BagWrite {
            endpoint: "nginx-route",
            relation_id: id,
            app: true,
            content: relations::full_write(&bag, relations::NGINX_ROUTE_KEYS),
        });
    }
    out
}

#[cfg(test)]
mod tests;
