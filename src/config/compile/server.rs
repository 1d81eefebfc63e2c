//! Server-wide directives: `listen`, `admin`, `reload`, `threads`, `pid_file`, `grace_period`,
//! `client_write_buffer`, `send_timeout`, `client_header_timeout`, `file_cache`,
//! `shutdown_delay`, `error_log`, `access_log`, `error_pages`, `types`, `default_type`,
//! `server_name`.

use super::{status_key, Compiler, Result};
use crate::config::model::{
    AccessLogConfig, AdminConfig, ErrorLogConfig, Handler, Location, LogTarget,
};
use crate::config::raw::{RawAccessLog, RawAdmin, RawConfig, RawErrorLog, RawLogFormat, RawReload};
use crate::router::Router;
use crate::template::{Escape, Template};
use indexmap::IndexMap;
use serde_yaml::Value;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// The address a bare port in `listen` binds (NGINX `listen 80`: every IPv4 address).
const ANY_ADDRESS: &str = "0.0.0.0";
/// `admin.listen` when `admin` is not written.
const DEFAULT_ADMIN_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 9145);
/// `reload.watch`: the config file is checked for changes.
const DEFAULT_RELOAD_WATCH: bool = true;
/// `reload.interval`.
const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// `threads` (NGINX `worker_processes 1`).
const DEFAULT_THREADS: usize = 1;
/// The most `threads` accepted.
const MAX_THREADS: usize = 1024;
/// `grace_period`.
const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);
/// `client_write_buffer`.
const DEFAULT_CLIENT_WRITE_BUFFER: u64 = 8 * 1024;
/// The largest `client_write_buffer` accepted (the error says "1m").
const MAX_CLIENT_WRITE_BUFFER: usize = 1 << 20;
/// NGINX `send_timeout` and `client_header_timeout`.
const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// `file_cache`.
const DEFAULT_FILE_CACHE: u64 = 32 << 20;
/// `shutdown_delay`: none.
const DEFAULT_SHUTDOWN_DELAY: Duration = Duration::ZERO;
/// `error_log.level` (NGINX `error_log`'s level; its own default is `error`).
const DEFAULT_ERROR_LOG_LEVEL: &str = "warn";
/// `error_log.target` (NGINX `error_log stderr`).
const DEFAULT_ERROR_LOG_TARGET: &str = "stderr";
/// `access_log.format` (NGINX `access_log path [format]`).
const DEFAULT_LOG_FORMAT: &str = "combined";
/// `access_log.path`.
const DEFAULT_ACCESS_LOG_PATH: &str = "stdout";
/// NGINX's predefined `combined` log format.
const NGINX_COMBINED: &str =
    "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\"";
/// The built-in `json` format: NGINX's variables as keys, every value a JSON string (escaped
/// with `escape: json`, so a line is valid JSON whatever the client sends).
const JSON_FORMAT: &str = concat!(
    r#"{"time_iso8601":"$time_iso8601","msec":"$msec","request_id":"$request_id","#,
    r#""connection":"$connection","remote_addr":"$remote_addr","remote_user":"$remote_user","#,
    r#""request":"$request","request_method":"$request_method","request_uri":"$request_uri","#,
    r#""server_protocol":"$server_protocol","host":"$host","status":"$status","#,
    r#""body_bytes_sent":"$body_bytes_sent","bytes_sent":"$bytes_sent","#,
    r#""request_time":"$request_time","http_referer":"$http_referer","#,
    r#""http_user_agent":"$http_user_agent","http_x_forwarded_for":"$http_x_forwarded_for","#,
    r#""upstream_addr":"$upstream_addr","upstream_status":"$upstream_status","#,
    r#""upstream_response_time":"$upstream_response_time","#,
    r#""upstream_cache_status":"$upstream_cache_status"}"#
);
/// NGINX `default_type`.
const DEFAULT_TYPE: &str = "application/octet-stream";
/// NGINX `server_name`: `$host` when the request names no host.
const DEFAULT_SERVER_NAME: &str = "localhost";

impl Compiler {
    /// `listen`: one address or a list of them, each `addr:port` or a bare port.
    pub(super) fn listen(&self, v: &Value) -> Result<Vec<SocketAddr>> {
        let listen = self.listen_addresses("listen", v)?;
        if listen.is_empty() {
            return Err(self.err("listen", "at least one address is required"));
        }
        Ok(listen)
    }

    /// The addresses of a `listen` value at `at`: a scalar (`8080`, `"127.0.0.1:8080"`) is a
    /// list of one, as NGINX's `listen 8080;` is written.
    fn listen_addresses(&self, at: &str, v: &Value) -> Result<Vec<SocketAddr>> {
        match v {
            Value::Sequence(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| self.listen_address(&format!("{at}[{i}]"), v))
                .collect(),
            v => Ok(vec![self.listen_address(at, v)?]),
        }
    }

    /// One listen address at `at`: `addr:port`, or a bare port on [`ANY_ADDRESS`].
    fn listen_address(&self, at: &str, v: &Value) -> Result<SocketAddr> {
        let s = self.scalar(at, v)?;
        let s = if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
            format!("{ANY_ADDRESS}:{s}")
        } else {
            s
        };
        socket_addr(&s).ok_or_else(|| {
            self.err(
                at,
                format!("invalid listen address `{s}` (expected `addr:port` or a port)"),
            )
        })
    }

    /// `admin`: `off` or `{listen: addr:port}` (or a bare port); on at
    /// [`DEFAULT_ADMIN_LISTEN`] when not written.
    pub(super) fn admin(&self, v: Option<&Value>) -> Result<Option<AdminConfig>> {
        let Some(v) = v else {
            return Ok(Some(AdminConfig {
                listen: DEFAULT_ADMIN_LISTEN,
            }));
        };
        let listen = match v {
            Value::Mapping(_) => {
                let admin: RawAdmin = self.mapping("admin", v)?;
                match self.listen_addresses("admin.listen", &admin.listen)?[..] {
                    [addr] => addr,
                    _ => return Err(self.err("admin.listen", "expected one address")),
                }
            }
            _ if !self.flag("admin", Some(v), false)? => return Ok(None),
            _ => return Err(self.err("admin", "expected `off` or `{listen: addr:port}`")),
        };
        Ok(Some(AdminConfig { listen }))
    }

    /// `reload`: how often the file is checked (`None`: only on SIGHUP).
    pub(super) fn reload_interval(&self, reload: Option<&RawReload>) -> Result<Option<Duration>> {
        let Some(reload) = reload else {
            return Ok(Some(DEFAULT_RELOAD_INTERVAL));
        };
        if !self.flag("reload.watch", reload.watch.as_ref(), DEFAULT_RELOAD_WATCH)? {
            return Ok(None);
        }
        let interval = reload.interval.as_ref();
        Ok(Some(self.duration(
            "reload.interval",
            interval,
            DEFAULT_RELOAD_INTERVAL,
        )?))
    }

    /// `threads`: a number or `auto` (one per CPU).
    pub(super) fn threads(&self, v: Option<&Value>) -> Result<usize> {
        let Some(v) = v else {
            return Ok(DEFAULT_THREADS);
        };
        let s = self.scalar("threads", v)?;
        if s == "auto" {
            return Ok(std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1));
        }
        match s.parse::<usize>() {
            Ok(n) if (1..=MAX_THREADS).contains(&n) => Ok(n),
            _ => Err(self.err(
                "threads",
                format!("expected `auto` or a number from 1 to {MAX_THREADS}, got `{s}`"),
            )),
        }
    }

    /// `pid_file`. An empty value (e.g. `${OUTRIGGER_PID_FILE:-}`) means no pid file.
    pub(super) fn pid_file(&self, v: Option<&str>) -> Result<Option<PathBuf>> {
        match v.map(|file| self.expand("pid_file", file)).transpose()? {
            Some(file) if !file.is_empty() => Ok(Some(self.path("pid_file", &file)?)),
            _ => Ok(None),
        }
    }

    /// `grace_period`.
    pub(super) fn grace_period(&self, v: Option<&Value>) -> Result<Duration> {
        self.duration("grace_period", v, DEFAULT_GRACE_PERIOD)
    }

    /// `client_write_buffer`: bytes gathered per client connection before a write.
    pub(super) fn client_write_buffer(&self, v: Option<&Value>) -> Result<usize> {
        let bytes = self
            .size("client_write_buffer", v)?
            .unwrap_or(DEFAULT_CLIENT_WRITE_BUFFER);
        usize::try_from(bytes)
            .ok()
            .filter(|n| *n <= MAX_CLIENT_WRITE_BUFFER)
            .ok_or_else(|| self.err("client_write_buffer", "at most 1m"))
    }

    /// `send_timeout` and `client_header_timeout`: NGINX's client timeouts, with its default.
    pub(super) fn client_timeout(&self, key: &str, v: Option<&Value>) -> Result<Duration> {
        let d = self.duration(key, v, DEFAULT_CLIENT_TIMEOUT)?;
        if d.is_zero() {
            return Err(self.err(key, "must be more than 0"));
        }
        Ok(d)
    }

    /// `file_cache`: bytes of small static files kept in memory.
    pub(super) fn file_cache(&self, v: Option<&Value>) -> Result<u64> {
        Ok(self.size("file_cache", v)?.unwrap_or(DEFAULT_FILE_CACHE))
    }

    /// `shutdown_delay`.
    pub(super) fn shutdown_delay(&self, v: Option<&Value>) -> Result<Duration> {
        self.duration("shutdown_delay", v, DEFAULT_SHUTDOWN_DELAY)
    }

    /// `error_log`: `level` in NGINX's names, `target` stdout, stderr or a file.
    pub(super) fn error_log(&self, error_log: Option<&RawErrorLog>) -> Result<ErrorLogConfig> {
        let (level, target) = match error_log {
            Some(e) => (e.level.as_deref(), e.target.as_deref()),
            None => (None, None),
        };
        let level = match level.unwrap_or(DEFAULT_ERROR_LOG_LEVEL) {
            "debug" => log::LevelFilter::Debug,
            "info" | "notice" => log::LevelFilter::Info,
            "warn" => log::LevelFilter::Warn,
            "error" | "crit" | "alert" | "emerg" => log::LevelFilter::Error,
            "off" => log::LevelFilter::Off,
            other => return Err(self.err("error_log.level", format!("unknown level `{other}` (debug, info, notice, warn, error, crit, alert, emerg, off)"))),
        };
        let target = target.unwrap_or(DEFAULT_ERROR_LOG_TARGET);
        let target = self.log_target("error_log.target", target)?;
        Ok(ErrorLogConfig { level, target })
    }

    /// `access_log`: `off` or `{format, path}`; `format` names a `log_formats` entry, one of
    /// the built-in `combined` and `json`, or is a template itself.
    pub(super) fn access_log(&self, raw: &RawConfig) -> Result<Option<AccessLogConfig>> {
        // every named format is checked, used or not (as NGINX's `log_format`)
        let mut formats = raw
            .log_formats
            .iter()
            .map(|(name, v)| Ok((name.as_str(), self.log_format(name, v)?)))
            .collect::<Result<Vec<_>>>()?;
        let (format, path) = match &raw.access_log {
            None => return Ok(None),
            Some(Value::String(s)) if s == "off" => return Ok(None),
            Some(Value::Bool(false)) => return Ok(None),
            Some(v @ Value::Mapping(_)) => {
                let a: RawAccessLog = self.mapping("access_log", v)?;
                (a.format, a.path)
            }
            Some(_) => {
                return Err(self.err(
                    "access_log",
                    "expected `off` or `{format: ..., path: stdout|stderr|FILE}`",
                ))
            }
        };
        let format = format.unwrap_or_else(|| DEFAULT_LOG_FORMAT.to_string());
        let (format, escape) = match formats.iter().position(|(name, _)| *name == format) {
            Some(i) => formats.swap_remove(i).1,
            None if format == DEFAULT_LOG_FORMAT => (
                self.template("access_log.format", NGINX_COMBINED)?,
                Escape::Default,
            ),
            None if format == "json" => (
                self.template("access_log.format", JSON_FORMAT)?,
                Escape::Json,
            ),
            None => (
                self.template("access_log.format", &format)?,
                Escape::Default,
            ),
        };
        let path = path.as_deref().unwrap_or(DEFAULT_ACCESS_LOG_PATH);
        let target = self.log_target("access_log.path", path)?;
        Ok(Some(AccessLogConfig {
            format,
            escape,
            target,
        }))
    }

    /// A `log_formats` entry: `'FORMAT'` (escaped as NGINX's `escape=default`) or
    /// `{format: 'FORMAT', escape: default|json|none}`.
    fn log_format(&self, name: &str, v: &Value) -> Result<(Template, Escape)> {
        let at = format!("log_formats.{name}");
        if let Value::Mapping(_) = v {
            let f: RawLogFormat = self.mapping(&at, v)?;
            let escape = match f.escape.as_deref() {
                None => Escape::Default,
                Some(e) => Escape::from_name(e).ok_or_else(|| {
                    self.err(
                        &format!("{at}.escape"),
                        format!("`{e}`: expected default, json or none"),
                    )
                })?,
            };
            return Ok((self.template(&format!("{at}.format"), &f.format)?, escape));
        }
        Ok((self.template(&at, &self.scalar(&at, v)?)?, Escape::Default))
    }

    /// A log's `stdout`, `stderr` or file.
    fn log_target(&self, at: &str, s: &str) -> Result<LogTarget> {
        match std_stream(s) {
            Some(stream) => Ok(stream),
            None => Ok(LogTarget::File(self.path(at, s)?)),
        }
    }

    /// `error_pages`: `"CODES": /uri`, each URI served by a static location (checked here).
    pub(super) fn error_pages(
        &self,
        pages: &IndexMap<Value, String>,
        router: &Router,
        locations: &[Location],
    ) -> Result<HashMap<u16, String>> {
        let mut error_pages = HashMap::new();
        for (key, uri) in pages {
            let codes = status_key(key).ok_or_else(|| {
                self.err(
                    "error_pages",
                    "keys are status codes, e.g. `\"500 502 503 504\"`",
                )
            })?;
            let at = format!("error_pages.{codes}");
            for code in codes.split_whitespace() {
                let status: u16 = code
                    .parse()
                    .ok()
                    .filter(|status| (300..=599).contains(status))
                    .ok_or_else(|| {
                        self.key_err(
                            &at,
                            format!("`{code}` is not a status code from 300 to 599"),
                        )
                    })?;
                self.error_page_uri(&at, uri, router, locations)?;
                error_pages.insert(status, uri.clone());
            }
        }
        Ok(error_pages)
    }

    /// An error page's URI must route to a static location.
    fn error_page_uri(
        &self,
        at: &str,
        uri: &str,
        router: &Router,
        locations: &[Location],
    ) -> Result<()> {
        if !uri.starts_with('/') {
            return Err(self.err(
                at,
                format!("error page `{uri}` must be a URI starting with `/`"),
            ));
        }
        match router.find(uri).map(|i| &locations[i].handler) {
            Some(Handler::Static(_)) => Ok(()),
            Some(Handler::Proxy(_)) => Err(self.err(at, format!("error page `{uri}` is routed to a proxy location; it must be served by a `root`/`alias` location"))),
            None => Err(self.err(at, format!("error page `{uri}` matches no location"))),
        }
    }

    /// `server_name`: `$host` when a request names none.
    pub(super) fn server_name(&self, v: Option<&str>) -> Result<String> {
        match v {
            Some(name) => self.expand("server_name", name),
            None => Ok(DEFAULT_SERVER_NAME.to_string()),
        }
    }
}

/// `types`: file extension (lowercase, without the dot) → media type.
pub(super) fn types(types: &IndexMap<String, String>) -> HashMap<String, String> {
    types
        .iter()
        .map(|(ext, media_type)| {
            let ext = ext.trim_start_matches('.').to_ascii_lowercase();
            (ext, media_type.clone())
        })
        .collect()
}

/// `default_type`: the media type of a file whose extension is not in `types`.
pub(super) fn default_type(v: Option<&str>) -> String {
    v.unwrap_or(DEFAULT_TYPE).to_string()
}

/// `stdout` or `stderr` (also as `/dev/stdout`, `/dev/stderr`).
fn std_stream(s: &str) -> Option<LogTarget> {
    match s {
        "stdout" | "/dev/stdout" => Some(LogTarget::Stdout),
        "stderr" | "/dev/stderr" => Some(LogTarget::Stderr),
        _ => None,
    }
}

/// The first address `s` resolves to.
fn socket_addr(s: &str) -> Option<SocketAddr> {
    s.to_socket_addrs().ok().and_then(|mut addrs| addrs.next())
}
