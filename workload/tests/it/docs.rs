//! `workload/CONFIG.md` lists every configuration key exactly as the parser knows it. Run with
//! `UPDATE_CONFIG_DOC=1` to rewrite the table after adding a key.

#[test]
fn config_md_lists_every_key_the_parser_reads() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/CONFIG.md");
    let text = std::fs::read_to_string(path).unwrap();
    let (head, rest) = text
        .split_once("<!-- keys:begin -->\n")
        .expect("begin marker");
    let (_, tail) = rest.split_once("<!-- keys:end -->").expect("end marker");
    let table = workload::config::render_markdown_table();
    let expected = format!("{head}<!-- keys:begin -->\n{table}<!-- keys:end -->{tail}");
    if std::env::var_os("UPDATE_CONFIG_DOC").is_some() {
        std::fs::write(path, &expected).unwrap();
        return;
    }
    assert!(
        text == expected,
        "CONFIG.md is stale: run UPDATE_CONFIG_DOC=1 cargo test -p workload --test it docs"
    );
}

/// Every option of the charm we replace (kept in `charm/tests/data/previous-charm-options.json`,
/// which the charm's own tests also check its `config.yaml` against), exported
/// with its default the way the charm does (key-to-env rule, booleans `true`/`false`, numbers as
/// decimals, unset or empty options left out), starts the configuration without an error, and
/// the same holds for the YAML form.
#[test]
fn every_default_of_the_charm_we_replace_parses() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charm/tests/data/previous-charm-options.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let options: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert!(options.len() > 100);
    let mut env = Vec::new();
    let mut yaml = String::new();
    for (key, option) in &options {
        let value = match &option["default"] {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) if s.is_empty() => continue,
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        env.push((
            workload::config::env_name(&workload::config::canonical_key(key)),
            value.clone(),
        ));
        yaml.push_str(&format!("{key}: {value:?}\n"));
    }
    let (config, warnings) = workload::config::Config::from_sources(None, env).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        (config.server.concurrency_limit, config.server.burst_limit),
        (1000, 500)
    );
    let (_, warnings) =
        workload::config::Config::from_sources(Some(("charm.yaml", &yaml)), Vec::new()).unwrap();
    // The only unknown key in the file form is the charm's own ingress option.
    assert_eq!(
        warnings,
        ["ignoring unknown configuration key ingress-interface in charm.yaml"]
    );
}
