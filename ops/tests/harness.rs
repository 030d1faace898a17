//! The harness and the model: consistency checks, commit semantics,
//! deferral, caching, error mapping, secrets, through small charms.

use std::cell::RefCell;
use std::rc::Rc;

use ops::hookcmds::{Port, SecretMeta, SecretOwner};
use ops::testing::{Container, Context, FnCharm, Relation, RunError, Secret, State};
use ops::{Bag, Event, Model, ModelError, Status};
use serde_json::json;

const METADATA: &str = "name: app\ncontainers:\n  web: {resource: img}\nrequires:\n  db: {interface: pg, limit: 1}\npeers:\n  peers: {interface: p}\nstorage:\n  data: {type: filesystem}\n";
const CONFIG: &str = "options:\n  port: {type: int, default: 8080}\n  name: {type: string}\n  creds: {type: secret}\n";
const ACTIONS: &str = "go:\n  params:\n    n: {type: integer}\n  additionalProperties: false\n";

fn ctx() -> Context {
    Context::new(METADATA, CONFIG, ACTIONS).unwrap()
}

type Handler = fn(&Event, &mut Model) -> anyhow::Result<()>;

fn run(state: &State, event: Event, f: Handler) -> Result<ops::testing::Output, RunError> {
    ctx().run(FnCharm(f), event, state)
}

fn inconsistent(state: &State, event: Event) -> Vec<String> {
    match run(state, event, |_, _| Ok(())) {
        Err(RunError::Inconsistent(p)) => p,
        other => panic!("expected an inconsistency, got {other:?}"),
    }
}

#[test]
fn impossible_states_are_rejected_with_every_problem_named() {
    let mut state = State::default()
        .with_config("nope", 1)
        .with_config("port", "eighty")
        .with_relation(Relation::new("dbx", 1, "pg"))
        .with_relation(Relation::new("peers", 2, "x"))
        .with_container(Container::new("cache"))
        .with_secret(Secret::new(&[("a", "b")]).with_label("l"))
        .with_secret(Secret::new(&[("a", "b")]).with_label("l"));
    state.storages.push(ops::testing::StorageInstance {
        name: "logs".into(),
        index: 0,
        location: "/l".into(),
        kind: "filesystem".into(),
    });
    assert_eq!(
        inconsistent(&state, Event::ConfigChanged),
        [
            "config option \"nope\" is not declared in config.yaml (declared: creds, name, port)",
            "config option \"port\" is of type int but the state gives \"eighty\"",
            "relation 1 is on endpoint \"dbx\", which metadata.yaml does not declare (declared: db, peers)",
            "relation 2 on endpoint \"peers\": the endpoint is a peer endpoint but the relation is not a peer relation (use Relation::peer)",
            "container \"cache\" is not declared in metadata.yaml (declared: web)",
            "secret label \"l\" is used by more than one secret (labels are unique per application)",
            "storage \"logs\" is not declared in metadata.yaml (declared: data)",
        ]
    );
}

#[test]
fn impossible_events_are_rejected() {
    let rel = Relation::new("db", 7, "pg").with_remote_unit(0, &[]);
    let state = State::default().with_relation(rel.clone());
    assert_eq!(
        inconsistent(&state, Relation::new("db", 9, "pg").changed_event(None)),
        ["the event is about relation db:9, which is not in the state's relations"]
    );
    assert_eq!(
        inconsistent(&state, rel.changed_event(Some(3))),
        ["the event's remote unit \"pg/3\" is not among relation db:7's remote units (pg/0)"]
    );
    assert_eq!(
        inconsistent(&state, Container::new("web").pebble_ready_event()),
        ["the event is about container \"web\", which is not in the state's containers"]
    );
    assert_eq!(
        inconsistent(&state, Secret::new(&[("a", "b")]).changed_event()).len(),
        1,
        "a secret event needs the secret"
    );
    assert_eq!(
        inconsistent(&state, Event::LeaderElected),
        ["leader-elected goes to the new leader, but the state says this unit is not the leader"]
    );
    let two = state.clone().with_relation(Relation::new("db", 8, "pg2"));
    assert_eq!(
        inconsistent(&two, Event::ConfigChanged),
        ["endpoint \"db\" has limit 1 but the state has 2 relations on it"]
    );
    let err = ctx()
        .run_action(
            FnCharm(|_: &Event, _: &mut Model| Ok(())),
            "nope",
            json!({}),
            &state,
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "inconsistent test input:\n- action \"nope\" is not declared in actions.yaml (declared: go)");
}

#[test]
fn a_failing_charm_loses_its_buffered_changes_but_not_its_status() {
    let rel = Relation::new("db", 7, "pg");
    let state = State::default().with_leader(true).with_relation(rel);
    let err = run(&state, Event::ConfigChanged, |_, m| {
        let rel = m.relation("db")?.unwrap();
        m.set_relation_data(&rel, false, [("k", "v")])?;
        m.set_relation_data(&rel, true, [("app-k", "v")])?;
        m.set_stored("seen", &true)?;
        m.open_port(Port::tcp(80))?;
        m.set_unit_status(Status::maintenance("halfway"))?;
        m.set_workload_version("1.0")?;
        anyhow::bail!("boom")
    })
    .unwrap_err();
    let RunError::Charm { message, output } = err else {
        panic!("expected a charm failure")
    };
    assert_eq!(message, "config-changed: boom");
    let out = output.state;
    assert_eq!(
        out.relation(7).unwrap().local_unit_data,
        state.relation(7).unwrap().local_unit_data
    );
    assert!(out.relation(7).unwrap().local_app_data.is_empty());
    assert!(out.stored.is_empty() && out.opened_ports.is_empty());
    assert_eq!(
        out.unit_status,
        Status::maintenance("halfway"),
        "status-set applies at once"
    );
    assert_eq!(out.workload_version, "1.0");
    assert_eq!(
        output.juju_log.last().unwrap().message,
        "hooks/config-changed failed: config-changed: boom"
    );
}

#[test]
fn action_fail_still_commits_but_an_action_error_does_not() {
    let state = State::default();
    let out = ctx()
        .run_action(
            FnCharm(|_: &Event, m: &mut Model| {
                m.set_stored("ran", &true)?;
                m.set_action_results(json!({"partial": {"count": 1}}).as_object().unwrap())?;
                m.fail_action("not today")?;
                Ok(())
            }),
            "go",
            json!({"n": 1}),
            &state,
        )
        .unwrap();
    assert_eq!(out.action_failure.as_deref(), Some("not today"));
    assert_eq!(out.action_results["partial.count"], "1");
    assert_eq!(out.state.stored["ran"], json!(true));

    let err = ctx()
        .run_action(
            FnCharm(|_: &Event, m: &mut Model| {
                m.set_stored("ran", &true)?;
                anyhow::bail!("crashed")
            }),
            "go",
            json!({}),
            &state,
        )
        .unwrap_err();
    let RunError::Charm { output, .. } = err else {
        panic!()
    };
    assert!(output.state.stored.is_empty());
}

#[test]
fn unknown_events_exit_cleanly_without_touching_juju() {
    let out = run(
        &State::default(),
        Event::Unknown("meter-status-changed".into()),
        |_, _| anyhow::bail!("the charm must not be called"),
    )
    .unwrap();
    assert!(out.ignored);
    assert!(out.hook_calls.is_empty());
}

#[test]
fn reads_are_cached_for_the_hook_and_own_writes_stay_visible() {
    let rel = Relation::new("db", 7, "pg").with_remote_unit(0, &[("user", "u")]);
    let state = State::default().with_leader(true).with_relation(rel);
    let out = run(&state, Event::ConfigChanged, |_, m| {
        for _ in 0..3 {
            assert!(m.is_leader()?);
            assert_eq!(m.config()?.int("port")?, Some(8080));
            let rel = m.relation("db")?.unwrap();
            assert_eq!(m.relation_units(&rel)?, ["pg/0"]);
            assert_eq!(
                m.relation_data(&rel, &Bag::Unit("pg/0".into()))?["user"],
                "u"
            );
        }
        let rel = m.relation("db")?.unwrap();
        m.relation_data(&rel, &Bag::LocalApp)?;
        m.set_relation_data(&rel, true, [("a", "1")])?;
        assert_eq!(m.relation_data(&rel, &Bag::LocalApp)?["a"], "1");
        m.set_relation_data(&rel, true, [("a", "")])?;
        assert!(!m.relation_data(&rel, &Bag::LocalApp)?.contains_key("a"));
        Ok(())
    })
    .unwrap();
    for cmd in ["is-leader", "config-get", "relation-ids", "relation-list"] {
        assert_eq!(
            out.count_calls(cmd),
            1,
            "{cmd}: {:?}",
            out.hook_command_names()
        );
    }
    assert_eq!(out.count_calls("relation-get"), 2, "one per bag");
}

#[test]
fn model_errors_are_mapped_like_ops() {
    let state = State::default().with_relation(Relation::new("db", 7, "pg"));
    run(&state, Event::ConfigChanged, |_, m| {
        let gone = ops::RelationId::new("db", 99);
        assert!(matches!(
            m.relation_units(&gone),
            Err(ModelError::RelationNotFound(_))
        ));
        assert!(matches!(
            m.get_secret(Some("secret:cj1sq3ivr6rc7a3q1sbg"), None),
            Err(ModelError::SecretNotFound(_))
        ));
        let rel = m.relation("db")?.unwrap();
        let err = m.set_relation_data(&rel, true, [("a", "1")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot write the application databag of relation db:7: this unit is not the leader"
        );
        assert!(matches!(
            m.set_app_status(Status::active("")),
            Err(ModelError::NotLeader(_))
        ));
        let err = m.relation_data(&rel, &Bag::LocalApp).unwrap_err();
        assert_eq!(
            err.to_string(),
            "relation-get failed (exit status 1): ERROR permission denied"
        );
        assert!(matches!(m.action_params(), Err(ModelError::InvalidUse(_))));
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_broken_relation_is_hidden_from_the_model() {
    let rel = Relation::new("db", 7, "pg");
    let state = State::default().with_relation(rel.clone());
    run(&state, rel.broken_event(), |_, m| {
        assert!(m.relations("db")?.is_empty());
        Ok(())
    })
    .unwrap();
}

#[test]
fn deferred_events_rerun_first_in_order_and_can_defer_again() {
    let seen: Rc<RefCell<Vec<String>>> = Rc::default();
    let log = seen.clone();
    let state = State {
        deferred: vec![Event::Start, Event::UpdateStatus],
        ..State::default()
    };
    let out = ctx()
        .run(
            FnCharm(move |e: &Event, m: &mut Model| {
                log.borrow_mut().push(e.name());
                if matches!(e, Event::Start | Event::ConfigChanged) {
                    m.defer()?;
                }
                Ok(())
            }),
            Event::ConfigChanged,
            &state,
        )
        .unwrap();
    assert_eq!(*seen.borrow(), ["start", "update-status", "config-changed"]);
    assert_eq!(out.state.deferred, [Event::Start, Event::ConfigChanged]);

    // Deferring an event already queued does not queue it twice.
    let again = run(&out.state, Event::ConfigChanged, |_, m| {
        m.defer()?;
        Ok(())
    })
    .unwrap();
    assert_eq!(again.state.deferred, [Event::Start, Event::ConfigChanged]);

    let err = ctx()
        .run_action(
            FnCharm(|_: &Event, m: &mut Model| Ok(m.defer()?)),
            "go",
            json!({}),
            &State::default(),
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("actions cannot be deferred"),
        "{err}"
    );
}

#[test]
fn stored_state_persists_between_hooks_through_juju() {
    let first = run(&State::default(), Event::Install, |_, m| {
        m.set_stored("counter", &1u32)?;
        Ok(())
    })
    .unwrap();
    assert_eq!(first.count_calls("state-set"), 1);
    let second = run(&first.state, Event::ConfigChanged, |_, m| {
        let n: u32 = m.stored("counter")?.unwrap();
        m.set_stored("counter", &(n + 1))?;
        Ok(())
    })
    .unwrap();
    assert_eq!(second.state.stored["counter"], json!(2));
    let third = run(&second.state, Event::UpdateStatus, |_, m| {
        assert_eq!(m.stored::<u32>("counter")?, Some(2));
        Ok(())
    })
    .unwrap();
    assert_eq!(
        third.count_calls("state-set"),
        0,
        "unchanged state is not rewritten"
    );
}

#[test]
fn the_owner_secret_flow_works_through_the_model() {
    let rel = Relation::new("db", 7, "pg").with_remote_unit(0, &[]);
    let state = State::default().with_leader(true).with_relation(rel);
    let out = run(&state, Event::ConfigChanged, |_, m| {
        let content = [("password", "first-s3cret-value")].into_iter().collect();
        let meta = SecretMeta {
            label: Some("admin".into()),
            ..Default::default()
        };
        let uri = m.add_secret(&content, &meta, SecretOwner::Application)?;
        let rel = m.relation("db")?.unwrap();
        m.grant_secret(&uri, &rel, None)?;
        m.set_relation_data(&rel, true, [("secret-id", uri.as_str())])?;
        let next = [("password", "second-s3cret-value")].into_iter().collect();
        m.set_secret(&uri, Some(&next), &meta)?;
        let info = m.secret_info(None, Some("admin"))?;
        assert_eq!((info.id.as_str(), info.revision), (uri.as_str(), 2));
        assert_eq!(m.secret_ids()?, std::slice::from_ref(&uri));
        Ok(())
    })
    .unwrap();
    let secret = out.state.secret_by_label("admin").unwrap();
    assert_eq!(secret.owner, Some(SecretOwner::Application));
    assert_eq!(
        secret.latest_content().unwrap().get("password"),
        Some("second-s3cret-value")
    );
    assert_eq!(secret.grants[&7], ["pg".to_owned()].into());
    assert_eq!(
        out.state.relation(7).unwrap().local_app_data["secret-id"],
        secret.id
    );
    assert!(
        !format!("{:?}", out.hook_calls).contains("s3cret-value"),
        "secret values never appear in argv"
    );

    let err = run(&State::default(), Event::ConfigChanged, |_, m| {
        m.add_secret(
            &[("aaa", "b")].into_iter().collect(),
            &SecretMeta::default(),
            SecretOwner::Application,
        )?;
        Ok(())
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot add an application-owned secret: this unit is not the leader"),
        "{err}"
    );
}

#[test]
fn user_secrets_named_in_config_are_read_by_uri() {
    let secret = Secret::new(&[("token", "t0k")]);
    let state = State::default()
        .with_config("creds", secret.id.as_str())
        .with_secret(secret);
    run(&state, Event::ConfigChanged, |_, m| {
        let uri = m.config()?.secret("creds")?.unwrap();
        assert_eq!(m.get_secret(Some(&uri), None)?.get("token"), Some("t0k"));
        Ok(())
    })
    .unwrap();
}

#[test]
fn set_ports_opens_and_closes_to_match() {
    let state = State {
        opened_ports: [Port::tcp(80), Port::udp(53)].into(),
        ..State::default()
    };
    let out = run(&state, Event::ConfigChanged, |_, m| {
        m.set_ports(&[Port::tcp(80), Port::tcp(443)])?;
        Ok(())
    })
    .unwrap();
    assert_eq!(
        out.state.opened_ports,
        [Port::tcp(80), Port::tcp(443)].into()
    );
    assert_eq!(
        out.hook_command_names(),
        ["state-get", "opened-ports", "close-port", "open-port"]
    );
}

#[test]
fn peers_can_read_their_own_application_bag_without_leadership() {
    let rel = Relation::peer("peers", 3)
        .with_local_app_data(&[("schema-version", "7")])
        .with_remote_unit(1, &[]);
    let state = State::default().with_relation(rel);
    run(&state, Event::UpdateStatus, |_, m| {
        let rel = m.relation("peers")?.unwrap();
        assert_eq!(
            m.relation_data(&rel, &Bag::LocalApp)?["schema-version"],
            "7"
        );
        assert_eq!(m.relation_units(&rel)?, ["app/1"]);
        assert_eq!(m.relation_app(&rel)?.as_deref(), Some("app"));
        Ok(())
    })
    .unwrap();
}

#[test]
fn the_harness_runs_as_the_unit_and_model_it_is_given() {
    let ctx = ctx().with_unit("other", 4).with_juju_version("3.6.11");
    ctx.run(
        FnCharm(|_: &Event, m: &mut Model| {
            assert_eq!(m.unit_name(), "other/4");
            assert_eq!(m.app_name(), "other");
            assert_eq!(m.model_name(), "test-model");
            assert_eq!(m.context().version.as_ref().unwrap().to_string(), "3.6.11");
            Ok(())
        }),
        Event::Start,
        &State::default(),
    )
    .unwrap();
}
