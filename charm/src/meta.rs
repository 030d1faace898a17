//! The charm's own metadata, config and actions files, compiled in, and the
//! defaults of `config.yaml` as `config-get` reports them.
//!
//! The YAML files at the repository root are the single source: charmcraft
//! packs them, the test harness reads them from here, and tests below keep
//! them consistent with the option table and with the previous charm.

use serde_json::Value;

use crate::config::RawConfig;

/// `metadata.yaml`.
pub const METADATA_YAML: &str = include_str!("../../metadata.yaml");
/// `config.yaml`.
pub const CONFIG_YAML: &str = include_str!("../../config.yaml");
/// `actions.yaml`.
pub const ACTIONS_YAML: &str = include_str!("../../actions.yaml");

/// One option as declared in `config.yaml`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct DeclaredOption {
    /// `type:`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `default:`, if any.
    #[serde(default)]
    pub default: Option<serde_yaml_ng::Value>,
    /// `description:`.
    #[serde(default)]
    pub description: String,
}

#[derive(serde::Deserialize)]
struct ConfigFile {
    options: std::collections::BTreeMap<String, DeclaredOption>,
}

/// Every option of `config.yaml`.
pub fn declared_options() -> std::collections::BTreeMap<String, DeclaredOption> {
    serde_yaml_ng::from_str::<ConfigFile>(CONFIG_YAML)
        .map(|c| c.options)
        .unwrap_or_default()
}

/// The options that have a default, with it, as `config-get --format=json`
/// prints them on a fresh deployment.
pub fn config_defaults() -> RawConfig {
    declared_options()
        .into_iter()
        .filter_map(|(name, o)| {
            let default = o.default?;
            let value = serde_json::to_value(default).ok()?;
            Some((name, value))
        })
        .collect()
}

/// Whether a JSON value is the Juju config-get rendering of `kind`.
pub fn value_has_kind(kind: &str, value: &Value) -> bool {
    match kind {
        "boolean" => value.is_boolean(),
        "int" => value.is_i64(),
        "float" => value.is_number(),
        "string" | "secret" => value.is_string(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::OPTIONS;

    #[test]
    fn config_yaml_and_the_option_table_declare_the_same_options() {
        let declared = declared_options();
        assert!(declared.len() > 100, "config.yaml did not parse");
        let table: Vec<&str> = OPTIONS.iter().map(|o| o.name).collect();
        let yaml: Vec<&str> = declared.keys().map(String::as_str).collect();
        assert_eq!(yaml, table);
        for spec in OPTIONS {
            let d = &declared[spec.name];
            assert_eq!(d.kind, spec.kind.juju_name(), "type of {}", spec.name);
            assert!(
                d.description.trim().len() > 10,
                "{} needs a useful description",
                spec.name
            );
            if let Some(default) = &d.default {
                let json = serde_json::to_value(default).unwrap();
                assert!(value_has_kind(&d.kind, &json), "default of {}", spec.name);
            }
        }
    }

    #[test]
    fn every_option_of_the_previous_charm_keeps_its_name_type_and_default() {
        let previous: std::collections::BTreeMap<String, Value> =
            serde_json::from_str(include_str!("../tests/data/previous-charm-options.json"))
                .unwrap();
        let declared = declared_options();
        for (name, old) in &previous {
            let new = declared
                .get(name)
                .unwrap_or_else(|| panic!("option {name} of the previous charm is missing"));
            assert_eq!(
                Some(new.kind.as_str()),
                old["type"].as_str(),
                "type of {name}"
            );
            let new_default = new
                .default
                .as_ref()
                .map(|d| serde_json::to_value(d).unwrap());
            assert_eq!(
                new_default.as_ref(),
                old.get("default"),
                "default of {name}"
            );
        }
    }

    #[test]
    fn the_defaults_pass_validation() {
        crate::config::CharmConfig::try_from(&config_defaults()).unwrap();
    }

    #[test]
    fn every_action_forbids_unknown_parameters() {
        let actions: std::collections::BTreeMap<String, serde_yaml_ng::Value> =
            serde_yaml_ng::from_str(ACTIONS_YAML).unwrap();
        assert!(actions.len() >= 14);
        for (name, action) in actions {
            assert_eq!(
                action.get("additionalProperties"),
                Some(&serde_yaml_ng::Value::Bool(false)),
                "{name}"
            );
        }
    }
}
