//! `livepatch-bench`: the benchmark driver.
//!
//! - `closed` / `open`: a closed- or open-loop run against a URL (check-ins of a seeded fleet, or
//!   repeated GETs of a path); prints a summary on stderr and the report as one JSON line on
//!   stdout.
//! - `seed`: replaces the machines of a database with a synthetic fleet.
//! - `bare`: serves the bare check-in handler on the server's pool settings.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};

use bench::load::{self, ClosedLoop, MakeRequest, OpenLoop, Report};
use bench::{bare, fleet};

#[derive(Parser)]
#[command(
    name = "livepatch-bench",
    about = "Load generator and baselines for the Livepatch server benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Scenario {
    /// `POST /v1/client/{id}/updates` from random machines of the seeded fleet.
    Checkin,
    /// `GET --path` again and again.
    Get,
}

#[derive(clap::Args)]
struct Target {
    /// The server, e.g. http://127.0.0.1:8080 (plain HTTP on an IP address).
    #[arg(long)]
    url: String,
    /// What to send.
    #[arg(long, value_enum, default_value = "checkin")]
    scenario: Scenario,
    /// Machines in the seeded fleet (checkin).
    #[arg(long, default_value_t = 10_000)]
    machines: u64,
    /// The path to GET (get).
    #[arg(long)]
    path: Option<String>,
    /// Seconds to measure.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Seconds to send before measuring.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Seconds without an answer before a request counts as timed out.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// A label copied into the JSON report.
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Subcommand)]
enum Command {
    /// N clients, each sending as soon as it has its previous answer.
    Closed {
        #[command(flatten)]
        target: Target,
        /// Concurrent clients.
        #[arg(long, default_value_t = 64)]
        clients: usize,
    },
    /// A fixed rate, latency measured from each request's intended send time.
    Open {
        #[command(flatten)]
        target: Target,
        /// Requests per second.
        #[arg(long)]
        rate: f64,
        /// Connections the schedule is spread over.
        #[arg(long, default_value_t = 64)]
        connections: usize,
    },
    /// Replaces every machine of the database with a synthetic fleet.
    Seed {
        /// The database (a libpq DSN).
        #[arg(long, env = "LP_DATABASE_CONNECTION_STRING")]
        dsn: String,
        /// How many machines.
        #[arg(long)]
        machines: u64,
        /// Their tier.
        #[arg(long, default_value = "edge")]
        tier: String,
    },
    /// Serves the bare check-in handler.
    Bare {
        /// The database (a libpq DSN).
        #[arg(long, env = "LP_DATABASE_CONNECTION_STRING")]
        dsn: String,
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: SocketAddr,
        /// Pool size (the server's database.connection-pool-max).
        #[arg(long, default_value_t = 10)]
        pool_max: usize,
    },
}

fn address(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .strip_prefix("http://")
        .context("the URL must start with http://")?;
    let host = rest.split('/').next().unwrap_or(rest);
    host.parse()
        .with_context(|| format!("cannot use {host:?}: give an IP address and port"))
}

fn requests(t: &Target) -> anyhow::Result<MakeRequest> {
    Ok(match t.scenario {
        Scenario::Checkin => fleet::check_ins(t.machines),
        Scenario::Get => fleet::gets(t.path.as_deref().context("--scenario get needs --path")?),
    })
}

fn print(report: &Report, label: &str) -> anyhow::Result<()> {
    let r = report;
    eprintln!(
        "{label}: {} {} client(s), {:.1} s: {} answers, {:.0} req/s, {:.1} MB/s, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms; statuses {:?}, errors {}, timeouts {}, unsent {}",
        r.mode, r.clients, r.seconds, r.requests, r.rps, r.mb_per_s, r.latency.p50_ms, r.latency.p99_ms,
        r.latency.p999_ms, r.latency.max_ms, r.statuses, r.errors, r.timeouts, r.unsent
    );
    for e in &r.error_samples {
        eprintln!("  error: {e}");
    }
    let mut v = serde_json::to_value(r)?;
    v["label"] = serde_json::Value::String(label.to_string());
    println!("{v}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Closed { target, clients } => {
            let report = load::closed_loop(
                address(&target.url)?,
                ClosedLoop {
                    clients,
                    duration: Duration::from_secs_f64(target.duration),
                    warmup: Duration::from_secs_f64(target.warmup),
                    timeout: Duration::from_secs_f64(target.timeout),
                },
                requests(&target)?,
            )
            .await;
            print(&report, &target.label)
        }
        Command::Open {
            target,
            rate,
            connections,
        } => {
            if !rate.is_finite() || rate <= 0.0 {
                bail!("--rate must be positive");
            }
            let report = load::open_loop(
                address(&target.url)?,
                OpenLoop {
                    rate,
                    connections,
                    duration: Duration::from_secs_f64(target.duration),
                    warmup: Duration::from_secs_f64(target.warmup),
                    timeout: Duration::from_secs_f64(target.timeout),
                },
                requests(&target)?,
            )
            .await;
            print(&report, &target.label)
        }
        Command::Seed {
            dsn,
            machines,
            tier,
        } => {
            let dsn = workload::db::Dsn::parse(&dsn).context("cannot parse the DSN")?;
            let client = dsn.connect().await?;
            let started = std::time::Instant::now();
            fleet::seed(&client, machines, &tier)
                .await
                .context("cannot seed the machines")?;
            eprintln!(
                "seeded {machines} machines in tier {tier} in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Bare {
            dsn,
            listen,
            pool_max,
        } => {
            let dsn = workload::db::Dsn::parse(&dsn).context("cannot parse the DSN")?;
            let pool = workload::db::pool(
                &dsn,
                workload::db::PoolSettings {
                    max_size: pool_max,
                    lifetime: Duration::from_secs(3600),
                    work_mem_mb: None,
                },
            )?;
            let store = workload::store::Store::new(pool, workload::metrics::Metrics::new());
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            eprintln!("bare check-in handler on http://{listen}");
            bare::serve(listener, store, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await;
            Ok(())
        }
    }
}
