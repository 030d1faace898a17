//! The database schema: embedded, numbered SQL migrations recorded in `schema_version`, applied
//! under a PostgreSQL advisory lock so that every unit of an application can run
//! `livepatch-schema-tool upgrade` at once (the charm does, on every reconfiguration).

use tokio_postgres::Client;

/// One migration.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// Its number; applied in order.
    pub version: i32,
    /// A short name.
    pub name: &'static str,
    /// The SQL, run in one transaction.
    pub sql: &'static str,
}

/// Every migration, in order. Add new ones at the end; never edit a released one.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "sync",
        sql: include_str!("../migrations/0002_sync.sql"),
    },
];

/// The schema version this build expects.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The advisory lock key ("livepatc" in ASCII), shared by every upgrading process.
const LOCK_KEY: i64 = 0x6c69_7665_7061_7463;

/// Where a database stands relative to this build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Nothing to do.
    UpToDate,
    /// `upgrade` would apply migrations (`current` 0 = empty database).
    Pending {
        /// Current version.
        current: i32,
        /// This build's version.
        latest: i32,
    },
    /// The database was upgraded by a newer build; this one must not touch it.
    Newer {
        /// Current version.
        current: i32,
        /// This build's version.
        latest: i32,
    },
}

/// Reads the current schema version (0 when the database has never been migrated).
pub async fn current_version(client: &Client) -> Result<i32, tokio_postgres::Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: Option<i32> = client
        .query_one("SELECT max(version) FROM schema_version", &[])
        .await?
        .get(0);
    Ok(v.unwrap_or(0))
}

/// Compares the database with this build.
pub async fn status(client: &Client) -> Result<Status, tokio_postgres::Error> {
    let current = current_version(client).await?;
    let latest = latest();
    Ok(match current.cmp(&latest) {
        std::cmp::Ordering::Equal => Status::UpToDate,
        std::cmp::Ordering::Less => Status::Pending { current, latest },
        std::cmp::Ordering::Greater => Status::Newer { current, latest },
    })
}

/// Why an upgrade failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// A newer build migrated this database.
    #[error("the database schema is at version {current}, newer than this build's {latest}: use a newer livepatch-schema-tool")]
    Newer {
        /// Current.
        current: i32,
        /// Ours.
        latest: i32,
    },
    /// A statement failed; the migration's transaction was rolled back.
    #[error("migration {version} ({name}) failed and was rolled back: {reason}")]
    Migration {
        /// Which.
        version: i32,
        /// Its name.
        name: &'static str,
        /// The database's message.
        reason: String,
    },
    /// Another database error.
    #[error("{0}")]
    Db(String),
}

/// Applies every pending migration under the advisory lock; returns the versions applied
/// (empty when another process got there first or nothing was pending).
pub async fn upgrade(client: &mut Client) -> Result<Vec<i32>, UpgradeError> {
    let db = |e: tokio_postgres::Error| UpgradeError::Db(crate::db::error_chain(&e));
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(db)?;
    let result = upgrade_locked(client).await;
    // Always release, even on failure; the session ending would release it too.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    result
}

async fn upgrade_locked(client: &mut Client) -> Result<Vec<i32>, UpgradeError> {
    let db = |e: tokio_postgres::Error| UpgradeError::Db(crate::db::error_chain(&e));
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (
                 version integer PRIMARY KEY,
                 name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(db)?;
    let current = current_version(client).await.map_err(db)?;
    if current > latest() {
        return Err(UpgradeError::Newer {
            current,
            latest: latest(),
        });
    }
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        let fail = |e: tokio_postgres::Error| UpgradeError::Migration {
            version: m.version,
            name: m.name,
            reason: crate::db::error_chain(&e),
        };
        let tx = client.transaction().await.map_err(db)?;
        tx.batch_execute(m.sql).await.map_err(fail)?;
        tx.execute(
            "INSERT INTO schema_version (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .await
        .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        applied.push(m.version);
    }
    Ok(applied)
}
