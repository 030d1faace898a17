//! The workload side of the Pebble double: what services, exec and files
//! act on.
//!
//! The API layer (module `api`) speaks Pebble's protocol and keeps
//! Pebble's bookkeeping (plan, changes, tasks); everything that would touch
//! a real container goes through the [`Workload`] trait. The
//! [`SimulatedWorkload`] here keeps files in memory, answers exec from
//! canned handlers and starts services instantly, which is what charm tests
//! want. A mode that runs real processes on a real directory is a second
//! implementation of the same trait, not a change to the API layer.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use crate::pebble::layer::{Check, Service};
use crate::pebble::protocol::{FileInfo, FileType};
use crate::testing::state::{Container, ExecHandler, ExecRecord, FsEntry};

/// A per-path file error in Go's words (pebble.md §7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsError {
    /// `not-found`, `permission-denied` or `generic-file-error`.
    pub kind: &'static str,
    /// The message, for example `stat /x: no such file or directory`.
    pub message: String,
}

impl FsError {
    pub(crate) fn not_found(message: String) -> FsError {
        FsError {
            kind: "not-found",
            message,
        }
    }
    pub(crate) fn generic(message: String) -> FsError {
        FsError {
            kind: "generic-file-error",
            message,
        }
    }
}

/// Ownership and mode for a write or a new directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ownership {
    /// Permission bits, when given.
    pub permissions: Option<u32>,
    /// Owner UID.
    pub user_id: Option<u32>,
    /// Owner name.
    pub user: Option<String>,
    /// Group GID.
    pub group_id: Option<u32>,
    /// Group name.
    pub group: Option<String>,
}

/// An exec request as the workload sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecSpec {
    /// The command.
    pub command: Vec<String>,
    /// The environment the request added.
    pub environment: BTreeMap<String, String>,
    /// The working directory, when given.
    pub working_dir: Option<String>,
    /// The user, when given.
    pub user: Option<String>,
    /// The group, when given.
    pub group: Option<String>,
}

/// What the Pebble double drives: files, services, commands and checks.
pub trait Workload: Send + Sync + 'static {
    /// Reads a regular file.
    fn read(&self, path: &str) -> Result<Vec<u8>, FsError>;
    /// Writes a file (optionally creating parents).
    fn write(
        &self,
        path: &str,
        data: &[u8],
        make_dirs: bool,
        own: &Ownership,
    ) -> Result<(), FsError>;
    /// Lists a directory's entries, or the path itself.
    fn list(
        &self,
        path: &str,
        pattern: Option<&str>,
        itself: bool,
    ) -> Result<Vec<FileInfo>, FsError>;
    /// Creates a directory.
    fn make_dir(&self, path: &str, make_parents: bool, own: &Ownership) -> Result<(), FsError>;
    /// Removes a path.
    fn remove(&self, path: &str, recursive: bool) -> Result<(), FsError>;
    /// Whether `path` is an existing directory.
    fn is_dir(&self, path: &str) -> bool;
    /// Fails the way Pebble's exec does before starting anything
    /// (`cannot find executable "x"`).
    fn find_executable(&self, command: &[String]) -> Result<(), String>;
    /// Starts a service; resolves once it counts as started.
    fn start_service(
        &self,
        name: &str,
        service: &Service,
    ) -> BoxFuture<'static, Result<(), String>>;
    /// Stops a service.
    fn stop_service(&self, name: &str) -> BoxFuture<'static, Result<(), String>>;
    /// Runs a command: stdin arrives on `stdin` (closed at end of input),
    /// output goes to `stdout`/`stderr`; resolves to the exit code.
    fn exec(
        &self,
        spec: ExecSpec,
        stdin: mpsc::Receiver<Bytes>,
        stdout: mpsc::Sender<Bytes>,
        stderr: mpsc::Sender<Bytes>,
    ) -> BoxFuture<'static, Result<i32, String>>;
    /// Runs a health check once.
    fn run_check(&self, name: &str, check: &Check) -> BoxFuture<'static, Result<(), String>>;
    /// The filesystem, for the output state.
    fn snapshot_files(&self) -> BTreeMap<String, FsEntry>;
    /// The commands run so far.
    fn exec_history(&self) -> Vec<ExecRecord>;
    /// `Some(code)` once a started service has exited on its own; `None`
    /// while it runs. Simulated services never exit.
    fn service_exit(&self, _name: &str) -> Option<i32> {
        None
    }
    /// Whether checks really run, every period (otherwise they keep the
    /// statuses the test gave).
    fn runs_checks(&self) -> bool {
        false
    }
    /// Recent output lines of services, oldest first: (service, line).
    fn logs(&self, _services: &[String]) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// How long the simulated exec waits for the client's end of stdin. The
/// Rust client always sends it at once; the Python client sends nothing when
/// it has no stdin, and then the command runs without input.
const STDIN_GRACE: Duration = Duration::from_millis(200);

/// An in-memory container: a file tree, canned exec answers, services that
/// start at once (or fail, when the state says so).
pub struct SimulatedWorkload {
    files: Mutex<BTreeMap<String, FsEntry>>,
    execs: Vec<ExecHandler>,
    history: std::sync::Arc<Mutex<Vec<ExecRecord>>>,
    start_failures: BTreeMap<String, String>,
}

impl SimulatedWorkload {
    /// A workload holding `container`'s files, exec handlers and start
    /// failures.
    pub fn from_container(container: &Container) -> SimulatedWorkload {
        let mut files = BTreeMap::new();
        for (path, entry) in &container.filesystem {
            let path = normalise(path);
            // Parents are implied by the state; make them real directories.
            let mut p = parent(&path);
            while let Some(dir) = p {
                if dir != "/" {
                    files.entry(dir.to_owned()).or_insert_with(FsEntry::dir);
                }
                p = parent(dir);
            }
            files.insert(path, entry.clone());
        }
        SimulatedWorkload {
            files: Mutex::new(files),
            execs: container.execs.clone(),
            history: std::sync::Arc::new(Mutex::new(container.exec_history.clone())),
            start_failures: container.start_failures.clone(),
        }
    }

    fn handler(&self, command: &[String]) -> Option<&ExecHandler> {
        self.execs
            .iter()
            .filter(|h| command.starts_with(&h.prefix))
            .max_by_key(|h| h.prefix.len())
    }
}

pub(crate) fn normalise(path: &str) -> String {
    if path.len() > 1 {
        path.trim_end_matches('/').to_owned()
    } else {
        path.to_owned()
    }
}

fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

pub(crate) fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Resolves the owner as Pebble does: nothing given is the daemon (root);
/// a user without a group gets the user's primary group; a group alone is an
/// error. The simulated container knows root and `_daemon_` (584792), and
/// gives any other name UID/GID 1000.
fn resolve_owner(own: &Ownership) -> Result<(String, u32, String, u32), FsError> {
    let lookup = |name: &str| match name {
        "root" => 0,
        "_daemon_" => 584_792,
        _ => 1000,
    };
    let name_of = |id: u32| match id {
        0 => "root".to_owned(),
        584_792 => "_daemon_".to_owned(),
        other => format!("user{other}"),
    };
    if own.user.is_none() && own.user_id.is_none() {
        if own.group.is_some() || own.group_id.is_some() {
            return Err(FsError::generic("must specify user, not just group".into()));
        }
        return Ok(("root".into(), 0, "root".into(), 0));
    }
    let (user, uid) = match (&own.user, own.user_id) {
        (Some(u), Some(id)) if lookup(u) != id && u != "root" => {
            return Err(FsError::generic(format!(
                "user {u:?} UID ({}) does not match user-id ({id})",
                lookup(u)
            )))
        }
        (Some(u), Some(id)) => (u.clone(), id),
        (Some(u), None) => (u.clone(), lookup(u)),
        (None, Some(id)) => (name_of(id), id),
        (None, None) => unreachable!("checked above"),
    };
    let (group, gid) = match (&own.group, own.group_id) {
        (Some(g), Some(id)) => (g.clone(), id),
        (Some(g), None) => (g.clone(), lookup(g)),
        (None, Some(id)) => (name_of(id), id),
        (None, None) => (user.clone(), uid),
    };
    Ok((user, uid, group, gid))
}

fn info(path: &str, e: &FsEntry) -> FileInfo {
    FileInfo {
        path: path.to_owned(),
        name: if path == "/" {
            "/".into()
        } else {
            base_name(path).to_owned()
        },
        file_type: if e.is_dir() {
            FileType::Directory
        } else {
            FileType::File
        },
        size: e.content.as_ref().map(|c| c.len() as u64),
        permissions: e.permissions,
        last_modified: "2026-01-01T00:00:00Z".into(),
        user_id: Some(e.user_id),
        user: Some(e.user.clone()),
        group_id: Some(e.group_id),
        group: Some(e.group.clone()),
    }
}

impl SimulatedWorkload {
    fn dir_exists(files: &BTreeMap<String, FsEntry>, path: &str) -> bool {
        path == "/" || files.get(path).is_some_and(FsEntry::is_dir)
    }

    fn make_parents(
        files: &mut BTreeMap<String, FsEntry>,
        path: &str,
        template: &FsEntry,
    ) -> Result<(), FsError> {
        let mut missing = Vec::new();
        let mut p = parent(path);
        while let Some(dir) = p {
            match files.get(dir) {
                _ if dir == "/" => break,
                Some(e) if e.is_dir() => break,
                Some(_) => return Err(FsError::generic(format!("mkdir {dir}: not a directory"))),
                None => missing.push(dir.to_owned()),
            }
            p = parent(dir);
        }
        for dir in missing.into_iter().rev() {
            files.insert(
                dir,
                FsEntry {
                    content: None,
                    permissions: 0o755,
                    ..template.clone()
                },
            );
        }
        Ok(())
    }
}

pub(crate) fn check_absolute(path: &str) -> Result<(), FsError> {
    if path.starts_with('/') {
        Ok(())
    } else {
        Err(FsError::generic(format!(
            "paths must be absolute, got {path:?}"
        )))
    }
}

impl Workload for SimulatedWorkload {
    fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        check_absolute(path)?;
        let files = self.files.lock().expect("not poisoned");
        let path = normalise(path);
        match files.get(&path) {
            Some(FsEntry {
                content: Some(c), ..
            }) => Ok(c.clone()),
            Some(_) => Err(FsError::generic(format!(
                "can only read a regular file: {path:?}"
            ))),
            None if path == "/" => Err(FsError::generic(
                "can only read a regular file: \"/\"".into(),
            )),
            None => Err(FsError::not_found(format!(
                "open {path}: no such file or directory"
            ))),
        }
    }

    fn write(
        &self,
        path: &str,
        data: &[u8],
        make_dirs: bool,
        own: &Ownership,
    ) -> Result<(), FsError> {
        check_absolute(path)?;
        let permissions = own.permissions.unwrap_or(0o644);
        let (user, user_id, group, group_id) = resolve_owner(own)?;
        let entry = FsEntry {
            content: Some(data.to_vec()),
            permissions,
            user,
            user_id,
            group,
            group_id,
        };
        let mut files = self.files.lock().expect("not poisoned");
        let path = normalise(path);
        let dir = parent(&path).unwrap_or("/");
        if !Self::dir_exists(&files, dir) {
            if !make_dirs {
                return Err(match files.get(dir) {
                    Some(_) => FsError::generic(format!("open {path}: not a directory")),
                    None => FsError::not_found(format!("open {path}: no such file or directory")),
                });
            }
            Self::make_parents(&mut files, &path, &entry)?;
        }
        if files.get(&path).is_some_and(FsEntry::is_dir) || path == "/" {
            return Err(FsError::generic(format!("open {path}: is a directory")));
        }
        files.insert(path, entry);
        Ok(())
    }

    fn list(
        &self,
        path: &str,
        pattern: Option<&str>,
        itself: bool,
    ) -> Result<Vec<FileInfo>, FsError> {
        check_absolute(path)?;
        let files = self.files.lock().expect("not poisoned");
        let path = normalise(path);
        let root = FsEntry::dir();
        let entry = if path == "/" {
            Some(&root)
        } else {
            files.get(&path)
        };
        let Some(entry) = entry else {
            return Err(FsError::not_found(format!(
                "stat {path}: no such file or directory"
            )));
        };
        if !entry.is_dir() || itself {
            return Ok(vec![info(&path, entry)]);
        }
        let glob = match pattern {
            Some(p) => Some(
                glob::Pattern::new(p)
                    .map_err(|e| FsError::generic(format!("syntax error in pattern: {e}")))?,
            ),
            None => None,
        };
        Ok(files
            .iter()
            .filter(|(p, _)| parent(p) == Some(path.as_str()))
            .filter(|(p, _)| glob.as_ref().is_none_or(|g| g.matches(base_name(p))))
            .map(|(p, e)| info(p, e))
            .collect())
    }

    fn make_dir(&self, path: &str, make_parents: bool, own: &Ownership) -> Result<(), FsError> {
        check_absolute(path)?;
        let permissions = own.permissions.unwrap_or(0o755);
        let (user, user_id, group, group_id) = resolve_owner(own)?;
        let entry = FsEntry {
            content: None,
            permissions,
            user,
            user_id,
            group,
            group_id,
        };
        let mut files = self.files.lock().expect("not poisoned");
        let path = normalise(path);
        if path == "/" || files.contains_key(&path) {
            if make_parents && Self::dir_exists(&files, &path) {
                return Ok(());
            }
            return Err(FsError::generic(format!("mkdir {path}: file exists")));
        }
        let dir = parent(&path).unwrap_or("/");
        if !Self::dir_exists(&files, dir) {
            if !make_parents {
                return Err(FsError::not_found(format!(
                    "mkdir {path}: no such file or directory"
                )));
            }
            Self::make_parents(&mut files, &path, &entry)?;
        }
        files.insert(path, entry);
        Ok(())
    }

    fn remove(&self, path: &str, recursive: bool) -> Result<(), FsError> {
        check_absolute(path)?;
        let mut files = self.files.lock().expect("not poisoned");
        let path = normalise(path);
        let prefix = format!("{path}/");
        let has_children = files.keys().any(|k| k.starts_with(&prefix));
        if !files.contains_key(&path) && path != "/" {
            return if recursive {
                Ok(())
            } else {
                Err(FsError::not_found(format!(
                    "remove {path}: no such file or directory"
                )))
            };
        }
        if has_children && !recursive {
            return Err(FsError::generic(format!(
                "remove {path}: directory not empty"
            )));
        }
        files.retain(|k, _| *k != path && !k.starts_with(&prefix));
        Ok(())
    }

    fn is_dir(&self, path: &str) -> bool {
        Self::dir_exists(&self.files.lock().expect("not poisoned"), &normalise(path))
    }

    fn find_executable(&self, command: &[String]) -> Result<(), String> {
        match self.handler(command) {
            Some(_) => Ok(()),
            None => Err(format!(
                "cannot find executable {:?}",
                command.first().cloned().unwrap_or_default()
            )),
        }
    }

    fn start_service(
        &self,
        _name: &str,
        _service: &Service,
    ) -> BoxFuture<'static, Result<(), String>> {
        let failure = self.start_failures.get(_name).cloned();
        Box::pin(async move {
            match failure {
                Some(_) => Err(
                    "service start attempt: exited quickly with code 1, will restart".to_owned(),
                ),
                None => Ok(()),
            }
        })
    }

    fn stop_service(&self, _name: &str) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }

    fn exec(
        &self,
        spec: ExecSpec,
        mut stdin: mpsc::Receiver<Bytes>,
        stdout: mpsc::Sender<Bytes>,
        stderr: mpsc::Sender<Bytes>,
    ) -> BoxFuture<'static, Result<i32, String>> {
        let handler = self.handler(&spec.command).cloned();
        let history = self.history.clone();
        Box::pin(async move {
            let handler = handler
                .ok_or_else(|| format!("cannot find executable {:?}", spec.command.first()))?;
            let mut input = Vec::new();
            let _ = tokio::time::timeout(STDIN_GRACE, async {
                while let Some(chunk) = stdin.recv().await {
                    input.extend_from_slice(&chunk);
                }
            })
            .await;
            if !handler.stdout.is_empty() {
                let _ = stdout.send(Bytes::from(handler.stdout.clone())).await;
            }
            if !handler.stderr.is_empty() {
                let _ = stderr.send(Bytes::from(handler.stderr.clone())).await;
            }
            history.lock().expect("not poisoned").push(ExecRecord {
                command: spec.command,
                environment: spec.environment,
                working_dir: spec.working_dir,
                user: spec.user,
                group: spec.group,
                stdin: String::from_utf8_lossy(&input).into_owned(),
                exit_code: handler.exit_code,
            });
            Ok(handler.exit_code)
        })
    }

    fn run_check(&self, _name: &str, _check: &Check) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }

    fn snapshot_files(&self) -> BTreeMap<String, FsEntry> {
        self.files.lock().expect("not poisoned").clone()
    }

    fn exec_history(&self) -> Vec<ExecRecord> {
        self.history.lock().expect("not poisoned").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs() -> SimulatedWorkload {
        SimulatedWorkload::from_container(&Container::new("c").with_file("/etc/app/a.conf", "a"))
    }

    fn err(r: Result<impl std::fmt::Debug, FsError>) -> (&'static str, String) {
        let e = r.unwrap_err();
        (e.kind, e.message)
    }

    #[test]
    fn files_behave_like_a_filesystem_with_gos_messages() {
        let w = fs();
        assert!(w.is_dir("/etc/app"), "parents are implied");
        assert_eq!(w.read("/etc/app/a.conf").unwrap(), b"a");
        assert_eq!(
            err(w.read("/nope")),
            ("not-found", "open /nope: no such file or directory".into())
        );
        assert_eq!(
            err(w.read("/etc")),
            (
                "generic-file-error",
                "can only read a regular file: \"/etc\"".into()
            )
        );
        assert_eq!(
            err(w.read("rel")),
            (
                "generic-file-error",
                "paths must be absolute, got \"rel\"".into()
            )
        );
        assert_eq!(
            err(w.write("/x/y/z", b"1", false, &Ownership::default())),
            ("not-found", "open /x/y/z: no such file or directory".into())
        );
        w.write(
            "/x/y/z",
            b"1",
            true,
            &Ownership {
                user: Some("_daemon_".into()),
                ..Default::default()
            },
        )
        .unwrap();
        let listed = w.list("/x", None, false).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (
                listed[0].name.as_str(),
                listed[0].file_type,
                listed[0].user_id
            ),
            ("y", FileType::Directory, Some(584_792))
        );
        assert_eq!(
            err(w.make_dir("/x", false, &Ownership::default())),
            ("generic-file-error", "mkdir /x: file exists".into())
        );
        w.make_dir("/x", true, &Ownership::default()).unwrap();
        assert_eq!(
            err(w.make_dir("/q/r", false, &Ownership::default())),
            ("not-found", "mkdir /q/r: no such file or directory".into())
        );
        assert_eq!(
            err(w.remove("/x", false)),
            (
                "generic-file-error",
                "remove /x: directory not empty".into()
            )
        );
        assert_eq!(
            err(w.remove("/nope", false)),
            (
                "not-found",
                "remove /nope: no such file or directory".into()
            )
        );
        w.remove("/nope", true).unwrap();
        w.remove("/x", true).unwrap();
        assert!(!w.is_dir("/x") && w.read("/x/y/z").is_err());
        assert_eq!(
            err(w.write(
                "/g",
                b"",
                false,
                &Ownership {
                    group: Some("g".into()),
                    ..Default::default()
                }
            )),
            (
                "generic-file-error",
                "must specify user, not just group".into()
            )
        );
        let globbed = w.list("/etc/app", Some("*.conf"), false).unwrap();
        assert_eq!(globbed.len(), 1);
        assert!(w.list("/etc/app", Some("*.crt"), false).unwrap().is_empty());
    }
}
