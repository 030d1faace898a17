//! Schema checks and migrations: the leader upgrades, others wait.

use ops::testing::{ExecHandler, State};
use ops::{Event, Status};

use crate::world::*;

fn pending(state: &mut State, upgrade: ExecHandler) {
    let c = container_of(state);
    c.execs
        .retain(|h| h.prefix.first().map(String::as_str) != Some(TOOL));
    c.execs.push(ExecHandler {
        prefix: vec![TOOL.into(), "check".into()],
        exit_code: 2,
        stdout: "migrations pending (3 -> 7)\n".into(),
        stderr: String::new(),
    });
    c.execs.push(upgrade);
}

#[test]
fn the_leader_upgrades_a_pending_schema_then_starts_the_server() {
    let mut state = world();
    pending(
        &mut state,
        ExecHandler::ok(&[TOOL, "upgrade"], "applied 4 migrations\n"),
    );
    let out = run(&state, Event::ConfigChanged);
    let commands: Vec<String> = out
        .state
        .container("livepatch")
        .unwrap()
        .exec_history
        .iter()
        .map(|e| e.command[1].clone())
        .collect();
    assert_eq!(commands, ["check", "upgrade"]);
    assert!(out.unit_status_history.contains(&Status::waiting(
        "pg connection successful, attempting upgrade"
    )));
    assert!(service_active(&out));
    assert_eq!(
        out.state.relation(PEER_ID).unwrap().local_app_data["schema-version"],
        "7"
    );
}

#[test]
fn a_failed_upgrade_blocks_with_the_redacted_error_and_starts_nothing() {
    let mut state = world();
    pending(
        &mut state,
        ExecHandler::fail(
            &[TOOL, "upgrade"],
            1,
            &format!("Error: cannot connect to {DSN}: connection refused\n"),
        ),
    );
    let out = run(&state, Event::ConfigChanged);
    assert_eq!(
        out.state.unit_status.name,
        ops::hookcmds::StatusName::Blocked
    );
    let message = &out.state.unit_status.message;
    assert!(
        message.starts_with("schema upgrade failed: cannot connect to ***REDACTED***"),
        "{message}"
    );
    assert!(!message.contains(DB_PASSWORD));
    assert!(plan_is_empty(&out));
    assert!(!service_active(&out));
    assert!(!out
        .state
        .relation(PEER_ID)
        .unwrap()
        .local_app_data
        .contains_key("schema-version"));
}

#[test]
fn a_non_leader_waits_for_the_leader_to_upgrade_and_never_upgrades() {
    let mut state = State {
        leader: false,
        ..world()
    };
    pending(&mut state, ExecHandler::ok(&[TOOL, "upgrade"], ""));
    let out = run(&state, Event::ConfigChanged);
    assert_eq!(
        out.state.unit_status,
        Status::waiting("Waiting for the leader to upgrade the database schema")
    );
    let commands: Vec<String> = out
        .state
        .container("livepatch")
        .unwrap()
        .exec_history
        .iter()
        .map(|e| e.command[1].clone())
        .collect();
    assert_eq!(commands, ["check"]);
    assert!(plan_is_empty(&out));

    // The leader's upgrade reaches the follower as a peer change: it checks
    // again and starts.
    let mut after = out.state.clone();
    let c = container_of(&mut after);
    c.execs
        .retain(|h| h.prefix.first().map(String::as_str) != Some(TOOL));
    c.execs.push(ExecHandler::ok(
        &[TOOL, "check"],
        "schema is up to date (version 7)\n",
    ));
    // The leader wrote the peer application bag.
    let event = ops::Event::RelationChanged(ops::event::RelationEvent {
        relation: ops::RelationId::new("livepatch", PEER_ID),
        remote_app: APP.into(),
        remote_unit: None,
    });
    let out = run(&after, event);
    assert!(service_active(&out));
    assert_eq!(
        out.state.unit_status.name,
        ops::hookcmds::StatusName::Active
    );
}

#[test]
fn a_failing_check_blocks_with_the_tools_message() {
    let mut state = world();
    let c = container_of(&mut state);
    c.execs
        .retain(|h| h.prefix.first().map(String::as_str) != Some(TOOL));
    c.execs.push(ExecHandler::fail(
        &[TOOL, "check"],
        1,
        "Error: cannot read the schema version: permission denied for table schema_migrations\n",
    ));
    let out = run(&state, Event::ConfigChanged);
    assert_eq!(
        out.state.unit_status,
        Status::blocked("schema check failed: cannot read the schema version: permission denied for table schema_migrations")
    );
}
