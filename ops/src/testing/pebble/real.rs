//! A workload of real processes and real files, for end-to-end tests.
//!
//! The container's filesystem is a directory on this machine (`root`):
//! container path `/etc/app.yaml` is `<root>/etc/app.yaml`. Service and exec
//! commands run as real processes: an absolute executable is looked for
//! under `root` first (so a test can link `<root>/usr/local/bin/server` to a
//! freshly built binary) and then as given; a bare name is looked up in
//! `PATH`, the container's copy (under `root`) first. Services get the double's environment plus their own, run in
//! their own process group, count as started after staying up one second
//! (Pebble's rule), and are stopped with SIGTERM, then SIGKILL after the
//! kill delay. Checks really run every period (HTTP GET, TCP connect, or a
//! command).
//!
//! By default a process sees the host's filesystem: a path the charm pushed
//! (`/etc/app/ca.crt`) is under `root`, not at that path. With
//! [`RealWorkload::with_container_view`] every service, exec'd command and
//! exec check runs in a private mount namespace (`unshare --mount`) where
//! every top-level directory of the host (`/etc`, `/usr`, `/var`…; not the
//! kernel's `/proc`, `/sys`, `/dev`, `/run`, nor the one holding `root`) is
//! an overlay: the container's files on top of the host's, the process's
//! writes landing in `root`. So the container's paths mean the same to the
//! processes as to the charm, and the host is not written. That needs root
//! (mounting) and overlayfs. Limits: a top-level directory the host lacks
//! (`/app`) cannot be made without creating it on the host, so the
//! container's own is reachable only under `root`; mounts nested inside an
//! overlaid directory are hidden by it; the network is the host's.
//!
//! Deliberate limits: processes run as the test's own user (the `user` and
//! `group` of a request are recorded, not applied, and file ownership is
//! reported but not changed), and the output snapshot leaves files out
//! (they are on disk under `root`).

use std::collections::{BTreeMap, VecDeque};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::workload::{
    base_name, check_absolute, normalise, ExecSpec, FsError, Ownership, Workload,
};
use crate::pebble::duration;
use crate::pebble::layer::{Check, Service};
use crate::pebble::plan::split_command;
use crate::pebble::protocol::{FileInfo, FileType};
use crate::testing::state::{ExecRecord, FsEntry};

/// How many output lines of each service are kept (`/v1/logs`).
const LOG_LINES: usize = 1000;

struct Running {
    child: Child,
    pid: u32,
    kill_delay: Duration,
}

/// Real processes on a real directory.
pub struct RealWorkload {
    root: PathBuf,
    env: BTreeMap<String, String>,
    services: Arc<Mutex<BTreeMap<String, Running>>>,
    exited: Arc<Mutex<BTreeMap<String, i32>>>,
    logs: Arc<Mutex<VecDeque<(String, String)>>>,
    history: Arc<Mutex<Vec<ExecRecord>>>,
    /// Set when processes see the container's paths (overlay work dirs live here).
    view: Option<ContainerView>,
}

/// Where the overlays of [`RealWorkload::with_container_view`] keep their
/// work directories (one set per process: overlayfs refuses a work
/// directory another mount uses).
struct ContainerView {
    work: PathBuf,
    next: std::sync::atomic::AtomicU64,
}

/// Host directories never overlaid: kernel filesystems.
const NOT_OVERLAID: &[&str] = &["proc", "sys", "dev", "run"];

impl RealWorkload {
    /// A workload rooted at `root` (created if missing), whose processes
    /// start from `env` (typically this process's `PATH` and `HOME`).
    pub fn new(root: &Path, env: BTreeMap<String, String>) -> std::io::Result<RealWorkload> {
        std::fs::create_dir_all(root)?;
        Ok(RealWorkload {
            root: std::path::absolute(root)?,
            env,
            services: Arc::default(),
            exited: Arc::default(),
            logs: Arc::default(),
            history: Arc::default(),
            view: None,
        })
    }

    /// Runs every process in a private mount namespace where the container's
    /// files are at their container paths (see the module documentation).
    /// Fails when this process cannot mount (not root) or `unshare` is
    /// missing, naming what to do.
    pub fn with_container_view(mut self) -> std::io::Result<RealWorkload> {
        let is_root = std::fs::metadata("/proc/self").map(|m| m.uid() == 0)?;
        if !is_root {
            return Err(std::io::Error::other(
                "the container view mounts overlays and needs root; run the test as root",
            ));
        }
        let unshare = ["/usr/bin/unshare", "/bin/unshare"]
            .iter()
            .any(|p| Path::new(p).is_file());
        if !unshare {
            return Err(std::io::Error::other(
                "the container view needs unshare(1) (util-linux)",
            ));
        }
        let name = self
            .root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "root".into());
        let work = self
            .root
            .parent()
            .unwrap_or(&self.root)
            .join(format!(".{name}.overlay-work"));
        std::fs::create_dir_all(&work)?;
        self.view = Some(ContainerView {
            work,
            next: std::sync::atomic::AtomicU64::new(0),
        });
        Ok(self)
    }

    /// The directory standing for the container's `/`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where container path `path` (absolute) is on this machine.
    pub fn host_path(&self, path: &str) -> PathBuf {
        self.root.join(normalise(path).trim_start_matches('/'))
    }

    fn resolve(&self, exe: &str) -> Option<PathBuf> {
        if exe.starts_with('/') {
            let inside = self.host_path(exe);
            if inside.is_file() {
                return Some(inside);
            }
            let outside = PathBuf::from(exe);
            return outside.is_file().then_some(outside);
        }
        if exe.contains('/') {
            return None;
        }
        let path = self
            .env
            .get("PATH")
            .cloned()
            .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        // The container's own executables come first, as they would in
        // the container.
        let dirs: Vec<&str> = path.split(':').filter(|d| d.starts_with('/')).collect();
        dirs.iter()
            .map(|d| self.host_path(&format!("{d}/{exe}")))
            .chain(path.split(':').map(|d| Path::new(d).join(exe)))
            .find(|p| p.is_file())
    }

    /// The host's top-level directories to overlay with the container's
    /// (made in `root` when missing, so nothing a process writes there can
    /// reach the host).
    fn overlays(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir("/") else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            // Real directories only: `/bin` → `usr/bin` follows `/usr`.
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !NOT_OVERLAID.contains(&n.as_str()))
            // Not where the root itself lives: an overlay may not hold its
            // own upper directory.
            .filter(|n| !self.root.starts_with(Path::new("/").join(n)))
            .filter(|n| std::fs::create_dir_all(self.root.join(n)).is_ok())
            .collect();
        names.sort();
        names
    }

    /// Wraps `argv` (its executable already resolved) so it runs in a
    /// private mount namespace with the container's directories overlaid.
    fn in_container_view(
        &self,
        view: &ContainerView,
        exe: &Path,
        args: &[String],
    ) -> (Command, PathBuf) {
        let n = view.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let work = view.work.join(n.to_string());
        // The shell mounts, then becomes the command (exec keeps the pid,
        // so signals and the process group are the command's).
        let mut script = String::from("set -e\n");
        for d in self.overlays() {
            let upper = self.root.join(&d);
            let wd = work.join(&d);
            let _ = std::fs::create_dir_all(&wd);
            script.push_str(&format!(
                "mount -t overlay overlay -o index=off,lowerdir={host},upperdir={upper},workdir={wd} {host}\n",
                host = shell_quote(&format!("/{d}")),
                upper = shell_quote(&upper.display().to_string()),
                wd = shell_quote(&wd.display().to_string()),
            ));
        }
        script.push_str("exec \"$@\"\n");
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(script)
            .arg("sh")
            .arg(exe)
            .args(args);
        (cmd, work)
    }

    fn command(
        &self,
        argv: &[String],
        env: &BTreeMap<String, String>,
        working_dir: Option<&str>,
    ) -> Result<Command, String> {
        self.prepare(argv, env, working_dir).map(|(cmd, _)| cmd)
    }

    /// The command, and the overlay work directory to remove once it has
    /// ended (with the container view).
    fn prepare(
        &self,
        argv: &[String],
        env: &BTreeMap<String, String>,
        working_dir: Option<&str>,
    ) -> Result<(Command, Option<PathBuf>), String> {
        let exe = argv.first().ok_or("empty command")?;
        let path = self
            .resolve(exe)
            .ok_or_else(|| format!("cannot find executable {exe:?}"))?;
        let (mut cmd, work) = match &self.view {
            Some(view) => {
                let (cmd, work) = self.in_container_view(view, &path, &argv[1..]);
                (cmd, Some(work))
            }
            None => {
                let mut cmd = Command::new(path);
                cmd.args(&argv[1..]);
                (cmd, None)
            }
        };
        cmd.env_clear()
            .envs(&self.env)
            .envs(env)
            .current_dir(working_dir.map_or_else(|| self.root.clone(), |w| self.host_path(w)))
            .kill_on_drop(true);
        Ok((cmd, work))
    }

    fn io_error(&self, op: &str, path: &str, e: &std::io::Error) -> FsError {
        let text = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory".to_owned(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
            std::io::ErrorKind::AlreadyExists => "file exists".to_owned(),
            std::io::ErrorKind::DirectoryNotEmpty => "directory not empty".to_owned(),
            std::io::ErrorKind::NotADirectory => "not a directory".to_owned(),
            std::io::ErrorKind::IsADirectory => "is a directory".to_owned(),
            _ => e.to_string(),
        };
        let message = format!("{op} {path}: {text}");
        match e.kind() {
            std::io::ErrorKind::NotFound => FsError::not_found(message),
            std::io::ErrorKind::PermissionDenied => FsError {
                kind: "permission-denied",
                message,
            },
            _ => FsError::generic(message),
        }
    }

    fn info(&self, path: &str, host: &Path) -> Result<FileInfo, FsError> {
        let meta = std::fs::symlink_metadata(host).map_err(|e| self.io_error("stat", path, &e))?;
        let ft = meta.file_type();
        let file_type = if ft.is_file() {
            FileType::File
        } else if ft.is_dir() {
            FileType::Directory
        } else if ft.is_symlink() {
            FileType::Symlink
        } else {
            FileType::Unknown
        };
        let modified = time::OffsetDateTime::from_unix_timestamp(meta.mtime())
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        Ok(FileInfo {
            path: path.to_owned(),
            name: if path == "/" {
                "/".into()
            } else {
                base_name(path).to_owned()
            },
            file_type,
            size: ft.is_file().then_some(meta.len()),
            permissions: meta.permissions().mode() & 0o7777,
            last_modified: modified,
            user_id: Some(meta.uid()),
            user: Some(account_name("/etc/passwd", meta.uid())),
            group_id: Some(meta.gid()),
            group: Some(account_name("/etc/group", meta.gid())),
        })
    }

    fn make_dirs(&self, host: &Path, mode: u32) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(host)
    }
}

/// A directory removed when dropped (an overlay work directory whose
/// namespace has ended).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `s` quoted for sh.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The name for `id` in a passwd/group file, or the number.
fn account_name(file: &str, id: u32) -> String {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                f.next()?;
                (f.next()?.parse::<u32>().ok()? == id).then(|| name.to_owned())
            })
        })
        .unwrap_or_else(|| id.to_string())
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Sends `signal` to process group `pid` with kill(1): std has no signal
/// API and this crate forbids `unsafe`.
async fn signal_group(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

impl Workload for RealWorkload {
    fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        check_absolute(path)?;
        let host = self.host_path(path);
        if host.is_dir() {
            return Err(FsError::generic(format!(
                "can only read a regular file: {path:?}"
            )));
        }
        std::fs::read(&host).map_err(|e| self.io_error("open", path, &e))
    }

    fn write(
        &self,
        path: &str,
        data: &[u8],
        make_dirs: bool,
        own: &Ownership,
    ) -> Result<(), FsError> {
        check_absolute(path)?;
        if own.user.is_none()
            && own.user_id.is_none()
            && (own.group.is_some() || own.group_id.is_some())
        {
            return Err(FsError::generic("must specify user, not just group".into()));
        }
        let host = self.host_path(path);
        if let Some(dir) = host.parent() {
            if make_dirs {
                self.make_dirs(dir, 0o755)
                    .map_err(|e| self.io_error("mkdir", path, &e))?;
            }
        }
        // Written beside the target, then renamed: readers never see half a file.
        let tmp = host.with_file_name(format!(".{}.pebble-temp", base_name(path)));
        std::fs::write(&tmp, data).map_err(|e| self.io_error("open", path, &e))?;
        let mode = own.permissions.unwrap_or(0o644);
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
            .map_err(|e| self.io_error("chmod", path, &e))?;
        std::fs::rename(&tmp, &host).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.io_error("rename", path, &e)
        })
    }

    fn list(
        &self,
        path: &str,
        pattern: Option<&str>,
        itself: bool,
    ) -> Result<Vec<FileInfo>, FsError> {
        check_absolute(path)?;
        let path = normalise(path);
        let host = self.host_path(&path);
        let meta = std::fs::metadata(&host).map_err(|e| self.io_error("stat", &path, &e))?;
        if !meta.is_dir() || itself {
            return Ok(vec![self.info(&path, &host)?]);
        }
        let glob = match pattern {
            Some(p) => Some(
                glob::Pattern::new(p)
                    .map_err(|e| FsError::generic(format!("syntax error in pattern: {e}")))?,
            ),
            None => None,
        };
        let mut names: Vec<String> = std::fs::read_dir(&host)
            .map_err(|e| self.io_error("open", &path, &e))?
            .filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok()))
            .filter(|n| glob.as_ref().is_none_or(|g| g.matches(n)))
            .collect();
        names.sort();
        names
            .iter()
            .map(|n| {
                let child = if path == "/" {
                    format!("/{n}")
                } else {
                    format!("{path}/{n}")
                };
                self.info(&child, &host.join(n))
            })
            .collect()
    }

    fn make_dir(&self, path: &str, make_parents: bool, own: &Ownership) -> Result<(), FsError> {
        check_absolute(path)?;
        let host = self.host_path(path);
        let mode = own.permissions.unwrap_or(0o755);
        if make_parents {
            if host.is_dir() {
                return Ok(());
            }
            return self
                .make_dirs(&host, mode)
                .map_err(|e| self.io_error("mkdir", path, &e));
        }
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(mode)
            .create(&host)
            .map_err(|e| self.io_error("mkdir", path, &e))
    }

    fn remove(&self, path: &str, recursive: bool) -> Result<(), FsError> {
        check_absolute(path)?;
        let host = self.host_path(path);
        let result = match std::fs::symlink_metadata(&host) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && recursive => Ok(()),
            Err(e) => Err(e),
            Ok(m) if m.is_dir() && recursive => std::fs::remove_dir_all(&host),
            Ok(m) if m.is_dir() => std::fs::remove_dir(&host),
            Ok(_) => std::fs::remove_file(&host),
        };
        result.map_err(|e| self.io_error("remove", path, &e))
    }

    fn is_dir(&self, path: &str) -> bool {
        self.host_path(path).is_dir()
    }

    fn find_executable(&self, command: &[String]) -> Result<(), String> {
        let exe = command.first().cloned().unwrap_or_default();
        self.resolve(&exe)
            .map(|_| ())
            .ok_or_else(|| format!("cannot find executable {exe:?}"))
    }

    fn start_service(
        &self,
        name: &str,
        service: &Service,
    ) -> BoxFuture<'static, Result<(), String>> {
        let argv =
            split_command(service.command.as_deref().unwrap_or("")).map(|(mut base, defaults)| {
                base.extend(defaults);
                base
            });
        let prepared = argv.and_then(|argv| {
            let mut cmd =
                self.command(&argv, &service.environment, service.working_dir.as_deref())?;
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0);
            Ok(cmd)
        });
        let kill_delay = service
            .kill_delay
            .as_deref()
            .and_then(|d| duration::parse(d).ok())
            .unwrap_or(Duration::from_secs(5));
        let (name, services, exited, logs) = (
            name.to_owned(),
            self.services.clone(),
            self.exited.clone(),
            self.logs.clone(),
        );
        Box::pin(async move {
            let mut cmd = prepared.map_err(|e| format!("cannot start service: {e}"))?;
            let mut child = cmd
                .spawn()
                .map_err(|e| format!("cannot start service: {e}"))?;
            let pid = child.id().unwrap_or(0);
            for stream in [
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
                child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            ]
            .into_iter()
            .flatten()
            {
                let (logs, name) = (logs.clone(), name.clone());
                tokio::spawn(async move {
                    let mut lines = BufReader::new(stream).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let mut l = logs.lock().expect("not poisoned");
                        l.push_back((name.clone(), line));
                        while l.len() > LOG_LINES {
                            l.pop_front();
                        }
                    }
                });
            }
            // Pebble's rule: started once it has stayed up for a second.
            match tokio::time::timeout(Duration::from_secs(1), child.wait()).await {
                Ok(Ok(status)) => {
                    let code = exit_code(status);
                    exited.lock().expect("not poisoned").insert(name, code);
                    Err(format!(
                        "service start attempt: exited quickly with code {code}, will restart"
                    ))
                }
                Ok(Err(e)) => Err(format!("cannot start service: {e}")),
                Err(_) => {
                    exited.lock().expect("not poisoned").remove(&name);
                    services.lock().expect("not poisoned").insert(
                        name,
                        Running {
                            child,
                            pid,
                            kill_delay,
                        },
                    );
                    Ok(())
                }
            }
        })
    }

    fn stop_service(&self, name: &str) -> BoxFuture<'static, Result<(), String>> {
        let running = self.services.lock().expect("not poisoned").remove(name);
        Box::pin(async move {
            let Some(mut r) = running else {
                return Ok(());
            };
            signal_group(r.pid, "TERM").await;
            if tokio::time::timeout(r.kill_delay, r.child.wait())
                .await
                .is_ok()
            {
                return Ok(());
            }
            signal_group(r.pid, "KILL").await;
            match tokio::time::timeout(Duration::from_secs(5), r.child.wait()).await {
                Ok(_) => Ok(()),
                Err(_) => Err(
                    "cannot stop service: process still running after SIGTERM and SIGKILL".into(),
                ),
            }
        })
    }

    fn exec(
        &self,
        spec: ExecSpec,
        mut stdin: mpsc::Receiver<Bytes>,
        stdout: mpsc::Sender<Bytes>,
        stderr: mpsc::Sender<Bytes>,
    ) -> BoxFuture<'static, Result<i32, String>> {
        let prepared = self.prepare(
            &spec.command,
            &spec.environment,
            spec.working_dir.as_deref(),
        );
        let history = self.history.clone();
        Box::pin(async move {
            let (mut cmd, work) = prepared?;
            // The namespace (and its mounts) ends with the command.
            let _work = work.map(RemoveOnDrop);
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = cmd
                .spawn()
                .map_err(|e| format!("cannot start command: {e}"))?;
            let mut child_in = child.stdin.take().expect("piped");
            let seen: Arc<Mutex<Vec<u8>>> = Arc::default();
            let seen_in = seen.clone();
            // Dropping the pipe at the client's end of input closes the
            // command's stdin.
            let input = tokio::spawn(async move {
                while let Some(chunk) = stdin.recv().await {
                    seen_in
                        .lock()
                        .expect("not poisoned")
                        .extend_from_slice(&chunk);
                    if child_in.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
            });
            async fn pump(mut from: impl tokio::io::AsyncRead + Unpin, to: mpsc::Sender<Bytes>) {
                let mut buf = vec![0u8; 32 * 1024];
                while let Ok(n) = from.read(&mut buf).await {
                    if n == 0 || to.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        break;
                    }
                }
            }
            let out = tokio::spawn(pump(child.stdout.take().expect("piped"), stdout));
            let err = tokio::spawn(pump(child.stderr.take().expect("piped"), stderr));
            let status = child.wait().await.map_err(|e| e.to_string())?;
            let _ = out.await;
            let _ = err.await;
            input.abort();
            let code = exit_code(status);
            history.lock().expect("not poisoned").push(ExecRecord {
                command: spec.command,
                environment: spec.environment,
                working_dir: spec.working_dir,
                user: spec.user,
                group: spec.group,
                stdin: String::from_utf8_lossy(&seen.lock().expect("not poisoned")).into_owned(),
                exit_code: code,
            });
            Ok(code)
        })
    }

    fn run_check(&self, _name: &str, check: &Check) -> BoxFuture<'static, Result<(), String>> {
        let timeout = check
            .timeout
            .as_deref()
            .and_then(|t| duration::parse(t).ok())
            .unwrap_or(Duration::from_secs(3));
        let check = check.clone();
        let exec = check.exec.as_ref().map(|e| {
            split_command(e.command.as_deref().unwrap_or(""))
                .and_then(|(argv, _)| self.prepare(&argv, &e.environment, e.working_dir.as_deref()))
        });
        Box::pin(async move {
            let run = async {
                if let Some(http) = &check.http {
                    return http_check(http.url.as_deref().unwrap_or(""), &http.headers).await;
                }
                if let Some(tcp) = &check.tcp {
                    let host = tcp.host.clone().unwrap_or_else(|| "localhost".into());
                    let port = tcp.port.unwrap_or(0);
                    return tokio::net::TcpStream::connect((host.as_str(), port))
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("dial tcp {host}:{port}: {e}"));
                }
                match exec {
                    Some(Ok((mut cmd, work))) => {
                        let _work = work.map(RemoveOnDrop);
                        let out = cmd
                            .stdin(Stdio::null())
                            .output()
                            .await
                            .map_err(|e| e.to_string())?;
                        if out.status.success() {
                            Ok(())
                        } else {
                            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                                + &String::from_utf8_lossy(&out.stderr);
                            Err(format!(
                                "exit status {}; {}",
                                exit_code(out.status),
                                text.trim()
                            ))
                        }
                    }
                    Some(Err(e)) => Err(e),
                    None => Err("check has no http, tcp or exec".into()),
                }
            };
            match tokio::time::timeout(timeout, run).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "check timed out after {}",
                    duration::format(timeout)
                )),
            }
        })
    }

    fn snapshot_files(&self) -> BTreeMap<String, FsEntry> {
        // The files are on disk under `root`; copying them all after every
        // change would cost more than any test gains.
        BTreeMap::new()
    }

    fn exec_history(&self) -> Vec<ExecRecord> {
        self.history.lock().expect("not poisoned").clone()
    }

    fn service_exit(&self, name: &str) -> Option<i32> {
        if let Some(code) = self.exited.lock().expect("not poisoned").get(name) {
            return Some(*code);
        }
        let mut services = self.services.lock().expect("not poisoned");
        let code = match services.get_mut(name)?.child.try_wait() {
            Ok(Some(status)) => exit_code(status),
            _ => return None,
        };
        services.remove(name);
        self.exited
            .lock()
            .expect("not poisoned")
            .insert(name.to_owned(), code);
        Some(code)
    }

    fn runs_checks(&self) -> bool {
        true
    }

    fn logs(&self, services: &[String]) -> Vec<(String, String)> {
        self.logs
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|(s, _)| services.is_empty() || services.contains(s))
            .cloned()
            .collect()
    }
}

/// One HTTP GET; any 2xx passes (pebble.md §8).
async fn http_check(url: &str, headers: &BTreeMap<String, String>) -> Result<(), String> {
    use http_body_util::{BodyExt, Empty};
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    let host = uri.host().unwrap_or("localhost").to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("Get {url:?}: dial tcp {host}:{port}: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("Get {url:?}: {e}"))?;
    let driver = tokio::spawn(conn);
    let mut req = http::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header("host", format!("{host}:{port}"));
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("Get {url:?}: {e}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    driver.abort();
    if status.is_success() {
        Ok(())
    } else {
        let text = String::from_utf8_lossy(&body);
        let first = text.lines().take(5).collect::<Vec<_>>().join("\n");
        Err(format!("non-2xx status code {}; {first}", status.as_u16()))
    }
}
