//! Prometheus metrics (`/metrics` on the admin listener): requests by location and status class,
//! request and upstream latency histograms, upstream errors, cache lookups by
//! `$upstream_cache_status`, cache size, evictions, compression bytes, in-flight requests, config
//! reloads. Names follow Prometheus conventions (`outrigger_*_total`, `_seconds`, `_bytes`).

use once_cell::sync::Lazy;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::time::Duration;

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
    pub reloads: IntCounterVec,
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

pub static METRICS: Lazy<Metrics> = Lazy::new(|| {
    let m = metrics();
    for result in RELOAD_RESULTS {
        m.reloads.with_label_values(&[result]);
    }
    m
});

fn metrics() -> Metrics {
    let r = Registry::new();
    let inflight = IntGauge::new("outrigger_requests_in_flight", "Requests being handled")
        .expect("valid metric");
    r.register(Box::new(inflight.clone()))
        .expect("unique metric");
    Metrics {
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
        inflight,
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

/// A location's metric handles, resolved once per config (a labelled lookup hashes its labels
/// and takes a lock, too much on every request).
pub struct LocationMetrics {
    requests: [IntCounter; 6],
    seconds: Histogram,
    /// the location's cache zone, by [`CACHE_LABELS`]
    cache: Option<[IntCounter; 7]>,
}

impl LocationMetrics {
    pub fn request(&self, status: u16, took: Duration) {
        self.requests[class_index(status)].inc();
        self.seconds.observe(took.as_secs_f64());
    }

    /// Count a lookup in the location's cache zone ending in `label` (one of
    /// [`CACHE_LABELS`]).
    pub fn cache(&self, label: &str) {
        let i = CACHE_LABELS.iter().position(|l| *l == label);
        if let (Some(z), Some(i)) = (&self.cache, i) {
            z[i].inc();
        }
    }
}

impl Metrics {
    /// Handles for a location named `location` caching in `zone`.
    pub fn for_location(&self, location: &str, zone: Option<&str>) -> LocationMetrics {
        LocationMetrics {
            requests: CLASSES.map(|c| self.requests.with_label_values(&[location, c])),
            seconds: self.request_seconds.with_label_values(&[location]),
            cache: zone
                .map(|z| CACHE_LABELS.map(|l| self.cache_lookups.with_label_values(&[z, l]))),
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
    }

    /// Show the compression byte counters of content coding `encoding` from the start, at 0.
    pub fn register_encoding(&self, encoding: &str) {
        self.compress_in.with_label_values(&[encoding]);
        self.compress_out.with_label_values(&[encoding]);
    }

    /// Refresh the gauges read at scrape time: requests in flight, and each zone's
    /// (name, bytes, entries).
    pub fn set_gauges<'a>(
        &self,
        inflight: usize,
        zones: impl Iterator<Item = (&'a str, u64, usize)>,
    ) {
        self.inflight.set(inflight as i64);
        for (name, bytes, entries) in zones {
            self.cache_bytes
                .with_label_values(&[name])
                .set(bytes as i64);
            self.cache_entries
                .with_label_values(&[name])
                .set(entries as i64);
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
