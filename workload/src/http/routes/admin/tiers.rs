//! Tiers: list in promotion order, add (optionally after another), remove (refused while in use),
//! and promote-all between two tiers.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use serde::{Deserialize, Serialize};

use super::refuse_under_sync_tiers;
use crate::domain::TierName;
use crate::http::auth::Admin;
use crate::http::{ApiError, ApiJson, ApiPath, ApiResult, AppState};

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/tiers", get(list).post(add))
        .route("/v1/admin/tiers/{name}", delete(remove))
        .route("/v1/admin/tiers/{name}/promote-all", post(promote_all))
}

fn tier(field: &str, raw: &str) -> ApiResult<TierName> {
    TierName::parse(raw).map_err(|e| ApiError::invalid(field, e))
}

#[derive(Serialize)]
struct TierOut {
    name: String,
    position: i32,
    patches: i64,
}

#[derive(Serialize)]
struct ListResponse {
    tiers: Vec<TierOut>,
}

async fn list(State(state): State<AppState>, _admin: Admin) -> ApiResult<ApiJson<ListResponse>> {
    let tiers = state.store.list_tiers().await?;
    Ok(ApiJson(ListResponse {
        tiers: tiers
            .into_iter()
            .map(|t| TierOut {
                name: t.name,
                position: t.position,
                patches: t.patches,
            })
            .collect(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddRequest {
    name: String,
    after: Option<String>,
}

async fn add(
    State(state): State<AppState>,
    admin: Admin,
    ApiJson(body): ApiJson<AddRequest>,
) -> ApiResult<Response> {
    refuse_under_sync_tiers(&state, "the tier list")?;
    let name = tier("name", &body.name)?;
    let after = body
        .after
        .as_deref()
        .map(|a| tier("after", a))
        .transpose()?;
    state
        .store
        .add_tier(&name, after.as_ref())
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict(m) => ApiError::Conflict("tier-exists", m),
            other => other.into(),
        })?;
    tracing::info!(user = %admin.user, tier = %name, "tier added");
    let tiers = state.store.list_tiers().await?;
    let t = tiers
        .into_iter()
        .find(|t| t.name == name.as_str())
        .ok_or_else(|| ApiError::Internal("tier vanished".into()))?;
    Ok((
        StatusCode::CREATED,
        ApiJson(TierOut {
            name: t.name,
            position: t.position,
            patches: t.patches,
        }),
    )
        .into_response())
}

async fn remove(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    refuse_under_sync_tiers(&state, "the tier list")?;
    let name = tier("name", &name)?;
    state.store.remove_tier(&name).await.map_err(|e| match e {
        crate::store::StoreError::Conflict(m) => ApiError::Conflict("tier-in-use", m),
        other => other.into(),
    })?;
    tracing::info!(user = %admin.user, tier = %name, "tier removed");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteAllRequest {
    to: String,
}

#[derive(Serialize)]
struct PromoteAllResponse {
    promoted: u64,
}

async fn promote_all(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath(from): ApiPath<String>,
    ApiJson(body): ApiJson<PromoteAllRequest>,
) -> ApiResult<ApiJson<PromoteAllResponse>> {
    refuse_under_sync_tiers(&state, "patch placement")?;
    let from = tier("from", &from)?;
    let to = tier("to", &body.to)?;
    let promoted = state.store.promote_all(&from, &to).await?;
    tracing::info!(user = %admin.user, from = %from, to = %to, promoted, "promote-all");
    Ok(ApiJson(PromoteAllResponse { promoted }))
}
