//! The router's route table, read from the route modules' source: every `.route("<path>", …)`
//! with the methods chained on it. The OpenAPI test and the admin-credentials test walk it, and
//! `every_scanned_route_is_served_by_the_router` proves the scan matches what the router serves.

use std::collections::BTreeSet;
use std::path::Path;

fn scan_file(text: &str, out: &mut BTreeSet<(String, String)>) {
    // `.route(` then the path literal (rustfmt may break the line in between), then the method
    // router up to the next `.route(` or the end of the function.
    let route_re = regex::Regex::new(r#"\.route\(\s*"([^"]+)""#).unwrap();
    let method_re = regex::Regex::new(r"(?:^|[\s.(:])(get|post|put|delete|patch)\(").unwrap();
    let starts: Vec<_> = route_re
        .captures_iter(text)
        .map(|c| (c.get(0).unwrap().end(), c[1].to_string()))
        .collect();
    for (i, (end, path)) in starts.iter().enumerate() {
        let after = &text[*end..];
        let next = starts
            .get(i + 1)
            .map(|(e, _)| e - end)
            .unwrap_or(after.len());
        let stop = after.find("\n}").unwrap_or(after.len()).min(next);
        for m in method_re.captures_iter(&after[..stop]) {
            out.insert((m[1].to_uppercase(), path.clone()));
        }
    }
}

fn scan_dir(dir: &Path, out: &mut BTreeSet<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            scan_dir(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            scan_file(&std::fs::read_to_string(&p).unwrap(), out);
        }
    }
}

/// (METHOD, path template) for every route.
pub(crate) fn all() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    scan_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/routes"),
        &mut out,
    );
    assert!(out.len() > 20, "the scan found too few routes: {out:?}");
    out
}

/// A concrete path for a template, with valid-looking values for each parameter.
pub(crate) fn example(path: &str) -> String {
    path.replace("{machine_id}", "m-1")
        .replace(
            "{filename}",
            "livepatch-5.15.0-107.117-generic-107.1-amd64.tar.bz2",
        )
        .replace("{version}", "107.1")
        .replace("{name}", "edge")
        .replace("{id}", "some-id")
}

#[tokio::test]
async fn every_scanned_route_is_served_by_the_router() {
    let app = crate::common::spawn_app(&[]).await;
    for (method, path) in all() {
        let r = app
            .call(method.parse().unwrap(), &example(&path), None, None)
            .await;
        let fallback = r.status == 404 && r.body.windows(13).any(|w| w == b"no such route");
        assert!(
            !fallback && r.status != 405,
            "{method} {path} is not routed: {} {:?}",
            r.status,
            r.body
        );
    }
}
