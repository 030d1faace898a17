//! Outbound HTTP: one `reqwest` client factory for every call this server makes to another
//! service (the sync upstream, Swift, S3), and the sync API client itself.
//!
//! - TLS: rustls with the ring provider, TLS 1.2 and 1.3 only, roots from the system store read
//!   at start-up (so a CA installed by `update-ca-certificates` is trusted; livepatch-server.md
//!   §14.6). No bundled roots.
//! - Proxies: `patch-sync.proxy.*` when enabled, else the lower-case `http_proxy`,
//!   `https_proxy`, `no_proxy` of the environment (what the charm exports from the Juju model);
//!   reqwest's own environment lookup is switched off so exactly these rules apply. No-proxy
//!   entries are host names (suffix match, leading dot optional), `*`, IP addresses, CIDRs, and
//!   any of these with `:port`.
//! - Transient failures (connect errors, timeouts, 429, 5xx) are retried with exponential backoff.
//! - Errors never carry the token (it only travels in a header) and pass through the log
//!   redaction before they reach a report, so proxy credentials in URLs are masked too.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::wire::{MachineReports, Snapshot};
use super::SyncFilter;
use crate::config::ProxyConfig;
use crate::secret::Secret;

/// Why a call to another service failed; every message is safe to show an operator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The client could not be built (bad proxy URL, no usable CA store).
    #[error("{0}")]
    Setup(String),
    /// The service refused our credentials (401/403).
    #[error("the upstream refused the sync token (HTTP {status}): {message}")]
    Unauthorized {
        /// 401 or 403.
        status: u16,
        /// Its message.
        message: String,
    },
    /// Any other HTTP error status.
    #[error("the upstream answered HTTP {status}: {message}")]
    Status {
        /// The status.
        status: u16,
        /// Its message.
        message: String,
    },
    /// Connecting or transferring failed (after retries).
    #[error("cannot reach the upstream: {0}")]
    Network(String),
    /// The TLS handshake failed (an untrusted or wrong certificate): not retried.
    #[error("cannot reach the upstream: {0} (is its CA in the system store? see update-ca-certificates)")]
    Tls(String),
    /// The answer was not what the API promises.
    #[error("the upstream sent an unexpected answer: {0}")]
    Protocol(String),
}

/// Where requests go through, resolved once from the configuration or the environment.
#[derive(Clone, Debug, Default)]
pub struct ProxyRules {
    /// Proxy for `http://` URLs.
    pub http: Option<String>,
    /// Proxy for `https://` URLs.
    pub https: Option<String>,
    /// Exceptions.
    pub no_proxy: NoProxy,
}

impl ProxyRules {
    /// `patch-sync.proxy.*` when enabled; otherwise the lower-case proxy variables of `env`.
    /// A value may be a comma list: its first entry is used.
    pub fn resolve(config: &ProxyConfig, env: &dyn Fn(&str) -> Option<String>) -> Self {
        let first = |v: Option<String>| {
            v.and_then(|v| {
                v.split(',')
                    .map(str::trim)
                    .find(|s| !s.is_empty())
                    .map(str::to_string)
            })
        };
        if config.enabled {
            Self {
                http: first(config.http.as_ref().map(|s| s.expose().clone())),
                https: first(config.https.as_ref().map(|s| s.expose().clone())),
                no_proxy: NoProxy::parse(&config.no_proxy),
            }
        } else {
            Self {
                http: first(env("http_proxy")),
                https: first(env("https_proxy")),
                no_proxy: NoProxy::parse(&env("no_proxy").unwrap_or_default()),
            }
        }
    }

    /// The proxy for a URL, if any.
    pub fn for_url(&self, url: &reqwest::Url) -> Option<&str> {
        let proxy = match url.scheme() {
            "http" => self.http.as_deref(),
            "https" => self.https.as_deref(),
            _ => None,
        }?;
        let host = url.host_str()?;
        let port = url.port_or_known_default().unwrap_or(0);
        (!self.no_proxy.matches(host, port)).then_some(proxy)
    }
}

/// A parsed no-proxy list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NoProxy {
    entries: Vec<NoProxyEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum NoProxyHost {
    Any,
    Domain(String),
    Net(IpNet),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct NoProxyEntry {
    host: NoProxyHost,
    port: Option<u16>,
}

impl NoProxy {
    /// Parses `example.com, .internal, 10.0.0.0/8, 192.168.1.7, localhost:8080, [::1]:443, *`.
    pub fn parse(list: &str) -> Self {
        let mut entries = Vec::new();
        for raw in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (host, port) = split_port(raw);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let host = if host == "*" {
                NoProxyHost::Any
            } else if let Ok(net) = host.parse::<IpNet>() {
                NoProxyHost::Net(net)
            } else if let Ok(ip) = host.parse::<IpAddr>() {
                NoProxyHost::Net(IpNet::from(ip))
            } else {
                NoProxyHost::Domain(
                    host.trim_start_matches("*.")
                        .trim_start_matches('.')
                        .to_ascii_lowercase(),
                )
            };
            entries.push(NoProxyEntry { host, port });
        }
        Self { entries }
    }

    /// Whether `host:port` bypasses the proxy.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        self.entries.iter().any(|e| {
            if e.port.is_some_and(|p| p != port) {
                return false;
            }
            match &e.host {
                NoProxyHost::Any => true,
                NoProxyHost::Net(net) => ip.is_some_and(|ip| net.contains(&ip)),
                NoProxyHost::Domain(d) => host == *d || host.ends_with(&format!(".{d}")),
            }
        })
    }
}

/// `host:port` → (host, port); IPv6 needs brackets for a port; CIDRs have none.
fn split_port(s: &str) -> (&str, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((h, p)) = rest.split_once("]:") {
            return (h, p.parse().ok());
        }
        return (s, None);
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (s, None),
        },
        _ => (s, None),
    }
}

/// The TLS configuration of every outbound call: system roots, TLS 1.2+, ring.
pub fn tls_config() -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for c in native.certs {
        let _ = roots.add(c);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ClientError::Setup(format!("cannot set up TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

/// A `reqwest` client with our TLS, the given proxy rules and timeouts suited to streaming
/// large bodies (a connect timeout and a read-idle timeout, no total deadline).
pub fn http_client(proxies: &ProxyRules) -> Result<reqwest::Client, ClientError> {
    let rules = proxies.clone();
    let proxy = reqwest::Proxy::custom(move |url| rules.for_url(url).map(str::to_string));
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config()?)
        .no_proxy()
        .proxy(proxy)
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent(concat!("livepatch-server/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ClientError::Setup(format!("cannot build the HTTP client: {}", chain(&e))))
}

/// An error and its causes, one line, redacted.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    crate::logging::redact(&crate::db::error_chain(e))
}

/// How often and how patiently transient failures are retried.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    /// Delay before the first retry; doubled each time.
    pub base_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 4,
            base_delay: Duration::from_millis(500),
        }
    }
}

/// Whether a failure is worth another try.
fn transient(e: &ClientError) -> bool {
    match e {
        ClientError::Network(_) => true,
        ClientError::Status { status, .. } => *status == 429 || *status >= 500,
        _ => false,
    }
}

/// Runs `call` with the retry policy.
pub async fn with_retry<T, F, Fut>(retry: Retry, mut call: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut delay = retry.base_delay;
    let mut attempt = 1;
    loop {
        match call().await {
            Err(e) if attempt < retry.attempts && transient(&e) => {
                tracing::warn!(attempt, error = %e, "upstream call failed; retrying");
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The sync API of an upstream server.
#[derive(Clone)]
pub struct UpstreamClient {
    http: reqwest::Client,
    base: String,
    token: Secret<String>,
    retry: Retry,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient")
            .field("base", &self.base)
            .field("token", &self.token)
            .finish()
    }
}

/// Turns an error response into a [`ClientError`], keeping the API's message when there is one.
async fn status_error(response: reqwest::Response) -> ClientError {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| text.trim().chars().take(200).collect());
    let message = crate::logging::redact(&message);
    if status == 401 || status == 403 {
        ClientError::Unauthorized { status, message }
    } else {
        ClientError::Status { status, message }
    }
}

fn network(e: reqwest::Error) -> ClientError {
    let text = chain(&e);
    // Retrying cannot fix a certificate.
    if text.contains("certificate") || text.contains("Certificate") {
        ClientError::Tls(text)
    } else {
        ClientError::Network(text)
    }
}

impl UpstreamClient {
    /// A client for `base` (the upstream's URL) authenticating with `token`.
    pub fn new(
        base: &str,
        token: Secret<String>,
        proxies: &ProxyRules,
        retry: Retry,
    ) -> Result<Self, ClientError> {
        let base = base.trim().trim_end_matches('/').to_string();
        reqwest::Url::parse(&base).map_err(|e| {
            ClientError::Setup(format!(
                "patch-sync.upstream-url {base:?} is not a URL ({e}): expected e.g. https://livepatch.example.com"
            ))
        })?;
        Ok(Self {
            http: http_client(proxies)?,
            base,
            token,
            retry,
        })
    }

    /// The upstream's URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.token.expose())
    }

    /// The snapshot of the token's tier, filtered.
    pub async fn snapshot(&self, filter: &SyncFilter) -> Result<Snapshot, ClientError> {
        let path = format!("/v1/sync/snapshot?{}", filter.query());
        with_retry(self.retry, || async {
            let response = self
                .request(reqwest::Method::GET, &path)
                .timeout(Duration::from_secs(120))
                .send()
                .await
                .map_err(network)?;
            if !response.status().is_success() {
                return Err(status_error(response).await);
            }
            let bytes = response.bytes().await.map_err(network)?;
            serde_json::from_slice(&bytes)
                .map_err(|e| ClientError::Protocol(format!("the snapshot is not valid JSON: {e}")))
        })
        .await
    }

    /// Tells the upstream who we are and how many machines we serve.
    pub async fn machine_reports(&self, body: &MachineReports) -> Result<(), ClientError> {
        with_retry(self.retry, || async {
            let response = self
                .request(reqwest::Method::POST, "/v1/sync/machine-reports")
                .timeout(Duration::from_secs(60))
                .json(body)
                .send()
                .await
                .map_err(network)?;
            if !response.status().is_success() {
                return Err(status_error(response).await);
            }
            Ok(())
        })
        .await
    }

    /// Starts downloading a patch file; the caller streams the body. Retries only the request
    /// itself; a failure mid-body is the caller's to retry.
    pub async fn download(&self, filename: &str) -> Result<reqwest::Response, ClientError> {
        let path = format!("/v1/sync/patches/{filename}");
        with_retry(self.retry, || async {
            let response = self
                .request(reqwest::Method::GET, &path)
                .send()
                .await
                .map_err(network)?;
            if !response.status().is_success() {
                return Err(status_error(response).await);
            }
            Ok(response)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(list: &str, host: &str, port: u16, expected: bool) {
        assert_eq!(
            NoProxy::parse(list).matches(host, port),
            expected,
            "{list:?} on {host}:{port}"
        );
    }

    #[test]
    fn no_proxy_takes_domains_cidrs_addresses_ports_and_star() {
        check("", "example.com", 443, false);
        check("example.com", "example.com", 443, true);
        check("example.com", "up.example.com", 443, true);
        check(".example.com", "up.example.com", 443, true);
        check("example.com", "badexample.com", 443, false);
        check("10.0.0.0/8", "10.1.2.3", 80, true);
        check("10.0.0.0/8", "11.1.2.3", 80, false);
        check("127.0.0.1", "127.0.0.1", 8080, true);
        check("localhost:8080", "localhost", 8080, true);
        check("localhost:8080", "localhost", 8081, false);
        check("127.0.0.1:9000", "127.0.0.1", 9001, false);
        check("[::1]:443", "[::1]", 443, true);
        check("::1", "::1", 80, true);
        check("fd00::/8", "fd12::1", 80, true);
        check("*", "anything.example", 1, true);
        check("a.com, b.com ,10.0.0.0/8", "b.com", 1, true);
    }

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_configured_proxy_wins_and_the_lower_case_environment_is_the_fallback() {
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        let e = env(&[
            ("http_proxy", "http://envproxy:3128"),
            ("https_proxy", "http://envproxy:3129, http://second:1"),
            ("no_proxy", "internal.example"),
        ]);
        let off = ProxyConfig {
            enabled: false,
            http: Some(Secret::new("http://cfg:1".into())),
            https: None,
            no_proxy: String::new(),
        };
        let rules = ProxyRules::resolve(&off, &e);
        assert_eq!(
            rules.for_url(&url("http://up.example/x")),
            Some("http://envproxy:3128")
        );
        assert_eq!(
            rules.for_url(&url("https://up.example/x")),
            Some("http://envproxy:3129")
        );
        assert_eq!(rules.for_url(&url("https://a.internal.example/")), None);
        let on = ProxyConfig {
            enabled: true,
            ..off
        };
        let rules = ProxyRules::resolve(&on, &e);
        assert_eq!(
            rules.for_url(&url("http://up.example/x")),
            Some("http://cfg:1")
        );
        assert_eq!(
            rules.for_url(&url("https://up.example/x")),
            None,
            "no https proxy configured"
        );
        // Upper-case variables are not ours to read (the charm exports lower case).
        let upper = env(&[("HTTP_PROXY", "http://upper:1")]);
        let rules = ProxyRules::resolve(
            &ProxyConfig {
                enabled: false,
                http: None,
                https: None,
                no_proxy: String::new(),
            },
            &upper,
        );
        assert_eq!(rules.for_url(&url("http://up.example/")), None);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_with_backoff_and_others_are_not() {
        let calls = std::sync::atomic::AtomicU32::new(0);
        let retry = Retry {
            attempts: 3,
            base_delay: Duration::from_secs(1),
        };
        let started = tokio::time::Instant::now();
        let r: Result<(), _> = with_retry(retry, || async {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(ClientError::Status {
                status: 503,
                message: "busy".into(),
            })
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(started.elapsed(), Duration::from_secs(3), "1 s then 2 s");
        calls.store(0, std::sync::atomic::Ordering::SeqCst);
        let r: Result<(), _> = with_retry(retry, || async {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(ClientError::Unauthorized {
                status: 401,
                message: "no".into(),
            })
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
