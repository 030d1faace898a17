//! schemathesis (PyPI) against `workload/openapi.yaml` and a real `livepatch-server` on a
//! throwaway PostgreSQL, with admin credentials so the authenticated routes are exercised too:
//! every answer must be documented (status, content type, headers, body schema), never a 5xx,
//! and the server must take what the schema allows and refuse what it does not.

use std::path::PathBuf;
use std::process::Command;

use testkit::ServerProcess;

use crate::common::{basic, basic_users_value, migrate, ADMIN_PASSWORD, ADMIN_USER};

/// Examples per operation and phase (measured run time in README's bad-input section).
const MAX_EXAMPLES: &str = "25";
/// Fixed, so a failure in CI reproduces; `SCHEMATHESIS_SEED` picks another.
const SEED: &str = "20261123";

fn st_bin() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin = std::env::var_os("OPS_TEST_PYTHON")
        .map(PathBuf::from)
        .and_then(|p| p.parent().map(|d| d.join("st")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| root.join(".venv/bin/st"));
    assert!(
        bin.exists(),
        "{} is missing: run scripts/lib/python-env (scripts/test does) to install schemathesis",
        bin.display()
    );
    bin
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "opt-in (about a minute): its last run still failed — schemathesis itself crashed on GET /v1/client/{id}/info, and a 503 for a machine report PostgreSQL refused as data (now 422, not yet re-run); run with `cargo nextest run -p workload --all-features --run-ignored only schemathesis`"]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_openapi_document() {
    let db = testkit::test_database();
    migrate(&db.dsn()).await;
    let patches = tempfile::tempdir().unwrap();
    let (dsn, users) = (db.dsn(), basic_users_value());
    let dir = patches.path().display().to_string();
    let server = ServerProcess::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_livepatch-server")),
        &[
            ("LP_DATABASE_CONNECTION_STRING", &dsn),
            ("LP_PATCH_STORAGE_FILESYSTEM_PATH", &dir),
            ("LP_AUTH_BASIC_ENABLED", "true"),
            ("LP_AUTH_BASIC_USERS", &users),
        ],
    )
    .unwrap();
    // Credentials for every kind of route: admin (Basic) everywhere, an auth token for
    // enrolment, a machine token for the other client routes, a sync token for the sync API
    // (schemathesis.toml picks them by path).
    let admin = basic(ADMIN_USER, ADMIN_PASSWORD);
    let call = |method: &str, path: &str, auth: &str, body: &str| {
        let r = testkit::http_request(
            server.port(),
            method,
            path,
            &[
                ("Authorization", auth),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
        .unwrap();
        assert!(
            (200..300).contains(&r.status),
            "{method} {path}: {} {}",
            r.status,
            r.text()
        );
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v
    };
    let token = |v: serde_json::Value, key: &str| v[key].as_str().unwrap().to_string();
    let auth_token = token(
        call(
            "POST",
            "/v1/admin/auth-token",
            &admin,
            r#"{"id":"st","tier":"edge"}"#,
        ),
        "token",
    );
    let machine_token = token(
        call(
            "PUT",
            "/v1/client/st-machine",
            &format!("Bearer {auth_token}"),
            r#"{"architecture":"amd64","kernel":"5.15.0-107.117-generic"}"#,
        ),
        "machine-token",
    );
    let sync_token = token(
        call(
            "POST",
            "/v1/admin/sync-tokens",
            &admin,
            r#"{"name":"st","tier":"edge"}"#,
        ),
        "token",
    );
    let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
    let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| SEED.to_string());
    let reports = tempfile::tempdir().unwrap();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis.toml");
    let out = Command::new(st_bin())
        .args(["--config-file", config, "run", spec, "--url", &server.url()])
        .env("LP_ST_ADMIN_AUTH", &admin)
        .env("LP_ST_AUTH_TOKEN", format!("Bearer {auth_token}"))
        .env("LP_ST_MACHINE_TOKEN", format!("Bearer {machine_token}"))
        .env("LP_ST_SYNC_TOKEN", format!("Bearer {sync_token}"))
        // Every check runs (schemathesis' default; `--checks all` would override the one
        // per-operation exception in schemathesis.toml).
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--seed", &seed, "--workers", "2", "--no-color"])
        .args(["--request-timeout", "30"])
        // Its cache and reports stay in the temp dir, not the working tree.
        .current_dir(reports.path())
        .output()
        .expect("cannot run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found failures (seed {seed}):\n{stdout}\n{stderr}\n--- server log ---\n{}",
        server.output()
    );
    // A run that tested nothing would also exit 0: every documented operation must have run.
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(spec).unwrap()).unwrap();
    let operations: usize = doc["paths"]
        .as_mapping()
        .unwrap()
        .values()
        .map(|item| {
            let methods = ["get", "put", "post", "delete", "head", "patch", "options"];
            methods.iter().filter(|m| item.get(**m).is_some()).count()
        })
        .sum();
    assert!(
        stdout.contains(&format!("Tested: {operations}")),
        "not all {operations} operations ran:\n{stdout}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    eprintln!("{}", lines[lines.len().saturating_sub(25)..].join("\n"));
}
