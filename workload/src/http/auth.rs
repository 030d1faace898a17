//! Authentication as extractors: [`Admin`] for `/v1/admin/*` (macaroon, Bearer or Basic, with the
//! `authz_admin` security event on success and `*_authn_failed:*` on failure), and
//! [`machine`] for the client routes (machine token bound to its machine id).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::{parts_info, ApiError, AppState};
use crate::auth::{AuthError, AuthFailure};
use crate::domain::MachineId;
use crate::security::{appid, emit, RequestInfo, Severity};

/// An authenticated administrator.
#[derive(Clone, Debug)]
pub struct Admin {
    /// The user name.
    pub user: String,
    /// The request, for further security events.
    pub request: RequestInfo,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let info = parts_info(parts);
        let header = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or(""));
        let started = std::time::Instant::now();
        let result = state.admin_auth.authenticate(header).await;
        match result {
            Ok((user, token_type)) => {
                state
                    .metrics
                    .http_auth_duration
                    .with_label_values(&[token_type])
                    .observe(started.elapsed().as_secs_f64());
                state
                    .metrics
                    .http_authorizer_count
                    .with_label_values(&["admin"])
                    .inc();
                emit(
                    Severity::Info,
                    appid::ADMIN_AUTHZ,
                    "authz_admin",
                    &format!("admin {user} {} {}", info.method, info.path),
                    &info,
                );
                Ok(Admin {
                    user,
                    request: info,
                })
            }
            Err(AuthError::Refused(failure)) => {
                emit(
                    Severity::Warn,
                    appid::ADMIN_AUTHN,
                    failure.event(),
                    failure.message(),
                    &info,
                );
                Err(ApiError::Unauthorized(failure.message().to_string()))
            }
            Err(AuthError::Store(e)) => Err(e.into()),
        }
    }
}

/// The Bearer value of a request, if any.
pub fn bearer(parts: &http::HeaderMap) -> Option<&str> {
    let v = parts
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Authenticates a machine: its token must be the one minted for `id`. Returns its tier id.
/// 401 for a missing or unknown token, 403 for another machine's token.
pub async fn machine(
    state: &AppState,
    id: &MachineId,
    headers: &http::HeaderMap,
    info: &RequestInfo,
) -> Result<i32, ApiError> {
    let started = std::time::Instant::now();
    let fail = |event: &str, status: ApiError| {
        emit(
            Severity::Warn,
            appid::CLIENT_AUTHN,
            event,
            "machine token refused",
            info,
        );
        status
    };
    let Some(token) = bearer(headers) else {
        return Err(fail(
            "machinetoken_authn_failed:no_credentials",
            ApiError::Unauthorized("a machine token is required (Authorization: Bearer)".into()),
        ));
    };
    if let Some((hash, tier_id)) = state.store.machine_credentials(id).await? {
        if crate::domain::token_matches(token, &hash) {
            state
                .metrics
                .http_auth_duration
                .with_label_values(&["machine"])
                .observe(started.elapsed().as_secs_f64());
            state
                .metrics
                .http_authorizer_count
                .with_label_values(&["machine"])
                .inc();
            return Ok(tier_id);
        }
    }
    // Only on failure: is it a valid token of another machine? That is an authorisation failure.
    let hash = crate::domain::token_hash(token);
    if state.store.machine_id_for_token(&hash).await?.is_some() {
        emit(
            Severity::Warn,
            appid::CLIENT_AUTHZ,
            "authz_failed:machine_mismatch",
            "machine token used for another machine",
            info,
        );
        return Err(ApiError::Forbidden(
            "this machine token belongs to another machine".into(),
        ));
    }
    Err(fail(
        "machinetoken_authn_failed:invalid_token",
        ApiError::Unauthorized("unknown machine or invalid machine token".into()),
    ))
}

/// Maps an admin auth failure for routes that authenticate by hand (login).
pub fn refused(failure: AuthFailure) -> ApiError {
    ApiError::Unauthorized(failure.message().to_string())
}
