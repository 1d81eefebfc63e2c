//! Caching: `caches:` zones (NGINX `proxy_cache_path`) and a location's `cache:` rules (NGINX
//! `proxy_cache_key`, `proxy_cache_valid`, `proxy_cache_bypass`, `proxy_no_cache`,
//! `proxy_cache_methods`, `proxy_cache_min_uses`, `proxy_cache_lock*`,
//! `proxy_cache_use_stale`, `proxy_cache_background_update`, `proxy_ignore_headers`, purge,
//! `invalidate_on_unsafe`).

use super::{status_key, Compiler, Result};
use crate::config::model::{CacheRules, Handler, IgnoreHeaders, Invalidate, UseStale, ZoneConfig};
use crate::config::raw::{RawCache, RawLock, RawPurge, RawZone};
use crate::template::Template;
use indexmap::IndexMap;
use serde_yaml::Value;
use std::time::Duration;

/// `caches.NAME.memory`: bytes of a zone's memory tier for small entries that are read again. A
/// HIT from the tier is answered by the edge (`edge.rs`) without Pingora's cache phases.
pub const DEFAULT_MEMORY_TIER: u64 = 16 << 20;
/// `caches.NAME.keys_zone` (NGINX `proxy_cache_path keys_zone=NAME:SIZE`).
const DEFAULT_KEYS_ZONE: u64 = 10 << 20;
/// Bytes of `keys_zone` per entry: about 8,000 entries per MiB, as NGINX.
const KEYS_ZONE_BYTES_PER_ENTRY: u64 = 128 * 1024 / 1000;
/// The fewest entries a zone's index holds, however small its `keys_zone`.
const MIN_ZONE_ENTRIES: u64 = 1000;
/// NGINX `proxy_cache_path inactive=10m`.
const DEFAULT_INACTIVE: Duration = Duration::from_secs(600);
/// `caches.NAME.max_size` (NGINX `proxy_cache_path max_size`): no limit in practice.
const DEFAULT_MAX_SIZE: u64 = crate::config::model::UNLIMITED_MAX_SIZE;
/// NGINX `proxy_cache_methods GET HEAD`: HEAD is answered from the GET entry.
const DEFAULT_CACHE_HEAD: bool = true;
/// NGINX `proxy_cache_min_uses 1`.
const DEFAULT_MIN_USES: u32 = 1;
/// NGINX `proxy_cache_lock` (on here; NGINX's default is off).
const DEFAULT_CACHE_LOCK: bool = true;
/// NGINX `proxy_cache_lock_timeout 5s`.
const DEFAULT_CACHE_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// NGINX `proxy_cache_lock_age 5s`.
const DEFAULT_CACHE_LOCK_AGE: Duration = Duration::from_secs(5);
/// NGINX `proxy_cache_background_update off`.
const DEFAULT_BACKGROUND_UPDATE: bool = false;
/// `invalidate_on_unsafe: on` (RFC 9111 §4.4).
const DEFAULT_INVALIDATE: Invalidate = Invalidate::Uri;

impl Compiler {
    /// `caches:`, in the order written (`CacheRules::zone` indexes them).
    pub(super) fn zones(&self, caches: &IndexMap<String, RawZone>) -> Result<Vec<ZoneConfig>> {
        caches
            .iter()
            .map(|(name, zone)| self.zone(&format!("caches.{name}"), name, zone))
            .collect()
    }

    /// `caches.NAME`.
    fn zone(&self, at: &str, name: &str, zone: &RawZone) -> Result<ZoneConfig> {
        let path = self.path(&format!("{at}.path"), &zone.path)?;
        let levels = self.levels(at, zone.levels.as_ref())?;
        let keys_zone = self
            .size(&format!("{at}.keys_zone"), zone.keys_zone.as_ref())?
            .unwrap_or(DEFAULT_KEYS_ZONE);
        let max_entries = (keys_zone / KEYS_ZONE_BYTES_PER_ENTRY).max(MIN_ZONE_ENTRIES) as usize;
        let inactive = self.duration(
            &format!("{at}.inactive"),
            zone.inactive.as_ref(),
            DEFAULT_INACTIVE,
        )?;
        let max_size = self
            .size(&format!("{at}.max_size"), zone.max_size.as_ref())?
            .unwrap_or(DEFAULT_MAX_SIZE);
        let max_entry_size = self.size(
            &format!("{at}.max_entry_size"),
            zone.max_entry_size.as_ref(),
        )?;
        let memory = self
            .size(&format!("{at}.memory"), zone.memory.as_ref())?
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

    /// `caches.NAME.levels`: up to three directory levels of 1 or 2 hex digits (`"1:2"`).
    fn levels(&self, at: &str, v: Option<&Value>) -> Result<Vec<usize>> {
        let Some(v) = v else { return Ok(Vec::new()) };
        let levels_at = format!("{at}.levels");
        let s = self.scalar(&levels_at, v)?;
        let levels: Option<Vec<usize>> = s
            .split(':')
            .map(|level| level.parse().ok().filter(|n| (1..=2).contains(n)))
            .collect();
        match levels {
            Some(levels) if levels.len() <= 3 => Ok(levels),
            _ => Err(self.err(
                &levels_at,
                format!("`{s}`: expected up to three levels of 1 or 2, e.g. \"1:2\""),
            )),
        }
    }

    /// A location's `cache:`, which needs `proxy_pass`.
    pub(super) fn location_cache(
        &self,
        at: &str,
        cache: Option<&RawCache>,
        handler: &Handler,
        zones: &[ZoneConfig],
    ) -> Result<Option<CacheRules>> {
        let Some(cache) = cache else { return Ok(None) };
        let cache_at = format!("{at}.cache");
        if !matches!(handler, Handler::Proxy(_)) {
            return Err(self.key_err(&cache_at, "`cache` needs `proxy_pass` in the same location"));
        }
        self.cache_rules(&cache_at, cache, zones).map(Some)
    }

    fn cache_rules(&self, at: &str, cache: &RawCache, zones: &[ZoneConfig]) -> Result<CacheRules> {
        let zone = zones
            .iter()
            .position(|zone| zone.name == cache.zone)
            .ok_or_else(|| {
                let zone = &cache.zone;
                self.err(
                    &format!("{at}.zone"),
                    format!("unknown cache zone `{zone}` (define it under `caches:`)"),
                )
            })?;
        // none: NGINX's default key (`$scheme$proxy_host$request_uri` in its docs; in its code,
        // and here, the URI as sent upstream)
        let key = cache
            .key
            .as_deref()
            .map(|key| self.key_template(&format!("{at}.key"), key))
            .transpose()?;
        let valid = self.valid(at, &cache.valid)?;
        let head = self.cache_head(at, cache.methods.as_deref())?;
        let lock = self.cache_lock(at, cache.lock.as_ref())?;
        let use_stale = self.use_stale(at, &cache.use_stale)?;
        let ignore = self.ignore_headers(at, &cache.ignore_headers)?;
        let purge_allow = self.purge_allow(at, cache.purge.as_ref())?;
        Ok(CacheRules {
            zone,
            key,
            valid,
            bypass: self.templates(at, "bypass", &cache.bypass)?,
            no_cache: self.templates(at, "no_cache", &cache.no_cache)?,
            head,
            min_uses: self.min_uses(at, cache.min_uses)?,
            lock,
            use_stale,
            background_update: self.flag(
                &format!("{at}.background_update"),
                cache.background_update.as_ref(),
                DEFAULT_BACKGROUND_UPDATE,
            )?,
            ignore,
            purge_allow,
            invalidate_on_unsafe: self
                .invalidate_on_unsafe(at, cache.invalidate_on_unsafe.as_ref())?,
        })
    }

    /// `valid`: `"STATUS ...": time` or `any: time` (NGINX `proxy_cache_valid`).
    fn valid(
        &self,
        at: &str,
        valid: &IndexMap<Value, Value>,
    ) -> Result<Vec<(Option<u16>, Duration)>> {
        let mut rules = Vec::new();
        for (key, ttl) in valid {
            let codes = status_key(key).ok_or_else(|| {
                self.err(&format!("{at}.valid"), "keys are status codes or `any`")
            })?;
            let codes_at = format!("{at}.valid.{codes}");
            let ttl = self.duration(&codes_at, Some(ttl), Duration::ZERO)?;
            for code in codes.split_whitespace() {
                if code == "any" {
                    rules.push((None, ttl));
                    continue;
                }
                let status: u16 = code
                    .parse()
                    .ok()
                    .filter(|status| (100..=599).contains(status))
                    .ok_or_else(|| {
                        self.key_err(&codes_at, format!("`{code}` is not a status code or `any`"))
                    })?;
                rules.push((Some(status), ttl));
            }
        }
        // `any` applies after the listed statuses, wherever it is written (NGINX)
        rules.sort_by_key(|(status, _)| status.is_none());
        Ok(rules)
    }

    /// `bypass` and `no_cache`: lists of templates.
    fn templates(&self, at: &str, key: &str, list: &[String]) -> Result<Vec<Template>> {
        list.iter()
            .enumerate()
            .map(|(i, template)| self.template(&format!("{at}.{key}[{i}]"), template))
            .collect()
    }

    /// `methods`: whether HEAD is cached (GET always is).
    fn cache_head(&self, at: &str, methods: Option<&[String]>) -> Result<bool> {
        let Some(methods) = methods else {
            return Ok(DEFAULT_CACHE_HEAD);
        };
        let mut head = false;
        for (i, method) in methods.iter().enumerate() {
            match method.to_ascii_uppercase().as_str() {
                "GET" => {}
                "HEAD" => head = true,
                other => {
                    return Err(self.err(
                        &format!("{at}.methods[{i}]"),
                        format!("`{other}`: only GET and HEAD responses are cached"),
                    ))
                }
            }
        }
        Ok(head)
    }

    /// `min_uses` (NGINX `proxy_cache_min_uses`).
    fn min_uses(&self, at: &str, min_uses: Option<u32>) -> Result<u32> {
        match min_uses {
            Some(0) => Err(self.err(&format!("{at}.min_uses"), "must be at least 1")),
            Some(n) => Ok(n),
            None => Ok(DEFAULT_MIN_USES),
        }
    }

    /// `lock`: (how long a waiter waits, how long a fill may hold the lock), `None` when off.
    fn cache_lock(&self, at: &str, lock: Option<&RawLock>) -> Result<Option<(Duration, Duration)>> {
        let (enabled, timeout, age) = match lock {
            Some(lock) => (
                lock.enabled.as_ref(),
                lock.timeout.as_ref(),
                lock.age.as_ref(),
            ),
            None => (None, None, None),
        };
        let lock_at = format!("{at}.lock");
        if !self.flag(&format!("{lock_at}.enabled"), enabled, DEFAULT_CACHE_LOCK)? {
            return Ok(None);
        }
        Ok(Some((
            self.duration(
                &format!("{lock_at}.timeout"),
                timeout,
                DEFAULT_CACHE_LOCK_TIMEOUT,
            )?,
            self.duration(&format!("{lock_at}.age"), age, DEFAULT_CACHE_LOCK_AGE)?,
        )))
    }

    /// `use_stale` (NGINX `proxy_cache_use_stale`).
    fn use_stale(&self, at: &str, list: &[String]) -> Result<UseStale> {
        let mut use_stale = UseStale::default();
        for (i, condition) in list.iter().enumerate() {
            match condition.as_str() {
                "error" => use_stale.error = true,
                "timeout" => use_stale.timeout = true,
                "updating" => use_stale.updating = true,
                "off" => {}
                other => match other.strip_prefix("http_").and_then(|code| code.parse::<u16>().ok()) {
                    Some(code @ (500 | 502 | 503 | 504 | 403 | 404 | 429)) => use_stale.statuses.push(code),
                    _ => return Err(self.err(&format!("{at}.use_stale[{i}]"), format!("`{other}`: expected error, timeout, updating, http_500, http_502, http_503, http_504, http_403, http_404, http_429"))),
                },
            }
        }
        Ok(use_stale)
    }

    /// `ignore_headers` (NGINX `proxy_ignore_headers`).
    fn ignore_headers(&self, at: &str, list: &[String]) -> Result<IgnoreHeaders> {
        let mut ignore = IgnoreHeaders::default();
        for (i, header) in list.iter().enumerate() {
            match header.to_ascii_lowercase().as_str() {
                "cache-control" => ignore.cache_control = true,
                "expires" => ignore.expires = true,
                "set-cookie" => ignore.set_cookie = true,
                "x-accel-expires" => ignore.x_accel_expires = true,
                "vary" => ignore.vary = true,
                other => return Err(self.err(&format!("{at}.ignore_headers[{i}]"), format!("`{other}`: expected Cache-Control, Expires, Set-Cookie, X-Accel-Expires or Vary"))),
            }
        }
        Ok(ignore)
    }

    /// `purge.allow`: client addresses or networks allowed to `PURGE`.
    fn purge_allow(&self, at: &str, purge: Option<&RawPurge>) -> Result<Vec<ipnet::IpNet>> {
        let Some(purge) = purge else {
            return Ok(Vec::new());
        };
        let mut allow = Vec::new();
        for (i, client) in purge.allow.iter().enumerate() {
            let allow_at = format!("{at}.purge.allow[{i}]");
            let net = client
                .parse::<ipnet::IpNet>()
                .or_else(|_| client.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    self.err(
                        &allow_at,
                        format!("`{client}` is not an IP address or CIDR"),
                    )
                })?;
            allow.push(net);
        }
        Ok(allow)
    }

    /// `invalidate_on_unsafe`: `on` (`uri`), `location` or `off`.
    fn invalidate_on_unsafe(&self, at: &str, v: Option<&Value>) -> Result<Invalidate> {
        let Some(v) = v else {
            return Ok(DEFAULT_INVALIDATE);
        };
        let invalidate_at = format!("{at}.invalidate_on_unsafe");
        match self
            .scalar(&invalidate_at, v)?
            .to_ascii_lowercase()
            .as_str()
        {
            "on" | "true" | "yes" | "uri" => Ok(Invalidate::Uri),
            "off" | "false" | "no" => Ok(Invalidate::Off),
            "location" => Ok(Invalidate::Location),
            other => Err(self.err(
                &invalidate_at,
                format!("`{other}`: expected on (uri), location or off"),
            )),
        }
    }
}
