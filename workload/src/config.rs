//! The server's configuration: every key of livepatch-server.md §3.2 (plus ours) read once, from
//! the YAML file named by `LIVEPATCH_CONFIG_LOCATION` and the `LP_*` environment variables, into
//! one typed [`Config`]. Nothing past this module looks at raw strings.
//!
//! Rules (§3.1): env beats file; `LP_` + key upper-cased with `-` and `.` as `_`; hyphen and
//! underscore spellings are one key (in YAML too, nested maps or dotted keys); empty = unset;
//! booleans `true/false` (any case) or `1/0`; Go-style durations. An invalid value is an error
//! naming the key, the value and what is allowed. Keys of features this server does not implement
//! are accepted and produce a warning when they switch the feature on.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::secret::Secret;

/// Where a value came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    File,
    Env(String),
}

/// A configuration error: which key, which value, what is allowed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value does not parse as its key's type.
    #[error("invalid value {value:?} for {key}{origin}: {allowed}")]
    Invalid {
        /// The canonical key.
        key: String,
        /// The value as given (secrets are never reported).
        value: String,
        /// Where it came from (`" (from LP_…)"` or empty for the file).
        origin: String,
        /// What is allowed.
        allowed: String,
    },
    /// Keys that are valid one by one but not together.
    #[error("{0}")]
    Inconsistent(String),
    /// The file cannot be read or is not YAML of the expected shape.
    #[error("cannot read the configuration file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// How a key's value is read, for the documentation and the table-driven tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `true`/`false` (any case) or `1`/`0`.
    Bool,
    /// A decimal integer within a range.
    Int,
    /// A Go-style duration (`90s`, `1h30m`).
    Duration,
    /// A free string.
    Str,
    /// A string that must never be printed.
    Secret,
    /// One of a fixed set of words.
    Enum,
    /// `host:port`, host optional.
    Address,
    /// Comma-separated values.
    List,
    /// Comma-separated CIDRs or addresses.
    Cidrs,
    /// A decimal number.
    Float,
}

/// Whether the server acts on a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// Implemented.
    Yes,
    /// Accepted so existing configurations keep working; the feature is Canonical-hosted only.
    HostedOnly,
    /// Accepted; the feature is not implemented by this server yet.
    NotYet,
    /// Accepted and ignored (deprecated, or read by the charm only).
    Ignored,
}

/// One documented key.
#[derive(Clone, Copy, Debug)]
pub struct KeyDoc {
    /// Canonical spelling (hyphens).
    pub key: &'static str,
    /// How it is read.
    pub kind: Kind,
    /// Default, as written in the docs (`""` = unset).
    pub default: &'static str,
    /// A valid example value (used by the tests).
    pub example: &'static str,
    /// Whether the server acts on it.
    pub support: Support,
    /// One line.
    pub doc: &'static str,
}

macro_rules! keys {
    ($( $key:literal $kind:ident $support:ident $default:literal $example:literal $doc:literal ;)*) => {
        /// Every key this server reads, in documentation order.
        pub const KEYS: &[KeyDoc] = &[ $( KeyDoc { key: $key, kind: Kind::$kind, default: $default, example: $example, support: Support::$support, doc: $doc } ),* ];
    };
}

keys! {
    "server.server-address" Address Yes ":8080" "127.0.0.1:9000" "Listen address of the public listener (everything unless server.admin-address is set).";
    "server.log-level" Enum Yes "info" "debug" "debug, info, warn (or warning), error, dpanic, panic, fatal.";
    "server.url-template" Str Yes "" "https://lp.example.com/v1/patches/{filename}" "Download URL handed to clients; must contain {filename}. Unset: this server's own /v1/patches/{filename}.";
    "server.redirect-downloads" Bool Yes "false" "true" "Answer /v1/patches/{filename} with a 307 to server.url-template.";
    "server.concurrency-limit" Int Yes "1000" "200" "Governor: in flight min(burst, concurrency), waiting |concurrency - burst| (1..1000000).";
    "server.burst-limit" Int Yes "500" "100" "Governor: see server.concurrency-limit (1..1000000).";
    "server.is-leader" Bool Yes "false" "true" "This instance runs the singleton jobs (machine report cleanup, periodic sync, blocklist refresh).";
    "server.is-hosted" Bool HostedOnly "false" "false" "Canonical-hosted behaviour; not implemented (warned when true).";
    "server.tls-cert-file" Str Yes "" "/etc/livepatch/tls.crt" "Ours: serve HTTPS (TLS 1.2+) with this PEM chain; needs server.tls-key-file.";
    "server.tls-key-file" Str Yes "" "/etc/livepatch/tls.key" "Ours: the PEM private key for server.tls-cert-file.";
    "server.admin-address" Address Yes "" "127.0.0.1:8081" "Ours: a separate listener for /v1/admin/*; the public listener then answers 404 there.";
    "server.admin-allowed-cidrs" Cidrs Yes "" "10.0.0.0/8, 192.168.1.7" "Ours: peers allowed on /v1/admin/* (empty = any); others get 403.";
    "server.metrics-allowed-cidrs" Cidrs Yes "" "10.1.0.0/16" "Ours: peers allowed on /metrics (empty = any); others get 403.";
    "server.max-upload-size" Int Yes "67108864" "1048576" "Ours: largest patch upload in bytes (413 above).";
    "server.shutdown-timeout" Duration Yes "30s" "5s" "Ours: how long SIGTERM waits for in-flight requests (downloads included).";
    "auth.basic.enabled" Bool Yes "false" "true" "Enable admin login with auth.basic.users.";
    "auth.basic.users" Secret Yes "" "admin:$2b$10$abcdefghijklmnopqrstuu9bsQ4bO/pmvnW3zqbuN3M3F4PDQjb6m" "Comma-separated user:bcrypt-hash ($2a$, $2b$, $2y$).";
    "auth.sso.enabled" Bool HostedOnly "false" "false" "Ubuntu SSO admin login; not implemented (warned when true).";
    "auth.sso.teams" List HostedOnly "" "https://launchpad.net/~team" "Ubuntu SSO teams.";
    "auth.sso.url" Str HostedOnly "" "https://login.ubuntu.com" "Ubuntu SSO URL.";
    "auth.sso.public-key" Secret HostedOnly "" "key" "Ubuntu SSO public key (path or inline).";
    "auth.oauth.enabled" Bool NotYet "false" "false" "OAuth 2.0 JWT admin auth; not implemented yet (warned when true).";
    "auth.oauth.audience" Str NotYet "" "livepatch" "Required aud.";
    "auth.oauth.issuer" Str NotYet "" "https://idp.example.com" "Required iss.";
    "auth.oauth.sig-algs" List NotYet "RS256" "RS256,ES256" "Subset of RS256, RS384, RS512, ES256, ES384, ES512.";
    "auth.oauth.allowed-email-ids" List NotYet "" "a@example.com" "Allowed identities.";
    "auth.oauth.jwks.url" Str NotYet "" "https://idp.example.com/jwks" "JWKS source.";
    "auth.oauth.jwks.refresh-interval" Duration NotYet "1h" "30m" "JWKS refresh.";
    "auth.oauth.jwks.refresh-unknown-kid" Bool NotYet "true" "false" "Refetch on unknown kid.";
    "auth.oauth.jwks.refresh-unknown-kid-limit" Duration NotYet "10m" "5m" "Minimum gap between such refetches.";
    "auth.oauth.jwks.refresh-unknown-kid-max-wait" Duration NotYet "1m" "30s" "Maximum wait on an in-flight refetch.";
    "auth.oauth.proxy.enabled" Bool NotYet "false" "false" "Proxy for the IdP.";
    "auth.oauth.proxy.http" Secret NotYet "" "http://proxy:3128" "HTTP proxy for the IdP.";
    "auth.oauth.proxy.https" Secret NotYet "" "http://proxy:3128" "HTTPS proxy for the IdP.";
    "auth.oauth.proxy.no-proxy" Str NotYet "" "localhost" "No-proxy list for the IdP.";
    "contracts.enabled" Bool NotYet "false" "false" "Accept Ubuntu Pro resource tokens from clients (issue 5).";
    "contracts.url" Str NotYet "https://contracts.canonical.com" "https://contracts.example.com" "Contracts service.";
    "contracts.user" Str NotYet "" "livepatch" "Basic user towards the contracts service.";
    "contracts.password" Secret NotYet "" "pw" "Basic password towards the contracts service.";
    "contracts.ca" Str Ignored "" "LS0t" "Charm-only (the server trusts the system store).";
    "database.connection-string" Secret Yes "" "postgresql://u:p@db:5432/livepatch?sslmode=verify-full" "PostgreSQL URI or key=value DSN; every libpq sslmode, sslrootcert.";
    "database.connection-pool-max" Int Yes "10" "20" "Pool size (1..1000).";
    "database.connection-lifetime-max" Duration Yes "10m" "300" "Connections older than this are replaced (bare integer = seconds).";
    "database.work-mem" Int Yes "" "64" "work_mem in MB set on each connection (unset: server default).";
    "timescale-db.enabled" Bool HostedOnly "false" "false" "KPI store; not implemented (warned when true).";
    "timescale-db.connection-string" Secret HostedOnly "" "postgresql://u:p@ts/metrics" "TimescaleDB DSN.";
    "timescale-db.connection-pool-max" Int HostedOnly "10" "5" "1..1000.";
    "timescale-db.connection-lifetime-max" Duration HostedOnly "10m" "5m" "Connection lifetime.";
    "timescale-db.work-mem" Int HostedOnly "16" "8" "work_mem in MB.";
    "timescale-db.flush-timeout" Duration HostedOnly "1m" "30s" "Batch flush timeout.";
    "influx.enabled" Bool HostedOnly "false" "false" "InfluxDB KPIs; not implemented (warned when true).";
    "influx.url" Str HostedOnly "" "http://influx:8086" "InfluxDB URL.";
    "influx.token" Secret HostedOnly "" "tok" "InfluxDB token.";
    "influx.bucket" Str HostedOnly "" "kpi" "Bucket.";
    "influx.ping-bucket" Str HostedOnly "" "pings" "Ping bucket (empty: influx.bucket).";
    "influx.organization" Str HostedOnly "" "org" "Organization.";
    "patch-storage.type" Enum Yes "filesystem" "postgres" "filesystem (or legacy file), postgres, s3 (or S3-compatible), swift.";
    "patch-storage.filesystem-path" Str Yes "/var/lib/livepatch/patches" "/srv/patches" "Directory of the filesystem store.";
    "patch-storage.swift-username" Secret Yes "" "user" "Keystone v3 user name (password authentication).";
    "patch-storage.swift-api-key" Secret Yes "" "key" "Keystone password of that user.";
    "patch-storage.swift-auth-url" Str Yes "" "https://keystone:5000/v3" "Keystone v3 URL (…/v3 is appended when missing); HTTPS recommended.";
    "patch-storage.swift-domain" Str Yes "" "default" "Domain of the user and the project (default: Default).";
    "patch-storage.swift-tenant" Str Yes "" "project" "Project (tenant) to scope the token to.";
    "patch-storage.swift-container" Str Yes "" "patches" "Container of the patches (created when missing).";
    "patch-storage.swift-region" Str Yes "" "RegionOne" "Region of the object-store endpoint in the catalog (empty: the first).";
    "patch-storage.postgres-connection-string" Secret Yes "" "postgresql://u:p@db/patches" "Database of the postgres store (empty: the main database).";
    "patch-storage.s3-bucket" Str Yes "" "patches" "Bucket of the patches (must exist).";
    "patch-storage.s3-endpoint" Str Yes "" "minio:9000" "S3 endpoint, host[:port] or URL (path-style requests); empty: AWS.";
    "patch-storage.s3-region" Str Yes "" "us-east-1" "Region (default us-east-1).";
    "patch-storage.s3-access-key" Secret Yes "" "AKIA" "Access key id.";
    "patch-storage.s3-secret-key" Secret Yes "" "secret" "Secret access key.";
    "patch-storage.s3-secure" Bool Yes "false" "true" "Use https for an endpoint given without a scheme (else http).";
    "patch-cache.enabled" Bool Yes "false" "false" "In-memory LRU cache of patch files in front of storage for downloads; memory is at most cache-size times the largest patch.";
    "patch-cache.cache-ttl" Duration Yes "10m" "5m" "A cached patch not read for this long is dropped.";
    "patch-cache.cache-size" Int Yes "128" "64" "Most patches held (a count, not bytes; 1..1000000).";
    "patch-sync.enabled" Bool Yes "false" "false" "Sync patches from the upstream (the leader every interval; POST /v1/admin/sync on any instance).";
    "patch-sync.upstream-url" Str Yes "https://livepatch.canonical.com" "https://up.example.com" "Upstream server.";
    "patch-sync.token" Secret Yes "" "tok" "Sync token of the upstream (Authorization: Bearer).";
    "patch-sync.id" Str Yes "" "model-uuid" "Deployment identity sent upstream with the machine count.";
    "patch-sync.interval" Duration Yes "1h" "12h" "Time between the leader's sync runs (the first runs at start-up).";
    "patch-sync.architectures" List Yes "" "amd64,arm64" "Architectures to sync (empty = all).";
    "patch-sync.flavors" List Yes "generic,lowlatency,aws" "generic" "Flavours to sync (empty = all).";
    "patch-sync.minimum-kernel-version" Str Yes "" "5.15.0" "X.Y.Z inclusive lower bound on the kernel version, compared numerically.";
    "patch-sync.machine-count-strategy" Enum Yes "bucket" "unit" "unit (exact machine count) or bucket (lower bound of its bucket, livepatch-server.md §8).";
    "patch-sync.send-machine-reports" Bool Yes "false" "true" "Also upload per-machine state with obfuscated machine ids.";
    "patch-sync.sync-tiers" Bool Yes "false" "true" "Mirror the upstream tiers and placements; local tier changes, uploads and promotions are refused (409).";
    "patch-sync.proxy.enabled" Bool Yes "false" "false" "Use the proxies below for every upstream call (else the lower-case http_proxy/https_proxy/no_proxy environment).";
    "patch-sync.proxy.http" Secret Yes "" "http://proxy:3128" "Proxy for http:// upstreams (a comma list: the first is used).";
    "patch-sync.proxy.https" Secret Yes "" "http://proxy:3128" "Proxy for https:// upstreams (CONNECT).";
    "patch-sync.proxy.no-proxy" Str Yes "" "10.0.0.0/8" "Hosts reached directly: domains (suffix match), IPs, CIDRs, any of them with :port, or *.";
    "patch-blocklist.enabled" Bool Yes "false" "false" "Refresh the upstream's blocklist between syncs (leader); local blocklisting always works and is never lifted by it.";
    "patch-blocklist.refresh-interval" Duration Yes "5m" "1m" "Time between blocklist refreshes.";
    "cve-lookup.enabled" Bool NotYet "false" "false" "Serve fixed-CVE data; not implemented yet.";
    "cve-lookup.auth-required" Bool NotYet "false" "true" "Require client auth for CVE data.";
    "cve-sync.enabled" Bool NotYet "false" "false" "Pull CVE data; not implemented yet.";
    "cve-sync.source-url" Str NotYet "" "http://cve:8090" "CVE service.";
    "cve-sync.interval" Duration NotYet "1h" "2h" "Interval.";
    "cve-sync.timeout" Duration NotYet "5m" "1m" "Timeout.";
    "cve-sync.proxy.enabled" Bool NotYet "false" "false" "Proxy.";
    "cve-sync.proxy.http" Secret NotYet "" "http://proxy:3128" "Proxy for http:// upstreams (a comma list: the first is used).";
    "cve-sync.proxy.https" Secret NotYet "" "http://proxy:3128" "Proxy for https:// upstreams (CONNECT).";
    "cve-sync.proxy.no-proxy" Str NotYet "" "localhost" "Hosts reached directly: domains (suffix match), IPs, CIDRs, any of them with :port, or *.";
    "lsn-sync.enabled" Bool NotYet "false" "false" "Pull LSN data; not implemented yet.";
    "lsn-sync.source-url" Str NotYet "" "http://cve:8090" "LSN source.";
    "lsn-sync.interval" Duration NotYet "1h" "2h" "Interval.";
    "lsn-sync.timeout" Duration NotYet "5m" "1m" "Timeout.";
    "lsn-sync.proxy.enabled" Bool NotYet "false" "false" "Proxy.";
    "lsn-sync.proxy.http" Secret NotYet "" "http://proxy:3128" "Proxy for http:// upstreams (a comma list: the first is used).";
    "lsn-sync.proxy.https" Secret NotYet "" "http://proxy:3128" "Proxy for https:// upstreams (CONNECT).";
    "lsn-sync.proxy.no-proxy" Str NotYet "" "localhost" "Hosts reached directly: domains (suffix match), IPs, CIDRs, any of them with :port, or *.";
    "machine-reports.database.enabled" Bool Yes "false" "true" "Write a report row per check-in.";
    "machine-reports.database.retention-days" Int Yes "10" "30" "Days a report row is kept (1..3650).";
    "machine-reports.database.cleanup-row-limit" Int Yes "1000" "500" "Rows deleted per cleanup run (1..1000000).";
    "machine-reports.database.cleanup-interval" Duration Yes "6h" "1h" "Cleanup interval (leader only).";
    "kpi-reports.enabled" Bool HostedOnly "false" "false" "KPI worker; not implemented (warned when true).";
    "kpi-reports.interval" Duration HostedOnly "5m" "10m" "KPI interval.";
    "cloud-delay.enabled" Bool Ignored "false" "false" "Deprecated; ignored (warned when true).";
    "cloud-delay.default-delay-hours" Int Ignored "0" "4" "Deprecated; ignored.";
    "profiler.enabled" Bool HostedOnly "false" "false" "Continuous profiling; not implemented (warned when true). Other profiler.* keys are accepted and ignored.";
    "tracing.enabled" Bool NotYet "false" "false" "OTLP traces; not implemented yet (warned when true).";
    "tracing.service-name" Str NotYet "livepatch-server" "lp" "Service name.";
    "tracing.sample-rate" Float NotYet "1.0" "0.5" "0..1.";
    "tracing.otlp-endpoint" Str NotYet "" "otel:4317" "host:port.";
    "tracing.protocol" Enum NotYet "" "grpc" "grpc or http.";
    "tracing.insecure" Bool NotYet "false" "true" "Plain-text OTLP.";
    "otel-metrics.enabled" Bool NotYet "false" "false" "OTLP metrics push; not implemented yet (warned when true).";
    "otel-metrics.service-name" Str NotYet "livepatch-server" "lp" "Service name.";
    "otel-metrics.export-interval" Duration NotYet "60s" "30s" "Export interval.";
    "otel-metrics.export-timeout" Duration NotYet "30s" "10s" "Export timeout.";
    "otel-metrics.otlp-endpoint" Str NotYet "" "otel:4318" "host:port.";
    "otel-metrics.protocol" Enum NotYet "" "http" "grpc or http.";
    "otel-metrics.insecure" Bool NotYet "false" "true" "Plain-text OTLP.";
}

/// The key table of `workload/CONFIG.md` (a test keeps the file equal to this).
pub fn render_markdown_table() -> String {
    let mut out = String::from("| Key | Environment variable | Type | Default | Status | Meaning |\n|---|---|---|---|---|---|\n");
    for k in KEYS {
        let kind = match k.kind {
            Kind::Bool => "bool",
            Kind::Int => "int",
            Kind::Duration => "duration",
            Kind::Str => "string",
            Kind::Secret => "secret",
            Kind::Enum => "enum",
            Kind::Address => "host:port",
            Kind::List => "csv",
            Kind::Cidrs => "CIDR list",
            Kind::Float => "number",
        };
        let support = match k.support {
            Support::Yes => "implemented",
            Support::HostedOnly => "hosted-only: accepted, not implemented",
            Support::NotYet => "accepted, not implemented yet",
            Support::Ignored => "accepted, ignored",
        };
        let default = if k.default.is_empty() {
            "—".to_string()
        } else {
            format!("`{}`", k.default)
        };
        out.push_str(&format!(
            "| `{}` | `{}` | {kind} | {default} | {support} | {} |\n",
            k.key,
            env_name(k.key),
            k.doc.replace('|', "\\|")
        ));
    }
    out
}

/// Key prefixes accepted and ignored whatever follows (profiler flags, the legacy event bus).
pub const IGNORED_PREFIXES: &[&str] = &["profiler.", "machine-reports.event-bus."];

/// The canonical form of a key: lower case, `_` as `-`.
pub fn canonical_key(key: &str) -> String {
    key.trim().to_ascii_lowercase().replace('_', "-")
}

/// The environment variable of a canonical key (§3.1).
pub fn env_name(key: &str) -> String {
    format!("LP_{}", key.to_ascii_uppercase().replace(['-', '.'], "_"))
}

/// A `host:port` to listen on; an empty host means every interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenAddress {
    /// Host name or address; empty for all interfaces.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl std::fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Log levels of §3.2 (the zap levels).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    /// debug
    Debug,
    /// info
    Info,
    /// warn / warning
    Warn,
    /// error, dpanic, panic, fatal (all log errors only here)
    Error,
}

/// Where patches are stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageType {
    /// A directory.
    Filesystem,
    /// Blobs in PostgreSQL.
    Postgres,
    /// S3 or an S3-compatible server.
    S3,
    /// OpenStack Swift with Keystone v3.
    Swift,
}

/// `[server]`
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Public listener.
    pub server_address: ListenAddress,
    /// Log level.
    pub log_level: LogLevel,
    /// Download URL template with `{filename}`.
    pub url_template: Option<String>,
    /// 307 downloads to the template.
    pub redirect_downloads: bool,
    /// Governor total.
    pub concurrency_limit: u32,
    /// Governor burst.
    pub burst_limit: u32,
    /// Singleton jobs.
    pub is_leader: bool,
    /// TLS certificate chain file.
    pub tls_cert_file: Option<PathBuf>,
    /// TLS key file.
    pub tls_key_file: Option<PathBuf>,
    /// Separate admin listener.
    pub admin_address: Option<ListenAddress>,
    /// Peers allowed on admin routes.
    pub admin_allowed_cidrs: Vec<IpNet>,
    /// Peers allowed on /metrics.
    pub metrics_allowed_cidrs: Vec<IpNet>,
    /// Upload limit in bytes.
    pub max_upload_size: u64,
    /// Drain deadline.
    pub shutdown_timeout: Duration,
}

/// One `auth.basic.users` entry.
#[derive(Clone, Debug)]
pub struct BasicUser {
    /// User name.
    pub name: String,
    /// bcrypt hash (not secret in the cryptographic sense, but never printed either).
    pub hash: Secret<String>,
}

/// `[auth]`
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// Basic login enabled.
    pub basic_enabled: bool,
    /// Users.
    pub basic_users: Vec<BasicUser>,
}

/// `[database]`
#[derive(Clone, Debug)]
pub struct DatabaseConfig {
    /// The DSN (required to serve).
    pub connection_string: Option<Secret<String>>,
    /// Pool size.
    pub pool_max: usize,
    /// Connection lifetime.
    pub lifetime_max: Duration,
    /// work_mem in MB.
    pub work_mem_mb: Option<u32>,
}

/// S3 settings.
#[derive(Clone, Debug)]
pub struct S3Config {
    /// Bucket.
    pub bucket: String,
    /// Endpoint.
    pub endpoint: String,
    /// Region.
    pub region: String,
    /// Access key.
    pub access_key: Option<Secret<String>>,
    /// Secret key.
    pub secret_key: Option<Secret<String>>,
    /// TLS when the endpoint has no scheme.
    pub secure: bool,
}

/// `[patch-storage]`
#[derive(Clone, Debug)]
pub struct PatchStorageConfig {
    /// Which store.
    pub kind: StorageType,
    /// Filesystem directory.
    pub filesystem_path: PathBuf,
    /// Database of the postgres store; `None` = the main database.
    pub postgres_connection_string: Option<Secret<String>>,
    /// S3.
    pub s3: S3Config,
    /// Swift.
    pub swift: SwiftConfig,
}

/// Swift settings (Keystone v3 password authentication).
#[derive(Clone, Debug)]
pub struct SwiftConfig {
    /// User name.
    pub username: Option<Secret<String>>,
    /// Password.
    pub api_key: Option<Secret<String>>,
    /// Keystone URL.
    pub auth_url: String,
    /// Domain of user and project.
    pub domain: String,
    /// Project (tenant).
    pub tenant: String,
    /// Container.
    pub container: String,
    /// Region.
    pub region: String,
}

/// Proxy settings of one client.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Enabled.
    pub enabled: bool,
    /// HTTP proxy URL (may hold credentials).
    pub http: Option<Secret<String>>,
    /// HTTPS proxy URL.
    pub https: Option<Secret<String>>,
    /// No-proxy list.
    pub no_proxy: String,
}

/// `[patch-sync]`
#[derive(Clone, Debug)]
pub struct PatchSyncConfig {
    /// Enabled.
    pub enabled: bool,
    /// Upstream.
    pub upstream_url: String,
    /// Token.
    pub token: Option<Secret<String>>,
    /// Deployment id.
    pub id: Option<String>,
    /// Interval.
    pub interval: Duration,
    /// Architectures.
    pub architectures: Vec<String>,
    /// Flavours.
    pub flavors: Vec<String>,
    /// Minimum kernel.
    pub minimum_kernel_version: Option<String>,
    /// `unit` or `bucket`.
    pub machine_count_strategy: String,
    /// Upload reports.
    pub send_machine_reports: bool,
    /// Mirror tiers: local tier edits refused.
    pub sync_tiers: bool,
    /// Proxy.
    pub proxy: ProxyConfig,
}

/// `[patch-cache]`
#[derive(Clone, Debug)]
pub struct PatchCacheConfig {
    /// Enabled.
    pub enabled: bool,
    /// Idle TTL.
    pub ttl: Duration,
    /// Entries.
    pub size: u32,
}

/// `[patch-blocklist]`
#[derive(Clone, Debug)]
pub struct PatchBlocklistConfig {
    /// Refresh the upstream's blocklist between syncs.
    pub enabled: bool,
    /// How often.
    pub refresh_interval: Duration,
}

/// `[contracts]`
#[derive(Clone, Debug)]
pub struct ContractsConfig {
    /// Enabled.
    pub enabled: bool,
    /// URL.
    pub url: String,
    /// User.
    pub user: Option<String>,
    /// Password.
    pub password: Option<Secret<String>>,
}

/// `[machine-reports.database]`
#[derive(Clone, Debug)]
pub struct MachineReportsConfig {
    /// Write report rows.
    pub enabled: bool,
    /// Retention.
    pub retention_days: u32,
    /// Rows per cleanup run.
    pub cleanup_row_limit: u32,
    /// Cleanup interval.
    pub cleanup_interval: Duration,
}

/// The whole configuration. No `Default`: it is only ever built by [`Config::from_sources`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Server.
    pub server: ServerConfig,
    /// Admin auth.
    pub auth: AuthConfig,
    /// Database.
    pub database: DatabaseConfig,
    /// Patch storage.
    pub patch_storage: PatchStorageConfig,
    /// Patch cache (issue 5).
    pub patch_cache: PatchCacheConfig,
    /// Patch sync (issue 5).
    pub patch_sync: PatchSyncConfig,
    /// Contracts (issue 5).
    pub contracts: ContractsConfig,
    /// Blocklist refresh from the upstream.
    pub patch_blocklist: PatchBlocklistConfig,
    /// Machine reports.
    pub machine_reports: MachineReportsConfig,
    /// Every secret value read, so the log redaction layer can mask them wherever they appear.
    pub secrets: Vec<Secret<String>>,
}

struct Raw {
    values: BTreeMap<String, (String, Source)>,
    used: BTreeSet<String>,
}

impl Raw {
    fn get(&mut self, key: &str) -> Option<(String, Source)> {
        debug_assert!(KEYS.iter().any(|k| k.key == key), "undocumented key {key}");
        self.used.insert(key.to_string());
        self.values
            .get(key)
            .filter(|(v, _)| !v.trim().is_empty())
            .cloned()
    }

    fn invalid(
        key: &str,
        value: &str,
        source: &Source,
        allowed: impl Into<String>,
        secret: bool,
    ) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_string(),
            value: if secret {
                crate::secret::REDACTED.to_string()
            } else {
                value.to_string()
            },
            origin: match source {
                Source::File => String::new(),
                Source::Env(name) => format!(" (from {name})"),
            },
            allowed: allowed.into(),
        }
    }

    fn string(&mut self, key: &str) -> Option<String> {
        self.get(key).map(|(v, _)| v.trim().to_string())
    }

    fn string_or(&mut self, key: &str, default: &str) -> String {
        self.string(key).unwrap_or_else(|| default.to_string())
    }

    fn secret(&mut self, key: &str, secrets: &mut Vec<Secret<String>>) -> Option<Secret<String>> {
        let v = self
            .get(key)
            .map(|(v, _)| Secret::new(v.trim().to_string()))?;
        secrets.push(v.clone());
        Some(v)
    }

    fn bool(&mut self, key: &str, default: bool) -> Result<bool, ConfigError> {
        let Some((v, src)) = self.get(key) else {
            return Ok(default);
        };
        parse_bool(&v).ok_or_else(|| {
            Self::invalid(
                key,
                &v,
                &src,
                "expected true or false (any case), 1 or 0",
                false,
            )
        })
    }

    fn int(
        &mut self,
        key: &str,
        default: Option<u64>,
        min: u64,
        max: u64,
    ) -> Result<Option<u64>, ConfigError> {
        let Some((v, src)) = self.get(key) else {
            return Ok(default);
        };
        match v.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(Self::invalid(
                key,
                &v,
                &src,
                format!("expected a whole number from {min} to {max}"),
                false,
            )),
        }
    }

    fn float(&mut self, key: &str, min: f64, max: f64) -> Result<(), ConfigError> {
        let Some((v, src)) = self.get(key) else {
            return Ok(());
        };
        match v.trim().parse::<f64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(()),
            _ => Err(Self::invalid(
                key,
                &v,
                &src,
                format!("expected a number from {min} to {max}"),
                false,
            )),
        }
    }

    fn duration(&mut self, key: &str, default: &str) -> Result<Duration, ConfigError> {
        let Some((v, src)) = self.get(key) else {
            return Ok(parse_go_duration(default).expect("valid default"));
        };
        parse_go_duration(v.trim()).ok_or_else(|| {
            Self::invalid(
                key,
                &v,
                &src,
                "expected a Go duration such as 90s, 10m or 1h30m",
                false,
            )
        })
    }

    fn one_of(
        &mut self,
        key: &str,
        default: &str,
        allowed: &[&str],
    ) -> Result<String, ConfigError> {
        let Some((v, src)) = self.get(key) else {
            return Ok(default.to_string());
        };
        let norm = v.trim().to_ascii_lowercase();
        if allowed.contains(&norm.as_str()) {
            Ok(norm)
        } else {
            Err(Self::invalid(
                key,
                &v,
                &src,
                format!("expected one of {}", allowed.join(", ")),
                false,
            ))
        }
    }

    fn list(&mut self, key: &str, default: &str) -> Vec<String> {
        split_list(&self.string(key).unwrap_or_else(|| default.to_string()))
    }

    fn address(&mut self, key: &str) -> Result<Option<ListenAddress>, ConfigError> {
        let Some((v, src)) = self.get(key) else {
            return Ok(None);
        };
        parse_listen_address(v.trim()).map(Some).ok_or_else(|| {
            Self::invalid(
                key,
                &v,
                &src,
                "expected host:port or :port, e.g. :8080 or 127.0.0.1:8080",
                false,
            )
        })
    }

    fn cidrs(&mut self, key: &str) -> Result<Vec<IpNet>, ConfigError> {
        let Some((v, src)) = self.get(key) else {
            return Ok(Vec::new());
        };
        split_list(&v)
            .iter()
            .map(|item| {
                item.parse::<IpNet>()
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        Self::invalid(
                            key,
                            &v,
                            &src,
                            format!("{item:?} is not a CIDR (10.0.0.0/8) or an address"),
                            false,
                        )
                    })
            })
            .collect()
    }
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `true/false` in any case, or `1/0` (what the charm and the snap write).
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// A Go `time.ParseDuration` string (`300ms`, `1.5h`, `2h45m`, `0`), also accepted with a leading
/// `+`; negative durations are refused since no key means anything by them. A bare integer is
/// refused here (only `database.connection-lifetime-max` reads it as seconds).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    if !total.is_finite() || total > 1e12 {
        return None;
    }
    Some(Duration::from_secs_f64(total))
}

fn parse_listen_address(v: &str) -> Option<ListenAddress> {
    let (host, port) = v.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.chars().any(|c| c.is_whitespace() || c == '/') {
        return None;
    }
    Some(ListenAddress {
        host: host.to_string(),
        port,
    })
}

fn yaml_scalar(v: &serde_yaml_ng::Value) -> Option<String> {
    use serde_yaml_ng::Value;
    match v {
        Value::Null => Some(String::new()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        Value::Sequence(items) => {
            let parts: Option<Vec<String>> = items.iter().map(yaml_scalar).collect();
            parts.map(|p| p.join(","))
        }
        _ => None,
    }
}

fn flatten_yaml(
    prefix: &str,
    value: &serde_yaml_ng::Value,
    out: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    match value {
        serde_yaml_ng::Value::Mapping(map) => {
            for (k, v) in map {
                let k = yaml_scalar(k).ok_or("a key is not a string")?;
                let key = if prefix.is_empty() {
                    canonical_key(&k)
                } else {
                    format!("{prefix}.{}", canonical_key(&k))
                };
                flatten_yaml(&key, v, out)?;
            }
            Ok(())
        }
        other if prefix.is_empty() && matches!(other, serde_yaml_ng::Value::Null) => Ok(()),
        other => {
            let s = yaml_scalar(other).ok_or_else(|| format!("{prefix} is not a scalar"))?;
            out.insert(prefix.to_string(), s);
            Ok(())
        }
    }
}

fn is_known(key: &str) -> bool {
    KEYS.iter().any(|k| k.key == key) || IGNORED_PREFIXES.iter().any(|p| key.starts_with(p))
}

impl Config {
    /// Reads the configuration from the process: the file named by `LIVEPATCH_CONFIG_LOCATION`
    /// (if set and non-empty) and every `LP_*` variable.
    pub fn from_process_env() -> Result<(Config, Vec<String>), ConfigError> {
        let env: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let file = match env
            .iter()
            .find(|(k, _)| k == "LIVEPATCH_CONFIG_LOCATION")
            .map(|(_, v)| v.trim())
        {
            Some(path) if !path.is_empty() => Some((
                path.to_string(),
                std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                    path: path.to_string(),
                    reason: e.to_string(),
                })?,
            )),
            _ => None,
        };
        Self::from_sources(file.as_ref().map(|(p, t)| (p.as_str(), t.as_str())), env)
    }

    /// Builds the configuration from a YAML file's text (path, text) and environment pairs.
    /// Returns it with the warnings to log (unknown file keys, enabled features not implemented).
    pub fn from_sources(
        file: Option<(&str, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let mut warnings = Vec::new();
        let mut values = BTreeMap::new();
        if let Some((path, text)) = file {
            let doc: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(text).map_err(|e| ConfigError::File {
                    path: path.to_string(),
                    reason: e.to_string(),
                })?;
            let mut flat = BTreeMap::new();
            flatten_yaml("", &doc, &mut flat).map_err(|reason| ConfigError::File {
                path: path.to_string(),
                reason,
            })?;
            for (k, v) in flat {
                // The snap prefixes every key with `lp.`.
                let k = k.strip_prefix("lp.").map(str::to_string).unwrap_or(k);
                if !is_known(&k) {
                    warnings.push(format!("ignoring unknown configuration key {k} in {path}"));
                }
                values.insert(k, (v, Source::File));
            }
        }
        let by_env: BTreeMap<String, &'static str> =
            KEYS.iter().map(|k| (env_name(k.key), k.key)).collect();
        for (name, value) in env {
            if let Some(key) = by_env.get(&name) {
                // An empty variable is unset: it does not override the file (§3.1).
                if !value.trim().is_empty() {
                    values.insert(key.to_string(), (value, Source::Env(name)));
                }
            }
        }
        let mut raw = Raw {
            values,
            used: BTreeSet::new(),
        };
        let config = Self::build(&mut raw, &mut warnings)?;
        debug_assert!(
            KEYS.iter().all(|k| raw.used.contains(k.key)),
            "a documented key is never read"
        );
        Ok((config, warnings))
    }

    fn build(raw: &mut Raw, warnings: &mut Vec<String>) -> Result<Config, ConfigError> {
        let mut secrets = Vec::new();
        // Support flags first: warn about every feature switched on that this server lacks.
        for k in KEYS.iter().filter(|k| {
            k.kind == Kind::Bool && k.key.ends_with(".enabled") || k.key == "server.is-hosted"
        }) {
            if k.support == Support::Yes {
                continue;
            }
            let on = raw.bool(k.key, false)?;
            if on {
                let why = match k.support {
                    Support::HostedOnly => {
                        "is a Canonical-hosted feature this server does not implement"
                    }
                    Support::Ignored => "is deprecated and ignored",
                    _ => "is not implemented by this server yet",
                };
                warnings.push(format!(
                    "{} is on, but {} {why}",
                    k.key,
                    k.key.rsplit_once('.').map_or(k.key, |p| p.0)
                ));
            }
        }
        if raw
            .values
            .get("profiler.enabled")
            .and_then(|(v, _)| parse_bool(v))
            == Some(true)
        {
            warnings.push("profiler.enabled is on, but profiler is a Canonical-hosted feature this server does not implement".into());
        }

        let server_address = raw
            .address("server.server-address")?
            .unwrap_or(ListenAddress {
                host: String::new(),
                port: 8080,
            });
        let log_level = match raw
            .one_of(
                "server.log-level",
                "info",
                &[
                    "debug", "info", "warn", "warning", "error", "dpanic", "panic", "fatal",
                ],
            )?
            .as_str()
        {
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" | "warning" => LogLevel::Warn,
            _ => LogLevel::Error,
        };
        let url_template = match raw.get("server.url-template") {
            Some((v, src)) => {
                let v = v.trim().to_string();
                if !v.contains("{filename}")
                    || !(v.starts_with("http://") || v.starts_with("https://"))
                {
                    return Err(Raw::invalid(
                        "server.url-template",
                        &v,
                        &src,
                        "expected an http(s) URL containing {filename}, e.g. https://host/v1/patches/{filename}",
                        false,
                    ));
                }
                Some(v)
            }
            None => None,
        };
        let redirect_downloads = raw.bool("server.redirect-downloads", false)?;
        let concurrency_limit = raw
            .int("server.concurrency-limit", Some(1000), 1, 1_000_000)?
            .unwrap_or(1000) as u32;
        let burst_limit = raw
            .int("server.burst-limit", Some(500), 1, 1_000_000)?
            .unwrap_or(500) as u32;
        let is_leader = raw.bool("server.is-leader", false)?;
        let tls_cert_file = raw.string("server.tls-cert-file").map(PathBuf::from);
        let tls_key_file = raw.string("server.tls-key-file").map(PathBuf::from);
        let admin_address = raw.address("server.admin-address")?;
        let admin_allowed_cidrs = raw.cidrs("server.admin-allowed-cidrs")?;
        let metrics_allowed_cidrs = raw.cidrs("server.metrics-allowed-cidrs")?;
        let max_upload_size = raw
            .int("server.max-upload-size", Some(64 << 20), 1, 1 << 40)?
            .unwrap_or(64 << 20);
        let shutdown_timeout = raw.duration("server.shutdown-timeout", "30s")?;
        if redirect_downloads && url_template.is_none() {
            return Err(ConfigError::Inconsistent(
                "server.redirect-downloads is on but server.url-template is not set: set the template or turn redirects off"
                    .into(),
            ));
        }
        if tls_cert_file.is_some() != tls_key_file.is_some() {
            return Err(ConfigError::Inconsistent(
                "server.tls-cert-file and server.tls-key-file must be set together".into(),
            ));
        }

        let basic_enabled = raw.bool("auth.basic.enabled", false)?;
        let basic_users = match raw.get("auth.basic.users") {
            None => Vec::new(),
            Some((v, src)) => {
                secrets.push(Secret::new(v.clone()));
                parse_basic_users(&v)
                    .map_err(|why| Raw::invalid("auth.basic.users", &v, &src, why, true))?
            }
        };
        if basic_enabled && basic_users.is_empty() {
            warnings.push(
                "auth.basic.enabled is on but auth.basic.users is empty: nobody can log in".into(),
            );
        }
        raw.list("auth.sso.teams", "");
        raw.string("auth.sso.url");
        raw.secret("auth.sso.public-key", &mut secrets);
        raw.string("auth.oauth.audience");
        raw.string("auth.oauth.issuer");
        if let Some((v, src)) = raw.get("auth.oauth.sig-algs") {
            let allowed = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"];
            if split_list(&v)
                .iter()
                .any(|a| !allowed.contains(&a.as_str()))
            {
                return Err(Raw::invalid(
                    "auth.oauth.sig-algs",
                    &v,
                    &src,
                    format!("expected a subset of {}", allowed.join(", ")),
                    false,
                ));
            }
        }
        raw.list("auth.oauth.allowed-email-ids", "");
        raw.string("auth.oauth.jwks.url");
        raw.duration("auth.oauth.jwks.refresh-interval", "1h")?;
        raw.bool("auth.oauth.jwks.refresh-unknown-kid", true)?;
        raw.duration("auth.oauth.jwks.refresh-unknown-kid-limit", "10m")?;
        raw.duration("auth.oauth.jwks.refresh-unknown-kid-max-wait", "1m")?;
        let _ = read_proxy(raw, "auth.oauth.proxy", &mut secrets)?;

        let contracts = ContractsConfig {
            enabled: raw.bool("contracts.enabled", false)?,
            url: raw.string_or("contracts.url", "https://contracts.canonical.com"),
            user: raw.string("contracts.user"),
            password: raw.secret("contracts.password", &mut secrets),
        };
        raw.string("contracts.ca");

        let database = DatabaseConfig {
            connection_string: raw.secret("database.connection-string", &mut secrets),
            pool_max: raw
                .int("database.connection-pool-max", Some(10), 1, 1000)?
                .unwrap_or(10) as usize,
            lifetime_max: match raw.get("database.connection-lifetime-max") {
                None => Duration::from_secs(600),
                Some((v, src)) => match v.trim().parse::<u64>() {
                    Ok(secs) => Duration::from_secs(secs),
                    Err(_) => parse_go_duration(v.trim()).ok_or_else(|| {
                        Raw::invalid(
                            "database.connection-lifetime-max",
                            &v,
                            &src,
                            "expected a Go duration such as 10m, or a whole number of seconds",
                            false,
                        )
                    })?,
                },
            },
            work_mem_mb: raw
                .int("database.work-mem", None, 1, 2_000_000)?
                .map(|n| n as u32),
        };

        raw.secret("timescale-db.connection-string", &mut secrets);
        raw.int("timescale-db.connection-pool-max", Some(10), 1, 1000)?;
        raw.duration("timescale-db.connection-lifetime-max", "10m")?;
        raw.int("timescale-db.work-mem", Some(16), 1, 2_000_000)?;
        raw.duration("timescale-db.flush-timeout", "1m")?;
        for k in [
            "influx.url",
            "influx.bucket",
            "influx.ping-bucket",
            "influx.organization",
        ] {
            raw.string(k);
        }
        raw.secret("influx.token", &mut secrets);

        let kind = match raw
            .one_of(
                "patch-storage.type",
                "filesystem",
                &["filesystem", "file", "postgres", "s3", "swift"],
            )?
            .as_str()
        {
            "postgres" => StorageType::Postgres,
            "s3" => StorageType::S3,
            "swift" => StorageType::Swift,
            _ => StorageType::Filesystem,
        };
        let filesystem_path = PathBuf::from(raw.string_or(
            "patch-storage.filesystem-path",
            "/var/lib/livepatch/patches",
        ));
        let swift = SwiftConfig {
            username: raw.secret("patch-storage.swift-username", &mut secrets),
            api_key: raw.secret("patch-storage.swift-api-key", &mut secrets),
            auth_url: raw.string_or("patch-storage.swift-auth-url", ""),
            domain: raw.string_or("patch-storage.swift-domain", ""),
            tenant: raw.string_or("patch-storage.swift-tenant", ""),
            container: raw.string_or("patch-storage.swift-container", ""),
            region: raw.string_or("patch-storage.swift-region", ""),
        };
        let postgres_connection_string =
            raw.secret("patch-storage.postgres-connection-string", &mut secrets);
        let s3 = S3Config {
            bucket: raw.string_or("patch-storage.s3-bucket", ""),
            endpoint: raw.string_or("patch-storage.s3-endpoint", ""),
            region: raw.string_or("patch-storage.s3-region", ""),
            access_key: raw.secret("patch-storage.s3-access-key", &mut secrets),
            secret_key: raw.secret("patch-storage.s3-secret-key", &mut secrets),
            secure: raw.bool("patch-storage.s3-secure", false)?,
        };

        let patch_cache = PatchCacheConfig {
            enabled: raw.bool("patch-cache.enabled", false)?,
            ttl: raw.duration("patch-cache.cache-ttl", "10m")?,
            size: raw
                .int("patch-cache.cache-size", Some(128), 1, 1_000_000)?
                .unwrap_or(128) as u32,
        };
        let patch_sync = PatchSyncConfig {
            enabled: raw.bool("patch-sync.enabled", false)?,
            upstream_url: raw
                .string_or("patch-sync.upstream-url", "https://livepatch.canonical.com"),
            token: raw.secret("patch-sync.token", &mut secrets),
            id: raw.string("patch-sync.id"),
            interval: raw.duration("patch-sync.interval", "1h")?,
            architectures: raw.list("patch-sync.architectures", ""),
            flavors: raw.list("patch-sync.flavors", "generic,lowlatency,aws"),
            minimum_kernel_version: match raw.get("patch-sync.minimum-kernel-version") {
                None => None,
                Some((v, src)) => {
                    let ok = v.trim().split('.').count() == 3
                        && v.trim().split('.').all(|p| p.parse::<u32>().is_ok());
                    if !ok {
                        return Err(Raw::invalid(
                            "patch-sync.minimum-kernel-version",
                            &v,
                            &src,
                            "expected X.Y.Z, e.g. 5.15.0",
                            false,
                        ));
                    }
                    Some(v.trim().to_string())
                }
            },
            machine_count_strategy: raw.one_of(
                "patch-sync.machine-count-strategy",
                "bucket",
                &["unit", "bucket"],
            )?,
            send_machine_reports: raw.bool("patch-sync.send-machine-reports", false)?,
            sync_tiers: raw.bool("patch-sync.sync-tiers", false)?,
            proxy: read_proxy(raw, "patch-sync.proxy", &mut secrets)?,
        };
        let patch_blocklist = PatchBlocklistConfig {
            enabled: raw.bool("patch-blocklist.enabled", false)?,
            refresh_interval: raw.duration("patch-blocklist.refresh-interval", "5m")?,
        };
        raw.bool("cve-lookup.auth-required", false)?;
        for prefix in ["cve-sync", "lsn-sync"] {
            raw.string(&format!("{prefix}.source-url"));
            raw.duration(&format!("{prefix}.interval"), "1h")?;
            raw.duration(&format!("{prefix}.timeout"), "5m")?;
            read_proxy(raw, &format!("{prefix}.proxy"), &mut secrets)?;
        }
        let machine_reports = MachineReportsConfig {
            enabled: raw.bool("machine-reports.database.enabled", false)?,
            retention_days: raw
                .int("machine-reports.database.retention-days", Some(10), 1, 3650)?
                .unwrap_or(10) as u32,
            cleanup_row_limit: raw
                .int(
                    "machine-reports.database.cleanup-row-limit",
                    Some(1000),
                    1,
                    1_000_000,
                )?
                .unwrap_or(1000) as u32,
            cleanup_interval: raw.duration("machine-reports.database.cleanup-interval", "6h")?,
        };
        raw.duration("kpi-reports.interval", "5m")?;
        raw.int("cloud-delay.default-delay-hours", Some(0), 0, 100_000)?;
        for prefix in ["tracing", "otel-metrics"] {
            raw.string(&format!("{prefix}.service-name"));
            raw.string(&format!("{prefix}.otlp-endpoint"));
            raw.one_of(&format!("{prefix}.protocol"), "", &["grpc", "http"])?;
            raw.bool(&format!("{prefix}.insecure"), false)?;
        }
        raw.float("tracing.sample-rate", 0.0, 1.0)?;
        raw.duration("otel-metrics.export-interval", "60s")?;
        raw.duration("otel-metrics.export-timeout", "30s")?;

        Ok(Config {
            server: ServerConfig {
                server_address,
                log_level,
                url_template,
                redirect_downloads,
                concurrency_limit,
                burst_limit,
                is_leader,
                tls_cert_file,
                tls_key_file,
                admin_address,
                admin_allowed_cidrs,
                metrics_allowed_cidrs,
                max_upload_size,
                shutdown_timeout,
            },
            auth: AuthConfig {
                basic_enabled,
                basic_users,
            },
            database,
            patch_storage: PatchStorageConfig {
                kind,
                filesystem_path,
                postgres_connection_string,
                s3,
                swift,
            },
            patch_cache,
            patch_sync,
            contracts,
            patch_blocklist,
            machine_reports,
            secrets,
        })
    }
}

fn read_proxy(
    raw: &mut Raw,
    prefix: &str,
    secrets: &mut Vec<Secret<String>>,
) -> Result<ProxyConfig, ConfigError> {
    Ok(ProxyConfig {
        enabled: raw.bool(&format!("{prefix}.enabled"), false)?,
        http: raw.secret(&format!("{prefix}.http"), secrets),
        https: raw.secret(&format!("{prefix}.https"), secrets),
        no_proxy: raw.string_or(&format!("{prefix}.no-proxy"), ""),
    })
}

/// Parses `auth.basic.users`: `user:hash[, user:hash…]`, spaces after commas tolerated. The
/// error never repeats the value (it holds hashes).
pub fn parse_basic_users(v: &str) -> Result<Vec<BasicUser>, String> {
    let mut users: Vec<BasicUser> = Vec::new();
    for (i, entry) in v
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .enumerate()
    {
        let Some((name, hash)) = entry.split_once(':') else {
            return Err(format!("entry {} is not user:bcrypt-hash", i + 1));
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("entry {} has an empty user name", i + 1));
        }
        let hash = hash.trim();
        let valid_prefix = ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p));
        if !valid_prefix || hash.len() != 60 {
            return Err(format!(
                "the hash of user {name:?} is not a bcrypt hash ($2a$, $2b$ or $2y$, 60 characters); make one with `livepatch-admin hash-password`"
            ));
        }
        if users.iter().any(|u| u.name == name) {
            return Err(format!("user {name:?} appears twice"));
        }
        users.push(BasicUser {
            name: name.to_string(),
            hash: Secret::new(hash.to_string()),
        });
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_env(pairs: &[(&str, &str)]) -> Result<(Config, Vec<String>), ConfigError> {
        Config::from_sources(
            None,
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    fn from_yaml(text: &str) -> Result<(Config, Vec<String>), ConfigError> {
        Config::from_sources(Some(("/etc/livepatch.yaml", text)), Vec::new())
    }

    /// Every documented key accepts its example, both from the file and from its `LP_*` variable.
    #[test]
    fn every_key_accepts_its_example_from_the_file_and_from_the_environment() {
        // Keys that only make sense together get their partner from this baseline.
        let baseline = [
            (
                "server.url-template",
                "https://lp.example.com/v1/patches/{filename}",
            ),
            ("server.tls-cert-file", "/c.pem"),
            ("server.tls-key-file", "/k.pem"),
        ];
        for k in KEYS {
            let mut pairs: Vec<(&str, &str)> = baseline
                .iter()
                .copied()
                .filter(|(b, _)| *b != k.key)
                .collect();
            pairs.push((k.key, k.example));
            let yaml: String = pairs
                .iter()
                .map(|(key, v)| format!("{key}: {v:?}\n"))
                .collect();
            if let Err(e) = from_yaml(&yaml) {
                panic!("{} = {:?} from the file: {e}", k.key, k.example);
            }
            let env: Vec<(String, &str)> =
                pairs.iter().map(|(key, v)| (env_name(key), *v)).collect();
            let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (n.as_str(), *v)).collect();
            if let Err(e) = from_env(&env) {
                panic!("{} = {:?} from {}: {e}", k.key, k.example, env_name(k.key));
            }
        }
    }

    /// Every typed key refuses garbage with a message naming the key, the value and what is allowed.
    #[test]
    fn every_typed_key_refuses_garbage_naming_key_value_and_what_is_allowed() {
        for k in KEYS {
            let bad = match k.kind {
                Kind::Bool => "yes-please",
                Kind::Int | Kind::Float => "12abc",
                Kind::Duration => "10 minutes",
                Kind::Enum => "bogus",
                Kind::Address => "not an address",
                Kind::Cidrs => "10.0.0.0/33",
                Kind::Str | Kind::Secret | Kind::List => continue,
            };
            let err = from_env(&[(&env_name(k.key), bad)])
                .expect_err(k.key)
                .to_string();
            assert!(err.contains(k.key), "{}: {err}", k.key);
            assert!(
                err.contains(bad) || k.kind == Kind::Cidrs,
                "{}: {err}",
                k.key
            );
            assert!(
                err.contains("expected") || err.contains("is not"),
                "{}: {err}",
                k.key
            );
        }
    }

    #[test]
    fn defaults_are_those_of_the_charm() {
        let (c, warnings) = from_env(&[]).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            c.server.server_address,
            ListenAddress {
                host: String::new(),
                port: 8080
            }
        );
        assert_eq!(c.server.log_level, LogLevel::Info);
        assert_eq!(
            (c.server.concurrency_limit, c.server.burst_limit),
            (1000, 500)
        );
        assert_eq!(c.server.max_upload_size, 64 << 20);
        assert!(!c.server.redirect_downloads && !c.server.is_leader && !c.auth.basic_enabled);
        assert_eq!(c.database.pool_max, 10);
        assert_eq!(c.database.lifetime_max, Duration::from_secs(600));
        assert_eq!(c.database.work_mem_mb, None);
        assert_eq!(c.patch_storage.kind, StorageType::Filesystem);
        assert_eq!(
            c.patch_storage.filesystem_path,
            PathBuf::from("/var/lib/livepatch/patches")
        );
        assert_eq!(c.patch_sync.flavors, ["generic", "lowlatency", "aws"]);
        assert_eq!(c.patch_sync.interval, Duration::from_secs(3600));
        assert_eq!(c.machine_reports.retention_days, 10);
        assert_eq!(c.machine_reports.cleanup_row_limit, 1000);
        assert_eq!(
            c.machine_reports.cleanup_interval,
            Duration::from_secs(6 * 3600)
        );
        assert_eq!(c.patch_cache.size, 128);
    }

    fn check_bool(v: &str, expected: Option<bool>) {
        assert_eq!(parse_bool(v), expected, "{v:?}");
    }

    #[test]
    fn booleans_read_as_the_charm_writes_them() {
        check_bool("true", Some(true));
        check_bool("TRUE", Some(true));
        check_bool("True", Some(true));
        check_bool("1", Some(true));
        check_bool("false", Some(false));
        check_bool("FaLsE", Some(false));
        check_bool("0", Some(false));
        check_bool("yes", None);
        check_bool("2", None);
    }

    fn check_duration(v: &str, expected: Option<f64>) {
        assert_eq!(
            parse_go_duration(v).map(|d| d.as_secs_f64()),
            expected,
            "{v:?}"
        );
    }

    #[test]
    fn durations_read_as_go_writes_them() {
        check_duration("90s", Some(90.0));
        check_duration("10m", Some(600.0));
        check_duration("1h0m0s", Some(3600.0));
        check_duration("1h30m", Some(5400.0));
        check_duration("1.5h", Some(5400.0));
        check_duration("300ms", Some(0.3));
        check_duration("0", Some(0.0));
        check_duration("+5s", Some(5.0));
        check_duration("10", None);
        check_duration("-5s", None);
        check_duration("5 s", None);
        check_duration("5d", None);
        check_duration("", None);
        check_duration("h", None);
    }

    #[test]
    fn hyphen_and_underscore_spellings_are_one_key_in_yaml_nested_or_dotted() {
        let (c, w) = from_yaml("server:\n  redirect_downloads: true\n  url_template: http://x/{filename}\ndatabase.work_mem: 32\n").unwrap();
        assert!(c.server.redirect_downloads);
        assert_eq!(c.database.work_mem_mb, Some(32));
        assert!(w.is_empty(), "{w:?}");
        let (c, _) = from_yaml("lp.server.is-leader: 'TRUE'\n").unwrap();
        assert!(c.server.is_leader, "the snap's lp. prefix is accepted");
    }

    #[test]
    fn the_environment_overrides_the_file_and_empty_means_unset() {
        let file = "server:\n  server-address: ':9000'\n  log-level: debug\n";
        let env = vec![
            (
                "LP_SERVER_SERVER_ADDRESS".to_string(),
                "127.0.0.1:7000".to_string(),
            ),
            ("LP_SERVER_LOG_LEVEL".to_string(), "".to_string()),
            (
                "LP_INGRESS_INTERFACE".to_string(),
                "nginx-route".to_string(),
            ),
        ];
        let (c, w) = Config::from_sources(Some(("f.yaml", file)), env).unwrap();
        assert_eq!(c.server.server_address.to_string(), "127.0.0.1:7000");
        assert_eq!(
            c.server.log_level,
            LogLevel::Debug,
            "an empty variable does not override the file"
        );
        assert!(
            w.is_empty(),
            "unknown LP_ variables are ignored silently: {w:?}"
        );
    }

    #[test]
    fn unknown_file_keys_are_warned_about_and_ignored_prefixes_are_not() {
        let (_, w) = from_yaml("server:\n  colour: blue\nprofiler:\n  sample_rate: 100\nmachine-reports:\n  event-bus:\n    brokers: k:9092\n").unwrap();
        assert_eq!(
            w,
            ["ignoring unknown configuration key server.colour in /etc/livepatch.yaml"]
        );
    }

    #[test]
    fn enabling_a_feature_this_server_lacks_warns() {
        let (_, w) = from_env(&[
            ("LP_INFLUX_ENABLED", "true"),
            ("LP_AUTH_SSO_ENABLED", "1"),
            ("LP_CLOUD_DELAY_ENABLED", "true"),
        ])
        .unwrap();
        assert!(
            w.iter()
                .any(|m| m.contains("influx.enabled") && m.contains("Canonical-hosted")),
            "{w:?}"
        );
        assert!(w.iter().any(|m| m.contains("auth.sso.enabled")), "{w:?}");
        assert!(
            w.iter()
                .any(|m| m.contains("cloud-delay.enabled") && m.contains("deprecated")),
            "{w:?}"
        );
    }

    #[test]
    fn connection_lifetime_accepts_a_bare_number_of_seconds() {
        let (c, _) = from_env(&[("LP_DATABASE_CONNECTION_LIFETIME_MAX", "300")]).unwrap();
        assert_eq!(c.database.lifetime_max, Duration::from_secs(300));
        let (c, _) = from_env(&[("LP_DATABASE_CONNECTION_LIFETIME_MAX", "1h")]).unwrap();
        assert_eq!(c.database.lifetime_max, Duration::from_secs(3600));
    }

    #[test]
    fn basic_users_parse_with_spaces_and_every_bcrypt_prefix() {
        let h = "$2b$10$abcdefghijklmnopqrstuu9bsQ4bO/pmvnW3zqbuN3M3F4PDQjb6m";
        let v = format!(
            "alice:{h}, bob:{}, carol:{}",
            h.replace("$2b$", "$2a$"),
            h.replace("$2b$", "$2y$")
        );
        let users = parse_basic_users(&v).unwrap();
        assert_eq!(
            users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
            ["alice", "bob", "carol"]
        );
        assert!(parse_basic_users("alice:plaintext")
            .unwrap_err()
            .contains("not a bcrypt hash"));
        assert!(parse_basic_users(&format!("alice:{h},alice:{h}"))
            .unwrap_err()
            .contains("twice"));
    }

    #[test]
    fn a_bad_basic_users_value_is_reported_without_the_value() {
        let err = from_env(&[("LP_AUTH_BASIC_USERS", "alice:secretpassword")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("auth.basic.users") && !err.contains("secretpassword"),
            "{err}"
        );
    }

    #[test]
    fn inconsistent_settings_are_refused_with_the_fix() {
        let err = from_env(&[("LP_SERVER_REDIRECT_DOWNLOADS", "true")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.url-template"), "{err}");
        let err = from_env(&[("LP_SERVER_TLS_CERT_FILE", "/x")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.tls-key-file"), "{err}");
        let err = from_env(&[("LP_SERVER_URL_TEMPLATE", "https://x/patches/")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("{filename}"), "{err}");
    }

    #[test]
    fn secrets_never_print_in_the_debug_output_of_the_config() {
        let (c, _) = from_env(&[
            (
                "LP_DATABASE_CONNECTION_STRING",
                "postgresql://u:dbpass123@h/d",
            ),
            ("LP_PATCH_SYNC_TOKEN", "synctoken456"),
            ("LP_CONTRACTS_PASSWORD", "contractpw789"),
            ("LP_PATCH_STORAGE_S3_SECRET_KEY", "s3secret000"),
        ])
        .unwrap();
        let dump = format!("{c:?}");
        for s in ["dbpass123", "synctoken456", "contractpw789", "s3secret000"] {
            assert!(!dump.contains(s), "{s} leaked");
        }
        assert_eq!(c.secrets.len(), 4);
    }

    #[test]
    fn listen_addresses_and_cidrs_parse() {
        let (c, _) = from_env(&[
            ("LP_SERVER_ADMIN_ADDRESS", "[::1]:8081"),
            (
                "LP_SERVER_ADMIN_ALLOWED_CIDRS",
                "10.0.0.0/8, 192.168.1.7 ,fd00::/8",
            ),
        ])
        .unwrap();
        assert_eq!(c.server.admin_address.unwrap().to_string(), "[::1]:8081");
        assert_eq!(c.server.admin_allowed_cidrs.len(), 3);
    }

    #[test]
    fn legacy_file_storage_type_means_filesystem() {
        let (c, _) = from_env(&[("LP_PATCH_STORAGE_TYPE", "file")]).unwrap();
        assert_eq!(c.patch_storage.kind, StorageType::Filesystem);
        let (c, w) = from_env(&[("LP_PATCH_STORAGE_TYPE", "S3")]).unwrap();
        assert_eq!(c.patch_storage.kind, StorageType::S3);
        assert!(w.is_empty(), "{w:?}");
    }
}
