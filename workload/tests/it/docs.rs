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
