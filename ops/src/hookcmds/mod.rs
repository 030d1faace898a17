//! One function per Juju hook command (juju.md §2).
//!
//! Each function builds the exact argv ops uses (`--format=json` wherever
//! the command has it, maps on stdin with `--file -`, secret values in
//! `key#file=` files so they never appear on a command line), runs it through
//! a [`Backend`] and parses the output into a typed value. Every failure is a
//! [`HookCmdError`] carrying the command, the exit code and stderr; the
//! [`crate::model`] layer maps those to domain errors.
//!
//! The [`Backend`] seam sits at the process level on purpose: the real
//! implementation ([`ProcessBackend`]) spawns the command found on `PATH`,
//! and the test harness plugs in a fake Juju engine that answers the same
//! argv with Juju's own output, so this parsing code runs in every test.

mod types;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde::de::DeserializeOwned;
use serde_json::Value;

pub use types::*;

/// What a hook command printed and how it exited.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// The exit code (`-1` when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error (`ERROR <message>` on failure).
    pub stderr: Vec<u8>,
}

/// Runs hook commands.
///
/// The production implementation is [`ProcessBackend`]; the `testing`
/// feature provides an in-memory fake Juju that answers from a `State`.
pub trait Backend {
    /// Runs `command` with `args`, writing `stdin` to its standard input when
    /// given, and returns how it exited. An `Err` means the command could not
    /// be run at all.
    fn run(
        &self,
        command: &str,
        args: &[String],
        stdin: Option<&[u8]>,
    ) -> std::io::Result<CommandOutput>;

    /// Runs several commands that read without changing anything and do
    /// not depend on each other, one result per call in order. The default
    /// runs them one after the other; [`ProcessBackend`] starts them all
    /// before waiting for any, so a hook pays one process round trip for
    /// the batch instead of one per command.
    fn run_batch(&self, calls: &[Call]) -> Vec<std::io::Result<CommandOutput>> {
        calls
            .iter()
            .map(|c| self.run(c.command, &c.args, None))
            .collect()
    }
}

/// One hook command invocation without stdin: what [`Backend::run_batch`]
/// takes. Built by the `*_call` functions of this module, so a prefetched
/// answer has exactly the argv the reading function would have used.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Call {
    /// The command, for example `relation-get`.
    pub command: &'static str,
    /// Its arguments.
    pub args: Vec<String>,
}

impl Call {
    fn new(command: &'static str, args: Vec<String>) -> Call {
        Call { command, args }
    }
}

/// Runs hook commands as processes found on `PATH`, as Juju expects.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessBackend;

impl Backend for ProcessBackend {
    fn run(
        &self,
        command: &str,
        args: &[String],
        stdin: Option<&[u8]>,
    ) -> std::io::Result<CommandOutput> {
        let mut cmd = Command::new(command);
        cmd.args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = cmd.spawn()?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // Hook commands read all of stdin before writing anything, so
            // writing it in full before collecting output cannot deadlock.
            pipe.write_all(input)?;
        }
        let out = child.wait_with_output()?;
        Ok(CommandOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    fn run_batch(&self, calls: &[Call]) -> Vec<std::io::Result<CommandOutput>> {
        // Start every process first, then collect them in order. Hook
        // commands write little (a few KiB of JSON), well under a pipe's
        // buffer, so one waiting to be read does not hold up the others.
        let children: Vec<std::io::Result<std::process::Child>> = calls
            .iter()
            .map(|c| {
                Command::new(c.command)
                    .args(&c.args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
            })
            .collect();
        children
            .into_iter()
            .map(|child| {
                let out = child?.wait_with_output()?;
                Ok(CommandOutput {
                    code: out.status.code().unwrap_or(-1),
                    stdout: out.stdout,
                    stderr: out.stderr,
                })
            })
            .collect()
    }
}

/// A hook command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HookCmdError {
    /// The command ran and exited non-zero: 2 for bad flags or arguments
    /// (including an unknown relation), 1 for runtime errors.
    #[error("{command} failed (exit status {code}): {stderr}")]
    Failed {
        /// The command name, for example `relation-get`.
        command: String,
        /// Its exit code.
        code: i32,
        /// Its standard error, trimmed (normally `ERROR <message>`).
        stderr: String,
    },
    /// The command could not be started.
    #[error("cannot run {command}: {source} (hook commands exist only while Juju runs a hook)")]
    Spawn {
        /// The command name.
        command: String,
        /// Why it could not be started.
        source: std::io::Error,
    },
    /// The command succeeded but printed something we cannot parse.
    #[error("cannot parse the output of {command}: {message}")]
    Output {
        /// The command name.
        command: String,
        /// What was wrong.
        message: String,
    },
    /// The arguments were rejected before running the command.
    #[error("invalid arguments for {command}: {message}")]
    InvalidArgument {
        /// The command name.
        command: String,
        /// What was wrong.
        message: String,
    },
}

impl HookCmdError {
    /// The command that failed.
    pub fn command(&self) -> &str {
        match self {
            HookCmdError::Failed { command, .. }
            | HookCmdError::Spawn { command, .. }
            | HookCmdError::Output { command, .. }
            | HookCmdError::InvalidArgument { command, .. } => command,
        }
    }

    /// The exit code, when the command ran.
    pub fn code(&self) -> Option<i32> {
        match self {
            HookCmdError::Failed { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Standard error, when the command ran (empty otherwise).
    pub fn stderr(&self) -> &str {
        match self {
            HookCmdError::Failed { stderr, .. } => stderr,
            _ => "",
        }
    }

    /// How ops classifies this failure (juju.md §2): `relation not found`
    /// from any command means the relation is gone; `not found` from a
    /// `secret-*` command means the secret is; anything else is a model
    /// error.
    pub fn kind(&self) -> HookCmdErrorKind {
        let stderr = self.stderr();
        if stderr.contains("relation not found") {
            HookCmdErrorKind::RelationNotFound
        } else if self.command().starts_with("secret-") && stderr.contains("not found") {
            HookCmdErrorKind::SecretNotFound
        } else {
            HookCmdErrorKind::Other
        }
    }
}

/// The classes ops maps hook command failures to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookCmdErrorKind {
    /// The relation no longer exists.
    RelationNotFound,
    /// The secret does not exist or is not visible to this unit.
    SecretNotFound,
    /// Anything else (ops' `ModelError`).
    Other,
}

fn run(
    b: &dyn Backend,
    command: &str,
    args: Vec<String>,
    stdin: Option<&[u8]>,
) -> Result<Vec<u8>, HookCmdError> {
    let out = b
        .run(command, &args, stdin)
        .map_err(|source| HookCmdError::Spawn {
            command: command.to_owned(),
            source,
        })?;
    if out.code != 0 {
        return Err(HookCmdError::Failed {
            command: command.to_owned(),
            code: out.code,
            stderr: String::from_utf8_lossy(&out.stderr).trim_end().to_owned(),
        });
    }
    Ok(out.stdout)
}

fn parse_json<T: DeserializeOwned>(command: &str, stdout: &[u8]) -> Result<T, HookCmdError> {
    serde_json::from_slice(stdout).map_err(|e| HookCmdError::Output {
        command: command.to_owned(),
        message: format!("{e} in {:?}", String::from_utf8_lossy(stdout)),
    })
}

fn run_json<T: DeserializeOwned>(
    b: &dyn Backend,
    command: &str,
    args: Vec<String>,
) -> Result<T, HookCmdError> {
    let out = run(b, command, args, None)?;
    parse_json(command, &out)
}

fn args<const N: usize>(items: [&str; N]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn invalid(command: &str, message: impl Into<String>) -> HookCmdError {
    HookCmdError::InvalidArgument {
        command: command.to_owned(),
        message: message.into(),
    }
}

/// A JSON map of strings, as `--file -` takes it.
fn string_map_json(map: &BTreeMap<String, String>) -> Vec<u8> {
    serde_json::to_vec(map).expect("a map of strings always serialises")
}

// ---------------------------------------------------------------------------
// config

/// `config-get --format=json [--all]`: every option with a value or default
/// (`all` adds the others as `null`). `secret` options are URI strings.
pub fn config_get(b: &dyn Backend, all: bool) -> Result<BTreeMap<String, Value>, HookCmdError> {
    let c = config_get_call(all);
    let map: Option<BTreeMap<String, Value>> = run_json(b, c.command, c.args)?;
    Ok(map.unwrap_or_default())
}

/// The argv of [`config_get`].
pub fn config_get_call(all: bool) -> Call {
    let mut a = args(["--format=json"]);
    if all {
        a.push("--all".into());
    }
    Call::new("config-get", a)
}

/// `config-get --format=json <key>`: one option (`null` when unknown or unset).
pub fn config_get_key(b: &dyn Backend, key: &str) -> Result<Value, HookCmdError> {
    run_json(b, "config-get", args(["--format=json", key]))
}

// ---------------------------------------------------------------------------
// relations

/// `relation-ids <endpoint> --format=json`: the relations of an endpoint.
pub fn relation_ids(b: &dyn Backend, endpoint: &str) -> Result<Vec<RelationId>, HookCmdError> {
    let c = relation_ids_call(endpoint);
    let ids: Option<Vec<String>> = run_json(b, c.command, c.args)?;
    ids.unwrap_or_default()
        .iter()
        .map(|s| {
            s.parse()
                .map_err(|e: ParseRelationIdError| HookCmdError::Output {
                    command: "relation-ids".into(),
                    message: e.to_string(),
                })
        })
        .collect()
}

/// The argv of [`relation_ids`].
pub fn relation_ids_call(endpoint: &str) -> Call {
    Call::new("relation-ids", args([endpoint, "--format=json"]))
}

/// `relation-list --format=json -r <id>`: the remote units (for a peer
/// relation, the other units), without a departing unit.
pub fn relation_list(b: &dyn Backend, relation: &RelationId) -> Result<Vec<String>, HookCmdError> {
    let units: Option<Vec<String>> = run_json(
        b,
        "relation-list",
        args(["--format=json", "-r", &relation.to_string()]),
    )?;
    Ok(units.unwrap_or_default())
}

/// `relation-list --format=json -r <id> --app`: the remote application.
pub fn relation_list_app(
    b: &dyn Backend,
    relation: &RelationId,
) -> Result<Option<String>, HookCmdError> {
    let app: Option<String> = run_json(
        b,
        "relation-list",
        args(["--format=json", "-r", &relation.to_string(), "--app"]),
    )?;
    Ok(app.filter(|a| !a.is_empty()))
}

/// `relation-get --format=json -r <id> [--app] - <unit-or-app>`: a whole
/// bag. A unit reads its own pending writes.
pub fn relation_get(
    b: &dyn Backend,
    relation: &RelationId,
    target: &str,
    app: bool,
) -> Result<BTreeMap<String, String>, HookCmdError> {
    let c = relation_get_call(relation, target, app);
    let bag: Option<BTreeMap<String, String>> = run_json(b, c.command, c.args)?;
    Ok(bag.unwrap_or_default())
}

/// The argv of [`relation_get`].
pub fn relation_get_call(relation: &RelationId, target: &str, app: bool) -> Call {
    let mut a = args(["--format=json", "-r", &relation.to_string()]);
    if app {
        a.push("--app".into());
    }
    a.push("-".into());
    a.push(target.into());
    Call::new("relation-get", a)
}

/// `relation-get --format=json -r <id> [--app] <key> <unit-or-app>`: one key.
pub fn relation_get_key(
    b: &dyn Backend,
    relation: &RelationId,
    key: &str,
    target: &str,
    app: bool,
) -> Result<Option<String>, HookCmdError> {
    let mut a = args(["--format=json", "-r", &relation.to_string()]);
    if app {
        a.push("--app".into());
    }
    a.push(key.into());
    a.push(target.into());
    run_json(b, "relation-get", a)
}

/// `relation-set -r <id> [--app] --file -` with the changes as JSON on stdin.
/// An empty value deletes the key. `--app` needs leadership.
pub fn relation_set(
    b: &dyn Backend,
    relation: &RelationId,
    app: bool,
    changes: &BTreeMap<String, String>,
) -> Result<(), HookCmdError> {
    let mut a = args(["-r", &relation.to_string()]);
    if app {
        a.push("--app".into());
    }
    a.push("--file".into());
    a.push("-".into());
    run(b, "relation-set", a, Some(&string_map_json(changes)))?;
    Ok(())
}

/// `relation-model-get --format=json -r <id>`: the remote model.
pub fn relation_model_get(
    b: &dyn Backend,
    relation: &RelationId,
) -> Result<RelationModel, HookCmdError> {
    run_json(
        b,
        "relation-model-get",
        args(["--format=json", "-r", &relation.to_string()]),
    )
}

// ---------------------------------------------------------------------------
// status and leadership

/// `status-set --application=<bool> <status> [-- <message>]`. Only `active`,
/// `blocked`, `maintenance` and `waiting` can be set; the application status
/// needs leadership.
pub fn status_set(
    b: &dyn Backend,
    application: bool,
    status: StatusName,
    message: &str,
) -> Result<(), HookCmdError> {
    if matches!(status, StatusName::Error | StatusName::Unknown) {
        return Err(invalid(
            "status-set",
            format!(
                "a charm cannot set status {status:?}; use active, blocked, maintenance or waiting"
            ),
        ));
    }
    let mut a = args([&format!("--application={application}"), status.as_str()]);
    if !message.is_empty() {
        a.push("--".into());
        a.push(message.into());
    }
    run(b, "status-set", a, None)?;
    Ok(())
}

/// `status-get --include-data --format=json --application=false`: this
/// unit's status.
pub fn status_get(b: &dyn Backend) -> Result<StatusReport, HookCmdError> {
    run_json(
        b,
        "status-get",
        args(["--include-data", "--format=json", "--application=false"]),
    )
}

/// `status-get --include-data --format=json --application=true`: the
/// application's status and every unit's (leader only).
pub fn status_get_app(b: &dyn Backend) -> Result<AppStatusReport, HookCmdError> {
    run_json(
        b,
        "status-get",
        args(["--include-data", "--format=json", "--application=true"]),
    )
}

/// `application-version-set -- <version>`.
pub fn application_version_set(b: &dyn Backend, version: &str) -> Result<(), HookCmdError> {
    run(b, "application-version-set", args(["--", version]), None)?;
    Ok(())
}

/// `is-leader --format=json`. A `true` holds for 30 seconds (the lease).
pub fn is_leader(b: &dyn Backend) -> Result<bool, HookCmdError> {
    let c = is_leader_call();
    run_json(b, c.command, c.args)
}

/// The argv of [`is_leader`].
pub fn is_leader_call() -> Call {
    Call::new("is-leader", args(["--format=json"]))
}

/// `leader-get --format=json`: the (deprecated) leader settings.
pub fn leader_get(b: &dyn Backend) -> Result<BTreeMap<String, String>, HookCmdError> {
    let map: Option<BTreeMap<String, String>> = run_json(b, "leader-get", args(["--format=json"]))?;
    Ok(map.unwrap_or_default())
}

/// `leader-get --format=json <key>`.
pub fn leader_get_key(b: &dyn Backend, key: &str) -> Result<Option<String>, HookCmdError> {
    run_json(b, "leader-get", args(["--format=json", key]))
}

/// `leader-set k=v …` (deprecated; prefer the peer application bag).
pub fn leader_set(
    b: &dyn Backend,
    settings: &BTreeMap<String, String>,
) -> Result<(), HookCmdError> {
    let a = settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
    run(b, "leader-set", a, None)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// actions

/// `action-get --format=json`: the parameters, defaults filled in.
pub fn action_get(b: &dyn Backend) -> Result<serde_json::Map<String, Value>, HookCmdError> {
    let map: Option<serde_json::Map<String, Value>> =
        run_json(b, "action-get", args(["--format=json"]))?;
    Ok(map.unwrap_or_default())
}

/// `action-get --format=json <dotted.key>`: one parameter.
pub fn action_get_key(b: &dyn Backend, key: &str) -> Result<Value, HookCmdError> {
    run_json(b, "action-get", args(["--format=json", key]))
}

const RESERVED_ACTION_KEYS: &[&str] = &["stdout", "stderr", "stdout-encoding", "stderr-encoding"];

/// Checks an `action-set` key: dotted segments of lowercase letters, digits
/// and `-`, each starting and ending with a letter or digit; not reserved.
pub fn validate_action_key(key: &str) -> Result<(), String> {
    if RESERVED_ACTION_KEYS.contains(&key) {
        return Err(format!("key {key:?} is reserved for Juju"));
    }
    let ok_segment = |seg: &str| {
        let bytes = seg.as_bytes();
        let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        !bytes.is_empty()
            && bytes.iter().all(|c| alnum(c) || *c == b'-')
            && alnum(&bytes[0])
            && alnum(&bytes[bytes.len() - 1])
    };
    if key.split('.').all(ok_segment) {
        Ok(())
    } else {
        Err(format!(
            "key {key:?} must be lowercase letters, digits and hyphens, \
             starting and ending with a letter or digit (dots nest)"
        ))
    }
}

/// `action-set k=v a.b=c …`: dotted keys nest.
pub fn action_set(b: &dyn Backend, results: &BTreeMap<String, String>) -> Result<(), HookCmdError> {
    for key in results.keys() {
        validate_action_key(key).map_err(|m| invalid("action-set", m))?;
    }
    if results.is_empty() {
        return Ok(());
    }
    let a = results.iter().map(|(k, v)| format!("{k}={v}")).collect();
    run(b, "action-set", a, None)?;
    Ok(())
}

/// `action-fail [-- <message>]`: the action fails but the hook still
/// commits.
pub fn action_fail(b: &dyn Backend, message: &str) -> Result<(), HookCmdError> {
    let a = if message.is_empty() {
        vec![]
    } else {
        args(["--", message])
    };
    run(b, "action-fail", a, None)?;
    Ok(())
}

/// `action-log -- <message>`: progress, visible at once.
pub fn action_log(b: &dyn Backend, message: &str) -> Result<(), HookCmdError> {
    run(b, "action-log", args(["--", message]), None)?;
    Ok(())
}

/// The longest message one `juju-log` call carries (one argv string).
pub const MAX_LOG_CHUNK: usize = 131_071;

/// `juju-log --log-level <LEVEL> -- <message>`, split over several calls
/// when the message is too long for one argument.
pub fn juju_log(b: &dyn Backend, level: LogLevel, message: &str) -> Result<(), HookCmdError> {
    let mut rest = message;
    loop {
        let mut cut = rest.len().min(MAX_LOG_CHUNK);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (chunk, tail) = rest.split_at(cut);
        run(
            b,
            "juju-log",
            args(["--log-level", level.as_str(), "--", chunk]),
            None,
        )?;
        if tail.is_empty() {
            return Ok(());
        }
        rest = tail;
    }
}

// ---------------------------------------------------------------------------
// unit state

/// `state-get --format=json`: every key of this unit's server-side state.
pub fn state_get(b: &dyn Backend) -> Result<BTreeMap<String, String>, HookCmdError> {
    let out = run(b, "state-get", args(["--format=json"]), None)?;
    if out.iter().all(u8::is_ascii_whitespace) {
        return Ok(BTreeMap::new());
    }
    // Juju 4 may print `null` when the state is empty.
    let map: Option<BTreeMap<String, String>> = parse_json("state-get", &out)?;
    Ok(map.unwrap_or_default())
}

/// `state-get --format=json <key>`: one key; `None` when absent (Juju
/// prints nothing then).
pub fn state_get_key(b: &dyn Backend, key: &str) -> Result<Option<String>, HookCmdError> {
    let c = state_get_key_call(key);
    let out = run(b, c.command, c.args, None)?;
    if out.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    parse_json("state-get", &out)
}

/// The argv of [`state_get_key`].
pub fn state_get_key_call(key: &str) -> Call {
    Call::new("state-get", args(["--format=json", key]))
}

/// `state-set --file -` with the keys as JSON on stdin. Buffered until the
/// hook succeeds; survives pod churn.
pub fn state_set(b: &dyn Backend, values: &BTreeMap<String, String>) -> Result<(), HookCmdError> {
    run(
        b,
        "state-set",
        args(["--file", "-"]),
        Some(&string_map_json(values)),
    )?;
    Ok(())
}

/// `state-delete <key>`.
pub fn state_delete(b: &dyn Backend, key: &str) -> Result<(), HookCmdError> {
    run(b, "state-delete", args([key]), None)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// secrets

/// Secret content: key → value. `Debug` shows the keys only.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct SecretContent(pub BTreeMap<String, String>);

impl SecretContent {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

impl std::fmt::Debug for SecretContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "<redacted>")))
            .finish()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for SecretContent {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> SecretContent {
        SecretContent(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

/// Checks a secret content key against Juju's `^[a-z](-?[a-z0-9]){2,}$`.
pub fn validate_secret_key(key: &str) -> Result<(), String> {
    let bytes = key.as_bytes();
    let mut groups = 0;
    let mut i = 1;
    let mut ok = bytes.first().is_some_and(u8::is_ascii_lowercase);
    while ok && i < bytes.len() {
        if bytes[i] == b'-' {
            i += 1;
        }
        match bytes.get(i) {
            Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit() => {
                groups += 1;
                i += 1;
            }
            _ => ok = false,
        }
    }
    if ok && groups >= 2 {
        Ok(())
    } else {
        Err(format!(
            "secret key {key:?} is not valid: keys are at least 3 characters of \
             lowercase letters, digits and single hyphens, starting with a letter"
        ))
    }
}

/// Metadata for `secret-add` and `secret-set`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretMeta {
    /// The owner-side label.
    pub label: Option<String>,
    /// The description.
    pub description: Option<String>,
    /// When it expires: RFC 3339 time or a duration such as `24h`.
    pub expire: Option<String>,
    /// The rotation policy.
    pub rotate: Option<RotatePolicy>,
}

impl SecretMeta {
    fn push_flags(&self, a: &mut Vec<String>) {
        for (flag, value) in [
            ("--label", &self.label),
            ("--description", &self.description),
            ("--expire", &self.expire),
        ] {
            if let Some(v) = value {
                a.push(flag.into());
                a.push(v.clone());
            }
        }
        if let Some(r) = self.rotate {
            a.push("--rotate".into());
            a.push(r.as_str().into());
        }
    }
}

/// Writes each value to a private file and yields `key#file=<path>`
/// arguments, so no secret value appears on a command line. The directory
/// (mode 0700) is removed when the guard drops.
struct ContentFiles {
    _dir: tempfile::TempDir,
    args: Vec<String>,
}

fn content_files(command: &str, content: &SecretContent) -> Result<ContentFiles, HookCmdError> {
    use std::os::unix::fs::OpenOptionsExt;
    if content.0.is_empty() {
        return Err(invalid(
            command,
            "secret content must have at least one key",
        ));
    }
    for key in content.0.keys() {
        validate_secret_key(key).map_err(|m| invalid(command, m))?;
    }
    let io_err = |e: std::io::Error| HookCmdError::Spawn {
        command: command.to_owned(),
        source: std::io::Error::new(e.kind(), format!("cannot write secret content file: {e}")),
    };
    // TempDir creates the directory with mode 0700.
    let dir = tempfile::Builder::new()
        .prefix("ops-secret-")
        .tempdir()
        .map_err(io_err)?;
    let mut a = Vec::new();
    for (key, value) in &content.0 {
        let path: PathBuf = dir.path().join(key);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err)?;
        f.write_all(value.as_bytes()).map_err(io_err)?;
        a.push(format!("{key}#file={}", path.display()));
    }
    Ok(ContentFiles { _dir: dir, args: a })
}

/// `secret-add [--label …] [--description …] [--expire …] [--rotate …]
/// --owner <application|unit> key#file=<path> …`: returns the new URI.
/// An application-owned secret needs leadership.
pub fn secret_add(
    b: &dyn Backend,
    content: &SecretContent,
    meta: &SecretMeta,
    owner: SecretOwner,
) -> Result<String, HookCmdError> {
    let files = content_files("secret-add", content)?;
    let mut a = Vec::new();
    meta.push_flags(&mut a);
    a.push("--owner".into());
    a.push(owner.as_str().into());
    a.extend(files.args.iter().cloned());
    let out = run(b, "secret-add", a, None)?;
    drop(files);
    let uri = String::from_utf8_lossy(&out).trim().to_owned();
    if !uri.starts_with("secret:") {
        return Err(HookCmdError::Output {
            command: "secret-add".into(),
            message: format!("expected a secret URI, got {uri:?}"),
        });
    }
    Ok(uri)
}

/// Which revision `secret-get` returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SecretRead {
    /// The revision this unit tracks (the first read starts tracking).
    #[default]
    Tracked,
    /// The latest revision, without moving tracking (`--peek`).
    Peek,
    /// The latest revision, moving tracking to it (`--refresh`).
    Refresh,
}

/// `secret-get --format=json <uri> [--label L] [--refresh|--peek]`, or by
/// label alone. With both a URI and a label, Juju looks the secret up by URI
/// and binds the label to it.
pub fn secret_get(
    b: &dyn Backend,
    uri: Option<&str>,
    label: Option<&str>,
    read: SecretRead,
) -> Result<SecretContent, HookCmdError> {
    let mut a = args(["--format=json"]);
    match (uri, label) {
        (None, None) => return Err(invalid("secret-get", "need a secret URI or a label")),
        (Some(u), _) => a.push(u.into()),
        (None, Some(_)) => {}
    }
    if let Some(l) = label {
        a.push("--label".into());
        a.push(l.into());
    }
    match read {
        SecretRead::Tracked => {}
        SecretRead::Peek => a.push("--peek".into()),
        SecretRead::Refresh => a.push("--refresh".into()),
    }
    let map: Option<BTreeMap<String, String>> = run_json(b, "secret-get", a)?;
    Ok(SecretContent(map.unwrap_or_default()))
}

/// `secret-info-get --format=json (<uri> | --label L)`: owners only.
pub fn secret_info_get(
    b: &dyn Backend,
    uri: Option<&str>,
    label: Option<&str>,
) -> Result<SecretInfo, HookCmdError> {
    let mut a = args(["--format=json"]);
    match (uri, label) {
        (Some(u), None) => a.push(u.into()),
        (None, Some(l)) => {
            a.push("--label".into());
            a.push(l.into());
        }
        _ => {
            return Err(invalid(
                "secret-info-get",
                "give exactly one of a secret URI or a label",
            ))
        }
    }
    let map: BTreeMap<String, SecretInfo> = run_json(b, "secret-info-get", a)?;
    let mut entries = map.into_iter();
    match (entries.next(), entries.next()) {
        (Some((id, mut info)), None) => {
            info.id = if id.starts_with("secret:") {
                id
            } else {
                format!("secret:{id}")
            };
            Ok(info)
        }
        _ => Err(HookCmdError::Output {
            command: "secret-info-get".into(),
            message: "expected exactly one secret in the output".into(),
        }),
    }
}

/// `secret-set [--label …] [--description …] [--expire …] [--rotate …]
/// <uri> [key#file=<path> …]`: new content makes a new revision. Pass the
/// full content and metadata: before Juju 3.6 calls in one hook don't merge.
pub fn secret_set(
    b: &dyn Backend,
    uri: &str,
    content: Option<&SecretContent>,
    meta: &SecretMeta,
) -> Result<(), HookCmdError> {
    let files = match content {
        Some(c) => Some(content_files("secret-set", c)?),
        None => None,
    };
    let mut a = Vec::new();
    meta.push_flags(&mut a);
    a.push(uri.into());
    if let Some(f) = &files {
        a.extend(f.args.iter().cloned());
    }
    run(b, "secret-set", a, None)?;
    Ok(())
}

/// `secret-grant --relation <id> [--unit <unit>] <uri>`.
pub fn secret_grant(
    b: &dyn Backend,
    uri: &str,
    relation: &RelationId,
    unit: Option<&str>,
) -> Result<(), HookCmdError> {
    let mut a = args(["--relation", &relation.to_string()]);
    if let Some(u) = unit {
        a.push("--unit".into());
        a.push(u.into());
    }
    a.push(uri.into());
    run(b, "secret-grant", a, None)?;
    Ok(())
}

/// Whom `secret-revoke` revokes from, beyond the relation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevokeScope {
    /// Everyone on the relation.
    Relation,
    /// One application (`--app`).
    App(String),
    /// One unit (`--unit`).
    Unit(String),
}

/// `secret-revoke --relation <id> [--app a | --unit u] <uri>`.
pub fn secret_revoke(
    b: &dyn Backend,
    uri: &str,
    relation: &RelationId,
    scope: &RevokeScope,
) -> Result<(), HookCmdError> {
    let mut a = args(["--relation", &relation.to_string()]);
    match scope {
        RevokeScope::Relation => {}
        RevokeScope::App(app) => {
            a.push("--app".into());
            a.push(app.clone());
        }
        RevokeScope::Unit(unit) => {
            a.push("--unit".into());
            a.push(unit.clone());
        }
    }
    a.push(uri.into());
    run(b, "secret-revoke", a, None)?;
    Ok(())
}

/// `secret-remove <uri> [--revision N]`: no revision removes them all.
pub fn secret_remove(
    b: &dyn Backend,
    uri: &str,
    revision: Option<u32>,
) -> Result<(), HookCmdError> {
    let mut a = vec![uri.to_owned()];
    if let Some(r) = revision {
        a.push("--revision".into());
        a.push(r.to_string());
    }
    run(b, "secret-remove", a, None)?;
    Ok(())
}

/// `secret-ids --format=json`: the URIs this unit/app owns.
pub fn secret_ids(b: &dyn Backend) -> Result<Vec<String>, HookCmdError> {
    let ids: Option<Vec<String>> = run_json(b, "secret-ids", args(["--format=json"]))?;
    Ok(ids.unwrap_or_default())
}

// ---------------------------------------------------------------------------
// ports and network

fn port_args(port: &Port, endpoints: &[&str]) -> Vec<String> {
    let mut a = vec![port.to_string()];
    if !endpoints.is_empty() {
        a.push("--endpoints".into());
        a.push(endpoints.join(","));
    }
    a
}

/// `open-port <port> [--endpoints a,b]` (buffered until the hook succeeds).
pub fn open_port(b: &dyn Backend, port: &Port, endpoints: &[&str]) -> Result<(), HookCmdError> {
    run(b, "open-port", port_args(port, endpoints), None)?;
    Ok(())
}

/// `close-port <port> [--endpoints a,b]`.
pub fn close_port(b: &dyn Backend, port: &Port, endpoints: &[&str]) -> Result<(), HookCmdError> {
    run(b, "close-port", port_args(port, endpoints), None)?;
    Ok(())
}

/// `opened-ports --format=json`: the ports this unit has open.
pub fn opened_ports(b: &dyn Backend) -> Result<Vec<Port>, HookCmdError> {
    let ports: Option<Vec<String>> = run_json(b, "opened-ports", args(["--format=json"]))?;
    ports
        .unwrap_or_default()
        .iter()
        .map(|p| {
            p.parse().map_err(|e: ParsePortError| HookCmdError::Output {
                command: "opened-ports".into(),
                message: e.to_string(),
            })
        })
        .collect()
}

/// `network-get --format=json [-r <id>] <binding>`.
pub fn network_get(
    b: &dyn Backend,
    binding: &str,
    relation: Option<&RelationId>,
) -> Result<Network, HookCmdError> {
    let mut a = args(["--format=json"]);
    if let Some(r) = relation {
        a.push("-r".into());
        a.push(r.to_string());
    }
    a.push(binding.into());
    run_json(b, "network-get", a)
}

/// `goal-state --format=json`.
pub fn goal_state(b: &dyn Backend) -> Result<GoalState, HookCmdError> {
    let c = goal_state_call();
    run_json(b, c.command, c.args)
}

/// The argv of [`goal_state`].
pub fn goal_state_call() -> Call {
    Call::new("goal-state", args(["--format=json"]))
}

/// `credential-get --format=json`: the cloud spec (needs `juju trust`).
pub fn credential_get(b: &dyn Backend) -> Result<CloudSpec, HookCmdError> {
    run_json(b, "credential-get", args(["--format=json"]))
}

/// `resource-get <name>`: the local path of a file resource.
pub fn resource_get(b: &dyn Backend, name: &str) -> Result<PathBuf, HookCmdError> {
    let out = run(b, "resource-get", args([name]), None)?;
    let path = String::from_utf8_lossy(&out).trim().to_owned();
    if path.is_empty() {
        return Err(HookCmdError::Output {
            command: "resource-get".into(),
            message: "empty path".into(),
        });
    }
    Ok(PathBuf::from(path))
}

// ---------------------------------------------------------------------------
// storage

/// `storage-list --format=json [<name>]`: storage instance ids (`data/0`).
pub fn storage_list(b: &dyn Backend, name: Option<&str>) -> Result<Vec<String>, HookCmdError> {
    let mut a = args(["--format=json"]);
    if let Some(n) = name {
        a.push(n.into());
    }
    let ids: Option<Vec<String>> = run_json(b, "storage-list", a)?;
    Ok(ids.unwrap_or_default())
}

/// `storage-get --format=json -s <id>`.
pub fn storage_get(b: &dyn Backend, storage_id: &str) -> Result<StorageInfo, HookCmdError> {
    run_json(b, "storage-get", args(["--format=json", "-s", storage_id]))
}

/// `storage-add <name>=<count>` (buffered).
pub fn storage_add(b: &dyn Backend, name: &str, count: u32) -> Result<(), HookCmdError> {
    run(b, "storage-add", vec![format!("{name}={count}")], None)?;
    Ok(())
}

/// `pod-spec-set --file <spec> [--k8s-resources <file>]`: legacy podspec
/// charms only. Never call it from a sidecar charm; it exists because it is
/// one of Juju's hook commands.
pub fn pod_spec_set(
    b: &dyn Backend,
    spec: &std::path::Path,
    k8s_resources: Option<&std::path::Path>,
) -> Result<(), HookCmdError> {
    let mut a = vec!["--file".to_owned(), spec.display().to_string()];
    if let Some(r) = k8s_resources {
        a.push("--k8s-resources".into());
        a.push(r.display().to_string());
    }
    run(b, "pod-spec-set", a, None)?;
    Ok(())
}

#[cfg(test)]
mod tests;
