//! Configuration that reaches the workload: contracts (hosted and
//! air-gapped), the contracts CA, CVE data sources.

use base64::Engine;
use ops::testing::{ExecHandler, Relation, State};
use ops::{Event, Status};

use crate::world::*;

fn airgapped(units: &[(u32, &str)]) -> Relation {
    let mut rel = Relation::new("pro-airgapped-server", 11, "pro-airgapped-server");
    for (n, host) in units {
        rel = rel.with_remote_unit(
            *n,
            &[("scheme", "scheme"), ("hostname", host), ("port", "9999")],
        );
    }
    rel
}

#[test]
fn an_airgapped_pro_server_becomes_the_contracts_service() {
    let rel = airgapped(&[(0, "some.host.name")]);
    let out = run(
        &world().with_relation(rel.clone()),
        rel.changed_event(Some(0)),
    );
    let env = env(&out);
    assert_eq!(env["LP_CONTRACTS_ENABLED"], "true");
    assert_eq!(env["LP_CONTRACTS_URL"], "scheme://some.host.name:9999");
}

#[test]
fn airgapped_sync_stays_on_only_with_a_configured_token() {
    let rel = airgapped(&[(0, "some.host.name")]);
    let with_token = world()
        .with_config("patch-sync.enabled", true)
        .with_config("patch-sync.token", "AAAABBBB")
        .with_relation(rel.clone());
    let env_on = env(&run(&with_token, rel.changed_event(Some(0))));
    assert_eq!(env_on["LP_PATCH_SYNC_ENABLED"], "true");
    assert_eq!(env_on["LP_PATCH_SYNC_TOKEN"], "AAAABBBB");

    let without = world()
        .with_config("patch-sync.enabled", true)
        .with_relation(rel.clone());
    let out = run(&without, rel.changed_event(Some(0)));
    assert_eq!(env(&out)["LP_PATCH_SYNC_ENABLED"], "false");
    // Air-gapped without a token is a supported setup, not an error.
    assert_eq!(
        out.state.unit_status,
        Status::active(
            "patch sync disabled: upload patches with livepatch-admin or enable patch-sync"
        )
    );
}

#[test]
fn the_first_airgapped_unit_wins_and_the_next_takes_over_when_it_leaves() {
    let rel = airgapped(&[(0, "first.host"), (1, "second.host")]);
    let out = run(
        &world().with_relation(rel.clone()),
        rel.changed_event(Some(1)),
    );
    assert_eq!(env(&out)["LP_CONTRACTS_URL"], "scheme://first.host:9999");

    let mut departed = out.state.clone();
    departed
        .relations
        .iter_mut()
        .find(|r| r.id == 11)
        .unwrap()
        .remote_units
        .remove(&0);
    let out = run(&departed, rel.changed_event(Some(1)));
    assert_eq!(env(&out)["LP_CONTRACTS_URL"], "scheme://second.host:9999");

    let mut removed = out.state.clone();
    removed.relations.retain(|r| r.id != 11);
    let out = run(&removed, Event::ConfigChanged);
    assert_eq!(
        env(&out)["LP_CONTRACTS_URL"],
        "https://contracts.canonical.com"
    );
    assert!(!env(&out).contains_key("LP_CONTRACTS_ENABLED"));
}

#[test]
fn the_cve_catalog_sets_the_sources_on_the_leader_and_removal_clears_them() {
    let rel = Relation::new("cve-catalog", 12, "livepatch-cve-service")
        .with_remote_unit(0, &[])
        .with_remote_app_data(&[("url", "scheme://some.host.name:9999")]);
    let out = run(&world().with_relation(rel.clone()), rel.changed_event(None));
    let e = env(&out);
    assert_eq!(e["LP_CVE_SYNC_SOURCE_URL"], "scheme://some.host.name:9999");
    assert_eq!(e["LP_LSN_SYNC_SOURCE_URL"], "scheme://some.host.name:9999");
    assert_eq!(
        e["LP_CVE_SYNC_ENABLED"], "false",
        "not switched on by the relation"
    );
    assert_eq!(e["LP_CVE_SYNC_INTERVAL"], "1h");
    assert_eq!(e["LP_LSN_SYNC_TIMEOUT"], "5m");

    let mut removed = out
        .state
        .clone()
        .with_config("cve-sync.enabled", true)
        .with_config("lsn-sync.enabled", true);
    removed.relations.retain(|r| r.id != 12);
    let e = env(&run(&removed, Event::ConfigChanged));
    assert_eq!(e["LP_CVE_SYNC_ENABLED"], "true");
    assert!(!e.contains_key("LP_CVE_SYNC_SOURCE_URL"));
    assert!(!e.contains_key("LP_LSN_SYNC_SOURCE_URL"));

    // Followers never get the catalog's URL.
    let follower = State {
        leader: false,
        ..world().with_relation(rel.clone())
    };
    assert!(!env(&run(&follower, rel.changed_event(None))).contains_key("LP_CVE_SYNC_SOURCE_URL"));
}

fn ca_b64(cn: &str) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let key = rcgen::KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    (base64::engine::general_purpose::STANDARD.encode(&pem), pem)
}

const CA_PATH: &str = "/usr/local/share/ca-certificates/trusted-contracts.ca.crt";

fn refreshes(out: &ops::testing::Output) -> usize {
    out.state
        .container("livepatch")
        .unwrap()
        .exec_history
        .iter()
        .filter(|e| e.command == ["update-ca-certificates", "--fresh"])
        .count()
}

#[test]
fn the_contracts_ca_is_installed_refreshed_replaced_and_removed() {
    let started = run(&world(), Event::ConfigChanged);
    let (b64, pem) = ca_b64("Contracts CA one");
    let out = run(
        &started.state.clone().with_config("contracts.ca", b64),
        Event::ConfigChanged,
    );
    let c = out.state.container("livepatch").unwrap();
    assert_eq!(c.file_text(CA_PATH).unwrap().trim(), pem.trim());
    assert_eq!(c.filesystem[CA_PATH].permissions, 0o644);
    assert_eq!(refreshes(&out), 1);
    assert!(service_active(&out));
    assert_ne!(env(&out), env(&started), "a new CA restarts the server");

    // The same CA again: nothing to do.
    let same = run(&out.state, Event::ConfigChanged);
    assert_eq!(refreshes(&same), 1);

    // Another CA replaces it.
    let (b64_two, pem_two) = ca_b64("Contracts CA two");
    let two = run(
        &out.state.clone().with_config("contracts.ca", b64_two),
        Event::ConfigChanged,
    );
    assert_eq!(
        two.state
            .container("livepatch")
            .unwrap()
            .file_text(CA_PATH)
            .unwrap()
            .trim(),
        pem_two.trim()
    );
    assert_eq!(refreshes(&two), 2);

    // Cleared: the file goes and the store is refreshed again.
    let cleared = run(
        &two.state.clone().with_config("contracts.ca", ""),
        Event::ConfigChanged,
    );
    assert!(cleared
        .state
        .container("livepatch")
        .unwrap()
        .file_text(CA_PATH)
        .is_none());
    assert_eq!(refreshes(&cleared), 3);
    assert_eq!(env(&cleared), env(&started));
}

#[test]
fn a_failing_trust_store_refresh_is_reported_and_nothing_restarts() {
    let started = run(&world(), Event::ConfigChanged);
    let mut state = started
        .state
        .clone()
        .with_config("contracts.ca", ca_b64("CA").0);
    let c = container_of(&mut state);
    c.execs
        .retain(|h| h.prefix.first().map(String::as_str) != Some("update-ca-certificates"));
    c.execs.push(ExecHandler::fail(
        &["update-ca-certificates"],
        1,
        "cannot write /etc/ssl/certs",
    ));
    let out = run(&state, Event::ConfigChanged);
    assert_eq!(
        out.state.unit_status,
        Status::blocked("contracts.ca: update-ca-certificates failed: exited with code 1: cannot write /etc/ssl/certs")
    );
    assert_eq!(
        env(&out),
        env(&started),
        "the running server keeps its configuration"
    );
}

#[test]
fn the_models_proxy_settings_reach_the_server_in_lower_case() {
    let state = run_with_env(
        &world(),
        Event::ConfigChanged,
        &[
            ("JUJU_CHARM_HTTP_PROXY", "http://proxy.example.com:3128"),
            ("JUJU_CHARM_HTTPS_PROXY", "https://proxy.example.com:3128"),
            ("JUJU_CHARM_NO_PROXY", "localhost,127.0.0.1"),
        ],
    );
    let env = &state.container("livepatch").unwrap().plan().services["livepatch"].environment;
    assert_eq!(env["http_proxy"], "http://proxy.example.com:3128");
    assert_eq!(env["https_proxy"], "https://proxy.example.com:3128");
    assert_eq!(env["no_proxy"], "localhost,127.0.0.1");
}

#[test]
fn without_model_proxies_no_proxy_variable_is_set() {
    let out = run(&world(), Event::ConfigChanged);
    let env = env(&out);
    for key in ["http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY"] {
        assert!(!env.contains_key(key), "{key}");
    }
}
