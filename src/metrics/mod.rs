//! Prometheus metrics (`/metrics` on the admin listener): requests by location and status class,
//! request and upstream latency histograms, upstream errors, cache lookups by
//! `$upstream_cache_status` and HITs by tier, cache size and limit, evictions, compression
//! bytes, in-flight requests, client connections, config reloads and their outcome, build
//! information and the standard `process_*` metrics. Names follow Prometheus conventions
//! (`outrigger_*_total`, `_seconds`, `_bytes`).

mod process;

use once_cell::sync::Lazy;
use prometheus::{
    Counter, Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub upstream_seconds: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub cache_lookups: IntCounterVec,
    pub cache_evictions: IntCounterVec,
    pub cache_inactive_removals: IntCounterVec,
    cache_bytes: IntGaugeVec,
    cache_entries: IntGaugeVec,
    pub compress_in: IntCounterVec,
    pub compress_out: IntCounterVec,
    inflight: IntGauge,
    reloads: IntCounterVec,
    cache_hits: IntCounterVec,
    cache_max_size: IntGaugeVec,
    connections_accepted: IntCounter,
    connections_active: IntGauge,
    reload_successful: IntGauge,
    reload_success_time: Gauge,
    process: ProcessMetrics,
}

/// The standard `process_*` metrics, refreshed from `/proc/self` at each scrape.
struct ProcessMetrics {
    cpu_seconds: Counter,
    resident_bytes: Gauge,
    virtual_bytes: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
    start_time: Gauge,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn single<M: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: M) -> M {
    r.register(Box::new(m.clone())).expect("unique metric");
    m
}

fn float_gauge(r: &Registry, name: &str, help: &str) -> Gauge {
    single(r, Gauge::new(name, help).expect("valid metric"))
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let buckets = vec![
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

/// `outrigger_config_reloads_total`'s results.
const RELOAD_RESULTS: [&str; 2] = ["success", "failure"];

/// `outrigger_upstream_errors_total`'s kinds.
const UPSTREAM_ERROR_KINDS: [&str; 3] = ["connect", "timeout", "other"];

/// `outrigger_cache_hits_total`'s tiers, in the order of [`LocationMetrics::cache`]'s flag.
const TIERS: [&str; 2] = ["disk", "memory"];

pub static METRICS: Lazy<Metrics> = Lazy::new(|| {
    let m = metrics();
    for result in RELOAD_RESULTS {
        m.reloads.with_label_values(&[result]);
    }
    m
});

/// `outrigger_build_info`'s labels: the version, the cargo profile, the target.
fn build_info(r: &Registry) {
    let info = gauge(
        r,
        "outrigger_build_info",
        "Build information: version, cargo profile (release, debug), target",
        &["version", "profile", "target"],
    );
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let target = format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS);
    info.with_label_values(&[env!("CARGO_PKG_VERSION"), profile, &target])
        .set(1);
}

fn process_metrics(r: &Registry) -> ProcessMetrics {
    let cpu = Counter::new(
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
    )
    .expect("valid metric");
    let p = ProcessMetrics {
        cpu_seconds: single(r, cpu),
        resident_bytes: float_gauge(
            r,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        ),
        virtual_bytes: float_gauge(
            r,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
        ),
        open_fds: float_gauge(r, "process_open_fds", "Number of open file descriptors."),
        max_fds: float_gauge(
            r,
            "process_max_fds",
            "Maximum number of open file descriptors.",
        ),
        start_time: float_gauge(
            r,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
        ),
    };
    if let Some(t) = process::start_time_seconds() {
        p.start_time.set(t);
    }
    p
}

fn metrics() -> Metrics {
    let r = Registry::new();
    build_info(&r);
    let int_gauge =
        |name: &str, help: &str| single(&r, IntGauge::new(name, help).expect("valid metric"));
    let connections_accepted = single(
        &r,
        IntCounter::new(
            "outrigger_connections_accepted_total",
            "Client connections accepted on the traffic listeners",
        )
        .expect("valid metric"),
    );
    Metrics {
        inflight: int_gauge("outrigger_requests_in_flight", "Requests being handled"),
        connections_accepted,
        connections_active: int_gauge(
            "outrigger_connections_active",
            "Client connections open on the traffic listeners",
        ),
        reload_successful: int_gauge(
            "outrigger_config_last_reload_successful",
            "Whether the last config (re)load succeeded (1) or failed (0)",
        ),
        reload_success_time: float_gauge(
            &r,
            "outrigger_config_last_reload_success_timestamp_seconds",
            "Time of the last successful config (re)load, in Unix seconds",
        ),
        cache_hits: counter(
            &r,
            "outrigger_cache_hits_total",
            "Cache HITs by the tier that answered (memory, disk)",
            &["zone", "tier"],
        ),
        cache_max_size: gauge(
            &r,
            "outrigger_cache_max_size_bytes",
            "The zone's max_size (zones with one)",
            &["zone"],
        ),
        process: process_metrics(&r),
        requests: counter(
            &r,
            "outrigger_requests_total",
            "Requests by location and status class",
            &["location", "status"],
        ),
        request_seconds: histogram(
            &r,
            "outrigger_request_duration_seconds",
            "Time from request to end of response",
            &["location"],
        ),
        upstream_seconds: histogram(
            &r,
            "outrigger_upstream_response_seconds",
            "Time to the upstream's response header",
            &["upstream"],
        ),
        upstream_errors: counter(
            &r,
            "outrigger_upstream_errors_total",
            "Failed upstream attempts by kind (connect, timeout, other)",
            &["upstream", "kind"],
        ),
        cache_lookups: counter(
            &r,
            "outrigger_cache_requests_total",
            "Cached-location requests by $upstream_cache_status",
            &["zone", "status"],
        ),
        cache_evictions: counter(
            &r,
            "outrigger_cache_evictions_total",
            "Entries evicted to stay under max_size / keys_zone",
            &["zone"],
        ),
        cache_inactive_removals: counter(
            &r,
            "outrigger_cache_inactive_removals_total",
            "Entries removed after `inactive`",
            &["zone"],
        ),
        cache_bytes: gauge(
            &r,
            "outrigger_cache_bytes",
            "Bytes of cache entries on disk",
            &["zone"],
        ),
        cache_entries: gauge(
            &r,
            "outrigger_cache_entries",
            "Cache entries indexed",
            &["zone"],
        ),
        compress_in: counter(
            &r,
            "outrigger_compression_input_bytes_total",
            "Bytes fed to compressors",
            &["encoding"],
        ),
        compress_out: counter(
            &r,
            "outrigger_compression_output_bytes_total",
            "Bytes produced by compressors",
            &["encoding"],
        ),
        reloads: counter(
            &r,
            "outrigger_config_reloads_total",
            "Config reloads by result (success, failure)",
            &["result"],
        ),
        registry: r,
    }
}

/// The `location` label of requests that matched no location.
pub const UNMATCHED_LOCATION: &str = "none";

/// The status classes, in the order of [`class_index`].
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

fn class_index(status: u16) -> usize {
    match status {
        100..=599 => (status / 100 - 1) as usize,
        _ => 5,
    }
}

/// `$upstream_cache_status` values (`cache::policy::status_label`), as counted in
/// `outrigger_cache_requests_total`.
const CACHE_LABELS: [&str; 7] = [
    "MISS",
    "HIT",
    "BYPASS",
    "EXPIRED",
    "STALE",
    "UPDATING",
    "REVALIDATED",
];

/// A client connection counted in `outrigger_connections_active` while it lives.
pub struct ConnectionGuard(&'static IntGauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A location's metric handles, resolved once per config (a labelled lookup hashes its labels
/// and takes a lock, too much on every request).
pub struct LocationMetrics {
    requests: [IntCounter; 6],
    seconds: Histogram,
    /// the location's cache zone: by [`CACHE_LABELS`], and its HITs by [`TIERS`]
    cache: Option<([IntCounter; 7], [IntCounter; 2])>,
}

impl LocationMetrics {
    pub fn request(&self, status: u16, took: Duration) {
        self.requests[class_index(status)].inc();
        self.seconds.observe(took.as_secs_f64());
    }

    /// Count a lookup in the location's cache zone ending in `label` (one of
    /// [`CACHE_LABELS`]); a HIT also by its tier (`memory`: the memory tier answered).
    pub fn cache(&self, label: &str, memory: bool) {
        let i = CACHE_LABELS.iter().position(|l| *l == label);
        if let (Some((lookups, hits)), Some(i)) = (&self.cache, i) {
            lookups[i].inc();
            if label == "HIT" {
                hits[usize::from(memory)].inc();
            }
        }
    }
}

impl Metrics {
    /// Handles for a location named `location` caching in `zone`.
    pub fn for_location(&self, location: &str, zone: Option<&str>) -> LocationMetrics {
        LocationMetrics {
            requests: CLASSES.map(|c| self.requests.with_label_values(&[location, c])),
            seconds: self.request_seconds.with_label_values(&[location]),
            cache: zone.map(|z| {
                (
                    CACHE_LABELS.map(|l| self.cache_lookups.with_label_values(&[z, l])),
                    TIERS.map(|t| self.cache_hits.with_label_values(&[z, t])),
                )
            }),
        }
    }

    /// Show the series of upstream `name` from the start, at 0: its errors of every kind and
    /// its response-time histogram. (A series that appears only with its first event hides
    /// that event from `rate()` and `increase()`.)
    pub fn register_upstream(&self, name: &str) {
        for kind in UPSTREAM_ERROR_KINDS {
            self.upstream_errors.with_label_values(&[name, kind]);
        }
        self.upstream_seconds.with_label_values(&[name]);
    }

    /// Show the series of cache zone `name` from the start, at 0.
    pub fn register_zone(&self, name: &str) {
        self.cache_evictions.with_label_values(&[name]);
        self.cache_inactive_removals.with_label_values(&[name]);
        self.cache_bytes.with_label_values(&[name]);
        self.cache_entries.with_label_values(&[name]);
        for tier in TIERS {
            self.cache_hits.with_label_values(&[name, tier]);
        }
    }

    /// Show the compression byte counters of content coding `encoding` from the start, at 0.
    pub fn register_encoding(&self, encoding: &str) {
        self.compress_in.with_label_values(&[encoding]);
        self.compress_out.with_label_values(&[encoding]);
    }

    /// Count a client connection as accepted, and as active while the guard lives.
    pub fn connection(&'static self) -> ConnectionGuard {
        self.connections_accepted.inc();
        self.connections_active.inc();
        ConnectionGuard(&self.connections_active)
    }

    /// A config was loaded: at start (`reload: false`) or by a reload, successfully or not.
    pub fn config_loaded(&self, ok: bool, reload: bool) {
        if reload {
            self.reloads
                .with_label_values(&[RELOAD_RESULTS[usize::from(!ok)]])
                .inc();
        }
        self.reload_successful.set(i64::from(ok));
        if ok {
            let now = SystemTime::now().duration_since(UNIX_EPOCH);
            self.reload_success_time
                .set(now.unwrap_or_default().as_secs_f64());
        }
    }

    /// Refresh the gauges read at scrape time: requests in flight, and each zone's
    /// (name, bytes, entries, max_size).
    pub fn set_gauges<'a>(
        &self,
        inflight: usize,
        zones: impl Iterator<Item = (&'a str, u64, usize, Option<u64>)>,
    ) {
        self.inflight.set(inflight as i64);
        for (name, bytes, entries, max_size) in zones {
            self.cache_bytes
                .with_label_values(&[name])
                .set(bytes as i64);
            self.cache_entries
                .with_label_values(&[name])
                .set(entries as i64);
            match max_size {
                Some(max) => self
                    .cache_max_size
                    .with_label_values(&[name])
                    .set(i64::try_from(max).unwrap_or(i64::MAX)),
                None => {
                    let _ = self.cache_max_size.remove_label_values(&[name]);
                }
            }
        }
    }

    /// Refresh the `process_*` metrics.
    fn set_process(&self) {
        let s = process::sample();
        let p = &self.process;
        if let Some(cpu) = s.cpu_seconds {
            // a counter only goes up: add what was spent since the last scrape
            let past = p.cpu_seconds.get();
            if cpu > past {
                p.cpu_seconds.inc_by(cpu - past);
            }
        }
        for (gauge, value) in [
            (&p.resident_bytes, s.resident_bytes),
            (&p.virtual_bytes, s.virtual_bytes),
            (&p.open_fds, s.open_fds),
            (&p.max_fds, s.max_fds),
        ] {
            if let Some(v) = value {
                gauge.set(v as f64);
            }
        }
    }

    /// The text exposition (the `process_*` metrics refreshed first).
    pub fn render(&self) -> String {
        self.set_process();
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
