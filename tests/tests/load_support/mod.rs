//! What the fault and overload suites share: a migrated database, a real `livepatch-server`
//! process with filesystem storage and a known admin, uploads and plain requests.

#![allow(dead_code)] // Each suite is its own crate and uses a different part of this module.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use testkit::{http_request, HttpResponse, ServerProcess};

pub(crate) const ADMIN_USER: &str = "admin";
pub(crate) const ADMIN_PASSWORD: &str = "fault-suite-password";

/// Applies the schema through the library (what `livepatch-schema-tool upgrade` does).
pub(crate) async fn migrate(dsn: &str) {
    let mut client = workload::db::Dsn::parse(dsn)
        .unwrap()
        .connect()
        .await
        .unwrap();
    workload::migrations::upgrade(&mut client).await.unwrap();
}

/// Inserts `machines` synthetic machines (see `bench::fleet`).
pub(crate) async fn seed(dsn: &str, machines: u64) {
    let client = workload::db::Dsn::parse(dsn)
        .unwrap()
        .connect()
        .await
        .unwrap();
    bench::fleet::seed(&client, machines, "edge").await.unwrap();
}

/// `Authorization: Basic` for the admin.
pub(crate) fn basic() -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ADMIN_USER}:{ADMIN_PASSWORD}"))
    )
}

/// A server configuration: the database, filesystem storage under `storage`, the admin user.
pub(crate) fn env(dsn: &str, storage: &Path) -> Vec<(String, String)> {
    vec![
        ("LP_DATABASE_CONNECTION_STRING".into(), dsn.into()),
        ("LP_PATCH_STORAGE_TYPE".into(), "filesystem".into()),
        (
            "LP_PATCH_STORAGE_FILESYSTEM_PATH".into(),
            storage.display().to_string(),
        ),
        ("LP_AUTH_BASIC_ENABLED".into(), "true".into()),
        (
            "LP_AUTH_BASIC_USERS".into(),
            format!("{ADMIN_USER}:{}", bcrypt::hash(ADMIN_PASSWORD, 4).unwrap()),
        ),
    ]
}

/// Sets (or replaces) one variable of an environment.
pub(crate) fn set(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    env.retain(|(k, _)| k != key);
    env.push((key.into(), value.into()));
}

/// Starts the real server binary with `env`.
pub(crate) fn start(env: &[(String, String)]) -> ServerProcess {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    ServerProcess::start(&testkit::workspace_bin("livepatch-server"), &pairs)
        .expect("the server must start")
}

/// The server's socket address.
pub(crate) fn addr(server: &ServerProcess) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], server.port()))
}

/// A patch filename for kernel 5.15.0-107.117-generic amd64 at patch version `107.<minor>`.
pub(crate) fn patch_name(minor: u32) -> String {
    format!("livepatch-5.15.0-107.117-generic-107.{minor}-amd64.tar.bz2")
}

/// Deterministic, incompressible-looking bytes.
pub(crate) fn payload(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed) | 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Uploads `bytes` as `name` through the admin API.
pub(crate) fn upload(server: &ServerProcess, name: &str, bytes: &[u8]) -> HttpResponse {
    let auth = basic();
    http_request(
        server.port(),
        "POST",
        "/v1/admin/patches",
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/x-bzip2"),
            ("X-Patch-Filename", name),
        ],
        bytes,
    )
    .unwrap()
}

/// `GET path` (admin credentials attached for admin routes).
pub(crate) fn get(server: &ServerProcess, path: &str) -> HttpResponse {
    let auth = basic();
    let headers: Vec<(&str, &str)> = if path.starts_with("/v1/admin") {
        vec![("Authorization", auth.as_str())]
    } else {
        vec![]
    };
    http_request(server.port(), "GET", path, &headers, &[]).unwrap()
}

/// The error code of an error answer.
pub(crate) fn error_code(r: &HttpResponse) -> String {
    serde_json::from_slice::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("<not an error body: {}>", r.text()))
}

/// Entries of a directory whose names start with `.upload-` (staged uploads).
pub(crate) fn staged_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(".upload-"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Lower-case hex SHA-256.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
