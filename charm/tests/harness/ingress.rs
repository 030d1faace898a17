//! The two ingress relations and switching between them.

use ops::testing::{Relation, State};
use ops::{Event, Status};

use crate::world::*;

fn nginx() -> Relation {
    Relation::new("nginx-route", 21, "nginx-ingress-integrator").with_remote_unit(0, &[])
}

fn traefik(url: Option<&str>) -> Relation {
    let rel = Relation::new("ingress", 22, "traefik-k8s").with_remote_unit(0, &[]);
    match url {
        Some(u) => rel.with_remote_app_data(&[("ingress", &format!(r#"{{"url": "{u}"}}"#))]),
        None => rel,
    }
}

fn with_both(state: State, url: Option<&str>) -> State {
    state.with_relation(nginx()).with_relation(traefik(url))
}

fn nginx_bag(state: &State) -> std::collections::BTreeMap<String, String> {
    state.relation(21).unwrap().local_app_data.clone()
}

fn traefik_bag(state: &State) -> std::collections::BTreeMap<String, String> {
    state.relation(22).unwrap().local_app_data.clone()
}

#[test]
fn nginx_route_is_the_default_with_plain_strings() {
    let out = run(&with_both(world(), None), Event::ConfigChanged);
    let bag = nginx_bag(&out.state);
    assert_eq!(bag["service-hostname"], APP);
    assert_eq!(bag["service-name"], APP);
    assert_eq!(bag["service-port"], "8080");
    assert_eq!(bag["service-namespace"], out.state.model.name);
    assert!(traefik_bag(&out.state).is_empty());
}

#[test]
fn traefik_ingress_gets_json_encoded_fields_and_its_url_builds_the_template() {
    let mut state = with_both(
        world(),
        Some("http://lp.example.com/test-model-livepatch-server-k8s"),
    )
    .with_config("ingress-interface", "ingress");
    state.config.remove("server.url-template");
    let out = run(&state, Event::ConfigChanged);
    let app = traefik_bag(&out.state);
    assert_eq!(app["name"], format!("\"{APP}\""));
    assert_eq!(app["model"], format!("\"{}\"", out.state.model.name));
    assert_eq!(app["port"], "8080");
    let unit = &out.state.relation(22).unwrap().local_unit_data;
    assert_eq!(
        unit["host"],
        format!(
            "\"livepatch-server-k8s-0.livepatch-server-k8s-endpoints.{}.svc.cluster.local\"",
            out.state.model.name
        )
    );
    assert!(nginx_bag(&out.state).is_empty());
    assert_eq!(
        env(&out)["LP_SERVER_URL_TEMPLATE"],
        "http://lp.example.com/test-model-livepatch-server-k8s/v1/patches/{filename}"
    );
    assert_eq!(
        out.state.unit_status.name,
        ops::hookcmds::StatusName::Active
    );
}

#[test]
fn a_configured_template_wins_over_the_ingress_url() {
    let state = with_both(world(), Some("http://lp.example.com/x"))
        .with_config("ingress-interface", "ingress");
    assert_eq!(
        env(&run(&state, Event::ConfigChanged))["LP_SERVER_URL_TEMPLATE"],
        URL_TEMPLATE
    );
}

#[test]
fn switching_in_every_order_writes_only_the_chosen_relation() {
    let orders: &[&[&str]] = &[
        &["legacy-nginx-route", "ingress"],
        &["ingress", "legacy-nginx-route"],
        &["legacy-nginx-route", "ingress", "legacy-nginx-route"],
        &["invalid-ingress", "legacy-nginx-route"],
        &["invalid-ingress", "ingress"],
        &["ingress", "invalid-ingress", "legacy-nginx-route"],
    ];
    for order in orders {
        let mut state = with_both(world(), Some("http://lp.example.com/x"));
        let mut last_valid: Option<&str> = None;
        for choice in order.iter() {
            state = state.with_config("ingress-interface", *choice);
            let out = run(&state, Event::ConfigChanged);
            state = out.state.clone();
            match *choice {
                "invalid-ingress" => {
                    assert_eq!(
                        out.state.unit_status,
                        Status::blocked("Invalid ingress interface specified: invalid-ingress"),
                        "{order:?}"
                    );
                    // Nothing is rewritten while the option is invalid.
                    assert!(
                        !out.hook_command_names().contains(&"relation-set"),
                        "{order:?}"
                    );
                }
                "ingress" => {
                    assert!(!traefik_bag(&state).is_empty(), "{order:?}");
                    assert!(nginx_bag(&state).is_empty(), "{order:?}");
                    last_valid = Some(choice);
                }
                _ => {
                    assert_eq!(nginx_bag(&state)["service-port"], "8080", "{order:?}");
                    assert!(traefik_bag(&state).is_empty(), "{order:?}");
                    assert!(
                        !state
                            .relation(22)
                            .unwrap()
                            .local_unit_data
                            .contains_key("host"),
                        "{order:?}"
                    );
                    last_valid = Some(choice);
                }
            }
        }
        assert!(last_valid.is_some());
        assert_eq!(
            state.unit_status.name,
            ops::hookcmds::StatusName::Active,
            "{order:?}"
        );
    }
}

#[test]
fn followers_write_only_their_own_unit_bag() {
    let state = State {
        leader: false,
        ..with_both(world(), None).with_config("ingress-interface", "ingress")
    };
    let out = run(&state, Event::ConfigChanged);
    assert!(traefik_bag(&out.state).is_empty());
    assert!(nginx_bag(&out.state).is_empty());
    assert!(out
        .state
        .relation(22)
        .unwrap()
        .local_unit_data
        .contains_key("host"));
}
