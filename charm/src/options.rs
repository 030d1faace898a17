//! The table of every charm option: its Juju type, the check its value must
//! pass and whether it reaches the server by the key-to-env rule.
//!
//! `config.yaml` declares names, types and defaults for Juju; this table adds
//! what Juju cannot express (enums, durations, URLs, CIDRs, ranges). A test
//! keeps the two in step, so an option added to one and not the other fails
//! the build's tests rather than being silently ignored.

use std::net::IpAddr;
use std::time::Duration;

/// The Juju type of an option, as in `config.yaml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `type: boolean`.
    Bool,
    /// `type: int`.
    Int,
    /// `type: float`.
    Float,
    /// `type: string`.
    Str,
    /// `type: secret`: `config-get` gives the secret's URI.
    Secret,
}

impl Kind {
    /// The spelling `config.yaml` uses.
    pub fn juju_name(self) -> &'static str {
        match self {
            Kind::Bool => "boolean",
            Kind::Int => "int",
            Kind::Float => "float",
            Kind::Str => "string",
            Kind::Secret => "secret",
        }
    }
}

/// What a value must look like beyond its Juju type.
#[derive(Debug, Clone, Copy)]
pub enum Check {
    /// Any value of the right type.
    Any,
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// A Go-style duration (`90s`, `1h30m`).
    Duration,
    /// A Go-style duration or a bare number of seconds.
    DurationOrSeconds,
    /// An `http` or `https` URL with a host.
    HttpUrl,
    /// One or more comma-separated proxy URLs (scheme optional).
    ProxyUrls,
    /// An integer in this inclusive range.
    IntRange(i64, i64),
    /// A float in this inclusive range.
    FloatRange(f64, f64),
    /// Comma-separated CIDRs (a bare address means one host).
    Cidrs,
    /// Comma-separated items of lower-case letters, digits, `-` and `_`.
    WordList,
    /// Comma-separated subset of these words.
    SubsetOf(&'static [&'static str]),
    /// `X.Y.Z` of decimal numbers.
    KernelVersion,
    /// `user:bcrypt-hash[,user:bcrypt-hash...]`.
    BasicUsers,
    /// Base64 of PEM CA certificates (checked in `ca`).
    ContractsCa,
    /// A `postgres://` or `postgresql://` URI.
    PostgresUri,
    /// An S3 endpoint: `host[:port]` or an http(s) URL.
    S3Endpoint,
    /// An absolute filesystem path.
    AbsolutePath,
    /// A download URL template containing `{filename}`.
    UrlTemplate,
    /// Empty, or a boolean spelled as a string (`true`, `false`, `1`, `0`).
    BoolString,
    /// A port: 0 (off) or 1–65535 other than the public port.
    AdminPort,
    /// A Juju secret URI.
    SecretUri,
}

/// How an option reaches the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Env {
    /// `LP_` + the key upper-cased with `.` and `-` as `_`, when set and non-empty.
    KeyToEnv,
    /// Used by the charm itself; any effect on the environment is computed
    /// in `env` (secrets resolved, users merged, ports turned into addresses).
    Charm,
}

/// One option of `config.yaml`.
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    /// The option's name, exactly as operators type it.
    pub name: &'static str,
    /// Its Juju type.
    pub kind: Kind,
    /// The check its value must pass.
    pub check: Check,
    /// How it reaches the server.
    pub env: Env,
}

const fn opt(name: &'static str, kind: Kind, check: Check, env: Env) -> OptionSpec {
    OptionSpec {
        name,
        kind,
        check,
        env,
    }
}

use Check as C;
use Env::{Charm, KeyToEnv as Lp};
use Kind::{Bool as B, Float as F, Int as I, Secret as S, Str as T};

/// Log levels the server accepts (`warning` is an alias of `warn`).
pub const LOG_LEVELS: &[&str] = &[
    "debug", "info", "warn", "warning", "error", "dpanic", "panic", "fatal",
];
/// Patch storage backends; `file` is the legacy spelling of `filesystem`.
pub const STORAGE_TYPES: &[&str] = &["filesystem", "file", "s3", "swift", "postgres"];
/// The two ingress relations the charm can publish itself through.
pub const INGRESS_INTERFACES: &[&str] = &["legacy-nginx-route", "ingress"];
/// libpq `sslmode` values the server supports.
pub const SSL_MODES: &[&str] = &["disable", "prefer", "require", "verify-ca", "verify-full"];
/// JWT algorithms the server accepts.
pub const SIG_ALGS: &[&str] = &["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"];

const POSITIVE: Check = C::IntRange(1, i64::MAX);

/// Every option, sorted by name as in `config.yaml`.
pub const OPTIONS: &[OptionSpec] = &[
    opt("auth.basic.enabled", B, C::Any, Charm),
    opt("auth.basic.users", T, C::BasicUsers, Charm),
    opt("auth.basic.users-secret", S, C::SecretUri, Charm),
    opt("auth.oauth.allowed-email-ids", T, C::Any, Lp),
    opt("auth.oauth.audience", T, C::Any, Lp),
    opt("auth.oauth.enabled", B, C::Any, Lp),
    opt("auth.oauth.issuer", T, C::Any, Lp),
    opt("auth.oauth.jwks.refresh-interval", T, C::Duration, Lp),
    opt("auth.oauth.jwks.refresh-unknown-kid", B, C::Any, Lp),
    opt(
        "auth.oauth.jwks.refresh-unknown-kid-limit",
        T,
        C::Duration,
        Lp,
    ),
    opt(
        "auth.oauth.jwks.refresh-unknown-kid-max-wait",
        T,
        C::Duration,
        Lp,
    ),
    opt("auth.oauth.jwks.url", T, C::HttpUrl, Lp),
    opt("auth.oauth.proxy.enabled", B, C::Any, Lp),
    opt("auth.oauth.proxy.http", T, C::ProxyUrls, Lp),
    opt("auth.oauth.proxy.https", T, C::ProxyUrls, Lp),
    opt("auth.oauth.proxy.no-proxy", T, C::Any, Lp),
    opt("auth.oauth.sig-algs", T, C::SubsetOf(SIG_ALGS), Lp),
    opt("auth.sso.enabled", B, C::Any, Lp),
    opt("auth.sso.public-key", T, C::Any, Lp),
    opt("auth.sso.teams", T, C::Any, Lp),
    opt("auth.sso.url", T, C::HttpUrl, Lp),
    opt(
        "cloud_delay.default_delay_hours",
        I,
        C::IntRange(0, i64::MAX),
        Lp,
    ),
    opt("cloud_delay.enabled", B, C::Any, Lp),
    opt("contracts.ca", T, C::ContractsCa, Charm),
    opt("contracts.enabled", B, C::Any, Charm),
    opt("contracts.password", T, C::Any, Charm),
    opt("contracts.password-secret", S, C::SecretUri, Charm),
    opt("contracts.url", T, C::HttpUrl, Charm),
    opt("contracts.user", T, C::Any, Charm),
    opt("cve-lookup.auth-required", B, C::Any, Lp),
    opt("cve-lookup.enabled", B, C::Any, Lp),
    opt("cve-sync.enabled", B, C::Any, Lp),
    opt("cve-sync.interval", T, C::Duration, Lp),
    opt("cve-sync.proxy.enabled", B, C::Any, Lp),
    opt("cve-sync.proxy.http", T, C::ProxyUrls, Lp),
    opt("cve-sync.proxy.https", T, C::ProxyUrls, Lp),
    opt("cve-sync.proxy.no-proxy", T, C::Any, Lp),
    opt("cve-sync.source-url", T, C::HttpUrl, Charm),
    opt("cve-sync.timeout", T, C::Duration, Lp),
    opt(
        "database.connection-lifetime-max",
        T,
        C::DurationOrSeconds,
        Lp,
    ),
    opt("database.connection-pool-max", I, POSITIVE, Lp),
    opt("database.sslmode", T, C::OneOf(SSL_MODES), Charm),
    opt("database.work_mem", I, POSITIVE, Lp),
    opt("influx.bucket", T, C::Any, Lp),
    opt("influx.enabled", B, C::Any, Lp),
    opt("influx.organization", T, C::Any, Lp),
    opt("influx.ping_bucket", T, C::Any, Lp),
    opt("influx.token", T, C::Any, Lp),
    opt("influx.url", T, C::HttpUrl, Lp),
    opt("ingress-interface", T, C::OneOf(INGRESS_INTERFACES), Charm),
    opt("kpi-reports.enabled", T, C::BoolString, Lp),
    opt("kpi-reports.interval", T, C::Duration, Lp),
    opt("lsn-sync.enabled", B, C::Any, Lp),
    opt("lsn-sync.interval", T, C::Duration, Lp),
    opt("lsn-sync.proxy.enabled", B, C::Any, Lp),
    opt("lsn-sync.proxy.http", T, C::ProxyUrls, Lp),
    opt("lsn-sync.proxy.https", T, C::ProxyUrls, Lp),
    opt("lsn-sync.proxy.no-proxy", T, C::Any, Lp),
    opt("lsn-sync.source-url", T, C::HttpUrl, Charm),
    opt("lsn-sync.timeout", T, C::Duration, Lp),
    opt(
        "machine-reports.database.cleanup-interval",
        T,
        C::Duration,
        Lp,
    ),
    opt(
        "machine-reports.database.cleanup-row-limit",
        I,
        POSITIVE,
        Lp,
    ),
    opt("machine-reports.database.enabled", B, C::Any, Lp),
    opt("machine-reports.database.retention-days", I, POSITIVE, Lp),
    opt("network-policy.admin-cidrs", T, C::Cidrs, Charm),
    opt("network-policy.enabled", B, C::Any, Charm),
    opt("network-policy.metrics-cidrs", T, C::Cidrs, Charm),
    opt("otel-metrics.enabled", B, C::Any, Lp),
    opt("otel-metrics.export-interval", T, C::Duration, Lp),
    opt("otel-metrics.export-timeout", T, C::Duration, Lp),
    opt("otel-metrics.service-name", T, C::Any, Lp),
    opt("patch-blocklist.enabled", B, C::Any, Lp),
    opt("patch-blocklist.refresh-interval", T, C::Duration, Lp),
    opt("patch-cache.cache-size", I, POSITIVE, Lp),
    opt("patch-cache.cache-ttl", T, C::Duration, Lp),
    opt("patch-cache.enabled", B, C::Any, Lp),
    opt("patch-storage.filesystem-path", T, C::AbsolutePath, Lp),
    opt(
        "patch-storage.postgres-connection-string",
        T,
        C::PostgresUri,
        Charm,
    ),
    opt("patch-storage.s3-access-key", T, C::Any, Charm),
    opt("patch-storage.s3-bucket", T, C::Any, Lp),
    opt(
        "patch-storage.s3-credentials-secret",
        S,
        C::SecretUri,
        Charm,
    ),
    opt("patch-storage.s3-endpoint", T, C::S3Endpoint, Lp),
    opt("patch-storage.s3-region", T, C::Any, Lp),
    opt("patch-storage.s3-secret-key", T, C::Any, Charm),
    opt("patch-storage.s3-secure", B, C::Any, Lp),
    opt("patch-storage.swift-api-key", T, C::Any, Charm),
    opt("patch-storage.swift-auth-url", T, C::HttpUrl, Lp),
    opt("patch-storage.swift-container", T, C::Any, Lp),
    opt(
        "patch-storage.swift-credentials-secret",
        S,
        C::SecretUri,
        Charm,
    ),
    opt("patch-storage.swift-domain", T, C::Any, Lp),
    opt("patch-storage.swift-region", T, C::Any, Lp),
    opt("patch-storage.swift-tenant", T, C::Any, Lp),
    opt("patch-storage.swift-username", T, C::Any, Charm),
    opt("patch-storage.type", T, C::OneOf(STORAGE_TYPES), Charm),
    opt("patch-sync.architectures", T, C::WordList, Lp),
    opt("patch-sync.enabled", B, C::Any, Charm),
    opt("patch-sync.flavors", T, C::WordList, Lp),
    opt("patch-sync.interval", T, C::Duration, Lp),
    opt(
        "patch-sync.machine-count-strategy",
        T,
        C::OneOf(&["unit", "bucket"]),
        Lp,
    ),
    opt("patch-sync.minimum-kernel-version", T, C::KernelVersion, Lp),
    opt("patch-sync.proxy.enabled", B, C::Any, Lp),
    opt("patch-sync.proxy.http", T, C::ProxyUrls, Lp),
    opt("patch-sync.proxy.https", T, C::ProxyUrls, Lp),
    opt("patch-sync.proxy.no-proxy", T, C::Any, Lp),
    opt("patch-sync.send-machine-reports", B, C::Any, Lp),
    opt("patch-sync.sync-tiers", B, C::Any, Lp),
    opt("patch-sync.token", T, C::Any, Charm),
    opt("patch-sync.token-secret", S, C::SecretUri, Charm),
    opt("patch-sync.upstream-url", T, C::HttpUrl, Lp),
    opt("profiler.block_profile_rate", I, C::Any, Lp),
    opt("profiler.enabled", B, C::Any, Lp),
    opt("profiler.hostname", T, C::Any, Lp),
    opt("profiler.mutex_profile_fraction", I, C::Any, Lp),
    opt("profiler.profile_allocations", B, C::Any, Lp),
    opt("profiler.profile_blocks", B, C::Any, Lp),
    opt("profiler.profile_goroutines", B, C::Any, Lp),
    opt("profiler.profile_inuse", B, C::Any, Lp),
    opt("profiler.profile_mutexes", B, C::Any, Lp),
    opt("profiler.sample_rate", I, C::Any, Lp),
    opt("profiler.server_address", T, C::Any, Lp),
    opt("profiler.upload_rate", I, C::Any, Lp),
    opt("server.admin-port", I, C::AdminPort, Charm),
    opt("server.burst-limit", I, POSITIVE, Lp),
    opt("server.concurrency-limit", I, POSITIVE, Lp),
    opt("server.is-hosted", B, C::Any, Lp),
    opt("server.log-level", T, C::OneOf(LOG_LEVELS), Lp),
    opt("server.redirect-downloads", B, C::Any, Lp),
    opt("server.url-template", T, C::UrlTemplate, Charm),
    opt("timescale_db.connection_lifetime_max", T, C::Duration, Lp),
    opt(
        "timescale_db.connection_pool_max",
        I,
        C::IntRange(1, 1000),
        Lp,
    ),
    opt("timescale_db.enabled", B, C::Any, Lp),
    opt("timescale_db.flush_timeout", T, C::Duration, Lp),
    opt("timescale_db.work_mem", I, POSITIVE, Lp),
    opt("tracing.enabled", B, C::Any, Lp),
    opt("tracing.sample-rate", F, C::FloatRange(0.0, 1.0), Lp),
    opt("tracing.service-name", T, C::Any, Lp),
];

/// The option named `name`, if the charm has one.
pub fn spec(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS
        .binary_search_by(|o| o.name.cmp(name))
        .ok()
        .map(|i| &OPTIONS[i])
}

/// The server's environment variable for an option: `LP_` + the key
/// upper-cased with `.` and `-` turned into `_` (livepatch-server.md §3.1).
pub fn env_name(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 3);
    out.push_str("LP_");
    for c in key.chars() {
        match c {
            '.' | '-' => out.push('_'),
            c => out.push(c.to_ascii_uppercase()),
        }
    }
    out
}

/// Parses a Go-style duration (`300ms`, `1.5h`, `2h45m`, `0`). Units are
/// `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`; negative durations are refused
/// because no option of the server means anything by them.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("is empty".into());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.starts_with('-') {
        return Err(format!("{s:?} is negative"));
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0f64;
    let bad = || format!("{s:?} is not a duration such as 90s, 10m or 1h30m");
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += number * seconds_per_unit;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// An IP network in CIDR notation, host bits clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cidr(pub ipnet::IpNet);

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `fd00::/8` or a bare address (one host). A
    /// network with host bits set is refused rather than silently widened
    /// or narrowed: it is almost always a typo.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let net = match text.parse::<ipnet::IpNet>() {
            Ok(net) => net,
            Err(_) => match text.parse::<IpAddr>() {
                Ok(addr) => ipnet::IpNet::from(addr),
                Err(_)
                    if text.contains('/')
                        && text
                            .split('/')
                            .next()
                            .is_some_and(|a| a.parse::<IpAddr>().is_ok()) =>
                {
                    let max = if text.contains(':') { 128 } else { 32 };
                    return Err(format!("{text:?} has a prefix length outside 0-{max}"));
                }
                Err(_) => return Err(format!("{text:?} is not an IP address or CIDR")),
            },
        };
        if net.trunc() != net {
            return Err(format!(
                "{text:?} has host bits set; did you mean {}?",
                net.trunc()
            ));
        }
        Ok(Cidr(net))
    }

    /// Parses a comma-separated list; empty items are skipped.
    pub fn parse_list(text: &str) -> Result<Vec<Cidr>, String> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Cidr::parse)
            .collect()
    }
}

/// Checks an http(s) URL with a host.
pub fn check_http_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text.trim())
        .map_err(|e| format!("{text:?} is not a URL ({e}); expected http(s)://host[:port]/..."))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "{text:?} has scheme {:?}; expected http or https",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{text:?} has no host"));
    }
    Ok(url)
}

/// Checks one value against a [`Check`]; `Err` says what is wrong with it.
pub fn check_str(check: Check, value: &str) -> Result<(), String> {
    match check {
        Check::Any | Check::ContractsCa => Ok(()),
        Check::OneOf(allowed) => {
            if allowed.contains(&value) {
                Ok(())
            } else {
                Err(format!("{value:?} is not one of {}", allowed.join(", ")))
            }
        }
        Check::Duration => parse_go_duration(value).map(drop),
        Check::DurationOrSeconds => {
            if value.trim().parse::<u64>().is_ok() {
                Ok(())
            } else {
                parse_go_duration(value).map(drop)
            }
        }
        Check::HttpUrl => check_http_url(value).map(drop),
        Check::ProxyUrls => {
            for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let with_scheme = if item.contains("://") {
                    item.to_string()
                } else {
                    format!("http://{item}")
                };
                let url = url::Url::parse(&with_scheme)
                    .map_err(|e| format!("proxy {item:?} is not a URL ({e})"))?;
                if !matches!(url.scheme(), "http" | "https" | "socks5") {
                    return Err(format!(
                        "proxy {item:?} has scheme {:?}; expected http, https or socks5",
                        url.scheme()
                    ));
                }
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(format!("proxy {item:?} has no host"));
                }
            }
            Ok(())
        }
        Check::IntRange(..) | Check::FloatRange(..) | Check::AdminPort => Ok(()),
        Check::Cidrs => Cidr::parse_list(value).map(drop),
        Check::WordList => {
            for item in value.split(',').map(str::trim) {
                if item.is_empty() {
                    continue;
                }
                if !item
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
                {
                    return Err(format!(
                        "{item:?} may only hold lower-case letters, digits, '-' and '_'"
                    ));
                }
            }
            Ok(())
        }
        Check::SubsetOf(allowed) => {
            for item in value.split(',').map(str::trim) {
                if !allowed.contains(&item) {
                    return Err(format!("{item:?} is not one of {}", allowed.join(", ")));
                }
            }
            Ok(())
        }
        Check::KernelVersion => {
            let parts: Vec<&str> = value.trim().split('.').collect();
            if parts.len() == 3
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
            {
                Ok(())
            } else {
                Err(format!(
                    "{value:?} is not a kernel version X.Y.Z such as 5.15.0"
                ))
            }
        }
        Check::BasicUsers => crate::users::parse_users(value).map(drop),
        Check::PostgresUri => {
            let url = url::Url::parse(value.trim()).map_err(|e| {
                format!("is not a URI ({e}); expected postgresql://user:password@host:port/db")
            })?;
            if !matches!(url.scheme(), "postgres" | "postgresql") {
                return Err(format!(
                    "has scheme {:?}; expected postgresql://user:password@host:port/db",
                    url.scheme()
                ));
            }
            Ok(())
        }
        Check::S3Endpoint => {
            if value.contains("://") {
                check_http_url(value).map(drop)
            } else {
                url::Url::parse(&format!("http://{}", value.trim()))
                    .ok()
                    .filter(|u| u.host_str().is_some_and(|h| !h.is_empty()) && u.path() == "/")
                    .map(drop)
                    .ok_or_else(|| format!("{value:?} is neither host[:port] nor an http(s) URL"))
            }
        }
        Check::AbsolutePath => {
            if value.starts_with('/') && !value.split('/').any(|p| p == "..") {
                Ok(())
            } else {
                Err(format!("{value:?} is not an absolute path"))
            }
        }
        Check::UrlTemplate => {
            if !value.contains("{filename}") {
                return Err(format!(
                    "{value:?} does not contain {{filename}}, e.g. https://livepatch.example.com/v1/patches/{{filename}}"
                ));
            }
            check_http_url(&value.replace("{filename}", "livepatch.tar.bz2")).map(drop)
        }
        Check::BoolString => match value.trim().to_ascii_lowercase().as_str() {
            "" | "true" | "false" | "1" | "0" => Ok(()),
            _ => Err(format!("{value:?} is not true or false")),
        },
        Check::SecretUri => check_secret_uri(value),
    }
}

/// Checks the shape of a Juju secret URI: `secret:<id>` or
/// `secret://<model-uuid>/<id>`.
pub fn check_secret_uri(value: &str) -> Result<(), String> {
    let id = if let Some(rest) = value.strip_prefix("secret://") {
        rest.rsplit_once('/').map(|(_, id)| id)
    } else {
        value.strip_prefix("secret:")
    };
    match id {
        Some(id) if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()) => Ok(()),
        _ => Err(format!(
            "{value:?} is not a Juju secret URI such as secret:cs3b1l6f9n8s73b9r6dg (see `juju secrets`)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_has_no_duplicates() {
        for pair in OPTIONS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} must come before {}",
                pair[0].name,
                pair[1].name
            );
        }
    }

    #[test]
    fn env_names_follow_the_key_to_env_rule() {
        let check = |key: &str, expected: &str| assert_eq!(env_name(key), expected, "{key}");
        check("patch-sync.proxy.no-proxy", "LP_PATCH_SYNC_PROXY_NO_PROXY");
        check("timescale_db.work_mem", "LP_TIMESCALE_DB_WORK_MEM");
        check("server.url-template", "LP_SERVER_URL_TEMPLATE");
        check("kpi-reports.enabled", "LP_KPI_REPORTS_ENABLED");
    }

    #[test]
    fn go_durations_parse_like_go() {
        let check = |text: &str, expected: Option<f64>| {
            let got = parse_go_duration(text).ok().map(|d| d.as_secs_f64());
            assert_eq!(got, expected, "{text}");
        };
        check("0", Some(0.0));
        check("90s", Some(90.0));
        check("10m", Some(600.0));
        check("1h0m0s", Some(3600.0));
        check("1h30m", Some(5400.0));
        check("1.5h", Some(5400.0));
        check("300ms", Some(0.3));
        check("+5s", Some(5.0));
        check("", None);
        check("10", None);
        check("-1m", None);
        check("10 minutes", None);
        check("1d", None);
        check("m", None);
        check("1h 30m", None);
    }

    #[test]
    fn cidrs_accept_networks_and_hosts_and_refuse_host_bits() {
        let check = |text: &str, expected: Result<&str, &str>| {
            let got = Cidr::parse(text).map(|c| c.to_string());
            match (got, expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{text}"),
                (Err(err), Err(fragment)) => assert!(err.contains(fragment), "{text}: {err}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        };
        check("10.0.0.0/8", Ok("10.0.0.0/8"));
        check("192.168.1.7", Ok("192.168.1.7/32"));
        check("0.0.0.0/0", Ok("0.0.0.0/0"));
        check("fd00::/8", Ok("fd00::/8"));
        check("10.0.0.1/8", Err("did you mean 10.0.0.0/8"));
        check("10.0.0.0/33", Err("prefix length outside 0-32"));
        check("example.com/24", Err("not an IP address"));
    }

    #[test]
    fn each_check_accepts_good_values_and_names_the_problem_in_bad_ones() {
        let cases: &[(Check, &str, Option<&str>)] = &[
            (C::OneOf(LOG_LEVELS), "warning", None),
            (C::OneOf(LOG_LEVELS), "verbose", Some("not one of debug")),
            (C::DurationOrSeconds, "600", None),
            (C::DurationOrSeconds, "10m", None),
            (C::DurationOrSeconds, "ten", Some("not a duration")),
            (C::HttpUrl, "https://contracts.canonical.com", None),
            (C::HttpUrl, "ftp://x", Some("expected http or https")),
            (C::HttpUrl, "not a url", Some("is not a URL")),
            (C::ProxyUrls, "http://squid:3128,proxy2:8080", None),
            (C::ProxyUrls, "http://", Some("proxy")),
            (C::Cidrs, "10.0.0.0/8, 192.168.0.0/16", None),
            (C::Cidrs, "10.0.0.0/8,bogus", Some("bogus")),
            (C::WordList, "amd64,arm64", None),
            (C::WordList, "AMD64", Some("lower-case")),
            (C::SubsetOf(SIG_ALGS), "RS256,ES256", None),
            (
                C::SubsetOf(SIG_ALGS),
                "HS256",
                Some("\"HS256\" is not one of"),
            ),
            (C::KernelVersion, "5.15.0", None),
            (C::KernelVersion, "5.15", Some("X.Y.Z")),
            (C::PostgresUri, "postgresql://u:p@h:5432/db", None),
            (C::PostgresUri, "mysql://u:p@h/db", Some("scheme \"mysql\"")),
            (C::S3Endpoint, "minio.local:9000", None),
            (C::S3Endpoint, "https://s3.amazonaws.com", None),
            (C::S3Endpoint, "minio.local:9000/path", Some("neither")),
            (C::AbsolutePath, "/srv/patches", None),
            (C::AbsolutePath, "patches", Some("absolute")),
            (C::AbsolutePath, "/srv/../etc", Some("absolute")),
            (
                C::UrlTemplate,
                "https://lp.example.com/v1/patches/{filename}",
                None,
            ),
            (
                C::UrlTemplate,
                "https://lp.example.com/v1/patches/",
                Some("{filename}"),
            ),
            (
                C::UrlTemplate,
                "lp.example.com/{filename}",
                Some("not a URL"),
            ),
            (C::BoolString, "", None),
            (C::BoolString, "TRUE", None),
            (C::BoolString, "yes", Some("not true or false")),
            (C::SecretUri, "secret:cs3b1l6f9n8s73b9r6dg", None),
            (
                C::SecretUri,
                "secret://3fa85f64-5717-4562-b3fc-2c963f66afa6/cs3b1l6f9n8s73b9r6dg",
                None,
            ),
            (C::SecretUri, "my-secret", Some("not a Juju secret URI")),
        ];
        for (check, value, expected) in cases {
            match (check_str(*check, value), expected) {
                (Ok(()), None) => {}
                (Err(e), Some(fragment)) => {
                    assert!(e.contains(fragment), "{value}: {e:?} lacks {fragment:?}")
                }
                (got, _) => panic!("{check:?} {value:?}: got {got:?}, expected {expected:?}"),
            }
        }
    }
}
