//! The HTTP API of api.md: shared state, [`app`] (every route; what tests and benchmarks drive),
//! the per-listener routers, the one error type and its `{"error": {"code", "message"}}` shape,
//! extractor wrappers that report bad input in that shape, and the cross-cutting middleware
//! (request ids, metrics, the governor, network fences for admin routes and `/metrics`).
//!
//! Only this module (and its `routes`) knows the JSON wire format.

pub mod auth;
pub mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::auth::AdminAuth;
use crate::config::Config;
use crate::governor::Governor;
use crate::metrics::Metrics;
use crate::storage::PatchStorage;
use crate::store::{Store, StoreError};

/// Build identity for `/` and `/debug/info`.
#[derive(Clone, Debug)]
pub struct BuildInfo {
    /// Semver.
    pub version: &'static str,
    /// Git commit, if known at build time.
    pub commit: &'static str,
    /// Build date, if known.
    pub build_date: &'static str,
}

impl BuildInfo {
    /// This binary's identity.
    pub fn current() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION"),
            commit: option_env!("LIVEPATCH_BUILD_COMMIT").unwrap_or("unknown"),
            build_date: option_env!("LIVEPATCH_BUILD_DATE").unwrap_or("unknown"),
        }
    }
}

/// Everything a handler may use.
pub struct StateInner {
    /// The configuration.
    pub config: Arc<Config>,
    /// SQL.
    pub store: Store,
    /// Patch bytes.
    pub storage: Arc<dyn PatchStorage>,
    /// Admin authentication.
    pub admin_auth: AdminAuth,
    /// Metrics.
    pub metrics: Metrics,
    /// The governor.
    pub governor: Governor,
    /// Build identity.
    pub build: BuildInfo,
    /// HMAC key for machine ids in reports (present when reports are enabled).
    pub report_key: Option<Vec<u8>>,
    /// The patch cache, when `patch-cache.enabled`.
    pub cache: Option<Arc<crate::cache::PatchCache>>,
    /// Patch sync from the upstream.
    pub sync: crate::sync::SyncService,
    /// Set to true when the server stops: background jobs (sync runs, loops) end.
    pub shutdown: tokio::sync::watch::Sender<bool>,
}

/// Shared, cheaply cloned application state.
#[derive(Clone)]
pub struct AppState(pub Arc<StateInner>);

impl std::ops::Deref for AppState {
    type Target = StateInner;
    fn deref(&self) -> &StateInner {
        &self.0
    }
}

/// Which routes a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// Everything (one listener).
    All,
    /// Everything but `/v1/admin/*` (a separate admin listener exists).
    Public,
    /// `/v1/admin/*` plus health and metrics.
    Admin,
}

/// Every route, with all middleware: the single-listener server.
pub fn app(state: AppState) -> Router {
    router(state, Surface::All)
}

/// The router of one listener.
pub fn router(state: AppState, surface: Surface) -> Router {
    let mut r = Router::new().merge(routes::debug::router());
    if surface != Surface::Admin {
        r = r
            .merge(routes::client::router())
            .merge(routes::patches::router())
            .merge(routes::sync::router());
    }
    if surface != Surface::Public {
        r = r
            .merge(routes::admin::router())
            .merge(routes::sync_tokens::router());
    }
    r.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        record_metrics,
    ))
    .fallback(|| async { ApiError::NotFound("no such route".into()) })
    .layer(axum::middleware::from_fn_with_state(
        state.clone(),
        network_fence,
    ))
    .layer(axum::middleware::from_fn_with_state(
        state.governor.clone(),
        crate::governor::middleware,
    ))
    .layer(axum::middleware::from_fn(request_id))
    .with_state(state)
}

/// The request id of the current request (a UUIDv4, also in `X-Request-Id`).
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

async fn request_id(mut request: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().to_string();
    request.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = next.run(request).instrument(span).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let handler = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let method = request.method().clone();
    let response = next.run(request).await;
    state
        .metrics
        .http_request_duration
        .with_label_values(&[&handler, method.as_str(), response.status().as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

fn allowed(cidrs: &[IpNet], peer: Option<SocketAddr>) -> bool {
    if cidrs.is_empty() {
        return true;
    }
    // Without a peer address (an in-process test request) a fenced route stays closed.
    let Some(peer) = peer else { return false };
    let ip = peer.ip().to_canonical();
    cidrs.iter().any(|c| c.contains(&ip))
}

async fn network_fence(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let server = &state.config.server;
    let fenced = if path.starts_with("/v1/admin/") || path == "/v1/admin" {
        Some((&server.admin_allowed_cidrs, "server.admin-allowed-cidrs"))
    } else if path == "/metrics" {
        Some((
            &server.metrics_allowed_cidrs,
            "server.metrics-allowed-cidrs",
        ))
    } else {
        None
    };
    if let Some((cidrs, key)) = fenced {
        if !allowed(cidrs, peer) {
            let info = request_info(&request);
            crate::security::emit(
                crate::security::Severity::Warn,
                crate::security::appid::ADMIN_AUTHZ,
                "authz_failed:network",
                &format!(
                    "peer {} is not in {key}",
                    peer.map(|p| p.ip().to_string())
                        .unwrap_or_else(|| "unknown".into())
                ),
                &info,
            );
            return ApiError::Forbidden(format!("this address may not use {path}")).into_response();
        }
    }
    next.run(request).await
}

/// The request's method, path and id, for security events.
pub fn request_info(request: &Request) -> crate::security::RequestInfo {
    crate::security::RequestInfo {
        method: request.method().to_string(),
        path: request.uri().path().to_string(),
        trace_id: request
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default(),
    }
}

/// The same, from request parts.
pub fn parts_info(parts: &Parts) -> crate::security::RequestInfo {
    crate::security::RequestInfo {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        trace_id: parts
            .extensions
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default(),
    }
}

/// Every error the API answers with. Each maps to one status and a stable machine-readable
/// code; server-side failures are logged and shown as a generic message.
#[derive(Debug)]
pub enum ApiError {
    /// 400 with a specific code.
    BadRequest(&'static str, String),
    /// 401.
    Unauthorized(String),
    /// 403.
    Forbidden(String),
    /// 404.
    NotFound(String),
    /// 409 with a specific code.
    Conflict(&'static str, String),
    /// 413.
    TooLarge(String),
    /// 415.
    UnsupportedMediaType(String),
    /// 416 (the object's size, for `Content-Range`).
    RangeNotSatisfiable(u64),
    /// 422.
    Unprocessable(String),
    /// 503 from the governor.
    Overloaded,
    /// 503 `database-unavailable`: the database is down (the detail is logged).
    Unavailable(String),
    /// 503 `storage-unavailable`: patch storage is down (the detail is logged).
    StorageUnavailable(String),
    /// 507 `storage-full`: patch storage has no room left (the detail is logged).
    StorageFull(String),
    /// 500 (the detail is logged).
    Internal(String),
}

impl ApiError {
    /// 400 `invalid-request` naming the field.
    pub fn invalid(field: &str, why: impl std::fmt::Display) -> Self {
        ApiError::BadRequest("invalid-request", format!("{field}: {why}"))
    }
}

#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(serde::Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message): (StatusCode, &str, String) = match self {
            ApiError::BadRequest(code, m) => (StatusCode::BAD_REQUEST, code, m),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "unauthorized", m),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not-found", m),
            ApiError::Conflict(code, m) => (StatusCode::CONFLICT, code, m),
            ApiError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "too-large", m),
            ApiError::UnsupportedMediaType(m) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                m,
            ),
            ApiError::RangeNotSatisfiable(size) => {
                let mut r = error_response(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "range-not-satisfiable",
                    "the requested range is outside the file",
                );
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    r.headers_mut().insert(http::header::CONTENT_RANGE, v);
                }
                return r;
            }
            ApiError::Unprocessable(m) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", m),
            ApiError::Overloaded => (
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "the server is busy: retry in a second".to_string(),
            ),
            ApiError::Unavailable(detail) => {
                tracing::error!(error = %detail, "database unavailable");
                return unavailable(
                    "database-unavailable",
                    "the database is unavailable: retry shortly",
                );
            }
            ApiError::StorageUnavailable(detail) => {
                tracing::error!(error = %detail, "patch storage unavailable");
                return unavailable(
                    "storage-unavailable",
                    "patch storage is unavailable: retry shortly",
                );
            }
            ApiError::StorageFull(detail) => {
                tracing::error!(error = %detail, "patch storage full");
                (
                    StatusCode::INSUFFICIENT_STORAGE,
                    "storage-full",
                    "patch storage is full: nothing was stored; free space or grow the volume, then retry".to_string(),
                )
            }
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log".to_string(),
                )
            }
        };
        error_response(status, code, &message)
    }
}

/// 503 with `Retry-After`: a dependency is down, and clients should come back in a few seconds.
fn unavailable(code: &str, message: &str) -> Response {
    let mut r = error_response(StatusCode::SERVICE_UNAVAILABLE, code, message);
    r.headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::to_vec(&ErrorBody {
        error: ErrorDetail { code, message },
    })
    .unwrap_or_default();
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ApiError::NotFound(m),
            StoreError::Conflict(m) => ApiError::Conflict("conflict", m),
            StoreError::Invalid(m) => ApiError::Unprocessable(m),
            StoreError::Unavailable(m) => ApiError::Unavailable(m),
        }
    }
}

impl From<crate::storage::StorageError> for ApiError {
    fn from(e: crate::storage::StorageError) -> Self {
        use crate::storage::StorageError;
        match e {
            StorageError::TooLarge { limit } => ApiError::TooLarge(format!(
                "the patch is larger than server.max-upload-size ({limit} bytes)"
            )),
            StorageError::Body(m) => ApiError::invalid("body", m),
            StorageError::Full(m) => ApiError::StorageFull(m),
            other => ApiError::StorageUnavailable(other.to_string()),
        }
    }
}

/// A handler result.
pub type ApiResult<T> = Result<T, ApiError>;

/// Largest JSON body accepted (no request of the API comes near it).
const JSON_LIMIT: usize = 64 * 1024;

/// `Json` that answers bad input in the API's error shape, naming the field.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !content_type.is_empty() && !content_type.starts_with("application/json") {
            return Err(ApiError::UnsupportedMediaType(format!(
                "expected Content-Type application/json, got {content_type:?}"
            )));
        }
        let bytes = axum::body::to_bytes(request.into_body(), JSON_LIMIT)
            .await
            .map_err(|_| {
                ApiError::TooLarge(format!("the JSON body is larger than {JSON_LIMIT} bytes"))
            })?;
        let bytes = if bytes.is_empty() {
            bytes::Bytes::from_static(b"{}")
        } else {
            bytes
        };
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::BadRequest("invalid-json", format!("invalid JSON body: {e}")))
    }
}

impl<T: serde::Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A path segment, with rejections in the API's error shape (the handler parses it further).
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| ApiError::BadRequest("invalid-path", e.body_text()))
    }
}

/// A query string, with rejections in the API's error shape.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded_parse(q).map(ApiQuery)
    }
}

fn serde_urlencoded_parse<T: DeserializeOwned>(q: &str) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{q}")
            .parse()
            .map_err(|_| ApiError::invalid("query", "malformed"))?,
    )
    .map(|q| q.0)
    .map_err(|e| ApiError::BadRequest("invalid-query", e.body_text()))
}

/// Optional RFC 3339 timestamps in request bodies.
pub mod rfc3339_opt {
    pub use time::serde::rfc3339::option::{deserialize, serialize};
}
