//! The compiled charm run exactly as Juju runs it: the binary as `dispatch`,
//! the fake hook commands (`ops-fake-juju`) on `PATH`, the standalone Pebble
//! double (`ops-pebble-double`) on the container's socket, and the state
//! kept in files between hooks. One unit's whole journey: install →
//! leader-elected → config-changed → the database relation → pebble-ready →
//! Active.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ops::pebble::ServiceStatus;
use ops::testing::{Container, ExecHandler, Relation, Secret, State};
use ops::{Event, Status};
use serde_json::{json, Value};

const CHARM: &str = env!("CARGO_BIN_EXE_livepatch-charm");
const TOOL: &str = "/usr/local/bin/livepatch-schema-tool";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

struct Unit {
    dir: tempfile::TempDir,
    double: Option<Child>,
}

impl Unit {
    fn new(state: &State) -> Unit {
        let u = Unit {
            dir: tempfile::tempdir().unwrap(),
            double: None,
        };
        ops::testing::fakes::write_json(&u.state_path(), state).unwrap();
        u
    }
    fn state_path(&self) -> PathBuf {
        self.dir.path().join("state.json")
    }
    fn containers(&self) -> PathBuf {
        self.dir.path().join("containers")
    }
    fn container_file(&self) -> PathBuf {
        self.dir.path().join("livepatch.json")
    }
    fn state(&self) -> State {
        serde_json::from_slice(&std::fs::read(self.state_path()).unwrap()).unwrap()
    }
    fn set_state(&self, state: &State) {
        ops::testing::fakes::write_json(&self.state_path(), state).unwrap();
    }
    fn container(&self) -> Container {
        serde_json::from_slice(&std::fs::read(self.container_file()).unwrap()).unwrap()
    }

    /// Starts the workload container's Pebble.
    fn start_pebble(&mut self, container: &Container) {
        ops::testing::fakes::write_json(&self.container_file(), container).unwrap();
        let socket = self.containers().join("livepatch").join("pebble.socket");
        let child = Command::new(testkit::workspace_bin("ops-pebble-double"))
            .arg("--socket")
            .arg(&socket)
            .arg("--container-file")
            .arg(self.container_file())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.double = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "the Pebble double did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs one hook; returns the driver's report (exit code, hook calls…).
    fn hook(&self, event: &str) -> Value {
        let report = self.dir.path().join("report.json");
        let _ = std::fs::remove_file(&report);
        let output = Command::new(testkit::workspace_bin("ops-fake-juju"))
            .arg("dispatch")
            .arg("--state")
            .arg(self.state_path())
            .arg("--meta-dir")
            .arg(repo_root())
            .args(["--event", event])
            .arg("--containers-dir")
            .arg(self.containers())
            .arg("--charm-dir")
            .arg(self.dir.path().join("charm"))
            .arg("--report")
            .arg(&report)
            .arg("--")
            .arg(CHARM)
            .output()
            .unwrap();
        let Ok(bytes) = std::fs::read(&report) else {
            panic!(
                "{event}: the driver failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let report: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(output.status.code(), Some(0), "{event}: {report:#}");
        report
    }
}

impl Drop for Unit {
    fn drop(&mut self) {
        if let Some(mut c) = self.double.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn ev(event: &Event) -> String {
    serde_json::to_string(event).unwrap()
}

#[test]
fn a_unit_goes_from_install_to_active_through_the_real_binary() {
    let peer = Relation::peer("livepatch", 1);
    let mut state = State::default()
        .with_leader(true)
        .with_config(
            "server.url-template",
            "https://lp.example.com/v1/patches/{filename}",
        )
        .with_relation(peer)
        // Declared for the driver's consistency check; its Pebble is the
        // double process started below.
        .with_container(Container::new("livepatch"));
    let mut unit = Unit::new(&state);

    // install: no database, no Pebble yet.
    unit.hook("install");
    assert_eq!(
        unit.state().unit_status,
        Status::waiting("Waiting to connect - workload container")
    );

    // leader-elected: the leader creates the internal admin credential.
    unit.hook("leader-elected");
    state = unit.state();
    let admin_id = state.relation(1).unwrap().local_app_data["admin-secret-id"].clone();
    assert!(state.secret(&admin_id).is_some());

    // The container comes up (its Pebble answers from now on).
    unit.start_pebble(
        &Container::new("livepatch")
            .with_exec(ExecHandler::ok(
                &[TOOL, "check"],
                "schema is up to date (version 7)\n",
            ))
            .with_exec(ExecHandler::ok(&[TOOL, "upgrade"], "")),
    );

    // config-changed: no database yet.
    unit.hook("config-changed");
    assert_eq!(
        unit.state().unit_status,
        Status::blocked("Waiting for postgres relation to be established.")
    );

    // The database relation: created (the leader asks), then the provider answers.
    let mut state = unit.state();
    let rel = Relation::new("database", 3, "postgresql-k8s");
    state = state.with_relation(rel.clone());
    unit.set_state(&state);
    unit.hook(&ev(&rel.created_event()));
    let mut state = unit.state();
    let asked = &state.relation(3).unwrap().local_app_data;
    assert_eq!(asked["database"], "livepatch-server");
    assert!(asked["requested-secrets"].contains("password"));
    let secret = Secret::new(&[("username", "relation-3"), ("password", "s3cret-pw")])
        .with_id("secret:d1b0a5e0c7b3f2a9e8d1");
    let rel = state.relations.iter_mut().find(|r| r.id == 3).unwrap();
    rel.remote_units
        .insert(0, ops::testing::state::default_unit_bag("10.1.0.5"));
    rel.remote_app_data.extend([
        (
            "endpoints".to_string(),
            "pg-primary.lp.svc:5432".to_string(),
        ),
        (
            "secret-user".to_string(),
            "secret:d1b0a5e0c7b3f2a9e8d1".to_string(),
        ),
    ]);
    let rel = rel.clone();
    state = state.with_secret(secret);
    unit.set_state(&state);
    unit.hook(&ev(&rel.changed_event(None)));

    // pebble-ready: everything in place.
    let report = unit.hook(&ev(&Container::new("livepatch").pebble_ready_event()));
    let state = unit.state();
    assert_eq!(
        state.unit_status,
        Status::active(
            "patch sync disabled: upload patches with livepatch-admin or enable patch-sync"
        )
    );
    let container = unit.container();
    assert_eq!(container.service_status("livepatch"), ServiceStatus::Active);
    let env = &container.plan().services["livepatch"].environment;
    assert_eq!(
        env["LP_DATABASE_CONNECTION_STRING"],
        "postgresql://relation-3:s3cret-pw@pg-primary.lp.svc:5432/livepatch-server"
    );
    assert_eq!(env["LP_SERVER_IS_LEADER"], "true");
    assert_eq!(
        state
            .opened_ports
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["8080/tcp"]
    );
    // No credential left the secrets: not in relation data, not in the log.
    for rel in &state.relations {
        assert!(rel
            .local_app_data
            .values()
            .all(|v| !v.contains("s3cret-pw")));
    }
    assert!(!report.to_string().contains("s3cret-pw"), "{report}");
    assert_eq!(report["record"]["calls"][0]["command"], json!("state-get"));
}
