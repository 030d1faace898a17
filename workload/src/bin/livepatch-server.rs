//! `livepatch-server`: started with no arguments; all configuration comes from the YAML file named
//! by `LIVEPATCH_CONFIG_LOCATION` and the `LP_*` environment (livepatch-server.md §3). Logs JSON
//! lines on stdout. SIGTERM (or SIGINT) stops accepting, drains in-flight requests within
//! `server.shutdown-timeout`, and exits 0.

use std::process::ExitCode;

use anyhow::Context as _;

use workload::config::Config;
use workload::logging::{self, Sink};
use workload::security;

fn main() -> ExitCode {
    let (config, warnings) = match Config::from_process_env() {
        Ok(c) => c,
        Err(e) => {
            logging::init(workload::config::LogLevel::Info, Sink::Stdout);
            register_env_secrets();
            tracing::error!("cannot start: invalid configuration: {e}");
            eprintln!(
                "Error: invalid configuration: {}",
                logging::redact(&e.to_string())
            );
            return ExitCode::from(1);
        }
    };
    logging::init(config.server.log_level, Sink::Stdout);
    register_env_secrets();
    for s in &config.secrets {
        logging::register_secret(s.expose());
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }
    // A panic is a crash event (§4.4); the message goes through the redacting logger.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        security::process_event(
            "process_crash",
            &format!("livepatch-server panicked: {info}"),
        );
        default_hook(info);
    }));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("cannot start: {e:#}");
            eprintln!("Error: {}", logging::redact(&format!("{e:#}")));
            ExitCode::from(1)
        }
    }
}

/// §14.8: the values of these variables never appear in a log line, whatever logged them.
fn register_env_secrets() {
    for name in logging::SECRET_ENV {
        if let Ok(v) = std::env::var(name) {
            logging::register_secret(&v);
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    // Watch the signals before anything listens: a handler registered lazily, when the serve loop
    // first polls it, let a SIGTERM that arrived right after the first answered request kill the
    // process outright instead of draining it.
    let shutdown = shutdown_signal()?;
    let drain = config.server.shutdown_timeout;
    let tls = workload::server::tls_acceptor(&config)?;
    let listeners = workload::server::bind_listeners(&config).await?;
    let public = listeners.public.local_addr()?;
    let admin = listeners
        .admin
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;
    let state = workload::server::build_state(config).await?;
    tracing::info!(
        address = %public,
        admin_address = admin.map(|a| a.to_string()).unwrap_or_default(),
        tls = tls.is_some(),
        version = state.build.version,
        "livepatch server listening"
    );
    security::process_event(
        "process_start",
        &format!("livepatch-server {} started", state.build.version),
    );
    let drained = workload::server::serve(state, listeners, tls, shutdown, drain).await;
    if drained {
        tracing::info!("stopped: every request finished");
    } else {
        tracing::warn!(timeout = ?drain, "stopped: requests still running at server.shutdown-timeout were cut");
    }
    security::process_event("process_stop", "livepatch-server stopped");
    Ok(())
}

/// Registers the SIGTERM and SIGINT handlers now and returns the future that resolves on either.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        security::process_event(
            "process_signal",
            &format!("received {name}: draining in-flight requests"),
        );
    })
}
