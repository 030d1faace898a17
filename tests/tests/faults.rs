//! The fault suite (issue 6 item 3): a real `livepatch-server` process and real PostgreSQL
//! clusters, broken the way production breaks them — the database stopped under load, patch
//! storage gone (a directory removed, the storage database stopped), SIGTERM during downloads,
//! SIGKILL in the middle of an upload, a full disk (a small tmpfs mounted for the test).

mod load_support;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bench::load::{ClosedLoop, Observation};
use load_support::*;
use testkit::PgCluster;

/// Polls `probe` until it returns true or `limit` passes; true when it succeeded.
fn eventually(limit: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if probe() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A check-in the server acknowledged: 200 with a patch, or 204 when none applies.
fn acknowledged(o: &Observation) -> bool {
    o.status.is_some_and(|s| (200..300).contains(&s))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_stopped_under_load_check_ins_get_503_with_retry_after_then_recover_and_no_acknowledged_one_is_lost(
) {
    const MACHINES: u64 = 8;
    let cluster = Arc::new(PgCluster::start().unwrap());
    cluster.create_database("lp", None).unwrap();
    let dsn = cluster.dsn("lp");
    migrate(&dsn).await;
    seed(&dsn, MACHINES).await;
    let storage = tempfile::tempdir().unwrap();
    let mut env = env(&dsn, storage.path());
    set(&mut env, "LP_MACHINE_REPORTS_DATABASE_ENABLED", "true");
    set(&mut env, "LP_DATABASE_CONNECTION_POOL_MAX", "4");
    let server = start(&env);

    // Each client is one machine; each check-in carries a unique tag in client-version, which
    // its report row keeps: an acknowledged (200) check-in must have left its row.
    let seen: Arc<Mutex<Vec<Observation>>> = Arc::default();
    let record = seen.clone();
    let load = tokio::spawn(bench::load::closed_loop_observed(
        addr(&server),
        ClosedLoop {
            clients: MACHINES as usize,
            duration: Duration::from_secs(13),
            warmup: Duration::ZERO,
            timeout: Duration::from_secs(10),
        },
        Arc::new(|client, seq| {
            bench::fleet::check_in_request(
                client as u64,
                bench::fleet::check_in_body(&format!("c{client}-s{seq}")),
            )
        }),
        Arc::new(move |o| record.lock().unwrap().push(o)),
    ));

    tokio::time::sleep(Duration::from_secs(3)).await;
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.stop())
        .await
        .unwrap()
        .unwrap();
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let restarting = Instant::now();
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.start_again())
        .await
        .unwrap()
        .unwrap();
    let back = Instant::now();
    let report = load.await.unwrap();
    let seen = seen.lock().unwrap().clone();

    // Never a 500 or another 5xx, never a hang: every request got an answer.
    let bad: Vec<_> = seen
        .iter()
        .filter(|o| o.status.is_none_or(|s| s >= 500 && s != 503))
        .collect();
    assert!(
        bad.is_empty(),
        "{} request(s) failed otherwise than 503 (first: {:?}); report {report:?}\n{}",
        bad.len(),
        bad.first(),
        server.output()
    );
    assert_eq!(
        report.retry_after_missing, 0,
        "every 503 carries Retry-After"
    );
    // While the database was down, check-ins were refused with 503.
    let outage: Vec<_> = seen
        .iter()
        .filter(|o| o.sent > down + Duration::from_millis(500) && o.done < restarting)
        .collect();
    assert!(
        !outage.is_empty(),
        "no request was answered during the outage"
    );
    assert!(
        outage
            .iter()
            .all(|o| o.status == Some(503) && o.retry_after),
        "during the outage: {:?}",
        outage.iter().map(|o| o.status).collect::<HashSet<_>>()
    );
    // Served again within 5 s of PostgreSQL's return, and steadily so at the end.
    let first_ok = seen
        .iter()
        .filter(|o| o.sent >= back && acknowledged(o))
        .map(|o| o.done)
        .min()
        .unwrap_or_else(|| {
            let after: Vec<_> = seen.iter().filter(|o| o.sent >= back).map(|o| o.status).collect();
            let log = server.output();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            panic!(
                "no check-in succeeded after PostgreSQL came back: {} answers after, statuses {:?}; server log ends {tail:#?}",
                after.len(),
                after.iter().collect::<HashSet<_>>()
            )
        });
    assert!(
        first_ok.duration_since(back) < Duration::from_secs(5),
        "recovered only after {:?}",
        first_ok.duration_since(back)
    );
    let last = seen.iter().map(|o| o.sent).max().unwrap();
    assert!(seen
        .iter()
        .filter(|o| o.sent + Duration::from_secs(1) > last)
        .all(acknowledged));

    // No acknowledged check-in (200, or 204: no patch applies) is lost.
    let acknowledged: HashSet<String> = seen
        .iter()
        .filter(|o| acknowledged(o))
        .map(|o| format!("c{}-s{}", o.client, o.seq))
        .collect();
    let stored: HashSet<String> = cluster
        .psql("lp", "SELECT client_version FROM machine_report")
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged check-ins are not in the database, e.g. {:?}",
        lost.len(),
        acknowledged.len(),
        lost.first()
    );
    assert!(acknowledged.len() > 100, "too little load to mean anything");
}

#[test]
fn with_the_storage_directory_gone_downloads_and_uploads_get_503_storage_unavailable_then_recover()
{
    let db = testkit::test_database();
    let dsn = db.dsn();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(migrate(&dsn));
    let base = tempfile::tempdir().unwrap();
    let storage = base.path().join("patches");
    let server = start(&env(&dsn, &storage));
    let bytes = payload(200_000, 1);
    assert_eq!(upload(&server, &patch_name(1), &bytes).status, 201);
    let path = format!("/v1/patches/{}", patch_name(1));

    // The volume disappears (an unmounted or deleted directory).
    let away = base.path().join("patches.away");
    std::fs::rename(&storage, &away).unwrap();
    let r = get(&server, &path);
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (503, "storage-unavailable"),
        "{}",
        r.text()
    );
    assert!(r.header("retry-after").is_some());
    let r = upload(&server, &patch_name(2), &payload(1000, 2));
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (503, "storage-unavailable"),
        "{}",
        r.text()
    );
    assert_eq!(get(&server, "/debug/status").status, 503);
    assert!(
        !get(&server, "/v1/admin/patches")
            .text()
            .contains(&patch_name(2)),
        "the refused upload must not be registered"
    );

    // It comes back: so does the service, with the same bytes.
    std::fs::rename(&away, &storage).unwrap();
    let r = get(&server, &path);
    assert_eq!(r.status, 200);
    assert_eq!(sha256_hex(&r.body), sha256_hex(&bytes));
    assert_eq!(get(&server, "/debug/status").status, 200);
}

#[test]
fn with_the_postgres_storage_database_stopped_downloads_get_503_storage_unavailable_then_recover() {
    let db = testkit::test_database();
    let dsn = db.dsn();
    let storage_cluster = PgCluster::start().unwrap();
    storage_cluster.create_database("patches", None).unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(migrate(&dsn));
    let unused = tempfile::tempdir().unwrap();
    let mut env = env(&dsn, unused.path());
    set(&mut env, "LP_PATCH_STORAGE_TYPE", "postgres");
    set(
        &mut env,
        "LP_PATCH_STORAGE_POSTGRES_CONNECTION_STRING",
        &storage_cluster.dsn("patches"),
    );
    let server = start(&env);
    let bytes = payload(300_000, 3);
    assert_eq!(upload(&server, &patch_name(1), &bytes).status, 201);
    let path = format!("/v1/patches/{}", patch_name(1));

    storage_cluster.stop().unwrap();
    let r = get(&server, &path);
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (503, "storage-unavailable"),
        "{}",
        r.text()
    );
    assert!(r.header("retry-after").is_some());
    assert_eq!(get(&server, "/debug/status").status, 503);

    storage_cluster.start_again().unwrap();
    let mut last = None;
    assert!(
        eventually(Duration::from_secs(5), || {
            let r = get(&server, &path);
            let ok = r.status == 200;
            last = Some(r);
            ok
        }),
        "not recovered: {:?}",
        last.map(|r| r.text())
    );
    assert_eq!(sha256_hex(&last.unwrap().body), sha256_hex(&bytes));
}

/// Reads an HTTP/1.1 response head from `stream`, returning it and any body bytes read with it.
fn read_head(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed before the response head");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).into_owned();
            return (head, buf[i + 4..].to_vec());
        }
    }
}

#[test]
fn sigterm_during_downloads_lets_every_download_finish_and_the_server_exits_0() {
    let db = testkit::test_database();
    let dsn = db.dsn();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(migrate(&dsn));
    let storage = tempfile::tempdir().unwrap();
    let mut env = env(&dsn, storage.path());
    set(&mut env, "LP_SERVER_SHUTDOWN_TIMEOUT", "30s");
    let mut server = start(&env);
    // Larger than the loopback socket buffers, so each download is still being written when
    // SIGTERM arrives.
    let bytes = payload(24 << 20, 4);
    assert_eq!(upload(&server, &patch_name(1), &bytes).status, 201);

    let mut downloads: Vec<(TcpStream, Vec<u8>)> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            write!(
                s,
                "GET /v1/patches/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                patch_name(1)
            )
            .unwrap();
            let (head, body) = read_head(&mut s);
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            (s, body)
        })
        .collect();
    server.terminate().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    for (stream, body) in &mut downloads {
        stream.read_to_end(body).unwrap();
        assert_eq!(body.len(), bytes.len(), "a download was cut");
        assert_eq!(sha256_hex(body), sha256_hex(&bytes));
    }
    let status = server.stop(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "exit status {status}");
}

/// Starts an upload of `total` bytes by hand, sends `sent` of them, and returns the open stream.
fn partial_upload(
    server: &testkit::ServerProcess,
    name: &str,
    total: usize,
    sent: usize,
) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    write!(
        s,
        "POST /v1/admin/patches HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Type: application/x-bzip2\r\nX-Patch-Filename: {name}\r\nContent-Length: {total}\r\n\r\n",
        basic()
    )
    .unwrap();
    s.write_all(&payload(sent, 5)).unwrap();
    s.flush().unwrap();
    s
}

fn sigkill_mid_upload_leaves_nothing_visible(postgres_storage: bool) {
    let db = testkit::test_database();
    let dsn = db.dsn();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(migrate(&dsn));
    let storage = tempfile::tempdir().unwrap();
    let mut env = env(&dsn, storage.path());
    if postgres_storage {
        set(&mut env, "LP_PATCH_STORAGE_TYPE", "postgres");
    }
    let staged_rows = || {
        db.psql("SELECT count(*) FROM patch_file_data WHERE filename LIKE '.upload-%'")
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    let server = start(&env);
    let name = patch_name(1);
    let _upload = partial_upload(&server, &name, 8 << 20, 3 << 20);
    // The crash must really hit a half-written upload.
    assert!(
        eventually(Duration::from_secs(10), || if postgres_storage {
            staged_rows() > 0
        } else {
            staged_files(storage.path())
                .iter()
                .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
        }),
        "the upload never reached storage"
    );
    drop(server); // SIGKILL
    if postgres_storage {
        assert!(staged_rows() > 0, "the crash left staged rows behind");
    } else {
        assert!(!staged_files(storage.path()).is_empty());
    }

    let server = start(&env);
    if postgres_storage {
        assert_eq!(staged_rows(), 0, "staged rows survive a restart");
    } else {
        assert_eq!(
            staged_files(storage.path()),
            Vec::<std::path::PathBuf>::new(),
            "staged files survive a restart"
        );
    }
    assert_eq!(get(&server, &format!("/v1/patches/{name}")).status, 404);
    let listed = get(&server, "/v1/admin/patches").text();
    assert!(!listed.contains(&name), "{listed}");
    let stored = get(&server, "/v1/admin/storage/patches").text();
    assert!(!stored.contains(&name), "{stored}");
    // And the same upload, done properly, works.
    assert_eq!(upload(&server, &name, &payload(1 << 20, 6)).status, 201);
}

#[test]
fn sigkill_mid_upload_to_filesystem_storage_leaves_no_partial_patch_after_restart() {
    sigkill_mid_upload_leaves_nothing_visible(false);
}

#[test]
fn sigkill_mid_upload_to_postgres_storage_leaves_no_partial_patch_after_restart() {
    sigkill_mid_upload_leaves_nothing_visible(true);
}

/// A tmpfs of `size` mounted on `dir`, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill it and needs root (CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_answers_507_storage_full_and_keeps_nothing_partial() {
    let db = testkit::test_database();
    let dsn = db.dsn();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(migrate(&dsn));
    let base = tempfile::tempdir().unwrap();
    let storage = base.path().join("patches");
    let mount = Tmpfs::mount(&storage, "2m");
    let server = start(&env(&dsn, &storage));

    let first = payload(1 << 20, 7);
    assert_eq!(upload(&server, &patch_name(1), &first).status, 201);
    let r = upload(&server, &patch_name(2), &payload(3 << 20, 8));
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (507, "storage-full"),
        "{}",
        r.text()
    );
    assert!(r.text().contains("full"), "{}", r.text());
    assert!(staged_files(&storage).is_empty(), "a partial file was kept");
    assert_eq!(
        get(&server, &format!("/v1/patches/{}", patch_name(2))).status,
        404
    );
    let listed = get(&server, "/v1/admin/patches").text();
    assert!(
        listed.contains(&patch_name(1)) && !listed.contains(&patch_name(2)),
        "{listed}"
    );
    // The space the refused upload took was given back.
    assert_eq!(
        upload(&server, &patch_name(3), &payload(512 << 10, 9)).status,
        201
    );
    let r = get(&server, &format!("/v1/patches/{}", patch_name(1)));
    assert_eq!(sha256_hex(&r.body), sha256_hex(&first));
    drop(server);
    drop(mount);
}
