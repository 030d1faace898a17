//! Actions other than the admin ones (those run against a real server in
//! the admin test binary).

use ops::testing::{ExecHandler, Relation, Secret, State};
use serde_json::json;

use crate::world::*;

#[test]
fn restart_stops_and_reconfigures() {
    let out = action(world_started_state(), "restart", json!({}));
    assert_eq!(out.action_failure, None);
    assert_eq!(out.action_results["result"], "restarted");
    assert!(service_active(&out));
    assert_eq!(
        out.state.unit_status.name,
        ops::hookcmds::StatusName::Active
    );
}

fn world_started_state() -> &'static State {
    use std::sync::OnceLock;
    static S: OnceLock<State> = OnceLock::new();
    S.get_or_init(|| run(&world(), ops::Event::ConfigChanged).state)
}

#[test]
fn schema_upgrade_runs_the_tool_with_the_dsn_in_its_environment() {
    let out = action(world_started_state(), "schema-upgrade", json!({}));
    assert_eq!(out.action_failure, None);
    assert_eq!(out.action_results["result"], "schema migration done");
    let upgrade = out
        .state
        .container("livepatch")
        .unwrap()
        .exec_history
        .iter()
        .find(|e| e.command[1] == "upgrade")
        .unwrap()
        .clone();
    assert_eq!(
        upgrade.command,
        [TOOL, "upgrade", "--target", "livepatchdb"]
    );
    assert_eq!(upgrade.environment["LP_DATABASE_CONNECTION_STRING"], DSN);
}

#[test]
fn schema_upgrade_failures_are_action_failures_with_the_error() {
    let mut state = world_started_state().clone();
    container_of(&mut state)
        .execs
        .push(ExecHandler::fail(&[TOOL, "upgrade"], 1, "some error"));
    let out = action(&state, "schema-upgrade", json!({}));
    assert_eq!(
        out.action_failure.as_deref(),
        Some("schema migration failed for livepatchdb database: some error")
    );

    let mut no_db = world();
    no_db.relations.retain(|r| r.endpoint != "database");
    let out = action(&no_db, "schema-upgrade", json!({}));
    assert_eq!(
        out.action_failure.as_deref(),
        Some("schema migration failed: database connection not set/ready")
    );

    let mut unreachable = world();
    container_of(&mut unreachable).can_connect = false;
    let out = action(&unreachable, "schema-upgrade", json!({}));
    assert_eq!(
        out.action_failure.as_deref(),
        Some("schema migration failed: cannot connect to the workload container")
    );
}

#[test]
fn schema_version_reports_whether_a_migration_is_required() {
    let out = action(world_started_state(), "schema-version", json!({}));
    assert_eq!(
        out.action_results["migration-required-livepatchdb"],
        "false"
    );

    let mut state = world_started_state().clone();
    container_of(&mut state).execs.push(ExecHandler {
        prefix: vec![TOOL.into(), "check".into()],
        exit_code: 2,
        stdout: "migrations pending (6 -> 7)".into(),
        stderr: "exit code of 2 means migration is required".into(),
    });
    let out = action(&state, "schema-version", json!({}));
    assert_eq!(out.action_results["migration-required-livepatchdb"], "true");

    let mut broken = world_started_state().clone();
    container_of(&mut broken)
        .execs
        .push(ExecHandler::fail(&[TOOL, "check"], 1, "some error"));
    let out = action(&broken, "schema-version", json!({}));
    assert_eq!(
        out.action_failure.as_deref(),
        Some("schema version check failed for livepatchdb: some error")
    );
}

#[test]
fn emit_updated_config_translates_the_legacy_configuration() {
    let legacy = "application: livepatch\nsettings:\n  burst_limit:\n    value: 250\n  patchstore:\n    value: file\n  psql_dbname:\n    value: livepatch\n  nagios_context:\n    value: juju\n  port:\n    value: 80\n";
    let out = action(
        world_started_state(),
        "emit-updated-config",
        json!({"config-file": legacy}),
    );
    assert_eq!(out.action_failure, None);
    let new: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&out.action_results["new-config"]).unwrap();
    assert_eq!(new[APP]["server.burst-limit"].as_i64(), Some(250));
    assert_eq!(new[APP]["patch-storage.type"].as_str(), Some("filesystem"));
    assert_eq!(out.action_results["removed-keys"], "psql_dbname");
    assert_eq!(
        out.action_results["unrecognized-keys"],
        "nagios_context,port"
    );
}

#[test]
fn emit_updated_config_failures_use_the_previous_texts() {
    let out = action(
        world_started_state(),
        "emit-updated-config",
        json!({"config-file": "invalid"}),
    );
    assert_eq!(
        out.action_failure.as_deref(),
        Some("invalid config file format. Got content invalid")
    );
    let missing = "settings:\n  auth_basic_users:\n    default: \"\"\n    type: string\n    value:";
    let out = action(
        world_started_state(),
        "emit-updated-config",
        json!({"config-file": missing}),
    );
    assert_eq!(
        out.action_failure.as_deref(),
        Some("Failed to map old config to new config: auth_basic_users doesn't have a set value for it")
    );
}

#[test]
fn get_resource_token_refuses_what_the_previous_charm_refused() {
    let base = world_started_state().clone();
    let follower = State {
        leader: false,
        ..base.clone()
    };
    let cases: Vec<(State, serde_json::Value, &str)> = vec![
        (follower, json!({"contract-token": "t"}), "cannot fetch the resource token: unit is not the leader"),
        (
            {
                let mut s = base.clone();
                s.relations.retain(|r| r.endpoint != "livepatch");
                s
            },
            json!({"contract-token": "t"}),
            "cannot fetch the resource token: peer relation not ready",
        ),
        (base.clone(), json!({"contract-token": ""}), "cannot fetch the resource token: no contract token provided"),
        (base.clone(), json!({}), "cannot fetch the resource token: no contract token provided"),
        (
            base.clone().with_config("patch-sync.token", "AAAABBBB"),
            json!({"contract-token": "t"}),
            "patch-sync.token is already set. It should be unset before setting a resource token",
        ),
        (
            base.clone().with_relation(Relation::new("pro-airgapped-server", 11, "pro").with_remote_unit(0, &[("hostname", "h")])),
            json!({"contract-token": "t"}),
            "already integrated with `pro-airgapped-server`. The relation should be removed before setting a resource token",
        ),
        (
            base.clone(),
            json!({"contract-token-secret": "secret:nnnnnnnnnnnnnnnnnnnn"}),
            "cannot fetch the resource token: cannot read secret secret:nnnnnnnnnnnnnnnnnnnn; run: juju grant-secret secret:nnnnnnnnnnnnnnnnnnnn livepatch-server-k8s",
        ),
        (
            base.clone().with_secret(Secret::new(&[("other", "x")]).with_id("secret:kkkkkkkkkkkkkkkkkkkk")),
            json!({"contract-token-secret": "secret:kkkkkkkkkkkkkkkkkkkk"}),
            "cannot fetch the resource token: secret secret:kkkkkkkkkkkkkkkkkkkk has no key `token`",
        ),
        (
            // Nothing listens on port 1: the exchange fails, and says so.
            base.clone().with_config("contracts.url", "https://127.0.0.1:1"),
            json!({"contract-token": "t"}),
            "cannot fetch the resource token: failed to fetch the machine token: ",
        ),
    ];
    for (state, params, message) in cases {
        let out = action(&state, "get-resource-token", params.clone());
        let failure = out
            .action_failure
            .clone()
            .unwrap_or_else(|| panic!("{params} did not fail"));
        assert!(failure.starts_with(message), "{params}: {failure}");
        assert!(!out
            .state
            .relation(PEER_ID)
            .map(|r| r.local_app_data.contains_key("resource-token-secret-id"))
            .unwrap_or(false));
        assert!(out.action_results.is_empty());
    }
}

/// A contracts service on loopback behind a private CA, for the happy path.
#[test]
fn get_resource_token_stores_the_token_in_an_app_secret_and_restarts_with_it() {
    use base64::Engine;
    let pki = crate::common::TestPki::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let addr = runtime.block_on(crate::common::serve(
        Some(&pki),
        |req: crate::common::Seen| async move {
            match (
                req.method.as_str(),
                req.path.as_str(),
                req.header("authorization"),
            ) {
                ("POST", "/v1/context/machines/token", Some("Bearer contract-123")) => (
                    200,
                    "application/json",
                    r#"{"machineToken":"mt-1"}"#.to_string(),
                ),
                (
                    "GET",
                    "/v1/resources/livepatch-onprem/context/machines/livepatch-onprem",
                    Some("Bearer mt-1"),
                ) => (
                    200,
                    "application/json",
                    r#"{"resourceToken":"rt-secret-value"}"#.to_string(),
                ),
                _ => (401, "application/json", "{}".to_string()),
            }
        },
    ));
    let ca = base64::engine::general_purpose::STANDARD.encode(&pki.ca_pem);
    let state = world_started_state()
        .clone()
        .with_config(
            "contracts.url",
            format!("https://localhost:{}", addr.port()),
        )
        .with_config("contracts.ca", ca)
        .with_config("patch-sync.enabled", true);
    let out = action(
        &state,
        "get-resource-token",
        json!({"contract-token": "contract-123"}),
    );
    assert_eq!(out.action_failure, None, "{:?}", out.juju_log);
    assert_eq!(out.action_results["result"], "resource token set");
    let peer = out.state.relation(PEER_ID).unwrap();
    let uri = &peer.local_app_data["resource-token-secret-id"];
    let secret = out.state.secrets.iter().find(|s| &s.id == uri).unwrap();
    assert_eq!(secret.owner, Some(ops::hookcmds::SecretOwner::Application));
    assert_eq!(
        secret.latest_content().unwrap().get("token"),
        Some("rt-secret-value")
    );
    assert!(peer
        .local_app_data
        .values()
        .all(|v| !v.contains("rt-secret-value")));
    // The server now syncs with it.
    assert_eq!(env(&out)["LP_PATCH_SYNC_TOKEN"], "rt-secret-value");
    assert_eq!(
        out.state.unit_status.name,
        ops::hookcmds::StatusName::Active
    );

    // A second run replaces the secret and removes the old one.
    let again = action(
        &out.state,
        "get-resource-token",
        json!({"contract-token": "contract-123"}),
    );
    assert_eq!(again.action_failure, None);
    let new_uri =
        &again.state.relation(PEER_ID).unwrap().local_app_data["resource-token-secret-id"];
    assert_ne!(new_uri, uri);
    assert!(again.state.secrets.iter().all(|s| &s.id != uri));
}
