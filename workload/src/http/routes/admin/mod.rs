//! The admin API under `/v1/admin/`: login, and one module per resource. Every route but login
//! takes the [`Admin`](crate::http::auth::Admin) extractor, so none can be reached without
//! credentials (a test walks the route table to prove it).

pub mod auth_tokens;
pub mod login;
pub mod patches;
pub mod reports;
pub mod storage;
pub mod sync;
pub mod tiers;

use axum::Router;

use crate::http::AppState;

/// Every admin route.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(login::router())
        .merge(auth_tokens::router())
        .merge(tiers::router())
        .merge(patches::router())
        .merge(storage::router())
        .merge(reports::router())
        .merge(sync::router())
}

/// 409 when `patch-sync.sync-tiers` makes the upstream the owner of tiers and placements.
pub(crate) fn refuse_under_sync_tiers(state: &AppState, what: &str) -> crate::http::ApiResult<()> {
    if state.config.patch_sync.sync_tiers {
        return Err(crate::http::ApiError::Conflict(
            "sync-tiers",
            format!("{what} is managed by the upstream server while patch-sync.sync-tiers is on"),
        ));
    }
    Ok(())
}
