//! `livepatch-client`: the reference client and the operator's smoke test (see
//! `workload::client`). One run enrols the machine, checks in and, when a patch is offered,
//! downloads it and verifies its SHA-256. Exit codes: 0 ok, 1 a step failed (one line on
//! stderr naming it), 2 usage.
//!
//! The auth token comes from `--auth-token-file` or `LIVEPATCH_AUTH_TOKEN`, never from the
//! command line (where `ps` would show it).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use workload::client::{Client, Machine, Options};
use workload::secret::Secret;

#[derive(Debug, Parser)]
#[command(
    name = "livepatch-client",
    version,
    about = "Enrols a machine with a Livepatch server, checks in and downloads the offered patch, verifying its SHA-256."
)]
struct Cli {
    /// The server's URL.
    #[arg(long, env = "LIVEPATCH_URL")]
    url: String,
    /// A PEM file of CA certificates to trust besides the system's.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Refuse to download a patch from a URL that is not https://.
    #[arg(long)]
    tls_patch_download: bool,
    /// A file holding the auth token (from the charm's create-auth-token action); it wins over
    /// LIVEPATCH_AUTH_TOKEN.
    #[arg(long)]
    auth_token_file: Option<PathBuf>,
    /// The machine id to enrol as.
    #[arg(long)]
    machine_id: String,
    /// The kernel version, e.g. 5.15.0-107.117.
    #[arg(long)]
    kernel: String,
    /// The kernel flavour, e.g. generic.
    #[arg(long, default_value = "generic")]
    flavour: String,
    /// The architecture.
    #[arg(long, default_value = "amd64")]
    arch: String,
    /// The hostname to report.
    #[arg(long)]
    hostname: Option<String>,
    /// Where to put the downloaded patch.
    #[arg(long, default_value = ".")]
    download_dir: PathBuf,
    /// Fail (exit 1) when no patch is offered.
    #[arg(long)]
    require_patch: bool,
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // The environment, not a flag: a flag's value would show in `ps`.
    let from_env = std::env::var("LIVEPATCH_AUTH_TOKEN").ok();
    let token = match (&cli.auth_token_file, from_env) {
        (Some(path), _) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the auth token file {}", path.display()))?
            .trim()
            .to_string(),
        (None, Some(t)) => t.trim().to_string(),
        (None, None) => anyhow::bail!(
            "no auth token: give --auth-token-file or set LIVEPATCH_AUTH_TOKEN (juju run <unit> create-auth-token)"
        ),
    };
    anyhow::ensure!(!token.is_empty(), "the auth token is empty");
    let token = Secret::new(token);
    let ca_pem = match &cli.ca_file {
        Some(p) => Some(
            std::fs::read(p).with_context(|| format!("cannot read the CA file {}", p.display()))?,
        ),
        None => None,
    };
    let client = Client::new(&Options {
        url: cli.url.clone(),
        ca_pem,
        tls_patch_download: cli.tls_patch_download,
        timeout: None,
    })?;
    let machine = Machine {
        id: cli.machine_id.clone(),
        kernel: format!("{}-{}", cli.kernel, cli.flavour),
        architecture: cli.arch.clone(),
    };
    let enrolment = client
        .enrol(&machine, &token, cli.hostname.as_deref())
        .await?;
    println!(
        "enrolled {} in tier {} ({})",
        machine.id,
        enrolment.tier,
        if enrolment.created { "new" } else { "again" }
    );
    let Some(offer) = client.check_in(&machine, &enrolment.machine_token).await? else {
        println!(
            "checked in: no patch applies to {} {}",
            machine.kernel, machine.architecture
        );
        anyhow::ensure!(
            !cli.require_patch,
            "no patch was offered and --require-patch is set"
        );
        return Ok(());
    };
    println!(
        "checked in: patch {} offered ({})",
        offer.version, offer.filename
    );
    let got = client.download(&offer, &cli.download_dir).await?;
    println!(
        "downloaded {} ({} bytes), sha256 {} verified",
        got.path.display(),
        got.size,
        got.sha256
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(1)
        }
    }
}
