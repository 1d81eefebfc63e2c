//! Hot reload: the config file is watched (its content, checked every `reload.interval`, which
//! also catches the symlink swap Kubernetes does when a mounted ConfigMap changes) and SIGHUP
//! forces a check. A valid new config is compiled and swapped in atomically; requests in flight
//! finish on the snapshot they started with. An invalid one is logged with file:line, counted,
//! and the running config keeps serving.

use crate::config::Config;
use crate::metrics::METRICS;
use crate::state::State;
use arc_swap::ArcSwap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn fingerprint(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}

/// Load, validate and swap in the config at `path`. Returns whether it was applied.
pub fn reload(path: &Path, state: &ArcSwap<State>) -> bool {
    let current = state.load_full();
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            log::error!("config reload failed, keeping the running config: {e}");
            METRICS.config_loaded(false, true);
            return false;
        }
    };
    for w in &cfg.warnings {
        log::warn!("config reload: {w}");
    }
    let old = &current.cfg;
    let restart_only = [
        ("listen", old.listen != cfg.listen),
        ("threads", old.threads != cfg.threads),
        ("admin", old.admin != cfg.admin),
        (
            "error_log",
            old.error_log.level != cfg.error_log.level
                || old.error_log.target != cfg.error_log.target,
        ),
        ("grace_period", old.grace_period != cfg.grace_period),
        (
            "client_write_buffer",
            old.client_write_buffer != cfg.client_write_buffer,
        ),
        ("shutdown_delay", old.shutdown_delay != cfg.shutdown_delay),
    ];
    for (key, changed) in restart_only {
        if changed {
            log::warn!("config reload: a change of `{key}` takes effect only after a restart");
        }
    }
    match State::build(Arc::new(cfg)) {
        Ok(s) => {
            state.store(Arc::new(s));
            METRICS.config_loaded(true, true);
            log::info!("config reloaded from {}", path.display());
            true
        }
        Err(e) => {
            log::error!("config reload failed, keeping the running config: {e}");
            METRICS.config_loaded(false, true);
            false
        }
    }
}

/// Watch `path` (and SIGHUP) in a background thread for the life of the process.
pub fn spawn(path: PathBuf, state: Arc<ArcSwap<State>>, interval: Option<Duration>) {
    let hup = Arc::new(AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone()) {
        log::warn!("cannot watch SIGHUP: {e}");
    }
    let spawned = std::thread::Builder::new()
        .name("config-watch".into())
        .spawn(move || {
            let mut last = fingerprint(&path);
            let mut checked = Instant::now();
            loop {
                std::thread::sleep(Duration::from_millis(100));
                let forced = hup.swap(false, Ordering::Relaxed);
                let due = interval.is_some_and(|i| checked.elapsed() >= i);
                if !forced && !due {
                    continue;
                }
                checked = Instant::now();
                let now = fingerprint(&path);
                if forced || (now.is_some() && now != last) {
                    last = now;
                    reload(&path, &state);
                }
            }
        });
    if let Err(e) = spawned {
        log::error!("cannot start the config watcher: {e}");
    }
}
