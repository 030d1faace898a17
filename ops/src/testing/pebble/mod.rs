//! A Pebble double: Pebble's HTTP API on a real Unix socket.
//!
//! It serves pebble.md to the letter (envelope, error texts, layers and
//! plan, services with changes and waiting, files, exec over websockets,
//! checks, health, notices), so the real [`crate::pebble`] client runs
//! unchanged in every charm test, and the real Python client can be pointed
//! at it. What it does to the "container" goes through a
//! [`workload::Workload`]; the [`workload::SimulatedWorkload`] keeps it all
//! in memory.
//!
//! With [`real::RealWorkload`] the double runs the layer's services and
//! exec'd commands as real processes on a real directory and runs checks
//! every period, for end-to-end tests.
//!
//! Deliberate simplifications: every caller is admin (no peer-credential
//! checks), simulated services count as started at once instead of after
//! one second, services that exit are not restarted (they show `error`),
//! and layer labels of the `dir/name` form are ordered like plain labels.

mod api;
pub mod real;
pub mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::pebble::protocol::ServiceStatus;
use crate::testing::state::{Container, LabelledLayer};
use api::Shared;
use workload::{SimulatedWorkload, Workload};

/// Starting the double failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DoubleError {
    /// The socket could not be created.
    #[error("cannot listen on {}: {source}", .socket.display())]
    Listen {
        /// The socket path.
        socket: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The container's layers do not form a valid plan.
    #[error("container {container:?}: its layers do not combine into a plan: {message}")]
    InvalidLayers {
        /// The container.
        container: String,
        /// Pebble's message.
        message: String,
    },
}

/// A running Pebble double for one container.
pub struct PebbleDouble {
    shared: Arc<Shared>,
    template: Container,
    socket: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for PebbleDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PebbleDouble")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

fn shared_for(container: &Container, workload: Arc<dyn Workload>) -> Result<Shared, DoubleError> {
    let layers = container
        .layers
        .iter()
        .map(|l| (l.label.clone(), l.layer.clone()))
        .collect();
    let notices = container
        .notices
        .iter()
        .enumerate()
        .map(|(i, (key, data))| crate::pebble::protocol::Notice {
            id: (i + 1).to_string(),
            user_id: Some(0),
            notice_type: "custom".into(),
            key: key.clone(),
            first_occurred: api::now(),
            last_occurred: api::now(),
            last_repeated: api::now(),
            occurrences: 1,
            last_data: data.clone(),
            repeat_after: None,
            expire_after: Some("168h0m0s".into()),
        })
        .collect();
    Shared::new(
        layers,
        container.service_statuses.clone(),
        container.check_statuses.clone(),
        notices,
        workload,
    )
    .map_err(|message| DoubleError::InvalidLayers {
        container: container.name.clone(),
        message,
    })
}

impl PebbleDouble {
    /// Serves `container` (simulated) on `socket`. Call from within a tokio
    /// runtime; the server runs as a task on it.
    pub async fn start(socket: &Path, container: &Container) -> Result<PebbleDouble, DoubleError> {
        let workload = Arc::new(SimulatedWorkload::from_container(container));
        PebbleDouble::start_with(socket, container, workload, None).await
    }

    /// Serves `container` on `socket` with any workload; `on_change` is
    /// called with a snapshot after every change (the standalone binary
    /// persists it).
    pub async fn start_with(
        socket: &Path,
        container: &Container,
        workload: Arc<dyn Workload>,
        on_change: Option<Box<dyn Fn(Container) + Send + Sync>>,
    ) -> Result<PebbleDouble, DoubleError> {
        let mut shared = shared_for(container, workload)?;
        let template = container.clone();
        if let Some(f) = on_change {
            let template = template.clone();
            shared.on_change = Some(Box::new(move |s: &Shared| f(snapshot(s, &template))));
        }
        let listen_err = |source| DoubleError::Listen {
            socket: socket.to_owned(),
            source,
        };
        if let Some(dir) = socket.parent() {
            std::fs::create_dir_all(dir).map_err(listen_err)?;
        }
        // A stale socket from a killed run would make bind fail.
        let _ = std::fs::remove_file(socket);
        let listener = tokio::net::UnixListener::bind(socket).map_err(listen_err)?;
        let shared = Arc::new(shared);
        api::sync_check_runners(&shared);
        let app = api::router(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(PebbleDouble {
            shared,
            template,
            socket: socket.to_owned(),
            shutdown: Some(tx),
            server,
        })
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The container as it is now: layers, service states, files, the
    /// commands run, notices.
    pub fn snapshot(&self) -> Container {
        snapshot(&self.shared, &self.template)
    }

    /// Stops serving and removes the socket.
    pub async fn stop(mut self) {
        // Real services must not outlive the double.
        let running: Vec<String> = {
            let inner = self.shared.inner.lock().expect("not poisoned");
            inner
                .services
                .iter()
                .filter(|(_, s)| s.current == ServiceStatus::Active)
                .map(|(n, _)| n.clone())
                .collect()
        };
        for name in running {
            let _ = self.shared.workload.stop_service(&name).await;
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Connections still open (an exec socket a test abandoned) must not
        // keep the run alive.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), &mut self.server).await;
        self.server.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn snapshot(shared: &Shared, template: &Container) -> Container {
    let inner = shared.inner.lock().expect("not poisoned");
    let service_statuses: BTreeMap<String, ServiceStatus> = inner
        .services
        .iter()
        .filter(|(_, s)| s.current != ServiceStatus::Inactive)
        .map(|(n, s)| (n.clone(), s.current))
        .collect();
    Container {
        name: template.name.clone(),
        can_connect: true,
        layers: inner
            .layers
            .iter()
            .map(|(label, layer)| LabelledLayer {
                label: label.clone(),
                layer: layer.clone(),
            })
            .collect(),
        service_statuses,
        start_failures: template.start_failures.clone(),
        filesystem: shared.workload.snapshot_files(),
        execs: template.execs.clone(),
        exec_history: shared.workload.exec_history(),
        check_statuses: inner.check_overrides.clone(),
        notices: inner
            .notices
            .iter()
            .map(|n| (n.key.clone(), n.last_data.clone()))
            .collect(),
    }
}

#[cfg(test)]
mod tests;
