//! Pebble layers: the configuration a charm sends, and the plan it reads back.
//!
//! The types mirror Pebble's layer schema (pebble.md §4.3) field for field,
//! in Pebble's printed order. Enumerated values (`override`, `startup`,
//! `level`, exit actions) are kept as strings, as on the wire, because
//! Pebble's own validation (in [`super::plan`]) must be able to see and reject
//! a bad value with Pebble's message; the constants and builders below keep
//! charm code typo-free.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `override: replace`: the definition replaces any earlier one.
pub const REPLACE: &str = "replace";
/// `override: merge`: the definition is merged into an earlier one.
pub const MERGE: &str = "merge";
/// `startup: enabled`.
pub const ENABLED: &str = "enabled";
/// `startup: disabled`.
pub const DISABLED: &str = "disabled";

/// A layer: services, checks and log targets, each by name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Layer {
    /// One-line summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Longer description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Services by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, Service>,
    /// Health checks by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<String, Check>,
    /// Log forwarding targets by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub log_targets: BTreeMap<String, LogTarget>,
}

impl Layer {
    /// The layer as YAML, as `add_layer` sends it.
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).expect("a layer always serialises")
    }

    /// Parses a layer or plan from YAML (without Pebble's validation; see
    /// [`super::plan::parse_layer`] for that).
    pub fn from_yaml(text: &str) -> Result<Layer, serde_yaml_ng::Error> {
        if text.trim().is_empty() || text.trim() == "{}" {
            return Ok(Layer::default());
        }
        serde_yaml_ng::from_str(text)
    }
}

/// A service definition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Service {
    /// One-line summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Longer description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `enabled` to start on replan/autostart; anything else is disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<String>,
    /// `replace` or `merge`; required in every layer naming the service.
    #[serde(rename = "override", default, skip_serializing_if = "Option::is_none")]
    pub override_: Option<String>,
    /// The command, split like a shell would but never run by one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Services this one starts after.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Services this one starts before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before: Vec<String>,
    /// Services started along with this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    /// The workload this service belongs to (newer Pebble).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    /// Run as this UID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<u32>,
    /// Run as this user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Run as this GID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<u32>,
    /// Run as this group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// What to do on exit 0: `restart` (default), `shutdown`,
    /// `failure-shutdown`, `ignore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success: Option<String>,
    /// What to do on a non-zero exit: `restart` (default), `shutdown`,
    /// `success-shutdown`, `ignore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<String>,
    /// Per check, what to do when it fails.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub on_check_failure: BTreeMap<String, String>,
    /// First restart delay (Go duration, default 500ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_delay: Option<String>,
    /// Delay multiplier (default 2.0, at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_factor: Option<f64>,
    /// Longest restart delay (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_limit: Option<String>,
    /// Time between SIGTERM and SIGKILL (default 5s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_delay: Option<String>,
}

impl Service {
    /// A service running `command` with `override: replace` and
    /// `startup: enabled`: the usual shape of a charm-owned service.
    pub fn new(command: impl Into<String>) -> Service {
        Service {
            override_: Some(REPLACE.into()),
            startup: Some(ENABLED.into()),
            command: Some(command.into()),
            ..Service::default()
        }
    }

    /// Sets one environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Service {
        self.environment.insert(key.into(), value.into());
        self
    }

    /// Sets the user (and, by default, that user's group).
    pub fn user(mut self, user: impl Into<String>) -> Service {
        self.user = Some(user.into());
        self
    }

    /// Sets the group.
    pub fn group(mut self, group: impl Into<String>) -> Service {
        self.group = Some(group.into());
        self
    }

    /// Sets the summary.
    pub fn summary(mut self, summary: impl Into<String>) -> Service {
        self.summary = Some(summary.into());
        self
    }

    /// True when `startup: enabled`.
    pub fn is_enabled(&self) -> bool {
        self.startup.as_deref() == Some(ENABLED)
    }
}

/// A health check definition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Check {
    /// `replace` or `merge`.
    #[serde(rename = "override", default, skip_serializing_if = "Option::is_none")]
    pub override_: Option<String>,
    /// `alive` or `ready`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// `enabled` (default) or `disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<String>,
    /// How often it runs (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// How long one run may take (default 3s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Failures in a row before the check is down (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
    /// An HTTP GET that must answer 2xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    /// A TCP connect that must succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCheck>,
    /// A command that must exit 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecCheck>,
}

impl Check {
    /// An HTTP check on `url` with `override: replace`.
    pub fn http(url: impl Into<String>) -> Check {
        Check {
            override_: Some(REPLACE.into()),
            http: Some(HttpCheck {
                url: Some(url.into()),
                headers: BTreeMap::new(),
            }),
            ..Check::default()
        }
    }

    /// Sets the level (`alive` or `ready`).
    pub fn level(mut self, level: impl Into<String>) -> Check {
        self.level = Some(level.into());
        self
    }

    /// Sets the period (a Go duration such as `10s`).
    pub fn period(mut self, period: impl Into<String>) -> Check {
        self.period = Some(period.into());
        self
    }

    /// Sets the failure threshold.
    pub fn threshold(mut self, threshold: u32) -> Check {
        self.threshold = Some(threshold);
        self
    }
}

/// The `http` block of a check.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpCheck {
    /// The URL to GET.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// The `tcp` block of a check.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpCheck {
    /// The port to connect to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The host (default `localhost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// The `exec` block of a check.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ExecCheck {
    /// The command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Take environment, user and working directory from this service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_context: Option<String>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    /// Run as this UID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<u32>,
    /// Run as this user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Run as this GID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<u32>,
    /// Run as this group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
}

/// A log forwarding target.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogTarget {
    /// `loki`, `opentelemetry` or `syslog`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    /// The URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Which services' logs (`all`, `-name` to remove).
    #[serde(default)]
    pub services: Vec<String>,
    /// `replace` or `merge`.
    #[serde(rename = "override", default, skip_serializing_if = "Option::is_none")]
    pub override_: Option<String>,
    /// Labels added to each log line.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layer_round_trips_through_yaml_with_only_set_fields() {
        let mut layer = Layer {
            summary: Some("demo".into()),
            ..Layer::default()
        };
        layer.services.insert(
            "web".into(),
            Service::new("/usr/bin/web --port 8080")
                .env("PORT", "8080")
                .user("_daemon_"),
        );
        layer.checks.insert(
            "up".into(),
            Check::http("http://localhost:8080/").level("alive"),
        );
        let yaml = layer.to_yaml();
        assert!(!yaml.contains("null"), "{yaml}");
        assert!(yaml.contains("override: replace"), "{yaml}");
        assert!(!yaml.contains("log-targets"), "{yaml}");
        assert_eq!(Layer::from_yaml(&yaml).unwrap(), layer);
        assert_eq!(Layer::from_yaml("{}\n").unwrap(), Layer::default());
    }
}
