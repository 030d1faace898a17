//! The load generator: HTTP/1.1 keep-alive clients (one hyper connection each, reopened when the
//! server closes it) driving a server in one of two ways.
//!
//! - **Closed loop** ([`closed_loop`]): N clients, each sending its next request as soon as the
//!   previous answer has been read, for T seconds. It measures the rate a server sustains, but
//!   its latencies hide queueing: a client stuck behind a slow answer simply sends less.
//! - **Open loop** ([`open_loop`]), wrk2-style: a fixed total rate spread over C connections, each
//!   with its own schedule (request `i` of connection `k` is due at `(i·C + k) / rate`). Latency is
//!   measured from the *intended* send time, so when the server falls behind, the wait before a
//!   late request is sent counts too (no coordinated omission).
//!
//! Latencies go into HdrHistograms (microseconds, 3 significant digits), kept apart for accepted
//! answers (anything but 503), rejections (503) and everything together, so an overload run can
//! show how fast the governor refuses beside how slow accepted requests become.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

/// Builds the request a client sends next: `(client index, sequence number of that client)`.
/// The URI is a path (`/v1/...`); the `Host` header is added when missing.
pub type MakeRequest = Arc<dyn Fn(usize, u64) -> Request<Full<Bytes>> + Send + Sync>;

/// A closed-loop run.
#[derive(Clone, Debug)]
pub struct ClosedLoop {
    /// Concurrent clients (one connection each).
    pub clients: usize,
    /// How long to measure.
    pub duration: Duration,
    /// How long to send before measuring (pool connections, caches, plans).
    pub warmup: Duration,
    /// A request without an answer by then counts as a timeout (and its connection is dropped).
    pub timeout: Duration,
}

/// An open-loop run.
#[derive(Clone, Debug)]
pub struct OpenLoop {
    /// Requests per second, in total.
    pub rate: f64,
    /// Connections the schedule is spread over.
    pub connections: usize,
    /// How long to measure.
    pub duration: Duration,
    /// How long to send at the same rate before measuring.
    pub warmup: Duration,
    /// A request without an answer by then counts as a timeout.
    pub timeout: Duration,
}

/// Latency percentiles of one class of answers, in milliseconds.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Answers recorded.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// What a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `closed` or `open`.
    pub mode: &'static str,
    /// Clients (closed) or connections (open).
    pub clients: usize,
    /// The open loop's target rate.
    pub target_rate: Option<f64>,
    /// Measured wall time, seconds.
    pub seconds: f64,
    /// Answers received in the measured window.
    pub requests: u64,
    /// Answers per second.
    pub rps: f64,
    /// Answers by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Connection or protocol failures (no answer).
    pub errors: u64,
    /// Requests that got no answer within the timeout.
    pub timeouts: u64,
    /// 503 answers without a `Retry-After` header.
    pub retry_after_missing: u64,
    /// Open loop: requests still due when the window closed, never sent (a server slower than
    /// the rate leaves a backlog; it is counted rather than drained).
    pub unsent: u64,
    /// Response body bytes received.
    pub bytes: u64,
    /// Body megabytes (10^6) per second.
    pub mb_per_s: f64,
    /// Every answer.
    pub latency: Percentiles,
    /// Answers other than 503.
    pub accepted: Percentiles,
    /// 503 answers.
    pub rejected: Percentiles,
    /// The first few distinct errors, for diagnosis.
    pub error_samples: Vec<String>,
}

impl Report {
    /// Answers with this status.
    pub fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    /// Answers whose status is in `range` (e.g. `500..600`).
    pub fn count_in(&self, range: std::ops::Range<u16>) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| range.contains(s))
            .map(|(_, n)| n)
            .sum()
    }
}

/// What one client collected; merged into a [`Report`].
struct Tally {
    all: Histogram<u64>,
    accepted: Histogram<u64>,
    rejected: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    timeouts: u64,
    retry_after_missing: u64,
    unsent: u64,
    bytes: u64,
    error_samples: Vec<String>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 10 min, 3 significant digits: about 0.1 % error anywhere in range.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

impl Tally {
    fn new() -> Self {
        Self {
            all: histogram(),
            accepted: histogram(),
            rejected: histogram(),
            statuses: BTreeMap::new(),
            errors: 0,
            timeouts: 0,
            retry_after_missing: 0,
            unsent: 0,
            bytes: 0,
            error_samples: Vec::new(),
        }
    }

    fn record(&mut self, outcome: &Outcome, latency: Duration) {
        match outcome {
            Outcome::Answer {
                status,
                bytes,
                retry_after,
            } => {
                let us = (latency.as_micros() as u64).clamp(1, 600_000_000);
                self.all.saturating_record(us);
                if *status == StatusCode::SERVICE_UNAVAILABLE {
                    self.rejected.saturating_record(us);
                    if !retry_after {
                        self.retry_after_missing += 1;
                    }
                } else {
                    self.accepted.saturating_record(us);
                }
                *self.statuses.entry(status.as_u16()).or_default() += 1;
                self.bytes += bytes;
            }
            Outcome::Timeout => self.timeouts += 1,
            Outcome::Error(e) => {
                self.errors += 1;
                if self.error_samples.len() < 5 && !self.error_samples.contains(e) {
                    self.error_samples.push(e.clone());
                }
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        let _ = self.all.add(&other.all);
        let _ = self.accepted.add(&other.accepted);
        let _ = self.rejected.add(&other.rejected);
        for (s, n) in other.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        self.errors += other.errors;
        self.timeouts += other.timeouts;
        self.retry_after_missing += other.retry_after_missing;
        self.unsent += other.unsent;
        self.bytes += other.bytes;
        for e in other.error_samples {
            if self.error_samples.len() < 5 && !self.error_samples.contains(&e) {
                self.error_samples.push(e);
            }
        }
    }

    fn report(
        self,
        mode: &'static str,
        clients: usize,
        target_rate: Option<f64>,
        seconds: f64,
    ) -> Report {
        let requests: u64 = self.statuses.values().sum();
        Report {
            mode,
            clients,
            target_rate,
            seconds,
            requests,
            rps: requests as f64 / seconds,
            statuses: self.statuses,
            errors: self.errors,
            timeouts: self.timeouts,
            retry_after_missing: self.retry_after_missing,
            unsent: self.unsent,
            bytes: self.bytes,
            mb_per_s: self.bytes as f64 / 1e6 / seconds,
            latency: Percentiles::of(&self.all),
            accepted: Percentiles::of(&self.accepted),
            rejected: Percentiles::of(&self.rejected),
            error_samples: self.error_samples,
        }
    }
}

enum Outcome {
    Answer {
        status: StatusCode,
        bytes: u64,
        retry_after: bool,
    },
    Timeout,
    Error(String),
}

/// One keep-alive connection, opened on first use and again after the server closed it.
struct Connection {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    fn new(addr: SocketAddr) -> Self {
        Self { addr, sender: None }
    }

    async fn open(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = TcpStream::connect(self.addr)
                .await
                .map_err(|e| format!("cannot connect to {}: {e}", self.addr))?;
            let _ = stream.set_nodelay(true);
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().expect("just opened"))
    }

    async fn send(&mut self, mut request: Request<Full<Bytes>>, timeout: Duration) -> Outcome {
        if !request.headers().contains_key(http::header::HOST) {
            if let Ok(v) = http::HeaderValue::from_str(&self.addr.to_string()) {
                request.headers_mut().insert(http::header::HOST, v);
            }
        }
        let exchange = async {
            let sender = self.open().await?;
            sender
                .ready()
                .await
                .map_err(|e| format!("connection: {e}"))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| format!("request: {e}"))?;
            let status = response.status();
            let retry_after = response.headers().contains_key(http::header::RETRY_AFTER);
            let mut body = response.into_body();
            let mut bytes = 0u64;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| format!("body: {e}"))?;
                if let Some(d) = frame.data_ref() {
                    bytes += d.len() as u64;
                }
            }
            Ok::<_, String>(Outcome::Answer {
                status,
                bytes,
                retry_after,
            })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                self.sender = None;
                Outcome::Error(e)
            }
            Err(_) => {
                self.sender = None;
                Outcome::Timeout
            }
        }
    }
}

/// One request's fate, for suites that check every answer (e.g. that each acknowledged check-in
/// reached the database), not just the totals.
#[derive(Clone, Debug)]
pub struct Observation {
    /// The client that sent it.
    pub client: usize,
    /// Its sequence number on that client (as given to [`MakeRequest`]).
    pub seq: u64,
    /// When it was sent.
    pub sent: Instant,
    /// When its answer (or failure) came.
    pub done: Instant,
    /// The status, or `None` for a timeout or a connection failure.
    pub status: Option<u16>,
    /// Whether the answer carried `Retry-After`.
    pub retry_after: bool,
}

/// Called once per request of a closed loop, warm-up included.
pub type Observe = Arc<dyn Fn(Observation) + Send + Sync>;

/// Runs a closed loop against `addr`.
pub async fn closed_loop(addr: SocketAddr, run: ClosedLoop, make: MakeRequest) -> Report {
    closed_loop_observed(addr, run, make, Arc::new(|_| {})).await
}

/// Runs a closed loop against `addr`, telling `observe` about every request.
pub async fn closed_loop_observed(
    addr: SocketAddr,
    run: ClosedLoop,
    make: MakeRequest,
    observe: Observe,
) -> Report {
    let start = Instant::now();
    let measure_from = start + run.warmup;
    let end = measure_from + run.duration;
    let mut tasks = Vec::with_capacity(run.clients);
    for client in 0..run.clients {
        let make = make.clone();
        let observe = observe.clone();
        let timeout = run.timeout;
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            let mut conn = Connection::new(addr);
            let mut seq = 0u64;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let outcome = conn.send(make(client, seq), timeout).await;
                let (status, retry_after) = match &outcome {
                    Outcome::Answer {
                        status,
                        retry_after,
                        ..
                    } => (Some(status.as_u16()), *retry_after),
                    _ => (None, false),
                };
                observe(Observation {
                    client,
                    seq,
                    sent,
                    done: Instant::now(),
                    status,
                    retry_after,
                });
                seq += 1;
                if sent >= measure_from {
                    tally.record(&outcome, sent.elapsed());
                }
                if let Outcome::Error(_) = outcome {
                    // The server is unreachable: do not spin on refused connections.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            tally
        }));
    }
    let mut total = Tally::new();
    for t in tasks {
        if let Ok(t) = t.await {
            total.merge(t);
        }
    }
    let seconds = Instant::now()
        .saturating_duration_since(measure_from)
        .as_secs_f64()
        .max(1e-9);
    total.report("closed", run.clients, None, seconds)
}

/// Runs an open loop against `addr`.
pub async fn open_loop(addr: SocketAddr, run: OpenLoop, make: MakeRequest) -> Report {
    let start = tokio::time::Instant::now();
    let measure_from = start + run.warmup;
    let end = measure_from + run.duration;
    let connections = run.connections.max(1);
    let mut tasks = Vec::with_capacity(connections);
    for k in 0..connections {
        let make = make.clone();
        let timeout = run.timeout;
        let rate = run.rate;
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            let mut conn = Connection::new(addr);
            let mut seq = 0u64;
            loop {
                let due = |seq: u64| {
                    start
                        + Duration::from_secs_f64(
                            (seq as f64 * connections as f64 + k as f64) / rate,
                        )
                };
                let intended = due(seq);
                if intended >= end {
                    break;
                }
                if tokio::time::Instant::now() >= end {
                    // The window is over: what is still due is a backlog, counted, not sent.
                    while due(seq) < end {
                        tally.unsent += 1;
                        seq += 1;
                    }
                    break;
                }
                tokio::time::sleep_until(intended).await;
                let outcome = conn.send(make(k, seq), timeout).await;
                if intended >= measure_from {
                    // From the intended time, not from when it could finally be sent.
                    tally.record(&outcome, intended.elapsed());
                }
                seq += 1;
            }
            tally
        }));
    }
    let mut total = Tally::new();
    for t in tasks {
        if let Ok(t) = t.await {
            total.merge(t);
        }
    }
    let seconds = tokio::time::Instant::now()
        .saturating_duration_since(measure_from)
        .as_secs_f64()
        .max(1e-9);
    total.report("open", connections, Some(run.rate), seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A local server: `/ok` answers 200, `/busy` 503 with `Retry-After`.
    async fn server() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        |r: Request<hyper::body::Incoming>| async move {
                            let mut answer =
                                http::Response::new(Full::new(Bytes::from_static(b"hello")));
                            if r.uri().path() == "/busy" {
                                *answer.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                                answer.headers_mut().insert(
                                    http::header::RETRY_AFTER,
                                    http::HeaderValue::from_static("1"),
                                );
                            }
                            Ok::<_, std::convert::Infallible>(answer)
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        addr
    }

    fn path(p: &'static str) -> Request<Full<Bytes>> {
        Request::get(p).body(Full::new(Bytes::new())).unwrap()
    }

    #[tokio::test]
    async fn a_closed_loop_counts_answers_by_status_and_separates_refusals() {
        let addr = server().await;
        let run = ClosedLoop {
            clients: 2,
            duration: Duration::from_millis(300),
            warmup: Duration::ZERO,
            timeout: Duration::from_secs(5),
        };
        let r = closed_loop(
            addr,
            run,
            Arc::new(|client, _| path(if client == 0 { "/ok" } else { "/busy" })),
        )
        .await;
        assert!(r.count(200) > 0 && r.count(503) > 0, "{r:?}");
        assert_eq!(r.requests, r.count(200) + r.count(503));
        assert_eq!(
            (r.accepted.count, r.rejected.count),
            (r.count(200), r.count(503))
        );
        assert_eq!((r.errors, r.timeouts, r.retry_after_missing), (0, 0, 0));
        assert_eq!(r.bytes, 5 * r.requests);
    }

    #[tokio::test]
    async fn an_open_loop_sends_exactly_its_schedule() {
        let addr = server().await;
        let run = OpenLoop {
            rate: 50.0,
            connections: 2,
            duration: Duration::from_secs(2),
            warmup: Duration::ZERO,
            timeout: Duration::from_secs(5),
        };
        let r = open_loop(addr, run, Arc::new(|_, _| path("/ok"))).await;
        // Every slot of the schedule is accounted for: sent and answered, or, when a loaded
        // machine delays the last sends past the window, counted as unsent backlog.
        assert_eq!(r.requests + r.unsent, 100, "{r:?}");
        assert_eq!(r.count(200), r.requests, "{r:?}");
        assert!(r.requests >= 90, "{r:?}");
        assert_eq!(r.target_rate, Some(50.0));
    }

    #[test]
    fn percentiles_of_a_known_distribution_are_read_in_milliseconds() {
        let mut h = histogram();
        for us in 1..=1000u64 {
            h.record(us * 10).unwrap();
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 1000);
        assert!((p.p50_ms - 5.0).abs() < 0.01, "{p:?}");
        assert!((p.p99_ms - 9.9).abs() < 0.01, "{p:?}");
        assert!((p.max_ms - 10.0).abs() < 0.01, "{p:?}");
        assert_eq!(Percentiles::of(&histogram()), Percentiles::default());
    }

    #[test]
    fn a_tally_separates_rejections_and_counts_a_missing_retry_after() {
        let mut t = Tally::new();
        let answer = |code: u16, retry_after| Outcome::Answer {
            status: StatusCode::from_u16(code).unwrap(),
            bytes: 10,
            retry_after,
        };
        t.record(&answer(200, false), Duration::from_millis(4));
        t.record(&answer(503, true), Duration::from_micros(200));
        t.record(&answer(503, false), Duration::from_micros(300));
        t.record(&Outcome::Timeout, Duration::ZERO);
        t.record(&Outcome::Error("refused".into()), Duration::ZERO);
        let r = t.report("closed", 1, None, 1.0);
        assert_eq!(
            (r.requests, r.count(200), r.count(503), r.count_in(500..600)),
            (3, 1, 2, 2)
        );
        assert_eq!((r.errors, r.timeouts, r.retry_after_missing), (1, 1, 1));
        assert_eq!((r.accepted.count, r.rejected.count), (1, 2));
        assert!(r.rejected.max_ms < 0.31 && r.accepted.p50_ms > 3.9, "{r:?}");
        assert_eq!(r.bytes, 30);
        assert_eq!(r.error_samples, vec!["refused".to_string()]);
    }
}
