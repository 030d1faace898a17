//! All SQL of the server, one section per aggregate (tiers, patches, tokens, machines, reports,
//! admin sessions and root keys). Statements are prepared once per connection
//! (`prepare_cached`); every query is timed under its name in
//! `livepatch_server_database_query_duration_seconds` and failures are counted.
//!
//! Constraint violations become [`StoreError::Conflict`] here, at the query, so handlers never
//! see SQL errors.

use std::collections::BTreeMap;
use std::time::Instant;

use deadpool_postgres::Pool;
use time::OffsetDateTime;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::domain::{Kernel, MachineId, PatchFilename, PatchVersion, TierName};
use crate::metrics::Metrics;

mod sync;
pub use sync::{DownstreamReport, SyncRun, SyncTokenRow, SyncedFile, UpstreamMachine};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The thing named does not exist (the message says which).
    #[error("{0}")]
    NotFound(String),
    /// The change conflicts with existing state (the message says how).
    #[error("{0}")]
    Conflict(String),
    /// The change is well-formed but makes no sense (e.g. promoting backwards).
    #[error("{0}")]
    Invalid(String),
    /// The database failed or is unreachable (details are logged, not shown).
    #[error("database unavailable: {0}")]
    Unavailable(String),
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        // SQLSTATE class 22 (data exception: a NUL byte in text, a number out of range, …) is
        // the request's fault, not an outage: answering 503 would have clients retry bad data.
        if let Some(db) = e.as_db_error() {
            if db.code().code().starts_with("22") {
                return StoreError::Invalid(format!(
                    "the database refused a value: {}",
                    db.message()
                ));
            }
        }
        StoreError::Unavailable(crate::db::error_chain(&e))
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Unavailable(crate::db::error_chain(&e))
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, StoreError>;

fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// A tier with the number of patch files it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tier {
    /// Name.
    pub name: String,
    /// 1-based position in promotion order.
    pub position: i32,
    /// Patch files placed in it.
    pub patches: i64,
}

/// A patch file with its metadata and placements.
#[derive(Clone, Debug)]
pub struct PatchInfo {
    /// `107.1`
    pub version: String,
    /// Filename.
    pub filename: String,
    /// Kernel version.
    pub kernel: String,
    /// Flavour.
    pub flavour: String,
    /// Architecture.
    pub architecture: String,
    /// SHA-256 hex.
    pub sha256: String,
    /// Bytes.
    pub size: i64,
    /// Tiers holding it, in tier order.
    pub tiers: Vec<String>,
    /// Blocklisted version.
    pub blocklisted: bool,
    /// Release time.
    pub released: OffsetDateTime,
}

/// What a download needs to know about a file.
#[derive(Clone, Debug)]
pub struct FileMeta {
    /// SHA-256 hex.
    pub sha256: String,
    /// Bytes.
    pub size: i64,
}

/// Outcome of registering an uploaded or discovered file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Registered {
    /// New file, placed in the first tier.
    Created,
    /// The same file (same hash) was already registered.
    Same,
    /// Another file of that name is registered (its hash differs).
    Conflict,
}

/// The patch offered to a machine.
#[derive(Clone, Debug)]
pub struct Update {
    /// Version.
    pub version: String,
    /// Filename.
    pub filename: String,
    /// SHA-256 hex.
    pub sha256: String,
    /// Bytes.
    pub size: i64,
    /// Release time.
    pub released: OffsetDateTime,
}

/// What a machine sends on check-in.
#[derive(Clone, Debug, Default)]
pub struct CheckIn {
    /// Kernel as reported.
    pub kernel: String,
    /// Architecture.
    pub architecture: String,
    /// Patch state (normalised).
    pub patch_state: Option<String>,
    /// Applied patch version.
    pub patch_version: Option<String>,
    /// Client version.
    pub client_version: Option<String>,
    /// CPU model (reports only).
    pub cpu_model: Option<String>,
    /// Boot time (reports only).
    pub boot_time: Option<OffsetDateTime>,
    /// Uptime (reports only).
    pub uptime_seconds: Option<i64>,
}

/// What enrolment records about a machine.
#[derive(Clone, Debug)]
pub struct Enrollment<'a> {
    /// The machine.
    pub id: &'a MachineId,
    /// The auth token's tier.
    pub tier_id: i32,
    /// The auth token's label.
    pub auth_token_id: &'a str,
    /// SHA-256 of the new machine token.
    pub token_hash: &'a [u8; 32],
    /// Architecture.
    pub architecture: &'a str,
    /// Kernel as reported.
    pub kernel: &'a str,
    /// Host name.
    pub hostname: Option<&'a str>,
    /// Client version.
    pub client_version: Option<&'a str>,
}

/// A machine as the admin reports and the client info route show it.
#[derive(Clone, Debug)]
pub struct MachineInfo {
    /// Id.
    pub id: String,
    /// Tier.
    pub tier: String,
    /// Enrolment time.
    pub enrolled: OffsetDateTime,
    /// Last check-in.
    pub last_check_in: Option<OffsetDateTime>,
    /// Patch state.
    pub patch_state: Option<String>,
    /// Patch version.
    pub patch_version: Option<String>,
    /// Kernel.
    pub kernel: String,
    /// Architecture.
    pub architecture: String,
    /// Client version.
    pub client_version: Option<String>,
}

/// An auth or sync token as listed (never the secret).
#[derive(Clone, Debug)]
pub struct TokenInfo {
    /// Id (auth) or name (sync).
    pub id: String,
    /// Tier.
    pub tier: String,
    /// Creation.
    pub created: OffsetDateTime,
    /// Expiry.
    pub expires: Option<OffsetDateTime>,
}

/// An advisory lock held on a pooled connection.
pub struct NameLock {
    client: Option<deadpool_postgres::Object>,
    name: String,
}

impl Drop for NameLock {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let name = std::mem::take(&mut self.name);
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    if client
                        .execute(
                            "SELECT pg_advisory_unlock(hashtextextended($1, 0))",
                            &[&name],
                        )
                        .await
                        .is_err()
                    {
                        // The lock dies with the session: do not return this connection to the pool.
                        let _ = deadpool_postgres::Object::take(client);
                    }
                });
            }
        }
    }
}

/// The store: a pool and the metrics it reports to.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    metrics: Metrics,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Wraps a pool.
    pub fn new(pool: Pool, metrics: Metrics) -> Self {
        Self { pool, metrics }
    }

    /// The pool (for health checks and storage sharing the main database).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    fn observe<T>(&self, name: &str, started: Instant, result: &Result<T>) {
        self.metrics
            .database_query_duration
            .with_label_values(&[name])
            .observe(started.elapsed().as_secs_f64());
        if let Err(StoreError::Unavailable(_)) = result {
            self.metrics.database_error_count.inc();
        }
    }

    async fn query(
        &self,
        name: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        let started = Instant::now();
        let result = async {
            let client = self.pool.get().await?;
            let stmt = client.prepare_cached(sql).await?;
            Ok(client.query(&stmt, params).await?)
        }
        .await;
        self.observe(name, started, &result);
        result
    }

    async fn query_opt(
        &self,
        name: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>> {
        Ok(self.query(name, sql, params).await?.into_iter().next())
    }

    async fn execute(&self, name: &str, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let started = Instant::now();
        let result = async {
            let client = self.pool.get().await?;
            let stmt = client.prepare_cached(sql).await?;
            Ok(client.execute(&stmt, params).await?)
        }
        .await;
        self.observe(name, started, &result);
        result
    }

    /// A round trip, for `/debug/status`.
    pub async fn ping(&self) -> Result<()> {
        self.query("Ping", "SELECT 1", &[]).await.map(drop)
    }

    /// The schema version, checked at start-up.
    pub async fn schema_status(&self) -> Result<crate::migrations::Status> {
        let client = self.pool.get().await?;
        Ok(crate::migrations::status(&client).await?)
    }

    // ----------------------------------------------------------------------------------------
    // Tiers

    /// Tiers in promotion order with their patch counts.
    pub async fn list_tiers(&self) -> Result<Vec<Tier>> {
        let rows = self
            .query(
                "ListTiers",
                "SELECT t.name, t.position, count(pft.patch_file_id)
                 FROM tier t LEFT JOIN patch_file_tier pft ON pft.tier_id = t.id
                 GROUP BY t.id ORDER BY t.position",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Tier {
                name: r.get(0),
                position: r.get(1),
                patches: r.get(2),
            })
            .collect())
    }

    /// A tier's id.
    pub async fn tier_id(&self, name: &TierName) -> Result<i32> {
        self.query_opt(
            "GetTier",
            "SELECT id FROM tier WHERE name = $1",
            &[&name.as_str()],
        )
        .await?
        .map(|r| r.get(0))
        .ok_or_else(|| StoreError::NotFound(format!("there is no tier {name:?}")))
    }

    /// A tier's name by id.
    pub async fn tier_name(&self, id: i32) -> Result<String> {
        self.query_opt("GetTierName", "SELECT name FROM tier WHERE id = $1", &[&id])
            .await?
            .map(|r| r.get(0))
            .ok_or_else(|| StoreError::NotFound(format!("there is no tier with id {id}")))
    }

    /// Takes a cluster-wide advisory lock on `name` (uploads of one filename serialise even across
    /// instances sharing the database); released when the guard drops.
    pub async fn lock_name(&self, name: &str) -> Result<NameLock> {
        let client = self.pool.get().await?;
        client
            .execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", &[&name])
            .await?;
        Ok(NameLock {
            client: Some(client),
            name: name.to_string(),
        })
    }

    /// Adds a tier after `after` (or last). Positions stay dense.
    pub async fn add_tier(&self, name: &TierName, after: Option<&TierName>) -> Result<()> {
        let started = Instant::now();
        let result = async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            tx.batch_execute("SET CONSTRAINTS tier_position_unique DEFERRED")
                .await?;
            let position: i32 = match after {
                Some(a) => {
                    let row = tx
                        .query_opt("SELECT position FROM tier WHERE name = $1", &[&a.as_str()])
                        .await?;
                    row.map(|r| r.get::<_, i32>(0) + 1).ok_or_else(|| {
                        StoreError::NotFound(format!("there is no tier {a:?} to add after"))
                    })?
                }
                None => tx
                    .query_one("SELECT coalesce(max(position), 0) + 1 FROM tier", &[])
                    .await?
                    .get(0),
            };
            tx.execute(
                "UPDATE tier SET position = position + 1 WHERE position >= $1",
                &[&position],
            )
            .await?;
            match tx
                .execute(
                    "INSERT INTO tier (name, position) VALUES ($1, $2)",
                    &[&name.as_str(), &position],
                )
                .await
            {
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::Conflict(format!(
                        "tier {name:?} already exists"
                    )))
                }
                other => other?,
            };
            tx.commit().await?;
            Ok(())
        }
        .await;
        self.observe("AddTier", started, &result);
        result
    }

    /// Removes a tier no machine or token uses; patch placements in it go with it.
    pub async fn remove_tier(&self, name: &TierName) -> Result<()> {
        let started = Instant::now();
        let result = async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            let row = tx
                .query_opt("SELECT id, position FROM tier WHERE name = $1 FOR UPDATE", &[&name.as_str()])
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("there is no tier {name:?}")))?;
            let (id, position): (i32, i32) = (row.get(0), row.get(1));
            let uses = tx
                .query_one(
                    "SELECT (SELECT count(*) FROM machine WHERE tier_id = $1),
                            (SELECT count(*) FROM auth_token WHERE tier_id = $1),
                            (SELECT count(*) FROM sync_token WHERE tier_id = $1)",
                    &[&id],
                )
                .await?;
            let (m, a, s): (i64, i64, i64) = (uses.get(0), uses.get(1), uses.get(2));
            if m + a + s > 0 {
                return Err(StoreError::Conflict(format!(
                    "tier {name:?} is in use by {m} machine(s), {a} auth token(s) and {s} sync token(s): move or revoke them first"
                )));
            }
            tx.batch_execute("SET CONSTRAINTS tier_position_unique DEFERRED").await?;
            tx.execute("DELETE FROM tier WHERE id = $1", &[&id]).await?;
            tx.execute("UPDATE tier SET position = position - 1 WHERE position > $1", &[&position]).await?;
            tx.commit().await?;
            Ok(())
        }
        .await;
        self.observe("RemoveTier", started, &result);
        result
    }

    // ----------------------------------------------------------------------------------------
    // Patches

    /// Patch files, optionally filtered, newest version first.
    pub async fn list_patches(
        &self,
        tier: Option<&TierName>,
        kernel: Option<&str>,
        architecture: Option<&str>,
    ) -> Result<Vec<PatchInfo>> {
        let rows = self
            .query(
                "ListPatches",
                "SELECT p.version, pf.filename, k.version, k.flavour, k.architecture, pf.sha256, pf.size,
                        coalesce(array_agg(t.name ORDER BY t.position) FILTER (WHERE t.name IS NOT NULL), '{}'),
                        p.blocklisted, pf.released
                 FROM patch_file pf
                 JOIN patch p ON p.version = pf.patch_version
                 JOIN kernel k ON k.id = pf.kernel_id
                 LEFT JOIN patch_file_tier pft ON pft.patch_file_id = pf.id
                 LEFT JOIN tier t ON t.id = pft.tier_id
                 WHERE ($2::text IS NULL OR k.version = $2 OR k.version || '-' || k.flavour = $2)
                   AND ($3::text IS NULL OR k.architecture = $3)
                 GROUP BY pf.id, p.version, k.id
                 HAVING $1::text IS NULL OR $1 = ANY(array_agg(t.name))
                 ORDER BY p.major DESC, p.minor DESC, pf.filename",
                &[&tier.map(TierName::as_str), &kernel, &architecture],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| PatchInfo {
                version: r.get(0),
                filename: r.get(1),
                kernel: r.get(2),
                flavour: r.get(3),
                architecture: r.get(4),
                sha256: r.get(5),
                size: r.get(6),
                tiers: r.get(7),
                blocklisted: r.get(8),
                released: r.get(9),
            })
            .collect())
    }

    /// Every registered filename.
    pub async fn all_filenames(&self) -> Result<Vec<String>> {
        let rows = self
            .query(
                "ListFilenames",
                "SELECT filename FROM patch_file ORDER BY filename",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// A file's hash and size, for downloads.
    pub async fn file_meta(&self, filename: &PatchFilename) -> Result<Option<FileMeta>> {
        Ok(self
            .query_opt(
                "GetPatchFile",
                "SELECT sha256, size FROM patch_file WHERE filename = $1",
                &[&filename.as_str()],
            )
            .await?
            .map(|r| FileMeta {
                sha256: r.get(0),
                size: r.get(1),
            }))
    }

    /// Registers a stored file (placing it in the first tier), or reports that it already
    /// exists with the same or another hash.
    pub async fn register_file(
        &self,
        name: &PatchFilename,
        sha256: &str,
        size: i64,
    ) -> Result<Registered> {
        if let Some(existing) = self.file_meta(name).await? {
            return Ok(if existing.sha256 == sha256 {
                Registered::Same
            } else {
                Registered::Conflict
            });
        }
        let started = Instant::now();
        let result = async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            let version = name.version.to_string();
            tx.execute(
                "INSERT INTO patch (version, major, minor) VALUES ($1, $2, $3) ON CONFLICT (version) DO NOTHING",
                &[&version, &(name.version.major as i32), &(name.version.minor as i32)],
            )
            .await?;
            let kernel_params: [&(dyn ToSql + Sync); 3] =
                [&name.kernel.version, &name.kernel.flavour, &name.architecture];
            let inserted = tx
                .query_opt(
                    "WITH ins AS (INSERT INTO kernel (version, flavour, architecture) VALUES ($1, $2, $3)
                                  ON CONFLICT DO NOTHING RETURNING id)
                     SELECT id FROM ins UNION ALL
                     SELECT id FROM kernel WHERE version = $1 AND flavour = $2 AND architecture = $3 LIMIT 1",
                    &kernel_params,
                )
                .await?;
            let kernel_id: i64 = match inserted {
                Some(r) => r.get(0),
                // A concurrent registration inserted the kernel after this statement's snapshot
                // was taken (its INSERT waited for that commit, then did nothing): a new statement
                // sees the row.
                None => tx
                    .query_one(
                        "SELECT id FROM kernel WHERE version = $1 AND flavour = $2 AND architecture = $3",
                        &kernel_params,
                    )
                    .await?
                    .get(0),
            };
            let file_id: i64 = match tx
                .query_one(
                    "INSERT INTO patch_file (filename, patch_version, kernel_id, sha256, size)
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    &[&name.as_str(), &version, &kernel_id, &sha256, &size],
                )
                .await
            {
                Ok(r) => r.get(0),
                // A concurrent upload of the same name won the race: compare with it.
                Err(e) if is_unique_violation(&e) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            tx.execute(
                "INSERT INTO patch_file_tier (tier_id, patch_file_id)
                 SELECT id, $1 FROM tier ORDER BY position LIMIT 1",
                &[&file_id],
            )
            .await?;
            tx.commit().await?;
            Ok(Some(Registered::Created))
        }
        .await;
        self.observe("RegisterPatchFile", started, &result);
        match result? {
            Some(r) => Ok(r),
            None => match self.file_meta(name).await? {
                Some(m) if m.sha256 == sha256 => Ok(Registered::Same),
                _ => Ok(Registered::Conflict),
            },
        }
    }

    async fn require_version(&self, version: &PatchVersion) -> Result<()> {
        let exists = self
            .query_opt(
                "GetPatch",
                "SELECT 1 FROM patch WHERE version = $1",
                &[&version.to_string()],
            )
            .await?
            .is_some();
        if exists {
            Ok(())
        } else {
            Err(StoreError::NotFound(format!(
                "there is no patch version {version}"
            )))
        }
    }

    /// Places every file of `version` in `tier`; returns how many placements were added.
    pub async fn promote(&self, version: &PatchVersion, tier: &TierName) -> Result<u64> {
        self.require_version(version).await?;
        let tier_id = self.tier_id(tier).await?;
        self.execute(
            "PromotePatch",
            "INSERT INTO patch_file_tier (tier_id, patch_file_id)
             SELECT $1, id FROM patch_file WHERE patch_version = $2 ON CONFLICT DO NOTHING",
            &[&tier_id, &version.to_string()],
        )
        .await
    }

    /// Makes every tier after `from` up to `to` hold exactly the files of `from`; returns the
    /// number of placements added.
    pub async fn promote_all(&self, from: &TierName, to: &TierName) -> Result<u64> {
        let started = Instant::now();
        let result = async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            let pos = |name: &TierName| {
                let name = name.clone();
                let tx = &tx;
                async move {
                    tx.query_opt("SELECT id, position FROM tier WHERE name = $1", &[&name.as_str()])
                        .await?
                        .map(|r| (r.get::<_, i32>(0), r.get::<_, i32>(1)))
                        .ok_or_else(|| StoreError::NotFound(format!("there is no tier {name:?}")))
                }
            };
            let (from_id, from_pos) = pos(from).await?;
            // 404 is for the tier the URL names; a `to` that does not exist cannot come after
            // `from` either, which api.md answers with 422.
            let (_, to_pos) = pos(to).await.map_err(|e| match e {
                StoreError::NotFound(_) => StoreError::Invalid(format!(
                    "there is no tier {to:?} to promote to: name an existing tier after {from:?}"
                )),
                other => other,
            })?;
            if to_pos <= from_pos {
                return Err(StoreError::Invalid(format!(
                    "tier {to:?} does not come after {from:?}: promotion goes from earlier to later tiers"
                )));
            }
            tx.execute(
                "DELETE FROM patch_file_tier WHERE tier_id IN (SELECT id FROM tier WHERE position > $1 AND position <= $2)
                   AND patch_file_id NOT IN (SELECT patch_file_id FROM patch_file_tier WHERE tier_id = $3)",
                &[&from_pos, &to_pos, &from_id],
            )
            .await?;
            let added = tx
                .execute(
                    "INSERT INTO patch_file_tier (tier_id, patch_file_id)
                     SELECT t.id, pft.patch_file_id FROM tier t, patch_file_tier pft
                     WHERE t.position > $1 AND t.position <= $2 AND pft.tier_id = $3
                     ON CONFLICT DO NOTHING",
                    &[&from_pos, &to_pos, &from_id],
                )
                .await?;
            tx.commit().await?;
            Ok(added)
        }
        .await;
        self.observe("PromoteAll", started, &result);
        result
    }

    /// Blocklists a version (every file of it).
    pub async fn blocklist(&self, version: &PatchVersion, reason: &str) -> Result<()> {
        let n = self
            .execute(
                "BlocklistPatch",
                "UPDATE patch SET blocklisted = true, blocklist_reason = $2, blocklisted_at = now(), blocklist_source = 'local' WHERE version = $1",
                &[&version.to_string(), &reason],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "there is no patch version {version}"
            )));
        }
        Ok(())
    }

    /// Lifts a blocklisting.
    pub async fn unblocklist(&self, version: &PatchVersion) -> Result<()> {
        let n = self
            .execute(
                "UnblocklistPatch",
                "UPDATE patch SET blocklisted = false, blocklist_reason = NULL, blocklisted_at = NULL, blocklist_source = NULL WHERE version = $1",
                &[&version.to_string()],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "there is no patch version {version}"
            )));
        }
        Ok(())
    }

    // ----------------------------------------------------------------------------------------
    // Auth and sync tokens

    async fn create_token(
        &self,
        table: &str,
        key: &str,
        label: &str,
        tier: &TierName,
        hash: &[u8; 32],
        expires: Option<OffsetDateTime>,
    ) -> Result<()> {
        let tier_id = self.tier_id(tier).await?;
        let sql = format!(
            "INSERT INTO {table} ({key}, token_hash, tier_id, expires_at) VALUES ($1, $2, $3, $4)"
        );
        let started = Instant::now();
        let result = async {
            let client = self.pool.get().await?;
            let stmt = client.prepare_cached(&sql).await?;
            match client
                .execute(&stmt, &[&label, &hash.as_slice(), &tier_id, &expires])
                .await
            {
                Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                    "a token named {label:?} already exists: revoke it first or choose another name"
                ))),
                other => other.map(drop).map_err(Into::into),
            }
        }
        .await;
        self.observe(
            if table == "auth_token" {
                "CreateAuthToken"
            } else {
                "CreateSyncToken"
            },
            started,
            &result,
        );
        result
    }

    async fn list_tokens(&self, name: &str, table: &str, key: &str) -> Result<Vec<TokenInfo>> {
        let sql = format!(
            "SELECT x.{key}, t.name, x.created_at, x.expires_at FROM {table} x JOIN tier t ON t.id = x.tier_id ORDER BY x.created_at, x.{key}"
        );
        let rows = self.query(name, &sql, &[]).await?;
        Ok(rows
            .iter()
            .map(|r| TokenInfo {
                id: r.get(0),
                tier: r.get(1),
                created: r.get(2),
                expires: r.get(3),
            })
            .collect())
    }

    /// Mints an auth token row.
    pub async fn create_auth_token(
        &self,
        id: &str,
        tier: &TierName,
        hash: &[u8; 32],
        expires: Option<OffsetDateTime>,
    ) -> Result<()> {
        self.create_token("auth_token", "id", id, tier, hash, expires)
            .await
    }

    /// Lists auth tokens.
    pub async fn list_auth_tokens(&self) -> Result<Vec<TokenInfo>> {
        self.list_tokens("ListAuthTokens", "auth_token", "id").await
    }

    /// Revokes an auth token (machines enrolled with it keep working).
    pub async fn revoke_auth_token(&self, id: &str) -> Result<()> {
        let n = self
            .execute(
                "RevokeAuthToken",
                "DELETE FROM auth_token WHERE id = $1",
                &[&id],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "there is no auth token {id:?}"
            )));
        }
        Ok(())
    }

    /// Finds a valid auth token by the hash of the presented value: (id, tier id, stored hash).
    pub async fn find_auth_token(&self, hash: &[u8; 32]) -> Result<Option<(String, i32, Vec<u8>)>> {
        Ok(self
            .query_opt(
                "FindAuthToken",
                "SELECT id, tier_id, token_hash FROM auth_token WHERE token_hash = $1 AND (expires_at IS NULL OR expires_at > now())",
                &[&hash.as_slice()],
            )
            .await?
            .map(|r| (r.get(0), r.get(1), r.get(2))))
    }

    /// Mints a sync token row.
    pub async fn create_sync_token(
        &self,
        name: &str,
        tier: &TierName,
        hash: &[u8; 32],
        expires: Option<OffsetDateTime>,
    ) -> Result<()> {
        self.create_token("sync_token", "name", name, tier, hash, expires)
            .await
    }

    /// Finds a valid sync token by the hash of the presented value: (name, tier id, stored hash).
    /// For the sync API: compare the stored hash with `domain::token_matches` before trusting it.
    pub async fn find_sync_token(&self, hash: &[u8; 32]) -> Result<Option<(String, i32, Vec<u8>)>> {
        Ok(self
            .query_opt(
                "FindSyncToken",
                "SELECT name, tier_id, token_hash FROM sync_token WHERE token_hash = $1 AND (expires_at IS NULL OR expires_at > now())",
                &[&hash.as_slice()],
            )
            .await?
            .map(|r| (r.get(0), r.get(1), r.get(2))))
    }

    /// Lists sync tokens.
    pub async fn list_sync_tokens(&self) -> Result<Vec<TokenInfo>> {
        self.list_tokens("ListSyncTokens", "sync_token", "name")
            .await
    }

    /// Removes a sync token.
    pub async fn remove_sync_token(&self, name: &str) -> Result<()> {
        let n = self
            .execute(
                "RemoveSyncToken",
                "DELETE FROM sync_token WHERE name = $1",
                &[&name],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "there is no sync token {name:?}"
            )));
        }
        Ok(())
    }

    // ----------------------------------------------------------------------------------------
    // Machines

    /// Enrols (or re-enrols) a machine with a new token hash; true when new.
    pub async fn enroll(&self, e: &Enrollment<'_>) -> Result<bool> {
        let row = self
            .query(
                "EnrollMachine",
                "INSERT INTO machine (id, token_hash, tier_id, auth_token_id, architecture, kernel, hostname, client_version)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (id) DO UPDATE SET token_hash = excluded.token_hash, tier_id = excluded.tier_id,
                     auth_token_id = excluded.auth_token_id, architecture = excluded.architecture,
                     kernel = excluded.kernel, hostname = excluded.hostname, client_version = excluded.client_version
                 RETURNING (xmax = 0)",
                &[
                    &e.id.as_str(),
                    &e.token_hash.as_slice(),
                    &e.tier_id,
                    &e.auth_token_id,
                    &e.architecture,
                    &e.kernel,
                    &e.hostname,
                    &e.client_version,
                ],
            )
            .await?;
        Ok(row.first().map(|r| r.get(0)).unwrap_or(false))
    }

    /// The stored token hash and tier of a machine, for authentication.
    pub async fn machine_credentials(&self, id: &MachineId) -> Result<Option<(Vec<u8>, i32)>> {
        Ok(self
            .query_opt(
                "GetMachineToken",
                "SELECT token_hash, tier_id FROM machine WHERE id = $1",
                &[&id.as_str()],
            )
            .await?
            .map(|r| (r.get(0), r.get(1))))
    }

    /// Records a check-in and selects the update in one round trip: the newest file of the
    /// machine's tier for exactly its kernel and architecture, not blocklisted, released before
    /// `cutoff` when given. Also tells whether any patch was ever built for that kernel.
    pub async fn check_in(
        &self,
        id: &MachineId,
        tier_id: i32,
        kernel: &Kernel,
        c: &CheckIn,
        cutoff: Option<OffsetDateTime>,
    ) -> Result<(bool, Option<Update>)> {
        let rows = self
            .query(
                "CheckIn",
                "WITH seen AS (
                     UPDATE machine SET last_check_in = now(), kernel = $5, architecture = $4,
                         patch_state = coalesce($6, patch_state), patch_version = coalesce($7, patch_version),
                         client_version = coalesce($8, client_version)
                     WHERE id = $1)
                 SELECT k.id IS NOT NULL, u.version, u.filename, u.sha256, u.size, u.released
                 FROM (SELECT 1) AS one
                 LEFT JOIN kernel k ON k.version = $2 AND k.flavour = $3 AND k.architecture = $4
                 LEFT JOIN LATERAL (
                     SELECT p.version, pf.filename, pf.sha256, pf.size, pf.released
                     FROM patch_file pf
                     JOIN patch_file_tier pft ON pft.patch_file_id = pf.id AND pft.tier_id = $9
                     JOIN patch p ON p.version = pf.patch_version
                     WHERE pf.kernel_id = k.id AND NOT p.blocklisted
                       AND ($10::timestamptz IS NULL OR pf.released <= $10)
                     ORDER BY p.major DESC, p.minor DESC LIMIT 1) u ON true",
                &[
                    &id.as_str(),
                    &kernel.version,
                    &kernel.flavour,
                    &c.architecture,
                    &c.kernel,
                    &c.patch_state,
                    &c.patch_version,
                    &c.client_version,
                    &tier_id,
                    &cutoff,
                ],
            )
            .await?;
        let Some(r) = rows.first() else {
            return Ok((false, None));
        };
        let known: bool = r.get(0);
        let version: Option<String> = r.get(1);
        Ok((
            known,
            version.map(|version| Update {
                version,
                filename: r.get(2),
                sha256: r.get(3),
                size: r.get(4),
                released: r.get(5),
            }),
        ))
    }

    /// The machine a token belongs to (only asked after a failed check, to tell 401 from 403).
    pub async fn machine_id_for_token(&self, hash: &[u8; 32]) -> Result<Option<String>> {
        Ok(self
            .query_opt(
                "FindMachineByToken",
                "SELECT id FROM machine WHERE token_hash = $1",
                &[&hash.as_slice()],
            )
            .await?
            .map(|r| r.get(0)))
    }

    fn machine_row(r: &Row) -> MachineInfo {
        MachineInfo {
            id: r.get(0),
            tier: r.get(1),
            enrolled: r.get(2),
            last_check_in: r.get(3),
            patch_state: r.get(4),
            patch_version: r.get(5),
            kernel: r.get(6),
            architecture: r.get(7),
            client_version: r.get(8),
        }
    }

    /// One machine.
    pub async fn machine_info(&self, id: &MachineId) -> Result<Option<MachineInfo>> {
        Ok(self
            .query_opt(
                "GetMachine",
                "SELECT m.id, t.name, m.enrolled_at, m.last_check_in, m.patch_state, m.patch_version, m.kernel,
                        m.architecture, m.client_version
                 FROM machine m JOIN tier t ON t.id = m.tier_id WHERE m.id = $1",
                &[&id.as_str()],
            )
            .await?
            .map(|r| Self::machine_row(&r)))
    }

    /// Removes a machine.
    pub async fn delete_machine(&self, id: &MachineId) -> Result<()> {
        self.execute(
            "DeleteMachine",
            "DELETE FROM machine WHERE id = $1",
            &[&id.as_str()],
        )
        .await
        .map(drop)
    }

    /// Machines of a tier, filtered, paged by id (`after` = last id of the previous page).
    pub async fn list_machines(
        &self,
        tier: &TierName,
        patch_version: Option<&str>,
        patch_state: Option<&str>,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Vec<MachineInfo>> {
        let tier_id = self.tier_id(tier).await?;
        let rows = self
            .query(
                "ListMachines",
                "SELECT m.id, t.name, m.enrolled_at, m.last_check_in, m.patch_state, m.patch_version, m.kernel,
                        m.architecture, m.client_version
                 FROM machine m JOIN tier t ON t.id = m.tier_id
                 WHERE m.tier_id = $1 AND ($2::text IS NULL OR m.patch_version = $2)
                   AND ($3::text IS NULL OR m.patch_state = $3) AND ($5::text IS NULL OR m.id > $5)
                 ORDER BY m.id LIMIT $4",
                &[&tier_id, &patch_version, &patch_state, &limit, &after],
            )
            .await?;
        Ok(rows.iter().map(Self::machine_row).collect())
    }

    /// Counts of machines of a tier on a patch version, per patch state.
    pub async fn patch_health(
        &self,
        tier: &TierName,
        patch_version: &PatchVersion,
    ) -> Result<BTreeMap<String, i64>> {
        let tier_id = self.tier_id(tier).await?;
        let rows = self
            .query(
                "PatchHealth",
                "SELECT coalesce(patch_state, 'unknown'), count(*) FROM machine
                 WHERE tier_id = $1 AND patch_version = $2 GROUP BY 1",
                &[&tier_id, &patch_version.to_string()],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    // ----------------------------------------------------------------------------------------
    // Machine reports

    /// The key that hashes machine ids in reports, created on first use.
    pub async fn report_key(&self) -> Result<Vec<u8>> {
        use rand::RngCore;
        let mut fresh = [0u8; 32];
        rand::rng().fill_bytes(&mut fresh);
        self.execute(
            "InitReportKey",
            "INSERT INTO server_secret (name, value) VALUES ('report-machine-id-key', $1) ON CONFLICT DO NOTHING",
            &[&fresh.as_slice()],
        )
        .await?;
        let row = self
            .query_opt(
                "GetReportKey",
                "SELECT value FROM server_secret WHERE name = 'report-machine-id-key'",
                &[],
            )
            .await?
            .ok_or_else(|| StoreError::Unavailable("report key missing".into()))?;
        Ok(row.get(0))
    }

    /// Writes one report row.
    pub async fn insert_report(&self, machine_hash: &str, tier_id: i32, c: &CheckIn) -> Result<()> {
        self.execute(
            "InsertMachineReport",
            "INSERT INTO machine_report (machine_hash, tier, architecture, cpu_model, kernel, boot_time, uptime_seconds,
                                         patch_version, patch_state, client_version)
             SELECT $1, name, $3, $4, $5, $6, $7, $8, $9, $10 FROM tier WHERE id = $2",
            &[
                &machine_hash,
                &tier_id,
                &c.architecture,
                &c.cpu_model,
                &c.kernel,
                &c.boot_time,
                &c.uptime_seconds,
                &c.patch_version,
                &c.patch_state,
                &c.client_version,
            ],
        )
        .await
        .map(drop)
    }

    /// Deletes at most `limit` report rows older than `retention_days`; returns how many.
    pub async fn cleanup_reports(&self, retention_days: u32, limit: u32) -> Result<u64> {
        self.execute(
            "CleanupMachineReports",
            "DELETE FROM machine_report WHERE id IN (
                 SELECT id FROM machine_report WHERE created_at < now() - make_interval(days => $1)
                 ORDER BY created_at LIMIT $2)",
            &[&(retention_days as i32), &(limit as i64)],
        )
        .await
    }

    // ----------------------------------------------------------------------------------------
    // Macaroon root keys and admin sessions

    /// The root key to mint with now: the newest still inside its minting window, or a new one
    /// (minting window 24 h, kept until `mint_until + token_lifetime`).
    pub async fn minting_root_key(
        &self,
        token_lifetime: time::Duration,
    ) -> Result<(uuid::Uuid, Vec<u8>)> {
        if let Some(r) = self
            .query_opt(
                "GetMintingRootKey",
                "SELECT id, root_key FROM macaroon_root_key WHERE mint_until > now() + make_interval(mins => 5)
                 ORDER BY created_at DESC LIMIT 1",
                &[],
            )
            .await?
        {
            return Ok((r.get(0), r.get(1)));
        }
        use rand::RngCore;
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        let id = uuid::Uuid::new_v4();
        let now = OffsetDateTime::now_utc();
        let mint_until = now + time::Duration::hours(24);
        self.execute(
            "CreateRootKey",
            "INSERT INTO macaroon_root_key (id, root_key, mint_until, expires_at) VALUES ($1, $2, $3, $4)",
            &[&id, &key.as_slice(), &mint_until, &(mint_until + token_lifetime)],
        )
        .await?;
        // Keys whose every token has expired are useless.
        self.execute(
            "DeleteExpiredRootKeys",
            "DELETE FROM macaroon_root_key WHERE expires_at < now()",
            &[],
        )
        .await?;
        Ok((id, key.to_vec()))
    }

    /// A root key for verification, if it exists and has not expired.
    pub async fn root_key(&self, id: &uuid::Uuid) -> Result<Option<(Vec<u8>, OffsetDateTime)>> {
        Ok(self
            .query_opt(
                "GetRootKey",
                "SELECT root_key, expires_at FROM macaroon_root_key WHERE id = $1 AND expires_at > now()",
                &[id],
            )
            .await?
            .map(|r| (r.get(0), r.get(1))))
    }

    /// Records a login.
    pub async fn create_session(
        &self,
        id: &uuid::Uuid,
        user: &str,
        root_key: &uuid::Uuid,
        expires: OffsetDateTime,
    ) -> Result<()> {
        self.execute(
            "CreateAdminSession",
            "INSERT INTO admin_session (id, username, root_key_id, expires_at) VALUES ($1, $2, $3, $4)",
            &[id, &user, root_key, &expires],
        )
        .await
        .map(drop)
    }

    /// True when the session exists, is not revoked and has not expired.
    pub async fn session_valid(&self, id: &uuid::Uuid) -> Result<bool> {
        Ok(self
            .query_opt(
                "GetAdminSession",
                "SELECT 1 FROM admin_session WHERE id = $1 AND NOT revoked AND expires_at > now()",
                &[id],
            )
            .await?
            .is_some())
    }
}
