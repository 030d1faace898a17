//! Patch sync from an upstream server (livepatch-server.md §8, api.md "Server (sync) API"): the
//! downstream side. The upstream side is `http::routes::sync`.
//!
//! A run ([`SyncService::trigger`]):
//! 1. takes a PostgreSQL advisory lock, so one run at a time across every instance sharing the
//!    database (a second trigger gets "running"); runs left `running` by a process that died are
//!    marked failed first;
//! 2. tells the upstream the deployment id and the machine count (exact or bucketed), with
//!    per-machine reports under obfuscated ids when `send-machine-reports` is on;
//! 3. fetches the snapshot of the token's tier, filtered (and filters again here);
//! 4. with `sync-tiers`, mirrors the upstream's tier list;
//! 5. downloads what is not registered yet, a few files at a time: each streams into a staged
//!    storage object while it is hashed, and is published and registered only when its size and
//!    SHA-256 match the snapshot, so a failure or a kill mid-file leaves nothing visible and the
//!    next run simply finds the file still missing (resume = re-listing). Verified files are
//!    published and registered in batches, one transaction each (whatever finished downloading
//!    while the previous batch committed), so the database pays one commit per batch;
//! 6. with `sync-tiers`, mirrors placements; otherwise new files land in the first tier;
//! 7. mirrors the upstream blocklist for the versions it listed (local blocklistings stay).
//!
//! The report (`sync_run`) counts only what this run downloaded; files already present are
//! "skipped". Refused files (hash or size mismatch, a different file of that name here) are
//! listed in the report and fail the run, while every good file is kept.
//!
//! The leader also runs the periodic sync and, with `patch-blocklist.enabled`, the blocklist
//! refresh (snapshot only, no downloads) every `patch-blocklist.refresh-interval`.

pub mod client;
pub mod filter;
pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use hmac::Mac;
use serde_json::json;

pub use filter::SyncFilter;

use crate::config::Config;
use crate::domain::PatchFilename;
use crate::storage::PatchStorage;
use crate::store::Store;
use client::{ClientError, ProxyRules, Retry, UpstreamClient};
use wire::{MachineReport, MachineReports, SnapshotPatch};

/// Files downloaded at once: enough to hide per-file latency, few enough to stay gentle.
const PARALLEL_DOWNLOADS: usize = 8;
/// Registrations (batches of files published and registered in one transaction) at once: each
/// holds one pooled connection, and the run holds one for its own lock, so this leaves most of
/// the pool to the requests. Two let one batch commit while the next is published.
fn register_slots(pool_max: usize) -> usize {
    (pool_max.saturating_sub(2)).clamp(1, 2)
}
/// Most files registered in one transaction: bounds how long the names' locks are held.
const REGISTER_BATCH: usize = 64;
/// How often a run's counters are written while it downloads.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// Who started a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The leader's timer.
    Schedule,
    /// `POST /v1/admin/sync`.
    Admin,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Admin => "admin",
        }
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TriggerError {
    /// Sync is off or has no upstream.
    #[error("{0}")]
    Disabled(String),
    /// A run is in progress (on this instance or another sharing the database).
    #[error("a sync is already running: wait for it to finish")]
    Running,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

struct Inner {
    config: Arc<Config>,
    store: Store,
    storage: Arc<dyn PatchStorage>,
    /// `None` when no upstream is usable (no token, or a bad URL: `disabled_reason` says which).
    client: Option<UpstreamClient>,
    disabled_reason: String,
    /// Flips to true at shutdown; runs stop between files.
    stop: tokio::sync::watch::Receiver<bool>,
}

/// The downstream sync: triggering runs, the leader's loops.
#[derive(Clone)]
pub struct SyncService(Arc<Inner>);

impl std::fmt::Debug for SyncService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncService")
            .field("client", &self.0.client)
            .finish()
    }
}

impl SyncService {
    /// Builds the service; proxies come from `patch-sync.proxy.*` or the lower-case environment.
    pub fn new(
        config: Arc<Config>,
        store: Store,
        storage: Arc<dyn PatchStorage>,
        env: &dyn Fn(&str) -> Option<String>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let sync = &config.patch_sync;
        let (client, disabled_reason) = match &sync.token {
            None => (None, "patch-sync.token is not set".to_string()),
            Some(_) if sync.upstream_url.trim().is_empty() => {
                (None, "patch-sync.upstream-url is not set".to_string())
            }
            Some(token) => {
                let proxies = ProxyRules::resolve(&sync.proxy, env);
                match UpstreamClient::new(
                    &sync.upstream_url,
                    token.clone(),
                    &proxies,
                    Retry::default(),
                ) {
                    Ok(c) => (Some(c), String::new()),
                    Err(e) => (None, e.to_string()),
                }
            }
        };
        if sync.enabled && client.is_none() {
            tracing::warn!("patch-sync.enabled is on but sync cannot run: {disabled_reason}");
        }
        Self(Arc::new(Inner {
            config,
            store,
            storage,
            client,
            disabled_reason,
            stop,
        }))
    }

    /// The upstream's URL when sync is configured (enabled, with a usable upstream).
    pub fn upstream_url(&self) -> Option<&str> {
        self.enabled().ok().map(UpstreamClient::base)
    }

    /// Whether `POST /v1/admin/sync` may start a run.
    pub fn enabled(&self) -> Result<&UpstreamClient, TriggerError> {
        if !self.0.config.patch_sync.enabled {
            return Err(TriggerError::Disabled(
                "patch sync is disabled: set patch-sync.enabled, patch-sync.upstream-url and patch-sync.token".into(),
            ));
        }
        self.0.client.as_ref().ok_or_else(|| {
            TriggerError::Disabled(format!("patch sync cannot run: {}", self.0.disabled_reason))
        })
    }

    /// Starts a run in the background; returns its id.
    pub async fn trigger(&self, trigger: Trigger) -> Result<uuid::Uuid, TriggerError> {
        let client = self.enabled()?.clone();
        let lock = self
            .0
            .store
            .try_sync_lock()
            .await?
            .ok_or(TriggerError::Running)?;
        let stale = self.0.store.fail_interrupted_runs().await?;
        if stale > 0 {
            tracing::warn!(
                runs = stale,
                "sync runs interrupted by a stop were marked failed"
            );
        }
        let id = uuid::Uuid::new_v4();
        self.0
            .store
            .create_sync_run(&id, trigger.as_str(), client.base())
            .await?;
        tracing::info!(sync_id = %id, trigger = trigger.as_str(), upstream = client.base(), "sync started");
        let this = self.clone();
        tokio::spawn(async move {
            let mut run = Run::new(this.clone(), id);
            let outcome = run.execute(&client).await;
            run.finish(outcome).await;
            drop(lock);
        });
        Ok(id)
    }

    /// The leader's loops: a sync every `patch-sync.interval` (the first at start-up), and the
    /// blocklist refresh every `patch-blocklist.refresh-interval`. Returns at shutdown.
    pub async fn leader_loops(self) {
        let config = self.0.config.clone();
        let sync_loop = {
            let this = self.clone();
            let mut stop = self.0.stop.clone();
            async move {
                if !config.patch_sync.enabled || this.0.client.is_none() {
                    return;
                }
                let mut tick =
                    tokio::time::interval(config.patch_sync.interval.max(Duration::from_secs(1)));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = tick.tick() => {}
                    }
                    match this.trigger(Trigger::Schedule).await {
                        Ok(_) | Err(TriggerError::Running) => {}
                        Err(e) => tracing::warn!(error = %e, "cannot start the scheduled sync"),
                    }
                }
            }
        };
        let blocklist_loop = {
            let this = self.clone();
            let mut stop = self.0.stop.clone();
            let config = self.0.config.clone();
            async move {
                if !config.patch_blocklist.enabled {
                    return;
                }
                let Some(client) = this.0.client.clone() else {
                    tracing::warn!(
                        "patch-blocklist.enabled is on but there is no upstream to refresh from: {}",
                        this.0.disabled_reason
                    );
                    return;
                };
                let mut tick = tokio::time::interval(
                    config
                        .patch_blocklist
                        .refresh_interval
                        .max(Duration::from_secs(1)),
                );
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = tick.tick() => {}
                    }
                    if let Err(e) = this.refresh_blocklist(&client).await {
                        tracing::warn!(error = %e, "blocklist refresh failed");
                    }
                }
            }
        };
        tokio::join!(sync_loop, blocklist_loop);
    }

    /// One blocklist refresh: the snapshot's blocklist flags, mirrored.
    pub async fn refresh_blocklist(&self, client: &UpstreamClient) -> Result<(u64, u64), String> {
        let filter = SyncFilter::from_config(&self.0.config.patch_sync);
        let snapshot = client.snapshot(&filter).await.map_err(|e| e.to_string())?;
        let (added, lifted) = apply_blocklist(&self.0.store, &snapshot.patches)
            .await
            .map_err(|e| e.to_string())?;
        if added + lifted > 0 {
            tracing::info!(
                blocklisted = added,
                lifted,
                "blocklist refreshed from the upstream"
            );
        }
        Ok((added, lifted))
    }
}

async fn apply_blocklist(
    store: &Store,
    patches: &[SnapshotPatch],
) -> crate::store::Result<(u64, u64)> {
    let mut listed: Vec<String> = patches.iter().map(|p| p.version.clone()).collect();
    listed.sort();
    listed.dedup();
    let mut blocked: Vec<String> = patches
        .iter()
        .filter(|p| p.blocklisted)
        .map(|p| p.version.clone())
        .collect();
    blocked.sort();
    blocked.dedup();
    store.apply_upstream_blocklist(&listed, &blocked).await
}

/// A file the run refused, for the report.
#[derive(Debug)]
struct Failure {
    filename: String,
    reason: String,
}

/// One run's state.
struct Run {
    service: SyncService,
    id: uuid::Uuid,
    total: i32,
    done: i32,
    skipped: i32,
    bytes_total: i64,
    bytes_done: i64,
    failures: Vec<Failure>,
    warnings: Vec<String>,
}

impl Run {
    fn new(service: SyncService, id: uuid::Uuid) -> Self {
        Self {
            service,
            id,
            total: 0,
            done: 0,
            skipped: 0,
            bytes_total: 0,
            bytes_done: 0,
            failures: Vec::new(),
            warnings: Vec::new(),
        }
    }

    async fn progress(&self) {
        if let Err(e) = self
            .service
            .0
            .store
            .sync_progress(
                &self.id,
                self.total,
                self.done,
                self.skipped,
                self.bytes_total,
                self.bytes_done,
            )
            .await
        {
            tracing::warn!(sync_id = %self.id, error = %e, "cannot record sync progress");
        }
    }

    async fn finish(&mut self, outcome: Result<(), String>) {
        let error = match outcome {
            Err(e) => Some(e),
            Ok(()) if !self.failures.is_empty() => Some(format!(
                "{} of {} patch file(s) could not be synced; see failures",
                self.failures.len(),
                self.total
            )),
            Ok(()) => None,
        };
        let failures = json!(self
            .failures
            .iter()
            .map(|f| json!({"filename": f.filename, "reason": f.reason}))
            .collect::<Vec<_>>());
        let warnings = json!(self.warnings);
        self.progress().await;
        match &error {
            None => tracing::info!(
                sync_id = %self.id,
                downloaded = self.done,
                skipped = self.skipped,
                bytes = self.bytes_done,
                "sync succeeded"
            ),
            Some(e) => tracing::warn!(sync_id = %self.id, error = %e, "sync failed"),
        }
        if let Err(e) = self
            .service
            .0
            .store
            .finish_sync_run(
                &self.id,
                error.is_none(),
                error.as_deref(),
                &failures,
                &warnings,
            )
            .await
        {
            tracing::error!(sync_id = %self.id, error = %e, "cannot record the end of a sync run");
        }
    }

    async fn execute(&mut self, client: &UpstreamClient) -> Result<(), String> {
        let inner = self.service.0.clone();
        let config = &inner.config.patch_sync;
        self.report_fleet(client).await?;

        let filter = SyncFilter::from_config(config);
        let snapshot = client
            .snapshot(&filter)
            .await
            .map_err(|e| format!("cannot fetch the snapshot: {e}"))?;
        let mut listed: Vec<SnapshotPatch> = Vec::new();
        for p in snapshot.patches {
            if PatchFilename::parse(&p.filename).is_err() {
                self.failures.push(Failure {
                    filename: p.filename.clone(),
                    reason: "not a valid patch filename".into(),
                });
            } else if filter.matches(&p.kernel, &p.flavour, &p.architecture) {
                listed.push(p);
            }
        }

        if config.sync_tiers {
            if snapshot.tiers.is_empty() {
                return Err(
                    "the upstream lists no tiers: refusing to mirror an empty tier list".into(),
                );
            }
            let kept = inner
                .store
                .mirror_tiers(&snapshot.tiers)
                .await
                .map_err(|e| format!("cannot mirror the upstream tiers: {e}"))?;
            for t in kept {
                self.warnings.push(format!(
                    "tier {t} is not upstream but machines or tokens use it: it was kept after the upstream tiers"
                ));
            }
        }

        let local: HashMap<String, String> = inner
            .store
            .file_hashes()
            .await
            .map_err(|e| format!("cannot read the registered files: {e}"))?;
        let mut todo = Vec::new();
        for p in &listed {
            match local.get(&p.filename) {
                Some(sha) if *sha == p.sha256 => self.skipped += 1,
                Some(_) => self.failures.push(Failure {
                    filename: p.filename.clone(),
                    reason: "a different file of this name is already registered here".into(),
                }),
                None => todo.push(p.clone()),
            }
        }
        self.total = todo.len() as i32;
        self.bytes_total = todo.iter().map(|p| p.size as i64).sum();
        self.progress().await;

        let mut stop = inner.stop.clone();
        let mut last_progress = std::time::Instant::now();
        let mut downloads = futures_util::stream::iter(todo.into_iter().map(|p| {
            let client = client.clone();
            let inner = inner.clone();
            async move {
                let outcome = download_one(&inner, &client, &p).await;
                (p, outcome)
            }
        }))
        .buffer_unordered(PARALLEL_DOWNLOADS);
        // Verified files wait here until a registration slot is free; each registration takes
        // everything waiting (up to REGISTER_BATCH), so while one commits, the next batch grows.
        let mut waiting: Vec<(SnapshotPatch, Box<dyn crate::storage::Staged>)> = Vec::new();
        let mut registering = futures_util::stream::FuturesUnordered::new();
        let slots = register_slots(inner.config.database.pool_max);
        let mut downloads_done = false;
        loop {
            while registering.len() < slots && !waiting.is_empty() {
                let batch: Vec<_> = waiting.drain(..waiting.len().min(REGISTER_BATCH)).collect();
                registering.push(register_batch(inner.clone(), batch));
            }
            if downloads_done && registering.is_empty() && waiting.is_empty() {
                break;
            }
            // The stop signal's guard must not live in the select's output: a branch below
            // awaits, and the run's future has to stay `Send`.
            let stopping = async {
                let _ = stop.wait_for(|s| *s).await;
            };
            tokio::select! {
                () = stopping => {
                    return Err("interrupted: the server is shutting down; the next run resumes where this one stopped".into());
                }
                n = downloads.next(), if !downloads_done => match n {
                    None => downloads_done = true,
                    Some((p, Ok(staged))) => waiting.push((p, staged)),
                    Some((p, Err(reason))) => self.failures.push(Failure {
                        filename: p.filename.clone(),
                        reason,
                    }),
                },
                Some(done) = registering.next(), if !registering.is_empty() => {
                    for (p, outcome) in done {
                        match outcome {
                            Ok(()) => {
                                self.done += 1;
                                self.bytes_done += p.size as i64;
                            }
                            Err(reason) => self.failures.push(Failure {
                                filename: p.filename.clone(),
                                reason,
                            }),
                        }
                    }
                    // A few writes a second are plenty for anyone watching; the end is always
                    // written by `finish`.
                    if last_progress.elapsed() >= PROGRESS_EVERY {
                        self.progress().await;
                        last_progress = std::time::Instant::now();
                    }
                }
            }
        }

        if config.sync_tiers {
            let placements: BTreeMap<String, Vec<String>> = listed
                .iter()
                .map(|p| (p.filename.clone(), p.tiers.clone()))
                .collect();
            inner
                .store
                .mirror_placements(&placements)
                .await
                .map_err(|e| format!("cannot mirror the upstream placements: {e}"))?;
        }
        apply_blocklist(&inner.store, &listed)
            .await
            .map_err(|e| format!("cannot mirror the upstream blocklist: {e}"))?;
        Ok(())
    }

    /// Step 2: the deployment id and machine count, and the per-machine reports if asked.
    async fn report_fleet(&mut self, client: &UpstreamClient) -> Result<(), String> {
        let inner = &self.service.0;
        let config = &inner.config.patch_sync;
        let count = inner
            .store
            .machine_count()
            .await
            .map_err(|e| format!("cannot count machines: {e}"))?;
        let strategy = config.machine_count_strategy.clone();
        let deployment_id = config.id.clone().unwrap_or_default();
        let mut reports = Vec::new();
        if config.send_machine_reports {
            reports = machine_reports(&inner.store, inner.config.machine_reports.enabled)
                .await
                .map_err(|e| format!("cannot read machine states: {e}"))?;
        }
        let machine_count = wire::reported_machine_count(count.max(0) as u64, &strategy);
        let mut batches: Vec<Vec<MachineReport>> = reports
            .chunks(wire::REPORTS_PER_REQUEST)
            .map(<[MachineReport]>::to_vec)
            .collect();
        if batches.is_empty() {
            batches.push(Vec::new());
        }
        for batch in batches {
            let body = MachineReports {
                deployment_id: deployment_id.clone(),
                machine_count,
                strategy: strategy.clone(),
                reports: batch,
            };
            match client.machine_reports(&body).await {
                Ok(()) => {}
                Err(e @ ClientError::Unauthorized { .. }) => return Err(e.to_string()),
                Err(e) => {
                    // The fleet report is telemetry: the patches matter more.
                    self.warnings
                        .push(format!("cannot report the machine count upstream: {e}"));
                    break;
                }
            }
        }
        Ok(())
    }
}

/// Per-machine reports for the upstream, ids obfuscated with a key derived from this server's
/// report key (which never leaves it), so the upstream can tell machines apart but not name them.
async fn machine_reports(
    store: &Store,
    reports_enabled: bool,
) -> crate::store::Result<Vec<MachineReport>> {
    let key = store.report_key().await?;
    let mut derive = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("any key length");
    derive.update(b"livepatch upstream machine id");
    let upstream_key = derive.finalize().into_bytes();
    let hash = |k: &[u8], id: &str| {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(k).expect("any key length");
        mac.update(id.as_bytes());
        crate::domain::hex(&mac.finalize().into_bytes())
    };
    let machines = store.machines_for_upstream().await?;
    // The cpu model, boot time and uptime only exist in report rows (machine-reports.database).
    let latest = if reports_enabled {
        let hashes: Vec<String> = machines.iter().map(|m| hash(&key, &m.id)).collect();
        store.latest_reports(&hashes).await?
    } else {
        BTreeMap::new()
    };
    Ok(machines
        .into_iter()
        .map(|m| {
            let extra = latest.get(&hash(&key, &m.id)).cloned();
            let (cpu_model, boot_time, uptime_seconds) = extra.unwrap_or((None, None, None));
            MachineReport {
                machine_id: hash(&upstream_key, &m.id),
                kernel: Some(m.kernel),
                cpu_model,
                architecture: Some(m.architecture),
                boot_time: boot_time.map(crate::http::routes::rfc3339),
                uptime_seconds,
                client_version: m.client_version,
                patch_state: m.patch_state,
                patch_version: m.patch_version,
            }
        })
        .collect())
}

/// Downloads one file into a staged object and verifies it against the snapshot; publishing
/// and registering are [`register_batch`]'s. A transfer that breaks mid-body is retried from the
/// start (the staged bytes are discarded).
async fn download_one(
    inner: &Inner,
    client: &UpstreamClient,
    p: &SnapshotPatch,
) -> Result<Box<dyn crate::storage::Staged>, String> {
    let mut attempt = 0;
    let staged = loop {
        attempt += 1;
        let response = client
            .download(&p.filename)
            .await
            .map_err(|e| e.to_string())?;
        let body = response
            .bytes_stream()
            .map_err(std::io::Error::other)
            .boxed();
        match inner.storage.stage(body, p.size).await {
            Ok(s) => break s,
            Err(crate::storage::StorageError::TooLarge { .. }) => {
                return Err(format!(
                    "the upstream sent more than the {} bytes its snapshot announced",
                    p.size
                ))
            }
            Err(crate::storage::StorageError::Body(e)) if attempt < 3 => {
                tracing::warn!(file = %p.filename, error = %e, "download interrupted; retrying");
                tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
            }
            Err(e) => return Err(format!("cannot store the download: {e}")),
        }
    };
    if staged.size() != p.size || staged.sha256() != p.sha256 {
        let reason = format!(
            "rejected: the download does not match the snapshot (expected {} bytes with SHA-256 {}, got {} bytes with SHA-256 {})",
            p.size,
            p.sha256,
            staged.size(),
            staged.sha256()
        );
        staged.discard().await;
        return Err(reason);
    }
    Ok(staged)
}

/// Publishes and registers a batch of verified downloads in one transaction under their names'
/// locks (the ones uploads take), so nobody registers these names meanwhile. The objects are
/// published concurrently (a filesystem shares one directory fsync among them); if the
/// transaction fails, the objects it published are taken away again so storage and database
/// agree. Returns each file's outcome.
async fn register_batch(
    inner: Arc<Inner>,
    batch: Vec<(SnapshotPatch, Box<dyn crate::storage::Staged>)>,
) -> Vec<(SnapshotPatch, Result<(), String>)> {
    let mut files = Vec::with_capacity(batch.len());
    let mut patches = Vec::with_capacity(batch.len());
    let mut staged = Vec::with_capacity(batch.len());
    let mut refused = Vec::new();
    for (p, s) in batch {
        match PatchFilename::parse(&p.filename) {
            Ok(name) => {
                files.push(crate::store::SyncedFile {
                    name,
                    sha256: p.sha256.clone(),
                    size: p.size as i64,
                    released: time::OffsetDateTime::parse(
                        &p.released,
                        &time::format_description::well_known::Rfc3339,
                    )
                    .ok(),
                });
                patches.push(p);
                staged.push(Some(s));
            }
            // Filtered out before any download; kept as a refusal rather than a panic.
            Err(e) => {
                s.discard().await;
                refused.push((p, Err(e.to_string())));
            }
        }
    }
    if files.is_empty() {
        return refused;
    }
    let published = std::sync::Mutex::new(Vec::new());
    let outcome = {
        let files = &files;
        let published = &published;
        let staged = &mut staged;
        inner
            .store
            .register_synced_batch(files, |wanted| {
                let jobs: Vec<_> = wanted
                    .into_iter()
                    .map(|i| {
                        let object = staged[i].take();
                        let name = files[i].name.clone();
                        async move {
                            let object = object.ok_or("already published")?;
                            object
                                .publish(name.clone())
                                .await
                                .map_err(|e| format!("cannot publish the download: {e}"))?;
                            published.lock().expect("not poisoned").push(name);
                            Ok::<(), String>(())
                        }
                    })
                    .collect();
                futures_util::future::join_all(jobs)
            })
            .await
    };
    // Staged objects not published (already registered, or refused) are dropped, which removes
    // them.
    drop(staged);
    match outcome {
        Ok(results) => {
            refused.extend(
                patches
                    .into_iter()
                    .zip(results)
                    .map(|(p, r)| (p, r.map(drop))),
            );
        }
        Err(e) => {
            for name in published.into_inner().expect("not poisoned") {
                let _ = inner.storage.delete(&name).await;
            }
            let reason = format!("cannot register the download: {e}");
            refused.extend(patches.into_iter().map(|p| (p, Err(reason.clone()))));
        }
    }
    refused
}
