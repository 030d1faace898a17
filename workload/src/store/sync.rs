//! The SQL of patch sync (migration 2), both sides of it: as an upstream (sync-token lookup,
//! downstream servers and their machine reports) and as a downstream (sync runs, the advisory
//! lock that makes one run at a time across every instance sharing the database, tier and
//! placement mirroring for `sync-tiers`, the upstream blocklist, and what is sent upstream about
//! the local fleet).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use time::OffsetDateTime;

use super::{NameLock, Result, Store};

/// A sync token as stored, whatever its expiry (so an expired one can be told from an unknown one).
#[derive(Clone, Debug)]
pub struct SyncTokenRow {
    /// Its name.
    pub name: String,
    /// The tier it scopes.
    pub tier_id: i32,
    /// That tier's name.
    pub tier: String,
    /// The stored SHA-256 of the token.
    pub hash: Vec<u8>,
    /// Expiry.
    pub expires: Option<OffsetDateTime>,
}

/// One machine of a downstream, as it reported it (obfuscated id).
#[derive(Clone, Debug, Default)]
pub struct DownstreamReport {
    /// Obfuscated machine id.
    pub machine_id: String,
    /// Kernel.
    pub kernel: Option<String>,
    /// CPU model.
    pub cpu_model: Option<String>,
    /// Architecture.
    pub architecture: Option<String>,
    /// Boot time.
    pub boot_time: Option<OffsetDateTime>,
    /// Uptime.
    pub uptime_seconds: Option<i64>,
    /// Client version.
    pub client_version: Option<String>,
    /// Patch state.
    pub patch_state: Option<String>,
    /// Patch version.
    pub patch_version: Option<String>,
}

/// A downloaded and verified file, for [`Store::register_synced_batch`].
#[derive(Clone, Debug)]
pub struct SyncedFile {
    /// Its name.
    pub name: crate::domain::PatchFilename,
    /// Its SHA-256 (hex), checked against the snapshot.
    pub sha256: String,
    /// Its size in bytes.
    pub size: i64,
    /// The upstream's release time, when it gave one.
    pub released: Option<OffsetDateTime>,
}

/// One local machine, for the reports sent upstream (the id is obfuscated before it leaves).
#[derive(Clone, Debug)]
pub struct UpstreamMachine {
    /// The real machine id (never sent).
    pub id: String,
    /// Kernel.
    pub kernel: String,
    /// Architecture.
    pub architecture: String,
    /// Client version.
    pub client_version: Option<String>,
    /// Patch state.
    pub patch_state: Option<String>,
    /// Patch version.
    pub patch_version: Option<String>,
}

/// A sync run: the sync report.
#[derive(Clone, Debug)]
pub struct SyncRun {
    /// Id.
    pub id: uuid::Uuid,
    /// `schedule` or `admin`.
    pub trigger: String,
    /// `running`, `succeeded`, `failed`.
    pub state: String,
    /// The upstream URL.
    pub upstream: String,
    /// Start.
    pub started: OffsetDateTime,
    /// End.
    pub finished: Option<OffsetDateTime>,
    /// Patches this run had to download.
    pub patches_total: i32,
    /// Patches it downloaded.
    pub patches_done: i32,
    /// Patches already present (not counted as done).
    pub patches_skipped: i32,
    /// Bytes it had to download.
    pub bytes_total: i64,
    /// Bytes it downloaded and kept.
    pub bytes_done: i64,
    /// Why it failed.
    pub error: Option<String>,
    /// Files refused, `[{"filename", "reason"}]`.
    pub failures: serde_json::Value,
    /// Warnings.
    pub warnings: serde_json::Value,
}

const RUN_COLUMNS: &str =
    "id, trigger, state, upstream, started_at, finished_at, patches_total, patches_done,
     patches_skipped, bytes_total, bytes_done, error, failures, warnings";

fn run_row(r: &tokio_postgres::Row) -> SyncRun {
    SyncRun {
        id: r.get(0),
        trigger: r.get(1),
        state: r.get(2),
        upstream: r.get(3),
        started: r.get(4),
        finished: r.get(5),
        patches_total: r.get(6),
        patches_done: r.get(7),
        patches_skipped: r.get(8),
        bytes_total: r.get(9),
        bytes_done: r.get(10),
        error: r.get(11),
        failures: r.get(12),
        warnings: r.get(13),
    }
}

/// The advisory lock name every instance takes for a sync run.
const SYNC_LOCK: &str = "livepatch-patch-sync";

impl Store {
    // ----------------------------------------------------------------------------------------
    // As an upstream

    /// A sync token by the hash of the presented value, expired or not.
    pub async fn sync_token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<SyncTokenRow>> {
        Ok(self
            .query_opt(
                "GetSyncToken",
                "SELECT s.name, s.tier_id, t.name, s.token_hash, s.expires_at
                 FROM sync_token s JOIN tier t ON t.id = s.tier_id WHERE s.token_hash = $1",
                &[&hash.as_slice()],
            )
            .await?
            .map(|r| SyncTokenRow {
                name: r.get(0),
                tier_id: r.get(1),
                tier: r.get(2),
                hash: r.get(3),
                expires: r.get(4),
            }))
    }

    /// True when `filename` is placed in the tier `tier_id` (a sync token may fetch only those).
    pub async fn file_in_tier(&self, filename: &str, tier_id: i32) -> Result<bool> {
        Ok(self
            .query_opt(
                "FileInTier",
                "SELECT 1 FROM patch_file pf JOIN patch_file_tier pft ON pft.patch_file_id = pf.id
                 WHERE pf.filename = $1 AND pft.tier_id = $2",
                &[&filename, &tier_id],
            )
            .await?
            .is_some())
    }

    /// Records what a downstream said about its fleet, and its machines' latest state.
    pub async fn record_downstream(
        &self,
        deployment_id: &str,
        token_name: &str,
        machine_count: i32,
        strategy: &str,
        reports: &[DownstreamReport],
    ) -> Result<()> {
        let started = Instant::now();
        let result = async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            tx.execute(
                "INSERT INTO downstream_server (deployment_id, sync_token_name, machine_count, strategy)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (deployment_id) DO UPDATE SET sync_token_name = excluded.sync_token_name,
                     machine_count = excluded.machine_count, strategy = excluded.strategy, last_report_at = now()",
                &[&deployment_id, &token_name, &machine_count, &strategy],
            )
            .await?;
            if !reports.is_empty() {
                let stmt = tx
                    .prepare(
                        "INSERT INTO downstream_machine_report (deployment_id, machine_id, kernel, cpu_model,
                             architecture, boot_time, uptime_seconds, client_version, patch_state, patch_version)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                         ON CONFLICT (deployment_id, machine_id) DO UPDATE SET kernel = excluded.kernel,
                             cpu_model = excluded.cpu_model, architecture = excluded.architecture,
                             boot_time = excluded.boot_time, uptime_seconds = excluded.uptime_seconds,
                             client_version = excluded.client_version, patch_state = excluded.patch_state,
                             patch_version = excluded.patch_version, received_at = now()",
                    )
                    .await?;
                for r in reports {
                    tx.execute(
                        &stmt,
                        &[
                            &deployment_id,
                            &r.machine_id,
                            &r.kernel,
                            &r.cpu_model,
                            &r.architecture,
                            &r.boot_time,
                            &r.uptime_seconds,
                            &r.client_version,
                            &r.patch_state,
                            &r.patch_version,
                        ],
                    )
                    .await?;
                }
            }
            tx.commit().await?;
            Ok(())
        }
        .await;
        self.observe("RecordDownstream", started, &result);
        result
    }

    // ----------------------------------------------------------------------------------------
    // As a downstream: runs

    /// Takes the cluster-wide sync lock if nobody holds it; `None` while a run is in progress on
    /// any instance sharing the database.
    pub async fn try_sync_lock(&self) -> Result<Option<NameLock>> {
        let client = self.pool.get().await?;
        let got: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                &[&SYNC_LOCK],
            )
            .await?
            .get(0);
        Ok(got.then(|| NameLock {
            client: Some(client),
            name: SYNC_LOCK.to_string(),
        }))
    }

    /// Marks runs still `running` as failed. Only called while holding the sync lock, so any such
    /// run belongs to a process that died or was stopped mid-run.
    pub async fn fail_interrupted_runs(&self) -> Result<u64> {
        self.execute(
            "FailInterruptedSyncRuns",
            "UPDATE sync_run SET state = 'failed', finished_at = now(),
                 error = 'interrupted: the server stopped during the run; the next run resumes where it stopped'
             WHERE state = 'running'",
            &[],
        )
        .await
    }

    /// Starts a run's report.
    pub async fn create_sync_run(
        &self,
        id: &uuid::Uuid,
        trigger: &str,
        upstream: &str,
    ) -> Result<()> {
        self.execute(
            "CreateSyncRun",
            "INSERT INTO sync_run (id, trigger, state, upstream) VALUES ($1, $2, 'running', $3)",
            &[id, &trigger, &upstream],
        )
        .await
        .map(drop)
    }

    /// Updates a run's counters.
    pub async fn sync_progress(
        &self,
        id: &uuid::Uuid,
        patches_total: i32,
        patches_done: i32,
        patches_skipped: i32,
        bytes_total: i64,
        bytes_done: i64,
    ) -> Result<()> {
        self.execute(
            "UpdateSyncRun",
            "UPDATE sync_run SET patches_total = $2, patches_done = $3, patches_skipped = $4,
                 bytes_total = $5, bytes_done = $6 WHERE id = $1",
            &[
                id,
                &patches_total,
                &patches_done,
                &patches_skipped,
                &bytes_total,
                &bytes_done,
            ],
        )
        .await
        .map(drop)
    }

    /// Ends a run.
    pub async fn finish_sync_run(
        &self,
        id: &uuid::Uuid,
        succeeded: bool,
        error: Option<&str>,
        failures: &serde_json::Value,
        warnings: &serde_json::Value,
    ) -> Result<()> {
        self.execute(
            "FinishSyncRun",
            "UPDATE sync_run SET state = $2, finished_at = now(), error = $3, failures = $4, warnings = $5
             WHERE id = $1",
            &[
                id,
                &if succeeded { "succeeded" } else { "failed" },
                &error,
                failures,
                warnings,
            ],
        )
        .await
        .map(drop)
    }

    /// One run.
    pub async fn sync_run(&self, id: &uuid::Uuid) -> Result<Option<SyncRun>> {
        Ok(self
            .query_opt(
                "GetSyncRun",
                &format!("SELECT {RUN_COLUMNS} FROM sync_run WHERE id = $1"),
                &[id],
            )
            .await?
            .map(|r| run_row(&r)))
    }

    /// The most recent runs, newest first.
    pub async fn sync_runs(&self, limit: i64) -> Result<Vec<SyncRun>> {
        let rows = self
            .query(
                "ListSyncRuns",
                &format!(
                    "SELECT {RUN_COLUMNS} FROM sync_run ORDER BY started_at DESC, id LIMIT $1"
                ),
                &[&limit],
            )
            .await?;
        Ok(rows.iter().map(run_row).collect())
    }

    // ----------------------------------------------------------------------------------------
    // As a downstream: what the upstream owns

    /// Replaces the local tier list with `names`, in that order (sync-tiers). Tiers missing
    /// upstream are removed, unless machines or tokens use them: those stay, after the upstream
    /// ones, and are returned so the sync report can say so.
    pub async fn mirror_tiers(&self, names: &[String]) -> Result<Vec<String>> {
        let started = Instant::now();
        let result = async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            tx.batch_execute(
                "SET CONSTRAINTS tier_position_unique DEFERRED; LOCK TABLE tier IN EXCLUSIVE MODE",
            )
            .await?;
            let existing: Vec<(i32, String)> = tx
                .query("SELECT id, name FROM tier ORDER BY position", &[])
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let wanted: BTreeSet<&str> = names.iter().map(String::as_str).collect();
            let mut kept = Vec::new();
            for (id, name) in &existing {
                if wanted.contains(name.as_str()) {
                    continue;
                }
                let used: i64 = tx
                    .query_one(
                        "SELECT (SELECT count(*) FROM machine WHERE tier_id = $1)
                              + (SELECT count(*) FROM auth_token WHERE tier_id = $1)
                              + (SELECT count(*) FROM sync_token WHERE tier_id = $1)",
                        &[id],
                    )
                    .await?
                    .get(0);
                if used > 0 {
                    kept.push(name.clone());
                } else {
                    tx.execute("DELETE FROM tier WHERE id = $1", &[id]).await?;
                }
            }
            // Positions far away first, so the final numbering never collides mid-way.
            tx.execute("UPDATE tier SET position = position + 100000", &[])
                .await?;
            for (i, name) in names.iter().chain(kept.iter()).enumerate() {
                let position = i as i32 + 1;
                tx.execute(
                    "INSERT INTO tier (name, position) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                    &[name, &position],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(kept)
        }
        .await;
        self.observe("MirrorTiers", started, &result);
        result
    }

    /// Sets the placements of the files named to exactly the tiers given (sync-tiers), and
    /// removes every placement of registered files not named (the upstream no longer lists them).
    pub async fn mirror_placements(
        &self,
        placements: &BTreeMap<String, Vec<String>>,
    ) -> Result<()> {
        let started = Instant::now();
        let result = async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            let files: Vec<String> = placements.keys().cloned().collect();
            tx.execute(
                "DELETE FROM patch_file_tier WHERE patch_file_id IN
                     (SELECT id FROM patch_file WHERE NOT (filename = ANY($1)))",
                &[&files],
            )
            .await?;
            let stmt = tx
                .prepare(
                    "WITH f AS (SELECT id FROM patch_file WHERE filename = $1)
                     , gone AS (DELETE FROM patch_file_tier WHERE patch_file_id IN (SELECT id FROM f)
                                AND tier_id NOT IN (SELECT id FROM tier WHERE name = ANY($2)))
                     INSERT INTO patch_file_tier (tier_id, patch_file_id)
                     SELECT t.id, f.id FROM tier t, f WHERE t.name = ANY($2)
                     ON CONFLICT DO NOTHING",
                )
                .await?;
            for (file, tiers) in placements {
                tx.execute(&stmt, &[file, tiers]).await?;
            }
            tx.commit().await?;
            Ok(())
        }
        .await;
        self.observe("MirrorPlacements", started, &result);
        result
    }

    /// Mirrors the upstream blocklist for the versions it listed: blocklists those in
    /// `blocklisted` (unless already blocklisted here), lifts upstream-set blocklistings of the
    /// other `listed` versions; local blocklistings are never lifted. Returns (added, lifted).
    pub async fn apply_upstream_blocklist(
        &self,
        listed: &[String],
        blocklisted: &[String],
    ) -> Result<(u64, u64)> {
        let added = self
            .execute(
                "BlocklistFromUpstream",
                "UPDATE patch SET blocklisted = true, blocklist_source = 'upstream', blocklisted_at = now(),
                     blocklist_reason = 'blocklisted by the upstream server'
                 WHERE version = ANY($1) AND NOT blocklisted",
                &[&blocklisted],
            )
            .await?;
        let lifted = self
            .execute(
                "UnblocklistFromUpstream",
                "UPDATE patch SET blocklisted = false, blocklist_source = NULL, blocklisted_at = NULL,
                     blocklist_reason = NULL
                 WHERE version = ANY($1) AND NOT (version = ANY($2)) AND blocklist_source = 'upstream'",
                &[&listed, &blocklisted],
            )
            .await?;
        Ok((added, lifted))
    }

    // ----------------------------------------------------------------------------------------
    // As a downstream: what is told about the local fleet

    /// The number of enrolled machines.
    pub async fn machine_count(&self) -> Result<i64> {
        Ok(self
            .query_opt("CountMachines", "SELECT count(*) FROM machine", &[])
            .await?
            .map(|r| r.get(0))
            .unwrap_or(0))
    }

    /// Every enrolled machine's current state.
    pub async fn machines_for_upstream(&self) -> Result<Vec<UpstreamMachine>> {
        let rows = self
            .query(
                "ListMachinesForUpstream",
                "SELECT id, kernel, architecture, client_version, patch_state, patch_version FROM machine ORDER BY id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| UpstreamMachine {
                id: r.get(0),
                kernel: r.get(1),
                architecture: r.get(2),
                client_version: r.get(3),
                patch_state: r.get(4),
                patch_version: r.get(5),
            })
            .collect())
    }

    /// The latest report row (cpu model, boot time, uptime) of each machine hash given.
    pub async fn latest_reports(
        &self,
        hashes: &[String],
    ) -> Result<BTreeMap<String, (Option<String>, Option<OffsetDateTime>, Option<i64>)>> {
        let rows = self
            .query(
                "LatestMachineReports",
                "SELECT DISTINCT ON (machine_hash) machine_hash, cpu_model, boot_time, uptime_seconds
                 FROM machine_report WHERE machine_hash = ANY($1) ORDER BY machine_hash, created_at DESC",
                &[&hashes],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
            .collect())
    }

    /// Registers downloaded files in one transaction: takes every name's advisory lock (the one uploads take; in name order), checks what is
    /// registered under the names, runs `publish` with the indexes of the files nothing is
    /// registered under (it makes their staged objects visible and says, per index, whether that
    /// worked), then records the published ones and places them in the first tier. One commit
    /// (one WAL flush) and a handful of round trips for the whole batch instead of seven per file.
    ///
    /// Per file, in input order: `Ok(true)` registered, `Ok(false)` the same file already was,
    /// `Err(why)` refused (another file of that name, or its publish failed). An `Err` from the
    /// database means nothing of the batch was registered; the caller must take away what
    /// `publish` made visible.
    pub async fn register_synced_batch<F, Fut>(
        &self,
        files: &[SyncedFile],
        publish: F,
    ) -> Result<Vec<std::result::Result<bool, String>>>
    where
        F: FnOnce(Vec<usize>) -> Fut,
        Fut: std::future::Future<Output = Vec<std::result::Result<(), String>>>,
    {
        let started = Instant::now();
        let result = async {
            let mut outcome: Vec<Option<std::result::Result<bool, String>>> =
                vec![None; files.len()];
            let mut names: Vec<String> = files.iter().map(|f| f.name.as_str().to_string()).collect();
            names.sort();
            names.dedup();
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(n, 0))
                 FROM (SELECT n FROM unnest($1::text[]) WITH ORDINALITY AS u(n, i) ORDER BY i) s",
                &[&names],
            )
            .await?;
            let existing: BTreeMap<String, String> = tx
                .query(
                    "SELECT filename, sha256 FROM patch_file WHERE filename = ANY($1)",
                    &[&names],
                )
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let mut wanted = Vec::new();
            let mut claimed = BTreeMap::new();
            for (i, f) in files.iter().enumerate() {
                let name = f.name.as_str();
                let known = existing.get(name).or_else(|| claimed.get(name));
                outcome[i] = match known {
                    Some(sha) if *sha == f.sha256 => Some(Ok(false)),
                    Some(_) => Some(Err(
                        "a different file of this name is already registered here".to_string(),
                    )),
                    None => {
                        claimed.insert(name.to_string(), f.sha256.clone());
                        wanted.push(i);
                        None
                    }
                };
            }
            let published = publish(wanted.clone()).await;
            let mut ok = Vec::new();
            for (i, r) in wanted.into_iter().zip(published) {
                match r {
                    Ok(()) => ok.push(i),
                    Err(why) => outcome[i] = Some(Err(why)),
                }
            }
            if !ok.is_empty() {
                let column = |get: fn(&SyncedFile) -> String| -> Vec<String> {
                    ok.iter().map(|&i| get(&files[i])).collect()
                };
                let versions = column(|f| f.name.version.to_string());
                let majors: Vec<i32> = ok.iter().map(|&i| files[i].name.version.major as i32).collect();
                let minors: Vec<i32> = ok.iter().map(|&i| files[i].name.version.minor as i32).collect();
                tx.execute(
                    "INSERT INTO patch (version, major, minor)
                     SELECT * FROM unnest($1::text[], $2::int4[], $3::int4[])
                     ORDER BY 1 ON CONFLICT (version) DO NOTHING",
                    &[&versions, &majors, &minors],
                )
                .await?;
                let kversions = column(|f| f.name.kernel.version.clone());
                let flavours = column(|f| f.name.kernel.flavour.clone());
                let arches = column(|f| f.name.architecture.to_string());
                tx.execute(
                    "INSERT INTO kernel (version, flavour, architecture)
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
                     ORDER BY 1, 2, 3 ON CONFLICT DO NOTHING",
                    &[&kversions, &flavours, &arches],
                )
                .await?;
                let filenames = column(|f| f.name.as_str().to_string());
                let shas = column(|f| f.sha256.clone());
                let sizes: Vec<i64> = ok.iter().map(|&i| files[i].size).collect();
                let released: Vec<Option<OffsetDateTime>> =
                    ok.iter().map(|&i| files[i].released).collect();
                // A separate statement: it sees kernel rows a concurrent registration just committed.
                tx.execute(
                        "WITH f AS (
                             INSERT INTO patch_file (filename, patch_version, kernel_id, sha256, size, released)
                             SELECT u.filename, u.version, k.id, u.sha256, u.size, coalesce(u.released, now())
                             FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::timestamptz[],
                                         $6::text[], $7::text[], $8::text[])
                                  AS u(filename, version, sha256, size, released, kv, kf, ka)
                             JOIN kernel k ON k.version = u.kv AND k.flavour = u.kf AND k.architecture = u.ka
                             RETURNING id)
                         INSERT INTO patch_file_tier (tier_id, patch_file_id)
                         SELECT (SELECT id FROM tier ORDER BY position LIMIT 1), f.id FROM f",
                        &[
                            &filenames, &versions, &shas, &sizes, &released, &kversions, &flavours,
                            &arches,
                        ],
                    )
                .await?;
                for i in ok {
                    outcome[i] = Some(Ok(true));
                }
            }
            tx.commit().await?;
            Ok(outcome
                .into_iter()
                .map(|o| o.unwrap_or_else(|| Err("not registered".to_string())))
                .collect())
        }
        .await;
        self.observe("RegisterSyncedFiles", started, &result);
        result
    }

    /// Every registered file's SHA-256, by filename.
    pub async fn file_hashes(&self) -> Result<std::collections::HashMap<String, String>> {
        let rows = self
            .query(
                "ListFileHashes",
                "SELECT filename, sha256 FROM patch_file",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}
