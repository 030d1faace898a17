//! The fake Juju answers argv as juju.md §2 says: outputs, `ERROR` texts,
//! exit codes, leadership, own writes, commit on success only.

use serde_json::{json, Value};

use super::*;
use crate::event::{ActionEvent, RelationDepartedEvent};
use crate::hookcmds::RelationId;
use crate::testing::state::{Relation, Secret};

const METADATA: &str = "name: app\ncontainers:\n  web: {resource: img}\nrequires:\n  db: {interface: pg}\nprovides:\n  site: {interface: http}\npeers:\n  peers: {interface: p}\nstorage:\n  data: {type: filesystem}\n";
const CONFIG: &str = "options:\n  port: {type: int, default: 8080}\n  name: {type: string}\n  creds: {type: secret}\n";
const ACTIONS: &str = "greet:\n  params:\n    name: {type: string}\n    opts: {type: object, default: {loud: false}}\n  required: [name]\n";

fn meta() -> Meta {
    Meta::parse(METADATA, CONFIG, ACTIONS).unwrap()
}

fn unit() -> UnitId {
    UnitId {
        app: "app".into(),
        number: 0,
    }
}

fn state() -> State {
    State::default()
        .with_relation(
            Relation::new("db", 7, "pg")
                .with_remote_unit(0, &[("user", "u0")])
                .with_remote_unit(1, &[])
                .with_remote_app_data(&[("endpoints", "10.0.0.5:5432")])
                .with_local_app_data(&[("database", "app")]),
        )
        .with_relation(Relation::new("db", 3, "pg2"))
        .with_relation(
            Relation::peer("peers", 1)
                .with_remote_unit(1, &[])
                .with_local_app_data(&[("shared", "yes")]),
        )
}

fn session_for(event: Event, state: State) -> Session {
    Session::new(meta(), unit(), "3.6.4", event, None, state)
}

fn session(state: State) -> Session {
    session_for(Event::ConfigChanged, state)
}

fn run(s: &mut Session, cmd: &str, args: &[&str]) -> (i32, String, String) {
    run_stdin(s, cmd, args, None)
}

fn run_stdin(
    s: &mut Session,
    cmd: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let out = s
        .run(cmd, &args, stdin.map(str::as_bytes))
        .expect("a known command");
    (
        out.code,
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn ok_json(s: &mut Session, cmd: &str, args: &[&str]) -> Value {
    let (code, out, err) = run(s, cmd, args);
    assert_eq!(code, 0, "{cmd} {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{cmd} printed {out:?}: {e}"))
}

fn fails(s: &mut Session, cmd: &str, args: &[&str], code: i32, stderr: &str) {
    let (c, out, err) = run(s, cmd, args);
    assert_eq!(
        (c, out.as_str(), err.as_str()),
        (code, "", format!("ERROR {stderr}\n").as_str()),
        "{cmd} {args:?}"
    );
}

#[test]
fn every_command_rejects_unknown_flags_with_exit_2_and_unknown_commands_do_not_exist() {
    let mut s = session(state());
    for cmd in COMMANDS {
        let (code, _, err) = run(&mut s, cmd, &["--bogus-flag"]);
        assert_eq!(code, 2, "{cmd}");
        assert_eq!(
            err, "ERROR flag provided but not defined: --bogus-flag\n",
            "{cmd}"
        );
    }
    assert!(s.run("no-such-command", &[], None).is_none());
    fails(
        &mut s,
        "relation-get",
        &["-r"],
        2,
        "flag needs an argument: -r",
    );
}

#[test]
fn config_get_overlays_the_state_on_defaults() {
    let mut s = session(state().with_config("name", "x"));
    assert_eq!(
        ok_json(&mut s, "config-get", &["--format=json"]),
        json!({"name": "x", "port": 8080})
    );
    assert_eq!(
        ok_json(&mut s, "config-get", &["--format=json", "--all"]),
        json!({"creds": null, "name": "x", "port": 8080})
    );
    assert_eq!(
        ok_json(&mut s, "config-get", &["--format=json", "port"]),
        json!(8080)
    );
    assert_eq!(
        ok_json(&mut s, "config-get", &["--format=json", "nope"]),
        Value::Null
    );
    assert_eq!(
        run(&mut s, "config-get", &["name"]).1,
        "x\n",
        "the default format prints strings bare"
    );
}

#[test]
fn relation_reads_follow_jujus_rules() {
    let mut s = session(state());
    assert_eq!(
        ok_json(&mut s, "relation-ids", &["db", "--format=json"]),
        json!(["db:3", "db:7"])
    );
    assert_eq!(
        ok_json(&mut s, "relation-ids", &["site", "--format=json"]),
        json!([])
    );
    assert_eq!(
        ok_json(&mut s, "relation-list", &["--format=json", "-r", "db:7"]),
        json!(["pg/0", "pg/1"])
    );
    assert_eq!(
        ok_json(&mut s, "relation-list", &["--format=json", "-r", "7"]),
        json!(["pg/0", "pg/1"]),
        "a bare id works"
    );
    assert_eq!(
        ok_json(
            &mut s,
            "relation-list",
            &["--format=json", "-r", "db:7", "--app"]
        ),
        json!("pg")
    );
    assert_eq!(
        ok_json(&mut s, "relation-list", &["--format=json", "-r", "peers:1"]),
        json!(["app/1"])
    );
    assert_eq!(
        ok_json(
            &mut s,
            "relation-list",
            &["--format=json", "-r", "peers:1", "--app"]
        ),
        json!("app")
    );
    let bag = ok_json(
        &mut s,
        "relation-get",
        &["--format=json", "-r", "db:7", "-", "pg/0"],
    );
    assert_eq!(bag["user"], "u0");
    assert_eq!(
        bag["ingress-address"], "10.0.1.1",
        "Juju pre-fills address keys"
    );
    assert_eq!(
        ok_json(
            &mut s,
            "relation-get",
            &["--format=json", "-r", "db:7", "user", "pg/0"]
        ),
        json!("u0")
    );
    assert_eq!(
        ok_json(
            &mut s,
            "relation-get",
            &["--format=json", "-r", "db:7", "nope", "pg/0"]
        ),
        Value::Null
    );
    assert_eq!(
        ok_json(
            &mut s,
            "relation-get",
            &["--format=json", "-r", "db:7", "--app", "-", "pg"]
        ),
        json!({"endpoints": "10.0.0.5:5432"})
    );
    assert_eq!(
        ok_json(
            &mut s,
            "relation-get",
            &["--format=json", "-r", "db:7", "-", "app/0"]
        )["private-address"],
        "10.0.0.10"
    );
    // A non-leader cannot read its own application bag, except on peers.
    fails(
        &mut s,
        "relation-get",
        &["--format=json", "-r", "db:7", "--app", "-", "app"],
        1,
        "permission denied",
    );
    assert_eq!(
        ok_json(
            &mut s,
            "relation-get",
            &["--format=json", "-r", "peers:1", "--app", "-", "app"]
        ),
        json!({"shared": "yes"})
    );
    fails(
        &mut s,
        "relation-get",
        &["--format=json", "-r", "db:99", "-", "pg/0"],
        2,
        "invalid value \"db:99\" for option -r: relation not found",
    );
    fails(
        &mut s,
        "relation-list",
        &["--format=json", "-r", "site:7"],
        2,
        "invalid value \"site:7\" for option -r: relation not found",
    );
    fails(
        &mut s,
        "relation-get",
        &["--format=json", "-r", "db:7", "-", "pg/5"],
        1,
        "cannot read settings for unit \"pg/5\" in relation \"db:7\": unit \"pg/5\": settings not found",
    );
    fails(
        &mut s,
        "relation-get",
        &["--format=json", "-"],
        2,
        "no relation id specified",
    );
    let mut leader = session(state().with_leader(true));
    assert_eq!(
        ok_json(
            &mut leader,
            "relation-get",
            &["--format=json", "-r", "db:7", "--app", "-", "app"]
        ),
        json!({"database": "app"})
    );
}

#[test]
fn relation_hooks_default_to_their_relation_and_hide_the_departing_unit() {
    let departed = Event::RelationDeparted(RelationDepartedEvent {
        relation: RelationId::new("db", 7),
        remote_app: "pg".into(),
        remote_unit: Some("pg/1".into()),
        departing_unit: "pg/1".into(),
    });
    let mut s = session_for(departed, state());
    assert_eq!(
        ok_json(&mut s, "relation-list", &["--format=json"]),
        json!(["pg/0"])
    );
    // The departed unit's data stays readable during the hook.
    assert!(ok_json(&mut s, "relation-get", &["--format=json", "-", "pg/1"]).is_object());
    assert_eq!(
        ok_json(&mut s, "relation-ids", &["--format=json"]),
        json!(["db:3", "db:7"])
    );
    let broken = Relation::new("db", 7, "pg").broken_event();
    let mut s = session_for(broken, state());
    assert_eq!(
        ok_json(&mut s, "relation-list", &["--format=json", "-r", "db:7"]),
        json!([])
    );
}

#[test]
fn relation_set_merges_deletes_needs_leadership_and_commits_only_on_success() {
    let mut s = session(state());
    let (code, _, err) = run_stdin(
        &mut s,
        "relation-set",
        &["-r", "db:7", "--file", "-"],
        Some(r#"{"a":"1","ingress-address":""}"#),
    );
    assert_eq!(code, 0, "{err}");
    let bag = ok_json(
        &mut s,
        "relation-get",
        &["--format=json", "-r", "db:7", "-", "app/0"],
    );
    assert_eq!(bag["a"], "1", "own writes are visible at once");
    assert!(
        bag.get("ingress-address").is_none(),
        "an empty value deletes"
    );
    run(&mut s, "relation-set", &["-r", "db:7", "b=2"]);
    fails(
        &mut s,
        "relation-set",
        &["-r", "db:7", "--app", "x=1"],
        1,
        "cannot write relation settings",
    );
    let (discarded, _) = s.clone().finish(false);
    assert_eq!(
        discarded.relation(7).unwrap().local_unit_data,
        state().relation(7).unwrap().local_unit_data
    );
    let (committed, record) = s.finish(true);
    let bag = &committed.relation(7).unwrap().local_unit_data;
    assert_eq!(
        (
            bag.get("a").map(String::as_str),
            bag.get("b").map(String::as_str)
        ),
        (Some("1"), Some("2"))
    );
    assert_eq!(
        record.calls[0].stdin.as_deref(),
        Some(r#"{"a":"1","ingress-address":""}"#)
    );

    let mut leader = session(state().with_leader(true));
    run_stdin(
        &mut leader,
        "relation-set",
        &["-r", "db:7", "--app", "--file", "-"],
        Some("database: other\n"),
    );
    let (committed, _) = leader.finish(true);
    assert_eq!(
        committed.relation(7).unwrap().local_app_data["database"],
        "other",
        "YAML on stdin works too"
    );
}

#[test]
fn status_is_checked_and_applied_immediately() {
    let mut s = session(state());
    fails(
        &mut s,
        "status-set",
        &["--application=false", "error"],
        2,
        "invalid status \"error\", expected one of [maintenance blocked waiting active]",
    );
    fails(
        &mut s,
        "status-set",
        &["--application=true", "active"],
        1,
        "setting application status: this unit is not the leader",
    );
    fails(
        &mut s,
        "status-get",
        &["--include-data", "--format=json", "--application=true"],
        1,
        "finding application status: this unit is not the leader",
    );
    assert_eq!(
        run(
            &mut s,
            "status-set",
            &["--application=false", "blocked", "--", "need", "a db"]
        )
        .0,
        0
    );
    assert_eq!(
        ok_json(
            &mut s,
            "status-get",
            &["--include-data", "--format=json", "--application=false"]
        ),
        json!({"message": "need a db", "status": "blocked", "status-data": {}})
    );
    run(&mut s, "application-version-set", &["--", "1.2"]);
    run(
        &mut s,
        "juju-log",
        &["--log-level", "WARNING", "--", "careful", "now"],
    );
    let (after_failure, record) = s.finish(false);
    assert_eq!(
        after_failure.unit_status,
        Status::blocked("need a db"),
        "status-set is not transactional"
    );
    assert_eq!(after_failure.workload_version, "1.2");
    assert_eq!(
        record.juju_log,
        [LogLine {
            level: LogLevel::Warning,
            message: "careful now".into()
        }]
    );
    assert_eq!(record.unit_status_history, [Status::blocked("need a db")]);

    let mut leader = session(state().with_leader(true));
    run(
        &mut leader,
        "status-set",
        &["--application=true", "waiting"],
    );
    assert_eq!(
        ok_json(
            &mut leader,
            "status-get",
            &["--include-data", "--format=json", "--application=true"]
        ),
        json!({"application-status": {"message": "", "status": "waiting", "status-data": {}},
               "units": {"app/0": {"message": "", "status": "unknown", "status-data": {}}}})
    );
}

#[test]
fn action_commands_need_an_action_and_fill_defaults() {
    let mut s = session(state());
    for cmd in ["action-get", "action-fail", "action-set", "action-log"] {
        fails(&mut s, cmd, &["x=1"], 1, "not running an action");
    }
    let event = Event::Action(ActionEvent {
        name: "greet".into(),
        uuid: "5".into(),
    });
    let mut s = Session::new(
        meta(),
        unit(),
        "3.6.4",
        event,
        Some(json!({"name": "bob"}).as_object().unwrap().clone()),
        state(),
    );
    assert_eq!(
        ok_json(&mut s, "action-get", &["--format=json"]),
        json!({"name": "bob", "opts": {"loud": false}})
    );
    assert_eq!(
        ok_json(&mut s, "action-get", &["--format=json", "opts.loud"]),
        json!(false)
    );
    fails(&mut s, "action-set", &["Bad=1"], 2, "key \"Bad\" must be lowercase letters, digits and hyphens, starting and ending with a letter or digit (dots nest)");
    fails(
        &mut s,
        "action-set",
        &["stdout=1"],
        2,
        "key \"stdout\" is reserved for Juju",
    );
    assert_eq!(run(&mut s, "action-set", &["a.b=c=d", "token=t"]).0, 0);
    run(&mut s, "action-log", &["--", "working"]);
    run(&mut s, "action-fail", &["--", "it", "broke"]);
    let (_, record) = s.finish(true);
    assert_eq!(
        record.action_results,
        [
            ("a.b".to_owned(), "c=d".to_owned()),
            ("token".into(), "t".into())
        ]
        .into()
    );
    assert_eq!(record.action_failure.as_deref(), Some("it broke"));
    assert_eq!(record.action_logs, ["working"]);
}

#[test]
fn unit_state_enforces_jujus_limits_and_buffers_changes() {
    let mut s = session(state());
    assert_eq!(ok_json(&mut s, "state-get", &["--format=json"]), json!({}));
    assert_eq!(
        run(&mut s, "state-get", &["--format=json", "k"]),
        (0, String::new(), String::new()),
        "missing key: empty output"
    );
    fails(
        &mut s,
        "state-get",
        &["--format=json", "--strict", "k"],
        1,
        "\"k\" not found",
    );
    run_stdin(&mut s, "state-set", &["--file", "-"], Some(r#"{"k":"v"}"#));
    assert_eq!(
        ok_json(&mut s, "state-get", &["--format=json", "k"]),
        json!("v")
    );
    let long_key = "k".repeat(257);
    fails(
        &mut s,
        "state-set",
        &[&format!("{long_key}=v")],
        1,
        &format!("key {long_key:?} too long: 257 > 256 bytes"),
    );
    let big = format!("big={}", "x".repeat(65537));
    fails(
        &mut s,
        "state-set",
        &[&big],
        1,
        "value of key \"big\" too large: 65537 > 65536 bytes",
    );
    let (discarded, _) = s.clone().finish(false);
    assert!(discarded.unit_state.is_empty());
    run(&mut s, "state-delete", &["k"]);
    run(&mut s, "state-set", &["other=1"]);
    let (committed, _) = s.finish(true);
    assert_eq!(
        committed.unit_state,
        [("other".to_owned(), "1".to_owned())].into()
    );
}

#[test]
fn stored_state_and_deferred_events_travel_as_the_ops_document() {
    let mut st = state();
    st.stored.insert("port".into(), json!(8080));
    st.deferred.push(Event::UpdateStatus);
    let mut s = session(st);
    let doc = ok_json(&mut s, "state-get", &["--format=json", STATE_KEY]);
    let doc: Value = serde_json::from_str(doc.as_str().unwrap()).unwrap();
    assert_eq!(
        doc,
        json!({"version": 1, "stored": {"port": 8080}, "deferred": [{"event": "update-status"}]})
    );
    let (out, _) = s.finish(true);
    assert_eq!(out.stored["port"], json!(8080));
    assert_eq!(out.deferred, [Event::UpdateStatus]);
    assert!(!out.unit_state.contains_key(STATE_KEY));
}

#[test]
fn secret_owner_commands_check_leadership_keys_and_labels() {
    let mut s = session(state());
    fails(
        &mut s,
        "secret-add",
        &["password=x"],
        1,
        "permission denied",
    );
    fails(&mut s, "secret-add", &["--owner", "unit", "Password=x"], 2, "secret key \"Password\" is not valid: keys are at least 3 characters of lowercase letters, digits and single hyphens, starting with a letter");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "hunter2").unwrap();
    let (code, uri, err) = run(
        &mut s,
        "secret-add",
        &[
            "--owner",
            "unit",
            "--label",
            "mine",
            &format!("password#file={}", file.display()),
            "user=admin",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let uri = uri.trim().to_owned();
    assert!(uri.starts_with("secret:") && uri.len() == 27, "{uri}");
    assert_eq!(
        ok_json(&mut s, "secret-get", &["--format=json", &uri]),
        json!({"password": "hunter2", "user": "admin"})
    );
    assert_eq!(
        ok_json(&mut s, "secret-get", &["--format=json", "--label", "mine"])["user"],
        "admin"
    );
    fails(
        &mut s,
        "secret-add",
        &["--owner", "unit", "--label", "mine", "aaa=1"],
        1,
        "secret with label \"mine\" already exists",
    );
    // A new revision only when the content changes.
    run(
        &mut s,
        "secret-set",
        &[&uri, "password=hunter2", "user=admin"],
    );
    assert_eq!(
        ok_json(&mut s, "secret-info-get", &["--format=json", &uri])[canonical_secret_id(&uri)]
            ["revision"],
        1
    );
    run(&mut s, "secret-set", &[&uri, "password=new", "user=admin"]);
    let info = ok_json(
        &mut s,
        "secret-info-get",
        &["--format=json", "--label", "mine"],
    );
    assert_eq!(info[canonical_secret_id(&uri)]["revision"], 2);
    assert_eq!(info[canonical_secret_id(&uri)]["owner"], "unit");
    fails(
        &mut s,
        "secret-info-get",
        &["--format=json", &uri, "--label", "mine"],
        2,
        "specify either a secret URI or label but not both",
    );
    assert_eq!(
        ok_json(&mut s, "secret-get", &["--format=json", &uri])["password"],
        "hunter2",
        "the owner tracks revision 1"
    );
    assert_eq!(
        ok_json(&mut s, "secret-get", &["--format=json", &uri, "--refresh"])["password"],
        "new"
    );
    run(&mut s, "secret-grant", &["--relation", "db:7", &uri]);
    run(
        &mut s,
        "secret-grant",
        &["--relation", "db:7", "--unit", "pg/1", &uri],
    );
    let access = ok_json(&mut s, "secret-info-get", &["--format=json", &uri])
        [canonical_secret_id(&uri)]["access"]
        .clone();
    assert_eq!(
        access,
        json!([{"target": "pg", "scope": "db:7", "role": "view"}, {"target": "pg/1", "scope": "db:7", "role": "view"}])
    );
    fails(
        &mut s,
        "secret-grant",
        &["--relation", "db:99", &uri],
        2,
        "invalid value \"db:99\" for option --relation: relation not found",
    );
    run(
        &mut s,
        "secret-revoke",
        &["--relation", "db:7", "--unit", "pg/1", &uri],
    );
    assert_eq!(
        ok_json(&mut s, "secret-ids", &["--format=json"]),
        json!([uri])
    );
    run(&mut s, "secret-remove", &[&uri, "--revision", "1"]);
    fails(
        &mut s,
        "secret-remove",
        &[&uri, "--revision", "1"],
        1,
        "secret revision 1 not found",
    );
    let (out, _) = s.finish(true);
    let secret = out.secret(&uri).unwrap();
    assert_eq!(secret.grants, [(7, ["pg".to_owned()].into())].into());
    assert_eq!(secret.removed_revisions, [1].into());
    assert_eq!(
        secret.latest_content().unwrap().get("password"),
        Some("new")
    );
}

#[test]
fn secret_consumers_track_peek_refresh_and_bind_labels() {
    let shared = Secret::new(&[("password", "one")]).with_latest(&[("password", "two")]);
    let uri = shared.id.clone();
    let mut s = session(state().with_secret(shared));
    let short = canonical_secret_id(&uri).to_owned();
    fails(
        &mut s,
        "secret-get",
        &["--format=json", "secret:cj1sq3ivr6rc7a3q1sbg"],
        1,
        "secret \"cj1sq3ivr6rc7a3q1sbg\" not found",
    );
    fails(
        &mut s,
        "secret-get",
        &["--format=json", "--label", "nope"],
        1,
        "secret with label \"nope\" not found",
    );
    fails(
        &mut s,
        "secret-get",
        &["--format=json"],
        2,
        "require either a secret URI or label",
    );
    fails(
        &mut s,
        "secret-get",
        &["--format=json", &uri, "--peek", "--refresh"],
        2,
        "specify one of --peek or --refresh but not both",
    );
    let long_form = format!("secret://{}/{short}", s.state.model.uuid);
    assert_eq!(
        ok_json(
            &mut s,
            "secret-get",
            &["--format=json", &long_form, "--label", "db-pw"]
        ),
        json!({"password": "one"})
    );
    assert_eq!(
        ok_json(
            &mut s,
            "secret-get",
            &["--format=json", "--label", "db-pw", "--peek"]
        ),
        json!({"password": "two"})
    );
    assert_eq!(
        ok_json(&mut s, "secret-get", &["--format=json", "--label", "db-pw"]),
        json!({"password": "one"}),
        "peek does not move tracking"
    );
    assert_eq!(
        ok_json(
            &mut s,
            "secret-get",
            &["--format=json", "--label", "db-pw", "--refresh"]
        ),
        json!({"password": "two"})
    );
    assert_eq!(
        ok_json(&mut s, "secret-get", &["--format=json", "--label", "db-pw"]),
        json!({"password": "two"})
    );
    fails(
        &mut s,
        "secret-info-get",
        &["--format=json", &uri],
        1,
        &format!("secret {short:?} not found"),
    );
    fails(
        &mut s,
        "secret-set",
        &[&uri, "password=x"],
        1,
        "permission denied",
    );
    assert_eq!(ok_json(&mut s, "secret-ids", &["--format=json"]), json!([]));
    let (out, _) = s.finish(true);
    let secret = out.secret(&uri).unwrap();
    assert_eq!(
        (secret.tracked, secret.label.as_deref()),
        (2, Some("db-pw"))
    );
}

#[test]
fn ports_network_goal_state_cloud_resources_and_storage() {
    let mut st = state();
    st.planned_units = 3;
    st.resources
        .insert("blob".into(), "/var/lib/juju/blob.tgz".into());
    st.storages.push(crate::testing::state::StorageInstance {
        name: "data".into(),
        index: 0,
        location: "/srv".into(),
        kind: "filesystem".into(),
    });
    let mut s = session(st);
    run(&mut s, "open-port", &["8080/tcp"]);
    run(&mut s, "open-port", &["icmp"]);
    run(&mut s, "open-port", &["9000-9010/udp"]);
    run(&mut s, "close-port", &["icmp"]);
    fails(
        &mut s,
        "open-port",
        &["http"],
        2,
        "invalid port \"http\": expected <port>[/<protocol>], <from>-<to>[/<protocol>] or icmp",
    );
    assert_eq!(
        ok_json(&mut s, "opened-ports", &["--format=json"]),
        json!(["8080/tcp", "9000-9010/udp"])
    );
    assert_eq!(
        ok_json(&mut s, "opened-ports", &["--format=json", "--endpoints"]),
        json!(["8080/tcp (*)", "9000-9010/udp (*)"])
    );
    assert_eq!(
        ok_json(&mut s, "network-get", &["--format=json", "db"])["ingress-addresses"],
        json!(["10.0.0.10"])
    );
    fails(
        &mut s,
        "network-get",
        &["--format=json", "nope"],
        1,
        "no network config found for binding \"nope\"",
    );
    let goal = ok_json(&mut s, "goal-state", &["--format=json"]);
    let goal: crate::hookcmds::GoalState = serde_json::from_value(goal).unwrap();
    assert_eq!(goal.planned_units(), 3);
    assert!(goal.units.contains_key("app/0") && goal.units.contains_key("app/1"));
    assert_eq!(goal.relations["db"]["pg"].status, "joined");
    fails(
        &mut s,
        "credential-get",
        &["--format=json"],
        1,
        "cannot access cloud credentials: permission denied (run `juju trust` on the application)",
    );
    assert_eq!(
        run(&mut s, "resource-get", &["blob"]).1,
        "/var/lib/juju/blob.tgz\n"
    );
    fails(
        &mut s,
        "resource-get",
        &["nope"],
        1,
        "could not download resource: resource \"nope\" not found",
    );
    assert_eq!(
        ok_json(&mut s, "storage-list", &["--format=json", "data"]),
        json!(["data/0"])
    );
    assert_eq!(
        ok_json(&mut s, "storage-get", &["--format=json", "-s", "data/0"]),
        json!({"kind": "filesystem", "location": "/srv"})
    );
    run(&mut s, "storage-add", &["data=2"]);
    fails(
        &mut s,
        "storage-add",
        &["logs=1"],
        1,
        "storage \"logs\" not found",
    );
    fails(
        &mut s,
        "pod-spec-set",
        &["--file", "x.yaml"],
        1,
        "pod-spec-set is not supported by sidecar charms (the charm declares containers)",
    );
    let (out, _) = s.finish(true);
    assert_eq!(out.storage_requested["data"], 2);
    assert_eq!(out.opened_ports.len(), 2);
}

#[test]
fn leader_settings_are_leader_only_writes() {
    let mut s = session(state());
    fails(
        &mut s,
        "leader-set",
        &["a=1"],
        1,
        "cannot write settings: not the leader",
    );
    let mut s = session(state().with_leader(true));
    run(&mut s, "leader-set", &["a=1"]);
    assert_eq!(
        ok_json(&mut s, "leader-get", &["--format=json"]),
        json!({"a": "1"})
    );
    assert_eq!(
        ok_json(&mut s, "leader-get", &["--format=json", "a"]),
        json!("1")
    );
}

#[test]
fn the_environment_describes_the_unit_and_the_event() {
    let s = session_for(Relation::new("db", 7, "pg").changed_event(Some(1)), state());
    let env: std::collections::BTreeMap<String, String> = s.env().into_iter().collect();
    assert_eq!(env["JUJU_UNIT_NAME"], "app/0");
    assert_eq!(env["JUJU_DISPATCH_PATH"], "hooks/db-relation-changed");
    assert_eq!(env["JUJU_RELATION_ID"], "db:7");
    assert_eq!(env["JUJU_REMOTE_UNIT"], "pg/1");
    assert_eq!(env["JUJU_VERSION"], "3.6.4");
    assert_eq!(
        env["JUJU_CHARM_HTTP_PROXY"], "",
        "proxies are always exported"
    );
}
