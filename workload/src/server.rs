//! Running the server: building the state from the configuration (pool, schema check, storage,
//! authenticator, patch cache, sync), binding listeners, serving them (plain or TLS, each
//! connection knowing its peer address), the leader's periodic jobs (report cleanup, sync,
//! blocklist refresh), and graceful shutdown — stop accepting, let
//! in-flight requests (downloads included) finish within `server.shutdown-timeout`, return.
//!
//! [`serve`] takes already-bound listeners and a shutdown future, so tests and benchmarks bind
//! port 0 and stop it when they like.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::auth::AdminAuth;
use crate::cache::{PatchCache, SystemClock};
use crate::config::{Config, ListenAddress, StorageType};
use crate::db::{self, Dsn, PoolSettings};
use crate::governor::Governor;
use crate::http::{AppState, BuildInfo, StateInner, Surface};
use crate::metrics::Metrics;
use crate::migrations::Status;
use crate::storage::fs::FilesystemStorage;
use crate::storage::postgres::PostgresStorage;
use crate::storage::s3::S3Storage;
use crate::storage::swift::SwiftStorage;
use crate::storage::PatchStorage;
use crate::store::Store;
use crate::sync::SyncService;

/// Why the server cannot start. Each message says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Bad or missing settings.
    #[error("{0}")]
    Config(String),
    /// The database is unreachable or its schema is not this build's.
    #[error("{0}")]
    Database(String),
    /// Patch storage cannot be used.
    #[error("{0}")]
    Storage(String),
    /// A listener cannot be bound, or TLS material cannot be loaded.
    #[error("{0}")]
    Listen(String),
}

/// Builds the application state: connects, checks the schema, opens storage.
pub async fn build_state(config: Config) -> Result<AppState, StartError> {
    let dsn_text = config.database.connection_string.as_ref().ok_or_else(|| {
        StartError::Config(
            "database.connection-string is not set (LP_DATABASE_CONNECTION_STRING)".into(),
        )
    })?;
    let dsn = Dsn::parse(dsn_text.expose())
        .map_err(|e| StartError::Config(format!("database.connection-string: {e}")))?;
    let settings = PoolSettings {
        max_size: config.database.pool_max,
        lifetime: config.database.lifetime_max,
        work_mem_mb: config.database.work_mem_mb,
    };
    let pool = db::pool(&dsn, settings).map_err(|e| StartError::Database(e.to_string()))?;
    let metrics = Metrics::new();
    let store = Store::new(pool.clone(), metrics.clone());
    let status = store.schema_status().await.map_err(|e| {
        StartError::Database(format!("cannot reach the database {}: {e}", dsn.describe()))
    })?;
    match status {
        Status::UpToDate => {}
        Status::Pending { current, latest } => {
            return Err(StartError::Database(format!(
                "the database schema is at version {current} but this server needs {latest}: run `livepatch-schema-tool upgrade --target livepatchdb` (with LP_DATABASE_CONNECTION_STRING set)"
            )))
        }
        Status::Newer { current, latest } => {
            return Err(StartError::Database(format!(
                "the database schema is at version {current}, newer than this server's {latest}: upgrade the server"
            )))
        }
    }
    let storage: Arc<dyn PatchStorage> = match config.patch_storage.kind {
        StorageType::Filesystem => Arc::new(
            FilesystemStorage::open(&config.patch_storage.filesystem_path)
                .map_err(|e| StartError::Storage(format!("patch-storage.filesystem-path: {e}")))?,
        ),
        StorageType::Postgres => {
            let separate = config
                .patch_storage
                .postgres_connection_string
                .as_ref()
                .filter(|s| s.expose() != dsn_text.expose());
            let storage_pool = match separate {
                Some(s) => {
                    let d = Dsn::parse(s.expose()).map_err(|e| {
                        StartError::Config(format!("patch-storage.postgres-connection-string: {e}"))
                    })?;
                    db::pool(&d, settings).map_err(|e| StartError::Storage(e.to_string()))?
                }
                None => pool.clone(),
            };
            Arc::new(
                PostgresStorage::open(storage_pool, separate.is_some())
                    .await
                    .map_err(|e| StartError::Storage(format!("postgres patch storage: {e}")))?,
            )
        }
        StorageType::S3 => Arc::new(
            S3Storage::open(&config.patch_storage.s3)
                .await
                .map_err(|e| StartError::Storage(format!("S3 patch storage: {e}")))?,
        ),
        StorageType::Swift => Arc::new(
            SwiftStorage::open(&config.patch_storage.swift)
                .await
                .map_err(|e| StartError::Storage(format!("Swift patch storage: {e}")))?,
        ),
    };
    let report_key = if config.machine_reports.enabled {
        Some(
            store
                .report_key()
                .await
                .map_err(|e| StartError::Database(e.to_string()))?,
        )
    } else {
        None
    };
    let governor = Governor::new(
        config.server.concurrency_limit,
        config.server.burst_limit,
        metrics.governor_overload.clone(),
    );
    let admin_auth = AdminAuth::new(
        config.auth.basic_enabled,
        &config.auth.basic_users,
        store.clone(),
    );
    let cache = config.patch_cache.enabled.then(|| {
        Arc::new(PatchCache::new(
            config.patch_cache.size as usize,
            config.patch_cache.ttl,
            Arc::new(SystemClock),
            metrics.cache.clone(),
        ))
    });
    let config = Arc::new(config);
    let (shutdown, stop) = tokio::sync::watch::channel(false);
    let sync = SyncService::new(
        config.clone(),
        store.clone(),
        storage.clone(),
        &|name| std::env::var(name).ok().filter(|v| !v.is_empty()),
        stop,
    );
    Ok(AppState(Arc::new(StateInner {
        config,
        store,
        storage,
        admin_auth,
        metrics,
        governor,
        build: BuildInfo::current(),
        report_key,
        cache,
        sync,
        shutdown,
    })))
}

/// Bound listeners: the public one, and the admin one when `server.admin-address` is set.
#[derive(Debug)]
pub struct Listeners {
    /// `server.server-address`.
    pub public: TcpListener,
    /// `server.admin-address`.
    pub admin: Option<TcpListener>,
}

async fn bind(addr: &ListenAddress, key: &str) -> Result<TcpListener, StartError> {
    let result = if addr.host.is_empty() {
        // Every interface: dual-stack where IPv6 exists, else IPv4.
        match TcpListener::bind(("::", addr.port)).await {
            Ok(l) => Ok(l),
            Err(_) => TcpListener::bind(("0.0.0.0", addr.port)).await,
        }
    } else {
        TcpListener::bind((addr.host.as_str(), addr.port)).await
    };
    result.map_err(|e| StartError::Listen(format!("cannot listen on {addr} ({key}): {e}")))
}

/// Binds the configured listeners.
pub async fn bind_listeners(config: &Config) -> Result<Listeners, StartError> {
    let public = bind(&config.server.server_address, "server.server-address").await?;
    let admin = match &config.server.admin_address {
        Some(a) => Some(bind(a, "server.admin-address").await?),
        None => None,
    };
    Ok(Listeners { public, admin })
}

/// The TLS acceptor for `server.tls-cert-file`/`tls-key-file` (TLS 1.2 and 1.3, HTTP/1.1).
pub fn tls_acceptor(config: &Config) -> Result<Option<tokio_rustls::TlsAcceptor>, StartError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert), Some(key)) = (&config.server.tls_cert_file, &config.server.tls_key_file)
    else {
        return Ok(None);
    };
    let err = |what: &str, path: &std::path::Path, e: String| {
        StartError::Listen(format!("cannot load {what} {}: {e}", path.display()))
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| err("server.tls-cert-file", cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err("server.tls-cert-file", cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(err(
            "server.tls-cert-file",
            cert,
            "no certificate in the file".into(),
        ));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| err("server.tls-key-file", key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| StartError::Listen(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| {
            StartError::Listen(format!(
                "server.tls-cert-file and server.tls-key-file do not match: {e}"
            ))
        })?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(server))))
}

/// Serves until `shutdown` completes, then drains in-flight requests for at most `drain`.
/// Returns true when everything drained in time.
pub async fn serve(
    state: AppState,
    listeners: Listeners,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send,
    drain: Duration,
) -> bool {
    let connections = TaskTracker::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut loops = Vec::new();
    let surfaces = match listeners.admin {
        Some(admin) => vec![(listeners.public, Surface::Public), (admin, Surface::Admin)],
        None => vec![(listeners.public, Surface::All)],
    };
    for (listener, surface) in surfaces {
        let router = crate::http::router(state.clone(), surface);
        loops.push(tokio::spawn(accept_loop(
            listener,
            router,
            tls.clone(),
            connections.clone(),
            stop_rx.clone(),
        )));
    }
    if state.config.server.is_leader && state.config.machine_reports.enabled {
        tokio::spawn(report_cleanup(state.clone(), stop_rx.clone()));
    }
    if state.config.server.is_leader {
        tokio::spawn(state.sync.clone().leader_loops());
    }
    if let Some(cache) = &state.cache {
        tokio::spawn(cache.clone().sweeper(stop_rx.clone()));
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    let _ = state.shutdown.send(true);
    for l in loops {
        let _ = l.await;
    }
    connections.close();
    tokio::time::timeout(drain, connections.wait())
        .await
        .is_ok()
}

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    connections: TaskTracker,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service =
            router
                .clone()
                .map_request(move |mut r: http::Request<hyper::body::Incoming>| {
                    r.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                    r
                });
        let service = TowerToHyperService::new(service);
        let tls = tls.clone();
        let mut conn_stop = stop.clone();
        connections.spawn(async move {
            match tls {
                None => serve_connection(TokioIo::new(stream), service, &mut conn_stop).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
                    let Ok(Ok(tls_stream)) = handshake.await else {
                        return;
                    };
                    serve_connection(TokioIo::new(tls_stream), service, &mut conn_stop).await;
                }
            }
        });
    }
}

/// Serves one HTTP/1.1 connection; on stop, finishes the request in flight (its whole body)
/// and closes instead of waiting for the next one.
async fn serve_connection<I, S>(io: I, service: S, stop: &mut tokio::sync::watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming> + Send,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as http_body::Body>::Data: Send,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// The leader deletes expired report rows, at most the row limit per run, every interval.
async fn report_cleanup(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let cfg = state.config.machine_reports.clone();
    let mut tick = tokio::time::interval(cfg.cleanup_interval.max(Duration::from_secs(1)));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        match state
            .store
            .cleanup_reports(cfg.retention_days, cfg.cleanup_row_limit)
            .await
        {
            Ok(n) if n > 0 => tracing::info!(deleted = n, "expired machine reports deleted"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "machine report cleanup failed"),
        }
    }
}
