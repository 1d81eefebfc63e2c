//! Response compression: NGINX `gzip*` semantics plus brotli and zstd. Accept-Encoding
//! negotiation with q-values and a server preference (zstd > br > gzip), the conditions under
//! which a response is compressed, the header changes that go with it, and streaming encoders
//! that flush at every chunk (so streamed responses stay streamed). [`CompressConfig`] is a
//! location's compiled settings; `config` builds it from `gzip:`, `brotli:`, `zstd:` and
//! `static:`.

use bytes::Bytes;
use http::header;
use pingora_http::{RequestHeader, ResponseHeader};
use regex::Regex;
use std::io::Write;

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
    /// User-Agents that never get compressed responses (NGINX `gzip_disable`, case-insensitive).
    pub disable: Option<Regex>,
    /// HTTP/1.0 requests may get compressed responses (NGINX `gzip_http_version 1.0`); by
    /// default only HTTP/1.1 ones do.
    pub http10: bool,
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

    pub fn level(&self, e: Encoding) -> Option<u32> {
        match e {
            Encoding::Gzip => self.gzip,
            Encoding::Br => self.brotli,
            Encoding::Zstd => self.zstd,
        }
    }
}

/// A content coding outrigger produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Zstd,
    Br,
    Gzip,
}

impl Encoding {
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Zstd => "zstd",
            Encoding::Br => "br",
            Encoding::Gzip => "gzip",
        }
    }

    /// File name suffix of a precompressed sibling (`gzip_static`).
    pub fn suffix(self) -> &'static str {
        match self {
            Encoding::Zstd => ".zst",
            Encoding::Br => ".br",
            Encoding::Gzip => ".gz",
        }
    }
}

/// Every encoding outrigger produces, in the server's order of preference among acceptable
/// ones.
pub const PREFERENCE: [Encoding; 3] = [Encoding::Zstd, Encoding::Br, Encoding::Gzip];

/// The q-value a client gives `enc` in an Accept-Encoding value (0 when not acceptable).
fn q_of(accept: &str, enc: Encoding) -> f32 {
    let mut star = None;
    let mut exact = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let token = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1.0f32;
        for p in parts {
            if let Some(v) = p
                .trim()
                .strip_prefix("q=")
                .or_else(|| p.trim().strip_prefix("Q="))
            {
                q = v.trim().parse().unwrap_or(0.0);
            }
        }
        let matches = token == enc.token() || (enc == Encoding::Gzip && token == "x-gzip");
        if matches {
            exact = Some(q);
        } else if token == "*" {
            star = Some(q);
        }
    }
    exact.or(star).unwrap_or(0.0)
}

/// The encoding to use for a request: the most preferred enabled encoding the client accepts.
pub fn negotiate(cfg: &CompressConfig, req: &RequestHeader) -> Option<Encoding> {
    if !cfg.any_enabled() {
        return None;
    }
    let accept: Vec<&str> = req
        .headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if accept.is_empty() {
        return None;
    }
    let accept = accept.join(",");
    if let Some(re) = &cfg.disable {
        let ua = req
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if re.is_match(ua) {
            return None;
        }
    }
    if !cfg.proxied && req.headers.contains_key(header::VIA) {
        return None;
    }
    if req.version < http::Version::HTTP_11 && !cfg.http10 {
        return None;
    }
    PREFERENCE
        .into_iter()
        .filter(|e| cfg.level(*e).is_some())
        .find(|e| q_of(&accept, *e) > 0.0)
}

fn media_type(resp: &ResponseHeader) -> Option<String> {
    let ct = resp.headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// Whether the response's type and length make it a candidate (NGINX `gzip_types`,
/// `gzip_min_length`), whatever the client accepts: such responses get `Vary: Accept-Encoding`.
pub fn compressible(cfg: &CompressConfig, resp: &ResponseHeader) -> bool {
    let status = resp.status.as_u16();
    if matches!(status, 204 | 206 | 304) || status < 200 {
        return false;
    }
    if resp
        .headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().eq_ignore_ascii_case("identity"))
    {
        return false;
    }
    if resp
        .headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("no-transform"))
    {
        return false;
    }
    let Some(mt) = media_type(resp) else {
        return false;
    };
    if !(cfg.all_types || mt == "text/html" || cfg.types.contains(&mt)) {
        return false;
    }
    match resp
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        Some(len) => len >= cfg.min_length,
        None => true,
    }
}

/// Add `Accept-Encoding` to `Vary` unless already there.
pub fn add_vary(resp: &mut ResponseHeader) {
    let present = resp
        .headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t.eq_ignore_ascii_case("accept-encoding")
        });
    if !present {
        let _ = resp.append_header("Vary", "Accept-Encoding");
    }
}

/// Rewrite the headers of a response about to be compressed with `enc`.
pub fn compressed_headers(resp: &mut ResponseHeader, enc: Encoding, vary: bool) {
    resp.remove_header(&header::CONTENT_LENGTH);
    resp.remove_header(&header::ACCEPT_RANGES);
    let _ = resp.insert_header(header::CONTENT_ENCODING, enc.token());
    if vary {
        add_vary(resp);
    }
    weaken_etag(resp);
}

/// A strong ETag describes the identity bytes; the compressed variant gets the weak form.
pub fn weaken_etag(resp: &mut ResponseHeader) {
    if let Some(tag) = resp
        .headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    {
        if !tag.starts_with("W/") {
            let _ = resp.insert_header("ETag", format!("W/{tag}"));
        }
    }
}

/// A streaming encoder: each `push` returns what is ready (flushed), `finish` the rest.
pub enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    pub fn new(enc: Encoding, level: u32) -> std::io::Result<Encoder> {
        Ok(match enc {
            Encoding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(level.clamp(1, 9)),
            )),
            Encoding::Br => Encoder::Br(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                level.min(11),
                22,
            ))),
            Encoding::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(
                Vec::new(),
                level.clamp(1, 22) as i32,
            )?),
        })
    }

    pub fn encoding(&self) -> Encoding {
        match self {
            Encoder::Gzip(_) => Encoding::Gzip,
            Encoder::Br(_) => Encoding::Br,
            Encoder::Zstd(_) => Encoding::Zstd,
        }
    }

    fn out(&mut self) -> &mut Vec<u8> {
        match self {
            Encoder::Gzip(e) => e.get_mut(),
            Encoder::Br(e) => e.get_mut(),
            Encoder::Zstd(e) => e.get_mut(),
        }
    }

    /// Compress `data` and flush, returning the bytes produced so far.
    pub fn push(&mut self, data: &[u8]) -> std::io::Result<Bytes> {
        match self {
            Encoder::Gzip(e) => {
                e.write_all(data)?;
                e.flush()?;
            }
            Encoder::Br(e) => {
                e.write_all(data)?;
                e.flush()?;
            }
            Encoder::Zstd(e) => {
                e.write_all(data)?;
                e.flush()?;
            }
        }
        Ok(Bytes::from(std::mem::take(self.out())))
    }

    /// Compress without flushing (whole bodies: better ratio).
    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.write_all(data),
            Encoder::Br(e) => e.write_all(data),
            Encoder::Zstd(e) => e.write_all(data),
        }
    }

    /// End the stream, returning the remaining bytes.
    pub fn finish(self) -> std::io::Result<Bytes> {
        let v = match self {
            Encoder::Gzip(e) => e.finish()?,
            Encoder::Br(mut e) => {
                e.flush()?;
                e.into_inner()
            }
            Encoder::Zstd(e) => e.finish()?,
        };
        Ok(Bytes::from(v))
    }
}

/// Compress a whole body in one go.
pub fn compress_all(enc: Encoding, level: u32, data: &[u8]) -> std::io::Result<Bytes> {
    let mut e = Encoder::new(enc, level)?;
    e.write(data)?;
    e.finish()
}

/// Largest static file compressed on the fly.
pub const MAX_STATIC_COMPRESS: u64 = 32 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_values() {
        assert_eq!(q_of("gzip, deflate, br, zstd", Encoding::Br), 1.0);
        assert_eq!(q_of("gzip;q=0", Encoding::Gzip), 0.0);
        assert_eq!(q_of("*;q=0.5", Encoding::Zstd), 0.5);
        assert_eq!(q_of("*;q=0.5, zstd;q=0", Encoding::Zstd), 0.0);
        assert_eq!(q_of("identity", Encoding::Gzip), 0.0);
        assert_eq!(q_of("x-gzip", Encoding::Gzip), 1.0);
    }

    #[test]
    fn round_trips() {
        use std::io::Read;
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for enc in PREFERENCE {
            let mut e = Encoder::new(enc, 3).unwrap();
            let mut out = Vec::new();
            for c in data.chunks(7000) {
                out.extend_from_slice(&e.push(c).unwrap());
            }
            out.extend_from_slice(&e.finish().unwrap());
            let back = match enc {
                Encoding::Gzip => {
                    let mut v = Vec::new();
                    flate2::read::GzDecoder::new(&out[..])
                        .read_to_end(&mut v)
                        .unwrap();
                    v
                }
                Encoding::Br => {
                    let mut v = Vec::new();
                    brotli::Decompressor::new(&out[..], 4096)
                        .read_to_end(&mut v)
                        .unwrap();
                    v
                }
                Encoding::Zstd => zstd::decode_all(&out[..]).unwrap(),
            };
            assert_eq!(back, data, "{enc:?}");
        }
    }
}
