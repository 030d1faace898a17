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
