//! The response cache: zones (`caches:`, NGINX `proxy_cache_path`), their collapsing locks and
//! `proxy_cache_min_uses` admission, and the background work of a zone (start-up scan,
//! `inactive` sweeper). Zones live for the whole process (pingora-cache wants `&'static`
//! storage) and are shared by path across config reloads.
//!
//! The store: `storage` (Pingora's `Storage` on disk) over `entry_file` (the file format),
//! `zone_dir` (where the files are), `index` (entries, LRU order, size), `variants`, `tags`
//! and `memory` (the memory tier). The NGINX `proxy_cache*` policy is in `policy`.

mod entry_file;
pub mod index;
pub mod memory;
pub mod policy;
pub mod storage;
mod tags;
mod variants;
mod zone_dir;

use crate::config::ZoneConfig;
use memory::PrepareHeader;
use once_cell::sync::Lazy;
use pingora_cache::admission::{AdmissionPolicy, Decision};
use pingora_cache::key::{CacheHashKey, HashBinary};
use pingora_cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora_cache::CacheKey;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use storage::DiskStorage;

/// A cache zone: its store (with the zone's one LRU order for `max_size` and `keys_zone`, so the
/// entry evicted is always the least recently used one) and its collapsing locks.
pub struct Zone {
    pub name: String,
    pub storage: &'static DiskStorage,
    locks: Mutex<HashMap<u128, &'static CacheKeyLockImpl>>,
    admissions: Mutex<HashMap<u32, &'static MinUses>>,
}

/// NGINX `proxy_cache_min_uses`: a response is stored once its key was requested `n` times.
pub struct MinUses {
    n: u32,
    seen: quick_cache::sync::Cache<HashBinary, u32>,
}

impl AdmissionPolicy for MinUses {
    fn observe(&self, key: &CacheKey) -> Decision {
        let id = key.primary_bin();
        let observed = self
            .seen
            .get(&id)
            .unwrap_or(0)
            .saturating_add(1)
            .min(self.n);
        self.seen.insert(id, observed);
        if observed >= self.n {
            Decision::Ready { observed }
        } else {
            Decision::Defer { observed }
        }
    }
}

static ZONES: Lazy<Mutex<HashMap<PathBuf, &'static Zone>>> =
    Lazy::new(|| Mutex::new(HashMap::new()));

impl Zone {
    /// The zone at `cfg.path`, created (and its background work started) on first use.
    /// `prepare` is applied to the header of each entry entering the memory tier; a zone
    /// already open keeps the one it was created with.
    pub fn open(cfg: &ZoneConfig, prepare: PrepareHeader) -> std::io::Result<&'static Zone> {
        let mut zones = ZONES
            .lock()
            .map_err(|_| std::io::Error::other("zone registry poisoned"))?;
        if let Some(z) = zones.get(&cfg.path) {
            z.storage.set_max_size(cfg.max_size);
            return Ok(z);
        }
        let storage: &'static DiskStorage = Box::leak(Box::new(DiskStorage::new(
            &cfg.name,
            cfg.path.clone(),
            cfg.levels.clone(),
            cfg.max_entry_size,
            (cfg.max_size, cfg.max_entries),
            cfg.memory,
            prepare,
        )?));
        let zone: &'static Zone = Box::leak(Box::new(Zone {
            name: cfg.name.clone(),
            storage,
            locks: Mutex::new(HashMap::new()),
            admissions: Mutex::new(HashMap::new()),
        }));
        zones.insert(cfg.path.clone(), zone);
        let inactive = cfg.inactive;
        let name = cfg.name.clone();
        std::thread::Builder::new()
            .name(format!("cache-{name}"))
            .spawn(move || {
                let t = std::time::Instant::now();
                let n = storage.scan();
                log::info!(
                    "cache zone `{name}`: {n} entries found on disk in {:?}",
                    t.elapsed()
                );
                let every = (inactive / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
                loop {
                    std::thread::sleep(every);
                    let gone = storage.sweep_inactive(inactive);
                    crate::metrics::METRICS
                        .cache_inactive_removals
                        .with_label_values(&[&name])
                        .inc_by(gone as u64);
                    if gone > 0 {
                        log::info!("cache zone `{name}`: removed {gone} inactive entries");
                    }
                }
            })?;
        Ok(zone)
    }

    /// The admission policy storing a key after `n` requests (shared by locations asking `n`).
    pub fn min_uses(&self, n: u32) -> &'static MinUses {
        let mut m = match self.admissions.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        m.entry(n).or_insert_with(|| {
            Box::leak(Box::new(MinUses {
                n,
                seen: quick_cache::sync::Cache::new(100_000),
            }))
        })
    }

    /// The collapsing lock whose fills may hold a key for at most `age`.
    pub fn lock(&self, age: Duration) -> &'static CacheKeyLockImpl {
        let mut locks = match self.locks.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        *locks
            .entry(age.as_millis())
            .or_insert_with(|| Box::leak(CacheLock::new_boxed(age)) as &'static CacheKeyLockImpl)
    }
}
