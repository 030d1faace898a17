//! The Server (sync) API (api.md): what downstream servers call, authenticated with a sync token
//! (`Authorization: Bearer`) whose tier scopes everything. `GET /v1/sync/snapshot` lists the
//! tier's patches (filtered by the downstream's `architectures`, `flavors` and
//! `minimum-kernel-version`) with every upstream tier holding each, plus the tier list, so a
//! downstream with `sync-tiers` can mirror both; `GET /v1/sync/patches/{filename}` serves a file
//! of that tier as `/v1/patches` does; `POST /v1/sync/machine-reports` records the downstream's
//! machine count and per-machine state.
//!
//! Unknown, revoked (deleted) and expired tokens get 401 with a `synctoken_authn_failed:*`
//! security event; a file outside the token's tier is 404, as if it did not exist.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use crate::domain::PatchFilename;
use crate::http::auth::bearer;
use crate::http::routes::patches::serve_file;
use crate::http::routes::{parse_time, rfc3339};
use crate::http::{parts_info, ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, AppState};
use crate::security::{appid, emit, RequestInfo, Severity};
use crate::store::DownstreamReport;
use crate::sync::wire::{MachineReports, Snapshot, SnapshotPatch, REPORTS_PER_REQUEST};
use crate::sync::SyncFilter;

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/sync/snapshot", get(snapshot))
        .route("/v1/sync/patches/{filename}", get(file))
        .route("/v1/sync/machine-reports", post(machine_reports))
}

/// A downstream server, authenticated by its sync token.
#[derive(Clone, Debug)]
pub struct Downstream {
    /// The token's name.
    pub token: String,
    /// The tier it scopes.
    pub tier_id: i32,
    /// That tier's name.
    pub tier: String,
    /// The request, for events.
    pub request: RequestInfo,
}

impl FromRequestParts<AppState> for Downstream {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let info = parts_info(parts);
        let started = std::time::Instant::now();
        let refuse = |event: &str, message: &str| {
            emit(Severity::Warn, appid::SYNC_AUTHN, event, message, &info);
            ApiError::Unauthorized(message.to_string())
        };
        let Some(token) = bearer(&parts.headers) else {
            return Err(refuse(
                "synctoken_authn_failed:no_credentials",
                "a sync token is required (Authorization: Bearer)",
            ));
        };
        let hash = crate::domain::token_hash(token);
        let row = state.store.sync_token_by_hash(&hash).await?;
        let Some(row) = row.filter(|r| crate::domain::token_matches(token, &r.hash)) else {
            return Err(refuse(
                "synctoken_authn_failed:invalid_token",
                "unknown or revoked sync token",
            ));
        };
        if row
            .expires
            .is_some_and(|e| e <= time::OffsetDateTime::now_utc())
        {
            return Err(refuse(
                "synctoken_authn_failed:expired",
                &format!(
                    "the sync token {} expired at {}: ask the upstream's administrator for a new one",
                    row.name,
                    rfc3339(row.expires.unwrap_or(time::OffsetDateTime::UNIX_EPOCH))
                ),
            ));
        }
        state
            .metrics
            .http_auth_duration
            .with_label_values(&["sync"])
            .observe(started.elapsed().as_secs_f64());
        state
            .metrics
            .http_authorizer_count
            .with_label_values(&["sync"])
            .inc();
        emit(
            Severity::Info,
            appid::SYNC_AUTHN,
            "synctoken_authn_success",
            &format!("sync token {} (tier {})", row.name, row.tier),
            &info,
        );
        Ok(Downstream {
            token: row.name,
            tier_id: row.tier_id,
            tier: row.tier,
            request: info,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SnapshotQuery {
    architectures: Option<String>,
    flavors: Option<String>,
    minimum_kernel_version: Option<String>,
}

async fn snapshot(
    State(state): State<AppState>,
    downstream: Downstream,
    ApiQuery(q): ApiQuery<SnapshotQuery>,
) -> ApiResult<ApiJson<Snapshot>> {
    let filter = SyncFilter::from_query(
        q.architectures.as_deref(),
        q.flavors.as_deref(),
        q.minimum_kernel_version.as_deref(),
    )
    .map_err(|(field, why)| ApiError::invalid(field, why))?;
    let tier = crate::domain::TierName::parse(&downstream.tier)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let tiers = state
        .store
        .list_tiers()
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    let patches = state
        .store
        .list_patches(Some(&tier), None, None)
        .await?
        .into_iter()
        .filter(|p| filter.matches(&p.kernel, &p.flavour, &p.architecture))
        .map(|p| SnapshotPatch {
            version: p.version,
            filename: p.filename,
            kernel: p.kernel,
            flavour: p.flavour,
            architecture: p.architecture,
            sha256: p.sha256,
            size: p.size.max(0) as u64,
            tiers: p.tiers,
            released: rfc3339(p.released),
            blocklisted: p.blocklisted,
        })
        .collect();
    Ok(ApiJson(Snapshot { tiers, patches }))
}

async fn file(
    State(state): State<AppState>,
    downstream: Downstream,
    method: Method,
    headers: HeaderMap,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<Response> {
    let name = PatchFilename::parse(&raw).map_err(|e| ApiError::invalid("filename", e))?;
    if !state
        .store
        .file_in_tier(name.as_str(), downstream.tier_id)
        .await?
    {
        return Err(ApiError::NotFound(format!(
            "there is no patch file {} in tier {}",
            name.as_str(),
            downstream.tier
        )));
    }
    serve_file(&state, &method, &headers, &name).await
}

/// Reports are bounded per request by the client; the body limit leaves room for that.
const REPORTS_BODY_LIMIT: usize = 4 << 20;

async fn machine_reports(
    State(state): State<AppState>,
    downstream: Downstream,
    request: Request,
) -> ApiResult<StatusCode> {
    let bytes = axum::body::to_bytes(request.into_body(), REPORTS_BODY_LIMIT)
        .await
        .map_err(|_| {
            ApiError::TooLarge(format!(
                "the body is larger than {REPORTS_BODY_LIMIT} bytes: send the reports in batches"
            ))
        })?;
    let body: MachineReports = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest("invalid-json", format!("invalid JSON body: {e}")))?;
    if body.deployment_id.is_empty() || body.deployment_id.chars().count() > 128 {
        return Err(ApiError::invalid(
            "deployment-id",
            "expected 1 to 128 characters (patch-sync.id of the downstream)",
        ));
    }
    if !matches!(body.strategy.as_str(), "unit" | "bucket") {
        return Err(ApiError::invalid("strategy", "expected unit or bucket"));
    }
    let machine_count = i32::try_from(body.machine_count)
        .map_err(|_| ApiError::invalid("machine-count", "too large"))?;
    if body.reports.len() > REPORTS_PER_REQUEST * 4 {
        return Err(ApiError::invalid(
            "reports",
            format!("at most {} per request", REPORTS_PER_REQUEST * 4),
        ));
    }
    let mut reports = Vec::with_capacity(body.reports.len());
    for r in body.reports {
        if r.machine_id.is_empty() || r.machine_id.chars().count() > 128 {
            return Err(ApiError::invalid(
                "reports.machine-id",
                "expected 1 to 128 characters",
            ));
        }
        reports.push(DownstreamReport {
            machine_id: r.machine_id,
            kernel: r.kernel,
            cpu_model: r.cpu_model,
            architecture: r.architecture,
            boot_time: parse_time("reports.boot-time", r.boot_time.as_deref())?,
            uptime_seconds: r.uptime_seconds,
            client_version: r.client_version,
            patch_state: r.patch_state,
            patch_version: r.patch_version,
        });
    }
    state
        .store
        .record_downstream(
            &body.deployment_id,
            &downstream.token,
            machine_count,
            &body.strategy,
            &reports,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
