//! The patch cache (`patch-cache.*`, livepatch-server.md §7): whole patch files in memory, in
//! front of any storage backend, for downloads. At most `cache-size` files (a count, not bytes);
//! a file not read for `cache-ttl` is dropped; beyond the size the least recently read goes.
//!
//! Memory: at most `cache-size` × the largest patch file (patches are typically well under a few
//! MiB; `server.max-upload-size` bounds uploads). Operators size `cache-size` with that in mind.
//!
//! A miss never waits: the request streams from storage as it would without a cache, and one
//! background task per file (however many requests missed it) reads the file from storage at
//! storage speed, checks its SHA-256 and inserts it. So a slow first client neither slows the
//! fill nor holds up anyone else, and a file is never cached from a client-paced stream.
//!
//! Entries are keyed by filename and carry the SHA-256 the database knows: a lookup with another
//! hash misses (and drops the entry), so a replaced file is never served stale.
//!
//! Time comes from a [`Clock`], so tests move it by hand. Metrics: `…_patch_cache_hits`,
//! `…_misses`, `…_evictions` (size and idle expiry alike), gauge `…_patch_cache_length`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::domain::PatchFilename;
use crate::storage::PatchStorage;

/// A source of "now".
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// The cache's metrics (registered by [`crate::metrics::Metrics`]).
#[derive(Clone)]
pub struct CacheMetrics {
    /// Lookups served from memory.
    pub hits: prometheus::IntCounter,
    /// Lookups that went to storage.
    pub misses: prometheus::IntCounter,
    /// Entries dropped (over the size, or idle past the TTL).
    pub evictions: prometheus::IntCounter,
    /// Entries held.
    pub length: prometheus::IntGauge,
}

struct Entry {
    data: Bytes,
    sha256: String,
    last_read: Instant,
    /// Position in `order` (larger = read more recently).
    tick: u64,
}

#[derive(Default)]
struct Lru {
    entries: HashMap<String, Entry>,
    /// tick → filename, oldest first.
    order: BTreeMap<u64, String>,
    next_tick: u64,
}

impl Lru {
    fn touch(&mut self, name: &str, now: Instant) {
        let tick = self.next_tick;
        self.next_tick += 1;
        if let Some(e) = self.entries.get_mut(name) {
            self.order.remove(&e.tick);
            e.tick = tick;
            e.last_read = now;
            self.order.insert(tick, name.to_string());
        }
    }

    fn remove(&mut self, name: &str) -> bool {
        match self.entries.remove(name) {
            Some(e) => {
                self.order.remove(&e.tick);
                true
            }
            None => false,
        }
    }
}

/// The cache.
pub struct PatchCache {
    lru: Mutex<Lru>,
    /// Files being read into the cache right now (one task each).
    filling: Mutex<HashSet<String>>,
    capacity: usize,
    ttl: Duration,
    clock: Arc<dyn Clock>,
    metrics: CacheMetrics,
}

impl std::fmt::Debug for PatchCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatchCache")
            .field("capacity", &self.capacity)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl PatchCache {
    /// A cache of at most `capacity` files, each dropped after `ttl` without a read.
    pub fn new(
        capacity: usize,
        ttl: Duration,
        clock: Arc<dyn Clock>,
        metrics: CacheMetrics,
    ) -> Self {
        Self {
            lru: Mutex::new(Lru::default()),
            filling: Mutex::new(HashSet::new()),
            capacity: capacity.max(1),
            ttl,
            clock,
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The file's bytes if cached with this SHA-256 and not idle past the TTL. Counts a hit or
    /// a miss.
    pub fn get(&self, name: &str, sha256: &str) -> Option<Bytes> {
        let now = self.clock.now();
        let mut lru = self.lock();
        let state = lru.entries.get(name).map(|e| {
            (
                e.sha256 == sha256,
                now.duration_since(e.last_read) > self.ttl,
            )
        });
        let found = match state {
            Some((true, false)) => {
                lru.touch(name, now);
                lru.entries.get(name).map(|e| e.data.clone())
            }
            Some(_) => {
                // Expired, or another file now bears the name.
                lru.remove(name);
                self.metrics.evictions.inc();
                None
            }
            None => None,
        };
        self.metrics.length.set(lru.entries.len() as i64);
        drop(lru);
        match &found {
            Some(_) => self.metrics.hits.inc(),
            None => self.metrics.misses.inc(),
        }
        found
    }

    /// Inserts (or replaces) a file, evicting the least recently read beyond the capacity.
    pub fn insert(&self, name: &str, sha256: &str, data: Bytes) {
        let now = self.clock.now();
        let mut lru = self.lock();
        lru.remove(name);
        let tick = lru.next_tick;
        lru.next_tick += 1;
        lru.entries.insert(
            name.to_string(),
            Entry {
                data,
                sha256: sha256.to_string(),
                last_read: now,
                tick,
            },
        );
        lru.order.insert(tick, name.to_string());
        while lru.entries.len() > self.capacity {
            let Some((_, oldest)) = lru.order.pop_first() else {
                break;
            };
            lru.entries.remove(&oldest);
            self.metrics.evictions.inc();
        }
        self.metrics.length.set(lru.entries.len() as i64);
    }

    /// Drops every entry idle past the TTL (run periodically, so idle memory is returned even
    /// when nobody asks for those files again). Returns how many went.
    pub fn sweep(&self) -> usize {
        let now = self.clock.now();
        let mut lru = self.lock();
        let expired: Vec<String> = lru
            .entries
            .iter()
            .filter(|(_, e)| now.duration_since(e.last_read) > self.ttl)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &expired {
            lru.remove(k);
            self.metrics.evictions.inc();
        }
        self.metrics.length.set(lru.entries.len() as i64);
        expired.len()
    }

    /// Number of cached files.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts reading `name` from storage into the cache, unless a read of it is already under
    /// way. The returned handle (if a task started) finishes when the file is cached or the read
    /// failed (logged; the next miss tries again).
    pub fn fill(
        self: &Arc<Self>,
        storage: Arc<dyn PatchStorage>,
        name: PatchFilename,
        sha256: String,
        size: u64,
    ) -> Option<tokio::task::JoinHandle<()>> {
        {
            let mut filling = self.filling.lock().unwrap_or_else(|p| p.into_inner());
            if !filling.insert(name.to_string()) {
                return None;
            }
        }
        let this = self.clone();
        Some(tokio::spawn(async move {
            let result = read_whole(storage.as_ref(), &name, size).await;
            match result {
                Ok(data) => {
                    let actual = crate::domain::hex(&Sha256::digest(&data));
                    if actual == sha256 {
                        this.insert(name.as_str(), &sha256, data);
                    } else {
                        tracing::error!(file = %name, "not caching a patch whose stored bytes do not match its SHA-256");
                    }
                }
                Err(e) => {
                    tracing::warn!(file = %name, error = %e, "cannot read a patch into the cache")
                }
            }
            this.filling
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(name.as_str());
        }))
    }

    /// The periodic sweep, until `stop` flips.
    pub async fn sweeper(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let period = (self.ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tick.tick() => { self.sweep(); }
            }
        }
    }
}

async fn read_whole(
    storage: &dyn PatchStorage,
    name: &PatchFilename,
    size: u64,
) -> Result<Bytes, String> {
    let object = storage
        .open(name, None)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "missing from storage".to_string())?;
    if object.size != size {
        return Err(format!(
            "{} bytes in storage but {size} in the database",
            object.size
        ));
    }
    let mut buf = BytesMut::with_capacity(size as usize);
    let mut body = object.body;
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::fs::FilesystemStorage;

    /// A clock moved by hand.
    struct ManualClock(Mutex<Instant>);

    impl ManualClock {
        fn advance(&self, d: Duration) {
            *self.0.lock().unwrap() += d;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    fn setup(
        capacity: usize,
        ttl: Duration,
    ) -> (Arc<PatchCache>, Arc<ManualClock>, crate::metrics::Metrics) {
        let metrics = crate::metrics::Metrics::new();
        let clock = Arc::new(ManualClock(Mutex::new(Instant::now())));
        let cache = Arc::new(PatchCache::new(
            capacity,
            ttl,
            clock.clone(),
            metrics.cache.clone(),
        ));
        (cache, clock, metrics)
    }

    fn counts(m: &crate::metrics::Metrics) -> (u64, u64, u64, i64) {
        (
            m.cache.hits.get(),
            m.cache.misses.get(),
            m.cache.evictions.get(),
            m.cache.length.get(),
        )
    }

    #[test]
    fn hits_misses_and_least_recently_read_eviction_are_counted() {
        let (cache, _clock, m) = setup(2, Duration::from_secs(600));
        assert!(cache.get("a", "sa").is_none());
        cache.insert("a", "sa", Bytes::from_static(b"A"));
        cache.insert("b", "sb", Bytes::from_static(b"B"));
        assert_eq!(cache.get("a", "sa").as_deref(), Some(&b"A"[..]));
        // `b` is now the least recently read: it goes when `c` arrives.
        cache.insert("c", "sc", Bytes::from_static(b"C"));
        assert!(cache.get("b", "sb").is_none());
        assert!(cache.get("a", "sa").is_some());
        assert!(cache.get("c", "sc").is_some());
        assert_eq!(counts(&m), (3, 2, 1, 2));
        let text = m.render();
        for line in [
            "livepatch_server_patch_cache_hits 3",
            "livepatch_server_patch_cache_misses 2",
            "livepatch_server_patch_cache_evictions 1",
            "livepatch_server_patch_cache_length 2",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn an_entry_idle_past_the_ttl_expires_and_reads_keep_it_alive() {
        let (cache, clock, m) = setup(10, Duration::from_secs(60));
        cache.insert("a", "sa", Bytes::from_static(b"A"));
        cache.insert("b", "sb", Bytes::from_static(b"B"));
        clock.advance(Duration::from_secs(50));
        assert!(cache.get("a", "sa").is_some(), "read at 50 s renews a");
        clock.advance(Duration::from_secs(50));
        // b idle 100 s: expired; a idle 50 s: alive.
        assert_eq!(cache.sweep(), 1);
        assert!(cache.get("a", "sa").is_some());
        assert!(cache.get("b", "sb").is_none());
        clock.advance(Duration::from_secs(61));
        assert!(cache.get("a", "sa").is_none(), "expired on lookup too");
        assert_eq!(counts(&m), (2, 2, 2, 0));
        assert!(cache.is_empty());
    }

    #[test]
    fn a_lookup_with_another_hash_misses_and_drops_the_stale_entry() {
        let (cache, _clock, m) = setup(10, Duration::from_secs(60));
        cache.insert("a", "old", Bytes::from_static(b"old"));
        assert!(cache.get("a", "new").is_none());
        assert!(cache.get("a", "old").is_none(), "dropped");
        assert_eq!(counts(&m), (0, 2, 1, 0));
    }

    fn name() -> PatchFilename {
        PatchFilename::parse("livepatch-5.15.0-107.117-generic-107.1-amd64.tar.bz2").unwrap()
    }

    #[tokio::test]
    async fn a_fill_reads_storage_once_checks_the_hash_and_never_blocks_a_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn PatchStorage> = Arc::new(FilesystemStorage::open(dir.path()).unwrap());
        let data = vec![7u8; 300_000];
        let sha = crate::domain::hex(&Sha256::digest(&data));
        let body = futures_util::stream::iter([Ok(Bytes::from(data.clone()))]).boxed();
        storage
            .stage(body, 1 << 20)
            .await
            .unwrap()
            .publish(name())
            .await
            .unwrap();
        let (cache, _clock, _m) = setup(10, Duration::from_secs(60));
        // Hold the fill set as a running fill would: a second fill is not started, and a lookup
        // answers (a miss) immediately instead of waiting for it.
        let first = cache.fill(storage.clone(), name(), sha.clone(), data.len() as u64);
        assert!(cache
            .fill(storage.clone(), name(), sha.clone(), data.len() as u64)
            .is_none());
        assert!(cache.get(name().as_str(), &sha).is_none());
        first.unwrap().await.unwrap();
        assert_eq!(cache.get(name().as_str(), &sha).unwrap().len(), data.len());
        // A file whose bytes do not match the database's hash is not cached.
        let wrong = "0".repeat(64);
        cache
            .fill(storage.clone(), name(), wrong.clone(), data.len() as u64)
            .unwrap()
            .await
            .unwrap();
        assert!(cache.get(name().as_str(), &wrong).is_none());
    }
}
