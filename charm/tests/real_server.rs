//! The charm against a real `livepatch-server` process and a real
//! PostgreSQL: the server is started with exactly the environment the
//! charm's layer carries (so every option value the charm writes is one the
//! server accepts), and the admin actions talk to it over HTTP as they do in
//! the pod.

mod common;
#[path = "harness/world.rs"]
#[allow(dead_code, unreachable_pub)]
mod world;

use std::collections::BTreeMap;
use std::process::Command;

use livepatch_charm::charm::LivepatchCharm;
use livepatch_charm::reconcile::Endpoints;
use ops::testing::{Output, Relation, Secret, State};
use ops::Event;
use serde_json::json;
use testkit::{workspace_bin, PgCluster, ServerProcess};

use world::*;

const DB_USER: &str = "relation-3";
const DB_PASS: &str = "Real-db-pw/with:odd@chars";

struct Deployment {
    _runtime: tokio::runtime::Runtime,
    _cluster: PgCluster,
    _patches: tempfile::TempDir,
    _ca_dir: tempfile::TempDir,
    server: ServerProcess,
    state: State,
    env: BTreeMap<String, String>,
}

/// A PostgreSQL cluster, the charm's config-changed against it, the schema
/// migrated with the charm's DSN, and the server started with the charm's
/// environment.
fn deploy(tls: bool, config: &[(&str, serde_json::Value)]) -> Deployment {
    let cluster = if tls {
        PgCluster::builder()
            .tls("localhost")
            .scram()
            .hostssl_only()
            .start()
    } else {
        PgCluster::builder().scram().start()
    }
    .expect("cannot start PostgreSQL");
    cluster.create_user(DB_USER, DB_PASS).unwrap();
    cluster
        .create_database("livepatch-server", Some(DB_USER))
        .unwrap();

    let user = Secret::new(&[("username", DB_USER), ("password", DB_PASS)]).with_id(DB_SECRET);
    let mut app_data = vec![
        ("database".to_string(), "livepatch-server".to_string()),
        (
            "endpoints".to_string(),
            format!("localhost:{}", cluster.port()),
        ),
        ("secret-user".to_string(), DB_SECRET.to_string()),
    ];
    let mut state = State::default()
        .with_leader(true)
        .with_config("server.url-template", URL_TEMPLATE)
        .with_relation(peer())
        .with_secret(admin_secret())
        .with_secret(user)
        .with_container(container());
    for (k, v) in config {
        state = state.with_config(k, v.clone());
    }
    if tls {
        let ca = cluster.ca_pem().unwrap().to_string();
        state = state.with_secret(
            Secret::new(&[("tls", "True"), ("tls-ca", &ca)]).with_id("secret:7157000000000000000a"),
        );
        app_data.push(("secret-tls".into(), "secret:7157000000000000000a".into()));
    }
    let pairs: Vec<(&str, &str)> = app_data
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    state = state.with_relation(
        Relation::new("database", DB_ID, "postgresql-k8s")
            .with_remote_unit(0, &[])
            .with_remote_app_data(&pairs),
    );
    // A Kubernetes API that accepts the NetworkPolicy, for deployments
    // that enable it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let api = runtime.block_on(common::serve(None, |req: common::Seen| async move {
        (
            200,
            "application/json",
            String::from_utf8_lossy(&req.body).to_string(),
        )
    }));
    let charm = LivepatchCharm {
        endpoints: Endpoints {
            kube: Some(kube::Config::new(format!("http://{api}").parse().unwrap())),
            admin_url: None,
        },
    };
    let out = run_with(charm, &state, Event::ConfigChanged);
    assert_eq!(
        out.state.unit_status.name,
        ops::hookcmds::StatusName::Active,
        "{:?}",
        out.state.unit_status
    );
    let mut env = env(&out);

    // The files the charm pushed into the container, laid out here.
    let ca_dir = tempfile::tempdir().unwrap();
    let dsn = env["LP_DATABASE_CONNECTION_STRING"].clone();
    let dsn = if tls {
        let pushed = out
            .state
            .container("livepatch")
            .unwrap()
            .file_text("/etc/livepatch/db-ca.crt")
            .unwrap();
        let path = ca_dir.path().join("db-ca.crt");
        std::fs::write(&path, pushed).unwrap();
        assert!(
            dsn.contains("sslmode=verify-full&sslrootcert=%2Fetc%2Flivepatch%2Fdb-ca.crt"),
            "{dsn}"
        );
        dsn.replace(
            "%2Fetc%2Flivepatch%2Fdb-ca.crt",
            &path.display().to_string().replace('/', "%2F"),
        )
    } else {
        dsn
    };
    env.insert("LP_DATABASE_CONNECTION_STRING".into(), dsn.clone());

    // What the charm's schema step runs in the container, run here.
    let tool = Command::new(workspace_bin("livepatch-schema-tool"))
        .args(["upgrade", "--target", "livepatchdb"])
        .env_clear()
        .env("LP_DATABASE_CONNECTION_STRING", &dsn)
        .output()
        .unwrap();
    assert!(
        tool.status.success(),
        "schema tool: {}",
        String::from_utf8_lossy(&tool.stderr)
    );

    let patches = tempfile::tempdir().unwrap();
    env.insert(
        "LP_PATCH_STORAGE_FILESYSTEM_PATH".into(),
        patches.path().display().to_string(),
    );
    // The test server picks its own loopback port.
    env.remove("LP_SERVER_SERVER_ADDRESS");
    let admin = testkit::free_port();
    if env.contains_key("LP_SERVER_ADMIN_ADDRESS") {
        env.insert(
            "LP_SERVER_ADMIN_ADDRESS".into(),
            format!("127.0.0.1:{admin}"),
        );
    }
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = ServerProcess::start(&workspace_bin("livepatch-server"), &pairs)
        .unwrap_or_else(|e| panic!("the server refused the charm's environment: {e}"));
    Deployment {
        _runtime: runtime,
        _cluster: cluster,
        _patches: patches,
        _ca_dir: ca_dir,
        server,
        state: out.state,
        env,
    }
}

fn admin_charm(d: &Deployment) -> LivepatchCharm {
    let url = match d.env.get("LP_SERVER_ADMIN_ADDRESS") {
        Some(addr) => format!("http://{addr}"),
        None => d.server.url(),
    };
    LivepatchCharm {
        endpoints: Endpoints {
            kube: None,
            admin_url: Some(url),
        },
    }
}

fn act(d: &Deployment, name: &str, params: serde_json::Value) -> Output {
    ctx()
        .run_action(admin_charm(d), name, params, &d.state)
        .unwrap()
}

fn ok(out: &Output) -> &BTreeMap<String, String> {
    assert_eq!(out.action_failure, None, "{:?}", out.juju_log);
    &out.action_results
}

#[test]
fn the_server_accepts_everything_the_charm_configures_and_the_tls_dsn_connects() {
    let d = deploy(
        true,
        &[
            ("patch-cache.enabled", json!(true)),
            ("server.log-level", json!("debug")),
            ("machine-reports.database.enabled", json!(true)),
            ("database.connection-lifetime-max", json!("300")),
            ("server.admin-port", json!(9090)),
            ("network-policy.enabled", json!(true)),
            ("network-policy.admin-cidrs", json!("10.0.0.0/8")),
        ],
    );
    // The database answered over verify-full TLS with the CA the charm pushed.
    let (code, body) = testkit::http_get(d.server.port(), "/debug/status").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"OK\""), "{body}");
    // Admin routes live on the admin port only.
    let (code, _) = testkit::http_get(d.server.port(), "/v1/admin/tiers").unwrap();
    assert_eq!(code, 404);
    let out = act(&d, "list-tiers", json!({}));
    assert_eq!(ok(&out)["tiers"], "edge,beta,candidate,stable");
}

#[test]
fn tier_actions_add_list_and_remove_tiers() {
    let d = deploy(false, &[]);
    assert_eq!(
        ok(&act(&d, "list-tiers", json!({})))["tiers"],
        "edge,beta,candidate,stable"
    );
    let out = act(&d, "add-tier", json!({"name": "canary", "after": "edge"}));
    assert_eq!(ok(&out)["tier"], "canary");
    assert_eq!(
        ok(&act(&d, "list-tiers", json!({})))["tiers"],
        "edge,canary,beta,candidate,stable"
    );
    // The server's own refusal comes back as the action's failure.
    let dup = act(&d, "add-tier", json!({"name": "canary"}));
    let failure = dup.action_failure.unwrap();
    assert!(
        failure.starts_with("the Livepatch server refused the request (409)"),
        "{failure}"
    );
    assert_eq!(
        ok(&act(&d, "remove-tier", json!({"name": "canary"})))["tier"],
        "canary"
    );
    assert_eq!(
        ok(&act(&d, "list-tiers", json!({})))["tiers"],
        "edge,beta,candidate,stable"
    );
    let bad = act(&d, "add-tier", json!({"name": "Not A Tier"}));
    assert!(bad.action_failure.unwrap().contains("(400)"));
}

#[test]
fn token_actions_mint_working_tokens() {
    let d = deploy(false, &[]);
    let out = act(
        &d,
        "create-auth-token",
        json!({"tier": "stable", "id": "site-a"}),
    );
    let r = ok(&out);
    assert_eq!((r["tier"].as_str(), r["id"].as_str()), ("stable", "site-a"));
    let token = r["token"].clone();
    // The token enrols a machine.
    let (code, body) = testkit::http_request(
        d.server.port(),
        "PUT",
        "/v1/client/machine-0001",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "application/json"),
        ],
        br#"{"architecture": "amd64", "kernel": "5.15.0-107.117-generic"}"#,
    )
    .map(|r| (r.status, r.text()))
    .unwrap();
    assert_eq!(code, 201, "{body}");

    let out = act(
        &d,
        "add-sync-token",
        json!({"tier": "stable", "name": "downstream-1", "valid-until": "2099-01-31"}),
    );
    let r = ok(&out);
    assert_eq!(
        (r["name"].as_str(), r["tier"].as_str()),
        ("downstream-1", "stable")
    );
    assert!(r["token"].len() >= 16);
    let past = act(
        &d,
        "add-sync-token",
        json!({"tier": "stable", "name": "late", "valid-until": "2001-01-01"}),
    );
    assert!(past.action_failure.unwrap().contains("(422)"));
    let bad_date = act(
        &d,
        "add-sync-token",
        json!({"tier": "stable", "name": "x", "valid-until": "soon"}),
    );
    assert!(bad_date
        .action_failure
        .unwrap()
        .starts_with("valid-until \"soon\" is neither a date"));
}

fn upload(d: &Deployment, filename: &str) {
    use base64::Engine;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("charm-admin:{ADMIN_PASSWORD}"))
    );
    let r = testkit::http_request(
        d.server.port(),
        "POST",
        "/v1/admin/patches",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/x-bzip2"),
            ("X-Patch-Filename", filename),
        ],
        b"BZh91AY&SY-not-really-a-patch",
    )
    .unwrap();
    assert!(
        r.status == 201 || r.status == 200,
        "{} {}",
        r.status,
        r.text()
    );
}

#[test]
fn patch_actions_promote_and_blocklist() {
    let d = deploy(false, &[]);
    upload(&d, "livepatch-5.15.0-107.117-generic-107.1-amd64.tar.bz2");
    let out = act(
        &d,
        "promote-patch",
        json!({"version": "107.1", "tier": "beta"}),
    );
    let r = ok(&out);
    assert_eq!(
        (r["version"].as_str(), r["tier"].as_str()),
        ("107.1", "beta")
    );
    let out = act(&d, "promote-all", json!({"from": "beta", "to": "stable"}));
    assert!(ok(&out)["promoted"].parse::<u64>().unwrap() >= 1);
    let out = act(
        &d,
        "blocklist-patch",
        json!({"version": "107.1", "reason": "breaks boot on some hardware"}),
    );
    assert_eq!(ok(&out)["version"], "107.1");
    let missing = act(
        &d,
        "promote-patch",
        json!({"version": "999.1", "tier": "beta"}),
    );
    assert!(missing.action_failure.unwrap().contains("(404)"));
    let backwards = act(&d, "promote-all", json!({"from": "stable", "to": "edge"}));
    assert!(backwards.action_failure.unwrap().contains("(422)"));
}

#[test]
fn trigger_sync_reports_the_servers_answer() {
    // Sync is off in this deployment: the server refuses, and the action
    // fails with its message rather than pretending to have started one.
    let d = deploy(false, &[]);
    let out = act(&d, "trigger-sync", json!({"wait": false}));
    let failure = out.action_failure.unwrap();
    assert!(
        failure.starts_with("the Livepatch server refused the request (4"),
        "{failure}"
    );
}

#[test]
fn trigger_sync_waits_for_a_sync_from_a_real_upstream() {
    // An upstream deployment with one patch in edge and a sync token for edge.
    let up = deploy(false, &[]);
    upload(&up, "livepatch-5.15.0-107.117-generic-107.1-amd64.tar.bz2");
    let token = ok(&act(
        &up,
        "add-sync-token",
        json!({"tier": "edge", "name": "downstream"}),
    ))["token"]
        .clone();
    // A downstream whose leader syncs from it: once at start-up, then daily.
    let down = deploy(
        false,
        &[
            ("patch-sync.enabled", json!(true)),
            ("patch-sync.upstream-url", json!(up.server.url())),
            ("patch-sync.token", json!(token)),
            ("patch-sync.interval", json!("24h")),
        ],
    );
    let first = wait_for_sync_reports(&down, 1);
    assert_eq!(first[0]["state"], "succeeded", "{first:?}");
    // A patch published upstream after that run reaches the downstream only
    // through the action, which waits for the run and reports its counters.
    upload(&up, "livepatch-5.15.0-108.118-generic-108.1-amd64.tar.bz2");
    let out = act(&down, "trigger-sync", json!({"wait": true}));
    let r = ok(&out);
    assert_eq!(r["state"], "succeeded", "{r:?}");
    assert_eq!(r["patches-done"], "1", "{r:?}");
    assert_eq!(r["bytes-done"], "29", "{r:?}");
    assert!(!r["sync-id"].is_empty());
    let reports = wait_for_sync_reports(&down, 2);
    assert_eq!(reports[0]["state"], "succeeded", "{reports:?}");
}

/// The downstream's sync reports (newest first) once it holds `n` finished runs.
fn wait_for_sync_reports(d: &Deployment, n: usize) -> Vec<serde_json::Value> {
    use base64::Engine;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("charm-admin:{ADMIN_PASSWORD}"))
    );
    let port = match d.env.get("LP_SERVER_ADMIN_ADDRESS") {
        Some(addr) => addr.rsplit(':').next().unwrap().parse().unwrap(),
        None => d.server.port(),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let r = testkit::http_request(
            port,
            "GET",
            "/v1/admin/sync/reports",
            &[("Authorization", &auth)],
            b"",
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let body: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
        let reports = body["reports"].as_array().unwrap().clone();
        if reports.len() >= n && reports.iter().all(|r| r["state"] != "running") {
            return reports;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {n} finished sync runs after 60 s: {reports:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn admin_actions_fail_clearly_when_the_server_is_down() {
    let mut d = deploy(false, &[]);
    d.server.stop(std::time::Duration::from_secs(10)).unwrap();
    let out = act(&d, "list-tiers", json!({}));
    let failure = out.action_failure.unwrap();
    assert!(
        failure.starts_with("cannot reach the Livepatch server at http://127.0.0.1:"),
        "{failure}"
    );
    assert!(failure.contains("is the service running"), "{failure}");
}

#[test]
fn admin_actions_refuse_missing_parameters_before_any_call() {
    let d = deploy(false, &[]);
    let out = act(&d, "create-auth-token", json!({"tier": " ", "id": "x"}));
    assert_eq!(
        out.action_failure.as_deref(),
        Some("parameter tier must not be empty")
    );
}
