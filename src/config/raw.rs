//! The YAML schema as written by users, deserialised with `deny_unknown_fields`. Scalars whose
//! meaning depends on units or the environment stay `Value`s here and are converted (with their
//! config path, for error positions) by `compile`.

use indexmap::IndexMap;
use serde::Deserialize;
use serde_yaml::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// One address or a list of them (`listen: 8080` as well as `listen: ["0.0.0.0:8080"]`).
    pub listen: Value,
    #[serde(default)]
    pub threads: Option<Value>,
    #[serde(default)]
    pub pid_file: Option<String>,
    #[serde(default)]
    pub grace_period: Option<Value>,
    #[serde(default)]
    pub client_write_buffer: Option<Value>,
    #[serde(default)]
    pub send_timeout: Option<Value>,
    #[serde(default)]
    pub client_header_timeout: Option<Value>,
    #[serde(default)]
    pub keepalive_timeout: Option<Value>,
    #[serde(default)]
    pub keepalive_requests: Option<Value>,
    #[serde(default)]
    pub large_client_header_buffers: Option<Value>,
    #[serde(default)]
    pub underscores_in_headers: Option<Value>,
    #[serde(default)]
    pub ignore_invalid_headers: Option<Value>,
    #[serde(default)]
    pub proxy_buffers: Option<Value>,
    #[serde(default)]
    pub proxy_max_temp_file_size: Option<Value>,
    #[serde(default)]
    pub proxy_temp_path: Option<String>,
    #[serde(default)]
    pub buffering: Option<Value>,
    #[serde(default)]
    pub request_buffering: Option<Value>,
    #[serde(default)]
    pub client_body_buffer_size: Option<Value>,
    #[serde(default)]
    pub client_body_temp_path: Option<String>,
    #[serde(default)]
    pub client_body_timeout: Option<Value>,
    #[serde(default)]
    pub file_cache: Option<Value>,
    #[serde(default)]
    pub shutdown_delay: Option<Value>,
    #[serde(default)]
    pub error_log: Option<RawErrorLog>,
    #[serde(default)]
    pub log_formats: IndexMap<String, Value>,
    #[serde(default)]
    pub access_log: Option<Value>,
    #[serde(default)]
    pub upstreams: IndexMap<String, RawUpstream>,
    #[serde(default)]
    pub caches: IndexMap<String, RawZone>,
    #[serde(default)]
    pub admin: Option<Value>,
    #[serde(default)]
    pub reload: Option<RawReload>,
    #[serde(default)]
    pub gzip: Option<Value>,
    #[serde(default)]
    pub brotli: Option<RawCodec>,
    #[serde(default)]
    pub zstd: Option<RawCodec>,
    #[serde(default, rename = "static")]
    pub static_files: Option<RawStatic>,
    #[serde(default)]
    pub server_name: Option<String>,
    #[serde(default)]
    pub root: Option<String>,
    #[serde(default)]
    pub index: Option<Vec<String>>,
    #[serde(default)]
    pub types: IndexMap<String, String>,
    #[serde(default)]
    pub default_type: Option<String>,
    #[serde(default)]
    pub proxy_set_header: Option<IndexMap<String, Value>>,
    #[serde(default)]
    pub add_header: Option<IndexMap<String, RawAddHeader>>,
    #[serde(default)]
    pub set_header: Option<IndexMap<String, Value>>,
    #[serde(default)]
    pub hide_header: Option<Vec<String>>,
    #[serde(default)]
    pub error_pages: IndexMap<Value, String>,
    #[serde(default)]
    pub intercept_errors: Option<Value>,
    #[serde(default)]
    pub client_max_body_size: Option<Value>,
    #[serde(default)]
    pub symlinks: Option<String>,
    #[serde(default)]
    pub if_modified_since: Option<String>,
    pub locations: Vec<RawLocation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawErrorLog {
    #[serde(default)]
    pub level: Option<String>,
    #[serde(default)]
    pub target: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLog {
    pub format: Option<String>,
    pub path: Option<String>,
}

/// A `log_formats` entry in its long form (the short form is the format string alone).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogFormat {
    pub format: String,
    #[serde(default)]
    pub escape: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub address: Value,
    #[serde(default)]
    pub connect_timeout: Option<Value>,
    #[serde(default)]
    pub read_timeout: Option<Value>,
    #[serde(default)]
    pub send_timeout: Option<Value>,
    #[serde(default)]
    pub keepalive: Option<usize>,
    #[serde(default)]
    pub keepalive_timeout: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawAddHeader {
    Full {
        value: Value,
        #[serde(default)]
        always: Option<Value>,
    },
    Plain(Value),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpiresIf {
    pub path: String,
    pub expires: Value,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocation {
    /// The `location` label of its metrics.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub regex: Option<String>,
    #[serde(default)]
    pub regex_i: Option<String>,
    #[serde(default)]
    pub no_regex: Option<Value>,

    #[serde(default)]
    pub root: Option<String>,
    #[serde(default)]
    pub alias: Option<String>,
    #[serde(default)]
    pub index: Option<Vec<String>>,
    #[serde(default)]
    pub symlinks: Option<String>,
    #[serde(default)]
    pub proxy_pass: Option<String>,
    #[serde(default)]
    pub buffering: Option<Value>,
    #[serde(default)]
    pub request_buffering: Option<Value>,
    /// `default`, `off`, or a list of `{from, to}` (and `default`).
    #[serde(default)]
    pub proxy_redirect: Option<Value>,

    #[serde(default)]
    pub proxy_set_header: Option<IndexMap<String, Value>>,
    #[serde(default)]
    pub add_header: Option<IndexMap<String, RawAddHeader>>,
    #[serde(default)]
    pub set_header: Option<IndexMap<String, Value>>,
    #[serde(default)]
    pub hide_header: Option<Vec<String>>,
    #[serde(default)]
    pub expires: Option<Value>,
    #[serde(default)]
    pub expires_if: Option<OneOrMany<RawExpiresIf>>,
    #[serde(default)]
    pub intercept_errors: Option<Value>,
    #[serde(default)]
    pub client_max_body_size: Option<Value>,
    #[serde(default)]
    pub cache: Option<RawCache>,
    #[serde(default)]
    pub gzip: Option<Value>,
}

/// `gzip:` — NGINX `gzip*`; `min_length`, `types`, `vary`, `disable`, `proxied`, `http_version`
/// apply to brotli and zstd too.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGzip {
    #[serde(default)]
    pub enabled: Option<Value>,
    #[serde(default)]
    pub min_length: Option<Value>,
    #[serde(default)]
    pub level: Option<u32>,
    #[serde(default)]
    pub types: Option<Vec<String>>,
    #[serde(default)]
    pub vary: Option<Value>,
    #[serde(default)]
    pub disable: Option<String>,
    #[serde(default)]
    pub proxied: Option<String>,
    #[serde(default)]
    pub http_version: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCodec {
    #[serde(default)]
    pub enabled: Option<Value>,
    #[serde(default)]
    pub level: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatic {
    #[serde(default)]
    pub precompressed: Option<Value>,
    #[serde(default)]
    pub memory_cache: Option<Value>,
}

/// `caches.NAME`: NGINX `proxy_cache_path`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawZone {
    pub path: String,
    #[serde(default)]
    pub levels: Option<Value>,
    #[serde(default)]
    pub keys_zone: Option<Value>,
    #[serde(default)]
    pub inactive: Option<Value>,
    #[serde(default)]
    pub max_size: Option<Value>,
    #[serde(default)]
    pub max_entry_size: Option<Value>,
    #[serde(default)]
    pub memory: Option<Value>,
}

/// A location's `cache:` (NGINX `proxy_cache*`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub zone: String,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub valid: IndexMap<Value, Value>,
    #[serde(default)]
    pub bypass: Vec<String>,
    #[serde(default)]
    pub no_cache: Vec<String>,
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    #[serde(default)]
    pub min_uses: Option<u32>,
    #[serde(default)]
    pub lock: Option<RawLock>,
    #[serde(default)]
    pub use_stale: Vec<String>,
    #[serde(default)]
    pub background_update: Option<Value>,
    #[serde(default)]
    pub ignore_headers: Vec<String>,
    #[serde(default)]
    pub purge: Option<RawPurge>,
    #[serde(default)]
    pub invalidate_on_unsafe: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLock {
    #[serde(default)]
    pub enabled: Option<Value>,
    #[serde(default)]
    pub timeout: Option<Value>,
    #[serde(default)]
    pub age: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPurge {
    pub allow: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReload {
    #[serde(default)]
    pub watch: Option<Value>,
    #[serde(default)]
    pub interval: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Value,
}
