//! The Pebble double as a standalone server on a Unix socket.
//!
//! ```text
//! ops-pebble-double --socket /tmp/c/web/pebble.socket [--container-file web.json] [--name web]
//! ```
//!
//! With `--container-file`, the container (layers, services, files, exec
//! handlers; JSON of `ops::testing::Container`) is loaded from the file when
//! it exists and written back after every change, so a test can inspect what
//! a compiled charm did. With `--real-root DIR` it runs services and
//! commands as real processes on the directory DIR (the container's `/`);
//! add `--container-view` (root only) to run them in a private mount
//! namespace where the container's files are at their container paths.
//! Stops on SIGINT/SIGTERM, stopping the services it started.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use ops::testing::pebble::real::RealWorkload;
use ops::testing::pebble::workload::{SimulatedWorkload, Workload};
use ops::testing::pebble::PebbleDouble;
use ops::testing::Container;

#[derive(Parser)]
#[command(
    name = "ops-pebble-double",
    about = "A Pebble API double on a Unix socket"
)]
struct Cli {
    /// The socket to listen on.
    #[arg(long)]
    socket: PathBuf,
    /// Load the container from this file and keep it up to date.
    #[arg(long)]
    container_file: Option<PathBuf>,
    /// The container name (when there is no container file).
    #[arg(long, default_value = "workload")]
    name: String,
    /// Run services and exec'd commands as real processes, with the
    /// container's filesystem in this directory, and run checks for real.
    #[arg(long)]
    real_root: Option<PathBuf>,
    /// With --real-root: run each process in a private mount namespace
    /// where the container's directories are overlaid on the host's, so
    /// container paths mean the same to it as to the charm (needs root).
    #[arg(long, requires = "real_root")]
    container_view: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let container = match &cli.container_file {
        Some(p) if p.exists() => {
            let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
            serde_json::from_slice(&bytes)
                .with_context(|| format!("cannot parse {}", p.display()))?
        }
        _ => Container::new(&cli.name),
    };
    let workload: Arc<dyn Workload> = match &cli.real_root {
        Some(root) => {
            // Processes start from this process's environment, as Pebble's
            // start from the daemon's.
            let env = std::env::vars().collect();
            let mut real = RealWorkload::new(root, env)
                .with_context(|| format!("cannot use {}", root.display()))?;
            if cli.container_view {
                real = real
                    .with_container_view()
                    .context("cannot give processes the container's view")?;
            }
            Arc::new(real)
        }
        None => Arc::new(SimulatedWorkload::from_container(&container)),
    };
    let on_change: Option<Box<dyn Fn(Container) + Send + Sync>> =
        cli.container_file.clone().map(|path| {
            Box::new(move |c: Container| {
                if let Err(e) = ops::testing::fakes::write_json(&path, &c) {
                    eprintln!("ops-pebble-double: {e}");
                }
            }) as Box<dyn Fn(Container) + Send + Sync>
        });
    let double = PebbleDouble::start_with(&cli.socket, &container, workload, on_change)
        .await
        .context("cannot start the Pebble double")?;
    if let Some(p) = &cli.container_file {
        ops::testing::fakes::write_json(p, &double.snapshot())
            .context("cannot write the container file")?;
    }
    eprintln!("ops-pebble-double: serving {}", cli.socket.display());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot handle SIGTERM")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    double.stop().await;
    Ok(())
}
