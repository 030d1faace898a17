//! The compiled demo charm, run exactly as Juju runs it: the fake hook
//! command executables on `PATH`, the standalone Pebble double on its
//! socket, state persisted in files between hooks.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ops::pebble::ServiceStatus;
use ops::testing::{Container, ExecHandler, Relation, Secret, State};
use ops::{Event, Status};
use serde_json::{json, Value};

const FAKE: &str = env!("CARGO_BIN_EXE_ops-fake-juju");
const DOUBLE: &str = env!("CARGO_BIN_EXE_ops-pebble-double");
const CHARM: &str = env!("CARGO_BIN_EXE_ops-example-charm");

fn meta_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo-charm")
}

/// A unit's world on disk: the Juju state file, the containers directory,
/// and (when started) a Pebble double process for container `web`.
struct World {
    dir: tempfile::TempDir,
    double: Option<Child>,
}

impl World {
    fn new(state: &State) -> World {
        let w = World {
            dir: tempfile::tempdir().unwrap(),
            double: None,
        };
        ops::testing::fakes::write_json(&w.state_path(), state).unwrap();
        w
    }
    fn state_path(&self) -> PathBuf {
        self.dir.path().join("state.json")
    }
    fn containers(&self) -> PathBuf {
        self.dir.path().join("containers")
    }
    fn container_file(&self) -> PathBuf {
        self.dir.path().join("web.json")
    }
    fn state(&self) -> State {
        serde_json::from_slice(&std::fs::read(self.state_path()).unwrap()).unwrap()
    }
    fn container(&self) -> Container {
        serde_json::from_slice(&std::fs::read(self.container_file()).unwrap()).unwrap()
    }

    fn start_double(&mut self, container: &Container) {
        ops::testing::fakes::write_json(&self.container_file(), container).unwrap();
        let socket = self.containers().join("web").join("pebble.socket");
        let child = Command::new(DOUBLE)
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

    /// Runs one event (`--event` or `--action`) with a charm directory of its
    /// own; returns the exit code and the report.
    fn dispatch(&self, event_args: &[&str], charm_dir: &str) -> (i32, Value) {
        let report = self.dir.path().join("report.json");
        let status = Command::new(FAKE)
            .arg("dispatch")
            .arg("--state")
            .arg(self.state_path())
            .arg("--meta-dir")
            .arg(meta_dir())
            .args(event_args)
            .arg("--containers-dir")
            .arg(self.containers())
            .arg("--charm-dir")
            .arg(self.dir.path().join(charm_dir))
            .arg("--report")
            .arg(&report)
            .arg("--")
            .arg(CHARM)
            .status()
            .unwrap();
        let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        assert_eq!(
            report["exit_code"],
            json!(status.code().unwrap()),
            "the driver exits with the charm's status"
        );
        (status.code().unwrap(), report)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(mut c) = self.double.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn secret() -> Secret {
    Secret::new(&[("password", "s3cret")]).with_id("secret:d1b0a5e0c7b3f2a9e8d1")
}

fn ready(secret: Secret) -> State {
    State::default()
        .with_leader(true)
        .with_relation(
            Relation::new("db", 4, "kv")
                .with_remote_unit(0, &[])
                .with_remote_app_data(&[
                    ("host", "db.example:5432"),
                    ("password-secret", &secret.id),
                ]),
        )
        .with_secret(secret)
}

fn web() -> Container {
    Container::new("web").with_exec(ExecHandler::ok(&["/usr/bin/demo-greet"], "hello bob\n"))
}

#[test]
fn the_compiled_charm_configures_its_workload_through_the_fakes() {
    let mut w = World::new(&ready(secret()));
    w.start_double(&web());
    let (code, report) = w.dispatch(&["--event", "config-changed"], "charm");
    assert_eq!(code, 0, "{report}");
    let state = w.state();
    assert_eq!(state.unit_status, Status::active("serving on :8080"));
    assert_eq!(
        state
            .opened_ports
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["8080/tcp"]
    );
    assert_eq!(state.stored["port"], json!(8080));
    assert_eq!(
        state.secret_by_label("db-password").unwrap().id,
        secret().id
    );
    let web = w.container();
    assert_eq!(web.service_status("web"), ServiceStatus::Active);
    assert_eq!(
        web.plan().services["web"].environment["DB_PASSWORD"],
        "s3cret"
    );
    assert!(web
        .file_text("/etc/demo/config.json")
        .unwrap()
        .contains("\"port\":8080"));
    let calls: Vec<&str> = report["record"]["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["command"].as_str().unwrap())
        .collect();
    assert_eq!(calls.first(), Some(&"state-get"));
    assert!(
        calls.contains(&"state-set"),
        "the stored port was saved: {calls:?}"
    );
}

#[test]
fn a_failing_hook_commits_nothing_and_logs_the_error() {
    let broken = Secret::new(&[("user", "x")]).with_id("secret:d1b0a5e0c7b3f2a9e8d1");
    let before = ready(broken);
    let mut w = World::new(&before);
    w.start_double(&web());
    let created = serde_json::to_string(&Relation::new("db", 4, "kv").created_event()).unwrap();
    let (code, report) = w.dispatch(&["--event", &created], "charm");
    assert_eq!(code, 1);
    let stderr = report["stderr"].as_str().unwrap();
    assert!(
        stderr.contains("the database secret has no \"password\" key"),
        "{stderr}"
    );
    let after = w.state();
    assert!(
        after.relation(4).unwrap().local_app_data.is_empty(),
        "the relation-set was discarded"
    );
    assert_eq!(after.relations, before.relations);
    assert_eq!(
        after.secrets[0].label, None,
        "the label binding was discarded too"
    );
    let log = report["record"]["juju_log"].as_array().unwrap();
    assert_eq!(log.last().unwrap()["level"], "ERROR");
}

#[test]
fn a_deferred_event_survives_a_pod_restart() {
    let mut w = World::new(&ready(secret()));
    // No Pebble yet: the socket is missing.
    let (code, report) = w.dispatch(&["--event", "config-changed"], "charm-pod-1");
    assert_eq!(code, 0, "{report}");
    let state = w.state();
    assert_eq!(state.deferred, [Event::ConfigChanged]);
    assert_eq!(
        state.unit_status,
        Status::waiting("waiting for the web container")
    );

    // The pod is recreated: a new, empty charm directory; Pebble is up.
    w.start_double(&web());
    let (code, report) = w.dispatch(&["--event", "update-status"], "charm-pod-2");
    assert_eq!(code, 0, "{report}");
    let state = w.state();
    assert!(state.deferred.is_empty());
    assert_eq!(state.unit_status, Status::active("serving on :8080"));
    assert_eq!(w.container().service_status("web"), ServiceStatus::Active);
}

#[test]
fn unknown_events_exit_zero_without_a_hook_command() {
    let w = World::new(&State::default());
    let (code, report) = w.dispatch(
        &[
            "--event",
            r#"{"event":"unknown","data":"hooks/meter-status-changed"}"#,
        ],
        "charm",
    );
    assert_eq!(code, 0);
    assert_eq!(report["record"]["calls"], json!([]));
    assert_eq!(
        report["stdout"],
        "ignoring hooks/meter-status-changed: not an event this charm knows\n"
    );
}

#[test]
fn an_action_runs_through_the_binary() {
    let mut w = World::new(&ready(secret()));
    w.start_double(&web());
    let (code, report) = w.dispatch(
        &["--action", "greet", "--params", r#"{"name": "bob"}"#],
        "charm",
    );
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        report["record"]["action_results"],
        json!({"greeting": "hello bob"})
    );
    assert_eq!(report["record"]["action_logs"], json!(["greeting bob"]));
    assert_eq!(
        w.container().exec_history[0].command,
        ["/usr/bin/demo-greet", "bob"]
    );
}

/// The environment `prepare` prints (`export K='v'` lines).
fn parse_exports(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            let v = v
                .strip_prefix('\'')
                .unwrap()
                .strip_suffix('\'')
                .unwrap()
                .replace("'\\''", "'");
            (k.to_owned(), v)
        })
        .collect()
}

/// Runs a fake hook command by name, as the charm would, with `env`.
fn hook(
    env: &[(String, String)],
    cmd: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> (i32, String, String) {
    let mut child = Command::new(cmd)
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn each_fake_hook_command_is_an_executable_with_jujus_output_and_commit_rule() {
    let w = World::new(&ready(secret()).with_leader(false));
    let session_dir = w.dir.path().join("session");
    let prep = Command::new(FAKE)
        .args(["prepare", "--event", "config-changed", "--state"])
        .arg(w.state_path())
        .arg("--meta-dir")
        .arg(meta_dir())
        .arg("--session-dir")
        .arg(&session_dir)
        .output()
        .unwrap();
    assert!(
        prep.status.success(),
        "{}",
        String::from_utf8_lossy(&prep.stderr)
    );
    let env = parse_exports(&String::from_utf8(prep.stdout).unwrap());
    let path = &env.iter().find(|(k, _)| k == "PATH").unwrap().1;
    let bin = path.split(':').next().unwrap();
    let names: Vec<String> = std::fs::read_dir(bin)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names.len(),
        ops::testing::juju::COMMANDS.len(),
        "one link per hook command"
    );
    let cmd = |name: &str| format!("{bin}/{name}");

    assert_eq!(
        hook(&env, &cmd("is-leader"), &["--format=json"], None),
        (0, "false\n".into(), String::new())
    );
    assert_eq!(
        hook(
            &env,
            &cmd("relation-get"),
            &["--format=json", "-r", "db:99", "-", "kv/0"],
            None
        ),
        (
            2,
            String::new(),
            "ERROR invalid value \"db:99\" for option -r: relation not found\n".into()
        )
    );
    assert_eq!(
        hook(
            &env,
            &cmd("relation-set"),
            &["-r", "db:4", "--app", "--file", "-"],
            Some(r#"{"a":"1"}"#)
        ),
        (
            1,
            String::new(),
            "ERROR cannot write relation settings\n".into()
        )
    );
    assert_eq!(
        hook(
            &env,
            &cmd("relation-set"),
            &["-r", "db:4", "--file", "-"],
            Some(r#"{"mine":"yes"}"#)
        )
        .0,
        0
    );
    let (code, out, _) = hook(
        &env,
        &cmd("relation-get"),
        &["--format=json", "-r", "db:4", "mine", "demo-k8s/0"],
        None,
    );
    assert_eq!(
        (code, out.as_str()),
        (0, "\"yes\"\n"),
        "a later command sees this hook's write"
    );
    assert_eq!(
        hook(
            &env,
            &cmd("status-set"),
            &["--application=false", "maintenance", "--", "busy"],
            None
        )
        .0,
        0
    );
    let (code, _, err) = hook(
        &env,
        &cmd("secret-get"),
        &["--format=json", "secret:cj1sq3ivr6rc7a3q1sbg"],
        None,
    );
    assert_eq!(
        (code, err.as_str()),
        (1, "ERROR secret \"cj1sq3ivr6rc7a3q1sbg\" not found\n")
    );

    let session = env
        .iter()
        .find(|(k, _)| k == "OPS_FAKE_JUJU_SESSION")
        .unwrap()
        .1
        .clone();
    let finish = |code: &str| {
        let out = Command::new(FAKE)
            .args([
                "finish",
                "--session",
                &session,
                "--exit-code",
                code,
                "--state",
            ])
            .arg(w.state_path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // A failed hook: the relation write is discarded, the status is not.
    finish("1");
    let state = w.state();
    assert!(!state
        .relation(4)
        .unwrap()
        .local_unit_data
        .contains_key("mine"));
    assert_eq!(state.unit_status, Status::maintenance("busy"));
    // The same session committed.
    finish("0");
    assert_eq!(
        w.state().relation(4).unwrap().local_unit_data["mine"],
        "yes"
    );

    // Outside a hook, a fake command says why it cannot work.
    let (code, _, err) = hook(&[], &cmd("is-leader"), &[], None);
    assert_eq!(code, 1);
    assert!(err.contains("OPS_FAKE_JUJU_SESSION is not set"), "{err}");
}
