//! Logging: JSON lines on stdout (`level`, `ts`, `caller`, `msg`, the request id and the event's
//! fields), with the redaction rules of livepatch-server.md §14.8 applied to every value written,
//! whatever code logged it. Secrets read from the configuration are registered here too, so their
//! literal values are masked wherever they turn up.

use std::io::Write;
use std::sync::{Arc, LazyLock, Mutex, RwLock};

use regex::Regex;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::config::LogLevel;
use crate::secret::REDACTED;

static URI_USERINFO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"([A-Za-z][A-Za-z0-9+.\-]*://)[^\s/@]*@\S*").expect("valid regex")
});
static AUTH_SCHEME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(Bearer|Basic|Macaroon)(\s+)[A-Za-z0-9\-._~+/=:]+").expect("valid regex")
});
static KEY_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)\b(password|passwd|secret|token|api[_\- ]?key|access[_\- ]?key|private[_\- ]?key|auth[_\- ]?key|api[_\- ]?secret|credentials|host)(["']?\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s,;&]+)"#,
    )
    .expect("valid regex")
});

/// Environment variables whose values are never logged (§14.8), plus the ones §14.8 names as
/// never-log without a redaction rule.
pub const SECRET_ENV: &[&str] = &[
    "LP_CONTRACTS_PASSWORD",
    "LP_PATCH_SYNC_TOKEN",
    "LP_PATCH_STORAGE_S3_SECRET_KEY",
    "LP_PATCH_STORAGE_S3_ACCESS_KEY",
    "LP_PATCH_STORAGE_SWIFT_API_KEY",
    "LP_PATCH_STORAGE_SWIFT_USERNAME",
    "LP_AUTH_BASIC_USERS",
    "LP_AUTH_SSO_PUBLIC_KEY",
    "LP_PATCH_STORAGE_POSTGRES_CONNECTION_STRING",
    "LP_DATABASE_CONNECTION_STRING",
    "LP_INFLUX_TOKEN",
    "LP_TIMESCALE_DB_CONNECTION_STRING",
];

static LITERALS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers a secret value so it is masked wherever it appears in a log line. Values shorter
/// than 4 characters are ignored (masking them would shred ordinary text). For a list such as
/// `auth.basic.users`, each comma-separated part is registered too.
pub fn register_secret(value: &str) {
    let mut lits = LITERALS.write().unwrap_or_else(|p| p.into_inner());
    let mut add = |v: &str| {
        let v = v.trim();
        if v.len() >= 4 && !lits.iter().any(|l| l == v) {
            lits.push(v.to_string());
        }
    };
    add(value);
    for part in value.split(',') {
        add(part);
        if let Some((_, rest)) = part.split_once(':') {
            add(rest);
        }
    }
    // Longest first, so a secret containing another is masked whole.
    lits.sort_by_key(|l| std::cmp::Reverse(l.len()));
}

/// Applies §14.8 to a string: URI userinfo and what follows, `Bearer`/`Basic`/`Macaroon` values,
/// `key=value` / `key: value` for secret-looking keys, and every registered secret.
pub fn redact(s: &str) -> String {
    let mut out = s.to_string();
    {
        let lits = LITERALS.read().unwrap_or_else(|p| p.into_inner());
        for l in lits.iter() {
            if out.contains(l.as_str()) {
                out = out.replace(l.as_str(), REDACTED);
            }
        }
    }
    let out = URI_USERINFO.replace_all(&out, format!("${{1}}{REDACTED}"));
    let out = AUTH_SCHEME.replace_all(&out, format!("${{1}}${{2}}{REDACTED}"));
    let out = KEY_VALUE.replace_all(&out, format!("${{1}}${{2}}{REDACTED}"));
    out.into_owned()
}

/// True for field names whose whole value is secret.
fn secret_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase().replace(['-', '.'], "_");
    [
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "access_key",
        "private_key",
        "auth_key",
        "credentials",
        "authorization",
        "dsn",
    ]
    .iter()
    .any(|k| n == *k || n.ends_with(&format!("_{k}")))
}

/// Where log lines go.
#[derive(Clone)]
pub enum Sink {
    /// The process's stdout.
    Stdout,
    /// An in-memory buffer (tests).
    Buffer(Arc<Mutex<Vec<u8>>>),
}

struct JsonLayer {
    sink: Sink,
}

#[derive(Default)]
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_string(),
            Value::String(format!("{value:?}")),
        );
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_string(), Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(
            field.name().to_string(),
            Value::String(crate::db::error_chain(value)),
        );
    }
}

const TS_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
);

impl<S> Layer<S> for JsonLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(fields) = ext.get_mut::<Fields>() {
                values.record(fields);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "level".into(),
            Value::String(meta.level().as_str().to_ascii_lowercase()),
        );
        line.insert(
            "ts".into(),
            Value::String(
                time::OffsetDateTime::now_utc()
                    .format(TS_FORMAT)
                    .unwrap_or_default(),
            ),
        );
        line.insert(
            "caller".into(),
            Value::String(format!(
                "{}:{}",
                meta.file().unwrap_or(meta.target()),
                meta.line().unwrap_or(0)
            )),
        );
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<Fields>() {
                    for (k, v) in &fields.0 {
                        line.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let security = meta.target() == "security";
        for (k, v) in fields.0 {
            let key = match k.as_str() {
                "message" => "msg".to_string(),
                // §4.4 spells these with characters Rust identifiers cannot hold.
                "r#type" => "type".to_string(),
                "trace_id" if security => "trace-id".to_string(),
                _ => k,
            };
            line.insert(key, v);
        }
        line.entry("msg")
            .or_insert_with(|| Value::String(String::new()));
        for (k, v) in line.iter_mut() {
            if let Value::String(s) = v {
                if secret_field(k) {
                    *s = REDACTED.to_string();
                } else {
                    *s = redact(s);
                }
            }
        }
        let mut text = serde_json::to_vec(&Value::Object(line)).unwrap_or_default();
        text.push(b'\n');
        match &self.sink {
            Sink::Stdout => {
                let _ = std::io::stdout().lock().write_all(&text);
            }
            Sink::Buffer(buf) => buf
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(&text),
        }
    }
}

fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    }
}

/// The filter: our crate at `level`, dependencies at warn, security events always (they are
/// emitted at info or warn, §4.4, and must not vanish with `log-level: error`).
pub fn filter(level: LogLevel) -> Targets {
    Targets::new()
        .with_default(LevelFilter::WARN.min(level_filter(level)))
        .with_target("workload", level_filter(level))
        .with_target("livepatch_server", level_filter(level))
        .with_target("security", LevelFilter::INFO)
}

/// Installs the JSON logger as the global subscriber (once per process; later calls are no-ops).
pub fn init(level: LogLevel, sink: Sink) {
    let layer = JsonLayer { sink }.with_filter(filter(level));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// A subscriber writing to `sink`, for tests that scope it with `tracing::subscriber::with_default`.
pub fn subscriber(level: LogLevel, sink: Sink) -> impl Subscriber + Send + Sync {
    tracing_subscriber::registry().with(JsonLayer { sink }.with_filter(filter(level)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        assert_eq!(redact(input), expected, "{input:?}");
    }

    #[test]
    fn redaction_follows_the_rules_of_the_charm() {
        check(
            "postgresql://user:pw@db:5432/lp?sslmode=require x",
            "postgresql://***REDACTED*** x",
        );
        check(
            "Authorization: Bearer abc.def-123",
            "Authorization: Bearer ***REDACTED***",
        );
        check("basic dXNlcjpwYXNz", "basic ***REDACTED***");
        check(
            "password=hunter22 user=bob",
            "password=***REDACTED*** user=bob",
        );
        check("api_key: 'xyz xyz' next", "api_key: ***REDACTED*** next");
        check(
            "access-key=AKIA1 secret: s3cr3t",
            "access-key=***REDACTED*** secret: ***REDACTED***",
        );
        check(
            "host=db.internal port=5432",
            "host=***REDACTED*** port=5432",
        );
        check("a tokenizer is fine", "a tokenizer is fine");
        check("nothing secret here", "nothing secret here");
    }

    #[test]
    fn registered_secrets_are_masked_anywhere() {
        register_secret(
            "alice:$2b$10$abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz1, bob:$2b$10$zzzz",
        );
        check("found $2b$10$zzzz in text", "found ***REDACTED*** in text");
        register_secret("sup3r-sync-token");
        check(
            "token value sup3r-sync-token leaked",
            "token value ***REDACTED*** leaked",
        );
    }

    #[test]
    fn log_lines_are_json_with_level_ts_caller_msg_and_span_fields() {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sub = subscriber(LogLevel::Info, Sink::Buffer(buf.clone()));
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("request", request_id = "r-1");
            let _g = span.enter();
            tracing::info!(
                dsn = "postgresql://u:p@h/d",
                password = "x",
                count = 3,
                "connecting to postgresql://u:p@h/d"
            );
            tracing::debug!("not shown at info");
        });
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let v: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["level"], "info");
        assert_eq!(v["request_id"], "r-1");
        assert_eq!(v["count"], 3);
        assert_eq!(v["msg"], "connecting to postgresql://***REDACTED***");
        assert_eq!(v["dsn"], REDACTED);
        assert_eq!(v["password"], REDACTED);
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
        assert!(v["caller"].as_str().unwrap().contains("logging.rs"));
    }
}
