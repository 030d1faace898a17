//! The overload suite (issue 6 item 4), short form: a real server with a small governor
//! (burst 8, concurrency 16: 8 in flight, 8 waiting) under five times that many closed-loop
//! clients checking in against real PostgreSQL. It asserts behaviour only — rejections are 503
//! `overloaded` with `Retry-After`, each one is counted in
//! `livepatch_server_httpgovernor_request_overload`, accepted check-ins still succeed, exempt
//! routes still answer, nothing crashes. The 60-second run with latency and memory figures is
//! `scripts/bench-overload`.

mod load_support;

use std::time::Duration;

use bench::load::ClosedLoop;
use load_support::*;

const MACHINES: u64 = 1000;

/// The overload counter as `/metrics` shows it.
fn overload_count(server: &testkit::ServerProcess) -> u64 {
    let text = get(server, "/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix("livepatch_server_httpgovernor_request_overload "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no overload counter in /metrics:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_times_the_governors_capacity_is_refused_with_counted_503s_while_accepted_check_ins_succeed(
) {
    let db = testkit::test_database();
    let dsn = db.dsn();
    migrate(&dsn).await;
    seed(&dsn, MACHINES).await;
    let storage = tempfile::tempdir().unwrap();
    let mut env = env(&dsn, storage.path());
    set(&mut env, "LP_SERVER_BURST_LIMIT", "8");
    set(&mut env, "LP_SERVER_CONCURRENCY_LIMIT", "16");
    set(&mut env, "LP_MACHINE_REPORTS_DATABASE_ENABLED", "true");
    let server = start(&env);
    let before = overload_count(&server);

    let load = tokio::spawn(bench::load::closed_loop(
        addr(&server),
        ClosedLoop {
            clients: 5 * 16,
            duration: Duration::from_secs(6),
            warmup: Duration::ZERO,
            timeout: Duration::from_secs(30),
        },
        bench::fleet::check_ins(MACHINES),
    ));
    // Health probes are exempt: they answer in the middle of the storm.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let probe = tokio::task::spawn_blocking({
        let port = server.port();
        move || testkit::http_get(port, "/debug/info").unwrap()
    })
    .await
    .unwrap();
    assert_eq!(probe.0, 200, "{}", probe.1);
    let report = load.await.unwrap();
    let after = overload_count(&server);

    assert_eq!(
        (report.errors, report.timeouts),
        (0, 0),
        "every request got an answer: {:?}",
        report.error_samples
    );
    let others: Vec<_> = report
        .statuses
        .keys()
        .filter(|s| !matches!(s, 200 | 204 | 503))
        .collect();
    assert!(others.is_empty(), "unexpected statuses: {report:?}");
    assert!(
        report.count(503) > 0,
        "5x capacity must be refused in part: {report:?}"
    );
    assert!(
        report.count(200) + report.count(204) > 0,
        "accepted requests must still be served: {report:?}"
    );
    assert_eq!(report.retry_after_missing, 0, "every 503 has Retry-After");
    assert_eq!(
        after - before,
        report.count(503),
        "each refusal is counted in the overload counter, and only refusals are 503s"
    );

    // Still alive and serving normally once the storm is over.
    let r = testkit::http_request(
        server.port(),
        "POST",
        &format!("/v1/client/{}/updates", bench::fleet::machine_id(1)),
        &[
            (
                "Authorization",
                &format!("Bearer {}", bench::fleet::machine_token(1)),
            ),
            ("Content-Type", "application/json"),
        ],
        &bench::fleet::check_in_body("after"),
    )
    .unwrap();
    assert!(matches!(r.status, 200 | 204), "{}", r.text());
}
