//! What the charm declares: `metadata.yaml`, `config.yaml`, `actions.yaml`.
//!
//! The fake Juju needs the declarations to answer as Juju would (config
//! defaults, action parameter defaults, which endpoints exist) and the
//! consistency checker needs them to reject impossible test inputs.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A declaration file is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read {file}: {message}")]
pub struct MetaError {
    /// Which file.
    pub file: String,
    /// What is wrong.
    pub message: String,
}

/// An endpoint (`requires`, `provides` or `peers`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The interface name.
    pub interface: String,
    /// At most this many relations (`limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Which section declared it.
    pub role: Role,
}

/// The section an endpoint is declared in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `requires`.
    Requires,
    /// `provides`.
    Provides,
    /// `peers`.
    Peers,
}

/// A config option's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptionType {
    /// `string`.
    String,
    /// `int`.
    Int,
    /// `float`.
    Float,
    /// `boolean`.
    Boolean,
    /// `secret`: the value is a secret URI.
    Secret,
}

/// One config option.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigOption {
    /// Its type.
    #[serde(rename = "type")]
    pub option_type: OptionType,
    /// Its default, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
}

impl OptionType {
    /// The type as `config.yaml` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            OptionType::String => "string",
            OptionType::Int => "int",
            OptionType::Float => "float",
            OptionType::Boolean => "boolean",
            OptionType::Secret => "secret",
        }
    }
}

impl ConfigOption {
    /// Whether `value` has this option's type.
    pub fn accepts(&self, value: &Value) -> bool {
        match self.option_type {
            OptionType::String => value.is_string(),
            OptionType::Int => value.is_i64() || value.is_u64(),
            OptionType::Float => value.is_number(),
            OptionType::Boolean => value.is_boolean(),
            OptionType::Secret => value.as_str().is_some_and(|s| s.starts_with("secret:")),
        }
    }
}

/// One action.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// Parameters: name → JSON Schema (`type`, `default`, …).
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    /// Parameters that must be given.
    #[serde(default)]
    pub required: Vec<String>,
    /// Whether undeclared parameters are accepted.
    #[serde(default = "default_true", rename = "additionalProperties")]
    pub additional_properties: bool,
}

fn default_true() -> bool {
    true
}

/// Everything the charm declares.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// The charm name.
    pub name: String,
    /// Workload containers.
    pub containers: Vec<String>,
    /// Endpoints by name.
    pub endpoints: BTreeMap<String, Endpoint>,
    /// Storage names and types.
    pub storage: BTreeMap<String, String>,
    /// Resource names and types.
    pub resources: BTreeMap<String, String>,
    /// Config options.
    pub config: BTreeMap<String, ConfigOption>,
    /// Actions.
    pub actions: BTreeMap<String, Action>,
}

#[derive(Deserialize)]
struct RawMetadata {
    name: String,
    #[serde(default)]
    containers: BTreeMap<String, Value>,
    #[serde(default)]
    requires: BTreeMap<String, RawEndpoint>,
    #[serde(default)]
    provides: BTreeMap<String, RawEndpoint>,
    #[serde(default)]
    peers: BTreeMap<String, RawEndpoint>,
    #[serde(default)]
    storage: BTreeMap<String, RawTyped>,
    #[serde(default)]
    resources: BTreeMap<String, RawTyped>,
    /// The unified charmcraft.yaml form carries config and actions inline.
    #[serde(default)]
    config: Option<RawConfig>,
    #[serde(default)]
    actions: Option<BTreeMap<String, Action>>,
}

#[derive(Deserialize)]
struct RawEndpoint {
    interface: String,
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Deserialize)]
struct RawTyped {
    #[serde(rename = "type", default)]
    kind: String,
}

#[derive(Deserialize, Default)]
struct RawConfig {
    #[serde(default)]
    options: BTreeMap<String, ConfigOption>,
}

impl Meta {
    /// Parses the three declaration files. `config_yaml` and `actions_yaml`
    /// may be empty (or `{}`), and may instead be inline in `metadata_yaml`
    /// (charmcraft's unified form).
    pub fn parse(
        metadata_yaml: &str,
        config_yaml: &str,
        actions_yaml: &str,
    ) -> Result<Meta, MetaError> {
        let err = |file: &str| {
            let file = file.to_owned();
            move |e: serde_yaml_ng::Error| MetaError {
                file: file.clone(),
                message: e.to_string(),
            }
        };
        let raw: RawMetadata =
            serde_yaml_ng::from_str(metadata_yaml).map_err(err("metadata.yaml"))?;
        let config: RawConfig = if config_yaml.trim().is_empty() {
            raw.config.unwrap_or_default()
        } else {
            serde_yaml_ng::from_str::<Option<RawConfig>>(config_yaml)
                .map_err(err("config.yaml"))?
                .unwrap_or_default()
        };
        let actions: BTreeMap<String, Action> = if actions_yaml.trim().is_empty() {
            raw.actions.unwrap_or_default()
        } else {
            serde_yaml_ng::from_str::<Option<BTreeMap<String, Action>>>(actions_yaml)
                .map_err(err("actions.yaml"))?
                .unwrap_or_default()
        };
        let mut endpoints = BTreeMap::new();
        for (section, role) in [
            (raw.requires, Role::Requires),
            (raw.provides, Role::Provides),
            (raw.peers, Role::Peers),
        ] {
            for (name, ep) in section {
                if endpoints.contains_key(&name) {
                    return Err(MetaError {
                        file: "metadata.yaml".into(),
                        message: format!("endpoint {name:?} is declared twice"),
                    });
                }
                endpoints.insert(
                    name,
                    Endpoint {
                        interface: ep.interface,
                        limit: ep.limit,
                        role,
                    },
                );
            }
        }
        for (name, opt) in &config.options {
            if let Some(d) = &opt.default {
                // Juju accepts an int default for a float option.
                if !d.is_null() && !opt.accepts(d) && opt.option_type != OptionType::Secret {
                    return Err(MetaError {
                        file: "config.yaml".into(),
                        message: format!(
                            "default of option {name:?} is not of type {}",
                            opt.option_type.as_str()
                        ),
                    });
                }
            }
        }
        Ok(Meta {
            name: raw.name,
            containers: raw.containers.into_keys().collect(),
            endpoints,
            storage: raw.storage.into_iter().map(|(k, v)| (k, v.kind)).collect(),
            resources: raw
                .resources
                .into_iter()
                .map(|(k, v)| (k, v.kind))
                .collect(),
            config: config.options,
            actions,
        })
    }

    /// Reads `metadata.yaml`, `config.yaml` and `actions.yaml` from a charm
    /// directory (the last two are optional).
    pub fn from_dir(dir: &Path) -> Result<Meta, MetaError> {
        let read = |name: &str, required: bool| -> Result<String, MetaError> {
            match std::fs::read_to_string(dir.join(name)) {
                Ok(s) => Ok(s),
                Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                    Ok(String::new())
                }
                Err(e) => Err(MetaError {
                    file: dir.join(name).display().to_string(),
                    message: e.to_string(),
                }),
            }
        };
        Meta::parse(
            &read("metadata.yaml", true)?,
            &read("config.yaml", false)?,
            &read("actions.yaml", false)?,
        )
    }

    /// Whether `endpoint` is a peer endpoint.
    pub fn is_peer(&self, endpoint: &str) -> bool {
        self.endpoints
            .get(endpoint)
            .is_some_and(|e| e.role == Role::Peers)
    }

    /// Config values as `config-get` shows them: defaults overlaid with
    /// `set` (nulls for options without either).
    pub fn effective_config(&self, set: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
        let mut out: BTreeMap<String, Value> = self
            .config
            .iter()
            .map(|(k, o)| (k.clone(), o.default.clone().unwrap_or(Value::Null)))
            .collect();
        for (k, v) in set {
            out.insert(k.clone(), v.clone());
        }
        out
    }

    /// Action parameters with declared defaults filled in.
    pub fn action_params_with_defaults(
        &self,
        action: &str,
        given: &serde_json::Map<String, Value>,
    ) -> serde_json::Map<String, Value> {
        let mut out = serde_json::Map::new();
        if let Some(a) = self.actions.get(action) {
            for (name, schema) in &a.params {
                if let Some(d) = schema.get("default") {
                    out.insert(name.clone(), d.clone());
                }
            }
        }
        for (k, v) in given {
            out.insert(k.clone(), v.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const METADATA: &str = "name: demo\ncontainers:\n  web:\n    resource: web-image\nrequires:\n  db: {interface: postgresql_client, limit: 1}\npeers:\n  peers: {interface: demo_peers}\nstorage:\n  data: {type: filesystem}\n";

    #[test]
    fn declarations_parse_from_split_files() {
        let m = Meta::parse(
            METADATA,
            "options:\n  port: {type: int, default: 8080}\n  creds: {type: secret}\n",
            "greet:\n  params:\n    name: {type: string}\n    shout: {type: boolean, default: false}\n  required: [name]\n  additionalProperties: false\n",
        )
        .unwrap();
        assert_eq!(m.name, "demo");
        assert_eq!(m.containers, ["web"]);
        assert!(m.is_peer("peers") && !m.is_peer("db"));
        assert_eq!(m.endpoints["db"].limit, Some(1));
        assert_eq!(m.storage["data"], "filesystem");
        let cfg = m.effective_config(&BTreeMap::new());
        assert_eq!(cfg["port"], json!(8080));
        assert_eq!(cfg["creds"], Value::Null);
        let params =
            m.action_params_with_defaults("greet", json!({"name": "x"}).as_object().unwrap());
        assert_eq!(Value::Object(params), json!({"name": "x", "shout": false}));
        assert!(!m.actions["greet"].additional_properties);
    }

    #[test]
    fn the_unified_form_and_errors() {
        let m = Meta::parse(
            "name: x\nconfig:\n  options:\n    a: {type: string, default: b}\nactions:\n  go: {}\n",
            "",
            "",
        )
        .unwrap();
        assert_eq!(m.config["a"].default, Some(json!("b")));
        assert!(m.actions.contains_key("go"));
        let e = Meta::parse(
            "name: x\n",
            "options:\n  a: {type: int, default: nope}\n",
            "",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot read config.yaml: default of option \"a\" is not of type int"
        );
        assert!(Meta::parse("nope: [", "", "").is_err());
    }
}
