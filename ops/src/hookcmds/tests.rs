//! Argv and output parsing of every hook command, against a backend that
//! records the call and replies with Juju's literal output.

use std::cell::RefCell;

use super::*;

/// One recorded call: command, args, stdin.
type Call = (String, Vec<String>, Option<String>);

struct Recorder {
    reply: CommandOutput,
    calls: RefCell<Vec<Call>>,
    /// Contents of `key#file=` files, read while the command "runs".
    files: RefCell<Vec<(String, String)>>,
}

impl Recorder {
    fn ok(stdout: &str) -> Recorder {
        Recorder::reply(0, stdout, "")
    }
    fn reply(code: i32, stdout: &str, stderr: &str) -> Recorder {
        Recorder {
            reply: CommandOutput {
                code,
                stdout: stdout.as_bytes().to_vec(),
                stderr: stderr.as_bytes().to_vec(),
            },
            calls: RefCell::new(vec![]),
            files: RefCell::new(vec![]),
        }
    }
    fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }
    /// The single call, with file paths in `key#file=` args replaced by `*`.
    fn only_call(&self) -> (String, Vec<String>, Option<String>) {
        let calls = self.calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        let (c, a, s) = calls.into_iter().next().unwrap();
        let a = a
            .into_iter()
            .map(|x| match x.split_once("#file=") {
                Some((k, _)) => format!("{k}#file=*"),
                None => x,
            })
            .collect();
        (c, a, s)
    }
}

impl Backend for Recorder {
    fn run(
        &self,
        command: &str,
        args: &[String],
        stdin: Option<&[u8]>,
    ) -> std::io::Result<CommandOutput> {
        for a in args {
            if let Some((k, path)) = a.split_once("#file=") {
                let meta = std::fs::metadata(path).unwrap();
                use std::os::unix::fs::PermissionsExt;
                assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{path}");
                self.files
                    .borrow_mut()
                    .push((k.to_owned(), std::fs::read_to_string(path).unwrap()));
            }
        }
        self.calls.borrow_mut().push((
            command.to_owned(),
            args.to_vec(),
            stdin.map(|s| String::from_utf8(s.to_vec()).unwrap()),
        ));
        Ok(self.reply.clone())
    }
}

fn call(cmd: &str, args: &[&str], stdin: Option<&str>) -> Call {
    (
        cmd.to_owned(),
        args.iter().map(|s| (*s).to_owned()).collect(),
        stdin.map(str::to_owned),
    )
}

fn db7() -> RelationId {
    RelationId::new("db", 7)
}

#[test]
fn config_get_asks_for_json_and_parses_every_type() {
    let b = Recorder::ok(
        r#"{"debug":false,"port":8080,"ratio":0.5,"name":"x","creds":"secret:cj1sq3ivr6rc7a3q1sbg"}"#,
    );
    let cfg = config_get(&b, false).unwrap();
    assert_eq!(b.only_call(), call("config-get", &["--format=json"], None));
    assert_eq!(cfg["debug"], Value::Bool(false));
    assert_eq!(cfg["port"], serde_json::json!(8080));
    assert_eq!(cfg["ratio"], serde_json::json!(0.5));
    assert_eq!(
        cfg["creds"],
        serde_json::json!("secret:cj1sq3ivr6rc7a3q1sbg")
    );

    let b = Recorder::ok("{\"a\":null}\n");
    config_get(&b, true).unwrap();
    assert_eq!(
        b.only_call(),
        call("config-get", &["--format=json", "--all"], None)
    );

    let b = Recorder::ok("null\n");
    assert_eq!(config_get_key(&b, "nope").unwrap(), Value::Null);
    assert_eq!(
        b.only_call(),
        call("config-get", &["--format=json", "nope"], None)
    );
}

#[test]
fn relation_commands_use_endpoint_qualified_ids() {
    let b = Recorder::ok("[\"db:7\",\"db:9\"]\n");
    assert_eq!(
        relation_ids(&b, "db").unwrap(),
        [db7(), RelationId::new("db", 9)]
    );
    assert_eq!(
        b.only_call(),
        call("relation-ids", &["db", "--format=json"], None)
    );

    let b = Recorder::ok("[]\n");
    assert!(relation_ids(&b, "db").unwrap().is_empty());

    let b = Recorder::ok("[\"pg/0\",\"pg/1\"]");
    assert_eq!(relation_list(&b, &db7()).unwrap(), ["pg/0", "pg/1"]);
    assert_eq!(
        b.only_call(),
        call("relation-list", &["--format=json", "-r", "db:7"], None)
    );

    let b = Recorder::ok("\"pg\"");
    assert_eq!(
        relation_list_app(&b, &db7()).unwrap().as_deref(),
        Some("pg")
    );
    assert_eq!(
        b.only_call(),
        call(
            "relation-list",
            &["--format=json", "-r", "db:7", "--app"],
            None
        )
    );

    let b = Recorder::ok(r#"{"ingress-address":"10.1.2.3","user":"u"}"#);
    let bag = relation_get(&b, &db7(), "pg/0", false).unwrap();
    assert_eq!(bag["user"], "u");
    assert_eq!(
        b.only_call(),
        call(
            "relation-get",
            &["--format=json", "-r", "db:7", "-", "pg/0"],
            None
        )
    );

    let b = Recorder::ok("{}");
    assert!(relation_get(&b, &db7(), "pg", true).unwrap().is_empty());
    assert_eq!(
        b.only_call(),
        call(
            "relation-get",
            &["--format=json", "-r", "db:7", "--app", "-", "pg"],
            None
        )
    );

    let b = Recorder::ok("\"v\"");
    assert_eq!(
        relation_get_key(&b, &db7(), "k", "pg/0", false)
            .unwrap()
            .as_deref(),
        Some("v")
    );
    assert_eq!(
        b.only_call(),
        call(
            "relation-get",
            &["--format=json", "-r", "db:7", "k", "pg/0"],
            None
        )
    );
    let b = Recorder::ok("null");
    assert_eq!(relation_get_key(&b, &db7(), "k", "pg", true).unwrap(), None);
    assert_eq!(
        b.only_call(),
        call(
            "relation-get",
            &["--format=json", "-r", "db:7", "--app", "k", "pg"],
            None
        )
    );

    let b = Recorder::ok("");
    let changes = [
        ("database".to_owned(), "livepatch".to_owned()),
        ("gone".into(), "".into()),
    ]
    .into();
    relation_set(&b, &db7(), true, &changes).unwrap();
    assert_eq!(
        b.only_call(),
        call(
            "relation-set",
            &["-r", "db:7", "--app", "--file", "-"],
            Some(r#"{"database":"livepatch","gone":""}"#)
        )
    );
    let b = Recorder::ok("");
    relation_set(&b, &db7(), false, &changes).unwrap();
    assert_eq!(b.only_call().1, ["-r", "db:7", "--file", "-"]);

    let b = Recorder::ok(r#"{"uuid":"abc"}"#);
    assert_eq!(relation_model_get(&b, &db7()).unwrap().uuid, "abc");
    assert_eq!(
        b.only_call(),
        call("relation-model-get", &["--format=json", "-r", "db:7"], None)
    );
}

#[test]
fn status_commands_build_the_documented_argv() {
    let b = Recorder::ok("");
    status_set(&b, false, StatusName::Blocked, "need a database").unwrap();
    assert_eq!(
        b.only_call(),
        call(
            "status-set",
            &["--application=false", "blocked", "--", "need a database"],
            None
        )
    );
    let b = Recorder::ok("");
    status_set(&b, true, StatusName::Active, "").unwrap();
    assert_eq!(
        b.only_call(),
        call("status-set", &["--application=true", "active"], None)
    );
    let b = Recorder::ok("");
    let err = status_set(&b, false, StatusName::Error, "x").unwrap_err();
    assert!(matches!(err, HookCmdError::InvalidArgument { .. }), "{err}");
    assert!(b.calls().is_empty());

    let b = Recorder::ok(r#"{"message":"hi","status":"active","status-data":{}}"#);
    let s = status_get(&b).unwrap();
    assert_eq!((s.status, s.message.as_str()), (StatusName::Active, "hi"));
    assert_eq!(
        b.only_call(),
        call(
            "status-get",
            &["--include-data", "--format=json", "--application=false"],
            None
        )
    );

    let b = Recorder::ok(
        r#"{"application-status":{"message":"","status":"waiting","status-data":{}},"units":{"app/0":{"message":"m","status":"blocked","status-data":{}}}}"#,
    );
    let s = status_get_app(&b).unwrap();
    assert_eq!(s.application.status, StatusName::Waiting);
    assert_eq!(s.units["app/0"].message, "m");
    assert_eq!(b.only_call().1[2], "--application=true");

    let b = Recorder::ok("");
    application_version_set(&b, "1.2.3").unwrap();
    assert_eq!(
        b.only_call(),
        call("application-version-set", &["--", "1.2.3"], None)
    );

    let b = Recorder::ok("true\n");
    assert!(is_leader(&b).unwrap());
    assert_eq!(b.only_call(), call("is-leader", &["--format=json"], None));
    let b = Recorder::ok("false\n");
    assert!(!is_leader(&b).unwrap());
}

#[test]
fn leader_settings_commands() {
    let b = Recorder::ok(r#"{"a":"1"}"#);
    assert_eq!(leader_get(&b).unwrap()["a"], "1");
    assert_eq!(b.only_call(), call("leader-get", &["--format=json"], None));
    let b = Recorder::ok("null");
    assert_eq!(leader_get_key(&b, "a").unwrap(), None);
    assert_eq!(
        b.only_call(),
        call("leader-get", &["--format=json", "a"], None)
    );
    let b = Recorder::ok("");
    leader_set(
        &b,
        &[("a".to_owned(), "1".to_owned()), ("b".into(), "x=y".into())].into(),
    )
    .unwrap();
    assert_eq!(b.only_call(), call("leader-set", &["a=1", "b=x=y"], None));
}

#[test]
fn action_commands_validate_keys_and_pass_messages_after_double_dash() {
    let b = Recorder::ok(r#"{"force":false,"target":{"name":"x"}}"#);
    let p = action_get(&b).unwrap();
    assert_eq!(p["target"]["name"], "x");
    assert_eq!(b.only_call(), call("action-get", &["--format=json"], None));
    let b = Recorder::ok("\"x\"");
    assert_eq!(action_get_key(&b, "target.name").unwrap(), "x");
    assert_eq!(
        b.only_call(),
        call("action-get", &["--format=json", "target.name"], None)
    );

    let b = Recorder::ok("");
    action_set(
        &b,
        &[
            ("a.b".to_owned(), "c".to_owned()),
            ("token".into(), "t=1".into()),
        ]
        .into(),
    )
    .unwrap();
    assert_eq!(
        b.only_call(),
        call("action-set", &["a.b=c", "token=t=1"], None)
    );

    for bad in [
        "Upper",
        "-x",
        "x-",
        "a..b",
        "stdout",
        "stderr-encoding",
        "",
        "a_b",
    ] {
        let b = Recorder::ok("");
        let err = action_set(&b, &[(bad.to_owned(), "v".to_owned())].into()).unwrap_err();
        assert!(
            matches!(err, HookCmdError::InvalidArgument { .. }),
            "{bad}: {err}"
        );
        assert!(b.calls().is_empty());
    }
    for good in ["a", "a-b", "a.b-c.d0", "9"] {
        assert_eq!(validate_action_key(good), Ok(()), "{good}");
    }

    let b = Recorder::ok("");
    action_fail(&b, "--force is required").unwrap();
    assert_eq!(
        b.only_call(),
        call("action-fail", &["--", "--force is required"], None)
    );
    let b = Recorder::ok("");
    action_fail(&b, "").unwrap();
    assert_eq!(b.only_call(), call("action-fail", &[], None));
    let b = Recorder::ok("");
    action_log(&b, "-1% done").unwrap();
    assert_eq!(b.only_call(), call("action-log", &["--", "-1% done"], None));
}

#[test]
fn juju_log_splits_long_messages_on_character_boundaries() {
    let b = Recorder::ok("");
    juju_log(&b, LogLevel::Warning, "-careful").unwrap();
    assert_eq!(
        b.only_call(),
        call(
            "juju-log",
            &["--log-level", "WARNING", "--", "-careful"],
            None
        )
    );

    let b = Recorder::ok("");
    // 2 bytes each: one more than fits, and the limit is odd.
    let long = "é".repeat(MAX_LOG_CHUNK / 2 + 10);
    juju_log(&b, LogLevel::Info, &long).unwrap();
    let calls = b.calls();
    assert_eq!(calls.len(), 2);
    let joined: String = calls.iter().map(|c| c.1[3].clone()).collect();
    assert_eq!(joined, long);
    assert!(calls.iter().all(|c| c.1[3].len() <= MAX_LOG_CHUNK));
}

#[test]
fn state_commands_handle_empty_output_and_stdin_maps() {
    let b = Recorder::ok("");
    assert!(state_get(&b).unwrap().is_empty());
    assert_eq!(b.only_call(), call("state-get", &["--format=json"], None));
    let b = Recorder::ok("null\n");
    assert!(state_get(&b).unwrap().is_empty());
    let b = Recorder::ok(r#"{"ops.v1":"{}"}"#);
    assert_eq!(state_get(&b).unwrap()["ops.v1"], "{}");

    let b = Recorder::ok("");
    assert_eq!(state_get_key(&b, "k").unwrap(), None);
    assert_eq!(
        b.only_call(),
        call("state-get", &["--format=json", "k"], None)
    );
    let b = Recorder::ok("\"v\"\n");
    assert_eq!(state_get_key(&b, "k").unwrap().as_deref(), Some("v"));

    let b = Recorder::ok("");
    state_set(&b, &[("k".to_owned(), "{\"a\":1}".to_owned())].into()).unwrap();
    assert_eq!(
        b.only_call(),
        call("state-set", &["--file", "-"], Some(r#"{"k":"{\"a\":1}"}"#))
    );
    let b = Recorder::ok("");
    state_delete(&b, "k").unwrap();
    assert_eq!(b.only_call(), call("state-delete", &["k"], None));
}

#[test]
fn secret_values_travel_in_private_files_never_on_the_command_line() {
    let b = Recorder::ok("secret:cj1sq3ivr6rc7a3q1sbg\n");
    let content: SecretContent = [("password", "hunter2"), ("username", "admin")]
        .into_iter()
        .collect();
    let meta = SecretMeta {
        label: Some("admin".into()),
        description: Some("the admin".into()),
        expire: Some("24h".into()),
        rotate: Some(RotatePolicy::Monthly),
    };
    let uri = secret_add(&b, &content, &meta, SecretOwner::Application).unwrap();
    assert_eq!(uri, "secret:cj1sq3ivr6rc7a3q1sbg");
    let (cmd, a, stdin) = b.only_call();
    assert_eq!(cmd, "secret-add");
    assert_eq!(
        a,
        [
            "--label",
            "admin",
            "--description",
            "the admin",
            "--expire",
            "24h",
            "--rotate",
            "monthly",
            "--owner",
            "application",
            "password#file=*",
            "username#file=*"
        ]
    );
    assert_eq!(stdin, None);
    assert!(!format!("{:?}", b.calls()).contains("hunter2"));
    assert_eq!(
        b.files.borrow().clone(),
        [
            ("password".to_owned(), "hunter2".to_owned()),
            ("username".into(), "admin".into())
        ]
    );
    // The files are gone once the command returns.
    let path = b.calls()[0].1[10]
        .split_once("#file=")
        .unwrap()
        .1
        .to_owned();
    assert!(!std::path::Path::new(&path).exists(), "{path}");

    let b = Recorder::ok("");
    secret_set(&b, "secret:x", Some(&content), &SecretMeta::default()).unwrap();
    assert_eq!(
        b.only_call(),
        call(
            "secret-set",
            &["secret:x", "password#file=*", "username#file=*"],
            None
        )
    );
    let b = Recorder::ok("");
    secret_set(
        &b,
        "secret:x",
        None,
        &SecretMeta {
            label: Some("l".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        b.only_call(),
        call("secret-set", &["--label", "l", "secret:x"], None)
    );
}

#[test]
fn secret_keys_are_checked_against_jujus_pattern() {
    for good in ["abc", "a-b-c", "user1", "tls-ca", "a12"] {
        assert_eq!(validate_secret_key(good), Ok(()), "{good}");
    }
    for bad in ["ab", "1abc", "a--b", "abc-", "-abc", "aBc", "a_b", ""] {
        assert!(validate_secret_key(bad).is_err(), "{bad}");
        let b = Recorder::ok("secret:x");
        let content: SecretContent = [(bad, "v")].into_iter().collect();
        let err = secret_add(&b, &content, &SecretMeta::default(), SecretOwner::Unit).unwrap_err();
        assert!(matches!(err, HookCmdError::InvalidArgument { .. }), "{bad}");
        assert!(b.calls().is_empty());
    }
}

#[test]
fn secret_get_variants() {
    fn check(uri: Option<&str>, label: Option<&str>, read: SecretRead, expected: &[&str]) {
        let b = Recorder::ok(r#"{"password":"p"}"#);
        let c = secret_get(&b, uri, label, read).unwrap();
        assert_eq!(c.get("password"), Some("p"));
        assert_eq!(b.only_call(), call("secret-get", expected, None));
    }
    check(
        Some("secret:x"),
        None,
        SecretRead::Tracked,
        &["--format=json", "secret:x"],
    );
    check(
        Some("secret:x"),
        Some("db.7.user.secret"),
        SecretRead::Tracked,
        &["--format=json", "secret:x", "--label", "db.7.user.secret"],
    );
    check(
        None,
        Some("l"),
        SecretRead::Peek,
        &["--format=json", "--label", "l", "--peek"],
    );
    check(
        None,
        Some("l"),
        SecretRead::Refresh,
        &["--format=json", "--label", "l", "--refresh"],
    );
    let b = Recorder::ok("{}");
    assert!(secret_get(&b, None, None, SecretRead::Tracked).is_err());
    assert!(b.calls().is_empty());
}

#[test]
fn secret_content_debug_hides_values() {
    let c: SecretContent = [("password", "hunter2")].into_iter().collect();
    assert_eq!(format!("{c:?}"), r#"{"password": "<redacted>"}"#);
}

#[test]
fn secret_management_commands() {
    let b = Recorder::ok(
        r#"{"cj1sq3ivr6rc7a3q1sbg":{"revision":2,"label":"admin","owner":"application","rotation":"never"}}"#,
    );
    let info = secret_info_get(&b, Some("secret:cj1sq3ivr6rc7a3q1sbg"), None).unwrap();
    assert_eq!(info.id, "secret:cj1sq3ivr6rc7a3q1sbg");
    assert_eq!(info.revision, 2);
    assert_eq!(info.owner, SecretOwner::Application);
    assert_eq!(info.rotation, Some(RotatePolicy::Never));
    assert_eq!(
        b.only_call(),
        call(
            "secret-info-get",
            &["--format=json", "secret:cj1sq3ivr6rc7a3q1sbg"],
            None
        )
    );
    let b = Recorder::ok(r#"{"x":{"revision":1,"owner":"unit"}}"#);
    secret_info_get(&b, None, Some("l")).unwrap();
    assert_eq!(
        b.only_call(),
        call("secret-info-get", &["--format=json", "--label", "l"], None)
    );
    assert!(secret_info_get(&b, Some("u"), Some("l")).is_err());

    let b = Recorder::ok("");
    secret_grant(&b, "secret:x", &db7(), None).unwrap();
    assert_eq!(
        b.only_call(),
        call("secret-grant", &["--relation", "db:7", "secret:x"], None)
    );
    let b = Recorder::ok("");
    secret_grant(&b, "secret:x", &db7(), Some("pg/1")).unwrap();
    assert_eq!(
        b.only_call(),
        call(
            "secret-grant",
            &["--relation", "db:7", "--unit", "pg/1", "secret:x"],
            None
        )
    );
    for (scope, extra) in [
        (RevokeScope::Relation, vec![]),
        (RevokeScope::App("pg".into()), vec!["--app", "pg"]),
        (RevokeScope::Unit("pg/0".into()), vec!["--unit", "pg/0"]),
    ] {
        let b = Recorder::ok("");
        secret_revoke(&b, "secret:x", &db7(), &scope).unwrap();
        let mut expected = vec!["--relation", "db:7"];
        expected.extend(extra);
        expected.push("secret:x");
        assert_eq!(b.only_call(), call("secret-revoke", &expected, None));
    }
    let b = Recorder::ok("");
    secret_remove(&b, "secret:x", Some(3)).unwrap();
    assert_eq!(
        b.only_call(),
        call("secret-remove", &["secret:x", "--revision", "3"], None)
    );
    let b = Recorder::ok("");
    secret_remove(&b, "secret:x", None).unwrap();
    assert_eq!(b.only_call(), call("secret-remove", &["secret:x"], None));
    let b = Recorder::ok("[\"secret:a\"]");
    assert_eq!(secret_ids(&b).unwrap(), ["secret:a"]);
    assert_eq!(b.only_call(), call("secret-ids", &["--format=json"], None));
}

#[test]
fn port_and_network_commands() {
    let b = Recorder::ok("");
    open_port(&b, &Port::tcp(8080), &[]).unwrap();
    assert_eq!(b.only_call(), call("open-port", &["8080/tcp"], None));
    let b = Recorder::ok("");
    close_port(&b, &"9000-9010/udp".parse().unwrap(), &["a", "b"]).unwrap();
    assert_eq!(
        b.only_call(),
        call("close-port", &["9000-9010/udp", "--endpoints", "a,b"], None)
    );
    let b = Recorder::ok("[\"8080/tcp\",\"icmp\"]");
    assert_eq!(opened_ports(&b).unwrap(), [Port::tcp(8080), Port::icmp()]);
    assert_eq!(
        b.only_call(),
        call("opened-ports", &["--format=json"], None)
    );

    let b = Recorder::ok(
        r#"{"bind-addresses":[{"mac-address":"","interface-name":"eth0","addresses":[{"hostname":"","value":"10.1.2.3","cidr":"10.1.0.0/16"}]}],"egress-subnets":["10.1.2.3/32"],"ingress-addresses":["10.1.2.3"]}"#,
    );
    let n = network_get(&b, "db", Some(&db7())).unwrap();
    assert_eq!(n.bind_addresses[0].addresses[0].value, "10.1.2.3");
    assert_eq!(n.ingress_addresses, ["10.1.2.3"]);
    assert_eq!(
        b.only_call(),
        call("network-get", &["--format=json", "-r", "db:7", "db"], None)
    );

    let b = Recorder::ok(
        r#"{"units":{"app/0":{"status":"active","since":"2026-01-01T00:00:00Z"},"app/1":{"status":"dying"}},"relations":{"db":{"pg":{"status":"joined"}}}}"#,
    );
    let g = goal_state(&b).unwrap();
    assert_eq!(g.planned_units(), 1);
    assert_eq!(g.relations["db"]["pg"].status, "joined");
    assert_eq!(b.only_call(), call("goal-state", &["--format=json"], None));

    let b = Recorder::ok(
        r#"{"type":"kubernetes","name":"k8s","endpoint":"https://1.2.3.4","credential":{"auth-type":"oauth2","attrs":{"Token":"t"}},"cacertificates":["PEM"],"skip-tls-verify":false,"is-controller-cloud":true}"#,
    );
    let spec = credential_get(&b).unwrap();
    assert_eq!(spec.cloud_type, "kubernetes");
    assert_eq!(spec.credential.unwrap().attrs["Token"], "t");
    assert_eq!(
        b.only_call(),
        call("credential-get", &["--format=json"], None)
    );

    let b = Recorder::ok("/var/lib/juju/resources/x/file.tgz\n");
    assert_eq!(
        resource_get(&b, "x").unwrap(),
        PathBuf::from("/var/lib/juju/resources/x/file.tgz")
    );
    assert_eq!(b.only_call(), call("resource-get", &["x"], None));
}

#[test]
fn storage_commands() {
    let b = Recorder::ok("[\"data/0\"]");
    assert_eq!(storage_list(&b, Some("data")).unwrap(), ["data/0"]);
    assert_eq!(
        b.only_call(),
        call("storage-list", &["--format=json", "data"], None)
    );
    let b = Recorder::ok(r#"{"kind":"filesystem","location":"/srv"}"#);
    assert_eq!(storage_get(&b, "data/0").unwrap().location, "/srv");
    assert_eq!(
        b.only_call(),
        call("storage-get", &["--format=json", "-s", "data/0"], None)
    );
    let b = Recorder::ok("");
    storage_add(&b, "data", 2).unwrap();
    assert_eq!(b.only_call(), call("storage-add", &["data=2"], None));
    let b = Recorder::ok("");
    pod_spec_set(
        &b,
        std::path::Path::new("/s.yaml"),
        Some(std::path::Path::new("/r.yaml")),
    )
    .unwrap();
    assert_eq!(
        b.only_call(),
        call(
            "pod-spec-set",
            &["--file", "/s.yaml", "--k8s-resources", "/r.yaml"],
            None
        )
    );
}

#[test]
fn failures_carry_command_code_and_stderr_and_map_like_ops() {
    fn check(
        cmd_result: Result<(), HookCmdError>,
        code: i32,
        stderr: &str,
        kind: HookCmdErrorKind,
    ) {
        let err = cmd_result.unwrap_err();
        assert_eq!(err.code(), Some(code));
        assert_eq!(err.stderr(), stderr);
        assert_eq!(err.kind(), kind, "{err}");
    }
    let b = Recorder::reply(
        2,
        "",
        "ERROR invalid value \"db:6\" for option -r: relation not found\n",
    );
    check(
        relation_get(&b, &RelationId::new("db", 6), "pg/0", false).map(|_| ()),
        2,
        "ERROR invalid value \"db:6\" for option -r: relation not found",
        HookCmdErrorKind::RelationNotFound,
    );
    let b = Recorder::reply(
        2,
        "",
        "ERROR invalid value \"db:6\" for option -r: relation not found",
    );
    check(
        network_get(&b, "db", Some(&RelationId::new("db", 6))).map(|_| ()),
        2,
        "ERROR invalid value \"db:6\" for option -r: relation not found",
        HookCmdErrorKind::RelationNotFound,
    );
    let b = Recorder::reply(1, "", "ERROR secret \"cj1sq3ivr6rc7a3q1sbg\" not found\n");
    check(
        secret_get(
            &b,
            Some("secret:cj1sq3ivr6rc7a3q1sbg"),
            None,
            SecretRead::Tracked,
        )
        .map(|_| ()),
        1,
        "ERROR secret \"cj1sq3ivr6rc7a3q1sbg\" not found",
        HookCmdErrorKind::SecretNotFound,
    );
    // "not found" outside secret-* commands is a plain model error.
    let b = Recorder::reply(1, "", "ERROR storage \"x/0\" not found");
    check(
        storage_get(&b, "x/0").map(|_| ()),
        1,
        "ERROR storage \"x/0\" not found",
        HookCmdErrorKind::Other,
    );
    let b = Recorder::reply(1, "", "ERROR cannot write relation settings");
    check(
        relation_set(&b, &db7(), true, &BTreeMap::new()),
        1,
        "ERROR cannot write relation settings",
        HookCmdErrorKind::Other,
    );
    let b = Recorder::reply(1, "", "ERROR permission denied");
    check(
        secret_remove(&b, "secret:x", None),
        1,
        "ERROR permission denied",
        HookCmdErrorKind::Other,
    );

    let err = relation_ids(&Recorder::ok("not json"), "db").unwrap_err();
    assert!(matches!(err, HookCmdError::Output { .. }), "{err}");
    assert_eq!(err.kind(), HookCmdErrorKind::Other);
    assert!(
        err.to_string()
            .starts_with("cannot parse the output of relation-ids"),
        "{err}"
    );
}

#[test]
fn a_missing_command_says_hook_commands_need_a_hook() {
    struct Missing;
    impl Backend for Missing {
        fn run(&self, _: &str, _: &[String], _: Option<&[u8]>) -> std::io::Result<CommandOutput> {
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
        }
    }
    let err = is_leader(&Missing).unwrap_err();
    assert!(
        err.to_string().starts_with("cannot run is-leader:"),
        "{err}"
    );
    assert!(
        err.to_string().contains("only while Juju runs a hook"),
        "{err}"
    );
    assert_eq!(err.code(), None);
}

#[test]
fn the_process_backend_runs_commands_with_stdin_and_reports_exit_codes() {
    let out = ProcessBackend
        .run(
            "sh",
            &["-c".into(), "cat; echo ERROR boom >&2; exit 3".into()],
            Some(b"in"),
        )
        .unwrap();
    assert_eq!(out.code, 3);
    assert_eq!(out.stdout, b"in");
    assert_eq!(out.stderr, b"ERROR boom\n");
}
