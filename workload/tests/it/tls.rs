//! PostgreSQL over TLS with scram-sha-256: every sslmode against a cluster whose certificate
//! is issued to `localhost` by a generated CA, with only `hostssl` lines in pg_hba.conf.

use workload::db::Dsn;

fn cluster() -> testkit::PgCluster {
    let c = testkit::PgCluster::builder()
        .tls("localhost")
        .scram()
        .hostssl_only()
        .start()
        .unwrap();
    c.create_user("lp", "lp-Passw0rd").unwrap();
    c.create_database("livepatch", Some("lp")).unwrap();
    c
}

async fn ssl_in_use(dsn: &str) -> Result<bool, String> {
    let client = Dsn::parse(dsn)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

#[tokio::test]
async fn verify_full_connects_with_scram_over_tls_and_refuses_a_wrong_host_name() {
    let c = cluster();
    let ca = c.ca_file().unwrap().display().to_string();
    let base = |host: &str, mode: &str| {
        format!(
            "{}?sslmode={mode}&sslrootcert={ca}",
            c.dsn_for("lp", "lp-Passw0rd", host, "livepatch")
        )
    };
    assert_eq!(
        ssl_in_use(&base("localhost", "verify-full")).await,
        Ok(true)
    );
    // 127.0.0.1 is not a name on the certificate: verify-full refuses, verify-ca accepts.
    let err = ssl_in_use(&base("127.0.0.1", "verify-full"))
        .await
        .unwrap_err();
    assert!(
        err.contains("certificate") && !err.contains("lp-Passw0rd"),
        "{err}"
    );
    assert_eq!(ssl_in_use(&base("127.0.0.1", "verify-ca")).await, Ok(true));
    // require with a root certificate behaves as verify-ca (libpq), without one it only encrypts.
    assert_eq!(ssl_in_use(&base("127.0.0.1", "require")).await, Ok(true));
    let plain_require = format!(
        "{}?sslmode=require",
        c.dsn_for("lp", "lp-Passw0rd", "127.0.0.1", "livepatch")
    );
    assert_eq!(ssl_in_use(&plain_require).await, Ok(true));
    let prefer = format!(
        "{}?sslmode=prefer",
        c.dsn_for("lp", "lp-Passw0rd", "localhost", "livepatch")
    );
    assert_eq!(ssl_in_use(&prefer).await, Ok(true));
    // disable is refused by the hostssl-only pg_hba.conf; a wrong password by scram.
    let err = ssl_in_use(&format!(
        "{}?sslmode=disable",
        c.dsn_for("lp", "lp-Passw0rd", "localhost", "livepatch")
    ))
    .await
    .unwrap_err();
    assert!(err.contains("pg_hba.conf"), "{err}");
    let err = ssl_in_use(&base("localhost", "verify-full").replace("lp-Passw0rd", "wrong"))
        .await
        .unwrap_err();
    assert!(err.contains("password authentication failed"), "{err}");
}

#[tokio::test]
async fn verify_full_against_a_ca_that_did_not_sign_the_server_is_refused() {
    let c = cluster();
    let other = testkit::TestCa::new("someone else");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.crt");
    std::fs::write(&path, other.cert_pem()).unwrap();
    let dsn = format!(
        "{}?sslmode=verify-ca&sslrootcert={}",
        c.dsn_for("lp", "lp-Passw0rd", "localhost", "livepatch"),
        path.display()
    );
    assert!(ssl_in_use(&dsn).await.unwrap_err().contains("certificate"));
    let missing = format!(
        "{}?sslmode=verify-full&sslrootcert=/nonexistent.pem",
        c.dsn_for("lp", "lp-Passw0rd", "localhost", "livepatch")
    );
    assert!(ssl_in_use(&missing)
        .await
        .unwrap_err()
        .contains("/nonexistent.pem"));
}

#[tokio::test]
async fn the_schema_tool_and_the_server_work_over_verify_full() {
    let c = cluster();
    let dsn = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        c.dsn_for("lp", "lp-Passw0rd", "localhost", "livepatch"),
        c.ca_file().unwrap().display()
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_livepatch-schema-tool"))
        .args(["upgrade", "--target", "livepatchdb"])
        .env("LP_DATABASE_CONNECTION_STRING", &dsn)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let patches = tempfile::tempdir().unwrap();
    let mut server = testkit::ServerProcess::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_livepatch-server")),
        &[
            ("LP_DATABASE_CONNECTION_STRING", &dsn),
            (
                "LP_PATCH_STORAGE_FILESYSTEM_PATH",
                patches.path().to_str().unwrap(),
            ),
        ],
    )
    .unwrap();
    let (status, body) = testkit::http_get(server.port(), "/debug/status").unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        server
            .stop(std::time::Duration::from_secs(10))
            .unwrap()
            .code(),
        Some(0)
    );
}
