//! PostgreSQL patch storage: each object is a run of 1 MiB chunks in `patch_file_data`, in the
//! database named by `patch-storage.postgres-connection-string` (the main one by default). An
//! upload writes its chunks under a `.upload-<uuid>` name and is published by renaming them in one
//! transaction, so readers see all of an object or none of it; a failed upload's rows are deleted.

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};

use super::{pump, ByteStream, Listed, Object, PatchStorage, Staged, StorageError};
use crate::domain::PatchFilename;

const CHUNK: usize = 1 << 20;
const TEMP_PREFIX: &str = ".upload-";

fn backend<E: std::fmt::Display>(e: E) -> StorageError {
    StorageError::Backend(e.to_string())
}

/// The table, for a storage database other than the main one (which gets it from migrations).
const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS patch_file_data (
    filename text NOT NULL, chunk integer NOT NULL, data bytea NOT NULL, PRIMARY KEY (filename, chunk))";

/// Patches stored as rows.
pub struct PostgresStorage {
    pool: deadpool_postgres::Pool,
}

impl std::fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PostgresStorage")
    }
}

impl PostgresStorage {
    /// Uses `pool`. When it is a separate storage database, creates the table if missing and
    /// removes uploads a crash left behind.
    pub async fn open(
        pool: deadpool_postgres::Pool,
        separate_database: bool,
    ) -> Result<Self, StorageError> {
        let client = pool.get().await.map_err(backend)?;
        if separate_database {
            client.batch_execute(CREATE_TABLE).await.map_err(backend)?;
        }
        client
            .execute(
                "DELETE FROM patch_file_data WHERE filename LIKE '.upload-%'",
                &[],
            )
            .await
            .map_err(backend)?;
        Ok(Self { pool })
    }
}

struct StagedRows {
    pool: deadpool_postgres::Pool,
    temp: Option<String>,
    sha256: String,
    size: u64,
}

async fn delete_rows(pool: &deadpool_postgres::Pool, name: &str) {
    if let Ok(c) = pool.get().await {
        let _ = c
            .execute("DELETE FROM patch_file_data WHERE filename = $1", &[&name])
            .await;
    }
}

impl Drop for StagedRows {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let pool = self.pool.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move { delete_rows(&pool, &temp).await });
            }
        }
    }
}

impl Staged for StagedRows {
    fn sha256(&self) -> &str {
        &self.sha256
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn publish(
        mut self: Box<Self>,
        name: PatchFilename,
    ) -> BoxFuture<'static, Result<(), StorageError>> {
        let temp = self.temp.take();
        let pool = self.pool.clone();
        async move {
            let temp = temp.ok_or_else(|| StorageError::Backend("already published".into()))?;
            let result = async {
                let mut client = pool.get().await.map_err(backend)?;
                let tx = client.transaction().await.map_err(backend)?;
                tx.execute(
                    "DELETE FROM patch_file_data WHERE filename = $1",
                    &[&name.as_str()],
                )
                .await
                .map_err(backend)?;
                tx.execute(
                    "UPDATE patch_file_data SET filename = $1 WHERE filename = $2",
                    &[&name.as_str(), &temp],
                )
                .await
                .map_err(backend)?;
                tx.commit().await.map_err(backend)
            }
            .await;
            if result.is_err() {
                delete_rows(&pool, &temp).await;
            }
            result
        }
        .boxed()
    }

    fn discard(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        let temp = self.temp.take();
        let pool = self.pool.clone();
        async move {
            if let Some(t) = temp {
                delete_rows(&pool, &t).await;
            }
        }
        .boxed()
    }
}

impl PatchStorage for PostgresStorage {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn stage(
        &self,
        body: ByteStream,
        limit: u64,
    ) -> BoxFuture<'_, Result<Box<dyn Staged>, StorageError>> {
        async move {
            let temp = format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4());
            // From here on, dropping `staged` deletes whatever rows were written.
            let mut staged = StagedRows {
                pool: self.pool.clone(),
                temp: Some(temp.clone()),
                sha256: String::new(),
                size: 0,
            };
            let client = std::sync::Arc::new(self.pool.get().await.map_err(backend)?);
            let insert = client
                .prepare_cached(
                    "INSERT INTO patch_file_data (filename, chunk, data) VALUES ($1, $2, $3)",
                )
                .await
                .map_err(backend)?;
            let buffer = std::sync::Arc::new(tokio::sync::Mutex::new((
                Vec::<u8>::with_capacity(CHUNK),
                0i32,
            )));
            let flush = |data: Vec<u8>, index: i32| {
                let client = client.clone();
                let insert = insert.clone();
                let temp = temp.clone();
                async move {
                    client
                        .execute(&insert, &[&temp, &index, &data])
                        .await
                        .map(drop)
                        .map_err(backend)
                }
            };
            let (sha256, size) = pump(body, limit, |chunk| {
                let buffer = buffer.clone();
                async move {
                    let mut b = buffer.lock().await;
                    let mut rest: &[u8] = &chunk;
                    while !rest.is_empty() {
                        let take = (CHUNK - b.0.len()).min(rest.len());
                        b.0.extend_from_slice(&rest[..take]);
                        rest = &rest[take..];
                        if b.0.len() == CHUNK {
                            let data = std::mem::replace(&mut b.0, Vec::with_capacity(CHUNK));
                            let index = b.1;
                            b.1 += 1;
                            flush(data, index).await?;
                        }
                    }
                    Ok(())
                }
            })
            .await?;
            let (data, index) = std::mem::take(&mut *buffer.lock().await);
            if !data.is_empty() || index == 0 {
                flush(data, index).await?;
            }
            staged.sha256 = sha256;
            staged.size = size;
            Ok(Box::new(staged) as Box<dyn Staged>)
        }
        .boxed()
    }

    fn open(
        &self,
        name: &PatchFilename,
        range: Option<(u64, u64)>,
    ) -> BoxFuture<'_, Result<Option<Object>, StorageError>> {
        let name = name.to_string();
        async move {
            let client = self.pool.get().await.map_err(backend)?;
            let rows = client
                .query(
                    "SELECT chunk, length(data)::bigint FROM patch_file_data WHERE filename = $1 ORDER BY chunk",
                    &[&name],
                )
                .await
                .map_err(backend)?;
            if rows.is_empty() {
                return Ok(None);
            }
            let chunks: Vec<(i32, u64)> = rows.iter().map(|r| (r.get::<_, i32>(0), r.get::<_, i64>(1) as u64)).collect();
            let size: u64 = chunks.iter().map(|c| c.1).sum();
            let (start, end) = range.unwrap_or((0, size.saturating_sub(1)));
            // Only the chunks overlapping [start, end], each trimmed to the range.
            let mut plan = Vec::new();
            let mut offset = 0u64;
            for (index, len) in chunks {
                let (lo, hi) = (offset, offset + len);
                offset = hi;
                if len == 0 || hi <= start || lo > end {
                    continue;
                }
                let from = start.saturating_sub(lo) as usize;
                let to = ((end + 1).min(hi) - lo) as usize;
                plan.push((index, from, to));
            }
            let pool = self.pool.clone();
            let body = futures_util::stream::iter(plan)
                .then(move |(index, from, to)| {
                    let pool = pool.clone();
                    let name = name.clone();
                    async move {
                        let client = pool.get().await.map_err(std::io::Error::other)?;
                        let row = client
                            .query_one("SELECT data FROM patch_file_data WHERE filename = $1 AND chunk = $2", &[&name, &index])
                            .await
                            .map_err(std::io::Error::other)?;
                        let data: Vec<u8> = row.get(0);
                        Ok(bytes::Bytes::from(data).slice(from..to))
                    }
                })
                .boxed();
            Ok(Some(Object { size, body }))
        }
        .boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<Listed>, StorageError>> {
        async move {
            let client = self.pool.get().await.map_err(backend)?;
            let rows = client
                .query(
                    "SELECT filename, sum(length(data))::bigint FROM patch_file_data
                     WHERE filename NOT LIKE '.upload-%' GROUP BY filename ORDER BY filename",
                    &[],
                )
                .await
                .map_err(backend)?;
            Ok(rows
                .iter()
                .map(|r| Listed {
                    name: r.get(0),
                    size: r.get::<_, i64>(1) as u64,
                })
                .collect())
        }
        .boxed()
    }

    fn delete(&self, name: &PatchFilename) -> BoxFuture<'_, Result<(), StorageError>> {
        let name = name.to_string();
        async move {
            let client = self.pool.get().await.map_err(backend)?;
            client
                .execute("DELETE FROM patch_file_data WHERE filename = $1", &[&name])
                .await
                .map_err(backend)?;
            Ok(())
        }
        .boxed()
    }

    fn check(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        async move {
            let client = self.pool.get().await.map_err(backend)?;
            client
                .execute("SELECT 1 FROM patch_file_data LIMIT 1", &[])
                .await
                .map_err(backend)?;
            Ok(())
        }
        .boxed()
    }
}
