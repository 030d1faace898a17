//! A client for Pebble, the service manager in each workload container.
//!
//! A sidecar charm reaches container `<name>`'s Pebble at
//! `/charm/containers/<name>/pebble.socket` (or under `$OPS_CONTAINERS_DIR`
//! in tests). Layout, following pebble.md:
//!
//! - [`protocol`]: pure request builders, the response envelope and the
//!   wire types; no I/O.
//! - [`transport`]: the [`transport::Transport`] seam and its hyper-over-Unix-socket
//!   implementation (plus websockets for exec).
//! - [`AsyncClient`] / [`Client`]: the operations, asynchronous and blocking.
//! - [`layer`] and [`plan`]: layer types, and Pebble's own plan logic
//!   (validation, combining, printing, service order).
//! - [`duration`]: Go duration syntax.
//!
//! Errors follow the Python client: [`Error::Connection`] when the socket is
//! missing (the container restarted?), [`Error::Api`] for an error
//! envelope, [`Error::Change`] for a change that failed, [`Error::Exec`] for
//! a non-zero exit, [`Error::Timeout`], [`Error::Protocol`] for answers that
//! do not follow the protocol, and [`Error::Path`] for per-file failures.

mod client;
pub mod duration;
pub mod layer;
pub mod plan;
pub mod protocol;
pub mod transport;

use std::path::PathBuf;

pub use client::{
    AsyncClient, Client, ExecOptions, ExecOutput, PushOptions, DEFAULT_CHANGE_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT,
};
pub use layer::{Check, Layer, Service};
pub use protocol::{
    Change, ChangeId, CheckInfo, CheckStatus, FileInfo, FileOwnership, FileType, Notice,
    ServiceInfo, ServiceStartup, ServiceStatus, SystemInfo,
};

/// A Pebble operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Pebble is not reachable: the socket is missing or refuses
    /// connections. Usually the container is (re)starting; retry later.
    #[error("cannot connect to Pebble at {}: {source} (container restarted?)", .socket.display())]
    Connection {
        /// The socket path.
        socket: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Pebble answered with an error envelope.
    #[error("pebble error {code} {status}: {message}")]
    Api {
        /// The HTTP status code.
        code: u16,
        /// The reason phrase.
        status: String,
        /// Pebble's message.
        message: String,
        /// Pebble's error kind, when given (`not-found`, …).
        kind: Option<String>,
    },
    /// A change finished with an error (a service failed to start, …).
    #[error("pebble change {} failed: {err}", .change.id)]
    Change {
        /// The change's `err`.
        err: String,
        /// The whole change, for its tasks and logs.
        change: Box<Change>,
    },
    /// An exec'd command exited non-zero.
    #[error("command {:?} exited with code {code}: {}", .command, String::from_utf8_lossy(.stderr).trim_end())]
    Exec {
        /// The command.
        command: Vec<String>,
        /// Its exit code.
        code: i32,
        /// What it printed on stdout.
        stdout: Vec<u8>,
        /// What it printed on stderr.
        stderr: Vec<u8>,
    },
    /// Something took too long.
    #[error("pebble timeout: {0}")]
    Timeout(String),
    /// Pebble's answer did not follow the protocol.
    #[error("pebble protocol error: {0}")]
    Protocol(String),
    /// A file operation failed for one path.
    #[error("{message} ({kind})")]
    Path {
        /// `not-found`, `permission-denied` or `generic-file-error`.
        kind: String,
        /// Pebble's (Go's) message.
        message: String,
    },
}

impl Error {
    /// True for [`Error::Connection`]: the container is not (yet) there.
    pub fn is_connection(&self) -> bool {
        matches!(self, Error::Connection { .. })
    }

    /// True for a [`Error::Path`] of kind `not-found`.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Path { kind, .. } if kind == "not-found")
    }
}
