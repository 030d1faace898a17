//! The reference Livepatch client (`livepatch-client`): what a machine does against the client API
//! (api.md, "Client API"), small enough to read in one sitting and strict enough to serve as the
//! operator's smoke test. It enrols with an auth token, checks in for its kernel, downloads the
//! offered patch and verifies its SHA-256 while streaming it to disk.
//!
//! TLS is rustls with the system roots plus an optional private CA (`--ca-file`). With
//! `tls_patch_download` on (the client's side of the server's `tls-patch-download` policy) a
//! download URL that is not `https://` is refused before any byte is fetched. Tokens live in
//! [`Secret`] and never appear in errors or `Debug`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::secret::Secret;

/// Why a client step failed. Each message names the step and what to check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The client could not be set up (bad CA file, bad URL).
    #[error("{0}")]
    Setup(String),
    /// The server could not be reached or the transfer broke.
    #[error("cannot {what}: {message}")]
    Transport {
        /// The step.
        what: &'static str,
        /// The cause, without credentials.
        message: String,
    },
    /// The server answered with an error status.
    #[error("cannot {what}: the server answered {status}: {message}")]
    Refused {
        /// The step.
        what: &'static str,
        /// The HTTP status.
        status: u16,
        /// The server's error message (its JSON `message`, or the start of the body).
        message: String,
    },
    /// The server's answer was not what the API promises.
    #[error("cannot {what}: unexpected reply: {message}")]
    Reply {
        /// The step.
        what: &'static str,
        /// What was wrong with it.
        message: String,
    },
    /// A plain-HTTP download URL while TLS downloads are required.
    #[error("refusing to download {url}: tls-patch-download is on and the URL is not https; serve patches over HTTPS (server.url-template) or turn tls-patch-download off")]
    InsecureDownload {
        /// The refused URL.
        url: String,
    },
    /// The downloaded bytes do not hash to what the server announced.
    #[error("the download of {filename} is corrupt: SHA-256 {actual}, the server announced {expected}; the file was removed")]
    Digest {
        /// The patch filename.
        filename: String,
        /// The announced digest.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// Writing the patch to disk failed.
    #[error("cannot write {path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        message: String,
    },
}

/// How to reach the server.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The server's base URL, e.g. `https://livepatch.example.com`.
    pub url: String,
    /// Extra CA certificates to trust (PEM), besides the system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Refuse download URLs that are not `https://`.
    pub tls_patch_download: bool,
    /// Total deadline per request.
    pub timeout: Option<Duration>,
}

/// The machine as the server sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// The machine id (path segment).
    pub id: String,
    /// The running kernel, `<version>-<flavour>`, e.g. `5.15.0-107.117-generic`.
    pub kernel: String,
    /// The architecture, e.g. `amd64`.
    pub architecture: String,
}

/// What enrolment returns.
#[derive(Debug)]
pub struct Enrolment {
    /// The machine token for later check-ins.
    pub machine_token: Secret<String>,
    /// The tier the machine joined.
    pub tier: String,
    /// True when the machine was new (201), false when it enrolled again (200).
    pub created: bool,
}

/// A patch the server offers at check-in.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Offer {
    /// The patch version, e.g. `107.1`.
    pub version: String,
    /// The patch filename.
    pub filename: String,
    /// Hex SHA-256 of the file.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Where to download it.
    pub url: String,
}

/// A verified download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Downloaded {
    /// Where the file is.
    pub path: PathBuf,
    /// Bytes written.
    pub size: u64,
    /// Its (verified) hex SHA-256.
    pub sha256: String,
}

/// A client for one server.
#[derive(Debug)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    tls_patch_download: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct EnrollReply {
    machine_token: String,
    tier: String,
}

#[derive(Deserialize)]
struct UpdatesReply {
    patch: Option<Offer>,
}

impl Client {
    /// A client for `options.url`, trusting the system roots and `options.ca_pem`.
    pub fn new(options: &Options) -> Result<Client, ClientError> {
        let base = options.url.trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&base)
            .map_err(|e| ClientError::Setup(format!("server URL {base:?} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ClientError::Setup(format!(
                "server URL {base:?} must start with http:// or https://"
            )));
        }
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_native_certs::load_native_certs().certs {
            // A system bundle may hold certificates rustls cannot use.
            let _ = roots.add(c);
        }
        if let Some(pem) = &options.ca_pem {
            let mut added = 0;
            for der in CertificateDer::pem_slice_iter(pem) {
                let der =
                    der.map_err(|e| ClientError::Setup(format!("the CA file is not PEM: {e}")))?;
                roots.add(der).map_err(|e| {
                    ClientError::Setup(format!("the CA file holds an unusable certificate: {e}"))
                })?;
                added += 1;
            }
            if added == 0 {
                return Err(ClientError::Setup(
                    "the CA file holds no certificate (expected PEM \"BEGIN CERTIFICATE\" blocks)"
                        .into(),
                ));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| ClientError::Setup(format!("cannot set up TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(Duration::from_secs(10))
            .timeout(options.timeout.unwrap_or(Duration::from_secs(300)))
            // A download redirected to plain HTTP must meet the same policy
            // as one offered as plain HTTP: follow no redirects silently.
            .redirect(redirect_policy(options.tls_patch_download))
            .user_agent(concat!("livepatch-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Setup(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            base,
            http,
            tls_patch_download: options.tls_patch_download,
        })
    }

    /// Enrols `machine` with an auth token (`PUT /v1/client/{id}`).
    pub async fn enrol(
        &self,
        machine: &Machine,
        auth_token: &Secret<String>,
        hostname: Option<&str>,
    ) -> Result<Enrolment, ClientError> {
        const WHAT: &str = "enrol the machine";
        let mut body = serde_json::json!({
            "architecture": machine.architecture,
            "kernel": machine.kernel,
            "client-version": concat!("livepatch-client/", env!("CARGO_PKG_VERSION")),
        });
        if let Some(h) = hostname {
            body["hostname"] = h.into();
        }
        let resp = self
            .http
            .put(self.url(&machine.id))
            .bearer_auth(auth_token.expose())
            .json(&body)
            .send()
            .await
            .map_err(|e| transport(WHAT, &e))?;
        let created = resp.status() == reqwest::StatusCode::CREATED;
        let reply: EnrollReply = json_reply(WHAT, resp).await?;
        if reply.machine_token.is_empty() {
            return Err(ClientError::Reply {
                what: WHAT,
                message: "the machine token is empty".into(),
            });
        }
        Ok(Enrolment {
            machine_token: Secret::new(reply.machine_token),
            tier: reply.tier,
            created,
        })
    }

    /// Checks in (`POST /v1/client/{id}/updates`); `None` when nothing applies (204).
    pub async fn check_in(
        &self,
        machine: &Machine,
        machine_token: &Secret<String>,
    ) -> Result<Option<Offer>, ClientError> {
        const WHAT: &str = "check in";
        let resp = self
            .http
            .post(format!("{}/updates", self.url(&machine.id)))
            .bearer_auth(machine_token.expose())
            .json(&serde_json::json!({
                "architecture": machine.architecture,
                "kernel": machine.kernel,
                "client-version": concat!("livepatch-client/", env!("CARGO_PKG_VERSION")),
            }))
            .send()
            .await
            .map_err(|e| transport(WHAT, &e))?;
        if resp.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let reply: UpdatesReply = json_reply(WHAT, resp).await?;
        Ok(reply.patch)
    }

    /// Downloads `offer` into `dir`, hashing while writing; the file appears under its final
    /// name only once its SHA-256 and size match the offer (a partial or corrupt download leaves
    /// nothing behind).
    pub async fn download(&self, offer: &Offer, dir: &Path) -> Result<Downloaded, ClientError> {
        const WHAT: &str = "download the patch";
        let url = self.download_url(offer)?;
        if offer.filename.is_empty()
            || offer.filename.contains('/')
            || offer.filename.starts_with('.')
        {
            return Err(ClientError::Reply {
                what: WHAT,
                message: format!("the patch filename {:?} is not a file name", offer.filename),
            });
        }
        let resp = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| transport(WHAT, &e))?;
        if resp.status().is_redirection() {
            let to = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            return Err(ClientError::InsecureDownload {
                url: to.to_string(),
            });
        }
        if !resp.status().is_success() {
            return Err(refused(WHAT, resp).await);
        }
        let path = dir.join(&offer.filename);
        let tmp = dir.join(format!(".{}.part", offer.filename));
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |e: std::io::Error| ClientError::Io {
                path: p,
                message: e.to_string(),
            }
        };
        let result = async {
            let mut file = tokio::fs::File::create(&tmp).await.map_err(io(&tmp))?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            let mut body = resp.bytes_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| transport(WHAT, &e))?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
                file.write_all(&chunk).await.map_err(io(&tmp))?;
            }
            file.sync_all().await.map_err(io(&tmp))?;
            let actual = hex(&hasher.finalize());
            if !actual.eq_ignore_ascii_case(&offer.sha256) || size != offer.size {
                return Err(ClientError::Digest {
                    filename: offer.filename.clone(),
                    expected: format!("{} ({} bytes)", offer.sha256, offer.size),
                    actual: format!("{actual} ({size} bytes)"),
                });
            }
            tokio::fs::rename(&tmp, &path).await.map_err(io(&path))?;
            Ok(Downloaded {
                path: path.clone(),
                size,
                sha256: actual,
            })
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    /// The offer's URL, resolved against the server and checked against the TLS policy.
    fn download_url(&self, offer: &Offer) -> Result<reqwest::Url, ClientError> {
        let base = reqwest::Url::parse(&format!("{}/", self.base))
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        let url = base.join(&offer.url).map_err(|e| ClientError::Reply {
            what: "download the patch",
            message: format!("the download URL {:?} is not a URL: {e}", offer.url),
        })?;
        if self.tls_patch_download && url.scheme() != "https" {
            return Err(ClientError::InsecureDownload {
                url: url.to_string(),
            });
        }
        Ok(url)
    }

    fn url(&self, machine_id: &str) -> String {
        let id: String =
            percent_encoding::utf8_percent_encode(machine_id, percent_encoding::NON_ALPHANUMERIC)
                .collect();
        format!("{}/v1/client/{id}", self.base)
    }
}

/// Redirects are followed only while they stay on HTTPS when TLS downloads are required.
fn redirect_policy(tls_only: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 5 {
            attempt.error("too many redirects")
        } else if tls_only && attempt.url().scheme() != "https" {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

fn transport(what: &'static str, e: &reqwest::Error) -> ClientError {
    let mut message = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        let t = c.to_string();
        if !message.contains(&t) {
            message.push_str(": ");
            message.push_str(&t);
        }
        cur = c.source();
    }
    ClientError::Transport { what, message }
}

async fn refused(what: &'static str, resp: reqwest::Response) -> ClientError {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| text.chars().take(200).collect());
    ClientError::Refused {
        what,
        status,
        message,
    }
}

async fn json_reply<T: serde::de::DeserializeOwned>(
    what: &'static str,
    resp: reqwest::Response,
) -> Result<T, ClientError> {
    if !resp.status().is_success() {
        return Err(refused(what, resp).await);
    }
    let bytes = resp.bytes().await.map_err(|e| transport(what, &e))?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Reply {
        what,
        message: format!("not the expected JSON: {e}"),
    })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(url: &str, tls_only: bool) -> Client {
        Client::new(&Options {
            url: url.into(),
            tls_patch_download: tls_only,
            ..Options::default()
        })
        .unwrap()
    }

    fn offer(url: &str) -> Offer {
        Offer {
            version: "107.1".into(),
            filename: "livepatch-5.15.0-107.117-generic-107.1-amd64.tar.bz2".into(),
            sha256: "00".into(),
            size: 1,
            url: url.into(),
        }
    }

    #[test]
    fn download_urls_resolve_against_the_server_and_obey_the_tls_policy() {
        fn check(server: &str, tls_only: bool, offered: &str, expected: Result<&str, ()>) {
            let got = client(server, tls_only).download_url(&offer(offered));
            match (got, expected) {
                (Ok(u), Ok(want)) => assert_eq!(u.as_str(), want, "{offered}"),
                (Err(ClientError::InsecureDownload { .. }), Err(())) => {}
                (got, want) => panic!("{server} {offered}: got {got:?}, want {want:?}"),
            }
        }
        check(
            "https://lp.example.com",
            true,
            "https://cdn.example.com/v1/patches/p.tar.bz2",
            Ok("https://cdn.example.com/v1/patches/p.tar.bz2"),
        );
        check(
            "https://lp.example.com/",
            true,
            "/v1/patches/p.tar.bz2",
            Ok("https://lp.example.com/v1/patches/p.tar.bz2"),
        );
        check(
            "https://lp.example.com",
            true,
            "http://cdn.example.com/p.tar.bz2",
            Err(()),
        );
        check(
            "http://lp.example.com",
            true,
            "/v1/patches/p.tar.bz2",
            Err(()),
        );
        check(
            "http://lp.example.com",
            false,
            "http://cdn.example.com/p.tar.bz2",
            Ok("http://cdn.example.com/p.tar.bz2"),
        );
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_clearly() {
        let err = Client::new(&Options {
            url: "https://lp.example.com".into(),
            ca_pem: Some(b"not a certificate".to_vec()),
            ..Options::default()
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("the CA file holds no certificate"),
            "{err}"
        );
    }

    #[test]
    fn a_server_url_must_be_http_or_https() {
        let err = Client::new(&Options {
            url: "ftp://lp.example.com".into(),
            ..Options::default()
        })
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("must start with http:// or https://"),
            "{err}"
        );
    }

    /// A one-route HTTP server answering every request with `body`.
    fn serve(body: &'static [u8]) -> u16 {
        use std::io::{BufRead, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(body);
            }
        });
        port
    }

    #[tokio::test]
    async fn a_download_is_kept_only_when_its_sha256_matches_the_offer() {
        let port = serve(b"patch bytes");
        let c = client(&format!("http://127.0.0.1:{port}"), false);
        let dir = tempfile::tempdir().unwrap();
        let mut o = offer("/v1/patches/p");
        o.size = 11;
        o.sha256 = "0".repeat(64);
        let err = c.download(&o, dir.path()).await.unwrap_err();
        assert!(matches!(err, ClientError::Digest { .. }), "{err}");
        assert!(err.to_string().contains("the file was removed"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        o.sha256 = hex(&Sha256::digest(b"patch bytes"));
        let got = c.download(&o, dir.path()).await.unwrap();
        assert_eq!(got.size, 11);
        assert_eq!(std::fs::read(&got.path).unwrap(), b"patch bytes");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn machine_tokens_do_not_print() {
        let e = Enrolment {
            machine_token: Secret::new("mt-very-secret".into()),
            tier: "stable".into(),
            created: true,
        };
        assert!(!format!("{e:?}").contains("mt-very-secret"));
    }
}
