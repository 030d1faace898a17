//! Patch sync between real `livepatch-server` processes on loopback, each on its own throwaway
//! database and patch directory: full sync and resumption, filters, sync-tiers, chaining, token
//! expiry and revocation, a kill mid-file, a corrupted file, proxies, machine counts and reports,
//! the blocklist refresh, and the admin CLI's `sync trigger --wait` / `sync reports`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use testkit::{http_request, ServerProcess};

use crate::common::{basic, basic_users_value, migrate, patch_name, ADMIN_PASSWORD, ADMIN_USER};
use crate::proxy::Proxy;

/// One server: its database and patch directory outlive the process, so it can be killed and
/// started again on the same state.
struct Node {
    db: testkit::TestDb,
    patches: tempfile::TempDir,
    env: Vec<(String, String)>,
    process: Option<ServerProcess>,
}

impl Node {
    async fn start(extra: &[(&str, &str)]) -> Node {
        let db = testkit::test_database();
        migrate(&db.dsn()).await;
        let patches = tempfile::tempdir().unwrap();
        let mut env: Vec<(String, String)> = vec![
            ("LP_DATABASE_CONNECTION_STRING".into(), db.dsn()),
            (
                "LP_PATCH_STORAGE_FILESYSTEM_PATH".into(),
                patches.path().display().to_string(),
            ),
            ("LP_AUTH_BASIC_ENABLED".into(), "true".into()),
            ("LP_AUTH_BASIC_USERS".into(), basic_users_value()),
            ("LP_DATABASE_CONNECTION_POOL_MAX".into(), "6".into()),
        ];
        for (k, v) in extra {
            env.retain(|(e, _)| e != k);
            env.push((k.to_string(), v.to_string()));
        }
        let mut node = Node {
            db,
            patches,
            env,
            process: None,
        };
        node.restart(&[]);
        node
    }

    /// Starts (again) with the same database and directory, `changes` applied to the environment.
    fn restart(&mut self, changes: &[(&str, &str)]) {
        self.process = None;
        for (k, v) in changes {
            self.env.retain(|(e, _)| e != k);
            if !v.is_empty() {
                self.env.push((k.to_string(), v.to_string()));
            }
        }
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.process = Some(
            ServerProcess::start(Path::new(env!("CARGO_BIN_EXE_livepatch-server")), &env).unwrap(),
        );
    }

    fn process(&self) -> &ServerProcess {
        self.process.as_ref().expect("running")
    }

    fn url(&self) -> String {
        self.process().url()
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let auth = basic(ADMIN_USER, ADMIN_PASSWORD);
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let mut headers = vec![("authorization", auth.as_str())];
        if !payload.is_empty() {
            headers.push(("content-type", "application/json"));
        }
        let r = http_request(
            self.process().port(),
            method,
            path,
            &headers,
            payload.as_bytes(),
        )
        .unwrap();
        let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        (r.status, v)
    }

    fn upload(&self, filename: &str, content: &[u8]) {
        let auth = basic(ADMIN_USER, ADMIN_PASSWORD);
        let r = http_request(
            self.process().port(),
            "POST",
            "/v1/admin/patches",
            &[
                ("authorization", &auth),
                ("content-type", "application/x-bzip2"),
                ("x-patch-filename", filename),
            ],
            content,
        )
        .unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
    }

    fn promote(&self, version: &str, tier: &str) {
        let (s, v) = self.call(
            "POST",
            &format!("/v1/admin/patches/{version}/promote"),
            Some(json!({"tier": tier})),
        );
        assert_eq!(s, 200, "{v}");
    }

    fn sync_token(&self, tier: &str, name: &str) -> String {
        let (s, v) = self.call(
            "POST",
            "/v1/admin/sync-tokens",
            Some(json!({"tier": tier, "name": name})),
        );
        assert_eq!(s, 201, "{v}");
        v["token"].as_str().unwrap().to_string()
    }

    fn trigger(&self) -> String {
        let (s, v) = self.call("POST", "/v1/admin/sync", None);
        assert_eq!(s, 202, "{v}");
        v["sync-id"].as_str().unwrap().to_string()
    }

    async fn wait_run(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (s, v) = self.call("GET", &format!("/v1/admin/sync/{id}"), None);
            assert_eq!(s, 200, "{v}");
            if v["state"] != "running" {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "sync {id} still running after 60 s: {v}\n{}",
                self.process().output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn sync_now(&self) -> Value {
        let id = self.trigger();
        self.wait_run(&id).await
    }

    fn patches(&self) -> Vec<Value> {
        let (s, v) = self.call("GET", "/v1/admin/patches", None);
        assert_eq!(s, 200, "{v}");
        v["patches"].as_array().unwrap().clone()
    }

    fn filenames(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .patches()
            .iter()
            .map(|p| p["filename"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }

    /// Files visible in the patch directory (hidden temporary files excluded).
    fn stored(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.patches.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    fn download(&self, filename: &str) -> Vec<u8> {
        let r = http_request(
            self.process().port(),
            "GET",
            &format!("/v1/patches/{filename}"),
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(r.status, 200, "{filename}: {}", r.text());
        r.body
    }

    fn sql(&self, q: &str) -> String {
        self.db.psql(q).unwrap().trim().to_string()
    }
}

/// The environment of a downstream of `upstream` with `token`.
fn downstream_env(upstream: &Node, token: &str) -> Vec<(String, String)> {
    vec![
        ("LP_PATCH_SYNC_ENABLED".into(), "true".into()),
        ("LP_PATCH_SYNC_UPSTREAM_URL".into(), upstream.url()),
        ("LP_PATCH_SYNC_TOKEN".into(), token.into()),
        ("LP_PATCH_SYNC_ID".into(), "deployment-under-test".into()),
    ]
}

async fn downstream(upstream: &Node, token: &str, extra: &[(&str, &str)]) -> Node {
    let mut env = downstream_env(upstream, token);
    for (k, v) in extra {
        env.retain(|(e, _)| e != k);
        env.push((k.to_string(), v.to_string()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Node::start(&env).await
}

fn content(seed: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut block = Sha256::digest(seed.as_bytes()).to_vec();
    while out.len() < len {
        out.extend_from_slice(&block);
        block = Sha256::digest(&block).to_vec();
    }
    out.truncate(len);
    out
}

fn name(kernel: &str, flavour: &str, version: &str, arch: &str) -> String {
    patch_name(kernel, flavour, version, arch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downstream_syncs_its_tier_a_rerun_downloads_nothing_and_a_third_server_chains_behind_it()
{
    let up = Node::start(&[]).await;
    let stable = [
        name("5.15.0-107.117", "generic", "107.1", "amd64"),
        name("5.15.0-107.117", "generic", "107.2", "amd64"),
    ];
    let edge_only = name("5.15.0-107.117", "generic", "108.1", "amd64");
    for (i, f) in stable.iter().chain([&edge_only]).enumerate() {
        up.upload(f, &content(f, 100_000 + i * 1000));
    }
    up.promote("107.1", "stable");
    up.promote("107.2", "stable");
    up.sql("UPDATE patch_file SET released = '2026-01-02T03:04:05Z'");
    let token = up.sync_token("stable", "down-1");

    let down = downstream(&up, &token, &[]).await;
    let run = down.sync_now().await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["patches-total"], 2, "{run}");
    assert_eq!(run["patches-done"], 2);
    assert_eq!(run["patches-skipped"], 0);
    assert_eq!(run["bytes-done"], 100_000 + 101_000);
    assert_eq!(down.filenames(), stable.to_vec(), "only the token's tier");
    assert_eq!(down.stored(), stable.to_vec());
    for f in &stable {
        assert_eq!(down.download(f), up.download(f));
        let p = down
            .patches()
            .into_iter()
            .find(|p| p["filename"] == *f)
            .unwrap();
        assert_eq!(
            p["tiers"],
            json!(["edge"]),
            "new patches land in the first tier"
        );
    }
    for p in down.patches() {
        assert_eq!(
            p["released"], "2026-01-02T03:04:05Z",
            "release times come from the upstream, not the sync time"
        );
    }

    // Nothing new: a run that downloads nothing, with skipped patches not counted as done.
    let again = down.sync_now().await;
    assert_eq!(
        (
            &again["state"],
            &again["patches-total"],
            &again["patches-done"],
            &again["patches-skipped"],
            &again["bytes-done"]
        ),
        (
            &json!("succeeded"),
            &json!(0),
            &json!(0),
            &json!(2),
            &json!(0)
        ),
        "{again}"
    );
    // Promoted later upstream: only that one is new.
    up.promote("108.1", "stable");
    let third_run = down.sync_now().await;
    assert_eq!(
        (&third_run["patches-done"], &third_run["patches-skipped"]),
        (&json!(1), &json!(2)),
        "{third_run}"
    );

    // A third server syncs from the second, with a token of the second's first tier.
    let token2 = down.sync_token("edge", "chained");
    let third = downstream(&down, &token2, &[]).await;
    let run = third.sync_now().await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["patches-done"], 3);
    assert_eq!(third.filenames(), down.filenames());
    assert_eq!(third.download(&edge_only), up.download(&edge_only));

    let status = http_request(down.process().port(), "GET", "/debug/status", &[], &[]).unwrap();
    let status: Value = serde_json::from_slice(&status.body).unwrap();
    assert_eq!(status["upstream"]["status"], "OK", "{status}");
    assert_eq!(status["upstream"]["url"], up.url());
    assert_eq!(status["upstream"]["last-sync"]["state"], "succeeded");

    let (s, reports) = down.call("GET", "/v1/admin/sync/reports?limit=2", None);
    assert_eq!(s, 200);
    assert_eq!(reports["reports"].as_array().unwrap().len(), 2);
    assert_eq!(
        reports["reports"][0]["sync-id"], third_run["sync-id"],
        "newest first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_filter_alone_and_combined_is_applied_by_the_upstream_and_before_any_download() {
    let up = Node::start(&[]).await;
    let files = [
        name("5.15.0-107.117", "generic", "107.1", "amd64"),
        name("5.15.0-107.117", "generic", "107.1", "arm64"),
        name("5.15.0-107.117", "aws", "107.1", "amd64"),
        name("5.4.0-200.210", "generic", "107.1", "amd64"),
        name("6.8.0-40.40", "lowlatency", "107.1", "s390x"),
    ];
    for f in &files {
        up.upload(f, &content(f, 5000));
    }
    let token = up.sync_token("edge", "filters");
    let snapshot = |query: &str| -> Vec<String> {
        let auth = format!("Bearer {token}");
        let r = http_request(
            up.process().port(),
            "GET",
            &format!("/v1/sync/snapshot?{query}"),
            &[("authorization", &auth)],
            &[],
        )
        .unwrap();
        assert_eq!(r.status, 200, "{query}: {}", r.text());
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        let mut names: Vec<String> = v["patches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["filename"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    };
    let pick = |idx: &[usize]| -> Vec<String> {
        let mut v: Vec<String> = idx.iter().map(|i| files[*i].clone()).collect();
        v.sort();
        v
    };
    for (query, expected) in [
        ("", pick(&[0, 1, 2, 3, 4])),
        ("architectures=amd64", pick(&[0, 2, 3])),
        ("architectures=arm64,s390x", pick(&[1, 4])),
        ("flavors=generic", pick(&[0, 1, 3])),
        ("flavors=aws,lowlatency", pick(&[2, 4])),
        ("minimum-kernel-version=5.15.0", pick(&[0, 1, 2, 4])),
        ("minimum-kernel-version=6.0.0", pick(&[4])),
        ("architectures=amd64&flavors=generic", pick(&[0, 3])),
        (
            "architectures=amd64&flavors=generic&minimum-kernel-version=5.15.0",
            pick(&[0]),
        ),
    ] {
        assert_eq!(snapshot(query), expected, "{query}");
    }
    let auth = format!("Bearer {token}");
    let bad = http_request(
        up.process().port(),
        "GET",
        "/v1/sync/snapshot?minimum-kernel-version=5.15",
        &[("authorization", &auth)],
        &[],
    )
    .unwrap();
    assert_eq!(bad.status, 400);
    assert!(
        bad.text().contains("minimum-kernel-version"),
        "{}",
        bad.text()
    );

    // A downstream with all three filters gets exactly the one file, and nothing else is stored.
    let down = downstream(
        &up,
        &token,
        &[
            ("LP_PATCH_SYNC_ARCHITECTURES", "amd64"),
            ("LP_PATCH_SYNC_FLAVORS", "generic"),
            ("LP_PATCH_SYNC_MINIMUM_KERNEL_VERSION", "5.15.0"),
        ],
    )
    .await;
    let run = down.sync_now().await;
    assert_eq!(
        (&run["state"], &run["patches-done"]),
        (&json!("succeeded"), &json!(1)),
        "{run}"
    );
    assert_eq!(down.stored(), pick(&[0]));
    let fetched: Vec<String> = up
        .process()
        .output()
        .lines()
        .filter(|l| l.contains("/v1/sync/patches/") && l.contains("synctoken_authn_success"))
        .map(str::to_string)
        .collect();
    assert_eq!(fetched.len(), 1, "one file fetched: {fetched:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_tiers_mirrors_tiers_and_placements_and_refuses_local_tier_changes_with_409() {
    let up = Node::start(&[]).await;
    let (s, v) = up.call(
        "POST",
        "/v1/admin/tiers",
        Some(json!({"name": "early", "after": "edge"})),
    );
    assert_eq!(s, 201, "{v}");
    let a = name("5.15.0-107.117", "generic", "107.1", "amd64");
    let b = name("5.15.0-107.117", "generic", "107.2", "amd64");
    up.upload(&a, &content(&a, 3000));
    up.upload(&b, &content(&b, 3000));
    up.promote("107.1", "candidate");
    up.promote("107.1", "stable");
    up.promote("107.2", "candidate");
    let token = up.sync_token("candidate", "mirror");

    // sync-tiers off: everything lands in the first tier.
    let mut down = downstream(&up, &token, &[]).await;
    assert_eq!(down.sync_now().await["state"], "succeeded");
    for p in down.patches() {
        assert_eq!(p["tiers"], json!(["edge"]), "{p}");
    }
    // Local tiers made before sync-tiers was switched on: one in use by a token, one unused.
    for t in ["ours", "spare"] {
        let (s, v) = down.call("POST", "/v1/admin/tiers", Some(json!({"name": t})));
        assert_eq!(s, 201, "{v}");
    }
    let (s, _) = down.call(
        "POST",
        "/v1/admin/auth-token",
        Some(json!({"id": "fleet", "tier": "ours"})),
    );
    assert_eq!(s, 201);

    down.restart(&[("LP_PATCH_SYNC_SYNC_TIERS", "true")]);
    let run = down.sync_now().await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert!(
        run["warnings"].to_string().contains("tier ours"),
        "the kept tier is reported: {run}"
    );
    let (_, tiers) = down.call("GET", "/v1/admin/tiers", None);
    let names: Vec<&str> = tiers["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["edge", "early", "beta", "candidate", "stable", "ours"]
    );
    let placements: Vec<(String, Value)> = down
        .patches()
        .into_iter()
        .map(|p| {
            (
                p["filename"].as_str().unwrap().to_string(),
                p["tiers"].clone(),
            )
        })
        .collect();
    assert!(
        placements.contains(&(a.clone(), json!(["edge", "candidate", "stable"]))),
        "{placements:?}"
    );
    assert!(
        placements.contains(&(b.clone(), json!(["edge", "candidate"]))),
        "{placements:?}"
    );

    // Upstream placement changes follow on the next run.
    up.promote("107.2", "stable");
    assert_eq!(down.sync_now().await["state"], "succeeded");
    let b_tiers = down
        .patches()
        .into_iter()
        .find(|p| p["filename"] == b)
        .unwrap()["tiers"]
        .clone();
    assert_eq!(b_tiers, json!(["edge", "candidate", "stable"]));

    for (method, path, body) in [
        ("POST", "/v1/admin/tiers", Some(json!({"name": "mine"}))),
        ("DELETE", "/v1/admin/tiers/early", None),
        (
            "POST",
            "/v1/admin/patches/107.1/promote",
            Some(json!({"tier": "early"})),
        ),
        (
            "POST",
            "/v1/admin/tiers/edge/promote-all",
            Some(json!({"to": "stable"})),
        ),
    ] {
        let (s, v) = down.call(method, path, body);
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (409, Some("sync-tiers")),
            "{method} {path}: {v}"
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("patch-sync.sync-tiers"),
            "{v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_revoked_tokens_get_401_with_a_security_event_and_the_cli_reports_the_failure()
{
    let up = Node::start(&[]).await;
    let f = name("5.15.0-107.117", "generic", "107.1", "amd64");
    up.upload(&f, &content(&f, 2000));
    let token = up.sync_token("edge", "short-lived");
    let down = downstream(&up, &token, &[]).await;
    let home = tempfile::tempdir().unwrap();
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_livepatch-admin"))
            .args(args)
            .env("LIVEPATCH_URL", down.url())
            .env("XDG_CONFIG_HOME", home.path())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(
        cli(&["login", "-a", &format!("{ADMIN_USER}:{ADMIN_PASSWORD}")]).0,
        0
    );
    let (code, out, err) = cli(&["sync", "trigger", "--wait"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("succeeded") && out.contains("1 patch(es) downloaded"),
        "{out}"
    );
    assert!(
        err.lines().any(|l| l == "1/1 patches, 0.0 MB"),
        "plain progress lines off a terminal: {err:?}"
    );

    up.db
        .psql("UPDATE sync_token SET expires_at = now() - interval '1 minute' WHERE name = 'short-lived'")
        .unwrap();
    let (code, _, err) = cli(&["sync", "trigger", "--wait"]);
    assert_eq!(code, 1, "a failed sync exits non-zero: {err}");
    assert!(err.contains("401") && err.contains("expired"), "{err}");
    assert!(up
        .process()
        .output()
        .contains("synctoken_authn_failed:expired"));

    let (s, _) = up.call("DELETE", "/v1/admin/sync-tokens/short-lived", None);
    assert_eq!(s, 204);
    let run = down.sync_now().await;
    assert_eq!(run["state"], "failed");
    assert!(run["error"].as_str().unwrap().contains("401"), "{run}");
    assert!(
        !run.to_string().contains(&token),
        "the token never appears in a report"
    );
    let log = up.process().output();
    assert!(
        log.contains("synctoken_authn_failed:invalid_token"),
        "{log}"
    );
    assert!(!log.contains(&token) && !down.process().output().contains(&token));

    let (code, out, _) = cli(&["sync", "reports"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "header and three runs: {out}");
    assert!(
        lines[1].contains("failed") && lines[3].contains("succeeded"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_killed_mid_file_leaves_nothing_visible_and_the_next_run_resumes() {
    let up = Node::start(&[]).await;
    let small = name("5.15.0-107.117", "generic", "107.1", "amd64");
    let big = name("5.15.0-107.117", "generic", "107.2", "amd64");
    up.upload(&small, &content(&small, 1000));
    up.upload(&big, &content(&big, 3_000_000));
    let token = up.sync_token("edge", "resume");
    let proxy = Proxy::start().await;
    proxy.stall_after(&big, 1_000_000);
    let mut down = downstream(
        &up,
        &token,
        &[
            ("LP_PATCH_SYNC_PROXY_ENABLED", "true"),
            ("LP_PATCH_SYNC_PROXY_HTTP", &proxy.url()),
        ],
    )
    .await;
    let first = down.trigger();
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.stalled_bytes() < 1_000_000 {
        assert!(
            Instant::now() < deadline,
            "the download never reached the stall"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // While it hangs, another trigger is refused.
    let (s, v) = down.call("POST", "/v1/admin/sync", None);
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("sync-running")),
        "{v}"
    );

    // Killed (SIGKILL) mid-file: no partial file visible, nothing registered for it.
    down.process = None;
    assert!(!down.stored().contains(&big), "{:?}", down.stored());
    assert_eq!(
        down.sql(&format!(
            "SELECT count(*) FROM patch_file WHERE filename = '{big}'"
        )),
        "0"
    );

    down.restart(&[("LP_PATCH_SYNC_PROXY_ENABLED", "false")]);
    let run = down.sync_now().await;
    assert_eq!(run["state"], "succeeded", "{run}");
    let (_, old) = down.call("GET", &format!("/v1/admin/sync/{first}"), None);
    assert_eq!(old["state"], "failed");
    assert!(
        old["error"].as_str().unwrap().contains("interrupted"),
        "{old}"
    );
    assert_eq!(down.stored(), vec![small.clone(), big.clone()]);
    assert_eq!(down.download(&big), up.download(&big));
    assert!(
        std::fs::read_dir(down.patches.path()).unwrap().count() == 2,
        "temporary files are cleaned up at start-up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_file_is_rejected_and_reported_while_good_files_are_kept() {
    let up = Node::start(&[]).await;
    let good = name("5.15.0-107.117", "generic", "107.1", "amd64");
    let bad = name("5.15.0-107.117", "generic", "107.2", "amd64");
    up.upload(&good, &content(&good, 50_000));
    up.upload(&bad, &content(&bad, 50_000));
    // Bit rot in the upstream's storage: same size, other bytes.
    std::fs::write(up.patches.path().join(&bad), content("rotten", 50_000)).unwrap();
    let mut more = Vec::new();
    for i in 0..10 {
        let f = name("5.15.0-107.117", "generic", &format!("200.{i}"), "amd64");
        up.upload(&f, &content(&f, 20_000));
        more.push(f);
    }
    let token = up.sync_token("edge", "corrupt");
    // A pool of three connections: the run and its concurrent publishes must not starve it.
    let down = downstream(&up, &token, &[("LP_DATABASE_CONNECTION_POOL_MAX", "3")]).await;
    let run = down.sync_now().await;
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(run["patches-done"], 11, "{run}");
    assert_eq!(run["failures"][0]["filename"], bad.as_str(), "{run}");
    assert!(
        run["failures"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("SHA-256"),
        "{run}"
    );
    assert!(run["error"].as_str().unwrap().contains("1 of 12"), "{run}");
    more.push(good);
    more.sort();
    assert_eq!(down.stored(), more);
    assert_eq!(down.filenames(), more);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_proxy_and_the_lower_case_environment_carry_every_upstream_call() {
    let up = Node::start(&[]).await;
    let f = name("5.15.0-107.117", "generic", "107.1", "amd64");
    up.upload(&f, &content(&f, 10_000));
    let token = up.sync_token("edge", "proxied");
    let upstream = up.url();
    let proxy = Proxy::start().await;
    let mut down = downstream(
        &up,
        &token,
        &[
            ("LP_PATCH_SYNC_PROXY_ENABLED", "true"),
            ("LP_PATCH_SYNC_PROXY_HTTP", &proxy.url()),
        ],
    )
    .await;
    assert_eq!(down.sync_now().await["state"], "succeeded");
    let seen = proxy.requests();
    for path in [
        "/v1/sync/machine-reports",
        "/v1/sync/snapshot?",
        &format!("/v1/sync/patches/{f}"),
    ] {
        assert!(
            seen.iter()
                .any(|r| r.contains(&format!("{upstream}{path}"))),
            "{path} not proxied: {seen:?}"
        );
    }
    assert!(
        seen.iter().all(|r| !r.contains(&token)),
        "no token in a request line"
    );

    // Proxy keys off: the lower-case variables are the fallback (upper case is not read).
    let env_proxy = Proxy::start().await;
    down.restart(&[
        ("LP_PATCH_SYNC_PROXY_ENABLED", "false"),
        ("LP_PATCH_SYNC_PROXY_HTTP", ""),
        ("http_proxy", &env_proxy.url()),
        ("HTTP_PROXY", &proxy.url()),
    ]);
    let before = proxy.requests().len();
    assert_eq!(down.sync_now().await["state"], "succeeded");
    assert!(
        env_proxy
            .requests()
            .iter()
            .any(|r| r.contains("/v1/sync/snapshot")),
        "{:?}",
        env_proxy.requests()
    );
    assert_eq!(
        proxy.requests().len(),
        before,
        "HTTP_PROXY is not ours to read"
    );

    // no_proxy exempts the upstream by address and port.
    let port = up.process().port().to_string();
    down.restart(&[("no_proxy", &format!("localhost, 127.0.0.1:{port}"))]);
    let before = env_proxy.requests().len();
    assert_eq!(down.sync_now().await["state"], "succeeded");
    assert_eq!(
        env_proxy.requests().len(),
        before,
        "{:?}",
        env_proxy.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_counts_are_bucketed_or_exact_and_machine_reports_carry_obfuscated_ids() {
    let up = Node::start(&[]).await;
    let token = up.sync_token("edge", "fleet");
    let mut down = downstream(&up, &token, &[]).await;
    let (s, v) = down.call(
        "POST",
        "/v1/admin/auth-token",
        Some(json!({"id": "enrol", "tier": "stable"})),
    );
    assert_eq!(s, 201);
    let auth = format!("Bearer {}", v["token"].as_str().unwrap());
    let machines = ["machine-aaa", "machine-bbb", "machine-ccc"];
    for m in machines {
        let body = json!({"architecture": "amd64", "kernel": "5.15.0-107.117-generic"}).to_string();
        let r = http_request(
            down.process().port(),
            "PUT",
            &format!("/v1/client/{m}"),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let count = || {
        up.sql("SELECT machine_count || ' ' || strategy FROM downstream_server WHERE deployment_id = 'deployment-under-test'")
    };
    assert_eq!(down.sync_now().await["state"], "succeeded");
    assert_eq!(count(), "1 bucket", "3 machines are in the 1-49 bucket");
    assert_eq!(
        up.sql("SELECT count(*) FROM downstream_machine_report"),
        "0"
    );

    down.restart(&[
        ("LP_PATCH_SYNC_MACHINE_COUNT_STRATEGY", "unit"),
        ("LP_PATCH_SYNC_SEND_MACHINE_REPORTS", "true"),
    ]);
    assert_eq!(down.sync_now().await["state"], "succeeded");
    assert_eq!(count(), "3 unit");
    let ids = up.sql("SELECT string_agg(machine_id || ':' || kernel || ':' || architecture, ',' ORDER BY machine_id) FROM downstream_machine_report");
    assert_eq!(ids.split(',').count(), 3, "{ids}");
    for m in machines {
        assert!(
            !ids.contains(m),
            "the real machine id {m} left the downstream: {ids}"
        );
    }
    for entry in ids.split(',') {
        let (id, rest) = entry.split_once(':').unwrap();
        assert!(
            id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
        assert_eq!(rest, "5.15.0-107.117-generic:amd64");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blocklist_refresh_mirrors_upstream_blocklistings_and_never_lifts_local_ones() {
    let up = Node::start(&[]).await;
    let a = name("5.15.0-107.117", "generic", "107.1", "amd64");
    let b = name("5.15.0-107.117", "generic", "107.2", "amd64");
    up.upload(&a, &content(&a, 1000));
    up.upload(&b, &content(&b, 1000));
    let token = up.sync_token("edge", "blocklist");
    // A leader syncs at start-up and then refreshes the blocklist every second.
    let down = downstream(
        &up,
        &token,
        &[
            ("LP_SERVER_IS_LEADER", "true"),
            ("LP_PATCH_BLOCKLIST_ENABLED", "true"),
            ("LP_PATCH_BLOCKLIST_REFRESH_INTERVAL", "1s"),
        ],
    )
    .await;
    let blocked = |node: &Node| -> Vec<String> {
        node.patches()
            .into_iter()
            .filter(|p| p["blocklisted"] == true)
            .map(|p| p["version"].as_str().unwrap().to_string())
            .collect()
    };
    let wait_until = |what: &str, cond: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "{what} did not happen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_until("the start-up sync", &|| down.filenames().len() == 2);
    let (s, _) = up.call(
        "PUT",
        "/v1/admin/patches/107.1/blocklist",
        Some(json!({"reason": "bad"})),
    );
    assert_eq!(s, 200);
    let (s, _) = down.call(
        "PUT",
        "/v1/admin/patches/107.2/blocklist",
        Some(json!({"reason": "ours"})),
    );
    assert_eq!(s, 200);
    wait_until("the upstream blocklisting", &|| {
        blocked(&down) == ["107.2", "107.1"]
    });
    assert_eq!(
        down.sql("SELECT string_agg(version || '=' || blocklist_source, ',' ORDER BY version) FROM patch WHERE blocklisted"),
        "107.1=upstream,107.2=local"
    );
    let (s, _) = up.call("DELETE", "/v1/admin/patches/107.1/blocklist", None);
    assert_eq!(s, 204);
    wait_until("the upstream lifting", &|| blocked(&down) == ["107.2"]);
}

#[tokio::test]
async fn post_sync_is_409_sync_disabled_without_sync_and_the_sync_api_wants_a_token_of_the_tier() {
    use http::Method;
    let app = crate::common::spawn_app(&[]).await;
    let admin = app.admin().await;
    let r = app
        .call(Method::POST, "/v1/admin/sync", Some(&admin), None)
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().as_str()),
        (409, "sync-disabled")
    );
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("patch-sync.enabled"));
    let enabled = crate::common::spawn_app(&[("LP_PATCH_SYNC_ENABLED", "true")]).await;
    let admin2 = enabled.admin().await;
    let r = enabled
        .call(Method::POST, "/v1/admin/sync", Some(&admin2), None)
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().as_str()),
        (409, "sync-disabled")
    );
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("patch-sync.token"),
        "{}",
        r.json()
    );
    let r = app
        .call(Method::GET, "/v1/admin/sync/not-a-uuid", Some(&admin), None)
        .await;
    assert_eq!(r.status, 400);
    let r = app
        .call(
            Method::GET,
            &format!("/v1/admin/sync/{}", uuid::Uuid::new_v4()),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .call(
            Method::GET,
            "/v1/admin/sync/reports?limit=0",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 400);
    let r = app
        .call(Method::GET, "/v1/admin/sync/reports", Some(&admin), None)
        .await;
    assert_eq!(r.json(), json!({"reports": []}));

    // The sync API: no token, a wrong token, a file outside the token's tier.
    let r = app.call(Method::GET, "/v1/sync/snapshot", None, None).await;
    assert_eq!(r.status, 401);
    let r = app
        .call(
            Method::GET,
            "/v1/sync/snapshot",
            Some("Bearer lps_nope"),
            None,
        )
        .await;
    assert_eq!(r.status, 401);
    let f = name("5.15.0-107.117", "generic", "9.1", "amd64");
    assert_eq!(app.upload(&admin, &f, b"edge only").await.status, 201);
    let r = app
        .call(
            Method::POST,
            "/v1/admin/sync-tokens",
            Some(&admin),
            Some(json!({"tier": "stable", "name": "s"})),
        )
        .await;
    let bearer = format!("Bearer {}", r.json()["token"].as_str().unwrap());
    let r = app
        .call(
            Method::GET,
            &format!("/v1/sync/patches/{f}"),
            Some(&bearer),
            None,
        )
        .await;
    assert_eq!(r.status, 404, "outside the token's tier");
    let r = app
        .call(Method::GET, "/v1/sync/snapshot", Some(&bearer), None)
        .await;
    assert_eq!(r.json()["patches"], json!([]));
    assert_eq!(
        r.json()["tiers"],
        json!(["edge", "beta", "candidate", "stable"])
    );
    app.call(
        Method::POST,
        "/v1/admin/patches/9.1/promote",
        Some(&admin),
        Some(json!({"tier": "stable"})),
    )
    .await;
    let r = app
        .call(
            Method::GET,
            &format!("/v1/sync/patches/{f}"),
            Some(&bearer),
            None,
        )
        .await;
    assert_eq!((r.status.as_u16(), &r.body[..]), (200, &b"edge only"[..]));
    let r = app
        .call(
            Method::POST,
            "/v1/sync/machine-reports",
            Some(&bearer),
            Some(json!({"deployment-id": "d", "machine-count": 1, "strategy": "exact"})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("strategy"));
}

/// The upstream over HTTPS with a certificate from a private CA: trusted once the CA is in the
/// system store (here named by `SSL_CERT_FILE`, which the system-store loader honours as
/// `update-ca-certificates`' bundle would be), refused without it, with the reason in the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_is_trusted_through_the_system_ca_store_only() {
    let mut up = Node::start(&[]).await;
    let f = name("5.15.0-107.117", "generic", "107.1", "amd64");
    up.upload(&f, &content(&f, 20_000));
    let token = up.sync_token("edge", "tls");
    // Serve the same database and directory over TLS instead (ServerProcess probes plain HTTP,
    // so this one is started by hand and waited for by its port).
    up.process = None;
    let ca = testkit::TestCa::new("sync test CA");
    let cert = ca.issue(&["localhost"]);
    let dir = tempfile::tempdir().unwrap();
    let (ca_path, cert_path, key_path) = (
        dir.path().join("ca.pem"),
        dir.path().join("tls.crt"),
        dir.path().join("tls.key"),
    );
    std::fs::write(&ca_path, ca.cert_pem()).unwrap();
    std::fs::write(&cert_path, &cert.cert_pem).unwrap();
    std::fs::write(&key_path, &cert.key_pem).unwrap();
    let port = testkit::free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_livepatch-server"));
    cmd.env_clear()
        .env("LP_SERVER_SERVER_ADDRESS", format!("127.0.0.1:{port}"))
        .env("LP_SERVER_TLS_CERT_FILE", &cert_path)
        .env("LP_SERVER_TLS_KEY_FILE", &key_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (k, v) in &up.env {
        if k != "LP_SERVER_SERVER_ADDRESS" {
            cmd.env(k, v);
        }
    }
    let _tls_upstream = crate::backends::ChildGuard(cmd.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the TLS upstream never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("https://localhost:{port}");
    let ca_file = ca_path.display().to_string();
    let trusting = Node::start(&[
        ("LP_PATCH_SYNC_ENABLED", "true"),
        ("LP_PATCH_SYNC_UPSTREAM_URL", &url),
        ("LP_PATCH_SYNC_TOKEN", &token),
        ("SSL_CERT_FILE", &ca_file),
    ])
    .await;
    let run = trusting.sync_now().await;
    assert_eq!(
        (&run["state"], &run["patches-done"]),
        (&json!("succeeded"), &json!(1)),
        "{run}"
    );
    let distrusting = Node::start(&[
        ("LP_PATCH_SYNC_ENABLED", "true"),
        ("LP_PATCH_SYNC_UPSTREAM_URL", &url),
        ("LP_PATCH_SYNC_TOKEN", &token),
        ("SSL_CERT_FILE", "/dev/null"),
    ])
    .await;
    let run = distrusting.sync_now().await;
    assert_eq!(run["state"], "failed", "{run}");
    let error = run["error"].as_str().unwrap();
    assert!(
        error.contains("cannot reach the upstream") && error.contains("certificate"),
        "{error}"
    );
}
