//! The executor: one reconcile for every hook. It reads the model into a
//! snapshot, asks [`desired`] for the target state, and applies only what
//! differs: relation data when its digest changed, files when their content
//! changed, the layer (and a restart) only when the layer changed. Running
//! it twice in a row changes nothing the second time.

use ops::hookcmds::{LogLevel, Port};
use ops::pebble::{Client, FileOwnership, PushOptions, ServiceStatus};
use ops::{Event, Model, RelationId};
use sha2::{Digest, Sha256};

use crate::config::{CharmConfig, RawConfig};
use crate::desired::{self, desired, DbState, Desired, Schema, SchemaStep, ServiceGoal, Snapshot};
use crate::gather::{self, log, UnitState, CONTAINER, PEER, PEER_SCHEMA_VERSION};
use crate::layer;
use crate::netpol;
use crate::redact;
use crate::schema;
use crate::status::{self, Status};
use crate::users;

/// Converts the charm's status to the framework's.
pub fn to_ops(s: &Status) -> ops::Status {
    match s.kind {
        status::Kind::Active => ops::Status::active(s.message.clone()),
        status::Kind::Blocked => ops::Status::blocked(s.message.clone()),
        status::Kind::Waiting => ops::Status::waiting(s.message.clone()),
        status::Kind::Maintenance => ops::Status::maintenance(s.message.clone()),
    }
}

/// The configuration, checked; on failure the unit is Blocked (the first
/// problem in the status, all of them in the log) and `None` comes back.
pub fn checked_config(model: &mut Model) -> anyhow::Result<Option<CharmConfig>> {
    let raw: RawConfig = model.config()?.values().clone();
    match CharmConfig::try_from(&raw) {
        Ok(cfg) => Ok(Some(cfg)),
        Err(errors) => {
            log(model, LogLevel::Warning, &errors.log_message());
            model.set_unit_status(ops::Status::blocked(errors.status_message()))?;
            Ok(None)
        }
    }
}

/// Where the charm's network clients connect. Production uses the defaults
/// (the in-cluster Kubernetes API, the server on the pod's loopback); only
/// Rust code can change them, which is what the tests do, so no option,
/// variable or relation can point the charm anywhere else.
#[derive(Clone, Default)]
pub struct Endpoints {
    /// A Kubernetes client configuration instead of the in-cluster one.
    pub kube: Option<kube::Config>,
    /// The server's base URL instead of `http://127.0.0.1:<port>`.
    pub admin_url: Option<String>,
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints")
            .field(
                "kube",
                &self.kube.as_ref().map(|c| c.cluster_url.to_string()),
            )
            .field("admin_url", &self.admin_url)
            .finish()
    }
}

impl Endpoints {
    /// A Kubernetes client: the configured one, or the pod's own cluster.
    pub fn kube_client(&self) -> Result<kube::Client, netpol::NetpolError> {
        match &self.kube {
            Some(config) => kube::Client::try_from(config.clone())
                .map_err(|e| netpol::NetpolError::Config(e.to_string())),
            None => netpol::in_cluster_client(),
        }
    }
}

/// Runs one reconcile for `event`.
pub fn reconcile(model: &mut Model, event: &Event, endpoints: &Endpoints) -> anyhow::Result<()> {
    let Some(cfg) = checked_config(model)? else {
        // Nothing is touched: the running server keeps its last good
        // configuration.
        return Ok(());
    };
    let before = UnitState::load(model);
    let mut state = before.clone();
    let mut snap = gather::snapshot(model, &cfg, &mut state)?;
    let mut d = desired(&cfg, &snap);
    apply_bags(model, &d, &mut state)?;
    if state.ports.as_ref() != Some(&d.ports) {
        model.set_ports(&d.ports.iter().map(|p| Port::tcp(*p)).collect::<Vec<_>>())?;
        state.ports = Some(d.ports.clone());
    }

    let container = model.container(CONTAINER)?;
    // The plan is read once: every comparison below uses it.
    let plan = if snap.container {
        container.plan().ok()
    } else {
        None
    };
    let mut status = d.status.clone();
    if let Some(step) = d.schema_step {
        match ensure_files(model, &container, &d, plan.as_ref()) {
            Ok(_) => {
                snap.schema = run_schema(model, &container, &snap, step)?;
                d = desired(&cfg, &snap);
                status = d.status.clone();
            }
            Err(problem) => status = problem,
        }
    }
    if d.schema_step.is_none() {
        status = apply_service(model, &container, &d, plan.as_ref(), status)?;
    }
    status = apply_network_policy(model, &cfg, &snap, event, endpoints, &mut state, status);
    model.set_unit_status(to_ops(&status))?;
    state.save(model, &before)?;
    Ok(())
}

/// Writes the relation bags whose content changed since this unit last
/// wrote them (a digest in the unit state; both commit together).
fn apply_bags(model: &mut Model, d: &Desired, state: &mut UnitState) -> anyhow::Result<()> {
    for bag in &d.bags {
        let key = format!(
            "{}:{}/{}",
            bag.endpoint,
            bag.relation_id,
            if bag.app { "app" } else { "unit" }
        );
        let digest = digest_bag(&bag.content);
        if state.written.get(&key) == Some(&digest) {
            continue;
        }
        let relation = RelationId::new(bag.endpoint, bag.relation_id);
        model.set_relation_data(&relation, bag.app, bag.content.clone())?;
        state.written.insert(key, digest);
    }
    // Forget relations that are gone.
    let live: Vec<String> = d
        .bags
        .iter()
        .map(|b| {
            format!(
                "{}:{}/{}",
                b.endpoint,
                b.relation_id,
                if b.app { "app" } else { "unit" }
            )
        })
        .collect();
    state.written.retain(|k, _| live.contains(k));
    Ok(())
}

fn digest_bag(bag: &crate::relations::Bag) -> String {
    let mut h = Sha256::new();
    for (k, v) in bag {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    users::hex(&h.finalize())
}

/// Makes the container hold the desired files and directories. Returns
/// whether the contracts CA changed (so the trust store must be refreshed).
/// Skipped entirely when the plan already carries the same files digest:
/// the files were pushed before that plan was written.
fn ensure_files(
    model: &mut Model,
    container: &Client,
    d: &Desired,
    plan: Option<&ops::pebble::Layer>,
) -> Result<bool, Status> {
    let digest = desired::files_digest(&d.files);
    let in_place = plan
        .and_then(layer::environment)
        .and_then(|env| env.get(desired::FILES_DIGEST_ENV))
        == Some(&digest);
    if in_place {
        return Ok(false);
    }
    let unreachable = |e: ops::pebble::Error| {
        if e.is_connection() {
            Status::waiting(status::NO_CONTAINER)
        } else {
            Status::blocked(format!("cannot prepare the workload container: {e}"))
        }
    };
    for dir in &d.dirs {
        // Writable for the server's user; a storage mount starts out root's.
        container
            .make_dir(
                dir,
                true,
                &FileOwnership {
                    permissions: Some(0o755),
                    user: Some(layer::USER.into()),
                    group: Some(layer::USER.into()),
                    ..FileOwnership::default()
                },
            )
            .map_err(unreachable)?;
    }
    let mut ca_changed = false;
    for file in &d.files {
        let same =
            matches!(container.pull(file.path), Ok(bytes) if bytes == file.content.as_bytes());
        if same {
            continue;
        }
        container
            .push(
                file.path,
                file.content.clone(),
                &PushOptions::default().make_dirs().permissions(0o644),
            )
            .map_err(unreachable)?;
        ca_changed |= file.path == desired::CONTRACTS_CA_PATH;
    }
    for path in &d.absent {
        match container.pull(path) {
            Ok(_) => {
                container.remove_path(path, false).map_err(unreachable)?;
                ca_changed |= *path == desired::CONTRACTS_CA_PATH;
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(unreachable(e)),
        }
    }
    if ca_changed {
        // The server builds its TLS roots from the system store at start-up.
        let refresh = ops::pebble::ExecOptions::new(["update-ca-certificates", "--fresh"])
            .timeout(std::time::Duration::from_secs(120));
        match container.exec(&refresh) {
            Ok(_) => log(
                model,
                LogLevel::Info,
                "contracts.ca changed: the workload's trust store was refreshed",
            ),
            Err(e) => {
                let message = match &e {
                    ops::pebble::Error::Exec { code, stderr, .. } => format!(
                        "exited with code {code}: {}",
                        String::from_utf8_lossy(stderr).trim()
                    ),
                    other => other.to_string(),
                };
                log(
                    model,
                    LogLevel::Error,
                    &format!("update-ca-certificates --fresh failed: {message}"),
                );
                return Err(Status::blocked(format!(
                    "contracts.ca: update-ca-certificates failed: {message}"
                )));
            }
        }
    }
    Ok(ca_changed)
}

/// Runs the schema step; the leader records the version it migrated to.
fn run_schema(
    model: &mut Model,
    container: &Client,
    snap: &Snapshot,
    step: SchemaStep,
) -> anyhow::Result<Schema> {
    let DbState::Ready(db) = &snap.database else {
        return Ok(Schema::NotRun);
    };
    let outcome = match schema::run(container, "check", &db.dsn) {
        schema::Outcome::Pending(message) if step == SchemaStep::CheckAndUpgrade => {
            model.set_unit_status(ops::Status::waiting(status::UPGRADING_SCHEMA))?;
            log(
                model,
                LogLevel::Info,
                &format!("database schema: {message}; upgrading"),
            );
            match schema::run(container, "upgrade", &db.dsn) {
                // The pending message names the version migrated to
                // (`3 -> 7`) when the upgrade's own output does not.
                schema::Outcome::Ok(out) if schema::version_in(&out).is_some() => {
                    schema::Outcome::Ok(out)
                }
                schema::Outcome::Ok(_) => schema::Outcome::Ok(message),
                schema::Outcome::Failed(e) => {
                    log(
                        model,
                        LogLevel::Error,
                        &format!("schema upgrade failed: {e}"),
                    );
                    return Ok(Schema::UpgradeFailed(e));
                }
                other => other,
            }
        }
        other => other,
    };
    Ok(match outcome {
        schema::Outcome::Ok(out) => {
            if snap.leader {
                record_schema_version(model, &out)?;
            }
            Schema::UpToDate
        }
        schema::Outcome::Pending(_) => Schema::Pending,
        schema::Outcome::Unreachable => Schema::Unreachable,
        schema::Outcome::Failed(e) => {
            log(model, LogLevel::Error, &format!("schema check failed: {e}"));
            Schema::CheckFailed(e)
        }
    })
}

fn record_schema_version(model: &mut Model, tool_output: &str) -> anyhow::Result<()> {
    let Some(version) = schema::version_in(tool_output) else {
        return Ok(());
    };
    let Some(peer) = model.relation(PEER)? else {
        return Ok(());
    };
    let current = model.relation_data(&peer, &ops::Bag::LocalApp)?;
    if current.get(PEER_SCHEMA_VERSION) != Some(&version) {
        model.set_relation_data(&peer, true, [(PEER_SCHEMA_VERSION, version.as_str())])?;
    }
    Ok(())
}

/// Brings the service to its goal; returns the status to show.
fn apply_service(
    model: &mut Model,
    container: &Client,
    d: &Desired,
    plan: Option<&ops::pebble::Layer>,
    status: Status,
) -> anyhow::Result<Status> {
    match &d.service {
        ServiceGoal::Keep => Ok(status),
        ServiceGoal::Stop => {
            match container.services(&[layer::SERVICE]) {
                Ok(services) if services.iter().any(|s| s.current == ServiceStatus::Active) => {
                    if let Err(e) = container.stop(&[layer::SERVICE]) {
                        log(
                            model,
                            LogLevel::Warning,
                            &format!("cannot stop the server: {e}"),
                        );
                    }
                }
                _ => {}
            }
            Ok(status)
        }
        ServiceGoal::Run(wanted) => {
            if let Err(problem) = ensure_files(model, container, d, plan) {
                return Ok(problem);
            }
            let Some(current) = plan else {
                return Ok(Status::waiting(status::NO_CONTAINER));
            };
            let result = if layer::plan_matches(current, wanted) {
                // Same configuration: only make sure it runs.
                match container.services(&[layer::SERVICE]) {
                    Ok(s) if s.iter().any(|s| s.current == ServiceStatus::Active) => Ok(()),
                    _ => container.replan().map(drop),
                }
            } else {
                model.set_unit_status(ops::Status::maintenance(
                    "configuring the Livepatch server",
                ))?;
                container
                    .add_layer(layer::LABEL, wanted, true)
                    .and_then(|()| container.replan().map(drop))
                    .inspect(|()| {
                        log(
                            model,
                            LogLevel::Info,
                            "the Livepatch server was (re)configured and (re)started",
                        )
                    })
            };
            match result {
                Ok(()) => Ok(status),
                Err(e) if e.is_connection() => Ok(Status::waiting(status::NO_CONTAINER)),
                Err(e) => {
                    let env = layer::environment(wanted).cloned().unwrap_or_default();
                    let secrets: Vec<&str> = env.values().map(String::as_str).collect();
                    log(
                        model,
                        LogLevel::Error,
                        &format!(
                            "the Livepatch server did not start: {}",
                            redact::redact(&e.to_string(), &secrets)
                        ),
                    );
                    Ok(Status::waiting(status::NOT_READY))
                }
            }
        }
    }
}

/// The leader keeps the NetworkPolicy in step with the options. The API is
/// called only when the policy's digest changed, and again when leadership
/// or the charm changes hands, so no-op hooks stay cheap.
fn apply_network_policy(
    model: &mut Model,
    cfg: &CharmConfig,
    snap: &Snapshot,
    event: &Event,
    endpoints: &Endpoints,
    state: &mut UnitState,
    status: Status,
) -> Status {
    if !snap.leader {
        return status;
    }
    let spec = cfg.network_policy.as_ref().map(|np| netpol::PolicySpec {
        app: snap.app.clone(),
        namespace: snap.model.clone(),
        admin_port: cfg.admin_port,
        admin_cidrs: np.admin_cidrs.clone(),
    });
    let digest = netpol::digest(spec.as_ref());
    let forced = matches!(event, Event::LeaderElected | Event::UpgradeCharm);
    let known = state.network_policy.as_deref();
    if !forced && (known == Some(digest.as_str()) || (known.is_none() && spec.is_none())) {
        return status;
    }
    let runtime = match model.runtime() {
        Ok(rt) => rt,
        Err(e) => return Status::blocked(format!("network-policy: {e}")),
    };
    let result = runtime.block_on(async {
        let client = endpoints.kube_client()?;
        match &spec {
            Some(spec) => netpol::apply(client, spec).await,
            None => netpol::delete(client, &snap.app, &snap.model).await,
        }
    });
    match result {
        Ok(()) => {
            state.network_policy = Some(digest);
            status
        }
        // Turning the feature off without trust: nothing was created, so
        // there is nothing to delete either.
        Err(_) if spec.is_none() => {
            state.network_policy = Some(digest);
            status
        }
        Err(netpol::NetpolError::Forbidden) => {
            let message = status::network_policy_untrusted(&snap.app);
            log(model, LogLevel::Warning, &message);
            if status.kind == status::Kind::Active {
                Status::blocked(message)
            } else {
                status
            }
        }
        Err(e) => {
            log(model, LogLevel::Error, &format!("network-policy: {e}"));
            if status.kind == status::Kind::Active {
                Status::blocked(format!("network-policy: {e}"))
            } else {
                status
            }
        }
    }
}
