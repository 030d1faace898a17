//! Downloads from filesystem and PostgreSQL storage: ETag, If-None-Match, Range, HEAD, redirect,
//! and the governor slot a download holds while it streams.

use axum::body::Body;
use http::{Method, Request};
use serde_json::json;

use crate::common::{patch_name, spawn_app, TestApp};

const K: &str = "5.15.0-107.117";

fn get(path: &str, headers: &[(&str, &str)], method: Method) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::empty()).unwrap()
}

async fn exercise(app: &TestApp, content: &[u8]) {
    let admin = app.admin().await;
    let name = patch_name(K, "generic", "5.1", "amd64");
    assert_eq!(app.upload(&admin, &name, content).await.status, 201);
    let path = format!("/v1/patches/{name}");
    let sha = workload::domain::hex(&<sha2::Sha256 as sha2::Digest>::digest(content));
    let etag = format!("\"{sha}\"");

    let r = app.send(get(&path, &[], Method::GET)).await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], content);
    assert_eq!(r.headers["etag"], etag.as_str());
    assert_eq!(
        r.headers["content-length"],
        content.len().to_string().as_str()
    );
    assert_eq!(r.headers["content-type"], "application/x-bzip2");
    assert_eq!(r.headers["accept-ranges"], "bytes");

    let r = app
        .send(get(&path, &[("if-none-match", &etag)], Method::GET))
        .await;
    assert_eq!((r.status.as_u16(), r.body.len()), (304, 0));
    assert_eq!(r.headers["etag"], etag.as_str());
    let r = app
        .send(get(&path, &[("if-none-match", "\"other\"")], Method::GET))
        .await;
    assert_eq!(r.status, 200);

    let n = content.len() as u64;
    let mid = n / 2;
    let r = app
        .send(get(
            &path,
            &[("range", &format!("bytes={mid}-{}", n - 2))],
            Method::GET,
        ))
        .await;
    assert_eq!(r.status, 206);
    assert_eq!(&r.body[..], &content[mid as usize..(n - 1) as usize]);
    assert_eq!(
        r.headers["content-range"],
        format!("bytes {mid}-{}/{n}", n - 2).as_str()
    );
    let r = app
        .send(get(&path, &[("range", "bytes=-10")], Method::GET))
        .await;
    assert_eq!(&r.body[..], &content[(n - 10) as usize..]);
    let r = app
        .send(get(
            &path,
            &[("range", &format!("bytes={n}-"))],
            Method::GET,
        ))
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().as_str()),
        (416, "range-not-satisfiable")
    );
    assert_eq!(r.headers["content-range"], format!("bytes */{n}").as_str());
    let r = app
        .send(get(
            &path,
            &[("range", "bytes=0-1"), ("if-range", "\"stale\"")],
            Method::GET,
        ))
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body.len() as u64),
        (200, n),
        "If-Range of another version serves it all"
    );

    let r = app.send(get(&path, &[], Method::HEAD)).await;
    assert_eq!((r.status.as_u16(), r.body.len()), (200, 0));
    assert_eq!(r.headers["content-length"], n.to_string().as_str());
    assert_eq!(r.headers["etag"], etag.as_str());

    let r = app
        .send(get(
            &format!("/v1/patches/{}", patch_name(K, "generic", "6.1", "amd64")),
            &[],
            Method::GET,
        ))
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().as_str()),
        (404, "not-found")
    );
    let r = app
        .send(get("/v1/patches/livepatch-evil.tar.bz2", &[], Method::GET))
        .await;
    assert_eq!(r.status, 400);
}

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test]
async fn filesystem_downloads_honour_etag_range_and_head() {
    let app = spawn_app(&[]).await;
    exercise(&app, &content(300_000)).await;
}

#[tokio::test]
async fn postgres_downloads_honour_etag_range_and_head_across_chunks() {
    let app = spawn_app(&[("LP_PATCH_STORAGE_TYPE", "postgres")]).await;
    // 2.5 MiB: three chunks, ranges crossing chunk borders.
    exercise(&app, &content(5 << 19)).await;
    assert_eq!(app.sql("SELECT count(*) FROM patch_file_data"), "3");
    assert_eq!(
        app.sql("SELECT count(*) FROM patch_file_data WHERE filename LIKE '.upload-%'"),
        "0"
    );
}

#[tokio::test]
async fn postgres_storage_in_its_own_database_keeps_nothing_of_a_refused_upload() {
    let main = testkit::test_database();
    let blobs = testkit::test_database();
    crate::common::migrate(&main.dsn()).await;
    let app = spawn_app(&[
        ("LP_PATCH_STORAGE_TYPE", "postgres"),
        ("LP_PATCH_STORAGE_POSTGRES_CONNECTION_STRING", &blobs.dsn()),
        ("LP_SERVER_MAX_UPLOAD_SIZE", "1500000"),
    ])
    .await;
    let admin = app.admin().await;
    let name = patch_name(K, "generic", "1.1", "amd64");
    let r = app.upload(&admin, &name, &content(2_000_000)).await;
    assert_eq!(r.status, 413);
    assert_eq!(
        blobs
            .psql("SELECT count(*) FROM patch_file_data")
            .unwrap()
            .trim(),
        "0"
    );
    assert_eq!(
        app.upload(&admin, &name, &content(1_200_000)).await.status,
        201
    );
    assert_eq!(
        blobs
            .psql("SELECT count(DISTINCT filename) FROM patch_file_data")
            .unwrap()
            .trim(),
        "1"
    );
    assert_eq!(
        app.sql("SELECT count(*) FROM patch_file_data"),
        "0",
        "blobs live in the storage database"
    );
    let r = app
        .send(get(&format!("/v1/patches/{name}"), &[], Method::GET))
        .await;
    assert_eq!(r.body.len(), 1_200_000);
}

#[tokio::test]
async fn redirect_downloads_answer_307_to_the_template() {
    let app = spawn_app(&[
        ("LP_SERVER_REDIRECT_DOWNLOADS", "true"),
        (
            "LP_SERVER_URL_TEMPLATE",
            "https://cdn.example.com/p/{filename}",
        ),
    ])
    .await;
    let name = patch_name(K, "generic", "5.1", "amd64");
    let r = app
        .send(get(&format!("/v1/patches/{name}"), &[], Method::GET))
        .await;
    assert_eq!(r.status, 307);
    assert_eq!(
        r.headers["location"],
        format!("https://cdn.example.com/p/{name}").as_str()
    );
}

#[tokio::test]
async fn a_download_holds_its_governor_slot_until_its_body_is_consumed() {
    let app = spawn_app(&[
        ("LP_SERVER_CONCURRENCY_LIMIT", "1"),
        ("LP_SERVER_BURST_LIMIT", "1"),
    ])
    .await;
    // Basic auth on the upload keeps this test to one request at a time.
    let admin = crate::common::basic(crate::common::ADMIN_USER, crate::common::ADMIN_PASSWORD);
    let name = patch_name(K, "generic", "5.1", "amd64");
    assert_eq!(
        app.upload(&admin, &name, &content(100_000)).await.status,
        201
    );
    use tower::ServiceExt;
    let streaming = app
        .router
        .clone()
        .oneshot(get(&format!("/v1/patches/{name}"), &[], Method::GET))
        .await
        .unwrap();
    assert_eq!(streaming.status(), 200);
    let refused = app
        .send(get(
            "/v1/admin/tiers",
            &[("authorization", &admin)],
            Method::GET,
        ))
        .await;
    assert_eq!(
        (refused.status.as_u16(), refused.error_code().as_str()),
        (503, "overloaded")
    );
    assert_eq!(refused.headers["retry-after"], "1");
    let health = app.send(get("/debug/info", &[], Method::GET)).await;
    assert_eq!(health.status, 200, "health is exempt");
    use http_body_util::BodyExt;
    let body = streaming.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 100_000);
    let r = app
        .call(
            Method::GET,
            "/v1/admin/tiers",
            Some(&admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, 200, "the slot is free again");
    assert!(app
        .state
        .metrics
        .render()
        .contains("livepatch_server_httpgovernor_request_overload 1"));
}

#[tokio::test]
async fn health_routes_answer_and_status_reports_each_dependency() {
    let app = spawn_app(&[]).await;
    let r = app.send(get("/", &[], Method::GET)).await;
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        format!("Livepatch server, version {}", env!("CARGO_PKG_VERSION"))
    );
    let r = app.send(get("/debug/info", &[], Method::GET)).await;
    assert_eq!(r.json()["version"], env!("CARGO_PKG_VERSION"));
    let r = app.send(get("/debug/status", &[], Method::GET)).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        (
            r.json()["database"]["status"].as_str(),
            r.json()["patch-storage"]["status"].as_str()
        ),
        (Some("OK"), Some("OK"))
    );
    std::fs::remove_dir_all(app.patches.path()).unwrap();
    let r = app.send(get("/debug/status", &[], Method::GET)).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["patch-storage"]["status"], "error");
    let r = app.send(get("/metrics", &[], Method::GET)).await;
    let text = String::from_utf8_lossy(&r.body).to_string();
    assert!(text.contains("livepatch_server_http_request_duration_seconds_count{code=\"200\",handler=\"/\",method=\"GET\"} 1"), "{text}");
    assert!(text.contains("livepatch_server_database_query_duration_seconds"));
}

#[tokio::test]
async fn admin_routes_and_metrics_are_fenced_by_cidr() {
    let app = spawn_app(&[
        ("LP_SERVER_ADMIN_ALLOWED_CIDRS", "10.0.0.0/8"),
        ("LP_SERVER_METRICS_ALLOWED_CIDRS", "127.0.0.1"),
    ])
    .await;
    let with_peer = |path: &str, ip: [u8; 4]| {
        let mut r = get(
            path,
            &[(
                "authorization",
                &crate::common::basic("admin", crate::common::ADMIN_PASSWORD),
            )],
            Method::GET,
        );
        r.extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                ip, 40000,
            ))));
        r
    };
    assert_eq!(
        app.send(with_peer("/v1/admin/tiers", [192, 168, 0, 1]))
            .await
            .status,
        403
    );
    assert_eq!(
        app.send(with_peer("/v1/admin/tiers", [10, 1, 2, 3]))
            .await
            .status,
        200
    );
    assert_eq!(
        app.send(with_peer("/metrics", [10, 1, 2, 3])).await.status,
        403
    );
    assert_eq!(
        app.send(with_peer("/metrics", [127, 0, 0, 1])).await.status,
        200
    );
    assert_eq!(
        app.send(with_peer("/debug/info", [192, 168, 0, 1]))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn cached_downloads_serve_the_same_bytes_and_ranges_and_count_hits_and_misses() {
    let app = spawn_app(&[
        ("LP_PATCH_CACHE_ENABLED", "true"),
        ("LP_PATCH_CACHE_CACHE_SIZE", "4"),
    ])
    .await;
    let admin = app.admin().await;
    let data = content(300_000);
    let name = patch_name(K, "generic", "6.1", "amd64");
    assert_eq!(app.upload(&admin, &name, &data).await.status, 201);
    let path = format!("/v1/patches/{name}");
    let cache = app.state.cache.clone().expect("enabled");
    let first = app.send(get(&path, &[], Method::GET)).await;
    assert_eq!((first.status.as_u16(), &first.body[..]), (200, &data[..]));
    // The miss started one background fill; a request never waits for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while cache.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the fill never finished"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let whole = app.send(get(&path, &[], Method::GET)).await;
    assert_eq!(&whole.body[..], &data[..]);
    assert_eq!(whole.headers["content-length"], "300000");
    let part = app
        .send(get(&path, &[("range", "bytes=1000-1999")], Method::GET))
        .await;
    assert_eq!(part.status, 206);
    assert_eq!(&part.body[..], &data[1000..2000]);
    assert_eq!(part.headers["content-range"], "bytes 1000-1999/300000");
    let head = app.send(get(&path, &[], Method::HEAD)).await;
    assert_eq!((head.status.as_u16(), head.body.len()), (200, 0));
    let metrics = app.call(Method::GET, "/metrics", None, None).await;
    let text = String::from_utf8_lossy(&metrics.body);
    for line in [
        "livepatch_server_patch_cache_hits 2",
        "livepatch_server_patch_cache_misses 1",
        "livepatch_server_patch_cache_evictions 0",
        "livepatch_server_patch_cache_length 1",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
}
