//! S3 (and S3-compatible: MinIO, Ceph RGW, …) patch storage through `object_store`, with
//! path-style requests so any compatible server works, and `patch-storage.s3-secure` choosing
//! https for an endpoint given without a scheme.
//!
//! A staged write is, by size:
//! - up to [`PART_SIZE`]: held in memory and PUT under its final name on publish (one request;
//!   S3 makes a PUT visible whole or not at all);
//! - larger: streamed as a multipart upload (parts of [`PART_SIZE`], two in flight) to a
//!   temporary `.upload-<uuid>` key, server-side copied to the final name on publish and the
//!   temporary key deleted; a failed or discarded upload is aborted or deleted.
//!
//! Temporary keys never appear in listings. Ones a crash left behind are deleted at start-up once
//! they are an hour old (younger ones may belong to another instance sharing the bucket).
//! Credentials live in `Secret`s; this type's `Debug` shows only the bucket and the endpoint.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{ClientOptions, HttpClient, HttpConnector};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use super::{pump, ByteStream, Listed, Object, PatchStorage, Staged, StorageError};
use crate::config::S3Config;
use crate::domain::PatchFilename;

/// The multipart part size (S3's minimum is 5 MiB) and the in-memory threshold.
pub const PART_SIZE: usize = 8 << 20;
const TEMP_PREFIX: &str = ".upload-";

fn backend(e: impl std::fmt::Display) -> StorageError {
    StorageError::Backend(crate::logging::redact(&e.to_string()))
}

/// Our HTTP client for `object_store`: the system CA store, TLS 1.2+, no proxy (storage is on
/// the internal segment).
#[derive(Debug)]
struct Connector;

impl HttpConnector for Connector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = crate::sync::client::http_client(&Default::default()).map_err(|e| {
            object_store::Error::Generic {
                store: "S3",
                source: Box::new(std::io::Error::other(e.to_string())),
            }
        })?;
        Ok(HttpClient::new(client))
    }
}

/// The endpoint URL: as given when it has a scheme, else with https (`secure`) or http.
pub fn endpoint_url(endpoint: &str, secure: bool) -> Option<String> {
    let e = endpoint.trim().trim_end_matches('/');
    if e.is_empty() {
        return None;
    }
    if e.starts_with("http://") || e.starts_with("https://") {
        return Some(e.to_string());
    }
    Some(format!("{}://{e}", if secure { "https" } else { "http" }))
}

/// A bucket of patch files.
pub struct S3Storage {
    store: Arc<AmazonS3>,
    bucket: String,
    endpoint: String,
}

impl std::fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Storage")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl S3Storage {
    /// Connects (lazily) and checks the bucket answers; removes old temporary keys.
    pub async fn open(cfg: &S3Config) -> Result<Self, StorageError> {
        if cfg.bucket.trim().is_empty() {
            return Err(StorageError::Backend(
                "patch-storage.s3-bucket is not set".into(),
            ));
        }
        let region = if cfg.region.trim().is_empty() {
            "us-east-1"
        } else {
            cfg.region.trim()
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(cfg.bucket.trim())
            .with_region(region)
            .with_virtual_hosted_style_request(false)
            .with_http_connector(Connector);
        let endpoint = endpoint_url(&cfg.endpoint, cfg.secure);
        if let Some(url) = &endpoint {
            builder = builder
                .with_endpoint(url)
                .with_allow_http(url.starts_with("http://"));
        }
        match (&cfg.access_key, &cfg.secret_key) {
            (Some(a), Some(s)) => {
                builder = builder
                    .with_access_key_id(a.expose())
                    .with_secret_access_key(s.expose());
            }
            (None, None) => {}
            _ => return Err(StorageError::Backend(
                "set both patch-storage.s3-access-key and patch-storage.s3-secret-key, or neither"
                    .into(),
            )),
        }
        let store = builder.build().map_err(backend)?;
        let storage = Self {
            store: Arc::new(store),
            bucket: cfg.bucket.trim().to_string(),
            endpoint: endpoint.unwrap_or_else(|| "AWS".into()),
        };
        storage.check().await.map_err(|e| {
            StorageError::Backend(format!(
                "bucket {} at {} does not answer: {e}",
                storage.bucket, storage.endpoint
            ))
        })?;
        storage.remove_stale_uploads().await;
        Ok(storage)
    }

    async fn remove_stale_uploads(&self) {
        let cutoff = time::OffsetDateTime::now_utc().unix_timestamp() - 3600;
        let mut listing = self.store.list(None);
        while let Some(Ok(meta)) = listing.next().await {
            if meta.location.as_ref().starts_with(TEMP_PREFIX)
                && meta.last_modified.timestamp() < cutoff
            {
                let _ = self.store.delete(&meta.location).await;
            }
        }
    }
}

enum StagedData {
    Memory(Bytes),
    Temp(Path),
}

struct StagedObject {
    store: Arc<AmazonS3>,
    data: Option<StagedData>,
    sha256: String,
    size: u64,
}

impl Drop for StagedObject {
    fn drop(&mut self) {
        if let Some(StagedData::Temp(path)) = self.data.take() {
            let store = self.store.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = store.delete(&path).await;
                });
            }
        }
    }
}

impl Staged for StagedObject {
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
        let data = self.data.take();
        let store = self.store.clone();
        async move {
            let target = Path::from(name.as_str());
            match data {
                Some(StagedData::Memory(bytes)) => {
                    store
                        .put(&target, PutPayload::from_bytes(bytes))
                        .await
                        .map_err(backend)?;
                }
                Some(StagedData::Temp(temp)) => {
                    let copied = store.copy(&temp, &target).await;
                    let _ = store.delete(&temp).await;
                    copied.map_err(backend)?;
                }
                None => return Err(StorageError::Backend("already published".into())),
            }
            Ok(())
        }
        .boxed()
    }

    fn discard(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        let data = self.data.take();
        let store = self.store.clone();
        async move {
            if let Some(StagedData::Temp(temp)) = data {
                let _ = store.delete(&temp).await;
            }
        }
        .boxed()
    }
}

/// What the stage pump holds: the head of the body in memory, then a multipart upload.
struct Sink {
    store: Arc<AmazonS3>,
    head: BytesMut,
    upload: Option<(Path, WriteMultipart)>,
}

impl Sink {
    async fn push(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        if let Some((_, upload)) = &mut self.upload {
            upload.wait_for_capacity(2).await.map_err(backend)?;
            upload.put(chunk);
            return Ok(());
        }
        self.head.extend_from_slice(&chunk);
        if self.head.len() > PART_SIZE {
            let path = Path::from(format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4()));
            let upload = self.store.put_multipart(&path).await.map_err(backend)?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            writer.put(std::mem::take(&mut self.head).freeze());
            self.upload = Some((path, writer));
        }
        Ok(())
    }
}

impl PatchStorage for S3Storage {
    fn kind(&self) -> &'static str {
        "s3"
    }

    fn stage(
        &self,
        body: ByteStream,
        limit: u64,
    ) -> BoxFuture<'_, Result<Box<dyn Staged>, StorageError>> {
        async move {
            let sink = Arc::new(tokio::sync::Mutex::new(Sink {
                store: self.store.clone(),
                head: BytesMut::new(),
                upload: None,
            }));
            let pumped = {
                let sink = sink.clone();
                pump(body, limit, move |chunk| {
                    let sink = sink.clone();
                    async move { sink.lock().await.push(chunk).await }
                })
                .await
            };
            let mut sink = std::mem::replace(
                &mut *sink.lock().await,
                Sink {
                    store: self.store.clone(),
                    head: BytesMut::new(),
                    upload: None,
                },
            );
            let (sha256, size) = match pumped {
                Ok(r) => r,
                Err(e) => {
                    if let Some((_, upload)) = sink.upload.take() {
                        let _ = upload.abort().await;
                    }
                    return Err(e);
                }
            };
            let data = match sink.upload.take() {
                None => StagedData::Memory(sink.head.freeze()),
                Some((path, upload)) => {
                    upload.finish().await.map_err(backend)?;
                    StagedData::Temp(path)
                }
            };
            Ok(Box::new(StagedObject {
                store: self.store.clone(),
                data: Some(data),
                sha256,
                size,
            }) as Box<dyn Staged>)
        }
        .boxed()
    }

    fn open(
        &self,
        name: &PatchFilename,
        range: Option<(u64, u64)>,
    ) -> BoxFuture<'_, Result<Option<Object>, StorageError>> {
        let path = Path::from(name.as_str());
        async move {
            let options =
                GetOptions::default().with_range(range.map(|(s, e)| GetRange::Bounded(s..e + 1)));
            let result = match self.store.get_opts(&path, options).await {
                Ok(r) => r,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(backend(e)),
            };
            let size = result.meta.size;
            let body = result
                .into_stream()
                .map_err(|e| std::io::Error::other(e.to_string()))
                .boxed();
            Ok(Some(Object { size, body }))
        }
        .boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<Listed>, StorageError>> {
        async move {
            let metas: Vec<_> = self.store.list(None).try_collect().await.map_err(backend)?;
            let mut out: Vec<Listed> = metas
                .into_iter()
                .filter(|m| !m.location.as_ref().starts_with('.'))
                .map(|m| Listed {
                    name: m.location.to_string(),
                    size: m.size,
                })
                .collect();
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        }
        .boxed()
    }

    fn delete(&self, name: &PatchFilename) -> BoxFuture<'_, Result<(), StorageError>> {
        let path = Path::from(name.as_str());
        async move {
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(backend(e)),
            }
        }
        .boxed()
    }

    fn check(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        async move {
            let probe = Path::from(".livepatch-probe");
            match tokio::time::timeout(Duration::from_secs(10), self.store.head(&probe)).await {
                Ok(Ok(_)) | Ok(Err(object_store::Error::NotFound { .. })) => Ok(()),
                Ok(Err(e)) => Err(backend(e)),
                Err(_) => Err(StorageError::Backend("no answer within 10 s".into())),
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_without_a_scheme_gets_https_only_when_secure() {
        assert_eq!(
            endpoint_url("minio:9000", false).as_deref(),
            Some("http://minio:9000")
        );
        assert_eq!(
            endpoint_url("minio:9000", true).as_deref(),
            Some("https://minio:9000")
        );
        assert_eq!(
            endpoint_url("http://10.0.0.1:9000/", true).as_deref(),
            Some("http://10.0.0.1:9000"),
            "an explicit scheme wins"
        );
        assert_eq!(endpoint_url(" ", true), None);
    }
}
