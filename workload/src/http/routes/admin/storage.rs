//! Storage administration: what the store holds (and whether the database knows it), and a
//! refresh that registers files found in storage (copied by hand, or after a migration).

use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::domain::{self, PatchFilename};
use crate::http::auth::Admin;
use crate::http::{ApiError, ApiJson, ApiResult, AppState};
use crate::store::Registered;

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/storage/patches", get(list))
        .route("/v1/admin/storage/refresh", post(refresh))
}

#[derive(Serialize)]
struct StoredOut {
    filename: String,
    size: u64,
    version: Option<String>,
    registered: bool,
}

#[derive(Serialize)]
struct ListResponse {
    #[serde(rename = "storage-type")]
    storage_type: &'static str,
    patches: Vec<StoredOut>,
}

async fn list(State(state): State<AppState>, _admin: Admin) -> ApiResult<ApiJson<ListResponse>> {
    let stored = state.storage.list().await.map_err(ApiError::from)?;
    let known: std::collections::HashSet<String> =
        state.store.all_filenames().await?.into_iter().collect();
    Ok(ApiJson(ListResponse {
        storage_type: state.storage.kind(),
        patches: stored
            .into_iter()
            .map(|o| StoredOut {
                version: PatchFilename::parse(&o.name)
                    .ok()
                    .map(|p| p.version.to_string()),
                registered: known.contains(&o.name),
                filename: o.name,
                size: o.size,
            })
            .collect(),
    }))
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct RefreshResponse {
    registered: u64,
    missing_files: Vec<String>,
    invalid_names: Vec<String>,
    conflicts: Vec<String>,
}

async fn refresh(
    State(state): State<AppState>,
    admin: Admin,
) -> ApiResult<ApiJson<RefreshResponse>> {
    let stored = state.storage.list().await.map_err(ApiError::from)?;
    let known: std::collections::HashSet<String> =
        state.store.all_filenames().await?.into_iter().collect();
    let mut out = RefreshResponse {
        registered: 0,
        missing_files: Vec::new(),
        invalid_names: Vec::new(),
        conflicts: Vec::new(),
    };
    let in_storage: std::collections::HashSet<&str> =
        stored.iter().map(|o| o.name.as_str()).collect();
    out.missing_files = known
        .iter()
        .filter(|k| !in_storage.contains(k.as_str()))
        .cloned()
        .collect();
    out.missing_files.sort();
    for o in &stored {
        let Ok(name) = PatchFilename::parse(&o.name) else {
            out.invalid_names.push(o.name.clone());
            continue;
        };
        if known.contains(&o.name) {
            continue;
        }
        let object = state
            .storage
            .open(&name, None)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| {
                ApiError::StorageUnavailable(format!("{} vanished during the refresh", o.name))
            })?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut body = object.body;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ApiError::from(crate::storage::StorageError::from(e)))?;
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        let sha = domain::hex(&hasher.finalize());
        match state.store.register_file(&name, &sha, size as i64).await? {
            Registered::Created => out.registered += 1,
            Registered::Same => {}
            Registered::Conflict => out.conflicts.push(o.name.clone()),
        }
    }
    tracing::info!(user = %admin.user, registered = out.registered, "storage refreshed");
    Ok(ApiJson(out))
}
