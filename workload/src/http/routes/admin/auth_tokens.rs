//! Client auth tokens: mint (`POST /v1/admin/auth-token`), list, revoke. The clear token is in
//! the creation response only; the database keeps its SHA-256.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use serde::{Deserialize, Serialize};

use crate::domain::{self, TierName, TokenKind};
use crate::http::auth::Admin;
use crate::http::routes::{parse_time, rfc3339};
use crate::http::{ApiError, ApiJson, ApiPath, ApiResult, AppState};
use crate::security::{appid, emit, Severity};
use crate::store::TokenInfo;

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/auth-token", post(create))
        .route("/v1/admin/auth-tokens", get(list))
        .route("/v1/admin/auth-tokens/{id}", delete(revoke))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct CreateRequest {
    id: String,
    tier: String,
    valid_until: Option<String>,
}

#[derive(Serialize)]
struct Created {
    token: String,
    tier: String,
    id: String,
}

/// A listed token (auth or sync).
#[derive(Serialize)]
pub(crate) struct Listed {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    tier: String,
    created: String,
    expires: Option<String>,
}

impl Listed {
    pub(crate) fn auth(t: TokenInfo) -> Self {
        Self {
            id: Some(t.id),
            name: None,
            tier: t.tier,
            created: rfc3339(t.created),
            expires: t.expires.map(rfc3339),
        }
    }
    pub(crate) fn sync(t: TokenInfo) -> Self {
        Self {
            id: None,
            name: Some(t.id),
            tier: t.tier,
            created: rfc3339(t.created),
            expires: t.expires.map(rfc3339),
        }
    }
}

/// Parses a `valid-until` that must lie in the future.
pub(crate) fn valid_until(v: Option<&str>) -> ApiResult<Option<time::OffsetDateTime>> {
    let t = parse_time("valid-until", v)?;
    if t.is_some_and(|t| t <= time::OffsetDateTime::now_utc()) {
        return Err(ApiError::Unprocessable("valid-until is in the past".into()));
    }
    Ok(t)
}

async fn create(
    State(state): State<AppState>,
    admin: Admin,
    ApiJson(body): ApiJson<CreateRequest>,
) -> ApiResult<Response> {
    let id = domain::parse_label("id", &body.id).map_err(|e| ApiError::invalid("id", e))?;
    let tier = TierName::parse(&body.tier).map_err(|e| ApiError::invalid("tier", e))?;
    let expires = valid_until(body.valid_until.as_deref())?;
    let minted = domain::mint_token(TokenKind::Auth);
    state
        .store
        .create_auth_token(&id, &tier, &minted.hash, expires)
        .await?;
    emit(
        Severity::Info,
        appid::TOKENS,
        "authtoken_created",
        &format!(
            "admin {} created auth token {id} for tier {tier}",
            admin.user
        ),
        &admin.request,
    );
    Ok((
        StatusCode::CREATED,
        ApiJson(Created {
            token: minted.clear.expose().clone(),
            tier: tier.to_string(),
            id,
        }),
    )
        .into_response())
}

#[derive(Serialize)]
struct ListResponse {
    #[serde(rename = "auth-tokens")]
    auth_tokens: Vec<Listed>,
}

async fn list(State(state): State<AppState>, _admin: Admin) -> ApiResult<ApiJson<ListResponse>> {
    let tokens = state.store.list_auth_tokens().await?;
    Ok(ApiJson(ListResponse {
        auth_tokens: tokens.into_iter().map(Listed::auth).collect(),
    }))
}

async fn revoke(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let id = domain::parse_label("id", &id).map_err(|e| ApiError::invalid("id", e))?;
    state.store.revoke_auth_token(&id).await?;
    emit(
        Severity::Info,
        appid::TOKENS,
        "authtoken_deleted",
        &format!("admin {} revoked auth token {id}", admin.user),
        &admin.request,
    );
    Ok(StatusCode::NO_CONTENT)
}
