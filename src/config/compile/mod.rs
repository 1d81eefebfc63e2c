//! Raw YAML → [`Config`]: the [`Compiler`], its typed readers of single values (scalar, flag,
//! duration, size, path, template, header name), and the order in which the sections are
//! compiled. Each section lives in the file named after its concern.
//!
//! Every reader takes `at`, the YAML path of the value it reads (`locations[2].cache.key`):
//! errors name it and `span` turns it into a line and column.

mod buffers;
mod cache;
mod client;
mod compression;
mod disk;
mod locations;
mod server;
mod upstreams;

pub use cache::DEFAULT_MEMORY_TIER;

use super::error::{strip_position, ConfigError};
use super::model::{Config, SymlinkPolicy};
use super::raw::{RawAddHeader, RawConfig};
use super::span::SpanIndex;
use super::{env, units};
use crate::router::Matcher;
use crate::template::Template;
use http::HeaderName;
use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde_yaml::Value;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// Compiles one config file; every error it makes names the file, line and column.
pub(super) struct Compiler {
    /// Relative paths resolve against this: the config file's directory.
    base: PathBuf,
    spans: SpanIndex,
    file: PathBuf,
}

impl Compiler {
    /// A compiler for `src`, read from `file`.
    pub(super) fn new(src: &str, file: &Path) -> Compiler {
        let base = file
            .parent()
            .map(Path::to_path_buf)
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        Compiler {
            base,
            spans: SpanIndex::new(src),
            file: file.to_path_buf(),
        }
    }

    /// The whole config. The order of the steps is the order in which errors are found.
    pub(super) fn compile(&self, raw: &RawConfig) -> Result<Config> {
        let listen = self.listen(&raw.listen)?;
        let admin = self.admin(raw.admin.as_ref())?;
        let reload_interval = self.reload_interval(raw.reload.as_ref())?;
        let threads = self.threads(raw.threads.as_ref())?;
        let pid_file = self.pid_file(raw.pid_file.as_deref())?;
        let grace_period = self.grace_period(raw.grace_period.as_ref())?;
        let client_write_buffer = self.client_write_buffer(raw.client_write_buffer.as_ref())?;
        let send_timeout = self.client_timeout("send_timeout", raw.send_timeout.as_ref())?;
        let client_header_timeout =
            self.client_timeout("client_header_timeout", raw.client_header_timeout.as_ref())?;
        let client = self.client_limits(raw)?;
        let buffers = self.buffers(raw)?;
        let file_cache = self.file_cache(raw.file_cache.as_ref())?;
        let shutdown_delay = self.shutdown_delay(raw.shutdown_delay.as_ref())?;
        let error_log = self.error_log(raw.error_log.as_ref())?;
        let access_log = self.access_log(raw)?;

        let mut upstreams = self.upstreams(&raw.upstreams)?;
        let server_compress = self.compress(raw, raw.gzip.as_ref(), "gzip", None)?;
        let zones = self.zones(&raw.caches)?;
        let server = self.server_defaults(raw)?;
        let (locations, router) =
            self.locations(raw, &server, server_compress, &zones, &mut upstreams)?;
        let error_pages = self.error_pages(&raw.error_pages, &router, &locations)?;
        let server_name = self.server_name(raw.server_name.as_deref())?;
        let if_modified_since = self.if_modified_since(raw.if_modified_since.as_deref())?;
        let keepalive_pool = upstreams::keepalive_pool(&upstreams);

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
            client,
            buffers,
            file_cache,
            shutdown_delay,
            error_log,
            access_log,
            upstreams,
            zones,
            locations,
            router,
            error_pages,
            types: server::types(&raw.types),
            default_type: server::default_type(raw.default_type.as_deref()),
            server_name,
            if_modified_since,
            keepalive_pool,
            warnings: Vec::new(),
        })
    }

    /// An error at the value of `at`.
    fn err(&self, at: &str, msg: impl fmt::Display) -> ConfigError {
        self.error_at(self.spans.locate(at), at, msg)
    }

    /// An error at the key of `at` (the value may be absent or elsewhere).
    fn key_err(&self, at: &str, msg: impl fmt::Display) -> ConfigError {
        self.error_at(self.spans.locate_key(at), at, msg)
    }

    fn error_at(
        &self,
        (line, column): (usize, usize),
        at: &str,
        msg: impl fmt::Display,
    ) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line,
            column,
            message: format!("`{at}`: {msg}"),
        }
    }

    /// A mapping read into its raw type (for values that may also be a scalar like `off`).
    fn mapping<T: DeserializeOwned>(&self, at: &str, v: &Value) -> Result<T> {
        serde_yaml::from_value(v.clone()).map_err(|e| self.err(at, strip_position(&e.to_string())))
    }

    /// A scalar as a string, `${VAR}`-expanded.
    fn scalar(&self, at: &str, v: &Value) -> Result<String> {
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(self.err(at, "expected a single value")),
        };
        self.expand(at, &s)
    }

    fn expand(&self, at: &str, s: &str) -> Result<String> {
        env::expand(s).map_err(|e| self.err(at, e))
    }

    /// A boolean in NGINX's words too: `on`/`off`, `true`/`false`, `yes`/`no`.
    fn flag(&self, at: &str, v: Option<&Value>, default: bool) -> Result<bool> {
        let Some(v) = v else { return Ok(default) };
        match self.scalar(at, v)?.to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" => Ok(true),
            "off" | "false" | "no" => Ok(false),
            other => Err(self.err(at, format!("`{other}`: expected on/off (or true/false)"))),
        }
    }

    /// A time in NGINX units (`90d`, `1h30m`, `500ms`).
    fn duration(&self, at: &str, v: Option<&Value>, default: Duration) -> Result<Duration> {
        match v {
            None => Ok(default),
            Some(v) => {
                let s = self.scalar(at, v)?;
                units::parse_duration(&s).map_err(|e| self.err(at, e))
            }
        }
    }

    /// A size in NGINX units (`512k`, `10m`); `None` when not written.
    fn size(&self, at: &str, v: Option<&Value>) -> Result<Option<u64>> {
        match v {
            None => Ok(None),
            Some(v) => {
                let s = self.scalar(at, v)?;
                units::parse_size(&s).map(Some).map_err(|e| self.err(at, e))
            }
        }
    }

    /// NGINX's `NUMBER SIZE` of a buffers directive (`proxy_buffers 8 8k`): at least one
    /// buffer, `example` shown when the value is not of that shape.
    fn count_and_size(&self, at: &str, v: &Value, example: &str) -> Result<(u64, u64)> {
        let s = self.scalar(at, v)?;
        let mut words = s.split_whitespace();
        let (Some(count), Some(size), None) = (words.next(), words.next(), words.next()) else {
            return Err(self.err(
                at,
                format!("expected `NUMBER SIZE` (as `{example}`), got `{s}`"),
            ));
        };
        let count = count
            .parse::<u64>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| self.err(at, format!("`{count}`: expected a number of buffers")))?;
        let size = units::parse_size(size).map_err(|e| self.err(at, e))?;
        Ok((count, size))
    }

    /// A file system path, relative ones against the config file's directory.
    fn path(&self, at: &str, s: &str) -> Result<PathBuf> {
        let s = self.expand(at, s)?;
        if s.is_empty() {
            return Err(self.err(at, "empty path"));
        }
        let path = PathBuf::from(s);
        Ok(if path.is_absolute() {
            path
        } else {
            self.base.join(path)
        })
    }

    /// A `$variable` template.
    fn template(&self, at: &str, s: &str) -> Result<Template> {
        let s = self.expand(at, s)?;
        Template::parse(&s).map_err(|e| self.err(at, e))
    }

    /// A cache key template: none of its variables may vary from one request to the next
    /// whatever the request says, or be known only once the response is under way.
    fn key_template(&self, at: &str, s: &str) -> Result<Template> {
        let key = self.template(at, s)?;
        if key.unknown_before_response().is_none() {
            return Ok(key);
        }
        let bad = s
            .split('$')
            .skip(1)
            .filter_map(|t| {
                t.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .next()
            })
            .find(|name| {
                Template::parse(&format!("${name}"))
                    .is_ok_and(|t| t.unknown_before_response().is_some())
            })
            .unwrap_or_default();
        Err(self.err(
            at,
            format!("`${bad}` cannot be part of a cache key: its value is not known when the key is made, or differs for every request"),
        ))
    }

    /// A header name written as a mapping key (so an error points at the key).
    fn header_name(&self, at: &str, name: &str) -> Result<HeaderName> {
        HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| self.key_err(at, format!("invalid header name `{name}`")))
    }

    /// One `NAME: VALUE` header line of a mapping at `at`: its name and value template.
    fn header_line(&self, at: &str, name: &str, value: &Value) -> Result<(HeaderName, Template)> {
        let value = self.scalar(at, value)?;
        Ok((self.header_name(at, name)?, self.template(at, &value)?))
    }
}

/// The codes in a mapping key of status codes (`404`, `"500 502 503"`, `any`), as written;
/// `None` when the key is neither a string nor a number.
fn status_key(key: &Value) -> Option<String> {
    match key {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Server-level values a location inherits.
pub(super) struct ServerDefaults<'a> {
    root: Option<PathBuf>,
    index: Option<Vec<String>>,
    proxy_set_header: Option<&'a IndexMap<String, Value>>,
    add_header: Option<&'a IndexMap<String, RawAddHeader>>,
    set_header: Option<&'a IndexMap<String, Value>>,
    hide_header: Option<&'a Vec<String>>,
    intercept_errors: bool,
    client_max_body_size: Option<u64>,
    symlinks: SymlinkPolicy,
    /// `buffering` and `request_buffering` of the server, which locations inherit.
    buffering: bool,
    request_buffering: bool,
}

/// NGINX inheritance of a header list: a location with its own list does not inherit the
/// server's. The list with the YAML path it was written at.
fn inherit<'a, T>(
    at: &str,
    key: &str,
    own: Option<&'a T>,
    server: Option<&'a T>,
) -> Option<(&'a T, String)> {
    own.map(|list| (list, format!("{at}.{key}")))
        .or_else(|| server.map(|list| (list, key.to_string())))
}

/// The URI an `exact` or `prefix` location matches, which `alias` and a `proxy_pass` URI
/// replace; `None` for a regex location.
fn literal_prefix(matcher: &Matcher) -> Option<&str> {
    match matcher {
        Matcher::Exact(uri) => Some(uri),
        Matcher::Prefix { prefix, .. } => Some(prefix),
        Matcher::Regex { .. } => None,
    }
}
