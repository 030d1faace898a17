//! Tests against a real `livepatch-server` process: the admin CLI, graceful shutdown with a
//! download in flight, log redaction, TLS listeners and the separate admin listener.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use testkit::{http_request, ServerProcess};

use crate::common::{basic, basic_users_value, migrate, patch_name, ADMIN_PASSWORD, ADMIN_USER};

struct Server {
    db: testkit::TestDb,
    patches: tempfile::TempDir,
    process: ServerProcess,
}

async fn start(extra: &[(&str, &str)]) -> Server {
    let db = testkit::test_database();
    migrate(&db.dsn()).await;
    let patches = tempfile::tempdir().unwrap();
    let users = basic_users_value();
    let dsn = db.dsn();
    let dir = patches.path().display().to_string();
    let mut env: Vec<(&str, &str)> = vec![
        ("LP_DATABASE_CONNECTION_STRING", &dsn),
        ("LP_PATCH_STORAGE_FILESYSTEM_PATH", &dir),
        ("LP_AUTH_BASIC_ENABLED", "true"),
        ("LP_AUTH_BASIC_USERS", &users),
    ];
    env.extend_from_slice(extra);
    let process = ServerProcess::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_livepatch-server")),
        &env,
    )
    .unwrap();
    Server {
        db,
        patches,
        process,
    }
}

fn cli(server: &Server, home: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_livepatch-admin"))
        .args(args)
        .env("LIVEPATCH_URL", server.process.url())
        .env("XDG_CONFIG_HOME", home)
        .env_remove("LIVEPATCH_CA_CRT")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_admin_cli_drives_a_real_server_end_to_end() {
    let server = start(&[]).await;
    let home = tempfile::tempdir().unwrap();
    let (code, _, err) = cli(&server, home.path(), &["tier", "list"]);
    assert_eq!(code, 1);
    assert!(err.contains("not logged in"), "{err}");
    let (code, out, err) = cli(
        &server,
        home.path(),
        &["login", "-a", &format!("{ADMIN_USER}:{ADMIN_PASSWORD}")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("logged in"));
    let creds = home.path().join("livepatch-admin/credentials.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let (code, out, _) = cli(&server, home.path(), &["tier", "list"]);
    assert_eq!(code, 0);
    assert_eq!(
        out.lines()
            .map(|l| l.split_whitespace().nth(1).unwrap_or(""))
            .collect::<Vec<_>>(),
        ["NAME", "edge", "beta", "candidate", "stable"]
    );
    assert_eq!(
        cli(
            &server,
            home.path(),
            &["tier", "add", "early", "--after", "edge"]
        )
        .0,
        0
    );
    let (code, _, err) = cli(&server, home.path(), &["tier", "add", "early"]);
    assert_eq!(code, 1);
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
    assert!(
        err.contains("already exists") && err.contains("409"),
        "{err}"
    );
    assert_eq!(cli(&server, home.path(), &["tier", "remove", "early"]).0, 0);

    let file = home
        .path()
        .join(patch_name("5.15.0-107.117", "generic", "107.1", "amd64"));
    std::fs::write(&file, vec![42u8; 200_000]).unwrap();
    let (code, out, err) = cli(
        &server,
        home.path(),
        &["patch", "upload", file.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("uploaded"));
    assert_eq!(
        std::fs::read(server.patches.path().join(file.file_name().unwrap()))
            .unwrap()
            .len(),
        200_000
    );
    assert_eq!(
        cli(
            &server,
            home.path(),
            &["patch", "promote", "107.1", "stable"]
        )
        .0,
        0
    );
    assert_eq!(
        cli(
            &server,
            home.path(),
            &["patch", "promote-all", "edge", "candidate"]
        )
        .0,
        0
    );
    let (_, out, _) = cli(&server, home.path(), &["--format", "json", "patch", "list"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["patches"][0]["tiers"],
        serde_json::json!(["edge", "beta", "candidate", "stable"])
    );
    assert_eq!(
        cli(
            &server,
            home.path(),
            &["patch", "blocklist", "107.1", "--reason", "regression"]
        )
        .0,
        0
    );
    assert_eq!(
        cli(&server, home.path(), &["patch", "unblocklist", "107.1"]).0,
        0
    );

    let (code, token, _) = cli(&server, home.path(), &["auth-token", "fleet", "stable"]);
    assert_eq!(code, 0);
    assert!(token.trim().starts_with("lpa_"));
    let (_, out, _) = cli(&server, home.path(), &["auth-tokens", "list"]);
    assert!(out.contains("fleet") && !out.contains(token.trim()));
    assert_eq!(
        cli(&server, home.path(), &["auth-tokens", "revoke", "fleet"]).0,
        0
    );
    let (code, sync, _) = cli(
        &server,
        home.path(),
        &[
            "sync-tokens",
            "add",
            "stable",
            "down-1",
            "--valid-until",
            "2099-01-01T00:00:00Z",
        ],
    );
    assert_eq!(code, 0);
    assert!(sync.trim().starts_with("lps_"));
    assert!(cli(&server, home.path(), &["sync-tokens", "list"])
        .1
        .contains("down-1"));
    assert_eq!(
        cli(&server, home.path(), &["sync-tokens", "remove", "down-1"]).0,
        0
    );
    assert!(cli(&server, home.path(), &["storage", "patches"])
        .1
        .contains("107.1"));
    assert!(cli(&server, home.path(), &["storage", "refresh"])
        .1
        .contains("registered 0 file(s)"));
    let (code, out, err) = cli(&server, home.path(), &["report", "machines", "stable"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("MACHINE-ID"));
    let (_, out, _) = cli(
        &server,
        home.path(),
        &[
            "--format",
            "json",
            "report",
            "patch-health",
            "stable",
            "107.1",
        ],
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["applied"],
        0
    );

    // Usage errors exit 2; a bad password is one line, exit 1.
    assert_eq!(cli(&server, home.path(), &["tier", "explode"]).0, 2);
    let (code, _, err) = cli(&server, home.path(), &["login", "-a", "admin:wrong"]);
    assert_eq!((code, err.trim().lines().count()), (1, 1), "{err}");
    assert!(err.contains("invalid user name or password"));
}

#[test]
fn hash_password_prints_a_hash_the_server_accepts() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_livepatch-admin"))
        .args(["hash-password", "--cost", "4"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"s3cret-pass\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(bcrypt::verify("s3cret-pass", &hash).unwrap());
    assert!(workload::config::parse_basic_users(&format!("admin:{hash}")).is_ok());
}

#[tokio::test]
async fn sigterm_lets_a_download_in_flight_finish_then_exits_0() {
    let mut server = start(&[("LP_SERVER_SHUTDOWN_TIMEOUT", "20s")]).await;
    let port = server.process.port();
    let name = patch_name("5.15.0-107.117", "generic", "1.1", "amd64");
    let content: Vec<u8> = (0..24_000_000u32).map(|i| (i % 253) as u8).collect();
    let auth = basic(ADMIN_USER, ADMIN_PASSWORD);
    let r = http_request(
        port,
        "POST",
        "/v1/admin/patches",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/x-bzip2"),
            ("X-Patch-Filename", &name),
        ],
        &content,
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());

    // Start the download and read only its first bytes: the rest cannot fit in socket buffers.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(stream, "GET /v1/patches/{name} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut first = vec![0u8; 64 * 1024];
    let n = stream.read(&mut first).unwrap();
    assert!(n > 0);
    first.truncate(n);

    server.process.terminate().unwrap();
    // New connections are refused once the listener is closed (wait until it is).
    let mut refused = false;
    for _ in 0..500 {
        if TcpStream::connect(("127.0.0.1", port)).is_err() {
            refused = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(refused, "the listener still accepts after SIGTERM");

    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    first.extend_from_slice(&rest);
    let response = testkit::parse_response(&first).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body.len(), content.len(), "the whole file arrived");
    assert!(response.body == content);
    let status = server.process.stop(Duration::from_secs(30)).unwrap();
    assert_eq!(status.code(), Some(0));
    let out = server.process.output();
    assert!(
        out.contains("process_signal") && out.contains("every request finished"),
        "{out}"
    );
    drop(server.db);
}

#[tokio::test]
async fn logs_are_json_carry_security_events_and_never_contain_a_secret() {
    let sync_env = "sync-env-token-7f3a9c";
    let contracts_pw = "contracts-pw-1c2d3e";
    let s3_secret = "s3-secret-key-99aa";
    let server = start(&[
        ("LP_SERVER_LOG_LEVEL", "debug"),
        ("LP_PATCH_SYNC_TOKEN", sync_env),
        ("LP_CONTRACTS_PASSWORD", contracts_pw),
        ("LP_PATCH_STORAGE_S3_SECRET_KEY", s3_secret),
        ("LP_MACHINE_REPORTS_DATABASE_ENABLED", "true"),
    ])
    .await;
    let port = server.process.port();
    let users = std::fs::read_to_string(format!("/proc/{}/environ", server.process.pid().unwrap()))
        .unwrap()
        .split('\0')
        .find_map(|kv| kv.strip_prefix("LP_AUTH_BASIC_USERS=").map(str::to_string))
        .unwrap();
    let hash = users.split_once(':').unwrap().1.to_string();
    let good = basic(ADMIN_USER, ADMIN_PASSWORD);
    let json_post = |path: &str, auth: &str, body: serde_json::Value| {
        http_request(
            port,
            "POST",
            path,
            &[
                ("Authorization", auth),
                ("Content-Type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
        .unwrap()
    };
    let login = json_post("/v1/admin/login", &good, serde_json::json!({}));
    let macaroon = serde_json::from_slice::<serde_json::Value>(&login.body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let mac = format!("Macaroon {macaroon}");
    let auth_token = serde_json::from_slice::<serde_json::Value>(
        &json_post(
            "/v1/admin/auth-token",
            &mac,
            serde_json::json!({"id": "fleet", "tier": "edge"}),
        )
        .body,
    )
    .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let sync = serde_json::from_slice::<serde_json::Value>(
        &json_post(
            "/v1/admin/sync-tokens",
            &mac,
            serde_json::json!({"name": "down", "tier": "edge"}),
        )
        .body,
    )
    .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = http_request(
        port,
        "PUT",
        "/v1/client/m-1",
        &[
            ("Authorization", &format!("Bearer {auth_token}")),
            ("Content-Type", "application/json"),
        ],
        br#"{"architecture":"amd64","kernel":"5.15.0-107.117-generic"}"#,
    )
    .unwrap();
    let machine = serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["machine-token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = json_post(
        "/v1/client/m-1/updates",
        &format!("Bearer {machine}"),
        serde_json::json!({"kernel": "5.15.0-107.117-generic", "architecture": "amd64"}),
    );
    assert_eq!(r.status, 204);
    // Failures: wrong password, a forged bearer on a client route, a bad macaroon.
    assert_eq!(
        json_post(
            "/v1/admin/login",
            &basic(ADMIN_USER, "wrong-password-5x"),
            serde_json::json!({})
        )
        .status,
        401
    );
    assert_eq!(
        json_post(
            "/v1/client/m-1/updates",
            "Bearer lpm_forged-token-abc",
            serde_json::json!({})
        )
        .status,
        401
    );
    assert_eq!(
        http_request(
            port,
            "GET",
            "/v1/admin/tiers",
            &[("Authorization", "Macaroon garbage-token-zz")],
            &[]
        )
        .unwrap()
        .status,
        401
    );
    assert_eq!(
        http_request(
            port,
            "GET",
            "/v1/admin/tiers",
            &[("Authorization", &mac)],
            &[]
        )
        .unwrap()
        .status,
        200
    );

    let logs = server.process.output();
    let dsn_password = "testkit-superuser";
    for secret in [
        ADMIN_PASSWORD,
        "wrong-password-5x",
        hash.as_str(),
        sync_env,
        contracts_pw,
        s3_secret,
        dsn_password,
        &macaroon,
        &auth_token,
        &sync,
        &machine,
        "lpm_forged-token-abc",
        "garbage-token-zz",
        &good["Basic ".len()..],
    ] {
        assert!(
            !logs.contains(secret),
            "a secret leaked into the logs: {secret:.6}…"
        );
    }
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    assert!(lines
        .iter()
        .all(|l| l["level"].is_string() && l["ts"].is_string() && l["msg"].is_string()));
    let event = |name: &str| {
        lines
            .iter()
            .find(|l| l["type"] == "security" && l["event"] == name)
            .cloned()
    };
    let authz = lines
        .iter()
        .find(|l| {
            l["type"] == "security"
                && l["event"] == "authz_admin"
                && l["path"] == "/v1/admin/auth-token"
        })
        .expect("authz_admin event for the token creation");
    assert_eq!(
        (
            authz["appid"].as_str(),
            authz["method"].as_str(),
            authz["path"].as_str()
        ),
        (
            Some("server.admin_authz"),
            Some("POST"),
            Some("/v1/admin/auth-token")
        )
    );
    assert_eq!(authz["trace-id"].as_str().unwrap().len(), 36);
    assert!(event("basicauth_authn_failed:invalid_password").is_some());
    assert!(event("machinetoken_authn_failed:invalid_token").is_some());
    assert!(event("macaroon_authn_failed:invalid_token").is_some());
    assert!(event("process_start").is_some());
}

#[tokio::test]
async fn a_tls_listener_serves_https_and_a_separate_admin_listener_takes_the_admin_routes() {
    let ca = testkit::TestCa::new("test CA");
    let cert = ca.issue(&["localhost", "127.0.0.1"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tls.crt"), &cert.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &cert.key_pem).unwrap();
    std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).unwrap();
    let admin_port = testkit::free_port();
    let admin_addr = format!("127.0.0.1:{admin_port}");
    let cert_path = dir.path().join("tls.crt").display().to_string();
    let key_path = dir.path().join("tls.key").display().to_string();
    // The readiness probe of ServerProcess speaks plain HTTP, so start it without TLS first to
    // check the split listeners, then with TLS.
    let server = start(&[("LP_SERVER_ADMIN_ADDRESS", &admin_addr)]).await;
    let public = server.process.port();
    let auth = basic(ADMIN_USER, ADMIN_PASSWORD);
    let r = http_request(
        public,
        "GET",
        "/v1/admin/tiers",
        &[("Authorization", &auth)],
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 404, "admin routes are not on the public listener");
    assert_eq!(
        http_request(
            admin_port,
            "GET",
            "/v1/admin/tiers",
            &[("Authorization", &auth)],
            &[]
        )
        .unwrap()
        .status,
        200
    );
    assert_eq!(
        http_request(
            admin_port,
            "GET",
            "/v1/patches/livepatch-5.15.0-1.1-generic-1.1-amd64.tar.bz2",
            &[],
            &[]
        )
        .unwrap()
        .status,
        404
    );
    assert_eq!(
        http_request(admin_port, "GET", "/metrics", &[], &[])
            .unwrap()
            .status,
        200
    );
    drop(server);

    let db = testkit::test_database();
    migrate(&db.dsn()).await;
    let patches = tempfile::tempdir().unwrap();
    let port = testkit::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_livepatch-server"))
        .env_clear()
        .env("LP_SERVER_SERVER_ADDRESS", format!("127.0.0.1:{port}"))
        .env("LP_DATABASE_CONNECTION_STRING", db.dsn())
        .env("LP_PATCH_STORAGE_FILESYSTEM_PATH", patches.path())
        .env("LP_SERVER_TLS_CERT_FILE", &cert_path)
        .env("LP_SERVER_TLS_KEY_FILE", &key_path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The admin CLI is our HTTPS client: it must trust the CA given with --ca.
    let home = tempfile::tempdir().unwrap();
    let url = format!("https://localhost:{port}");
    let mut last = String::new();
    for _ in 0..300 {
        let out = Command::new(env!("CARGO_BIN_EXE_livepatch-admin"))
            .args([
                "--url",
                &url,
                "--ca",
                dir.path().join("ca.crt").to_str().unwrap(),
                "login",
                "-a",
                "admin:x",
            ])
            .env("XDG_CONFIG_HOME", home.path())
            .output()
            .unwrap();
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        // Basic auth is off here: a 401 proves the TLS handshake and the request went through.
        if last.contains("HTTP 401") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(last.contains("Basic authentication is disabled"), "{last}");
    let out = Command::new(env!("CARGO_BIN_EXE_livepatch-admin"))
        .args(["--url", &url, "login", "-a", "admin:x"])
        .env("XDG_CONFIG_HOME", home.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach") && (err.contains("certificate") || err.contains("Unknown")),
        "an untrusted certificate is refused: {err}"
    );
    let _ = child.kill();
    let _ = child.wait();
}
