//! The client API: enrolment, check-in and update selection, info, leaving, reports.

use http::Method;
use serde_json::json;

use crate::common::{patch_name, spawn_app};

const K: &str = "5.15.0-107.117";

#[tokio::test]
async fn enrolment_mints_a_machine_token_and_enrolling_again_revokes_the_old_one() {
    let app = spawn_app(&[]).await;
    let admin = app.admin().await;
    let auth = app.auth_token(&admin, "fleet-a", "beta").await;
    let body =
        json!({"architecture": "amd64", "kernel": "5.15.0-107.117-generic", "hostname": "web-1"});
    let first = app
        .call(
            Method::PUT,
            "/v1/client/m-1",
            Some(&format!("Bearer {auth}")),
            Some(body.clone()),
        )
        .await;
    assert_eq!(first.status, 201);
    assert_eq!(first.json()["tier"], "beta");
    let old = first.json()["machine-token"].as_str().unwrap().to_string();
    assert!(first.headers.contains_key("x-request-id"));
    let again = app
        .call(
            Method::PUT,
            "/v1/client/m-1",
            Some(&format!("Bearer {auth}")),
            Some(body),
        )
        .await;
    assert_eq!(again.status, 200);
    let new = again.json()["machine-token"].as_str().unwrap().to_string();
    assert_ne!(old, new);
    let k = json!({"kernel": "5.15.0-107.117-generic", "architecture": "amd64"});
    assert_eq!(
        app.check_in("m-1", &old, k.clone()).await.status,
        401,
        "the old token is revoked"
    );
    assert_eq!(app.check_in("m-1", &new, k).await.status, 204);
}

#[tokio::test]
async fn enrolment_refuses_missing_unknown_and_expired_auth_tokens() {
    let app = spawn_app(&[]).await;
    let admin = app.admin().await;
    let body = json!({"architecture": "amd64", "kernel": "5.15.0-107.117-generic"});
    let r = app
        .call(Method::PUT, "/v1/client/m-1", None, Some(body.clone()))
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().as_str()),
        (401, "unauthorized")
    );
    let r = app
        .call(
            Method::PUT,
            "/v1/client/m-1",
            Some("Bearer lpa_nope"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(r.status, 401);
    let token = app.auth_token(&admin, "short-lived", "edge").await;
    app.sql(
        "UPDATE auth_token SET expires_at = now() - interval '1 second' WHERE id = 'short-lived'",
    );
    let r = app
        .call(
            Method::PUT,
            "/v1/client/m-1",
            Some(&format!("Bearer {token}")),
            Some(body),
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        app.sql("SELECT count(*) FROM machine"),
        "0",
        "no state changed"
    );
}

#[tokio::test]
async fn enrolment_validates_ids_and_fields_before_anything_else() {
    let app = spawn_app(&[]).await;
    let admin = app.admin().await;
    let auth = format!("Bearer {}", app.auth_token(&admin, "t", "edge").await);
    let ok = json!({"architecture": "amd64", "kernel": "5.15.0-107.117-generic"});
    for (path, body, field) in [
        ("/v1/client/a%2Fb", ok.clone(), "machine-id"),
        ("/v1/client/caf%C3%A9", ok.clone(), "machine-id"),
        (
            &format!("/v1/client/{}", "x".repeat(65)) as &str,
            ok.clone(),
            "machine-id",
        ),
        (
            "/v1/client/m",
            json!({"architecture": "i386", "kernel": "5.15.0-107.117-generic"}),
            "architecture",
        ),
        (
            "/v1/client/m",
            json!({"architecture": "amd64", "kernel": "5.15.0"}),
            "kernel",
        ),
        (
            "/v1/client/m",
            json!({"architecture": "amd64", "kernel": "5.15.0-107.117-generic", "extra": 1}),
            "extra",
        ),
    ] {
        let r = app.call(Method::PUT, path, Some(&auth), Some(body)).await;
        assert_eq!(r.status, 400, "{path}: {:?}", r.body);
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains(field),
            "{path}: {:?}",
            r.body
        );
    }
    assert_eq!(app.sql("SELECT count(*) FROM machine"), "0");
}

#[tokio::test]
async fn a_machine_token_only_works_for_its_own_machine() {
    let app = spawn_app(&[]).await;
    let admin = app.admin().await;
    let a = app.enroll(&admin, "m-a", "edge").await;
    app.enroll(&admin, "m-b", "edge").await;
    let k = json!({"kernel": "5.15.0-107.117-generic", "architecture": "amd64"});
    assert_eq!(app.check_in("m-b", &a, k.clone()).await.status, 403);
    assert_eq!(
        app.check_in("m-a", "lpm_forged", k.clone()).await.status,
        401
    );
    assert_eq!(app.check_in("m-unknown", &a, k.clone()).await.status, 403);
    let r = app
        .call(Method::POST, "/v1/client/m-a/updates", None, Some(k))
        .await;
    assert_eq!(r.status, 401);
}

/// Uploads one file per (flavour, version, arch) for kernel K, in the first tier.
async fn seed(app: &crate::common::TestApp, admin: &str, files: &[(&str, &str, &str)]) {
    for (flavour, version, arch) in files {
        let r = app
            .upload(
                admin,
                &patch_name(K, flavour, version, arch),
                format!("{flavour}{version}{arch}").as_bytes(),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
}

#[tokio::test]
async fn the_update_is_the_newest_applicable_patch_of_the_tier_for_the_exact_kernel_and_arch() {
    let app = spawn_app(&[]).await;
    let admin = app.admin().await;
    seed(
        &app,
        &admin,
        &[
            ("generic", "9.1", "amd64"),
            ("generic", "10.1", "amd64"),
            ("generic", "11.1", "arm64"),
            ("lowlatency", "12.1", "amd64"),
        ],
    )
    .await;
    // 10.1 and 9.1 are in edge (upload tier); only 9.1 reaches stable.
    for tier in ["beta", "candidate", "stable"] {
        let r = app
            .call(
                Method::POST,
                "/v1/admin/patches/9.1/promote",
                Some(&admin),
                Some(json!({"tier": tier})),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let edge = app.enroll(&admin, "m-edge", "edge").await;
    let stable = app.enroll(&admin, "m-stable", "stable").await;
    let generic = json!({"kernel": "5.15.0-107.117-generic", "architecture": "amd64"});

    let r = app.check_in("m-edge", &edge, generic.clone()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let p = &r.json()["patch"];
    assert_eq!(p["version"], "10.1", "numeric order: 10.1 > 9.1");
    assert_eq!(p["filename"], patch_name(K, "generic", "10.1", "amd64"));
    assert_eq!(
        p["url"],
        format!(
            "http://localhost/v1/patches/{}",
            patch_name(K, "generic", "10.1", "amd64")
        )
    );
    assert_eq!(r.json()["kernel-supported"], true);

    assert_eq!(
        app.check_in("m-stable", &stable, generic.clone())
            .await
            .json()["patch"]["version"],
        "9.1",
        "tier"
    );
    let ll = json!({"kernel": "5.15.0-107.117-lowlatency", "architecture": "amd64"});
    assert_eq!(
        app.check_in("m-edge", &edge, ll).await.json()["patch"]["version"],
        "12.1",
        "flavour"
    );
    let arm = json!({"kernel": "5.15.0-107.117-generic", "architecture": "arm64"});
    assert_eq!(
        app.check_in("m-edge", &edge, arm).await.json()["patch"]["version"],
        "11.1",
        "architecture"
    );
    let other = json!({"kernel": "5.15.0-108.118-generic", "architecture": "amd64"});
    assert_eq!(
        app.check_in("m-edge", &edge, other).await.status,
        204,
        "another kernel gets nothing"
    );
    assert!(app
        .state
        .metrics
        .render()
        .contains("livepatch_client_updates_with_unknown_kernel_total 1"));

    // Blocklisting 10.1 steers edge machines back to 9.1, even one already running 10.1.
    let r = app
        .call(
            Method::PUT,
            "/v1/admin/patches/10.1/blocklist",
            Some(&admin),
            Some(json!({"reason": "oops"})),
        )
        .await;
    assert_eq!(r.status, 200);
    let running = json!({"kernel": "5.15.0-107.117-generic", "architecture": "amd64", "patch-version": "10.1", "patch-state": "Applied"});
    assert_eq!(
        app.check_in("m-edge", &edge, running).await.json()["patch"]["version"],
        "9.1"
    );
    let r = app
        .call(
            Method::DELETE,
            "/v1/admin/patches/10.1/blocklist",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        app.check_in("m-edge", &edge, generic.clone()).await.json()["patch"]["version"],
        "10.1"
    );

    // A cutoff before every release hides everything; a patch delay likewise.
    let cut = json!({"kernel": "5.15.0-107.117-generic", "architecture": "amd64", "cutoff-date": "2000-01-01T00:00:00Z"});
    assert_eq!(app.check_in("m-edge", &edge, cut).await.status, 204);
    let delay = json!({"kernel": "5.15.0-107.117-generic", "architecture": "amd64", "patch-delay-hours": 48});
    assert_eq!(app.check_in("m-edge", &edge, delay).await.status, 204);
    let m = app.state.metrics.render();
    assert!(
        m.contains("livepatch_server_http_cutoff_date_count 1")
            && m.contains("livepatch_server_http_patch_delay_count 1"),
        "{m}"
    );

    // The check-in was recorded.
    assert_eq!(
        app.sql("SELECT patch_state || ' ' || patch_version FROM machine WHERE id = 'm-edge'"),
        "applied 10.1"
    );
}

#[tokio::test]
async fn the_url_comes_from_the_template_when_set() {
    let app = spawn_app(&[(
        "LP_SERVER_URL_TEMPLATE",
        "https://files.example.com/lp/{filename}",
    )])
    .await;
    let admin = app.admin().await;
    seed(&app, &admin, &[("generic", "1.1", "amd64")]).await;
    let t = app.enroll(&admin, "m", "edge").await;
    let r = app
        .check_in(
            "m",
            &t,
            json!({"kernel": "5.15.0-107.117-generic", "architecture": "amd64"}),
        )
        .await;
    assert_eq!(
        r.json()["patch"]["url"],
        format!(
            "https://files.example.com/lp/{}",
            patch_name(K, "generic", "1.1", "amd64")
        )
    );
}

#[tokio::test]
async fn info_shows_the_machine_and_leaving_removes_it() {
    let app = spawn_app(&[]).await;
    let admin = app.admin().await;
    let t = app.enroll(&admin, "m-1", "candidate").await;
    app.check_in("m-1", &t, json!({"kernel": "5.15.0-107.117-generic", "architecture": "amd64", "patch-state": "nothing-to-apply"})).await;
    let r = app
        .call(
            Method::GET,
            "/v1/client/m-1/info",
            Some(&format!("Bearer {t}")),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(
        (
            v["machine-id"].as_str(),
            v["tier"].as_str(),
            v["patch-state"].as_str()
        ),
        (Some("m-1"), Some("candidate"), Some("nothing-to-apply"))
    );
    assert!(v["last-check-in"].as_str().unwrap().ends_with('Z'));
    let r = app
        .call(
            Method::DELETE,
            "/v1/client/m-1",
            Some(&format!("Bearer {t}")),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(app.sql("SELECT count(*) FROM machine"), "0");
    let r = app
        .call(
            Method::GET,
            "/v1/client/m-1/info",
            Some(&format!("Bearer {t}")),
            None,
        )
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn check_ins_write_hashed_report_rows_when_enabled_and_cleanup_respects_the_limit() {
    let app = spawn_app(&[("LP_MACHINE_REPORTS_DATABASE_ENABLED", "true")]).await;
    let admin = app.admin().await;
    let t = app.enroll(&admin, "m-report", "edge").await;
    let body = json!({"kernel": "5.15.0-107.117-generic", "architecture": "amd64", "cpu-model": "Xeon", "uptime-seconds": 42,
                      "boot-time": "2026-11-01T00:00:00Z", "client-version": "10.8.0", "patch-state": "unapplied"});
    for _ in 0..3 {
        assert_eq!(app.check_in("m-report", &t, body.clone()).await.status, 204);
    }
    assert_eq!(app.sql("SELECT count(*) FROM machine_report"), "3");
    assert_eq!(
        app.sql("SELECT count(*) FROM machine_report WHERE machine_hash = 'm-report'"),
        "0",
        "ids are hashed"
    );
    assert_eq!(
        app.sql(
            "SELECT DISTINCT cpu_model || ' ' || uptime_seconds || ' ' || tier FROM machine_report"
        ),
        "Xeon 42 edge"
    );
    app.sql("UPDATE machine_report SET created_at = now() - interval '30 days'");
    assert_eq!(app.state.store.cleanup_reports(10, 2).await.unwrap(), 2);
    assert_eq!(app.state.store.cleanup_reports(10, 2).await.unwrap(), 1);
    assert_eq!(app.sql("SELECT count(*) FROM machine_report"), "0");
}

#[tokio::test]
async fn reports_are_not_written_when_disabled() {
    let app = spawn_app(&[]).await;
    let admin = app.admin().await;
    let t = app.enroll(&admin, "m", "edge").await;
    app.check_in(
        "m",
        &t,
        json!({"kernel": "5.15.0-107.117-generic", "architecture": "amd64"}),
    )
    .await;
    assert_eq!(app.sql("SELECT count(*) FROM machine_report"), "0");
}

#[tokio::test]
async fn the_leader_deletes_expired_reports_on_its_interval() {
    let app = spawn_app(&[
        ("LP_MACHINE_REPORTS_DATABASE_ENABLED", "true"),
        ("LP_SERVER_IS_LEADER", "true"),
        ("LP_MACHINE_REPORTS_DATABASE_CLEANUP_INTERVAL", "100ms"),
        ("LP_MACHINE_REPORTS_DATABASE_CLEANUP_ROW_LIMIT", "2"),
    ])
    .await;
    app.sql(
        "INSERT INTO machine_report (machine_hash, tier, architecture, kernel, created_at)
         SELECT 'h' || i, 'edge', 'amd64', 'k', now() - interval '30 days' FROM generate_series(1, 5) i;
         INSERT INTO machine_report (machine_hash, tier, architecture, kernel) VALUES ('fresh', 'edge', 'amd64', 'k')",
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listeners = workload::server::Listeners {
        public: listener,
        admin: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(workload::server::serve(
        app.state.clone(),
        listeners,
        None,
        async {
            let _ = stopped.await;
        },
        std::time::Duration::from_secs(5),
    ));
    // Poll the outcome (no timing assertion): three runs of at most two rows each.
    let mut remaining = String::new();
    for _ in 0..200 {
        remaining = app.sql("SELECT count(*) FROM machine_report");
        if remaining == "1" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(remaining, "1");
    assert_eq!(
        app.sql("SELECT machine_hash FROM machine_report"),
        "fresh",
        "recent rows stay"
    );
    stop.send(()).unwrap();
    assert!(server.await.unwrap(), "drained");
}

#[tokio::test]
async fn pool_connections_get_the_configured_work_mem() {
    let db = testkit::test_database();
    let dsn = workload::db::Dsn::parse(&db.dsn()).unwrap();
    let settings = workload::db::PoolSettings {
        max_size: 2,
        lifetime: std::time::Duration::from_secs(600),
        work_mem_mb: Some(64),
    };
    let pool = workload::db::pool(&dsn, settings).unwrap();
    let client = pool.get().await.unwrap();
    let v: String = client.query_one("SHOW work_mem", &[]).await.unwrap().get(0);
    assert_eq!(v, "64MB");
    let v: String = client
        .query_one("SHOW application_name", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, "livepatch-server");
}
