//! Real storage backends for the tests: a temp directory, a PostgreSQL database, an S3-compatible
//! server (`moto_server` from the virtual environment `scripts/lib/python-env` creates) and the
//! recorded-protocol Keystone + Swift server (`tests/support/swift_keystone.py`), each a real
//! process on loopback, stopped when its guard drops.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed on drop.
pub(crate) struct ChildGuard(pub(crate) Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before it listened ({status})");
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn venv_bin(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin = std::env::var_os("OPS_TEST_PYTHON")
        .map(PathBuf::from)
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| root.join(".venv/bin").join(name));
    assert!(
        bin.exists(),
        "{} is missing: run scripts/lib/python-env (scripts/test does) to install moto[server]",
        bin.display()
    );
    bin
}

/// A running S3-compatible server with one bucket.
pub(crate) struct S3Server {
    pub(crate) port: u16,
    pub(crate) bucket: String,
    _child: ChildGuard,
}

impl S3Server {
    pub(crate) fn start() -> Self {
        let port = testkit::free_port();
        let mut child = Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start moto_server");
        wait_for_port(port, &mut child, "moto_server");
        let bucket = format!("patches-{}", testkit::random_hex(4));
        let r = testkit::http_request(port, "PUT", &format!("/{bucket}"), &[], &[]).unwrap();
        assert_eq!(r.status, 200, "cannot create the bucket: {}", r.text());
        Self {
            port,
            bucket,
            _child: ChildGuard(child),
        }
    }

    /// The `LP_*` settings of a server using it (endpoint without a scheme: s3-secure=false).
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LP_PATCH_STORAGE_TYPE".into(), "s3".into()),
            ("LP_PATCH_STORAGE_S3_BUCKET".into(), self.bucket.clone()),
            (
                "LP_PATCH_STORAGE_S3_ENDPOINT".into(),
                format!("127.0.0.1:{}", self.port),
            ),
            ("LP_PATCH_STORAGE_S3_REGION".into(), "us-east-1".into()),
            (
                "LP_PATCH_STORAGE_S3_ACCESS_KEY".into(),
                "AKIDTESTKEY".into(),
            ),
            (
                "LP_PATCH_STORAGE_S3_SECRET_KEY".into(),
                "s3-Secret-Value-42".into(),
            ),
            ("LP_PATCH_STORAGE_S3_SECURE".into(), "false".into()),
        ]
    }
}

pub(crate) const SWIFT_USER: &str = "livepatch";
pub(crate) const SWIFT_PASSWORD: &str = "swift-Secret-Pw-7";
pub(crate) const SWIFT_PROJECT: &str = "patches-project";

/// A running Keystone v3 + Swift (recorded protocol) server.
pub(crate) struct SwiftServer {
    pub(crate) port: u16,
    _child: ChildGuard,
}

impl SwiftServer {
    pub(crate) fn start() -> Self {
        let port = testkit::free_port();
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/swift_keystone.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args([&port.to_string(), SWIFT_USER, SWIFT_PASSWORD, SWIFT_PROJECT])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start python3 for the Swift test server");
        wait_for_port(port, &mut child, "the Swift test server");
        Self {
            port,
            _child: ChildGuard(child),
        }
    }

    pub(crate) fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LP_PATCH_STORAGE_TYPE".into(), "swift".into()),
            (
                "LP_PATCH_STORAGE_SWIFT_AUTH_URL".into(),
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("LP_PATCH_STORAGE_SWIFT_USERNAME".into(), SWIFT_USER.into()),
            (
                "LP_PATCH_STORAGE_SWIFT_API_KEY".into(),
                SWIFT_PASSWORD.into(),
            ),
            ("LP_PATCH_STORAGE_SWIFT_DOMAIN".into(), "Default".into()),
            ("LP_PATCH_STORAGE_SWIFT_TENANT".into(), SWIFT_PROJECT.into()),
            (
                "LP_PATCH_STORAGE_SWIFT_CONTAINER".into(),
                "livepatch".into(),
            ),
            ("LP_PATCH_STORAGE_SWIFT_REGION".into(), "RegionOne".into()),
        ]
    }
}
