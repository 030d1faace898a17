//! The Pebble double, driven by the real Python client (`ops.pebble.Client`
//! from the `ops` package on PyPI).
//!
//! The interpreter is `$OPS_TEST_PYTHON` (set by `scripts/test`); without
//! it the test creates or reuses the repository's `.venv` through
//! `scripts/lib/python-env`, under a lock so parallel tests share one setup.
//! It never skips: no Python client means a failed test.

use std::path::{Path, PathBuf};
use std::process::Command;

use ops::testing::pebble::PebbleDouble;
use ops::testing::{Container, ExecHandler, FsEntry};
use serde_json::{json, Value};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("OPS_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let root = repo_root();
    // The lock lives in cargo's scratch directory so nothing new appears in
    // the working tree.
    let lock = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-env.lock");
    let status = Command::new("flock")
        .arg(&lock)
        .arg(root.join("scripts/lib/python-env"))
        .status()
        .expect("cannot run flock scripts/lib/python-env");
    assert!(
        status.success(),
        "scripts/lib/python-env failed: cannot set up the Python ops client"
    );
    root.join(".venv/bin/python")
}

/// Serves `container`, runs `scenario` with the Python client, returns its
/// JSON summary and the container afterwards.
fn drive(container: Container, scenario: &str) -> (Value, Container) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("pebble.socket");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let double = rt
        .block_on(PebbleDouble::start(&socket, &container))
        .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/pebble_client.py");
    // -I: the repository's `ops/` directory must not shadow the package.
    let out = Command::new(python())
        .arg("-I")
        .arg(&script)
        .arg(&socket)
        .arg(scenario)
        .output()
        .expect("cannot run the Python client");
    let snapshot = double.snapshot();
    rt.block_on(double.stop());
    assert!(
        out.status.success(),
        "the Python client disagreed with the double in {scenario}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        serde_json::from_slice(&out.stdout).expect("the scenario prints JSON"),
        snapshot,
    )
}

#[test]
fn the_python_client_adds_layers_reads_the_plan_and_drives_services() {
    let (summary, after) = drive(Container::new("web"), "layers-and-services");
    assert_eq!(
        summary["services"],
        json!({"side": "active", "web": "active"})
    );
    assert_eq!(
        summary["plan"]["services"]["web"],
        json!({"override": "replace", "command": "/bin/web --port 8080", "startup": "enabled",
               "environment": {"PORT": "8080", "MODE": "prod"}})
    );
    let kinds: Vec<&str> = summary["change_kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    for kind in ["perform-check", "replan", "start", "stop", "restart"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    assert_eq!(after.layers.len(), 1);
    assert_eq!(after.layers[0].label, "base");
}

#[test]
fn the_python_client_pushes_pulls_lists_makes_and_removes_files() {
    let (summary, after) = drive(Container::new("web"), "files");
    assert_eq!(summary["srv"], json!([["data", "0o750"]]));
    assert_eq!(
        after.filesystem["/data/blob.bin"].content.as_deref(),
        Some(&b"\x00\xff\r\n--not-a-boundary\r\n\x01"[..])
    );
    assert!(!after.filesystem.contains_key("/etc/app/config.yaml"));
    assert_eq!(after.filesystem["/srv/data"].permissions, 0o750);
}

#[test]
fn the_python_client_execs_with_output_stdin_and_exit_codes() {
    let container = Container::new("web")
        .with_exec(ExecHandler {
            stderr: "warning: echo\n".into(),
            ..ExecHandler::ok(&["echo"], "hello\n")
        })
        .with_exec(ExecHandler::ok(&["psql"], "1\n"))
        .with_exec(ExecHandler::fail(&["fail2"], 2, "bad thing\n"));
    let mut container = container;
    container.filesystem.insert("/root".into(), FsEntry::dir());
    let (summary, after) = drive(container, "exec");
    assert_eq!(summary["exit_code"], 2);
    let psql = after
        .exec_history
        .iter()
        .find(|r| r.command[0] == "psql")
        .expect("psql ran");
    assert_eq!(psql.stdin, "SELECT 1;");
    assert_eq!(psql.environment["PGPASSWORD"], "pw");
    assert_eq!(psql.working_dir.as_deref(), Some("/"));
    let codes: Vec<i32> = after.exec_history.iter().map(|r| r.exit_code).collect();
    assert_eq!(codes, [0, 0, 0, 2, 2]);
}
