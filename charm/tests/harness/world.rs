//! The world the harness tests start from: a leader with its peer relation,
//! a ready PostgreSQL relation (credentials in a secret, as postgresql-k8s
//! sends them), a reachable workload container whose schema tool answers,
//! and the download URL template set.

use std::sync::OnceLock;

use livepatch_charm::charm::LivepatchCharm;
use livepatch_charm::meta::{ACTIONS_YAML, CONFIG_YAML, METADATA_YAML};
use ops::hookcmds::SecretOwner;
use ops::testing::{Container, Context, ExecHandler, Output, Relation, RunError, Secret, State};
use ops::Event;

pub const APP: &str = "livepatch-server-k8s";
pub const TOOL: &str = "/usr/local/bin/livepatch-schema-tool";
pub const DB_PASSWORD: &str = "db-pass-S3cr3t";
pub const DB_SECRET: &str = "secret:d1b0a5e0c7b3f2a9e8d1";
pub const ADMIN_SECRET: &str = "secret:a0a0a0a0a0a0a0a0a0a0";
pub const ADMIN_PASSWORD: &str = "admin-pass-0123456789abcdef";
pub const PEER_ID: u64 = 1;
pub const DB_ID: u64 = 3;
pub const URL_TEMPLATE: &str = "https://lp.example.com/v1/patches/{filename}";
pub const DSN: &str = "postgresql://relation-3:db-pass-S3cr3t@10.0.0.1:5432/livepatch-server";

pub fn ctx() -> Context {
    Context::new(METADATA_YAML, CONFIG_YAML, ACTIONS_YAML).unwrap()
}

pub fn charm() -> LivepatchCharm {
    LivepatchCharm::default()
}

/// A bcrypt hash of the admin password, computed once per test binary.
pub fn admin_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| bcrypt::hash(ADMIN_PASSWORD, 4).unwrap())
}

pub fn container() -> Container {
    Container::new("livepatch")
        .with_exec(ExecHandler::ok(
            &[TOOL, "check"],
            "schema is up to date (version 7)\n",
        ))
        .with_exec(ExecHandler::ok(
            &[TOOL, "upgrade"],
            "applied 7 migrations\n",
        ))
        .with_exec(ExecHandler::ok(
            &["update-ca-certificates"],
            "1 added, 0 removed; done.\n",
        ))
}

pub fn peer() -> Relation {
    Relation::peer("livepatch", PEER_ID).with_local_app_data(&[("admin-secret-id", ADMIN_SECRET)])
}

pub fn admin_secret() -> Secret {
    Secret::new(&[
        ("username", "charm-admin"),
        ("password", ADMIN_PASSWORD),
        ("password-hash", admin_hash()),
    ])
    .with_id(ADMIN_SECRET)
    .owned_by(SecretOwner::Application)
}

pub fn db_secret() -> Secret {
    Secret::new(&[("username", "relation-3"), ("password", DB_PASSWORD)]).with_id(DB_SECRET)
}

pub fn db_relation() -> Relation {
    Relation::new("database", DB_ID, "postgresql-k8s")
        .with_remote_unit(0, &[])
        .with_remote_app_data(&[
            ("database", "livepatch-server"),
            ("endpoints", "10.0.0.1:5432,10.0.0.2:5432"),
            ("secret-user", DB_SECRET),
        ])
}

/// A healthy leader, nothing deployed in the container yet.
pub fn world() -> State {
    State::default()
        .with_leader(true)
        .with_config("server.url-template", URL_TEMPLATE)
        .with_relation(peer())
        .with_relation(db_relation())
        .with_secret(admin_secret())
        .with_secret(db_secret())
        .with_container(container())
}

pub fn run(state: &State, event: Event) -> Output {
    match ctx().run(charm(), event, state) {
        Ok(out) => out,
        Err(RunError::Charm { message, output }) => {
            panic!("the charm failed: {message}\nlog: {:#?}", output.juju_log)
        }
        Err(e) => panic!("{e}"),
    }
}

pub fn run_with(charm: LivepatchCharm, state: &State, event: Event) -> Output {
    match ctx().run(charm, event, state) {
        Ok(out) => out,
        Err(RunError::Charm { message, output }) => {
            panic!("the charm failed: {message}\nlog: {:#?}", output.juju_log)
        }
        Err(e) => panic!("{e}"),
    }
}

pub fn action(state: &State, name: &str, params: serde_json::Value) -> Output {
    match ctx().run_action(charm(), name, params, state) {
        Ok(out) => out,
        Err(RunError::Charm { message, output }) => {
            panic!("the charm failed: {message}\nlog: {:#?}", output.juju_log)
        }
        Err(e) => panic!("{e}"),
    }
}

/// The environment of the service in the container's plan.
pub fn env(out: &Output) -> std::collections::BTreeMap<String, String> {
    out.state
        .container("livepatch")
        .unwrap()
        .plan()
        .services
        .get("livepatch")
        .map(|s| s.environment.clone())
        .unwrap_or_default()
}

pub fn service_active(out: &Output) -> bool {
    out.state
        .container("livepatch")
        .unwrap()
        .service_status("livepatch")
        == ops::pebble::ServiceStatus::Active
}

pub fn plan_is_empty(out: &Output) -> bool {
    out.state
        .container("livepatch")
        .unwrap()
        .plan()
        .services
        .is_empty()
}

pub fn container_of(state: &mut State) -> &mut Container {
    state
        .containers
        .iter_mut()
        .find(|c| c.name == "livepatch")
        .unwrap()
}

/// Runs `event` like `run`, with extra hook environment (the model's proxy
/// settings, which the harness leaves empty): the same steps as the
/// harness, through the public pieces of `ops::testing`.
pub fn run_with_env(state: &State, event: Event, extra: &[(&str, &str)]) -> State {
    use ops::testing::pebble::PebbleDouble;
    use ops::testing::{FakeJuju, Session};
    let dir = tempfile::tempdir().unwrap();
    let charm_dir = dir.path().join("charm");
    let containers_dir = dir.path().join("containers");
    std::fs::create_dir_all(&charm_dir).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let doubles: Vec<PebbleDouble> = state
        .containers
        .iter()
        .filter(|c| c.can_connect)
        .map(|c| {
            rt.block_on(PebbleDouble::start(
                &containers_dir.join(&c.name).join("pebble.socket"),
                c,
            ))
            .unwrap()
        })
        .collect();
    let context = ctx();
    let session = Session::new(
        context.meta().clone(),
        context.unit().clone(),
        "3.6.4",
        event,
        None,
        state.clone(),
    );
    let mut env = session.env();
    env.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env.push(("JUJU_CHARM_DIR".into(), charm_dir.display().to_string()));
    env.push((
        "OPS_CONTAINERS_DIR".into(),
        containers_dir.display().to_string(),
    ));
    let session = std::rc::Rc::new(std::cell::RefCell::new(session));
    let juju_ctx = ops::JujuContext::from_vars(env).unwrap();
    let mut c = charm();
    let result = ops::dispatch(&mut c, juju_ctx, Box::new(FakeJuju(session.clone())));
    assert!(result.is_ok(), "{result:?}");
    let snapshots: Vec<Container> = doubles.iter().map(PebbleDouble::snapshot).collect();
    rt.block_on(async {
        for d in doubles {
            d.stop().await;
        }
    });
    let session = std::rc::Rc::try_unwrap(session).ok().unwrap().into_inner();
    let (mut new_state, _) = session.finish(true);
    for snap in snapshots {
        if let Some(c) = new_state
            .containers
            .iter_mut()
            .find(|c| c.name == snap.name)
        {
            *c = snap;
        }
    }
    new_state
}
