//! One storage conformance suite, run against every backend: filesystem, PostgreSQL, S3 (a real
//! S3-compatible server process) and Swift (the recorded-protocol Keystone + Swift process). The
//! same test functions take the backend as a parameter; `conformance!` instantiates each for each
//! backend, so a failure names both.

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http::Method;
use sha2::{Digest, Sha256};
use workload::config::Config;
use workload::domain::PatchFilename;
use workload::storage::{ByteStream, PatchStorage, StorageError};

use crate::backends::{S3Server, SwiftServer};
use crate::common::{migrate, patch_name, spawn_app};

pub(crate) struct Fixture {
    pub(crate) storage: Arc<dyn PatchStorage>,
    _guards: Vec<Box<dyn Any + Send>>,
}

fn config(env: Vec<(String, String)>) -> Config {
    Config::from_sources(None, env).unwrap().0
}

async fn fs() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let storage = workload::storage::fs::FilesystemStorage::open(dir.path()).unwrap();
    Fixture {
        storage: Arc::new(storage),
        _guards: vec![Box::new(dir)],
    }
}

async fn postgres() -> Fixture {
    let db = testkit::test_database();
    migrate(&db.dsn()).await;
    let dsn = workload::db::Dsn::parse(&db.dsn()).unwrap();
    let pool = workload::db::pool(
        &dsn,
        workload::db::PoolSettings {
            max_size: 4,
            lifetime: Duration::from_secs(600),
            work_mem_mb: None,
        },
    )
    .unwrap();
    let storage = workload::storage::postgres::PostgresStorage::open(pool, false)
        .await
        .unwrap();
    Fixture {
        storage: Arc::new(storage),
        _guards: vec![Box::new(db)],
    }
}

async fn s3() -> Fixture {
    let server = S3Server::start();
    let c = config(server.env());
    let storage = workload::storage::s3::S3Storage::open(&c.patch_storage.s3)
        .await
        .unwrap();
    Fixture {
        storage: Arc::new(storage),
        _guards: vec![Box::new(server)],
    }
}

async fn swift() -> Fixture {
    let server = SwiftServer::start();
    let c = config(server.env());
    let storage = workload::storage::swift::SwiftStorage::open(&c.patch_storage.swift)
        .await
        .unwrap();
    Fixture {
        storage: Arc::new(storage),
        _guards: vec![Box::new(server)],
    }
}

fn name(version: &str) -> PatchFilename {
    PatchFilename::parse(&patch_name("5.15.0-107.117", "generic", version, "amd64")).unwrap()
}

/// `data` as a stream of 64 KiB chunks, like a network body.
fn body(data: &[u8]) -> ByteStream {
    let chunks: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures_util::stream::iter(chunks).boxed()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn read(
    storage: &dyn PatchStorage,
    n: &PatchFilename,
    range: Option<(u64, u64)>,
) -> Option<(u64, Vec<u8>)> {
    let o = storage.open(n, range).await.unwrap()?;
    let mut out = Vec::new();
    let mut b = o.body;
    while let Some(c) = b.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    Some((o.size, out))
}

async fn names(storage: &dyn PatchStorage) -> Vec<String> {
    storage
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect()
}

/// Asynchronous cleanups (a dropped staged object) finish soon; wait for the listing to say so.
async fn eventually_listed(storage: &dyn PatchStorage, expected: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = names(storage).await;
        if now == expected || Instant::now() > deadline {
            assert_eq!(now, expected);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_published_object_is_hashed_listed_and_readable_whole_or_by_range(f: Fixture) {
    let s = f.storage.as_ref();
    s.check().await.unwrap();
    for (len, version) in [
        (0usize, "1.1"),
        (200_000, "1.2"),
        (9 * 1024 * 1024 + 17, "1.3"),
    ] {
        let data = pattern(len, 3);
        let staged = s.stage(body(&data), 64 << 20).await.unwrap();
        assert_eq!(staged.size(), len as u64);
        assert_eq!(
            staged.sha256(),
            workload::domain::hex(&Sha256::digest(&data))
        );
        assert!(
            s.open(&name(version), None).await.unwrap().is_none(),
            "invisible before publish"
        );
        assert!(!names(s).await.contains(&name(version).to_string()));
        staged.publish(name(version)).await.unwrap();
        let (size, whole) = read(s, &name(version), None).await.unwrap();
        assert_eq!((size, whole.len()), (len as u64, len), "{version}");
        assert!(whole == data, "{version}: content differs");
        if len > 10 {
            let (size, part) = read(s, &name(version), Some((5, 9))).await.unwrap();
            assert_eq!(size, len as u64, "a range still reports the full size");
            assert_eq!(part, data[5..10]);
            let end = len as u64 - 1;
            let (_, tail) = read(s, &name(version), Some((end - 2, end))).await.unwrap();
            assert_eq!(tail, data[len - 3..]);
        }
    }
    let listed = f.storage.list().await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|l| (l.name.clone(), l.size))
            .collect::<Vec<_>>(),
        vec![
            (name("1.1").to_string(), 0),
            (name("1.2").to_string(), 200_000),
            (name("1.3").to_string(), 9 * 1024 * 1024 + 17),
        ]
    );
}

async fn an_oversize_broken_discarded_or_dropped_upload_leaves_nothing_behind(f: Fixture) {
    let s = f.storage.as_ref();
    for len in [1000usize, 9 * 1024 * 1024] {
        let err = s
            .stage(body(&pattern(len, 1)), len as u64 - 1)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, StorageError::TooLarge { .. }), "{err}");
        let mut chunks: Vec<Result<Bytes, std::io::Error>> = pattern(len, 2)
            .chunks(64 * 1024)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        chunks.push(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "peer went away",
        )));
        let err = s
            .stage(futures_util::stream::iter(chunks).boxed(), 64 << 20)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, StorageError::Body(_)), "{err}");
        s.stage(body(&pattern(len, 4)), 64 << 20)
            .await
            .unwrap()
            .discard()
            .await;
        drop(s.stage(body(&pattern(len, 5)), 64 << 20).await.unwrap());
    }
    eventually_listed(s, &[]).await;
}

async fn publishing_again_replaces_and_deleting_is_idempotent(f: Fixture) {
    let s = f.storage.as_ref();
    s.stage(body(b"first version"), 1 << 20)
        .await
        .unwrap()
        .publish(name("2.1"))
        .await
        .unwrap();
    s.stage(body(b"second"), 1 << 20)
        .await
        .unwrap()
        .publish(name("2.1"))
        .await
        .unwrap();
    assert_eq!(read(s, &name("2.1"), None).await.unwrap().1, b"second");
    s.delete(&name("2.1")).await.unwrap();
    s.delete(&name("2.1")).await.unwrap();
    assert!(s.open(&name("2.1"), None).await.unwrap().is_none());
    assert!(names(s).await.is_empty());
}

/// Storage refresh (`POST /v1/admin/storage/refresh`) registers files copied into storage by
/// hand, and they download (through the patch cache) like uploaded ones.
async fn storage_refresh_registers_manual_copies(env: Vec<(String, String)>) {
    let mut env = env;
    env.push(("LP_PATCH_CACHE_ENABLED".into(), "true".into()));
    let extra: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = spawn_app(&extra).await;
    let data = pattern(150_000, 9);
    let file = name("3.1");
    app.state
        .storage
        .stage(body(&data), 1 << 20)
        .await
        .unwrap()
        .publish(file.clone())
        .await
        .unwrap();
    let admin = app.admin().await;
    let r = app
        .call(
            Method::POST,
            "/v1/admin/storage/refresh",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["registered"], 1, "{}", r.json());
    let r = app
        .call(Method::GET, "/v1/admin/storage/patches", Some(&admin), None)
        .await;
    assert_eq!(r.json()["patches"][0]["registered"], true, "{}", r.json());
    assert_eq!(r.json()["storage-type"], app.state.storage.kind());
    let path = format!("/v1/patches/{file}");
    let r = app.call(Method::GET, &path, None, None).await;
    assert_eq!(r.status, 200);
    assert!(r.body == data);
    assert_eq!(
        r.headers["etag"],
        format!("\"{}\"", workload::domain::hex(&Sha256::digest(&data)))
    );
    let again = app
        .call(
            Method::POST,
            "/v1/admin/storage/refresh",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(again.json()["registered"], 0);
}

type EnvGuard = (Vec<(String, String)>, Box<dyn Any + Send>);

fn fs_env() -> EnvGuard {
    (Vec::new(), Box::new(()))
}

fn postgres_env() -> EnvGuard {
    (
        vec![("LP_PATCH_STORAGE_TYPE".into(), "postgres".into())],
        Box::new(()),
    )
}

fn s3_env() -> EnvGuard {
    let s = S3Server::start();
    (s.env(), Box::new(s))
}

fn swift_env() -> EnvGuard {
    let s = SwiftServer::start();
    (s.env(), Box::new(s))
}

macro_rules! conformance {
    ($($backend:ident, $env:ident;)*) => {$(
        mod $backend {
            #[tokio::test]
            async fn a_published_object_is_hashed_listed_and_readable_whole_or_by_range() {
                super::a_published_object_is_hashed_listed_and_readable_whole_or_by_range(super::$backend().await).await
            }
            #[tokio::test]
            async fn an_oversize_broken_discarded_or_dropped_upload_leaves_nothing_behind() {
                super::an_oversize_broken_discarded_or_dropped_upload_leaves_nothing_behind(super::$backend().await).await
            }
            #[tokio::test]
            async fn publishing_again_replaces_and_deleting_is_idempotent() {
                super::publishing_again_replaces_and_deleting_is_idempotent(super::$backend().await).await
            }
            #[tokio::test]
            async fn storage_refresh_registers_manual_copies() {
                let (env, _guard) = super::$env();
                super::storage_refresh_registers_manual_copies(env).await
            }
        }
    )*};
}

conformance! {
    fs, fs_env;
    postgres, postgres_env;
    s3, s3_env;
    swift, swift_env;
}

#[tokio::test]
async fn s3_and_swift_credentials_never_print_and_wrong_ones_are_refused_clearly() {
    let s3 = S3Server::start();
    let c = config(s3.env());
    let storage = workload::storage::s3::S3Storage::open(&c.patch_storage.s3)
        .await
        .unwrap();
    let shown = format!("{storage:?} {:?}", c.patch_storage);
    assert!(
        !shown.contains("s3-Secret-Value-42") && !shown.contains("AKIDTESTKEY"),
        "{shown}"
    );
    assert!(!shown.contains(crate::backends::SWIFT_PASSWORD));

    let swift = SwiftServer::start();
    let mut env = swift.env();
    for (k, v) in env.iter_mut() {
        if k == "LP_PATCH_STORAGE_SWIFT_API_KEY" {
            *v = "wrong-password".into();
        }
    }
    let err = workload::storage::swift::SwiftStorage::open(&config(env).patch_storage.swift)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("Keystone refused") && err.contains("401"),
        "{err}"
    );
    assert!(!err.contains("wrong-password"));
    let mut env = swift.env();
    env.push(("LP_PATCH_STORAGE_SWIFT_REGION".into(), "Mars".into()));
    let err = workload::storage::swift::SwiftStorage::open(&config(env).patch_storage.swift)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("no public object-store endpoint in region Mars"),
        "{err}"
    );
}

#[tokio::test]
async fn swift_authenticates_again_when_its_token_is_revoked() {
    let server = SwiftServer::start();
    let c = config(server.env());
    let storage = workload::storage::swift::SwiftStorage::open(&c.patch_storage.swift)
        .await
        .unwrap();
    storage
        .stage(body(b"before"), 1 << 20)
        .await
        .unwrap()
        .publish(name("4.1"))
        .await
        .unwrap();
    let r = testkit::http_request(server.port, "POST", "/_test/revoke-all", &[], &[]).unwrap();
    assert_eq!(r.status, 204);
    // The cached token now gets 401: the store logs in again and retries, for reads and writes.
    assert_eq!(
        read(&storage, &name("4.1"), None).await.unwrap().1,
        b"before"
    );
    testkit::http_request(server.port, "POST", "/_test/revoke-all", &[], &[]).unwrap();
    storage
        .stage(body(b"after"), 1 << 20)
        .await
        .unwrap()
        .publish(name("4.2"))
        .await
        .unwrap();
    testkit::http_request(server.port, "POST", "/_test/revoke-all", &[], &[]).unwrap();
    assert_eq!(names(&storage).await.len(), 2);
}
