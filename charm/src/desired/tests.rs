//! Table tests of `desired`: one healthy snapshot, one change per case.

use serde_json::{json, Value};

use super::*;
use crate::config::{CharmConfig, RawConfig};
use crate::status::Kind;

const HASH: &str = "$2y$10$Y8o/3mvBaM7SfdNoHf9v4eWKh9yXHBS1YRKqKRpIhyfnAVD7f4qzK";

fn config(changes: &[(&str, Value)]) -> CharmConfig {
    let mut raw: RawConfig = crate::meta::config_defaults();
    raw.insert(
        "server.url-template".into(),
        json!("https://lp.example.com/v1/patches/{filename}"),
    );
    for (k, v) in changes {
        raw.insert(k.to_string(), v.clone());
    }
    CharmConfig::try_from(&raw).unwrap()
}

fn snapshot() -> Snapshot {
    Snapshot {
        app: "livepatch".into(),
        unit: "livepatch/0".into(),
        model: "lp-model".into(),
        model_uuid: "3fa85f64-5717-4562-b3fc-2c963f66afa6".into(),
        leader: true,
        planned_units: 1,
        peer: true,
        container: true,
        proxies: Proxies::default(),
        database: DbState::Ready(DbReady {
            dsn: Sensitive("postgresql://u:p@10.0.0.1:5432/livepatch-server".into()),
            ca: None,
        }),
        metrics_db: None,
        ingress_url: None,
        database_relation: Some(3),
        legacy_database_relation: None,
        metrics_db_relation: None,
        ingress_relation: None,
        nginx_route_relation: None,
        airgapped_url: None,
        cve_catalog_url: None,
        secrets: ResolvedSecrets::default(),
        secret_problems: Vec::new(),
        admin: Some(AdminCredential {
            username: "charm-admin".into(),
            password: Sensitive("pw".into()),
            hash: HASH.into(),
        }),
        resource_token: None,
        schema: Schema::UpToDate,
    }
}

fn env_of(d: &Desired) -> BTreeMap<String, String> {
    match &d.service {
        ServiceGoal::Run(layer) => layer.services[layer::SERVICE].environment.clone(),
        other => panic!("expected Run, got {other:?} ({:?})", d.status),
    }
}

#[derive(Debug, PartialEq)]
enum Goal {
    Keep,
    Stop,
    Run,
}

fn goal(d: &Desired) -> Goal {
    match d.service {
        ServiceGoal::Keep => Goal::Keep,
        ServiceGoal::Stop => Goal::Stop,
        ServiceGoal::Run(_) => Goal::Run,
    }
}

#[test]
fn each_situation_gives_its_status_and_service_goal() {
    type Case = (
        &'static str,
        Vec<(&'static str, Value)>,
        fn(&mut Snapshot),
        Kind,
        &'static str,
        Goal,
    );
    let cases: Vec<Case> = vec![
        (
            "healthy, sync off",
            vec![],
            |_| {},
            Kind::Active,
            status::SYNC_DISABLED,
            Goal::Run,
        ),
        (
            "healthy, sync on with token",
            vec![
                ("patch-sync.enabled", json!(true)),
                ("patch-sync.token", json!("t")),
            ],
            |_| {},
            Kind::Active,
            "",
            Goal::Run,
        ),
        (
            "no peer relation",
            vec![],
            |s| s.peer = false,
            Kind::Waiting,
            status::NO_PEER,
            Goal::Keep,
        ),
        (
            "container unreachable",
            vec![],
            |s| s.container = false,
            Kind::Waiting,
            status::NO_CONTAINER,
            Goal::Keep,
        ),
        (
            "secret not granted",
            vec![],
            |s| {
                s.secret_problems =
                    vec!["patch-sync.token-secret: secret secret:x is not granted".into()]
            },
            Kind::Blocked,
            "patch-sync.token-secret: secret secret:x is not granted",
            Goal::Keep,
        ),
        (
            "filesystem with two units",
            vec![],
            |s| s.planned_units = 2,
            Kind::Blocked,
            "patch-storage.type=filesystem cannot be shared by 2 units; use s3, swift or postgres",
            Goal::Keep,
        ),
        (
            "no database",
            vec![],
            |s| s.database = DbState::Absent,
            Kind::Blocked,
            status::NO_DATABASE,
            Goal::Stop,
        ),
        (
            "database removed",
            vec![],
            |s| s.database = DbState::Removed,
            Kind::Blocked,
            status::DATABASE_REMOVED,
            Goal::Stop,
        ),
        (
            "both databases",
            vec![],
            |s| s.database = DbState::Conflict,
            Kind::Blocked,
            status::TWO_DATABASES,
            Goal::Keep,
        ),
        (
            "no credentials yet",
            vec![],
            |s| s.database = DbState::Waiting("no secret-user".into()),
            Kind::Waiting,
            status::NO_DB_CREDENTIALS,
            Goal::Keep,
        ),
        (
            "no admin credential yet",
            vec![],
            |s| {
                s.leader = false;
                s.admin = None
            },
            Kind::Waiting,
            status::WAITING_FOR_ADMIN,
            Goal::Keep,
        ),
        (
            "schema failed",
            vec![],
            |s| s.schema = Schema::UpgradeFailed("migration 3 failed".into()),
            Kind::Blocked,
            "schema upgrade failed: migration 3 failed",
            Goal::Keep,
        ),
        (
            "schema check failed",
            vec![],
            |s| s.schema = Schema::CheckFailed("connection refused".into()),
            Kind::Blocked,
            "schema check failed: connection refused",
            Goal::Keep,
        ),
        (
            "non-leader waits for schema",
            vec![],
            |s| {
                s.leader = false;
                s.schema = Schema::Pending
            },
            Kind::Waiting,
            status::WAITING_FOR_SCHEMA,
            Goal::Keep,
        ),
        (
            "schema tool unreachable",
            vec![],
            |s| s.schema = Schema::Unreachable,
            Kind::Waiting,
            status::NO_CONTAINER,
            Goal::Keep,
        ),
        (
            "sync on without token",
            vec![("patch-sync.enabled", json!(true))],
            |_| {},
            Kind::Blocked,
            status::NO_SYNC_TOKEN,
            Goal::Keep,
        ),
        (
            "sync on with resource token",
            vec![("patch-sync.enabled", json!(true))],
            |s| s.resource_token = Some(Sensitive("rt".into())),
            Kind::Active,
            "",
            Goal::Run,
        ),
        (
            "sync on with token secret",
            vec![("patch-sync.enabled", json!(true))],
            |s| s.secrets.sync_token = Some(Sensitive("st".into())),
            Kind::Active,
            "",
            Goal::Run,
        ),
        (
            "airgapped, sync on, no token",
            vec![("patch-sync.enabled", json!(true))],
            |s| s.airgapped_url = Some("http://pro:8484".into()),
            Kind::Active,
            status::SYNC_DISABLED,
            Goal::Run,
        ),
        (
            "no url template",
            vec![("server.url-template", Value::Null)],
            |_| {},
            Kind::Blocked,
            status::NO_URL_TEMPLATE,
            Goal::Keep,
        ),
        (
            "no url template, nginx-route ignores the ingress URL",
            vec![("server.url-template", Value::Null)],
            |s| s.ingress_url = Some("http://lp.example.com/m-lp".into()),
            Kind::Blocked,
            status::NO_URL_TEMPLATE,
            Goal::Keep,
        ),
        (
            "no url template, traefik URL used",
            vec![
                ("server.url-template", Value::Null),
                ("ingress-interface", json!("ingress")),
            ],
            |s| s.ingress_url = Some("http://lp.example.com/m-lp".into()),
            Kind::Active,
            status::SYNC_DISABLED,
            Goal::Run,
        ),
    ];
    for (name, changes, mutate, kind, message, want_goal) in cases {
        let cfg = config(&changes);
        let mut snap = snapshot();
        mutate(&mut snap);
        let d = desired(&cfg, &snap);
        assert_eq!(
            (d.status.kind, d.status.message.as_str()),
            (kind, message),
            "{name}"
        );
        assert_eq!(goal(&d), want_goal, "{name}");
    }
}

#[test]
fn the_schema_step_is_asked_for_before_the_service_may_run() {
    let cfg = config(&[]);
    let mut snap = snapshot();
    snap.schema = Schema::NotRun;
    let d = desired(&cfg, &snap);
    assert_eq!(d.schema_step, Some(SchemaStep::CheckAndUpgrade));
    assert_eq!(goal(&d), Goal::Keep);
    snap.leader = false;
    assert_eq!(
        desired(&cfg, &snap).schema_step,
        Some(SchemaStep::CheckOnly)
    );
    // Nothing earlier in the chain failing: no schema step without a DSN.
    snap.database = DbState::Absent;
    assert_eq!(desired(&cfg, &snap).schema_step, None);
}

#[test]
fn the_environment_follows_the_contract() {
    let cfg = config(&[
        ("patch-sync.enabled", json!(true)),
        ("patch-sync.token", json!("sync-tok")),
        ("patch-sync.sync-tiers", json!(true)),
        ("server.admin-port", json!(9090)),
        ("patch-cache.enabled", json!(true)),
    ]);
    let env = env_of(&desired(&cfg, &snapshot()));
    let expect = [
        ("LP_SERVER_SERVER_ADDRESS", ":8080"),
        ("LP_SERVER_ADMIN_ADDRESS", ":9090"),
        ("LP_SERVER_IS_LEADER", "true"),
        (
            "LP_SERVER_URL_TEMPLATE",
            "https://lp.example.com/v1/patches/{filename}",
        ),
        (
            "LP_DATABASE_CONNECTION_STRING",
            "postgresql://u:p@10.0.0.1:5432/livepatch-server",
        ),
        ("LP_AUTH_BASIC_ENABLED", "true"),
        ("LP_PATCH_STORAGE_TYPE", "filesystem"),
        (
            "LP_PATCH_STORAGE_FILESYSTEM_PATH",
            "/var/lib/livepatch/patches",
        ),
        ("LP_PATCH_SYNC_ENABLED", "true"),
        ("LP_PATCH_SYNC_TOKEN", "sync-tok"),
        ("LP_PATCH_SYNC_SYNC_TIERS", "true"),
        ("LP_PATCH_SYNC_ID", "3fa85f64-5717-4562-b3fc-2c963f66afa6"),
        ("LP_PATCH_CACHE_ENABLED", "true"),
        ("LP_CONTRACTS_URL", "https://contracts.canonical.com"),
        ("LP_SERVER_BURST_LIMIT", "500"),
        ("LP_SERVER_LOG_LEVEL", "info"),
    ];
    for (k, v) in expect {
        assert_eq!(env.get(k).map(String::as_str), Some(v), "{k}");
    }
    assert_eq!(env["LP_AUTH_BASIC_USERS"], format!("charm-admin:{HASH}"));
    for absent in [
        "LP_INGRESS_INTERFACE",
        "LP_CONTRACTS_CA",
        "LP_PATCH_STORAGE_POSTGRES_CONNECTION_STRING",
        "LP_TIMESCALE_DB_CONNECTION_STRING",
        "LP_PATCH_SYNC_ARCHITECTURES",
        "LP_NETWORK_POLICY_ENABLED",
        "LP_DATABASE_SSLMODE",
        "http_proxy",
    ] {
        assert!(!env.contains_key(absent), "{absent} must not be set");
    }
    // Every variable but the proxies and the files digest is an LP_ name.
    assert!(env
        .keys()
        .all(|k| k.starts_with("LP_") || k == FILES_DIGEST_ENV));
}

#[test]
fn operator_users_are_added_only_when_basic_auth_is_enabled() {
    let mut snap = snapshot();
    snap.secrets.users = vec![User {
        name: "bob".into(),
        hash: HASH.into(),
    }];
    let users = |cfg: &CharmConfig| env_of(&desired(cfg, &snap))["LP_AUTH_BASIC_USERS"].clone();
    let off = config(&[("auth.basic.users", json!(format!("alice:{HASH}")))]);
    assert_eq!(users(&off), format!("charm-admin:{HASH}"));
    let on = config(&[
        ("auth.basic.enabled", json!(true)),
        ("auth.basic.users", json!(format!("alice:{HASH}"))),
    ]);
    assert_eq!(
        users(&on),
        format!("charm-admin:{HASH},alice:{HASH},bob:{HASH}")
    );
}

#[test]
fn tls_databases_push_their_ca_and_change_the_layer() {
    let cfg = config(&[]);
    let mut snap = snapshot();
    let plain = desired(&cfg, &snap);
    assert!(plain.files.is_empty());
    assert!(plain.absent.contains(&DB_CA_PATH));
    snap.database = DbState::Ready(DbReady {
        dsn: Sensitive("postgresql://u:p@h/livepatch-server?sslmode=verify-full&sslrootcert=%2Fetc%2Flivepatch%2Fdb-ca.crt".into()),
        ca: Some("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into()),
    });
    let tls = desired(&cfg, &snap);
    assert_eq!(tls.files.len(), 1);
    assert_eq!(tls.files[0].path, DB_CA_PATH);
    assert_eq!(tls.files[0].permissions, "644");
    assert_ne!(
        env_of(&plain)[FILES_DIGEST_ENV],
        env_of(&tls)[FILES_DIGEST_ENV]
    );
    // Another CA, same DSN: the layer still changes, so the server restarts.
    let mut rotated = snap.clone();
    if let DbState::Ready(db) = &mut rotated.database {
        db.ca = Some("-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n".into());
    }
    assert_ne!(
        env_of(&tls)[FILES_DIGEST_ENV],
        env_of(&desired(&cfg, &rotated))[FILES_DIGEST_ENV]
    );
}

#[test]
fn storage_backends_get_their_credentials_from_secrets_first() {
    let mut snap = snapshot();
    let cfg = config(&[
        ("patch-storage.type", json!("s3")),
        ("patch-storage.s3-bucket", json!("patches")),
        ("patch-storage.s3-access-key", json!("option-ak")),
        ("patch-storage.s3-secret-key", json!("option-sk")),
    ]);
    let env = env_of(&desired(&cfg, &snap));
    assert_eq!(env["LP_PATCH_STORAGE_S3_ACCESS_KEY"], "option-ak");
    assert_eq!(env["LP_PATCH_STORAGE_S3_BUCKET"], "patches");
    snap.secrets.s3 = Some((Sensitive("secret-ak".into()), Sensitive("secret-sk".into())));
    let env = env_of(&desired(&cfg, &snap));
    assert_eq!(env["LP_PATCH_STORAGE_S3_ACCESS_KEY"], "secret-ak");
    assert_eq!(env["LP_PATCH_STORAGE_S3_SECRET_KEY"], "secret-sk");
    // S3 storage is shared: two units are fine.
    snap.planned_units = 3;
    assert_eq!(goal(&desired(&cfg, &snap)), Goal::Run);
}

#[test]
fn postgres_storage_uses_the_main_database_unless_configured() {
    let snap = snapshot();
    let own = config(&[("patch-storage.type", json!("postgres"))]);
    let env = env_of(&desired(&own, &snap));
    assert_eq!(env["LP_PATCH_STORAGE_TYPE"], "postgres");
    assert!(!env.contains_key("LP_PATCH_STORAGE_POSTGRES_CONNECTION_STRING"));
    let other = config(&[
        ("patch-storage.type", json!("postgres")),
        (
            "patch-storage.postgres-connection-string",
            json!("postgres://user:password@host/db"),
        ),
    ]);
    assert_eq!(
        env_of(&desired(&other, &snap))["LP_PATCH_STORAGE_POSTGRES_CONNECTION_STRING"],
        "postgres://user:password@host/db"
    );
}

#[test]
fn an_airgapped_pro_server_replaces_the_contracts_service() {
    let cfg = config(&[
        ("patch-sync.enabled", json!(true)),
        ("patch-sync.token", json!("AAAABBBB")),
    ]);
    let mut snap = snapshot();
    snap.airgapped_url = Some("scheme://some.host.name:9999".into());
    let env = env_of(&desired(&cfg, &snap));
    assert_eq!(env["LP_CONTRACTS_ENABLED"], "true");
    assert_eq!(env["LP_CONTRACTS_URL"], "scheme://some.host.name:9999");
    assert_eq!(env["LP_PATCH_SYNC_ENABLED"], "true");
    assert_eq!(env["LP_PATCH_SYNC_TOKEN"], "AAAABBBB");
    assert!(!env.contains_key("LP_PATCH_SYNC_ID"));
    // Without a configured token, air-gapped servers do not sync, and a
    // resource token for the hosted service is not used.
    let cfg = config(&[("patch-sync.enabled", json!(true))]);
    snap.resource_token = Some(Sensitive("rt".into()));
    let env = env_of(&desired(&cfg, &snap));
    assert_eq!(env["LP_PATCH_SYNC_ENABLED"], "false");
    assert!(!env.contains_key("LP_PATCH_SYNC_TOKEN"));
}

#[test]
fn the_cve_catalog_feeds_the_leader_only() {
    let cfg = config(&[]);
    let mut snap = snapshot();
    snap.cve_catalog_url = Some("scheme://some.host.name:9999".into());
    let env = env_of(&desired(&cfg, &snap));
    assert_eq!(
        env["LP_CVE_SYNC_SOURCE_URL"],
        "scheme://some.host.name:9999"
    );
    assert_eq!(
        env["LP_LSN_SYNC_SOURCE_URL"],
        "scheme://some.host.name:9999"
    );
    assert_eq!(env["LP_CVE_SYNC_ENABLED"], "false");
    assert_eq!(env["LP_CVE_SYNC_INTERVAL"], "1h");
    snap.leader = false;
    let env = env_of(&desired(&cfg, &snap));
    assert!(!env.contains_key("LP_CVE_SYNC_SOURCE_URL"));
    assert_eq!(env["LP_SERVER_IS_LEADER"], "false");
}

#[test]
fn model_proxies_are_passed_in_lower_case_only_when_set() {
    let cfg = config(&[]);
    let mut snap = snapshot();
    let env = env_of(&desired(&cfg, &snap));
    assert!(!env.contains_key("http_proxy") && !env.contains_key("no_proxy"));
    snap.proxies = Proxies {
        http: "http://proxy.example.com:3128".into(),
        https: "https://proxy.example.com:3128".into(),
        no_proxy: "localhost,127.0.0.1".into(),
    };
    let env = env_of(&desired(&cfg, &snap));
    assert_eq!(env["http_proxy"], "http://proxy.example.com:3128");
    assert_eq!(env["https_proxy"], "https://proxy.example.com:3128");
    assert_eq!(env["no_proxy"], "localhost,127.0.0.1");
}

#[test]
fn the_contracts_ca_is_pushed_and_removed_with_the_option() {
    use base64::Engine;
    let now = time::OffsetDateTime::now_utc();
    let (pem, _) = crate::ca::tests::cert(
        true,
        now - time::Duration::days(1),
        now + time::Duration::days(9),
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(&pem);
    let with_ca = desired(&config(&[("contracts.ca", json!(b64))]), &snapshot());
    assert_eq!(with_ca.files[0].path, CONTRACTS_CA_PATH);
    assert!(with_ca.files[0]
        .content
        .starts_with("-----BEGIN CERTIFICATE-----"));
    let without = desired(&config(&[]), &snapshot());
    assert!(without.absent.contains(&CONTRACTS_CA_PATH));
    assert_ne!(
        env_of(&with_ca)[FILES_DIGEST_ENV],
        env_of(&without)[FILES_DIGEST_ENV]
    );
}

#[test]
fn only_the_chosen_ingress_is_written_and_the_other_is_cleared() {
    let mut snap = snapshot();
    snap.ingress_relation = Some(7);
    snap.nginx_route_relation = Some(8);
    let find = |d: &Desired, ep: &str, app: bool| {
        d.bags
            .iter()
            .find(|b| b.endpoint == ep && b.app == app)
            .unwrap_or_else(|| panic!("{ep} app={app}"))
            .content
            .clone()
    };
    let nginx = desired(&config(&[]), &snap);
    assert_eq!(
        find(&nginx, "nginx-route", true)["service-hostname"],
        "livepatch"
    );
    assert!(find(&nginx, "ingress", true).values().all(String::is_empty));
    assert!(find(&nginx, "ingress", false)
        .values()
        .all(String::is_empty));
    let traefik = desired(&config(&[("ingress-interface", json!("ingress"))]), &snap);
    assert_eq!(find(&traefik, "ingress", true)["name"], "\"livepatch\"");
    assert_eq!(find(&traefik, "ingress", false)["ip"], "null");
    assert!(find(&traefik, "nginx-route", true)
        .values()
        .all(String::is_empty));
    // Non-leaders write only their unit bag.
    snap.leader = false;
    let follower = desired(&config(&[("ingress-interface", json!("ingress"))]), &snap);
    assert!(follower.bags.iter().all(|b| !b.app));
    assert_eq!(follower.bags.len(), 1);
}

#[test]
fn the_leader_requests_its_databases() {
    let mut snap = snapshot();
    snap.metrics_db_relation = Some(5);
    let d = desired(&config(&[]), &snap);
    let db = d.bags.iter().find(|b| b.endpoint == "database").unwrap();
    assert_eq!(db.relation_id, 3);
    assert_eq!(db.content["database"], "livepatch-server");
    let metrics = d.bags.iter().find(|b| b.endpoint == "metrics-db").unwrap();
    assert_eq!(metrics.content["database"], "livepatch-metrics-db");
    snap.leader = false;
    assert!(desired(&config(&[]), &snap).bags.is_empty());
}

#[test]
fn desired_is_deterministic() {
    let cfg = config(&[
        ("patch-sync.enabled", json!(true)),
        ("patch-sync.token", json!("t")),
    ]);
    assert_eq!(desired(&cfg, &snapshot()), desired(&cfg, &snapshot()));
}

#[test]
fn network_policy_cidrs_reach_the_server_with_loopback_kept() {
    let cfg = config(&[
        ("network-policy.enabled", json!(true)),
        ("network-policy.admin-cidrs", json!("10.0.0.0/8")),
    ]);
    let env = env_of(&desired(&cfg, &snapshot()));
    assert_eq!(
        env["LP_SERVER_ADMIN_ALLOWED_CIDRS"],
        "10.0.0.0/8,127.0.0.0/8,::1/128"
    );
    assert_eq!(
        env["LP_SERVER_METRICS_ALLOWED_CIDRS"],
        "127.0.0.0/8,::1/128"
    );
    let off = env_of(&desired(
        &config(&[("network-policy.admin-cidrs", json!("10.0.0.0/8"))]),
        &snapshot(),
    ));
    assert!(!off.contains_key("LP_SERVER_ADMIN_ALLOWED_CIDRS"));
}
