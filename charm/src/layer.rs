//! The charm's Pebble layer and the comparison with the current plan.
//!
//! The layer owns the whole `livepatch` service (`override: replace`) and its
//! liveness check, so the rock's own definitions never leak into a charmed
//! deployment (charm-contract.md, "Containers, user, files").

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

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

/// A Pebble layer as the charm writes it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Layer {
    /// One line for `pebble plan`.
    pub summary: String,
    /// Services by name.
    pub services: BTreeMap<String, Service>,
    /// Checks by name.
    pub checks: BTreeMap<String, Check>,
}

/// A service definition (the fields the charm sets).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub struct Service {
    /// `replace`: the charm owns the whole definition.
    #[serde(rename = "override")]
    pub override_: String,
    /// One line for `pebble services`.
    #[serde(default)]
    pub summary: String,
    /// The command, run without a shell.
    pub command: String,
    /// `enabled`, so a replan starts it.
    #[serde(default)]
    pub startup: String,
    /// The server's whole configuration.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// The user it runs as.
    #[serde(default)]
    pub user: String,
    /// The group it runs as.
    #[serde(default)]
    pub group: String,
}

/// Debug shows variable names only: the values hold the database password
/// and other credentials.
impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("command", &self.command)
            .field("startup", &self.startup)
            .field("user", &self.user)
            .field("environment", &self.environment.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Layer")
            .field("services", &self.services)
            .field("checks", &self.checks)
            .finish()
    }
}

/// An HTTP check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Check {
    /// `replace`.
    #[serde(rename = "override")]
    pub override_: String,
    /// `alive`: Pebble restarts the service when it fails.
    #[serde(default)]
    pub level: String,
    /// How often it runs.
    #[serde(default)]
    pub period: String,
    /// Failures in a row before the check is down.
    #[serde(default)]
    pub threshold: u32,
    /// The HTTP probe.
    #[serde(default)]
    pub http: Option<HttpCheck>,
}

/// `http: {url}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HttpCheck {
    /// The URL probed.
    pub url: String,
}

/// The charm's layer for a server with this environment.
pub fn livepatch_layer(environment: BTreeMap<String, String>) -> Layer {
    let service = Service {
        override_: "replace".into(),
        summary: "Livepatch server".into(),
        command: SERVER_COMMAND.into(),
        startup: "enabled".into(),
        environment,
        user: USER.into(),
        group: USER.into(),
    };
    let check = Check {
        override_: "replace".into(),
        level: "alive".into(),
        period: "10s".into(),
        threshold: 3,
        http: Some(HttpCheck {
            url: "http://localhost:8080/debug/info".into(),
        }),
    };
    Layer {
        summary: "Livepatch server, configured by the livepatch-server-k8s charm".into(),
        services: [(SERVICE.to_string(), service)].into(),
        checks: [(CHECK.to_string(), check)].into(),
    }
}

impl Layer {
    /// The layer as YAML for `POST /v1/layers`.
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).unwrap_or_default()
    }
}

/// The parts of a combined plan the charm compares.
#[derive(Deserialize, Default)]
struct Plan {
    #[serde(default)]
    services: BTreeMap<String, Service>,
    #[serde(default)]
    checks: BTreeMap<String, Check>,
}

/// Whether the plan (`GET /v1/plan?format=yaml`) already holds the charm's
/// service and check exactly as `layer` defines them. Anything unreadable
/// counts as different, so the layer is written again.
pub fn plan_matches(plan_yaml: &str, layer: &Layer) -> bool {
    let Ok(plan) = serde_yaml_ng::from_str::<Plan>(plan_yaml) else {
        return false;
    };
    let services_match = layer.services.iter().all(|(name, want)| {
        plan.services.get(name).is_some_and(|have| {
            have.command == want.command
                && have.startup == want.startup
                && have.environment == want.environment
                && have.user == want.user
                && have.group == want.group
        })
    });
    let checks_match = layer.checks.iter().all(|(name, want)| {
        plan.checks.get(name).is_some_and(|have| {
            have.level == want.level
                && go_duration_eq(&have.period, &want.period)
                && have.threshold == want.threshold
                && have.http == want.http
        })
    });
    services_match && checks_match
}

fn go_duration_eq(a: &str, b: &str) -> bool {
    match (
        crate::options::parse_go_duration(a),
        crate::options::parse_go_duration(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
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
        let check = &value["checks"]["livepatch-check"];
        assert_eq!(check["override"], "replace");
        assert_eq!(check["level"], "alive");
        assert_eq!(check["period"], "10s");
        assert_eq!(check["threshold"], 3);
        assert_eq!(check["http"]["url"], "http://localhost:8080/debug/info");
    }

    #[test]
    fn a_plan_printed_by_pebble_matches_the_layer_it_came_from() {
        let layer = livepatch_layer(env());
        // Pebble prints durations in Go form and adds fields of its own.
        let plan = "services:\n    livepatch:\n        summary: Livepatch server\n        startup: enabled\n        override: replace\n        command: /usr/local/bin/livepatch-server\n        environment:\n            LP_DATABASE_CONNECTION_STRING: postgresql://u:hunter2@h/db\n            LP_SERVER_SERVER_ADDRESS: :8080\n        user: _daemon_\n        group: _daemon_\nchecks:\n    livepatch-check:\n        override: replace\n        level: alive\n        period: 10s\n        threshold: 3\n        http:\n            url: http://localhost:8080/debug/info\n";
        assert!(plan_matches(plan, &layer));
        let changed = plan.replace("hunter2", "hunter3");
        assert!(!plan_matches(&changed, &layer));
        assert!(!plan_matches("{}", &layer));
        assert!(!plan_matches("not: [yaml", &layer));
    }

    #[test]
    fn debug_output_hides_environment_values() {
        let debug = format!("{:?}", livepatch_layer(env()));
        assert!(debug.contains("LP_DATABASE_CONNECTION_STRING"));
        assert!(!debug.contains("hunter2"));
    }
}
