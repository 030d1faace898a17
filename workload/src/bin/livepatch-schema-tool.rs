//! `livepatch-schema-tool check|upgrade --db <dsn> --target livepatchdb` (livepatch-server.md
//! §14.3). `check` exits 0 when up to date, 2 when migrations are pending and 1 on any error;
//! `upgrade` exits 0 when applied or nothing was to do, 1 on failure. The DSN comes from `--db` or
//! `LP_DATABASE_CONNECTION_STRING` (the charm's form, so it stays out of process lists) and is
//! never printed. Usage errors exit 1 too, since 2 means "pending" to the charm.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use workload::db::Dsn;
use workload::migrations::{self, Status};

#[derive(Parser)]
#[command(
    name = "livepatch-schema-tool",
    version,
    about = "Checks and upgrades the Livepatch server's database schema."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Exit 0 when the schema is up to date, 2 when migrations are pending, 1 on error.
    Check(Target),
    /// Apply pending migrations (safe to run concurrently).
    Upgrade(Target),
}

#[derive(clap::Args)]
struct Target {
    /// PostgreSQL DSN; defaults to $LP_DATABASE_CONNECTION_STRING (preferred: keeps it out of `ps`).
    #[arg(long)]
    db: Option<String>,
    /// Which database.
    #[arg(long, value_enum, default_value = "livepatchdb")]
    target: DbTarget,
}

#[derive(Clone, Copy, ValueEnum)]
enum DbTarget {
    Livepatchdb,
    Timescaledb,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("Error: {}", workload::logging::redact(&format!("{e:#}")));
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    let (target, check) = match cli.command {
        Command::Check(t) => (t, true),
        Command::Upgrade(t) => (t, false),
    };
    if let DbTarget::Timescaledb = target.target {
        anyhow::bail!(
            "--target timescaledb is not supported yet: this server stores no KPIs in TimescaleDB; leave timescale-db.enabled off"
        );
    }
    let dsn_text = match target.db.filter(|d| !d.trim().is_empty()) {
        Some(d) => d,
        None => std::env::var("LP_DATABASE_CONNECTION_STRING")
            .ok()
            .filter(|d| !d.trim().is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!("no database: pass --db <dsn> or set LP_DATABASE_CONNECTION_STRING")
            })?,
    };
    let dsn = Dsn::parse(&dsn_text)?;
    let mut client = dsn.connect().await?;
    if check {
        let status = migrations::status(&client).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot read the schema version of {}: {}",
                dsn.describe(),
                workload::db::error_chain(&e)
            )
        })?;
        return Ok(match status {
            Status::UpToDate => {
                println!("schema is up to date (version {})", migrations::latest());
                0
            }
            Status::Pending { current: 0, latest } => {
                println!("database not initialized: migrations pending (0 -> {latest})");
                2
            }
            Status::Pending { current, latest } => {
                println!("migrations pending ({current} -> {latest})");
                2
            }
            Status::Newer { current, latest } => anyhow::bail!(
                "the database schema is at version {current}, newer than this tool's {latest}: use a newer livepatch-schema-tool"
            ),
        });
    }
    let applied = migrations::upgrade(&mut client)
        .await
        .map_err(|e| anyhow::anyhow!("cannot upgrade {}: {e}", dsn.describe()))?;
    if applied.is_empty() {
        println!(
            "schema is up to date (version {}); nothing to do",
            migrations::latest()
        );
    } else {
        println!(
            "applied migrations {applied:?}; schema is at version {}",
            migrations::latest()
        );
    }
    Ok(0)
}
