//! `livepatch-admin`: the administrator's command line over the admin API (livepatch-server.md
//! §9, api.md). Two stages, as ripgrep does: clap validates what was typed ([`Cli`]), then
//! [`run`] does the I/O. Tables by default, `--format json` for scripts. Exit codes: 0 success,
//! 1 the server or the network said no (one clear line on stderr), 2 a usage error.
//!
//! `login` caches the token per server URL and user in `$XDG_CONFIG_HOME/livepatch-admin/`
//! (else `~/.config/livepatch-admin/`), file mode 0600; later commands use the last user who
//! logged in to that URL.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use futures_util::TryStreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "livepatch-admin",
    version,
    about = "Administers a Livepatch server: tiers, patches, tokens, sync, storage, reports."
)]
pub struct Cli {
    /// Server URL.
    #[arg(
        long,
        env = "LIVEPATCH_URL",
        default_value = "http://localhost:8080",
        global = true
    )]
    pub url: String,
    /// Extra CA to trust: a PEM file or the PEM text itself.
    #[arg(long, env = "LIVEPATCH_CA_CRT", hide_env_values = true, global = true)]
    pub ca: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table", global = true)]
    pub format: Format,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// The server's JSON, for scripts.
    Json,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in with a user of auth.basic.users and cache the token.
    Login {
        /// `user:password`.
        #[arg(short = 'a', long = "auth")]
        auth: String,
    },
    /// Tiers.
    #[command(subcommand)]
    Tier(TierCmd),
    /// Patches.
    #[command(subcommand)]
    Patch(PatchCmd),
    /// Mint a client auth token for a tier (shown once).
    AuthToken {
        /// A free label naming the token.
        id: String,
        /// The tier machines enrolled with it join.
        tier: String,
        /// Expiry (RFC 3339).
        #[arg(long)]
        valid_until: Option<String>,
    },
    /// Client auth tokens.
    #[command(subcommand)]
    AuthTokens(AuthTokensCmd),
    /// Sync tokens for downstream servers.
    #[command(subcommand)]
    SyncTokens(SyncTokensCmd),
    /// Patch sync from the upstream.
    #[command(subcommand)]
    Sync(SyncCmd),
    /// Patch storage.
    #[command(subcommand)]
    Storage(StorageCmd),
    /// Reports.
    #[command(subcommand)]
    Report(ReportCmd),
    /// Print a bcrypt hash of a password read from stdin, for auth.basic.users.
    HashPassword {
        /// bcrypt cost.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(4..=16))]
        cost: u32,
    },
}

/// `tier …`
#[derive(Debug, Subcommand)]
pub enum TierCmd {
    /// Tiers in promotion order.
    List,
    /// Add a tier (last, or after another).
    Add {
        /// Name.
        name: String,
        /// Insert after this tier.
        #[arg(long)]
        after: Option<String>,
    },
    /// Remove an unused tier.
    Remove {
        /// Name.
        name: String,
    },
}

/// `patch …`
#[derive(Debug, Subcommand)]
pub enum PatchCmd {
    /// List patch files.
    List {
        /// Only this tier.
        #[arg(long)]
        tier: Option<String>,
        /// Only this kernel.
        #[arg(long)]
        kernel: Option<String>,
        /// Only this architecture.
        #[arg(long)]
        architecture: Option<String>,
    },
    /// Upload patch files (named by the grammar).
    Upload {
        /// Files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Place every file of a version in a tier.
    Promote {
        /// Version, e.g. 107.1.
        version: String,
        /// Tier.
        tier: String,
    },
    /// Make every tier after FROM up to TO hold exactly FROM's patches.
    PromoteAll {
        /// Source tier.
        from: String,
        /// Last tier to update.
        to: String,
    },
    /// Never offer a version again.
    Blocklist {
        /// Version.
        version: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Offer a blocklisted version again.
    Unblocklist {
        /// Version.
        version: String,
    },
}

/// `auth-tokens …`
#[derive(Debug, Subcommand)]
pub enum AuthTokensCmd {
    /// List (never the secrets).
    List,
    /// Revoke one.
    Revoke {
        /// Its id.
        id: String,
    },
}

/// `sync-tokens …`
#[derive(Debug, Subcommand)]
pub enum SyncTokensCmd {
    /// Mint one (shown once).
    Add {
        /// Tier it syncs.
        tier: String,
        /// Name.
        name: String,
        /// Expiry (RFC 3339).
        #[arg(long)]
        valid_until: Option<String>,
    },
    /// List.
    List,
    /// Remove one.
    Remove {
        /// Name.
        name: String,
    },
}

/// `sync …`
#[derive(Debug, Subcommand)]
pub enum SyncCmd {
    /// Start a sync now.
    Trigger {
        /// Wait until it ends, showing progress; exit 1 when it fails.
        #[arg(long)]
        wait: bool,
    },
    /// Past sync runs and their failures.
    #[command(alias = "report")]
    Reports {
        /// At most this many (newest first).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

/// `storage …`
#[derive(Debug, Subcommand)]
pub enum StorageCmd {
    /// Files in storage and whether the database knows them.
    Patches,
    /// Register files found in storage.
    Refresh,
}

/// `report …`
#[derive(Debug, Subcommand)]
pub enum ReportCmd {
    /// Machines of a tier.
    Machines {
        /// Tier.
        tier: String,
        /// Patch version.
        patch_version: Option<String>,
        /// Patch state.
        patch_state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Machines per patch state for one version.
    PatchHealth {
        /// Tier.
        tier: String,
        /// Version.
        version: String,
    },
}

type ReqBody = BoxBody<Bytes, std::io::Error>;

struct Api {
    base: String,
    client: Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        ReqBody,
    >,
    auth: Option<String>,
}

/// A failure the server reported: printed as one line.
#[derive(Debug, thiserror::Error)]
#[error("{message} (HTTP {status} {code})")]
pub struct ServerError {
    /// Status.
    pub status: u16,
    /// The error code.
    pub code: String,
    /// The message.
    pub message: String,
}

fn roots(ca: Option<&str>) -> anyhow::Result<rustls::RootCertStore> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    if let Some(ca) = ca.filter(|c| !c.trim().is_empty()) {
        let pem = if ca.contains("-----BEGIN") {
            ca.to_string()
        } else {
            std::fs::read_to_string(ca).with_context(|| format!("cannot read the CA file {ca}"))?
        };
        let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .context("cannot parse the CA certificate")?;
        if certs.is_empty() {
            bail!("the CA holds no PEM certificate");
        }
        for c in certs {
            roots.add(c).context("cannot use the CA certificate")?;
        }
    }
    Ok(roots)
}

impl Api {
    fn new(url: &str, ca: Option<&str>) -> anyhow::Result<Self> {
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("the server URL must start with http:// or https://, got {base:?}");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("cannot set up TLS")?
            .with_root_certificates(roots(ca)?)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            base,
            client: Client::builder(TokioExecutor::new()).build(connector),
            auth: None,
        })
    }

    async fn send(
        &self,
        method: http::Method,
        path: &str,
        headers: &[(&str, String)],
        body: ReqBody,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(a) = &self.auth {
            req = req.header(http::header::AUTHORIZATION, a);
        }
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req.body(body).context("cannot build the request")?;
        let response =
            self.client.request(req).await.map_err(|e| {
                anyhow!("cannot reach {}: {}", self.base, crate::db::error_chain(&e))
            })?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .context("cannot read the response")?
            .to_bytes();
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        if status >= 400 {
            let code = value["error"]["code"]
                .as_str()
                .unwrap_or("error")
                .to_string();
            let message = value["error"]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| {
                    String::from_utf8_lossy(&bytes)
                        .trim()
                        .chars()
                        .take(200)
                        .collect()
                });
            return Err(ServerError {
                status,
                code,
                message,
            }
            .into());
        }
        Ok((status, value))
    }

    async fn json(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let (headers, body) = match body {
            Some(v) => (
                vec![("content-type", "application/json".to_string())],
                Bytes::from(serde_json::to_vec(&v)?),
            ),
            None => (vec![], Bytes::new()),
        };
        let body = Full::new(body).map_err(|never| match never {}).boxed();
        Ok(self.send(method, path, &headers, body).await?.1)
    }
}

fn config_dir() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(
            std::env::var_os("HOME")
                .ok_or_else(|| anyhow!("neither XDG_CONFIG_HOME nor HOME is set"))?,
        )
        .join(".config"),
    };
    Ok(base.join("livepatch-admin"))
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Credentials {
    /// URL → (current user, user → token).
    servers: BTreeMap<String, ServerCredentials>,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct ServerCredentials {
    current: String,
    tokens: BTreeMap<String, String>,
}

fn credentials_path() -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join("credentials.json"))
}

fn load_credentials() -> anyhow::Result<Credentials> {
    let path = credentials_path()?;
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| {
            format!(
                "cannot parse {}; delete it and log in again",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Credentials::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn save_credentials(c: &Credentials) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = credentials_path()?;
    let dir = path.parent().expect("has a parent");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    let tmp = dir.join(format!(".credentials.{}.tmp", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(&serde_json::to_vec_pretty(c)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Prints rows as aligned columns.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(headers.iter().map(|h| h.to_uppercase()).collect());
    for r in rows {
        out.push('\n');
        out.push_str(&line(r));
    }
    out
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(s).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn rows(v: &Value, key: &str, fields: &[&str]) -> Vec<Vec<String>> {
    v[key]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|item| fields.iter().map(|f| s(&item[*f])).collect())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs a parsed command line; returns what to print on stdout.
pub async fn run(cli: Cli) -> anyhow::Result<String> {
    if let Command::HashPassword { cost } = cli.command {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        let password = line.trim_end_matches(['\n', '\r']);
        if password.is_empty() {
            bail!("empty password: type it on stdin, e.g. `livepatch-admin hash-password < file`");
        }
        let hash = bcrypt::hash(password, cost).context("cannot hash the password")?;
        return Ok(hash);
    }
    let mut api = Api::new(&cli.url, cli.ca.as_deref())?;
    let json_out = cli.format == Format::Json;
    let mut creds = load_credentials()?;
    let url_key = api.base.clone();
    if !matches!(cli.command, Command::Login { .. }) {
        let entry = creds
            .servers
            .get(&url_key)
            .and_then(|s| s.tokens.get(&s.current));
        match entry {
            Some(t) => api.auth = Some(format!("Macaroon {t}")),
            None => bail!("not logged in to {url_key}: run `livepatch-admin login -a <user>:<password>` first"),
        }
    }
    use http::Method as M;
    let out = match cli.command {
        Command::HashPassword { .. } => unreachable!("handled above"),
        Command::Login { auth } => {
            let (user, _) = auth
                .split_once(':')
                .ok_or_else(|| anyhow!("--auth must be <user>:<password>"))?;
            use base64::Engine as _;
            api.auth = Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(&auth)
            ));
            let v = api.json(M::POST, "/v1/admin/login", None).await?;
            let token = v["token"]
                .as_str()
                .ok_or_else(|| anyhow!("the server sent no token"))?;
            let server = creds.servers.entry(url_key.clone()).or_default();
            server.current = user.to_string();
            server.tokens.insert(user.to_string(), token.to_string());
            save_credentials(&creds)?;
            if json_out {
                json!({"user": user, "url": url_key, "expires": v["expires"]}).to_string()
            } else {
                format!(
                    "logged in to {url_key} as {user} until {}",
                    s(&v["expires"])
                )
            }
        }
        Command::Tier(TierCmd::List) => {
            let v = api.json(M::GET, "/v1/admin/tiers", None).await?;
            if json_out {
                v.to_string()
            } else {
                table(
                    &["position", "name", "patches"],
                    rows(&v, "tiers", &["position", "name", "patches"]),
                )
            }
        }
        Command::Tier(TierCmd::Add { name, after }) => {
            let v = api
                .json(
                    M::POST,
                    "/v1/admin/tiers",
                    Some(json!({"name": name, "after": after})),
                )
                .await?;
            if json_out {
                v.to_string()
            } else {
                format!("tier {name} added at position {}", s(&v["position"]))
            }
        }
        Command::Tier(TierCmd::Remove { name }) => {
            api.json(M::DELETE, &format!("/v1/admin/tiers/{}", enc(&name)), None)
                .await?;
            if json_out {
                json!({"removed": name}).to_string()
            } else {
                format!("tier {name} removed")
            }
        }
        Command::Patch(PatchCmd::List {
            tier,
            kernel,
            architecture,
        }) => {
            let mut q = Vec::new();
            for (k, v) in [
                ("tier", tier),
                ("kernel", kernel),
                ("architecture", architecture),
            ] {
                if let Some(v) = v {
                    q.push(format!("{k}={}", enc(&v)));
                }
            }
            let v = api
                .json(M::GET, &format!("/v1/admin/patches?{}", q.join("&")), None)
                .await?;
            if json_out {
                v.to_string()
            } else {
                table(
                    &[
                        "version",
                        "kernel",
                        "flavour",
                        "architecture",
                        "tiers",
                        "blocklisted",
                        "size",
                        "filename",
                    ],
                    rows(
                        &v,
                        "patches",
                        &[
                            "version",
                            "kernel",
                            "flavour",
                            "architecture",
                            "tiers",
                            "blocklisted",
                            "size",
                            "filename",
                        ],
                    ),
                )
            }
        }
        Command::Patch(PatchCmd::Upload { files }) => {
            let mut results = Vec::new();
            for file in files {
                let name = file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .ok_or_else(|| anyhow!("{} has no usable file name", file.display()))?
                    .to_string();
                let f = tokio::fs::File::open(&file)
                    .await
                    .with_context(|| format!("cannot open {}", file.display()))?;
                let len = f.metadata().await?.len();
                let stream = tokio_util::io::ReaderStream::new(f).map_ok(http_body::Frame::data);
                let body = StreamBody::new(stream).boxed();
                let headers = [
                    ("content-type", "application/x-bzip2".to_string()),
                    ("x-patch-filename", name.clone()),
                    ("content-length", len.to_string()),
                ];
                let (status, v) = api
                    .send(M::POST, "/v1/admin/patches", &headers, body)
                    .await?;
                results.push((name, status, v));
            }
            if json_out {
                Value::Array(results.into_iter().map(|(_, _, v)| v).collect()).to_string()
            } else {
                results
                    .into_iter()
                    .map(|(n, st, v)| {
                        format!(
                            "{n}: {} (sha256 {})",
                            if st == 201 {
                                "uploaded"
                            } else {
                                "already stored"
                            },
                            s(&v["sha256"])
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
        Command::Patch(PatchCmd::Promote { version, tier }) => {
            let v = api
                .json(
                    M::POST,
                    &format!("/v1/admin/patches/{}/promote", enc(&version)),
                    Some(json!({"tier": tier})),
                )
                .await?;
            if json_out {
                v.to_string()
            } else {
                format!(
                    "patch {version} promoted to {tier} ({} file(s) placed)",
                    s(&v["placed"])
                )
            }
        }
        Command::Patch(PatchCmd::PromoteAll { from, to }) => {
            let v = api
                .json(
                    M::POST,
                    &format!("/v1/admin/tiers/{}/promote-all", enc(&from)),
                    Some(json!({"to": to})),
                )
                .await?;
            if json_out {
                v.to_string()
            } else {
                format!(
                    "{} placement(s) added from {from} through {to}",
                    s(&v["promoted"])
                )
            }
        }
        Command::Patch(PatchCmd::Blocklist { version, reason }) => {
            let v = api
                .json(
                    M::PUT,
                    &format!("/v1/admin/patches/{}/blocklist", enc(&version)),
                    Some(json!({"reason": reason})),
                )
                .await?;
            if json_out {
                v.to_string()
            } else {
                format!("patch {version} blocklisted")
            }
        }
        Command::Patch(PatchCmd::Unblocklist { version }) => {
            api.json(
                M::DELETE,
                &format!("/v1/admin/patches/{}/blocklist", enc(&version)),
                None,
            )
            .await?;
            if json_out {
                json!({"version": version, "blocklisted": false}).to_string()
            } else {
                format!("patch {version} removed from the blocklist")
            }
        }
        Command::AuthToken {
            id,
            tier,
            valid_until,
        } => {
            let v = api
                .json(
                    M::POST,
                    "/v1/admin/auth-token",
                    Some(json!({"id": id, "tier": tier, "valid-until": valid_until})),
                )
                .await?;
            if json_out {
                v.to_string()
            } else {
                s(&v["token"])
            }
        }
        Command::AuthTokens(AuthTokensCmd::List) => {
            let v = api.json(M::GET, "/v1/admin/auth-tokens", None).await?;
            if json_out {
                v.to_string()
            } else {
                table(
                    &["id", "tier", "created", "expires"],
                    rows(&v, "auth-tokens", &["id", "tier", "created", "expires"]),
                )
            }
        }
        Command::AuthTokens(AuthTokensCmd::Revoke { id }) => {
            api.json(
                M::DELETE,
                &format!("/v1/admin/auth-tokens/{}", enc(&id)),
                None,
            )
            .await?;
            if json_out {
                json!({"revoked": id}).to_string()
            } else {
                format!("auth token {id} revoked")
            }
        }
        Command::SyncTokens(SyncTokensCmd::Add {
            tier,
            name,
            valid_until,
        }) => {
            let v = api
                .json(
                    M::POST,
                    "/v1/admin/sync-tokens",
                    Some(json!({"tier": tier, "name": name, "valid-until": valid_until})),
                )
                .await?;
            if json_out {
                v.to_string()
            } else {
                s(&v["token"])
            }
        }
        Command::SyncTokens(SyncTokensCmd::List) => {
            let v = api.json(M::GET, "/v1/admin/sync-tokens", None).await?;
            if json_out {
                v.to_string()
            } else {
                table(
                    &["name", "tier", "created", "expires"],
                    rows(&v, "sync-tokens", &["name", "tier", "created", "expires"]),
                )
            }
        }
        Command::SyncTokens(SyncTokensCmd::Remove { name }) => {
            api.json(
                M::DELETE,
                &format!("/v1/admin/sync-tokens/{}", enc(&name)),
                None,
            )
            .await?;
            if json_out {
                json!({"removed": name}).to_string()
            } else {
                format!("sync token {name} removed")
            }
        }
        Command::Sync(SyncCmd::Trigger { wait }) => {
            let v = api.json(M::POST, "/v1/admin/sync", None).await?;
            let id = v["sync-id"]
                .as_str()
                .ok_or_else(|| anyhow!("the server sent no sync-id"))?
                .to_string();
            if !wait {
                return Ok(if json_out {
                    v.to_string()
                } else {
                    format!("sync {id} started; follow it with `livepatch-admin sync reports`")
                });
            }
            let run = wait_for_sync(&api, &id).await?;
            let out = if json_out {
                run.to_string()
            } else {
                format!(
                    "sync {id} {}: {} patch(es) downloaded ({} bytes), {} already present",
                    s(&run["state"]),
                    s(&run["patches-done"]),
                    s(&run["bytes-done"]),
                    s(&run["patches-skipped"])
                )
            };
            if run["state"] != "succeeded" {
                let mut why = format!("sync {id} failed: {}", s(&run["error"]));
                if let Some(f) = run["failures"].as_array() {
                    for item in f {
                        why.push_str(&format!(
                            "\n  {}: {}",
                            s(&item["filename"]),
                            s(&item["reason"])
                        ));
                    }
                }
                if json_out {
                    println!("{out}");
                }
                bail!(why);
            }
            out
        }
        Command::Sync(SyncCmd::Reports { limit }) => {
            let v = api
                .json(
                    M::GET,
                    &format!("/v1/admin/sync/reports?limit={limit}"),
                    None,
                )
                .await?;
            if json_out {
                v.to_string()
            } else {
                let mut out = table(
                    &[
                        "started", "trigger", "state", "done", "total", "skipped", "bytes", "error",
                    ],
                    rows(
                        &v,
                        "reports",
                        &[
                            "started",
                            "trigger",
                            "state",
                            "patches-done",
                            "patches-total",
                            "patches-skipped",
                            "bytes-done",
                            "error",
                        ],
                    ),
                );
                for r in v["reports"].as_array().into_iter().flatten() {
                    for f in r["failures"].as_array().into_iter().flatten() {
                        out.push_str(&format!(
                            "\n{} failed {}: {}",
                            s(&r["started"]),
                            s(&f["filename"]),
                            s(&f["reason"])
                        ));
                    }
                }
                out
            }
        }
        Command::Storage(StorageCmd::Patches) => {
            let v = api.json(M::GET, "/v1/admin/storage/patches", None).await?;
            if json_out {
                v.to_string()
            } else {
                table(
                    &["version", "registered", "size", "filename"],
                    rows(
                        &v,
                        "patches",
                        &["version", "registered", "size", "filename"],
                    ),
                )
            }
        }
        Command::Storage(StorageCmd::Refresh) => {
            let v = api.json(M::POST, "/v1/admin/storage/refresh", None).await?;
            if json_out {
                v.to_string()
            } else {
                format!(
                    "registered {} file(s); missing from storage: {}; invalid names: {}",
                    s(&v["registered"]),
                    if s(&v["missing-files"]).is_empty() {
                        "none".into()
                    } else {
                        s(&v["missing-files"])
                    },
                    if s(&v["invalid-names"]).is_empty() {
                        "none".into()
                    } else {
                        s(&v["invalid-names"])
                    },
                )
            }
        }
        Command::Report(ReportCmd::Machines {
            tier,
            patch_version,
            patch_state,
            limit,
        }) => {
            let mut q = vec![format!("tier={}", enc(&tier)), format!("limit={limit}")];
            if let Some(v) = patch_version {
                q.push(format!("patch-version={}", enc(&v)));
            }
            if let Some(v) = patch_state {
                q.push(format!("patch-state={}", enc(&v)));
            }
            let v = api
                .json(
                    M::GET,
                    &format!("/v1/admin/reports/machines?{}", q.join("&")),
                    None,
                )
                .await?;
            if json_out {
                v.to_string()
            } else {
                table(
                    &[
                        "machine-id",
                        "kernel",
                        "architecture",
                        "patch-version",
                        "patch-state",
                        "last-check-in",
                    ],
                    rows(
                        &v,
                        "machines",
                        &[
                            "machine-id",
                            "kernel",
                            "architecture",
                            "patch-version",
                            "patch-state",
                            "last-check-in",
                        ],
                    ),
                )
            }
        }
        Command::Report(ReportCmd::PatchHealth { tier, version }) => {
            let v = api
                .json(
                    M::GET,
                    &format!(
                        "/v1/admin/reports/patch-health?tier={}&patch-version={}",
                        enc(&tier),
                        enc(&version)
                    ),
                    None,
                )
                .await?;
            if json_out {
                v.to_string()
            } else {
                let rows = v
                    .as_object()
                    .map(|o| o.iter().map(|(k, n)| vec![k.clone(), s(n)]).collect())
                    .unwrap_or_default();
                table(&["patch-state", "machines"], rows)
            }
        }
    };
    Ok(out)
}

/// Polls a run until it ends: a progress bar on a terminal, one line per change otherwise.
async fn wait_for_sync(api: &Api, id: &str) -> anyhow::Result<Value> {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    let mut last = String::new();
    loop {
        let run = api
            .json(
                http::Method::GET,
                &format!("/v1/admin/sync/{}", enc(id)),
                None,
            )
            .await?;
        let done = run["patches-done"].as_u64().unwrap_or(0);
        let total = run["patches-total"].as_u64().unwrap_or(0);
        let bytes = run["bytes-done"].as_u64().unwrap_or(0);
        let line = progress_line(done, total, bytes, tty);
        if line != last {
            if tty {
                eprint!("\r{line}");
            } else {
                eprintln!("{line}");
            }
            last = line;
        }
        if run["state"] != "running" {
            if tty {
                eprintln!();
            }
            return Ok(run);
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// `[#########-----------] 12/50 patches, 12.0 MB` on a terminal; plain words otherwise.
fn progress_line(done: u64, total: u64, bytes: u64, bar: bool) -> String {
    let mb = bytes as f64 / 1e6;
    if !bar {
        return format!("{done}/{total} patches, {mb:.1} MB");
    }
    const WIDTH: u64 = 30;
    let filled = (done * WIDTH)
        .checked_div(total)
        .unwrap_or(WIDTH)
        .min(WIDTH);
    format!(
        "[{}{}] {done}/{total} patches, {mb:.1} MB",
        "#".repeat(filled as usize),
        "-".repeat((WIDTH - filled) as usize)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_shows_a_bar_on_a_terminal_and_words_elsewhere() {
        assert_eq!(
            progress_line(5, 10, 2_500_000, true),
            format!(
                "[{}{}] 5/10 patches, 2.5 MB",
                "#".repeat(15),
                "-".repeat(15)
            )
        );
        assert_eq!(
            progress_line(5, 10, 2_500_000, false),
            "5/10 patches, 2.5 MB"
        );
        assert!(progress_line(0, 0, 0, true).starts_with(&format!("[{}]", "#".repeat(30))));
    }

    #[test]
    fn tables_align_columns_under_upper_case_headers() {
        let t = table(
            &["name", "n"],
            vec![
                vec!["edge".into(), "10".into()],
                vec!["candidate".into(), "2".into()],
            ],
        );
        assert_eq!(t, "NAME       N\nedge       10\ncandidate  2");
    }

    #[test]
    fn the_command_line_parses_every_documented_command() {
        for args in [
            "login -a admin:pw",
            "tier list",
            "tier add early --after edge",
            "tier remove early",
            "patch list --tier edge",
            "patch upload a.tar.bz2 b.tar.bz2",
            "patch promote 107.1 stable",
            "patch promote-all edge stable",
            "patch blocklist 107.1 --reason bad",
            "patch unblocklist 107.1",
            "auth-token fleet stable --valid-until 2027-01-01T00:00:00Z",
            "auth-tokens list",
            "auth-tokens revoke fleet",
            "sync-tokens add stable down-1 --valid-until 2027-01-01T00:00:00Z",
            "sync-tokens list",
            "sync-tokens remove down-1",
            "storage patches",
            "storage refresh",
            "sync trigger",
            "sync trigger --wait",
            "sync reports --limit 5",
            "sync report",
            "report machines stable 107.1 applied",
            "report patch-health stable 107.1",
            "hash-password --cost 12",
            "--format json tier list",
        ] {
            let argv = std::iter::once("livepatch-admin").chain(args.split(' '));
            if let Err(e) = Cli::try_parse_from(argv) {
                panic!("{args}: {e}");
            }
        }
        assert!(Cli::try_parse_from(["livepatch-admin", "tier", "explode"]).is_err());
    }
}
