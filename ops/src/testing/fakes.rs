//! Binary-level fakes: run a compiled charm exactly as Juju runs it.
//!
//! One multi-call executable (`ops-fake-juju`) answers as every hook
//! command, busybox-style: it is symlinked under each command's name in a
//! directory put first on the charm's `PATH`, and each invocation loads the
//! hook's [`Session`] from the JSON file named by [`SESSION_ENV`], answers
//! through the same engine the in-process harness uses, and saves it back.
//!
//! The driver ([`prepare`], [`finish`], or both around a run with
//! [`dispatch`]) reads a [`State`] file, builds the session and the hook
//! environment, runs the charm binary with the charm directory as working
//! directory, and writes the state back: committed when the charm exited 0,
//! otherwise the state from before plus Juju's immediate effects
//! (juju.md §1.5). Containers are not part of this: run the standalone
//! Pebble double (`ops-pebble-double`) at `<containers dir>/<name>/pebble.socket`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::juju::{Record, Session, UnitId, COMMANDS};
use super::meta::Meta;
use super::state::State;
use crate::context::CONTAINERS_DIR_ENV;
use crate::event::Event;

/// The variable naming the session file the fake hook commands share.
pub const SESSION_ENV: &str = "OPS_FAKE_JUJU_SESSION";

/// Something the driver could not do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FakeError {
    /// A file could not be read or written.
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A JSON file is malformed.
    #[error("cannot parse {}: {message}", .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What serde said.
        message: String,
    },
    /// The charm declarations are malformed.
    #[error(transparent)]
    Meta(#[from] super::meta::MetaError),
    /// The state or event is impossible for this charm.
    #[error("inconsistent input:\n- {}", .0.join("\n- "))]
    Inconsistent(Vec<String>),
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FakeError {
    let path = path.to_owned();
    move |source| FakeError::Io {
        action,
        path,
        source,
    }
}

/// Reads a state file; a missing file is the default state.
pub fn read_state(path: &Path) -> Result<State, FakeError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| FakeError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(io_err("read", path)(e)),
    }
}

/// Writes `value` as indented JSON atomically (temporary file, then
/// rename), so a crash never leaves half a file.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), FakeError> {
    write_bytes(
        path,
        &serde_json::to_vec_pretty(value).expect("states serialise"),
    )
}

fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), FakeError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io_err("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err("rename", path))
}

/// The file beside the session where every call is appended, one JSON line
/// each: read-only commands then need not rewrite the session at all.
fn calls_path(session: &Path) -> PathBuf {
    session.with_extension("calls.jsonl")
}

/// Answers one hook command invocation (`argv[0]` is `command`). Returns the
/// exit code; output goes to this process's stdout/stderr.
pub fn hook_command_main(command: &str, args: Vec<String>) -> i32 {
    let Some(path) = std::env::var_os(SESSION_ENV) else {
        eprintln!("ERROR {command}: {SESSION_ENV} is not set: this fake hook command only works under `ops-fake-juju dispatch`");
        return 1;
    };
    let path = PathBuf::from(path);
    let mut session: Session = match std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "ERROR {command}: cannot load the fake Juju session {}: {e}",
                path.display()
            );
            return 1;
        }
    };
    // Only commands fed a map with `--file -` read stdin; reading it
    // otherwise would block when run by hand.
    let wants_stdin = args.windows(2).any(|w| w[0] == "--file" && w[1] == "-")
        || args.iter().any(|a| a == "--file=-");
    let mut input = Vec::new();
    if wants_stdin {
        if let Err(e) = std::io::stdin().read_to_end(&mut input) {
            eprintln!("ERROR {command}: cannot read stdin: {e}");
            return 1;
        }
    }
    let Some(out) = session.run(command, &args, wants_stdin.then_some(input.as_slice())) else {
        eprintln!("{command}: command not found");
        return 127;
    };
    // Every call goes to the append-only log (one write, atomic for a line
    // this size); only commands that change something rewrite the session.
    let call = session.record.calls.pop().expect("run records the call");
    let mut line = serde_json::to_vec(&call).expect("calls serialise");
    line.push(b'\n');
    let logged = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(calls_path(&path))
        .and_then(|mut f| f.write_all(&line));
    if let Err(e) = logged {
        eprintln!("ERROR {command}: cannot record the call: {e}");
        return 1;
    }
    if !super::juju::READ_ONLY.contains(&command) {
        let bytes = serde_json::to_vec(&session).expect("sessions serialise");
        if let Err(e) = write_bytes(&path, &bytes) {
            eprintln!("ERROR {command}: {e}");
            return 1;
        }
    }
    let _ = std::io::stdout().write_all(&out.stdout);
    let _ = std::io::stderr().write_all(&out.stderr);
    out.code
}

/// How to run one event.
#[derive(Clone, Debug)]
pub struct DispatchOptions {
    /// The state file (read, and written back).
    pub state: PathBuf,
    /// The directory with `metadata.yaml`, `config.yaml`, `actions.yaml`.
    pub meta_dir: PathBuf,
    /// The event.
    pub event: Event,
    /// Action parameters.
    pub params: Option<serde_json::Map<String, serde_json::Value>>,
    /// This unit.
    pub unit: Option<UnitId>,
    /// `JUJU_VERSION`.
    pub juju_version: String,
    /// The charm directory (the working directory; made if missing).
    pub charm_dir: PathBuf,
    /// Where the Pebble sockets are (`OPS_CONTAINERS_DIR`).
    pub containers_dir: Option<PathBuf>,
    /// Where to put the session file and the command links.
    pub session_dir: PathBuf,
    /// The fake executable to link the commands to (default: this one).
    pub fake_exe: Option<PathBuf>,
}

/// A prepared hook: the environment to run the charm with.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Prepared {
    /// The session file.
    pub session: PathBuf,
    /// The complete environment for the charm process.
    pub env: Vec<(String, String)>,
    /// The charm directory.
    pub charm_dir: PathBuf,
}

/// Writes the session and the command links and returns the environment.
pub fn prepare(opts: &DispatchOptions) -> Result<Prepared, FakeError> {
    // The charm runs in its charm directory: every path it is given must
    // be absolute.
    let absolute = |p: &Path| std::path::absolute(p).map_err(io_err("resolve", p));
    let opts = &DispatchOptions {
        state: absolute(&opts.state)?,
        meta_dir: absolute(&opts.meta_dir)?,
        charm_dir: absolute(&opts.charm_dir)?,
        containers_dir: opts.containers_dir.as_deref().map(absolute).transpose()?,
        session_dir: absolute(&opts.session_dir)?,
        fake_exe: opts.fake_exe.as_deref().map(absolute).transpose()?,
        ..opts.clone()
    };
    let meta = Meta::from_dir(&opts.meta_dir)?;
    let state = read_state(&opts.state)?;
    let unit = opts.unit.clone().unwrap_or(UnitId {
        app: meta.name.clone(),
        number: 0,
    });
    super::consistency::check(&meta, &unit.app, &state, &opts.event, opts.params.as_ref())
        .map_err(FakeError::Inconsistent)?;
    let session = Session::new(
        meta,
        unit,
        &opts.juju_version,
        opts.event.clone(),
        opts.params.clone(),
        state,
    );
    let bin = opts.session_dir.join("bin");
    std::fs::create_dir_all(&bin).map_err(io_err("create", &bin))?;
    std::fs::create_dir_all(&opts.charm_dir).map_err(io_err("create", &opts.charm_dir))?;
    let exe = match &opts.fake_exe {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(io_err("locate", Path::new("ops-fake-juju")))?,
    };
    for cmd in COMMANDS {
        let link = bin.join(cmd);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&exe, &link).map_err(io_err("link", &link))?;
    }
    let session_path = opts.session_dir.join("session.json");
    let mut env = session.env();
    write_bytes(
        &session_path,
        &serde_json::to_vec(&session).expect("sessions serialise"),
    )?;
    let calls = calls_path(&session_path);
    std::fs::write(&calls, b"").map_err(io_err("create", &calls))?;
    let path = format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display());
    env.push(("PATH".into(), path));
    env.push((
        "JUJU_CHARM_DIR".into(),
        opts.charm_dir.display().to_string(),
    ));
    env.push(("CHARM_DIR".into(), opts.charm_dir.display().to_string()));
    if let Some(c) = &opts.containers_dir {
        env.push((CONTAINERS_DIR_ENV.into(), c.display().to_string()));
    }
    env.push((SESSION_ENV.into(), session_path.display().to_string()));
    Ok(Prepared {
        session: session_path,
        env,
        charm_dir: opts.charm_dir.clone(),
    })
}

/// Ends a hook run with the charm's exit code: writes the resulting state
/// (committed only on exit 0; containers left as they were) and returns
/// the side channels.
pub fn finish(session_path: &Path, state_path: &Path, exit_code: i32) -> Result<Record, FakeError> {
    let bytes = std::fs::read(session_path).map_err(io_err("read", session_path))?;
    let mut session: Session = serde_json::from_slice(&bytes).map_err(|e| FakeError::Parse {
        path: session_path.to_owned(),
        message: e.to_string(),
    })?;
    let calls_file = calls_path(session_path);
    let calls = match std::fs::read_to_string(&calls_file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io_err("read", &calls_file)(e)),
    };
    for line in calls.lines().filter(|l| !l.is_empty()) {
        let call = serde_json::from_str(line).map_err(|e| FakeError::Parse {
            path: calls_file.clone(),
            message: e.to_string(),
        })?;
        session.record.calls.push(call);
    }
    let containers = session.input.containers.clone();
    let (mut state, record) = session.finish(exit_code == 0);
    state.containers = containers;
    write_json(state_path, &state)?;
    Ok(record)
}

/// What one driven hook produced.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DispatchReport {
    /// The charm's exit code.
    pub exit_code: i32,
    /// The charm's stdout.
    pub stdout: String,
    /// The charm's stderr.
    pub stderr: String,
    /// The side channels (calls, statuses, logs, action results).
    pub record: Record,
}

/// Runs `charm` for one event: [`prepare`], run it with a clean
/// environment in the charm directory, [`finish`].
pub fn dispatch(opts: &DispatchOptions, charm: &Path) -> Result<DispatchReport, FakeError> {
    let prepared = prepare(opts)?;
    let out = Command::new(charm)
        .env_clear()
        .envs(prepared.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&prepared.charm_dir)
        .output()
        .map_err(io_err("run", charm))?;
    let code = out.status.code().unwrap_or(-1);
    let record = finish(&prepared.session, &opts.state, code)?;
    Ok(DispatchReport {
        exit_code: code,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        record,
    })
}

/// Parses an event given on a command line: a hook name for events
/// without details (`config-changed`), or the event as JSON
/// (`{"event":"relation-changed","data":{…}}`).
pub fn parse_event(text: &str) -> Result<Event, String> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).map_err(|e| format!("invalid event JSON: {e}"));
    }
    let ev: Event = serde_json::from_value(serde_json::json!({ "event": text }))
        .map_err(|_| format!("{text:?} is not an event without details; give it as JSON, e.g. {{\"event\":\"db-relation-changed\",…}}"))?;
    Ok(ev)
}
