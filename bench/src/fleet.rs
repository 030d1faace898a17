//! A synthetic fleet: machines inserted straight into the `machine` table with SQL (one
//! `generate_series` statement, so a million machines take seconds, not the hours a million
//! enrolments would), each with a machine token derived from its index, and the check-in
//! requests those machines send.
//!
//! Machine `i` is `bench-<i, 7 digits>` with the token `lpm_bench_<i>`; the table stores only the
//! token's SHA-256, computed by PostgreSQL's `sha256()` exactly as the server hashes tokens.

use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use rand::Rng;

use crate::load::MakeRequest;

/// The kernel every synthetic machine runs (and the bench patch is built for).
pub const KERNEL: &str = "5.15.0-107.117-generic";
/// Its architecture.
pub const ARCHITECTURE: &str = "amd64";
/// The patch file the benchmarks upload for that kernel.
pub const PATCH_FILENAME: &str = "livepatch-5.15.0-107.117-generic-107.1-amd64.tar.bz2";

/// Machine `i`'s id.
pub fn machine_id(i: u64) -> String {
    format!("bench-{i:07}")
}

/// Machine `i`'s clear token.
pub fn machine_token(i: u64) -> String {
    format!("lpm_bench_{i}")
}

/// Replaces every machine with `count` synthetic ones in `tier`, then vacuums and analyses the
/// table so the planner and the visibility map see the real size.
pub async fn seed(
    client: &tokio_postgres::Client,
    count: u64,
    tier: &str,
) -> Result<(), tokio_postgres::Error> {
    client.batch_execute("TRUNCATE machine").await?;
    client
        .execute(
            "INSERT INTO machine (id, token_hash, tier_id, auth_token_id, architecture, kernel, enrolled_at)
             SELECT 'bench-' || lpad(i::text, 7, '0'),
                    sha256(convert_to('lpm_bench_' || i, 'UTF8')),
                    (SELECT id FROM tier WHERE name = $2), 'bench', $3, $4, now()
             FROM generate_series(0::bigint, $1::bigint - 1) AS i",
            &[&(count as i64), &tier, &ARCHITECTURE, &KERNEL],
        )
        .await?;
    client.batch_execute("VACUUM ANALYZE machine").await?;
    Ok(())
}

/// The JSON body a machine sends on check-in (`client-version` carries a tag, e.g. a sequence
/// number, so a test can find each acknowledged check-in's effect in the database).
pub fn check_in_body(tag: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"kernel":"{KERNEL}","architecture":"{ARCHITECTURE}","patch-state":"applied","patch-version":"107.1","client-version":"{tag}"}}"#
    ))
}

/// `POST /v1/client/{id}/updates` from a machine picked at random among `machines`, with its
/// token: every request touches a different row, as a real fleet does.
pub fn check_ins(machines: u64) -> MakeRequest {
    let bodies: Arc<Bytes> = Arc::new(check_in_body("bench"));
    Arc::new(move |_client, _seq| {
        let i = rand::rng().random_range(0..machines.max(1));
        check_in_request(i, (*bodies).clone())
    })
}

/// The check-in request of machine `i` with `body`.
pub fn check_in_request(i: u64, body: Bytes) -> Request<Full<Bytes>> {
    Request::post(format!("/v1/client/{}/updates", machine_id(i)))
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", machine_token(i)),
        )
        .body(Full::new(body))
        .expect("a valid request")
}

/// `GET path`, again and again.
pub fn gets(path: &str) -> MakeRequest {
    let path = path.to_string();
    Arc::new(move |_client, _seq| {
        Request::get(path.as_str())
            .body(Full::new(Bytes::new()))
            .expect("a valid request")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_machines_have_valid_ids_and_tokens_the_server_would_hash_alike() {
        let id = machine_id(42);
        assert_eq!(id, "bench-0000042");
        assert!(workload::domain::MachineId::parse(&id).is_ok());
        assert!(workload::domain::MachineId::parse(&machine_id(999_999_999)).is_ok());
        let request = check_in_request(42, check_in_body("t"));
        assert_eq!(request.uri().path(), "/v1/client/bench-0000042/updates");
        assert_eq!(
            request.headers()["authorization"],
            format!("Bearer {}", machine_token(42))
        );
    }

    #[test]
    fn the_check_in_body_is_the_json_the_api_documents() {
        let v: serde_json::Value = serde_json::from_slice(&check_in_body("seq-7")).unwrap();
        assert_eq!(v["kernel"], KERNEL);
        assert_eq!(v["client-version"], "seq-7");
        assert!(workload::domain::PatchFilename::parse(PATCH_FILENAME).is_ok());
    }
}
