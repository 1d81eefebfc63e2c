//! The process's lifecycle flags, shared by every layer: how many requests are in flight,
//! whether the process is draining after SIGTERM, and the serial number of client connections.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

static INFLIGHT: AtomicUsize = AtomicUsize::new(0);
static DRAINING: AtomicBool = AtomicBool::new(false);
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// The serial number of a new client connection (NGINX `$connection`): 1, 2, ...
pub fn next_connection() -> u64 {
    CONNECTIONS.fetch_add(1, Ordering::Relaxed) + 1
}

/// Whether SIGTERM was received (`/readyz` answers 503 from then on).
pub fn draining() -> bool {
    DRAINING.load(Ordering::Relaxed)
}

/// Mark the process as draining (SIGTERM).
pub fn start_draining() {
    DRAINING.store(true, Ordering::Relaxed);
}

/// Requests currently being handled.
pub fn inflight() -> usize {
    INFLIGHT.load(Ordering::Relaxed)
}

/// Counts a request as in flight for as long as it lives (held by the request context).
pub struct InflightGuard(());

impl InflightGuard {
    #[allow(clippy::new_without_default)]
    pub fn new() -> InflightGuard {
        INFLIGHT.fetch_add(1, Ordering::Relaxed);
        InflightGuard(())
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        INFLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}
