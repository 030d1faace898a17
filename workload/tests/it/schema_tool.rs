//! `livepatch-schema-tool` as the charm runs it: exit codes, DSN from the environment, redaction,
//! concurrency; and the server refusing an old schema.

use std::process::{Command, Output};

fn tool(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_livepatch-schema-tool"));
    cmd.args(args).env_remove("LP_DATABASE_CONNECTION_STRING");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn check(out: &Output, code: i32, stdout_has: &str, stderr_has: &str) {
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(code), "stdout: {so}\nstderr: {se}");
    assert!(
        so.contains(stdout_has),
        "stdout {so:?} lacks {stdout_has:?}"
    );
    assert!(
        se.contains(stderr_has),
        "stderr {se:?} lacks {stderr_has:?}"
    );
}

#[test]
fn check_says_pending_with_2_then_upgrade_applies_and_check_says_up_to_date_with_0() {
    let db = testkit::test_database();
    let dsn = db.dsn();
    check(
        &tool(&["check", "--db", &dsn, "--target", "livepatchdb"], &[]),
        2,
        "database not initialized",
        "",
    );
    check(
        &tool(
            &["upgrade", "--target", "livepatchdb"],
            &[("LP_DATABASE_CONNECTION_STRING", &dsn)],
        ),
        0,
        "applied migrations [1, 2]; schema is at version 2",
        "",
    );
    check(
        &tool(
            &["check", "--target", "livepatchdb"],
            &[("LP_DATABASE_CONNECTION_STRING", &dsn)],
        ),
        0,
        "up to date",
        "",
    );
    check(
        &tool(&["upgrade", "--db", &dsn, "--target", "livepatchdb"], &[]),
        0,
        "nothing to do",
        "",
    );
    assert_eq!(
        db.psql("SELECT string_agg(name, ',' ORDER BY position) FROM tier")
            .unwrap()
            .trim(),
        "edge,beta,candidate,stable"
    );
}

#[test]
fn errors_exit_1_with_the_reason_on_stderr_and_never_the_password() {
    let db = testkit::test_database();
    let port = db.cluster().port();
    let bad = format!("postgresql://postgres:Sup3rSecretPw@127.0.0.1:{port}/no_such_database");
    let out = tool(&["check", "--db", &bad, "--target", "livepatchdb"], &[]);
    check(&out, 1, "", "no_such_database");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("Sup3rSecretPw"));
    check(
        &tool(&["check", "--target", "livepatchdb"], &[]),
        1,
        "",
        "LP_DATABASE_CONNECTION_STRING",
    );
    check(
        &tool(
            &["check", "--db", &db.dsn(), "--target", "timescaledb"],
            &[],
        ),
        1,
        "",
        "not supported yet",
    );
    check(
        &tool(
            &["check", "--db", "postgresql://u:pw@h/d?sslmode=bogus"],
            &[],
        ),
        1,
        "",
        "sslmode",
    );
    // A usage error must not look like "pending" (2) to the charm.
    check(
        &tool(&["check", "--target", "nosuchdb"], &[]),
        1,
        "",
        "nosuchdb",
    );
}

#[test]
fn a_database_from_a_newer_build_is_an_error_not_pending() {
    let db = testkit::test_database();
    check(&tool(&["upgrade", "--db", &db.dsn()], &[]), 0, "", "");
    db.psql("INSERT INTO schema_version (version, name) VALUES (999, 'future')")
        .unwrap();
    check(&tool(&["check", "--db", &db.dsn()], &[]), 1, "", "newer");
    check(&tool(&["upgrade", "--db", &db.dsn()], &[]), 1, "", "newer");
}

#[test]
fn concurrent_upgrades_all_succeed_and_apply_each_migration_once() {
    let db = testkit::test_database();
    let dsn = db.dsn();
    let children: Vec<_> = (0..6)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_livepatch-schema-tool"))
                .args(["upgrade", "--target", "livepatchdb"])
                .env("LP_DATABASE_CONNECTION_STRING", &dsn)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        db.psql("SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_version")
            .unwrap()
            .trim(),
        "1,2"
    );
    assert_eq!(db.psql("SELECT count(*) FROM tier").unwrap().trim(), "4");
}

#[tokio::test]
async fn the_server_refuses_an_unmigrated_database_and_names_the_fix() {
    let db = testkit::test_database();
    let (config, _) = workload::config::Config::from_sources(
        None,
        vec![("LP_DATABASE_CONNECTION_STRING".to_string(), db.dsn())],
    )
    .unwrap();
    let err = workload::server::build_state(config)
        .await
        .err()
        .expect("must refuse")
        .to_string();
    assert!(err.contains("livepatch-schema-tool upgrade"), "{err}");
}
