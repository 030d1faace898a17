//! Sync administration: start a run now, follow it, list past runs (the sync reports).
//! `POST /v1/admin/sync` answers 202 with the run's id, 409 `sync-running` while a run is in
//! progress on any instance sharing the database, 409 `sync-disabled` when sync is off or has no
//! upstream. Counters count only what the run downloaded.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};

use crate::http::auth::Admin;
use crate::http::routes::rfc3339;
use crate::http::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, AppState};
use crate::store::SyncRun;
use crate::sync::{Trigger, TriggerError};

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/sync", post(start))
        .route("/v1/admin/sync/reports", get(reports))
        .route("/v1/admin/sync/{sync_id}", get(show))
}

#[derive(Serialize)]
struct Started {
    #[serde(rename = "sync-id")]
    sync_id: String,
}

async fn start(State(state): State<AppState>, admin: Admin) -> ApiResult<Response> {
    match state.sync.trigger(Trigger::Admin).await {
        Ok(id) => {
            tracing::info!(user = %admin.user, sync_id = %id, "sync triggered");
            Ok((
                StatusCode::ACCEPTED,
                ApiJson(Started {
                    sync_id: id.to_string(),
                }),
            )
                .into_response())
        }
        Err(TriggerError::Running) => Err(ApiError::Conflict(
            "sync-running",
            "a sync is already running: follow it with GET /v1/admin/sync/reports".into(),
        )),
        Err(TriggerError::Disabled(m)) => Err(ApiError::Conflict("sync-disabled", m)),
        Err(TriggerError::Store(e)) => Err(e.into()),
    }
}

/// A run as the API shows it.
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct RunOut {
    sync_id: String,
    trigger: String,
    state: String,
    upstream: String,
    started: String,
    finished: Option<String>,
    patches_total: i32,
    patches_done: i32,
    patches_skipped: i32,
    bytes_total: i64,
    bytes_done: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    failures: serde_json::Value,
    warnings: serde_json::Value,
}

impl From<SyncRun> for RunOut {
    fn from(r: SyncRun) -> Self {
        Self {
            sync_id: r.id.to_string(),
            trigger: r.trigger,
            state: r.state,
            upstream: r.upstream,
            started: rfc3339(r.started),
            finished: r.finished.map(rfc3339),
            patches_total: r.patches_total,
            patches_done: r.patches_done,
            patches_skipped: r.patches_skipped,
            bytes_total: r.bytes_total,
            bytes_done: r.bytes_done,
            error: r.error,
            failures: r.failures,
            warnings: r.warnings,
        }
    }
}

async fn show(
    State(state): State<AppState>,
    _admin: Admin,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<ApiJson<RunOut>> {
    let id = uuid::Uuid::parse_str(&raw).map_err(|_| {
        ApiError::invalid("sync-id", "expected the UUID POST /v1/admin/sync returned")
    })?;
    let run = state
        .store
        .sync_run(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("there is no sync run {id}")))?;
    Ok(ApiJson(run.into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportsQuery {
    limit: Option<String>,
}

#[derive(Serialize)]
struct ReportsOut {
    reports: Vec<RunOut>,
}

async fn reports(
    State(state): State<AppState>,
    _admin: Admin,
    ApiQuery(q): ApiQuery<ReportsQuery>,
) -> ApiResult<ApiJson<ReportsOut>> {
    let limit = match q.limit.as_deref().filter(|l| !l.is_empty()) {
        None => 20,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", "expected a whole number from 1 to 1000"))?,
    };
    let runs = state.store.sync_runs(limit).await?;
    Ok(ApiJson(ReportsOut {
        reports: runs.into_iter().map(RunOut::from).collect(),
    }))
}
