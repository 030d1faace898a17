//! The Pebble double in real mode: real files under a root directory, real
//! processes for services and exec, checks that really run.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ops::pebble::protocol::FileOwnership;
use ops::pebble::{plan, CheckStatus, Client, Error, ExecOptions, PushOptions, ServiceStatus};
use ops::testing::pebble::real::RealWorkload;
use ops::testing::pebble::PebbleDouble;
use ops::testing::Container;

struct Real {
    rt: tokio::runtime::Runtime,
    double: Option<PebbleDouble>,
    client: Client,
    root: tempfile::TempDir,
    _sock: tempfile::TempDir,
}

impl Real {
    fn new() -> Real {
        Real::start(false)
    }

    fn start(container_view: bool) -> Real {
        let root = tempfile::tempdir().unwrap();
        let sock = tempfile::tempdir().unwrap();
        let socket = sock.path().join("pebble.socket");
        let env: BTreeMap<String, String> = [
            ("PATH", "/usr/local/bin:/usr/bin:/bin"),
            ("LANG", "C.UTF-8"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        // With the container view the overlays' work directories go beside
        // the root: keep them inside the temporary directory too.
        let root_dir = if container_view {
            root.path().join("root")
        } else {
            root.path().to_path_buf()
        };
        let mut workload = RealWorkload::new(&root_dir, env).unwrap();
        if container_view {
            workload = workload.with_container_view().unwrap();
        }
        let workload = Arc::new(workload);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let double = rt
            .block_on(PebbleDouble::start_with(
                &socket,
                &Container::new("real"),
                workload,
                None,
            ))
            .unwrap();
        Real {
            rt,
            double: Some(double),
            client: Client::new(&socket).unwrap(),
            root,
            _sock: sock,
        }
    }
}

impl Drop for Real {
    fn drop(&mut self) {
        if let Some(d) = self.double.take() {
            self.rt.block_on(d.stop());
        }
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn files_live_on_disk_under_the_root() {
    let r = Real::new();
    r.client
        .push(
            "/etc/app/app.conf",
            "key: value\n",
            &PushOptions::default().make_dirs().permissions(0o600),
        )
        .unwrap();
    let host = r.root.path().join("etc/app/app.conf");
    assert_eq!(std::fs::read_to_string(&host).unwrap(), "key: value\n");
    assert_eq!(
        std::fs::metadata(&host).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(r.client.pull("/etc/app/app.conf").unwrap(), b"key: value\n");
    let listed = r.client.list_files("/etc/app", None, false).unwrap();
    assert_eq!(
        (
            listed[0].path.as_str(),
            listed[0].permissions,
            listed[0].size
        ),
        ("/etc/app/app.conf", 0o600, Some(11))
    );
    r.client
        .make_dir(
            "/srv/data",
            true,
            &FileOwnership {
                permissions: Some(0o750),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(r.root.path().join("srv/data").is_dir());
    assert_eq!(
        r.client.pull("/nope").unwrap_err().to_string(),
        "open /nope: no such file or directory (not-found)"
    );
    assert_eq!(
        r.client.remove_path("/etc", false).unwrap_err().to_string(),
        "remove /etc: directory not empty (generic-file-error)"
    );
    r.client.remove_path("/etc", true).unwrap();
    assert!(!r.root.path().join("etc").exists());
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

#[test]
fn with_the_container_view_processes_see_pushed_files_at_their_container_paths() {
    if !running_as_root() {
        eprintln!("skipped: the container view mounts overlays, which needs root");
        return;
    }
    let r = Real::start(true);
    let dir = format!("/etc/ops-view-{}", std::process::id());
    let root = r.root.path().join("root");
    r.client
        .push(
            &format!("{dir}/app.conf"),
            "from the charm\n",
            &PushOptions::default().make_dirs(),
        )
        .unwrap();
    let out = r
        .client
        .exec(&ExecOptions::new(["cat", &format!("{dir}/app.conf")]))
        .unwrap();
    assert_eq!(out.stdout_text(), "from the charm\n");
    // The host's files stay visible beneath the container's.
    let passwd = r
        .client
        .exec(&ExecOptions::new(["cat", "/etc/passwd"]))
        .unwrap()
        .stdout_text();
    assert!(passwd.starts_with("root:"), "{passwd}");
    // What the process writes lands in the container, never on the host.
    r.client
        .exec(&ExecOptions::new([
            "sh",
            "-c",
            &format!("echo written > {dir}/out"),
        ]))
        .unwrap();
    assert_eq!(r.client.pull(&format!("{dir}/out")).unwrap(), b"written\n");
    let under_root = root.join(dir.trim_start_matches('/')).join("out");
    assert!(under_root.is_file(), "{under_root:?}");
    assert!(!std::path::Path::new(&dir).exists(), "the host was written");
    // Each command's overlay work directories go when it ends.
    let work = r.root.path().join(".root.overlay-work");
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0, "{work:?}");
}

#[test]
fn exec_runs_real_processes_with_stdin_environment_and_exit_codes() {
    let r = Real::new();
    let out = r
        .client
        .exec(
            &ExecOptions::new([
                "sh",
                "-c",
                "read line; echo \"got $line\"; echo \"$GREETING\" >&2",
            ])
            .stdin("hi\n")
            .env("GREETING", "hello"),
        )
        .unwrap();
    assert_eq!(
        (out.stdout_text().as_str(), out.stderr_text().as_str()),
        ("got hi\n", "hello\n")
    );
    r.client
        .make_dir("/srv", true, &FileOwnership::default())
        .unwrap();
    let pwd = r
        .client
        .exec(&ExecOptions::new(["pwd"]).working_dir("/srv"))
        .unwrap()
        .stdout_text();
    assert_eq!(
        pwd.trim(),
        r.root
            .path()
            .join("srv")
            .canonicalize()
            .unwrap()
            .to_str()
            .unwrap()
    );
    match r
        .client
        .exec(&ExecOptions::new(["sh", "-c", "echo no >&2; exit 3"]))
        .unwrap_err()
    {
        Error::Exec { code, stderr, .. } => {
            assert_eq!((code, stderr.as_slice()), (3, b"no\n".as_slice()))
        }
        other => panic!("{other:?}"),
    }
    let err = r
        .client
        .exec(&ExecOptions::new(["sleep", "5"]).timeout(Duration::from_millis(300)))
        .unwrap_err();
    assert!(
        matches!(&err, Error::Timeout(m) if m.contains("timed out after 300ms")),
        "{err:?}"
    );
    let err = r
        .client
        .exec(&ExecOptions::new(["definitely-not-a-command"]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "pebble error 400 Bad Request: cannot find executable \"definitely-not-a-command\""
    );
}

#[test]
fn services_start_for_real_and_checks_follow_them() {
    let r = Real::new();
    let port = free_port();
    let layer = plan::parse_layer(&format!(
        "services:
  web:
    override: replace
    startup: enabled
    command: python3 -m http.server {port} --bind 127.0.0.1
    working-dir: /
  marker:
    override: replace
    startup: enabled
    command: sh -c 'echo $MODE > mode.txt; exec sleep 60'
    working-dir: /
    environment: {{MODE: prod}}
  crash:
    override: replace
    command: sh -c 'echo boom; exit 1'
checks:
  up:
    override: replace
    level: alive
    period: 200ms
    threshold: 2
    http: {{url: 'http://127.0.0.1:{port}/'}}
"
    ))
    .unwrap();
    r.client.add_layer("e2e", &layer, false).unwrap();
    r.client.replan().unwrap();
    let status = |name: &str| r.client.services(&[name]).unwrap()[0].current;
    assert_eq!(
        (status("web"), status("marker"), status("crash")),
        (
            ServiceStatus::Active,
            ServiceStatus::Active,
            ServiceStatus::Inactive
        )
    );
    assert_eq!(
        r.client.pull("/mode.txt").unwrap(),
        b"prod\n",
        "the service ran with its environment"
    );

    wait_for("the check to pass", || {
        r.client.checks(None, &["up"]).unwrap()[0]
            .successes
            .unwrap_or(0)
            > 0
    });
    assert!(r.client.health(None, &[]).unwrap());

    r.client.stop(&["web"]).unwrap();
    wait_for("the check to go down", || {
        r.client.checks(None, &["up"]).unwrap()[0].status == CheckStatus::Down
    });
    assert!(!r.client.health(Some("alive"), &[]).unwrap());
    r.client.start(&["web"]).unwrap();
    wait_for("the check to recover", || {
        r.client.checks(None, &["up"]).unwrap()[0].status == CheckStatus::Up
    });

    match r.client.start(&["crash"]).unwrap_err() {
        Error::Change { err, .. } => assert!(err.contains("exited quickly with code 1"), "{err}"),
        other => panic!("{other:?}"),
    }
}
