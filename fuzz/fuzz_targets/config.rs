//! The server's configuration (workload `config`): a YAML file plus `LP_*` overrides.
//!
//! Any file and environment give a configuration or a clear error, never a panic; a secret
//! value never appears in the error, the warnings or the `Debug` of the configuration; a key
//! means the same whether it comes from the file or from its `LP_*` variable; and the listen
//! address the server reads prints back to itself.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use workload::config::{env_name, Config, KeyDoc, Kind, KEYS};

/// The input is text: the YAML file, then optionally a line `%%ENV%%` and `NAME=value` lines
/// (so the seeds are readable files).
struct Input {
    yaml: String,
    env: Vec<(String, String)>,
}

impl Input {
    fn from(text: &str) -> Self {
        let (yaml, env) = text.split_once("\n%%ENV%%\n").unwrap_or((text, ""));
        Input {
            yaml: yaml.to_string(),
            env: env
                .lines()
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap_or((l, ""));
                    (k.to_string(), v.to_string())
                })
                .collect(),
        }
    }
}

/// Appended to every secret value; removed from everything else so a match means a leak.
const MARKER: &str = "Zq7SECRETMARKERq7Z";

fn strip(s: &str) -> String {
    s.replace(MARKER, "")
}

fn outcome(r: &Result<(Config, Vec<String>), workload::config::ConfigError>) -> Option<String> {
    r.as_ref().ok().map(|(c, _)| {
        let secrets: Vec<&String> = c.secrets.iter().map(|s| s.expose()).collect();
        format!("{c:?} {secrets:?}")
    })
}

fn documented(env: &str) -> Option<&'static KeyDoc> {
    KEYS.iter().find(|k| env_name(k.key) == env)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let input = Input::from(text);
    // 1. Anything at all: no panic.
    let _ = Config::from_sources(Some(("fuzz.yaml", &input.yaml)), input.env.clone());

    // 2. Secrets never printed.
    let yaml = strip(&input.yaml);
    // Documented variables, secret ones marked; later lines win, as in a real environment.
    let mut keyed: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut env = Vec::new();
    for (k, v) in &input.env {
        let (k, mut v) = (strip(k), strip(v));
        match documented(&k) {
            Some(doc) => {
                if doc.kind == Kind::Secret {
                    v.push_str(MARKER);
                }
                keyed.insert(doc.key, v);
            }
            None => env.push((k, v)),
        }
    }
    env.extend(keyed.iter().map(|(k, v)| (env_name(k), v.clone())));
    match Config::from_sources(Some(("fuzz.yaml", &yaml)), env) {
        Ok((config, warnings)) => {
            let shown = format!("{config:?} {config:#?} {warnings:?}");
            assert!(!shown.contains(MARKER), "a secret leaked: {shown}");
            // The listen address prints back to itself.
            let addr = config.server.server_address.to_string();
            let again = Config::from_sources(
                None,
                [("LP_SERVER_SERVER_ADDRESS".to_string(), addr.clone())],
            )
            .unwrap_or_else(|e| panic!("{addr:?} printed from an address is refused: {e}"));
            assert_eq!(again.0.server.server_address, config.server.server_address);
        }
        Err(e) => {
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains(MARKER), "a secret leaked: {shown}");
        }
    }

    // 3. The file and LP_* are two spellings of the same setting.
    let pairs: BTreeMap<&'static str, String> = keyed
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .collect();
    let file = serde_yaml_ng::to_string(&pairs).expect("a map of strings serialises");
    let from_file = Config::from_sources(Some(("fuzz.yaml", &file)), Vec::new());
    let from_env = Config::from_sources(None, pairs.iter().map(|(k, v)| (env_name(k), v.clone())));
    assert_eq!(
        outcome(&from_file),
        outcome(&from_env),
        "file {file:?} and env disagree: {:?} vs {:?}",
        from_file.as_ref().err().map(ToString::to_string),
        from_env.as_ref().err().map(ToString::to_string)
    );
});
