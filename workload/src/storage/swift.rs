//! OpenStack Swift patch storage: Keystone v3 password authentication (user and project in
//! `patch-storage.swift-domain`, project = `swift-tenant`), the object-store endpoint taken from
//! the token's catalog (public interface, `swift-region` when set), and the Swift object API.
//!
//! The token is cached until a minute before it expires; a 401 from Swift re-authenticates once
//! and retries. A staged write is, by size:
//! - up to [`MEMORY_LIMIT`]: held in memory and PUT under its final name on publish, with its MD5
//!   as `ETag` so Swift refuses (422) a body that changed on the way;
//! - larger: streamed (chunked) into a temporary `.upload-<uuid>` object, its returned ETag
//!   checked against the MD5 computed here, then server-side copied (`X-Copy-From`) to the final
//!   name on publish and the temporary object deleted.
//!
//! Listings hide temporary objects; ones older than an hour are deleted at start-up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt, TryStreamExt};
use md5::Digest;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::{pump, ByteStream, Listed, Object, PatchStorage, Staged, StorageError};
use crate::config::SwiftConfig;
use crate::domain::PatchFilename;
use crate::secret::Secret;

/// Objects up to this size are staged in memory.
pub const MEMORY_LIMIT: usize = 8 << 20;
const TEMP_PREFIX: &str = ".upload-";
/// Characters left as they are in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_');

fn backend(e: impl std::fmt::Display) -> StorageError {
    StorageError::Backend(crate::logging::redact(&e.to_string()))
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

#[derive(Clone)]
struct Token {
    value: Secret<String>,
    endpoint: String,
    renew_at: Instant,
}

struct Inner {
    http: reqwest::Client,
    cfg: SwiftConfig,
    token: tokio::sync::Mutex<Option<Token>>,
}

/// A Swift container of patch files.
#[derive(Clone)]
pub struct SwiftStorage(Arc<Inner>);

impl std::fmt::Debug for SwiftStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwiftStorage")
            .field("auth_url", &self.0.cfg.auth_url)
            .field("container", &self.0.cfg.container)
            .finish()
    }
}

#[derive(Deserialize)]
struct TokenBody {
    token: TokenInfo,
}

#[derive(Deserialize)]
struct TokenInfo {
    expires_at: Option<String>,
    #[serde(default)]
    catalog: Vec<CatalogEntry>,
}

#[derive(Deserialize)]
struct CatalogEntry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    endpoints: Vec<Endpoint>,
}

#[derive(Deserialize)]
struct Endpoint {
    interface: String,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    region_id: Option<String>,
    url: String,
}

#[derive(Deserialize)]
struct ListedObject {
    name: String,
    bytes: u64,
    #[serde(default)]
    last_modified: Option<String>,
}

impl SwiftStorage {
    /// Authenticates, creates the container if missing, and removes old temporary objects.
    pub async fn open(cfg: &SwiftConfig) -> Result<Self, StorageError> {
        for (value, key) in [
            (cfg.auth_url.as_str(), "patch-storage.swift-auth-url"),
            (cfg.container.as_str(), "patch-storage.swift-container"),
            (cfg.tenant.as_str(), "patch-storage.swift-tenant"),
        ] {
            if value.trim().is_empty() {
                return Err(StorageError::Backend(format!("{key} is not set")));
            }
        }
        if cfg.username.is_none() || cfg.api_key.is_none() {
            return Err(StorageError::Backend(
                "patch-storage.swift-username and patch-storage.swift-api-key must be set".into(),
            ));
        }
        let http = crate::sync::client::http_client(&Default::default()).map_err(backend)?;
        let storage = Self(Arc::new(Inner {
            http,
            cfg: cfg.clone(),
            token: tokio::sync::Mutex::new(None),
        }));
        let status = storage.request(Method::HEAD, "", None).await?.status();
        if status == StatusCode::NOT_FOUND {
            let r = storage.request(Method::PUT, "", None).await?;
            if !r.status().is_success() {
                return Err(StorageError::Backend(format!(
                    "cannot create the container {}: HTTP {}",
                    cfg.container,
                    r.status()
                )));
            }
        } else if !status.is_success() {
            return Err(StorageError::Backend(format!(
                "the container {} does not answer: HTTP {status}",
                cfg.container
            )));
        }
        storage.remove_stale_uploads().await;
        Ok(storage)
    }

    fn auth_url(&self) -> String {
        let base = self.0.cfg.auth_url.trim().trim_end_matches('/');
        if base.ends_with("/v3") {
            format!("{base}/auth/tokens")
        } else {
            format!("{base}/v3/auth/tokens")
        }
    }

    async fn authenticate(&self) -> Result<Token, StorageError> {
        let cfg = &self.0.cfg;
        let domain = if cfg.domain.trim().is_empty() {
            "Default"
        } else {
            cfg.domain.trim()
        };
        let body = serde_json::json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": cfg.username.as_ref().map(|s| s.expose().as_str()).unwrap_or(""),
                "domain": {"name": domain},
                "password": cfg.api_key.as_ref().map(|s| s.expose().as_str()).unwrap_or(""),
            }}},
            "scope": {"project": {"name": cfg.tenant.trim(), "domain": {"name": domain}}},
        }});
        let response = self
            .0
            .http
            .post(self.auth_url())
            .timeout(Duration::from_secs(30))
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                backend(format!(
                    "cannot reach Keystone: {}",
                    crate::sync::client::chain(&e)
                ))
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(StorageError::Backend(format!(
                "Keystone refused the credentials of patch-storage.swift-username (HTTP {status})"
            )));
        }
        let value = response
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| StorageError::Backend("Keystone sent no X-Subject-Token".into()))?;
        let info: TokenBody = response
            .json()
            .await
            .map_err(|e| backend(format!("Keystone's token is not the v3 JSON: {e}")))?;
        let region = cfg.region.trim();
        let endpoint = info
            .token
            .catalog
            .iter()
            .filter(|c| c.kind == "object-store")
            .flat_map(|c| c.endpoints.iter())
            .find(|e| {
                e.interface == "public"
                    && (region.is_empty()
                        || e.region.as_deref() == Some(region)
                        || e.region_id.as_deref() == Some(region))
            })
            .map(|e| e.url.trim_end_matches('/').to_string())
            .ok_or_else(|| {
                StorageError::Backend(format!(
                    "the Keystone catalog has no public object-store endpoint{}",
                    if region.is_empty() {
                        String::new()
                    } else {
                        format!(" in region {region} (patch-storage.swift-region)")
                    }
                ))
            })?;
        let expires: Option<time::OffsetDateTime> =
            info.token.expires_at.as_deref().and_then(|e| {
                time::OffsetDateTime::parse(e, &time::format_description::well_known::Rfc3339).ok()
            });
        let lifetime = expires
            .map(|e| (e - time::OffsetDateTime::now_utc()).whole_seconds().max(0) as u64)
            .unwrap_or(3600);
        Ok(Token {
            value: Secret::new(value),
            endpoint,
            renew_at: Instant::now() + Duration::from_secs(lifetime.saturating_sub(60)),
        })
    }

    async fn token(&self, fresh: bool) -> Result<Token, StorageError> {
        let mut slot = self.0.token.lock().await;
        if let Some(t) = slot
            .as_ref()
            .filter(|t| !fresh && t.renew_at > Instant::now())
        {
            return Ok(t.clone());
        }
        let t = self.authenticate().await?;
        *slot = Some(t.clone());
        Ok(t)
    }

    /// One request on the container (`object` empty) or an object, re-authenticating once on 401.
    /// `body` is a retryable body (bytes); streaming uploads use [`Self::send_once`].
    async fn request(
        &self,
        method: Method,
        object: &str,
        body: Option<(Bytes, Vec<(&'static str, String)>)>,
    ) -> Result<reqwest::Response, StorageError> {
        let mut fresh = false;
        loop {
            let token = self.token(fresh).await?;
            let mut req = self
                .0
                .http
                .request(method.clone(), self.url(&token, object))
                .header("x-auth-token", token.value.expose());
            if let Some((bytes, headers)) = &body {
                for (k, v) in headers {
                    req = req.header(*k, v);
                }
                req = req.body(bytes.clone());
            } else if method == Method::PUT {
                req = req.header("content-length", "0");
            }
            let response = req.send().await.map_err(|e| {
                backend(format!(
                    "cannot reach Swift: {}",
                    crate::sync::client::chain(&e)
                ))
            })?;
            if response.status() == StatusCode::UNAUTHORIZED && !fresh {
                fresh = true;
                continue;
            }
            return Ok(response);
        }
    }

    fn url(&self, token: &Token, object: &str) -> String {
        let container = enc(self.0.cfg.container.trim());
        if object.is_empty() {
            format!("{}/{container}", token.endpoint)
        } else {
            format!("{}/{container}/{}", token.endpoint, enc(object))
        }
    }

    async fn list_objects(&self) -> Result<Vec<ListedObject>, StorageError> {
        let mut out = Vec::new();
        let mut marker = String::new();
        loop {
            let token = self.token(false).await?;
            let mut url = reqwest::Url::parse(&self.url(&token, "")).map_err(backend)?;
            url.query_pairs_mut()
                .append_pair("format", "json")
                .append_pair("limit", "10000")
                .append_pair("marker", &marker);
            let response = self
                .0
                .http
                .get(url)
                .header("x-auth-token", token.value.expose())
                .send()
                .await
                .map_err(|e| backend(crate::sync::client::chain(&e)))?;
            if response.status() == StatusCode::UNAUTHORIZED {
                self.token(true).await?;
                continue;
            }
            if !response.status().is_success() {
                return Err(StorageError::Backend(format!(
                    "cannot list the container: HTTP {}",
                    response.status()
                )));
            }
            let page: Vec<ListedObject> = response.json().await.map_err(backend)?;
            let Some(last) = page.last() else { break };
            marker = last.name.clone();
            let full = page.len() >= 10000;
            out.extend(page);
            if !full {
                break;
            }
        }
        Ok(out)
    }

    async fn remove_stale_uploads(&self) {
        let Ok(objects) = self.list_objects().await else {
            return;
        };
        let cutoff = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        for o in objects.iter().filter(|o| o.name.starts_with(TEMP_PREFIX)) {
            // Swift's last_modified has no zone: it is UTC.
            let old = o
                .last_modified
                .as_deref()
                .and_then(|t| {
                    time::PrimitiveDateTime::parse(
                        t.split('.').next().unwrap_or(t),
                        &time::macros::format_description!(
                            "[year]-[month]-[day]T[hour]:[minute]:[second]"
                        ),
                    )
                    .ok()
                })
                .is_some_and(|t| t.assume_utc() < cutoff);
            if old {
                let _ = self.request(Method::DELETE, &o.name, None).await;
            }
        }
    }

    async fn delete_object(&self, name: &str) -> Result<(), StorageError> {
        let r = self.request(Method::DELETE, name, None).await?;
        if r.status().is_success() || r.status() == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(StorageError::Backend(format!(
                "cannot delete {name}: HTTP {}",
                r.status()
            )))
        }
    }
}

enum StagedData {
    Memory(Bytes, String),
    Temp(String),
}

struct StagedObject {
    storage: SwiftStorage,
    data: Option<StagedData>,
    sha256: String,
    size: u64,
}

impl Drop for StagedObject {
    fn drop(&mut self) {
        if let Some(StagedData::Temp(name)) = self.data.take() {
            let storage = self.storage.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = storage.delete_object(&name).await;
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
        let storage = self.storage.clone();
        async move {
            let response = match &data {
                Some(StagedData::Memory(bytes, md5)) => {
                    storage
                        .request(
                            Method::PUT,
                            name.as_str(),
                            Some((
                                bytes.clone(),
                                vec![
                                    ("etag", md5.clone()),
                                    ("content-type", "application/x-bzip2".into()),
                                ],
                            )),
                        )
                        .await?
                }
                Some(StagedData::Temp(temp)) => {
                    let from = format!("/{}/{}", enc(storage.0.cfg.container.trim()), enc(temp));
                    let r = storage
                        .request(
                            Method::PUT,
                            name.as_str(),
                            Some((Bytes::new(), vec![("x-copy-from", from)])),
                        )
                        .await;
                    let _ = storage.delete_object(temp).await;
                    r?
                }
                None => return Err(StorageError::Backend("already published".into())),
            };
            if !response.status().is_success() {
                return Err(StorageError::Backend(format!(
                    "Swift refused {}: HTTP {}",
                    name.as_str(),
                    response.status()
                )));
            }
            Ok(())
        }
        .boxed()
    }

    fn discard(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        let data = self.data.take();
        let storage = self.storage.clone();
        async move {
            if let Some(StagedData::Temp(temp)) = data {
                let _ = storage.delete_object(&temp).await;
            }
        }
        .boxed()
    }
}

/// The stage pump's state: the head of the body in memory, then a streaming PUT fed by a channel.
struct Sink {
    storage: SwiftStorage,
    head: BytesMut,
    md5: md5::Md5,
    upload: Option<Upload>,
}

struct Upload {
    name: String,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    request: tokio::task::JoinHandle<Result<reqwest::Response, StorageError>>,
}

impl Sink {
    async fn push(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        self.md5.update(&chunk);
        if let Some(u) = &self.upload {
            return u
                .tx
                .send(Ok(chunk))
                .await
                .map_err(|_| StorageError::Backend("Swift closed the upload".into()));
        }
        self.head.extend_from_slice(&chunk);
        if self.head.len() > MEMORY_LIMIT {
            let name = format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4());
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
            let token = self.storage.token(false).await?;
            let request = self
                .storage
                .0
                .http
                .put(self.storage.url(&token, &name))
                .header("x-auth-token", token.value.expose())
                .body(reqwest::Body::wrap_stream(tokio_stream_from(rx)));
            let request = tokio::spawn(async move {
                request
                    .send()
                    .await
                    .map_err(|e| backend(crate::sync::client::chain(&e)))
            });
            let head = std::mem::take(&mut self.head).freeze();
            tx.send(Ok(head))
                .await
                .map_err(|_| StorageError::Backend("Swift closed the upload".into()))?;
            self.upload = Some(Upload { name, tx, request });
        }
        Ok(())
    }
}

/// An mpsc receiver as a stream (five lines; not worth tokio-stream).
fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

impl PatchStorage for SwiftStorage {
    fn kind(&self) -> &'static str {
        "swift"
    }

    fn stage(
        &self,
        body: ByteStream,
        limit: u64,
    ) -> BoxFuture<'_, Result<Box<dyn Staged>, StorageError>> {
        async move {
            let sink = Arc::new(tokio::sync::Mutex::new(Some(Sink {
                storage: self.clone(),
                head: BytesMut::new(),
                md5: md5::Md5::new(),
                upload: None,
            })));
            let pumped = {
                let sink = sink.clone();
                pump(body, limit, move |chunk| {
                    let sink = sink.clone();
                    async move {
                        match sink.lock().await.as_mut() {
                            Some(s) => s.push(chunk).await,
                            None => Err(StorageError::Backend("upload already finished".into())),
                        }
                    }
                })
                .await
            };
            let sink = sink
                .lock()
                .await
                .take()
                .ok_or_else(|| StorageError::Backend("upload already finished".into()))?;
            let md5 = crate::domain::hex(&sink.md5.finalize());
            let (sha256, size) = match pumped {
                Ok(r) => r,
                Err(e) => {
                    if let Some(u) = sink.upload {
                        // Make the PUT fail rather than store a truncated object, then delete it.
                        let _ =
                            u.tx.send(Err(std::io::Error::other("upload abandoned")))
                                .await;
                        drop(u.tx);
                        let _ = u.request.await;
                        let _ = self.delete_object(&u.name).await;
                    }
                    return Err(e);
                }
            };
            let data = match sink.upload {
                None => StagedData::Memory(sink.head.freeze(), md5),
                Some(u) => {
                    drop(u.tx);
                    let response = u
                        .request
                        .await
                        .map_err(|e| StorageError::Backend(e.to_string()))??;
                    let etag = response
                        .headers()
                        .get("etag")
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v.trim_matches('"').to_ascii_lowercase());
                    if !response.status().is_success() || etag.as_deref() != Some(md5.as_str()) {
                        let _ = self.delete_object(&u.name).await;
                        return Err(StorageError::Backend(format!(
                            "Swift did not store the upload intact (HTTP {}, ETag {:?}, MD5 {md5})",
                            response.status(),
                            etag
                        )));
                    }
                    StagedData::Temp(u.name)
                }
            };
            Ok(Box::new(StagedObject {
                storage: self.clone(),
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
        let name = name.to_string();
        async move {
            let mut fresh = false;
            let response = loop {
                let token = self.token(fresh).await?;
                let mut req = self
                    .0
                    .http
                    .get(self.url(&token, &name))
                    .header("x-auth-token", token.value.expose());
                if let Some((s, e)) = range {
                    req = req.header("range", format!("bytes={s}-{e}"));
                }
                let r = req
                    .send()
                    .await
                    .map_err(|e| backend(crate::sync::client::chain(&e)))?;
                if r.status() == StatusCode::UNAUTHORIZED && !fresh {
                    fresh = true;
                    continue;
                }
                break r;
            };
            match response.status() {
                StatusCode::NOT_FOUND => return Ok(None),
                StatusCode::OK | StatusCode::PARTIAL_CONTENT => {}
                s => {
                    return Err(StorageError::Backend(format!(
                        "cannot read {name}: HTTP {s}"
                    )))
                }
            }
            let size = match response
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit_once('/'))
                .and_then(|(_, total)| total.parse::<u64>().ok())
            {
                Some(total) => total,
                None => response.content_length().unwrap_or(0),
            };
            let body = response
                .bytes_stream()
                .map_err(std::io::Error::other)
                .boxed();
            Ok(Some(Object { size, body }))
        }
        .boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<Listed>, StorageError>> {
        async move {
            let mut out: Vec<Listed> = self
                .list_objects()
                .await?
                .into_iter()
                .filter(|o| !o.name.starts_with('.'))
                .map(|o| Listed {
                    name: o.name,
                    size: o.bytes,
                })
                .collect();
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        }
        .boxed()
    }

    fn delete(&self, name: &PatchFilename) -> BoxFuture<'_, Result<(), StorageError>> {
        let name = name.to_string();
        async move { self.delete_object(&name).await }.boxed()
    }

    fn check(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        async move {
            let r = self.request(Method::HEAD, "", None).await?;
            if r.status().is_success() {
                Ok(())
            } else {
                Err(StorageError::Backend(format!(
                    "the container does not answer: HTTP {}",
                    r.status()
                )))
            }
        }
        .boxed()
    }
}
