//! The charm's Pebble layer and the comparison with the current plan.
//!
//! The layer owns the whole `livepatch` service (`override: replace`) and its
//! liveness check, so the rock's own definitions never leak into a charmed
//! deployment (charm-contract.md, "Containers, user, files").

use std::collections::BTreeMap;

use ops::pebble::{plan, Check, Layer, Service};

/// The service's name in the plan.
pub const SERVICE: &str = "livepatch";
/// The liveness check's name.
pub const CHECK: &str = "livepatch-check";
/// The label the charm adds its layer under.
pub const LABEL: &str = "livepatch-charm";
/// The server binary.
pub const SERVER_COMMAND: &str = "/usr/local/bin/livepatch-server";
/// The unprivileged user the server runs as (UID/GID 584792 in the rock).
pub const USER: &str = "_daemon_";

/// The charm's layer for a server with this environment.
pub fn livepatch_layer(environment: BTreeMap<String, String>) -> Layer {
    let mut service = Service::new(SERVER_COMMAND)
        .summary("Livepatch server")
        .user(USER)
        .group(USER);
    service.environment = environment;
    let check = Check::http("http://localhost:8080/debug/info")
        .level("alive")
        .period("10s")
        .threshold(3);
    let mut layer = Layer {
        summary: Some("Livepatch server, configured by the livepatch-server-k8s charm".into()),
        ..Layer::default()
    };
    layer.services.insert(SERVICE.into(), service);
    layer.checks.insert(CHECK.into(), check);
    layer
}

/// The service's environment in `layer`, if it defines the service.
pub fn environment(layer: &Layer) -> Option<&BTreeMap<String, String>> {
    layer.services.get(SERVICE).map(|s| &s.environment)
}

/// Whether the current `plan` already holds the charm's service and check
/// exactly as `layer` defines them (after Pebble's own normalisation, so a
/// `10s` printed back as `10s` or a defaulted threshold compare equal).
pub fn plan_matches(current: &Layer, layer: &Layer) -> bool {
    let wanted = plan::combine(&[(LABEL.to_string(), layer.clone())]).and_then(plan::finish_plan);
    let Ok(wanted) = wanted else {
        return false;
    };
    current.services.get(SERVICE) == wanted.services.get(SERVICE)
        && current.checks.get(CHECK) == wanted.checks.get(CHECK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        [
            ("LP_SERVER_SERVER_ADDRESS".to_string(), ":8080".to_string()),
            (
                "LP_DATABASE_CONNECTION_STRING".to_string(),
                "postgresql://u:hunter2@h/db".to_string(),
            ),
        ]
        .into()
    }

    #[test]
    fn the_layer_owns_the_service_and_check() {
        let yaml = livepatch_layer(env()).to_yaml();
        let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).unwrap();
        let svc = &value["services"]["livepatch"];
        assert_eq!(svc["override"], "replace");
        assert_eq!(svc["command"], "/usr/local/bin/livepatch-server");
        assert_eq!(svc["startup"], "enabled");
        assert_eq!(svc["user"], "_daemon_");
        assert_eq!(svc["group"], "_daemon_");
        let check = &value["checks"]["livepatch-check"];
        assert_eq!(check["override"], "replace");
        assert_eq!(check["level"], "alive");
        assert_eq!(check["period"], "10s");
        assert_eq!(check["threshold"], 3);
        assert_eq!(check["http"]["url"], "http://localhost:8080/debug/info");
    }

    #[test]
    fn a_plan_made_from_the_layer_matches_it_and_a_changed_one_does_not() {
        let layer = livepatch_layer(env());
        let plan =
            plan::finish_plan(plan::combine(&[("x".into(), layer.clone())]).unwrap()).unwrap();
        assert!(plan_matches(&plan, &layer));
        let mut other = env();
        other.insert(
            "LP_DATABASE_CONNECTION_STRING".into(),
            "postgresql://u:x@h/db".into(),
        );
        assert!(!plan_matches(&plan, &livepatch_layer(other)));
        assert!(!plan_matches(&Layer::default(), &layer));
    }
}
