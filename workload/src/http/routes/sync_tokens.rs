//! Sync-token management (`/v1/admin/sync-tokens`): tokens downstream servers sync with, each
//! scoped to one tier. The sync API itself (`/v1/sync/*`) is issue 5's.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::Router;
use serde::{Deserialize, Serialize};

use crate::domain::{self, TierName, TokenKind};
use crate::http::auth::Admin;
use crate::http::routes::admin::auth_tokens::{valid_until, Listed};
use crate::http::{ApiError, ApiJson, ApiPath, ApiResult, AppState};
use crate::security::{appid, emit, Severity};

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/sync-tokens", post(create).get(list))
        .route("/v1/admin/sync-tokens/{name}", delete(remove))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct CreateRequest {
    tier: String,
    name: String,
    valid_until: Option<String>,
}

#[derive(Serialize)]
struct Created {
    token: String,
    name: String,
    tier: String,
}

async fn create(
    State(state): State<AppState>,
    admin: Admin,
    ApiJson(body): ApiJson<CreateRequest>,
) -> ApiResult<Response> {
    let name = domain::parse_label("name", &body.name).map_err(|e| ApiError::invalid("name", e))?;
    let tier = TierName::parse(&body.tier).map_err(|e| ApiError::invalid("tier", e))?;
    let expires = valid_until(body.valid_until.as_deref())?;
    let minted = domain::mint_token(TokenKind::Sync);
    state
        .store
        .create_sync_token(&name, &tier, &minted.hash, expires)
        .await?;
    emit(
        Severity::Info,
        appid::TOKENS,
        "synctoken_created",
        &format!(
            "admin {} created sync token {name} for tier {tier}",
            admin.user
        ),
        &admin.request,
    );
    Ok((
        StatusCode::CREATED,
        ApiJson(Created {
            token: minted.clear.expose().clone(),
            name,
            tier: tier.to_string(),
        }),
    )
        .into_response())
}

#[derive(Serialize)]
struct ListResponse {
    #[serde(rename = "sync-tokens")]
    sync_tokens: Vec<Listed>,
}

async fn list(State(state): State<AppState>, _admin: Admin) -> ApiResult<ApiJson<ListResponse>> {
    let tokens = state.store.list_sync_tokens().await?;
    Ok(ApiJson(ListResponse {
        sync_tokens: tokens.into_iter().map(Listed::sync).collect(),
    }))
}

async fn remove(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let name = domain::parse_label("name", &name).map_err(|e| ApiError::invalid("name", e))?;
    state.store.remove_sync_token(&name).await?;
    emit(
        Severity::Info,
        appid::TOKENS,
        "synctoken_deleted",
        &format!("admin {} removed sync token {name}", admin.user),
        &admin.request,
    );
    Ok(StatusCode::NO_CONTENT)
}
