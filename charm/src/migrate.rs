//! `emit-updated-config`: translates the configuration of the legacy
//! (reactive, machine) Livepatch charm into options of this charm
//! (livepatch-server.md §14.5).
//!
//! Input is what `juju config <legacy-app> --format yaml` prints: a
//! `settings:` (or `options:`) map whose entries carry a `value`. Each known
//! legacy key maps to a new option (or to nothing, when the feature is gone);
//! setting some keys also switches on the feature they belong to.

use serde_yaml_ng::{Mapping, Value};

/// Legacy key → new option (`None`: the option has no successor).
const RENAMES: &[(&str, Option<&str>)] = &[
    ("auth_basic_users", Some("auth.basic.users")),
    ("auth_lp_teams", Some("auth.sso.teams")),
    ("auth_sso_location", Some("auth.sso.url")),
    ("auth_sso_public_key", Some("auth.sso.public-key")),
    (
        "blocklist_cache_refresh",
        Some("patch-blocklist.refresh-interval"),
    ),
    ("burst_limit", Some("server.burst-limit")),
    ("cloud_delay_default_delay_hours", None),
    ("concurrency_limit", Some("server.concurrency-limit")),
    ("contract_server_password", Some("contracts.password")),
    ("contract_server_url", Some("contracts.url")),
    ("contract_server_user", Some("contracts.user")),
    ("dbconn_max", Some("database.connection-pool-max")),
    (
        "dbconn_max_lifetime",
        Some("database.connection-lifetime-max"),
    ),
    (
        "event_bus_brokers",
        Some("machine-reports.event-bus.brokers"),
    ),
    (
        "event_bus_ca_cert",
        Some("machine-reports.event-bus.ca-cert"),
    ),
    (
        "event_bus_client_cert",
        Some("machine-reports.event-bus.client-cert"),
    ),
    (
        "event_bus_client_key",
        Some("machine-reports.event-bus.client-key"),
    ),
    ("http_proxy", Some("patch-sync.proxy.http")),
    ("https_proxy", Some("patch-sync.proxy.https")),
    ("is_cloud_delay_enabled", None),
    ("kpi_reports", Some("kpi-reports.interval")),
    ("log_level", Some("server.log-level")),
    ("no_proxy", Some("patch-sync.proxy.no-proxy")),
    ("patch_cache_on", Some("patch-cache.enabled")),
    ("patch_cache_size", Some("patch-cache.cache-size")),
    ("patch_cache_ttl", Some("patch-cache.cache-ttl")),
    ("patch_sync_enabled", Some("patch-sync.enabled")),
    ("patchstore", Some("patch-storage.type")),
    (
        "profiler_block_profile_rate",
        Some("profiler.block_profile_rate"),
    ),
    ("profiler_enabled", Some("profiler.enabled")),
    ("profiler_hostname", Some("profiler.hostname")),
    (
        "profiler_mutex_profile_fraction",
        Some("profiler.mutex_profile_fraction"),
    ),
    (
        "profiler_profile_allocations",
        Some("profiler.profile_allocations"),
    ),
    ("profiler_profile_blocks", Some("profiler.profile_blocks")),
    (
        "profiler_profile_goroutines",
        Some("profiler.profile_goroutines"),
    ),
    ("profiler_profile_inuse", Some("profiler.profile_inuse")),
    ("profiler_profile_mutexes", Some("profiler.profile_mutexes")),
    ("profiler_sample_rate", Some("profiler.sample_rate")),
    ("profiler_server_address", Some("profiler.server_address")),
    ("profiler_upload_rate", Some("profiler.upload_rate")),
    ("psql_dbname", None),
    ("psql_roles", None),
    (
        "report_cleanup_interval",
        Some("machine-reports.database.cleanup-interval"),
    ),
    (
        "report_cleanup_row_limit",
        Some("machine-reports.database.cleanup-row-limit"),
    ),
    (
        "report_retention",
        Some("machine-reports.database.retention-days"),
    ),
    ("s3_access_key_id", Some("patch-storage.s3-access-key")),
    ("s3_bucket", Some("patch-storage.s3-bucket")),
    ("s3_endpoint", Some("patch-storage.s3-endpoint")),
    ("s3_region", Some("patch-storage.s3-region")),
    ("s3_secret_key", Some("patch-storage.s3-secret-key")),
    ("s3_secure", Some("patch-storage.s3-secure")),
    ("storage_path", Some("patch-storage.filesystem-path")),
    ("swift_apikey", Some("patch-storage.swift-api-key")),
    ("swift_auth_url", Some("patch-storage.swift-auth-url")),
    (
        "swift_container_name",
        Some("patch-storage.swift-container"),
    ),
    ("swift_domain_name", Some("patch-storage.swift-domain")),
    ("swift_region_name", Some("patch-storage.swift-region")),
    ("swift_tenant_name", Some("patch-storage.swift-tenant")),
    ("swift_username", Some("patch-storage.swift-username")),
    ("sync_architectures", Some("patch-sync.architectures")),
    ("sync_flavors", Some("patch-sync.flavors")),
    ("sync_identity", None),
    ("sync_interval", Some("patch-sync.interval")),
    (
        "sync_minimum_kernel_version",
        Some("patch-sync.minimum-kernel-version"),
    ),
    (
        "sync_send_machine_reports",
        Some("patch-sync.send-machine-reports"),
    ),
    ("sync_tier", None),
    ("sync_token", Some("patch-sync.token")),
    ("sync_upstream", Some("patch-sync.upstream-url")),
    ("sync_upstream_tier", None),
    ("url_template", Some("server.url-template")),
];

/// Legacy key that, when set to a non-empty value, also sets an option.
const IMPLIES: &[(&str, &str, Implied)] = &[
    ("auth_basic_users", "auth.basic.enabled", Implied::True),
    ("auth_lp_teams", "auth.sso.enabled", Implied::True),
    ("auth_sso_public_key", "auth.sso.enabled", Implied::True),
    (
        "blocklist_cache_refresh",
        "patch-blocklist.enabled",
        Implied::True,
    ),
    (
        "contract_server_password",
        "contracts.enabled",
        Implied::True,
    ),
    ("contract_server_user", "contracts.enabled", Implied::True),
    (
        "event_bus_brokers",
        "machine-reports.event-bus.enabled",
        Implied::True,
    ),
    (
        "event_bus_ca_cert",
        "machine-reports.event-bus.enabled",
        Implied::True,
    ),
    (
        "event_bus_client_cert",
        "machine-reports.event-bus.enabled",
        Implied::True,
    ),
    (
        "event_bus_client_key",
        "machine-reports.event-bus.enabled",
        Implied::True,
    ),
    ("filebacked", "patch-storage.type", Implied::Filesystem),
    ("http_proxy", "patch-sync.proxy.enabled", Implied::True),
    ("https_proxy", "patch-sync.proxy.enabled", Implied::True),
    ("kpi_reports", "kpi-reports.enabled", Implied::True),
    ("no_proxy", "patch-sync.proxy.enabled", Implied::True),
    ("sync_architectures", "patch-sync.enabled", Implied::True),
    ("sync_flavors", "patch-sync.enabled", Implied::True),
    ("sync_interval", "patch-sync.enabled", Implied::True),
    (
        "sync_minimum_kernel_version",
        "patch-sync.enabled",
        Implied::True,
    ),
    ("sync_token", "patch-sync.enabled", Implied::True),
    ("sync_upstream", "patch-sync.enabled", Implied::True),
];

#[derive(Debug, Clone, Copy)]
enum Implied {
    True,
    Filesystem,
}

impl Implied {
    fn value(self) -> Value {
        match self {
            Implied::True => Value::Bool(true),
            Implied::Filesystem => Value::String("filesystem".into()),
        }
    }
}

/// The translation's results.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    /// YAML rooted at the application's name, for `juju config <app> --file`.
    pub new_config: String,
    /// Legacy keys with no successor, in file order.
    pub removed_keys: Vec<String>,
    /// Legacy keys this translation does not know, in file order.
    pub unrecognized_keys: Vec<String>,
}

/// Why a translation failed; the texts are the previous charm's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MigrateError {
    /// Not a YAML mapping at all.
    #[error("invalid config file format. Got content {0}")]
    Format(String),
    /// Not YAML.
    #[error("Failed to parse YAML: {0}")]
    Yaml(String),
    /// A key that cannot be translated.
    #[error("Failed to map old config to new config: {0}")]
    Map(String),
}

/// Translates `text` (the legacy charm's `juju config` YAML); `root` names
/// the application the result is for.
pub fn translate(text: &str, root: &str) -> Result<Translation, MigrateError> {
    let doc: Value =
        serde_yaml_ng::from_str(text).map_err(|e| MigrateError::Yaml(e.to_string()))?;
    let Value::Mapping(doc) = doc else {
        return Err(MigrateError::Format(text.to_string()));
    };
    let settings = ["options", "settings"]
        .iter()
        .find_map(|k| match doc.get(*k) {
            Some(Value::Mapping(m)) if !m.is_empty() => Some(m),
            _ => None,
        })
        .ok_or_else(|| {
            MigrateError::Map("no `settings` (or `options`) section with values found".into())
        })?;

    let mut out = Mapping::new();
    let mut removed_keys = Vec::new();
    let mut unrecognized_keys = Vec::new();
    for (key, entry) in settings {
        let Some(key) = key.as_str() else {
            unrecognized_keys.push(format!("{key:?}"));
            continue;
        };
        let value = entry.get("value").cloned().filter(|v| !v.is_null());
        let is_set = value
            .as_ref()
            .is_some_and(|v| v.as_str().is_none_or(|s| !s.is_empty()));
        if is_set {
            if let Some((_, option, implied)) = IMPLIES.iter().find(|(k, _, _)| *k == key) {
                out.insert(Value::String((*option).into()), implied.value());
            }
        }
        match RENAMES.iter().find(|(k, _)| *k == key) {
            // A key that only switches a feature on is known, not unrecognised.
            None if IMPLIES.iter().any(|(k, _, _)| *k == key) => {}
            None => unrecognized_keys.push(key.to_string()),
            Some((_, None)) => removed_keys.push(key.to_string()),
            Some((_, Some(option))) => {
                let Some(value) = value else {
                    return Err(MigrateError::Map(format!(
                        "{key} doesn't have a set value for it"
                    )));
                };
                if value.as_str() == Some("") {
                    continue;
                }
                out.insert(Value::String((*option).into()), value);
            }
        }
    }
    // The legacy charm spelled filesystem storage `file`.
    let storage_key = Value::String("patch-storage.type".into());
    if out.get(&storage_key).and_then(Value::as_str) == Some("file") {
        out.insert(storage_key, Value::String("filesystem".into()));
    }
    // Sorted, so the output is stable whatever the input order.
    let mut sorted: Vec<(Value, Value)> = out.into_iter().collect();
    sorted.sort_by(|a, b| a.0.as_str().cmp(&b.0.as_str()));
    let mut root_map = Mapping::new();
    root_map.insert(
        Value::String(root.into()),
        Value::Mapping(sorted.into_iter().collect()),
    );
    let new_config = serde_yaml_ng::to_string(&Value::Mapping(root_map))
        .map_err(|e| MigrateError::Map(e.to_string()))?;
    Ok(Translation {
        new_config: new_config.trim_end().to_string(),
        removed_keys,
        unrecognized_keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEGACY: &str = r#"application: livepatch
application-config:
  trust:
    default: false
    description: Does this application have access to trusted credentials
    source: default
    type: bool
    value: false
charm: canonical-livepatch-server
settings:
  auth_basic_users:
    default: ""
    description: Comma-separated list of user:hash pairs.
    source: user
    type: string
    value: admin:$2y$10$Y8o/3mvBaM7SfdNoHf9v4eWKh9yXHBS1YRKqKRpIhyfnAVD7f4qzK
  burst_limit:
    source: default
    type: int
    value: 500
  filebacked:
    source: user
    type: boolean
    value: true
  nagios_context:
    source: default
    type: string
    value: juju
  patchstore:
    source: user
    type: string
    value: file
  psql_dbname:
    source: default
    type: string
    value: livepatch
  sync_token:
    source: user
    type: string
    value: ""
  sync_upstream:
    source: user
    type: string
    value: https://livepatch.canonical.com
  url_template:
    source: user
    type: string
    value: https://lp.example.com/v1/patches/{filename}
"#;

    #[test]
    fn a_legacy_configuration_is_translated() {
        let t = translate(LEGACY, "livepatch-server-k8s").unwrap();
        let parsed: Value = serde_yaml_ng::from_str(&t.new_config).unwrap();
        let opts = &parsed["livepatch-server-k8s"];
        assert_eq!(
            opts["auth.basic.users"].as_str().unwrap().split(':').next(),
            Some("admin")
        );
        assert_eq!(opts["auth.basic.enabled"], Value::Bool(true));
        assert_eq!(opts["server.burst-limit"].as_i64(), Some(500));
        assert_eq!(opts["patch-storage.type"].as_str(), Some("filesystem"));
        assert_eq!(opts["patch-sync.enabled"], Value::Bool(true));
        assert_eq!(
            opts["patch-sync.upstream-url"].as_str(),
            Some("https://livepatch.canonical.com")
        );
        assert_eq!(
            opts["server.url-template"].as_str(),
            Some("https://lp.example.com/v1/patches/{filename}")
        );
        // An empty legacy value is dropped and switches nothing on.
        assert!(opts.get("patch-sync.token").is_none());
        assert_eq!(t.removed_keys, ["psql_dbname"]);
        assert_eq!(t.unrecognized_keys, ["nagios_context"]);
        // Every translated option is an option of this charm (or one the
        // server accepts and ignores, like the event bus).
        let declared = crate::meta::declared_options();
        for key in opts.as_mapping().unwrap().keys() {
            let key = key.as_str().unwrap();
            assert!(
                declared.contains_key(key) || key.starts_with("machine-reports.event-bus."),
                "{key}"
            );
        }
    }

    #[test]
    fn translation_failures_use_the_previous_texts() {
        assert_eq!(
            translate("invalid", "app").unwrap_err().to_string(),
            "invalid config file format. Got content invalid"
        );
        let missing =
            "settings:\n  auth_basic_users:\n    default: \"\"\n    type: string\n    value:";
        assert_eq!(
            translate(missing, "app").unwrap_err().to_string(),
            "Failed to map old config to new config: auth_basic_users doesn't have a set value for it"
        );
        assert!(translate("a: [b", "app")
            .unwrap_err()
            .to_string()
            .starts_with("Failed to parse YAML: "));
        assert!(translate("charm: x", "app")
            .unwrap_err()
            .to_string()
            .starts_with("Failed to map old config to new config: no `settings`"));
    }

    #[test]
    fn the_rename_table_is_sorted_and_targets_real_options() {
        for pair in RENAMES.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} / {}", pair[0].0, pair[1].0);
        }
        let declared = crate::meta::declared_options();
        for (old, new) in RENAMES {
            if let Some(new) = new {
                assert!(
                    declared.contains_key(*new) || new.starts_with("machine-reports.event-bus."),
                    "{old} -> {new}"
                );
            }
        }
    }
}
