//! The example charm through the state-in/state-out harness.

#[path = "../examples/demo-charm/charm.rs"]
mod charm;

use charm::{DemoCharm, CONFIG_FILE, CONTAINER, DB_SECRET_LABEL};
use ops::hookcmds::Port;
use ops::pebble::ServiceStatus;
use ops::testing::{Container, Context, ExecHandler, Output, Relation, RunError, Secret, State};
use ops::{Event, Status};
use serde_json::json;

fn ctx() -> Context {
    Context::new(
        include_str!("../examples/demo-charm/metadata.yaml"),
        include_str!("../examples/demo-charm/config.yaml"),
        include_str!("../examples/demo-charm/actions.yaml"),
    )
    .unwrap()
}

fn db_secret() -> Secret {
    Secret::new(&[("password", "s3cret")]).with_id("secret:d1b0a5e0c7b3f2a9e8d1")
}

fn web() -> Container {
    Container::new(CONTAINER)
        .with_exec(ExecHandler::ok(&["/usr/bin/demo-greet"], "hello bob\n"))
        .with_exec(ExecHandler::fail(
            &["/usr/bin/demo-greet", "nobody"],
            2,
            "no such person\n",
        ))
}

/// A leader with a database relation whose credentials are ready.
fn ready() -> State {
    let secret = db_secret();
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
        .with_container(web())
}

fn run(state: &State, event: Event) -> Output {
    ctx().run(DemoCharm, event, state).unwrap()
}

#[test]
fn config_changed_configures_the_server_from_config_relation_and_secret() {
    let out = run(&ready().with_config("port", 9090), Event::ConfigChanged);
    let web = out.state.container(CONTAINER).unwrap();
    let plan = web.plan();
    let svc = &plan.services["web"];
    assert_eq!(
        svc.command.as_deref(),
        Some("/usr/bin/demo-server --port 9090 --config /etc/demo/config.json")
    );
    assert_eq!(svc.environment["DB_PASSWORD"], "s3cret");
    assert_eq!(svc.user.as_deref(), Some("_daemon_"));
    assert_eq!(
        plan.checks["web-up"].http.as_ref().unwrap().url.as_deref(),
        Some("http://localhost:9090/health")
    );
    assert_eq!(web.service_status("web"), ServiceStatus::Active);
    let file = &web.filesystem[CONFIG_FILE];
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(file.content.as_deref().unwrap()).unwrap(),
        json!({"greeting": "hello", "port": 9090, "db-host": "db.example:5432"})
    );
    assert_eq!((file.permissions, file.user.as_str()), (0o640, "_daemon_"));
    assert_eq!(
        out.state.opened_ports.iter().copied().collect::<Vec<_>>(),
        [Port::tcp(9090)]
    );
    assert_eq!(out.state.unit_status, Status::active("serving on :9090"));
    assert_eq!(
        out.unit_status_history,
        [
            Status::maintenance("configuring the web server"),
            Status::active("serving on :9090")
        ]
    );
    assert_eq!(
        out.state.secret_by_label(DB_SECRET_LABEL).unwrap().id,
        db_secret().id,
        "the label is bound on first read"
    );
    assert_eq!(out.state.stored["port"], json!(9090));
    assert!(out
        .juju_log
        .iter()
        .any(|l| l.message == "web server (re)configured on port 9090"));
}

#[test]
fn a_repeated_config_changed_changes_nothing_and_runs_few_hook_commands() {
    let first = run(&ready(), Event::ConfigChanged);
    let second = run(&first.state, Event::ConfigChanged);
    assert_eq!(
        second.hook_command_names(),
        [
            "state-get",
            "config-get",
            "relation-ids",
            "relation-get",
            "secret-get",
            "status-set"
        ]
    );
    let (a, b) = (
        first.state.container(CONTAINER).unwrap(),
        second.state.container(CONTAINER).unwrap(),
    );
    assert_eq!(
        a.layers, b.layers,
        "the plan is left alone when it is already right"
    );
    assert_eq!(a.filesystem, b.filesystem);
    assert_eq!(second.state.stored, first.state.stored);
}

#[test]
fn an_unreachable_container_defers_and_the_event_survives_a_pod_restart() {
    let mut state = ready();
    state.containers = vec![web().with_can_connect(false)];
    let out = run(&state, Event::ConfigChanged);
    assert_eq!(
        out.state.unit_status,
        Status::waiting("waiting for the web container")
    );
    assert_eq!(out.state.deferred, [Event::ConfigChanged]);
    assert!(out.state.container(CONTAINER).unwrap().layers.is_empty());

    // The pod is recreated: a fresh charm directory, the same Juju state,
    // and now Pebble answers. The deferred event runs before the new one.
    let mut after = out.state.clone();
    after.containers = vec![web()];
    let out = run(&after, Event::UpdateStatus);
    assert!(out.state.deferred.is_empty());
    assert_eq!(out.state.unit_status, Status::active("serving on :8080"));
    assert_eq!(
        out.state
            .container(CONTAINER)
            .unwrap()
            .service_status("web"),
        ServiceStatus::Active
    );
}

#[test]
fn without_a_db_relation_the_unit_is_blocked() {
    let state = State::default().with_container(web());
    let out = run(&state, Event::ConfigChanged);
    assert_eq!(
        out.state.unit_status,
        Status::blocked("needs a db relation")
    );
    assert!(out.state.container(CONTAINER).unwrap().layers.is_empty());
}

#[test]
fn the_leader_asks_for_a_database_when_the_relation_is_created_and_others_do_not() {
    let rel = Relation::new("db", 4, "kv");
    let state = State::default()
        .with_leader(true)
        .with_relation(rel.clone())
        .with_container(web());
    let out = run(&state, rel.created_event());
    assert_eq!(
        out.state.relation(4).unwrap().local_app_data["database"],
        "demo"
    );
    assert_eq!(
        out.state.unit_status,
        Status::waiting("waiting for database credentials")
    );

    let follower = State {
        leader: false,
        ..state
    };
    let out = run(&follower, rel.created_event());
    assert!(out.state.relation(4).unwrap().local_app_data.is_empty());
    assert!(!out.hook_command_names().contains(&"relation-set"));
}

#[test]
fn greet_runs_in_the_container_and_returns_the_greeting() {
    let out = ctx()
        .run_action(
            DemoCharm,
            "greet",
            json!({"name": "bob", "shout": true}),
            &ready(),
        )
        .unwrap();
    assert_eq!(out.action_results["greeting"], "HELLO BOB");
    assert_eq!(out.action_failure, None);
    assert_eq!(out.action_logs, ["greeting bob"]);
    let exec = &out.state.container(CONTAINER).unwrap().exec_history[0];
    assert_eq!(exec.command, ["/usr/bin/demo-greet", "bob"]);
    assert_eq!(exec.environment["GREETING"], "hello");
}

#[test]
fn a_failing_greet_fails_the_action_with_the_exit_status_and_stderr() {
    let out = ctx()
        .run_action(DemoCharm, "greet", json!({"name": "nobody"}), &ready())
        .unwrap();
    assert_eq!(
        out.action_failure.as_deref(),
        Some("demo-greet exited with status 2: no such person")
    );
    assert!(out.action_results.is_empty());
}

#[test]
fn secret_changed_moves_to_the_new_password_and_restarts_the_server() {
    let configured = run(&ready(), Event::ConfigChanged).state;
    let mut rotated = configured.clone();
    let secret = rotated
        .secrets
        .pop()
        .unwrap()
        .with_latest(&[("password", "n3w")]);
    rotated.secrets.push(secret.clone());
    let out = run(&rotated, secret.changed_event());
    assert_eq!(out.state.secret(&secret.id).unwrap().tracked, 2);
    let plan = out.state.container(CONTAINER).unwrap().plan();
    assert_eq!(plan.services["web"].environment["DB_PASSWORD"], "n3w");
    assert_eq!(
        out.state
            .container(CONTAINER)
            .unwrap()
            .service_status("web"),
        ServiceStatus::Active
    );
}

#[test]
fn an_ungranted_api_key_secret_blocks_with_the_command_that_fixes_it() {
    let state = ready().with_config("api-key", "secret:cj1sq3ivr6rc7a3q1sbg");
    let out = run(&state, Event::ConfigChanged);
    assert_eq!(
        out.state.unit_status,
        Status::blocked(
            "api-key: secret secret:cj1sq3ivr6rc7a3q1sbg is not granted to demo-k8s; run: juju grant-secret secret:cj1sq3ivr6rc7a3q1sbg demo-k8s"
        )
    );
}

#[test]
fn a_granted_api_key_reaches_the_service_environment() {
    let key = Secret::new(&[("key", "k-123")]);
    let state = ready()
        .with_config("api-key", key.id.as_str())
        .with_secret(key);
    let out = run(&state, Event::ConfigChanged);
    let plan = out.state.container(CONTAINER).unwrap().plan();
    assert_eq!(plan.services["web"].environment["API_KEY"], "k-123");
}

#[test]
fn an_invalid_port_blocks_and_touches_nothing() {
    let out = run(&ready().with_config("port", 0), Event::ConfigChanged);
    assert_eq!(
        out.state.unit_status,
        Status::blocked("invalid port 0: use 1-65535")
    );
    assert!(out.state.opened_ports.is_empty());
}

#[test]
fn changing_the_port_replans_and_moves_the_opened_port() {
    let first = run(&ready(), Event::ConfigChanged).state;
    let out = run(&first.with_config("port", 8443), Event::ConfigChanged);
    assert_eq!(
        out.state.opened_ports.iter().copied().collect::<Vec<_>>(),
        [Port::tcp(8443)]
    );
    assert_eq!(out.count_calls("close-port"), 1);
    assert_eq!(out.count_calls("open-port"), 1);
    let plan = out.state.container(CONTAINER).unwrap().plan();
    assert!(plan.services["web"]
        .command
        .as_deref()
        .unwrap()
        .contains("--port 8443"));
}

#[test]
fn undeclared_actions_and_bad_parameters_are_rejected_before_running() {
    let err = ctx()
        .run_action(
            DemoCharm,
            "greet",
            json!({"name": 3, "volume": 11}),
            &ready(),
        )
        .unwrap_err();
    match err {
        RunError::Inconsistent(problems) => assert_eq!(
            problems,
            [
                "action \"greet\" parameter \"name\" must be of type string but is 3",
                "action \"greet\" has no parameter \"volume\" (declared: name, shout)",
            ]
        ),
        other => panic!("{other}"),
    }
}
