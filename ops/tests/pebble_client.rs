//! The blocking Pebble client against the Pebble double over a real Unix
//! socket: every operation, and every error type.

use std::collections::BTreeMap;
use std::time::Duration;

use ops::pebble::protocol::{ChangeId, FileOwnership};
use ops::pebble::{
    plan, CheckStatus, Client, Error, ExecOptions, FileType, Layer, PushOptions, Service,
    ServiceStatus,
};
use ops::testing::pebble::PebbleDouble;
use ops::testing::{Container, ExecHandler};

/// A double on its own runtime thread, and a client on this thread.
struct Fixture {
    rt: tokio::runtime::Runtime,
    double: Option<PebbleDouble>,
    client: Client,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new(container: Container) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("web").join("pebble.socket");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let double = rt
            .block_on(PebbleDouble::start(&socket, &container))
            .unwrap();
        Fixture {
            rt,
            double: Some(double),
            client: Client::new(&socket).unwrap(),
            _dir: dir,
        }
    }

    fn snapshot(&self) -> Container {
        self.double.as_ref().unwrap().snapshot()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(d) = self.double.take() {
            self.rt.block_on(d.stop());
        }
    }
}

fn layer(yaml: &str) -> Layer {
    plan::parse_layer(yaml).unwrap()
}

#[test]
fn system_info_and_a_missing_socket() {
    let f = Fixture::new(Container::new("web"));
    assert_eq!(f.client.system_info().unwrap().version, "v1.32.1");
    assert!(f.client.can_connect());

    let gone = Client::new("/nonexistent/web/pebble.socket").unwrap();
    let err = gone.system_info().unwrap_err();
    assert!(err.is_connection(), "{err:?}");
    assert!(err.to_string().ends_with("(container restarted?)"), "{err}");
    assert!(!gone.can_connect());
}

#[test]
fn layers_combine_and_the_plan_reads_back() {
    let f = Fixture::new(Container::new("web"));
    f.client
        .add_layer("base", &layer("services:\n  web:\n    override: replace\n    command: /bin/web\n    environment: {A: '1'}\n"), false)
        .unwrap();
    f.client
        .add_layer(
            "base",
            &layer("services:\n  web:\n    override: merge\n    environment: {B: '2'}\n"),
            true,
        )
        .unwrap();
    let p = f.client.plan().unwrap();
    assert_eq!(
        p.services["web"].environment,
        BTreeMap::from([("A".into(), "1".into()), ("B".into(), "2".into())])
    );
    assert_eq!(
        f.snapshot().layers.len(),
        1,
        "combine merged into the existing layer"
    );

    let err = f
        .client
        .add_layer("base", &layer("services: {}"), false)
        .unwrap_err();
    match err {
        Error::Api { code, message, .. } => assert_eq!(
            (code, message.as_str()),
            (400, "layer \"base\" already exists")
        ),
        other => panic!("{other:?}"),
    }
    let err = f
        .client
        .add_layer_yaml("bad", "services: {x: {override: replace}}", false)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "pebble error 400 Bad Request: plan must define \"command\" for service \"x\""
    );
    assert_eq!(
        f.client.plan().unwrap(),
        p,
        "a failed add leaves the plan unchanged"
    );
}

#[test]
fn services_start_stop_restart_and_replan_through_changes() {
    let f = Fixture::new(Container::new("web"));
    let mut l = Layer::default();
    l.services.insert("web".into(), Service::new("/bin/web"));
    l.services.insert(
        "side".into(),
        Service {
            startup: None,
            ..Service::new("/bin/side")
        },
    );
    f.client.add_layer("charm", &l, true).unwrap();
    let change = f.client.replan().unwrap();
    assert_eq!(change.kind, "replan");
    assert_eq!(change.summary, "Replan service \"web\"");
    assert!(change.ready && change.err.is_none());
    let services = f.client.services(&[]).unwrap();
    let status: Vec<(&str, ServiceStatus)> = services
        .iter()
        .map(|s| (s.name.as_str(), s.current))
        .collect();
    assert_eq!(
        status,
        [
            ("side", ServiceStatus::Inactive),
            ("web", ServiceStatus::Active)
        ]
    );
    f.client.start(&["side"]).unwrap();
    f.client.stop(&["web"]).unwrap();
    assert_eq!(
        f.client.services(&["web"]).unwrap()[0].current,
        ServiceStatus::Inactive
    );
    let restarted = f.client.restart(&["web", "side"]).unwrap();
    assert_eq!(
        restarted
            .tasks
            .iter()
            .map(|t| t.summary.as_str())
            .collect::<Vec<_>>(),
        [
            "Stop service \"side\"",
            "Start service \"side\"",
            "Start service \"web\"",
        ]
    );
    // A replan with nothing changed does nothing.
    let noop = f.client.replan().unwrap();
    assert_eq!(noop.summary, "Replan - no services");
    assert!(noop.tasks.is_empty());
    // A changed definition is restarted by replan.
    let mut changed = Layer::default();
    changed
        .services
        .insert("web".into(), Service::new("/bin/web --v2"));
    f.client.add_layer("charm", &changed, true).unwrap();
    let again = f.client.replan().unwrap();
    assert_eq!(
        again
            .tasks
            .iter()
            .map(|t| t.summary.as_str())
            .collect::<Vec<_>>(),
        ["Stop service \"web\"", "Start service \"web\""]
    );

    let err = f.client.start(&["nope"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pebble error 400 Bad Request: cannot start services: service \"nope\" does not exist"
    );
}

#[test]
fn a_service_that_fails_to_start_is_a_change_error() {
    let mut c = Container::new("web");
    c.start_failures.insert("web".into(), "boom".into());
    let f = Fixture::new(c.with_layer(
        "base",
        layer("services: {web: {override: replace, command: /bin/web, startup: enabled}}"),
    ));
    let err = f.client.replan().unwrap_err();
    match err {
        Error::Change { err, change } => {
            assert_eq!(
                err,
                "cannot perform the following tasks:\n- Start service \"web\" (service start attempt: exited quickly with code 1, will restart)"
            );
            assert_eq!(change.status, "Error");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        f.client.services(&["web"]).unwrap()[0].current,
        ServiceStatus::Backoff
    );
}

#[test]
fn files_push_pull_list_make_dirs_and_remove() {
    let f = Fixture::new(Container::new("web"));
    // Bytes that would trip a naive multipart reader.
    let tricky: Vec<u8> = b"\r\n--boundary\r\n\x00\xff binary \r\n".to_vec();
    f.client
        .push(
            "/etc/app/blob.bin",
            tricky.clone(),
            &PushOptions::default()
                .make_dirs()
                .permissions(0o600)
                .user("_daemon_"),
        )
        .unwrap();
    assert_eq!(f.client.pull("/etc/app/blob.bin").unwrap(), tricky);
    let listed = f.client.list_files("/etc/app", None, false).unwrap();
    assert_eq!(listed.len(), 1);
    let info = &listed[0];
    assert_eq!(
        (
            info.name.as_str(),
            info.file_type,
            info.size,
            info.permissions
        ),
        ("blob.bin", FileType::File, Some(tricky.len() as u64), 0o600)
    );
    assert_eq!(
        (info.user.as_deref(), info.user_id, info.group.as_deref()),
        (Some("_daemon_"), Some(584_792), Some("_daemon_"))
    );
    assert_eq!(
        f.client.list_files("/etc", None, false).unwrap()[0].file_type,
        FileType::Directory
    );
    assert_eq!(
        f.client
            .list_files("/etc/app", Some("*.txt"), false)
            .unwrap(),
        []
    );
    assert_eq!(
        f.client.list_files("/etc/app", None, true).unwrap()[0].path,
        "/etc/app"
    );

    let err = f.client.pull("/etc/nope").unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "open /etc/nope: no such file or directory (not-found)"
    );
    let err = f
        .client
        .push("/no/parent", "x", &PushOptions::default())
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let err = f.client.list_files("/missing", None, false).unwrap_err();
    assert!(
        matches!(&err, Error::Path { kind, .. } if kind == "not-found"),
        "{err:?}"
    );

    f.client
        .make_dir(
            "/var/lib/app",
            true,
            &FileOwnership {
                permissions: Some(0o750),
                ..Default::default()
            },
        )
        .unwrap();
    let err = f
        .client
        .make_dir("/var/lib/app", false, &FileOwnership::default())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "mkdir /var/lib/app: file exists (generic-file-error)"
    );
    let err = f.client.remove_path("/etc", false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "remove /etc: directory not empty (generic-file-error)"
    );
    f.client.remove_path("/etc", true).unwrap();
    let snap = f.snapshot();
    assert!(!snap.filesystem.contains_key("/etc/app/blob.bin"));
    assert_eq!(snap.filesystem["/var/lib/app"].permissions, 0o750);
}

#[test]
fn exec_returns_output_feeds_stdin_and_reports_exit_codes() {
    let c = Container::new("web")
        .with_exec(ExecHandler {
            stderr: "warming up\n".into(),
            ..ExecHandler::ok(&["psql"], "ok\n")
        })
        .with_exec(ExecHandler::fail(&["false"], 2, "nope\n"));
    let f = Fixture::new(c);
    let out = f
        .client
        .exec(
            &ExecOptions::new(["psql", "-f", "-"])
                .env("PGPASSWORD", "pw")
                .stdin("SELECT 1;")
                .working_dir("/"),
        )
        .unwrap();
    assert_eq!(
        (out.stdout_text().as_str(), out.stderr_text().as_str()),
        ("ok\n", "warming up\n")
    );
    let run = &f.snapshot().exec_history[0];
    assert_eq!(run.command, ["psql", "-f", "-"]);
    assert_eq!(run.stdin, "SELECT 1;");
    assert_eq!(run.environment["PGPASSWORD"], "pw");
    assert_eq!(run.working_dir.as_deref(), Some("/"));

    match f.client.exec(&ExecOptions::new(["false"])).unwrap_err() {
        Error::Exec {
            code,
            stderr,
            command,
            ..
        } => {
            assert_eq!(
                (code, stderr.as_slice(), command),
                (2, b"nope\n".as_slice(), vec!["false".to_owned()])
            );
        }
        other => panic!("{other:?}"),
    }
    let combined = f
        .client
        .exec(&ExecOptions::new(["psql"]).combine_stderr())
        .unwrap();
    assert_eq!(
        (
            combined.stdout_text().as_str(),
            combined.stderr_text().as_str()
        ),
        ("ok\nwarming up\n", "")
    );
    let err = f.client.exec(&ExecOptions::new(["nothere"])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pebble error 400 Bad Request: cannot find executable \"nothere\""
    );
}

#[test]
fn checks_and_health_follow_the_plan_and_the_state() {
    let mut c = Container::new("web").with_layer(
        "base",
        layer("checks:\n  up: {override: replace, level: alive, http: {url: 'http://localhost:8080/'}}\n  db: {override: replace, level: ready, tcp: {port: 5432}}\n  off: {override: replace, startup: disabled, exec: {command: 'true'}}\n"),
    );
    let f = Fixture::new(c.clone());
    let checks = f.client.checks(None, &[]).unwrap();
    let states: Vec<(&str, CheckStatus, u32)> = checks
        .iter()
        .map(|c| (c.name.as_str(), c.status, c.threshold))
        .collect();
    assert_eq!(
        states,
        [
            ("db", CheckStatus::Up, 3),
            ("off", CheckStatus::Inactive, 3),
            ("up", CheckStatus::Up, 3)
        ]
    );
    assert!(f.client.health(Some("ready"), &[]).unwrap());
    assert_eq!(
        f.client.checks_action("start", &["off", "up"]).unwrap(),
        ["off"]
    );
    drop(f);

    c.check_statuses.insert("db".into(), CheckStatus::Down);
    let f = Fixture::new(c);
    assert!(
        !f.client.health(Some("ready"), &[]).unwrap(),
        "ready includes the down ready check"
    );
    assert!(
        f.client.health(Some("alive"), &[]).unwrap(),
        "alive does not"
    );
}

#[test]
fn notices_are_recorded() {
    let f = Fixture::new(Container::new("web"));
    let id = f
        .client
        .notify(
            "example.com/reload",
            &BTreeMap::from([("why".into(), "cert".into())]),
        )
        .unwrap();
    let notices = f
        .client
        .notices(&["custom"], &["example.com/reload"])
        .unwrap();
    assert_eq!(
        (notices[0].id.as_str(), notices[0].occurrences),
        (id.as_str(), 1)
    );
    assert_eq!(f.snapshot().notices["example.com/reload"]["why"], "cert");
}

#[test]
fn waiting_on_a_change_that_does_not_finish_times_out() {
    let f = Fixture::new(Container::new("web").with_exec(ExecHandler::ok(&["sleep"], "")));
    // An exec nobody connects to stays Doing for Pebble's 5 seconds.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let resp = rt
        .block_on(async {
            use ops::pebble::transport::{Transport, UnixTransport};
            let t = UnixTransport::new(f.client.socket());
            let r = t
                .send(ops::pebble::protocol::exec(
                    &ExecOptions::new(["sleep"]).request,
                ))
                .await?;
            ops::pebble::protocol::decode(r.status(), Some("application/json"), r.body())
        })
        .unwrap();
    let id = resp.change_id().unwrap();
    let err = f
        .client
        .wait_change(&id, Some(Duration::from_millis(300)))
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    let err = f
        .client
        .wait_change(&ChangeId("999".into()), Some(Duration::from_secs(1)))
        .unwrap_err();
    assert!(
        matches!(err, Error::Api { code: 404, .. }),
        "a missing change, after the polling fallback: {err:?}"
    );
}
