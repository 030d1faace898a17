//! Reports: machines of a tier (filtered by patch version and state, paged), and patch health
//! (machine counts per patch state for one version).

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};

use crate::domain::{self, PatchVersion, TierName};
use crate::http::auth::Admin;
use crate::http::routes::rfc3339;
use crate::http::{ApiError, ApiJson, ApiQuery, ApiResult, AppState};

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/reports/machines", get(machines))
        .route("/v1/admin/reports/patch-health", get(patch_health))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct MachinesQuery {
    tier: Option<String>,
    patch_version: Option<String>,
    patch_state: Option<String>,
    limit: Option<i64>,
    after: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct MachineOut {
    machine_id: String,
    tier: String,
    enrolled: String,
    last_check_in: Option<String>,
    patch_state: Option<String>,
    patch_version: Option<String>,
    kernel: String,
    architecture: String,
    client_version: Option<String>,
}

#[derive(Serialize)]
struct MachinesResponse {
    machines: Vec<MachineOut>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

fn required_tier(v: Option<&str>) -> ApiResult<TierName> {
    let v = v
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::invalid("tier", "the query parameter is required"))?;
    TierName::parse(v).map_err(|e| ApiError::invalid("tier", e))
}

async fn machines(
    State(state): State<AppState>,
    _admin: Admin,
    ApiQuery(q): ApiQuery<MachinesQuery>,
) -> ApiResult<ApiJson<MachinesResponse>> {
    let tier = required_tier(q.tier.as_deref())?;
    let version = q
        .patch_version
        .as_deref()
        .filter(|v| !v.is_empty())
        .map(|v| PatchVersion::parse(v).map(|v| v.to_string()))
        .transpose()
        .map_err(|e| ApiError::invalid("patch-version", e))?;
    let patch_state = q
        .patch_state
        .as_deref()
        .filter(|v| !v.is_empty())
        .map(domain::parse_patch_state)
        .transpose()
        .map_err(|e| ApiError::invalid("patch-state", e))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "expected 1 to 1000"));
    }
    let after = q
        .after
        .as_deref()
        .filter(|a| !a.is_empty())
        .map(domain::MachineId::parse)
        .transpose()
        .map_err(|e| ApiError::invalid("after", e))?;
    let rows = state
        .store
        .list_machines(
            &tier,
            version.as_deref(),
            patch_state,
            limit,
            after.as_ref().map(|a| a.as_str()),
        )
        .await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|m| m.id.clone()))
        .flatten();
    Ok(ApiJson(MachinesResponse {
        machines: rows
            .into_iter()
            .map(|m| MachineOut {
                machine_id: m.id,
                tier: m.tier,
                enrolled: rfc3339(m.enrolled),
                last_check_in: m.last_check_in.map(rfc3339),
                patch_state: m.patch_state,
                patch_version: m.patch_version,
                kernel: m.kernel,
                architecture: m.architecture,
                client_version: m.client_version,
            })
            .collect(),
        next,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct HealthQuery {
    tier: Option<String>,
    patch_version: Option<String>,
}

async fn patch_health(
    State(state): State<AppState>,
    _admin: Admin,
    ApiQuery(q): ApiQuery<HealthQuery>,
) -> ApiResult<ApiJson<std::collections::BTreeMap<String, i64>>> {
    let tier = required_tier(q.tier.as_deref())?;
    let version = q
        .patch_version
        .as_deref()
        .ok_or_else(|| ApiError::invalid("patch-version", "the query parameter is required"))
        .and_then(|v| PatchVersion::parse(v).map_err(|e| ApiError::invalid("patch-version", e)))?;
    let counts = state.store.patch_health(&tier, &version).await?;
    let mut out: std::collections::BTreeMap<String, i64> = domain::PATCH_STATES
        .iter()
        .map(|s| (s.to_string(), 0))
        .collect();
    for (state_name, n) in counts {
        *out.entry(state_name).or_insert(0) += n;
    }
    Ok(ApiJson(out))
}
