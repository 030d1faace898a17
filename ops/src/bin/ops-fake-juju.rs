//! The binary-level fake Juju: every hook command in one executable, plus a
//! driver that runs a compiled charm the way Juju does.
//!
//! Invoked under a hook command's name (through the links `prepare` makes),
//! it answers that command from the session named by `OPS_FAKE_JUJU_SESSION`.
//! Invoked as `ops-fake-juju`, it is the driver:
//!
//! ```text
//! ops-fake-juju dispatch --state state.json --meta-dir charm/ --event config-changed -- ./my-charm
//! ops-fake-juju prepare  --state state.json --meta-dir charm/ --event config-changed --session-dir s/
//! ops-fake-juju finish   --session s/session.json --state state.json --exit-code 0
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use ops::testing::fakes::{self, DispatchOptions};
use ops::testing::juju::{UnitId, COMMANDS};

#[derive(Parser)]
#[command(
    name = "ops-fake-juju",
    about = "Fake Juju hook commands and a driver to run compiled charms"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a charm binary for one event and write the resulting state back.
    Dispatch {
        #[command(flatten)]
        hook: HookArgs,
        /// Write the report (exit code, output, hook calls, statuses) here
        /// instead of stdout.
        #[arg(long)]
        report: Option<PathBuf>,
        /// The charm binary (Juju's `dispatch`).
        #[arg(last = true, required = true)]
        charm: PathBuf,
    },
    /// Write the session and command links; print the charm's environment
    /// as `export K='v'` lines for a shell to source.
    Prepare {
        #[command(flatten)]
        hook: HookArgs,
    },
    /// Commit (exit code 0) or discard the hook's changes into the state file.
    Finish {
        /// The session file `prepare` wrote.
        #[arg(long)]
        session: PathBuf,
        /// The state file to write.
        #[arg(long)]
        state: PathBuf,
        /// The charm's exit code.
        #[arg(long)]
        exit_code: i32,
    },
    /// List the hook commands this executable answers.
    Commands,
}

#[derive(Args)]
struct HookArgs {
    /// The state file (JSON of `ops::testing::State`; missing = empty state).
    #[arg(long)]
    state: PathBuf,
    /// The directory holding metadata.yaml, config.yaml and actions.yaml.
    #[arg(long)]
    meta_dir: PathBuf,
    /// The event: a hook name without details, or the event as JSON.
    #[arg(long, conflicts_with = "action")]
    event: Option<String>,
    /// Run this action instead of a hook.
    #[arg(long)]
    action: Option<String>,
    /// Action parameters as a JSON object.
    #[arg(long, requires = "action")]
    params: Option<String>,
    /// This unit, `app/N` (default: `<charm name>/0`).
    #[arg(long)]
    unit: Option<String>,
    /// JUJU_VERSION.
    #[arg(long, default_value = "3.6.4")]
    juju_version: String,
    /// The charm directory (default: `<session dir>/charm`).
    #[arg(long)]
    charm_dir: Option<PathBuf>,
    /// OPS_CONTAINERS_DIR for the charm.
    #[arg(long)]
    containers_dir: Option<PathBuf>,
    /// Where the session file and command links go (default: a directory
    /// next to the state file).
    #[arg(long)]
    session_dir: Option<PathBuf>,
}

impl HookArgs {
    fn options(self) -> anyhow::Result<DispatchOptions> {
        let event = match (self.event, &self.action) {
            (Some(e), None) => fakes::parse_event(&e).map_err(anyhow::Error::msg)?,
            (None, Some(name)) => ops::Event::Action(ops::event::ActionEvent {
                name: name.clone(),
                uuid: "1".into(),
            }),
            _ => anyhow::bail!("give exactly one of --event or --action"),
        };
        let params = match self.params {
            Some(p) => match serde_json::from_str(&p).context("cannot parse --params")? {
                serde_json::Value::Object(m) => Some(m),
                _ => anyhow::bail!("--params must be a JSON object"),
            },
            None if self.action.is_some() => Some(serde_json::Map::new()),
            None => None,
        };
        let unit = match self.unit {
            Some(u) => {
                let (app, n) = u.split_once('/').context("--unit must be app/N")?;
                Some(UnitId {
                    app: app.into(),
                    number: n.parse().context("--unit must be app/N")?,
                })
            }
            None => None,
        };
        let session_dir = match self.session_dir {
            Some(d) => d,
            None => {
                let mut name = self.state.file_name().unwrap_or_default().to_owned();
                name.push(".session");
                self.state.with_file_name(name)
            }
        };
        Ok(DispatchOptions {
            charm_dir: self.charm_dir.unwrap_or_else(|| session_dir.join("charm")),
            state: self.state,
            meta_dir: self.meta_dir,
            event,
            params,
            unit,
            juju_version: self.juju_version,
            containers_dir: self.containers_dir,
            session_dir,
            fake_exe: None,
        })
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn driver() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Cmd::Dispatch {
            hook,
            report,
            charm,
        } => {
            let opts = hook.options()?;
            let r = fakes::dispatch(&opts, &charm).context("cannot run the charm")?;
            let json = serde_json::to_string_pretty(&r)?;
            match report {
                Some(p) => std::fs::write(&p, json)
                    .with_context(|| format!("cannot write {}", p.display()))?,
                None => println!("{json}"),
            }
            Ok(ExitCode::from(u8::try_from(r.exit_code).unwrap_or(1)))
        }
        Cmd::Prepare { hook } => {
            let p = fakes::prepare(&hook.options()?).context("cannot prepare the hook")?;
            for (k, v) in &p.env {
                println!("export {k}={}", shell_quote(v));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Finish {
            session,
            state,
            exit_code,
        } => {
            let record =
                fakes::finish(&session, &state, exit_code).context("cannot finish the hook")?;
            println!("{}", serde_json::to_string_pretty(&record)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Commands => {
            for c in COMMANDS {
                println!("{c}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let name = std::path::Path::new(&argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_owned();
    if COMMANDS.contains(&name.as_str()) {
        let code = fakes::hook_command_main(&name, std::env::args().skip(1).collect());
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    match driver() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ops-fake-juju: {e:#}");
            ExitCode::from(2)
        }
    }
}
