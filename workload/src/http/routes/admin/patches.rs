//! Patches: list with placements, streamed upload, promotion of a version to a tier, blocklist.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::refuse_under_sync_tiers;
use crate::domain::{self, PatchFilename, PatchVersion, TierName};
use crate::http::auth::Admin;
use crate::http::routes::rfc3339;
use crate::http::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, AppState};
use crate::storage::StorageError;
use crate::store::{PatchInfo, Registered};

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/patches", get(list).post(upload))
        .route("/v1/admin/patches/{version}/promote", post(promote))
        .route(
            "/v1/admin/patches/{version}/blocklist",
            put(blocklist).delete(unblocklist),
        )
}

#[derive(Serialize)]
pub(crate) struct PatchOut {
    version: String,
    filename: String,
    kernel: String,
    flavour: String,
    architecture: String,
    sha256: String,
    size: i64,
    tiers: Vec<String>,
    blocklisted: bool,
    released: String,
}

impl From<PatchInfo> for PatchOut {
    fn from(p: PatchInfo) -> Self {
        Self {
            version: p.version,
            filename: p.filename,
            kernel: p.kernel,
            flavour: p.flavour,
            architecture: p.architecture,
            sha256: p.sha256,
            size: p.size,
            tiers: p.tiers,
            blocklisted: p.blocklisted,
            released: rfc3339(p.released),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    tier: Option<String>,
    kernel: Option<String>,
    architecture: Option<String>,
}

#[derive(Serialize)]
struct ListResponse {
    patches: Vec<PatchOut>,
}

async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<ApiJson<ListResponse>> {
    let tier = q
        .tier
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(TierName::parse)
        .transpose()
        .map_err(|e| ApiError::invalid("tier", e))?;
    let architecture = q
        .architecture
        .as_deref()
        .filter(|a| !a.is_empty())
        .map(domain::parse_architecture)
        .transpose()
        .map_err(|e| ApiError::invalid("architecture", e))?;
    let kernel = q.kernel.as_deref().filter(|k| !k.is_empty());
    if let Some(k) = kernel {
        if !domain::Kernel::is_version(k) && domain::Kernel::parse_client(k).is_err() {
            return Err(ApiError::invalid(
                "kernel",
                "expected 5.15.0-107.117 or 5.15.0-107.117-generic",
            ));
        }
    }
    let patches = state
        .store
        .list_patches(tier.as_ref(), kernel, architecture)
        .await?;
    Ok(ApiJson(ListResponse {
        patches: patches.into_iter().map(PatchOut::from).collect(),
    }))
}

#[derive(Serialize)]
struct Uploaded {
    filename: String,
    version: String,
    sha256: String,
    size: u64,
}

async fn upload(
    State(state): State<AppState>,
    admin: Admin,
    request: Request,
) -> ApiResult<Response> {
    refuse_under_sync_tiers(&state, "patch placement")?;
    let headers = request.headers();
    let raw_name = headers
        .get("x-patch-filename")
        .ok_or_else(|| ApiError::invalid("X-Patch-Filename", "the header is required"))?
        .to_str()
        .map_err(|_| ApiError::invalid("X-Patch-Filename", "not ASCII"))?;
    let name =
        PatchFilename::parse(raw_name).map_err(|e| ApiError::invalid("X-Patch-Filename", e))?;
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !matches!(
        content_type,
        "application/x-bzip2" | "application/octet-stream"
    ) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "expected Content-Type application/x-bzip2, got {content_type:?}"
        )));
    }
    let limit = state.config.server.max_upload_size;
    let too_large = || {
        ApiError::TooLarge(format!(
            "the patch is larger than server.max-upload-size ({limit} bytes)"
        ))
    };
    if let Some(len) = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit {
            return Err(too_large());
        }
    }
    let body = request
        .into_body()
        .into_data_stream()
        .map(|r| r.map_err(std::io::Error::other))
        .boxed();
    let staged = state
        .storage
        .stage(body, limit)
        .await
        .map_err(|e| match e {
            StorageError::TooLarge { .. } => too_large(),
            other => ApiError::from(other),
        })?;
    let (sha256, size) = (staged.sha256().to_string(), staged.size());
    let out = Uploaded {
        filename: name.to_string(),
        version: name.version.to_string(),
        sha256: sha256.clone(),
        size,
    };
    // Decide under a lock on the name, so two uploads of one name cannot interleave.
    let _lock = state.store.lock_name(name.as_str()).await?;
    match state.store.file_meta(&name).await? {
        Some(existing) if existing.sha256 == sha256 => {
            staged.discard().await;
            return Ok((StatusCode::OK, ApiJson(out)).into_response());
        }
        Some(_) => {
            staged.discard().await;
            return Err(ApiError::Conflict(
                "patch-exists",
                format!(
                    "{} is already stored with another SHA-256: it cannot be replaced",
                    name.as_str()
                ),
            ));
        }
        None => {}
    }
    staged.publish(name.clone()).await.map_err(ApiError::from)?;
    match state.store.register_file(&name, &sha256, size as i64).await {
        Ok(Registered::Created | Registered::Same) => {}
        Ok(Registered::Conflict) => {
            return Err(ApiError::Conflict(
                "patch-exists",
                format!("{} is already stored with another SHA-256", name.as_str()),
            ));
        }
        Err(e) => {
            // Leave nothing behind: the file is useless without its row.
            let _ = state.storage.delete(&name).await;
            return Err(e.into());
        }
    }
    tracing::info!(user = %admin.user, filename = %name, sha256 = %sha256, size, "patch uploaded");
    Ok((StatusCode::CREATED, ApiJson(out)).into_response())
}

fn version(raw: &str) -> ApiResult<PatchVersion> {
    PatchVersion::parse(raw).map_err(|e| ApiError::invalid("version", e))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteRequest {
    tier: String,
}

#[derive(Serialize)]
struct PromoteResponse {
    version: String,
    tier: String,
    placed: u64,
}

async fn promote(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<PromoteRequest>,
) -> ApiResult<ApiJson<PromoteResponse>> {
    refuse_under_sync_tiers(&state, "patch placement")?;
    let v = version(&raw)?;
    let tier = TierName::parse(&body.tier).map_err(|e| ApiError::invalid("tier", e))?;
    let placed = state.store.promote(&v, &tier).await?;
    tracing::info!(user = %admin.user, version = %v, tier = %tier, placed, "patch promoted");
    Ok(ApiJson(PromoteResponse {
        version: v.to_string(),
        tier: tier.to_string(),
        placed,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BlocklistRequest {
    reason: Option<String>,
}

#[derive(Serialize)]
struct BlocklistResponse {
    version: String,
    blocklisted: bool,
    reason: String,
}

async fn blocklist(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<BlocklistRequest>,
) -> ApiResult<ApiJson<BlocklistResponse>> {
    let v = version(&raw)?;
    let reason = body.reason.unwrap_or_default();
    if reason.chars().count() > 1000 || reason.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ApiError::invalid(
            "reason",
            "at most 1000 characters, no control characters",
        ));
    }
    state.store.blocklist(&v, &reason).await?;
    tracing::info!(user = %admin.user, version = %v, "patch blocklisted");
    Ok(ApiJson(BlocklistResponse {
        version: v.to_string(),
        blocklisted: true,
        reason,
    }))
}

async fn unblocklist(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let v = version(&raw)?;
    state.store.unblocklist(&v).await?;
    tracing::info!(user = %admin.user, version = %v, "patch removed from the blocklist");
    Ok(StatusCode::NO_CONTENT)
}
