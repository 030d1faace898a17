//! Patch storage behind one streaming trait. A write is staged (a temporary object, hashed and
//! size-limited while the bytes stream in) and then published atomically under its final name or
//! discarded — so a failed or refused upload leaves nothing behind, and an object store (S3,
//! Swift: issue 5) fits the same shape (multipart upload, then complete or abort).
//!
//! Implementations: [`fs::FilesystemStorage`] (temp file, fsync, rename),
//! [`postgres::PostgresStorage`] (chunks in `patch_file_data`), [`s3::S3Storage`] (small objects
//! held in memory and PUT on publish, large ones a multipart upload to a temporary key, copied on
//! publish) and [`swift::SwiftStorage`] (the same shape over the Swift object API).

pub mod fs;
pub mod postgres;
pub mod s3;
pub mod swift;

use std::io;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

use crate::domain::PatchFilename;

/// A stream of bytes in or out of storage.
pub type ByteStream = BoxStream<'static, Result<Bytes, io::Error>>;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The body grew past the limit; nothing was kept.
    #[error("the upload is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// Reading the incoming body failed (client went away); nothing was kept.
    #[error("cannot read the upload: {0}")]
    Body(String),
    /// The store has no room left (ENOSPC, a quota); nothing was kept.
    #[error("patch storage is full: {0}")]
    Full(String),
    /// The store failed.
    #[error("patch storage failed: {0}")]
    Backend(String),
}

impl From<io::Error> for StorageError {
    /// A full disk or an exhausted quota is [`StorageError::Full`]: the operator must make room,
    /// which is not the same advice as for a store that is down.
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
                StorageError::Full(e.to_string())
            }
            _ => StorageError::Backend(e.to_string()),
        }
    }
}

/// An object written but not yet visible under its name.
pub trait Staged: Send {
    /// Lower-case hex SHA-256 of the bytes written.
    fn sha256(&self) -> &str;
    /// Bytes written.
    fn size(&self) -> u64;
    /// Makes the object visible as `name`, atomically replacing any object of that name.
    fn publish(
        self: Box<Self>,
        name: PatchFilename,
    ) -> BoxFuture<'static, Result<(), StorageError>>;
    /// Throws the staged bytes away.
    fn discard(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// An object being read.
pub struct Object {
    /// The object's full size.
    pub size: u64,
    /// The requested bytes (all, or the range asked for).
    pub body: ByteStream,
}

/// An object found in storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Its name (not necessarily a valid patch filename: manual copies may be anything).
    pub name: String,
    /// Its size.
    pub size: u64,
}

/// A patch store.
pub trait PatchStorage: Send + Sync {
    /// `filesystem`, `postgres`, …
    fn kind(&self) -> &'static str;
    /// Streams `body` into a staged object, hashing it, refusing past `limit` bytes.
    fn stage(
        &self,
        body: ByteStream,
        limit: u64,
    ) -> BoxFuture<'_, Result<Box<dyn Staged>, StorageError>>;
    /// Opens `name`, optionally a byte range `[start, end]` (inclusive); `None` if absent.
    fn open(
        &self,
        name: &PatchFilename,
        range: Option<(u64, u64)>,
    ) -> BoxFuture<'_, Result<Option<Object>, StorageError>>;
    /// Every published object.
    fn list(&self) -> BoxFuture<'_, Result<Vec<Listed>, StorageError>>;
    /// Deletes `name` (absent is fine).
    fn delete(&self, name: &PatchFilename) -> BoxFuture<'_, Result<(), StorageError>>;
    /// A cheap liveness probe for `/debug/status`.
    fn check(&self) -> BoxFuture<'_, Result<(), StorageError>>;
}

/// Drains `body` through `sink`, hashing and counting; fails past `limit`.
pub(crate) async fn pump<F, Fut>(
    mut body: ByteStream,
    limit: u64,
    mut sink: F,
) -> Result<(String, u64), StorageError>
where
    F: FnMut(Bytes) -> Fut,
    Fut: std::future::Future<Output = Result<(), StorageError>>,
{
    use futures_util::StreamExt;
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| StorageError::Body(e.to_string()))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(StorageError::TooLarge { limit });
        }
        hasher.update(&chunk);
        sink(chunk).await?;
    }
    Ok((crate::domain::hex(&hasher.finalize()), size))
}
