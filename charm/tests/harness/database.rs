//! The `database` (postgresql_client), `database-legacy` (pgsql) and
//! `metrics-db` relations.

use ops::testing::{Relation, Secret, State};
use ops::{Event, Status};

use crate::world::*;

fn legacy_relation(master: &str) -> Relation {
    Relation::new("database-legacy", 7, "postgresql")
        .with_remote_unit(0, &[("database", "livepatch-server"), ("master", master)])
}

fn without_database(mut state: State) -> State {
    state.relations.retain(|r| r.endpoint != "database");
    state
}

#[test]
fn the_leader_requests_the_database_with_requested_secrets_on_relation_created() {
    let rel = Relation::new("database", DB_ID, "postgresql-k8s");
    let state = without_database(world()).with_relation(rel.clone());
    let out = run(&state, rel.created_event());
    let bag = &out.state.relation(DB_ID).unwrap().local_app_data;
    assert_eq!(bag["database"], "livepatch-server");
    let requested: Vec<String> = serde_json::from_str(&bag["requested-secrets"]).unwrap();
    assert_eq!(requested, ["username", "password", "tls", "tls-ca", "uris"]);
    assert_eq!(
        out.state.unit_status,
        Status::waiting("Waiting for database credentials")
    );
    // Followers write nothing.
    let follower = run(
        &State {
            leader: false,
            ..state
        },
        rel.created_event(),
    );
    assert!(follower
        .state
        .relation(DB_ID)
        .unwrap()
        .local_app_data
        .is_empty());
}

#[test]
fn credentials_come_from_the_secret_user_secret_with_the_library_label() {
    let out = run(&world(), db_relation().changed_event(None));
    assert_eq!(env(&out)["LP_DATABASE_CONNECTION_STRING"], DSN);
    let secret = out
        .state
        .secrets
        .iter()
        .find(|s| s.id == DB_SECRET)
        .unwrap();
    assert_eq!(secret.label.as_deref(), Some("database.3.user.secret"));
    // No credential in any bag this charm writes.
    for rel in &out.state.relations {
        for v in rel
            .local_app_data
            .values()
            .chain(rel.local_unit_data.values())
        {
            assert!(!v.contains(DB_PASSWORD), "{}: {v}", rel.endpoint);
        }
    }
}

#[test]
fn plain_credentials_from_providers_without_secrets_support_are_accepted() {
    let mut state = without_database(world());
    state = state.with_relation(
        Relation::new("database", DB_ID, "postgres-new")
            .with_remote_unit(0, &[])
            .with_remote_app_data(&[
                ("username", "some-username"),
                ("password", "some-password"),
                ("endpoints", "some.database.host,some.other.database.host"),
            ]),
    );
    let out = run(&state, Event::ConfigChanged);
    assert_eq!(
        env(&out)["LP_DATABASE_CONNECTION_STRING"],
        "postgresql://some-username:some-password@some.database.host/livepatch-server"
    );
}

#[test]
fn empty_credentials_wait_and_start_nothing() {
    let state = without_database(world()).with_relation(
        Relation::new("database", DB_ID, "postgres-new")
            .with_remote_unit(0, &[])
            .with_remote_app_data(&[
                ("username", ""),
                ("password", ""),
                ("endpoints", "some.database.host"),
            ]),
    );
    let out = run(&state, Event::ConfigChanged);
    assert_eq!(
        out.state.unit_status,
        Status::waiting("Waiting for database credentials")
    );
    assert!(plan_is_empty(&out));
}

#[test]
fn tls_pushes_the_ca_and_asks_for_verify_full() {
    let ca = test_ca_pem();
    let tls =
        Secret::new(&[("tls", "True"), ("tls-ca", &ca)]).with_id("secret:7157000000000000000a");
    let mut state = world().with_secret(tls);
    state
        .relations
        .iter_mut()
        .find(|r| r.id == DB_ID)
        .unwrap()
        .remote_app_data
        .insert("secret-tls".into(), "secret:7157000000000000000a".into());
    let out = run(&state, Event::ConfigChanged);
    assert_eq!(
        env(&out)["LP_DATABASE_CONNECTION_STRING"],
        format!("{DSN}?sslmode=verify-full&sslrootcert=%2Fetc%2Flivepatch%2Fdb-ca.crt")
    );
    let c = out.state.container("livepatch").unwrap();
    assert_eq!(
        c.file_text("/etc/livepatch/db-ca.crt").unwrap().trim(),
        ca.trim()
    );
    assert_eq!(c.filesystem["/etc/livepatch/db-ca.crt"].permissions, 0o644);
    // The schema tool ran after the CA was there, with the same DSN.
    let check = c
        .exec_history
        .iter()
        .find(|e| e.command[1] == "check")
        .unwrap();
    assert!(check.environment["LP_DATABASE_CONNECTION_STRING"].contains("sslrootcert"));
    // database.sslmode picks the mode.
    let required = run(
        &state.clone().with_config("database.sslmode", "require"),
        Event::ConfigChanged,
    );
    assert!(env(&required)["LP_DATABASE_CONNECTION_STRING"].contains("sslmode=require&"));
    // TLS off: no sslmode at all, and the CA file goes.
    let mut off = out.state.clone();
    let s = off
        .secrets
        .iter_mut()
        .find(|s| s.id == "secret:7157000000000000000a")
        .unwrap();
    s.revisions
        .insert(2, [("tls", "False")].into_iter().collect());
    s.tracked = 2;
    let plain = run(&off, Event::ConfigChanged);
    assert_eq!(env(&plain)["LP_DATABASE_CONNECTION_STRING"], DSN);
    assert!(plain
        .state
        .container("livepatch")
        .unwrap()
        .file_text("/etc/livepatch/db-ca.crt")
        .is_none());
}

#[test]
fn rotated_database_credentials_reconfigure_on_secret_changed() {
    let started = run(&world(), Event::ConfigChanged);
    let mut state = started.state.clone();
    let secret = state
        .secrets
        .iter_mut()
        .find(|s| s.id == DB_SECRET)
        .unwrap();
    *secret = secret
        .clone()
        .with_latest(&[("username", "relation-3"), ("password", "rotated-pw")]);
    let event = state
        .secrets
        .iter()
        .find(|s| s.id == DB_SECRET)
        .unwrap()
        .changed_event();
    let out = run(&state, event);
    assert_eq!(
        env(&out)["LP_DATABASE_CONNECTION_STRING"],
        "postgresql://relation-3:rotated-pw@10.0.0.1:5432/livepatch-server"
    );
    assert!(service_active(&out));
}

#[test]
fn the_legacy_relation_uses_the_primarys_master_string() {
    let state = without_database(world()).with_relation(legacy_relation(
        "host=host port=5432 dbname=livepatch-server user=username password=password",
    ));
    let out = run(&state, Event::ConfigChanged);
    assert_eq!(
        env(&out)["LP_DATABASE_CONNECTION_STRING"],
        "postgresql://username:password@host:5432/livepatch-server"
    );
    // The leader asks for the database by name.
    assert_eq!(
        out.state.relation(7).unwrap().local_app_data["database"],
        "livepatch-server"
    );
}

#[test]
fn a_legacy_relation_with_only_standbys_waits() {
    let state = without_database(world()).with_relation(
        Relation::new("database-legacy", 7, "postgresql").with_remote_unit(
            0,
            &[("standbys", "host=standby-host port=5432 dbname=livepatch-server user=username password=password")],
        ),
    );
    let out = run(&state, Event::ConfigChanged);
    assert_eq!(
        out.state.unit_status,
        Status::waiting("Waiting for database credentials")
    );
}

#[test]
fn both_database_relations_are_refused_whichever_came_first() {
    let legacy = legacy_relation("host=h dbname=d user=u password=p");
    // Standard first, legacy added.
    let a = run(
        &world().with_relation(legacy.clone()),
        legacy.created_event(),
    );
    // Legacy first, standard added.
    let state = without_database(world())
        .with_relation(legacy)
        .with_relation(db_relation());
    let b = run(&state, db_relation().changed_event(None));
    for out in [a, b] {
        assert_eq!(
            out.state.unit_status,
            Status::blocked("Integration with both database relations is not allowed; remove database-legacy or database")
        );
        assert!(plan_is_empty(&out));
    }
}

#[test]
fn a_broken_database_relation_stops_the_server_until_a_new_one_comes() {
    let started = run(&world(), Event::ConfigChanged);
    assert!(service_active(&started));
    let out = run(&started.state, db_relation().broken_event());
    assert!(!service_active(&out));
    assert_eq!(
        out.state.unit_status,
        Status::blocked("Database connection removed")
    );

    // Juju drops the relation; later hooks still say why.
    let mut gone = out.state.clone();
    gone.relations.retain(|r| r.endpoint != "database");
    let later = run(&gone, Event::UpdateStatus);
    assert_eq!(
        later.state.unit_status,
        Status::blocked("Database connection removed")
    );
    assert!(!service_active(&later));

    // A new relation brings the server back.
    let new_secret = Secret::new(&[("username", "relation-9"), ("password", "newpass")])
        .with_id("secret:n3wn3wn3wn3wn3wn3wn3");
    let new_rel = Relation::new("database", 9, "postgresql-k8s")
        .with_remote_unit(0, &[])
        .with_remote_app_data(&[
            ("endpoints", "newhost:5432"),
            ("secret-user", "secret:n3wn3wn3wn3wn3wn3wn3"),
        ]);
    let back = run(
        &later
            .state
            .clone()
            .with_relation(new_rel.clone())
            .with_secret(new_secret),
        new_rel.changed_event(None),
    );
    assert!(service_active(&back));
    assert_eq!(
        env(&back)["LP_DATABASE_CONNECTION_STRING"],
        "postgresql://relation-9:newpass@newhost:5432/livepatch-server"
    );
    assert_eq!(
        back.state.unit_status.name,
        ops::hookcmds::StatusName::Active
    );
}

#[test]
fn a_broken_legacy_relation_stops_the_server_on_a_non_leader_too() {
    let legacy = legacy_relation(
        "host=host port=5432 dbname=livepatch-server user=username password=password",
    );
    let state = State {
        leader: false,
        ..without_database(world()).with_relation(legacy.clone())
    };
    let started = run(&state, Event::ConfigChanged);
    assert!(service_active(&started));
    let out = run(&started.state, legacy.broken_event());
    assert!(!service_active(&out));
    assert_eq!(
        out.state.unit_status,
        Status::blocked("Database connection removed")
    );
}

#[test]
fn a_broken_relation_before_the_server_ever_ran_still_blocks() {
    let out = run(&world(), db_relation().broken_event());
    assert_eq!(
        out.state.unit_status,
        Status::blocked("Database connection removed")
    );
}

#[test]
fn postgres_patch_storage_uses_its_own_dsn_or_the_main_database() {
    let own = world()
        .with_config("patch-storage.type", "postgres")
        .with_config(
            "patch-storage.postgres-connection-string",
            "postgres://user:password@host/db",
        );
    let env_own = env(&run(&own, Event::ConfigChanged));
    assert_eq!(env_own["LP_PATCH_STORAGE_TYPE"], "postgres");
    assert_eq!(
        env_own["LP_PATCH_STORAGE_POSTGRES_CONNECTION_STRING"],
        "postgres://user:password@host/db"
    );
    let main = world().with_config("patch-storage.type", "postgres");
    let env_main = env(&run(&main, Event::ConfigChanged));
    assert!(!env_main.contains_key("LP_PATCH_STORAGE_POSTGRES_CONNECTION_STRING"));
}

#[test]
fn the_metrics_database_feeds_the_timescale_connection_string() {
    let secret = Secret::new(&[("username", "relation-5"), ("password", "mpw")])
        .with_id("secret:m3tr1cs0000000000000");
    let rel = Relation::new("metrics-db", 5, "timescale")
        .with_remote_unit(0, &[])
        .with_remote_app_data(&[
            ("endpoints", "ts:5432"),
            ("secret-user", "secret:m3tr1cs0000000000000"),
        ]);
    let out = run(
        &world().with_relation(rel.clone()).with_secret(secret),
        rel.changed_event(None),
    );
    assert_eq!(
        env(&out)["LP_TIMESCALE_DB_CONNECTION_STRING"],
        "postgresql://relation-5:mpw@ts:5432/livepatch-metrics-db"
    );
    assert_eq!(
        out.state.relation(5).unwrap().local_app_data["database"],
        "livepatch-metrics-db"
    );
}

/// A self-signed CA certificate, valid now.
pub fn test_ca_pem() -> String {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Test DB CA");
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().pem()
}
