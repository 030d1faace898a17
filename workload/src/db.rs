//! PostgreSQL connections: DSN parsing with every libpq `sslmode` (tokio-postgres itself only knows
//! disable/prefer/require), TLS over rustls with `sslrootcert` or the system trust store, and the
//! connection pool (size, connection lifetime, `work_mem`). SCRAM-SHA-256 (and channel binding) is
//! tokio-postgres's own.
//!
//! Nothing here ever prints a DSN: errors describe the target as user, host, port and database.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use tokio_postgres::config::SslMode as PgSslMode;

/// libpq's `sslmode` values (`allow` is treated as `prefer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it, no certificate check.
    Prefer,
    /// TLS, no certificate check (unless `sslrootcert` is given: then as verify-ca, like libpq).
    Require,
    /// TLS, chain checked, host name not.
    VerifyCa,
    /// TLS, chain and host name checked.
    VerifyFull,
}

/// A failure to parse or use a DSN. Never contains the DSN.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The DSN does not parse.
    #[error("invalid database connection string: {0}")]
    Dsn(String),
    /// The `sslrootcert` file is unreadable or holds no certificate.
    #[error("cannot load sslrootcert {path}: {reason}")]
    RootCert {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// No connection could be made.
    #[error("cannot connect to {target}: {reason}")]
    Connect {
        /// user@host:port/db
        target: String,
        /// Why (the driver's message; it never holds the password).
        reason: String,
    },
    /// The pool could not be built.
    #[error("cannot build the database pool: {0}")]
    Pool(String),
}

/// A parsed DSN: the driver's config plus the TLS settings it does not know.
#[derive(Clone)]
pub struct Dsn {
    /// tokio-postgres config (sslmode mapped to what it knows).
    pub pg: tokio_postgres::Config,
    /// The libpq sslmode.
    pub ssl_mode: SslMode,
    /// `sslrootcert` if given (`system` means the system store).
    pub ssl_root_cert: Option<String>,
}

impl std::fmt::Debug for Dsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dsn")
            .field("target", &self.describe())
            .field("ssl_mode", &self.ssl_mode)
            .finish()
    }
}

fn parse_ssl_mode(v: &str) -> Result<SslMode, DbError> {
    match v {
        "disable" => Ok(SslMode::Disable),
        "allow" | "prefer" => Ok(SslMode::Prefer),
        "require" => Ok(SslMode::Require),
        "verify-ca" => Ok(SslMode::VerifyCa),
        "verify-full" => Ok(SslMode::VerifyFull),
        other => Err(DbError::Dsn(format!(
            "sslmode {other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
        ))),
    }
}

/// Splits a key=value DSN into (key, raw token) pairs, honouring single quotes and backslashes.
fn kv_tokens(s: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '\'' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    tokens.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        tokens.push(cur);
    }
    tokens
}

fn unquote(v: &str) -> String {
    let v = v
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .unwrap_or(v);
    let mut out = String::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Dsn {
    /// Parses a `postgres(ql)://` URI or a `key=value` DSN.
    pub fn parse(dsn: &str) -> Result<Self, DbError> {
        let dsn = dsn.trim();
        let mut ssl_mode = None;
        let mut ssl_root_cert = None;
        let rest = if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
            let (base, query) = match dsn.split_once('?') {
                Some((b, q)) => (b, Some(q)),
                None => (dsn, None),
            };
            let mut kept = Vec::new();
            for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let v = percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned();
                match k {
                    "sslmode" => ssl_mode = Some(parse_ssl_mode(&v)?),
                    "sslrootcert" => ssl_root_cert = Some(v),
                    _ => kept.push(pair),
                }
            }
            if kept.is_empty() {
                base.to_string()
            } else {
                format!("{base}?{}", kept.join("&"))
            }
        } else {
            let mut kept = Vec::new();
            for token in kv_tokens(dsn) {
                let (k, v) = token
                    .split_once('=')
                    .map(|(k, v)| (k.trim(), v.trim()))
                    .unwrap_or((token.as_str(), ""));
                match k {
                    "sslmode" => ssl_mode = Some(parse_ssl_mode(&unquote(v))?),
                    "sslrootcert" => ssl_root_cert = Some(unquote(v)),
                    _ => kept.push(token.clone()),
                }
            }
            kept.join(" ")
        };
        let mut pg =
            tokio_postgres::Config::from_str(&rest).map_err(|e| DbError::Dsn(e.to_string()))?;
        let ssl_mode = ssl_mode.unwrap_or(SslMode::Prefer);
        pg.ssl_mode(match ssl_mode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            _ => PgSslMode::Require,
        });
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(Duration::from_secs(10));
        }
        if pg.get_application_name().is_none() {
            pg.application_name("livepatch-server");
        }
        Ok(Self {
            pg,
            ssl_mode,
            ssl_root_cert,
        })
    }

    /// `user@host:port/db`, for messages (never the password).
    pub fn describe(&self) -> String {
        let host = self
            .pg
            .get_hosts()
            .first()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".into());
        let port = self.pg.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{}@{host}:{port}/{}",
            self.pg.get_user().unwrap_or("?"),
            self.pg
                .get_dbname()
                .unwrap_or(self.pg.get_user().unwrap_or("?"))
        )
    }

    /// The TLS connector for this DSN's sslmode and root certificates.
    pub fn tls(&self) -> Result<tokio_postgres_rustls::MakeRustlsConnect, DbError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| DbError::Pool(e.to_string()))?;
        let explicit_root = self.ssl_root_cert.as_deref().filter(|r| *r != "system");
        let mode = match (self.ssl_mode, explicit_root) {
            // libpq: with a root certificate file present, require behaves as verify-ca.
            (SslMode::Require, Some(_)) => SslMode::VerifyCa,
            (SslMode::Require | SslMode::Prefer, None)
                if self.ssl_root_cert.as_deref() == Some("system") =>
            {
                SslMode::VerifyFull
            }
            (m, _) => m,
        };
        let config = match mode {
            SslMode::Disable | SslMode::Prefer | SslMode::Require => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
                .with_no_client_auth(),
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let roots = Arc::new(self.roots()?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| DbError::Pool(e.to_string()))?;
                if mode == SslMode::VerifyFull {
                    builder.with_webpki_verifier(webpki).with_no_client_auth()
                } else {
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
                        .with_no_client_auth()
                }
            }
        };
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
    }

    fn roots(&self) -> Result<RootCertStore, DbError> {
        let mut roots = RootCertStore::empty();
        match self.ssl_root_cert.as_deref() {
            Some(path) if path != "system" => {
                let err = |reason: String| DbError::RootCert {
                    path: path.to_string(),
                    reason,
                };
                let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
                roots = root_store_from_pem(&pem).map_err(err)?;
            }
            _ => {
                let loaded = rustls_native_certs::load_native_certs();
                for c in loaded.certs {
                    let _ = roots.add(c);
                }
                if roots.is_empty() {
                    return Err(DbError::RootCert {
                        path: "(system trust store)".into(),
                        reason: "no certificate found; set sslrootcert in the DSN".into(),
                    });
                }
            }
        }
        Ok(roots)
    }

    /// Opens one connection (used by the schema tool and health checks), spawning its driver.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, DbError> {
        let tls = self.tls()?;
        let (client, conn) = self.pg.connect(tls).await.map_err(|e| DbError::Connect {
            target: self.describe(),
            reason: error_chain(&e),
        })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "database connection closed");
            }
        });
        Ok(client)
    }
}

/// The full cause chain of an error on one line ("db error: FATAL: …: caused by …").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Pool settings from `database.*`.
#[derive(Clone, Copy, Debug)]
pub struct PoolSettings {
    /// `database.connection-pool-max`.
    pub max_size: usize,
    /// `database.connection-lifetime-max`.
    pub lifetime: Duration,
    /// `database.work-mem` (MB).
    pub work_mem_mb: Option<u32>,
}

/// Builds a pool (connections are opened lazily, on first use).
pub fn pool(dsn: &Dsn, settings: PoolSettings) -> Result<Pool, DbError> {
    let mut pg = dsn.pg.clone();
    if let Some(mb) = settings.work_mem_mb {
        let opts = pg
            .get_options()
            .map(|o| format!("{o} "))
            .unwrap_or_default();
        pg.options(format!("{opts}-c work_mem={mb}MB"));
    }
    let manager = Manager::from_config(
        pg,
        dsn.tls()?,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let lifetime = settings.lifetime;
    Pool::builder(manager)
        .max_size(settings.max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(10)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .pre_recycle(Hook::sync_fn(move |_, metrics| {
            // Replace old connections so a failover or a credential rotation is picked up.
            if !lifetime.is_zero() && metrics.age() > lifetime {
                Err(HookError::message(
                    "connection reached database.connection-lifetime-max",
                ))
            } else {
                Ok(())
            }
        }))
        .build()
        .map_err(|e| DbError::Pool(e.to_string()))
}

/// sslmode prefer/require without a root: encryption without authentication, as libpq does.
/// Handshake signatures are still checked, so the peer must hold the key of the certificate it sent.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// sslmode verify-ca: the chain must lead to a trusted root; the host name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Trust roots from the PEM text of an `sslrootcert` file: every certificate in it, at least
/// one, each one usable as a trust anchor. Shared by the server and the fuzz targets.
pub fn root_store_from_pem(pem: &[u8]) -> Result<RootCertStore, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate in the file".into());
    }
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots.add(c).map_err(|e| e.to_string())?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(dsn: &str, mode: SslMode, root: Option<&str>, described: &str) {
        let d = Dsn::parse(dsn).unwrap();
        assert_eq!(
            (
                d.ssl_mode,
                d.ssl_root_cert.as_deref(),
                d.describe().as_str()
            ),
            (mode, root, described),
            "{dsn}"
        );
        assert!(
            !format!("{d:?}").contains("pw"),
            "Debug must not show the password"
        );
    }

    #[test]
    fn dsns_keep_every_libpq_sslmode_in_both_syntaxes() {
        check(
            "postgresql://u:pw@db:5433/lp",
            SslMode::Prefer,
            None,
            "u@db:5433/lp",
        );
        check(
            "postgres://u:pw@db/lp?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
            SslMode::VerifyFull,
            Some("/etc/ca.pem"),
            "u@db:5432/lp",
        );
        check(
            "postgresql://u:pw@db/lp?sslmode=verify-ca&connect_timeout=3",
            SslMode::VerifyCa,
            None,
            "u@db:5432/lp",
        );
        check(
            "postgresql://u:pw@db/lp?sslmode=require",
            SslMode::Require,
            None,
            "u@db:5432/lp",
        );
        check(
            "postgresql://u:pw@db/lp?sslmode=disable",
            SslMode::Disable,
            None,
            "u@db:5432/lp",
        );
        check(
            "postgresql://u:pw@db/lp?sslmode=allow",
            SslMode::Prefer,
            None,
            "u@db:5432/lp",
        );
        check("host=db port=6000 user=u password='p w\\'x' dbname=lp sslmode=verify-full sslrootcert='/a b/ca.pem'", SslMode::VerifyFull, Some("/a b/ca.pem"), "u@db:6000/lp");
    }

    #[test]
    fn a_bad_sslmode_is_named_and_the_dsn_is_not_echoed() {
        let e = Dsn::parse("postgresql://u:secretpw@db/lp?sslmode=verify-everything")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("verify-everything") && e.contains("verify-full") && !e.contains("secretpw"),
            "{e}"
        );
        let e = Dsn::parse("postgresql://u:secretpw@db:notaport/lp")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("secretpw"), "{e}");
    }
}
