//! Compression: `gzip:` (server and location; its `min_length`, `types`, `vary`, `disable`,
//! `proxied` and `http_version` apply to every encoding), the server's `brotli:` and `zstd:`, and `static:`
//! (precompressed siblings, NGINX `gzip_static`) into a [`CompressConfig`].

use super::{Compiler, Result};
use crate::compress::CompressConfig;
use crate::config::raw::{RawCodec, RawConfig, RawGzip};
use regex::{Regex, RegexBuilder};
use serde_yaml::Value;
use std::sync::Arc;

/// A codec's default and highest level.
#[derive(Clone, Copy)]
struct Levels {
    default: u32,
    max: u32,
}

/// NGINX `gzip_comp_level 1` (up to 9).
const GZIP_LEVELS: Levels = Levels { default: 1, max: 9 };
/// `brotli.level` (the brotli module's `brotli_comp_level`; up to 11).
const BROTLI_LEVELS: Levels = Levels {
    default: 4,
    max: 11,
};
/// `zstd.level` (the zstd module's `zstd_comp_level`; up to 19).
const ZSTD_LEVELS: Levels = Levels {
    default: 3,
    max: 19,
};
/// NGINX `gzip_min_length 20`.
const DEFAULT_MIN_LENGTH: u64 = 20;
/// NGINX `gzip_vary off`.
const DEFAULT_VARY: bool = false;
/// NGINX `gzip_proxied`: `any` here (NGINX's default is `off`).
const DEFAULT_PROXIED: bool = true;
/// NGINX `gzip_static off`.
const DEFAULT_PRECOMPRESSED: bool = false;
/// `static.memory_cache`: bytes of compressed static files kept in memory.
const DEFAULT_STATIC_MEMORY_CACHE: u64 = 64 << 20;
/// NGINX `gzip_disable msie6`.
const MSIE6: &str = r"MSIE [1-6]\.";

/// What a `gzip:` value says.
enum GzipValue {
    /// Not written.
    Absent,
    /// `gzip: off`.
    Off,
    /// `gzip: on` or a mapping.
    On(Box<RawGzip>),
}

impl Compiler {
    /// The compression settings from a `gzip:` value (`off`, `on`, or a mapping) at `gzip_at`,
    /// over those of the server (`outer`, for a location), plus the server's `brotli:`, `zstd:`
    /// and `static:`. `None` when no encoding is enabled.
    pub(super) fn compress(
        &self,
        raw: &RawConfig,
        gzip: Option<&Value>,
        gzip_at: &str,
        outer: Option<&CompressConfig>,
    ) -> Result<Option<Arc<CompressConfig>>> {
        let gzip = match self.gzip_value(gzip, gzip_at)? {
            // `gzip: off` in a location turns every encoding off there
            GzipValue::Off if outer.is_some() => return Ok(None),
            GzipValue::Absent | GzipValue::Off => None,
            GzipValue::On(gzip) => Some(*gzip),
        };
        let gzip = gzip.as_ref();
        let gzip_on = match gzip {
            Some(g) => self.flag(&format!("{gzip_at}.enabled"), g.enabled.as_ref(), true)?,
            None => outer.is_some_and(|o| o.gzip.is_some()),
        };
        let gzip_level = if gzip_on {
            let level = gzip.and_then(|g| g.level).or(outer.and_then(|o| o.gzip));
            Some(self.level(&format!("{gzip_at}.level"), level, GZIP_LEVELS)?)
        } else {
            None
        };
        let brotli = self.codec("brotli", raw.brotli.as_ref(), BROTLI_LEVELS)?;
        let zstd = self.codec("zstd", raw.zstd.as_ref(), ZSTD_LEVELS)?;
        let min_length = self
            .size(
                &format!("{gzip_at}.min_length"),
                gzip.and_then(|g| g.min_length.as_ref()),
            )?
            .unwrap_or_else(|| outer.map_or(DEFAULT_MIN_LENGTH, |o| o.min_length));
        let (types, all_types) = match gzip.and_then(|g| g.types.as_ref()) {
            Some(types) => media_types(types),
            None => outer.map_or((Vec::new(), false), |o| (o.types.clone(), o.all_types)),
        };
        let vary = match gzip.and_then(|g| g.vary.as_ref()) {
            Some(v) => self.flag(&format!("{gzip_at}.vary"), Some(v), DEFAULT_VARY)?,
            None => outer.map_or(DEFAULT_VARY, |o| o.vary),
        };
        let disable = self.disable(gzip_at, gzip.and_then(|g| g.disable.as_deref()), outer)?;
        let proxied = self.proxied(gzip_at, gzip.and_then(|g| g.proxied.as_deref()), outer)?;
        let http10 =
            self.http_version(gzip_at, gzip.and_then(|g| g.http_version.as_ref()), outer)?;
        let (precompressed, memory_cache) = self.static_files(raw)?;
        let compress = CompressConfig {
            gzip: gzip_level,
            brotli,
            zstd,
            min_length,
            types,
            all_types,
            vary,
            disable,
            proxied,
            http10,
            precompressed,
            memory_cache,
        };
        Ok(if compress.any_enabled() || compress.precompressed {
            Some(Arc::new(compress))
        } else {
            None
        })
    }

    fn gzip_value(&self, gzip: Option<&Value>, gzip_at: &str) -> Result<GzipValue> {
        Ok(match gzip {
            None => GzipValue::Absent,
            Some(v @ Value::Mapping(_)) => GzipValue::On(self.mapping(gzip_at, v)?),
            Some(v) if !self.flag(gzip_at, Some(v), false)? => GzipValue::Off,
            Some(_) => GzipValue::On(Box::new(RawGzip {
                enabled: Some(Value::Bool(true)),
                min_length: None,
                level: None,
                types: None,
                vary: None,
                disable: None,
                proxied: None,
                http_version: None,
            })),
        })
    }

    /// `brotli:` or `zstd:`: its level, `None` when not written or not enabled.
    fn codec(&self, key: &str, codec: Option<&RawCodec>, levels: Levels) -> Result<Option<u32>> {
        let Some(codec) = codec else { return Ok(None) };
        if !self.flag(&format!("{key}.enabled"), codec.enabled.as_ref(), true)? {
            return Ok(None);
        }
        Ok(Some(self.level(
            &format!("{key}.level"),
            codec.level,
            levels,
        )?))
    }

    fn level(&self, at: &str, level: Option<u32>, levels: Levels) -> Result<u32> {
        match level {
            Some(level) if level > levels.max => {
                let max = levels.max;
                Err(self.err(at, format!("level {level} is above {max}")))
            }
            Some(level) => Ok(level),
            None => Ok(levels.default),
        }
    }

    /// `gzip.disable`: a User-Agent regex, or `msie6`; case-insensitive, as NGINX's.
    fn disable(
        &self,
        gzip_at: &str,
        disable: Option<&str>,
        outer: Option<&CompressConfig>,
    ) -> Result<Option<Regex>> {
        let pattern = match disable {
            Some("msie6") => MSIE6,
            Some(pattern) => pattern,
            None => return Ok(outer.and_then(|o| o.disable.clone())),
        };
        let re = RegexBuilder::new(pattern)
            .case_insensitive(true)
            .build()
            .map_err(|e| self.err(&format!("{gzip_at}.disable"), format!("invalid regex: {e}")))?;
        Ok(Some(re))
    }

    /// `gzip.http_version`: `"1.1"` (only HTTP/1.1 clients get compressed responses) or
    /// `"1.0"` (HTTP/1.0 clients too); true for `1.0`.
    fn http_version(
        &self,
        gzip_at: &str,
        version: Option<&Value>,
        outer: Option<&CompressConfig>,
    ) -> Result<bool> {
        let text = match version {
            None => return Ok(outer.is_some_and(|o| o.http10)),
            Some(Value::String(s)) => s.trim().to_string(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => String::new(),
        };
        match text.as_str() {
            "1.0" | "1" => Ok(true),
            "1.1" => Ok(false),
            other => Err(self.err(
                &format!("{gzip_at}.http_version"),
                format!("`{other}`: expected \"1.0\" or \"1.1\""),
            )),
        }
    }

    /// `gzip.proxied`: `any` or `off`.
    fn proxied(
        &self,
        gzip_at: &str,
        proxied: Option<&str>,
        outer: Option<&CompressConfig>,
    ) -> Result<bool> {
        match proxied {
            Some("any") => Ok(true),
            Some("off") => Ok(false),
            Some(other) => Err(self.err(
                &format!("{gzip_at}.proxied"),
                format!("`{other}`: expected any or off"),
            )),
            None => Ok(outer.map_or(DEFAULT_PROXIED, |o| o.proxied)),
        }
    }

    /// `static:`: (`precompressed`, `memory_cache`).
    fn static_files(&self, raw: &RawConfig) -> Result<(bool, u64)> {
        let (precompressed, memory_cache) = match &raw.static_files {
            Some(files) => (files.precompressed.as_ref(), files.memory_cache.as_ref()),
            None => (None, None),
        };
        Ok((
            self.flag("static.precompressed", precompressed, DEFAULT_PRECOMPRESSED)?,
            self.size("static.memory_cache", memory_cache)?
                .unwrap_or(DEFAULT_STATIC_MEMORY_CACHE),
        ))
    }
}

/// `gzip.types`: lowercase media types, and whether `*` (every type) is among them.
fn media_types(types: &[String]) -> (Vec<String>, bool) {
    let all = types.iter().any(|t| t.trim() == "*");
    let types = types
        .iter()
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    (types, all)
}
