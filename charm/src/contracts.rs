//! The resource-token exchange with the Ubuntu Pro contracts service
//! (livepatch-server.md §14.7), behind the `get-resource-token` action.
//!
//! Two HTTPS calls: the contract token buys a machine token for the
//! `livepatch-onprem` machine, which buys the `livepatch-onprem` resource
//! token. TLS trusts the system store plus `contracts.ca`; the model's proxy
//! settings are honoured; each call times out after 60 s. Any failure, and
//! any empty token, is an error: an empty token is never saved.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::Deserialize;

use crate::config::Sensitive;
use crate::desired::Proxies;

/// The machine id the on-prem server registers as.
pub const MACHINE_ID: &str = "livepatch-onprem";
/// Where the system's CA bundle lives on Ubuntu (the charm container's base).
pub const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// Facts about the host the exchange reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SystemInfo {
    /// `uname -m`.
    pub architecture: String,
    /// `uname -r`.
    pub kernel: String,
    /// `VERSION` of os-release.
    pub version: String,
    /// `VERSION_ID` of os-release.
    pub version_id: String,
    /// `VERSION_CODENAME` of os-release.
    pub version_codename: String,
}

impl SystemInfo {
    /// Reads the charm container's os-release and kernel.
    pub fn current() -> SystemInfo {
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        let field = |key: &str| {
            os_release
                .lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(|v| v.trim().trim_matches('"').to_string())
                .unwrap_or_default()
        };
        SystemInfo {
            architecture: std::env::consts::ARCH.to_string(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            version: field("VERSION"),
            version_id: field("VERSION_ID"),
            version_codename: field("VERSION_CODENAME"),
        }
    }
}

/// How to reach the contracts service.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// `contracts.url`.
    pub url: String,
    /// `contracts.ca` as PEM, trusted besides the system store.
    pub ca_pem: Option<String>,
    /// The model's proxies.
    pub proxies: Proxies,
    /// The host facts sent in the first call.
    pub system: SystemInfo,
    /// Timeout of each call.
    pub timeout: Duration,
    /// Extra CA bundle files to read (tests point this at nothing, so only
    /// `ca_pem` is trusted).
    pub system_bundles: Vec<String>,
}

/// Why the exchange failed. Messages follow the previous charm's texts, with
/// the reason after a colon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeError {
    /// The client could not be built (bad proxy URL, bad CA).
    #[error("cannot fetch the resource token: {0}")]
    Setup(String),
    /// The first call failed or returned no machine token.
    #[error("cannot fetch the resource token: failed to fetch the machine token: {0}")]
    MachineToken(String),
    /// The second call failed or returned no resource token.
    #[error("cannot fetch the resource token: failed to fetch the resource token: {0}")]
    ResourceToken(String),
}

#[derive(Deserialize)]
struct MachineTokenReply {
    #[serde(rename = "machineToken", default)]
    machine_token: String,
}

#[derive(Deserialize)]
struct ResourceTokenReply {
    #[serde(rename = "resourceToken", default)]
    resource_token: String,
}

impl Exchange {
    /// An exchange with the defaults: 60 s timeouts, the system store.
    pub fn new(url: &str, ca_pem: Option<String>, proxies: Proxies) -> Exchange {
        Exchange {
            url: url.trim_end_matches('/').to_string(),
            ca_pem,
            proxies,
            system: SystemInfo::current(),
            timeout: Duration::from_secs(60),
            system_bundles: SYSTEM_CA_BUNDLES.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn client(&self) -> Result<reqwest::Client, ExchangeError> {
        let mut roots = rustls::RootCertStore::empty();
        for path in &self.system_bundles {
            if let Ok(text) = std::fs::read(path) {
                for der in CertificateDer::pem_slice_iter(&text).flatten() {
                    // A bundle may hold certificates rustls cannot use; skip them.
                    let _ = roots.add(der);
                }
            }
        }
        if let Some(pem) = &self.ca_pem {
            for der in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let der = der.map_err(|e| ExchangeError::Setup(format!("contracts.ca: {e}")))?;
                roots
                    .add(der)
                    .map_err(|e| ExchangeError::Setup(format!("contracts.ca: {e}")))?;
            }
        }
        let tls = tls_config(roots).map_err(ExchangeError::Setup)?;

        // Only the model's proxies: the charm's own environment is not
        // consulted, so what the operator set in the model is what applies.
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .tls_backend_preconfigured(tls)
            .timeout(self.timeout)
            .user_agent(concat!(
                "livepatch-server-k8s-charm/",
                env!("CARGO_PKG_VERSION")
            ));
        let no_proxy = reqwest::NoProxy::from_string(&self.proxies.no_proxy);
        if !self.proxies.https.is_empty() {
            let proxy = reqwest::Proxy::https(&self.proxies.https)
                .map_err(|e| ExchangeError::Setup(format!("https proxy: {e}")))?
                .no_proxy(no_proxy.clone());
            builder = builder.proxy(proxy);
        }
        if !self.proxies.http.is_empty() {
            let proxy = reqwest::Proxy::http(&self.proxies.http)
                .map_err(|e| ExchangeError::Setup(format!("http proxy: {e}")))?
                .no_proxy(no_proxy);
            builder = builder.proxy(proxy);
        }
        builder
            .build()
            .map_err(|e| ExchangeError::Setup(e.to_string()))
    }

    /// Runs both calls and returns the resource token.
    pub async fn resource_token(&self, contract_token: &str) -> Result<Sensitive, ExchangeError> {
        let client = self.client()?;
        let body = serde_json::json!({
            "architecture": self.system.architecture,
            "hostType": "container",
            "machineId": MACHINE_ID,
            "os": {
                "distribution": self.system.version,
                "kernel": self.system.kernel,
                "release": self.system.version_id,
                "series": self.system.version_codename,
                "type": "Linux",
            },
        });
        let reply: MachineTokenReply = call(
            client
                .post(format!("{}/v1/context/machines/token", self.url))
                .bearer_auth(contract_token)
                .json(&body),
        )
        .await
        .map_err(ExchangeError::MachineToken)?;
        if reply.machine_token.is_empty() {
            return Err(ExchangeError::MachineToken(
                "the reply holds no machineToken".into(),
            ));
        }
        let reply: ResourceTokenReply = call(
            client
                .get(format!(
                    "{}/v1/resources/{MACHINE_ID}/context/machines/{MACHINE_ID}",
                    self.url
                ))
                .bearer_auth(&reply.machine_token),
        )
        .await
        .map_err(ExchangeError::ResourceToken)?;
        if reply.resource_token.is_empty() {
            return Err(ExchangeError::ResourceToken(
                "the reply holds no resourceToken".into(),
            ));
        }
        Ok(Sensitive(reply.resource_token))
    }
}

/// A rustls client configuration on the ring provider (the one crypto
/// backend of the workspace), TLS 1.2+, HTTP/1.1, trusting `roots`. Every
/// reqwest client of the charm is built with one, since reqwest is compiled
/// without a provider of its own.
pub fn tls_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

/// Sends a request and decodes a JSON reply; the error says what failed
/// without repeating any token.
async fn call<T: for<'de> Deserialize<'de>>(request: reqwest::RequestBuilder) -> Result<T, String> {
    let response = request.send().await.map_err(describe)?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("the contracts service answered {status}"));
    }
    let bytes = response.bytes().await.map_err(describe)?;
    serde_json::from_slice(&bytes).map_err(|e| format!("the reply is not the expected JSON ({e})"))
}

/// A transport error with its causes, since reqwest's top-level message
/// ("error sending request") says little on its own.
fn describe(e: reqwest::Error) -> String {
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    let mut out = e.without_url().to_string();
    for cause in causes {
        out.push_str(": ");
        out.push_str(&cause);
    }
    out
}
