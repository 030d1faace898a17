//! Lifecycle hooks, statuses and the Pebble layer.

use ops::pebble::ServiceStatus;
use ops::testing::State;
use ops::{Event, Status};
use serde_json::json;

use crate::world::*;

const SYNC_OFF: &str =
    "patch sync disabled: upload patches with livepatch-admin or enable patch-sync";

#[test]
fn config_changed_on_a_ready_leader_starts_the_server() {
    let out = run(&world(), Event::ConfigChanged);
    assert_eq!(out.state.unit_status, Status::active(SYNC_OFF));
    assert!(service_active(&out));
    let plan = out.state.container("livepatch").unwrap().plan();
    let svc = &plan.services["livepatch"];
    assert_eq!(
        svc.command.as_deref(),
        Some("/usr/local/bin/livepatch-server")
    );
    assert_eq!(svc.user.as_deref(), Some("_daemon_"));
    assert_eq!(svc.override_.as_deref(), Some("replace"));
    let env = &svc.environment;
    assert_eq!(env["LP_DATABASE_CONNECTION_STRING"], DSN);
    assert_eq!(env["LP_SERVER_SERVER_ADDRESS"], ":8080");
    assert_eq!(env["LP_SERVER_IS_LEADER"], "true");
    assert_eq!(env["LP_SERVER_URL_TEMPLATE"], URL_TEMPLATE);
    assert_eq!(env["LP_AUTH_BASIC_ENABLED"], "true");
    assert_eq!(
        env["LP_AUTH_BASIC_USERS"],
        format!("charm-admin:{}", admin_hash())
    );
    let check = &plan.checks["livepatch-check"];
    assert_eq!(check.level.as_deref(), Some("alive"));
    assert_eq!(
        check.http.as_ref().and_then(|h| h.url.as_deref()),
        Some("http://localhost:8080/debug/info")
    );
    assert_eq!(
        out.state
            .opened_ports
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>(),
        ["8080/tcp"]
    );
    // The schema was checked with the DSN in the environment, never argv.
    let execs = &out.state.container("livepatch").unwrap().exec_history;
    let check = execs
        .iter()
        .find(|e| e.command.get(1).map(String::as_str) == Some("check"))
        .unwrap();
    assert_eq!(check.command, [TOOL, "check", "--target", "livepatchdb"]);
    assert_eq!(check.environment["LP_DATABASE_CONNECTION_STRING"], DSN);
    assert!(execs
        .iter()
        .all(|e| e.command.iter().all(|a| !a.contains(DB_PASSWORD))));
    // The server's directories belong to its user.
    let fs = &out.state.container("livepatch").unwrap().filesystem;
    for dir in ["/etc/livepatch", "/var/lib/livepatch/patches"] {
        assert_eq!(fs[dir].user, "_daemon_", "{dir}");
        assert!(fs[dir].is_dir());
    }
}

#[test]
fn start_and_pebble_ready_reach_the_same_state() {
    let a = run(&world(), Event::Start);
    let b = run(&world(), container().pebble_ready_event());
    assert_eq!(a.state.unit_status, Status::active(SYNC_OFF));
    assert_eq!(env(&a), env(&b));
    assert!(service_active(&a) && service_active(&b));
}

#[test]
fn stop_stops_the_server_and_says_so() {
    let started = run(&world(), Event::ConfigChanged);
    let out = run(&started.state, Event::Stop);
    assert_eq!(out.state.unit_status, Status::waiting("service stopped"));
    assert!(!service_active(&out));
}

#[test]
fn update_status_keeps_a_running_server_active_without_restarting_it() {
    let started = run(&world(), Event::ConfigChanged);
    let out = run(&started.state, Event::UpdateStatus);
    assert_eq!(out.state.unit_status, Status::active(SYNC_OFF));
    assert_eq!(
        out.state.container("livepatch").unwrap().layers,
        started.state.container("livepatch").unwrap().layers
    );
    assert_eq!(
        out.unit_status_history,
        [Status::active(SYNC_OFF)],
        "no maintenance step: nothing changed"
    );
}

#[test]
fn update_status_starts_a_server_that_is_not_running() {
    let started = run(&world(), Event::ConfigChanged);
    let mut state = started.state.clone();
    container_of(&mut state)
        .service_statuses
        .insert("livepatch".into(), ServiceStatus::Inactive);
    let out = run(&state, Event::UpdateStatus);
    assert!(service_active(&out));
}

#[test]
fn a_server_that_fails_to_start_is_reported_not_ready() {
    let mut state = world();
    container_of(&mut state)
        .start_failures
        .insert("livepatch".into(), "exited quickly with code 1".into());
    let out = run(&state, Event::ConfigChanged);
    assert_eq!(
        out.state.unit_status,
        Status::waiting("Service is not ready")
    );
    assert!(out
        .juju_log
        .iter()
        .any(|l| l.message.contains("did not start")));
}

#[test]
fn an_unreachable_container_waits_and_touches_nothing() {
    let mut state = world();
    container_of(&mut state).can_connect = false;
    let out = run(&state, Event::ConfigChanged);
    assert_eq!(
        out.state.unit_status,
        Status::waiting("Waiting to connect - workload container")
    );
    assert!(
        out.state.deferred.is_empty(),
        "pebble-ready reconciles again; no deferral"
    );
}

#[test]
fn without_the_peer_relation_the_unit_waits() {
    let mut state = world();
    state.relations.retain(|r| r.endpoint != "livepatch");
    let out = run(&state, Event::ConfigChanged);
    assert_eq!(
        out.state.unit_status,
        Status::waiting("Waiting for peer relation")
    );
    assert!(plan_is_empty(&out));
}

#[test]
fn without_a_database_the_unit_is_blocked_and_nothing_runs() {
    let mut state = world();
    state.relations.retain(|r| r.endpoint != "database");
    let out = run(&state, Event::ConfigChanged);
    assert_eq!(
        out.state.unit_status,
        Status::blocked("Waiting for postgres relation to be established.")
    );
    assert!(plan_is_empty(&out));
}

#[test]
fn a_missing_url_template_blocks_and_leaves_the_plan_empty() {
    let mut state = world();
    state.config.remove("server.url-template");
    let out = run(&state, Event::ConfigChanged);
    assert_eq!(
        out.state.unit_status,
        Status::blocked("✘ server.url-template config not set")
    );
    assert!(plan_is_empty(&out));
}

#[test]
fn sync_without_a_token_blocks_and_leaves_the_plan_empty() {
    let state = world().with_config("patch-sync.enabled", true);
    let out = run(&state, Event::ConfigChanged);
    assert_eq!(
        out.state.unit_status,
        Status::blocked("✘ patch-sync token not set, run get-resource-token action")
    );
    assert!(plan_is_empty(&out));
}

#[test]
fn a_sync_token_and_a_url_template_are_enough_for_active() {
    let state = world()
        .with_config("patch-sync.enabled", true)
        .with_config("patch-sync.token", "AAAABBBB");
    let out = run(&state, Event::ConfigChanged);
    assert_eq!(out.state.unit_status, Status::active(""));
    let env = env(&out);
    assert_eq!(env["LP_PATCH_SYNC_TOKEN"], "AAAABBBB");
    assert_eq!(env["LP_PATCH_SYNC_ENABLED"], "true");
    assert_eq!(env["LP_PATCH_SYNC_ID"], out.state.model.uuid);
}

#[test]
fn options_reach_the_server_by_the_key_to_env_rule() {
    let state = world()
        .with_config("patch-sync.sync-tiers", true)
        .with_config("patch-storage.filesystem-path", "/srv/")
        .with_config("patch-cache.enabled", true)
        .with_config("server.is-hosted", true)
        .with_config("contracts.url", "http://contracts.host.name")
        .with_config("database.work_mem", 64);
    let env = env(&run(&state, Event::ConfigChanged));
    for (k, v) in [
        ("LP_PATCH_SYNC_SYNC_TIERS", "true"),
        ("LP_PATCH_STORAGE_TYPE", "filesystem"),
        ("LP_PATCH_STORAGE_FILESYSTEM_PATH", "/srv/"),
        ("LP_PATCH_CACHE_ENABLED", "true"),
        ("LP_SERVER_IS_HOSTED", "true"),
        ("LP_CONTRACTS_URL", "http://contracts.host.name"),
        ("LP_DATABASE_WORK_MEM", "64"),
    ] {
        assert_eq!(env.get(k).map(String::as_str), Some(v), "{k}");
    }
}

#[test]
fn the_admin_port_gets_its_own_listener_and_opened_port() {
    let out = run(
        &world().with_config("server.admin-port", 9090),
        Event::ConfigChanged,
    );
    assert_eq!(env(&out)["LP_SERVER_ADMIN_ADDRESS"], ":9090");
    assert_eq!(
        out.state
            .opened_ports
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>(),
        ["8080/tcp", "9090/tcp"]
    );
}

#[test]
fn filesystem_storage_with_two_planned_units_is_blocked_on_every_unit() {
    let started = run(&world(), Event::ConfigChanged);
    let mut state = started.state.clone();
    state.planned_units = 2;
    let out = run(&state, Event::ConfigChanged);
    assert_eq!(
        out.state.unit_status,
        Status::blocked(
            "patch-storage.type=filesystem cannot be shared by 2 units; use s3, swift or postgres"
        )
    );
    // The running server keeps its last good configuration.
    assert!(service_active(&out));
    assert_eq!(env(&out), env(&started));
    // Shared storage is fine with several units.
    let shared = state.with_config("patch-storage.type", "postgres");
    assert_eq!(
        run(&shared, Event::ConfigChanged).state.unit_status.name,
        ops::hookcmds::StatusName::Active
    );
}

#[test]
fn every_invalid_option_blocks_with_its_message_and_restarts_nothing() {
    let started = run(&world(), Event::ConfigChanged);
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "ingress-interface",
            json!("invalid-ingress"),
            "Invalid ingress interface specified: invalid-ingress",
        ),
        (
            "server.log-level",
            json!("loud"),
            "server.log-level: \"loud\" is not one of",
        ),
        ("patch-storage.type", json!("azure"), "patch-storage.type: "),
        (
            "patch-sync.interval",
            json!("12 hours"),
            "patch-sync.interval: ",
        ),
        (
            "server.url-template",
            json!("https://x/v1/patches/"),
            "server.url-template: ",
        ),
        (
            "server.burst-limit",
            json!(5000),
            "server.burst-limit: 5000 is above server.concurrency-limit",
        ),
        (
            "auth.basic.users",
            json!("admin:plaintext"),
            "auth.basic.users: ",
        ),
        (
            "contracts.ca",
            json!("bm90IGEgY2VydGlmaWNhdGU="),
            "contracts.ca: holds no PEM certificate",
        ),
        (
            "network-policy.admin-cidrs",
            json!("10.0.0.1/8"),
            "network-policy.admin-cidrs: ",
        ),
        (
            "timescale_db.enabled",
            json!(true),
            "timescale_db.enabled: TimescaleDB metrics are not supported by this server yet",
        ),
        ("database.sslmode", json!("sometimes"), "database.sslmode: "),
    ];
    for (option, value, message) in cases {
        let state = started.state.clone().with_config(option, value);
        let out = run(&state, Event::ConfigChanged);
        assert_eq!(
            out.state.unit_status.name,
            ops::hookcmds::StatusName::Blocked,
            "{option}"
        );
        assert!(
            out.state.unit_status.message.starts_with(message),
            "{option}: {}",
            out.state.unit_status.message
        );
        let before = started.state.container("livepatch").unwrap();
        let after = out.state.container("livepatch").unwrap();
        assert_eq!(
            after.layers, before.layers,
            "{option}: the layer must not change"
        );
        assert!(service_active(&out), "{option}: the server keeps running");
        assert!(
            !out.hook_command_names().contains(&"relation-set"),
            "{option}"
        );
        assert!(
            out.juju_log
                .iter()
                .any(|l| l.message.contains("invalid configuration")),
            "{option}"
        );
    }
}

#[test]
fn a_non_leader_runs_the_server_with_is_leader_false() {
    let state = State {
        leader: false,
        ..world()
    };
    let out = run(&state, Event::ConfigChanged);
    assert_eq!(out.state.unit_status, Status::active(SYNC_OFF));
    assert_eq!(env(&out)["LP_SERVER_IS_LEADER"], "false");
    assert!(!out.hook_command_names().contains(&"secret-add"));
}

#[test]
fn a_non_leader_waits_for_the_leader_to_create_the_admin_credential() {
    let mut state = State {
        leader: false,
        ..world()
    };
    state
        .relations
        .iter_mut()
        .find(|r| r.endpoint == "livepatch")
        .unwrap()
        .local_app_data
        .clear();
    let out = run(&state, Event::ConfigChanged);
    assert_eq!(
        out.state.unit_status,
        Status::waiting("Waiting for the leader to create the admin credential")
    );
    assert!(plan_is_empty(&out));
}

#[test]
fn the_leader_creates_the_admin_credential_once_in_an_app_owned_secret() {
    let mut state = world();
    state
        .relations
        .iter_mut()
        .find(|r| r.endpoint == "livepatch")
        .unwrap()
        .local_app_data
        .clear();
    state.secrets.retain(|s| s.id != ADMIN_SECRET);
    let out = run(&state, Event::LeaderElected);
    let peer = out
        .state
        .relations
        .iter()
        .find(|r| r.endpoint == "livepatch")
        .unwrap();
    let uri = &peer.local_app_data["admin-secret-id"];
    let secret = out.state.secrets.iter().find(|s| &s.id == uri).unwrap();
    assert_eq!(secret.owner, Some(ops::hookcmds::SecretOwner::Application));
    let content = secret.latest_content().unwrap();
    let password = content.get("password").unwrap();
    assert!(bcrypt::verify(password, content.get("password-hash").unwrap()).unwrap());
    // The peer bag holds the reference, never the credential.
    assert!(peer.local_app_data.values().all(|v| !v.contains(password)));
    assert_eq!(
        env(&out)["LP_AUTH_BASIC_USERS"],
        format!("charm-admin:{}", content.get("password-hash").unwrap())
    );
    // A second hook reuses it.
    let again = run(&out.state, Event::ConfigChanged);
    assert_eq!(again.count_calls("secret-add"), 0);
}

#[test]
fn operator_users_join_the_internal_one_when_basic_auth_is_enabled() {
    let hash = "$2y$10$Y8o/3mvBaM7SfdNoHf9v4eWKh9yXHBS1YRKqKRpIhyfnAVD7f4qzK";
    let state = world()
        .with_config("auth.basic.enabled", true)
        .with_config("auth.basic.users", format!("alice:{hash}"));
    let users = env(&run(&state, Event::ConfigChanged))["LP_AUTH_BASIC_USERS"].clone();
    assert_eq!(users, format!("charm-admin:{},alice:{hash}", admin_hash()));
}
