//! Health and observability: `/`, `/debug/info` (never touches the database), `/debug/status`
//! (probes the database and patch storage; 503 when either fails; the upstream's state from the
//! last sync report, which never changes the code) and `/metrics`.

use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::http::AppState;

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(root))
        .route("/debug/info", get(info))
        .route("/debug/status", get(status))
        .route("/metrics", get(metrics))
}

async fn root(State(state): State<AppState>) -> String {
    format!("Livepatch server, version {}", state.build.version)
}

async fn info(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "version": state.build.version,
        "commit": state.build.commit,
        "build-date": state.build.build_date,
    }))
}

async fn status(State(state): State<AppState>) -> Response {
    let started = Instant::now();
    let db = state.store.ping().await;
    let db_ms = started.elapsed().as_secs_f64() * 1000.0;
    let started = Instant::now();
    let storage = state.storage.check().await;
    let storage_ms = started.elapsed().as_secs_f64() * 1000.0;
    let entry = |ok: bool, ms: f64| json!({"status": if ok { "OK" } else { "error" }, "latency-ms": (ms * 100.0).round() / 100.0});
    if let Err(e) = &db {
        tracing::warn!(error = %e, "status: database check failed");
    }
    if let Err(e) = &storage {
        tracing::warn!(error = %e, "status: patch storage check failed");
    }
    let mut body = json!({
        "database": entry(db.is_ok(), db_ms),
        "patch-storage": entry(storage.is_ok(), storage_ms),
    });
    body["patch-storage"]["type"] = json!(state.storage.kind());
    if let Some(url) = state.sync.upstream_url() {
        // From the last sync report, not a probe: the upstream's health must not slow this route.
        let last = state
            .store
            .sync_runs(1)
            .await
            .ok()
            .and_then(|r| r.into_iter().next());
        let ok = last.as_ref().is_none_or(|r| r.state != "failed");
        body["upstream"] = json!({
            "status": if ok { "OK" } else { "error" },
            "url": url,
            "last-sync": last.map(|r| json!({"state": r.state, "started": crate::http::routes::rfc3339(r.started)})),
        });
    }
    let code = if db.is_ok() && storage.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = (code, Json(body)).into_response();
    if code != StatusCode::OK {
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("5"),
        );
    }
    response
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
