//! Running any hook twice gives the same state, and garbage in any remote
//! databag never fails a hook.

use ops::testing::{Relation, State};
use ops::Event;

use crate::world::*;

fn every_relation() -> State {
    world()
        .with_relation(Relation::new("nginx-route", 21, "nginx").with_remote_unit(0, &[]))
        .with_relation(
            Relation::new("ingress", 22, "traefik-k8s")
                .with_remote_unit(0, &[])
                .with_remote_app_data(&[("ingress", r#"{"url": "http://lp.example.com/x"}"#)]),
        )
        .with_relation(
            Relation::new("metrics-db", 5, "timescale")
                .with_remote_unit(0, &[])
                .with_remote_app_data(&[
                    ("endpoints", "ts:5432"),
                    ("username", "u"),
                    ("password", "p"),
                ]),
        )
        .with_relation(
            Relation::new("pro-airgapped-server", 11, "pro")
                .with_remote_unit(0, &[("hostname", "pro.internal"), ("port", "8484")]),
        )
        .with_relation(
            Relation::new("cve-catalog", 12, "cve")
                .with_remote_unit(0, &[])
                .with_remote_app_data(&[("url", "http://cve.internal")]),
        )
}

/// The state without the container's exec log, which grows by one schema
/// check per hook by design.
fn without_history(state: &State) -> State {
    let mut s = state.clone();
    for c in &mut s.containers {
        c.exec_history.clear();
    }
    s
}

fn events(state: &State) -> Vec<Event> {
    let mut events = vec![
        Event::Install,
        Event::Start,
        Event::ConfigChanged,
        Event::UpdateStatus,
        Event::UpgradeCharm,
        Event::LeaderElected,
        Event::LeaderSettingsChanged,
        container().pebble_ready_event(),
    ];
    // The leader's writes to the peer application bag reach the others.
    events.push(Event::RelationChanged(ops::event::RelationEvent {
        relation: ops::RelationId::new("livepatch", PEER_ID),
        remote_app: APP.into(),
        remote_unit: None,
    }));
    for rel in state.relations.iter().filter(|r| !r.peer) {
        events.push(rel.created_event());
        events.push(rel.changed_event(None));
        events.push(rel.joined_event(0));
        events.push(rel.changed_event(Some(0)));
    }
    events
}

#[test]
fn every_hook_run_twice_gives_the_same_state() {
    for base in [
        every_relation(),
        State {
            leader: false,
            ..every_relation()
        },
    ] {
        // From a settled unit, so that the first run of a hook has nothing
        // left over from installation.
        let settled = run(
            &run(&base, Event::ConfigChanged).state,
            Event::ConfigChanged,
        )
        .state;
        for event in events(&settled) {
            if !base.leader && event == Event::LeaderElected {
                continue; // Juju sends it to the leader only.
            }
            let once = run(&settled, event.clone());
            let twice = run(&once.state, event.clone());
            assert_eq!(
                without_history(&twice.state),
                without_history(&once.state),
                "{event:?} (leader: {})",
                base.leader
            );
            assert!(
                !twice.hook_command_names().contains(&"relation-set"),
                "{event:?}: the second run rewrote relation data"
            );
        }
    }
}

#[test]
fn a_no_op_hook_reads_each_thing_once_and_writes_nothing() {
    let settled = run(&world(), Event::ConfigChanged).state;
    let out = run(&settled, Event::ConfigChanged);
    let names = out.hook_command_names();
    for once in [
        "config-get",
        "is-leader",
        "state-get",
        "goal-state",
        "status-set",
    ] {
        assert_eq!(out.count_calls(once), 1, "{once}: {names:?}");
    }
    for never in [
        "relation-set",
        "state-set",
        "secret-add",
        "open-port",
        "close-port",
        "opened-ports",
        "juju-log",
    ] {
        assert_eq!(out.count_calls(never), 0, "{never}: {names:?}");
    }
    let reads = |endpoint: &str| {
        out.hook_calls
            .iter()
            .filter(|c| c.command == "relation-ids" && c.args.iter().any(|a| a == endpoint))
            .count()
    };
    // The peer and the database are always looked up; optional endpoints
    // only when goal-state says something is related to them.
    assert_eq!(reads("livepatch"), 1, "{names:?}");
    assert_eq!(reads("database"), 1, "{names:?}");
    for absent in [
        "database-legacy",
        "metrics-db",
        "ingress",
        "nginx-route",
        "pro-airgapped-server",
        "cve-catalog",
    ] {
        assert_eq!(reads(absent), 0, "{absent}: {names:?}");
    }
    assert_eq!(
        out.count_calls("relation-get"),
        2,
        "the peer bag and the provider's bag: {names:?}"
    );
    assert_eq!(
        out.count_calls("secret-get"),
        2,
        "the database credential and the admin credential: {names:?}"
    );
    assert_eq!(names.len(), 11, "{names:?}");
}

/// Values that no provider should ever send.
const GARBAGE: &[&str] = &[
    "",
    "null",
    "{",
    "[1,2,3]",
    "{\"url\": 42}",
    "\u{0}\u{1}binary",
    "secret:",
    "secret://nothing/here",
    "host=;;;",
    "'unterminated",
    "user:pw@evil/../db?sslmode=disable",
    "💥",
];

#[test]
fn garbage_in_any_remote_databag_never_fails_a_hook() {
    let keys = [
        "endpoints",
        "secret-user",
        "secret-tls",
        "username",
        "password",
        "tls",
        "tls-ca",
        "ingress",
        "url",
        "master",
        "hostname",
        "scheme",
        "port",
        "allowed-units",
        "database",
    ];
    for (rel_index, _) in every_relation().relations.iter().enumerate() {
        for value in GARBAGE {
            let mut state = every_relation();
            let rel = &mut state.relations[rel_index];
            if rel.peer {
                continue;
            }
            for key in keys {
                rel.remote_app_data.insert(key.into(), (*value).into());
                rel.remote_units
                    .entry(0)
                    .or_default()
                    .insert(key.into(), (*value).into());
            }
            let events = [
                rel.changed_event(None),
                rel.changed_event(Some(0)),
                Event::ConfigChanged,
            ];
            for event in events {
                // `run` panics if the charm fails the hook.
                let out = run(&state, event.clone());
                assert_ne!(out.state.unit_status.name, ops::hookcmds::StatusName::Error);
            }
        }
    }
}
