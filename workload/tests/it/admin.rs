//! The admin API: credentials on every route, login, tiers, uploads, promotion, blocklist, tokens,
//! storage, reports, and bad input that changes nothing.

use http::Method;
use serde_json::json;

use crate::common::{basic, patch_name, spawn_app, ADMIN_PASSWORD, ADMIN_USER};

#[tokio::test]
async fn every_admin_route_refuses_missing_and_bad_credentials() {
    let app = spawn_app(&[]).await;
    let forged = format!("Macaroon {}", {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            br#"{"v":1,"k":"6f1c7f4e-1a1b-4c1d-8e1f-000000000000","c":["user=admin","expires=99999999999","session=6f1c7f4e-1a1b-4c1d-8e1f-000000000000"],"s":"00"}"#,
        )
    });
    let admin_routes: Vec<_> = crate::routes::all()
        .into_iter()
        .filter(|(_, p)| p.starts_with("/v1/admin/"))
        .collect();
    assert!(admin_routes.len() >= 18, "{admin_routes:?}");
    for (method, path) in admin_routes {
        for auth in [
            None,
            Some(basic(ADMIN_USER, "wrong")),
            Some(basic("nobody", ADMIN_PASSWORD)),
            Some(forged.clone()),
            Some("Bearer x".into()),
            Some("Digest abc".into()),
        ] {
            let r = app
                .call(
                    method.parse().unwrap(),
                    &crate::routes::example(&path),
                    auth.as_deref(),
                    Some(json!({})),
                )
                .await;
            assert_eq!(r.status, 401, "{method} {path} with {auth:?}: {:?}", r.body);
            assert_eq!(r.error_code(), "unauthorized");
            assert!(r.headers.contains_key("x-request-id"));
        }
    }
    assert_eq!(app.sql("SELECT count(*) FROM admin_session"), "0");
}

#[tokio::test]
async fn login_returns_a_240_hour_token_and_basic_works_on_admin_routes_too() {
    let app = spawn_app(&[]).await;
    let r = app
        .call(
            Method::POST,
            "/v1/admin/login",
            Some(&basic(ADMIN_USER, ADMIN_PASSWORD)),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let expires = time::OffsetDateTime::parse(
        r.json()["expires"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let hours = (expires - time::OffsetDateTime::now_utc()).whole_hours();
    assert!((239..=240).contains(&hours), "{hours}");
    let token = r.json()["token"].as_str().unwrap().to_string();
    for auth in [
        format!("Macaroon {token}"),
        format!("Bearer {token}"),
        basic(ADMIN_USER, ADMIN_PASSWORD),
    ] {
        let r = app
            .call(Method::GET, "/v1/admin/tiers", Some(&auth), None)
            .await;
        assert_eq!(r.status, 200, "{auth}");
    }
    // A tampered token fails; an ended session fails.
    let mut tampered = token.clone();
    tampered.pop();
    assert_eq!(
        app.call(
            Method::GET,
            "/v1/admin/tiers",
            Some(&format!("Macaroon {tampered}")),
            None
        )
        .await
        .status,
        401
    );
    app.sql("UPDATE admin_session SET revoked = true");
    assert_eq!(
        app.call(
            Method::GET,
            "/v1/admin/tiers",
            Some(&format!("Macaroon {token}")),
            None
        )
        .await
        .status,
        401
    );
    // Wrong password and unknown user look the same.
    let a = app
        .call(
            Method::POST,
            "/v1/admin/login",
            Some(&basic(ADMIN_USER, "nope")),
            None,
        )
        .await;
    let b = app
        .call(
            Method::POST,
            "/v1/admin/login",
            Some(&basic("ghost", "nope")),
            None,
        )
        .await;
    assert_eq!(
        (a.status.as_u16(), &a.json()["error"]["message"]),
        (401, &b.json()["error"]["message"])
    );
}

#[tokio::test]
async fn login_is_refused_when_basic_auth_is_disabled() {
    let app = spawn_app(&[("LP_AUTH_BASIC_ENABLED", "false")]).await;
    let r = app
        .call(
            Method::POST,
            "/v1/admin/login",
            Some(&basic(ADMIN_USER, ADMIN_PASSWORD)),
            None,
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("auth.basic.enabled"));
}

#[tokio::test]
async fn root_keys_mint_for_a_day_and_verify_until_their_tokens_expire() {
    let app = spawn_app(&[]).await;
    let first = app.admin().await;
    // The key's minting window closes: the next login gets a new key, the old token still works.
    app.sql("UPDATE macaroon_root_key SET mint_until = now() - interval '1 hour'");
    let second = app.admin().await;
    assert_eq!(app.sql("SELECT count(*) FROM macaroon_root_key"), "2");
    for t in [&first, &second] {
        assert_eq!(
            app.call(Method::GET, "/v1/admin/tiers", Some(t), None)
                .await
                .status,
            200
        );
    }
    assert_eq!(app.sql("SELECT bool_and(expires_at >= mint_until + interval '240 hours') FROM macaroon_root_key"), "t");
}

#[tokio::test]
async fn tiers_keep_their_order_and_refuse_duplicates_bad_names_and_removal_while_in_use() {
    let app = spawn_app(&[]).await;
    let admin = app.admin().await;
    let names = |v: serde_json::Value| {
        v["tiers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let r = app
        .call(Method::GET, "/v1/admin/tiers", Some(&admin), None)
        .await;
    assert_eq!(names(r.json()), ["edge", "beta", "candidate", "stable"]);
    let r = app
        .call(
            Method::POST,
            "/v1/admin/tiers",
            Some(&admin),
            Some(json!({"name": "early", "after": "edge"})),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.json()["position"].as_i64()),
        (201, Some(2))
    );
    let r = app
        .call(
            Method::POST,
            "/v1/admin/tiers",
            Some(&admin),
            Some(json!({"name": "late"})),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = app
        .call(Method::GET, "/v1/admin/tiers", Some(&admin), None)
        .await;
    assert_eq!(
        names(r.json()),
        ["edge", "early", "beta", "candidate", "stable", "late"]
    );
    let r = app
        .call(
            Method::POST,
            "/v1/admin/tiers",
            Some(&admin),
            Some(json!({"name": "beta"})),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().as_str()),
        (409, "tier-exists")
    );
    for bad in ["Beta", "-x", "ǝdge", "a/b", "edge\u{200b}", ""] {
        let r = app
            .call(
                Method::POST,
                "/v1/admin/tiers",
                Some(&admin),
                Some(json!({"name": bad})),
            )
            .await;
        assert_eq!(r.status, 400, "{bad:?}");
    }
    let r = app
        .call(
            Method::POST,
            "/v1/admin/tiers",
            Some(&admin),
            Some(json!({"name": "x", "after": "nowhere"})),
        )
        .await;
    assert_eq!(r.status, 404);
    app.auth_token(&admin, "uses-early", "early").await;
    let r = app
        .call(Method::DELETE, "/v1/admin/tiers/early", Some(&admin), None)
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().as_str()),
        (409, "tier-in-use")
    );
    assert_eq!(
        app.call(
            Method::DELETE,
            "/v1/admin/auth-tokens/uses-early",
            Some(&admin),
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        app.call(Method::DELETE, "/v1/admin/tiers/early", Some(&admin), None)
            .await
            .status,
        204
    );
    assert_eq!(
        app.call(Method::DELETE, "/v1/admin/tiers/early", Some(&admin), None)
            .await
            .status,
        404
    );
    let r = app
        .call(Method::GET, "/v1/admin/tiers", Some(&admin), None)
        .await;
    let positions: Vec<i64> = r.json()["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["position"].as_i64().unwrap())
        .collect();
    assert_eq!(positions, [1, 2, 3, 4, 5], "positions stay dense");
}

#[tokio::test]
async fn tier_changes_and_promotions_are_refused_under_sync_tiers() {
    let app = spawn_app(&[("LP_PATCH_SYNC_SYNC_TIERS", "true")]).await;
    let admin = app.admin().await;
    for (m, p, b) in [
        (Method::POST, "/v1/admin/tiers", json!({"name": "x"})),
        (Method::DELETE, "/v1/admin/tiers/beta", json!({})),
        (
            Method::POST,
            "/v1/admin/patches/1.1/promote",
            json!({"tier": "beta"}),
        ),
        (
            Method::POST,
            "/v1/admin/tiers/edge/promote-all",
            json!({"to": "stable"}),
        ),
    ] {
        let r = app.call(m.clone(), p, Some(&admin), Some(b)).await;
        assert_eq!(
            (r.status.as_u16(), r.error_code().as_str()),
            (409, "sync-tiers"),
            "{m} {p}"
        );
    }
}

const K: &str = "5.15.0-107.117";

#[tokio::test]
async fn uploads_are_stored_hashed_placed_in_the_first_tier_and_idempotent() {
    let app = spawn_app(&[("LP_SERVER_MAX_UPLOAD_SIZE", "1000")]).await;
    let admin = app.admin().await;
    let name = patch_name(K, "generic", "107.1", "amd64");
    let r = app.upload(&admin, &name, b"patch-bytes").await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let expected = workload::domain::hex(&<sha2::Sha256 as sha2::Digest>::digest(b"patch-bytes"));
    assert_eq!(r.json()["sha256"], expected);
    assert_eq!(
        std::fs::read(app.patches.path().join(&name)).unwrap(),
        b"patch-bytes"
    );
    assert_eq!(
        app.upload(&admin, &name, b"patch-bytes").await.status,
        200,
        "same file again"
    );
    let r = app.upload(&admin, &name, b"other-bytes").await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().as_str()),
        (409, "patch-exists")
    );
    assert_eq!(
        std::fs::read(app.patches.path().join(&name)).unwrap(),
        b"patch-bytes",
        "the stored file is untouched"
    );
    let r = app
        .call(Method::GET, "/v1/admin/patches", Some(&admin), None)
        .await;
    let p = &r.json()["patches"][0];
    assert_eq!(
        (
            p["version"].as_str(),
            p["kernel"].as_str(),
            p["flavour"].as_str()
        ),
        (Some("107.1"), Some(K), Some("generic"))
    );
    assert_eq!(p["tiers"], json!(["edge"]));
    assert_eq!(p["size"], 11);

    // Refusals leave nothing behind: not in storage, not in the database.
    let other = patch_name(K, "generic", "108.1", "amd64");
    let r = app.upload(&admin, &other, &vec![7u8; 1001]).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().as_str()),
        (413, "too-large")
    );
    for bad in [
        "../../etc/passwd",
        "livepatch-5.15.0-107.117-generic-107.1-amd64.tar.bz2/../x",
        "x.tar.bz2",
    ] {
        let r = app.upload(&admin, bad, b"x").await;
        assert_eq!(r.status, 400, "{bad}");
    }
    let req = http::Request::builder()
        .method(Method::POST)
        .uri("/v1/admin/patches")
        .header("authorization", &admin)
        .header("content-type", "text/plain")
        .header("x-patch-filename", &other)
        .body(axum::body::Body::from("x"))
        .unwrap();
    assert_eq!(app.send(req).await.status, 415);
    let files: Vec<_> = std::fs::read_dir(app.patches.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        files,
        [std::ffi::OsString::from(&name)],
        "only the one good file, no temp files"
    );
    assert_eq!(app.sql("SELECT count(*) FROM patch_file"), "1");
}

#[tokio::test]
async fn promotion_places_every_file_of_a_version_and_promote_all_mirrors_the_source_tier() {
    let app = spawn_app(&[]).await;
    let admin = app.admin().await;
    for (v, arch) in [("1.1", "amd64"), ("1.1", "arm64"), ("2.1", "amd64")] {
        assert_eq!(
            app.upload(&admin, &patch_name(K, "generic", v, arch), v.as_bytes())
                .await
                .status,
            201
        );
    }
    let r = app
        .call(
            Method::POST,
            "/v1/admin/patches/1.1/promote",
            Some(&admin),
            Some(json!({"tier": "stable"})),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.json()["placed"].as_i64()),
        (200, Some(2))
    );
    let r = app
        .call(
            Method::POST,
            "/v1/admin/patches/9.9/promote",
            Some(&admin),
            Some(json!({"tier": "stable"})),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .call(
            Method::POST,
            "/v1/admin/patches/1.1/promote",
            Some(&admin),
            Some(json!({"tier": "nowhere"})),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .call(
            Method::POST,
            "/v1/admin/patches/1.x/promote",
            Some(&admin),
            Some(json!({"tier": "stable"})),
        )
        .await;
    assert_eq!(r.status, 400);

    // stable holds 1.1 (not in beta/candidate); promote-all edge→candidate makes beta and candidate
    // hold exactly edge's files, and leaves stable alone.
    let r = app
        .call(
            Method::POST,
            "/v1/admin/tiers/edge/promote-all",
            Some(&admin),
            Some(json!({"to": "candidate"})),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.json()["promoted"].as_i64()),
        (200, Some(6))
    );
    let count = |tier: &str| {
        app.sql(&format!("SELECT count(*) FROM patch_file_tier pft JOIN tier t ON t.id = pft.tier_id WHERE t.name = '{tier}'"))
    };
    assert_eq!(
        (
            count("edge"),
            count("beta"),
            count("candidate"),
            count("stable")
        ),
        ("3".into(), "3".into(), "3".into(), "2".into())
    );
    // Beta gets a file edge lacks; promote-all removes it again.
    app.sql("DELETE FROM patch_file_tier WHERE tier_id = (SELECT id FROM tier WHERE name = 'edge') AND patch_file_id = (SELECT min(id) FROM patch_file)");
    app.call(
        Method::POST,
        "/v1/admin/tiers/edge/promote-all",
        Some(&admin),
        Some(json!({"to": "beta"})),
    )
    .await;
    assert_eq!(count("beta"), "2");
    let r = app
        .call(
            Method::POST,
            "/v1/admin/tiers/stable/promote-all",
            Some(&admin),
            Some(json!({"to": "edge"})),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().as_str()),
        (422, "unprocessable")
    );
    let r = app
        .call(
            Method::POST,
            "/v1/admin/tiers/edge/promote-all",
            Some(&admin),
            Some(json!({"to": "nowhere"})),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().as_str()),
        (422, "unprocessable"),
        "a missing target tier is not the URL's resource"
    );
}

#[tokio::test]
async fn auth_and_sync_tokens_are_created_listed_revoked_and_never_stored_in_clear() {
    let app = spawn_app(&[]).await;
    let admin = app.admin().await;
    let auth = app.auth_token(&admin, "fleet", "stable").await;
    let r = app
        .call(
            Method::POST,
            "/v1/admin/auth-token",
            Some(&admin),
            Some(json!({"id": "fleet", "tier": "beta"})),
        )
        .await;
    assert_eq!(r.status, 409);
    let r = app
        .call(
            Method::POST,
            "/v1/admin/auth-token",
            Some(&admin),
            Some(json!({"id": "x", "tier": "nope"})),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .call(
            Method::POST,
            "/v1/admin/auth-token",
            Some(&admin),
            Some(json!({"id": "x", "tier": "edge", "valid-until": "2001-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(r.status, 422);
    let r = app.call(Method::POST, "/v1/admin/sync-tokens", Some(&admin), Some(json!({"tier": "stable", "name": "downstream-1", "valid-until": "2099-01-01T00:00:00Z"}))).await;
    assert_eq!(r.status, 201);
    let sync = r.json()["token"].as_str().unwrap().to_string();
    assert!(sync.starts_with("lps_"));
    let r = app
        .call(
            Method::POST,
            "/v1/admin/sync-tokens",
            Some(&admin),
            Some(json!({"tier": "stable", "name": "downstream-1"})),
        )
        .await;
    assert_eq!(r.status, 409);
    let machine = app.enroll(&admin, "m-1", "edge").await;
    let (name, tier_id, stored) = app
        .state
        .store
        .find_sync_token(&workload::domain::token_hash(&sync))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            name.as_str(),
            app.state.store.tier_name(tier_id).await.unwrap().as_str()
        ),
        ("downstream-1", "stable")
    );
    assert!(workload::domain::token_matches(&sync, &stored));
    assert!(app
        .state
        .store
        .find_sync_token(&workload::domain::token_hash("lps_forged"))
        .await
        .unwrap()
        .is_none());

    let r = app
        .call(Method::GET, "/v1/admin/auth-tokens", Some(&admin), None)
        .await;
    let listed = r.body.clone();
    assert!(r.json()["auth-tokens"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == "fleet" && t["tier"] == "stable"));
    let r = app
        .call(Method::GET, "/v1/admin/sync-tokens", Some(&admin), None)
        .await;
    assert_eq!(r.json()["sync-tokens"][0]["name"], "downstream-1");
    assert_eq!(
        r.json()["sync-tokens"][0]["expires"],
        "2099-01-01T00:00:00Z"
    );

    let dump = app.db.cluster().dump(app.db.name()).unwrap();
    let macaroon = admin.trim_start_matches("Macaroon ");
    for secret in [
        auth.as_str(),
        sync.as_str(),
        machine.as_str(),
        macaroon,
        ADMIN_PASSWORD,
    ] {
        assert!(!dump.contains(secret), "a clear secret is in the database");
        assert!(!String::from_utf8_lossy(&listed).contains(secret));
    }
    assert!(dump.contains("auth_token"), "the dump is real");

    assert_eq!(
        app.call(
            Method::DELETE,
            "/v1/admin/sync-tokens/downstream-1",
            Some(&admin),
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        app.call(
            Method::DELETE,
            "/v1/admin/sync-tokens/downstream-1",
            Some(&admin),
            None
        )
        .await
        .status,
        404
    );
    assert_eq!(
        app.call(
            Method::DELETE,
            "/v1/admin/auth-tokens/fleet",
            Some(&admin),
            None
        )
        .await
        .status,
        204
    );
    let r = app
        .call(
            Method::PUT,
            "/v1/client/m-2",
            Some(&format!("Bearer {auth}")),
            Some(json!({"architecture": "amd64", "kernel": "5.15.0-107.117-generic"})),
        )
        .await;
    assert_eq!(r.status, 401, "a revoked auth token enrols nobody");
}

#[tokio::test]
async fn storage_listing_and_refresh_register_files_copied_by_hand() {
    let app = spawn_app(&[]).await;
    let admin = app.admin().await;
    let uploaded = patch_name(K, "generic", "1.1", "amd64");
    app.upload(&admin, &uploaded, b"one").await;
    let copied = patch_name(K, "aws", "2.1", "amd64");
    std::fs::write(app.patches.path().join(&copied), b"copied by hand").unwrap();
    std::fs::write(app.patches.path().join("notes.txt"), b"?").unwrap();
    let r = app
        .call(Method::GET, "/v1/admin/storage/patches", Some(&admin), None)
        .await;
    let list = r.json();
    assert_eq!(list["storage-type"], "filesystem");
    let seen: Vec<(String, bool)> = list["patches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["filename"].as_str().unwrap().to_string(),
                p["registered"].as_bool().unwrap(),
            )
        })
        .collect();
    let mut expected = vec![
        (uploaded.clone(), true),
        (copied.clone(), false),
        ("notes.txt".to_string(), false),
    ];
    expected.sort();
    assert_eq!(seen, expected);
    std::fs::remove_file(app.patches.path().join(&uploaded)).unwrap();
    let r = app
        .call(
            Method::POST,
            "/v1/admin/storage/refresh",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["registered"], 1);
    assert_eq!(v["missing-files"], json!([uploaded]));
    assert_eq!(v["invalid-names"], json!(["notes.txt"]));
    let expected =
        workload::domain::hex(&<sha2::Sha256 as sha2::Digest>::digest(b"copied by hand"));
    assert_eq!(
        app.sql(&format!(
            "SELECT sha256 FROM patch_file WHERE filename = '{copied}'"
        )),
        expected
    );
    let r = app
        .call(
            Method::POST,
            "/v1/admin/storage/refresh",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.json()["registered"], 0, "idempotent");
}

#[tokio::test]
async fn reports_list_machines_by_tier_version_and_state_and_count_patch_health() {
    let app = spawn_app(&[]).await;
    let admin = app.admin().await;
    for (i, state) in ["applied", "applied", "apply-failed"].iter().enumerate() {
        let m = format!("m-{i}");
        let t = app.enroll(&admin, &m, "beta").await;
        let r = app.check_in(&m, &t, json!({"kernel": "5.15.0-107.117-generic", "architecture": "amd64", "patch-version": "3.1", "patch-state": state})).await;
        assert_eq!(r.status, 204);
    }
    app.enroll(&admin, "m-other", "edge").await;
    let r = app
        .call(
            Method::GET,
            "/v1/admin/reports/machines?tier=beta&patch-version=3.1&patch-state=applied",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let v = r.json();
    let ids: Vec<&str> = v["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["machine-id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["m-0", "m-1"]);
    let r = app
        .call(
            Method::GET,
            "/v1/admin/reports/machines?tier=beta&limit=2",
            Some(&admin),
            None,
        )
        .await;
    let next = r.json()["next"].as_str().unwrap().to_string();
    let r = app
        .call(
            Method::GET,
            &format!("/v1/admin/reports/machines?tier=beta&limit=2&after={next}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.json()["machines"].as_array().unwrap().len(), 1);
    assert!(r.json().get("next").is_none());
    let r = app
        .call(
            Method::GET,
            "/v1/admin/reports/patch-health?tier=beta&patch-version=3.1",
            Some(&admin),
            None,
        )
        .await;
    let v = r.json();
    assert_eq!(
        (
            v["applied"].as_i64(),
            v["apply-failed"].as_i64(),
            v["unapplied"].as_i64()
        ),
        (Some(2), Some(1), Some(0))
    );
    for bad in [
        "/v1/admin/reports/machines",
        "/v1/admin/reports/machines?tier=beta&limit=0",
        "/v1/admin/reports/machines?tier=beta&bogus=1",
        "/v1/admin/reports/patch-health?tier=beta",
    ] {
        assert_eq!(
            app.call(Method::GET, bad, Some(&admin), None).await.status,
            400,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn malformed_input_gets_a_4xx_in_the_error_shape_and_changes_nothing() {
    let app = spawn_app(&[]).await;
    let admin = app.admin().await;
    let before = app.db.cluster().dump(app.db.name()).unwrap();
    let raw = |body: &'static str, ct: &'static str| {
        http::Request::builder()
            .method(Method::POST)
            .uri("/v1/admin/tiers")
            .header("authorization", &admin)
            .header("content-type", ct)
            .body(axum::body::Body::from(body))
            .unwrap()
    };
    for (req, status, code) in [
        (raw("{not json", "application/json"), 400, "invalid-json"),
        (
            raw(r#"{"name": "x", "colour": "red"}"#, "application/json"),
            400,
            "invalid-json",
        ),
        (
            raw(r#"{"name": 42}"#, "application/json"),
            400,
            "invalid-json",
        ),
        (
            raw(r#"{"name": "x"}"#, "text/xml"),
            415,
            "unsupported-media-type",
        ),
        (
            raw(
                Box::leak(format!(r#"{{"name": "{}"}}"#, "a".repeat(70_000)).into_boxed_str()),
                "application/json",
            ),
            413,
            "too-large",
        ),
    ] {
        let r = app.send(req).await;
        assert_eq!(
            (r.status.as_u16(), r.error_code().as_str()),
            (status, code),
            "{:?}",
            r.body
        );
        assert!(r.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let r = app
        .call(
            Method::GET,
            "/v1/patches/..%2F..%2Fetc%2Fpasswd",
            None,
            None,
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().as_str()),
        (400, "invalid-request")
    );
    let r = app.call(Method::GET, "/v1/nowhere", None, None).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().as_str()),
        (404, "not-found")
    );
    let mut after = app.db.cluster().dump(app.db.name()).unwrap();
    // Only the login's session row may differ; drop session/key lines before comparing.
    // pg_dump writes a random `\restrict` key into every dump.
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    after = strip(&after);
    assert!(strip(&before) == after, "the database changed");
}
