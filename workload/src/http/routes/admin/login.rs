//! `POST /v1/admin/login`: HTTP Basic in, a macaroon-style token (240 h) out.

use axum::extract::{Request, State};
use axum::routing::post;
use axum::Router;
use serde::Serialize;

use crate::auth::{AuthError, AuthFailure};
use crate::http::auth::refused;
use crate::http::routes::rfc3339;
use crate::http::{request_info, ApiError, ApiJson, ApiResult, AppState};
use crate::security::{appid, emit, Severity};

/// The route.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/admin/login", post(login))
}

#[derive(Serialize)]
struct LoginResponse {
    token: String,
    expires: String,
}

async fn login(
    State(state): State<AppState>,
    request: Request,
) -> ApiResult<ApiJson<LoginResponse>> {
    let info = request_info(&request);
    let header = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let fail = |f: AuthFailure| {
        emit(
            Severity::Warn,
            appid::ADMIN_AUTHN,
            f.event(),
            f.message(),
            &info,
        );
        refused(f)
    };
    let Some(header) = header else {
        return Err(fail(AuthFailure::Missing));
    };
    let Some(value) = header
        .trim()
        .strip_prefix("Basic ")
        .or_else(|| header.trim().strip_prefix("basic "))
    else {
        return Err(fail(AuthFailure::Malformed));
    };
    let started = std::time::Instant::now();
    let user = match state.admin_auth.verify_basic(value.trim()).await {
        Ok(u) => u,
        Err(AuthError::Refused(f)) => return Err(fail(f)),
        Err(AuthError::Store(e)) => return Err(e.into()),
    };
    state
        .metrics
        .http_auth_duration
        .with_label_values(&["basic"])
        .observe(started.elapsed().as_secs_f64());
    let (token, expires) = state.admin_auth.mint(&user).await.map_err(ApiError::from)?;
    emit(
        Severity::Info,
        appid::ADMIN_AUTHN,
        "basicauth_authn_success",
        &format!("admin {user} logged in"),
        &info,
    );
    Ok(ApiJson(LoginResponse {
        token,
        expires: rfc3339(expires),
    }))
}
