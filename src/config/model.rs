//! The compiled configuration: immutable types that request handling reads, built once per
//! load by `compile` and shared as `Arc<Config>`.

use super::error::ConfigError;
use crate::compress::CompressConfig;
use crate::headers::{HeaderRules, Redirects};
use crate::router::Router;
use crate::template::{Escape, Template};
use http::HeaderName;
use pingora_core::upstreams::peer::HttpPeer;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Where a log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    Stderr,
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct ErrorLogConfig {
    pub level: log::LevelFilter,
    pub target: LogTarget,
}

#[derive(Debug, Clone)]
pub struct AccessLogConfig {
    pub format: Template,
    /// How variable values are escaped (NGINX `log_format escape=`).
    pub escape: Escape,
    pub target: LogTarget,
}

/// A named upstream with its pre-resolved address and a ready `HttpPeer` (timeouts set).
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    /// `host:port` as written, NGINX's `$proxy_host` and the default upstream `Host`.
    pub proxy_host: String,
    pub peer: HttpPeer,
    pub keepalive: usize,
}

/// What `symlinks:` allows when serving files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymlinkPolicy {
    /// Follow symlinks only when the target stays inside the root (default).
    WithinRoot,
    /// Follow any symlink (NGINX's default `disable_symlinks off`).
    Follow,
}

/// How `If-Modified-Since` is compared (NGINX `if_modified_since`), for static files and
/// cached responses alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImsMode {
    Off,
    Exact,
    Before,
}

impl ImsMode {
    /// Whether a response last modified at `last_modified` is not modified since the request's
    /// `If-Modified-Since` (`since`), so a 304 answers: `exact` when the two are equal (a later
    /// date too gives the full response), `before` when `last_modified` is not after `since`,
    /// `off` never.
    pub fn not_modified(self, since: SystemTime, last_modified: SystemTime) -> bool {
        match self {
            ImsMode::Off => false,
            ImsMode::Exact => since == last_modified,
            ImsMode::Before => last_modified <= since,
        }
    }
}

#[derive(Debug, Clone)]
pub enum DocRoot {
    /// `root`: the full URI is appended.
    Root(PathBuf),
    /// `alias`: the location prefix is replaced.
    Alias { dir: PathBuf, prefix: String },
}

#[derive(Debug, Clone)]
pub struct StaticConfig {
    pub doc_root: DocRoot,
    pub index: Vec<String>,
    pub symlinks: SymlinkPolicy,
}

impl StaticConfig {
    /// Map a normalised URI path to a file path under the location's root or alias.
    pub fn map_path(&self, uri_path: &str) -> Option<(PathBuf, PathBuf)> {
        match &self.doc_root {
            DocRoot::Root(root) => {
                let mut p = root.as_os_str().to_owned();
                p.push(uri_path);
                Some((PathBuf::from(p), root.clone()))
            }
            DocRoot::Alias { dir, prefix } => {
                let rest = uri_path.strip_prefix(prefix.as_str())?;
                let mut p = dir.as_os_str().to_owned();
                if !rest.is_empty()
                    && !dir.as_os_str().to_string_lossy().ends_with('/')
                    && !rest.starts_with('/')
                {
                    p.push("/");
                }
                p.push(rest);
                Some((PathBuf::from(p), dir.clone()))
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub upstream: usize,
    /// The URI part of `proxy_pass` and the location prefix it replaces.
    pub rewrite: Option<(String, String)>,
    pub set_headers: Vec<(HeaderName, Template)>,
    pub buffering: bool,
    /// NGINX `proxy_request_buffering`: the body is read whole before the upstream is asked.
    pub request_buffering: bool,
    /// NGINX `proxy_redirect`: the upstream `Location`/`Refresh` rewrite (empty: `off`).
    pub redirects: Redirects,
}

impl ProxyConfig {
    /// The request target sent upstream for a request whose normalised path is `path`, when
    /// `proxy_pass` has a URI part: it replaces the location's prefix, the rest re-escaped
    /// (NGINX). `None` without a URI part: the client's target is sent as it came.
    pub fn rewrite_target(&self, path: &str, query: Option<&str>) -> Option<String> {
        let mut t = String::with_capacity(path.len() + 32);
        if !self.push_rewritten_path(&mut t, path) {
            return None;
        }
        if let Some(q) = query {
            t.push('?');
            t.push_str(q);
        }
        Some(t)
    }

    /// The path part of [`Self::rewrite_target`] appended to `out`; `false` (nothing appended)
    /// without a URI part in `proxy_pass`.
    pub fn push_rewritten_path(&self, out: &mut String, path: &str) -> bool {
        let Some((prefix, replacement)) = &self.rewrite else {
            return false;
        };
        out.push_str(replacement);
        crate::uri::push_escaped_path(out, path.strip_prefix(prefix.as_str()).unwrap_or(path));
        true
    }
}

#[derive(Debug, Clone)]
pub enum Handler {
    Static(StaticConfig),
    Proxy(ProxyConfig),
}

/// `caches.NAME`: a cache zone (NGINX `proxy_cache_path`).
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneConfig {
    pub name: String,
    pub path: PathBuf,
    /// Directory levels from the end of the hex key, e.g. `[1, 2]` for `levels: "1:2"`.
    pub levels: Vec<usize>,
    /// Entries the in-memory index may hold (`keys_zone`: 8,000 per MiB, as NGINX).
    pub max_entries: usize,
    /// Entries not read for this long are removed.
    pub inactive: Duration,
    /// Total bytes on disk before least-recently-used entries are evicted.
    pub max_size: u64,
    /// Largest single entry stored.
    pub max_entry_size: Option<u64>,
    /// Bytes of the zone's memory tier (0: none).
    pub memory: u64,
}

/// `max_size` when none is written (NGINX: no limit), large enough never to be reached.
pub const UNLIMITED_MAX_SIZE: u64 = u64::MAX / 4;

impl ZoneConfig {
    /// The `max_size` written in the config, if any.
    pub fn written_max_size(&self) -> Option<u64> {
        (self.max_size < UNLIMITED_MAX_SIZE).then_some(self.max_size)
    }
}

/// NGINX `proxy_ignore_headers`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IgnoreHeaders {
    pub cache_control: bool,
    pub expires: bool,
    pub set_cookie: bool,
    pub x_accel_expires: bool,
    pub vary: bool,
}

/// NGINX `proxy_cache_use_stale`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UseStale {
    pub error: bool,
    pub timeout: bool,
    pub updating: bool,
    /// Upstream statuses for which a stale entry is served instead.
    pub statuses: Vec<u16>,
}

impl UseStale {
    pub fn on_error(&self) -> bool {
        self.error || self.timeout || !self.statuses.is_empty()
    }
}

/// A location's `cache:` rules (NGINX `proxy_cache*`).
#[derive(Debug, Clone)]
pub struct CacheRules {
    /// Index into `Config::zones`.
    pub zone: usize,
    /// `key`; `None`: NGINX's default, the request as sent upstream (`request::cache_key`).
    pub key: Option<Template>,
    /// (status or `None` for any, time to live), first match wins.
    pub valid: Vec<(Option<u16>, Duration)>,
    pub bypass: Vec<Template>,
    pub no_cache: Vec<Template>,
    /// HEAD is answered from the GET entry when listed (GET always is).
    pub head: bool,
    /// Store a response only once its key was requested this many times (1: always).
    pub min_uses: u32,
    /// Request collapsing: (how long a waiter waits, how long a fill may hold the lock).
    pub lock: Option<(Duration, Duration)>,
    pub use_stale: UseStale,
    pub background_update: bool,
    pub ignore: IgnoreHeaders,
    /// Client networks allowed to `PURGE`; empty = purge off.
    pub purge_allow: Vec<ipnet::IpNet>,
    /// What a successful POST/PUT/PATCH/DELETE invalidates.
    pub invalidate_on_unsafe: Invalidate,
}

/// `invalidate_on_unsafe`: what a successful unsafe request through a cached location drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidate {
    Off,
    /// RFC 9111 §4.4: the stored GET of its URI and of the URIs in `Location` /
    /// `Content-Location` (`on`, the default).
    Uri,
    /// Everything this location stored (an API micro-cache: any write may change any read).
    Location,
}

#[derive(Debug, Clone)]
pub struct Location {
    /// How it was declared, in NGINX's notation (`= /script.js`, `/`, `~ \.js$`): the user tag
    /// of the cache entries it stores.
    pub name: String,
    /// The `location` label of its metrics: its `name:`, else a short form of its matcher
    /// (`exact:/50x.html`, `prefix:/api/`, `regex:\.js$`).
    pub label: String,
    pub handler: Handler,
    pub headers: HeaderRules,
    pub intercept_errors: bool,
    /// Largest request body accepted (NGINX `client_max_body_size`); `None`: no limit.
    pub client_max_body_size: Option<u64>,
    pub cache: Option<CacheRules>,
    /// `None` when nothing is compressed here.
    pub compress: Option<Arc<CompressConfig>>,
}

/// The admin listener (`/healthz`, `/readyz`, `/metrics`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

/// The compiled configuration. Immutable; shared as `Arc<Config>`.
#[derive(Debug)]
pub struct Config {
    pub file: PathBuf,
    pub listen: Vec<SocketAddr>,
    pub admin: Option<AdminConfig>,
    /// How often the config file is checked for changes (`None`: only on SIGHUP).
    pub reload_interval: Option<Duration>,
    pub threads: usize,
    pub pid_file: Option<PathBuf>,
    pub grace_period: Duration,
    /// Bytes of response gathered per client connection before a write (0: none).
    pub client_write_buffer: usize,
    /// A client that accepts no bytes of a response for this long is disconnected (NGINX
    /// `send_timeout`).
    pub send_timeout: Duration,
    /// A request head must arrive whole within this long of its first byte (NGINX
    /// `client_header_timeout`).
    pub client_header_timeout: Duration,
    pub client: ClientLimits,
    pub buffers: Buffers,
    /// Bytes of small static files kept in memory (0: none).
    pub file_cache: u64,
    /// On SIGTERM, how long to keep serving with `/readyz` at 503 before closing the listeners
    /// (time for Kubernetes to take the pod out of its Service).
    pub shutdown_delay: Duration,
    pub error_log: ErrorLogConfig,
    pub access_log: Option<AccessLogConfig>,
    pub upstreams: Vec<Upstream>,
    pub zones: Vec<ZoneConfig>,
    pub locations: Vec<Location>,
    pub router: Router,
    /// Status → URI of its error page.
    pub error_pages: HashMap<u16, String>,
    pub types: HashMap<String, String>,
    pub default_type: String,
    /// `$host` when the request names no host (NGINX `server_name`).
    pub server_name: String,
    /// NGINX `if_modified_since` (server level), for static files and cached responses.
    pub if_modified_since: ImsMode,
    /// Largest keep-alive pool asked for by any upstream.
    pub keepalive_pool: usize,
    /// What the load found on disk that does not stop a start (a `root` that does not exist),
    /// with its position: `-t` prints them, the start and a reload log them at `warn`.
    pub warnings: Vec<ConfigError>,
}

/// How client connections and their request heads are read (NGINX's `keepalive_timeout`,
/// `keepalive_requests`, `large_client_header_buffers`, `underscores_in_headers`,
/// `ignore_invalid_headers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// How long an idle connection waits for its next request (zero: none, each is closed).
    pub keepalive_timeout: Duration,
    /// Requests answered on one connection before it is closed.
    pub keepalive_requests: u64,
    /// Longest request line or header line.
    pub header_line: usize,
    /// Longest head.
    pub header_total: usize,
    /// Header names with `_` are kept (else dropped).
    pub underscores_in_headers: bool,
    /// Header names with characters other than letters, digits, `-` (and `_`) are dropped
    /// (else kept, if they are still HTTP tokens).
    pub ignore_invalid_headers: bool,
}

impl Default for ClientLimits {
    /// NGINX's defaults.
    fn default() -> Self {
        ClientLimits {
            keepalive_timeout: Duration::from_secs(75),
            keepalive_requests: 1000,
            header_line: 8 * 1024,
            header_total: 32 * 1024,
            underscores_in_headers: false,
            ignore_invalid_headers: true,
        }
    }
}

/// Where an upstream response waits for a slow client (NGINX's `proxy_buffers`,
/// `proxy_max_temp_file_size`, `proxy_temp_path`), and a request body for its upload to end
/// (`client_body_buffer_size`, `client_body_temp_path`, `client_body_timeout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buffers {
    /// Bytes of a response kept in memory.
    pub memory: usize,
    /// Bytes of a response kept in its temp file past memory (0: none).
    pub temp_file_max: u64,
    /// Where temp files are made (unnamed: nothing is ever left there).
    pub temp_path: PathBuf,
    /// Bytes of a request body kept in memory while it is read (NGINX
    /// `client_body_buffer_size`); past it, the body goes to a temp file.
    pub body_memory: usize,
    /// Where request bodies' temp files are made (NGINX `client_body_temp_path`).
    pub body_temp_path: PathBuf,
    /// Longest wait between two reads of a request body (NGINX `client_body_timeout`).
    pub body_timeout: Duration,
}
