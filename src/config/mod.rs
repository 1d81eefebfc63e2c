//! Configuration: the YAML schema (`raw`), NGINX units (`units`), `${VAR}` expansion (`env`),
//! error positions (`span`), and the compiled, immutable [`Config`] snapshot that request
//! handling reads. Nothing here runs per request.

pub mod env;
pub mod raw;
pub mod span;
pub mod units;

use crate::headers::{AddHeader, Expires, HeaderRules};
use crate::router::{Matcher, Router};
use crate::vars::{Template, Var};
use http::HeaderName;
use pingora_core::upstreams::peer::HttpPeer;
use raw::{RawAddHeader, RawConfig, RawLocation};
use regex::Regex;
use serde_yaml::Value;
use span::SpanIndex;
use std::collections::HashMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A config error with the file, line and column it refers to.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            // not about a position in the file (e.g. it cannot be read)
            return write!(f, "{}: {}", self.file.display(), self.message);
        }
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

impl std::error::Error for ConfigError {}

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
    pub target: LogTarget,
}

/// A zone's memory tier when `memory:` is not given. A HIT from the tier is answered by the
/// front (`src/front.rs`); one from disk goes through Pingora's cache phases and costs about
/// three times as much CPU (S1: 47k vs 155k req/s on one core).
pub const DEFAULT_MEMORY_TIER: u64 = 16 << 20;

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

/// How `If-Modified-Since` is compared (NGINX `if_modified_since`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImsMode {
    Off,
    Exact,
    Before,
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
    pub if_modified_since: ImsMode,
}

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub upstream: usize,
    /// The URI part of `proxy_pass` and the location prefix it replaces.
    pub rewrite: Option<(String, String)>,
    pub set_headers: Vec<(HeaderName, Template)>,
    pub buffering: bool,
}

#[derive(Debug, Clone)]
pub enum Handler {
    Static(StaticConfig),
    Proxy(ProxyConfig),
}

/// Compression of a location (`gzip:`, `brotli:`, `zstd:`, `static:`).
#[derive(Debug, Clone)]
pub struct CompressConfig {
    pub gzip: Option<u32>,
    pub brotli: Option<u32>,
    pub zstd: Option<u32>,
    pub min_length: u64,
    /// Lowercase media types; `text/html` is always included.
    pub types: Vec<String>,
    /// `types: ["*"]`
    pub all_types: bool,
    pub vary: bool,
    /// User-Agents that never get compressed responses (NGINX `gzip_disable`).
    pub disable: Option<Regex>,
    /// Compress responses to requests that came through another proxy (`Via`).
    pub proxied: bool,
    /// Serve `file.zst` / `file.br` / `file.gz` siblings when present (NGINX `gzip_static`).
    pub precompressed: bool,
    /// Bytes of compressed static files kept in memory (0 disables).
    pub memory_cache: u64,
}

impl CompressConfig {
    pub fn any_enabled(&self) -> bool {
        self.gzip.is_some() || self.brotli.is_some() || self.zstd.is_some()
    }

    pub fn level(&self, e: crate::compress::Encoding) -> Option<u32> {
        use crate::compress::Encoding::*;
        match e {
            Gzip => self.gzip,
            Br => self.brotli,
            Zstd => self.zstd,
        }
    }
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
    /// Bytes of the in-memory tier for hot small entries (0: none).
    pub memory: u64,
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
    pub key: Template,
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
    /// How it was declared, for logs and metrics (`= /script.js`, `/`, `~ \.js$`).
    pub name: String,
    pub handler: Handler,
    pub headers: HeaderRules,
    pub intercept_errors: bool,
    pub cache: Option<CacheRules>,
    /// `None` when nothing is compressed here.
    pub compress: Option<Arc<CompressConfig>>,
}

/// The admin listener (`/healthz`, `/readyz`, `/metrics`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Written in the config (a failure to bind is fatal) rather than the default (a warning).
    pub explicit: bool,
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
    /// Largest keep-alive pool asked for by any upstream.
    pub keepalive_pool: usize,
}

const NGINX_COMBINED: &str =
    "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\"";

impl Config {
    /// Read, parse, validate and compile a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read config: {e}"),
        })?;
        Config::from_str(&src, path)
    }

    /// Parse `src` as if read from `path` (relative paths resolve against its directory).
    pub fn from_str(src: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = serde_yaml::from_str(src).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            ConfigError {
                file: path.to_path_buf(),
                line,
                column,
                message: strip_position(&e.to_string()),
            }
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        let c = Compiler {
            base,
            spans: SpanIndex::new(src),
            file: path.to_path_buf(),
        };
        c.compile(raw)
    }
}

/// serde_yaml writes " at line L column C" into its messages; we print the position in front
/// instead, and quote the key path it starts with (`a.b[0]: msg` → `` `a.b[0]`: msg``).
fn strip_position(msg: &str) -> String {
    static POS: once_cell::sync::Lazy<Regex> = once_cell::sync::Lazy::new(|| {
        Regex::new(r" at line \d+ column \d+").expect("static regex")
    });
    static PATH: once_cell::sync::Lazy<Regex> = once_cell::sync::Lazy::new(|| {
        Regex::new(r"^([A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+|\[\d+\])*): ").expect("static regex")
    });
    let m = POS.replace_all(msg, "");
    PATH.replace(&m, "`$1`: ").into_owned()
}

struct Compiler {
    base: PathBuf,
    spans: SpanIndex,
    file: PathBuf,
}

type R<T> = Result<T, ConfigError>;

impl Compiler {
    fn err(&self, path: &str, msg: impl fmt::Display) -> ConfigError {
        let (line, column) = self.spans.locate(path);
        ConfigError {
            file: self.file.clone(),
            line,
            column,
            message: format!("`{path}`: {msg}"),
        }
    }

    fn key_err(&self, path: &str, msg: impl fmt::Display) -> ConfigError {
        let (line, column) = self.spans.locate_key(path);
        ConfigError {
            file: self.file.clone(),
            line,
            column,
            message: format!("`{path}`: {msg}"),
        }
    }

    /// A scalar as a string, `${VAR}`-expanded.
    fn scalar(&self, path: &str, v: &Value) -> R<String> {
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(self.err(path, "expected a single value")),
        };
        self.expand(path, &s)
    }

    fn expand(&self, path: &str, s: &str) -> R<String> {
        env::expand(s).map_err(|e| self.err(path, e))
    }

    /// A boolean in NGINX's words too: `on`/`off`, `true`/`false`, `yes`/`no`.
    fn flag(&self, path: &str, v: Option<&Value>, default: bool) -> R<bool> {
        let Some(v) = v else { return Ok(default) };
        match self.scalar(path, v)?.to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" => Ok(true),
            "off" | "false" | "no" => Ok(false),
            other => Err(self.err(path, format!("`{other}`: expected on/off (or true/false)"))),
        }
    }

    fn duration(&self, path: &str, v: Option<&Value>, default: Duration) -> R<Duration> {
        match v {
            None => Ok(default),
            Some(v) => {
                let s = self.scalar(path, v)?;
                units::parse_duration(&s).map_err(|e| self.err(path, e))
            }
        }
    }

    fn path(&self, path: &str, s: &str) -> R<PathBuf> {
        let s = self.expand(path, s)?;
        if s.is_empty() {
            return Err(self.err(path, "empty path"));
        }
        let p = PathBuf::from(s);
        Ok(if p.is_absolute() {
            p
        } else {
            self.base.join(p)
        })
    }

    fn template(&self, path: &str, s: &str) -> R<Template> {
        let s = self.expand(path, s)?;
        Template::parse(&s).map_err(|e| self.err(path, e))
    }

    fn header_name(&self, path: &str, name: &str) -> R<HeaderName> {
        HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| self.key_err(path, format!("invalid header name `{name}`")))
    }

    fn log_target(&self, path: &str, s: &str) -> R<LogTarget> {
        Ok(match s {
            "stdout" | "/dev/stdout" => LogTarget::Stdout,
            "stderr" | "/dev/stderr" => LogTarget::Stderr,
            other => LogTarget::File(self.path(path, other)?),
        })
    }

    fn compile(self, raw: RawConfig) -> R<Config> {
        // listen
        if raw.listen.is_empty() {
            return Err(self.err("listen", "at least one address is required"));
        }
        let mut listen = Vec::new();
        for (i, v) in raw.listen.iter().enumerate() {
            let p = format!("listen[{i}]");
            let s = self.scalar(&p, v)?;
            let s = if s.chars().all(|c| c.is_ascii_digit()) {
                format!("0.0.0.0:{s}")
            } else {
                s
            };
            let addr = s
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| {
                    self.err(
                        &p,
                        format!("invalid listen address `{s}` (expected `addr:port` or a port)"),
                    )
                })?;
            listen.push(addr);
        }

        let admin = match &raw.admin {
            None => Some(AdminConfig {
                listen: SocketAddr::from(([0, 0, 0, 0], 9145)),
                explicit: false,
            }),
            Some(v) => {
                let listen = match v {
                    Value::Mapping(_) => {
                        let a: raw::RawAdmin = serde_yaml::from_value(v.clone())
                            .map_err(|e| self.err("admin", strip_position(&e.to_string())))?;
                        Some(self.scalar("admin.listen", &a.listen)?)
                    }
                    _ if !self.flag("admin", Some(v), false)? => None,
                    _ => return Err(self.err("admin", "expected `off` or `{listen: addr:port}`")),
                };
                match listen {
                    None => None,
                    Some(s) => Some(AdminConfig {
                        listen: s
                            .to_socket_addrs()
                            .ok()
                            .and_then(|mut a| a.next())
                            .ok_or_else(|| {
                                self.err("admin.listen", format!("invalid address `{s}`"))
                            })?,
                        explicit: true,
                    }),
                }
            }
        };
        let reload_interval = match &raw.reload {
            None => Some(Duration::from_secs(1)),
            Some(r) => {
                if self.flag("reload.watch", r.watch.as_ref(), true)? {
                    Some(self.duration(
                        "reload.interval",
                        r.interval.as_ref(),
                        Duration::from_secs(1),
                    )?)
                } else {
                    None
                }
            }
        };

        let threads = match &raw.threads {
            None => 1,
            Some(v) => {
                let s = self.scalar("threads", v)?;
                if s == "auto" {
                    std::thread::available_parallelism()
                        .map(|n| n.get())
                        .unwrap_or(1)
                } else {
                    match s.parse::<usize>() {
                        Ok(n) if (1..=1024).contains(&n) => n,
                        _ => {
                            return Err(self.err(
                                "threads",
                                format!("expected `auto` or a number from 1 to 1024, got `{s}`"),
                            ))
                        }
                    }
                }
            }
        };

        // An empty value (e.g. `${OUTRIGGER_PID_FILE:-}`) means no pid file.
        let pid_file = match raw
            .pid_file
            .as_deref()
            .map(|p| self.expand("pid_file", p))
            .transpose()?
        {
            Some(p) if !p.is_empty() => Some(self.path("pid_file", &p)?),
            _ => None,
        };
        let grace_period = self.duration(
            "grace_period",
            raw.grace_period.as_ref(),
            Duration::from_secs(10),
        )?;
        let client_write_buffer = self
            .size("client_write_buffer", raw.client_write_buffer.as_ref())?
            .unwrap_or(8 * 1024);
        let client_write_buffer = usize::try_from(client_write_buffer)
            .ok()
            .filter(|n| *n <= 1 << 20)
            .ok_or_else(|| self.err("client_write_buffer", "at most 1m"))?;
        // NGINX's client timeouts, with its defaults
        let client_timeout = |key: &str, v: Option<&Value>| -> R<Duration> {
            let d = self.duration(key, v, Duration::from_secs(60))?;
            if d.is_zero() {
                return Err(self.err(key, "must be more than 0"));
            }
            Ok(d)
        };
        let send_timeout = client_timeout("send_timeout", raw.send_timeout.as_ref())?;
        let client_header_timeout =
            client_timeout("client_header_timeout", raw.client_header_timeout.as_ref())?;
        let file_cache = self
            .size("file_cache", raw.file_cache.as_ref())?
            .unwrap_or(32 << 20);
        let shutdown_delay = self.duration(
            "shutdown_delay",
            raw.shutdown_delay.as_ref(),
            Duration::ZERO,
        )?;

        let error_log = {
            let (level, target) = match &raw.error_log {
                Some(e) => (e.level.as_deref(), e.target.as_deref()),
                None => (None, None),
            };
            let level = match level.unwrap_or("warn") {
                "debug" => log::LevelFilter::Debug,
                "info" | "notice" => log::LevelFilter::Info,
                "warn" => log::LevelFilter::Warn,
                "error" | "crit" | "alert" | "emerg" => log::LevelFilter::Error,
                "off" => log::LevelFilter::Off,
                other => return Err(self.err("error_log.level", format!("unknown level `{other}` (debug, info, notice, warn, error, crit, alert, emerg, off)"))),
            };
            let target = match target.unwrap_or("stderr") {
                "stdout" | "/dev/stdout" => LogTarget::Stdout,
                "stderr" | "/dev/stderr" => LogTarget::Stderr,
                other => {
                    return Err(self.err(
                        "error_log.target",
                        format!("`{other}`: the error log goes to `stdout` or `stderr`"),
                    ))
                }
            };
            ErrorLogConfig { level, target }
        };

        let access_log = self.access_log(&raw)?;

        // upstreams
        let mut upstreams = Vec::new();
        for (name, u) in &raw.upstreams {
            let p = format!("upstreams.{name}");
            upstreams.push(self.upstream(&p, name, u)?);
        }

        let server_compress = self.compress(&raw, raw.gzip.as_ref(), "gzip", None)?;

        let mut zones = Vec::new();
        for (name, z) in &raw.caches {
            zones.push(self.zone(&format!("caches.{name}"), name, z)?);
        }

        let types: HashMap<String, String> = raw
            .types
            .iter()
            .map(|(k, v)| (k.trim_start_matches('.').to_ascii_lowercase(), v.clone()))
            .collect();
        let default_type = raw
            .default_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".to_string());

        let symlinks = self.symlinks(
            "symlinks",
            raw.symlinks.as_deref(),
            SymlinkPolicy::WithinRoot,
        )?;
        let ims = match raw.if_modified_since.as_deref().unwrap_or("exact") {
            "exact" => ImsMode::Exact,
            "before" => ImsMode::Before,
            "off" => ImsMode::Off,
            other => {
                return Err(self.err(
                    "if_modified_since",
                    format!("`{other}`: expected exact, before or off"),
                ))
            }
        };
        let server = ServerDefaults {
            root: raw
                .root
                .as_deref()
                .map(|r| self.path("root", r))
                .transpose()?,
            index: raw.index.clone(),
            proxy_set_header: raw.proxy_set_header.as_ref(),
            add_header: raw.add_header.as_ref(),
            set_header: raw.set_header.as_ref(),
            hide_header: raw.hide_header.as_ref(),
            intercept_errors: self.flag(
                "intercept_errors",
                raw.intercept_errors.as_ref(),
                false,
            )?,
            symlinks,
            ims,
        };

        // locations
        let mut locations = Vec::new();
        let mut matchers = Vec::new();
        for (i, l) in raw.locations.iter().enumerate() {
            let p = format!("locations[{i}]");
            let (matcher, name) = self.matcher(&p, l)?;
            let mut loc = self.location(&p, l, &matcher, name, &server, &mut upstreams)?;
            loc.compress = match &l.gzip {
                None => server_compress.clone(),
                Some(g) => self.compress(
                    &raw,
                    Some(g),
                    &format!("{p}.gzip"),
                    server_compress.as_deref(),
                )?,
            };
            if let Some(c) = &l.cache {
                if !matches!(loc.handler, Handler::Proxy(_)) {
                    return Err(self.key_err(
                        &format!("{p}.cache"),
                        "`cache` needs `proxy_pass` in the same location",
                    ));
                }
                loc.cache = Some(self.cache_rules(&format!("{p}.cache"), c, &zones)?);
            }
            matchers.push((matcher, p));
            locations.push(loc);
        }
        let router = Router::new(matchers.iter().map(|(m, _)| m.clone()).collect())
            .map_err(|(i, e)| self.err(&matchers[i].1, e))?;

        // error pages
        let mut error_pages = HashMap::new();
        for (k, uri) in &raw.error_pages {
            let codes = match k {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                _ => {
                    return Err(self.err(
                        "error_pages",
                        "keys are status codes, e.g. `\"500 502 503 504\"`",
                    ))
                }
            };
            let p = format!("error_pages.{codes}");
            for c in codes.split_whitespace() {
                let code: u16 = c
                    .parse()
                    .ok()
                    .filter(|c| (300..=599).contains(c))
                    .ok_or_else(|| {
                        self.key_err(&p, format!("`{c}` is not a status code from 300 to 599"))
                    })?;
                if !uri.starts_with('/') {
                    return Err(self.err(
                        &p,
                        format!("error page `{uri}` must be a URI starting with `/`"),
                    ));
                }
                match router.find(uri).map(|i| &locations[i].handler) {
                    Some(Handler::Static(_)) => {}
                    Some(Handler::Proxy(_)) => return Err(self.err(&p, format!("error page `{uri}` is routed to a proxy location; it must be served by a `root`/`alias` location"))),
                    None => return Err(self.err(&p, format!("error page `{uri}` matches no location"))),
                }
                error_pages.insert(code, uri.clone());
            }
        }

        let keepalive_pool = upstreams.iter().map(|u| u.keepalive).max().unwrap_or(128);
        Ok(Config {
            file: self.file.clone(),
            listen,
            admin,
            reload_interval,
            threads,
            pid_file,
            grace_period,
            client_write_buffer,
            send_timeout,
            client_header_timeout,
            file_cache,
            shutdown_delay,
            error_log,
            access_log,
            upstreams,
            zones,
            locations,
            router,
            error_pages,
            types,
            default_type,
            server_name: match &raw.server_name {
                Some(n) => self.expand("server_name", n)?,
                None => "localhost".to_string(),
            },
            keepalive_pool,
        })
    }

    fn access_log(&self, raw: &RawConfig) -> R<Option<AccessLogConfig>> {
        let v = match &raw.access_log {
            None => return Ok(None),
            Some(v) => v,
        };
        let (format, path) = match v {
            Value::String(s) if s == "off" => return Ok(None),
            Value::Bool(false) => return Ok(None),
            Value::Mapping(_) => {
                let a: raw::RawAccessLog = serde_yaml::from_value(v.clone())
                    .map_err(|e| self.err("access_log", strip_position(&e.to_string())))?;
                (a.format, a.path)
            }
            _ => {
                return Err(self.err(
                    "access_log",
                    "expected `off` or `{format: ..., path: stdout|stderr|FILE}`",
                ))
            }
        };
        let format = format.unwrap_or_else(|| "combined".to_string());
        let text = match raw.log_formats.get(&format) {
            Some(f) => f.clone(),
            None if format == "combined" => NGINX_COMBINED.to_string(),
            None => format,
        };
        let target = self.log_target("access_log.path", path.as_deref().unwrap_or("stdout"))?;
        Ok(Some(AccessLogConfig {
            format: self.template("access_log.format", &text)?,
            target,
        }))
    }

    fn upstream(&self, p: &str, name: &str, u: &raw::RawUpstream) -> R<Upstream> {
        let addr_s = self.scalar(&format!("{p}.address"), &u.address)?;
        let addr_s = addr_s
            .strip_prefix("http://")
            .unwrap_or(&addr_s)
            .trim_end_matches('/')
            .to_string();
        let addr = resolve(&addr_s).map_err(|e| self.err(&format!("{p}.address"), e))?;
        let sixty = Duration::from_secs(60);
        let connect = self.duration(
            &format!("{p}.connect_timeout"),
            u.connect_timeout.as_ref(),
            sixty,
        )?;
        let read = self.duration(&format!("{p}.read_timeout"), u.read_timeout.as_ref(), sixty)?;
        let send = self.duration(&format!("{p}.send_timeout"), u.send_timeout.as_ref(), sixty)?;
        let idle = self.duration(
            &format!("{p}.keepalive_timeout"),
            u.keepalive_timeout.as_ref(),
            sixty,
        )?;
        Ok(make_upstream(
            name,
            addr,
            &addr_s,
            connect,
            read,
            send,
            idle,
            u.keepalive.unwrap_or(128),
        ))
    }

    fn size(&self, path: &str, v: Option<&Value>) -> R<Option<u64>> {
        match v {
            None => Ok(None),
            Some(v) => {
                let s = self.scalar(path, v)?;
                units::parse_size(&s)
                    .map(Some)
                    .map_err(|e| self.err(path, e))
            }
        }
    }

    fn zone(&self, p: &str, name: &str, z: &raw::RawZone) -> R<ZoneConfig> {
        let path = self.path(&format!("{p}.path"), &z.path)?;
        let levels = match &z.levels {
            None => Vec::new(),
            Some(v) => {
                let lp = format!("{p}.levels");
                let s = self.scalar(&lp, v)?;
                let levels: Option<Vec<usize>> = s
                    .split(':')
                    .map(|l| l.parse().ok().filter(|n| (1..=2).contains(n)))
                    .collect();
                match levels {
                    Some(l) if l.len() <= 3 => l,
                    _ => {
                        return Err(self.err(
                            &lp,
                            format!("`{s}`: expected up to three levels of 1 or 2, e.g. \"1:2\""),
                        ))
                    }
                }
            }
        };
        let keys = self
            .size(&format!("{p}.keys_zone"), z.keys_zone.as_ref())?
            .unwrap_or(10 << 20);
        let max_entries = ((keys / (128 * 1024 / 1000)).max(1000)) as usize;
        let inactive = self.duration(
            &format!("{p}.inactive"),
            z.inactive.as_ref(),
            Duration::from_secs(600),
        )?;
        let max_size = self
            .size(&format!("{p}.max_size"), z.max_size.as_ref())?
            .unwrap_or(u64::MAX / 4);
        let max_entry_size =
            self.size(&format!("{p}.max_entry_size"), z.max_entry_size.as_ref())?;
        let memory = self
            .size(&format!("{p}.memory"), z.memory.as_ref())?
            .unwrap_or(DEFAULT_MEMORY_TIER);
        Ok(ZoneConfig {
            name: name.to_string(),
            path,
            levels,
            max_entries,
            inactive,
            max_size,
            max_entry_size,
            memory,
        })
    }

    fn cache_rules(&self, p: &str, c: &raw::RawCache, zones: &[ZoneConfig]) -> R<CacheRules> {
        let zone = zones.iter().position(|z| z.name == c.zone).ok_or_else(|| {
            self.err(
                &format!("{p}.zone"),
                format!(
                    "unknown cache zone `{}` (define it under `caches:`)",
                    c.zone
                ),
            )
        })?;
        let key = self.template(
            &format!("{p}.key"),
            c.key.as_deref().unwrap_or("$scheme$proxy_host$request_uri"),
        )?;
        let mut valid = Vec::new();
        for (k, v) in &c.valid {
            let kp = match k {
                Value::String(s) => format!("{p}.valid.{s}"),
                Value::Number(n) => format!("{p}.valid.{n}"),
                _ => return Err(self.err(&format!("{p}.valid"), "keys are status codes or `any`")),
            };
            let codes = match k {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => String::new(),
            };
            let ttl = self.duration(&kp, Some(v), Duration::ZERO)?;
            for code in codes.split_whitespace() {
                if code == "any" {
                    valid.push((None, ttl));
                } else {
                    let c: u16 = code
                        .parse()
                        .ok()
                        .filter(|c| (100..=599).contains(c))
                        .ok_or_else(|| {
                            self.key_err(&kp, format!("`{code}` is not a status code or `any`"))
                        })?;
                    valid.push((Some(c), ttl));
                }
            }
        }
        // `any` applies after the listed statuses, wherever it is written (NGINX)
        valid.sort_by_key(|(s, _)| s.is_none());
        let templates = |key: &str, list: &[String]| -> R<Vec<Template>> {
            list.iter()
                .enumerate()
                .map(|(i, t)| self.template(&format!("{p}.{key}[{i}]"), t))
                .collect()
        };
        let mut head = true;
        if let Some(m) = &c.methods {
            head = false;
            for (i, m) in m.iter().enumerate() {
                match m.to_ascii_uppercase().as_str() {
                    "GET" => {}
                    "HEAD" => head = true,
                    other => {
                        return Err(self.err(
                            &format!("{p}.methods[{i}]"),
                            format!("`{other}`: only GET and HEAD responses are cached"),
                        ))
                    }
                }
            }
        }
        let lock = match &c.lock {
            None => Some((Duration::from_secs(5), Duration::from_secs(5))),
            Some(l) => {
                let lp = format!("{p}.lock");
                if self.flag(&format!("{lp}.enabled"), l.enabled.as_ref(), true)? {
                    Some((
                        self.duration(
                            &format!("{lp}.timeout"),
                            l.timeout.as_ref(),
                            Duration::from_secs(5),
                        )?,
                        self.duration(
                            &format!("{lp}.age"),
                            l.age.as_ref(),
                            Duration::from_secs(5),
                        )?,
                    ))
                } else {
                    None
                }
            }
        };
        let mut use_stale = UseStale::default();
        for (i, s) in c.use_stale.iter().enumerate() {
            match s.as_str() {
                "error" => use_stale.error = true,
                "timeout" => use_stale.timeout = true,
                "updating" => use_stale.updating = true,
                "off" => {}
                other => match other.strip_prefix("http_").and_then(|c| c.parse::<u16>().ok()) {
                    Some(code @ (500 | 502 | 503 | 504 | 403 | 404 | 429)) => use_stale.statuses.push(code),
                    _ => return Err(self.err(&format!("{p}.use_stale[{i}]"), format!("`{other}`: expected error, timeout, updating, http_500, http_502, http_503, http_504, http_403, http_404, http_429"))),
                },
            }
        }
        let mut ignore = IgnoreHeaders::default();
        for (i, h) in c.ignore_headers.iter().enumerate() {
            match h.to_ascii_lowercase().as_str() {
                "cache-control" => ignore.cache_control = true,
                "expires" => ignore.expires = true,
                "set-cookie" => ignore.set_cookie = true,
                "x-accel-expires" => ignore.x_accel_expires = true,
                "vary" => ignore.vary = true,
                other => return Err(self.err(&format!("{p}.ignore_headers[{i}]"), format!("`{other}`: expected Cache-Control, Expires, Set-Cookie, X-Accel-Expires or Vary"))),
            }
        }
        let mut purge_allow = Vec::new();
        if let Some(pg) = &c.purge {
            for (i, a) in pg.allow.iter().enumerate() {
                let ap = format!("{p}.purge.allow[{i}]");
                let net = a
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| a.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| self.err(&ap, format!("`{a}` is not an IP address or CIDR")))?;
                purge_allow.push(net);
            }
        }
        Ok(CacheRules {
            zone,
            key,
            valid,
            bypass: templates("bypass", &c.bypass)?,
            no_cache: templates("no_cache", &c.no_cache)?,
            head,
            min_uses: match c.min_uses {
                Some(0) => {
                    return Err(self.err(&format!("{p}.min_uses"), "must be at least 1"));
                }
                Some(n) => n,
                None => 1,
            },
            lock,
            use_stale,
            background_update: self.flag(
                &format!("{p}.background_update"),
                c.background_update.as_ref(),
                false,
            )?,
            ignore,
            purge_allow,
            invalidate_on_unsafe: match &c.invalidate_on_unsafe {
                None => Invalidate::Uri,
                Some(v) => {
                    let ip = format!("{p}.invalidate_on_unsafe");
                    match self.scalar(&ip, v)?.to_ascii_lowercase().as_str() {
                        "on" | "true" | "yes" | "uri" => Invalidate::Uri,
                        "off" | "false" | "no" => Invalidate::Off,
                        "location" => Invalidate::Location,
                        other => {
                            return Err(self.err(
                                &ip,
                                format!("`{other}`: expected on (uri), location or off"),
                            ))
                        }
                    }
                }
            },
        })
    }

    fn symlinks(&self, p: &str, v: Option<&str>, default: SymlinkPolicy) -> R<SymlinkPolicy> {
        Ok(match v {
            None => default,
            Some("within_root") => SymlinkPolicy::WithinRoot,
            Some("follow") => SymlinkPolicy::Follow,
            Some(o) => {
                return Err(self.err(p, format!("`{o}`: expected `within_root` or `follow`")))
            }
        })
    }

    fn matcher(&self, p: &str, l: &RawLocation) -> R<(Matcher, String)> {
        let set: Vec<&str> = [
            ("exact", l.exact.is_some()),
            ("prefix", l.prefix.is_some()),
            ("regex", l.regex.is_some()),
            ("regex_i", l.regex_i.is_some()),
        ]
        .iter()
        .filter(|(_, s)| *s)
        .map(|(n, _)| *n)
        .collect();
        if set.len() != 1 {
            return Err(self.err(
                p,
                format!(
                "a location needs exactly one of `exact`, `prefix`, `regex`, `regex_i` (found {})",
                if set.is_empty() { "none".to_string() } else { set.join(", ") }
            ),
            ));
        }
        let no_regex = self.flag(&format!("{p}.no_regex"), l.no_regex.as_ref(), false)?;
        if no_regex && l.prefix.is_none() {
            return Err(self.key_err(
                &format!("{p}.no_regex"),
                "`no_regex` (NGINX `^~`) only applies to a `prefix` location",
            ));
        }
        let check_uri = |key: &str, s: &str| -> R<()> {
            if s.starts_with('/') {
                Ok(())
            } else {
                Err(self.err(&format!("{p}.{key}"), format!("`{s}` must start with `/`")))
            }
        };
        Ok(if let Some(e) = &l.exact {
            check_uri("exact", e)?;
            (Matcher::Exact(e.clone()), format!("= {e}"))
        } else if let Some(pre) = &l.prefix {
            check_uri("prefix", pre)?;
            let name = if no_regex {
                format!("^~ {pre}")
            } else {
                pre.clone()
            };
            (
                Matcher::Prefix {
                    prefix: pre.clone(),
                    no_regex,
                },
                name,
            )
        } else if let Some(r) = &l.regex {
            Regex::new(r)
                .map_err(|e| self.err(&format!("{p}.regex"), format!("invalid regex: {e}")))?;
            (
                Matcher::Regex {
                    pattern: r.clone(),
                    case_insensitive: false,
                },
                format!("~ {r}"),
            )
        } else {
            let r = l.regex_i.as_deref().unwrap_or_default();
            Regex::new(&format!("(?i){r}"))
                .map_err(|e| self.err(&format!("{p}.regex_i"), format!("invalid regex: {e}")))?;
            (
                Matcher::Regex {
                    pattern: r.to_string(),
                    case_insensitive: true,
                },
                format!("~* {r}"),
            )
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn location(
        &self,
        p: &str,
        l: &RawLocation,
        matcher: &Matcher,
        name: String,
        server: &ServerDefaults,
        upstreams: &mut Vec<Upstream>,
    ) -> R<Location> {
        let handlers: Vec<&str> = [
            ("root", l.root.is_some()),
            ("alias", l.alias.is_some()),
            ("proxy_pass", l.proxy_pass.is_some()),
        ]
        .iter()
        .filter(|(_, s)| *s)
        .map(|(n, _)| *n)
        .collect();
        if handlers.len() > 1 {
            return Err(self.key_err(
                &format!("{p}.{}", handlers[1]),
                format!(
                    "`{}` and `{}` cannot be combined in one location",
                    handlers[0], handlers[1]
                ),
            ));
        }
        let handler = if let Some(pp) = &l.proxy_pass {
            Handler::Proxy(self.proxy(p, pp, l, matcher, server, upstreams)?)
        } else {
            for key in ["buffering", "proxy_set_header"] {
                let present = match key {
                    "buffering" => l.buffering.is_some(),
                    _ => l.proxy_set_header.is_some(),
                };
                if present {
                    return Err(self.key_err(
                        &format!("{p}.{key}"),
                        format!("`{key}` needs `proxy_pass` in the same location"),
                    ));
                }
            }
            let doc_root = if let Some(a) = &l.alias {
                let prefix = match matcher {
                    Matcher::Exact(s) => s.clone(),
                    Matcher::Prefix { prefix, .. } => prefix.clone(),
                    Matcher::Regex { .. } => {
                        return Err(self.key_err(
                            &format!("{p}.alias"),
                            "`alias` in a regex location is not supported; use `root`",
                        ))
                    }
                };
                DocRoot::Alias {
                    dir: self.path(&format!("{p}.alias"), a)?,
                    prefix,
                }
            } else if let Some(r) = &l.root {
                DocRoot::Root(self.path(&format!("{p}.root"), r)?)
            } else if let Some(r) = &server.root {
                DocRoot::Root(r.clone())
            } else {
                return Err(self.err(
                    p,
                    "a location needs `root`, `alias` or `proxy_pass` (or a server-level `root`)",
                ));
            };
            Handler::Static(StaticConfig {
                doc_root,
                index: l
                    .index
                    .clone()
                    .or_else(|| server.index.clone())
                    .unwrap_or_else(|| vec!["index.html".to_string()]),
                symlinks: self.symlinks(
                    &format!("{p}.symlinks"),
                    l.symlinks.as_deref(),
                    server.symlinks,
                )?,
                if_modified_since: server.ims,
            })
        };

        // headers: NGINX inheritance — a level with its own list does not inherit the outer one
        let add_src = l
            .add_header
            .as_ref()
            .map(|a| (a, format!("{p}.add_header")))
            .or_else(|| server.add_header.map(|a| (a, "add_header".to_string())));
        let mut add = Vec::new();
        if let Some((map, ap)) = add_src {
            for (k, v) in map {
                let hp = format!("{ap}.{k}");
                let (value, always) = match v {
                    RawAddHeader::Plain(v) => (v, false),
                    RawAddHeader::Full { value, always } => (
                        value,
                        self.flag(&format!("{hp}.always"), always.as_ref(), false)?,
                    ),
                };
                let raw_s = self.scalar(&hp, value)?;
                add.push(AddHeader {
                    name: self.header_name(&hp, k)?,
                    case: bytes::Bytes::from(k.to_string()),
                    value: self.template(&hp, &raw_s)?,
                    always,
                });
            }
        }
        let set_src = l
            .set_header
            .as_ref()
            .map(|a| (a, format!("{p}.set_header")))
            .or_else(|| server.set_header.map(|a| (a, "set_header".to_string())));
        let mut set = Vec::new();
        if let Some((map, sp)) = set_src {
            for (k, v) in map {
                let hp = format!("{sp}.{k}");
                let s = self.scalar(&hp, v)?;
                set.push(AddHeader {
                    name: self.header_name(&hp, k)?,
                    case: bytes::Bytes::from(k.to_string()),
                    value: self.template(&hp, &s)?,
                    always: false,
                });
            }
        }
        let mut hide = Vec::new();
        for (src, hp) in [
            (server.hide_header, "hide_header".to_string()),
            (l.hide_header.as_ref(), format!("{p}.hide_header")),
        ] {
            for (i, h) in src.into_iter().flatten().enumerate() {
                hide.push(self.header_name(&format!("{hp}[{i}]"), h)?);
            }
        }
        let expires = l
            .expires
            .as_ref()
            .map(|v| self.expires(&format!("{p}.expires"), v))
            .transpose()?;
        let mut expires_if = Vec::new();
        if let Some(list) = &l.expires_if {
            let list: Vec<&raw::RawExpiresIf> = match list {
                raw::OneOrMany::One(e) => vec![e],
                raw::OneOrMany::Many(v) => v.iter().collect(),
            };
            let multi = list.len() > 1 || matches!(l.expires_if, Some(raw::OneOrMany::Many(_)));
            for (i, e) in list.into_iter().enumerate() {
                let ep = if multi {
                    format!("{p}.expires_if[{i}]")
                } else {
                    format!("{p}.expires_if")
                };
                let re = Regex::new(&e.path).map_err(|err| {
                    self.err(&format!("{ep}.path"), format!("invalid regex: {err}"))
                })?;
                expires_if.push((re, self.expires(&format!("{ep}.expires"), &e.expires)?));
            }
        }
        Ok(Location {
            name,
            handler,
            headers: HeaderRules {
                expires,
                expires_if,
                add,
                set,
                hide,
            },
            intercept_errors: self.flag(
                &format!("{p}.intercept_errors"),
                l.intercept_errors.as_ref(),
                server.intercept_errors,
            )?,
            cache: None,
            compress: None,
        })
    }

    /// The compression settings from a `gzip:` value (`off`, `on`, or a mapping) plus the
    /// server's `brotli:`, `zstd:` and `static:`. `None` when no encoding is enabled.
    fn compress(
        &self,
        raw: &RawConfig,
        gzip: Option<&Value>,
        gp: &str,
        outer: Option<&CompressConfig>,
    ) -> R<Option<Arc<CompressConfig>>> {
        let g: Option<raw::RawGzip> = match gzip {
            None => None,
            Some(Value::Mapping(_)) => Some(
                serde_yaml::from_value(gzip.cloned().unwrap_or(Value::Null))
                    .map_err(|e| self.err(gp, strip_position(&e.to_string())))?,
            ),
            Some(v) => {
                let on = self.flag(gp, Some(v), false)?;
                if !on {
                    // `gzip: off` in a location turns every encoding off there
                    if outer.is_some() {
                        return Ok(None);
                    }
                    None
                } else {
                    Some(raw::RawGzip {
                        enabled: Some(Value::Bool(true)),
                        min_length: None,
                        level: None,
                        types: None,
                        vary: None,
                        disable: None,
                        proxied: None,
                    })
                }
            }
        };
        let base = outer.cloned();
        let gzip_on = match &g {
            Some(g) => self.flag(&format!("{gp}.enabled"), g.enabled.as_ref(), true)?,
            None => base.as_ref().is_some_and(|b| b.gzip.is_some()),
        };
        let level = |e: Option<u32>, def: u32, max: u32, path: &str| -> R<u32> {
            match e {
                Some(l) if l > max => Err(self.err(path, format!("level {l} is above {max}"))),
                Some(l) => Ok(l),
                None => Ok(def),
            }
        };
        let gzip_level = if gzip_on {
            Some(level(
                g.as_ref()
                    .and_then(|g| g.level)
                    .or(base.as_ref().and_then(|b| b.gzip)),
                1,
                9,
                &format!("{gp}.level"),
            )?)
        } else {
            None
        };
        let codec = |c: Option<&raw::RawCodec>, key: &str, def: u32, max: u32| -> R<Option<u32>> {
            match c {
                None => Ok(None),
                Some(c) => {
                    if self.flag(&format!("{key}.enabled"), c.enabled.as_ref(), true)? {
                        Ok(Some(level(c.level, def, max, &format!("{key}.level"))?))
                    } else {
                        Ok(None)
                    }
                }
            }
        };
        let brotli = codec(raw.brotli.as_ref(), "brotli", 4, 11)?;
        let zstd = codec(raw.zstd.as_ref(), "zstd", 3, 19)?;
        let min_length = match g.as_ref().and_then(|g| g.min_length.as_ref()) {
            Some(v) => {
                let mp = format!("{gp}.min_length");
                units::parse_size(&self.scalar(&mp, v)?).map_err(|e| self.err(&mp, e))?
            }
            None => base.as_ref().map_or(20, |b| b.min_length),
        };
        let (types, all_types) = match g.as_ref().and_then(|g| g.types.as_ref()) {
            Some(t) => (
                t.iter()
                    .map(|t| t.trim().to_ascii_lowercase())
                    .collect::<Vec<_>>(),
                t.iter().any(|t| t.trim() == "*"),
            ),
            None => base
                .as_ref()
                .map_or((Vec::new(), false), |b| (b.types.clone(), b.all_types)),
        };
        let vary = match g.as_ref().and_then(|g| g.vary.as_ref()) {
            Some(v) => self.flag(&format!("{gp}.vary"), Some(v), false)?,
            None => base.as_ref().is_some_and(|b| b.vary),
        };
        let disable =
            match g.as_ref().and_then(|g| g.disable.as_ref()) {
                Some(d) if d == "msie6" => {
                    Some(Regex::new(r"MSIE [1-6]\.").map_err(|e| self.err(gp, e))?)
                }
                Some(d) => Some(Regex::new(d).map_err(|e| {
                    self.err(&format!("{gp}.disable"), format!("invalid regex: {e}"))
                })?),
                None => base.as_ref().and_then(|b| b.disable.clone()),
            };
        let proxied = match g.as_ref().and_then(|g| g.proxied.as_deref()) {
            Some("any") => true,
            Some("off") => false,
            Some(o) => {
                return Err(self.err(
                    &format!("{gp}.proxied"),
                    format!("`{o}`: expected any or off"),
                ))
            }
            None => base.as_ref().is_none_or(|b| b.proxied),
        };
        let (precompressed, memory_cache) = match &raw.static_files {
            Some(st) => (
                self.flag("static.precompressed", st.precompressed.as_ref(), false)?,
                self.size("static.memory_cache", st.memory_cache.as_ref())?
                    .unwrap_or(64 << 20),
            ),
            None => (false, 64 << 20),
        };
        let c = CompressConfig {
            gzip: gzip_level,
            brotli,
            zstd,
            min_length,
            types,
            all_types,
            vary,
            disable,
            proxied,
            precompressed,
            memory_cache,
        };
        Ok(if c.any_enabled() || c.precompressed {
            Some(Arc::new(c))
        } else {
            None
        })
    }

    fn expires(&self, p: &str, v: &Value) -> R<Expires> {
        let s = self.scalar(p, v)?;
        Ok(match s.as_str() {
            "off" | "false" => Expires::Off,
            "epoch" => Expires::Epoch,
            "max" => Expires::Max,
            other => {
                let (neg, t) = match other.strip_prefix('-') {
                    Some(t) => (true, t),
                    None => (false, other),
                };
                let d = units::parse_duration(t)
                    .map_err(|e| self.err(p, format!("{e}, or `epoch`, `max`, `off`")))?;
                if neg {
                    Expires::Epoch
                } else {
                    Expires::After(d)
                }
            }
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn proxy(
        &self,
        p: &str,
        pp: &str,
        l: &RawLocation,
        matcher: &Matcher,
        server: &ServerDefaults,
        upstreams: &mut Vec<Upstream>,
    ) -> R<ProxyConfig> {
        let pk = format!("{p}.proxy_pass");
        let pp = self.expand(&pk, pp)?;
        let rest = if let Some(r) = pp.strip_prefix("http://") {
            r
        } else if pp.starts_with("https://") {
            return Err(self.err(&pk, "https upstreams are not supported (outrigger is a loopback sidecar; build with TLS to add them)"));
        } else {
            return Err(self.err(&pk, format!("`{pp}`: expected `http://UPSTREAM[/uri]`")));
        };
        let (host, uri) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i..])),
            None => (rest, None),
        };
        if host.is_empty() {
            return Err(self.err(&pk, format!("`{pp}`: missing upstream name")));
        }
        let upstream = match upstreams.iter().position(|u| u.name == host) {
            Some(i) => i,
            None => {
                if !host.contains(':') {
                    return Err(self.err(&pk, format!("unknown upstream `{host}` (define it under `upstreams:` or write `host:port`)")));
                }
                let addr = resolve(host)
                    .map_err(|e| self.err(&pk, format!("unknown upstream `{host}`: {e}")))?;
                let sixty = Duration::from_secs(60);
                upstreams.push(make_upstream(
                    host, addr, host, sixty, sixty, sixty, sixty, 128,
                ));
                upstreams.len() - 1
            }
        };
        let rewrite = match uri {
            None => None,
            Some(u) => {
                let prefix = match matcher {
                    Matcher::Exact(s) => s.clone(),
                    Matcher::Prefix { prefix, .. } => prefix.clone(),
                    Matcher::Regex { .. } => return Err(self.err(&pk, "`proxy_pass` cannot have a URI part in a regex location (NGINX forbids it too)")),
                };
                Some((prefix, u.to_string()))
            }
        };
        let src = l
            .proxy_set_header
            .as_ref()
            .map(|m| (m, format!("{p}.proxy_set_header")))
            .or_else(|| {
                server
                    .proxy_set_header
                    .map(|m| (m, "proxy_set_header".to_string()))
            });
        let mut set_headers = Vec::new();
        if let Some((map, hp)) = src {
            for (k, v) in map {
                let kp = format!("{hp}.{k}");
                let s = self.scalar(&kp, v)?;
                set_headers.push((self.header_name(&kp, k)?, self.template(&kp, &s)?));
            }
        }
        if !set_headers.iter().any(|(n, _)| n == http::header::HOST) {
            set_headers.push((
                http::header::HOST,
                Template::parse("$proxy_host").map_err(|e| self.err(&pk, e))?,
            ));
        }
        debug_assert!(set_headers.iter().all(|(_, t)| !t.uses(&Var::Status)));
        Ok(ProxyConfig {
            upstream,
            rewrite,
            set_headers,
            buffering: self.flag(&format!("{p}.buffering"), l.buffering.as_ref(), true)?,
        })
    }
}

struct ServerDefaults<'a> {
    root: Option<PathBuf>,
    index: Option<Vec<String>>,
    proxy_set_header: Option<&'a indexmap::IndexMap<String, Value>>,
    add_header: Option<&'a indexmap::IndexMap<String, RawAddHeader>>,
    set_header: Option<&'a indexmap::IndexMap<String, Value>>,
    hide_header: Option<&'a Vec<String>>,
    intercept_errors: bool,
    symlinks: SymlinkPolicy,
    ims: ImsMode,
}

fn resolve(s: &str) -> Result<SocketAddr, String> {
    if !s.contains(':') {
        return Err(format!("`{s}` needs a port (`host:port`)"));
    }
    s.to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{s}`: {e}"))?
        .next()
        .ok_or_else(|| format!("`{s}` resolves to no address"))
}

#[allow(clippy::too_many_arguments)]
fn make_upstream(
    name: &str,
    addr: SocketAddr,
    proxy_host: &str,
    connect: Duration,
    read: Duration,
    send: Duration,
    idle: Duration,
    keepalive: usize,
) -> Upstream {
    let mut peer = HttpPeer::new(addr, false, String::new());
    peer.options.connection_timeout = Some(connect);
    peer.options.total_connection_timeout = Some(connect);
    peer.options.read_timeout = Some(read);
    peer.options.write_timeout = Some(send);
    peer.options.idle_timeout = Some(idle);
    Upstream {
        name: name.to_string(),
        addr,
        proxy_host: proxy_host.to_string(),
        peer,
        keepalive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(src: &str) -> Result<Config, ConfigError> {
        Config::from_str(src, Path::new("/etc/outrigger/test.yaml"))
    }

    #[test]
    fn errors_name_line_and_key() {
        let e = load("listen: [\"127.0.0.1:1\"]\nlocations:\n  - prefix: /\n    root: /tmp\n  - prefix: /api/\n    proxy_pass: http://nope/\n").unwrap_err();
        assert_eq!((e.line, e.column), (6, 17), "{e}");
        assert!(e.to_string().contains("locations[1].proxy_pass"), "{e}");
        assert!(e.to_string().contains("unknown upstream `nope`"), "{e}");

        let e = load("listen: [\"127.0.0.1:1\"]\nupstreams:\n  a: {address: \"127.0.0.1:9\", read_timeout: 10x}\nlocations: []\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.to_string().contains("upstreams.a.read_timeout"), "{e}");

        let e =
            load("listen: [\"127.0.0.1:1\"]\nlocations:\n  - regex: '(unclosed'\n    root: /tmp\n")
                .unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.to_string().contains("invalid regex"), "{e}");

        let e = load("listen: [\"127.0.0.1:1\"]\nbogus: 1\nlocations: []\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn relative_paths_resolve_against_config_dir() {
        let c = load("listen: [\"127.0.0.1:1\"]\nlocations:\n  - prefix: /\n    root: ../static\n")
            .unwrap();
        match &c.locations[0].handler {
            Handler::Static(s) => match &s.doc_root {
                DocRoot::Root(r) => assert_eq!(r, Path::new("/etc/outrigger/../static")),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }
}
