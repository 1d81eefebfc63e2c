//! The static-files engine: `root`/`alias` mapping, `index`, symlink containment, content
//! types, `Last-Modified`/`ETag`, conditional requests (304/412), single byte ranges (206/416,
//! `If-Range`), HEAD, all decided as a [`Plan`] before anything is written; the memory cache of
//! small files (`file_cache`) and of compressed copies; precompressed siblings.

use crate::compress;
use crate::config::{Config, StaticConfig, SymlinkPolicy};
use bytes::Bytes;
use http::header;
use http::Method;
use pingora_http::{RequestHeader, ResponseHeader};
use std::fs::Metadata;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Which version of a file a response was planned from: the cache of file contents (and of
/// compressed copies) serves its bytes only while the file still has it. Finer than the ETag
/// (which has NGINX's one-second resolution), so a rewrite within the same second is seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileVersion {
    pub len: u64,
    pub mtime: SystemTime,
    pub ino: u64,
    pub dev: u64,
}

impl FileVersion {
    pub fn of(meta: &Metadata) -> FileVersion {
        use std::os::unix::fs::MetadataExt;
        FileVersion {
            len: meta.len(),
            mtime: meta.modified().unwrap_or(UNIX_EPOCH),
            ino: meta.ino(),
            dev: meta.dev(),
        }
    }
}

/// Static file bytes kept in memory, each checked on every request against the file's current
/// version (the request stats the file anyway; a changed file is read again and replaces the
/// old copy). Two instances: the contents of small files (`file_cache`), so a file requested
/// often, such as the patched `/script.js`, is sent from memory, one copy to the socket instead
/// of a read from the page cache plus that copy; and compressed copies (`static.memory_cache`),
/// so a file is compressed once per encoding. Rebuilt empty on reload.
pub struct FileCache {
    map: quick_cache::sync::Cache<FileKey, Arc<(FileVersion, Bytes)>, FileWeight>,
    /// Largest body kept.
    max_body: u64,
}

/// A file, and the encoding of the copy (`None`: its contents as they are).
type FileKey = (PathBuf, Option<compress::Encoding>);

/// A borrowed [`FileKey`] (hashed the same way), to look up without copying the path.
#[derive(Hash)]
struct FileKeyRef<'a>(&'a Path, Option<compress::Encoding>);

impl quick_cache::Equivalent<FileKey> for FileKeyRef<'_> {
    fn equivalent(&self, key: &FileKey) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

#[derive(Clone)]
struct FileWeight;

impl quick_cache::Weighter<FileKey, Arc<(FileVersion, Bytes)>> for FileWeight {
    fn weight(&self, k: &FileKey, v: &Arc<(FileVersion, Bytes)>) -> u64 {
        (v.1.len() + k.0.as_os_str().len() + 128) as u64
    }
}

impl FileCache {
    /// A cache of `capacity` bytes keeping bodies up to `max_body`; `None` for 0.
    pub fn new(capacity: u64, max_body: u64) -> Option<FileCache> {
        (capacity > 0).then(|| FileCache {
            map: quick_cache::sync::Cache::with_weighter(
                (capacity / 4096).max(16) as usize,
                capacity,
                FileWeight,
            ),
            max_body,
        })
    }

    /// The copy of `path` at `version` in encoding `enc`, from memory or made now by `make`
    /// (and kept when it is small enough). `Ok(None)`: `make` declined.
    fn get_or_make(
        &self,
        path: &Path,
        version: FileVersion,
        enc: Option<compress::Encoding>,
        make: impl FnOnce() -> std::io::Result<Option<Bytes>>,
    ) -> std::io::Result<Option<Bytes>> {
        if let Some(e) = self.map.get(&FileKeyRef(path, enc)) {
            if e.0 == version {
                return Ok(Some(e.1.clone()));
            }
        }
        let Some(body) = make()? else {
            return Ok(None);
        };
        if body.len() as u64 <= self.max_body {
            self.map
                .insert((path.to_path_buf(), enc), Arc::new((version, body.clone())));
        }
        Ok(Some(body))
    }

    /// The whole contents of `path` at `version`; `None` when the file is too big for the cache
    /// or changed while being read.
    pub fn get(&self, path: &Path, version: FileVersion) -> Option<Bytes> {
        if version.len > self.max_body {
            return None;
        }
        self.get_or_make(path, version, None, || {
            let data = std::fs::read(path)?;
            Ok((data.len() as u64 == version.len).then(|| Bytes::from(data)))
        })
        .ok()
        .flatten()
    }
}

/// The compressed copy of `path` (at `version`): from `cache` when it holds it, else the file
/// compressed now (and kept there).
pub fn compressed_copy(
    cache: Option<&FileCache>,
    path: &Path,
    version: FileVersion,
    enc: compress::Encoding,
    level: u32,
) -> std::io::Result<Bytes> {
    let make = || -> std::io::Result<Option<Bytes>> {
        let data = std::fs::read(path)?;
        let out = compress::compress_all(enc, level, &data)?;
        let m = &crate::metrics::METRICS;
        m.compress_in
            .with_label_values(&[enc.token()])
            .inc_by(data.len() as u64);
        m.compress_out
            .with_label_values(&[enc.token()])
            .inc_by(out.len() as u64);
        Ok(Some(out))
    };
    let body = match cache {
        Some(c) => c.get_or_make(path, version, Some(enc), make)?,
        None => make()?,
    };
    body.ok_or_else(|| std::io::Error::other("no compressed copy"))
}

/// What a static request comes to before anything is written.
#[derive(Debug)]
pub enum Plan {
    /// Serve `len` bytes from `offset` of `path`, with these headers (status 200 or 206).
    Body {
        path: PathBuf,
        version: FileVersion,
        header: Box<ResponseHeader>,
        offset: u64,
        len: u64,
    },
    /// A response without a body (304, 301, 412, 416).
    Head(Box<ResponseHeader>),
    /// An error status to answer through the error-page machinery.
    Error(u16),
    /// 416 for a file of this size (answered as an error, plus `Content-Range: bytes */size`).
    Unsatisfiable(u64),
}

/// Whether `file` (which exists) stays inside `root` once symlinks are resolved.
///
/// When `file` is `root` plus components none of which is a symlink (one `lstat` each: one
/// for `/script.js`), it is inside whatever `root` itself resolves to. Only a symlink below
/// the root costs the full resolution of both paths (a `readlink` per component: seven per
/// request for a file under `/tmp/...`).
fn contained(file: &Path, root: &Path) -> bool {
    if let Ok(rel) = file.strip_prefix(root) {
        let mut p = root.to_path_buf();
        let mut plain = true;
        for c in rel.components() {
            match c {
                std::path::Component::Normal(n) => p.push(n),
                _ => {
                    plain = false;
                    break;
                }
            }
            match std::fs::symlink_metadata(&p) {
                Ok(m) if !m.file_type().is_symlink() => {}
                _ => {
                    plain = false;
                    break;
                }
            }
        }
        if plain {
            return true;
        }
    }
    match (file.canonicalize(), root.canonicalize()) {
        (Ok(f), Ok(r)) => f.starts_with(r),
        _ => false,
    }
}

/// `file` + `suffix` (`.gz`, `.br`, `.zst`) when it exists, is a regular file and, under
/// `symlinks: within_root`, stays inside the root (NGINX `gzip_static`).
pub fn precompressed_sibling(
    file: &Path,
    suffix: &str,
    symlinks: (SymlinkPolicy, Option<PathBuf>),
) -> Option<PathBuf> {
    let mut p = file.as_os_str().to_owned();
    p.push(suffix);
    let p = PathBuf::from(p);
    if !std::fs::metadata(&p).ok()?.is_file() {
        return None;
    }
    match symlinks {
        (SymlinkPolicy::Follow, _) => Some(p),
        (SymlinkPolicy::WithinRoot, Some(root)) if contained(&p, &root) => Some(p),
        _ => None,
    }
}

fn io_status(e: &std::io::Error) -> u16 {
    match e.kind() {
        ErrorKind::NotFound => 404,
        ErrorKind::PermissionDenied => 403,
        _ if e.raw_os_error() == Some(libc::ENOTDIR)
            || e.raw_os_error() == Some(libc::ENAMETOOLONG) =>
        {
            404
        }
        _ => 500,
    }
}

/// The content type for a file name: the config's `types`, then NGINX's names for the common
/// web types, then `mime_guess`, then `default_type`.
pub fn content_type(cfg: &Config, path: &Path) -> String {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    if let Some(t) = cfg.types.get(&ext) {
        return t.clone();
    }
    let nginx = match ext.as_str() {
        "js" | "mjs" => Some("application/javascript"),
        "html" | "htm" | "shtml" => Some("text/html"),
        "txt" => Some("text/plain"),
        "json" => Some("application/json"),
        "css" => Some("text/css"),
        _ => None,
    };
    if let Some(t) = nginx {
        return t.to_string();
    }
    mime_guess::from_ext(&ext)
        .first_raw()
        .map(str::to_string)
        .unwrap_or_else(|| cfg.default_type.clone())
}

/// NGINX's ETag: `"<mtime hex>-<size hex>"`.
fn etag(mtime: SystemTime, size: u64) -> String {
    let secs = mtime
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("\"{secs:x}-{size:x}\"")
}

fn etag_matches(list: &str, tag: &str, weak: bool) -> bool {
    let strip = |t: &str| -> String {
        let t = t.trim();
        if weak {
            t.strip_prefix("W/").unwrap_or(t).to_string()
        } else {
            t.to_string()
        }
    };
    let ours = strip(tag);
    list.split(',')
        .any(|t| t.trim() == "*" || ((weak || !t.trim().starts_with("W/")) && strip(t) == ours))
}

fn header_str(req: &RequestHeader, name: header::HeaderName) -> Option<&str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

/// What a `Range` header asks of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// Ignore the header and serve the whole body (200): invalid, or several ranges.
    Whole,
    /// No range overlaps the body (416).
    Unsatisfiable,
    /// One range: its start and length (206).
    One(u64, u64),
}

/// Parse a `Range` header against a body of `size` bytes.
pub fn parse_range(value: &str, size: u64) -> Range {
    parse_range_spec(value, size).unwrap_or(Range::Whole)
}

/// [`parse_range`]; `None` for a header to ignore.
fn parse_range_spec(value: &str, size: u64) -> Option<Range> {
    let spec = value.trim().strip_prefix("bytes=")?;
    let mut ranges = Vec::new();
    for part in spec.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (a, b) = part.split_once('-')?;
        let (a, b) = (a.trim(), b.trim());
        let r = if a.is_empty() {
            let n: u64 = b.parse().ok()?;
            if n == 0 || size == 0 {
                None
            } else {
                let n = n.min(size);
                Some((size - n, n))
            }
        } else {
            let start: u64 = a.parse().ok()?;
            let end: u64 = if b.is_empty() {
                u64::MAX
            } else {
                b.parse().ok()?
            };
            if end < start {
                return None; // syntactically invalid: ignore the header
            }
            if start >= size {
                None
            } else {
                let end = end.min(size - 1);
                Some((start, end - start + 1))
            }
        };
        ranges.push(r);
    }
    let satisfiable: Vec<(u64, u64)> = ranges.iter().flatten().copied().collect();
    match satisfiable.len() {
        0 if !ranges.is_empty() => Some(Range::Unsatisfiable),
        1 => Some(Range::One(satisfiable[0].0, satisfiable[0].1)),
        // Several ranges: serving the whole representation is allowed (RFC 9110 §14.2).
        _ => None,
    }
}

/// Decide the response for a static request. `uri_path` is normalised; `args` the raw query.
pub fn plan(cfg: &Config, st: &StaticConfig, req: &RequestHeader, uri_path: &str) -> Plan {
    let method = &req.method;
    if method != Method::GET && method != Method::HEAD && method != Method::POST {
        return Plan::Error(405);
    }
    let Some((mut file, root)) = st.map_path(uri_path) else {
        return Plan::Error(404);
    };
    let mut meta = if uri_path.ends_with('/') {
        let dir_meta = match std::fs::metadata(&file) {
            Ok(m) if m.is_dir() => m,
            Ok(_) => return Plan::Error(404),
            Err(e) => return Plan::Error(io_status(&e)),
        };
        let _ = dir_meta;
        let mut found = None;
        for idx in &st.index {
            let candidate = file.join(idx);
            if let Ok(m) = std::fs::metadata(&candidate) {
                if m.is_file() {
                    found = Some((candidate, m));
                    break;
                }
            }
        }
        match found {
            Some((f, m)) => {
                file = f;
                m
            }
            None => return Plan::Error(403),
        }
    } else {
        match std::fs::metadata(&file) {
            Ok(m) => m,
            Err(e) => return Plan::Error(io_status(&e)),
        }
    };
    if st.symlinks == SymlinkPolicy::WithinRoot && !contained(&file, &root) {
        return Plan::Error(404);
    }
    if meta.is_dir() {
        // NGINX redirects a directory without its trailing slash.
        return Plan::Head(slash_redirect(uri_path, req.uri.query()));
    }
    if !meta.is_file() {
        return Plan::Error(404);
    }
    if method == Method::POST {
        return Plan::Error(405);
    }
    // re-read through the final path (the index may have changed it)
    if let Ok(m) = std::fs::metadata(&file) {
        meta = m;
    }
    plan_file(cfg, req, file, &meta)
}

/// The `301` to `uri_path` with `/` appended (and the query string), NGINX's redirect of a
/// directory and of a `proxy_pass` location's name without its slash. The `Location` is
/// relative, and the body empty.
pub fn slash_redirect(uri_path: &str, query: Option<&str>) -> Box<ResponseHeader> {
    let mut loc = crate::uri::escape_path(&format!("{uri_path}/"));
    if let Some(q) = query {
        loc.push('?');
        loc.push_str(q);
    }
    let mut h = base_header(301);
    let _ = h.insert_header("Location", loc);
    let _ = h.insert_header(header::CONTENT_LENGTH, 0);
    h
}

fn base_header(status: u16) -> Box<ResponseHeader> {
    let mut h = ResponseHeader::build(status, Some(8)).expect("valid status");
    let _ = h.insert_header(header::SERVER, crate::SERVER_NAME);
    let _ = h.insert_header(header::DATE, httpdate::fmt_http_date(SystemTime::now()));
    Box::new(h)
}

fn plan_file(cfg: &Config, req: &RequestHeader, path: PathBuf, meta: &Metadata) -> Plan {
    let size = meta.len();
    let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
    // HTTP dates have second resolution
    let mtime_s = UNIX_EPOCH
        + std::time::Duration::from_secs(
            mtime
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        );
    let tag = etag(mtime, size);
    let last_modified = httpdate::fmt_http_date(mtime_s);

    let validators = |h: &mut ResponseHeader| {
        let _ = h.insert_header("Last-Modified", last_modified.as_str());
        let _ = h.insert_header("ETag", tag.as_str());
    };

    // Preconditions, RFC 9110 §13.2.2 order.
    if let Some(im) = header_str(req, header::IF_MATCH) {
        if !etag_matches(im, &tag, false) {
            return Plan::Error(412);
        }
    } else if let Some(ius) = header_str(req, header::IF_UNMODIFIED_SINCE) {
        if let Ok(t) = httpdate::parse_http_date(ius) {
            if mtime_s > t {
                return Plan::Error(412);
            }
        }
    }
    let not_modified = if let Some(inm) = header_str(req, header::IF_NONE_MATCH) {
        etag_matches(inm, &tag, true)
    } else if let Some(ims) = header_str(req, header::IF_MODIFIED_SINCE) {
        httpdate::parse_http_date(ims)
            .is_ok_and(|since| cfg.if_modified_since.not_modified(since, mtime_s))
    } else {
        false
    };
    if not_modified {
        let mut h = base_header(304);
        validators(&mut h);
        return Plan::Head(h);
    }

    let ctype = content_type(cfg, &path);
    let mut range = None;
    if let Some(r) = header_str(req, header::RANGE) {
        let if_range_ok = match header_str(req, header::IF_RANGE) {
            None => true,
            Some(v) if v.trim_start().starts_with('"') || v.trim_start().starts_with("W/") => {
                v.trim() == tag
            }
            Some(v) => httpdate::parse_http_date(v)
                .map(|t| t == mtime_s)
                .unwrap_or(false),
        };
        if if_range_ok {
            match parse_range(r, size) {
                Range::One(start, len) => range = Some((start, len)),
                Range::Unsatisfiable => return Plan::Unsatisfiable(size),
                Range::Whole => {}
            }
        }
    }
    let (status, offset, len) = match range {
        Some((start, len)) => (206, start, len),
        None => (200, 0, size),
    };
    let mut h = base_header(status);
    let _ = h.insert_header(header::CONTENT_TYPE, ctype);
    let _ = h.insert_header(header::CONTENT_LENGTH, len);
    validators(&mut h);
    let _ = h.insert_header(header::ACCEPT_RANGES, "bytes");
    if status == 206 {
        let _ = h.insert_header(
            "Content-Range",
            format!("bytes {}-{}/{}", offset, offset + len - 1, size),
        );
    }
    Plan::Body {
        path,
        version: FileVersion::of(meta),
        header: h,
        offset,
        len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Range::One(0, 10));
        assert_eq!(parse_range("bytes=90-", 100), Range::One(90, 10));
        assert_eq!(parse_range("bytes=-10", 100), Range::One(90, 10));
        assert_eq!(parse_range("bytes=-200", 100), Range::One(0, 100));
        assert_eq!(parse_range("bytes=95-200", 100), Range::One(95, 5));
        assert_eq!(parse_range("bytes=100-", 100), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 100), Range::Whole);
        assert_eq!(parse_range("items=0-1", 100), Range::Whole);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Range::Whole);
        assert_eq!(parse_range("bytes=0-1,500-600", 100), Range::One(0, 2));
    }

    #[test]
    fn file_cache_makes_each_copy_once_per_version() {
        let cache = FileCache::new(1 << 20, 1 << 16).expect("cache");
        let made = std::cell::Cell::new(0);
        let v1 = FileVersion {
            len: 3,
            mtime: UNIX_EPOCH,
            ino: 1,
            dev: 1,
        };
        let v2 = FileVersion { ino: 2, ..v1 };
        let get =
            |path: &str, v: FileVersion, enc: Option<compress::Encoding>, body: &'static [u8]| {
                cache
                    .get_or_make(Path::new(path), v, enc, || {
                        made.set(made.get() + 1);
                        Ok(Some(Bytes::from_static(body)))
                    })
                    .expect("io")
                    .expect("body")
            };
        assert_eq!(get("/a", v1, None, b"one"), &b"one"[..]);
        assert_eq!(get("/a", v1, None, b"xxx"), &b"one"[..], "kept");
        assert_eq!(made.get(), 1);
        let gz = Some(compress::Encoding::Gzip);
        assert_eq!(
            get("/a", v1, gz, b"gz1"),
            &b"gz1"[..],
            "each encoding its own copy"
        );
        assert_eq!(
            get("/b", v1, None, b"bbb"),
            &b"bbb"[..],
            "each path its own copy"
        );
        assert_eq!(made.get(), 3);
        assert_eq!(
            get("/a", v2, None, b"two"),
            &b"two"[..],
            "a new version is made again"
        );
        assert_eq!(
            get("/a", v2, None, b"xxx"),
            &b"two"[..],
            "and replaces the old one"
        );
        assert_eq!(get("/a", v1, gz, b"xxx"), &b"gz1"[..]);
        assert_eq!(made.get(), 4);
        // bodies over `max_body` are made every time
        let big: &'static [u8] = Box::leak(vec![0u8; (1 << 16) + 1].into_boxed_slice());
        get("/big", v1, None, big);
        get("/big", v1, None, big);
        assert_eq!(made.get(), 6);
    }

    #[test]
    fn etags() {
        assert!(etag_matches("\"a\"", "\"a\"", true));
        assert!(etag_matches("W/\"a\", \"b\"", "\"a\"", true));
        assert!(!etag_matches("W/\"a\"", "\"a\"", false));
        assert!(etag_matches("*", "\"a\"", false));
        assert!(!etag_matches("\"b\"", "\"a\"", true));
    }
}
