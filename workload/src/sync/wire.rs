//! The JSON of the Server (sync) API (api.md), shared by the routes that serve it
//! (`http::routes::sync`) and the client that calls it ([`super::client`]), so both ends agree by
//! construction.

use serde::{Deserialize, Serialize};

/// `GET /v1/sync/snapshot`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Snapshot {
    /// Every upstream tier, in promotion order.
    pub tiers: Vec<String>,
    /// The patches of the token's tier that pass the filters.
    pub patches: Vec<SnapshotPatch>,
}

/// One patch file of a snapshot.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapshotPatch {
    /// `107.1`
    pub version: String,
    /// The filename (the grammar of api.md).
    pub filename: String,
    /// `5.15.0-107.117`
    pub kernel: String,
    /// `generic`
    pub flavour: String,
    /// `amd64`
    pub architecture: String,
    /// Lower-case hex SHA-256.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// Every upstream tier that holds it.
    pub tiers: Vec<String>,
    /// RFC 3339.
    pub released: String,
    /// Blocklisted upstream.
    pub blocklisted: bool,
}

/// `POST /v1/sync/machine-reports`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MachineReports {
    /// `patch-sync.id`.
    pub deployment_id: String,
    /// The count by `strategy`.
    pub machine_count: u64,
    /// `unit` or `bucket`.
    pub strategy: String,
    /// Per-machine state (with `send-machine-reports`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<MachineReport>,
}

/// One machine's state, with an obfuscated id.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MachineReport {
    /// HMAC of the machine id under a key that never leaves the downstream.
    pub machine_id: String,
    /// Kernel as the machine reports it.
    #[serde(default)]
    pub kernel: Option<String>,
    /// CPU model.
    #[serde(default)]
    pub cpu_model: Option<String>,
    /// Architecture.
    #[serde(default)]
    pub architecture: Option<String>,
    /// Boot time, RFC 3339.
    #[serde(default)]
    pub boot_time: Option<String>,
    /// Uptime.
    #[serde(default)]
    pub uptime_seconds: Option<i64>,
    /// Client version.
    #[serde(default)]
    pub client_version: Option<String>,
    /// Patch state.
    #[serde(default)]
    pub patch_state: Option<String>,
    /// Applied patch version.
    #[serde(default)]
    pub patch_version: Option<String>,
}

/// How many machines a `bucket` report covers at most per request (the body stays small).
pub const REPORTS_PER_REQUEST: usize = 500;

/// The machine count to report (livepatch-server.md §8): exact for `unit`, else the lower bound
/// of its bucket.
pub fn reported_machine_count(count: u64, strategy: &str) -> u64 {
    if strategy == "unit" {
        return count;
    }
    match count {
        0 => 0,
        1..=49 => 1,
        50..=99 => 50,
        100..=499 => 100,
        500..=999 => 500,
        1000..=1999 => 1000,
        2000..=4999 => 2000,
        5000..=9999 => 5000,
        _ => 10000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_counts_are_the_lower_bounds_of_section_8_and_unit_counts_are_exact() {
        for (n, bucket) in [
            (1, 1),
            (49, 1),
            (50, 50),
            (99, 50),
            (100, 100),
            (499, 100),
            (500, 500),
            (999, 500),
            (1000, 1000),
            (1999, 1000),
            (2000, 2000),
            (4999, 2000),
            (5000, 5000),
            (9999, 5000),
            (10000, 10000),
            (250_000, 10000),
        ] {
            assert_eq!(reported_machine_count(n, "bucket"), bucket, "{n}");
            assert_eq!(reported_machine_count(n, "unit"), n, "{n}");
        }
        assert_eq!(
            reported_machine_count(0, "bucket"),
            0,
            "no machines is not one"
        );
    }
}
