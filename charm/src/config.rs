//! `CharmConfig`: the charm's options checked once, at the edge, into typed
//! values. Nothing past [`CharmConfig::try_from`] checks an option again.
//!
//! A failure lists every problem found, each naming its option; the first
//! becomes the Blocked status message and all of them go to the log.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;
use time::OffsetDateTime;

use crate::ca::{self, CaBundle};
use crate::options::{self, Check, Cidr, Env, Kind, OPTIONS};
use crate::users::{self, User};

/// Options as `config-get --format=json` prints them.
pub type RawConfig = BTreeMap<String, Value>;

/// The server's public port (`LP_SERVER_SERVER_ADDRESS=:8080`).
pub const PUBLIC_PORT: u16 = 8080;

/// A string that must never be printed: Debug and Display show a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Sensitive(pub String);

impl Sensitive {
    /// The value itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Which ingress relation publishes the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngressInterface {
    /// `nginx-route` (nginx-ingress-integrator), plain-string fields.
    NginxRoute,
    /// `ingress` v2 (Traefik), JSON-encoded fields.
    Ingress,
}

/// Where patch files live, with what each backend needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchStorage {
    /// A directory in the container (one unit only).
    Filesystem {
        /// Absolute path of the directory.
        path: String,
    },
    /// S3 or compatible; credentials from options unless the secret is set.
    S3 {
        /// `patch-storage.s3-access-key`.
        access_key: Option<Sensitive>,
        /// `patch-storage.s3-secret-key`.
        secret_key: Option<Sensitive>,
    },
    /// OpenStack Swift; credentials from options unless the secret is set.
    Swift {
        /// `patch-storage.swift-username`.
        username: Option<Sensitive>,
        /// `patch-storage.swift-api-key`.
        api_key: Option<Sensitive>,
    },
    /// PostgreSQL blobs; `None` = the server's main database.
    Postgres {
        /// `patch-storage.postgres-connection-string`.
        dsn: Option<Sensitive>,
    },
}

impl PatchStorage {
    /// The value of `LP_PATCH_STORAGE_TYPE`.
    pub fn type_name(&self) -> &'static str {
        match self {
            PatchStorage::Filesystem { .. } => "filesystem",
            PatchStorage::S3 { .. } => "s3",
            PatchStorage::Swift { .. } => "swift",
            PatchStorage::Postgres { .. } => "postgres",
        }
    }
}

/// The `*-secret` options: URIs of Juju user secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserSecrets {
    /// `auth.basic.users-secret`.
    pub users: Option<String>,
    /// `contracts.password-secret`.
    pub contracts: Option<String>,
    /// `patch-storage.s3-credentials-secret`.
    pub s3: Option<String>,
    /// `patch-storage.swift-credentials-secret`.
    pub swift: Option<String>,
    /// `patch-sync.token-secret`.
    pub sync_token: Option<String>,
}

/// The NetworkPolicy the leader maintains, when enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPolicyConfig {
    /// Who may reach the admin port.
    pub admin_cidrs: Vec<Cidr>,
    /// Who may reach the metrics port.
    pub metrics_cidrs: Vec<Cidr>,
}

/// Every option, checked and typed.
#[derive(Debug, Clone, PartialEq)]
pub struct CharmConfig {
    /// Options passed on by the key-to-env rule: option → environment value.
    /// Sensitive ones among them (`influx.token`, …) are exported, never logged.
    pub direct: DirectOptions,
    /// `ingress-interface`.
    pub ingress: IngressInterface,
    /// `server.url-template`.
    pub url_template: Option<String>,
    /// `patch-storage.*`.
    pub storage: PatchStorage,
    /// `auth.basic.enabled`.
    pub basic_auth_enabled: bool,
    /// `auth.basic.users`.
    pub basic_users: Vec<User>,
    /// The `*-secret` options.
    pub secrets: UserSecrets,
    /// `contracts.enabled` (unset ⇒ the server's default, off).
    pub contracts_enabled: Option<bool>,
    /// `contracts.url`.
    pub contracts_url: String,
    /// `contracts.user`.
    pub contracts_user: Option<String>,
    /// `contracts.password`.
    pub contracts_password: Option<Sensitive>,
    /// `contracts.ca`, decoded and checked.
    pub contracts_ca: Option<CaBundle>,
    /// `patch-sync.enabled`.
    pub sync_enabled: bool,
    /// `patch-sync.token`.
    pub sync_token: Option<Sensitive>,
    /// `cve-sync.source-url` (the cve-catalog relation overrides it).
    pub cve_source_url: Option<String>,
    /// `lsn-sync.source-url` (the cve-catalog relation overrides it).
    pub lsn_source_url: Option<String>,
    /// `server.admin-port` when not 0.
    pub admin_port: Option<u16>,
    /// `network-policy.*` when enabled.
    pub network_policy: Option<NetworkPolicyConfig>,
    /// `database.sslmode`.
    pub db_sslmode: String,
}

/// Options passed on by the key-to-env rule. Debug shows only their names,
/// since some (`influx.token`, `auth.sso.public-key`) are credentials.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct DirectOptions(pub BTreeMap<&'static str, String>);

impl std::ops::Deref for DirectOptions {
    type Target = BTreeMap<&'static str, String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl fmt::Debug for DirectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// One problem with one option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The option at fault.
    pub option: String,
    /// The whole message, naming the option.
    pub message: String,
}

impl ConfigError {
    fn new(option: &str, problem: impl fmt::Display) -> ConfigError {
        ConfigError {
            option: option.to_string(),
            message: format!("{option}: {problem}"),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Every problem found in the configuration, in option order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The Blocked status message: the first problem, and how many more the
    /// log holds.
    pub fn status_message(&self) -> String {
        match self.0.as_slice() {
            [] => String::new(),
            [only] => only.message.clone(),
            [first, rest @ ..] => format!(
                "{} (and {} more, see juju debug-log)",
                first.message,
                rest.len()
            ),
        }
    }

    /// One log line listing every problem.
    pub fn log_message(&self) -> String {
        let mut out = format!("invalid configuration ({} problems):", self.0.len());
        for e in &self.0 {
            out.push_str("\n  - ");
            out.push_str(&e.message);
        }
        out
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.status_message())
    }
}

impl std::error::Error for ConfigErrors {}

impl TryFrom<&RawConfig> for CharmConfig {
    type Error = ConfigErrors;

    fn try_from(raw: &RawConfig) -> Result<CharmConfig, ConfigErrors> {
        CharmConfig::parse(raw, OffsetDateTime::now_utc())
    }
}

/// A checked option value, before it is sorted into fields.
#[derive(Debug, Clone, PartialEq)]
enum Checked {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl Checked {
    fn env_value(&self) -> String {
        match self {
            Checked::Bool(b) => b.to_string(),
            Checked::Int(i) => i.to_string(),
            Checked::Float(f) => f.to_string(),
            Checked::Str(s) => s.clone(),
        }
    }
}

impl CharmConfig {
    /// Checks `raw` as at time `now` (certificates' validity depends on it).
    pub fn parse(raw: &RawConfig, now: OffsetDateTime) -> Result<CharmConfig, ConfigErrors> {
        let mut errors = Vec::new();
        let mut values: BTreeMap<&'static str, Checked> = BTreeMap::new();
        let mut contracts_ca = None;

        for spec in OPTIONS {
            let Some(value) = raw.get(spec.name) else {
                continue;
            };
            match check_value(spec, value) {
                Ok(None) => {}
                Ok(Some(checked)) => {
                    if let (Check::ContractsCa, Checked::Str(text)) = (spec.check, &checked) {
                        match ca::parse_contracts_ca(text, now) {
                            Ok(bundle) => contracts_ca = Some(bundle),
                            Err(e) => {
                                errors.push(ConfigError::new(spec.name, e));
                                continue;
                            }
                        }
                    }
                    values.insert(spec.name, checked);
                }
                Err(e) => errors.push(e),
            }
        }

        let get_str = |name: &str| match values.get(name) {
            Some(Checked::Str(s)) => Some(s.clone()),
            _ => None,
        };
        let get_bool = |name: &str| match values.get(name) {
            Some(Checked::Bool(b)) => Some(*b),
            _ => None,
        };
        let get_int = |name: &str| match values.get(name) {
            Some(Checked::Int(i)) => Some(*i),
            _ => None,
        };
        let sensitive = |name: &str| get_str(name).map(Sensitive);

        // Limits: the in-flight cap cannot exceed the total.
        if let (Some(burst), Some(total)) = (
            get_int("server.burst-limit"),
            get_int("server.concurrency-limit"),
        ) {
            if burst > total {
                errors.push(ConfigError::new(
                    "server.burst-limit",
                    format!(
                        "{burst} is above server.concurrency-limit ({total}); the queue would have no room, set burst-limit at most concurrency-limit"
                    ),
                ));
            }
        }

        let secrets = UserSecrets {
            users: get_str("auth.basic.users-secret"),
            contracts: get_str("contracts.password-secret"),
            s3: get_str("patch-storage.s3-credentials-secret"),
            swift: get_str("patch-storage.swift-credentials-secret"),
            sync_token: get_str("patch-sync.token-secret"),
        };

        let storage_type = get_str("patch-storage.type").unwrap_or_else(|| "filesystem".into());
        let storage = match storage_type.as_str() {
            "s3" => {
                if get_str("patch-storage.s3-bucket").is_none() {
                    errors.push(ConfigError::new(
                        "patch-storage.s3-bucket",
                        "must be set with patch-storage.type=s3",
                    ));
                }
                let access_key = sensitive("patch-storage.s3-access-key");
                let secret_key = sensitive("patch-storage.s3-secret-key");
                if secrets.s3.is_none() && (access_key.is_none() != secret_key.is_none()) {
                    let missing = if access_key.is_none() {
                        "patch-storage.s3-access-key"
                    } else {
                        "patch-storage.s3-secret-key"
                    };
                    errors.push(ConfigError::new(
                        missing,
                        "must be set together with its pair, or use patch-storage.s3-credentials-secret",
                    ));
                }
                PatchStorage::S3 {
                    access_key,
                    secret_key,
                }
            }
            "swift" => {
                for required in [
                    "patch-storage.swift-auth-url",
                    "patch-storage.swift-container",
                ] {
                    if get_str(required).is_none() {
                        errors.push(ConfigError::new(
                            required,
                            "must be set with patch-storage.type=swift",
                        ));
                    }
                }
                let username = sensitive("patch-storage.swift-username");
                let api_key = sensitive("patch-storage.swift-api-key");
                if secrets.swift.is_none() && (username.is_none() || api_key.is_none()) {
                    let missing = if username.is_none() {
                        "patch-storage.swift-username"
                    } else {
                        "patch-storage.swift-api-key"
                    };
                    errors.push(ConfigError::new(
                        missing,
                        "must be set with patch-storage.type=swift, or use patch-storage.swift-credentials-secret",
                    ));
                }
                PatchStorage::Swift { username, api_key }
            }
            "postgres" => PatchStorage::Postgres {
                dsn: sensitive("patch-storage.postgres-connection-string"),
            },
            // "filesystem" and its legacy spelling "file".
            _ => PatchStorage::Filesystem {
                path: get_str("patch-storage.filesystem-path")
                    .unwrap_or_else(|| "/var/lib/livepatch/patches".into()),
            },
        };

        let admin_port = match get_int("server.admin-port") {
            Some(0) | None => None,
            Some(p) => u16::try_from(p).ok(),
        };

        let network_policy = if get_bool("network-policy.enabled") == Some(true) {
            let admin_cidrs = get_str("network-policy.admin-cidrs")
                .map(|s| Cidr::parse_list(&s).unwrap_or_default())
                .unwrap_or_default();
            let metrics_cidrs = get_str("network-policy.metrics-cidrs")
                .map(|s| Cidr::parse_list(&s).unwrap_or_default())
                .unwrap_or_default();
            Some(NetworkPolicyConfig {
                admin_cidrs,
                metrics_cidrs,
            })
        } else {
            None
        };

        // Features whose other end this charm cannot provide yet: say so
        // rather than start a server that silently does nothing.
        if get_bool("timescale_db.enabled") == Some(true) {
            errors.push(ConfigError::new(
                "timescale_db.enabled",
                "TimescaleDB metrics are not supported by this server yet",
            ));
        }
        if get_bool("tracing.enabled") == Some(true) {
            errors.push(ConfigError::new(
                "tracing.enabled",
                "trace export needs a send-traces relation, which this charm does not offer yet; set it to false",
            ));
        }
        if get_bool("otel-metrics.enabled") == Some(true) {
            errors.push(ConfigError::new(
                "otel-metrics.enabled",
                "OTLP metrics need a send-otlp relation, which this charm does not offer yet; set it to false and scrape /metrics",
            ));
        }

        let ingress = match get_str("ingress-interface").as_deref() {
            Some("ingress") => IngressInterface::Ingress,
            _ => IngressInterface::NginxRoute,
        };

        let basic_users = get_str("auth.basic.users")
            .map(|s| users::parse_users(&s).unwrap_or_default())
            .unwrap_or_default();

        if !errors.is_empty() {
            // Keep the table's order so the first message is stable.
            errors.sort_by_key(|e| OPTIONS.iter().position(|o| o.name == e.option));
            return Err(ConfigErrors(errors));
        }

        let direct = DirectOptions(
            values
                .iter()
                .filter(|(name, _)| options::spec(name).is_some_and(|s| s.env == Env::KeyToEnv))
                .map(|(name, v)| (*name, v.env_value()))
                .collect(),
        );

        Ok(CharmConfig {
            direct,
            ingress,
            url_template: get_str("server.url-template"),
            storage,
            basic_auth_enabled: get_bool("auth.basic.enabled").unwrap_or(false),
            basic_users,
            secrets,
            contracts_enabled: get_bool("contracts.enabled"),
            contracts_url: get_str("contracts.url")
                .unwrap_or_else(|| "https://contracts.canonical.com".into()),
            contracts_user: get_str("contracts.user"),
            contracts_password: sensitive("contracts.password"),
            contracts_ca,
            sync_enabled: get_bool("patch-sync.enabled").unwrap_or(false),
            sync_token: sensitive("patch-sync.token"),
            cve_source_url: get_str("cve-sync.source-url"),
            lsn_source_url: get_str("lsn-sync.source-url"),
            admin_port,
            network_policy,
            db_sslmode: get_str("database.sslmode").unwrap_or_else(|| "verify-full".into()),
        })
    }
}

/// Checks one value: `Ok(None)` for unset or empty, else the typed value.
fn check_value(spec: &options::OptionSpec, value: &Value) -> Result<Option<Checked>, ConfigError> {
    let type_error = || {
        ConfigError::new(
            spec.name,
            format!("{value} is not a {}", spec.kind.juju_name()),
        )
    };
    let checked = match (spec.kind, value) {
        (_, Value::Null) => return Ok(None),
        (Kind::Bool, Value::Bool(b)) => Checked::Bool(*b),
        (Kind::Int, Value::Number(n)) => Checked::Int(n.as_i64().ok_or_else(type_error)?),
        (Kind::Float, Value::Number(n)) => Checked::Float(n.as_f64().ok_or_else(type_error)?),
        (Kind::Str | Kind::Secret, Value::String(s)) => {
            if s.trim().is_empty() {
                return Ok(None);
            }
            Checked::Str(s.clone())
        }
        _ => return Err(type_error()),
    };
    match (&checked, spec.check) {
        (Checked::Int(i), Check::IntRange(lo, hi)) if !(lo..=hi).contains(i) => {
            let range = if hi == i64::MAX {
                format!("at least {lo}")
            } else {
                format!("from {lo} to {hi}")
            };
            Err(ConfigError::new(
                spec.name,
                format!("{i} is out of range; use a value {range}"),
            ))
        }
        (Checked::Float(f), Check::FloatRange(lo, hi)) if !(lo..=hi).contains(f) => {
            Err(ConfigError::new(
                spec.name,
                format!("{f} is out of range; use a value from {lo} to {hi}"),
            ))
        }
        (Checked::Int(i), Check::AdminPort) => {
            if *i == 0 || (1..=65535).contains(i) && *i != i64::from(PUBLIC_PORT) {
                Ok(Some(checked))
            } else if *i == i64::from(PUBLIC_PORT) {
                Err(ConfigError::new(
                    spec.name,
                    format!("{i} is the public port; choose another port, or 0 to serve admin routes on {PUBLIC_PORT}"),
                ))
            } else {
                Err(ConfigError::new(
                    spec.name,
                    format!("{i} is not a port (1-65535, or 0 for off)"),
                ))
            }
        }
        (Checked::Str(s), Check::OneOf(options::INGRESS_INTERFACES))
            if !options::INGRESS_INTERFACES.contains(&s.as_str()) =>
        {
            // The previous charm's exact text, which runbooks look for.
            Err(ConfigError {
                option: spec.name.to_string(),
                message: format!("Invalid ingress interface specified: {s}"),
            })
        }
        (Checked::Str(s), check) => match options::check_str(check, s) {
            Ok(()) => Ok(Some(match (spec.check, checked) {
                (Check::OneOf(options::STORAGE_TYPES), Checked::Str(t)) if t == "file" => {
                    Checked::Str("filesystem".into())
                }
                (Check::BoolString, Checked::Str(t)) => {
                    match t.trim().to_ascii_lowercase().as_str() {
                        "true" | "1" => Checked::Str("true".into()),
                        _ => Checked::Str("false".into()),
                    }
                }
                (_, other) => other,
            })),
            Err(problem) => Err(ConfigError::new(spec.name, problem)),
        },
        _ => Ok(Some(checked)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The defaults of config.yaml, as `config-get` prints them.
    fn defaults() -> RawConfig {
        crate::meta::config_defaults()
    }

    fn with(changes: &[(&str, Value)]) -> RawConfig {
        let mut raw = defaults();
        for (k, v) in changes {
            raw.insert(k.to_string(), v.clone());
        }
        raw
    }

    const HASH: &str = "$2y$10$Y8o/3mvBaM7SfdNoHf9v4eWKh9yXHBS1YRKqKRpIhyfnAVD7f4qzK";

    #[test]
    fn the_defaults_are_valid() {
        let cfg = CharmConfig::try_from(&defaults()).unwrap();
        assert_eq!(cfg.ingress, IngressInterface::NginxRoute);
        assert_eq!(
            cfg.storage,
            PatchStorage::Filesystem {
                path: "/var/lib/livepatch/patches".into()
            }
        );
        assert_eq!(cfg.db_sslmode, "verify-full");
        assert_eq!(
            cfg.direct.get("server.burst-limit").map(String::as_str),
            Some("500")
        );
        assert_eq!(
            cfg.direct.get("patch-cache.enabled").map(String::as_str),
            Some("false")
        );
        assert_eq!(
            cfg.direct.get("tracing.sample-rate").map(String::as_str),
            Some("1")
        );
        // Empty defaults are left out, charm-only options never reach the env.
        assert!(!cfg.direct.contains_key("patch-sync.architectures"));
        assert!(!cfg.direct.contains_key("ingress-interface"));
        assert!(!cfg.direct.contains_key("contracts.ca"));
        assert!(!cfg.direct.contains_key("kpi-reports.enabled"));
    }

    /// Each invalid value gives exactly one problem, naming its option.
    #[test]
    fn each_invalid_option_is_named_in_its_message() {
        let cases: Vec<(Vec<(&str, Value)>, &str)> = vec![
            (vec![("ingress-interface", json!("traefik"))], "Invalid ingress interface specified: traefik"),
            (vec![("patch-storage.type", json!("azure"))], "patch-storage.type: \"azure\" is not one of"),
            (vec![("server.log-level", json!("verbose"))], "server.log-level: \"verbose\" is not one of"),
            (vec![("patch-sync.machine-count-strategy", json!("exact"))], "patch-sync.machine-count-strategy:"),
            (vec![("patch-sync.interval", json!("12 hours"))], "patch-sync.interval: \"12 hours\" is not a duration"),
            (vec![("database.connection-lifetime-max", json!("soon"))], "database.connection-lifetime-max:"),
            (vec![("contracts.url", json!("contracts.canonical.com"))], "contracts.url: "),
            (vec![("patch-sync.upstream-url", json!("ftp://x"))], "patch-sync.upstream-url: "),
            (vec![("server.url-template", json!("https://lp.example.com/v1/patches/"))], "server.url-template: "),
            (vec![("auth.basic.users", json!("admin:admin"))], "auth.basic.users: the hash of user \"admin\" is not a bcrypt hash"),
            (vec![("server.burst-limit", json!(2000))], "server.burst-limit: 2000 is above server.concurrency-limit (1000)"),
            (vec![("server.burst-limit", json!(0))], "server.burst-limit: 0 is out of range"),
            (vec![("timescale_db.connection_pool_max", json!(5000))], "timescale_db.connection_pool_max: 5000 is out of range; use a value from 1 to 1000"),
            (vec![("tracing.sample-rate", json!(1.5))], "tracing.sample-rate: 1.5 is out of range"),
            (vec![("network-policy.admin-cidrs", json!("10.0.0.1/8"))], "network-policy.admin-cidrs: \"10.0.0.1/8\" has host bits set"),
            (vec![("patch-sync.minimum-kernel-version", json!("5.15"))], "patch-sync.minimum-kernel-version:"),
            (vec![("patch-sync.architectures", json!("AMD64"))], "patch-sync.architectures:"),
            (vec![("auth.oauth.sig-algs", json!("HS256"))], "auth.oauth.sig-algs:"),
            (vec![("patch-storage.filesystem-path", json!("patches"))], "patch-storage.filesystem-path:"),
            (vec![("patch-storage.postgres-connection-string", json!("host=db"))], "patch-storage.postgres-connection-string:"),
            (vec![("patch-storage.s3-endpoint", json!("a b"))], "patch-storage.s3-endpoint:"),
            (vec![("patch-storage.type", json!("s3"))], "patch-storage.s3-bucket: must be set with patch-storage.type=s3"),
            (vec![("patch-storage.type", json!("s3")), ("patch-storage.s3-bucket", json!("b")), ("patch-storage.s3-access-key", json!("AK"))], "patch-storage.s3-secret-key: must be set together"),
            (vec![("patch-storage.type", json!("swift")), ("patch-storage.swift-container", json!("c")), ("patch-storage.swift-username", json!("u")), ("patch-storage.swift-api-key", json!("k"))], "patch-storage.swift-auth-url: must be set"),
            (vec![("patch-storage.type", json!("swift")), ("patch-storage.swift-container", json!("c")), ("patch-storage.swift-auth-url", json!("https://keystone:5000/v3"))], "patch-storage.swift-username: must be set"),
            (vec![("contracts.ca", json!("bm90IGEgY2VydA=="))], "contracts.ca: holds no PEM certificate"),
            (vec![("kpi-reports.enabled", json!("maybe"))], "kpi-reports.enabled:"),
            (vec![("server.admin-port", json!(8080))], "server.admin-port: 8080 is the public port"),
            (vec![("server.admin-port", json!(70000))], "server.admin-port: 70000 is not a port"),
            (vec![("timescale_db.enabled", json!(true))], "timescale_db.enabled: TimescaleDB metrics are not supported by this server yet"),
            (vec![("tracing.enabled", json!(true))], "tracing.enabled: "),
            (vec![("otel-metrics.enabled", json!(true))], "otel-metrics.enabled: "),
            (vec![("patch-sync.token-secret", json!("my-token"))], "patch-sync.token-secret: \"my-token\" is not a Juju secret URI"),
            (vec![("database.sslmode", json!("allow"))], "database.sslmode: \"allow\" is not one of"),
            (vec![("server.concurrency-limit", json!("1000"))], "server.concurrency-limit: \"1000\" is not a int"),
            (vec![("patch-cache.enabled", json!("yes"))], "patch-cache.enabled: \"yes\" is not a boolean"),
        ];
        for (changes, expected) in cases {
            let err = CharmConfig::try_from(&with(&changes)).unwrap_err();
            assert_eq!(err.0.len(), 1, "{changes:?}: {err:?}");
            assert!(
                err.status_message().starts_with(expected),
                "{changes:?}:\n got  {}\n want {expected}",
                err.status_message()
            );
        }
    }

    #[test]
    fn several_problems_show_the_first_and_count_the_rest() {
        let err = CharmConfig::try_from(&with(&[
            ("server.log-level", json!("loud")),
            ("patch-sync.interval", json!("often")),
            ("contracts.url", json!("nowhere")),
        ]))
        .unwrap_err();
        assert_eq!(err.0.len(), 3);
        assert!(err.status_message().starts_with("contracts.url: "));
        assert!(err
            .status_message()
            .ends_with("(and 2 more, see juju debug-log)"));
        let log = err.log_message();
        for option in ["contracts.url", "patch-sync.interval", "server.log-level"] {
            assert!(log.contains(option), "{log}");
        }
    }

    #[test]
    fn legacy_spellings_are_normalised() {
        let cfg = CharmConfig::try_from(&with(&[
            ("patch-storage.type", json!("file")),
            ("kpi-reports.enabled", json!("TRUE")),
        ]))
        .unwrap();
        assert_eq!(cfg.storage.type_name(), "filesystem");
        assert_eq!(
            cfg.direct.get("kpi-reports.enabled").map(String::as_str),
            Some("true")
        );
    }

    #[test]
    fn typed_fields_come_out_of_valid_options() {
        let cfg = CharmConfig::try_from(&with(&[
            ("ingress-interface", json!("ingress")),
            ("patch-storage.type", json!("s3")),
            ("patch-storage.s3-bucket", json!("patches")),
            (
                "patch-storage.s3-credentials-secret",
                json!("secret:cs3b1l6f9n8s73b9r6dg"),
            ),
            ("auth.basic.enabled", json!(true)),
            ("auth.basic.users", json!(format!("alice:{HASH}"))),
            ("server.admin-port", json!(9090)),
            ("network-policy.enabled", json!(true)),
            (
                "network-policy.admin-cidrs",
                json!("10.0.0.0/8, 192.168.0.0/16"),
            ),
            ("patch-sync.token", json!("tok")),
            ("database.sslmode", json!("require")),
        ]))
        .unwrap();
        assert_eq!(cfg.ingress, IngressInterface::Ingress);
        assert_eq!(
            cfg.storage,
            PatchStorage::S3 {
                access_key: None,
                secret_key: None
            }
        );
        assert_eq!(
            cfg.secrets.s3.as_deref(),
            Some("secret:cs3b1l6f9n8s73b9r6dg")
        );
        assert_eq!(cfg.basic_users.len(), 1);
        assert_eq!(cfg.admin_port, Some(9090));
        let np = cfg.network_policy.unwrap();
        assert_eq!(np.admin_cidrs.len(), 2);
        assert_eq!(cfg.sync_token, Some(Sensitive("tok".into())));
        assert_eq!(cfg.db_sslmode, "require");
        assert!(cfg.direct.contains_key("patch-storage.s3-bucket"));
        assert!(!cfg
            .direct
            .contains_key("patch-storage.s3-credentials-secret"));
    }

    #[test]
    fn debug_output_hides_credentials() {
        let cfg = CharmConfig::try_from(&with(&[
            ("contracts.password", json!("hunter2-contracts")),
            ("patch-sync.token", json!("hunter2-sync")),
            ("patch-storage.type", json!("s3")),
            ("patch-storage.s3-bucket", json!("b")),
            ("patch-storage.s3-access-key", json!("hunter2-ak")),
            ("patch-storage.s3-secret-key", json!("hunter2-sk")),
            ("influx.token", json!("hunter2-influx")),
        ]))
        .unwrap();
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
