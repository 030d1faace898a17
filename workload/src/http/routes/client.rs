//! The client API (machines): enrol with an auth token, check in for updates with the machine
//! token, read its own record, leave. The check-in path is two indexed queries (credentials,
//! then check-in + selection in one statement) plus a report row when reports are enabled.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::Router;
use hmac::Mac;
use serde::{Deserialize, Serialize};

use super::{parse_time, rfc3339};
use crate::domain::{self, Kernel, MachineId, PatchVersion, TokenKind};
use crate::http::auth::{bearer, machine};
use crate::http::{request_info, ApiError, ApiJson, ApiPath, ApiResult, AppState};
use crate::security::{appid, emit, Severity};
use crate::store::CheckIn;

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/client/{machine_id}", put(enroll).delete(leave))
        .route("/v1/client/{machine_id}/updates", post(updates))
        .route("/v1/client/{machine_id}/info", axum::routing::get(info))
}

fn machine_id(raw: &str) -> ApiResult<MachineId> {
    MachineId::parse(raw).map_err(|e| ApiError::invalid("machine-id", e))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct EnrollRequest {
    architecture: String,
    kernel: String,
    hostname: Option<String>,
    client_version: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct EnrollResponse {
    machine_token: String,
    tier: String,
}

fn short(field: &str, v: Option<String>, max: usize) -> ApiResult<Option<String>> {
    match v {
        Some(s) if s.chars().count() > max || s.chars().any(char::is_control) => {
            Err(ApiError::invalid(
                field,
                format!("at most {max} characters, no control characters"),
            ))
        }
        other => Ok(other),
    }
}

async fn enroll(
    State(state): State<AppState>,
    ApiPath(raw_id): ApiPath<String>,
    request: Request,
) -> ApiResult<Response> {
    let info = request_info(&request);
    let id = machine_id(&raw_id)?;
    let Some(token) = bearer(request.headers()).map(str::to_string) else {
        emit(
            Severity::Warn,
            appid::CLIENT_AUTHN,
            "authtoken_authn_failed:no_credentials",
            "enrolment without an auth token",
            &info,
        );
        return Err(ApiError::Unauthorized(
            "an auth token is required (Authorization: Bearer)".into(),
        ));
    };
    let ApiJson(body): ApiJson<EnrollRequest> = ApiJson::from_request(request, &state).await?;
    let architecture = domain::parse_architecture(&body.architecture)
        .map_err(|e| ApiError::invalid("architecture", e))?;
    let kernel = Kernel::parse_client(&body.kernel).map_err(|e| ApiError::invalid("kernel", e))?;
    let hostname = short("hostname", body.hostname, 255)?;
    let client_version = short("client-version", body.client_version, 64)?;

    let started = std::time::Instant::now();
    let hash = domain::token_hash(&token);
    let found = state.store.find_auth_token(&hash).await?;
    let Some((token_id, tier_id, stored)) =
        found.filter(|(_, _, stored)| domain::token_matches(&token, stored))
    else {
        emit(
            Severity::Warn,
            appid::CLIENT_AUTHN,
            "authtoken_authn_failed:invalid_token",
            "unknown or expired auth token",
            &info,
        );
        return Err(ApiError::Unauthorized(
            "unknown or expired auth token".into(),
        ));
    };
    let _ = stored;
    state
        .metrics
        .http_auth_duration
        .with_label_values(&["auth"])
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .http_authorizer_count
        .with_label_values(&["auth"])
        .inc();

    let minted = domain::mint_token(TokenKind::Machine);
    let kernel_text = kernel.to_string();
    let created = state
        .store
        .enroll(&crate::store::Enrollment {
            id: &id,
            tier_id,
            auth_token_id: &token_id,
            token_hash: &minted.hash,
            architecture,
            kernel: &kernel_text,
            hostname: hostname.as_deref(),
            client_version: client_version.as_deref(),
        })
        .await?;
    let tier = state.store.tier_name(tier_id).await?;
    emit(
        Severity::Info,
        appid::TOKENS,
        "machinetoken_created",
        &format!(
            "machine {} enrolled in tier {tier} with auth token {token_id}",
            id.as_str()
        ),
        &info,
    );
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        ApiJson(EnrollResponse {
            machine_token: minted.clear.expose().clone(),
            tier,
        }),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct UpdatesRequest {
    kernel: String,
    architecture: String,
    patch_state: Option<String>,
    patch_version: Option<String>,
    client_version: Option<String>,
    cpu_model: Option<String>,
    boot_time: Option<String>,
    uptime_seconds: Option<u64>,
    cutoff_date: Option<String>,
    patch_delay_hours: Option<u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct UpdatesResponse {
    patch: PatchOffer,
    kernel_supported: bool,
}

#[derive(Serialize)]
struct PatchOffer {
    version: String,
    filename: String,
    sha256: String,
    size: i64,
    url: String,
    released: String,
}

/// The URL a machine downloads from: the template, or this server's own path on the host the
/// machine reached.
fn download_url(state: &AppState, headers: &HeaderMap, filename: &str) -> String {
    if let Some(t) = &state.config.server.url_template {
        return t.replace("{filename}", filename);
    }
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or(if state.config.server.tls_cert_file.is_some() {
            "https"
        } else {
            "http"
        });
    format!("{scheme}://{host}/v1/patches/{filename}")
}

async fn updates(
    State(state): State<AppState>,
    ApiPath(raw_id): ApiPath<String>,
    request: Request,
) -> ApiResult<Response> {
    let info = request_info(&request);
    let id = machine_id(&raw_id)?;
    let headers = request.headers().clone();
    let tier_id = machine(&state, &id, &headers, &info).await?;
    let ApiJson(body): ApiJson<UpdatesRequest> = ApiJson::from_request(request, &state).await?;

    let kernel = Kernel::parse_client(&body.kernel).map_err(|e| ApiError::invalid("kernel", e))?;
    let architecture = domain::parse_architecture(&body.architecture)
        .map_err(|e| ApiError::invalid("architecture", e))?;
    let patch_state = body
        .patch_state
        .as_deref()
        .map(|s| domain::parse_patch_state(s).map_err(|e| ApiError::invalid("patch-state", e)))
        .transpose()?;
    let patch_version = body
        .patch_version
        .as_deref()
        .filter(|v| !v.is_empty())
        .map(|v| {
            PatchVersion::parse(v)
                .map(|v| v.to_string())
                .map_err(|e| ApiError::invalid("patch-version", e))
        })
        .transpose()?;
    let mut cutoff = parse_time("cutoff-date", body.cutoff_date.as_deref())?;
    if cutoff.is_some() {
        state.metrics.cutoff_date_count.inc();
    }
    if let Some(hours) = body.patch_delay_hours {
        state.metrics.patch_delay_count.inc();
        let delayed = time::OffsetDateTime::now_utc() - time::Duration::hours(i64::from(hours));
        cutoff = Some(cutoff.map_or(delayed, |c| c.min(delayed)));
    }
    let check_in = CheckIn {
        kernel: kernel.to_string(),
        architecture: architecture.to_string(),
        patch_state: patch_state.map(str::to_string),
        patch_version,
        client_version: short("client-version", body.client_version, 64)?,
        cpu_model: short("cpu-model", body.cpu_model, 255)?,
        boot_time: parse_time("boot-time", body.boot_time.as_deref())?,
        uptime_seconds: body.uptime_seconds.map(|u| u.min(i64::MAX as u64) as i64),
    };
    let (known, update) = state
        .store
        .check_in(&id, tier_id, &kernel, &check_in, cutoff)
        .await?;
    if !known {
        state.metrics.updates_with_unknown_kernel.inc();
    }
    if let (true, Some(key)) = (state.config.machine_reports.enabled, &state.report_key) {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
        mac.update(id.as_str().as_bytes());
        let hashed = domain::hex(&mac.finalize().into_bytes());
        state
            .store
            .insert_report(&hashed, tier_id, &check_in)
            .await?;
    }
    let Some(u) = update else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let url = download_url(&state, &headers, &u.filename);
    Ok(ApiJson(UpdatesResponse {
        patch: PatchOffer {
            version: u.version,
            filename: u.filename,
            sha256: u.sha256,
            size: u.size,
            url,
            released: rfc3339(u.released),
        },
        kernel_supported: known,
    })
    .into_response())
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct InfoResponse {
    machine_id: String,
    tier: String,
    enrolled: String,
    last_check_in: Option<String>,
    patch_state: Option<String>,
    patch_version: Option<String>,
}

async fn info(
    State(state): State<AppState>,
    ApiPath(raw_id): ApiPath<String>,
    request: Request,
) -> ApiResult<Response> {
    let info = request_info(&request);
    let id = machine_id(&raw_id)?;
    machine(&state, &id, request.headers(), &info).await?;
    let m = state
        .store
        .machine_info(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound("the machine left".into()))?;
    Ok(ApiJson(InfoResponse {
        machine_id: m.id,
        tier: m.tier,
        enrolled: rfc3339(m.enrolled),
        last_check_in: m.last_check_in.map(rfc3339),
        patch_state: m.patch_state,
        patch_version: m.patch_version,
    })
    .into_response())
}

async fn leave(
    State(state): State<AppState>,
    ApiPath(raw_id): ApiPath<String>,
    request: Request,
) -> ApiResult<StatusCode> {
    let info = request_info(&request);
    let id = machine_id(&raw_id)?;
    machine(&state, &id, request.headers(), &info).await?;
    state.store.delete_machine(&id).await?;
    emit(
        Severity::Info,
        appid::TOKENS,
        "machinetoken_deleted",
        &format!("machine {} left", id.as_str()),
        &info,
    );
    Ok(StatusCode::NO_CONTENT)
}

// The order matters: these handlers read the path first and the body last, so `Request` is the
// final argument.
use axum::extract::FromRequest as _;
