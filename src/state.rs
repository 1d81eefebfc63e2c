//! The snapshot every request reads (`State`): the compiled config with what it opens (access
//! log, cache zones, in-memory file caches, metric handles), built once per config and swapped
//! whole on reload.

use crate::access_log::AccessLog;
use crate::cache::Zone;
use crate::config::{Config, Location};
use crate::files::FileCache;
use crate::metrics::{LocationMetrics, METRICS, UNMATCHED_LOCATION};
use std::sync::Arc;

/// What request handling reads: the compiled config and what it opened, swapped as one.
pub struct State {
    pub cfg: Arc<Config>,
    pub access_log: Option<AccessLog>,
    /// The open cache zones, indexed like `cfg.zones`.
    pub zones: Vec<&'static Zone>,
    /// Small static files kept in memory (`file_cache`).
    pub files: Option<FileCache>,
    /// Compressed copies of static files (`static.memory_cache`, the largest of the locations').
    pub compressed: Option<FileCache>,
    /// Metric handles by location (`cfg.locations` order), then one for requests matching none.
    pub metrics: Vec<LocationMetrics>,
}

impl State {
    /// Open what `cfg` names: its access log, cache zones and file caches.
    pub fn build(cfg: Arc<Config>) -> Result<State, String> {
        let access_log = cfg
            .access_log
            .as_ref()
            .map(AccessLog::open)
            .transpose()
            .map_err(|e| e.to_string())?;
        let zones = cfg
            .zones
            .iter()
            .map(|z| {
                Zone::open(z, crate::headers::from_upstream)
                    .map_err(|e| format!("cache zone `{}` at {}: {e}", z.name, z.path.display()))
            })
            .collect::<Result<Vec<_>, String>>()?;
        // Where responses wait for slow clients and request bodies for their uploads to end
        // (unnamed files: the directories stay empty).
        for (key, dir) in [
            ("proxy_temp_path", &cfg.buffers.temp_path),
            ("client_body_temp_path", &cfg.buffers.body_temp_path),
        ] {
            if let Err(e) = std::fs::create_dir_all(dir) {
                log::warn!("{key} {}: {e}; no temp files there", dir.display());
            }
        }
        let files = FileCache::new(cfg.file_cache, cfg.file_cache / 8);
        let compressed_capacity = cfg
            .locations
            .iter()
            .filter_map(|l| l.compress.as_ref())
            .map(|c| c.memory_cache)
            .max()
            .unwrap_or(0);
        let compressed = FileCache::new(compressed_capacity, compressed_capacity / 4);
        let zone_of = |l: &Location| {
            let c = l.cache.as_ref()?;
            cfg.zones.get(c.zone).map(|z| z.name.as_str())
        };
        for u in &cfg.upstreams {
            METRICS.register_upstream(&u.name);
        }
        for z in &cfg.zones {
            METRICS.register_zone(&z.name);
        }
        for enc in crate::compress::PREFERENCE {
            METRICS.register_encoding(enc.token());
        }
        let metrics = cfg
            .locations
            .iter()
            .map(|l| METRICS.for_location(&l.label, zone_of(l)))
            .chain([METRICS.for_location(UNMATCHED_LOCATION, None)])
            .collect();
        Ok(State {
            cfg,
            access_log,
            zones,
            files,
            compressed,
            metrics,
        })
    }

    /// The metric handles of location `loc` (`None`: no location matched).
    pub fn metrics(&self, loc: Option<usize>) -> &LocationMetrics {
        let i = loc.unwrap_or(self.cfg.locations.len());
        &self.metrics[i.min(self.metrics.len() - 1)]
    }
}
