//! The disk store behind pingora-cache: one file per entry under the zone's directory, laid out
//! by `levels` like NGINX (`levels: "1:2"` → `c/29/<hex>`). A file holds a small fixed header,
//! the serialized `CacheMeta` blobs and the body. Bodies stream to a temp file and are renamed
//! into place only on a complete `finish`, so a dropped fill, a truncated upstream body or a
//! crash never leaves an entry that is later served; a file whose size disagrees with its
//! header is a MISS and is removed. The in-memory index (`index`: size, last access, LRU order)
//! drives `max_size` and `keys_zone` eviction, `inactive` expiry and restart recovery. A hit
//! reads and deserialises the entry's metadata (`CacheMeta` is not `Clone`, so it is not kept
//! parsed); small entries that are read back also go to the zone's memory tier (`HotEntry`).

use crate::cache::index::Index;
use crate::cache::policy;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora_cache::key::{CacheHashKey, CompactCacheKey, HashBinary};
use pingora_cache::storage::{
    HandleHit, HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget,
    PurgeType,
};
use pingora_cache::trace::SpanHandle;
use pingora_cache::{CacheKey, CacheMeta, Storage};
use pingora_error::{Error, ErrorType, Result};
use smallvec::SmallVec;
use std::any::Any;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

const MAGIC: &[u8; 8] = b"ORCACHE1";
/// magic, body length, two meta lengths, primary, variance flag + variance, user-tag length
const FIXED: usize = 8 + 8 + 4 + 4 + 16 + 1 + 16 + 2;

/// This process's id, for temp file names (`getpid` is a system call on every use).
static PID: once_cell::sync::Lazy<u32> = once_cell::sync::Lazy::new(std::process::id);
/// Body bytes returned per `read_body` on a disk hit: one client write each (`output`).
const HIT_CHUNK: usize = crate::output::WRITE_SIZE;

fn now_secs() -> u64 {
    unix_secs(SystemTime::now())
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn io_err(what: &'static str, e: std::io::Error) -> Box<Error> {
    Error::because(ErrorType::InternalError, what, e)
}

fn hex(b: &HashBinary) -> String {
    hex::encode(b)
}

/// User tags (the names of the locations that store entries) are few: each is kept once and
/// entries hold its index.
/// The table only grows (names of locations, across reloads, and tags read from disk); at
/// 65,535 names new ones share the last index (their entries then lose their tag on a rewrite
/// and `invalidate_on_unsafe: location` misses them), far beyond any real config.
static TAGS: RwLock<Vec<Box<str>>> = RwLock::new(Vec::new());

/// The index of `tag`, added if new.
fn tag_index(tag: &str) -> u16 {
    if let Some(i) = known_tag(tag) {
        return i;
    }
    let Ok(mut tags) = TAGS.write() else {
        return u16::MAX;
    };
    if let Some(i) = tags.iter().position(|t| &**t == tag) {
        return i as u16;
    }
    if tags.len() >= u16::MAX as usize {
        return u16::MAX;
    }
    tags.push(tag.into());
    (tags.len() - 1) as u16
}

/// The index of `tag` if any entry ever had it.
fn known_tag(tag: &str) -> Option<u16> {
    let tags = TAGS.read().ok()?;
    tags.iter().position(|t| &**t == tag).map(|i| i as u16)
}

fn tag_name(i: u16) -> Box<str> {
    TAGS.read()
        .ok()
        .and_then(|t| t.get(i as usize).cloned())
        .unwrap_or_default()
}

/// What the index knows about one stored entry: 72 bytes, no allocation of its own (S7 bench:
/// 10,000 keys). Offsets follow from the file layout: fixed header, tag, meta, body.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// `combined_bin()` of the entry's key: primary key and variance (the tag plays no part).
    pub id: HashBinary,
    /// The primary key (the id when there is no variance).
    pub primary: HashBinary,
    /// Digest of the stored response (status, headers but `Date`, body); 0 when unknown (an
    /// entry found on disk, or rewritten by a revalidation).
    content: u64,
    /// [`tag_index`] of the user tag, and the tag's length in the file.
    tag: u16,
    tag_len: u16,
    meta_lens: (u32, u32),
    body_len: u64,
    /// Unix seconds.
    pub last_access: u32,
    /// When the stored response stops being fresh, in Unix seconds; 0 when unknown.
    fresh_until: u32,
    /// The variance is the negotiated encoding's alone: the id derives from the primary key
    /// (`remove_primary`) and is not recorded in `variants`.
    by_encoding: bool,
}

impl Entry {
    fn new(
        id: HashBinary,
        key: &CompactCacheKey,
        meta_lens: (u32, u32),
        body_len: u64,
        fresh_until: u64,
    ) -> Entry {
        Entry {
            id,
            primary: key.primary,
            content: 0,
            tag: tag_index(&key.user_tag),
            tag_len: u16::try_from(key.user_tag.len()).unwrap_or(u16::MAX),
            meta_lens,
            body_len,
            last_access: secs32(now_secs()),
            fresh_until: secs32(fresh_until),
            by_encoding: key
                .variance
                .as_deref()
                .is_some_and(|v| policy::encoding_variances().any(|e| e == *v)),
        }
    }

    /// An entry whose file is `file_len` bytes (at least the fixed header), for index tests.
    #[cfg(test)]
    pub fn for_test(id: HashBinary, file_len: u64) -> Entry {
        Entry {
            id,
            primary: id,
            content: 0,
            tag: 0,
            tag_len: 0,
            meta_lens: (0, 0),
            body_len: file_len.saturating_sub(FIXED as u64),
            last_access: 0,
            fresh_until: 0,
            by_encoding: false,
        }
    }

    fn meta_offset(&self) -> u64 {
        FIXED as u64 + self.tag_len as u64
    }

    fn body_offset(&self) -> u64 {
        self.meta_offset() + self.meta_lens.0 as u64 + self.meta_lens.1 as u64
    }

    pub fn file_len(&self) -> u64 {
        self.body_offset() + self.body_len
    }
}

/// Whether the open entry file still has a name (not unlinked).
fn still_linked(f: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    f.metadata().is_ok_and(|m| m.nlink() > 0)
}

/// Whether the open file `f` is the one at `path` now (not replaced or removed).
fn is_at(f: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

/// The id of `primary`'s variant with `variance`.
fn derived_id(primary: &HashBinary, variance: HashBinary) -> HashBinary {
    CompactCacheKey {
        primary: *primary,
        variance: Some(Box::new(variance)),
        user_tag: Box::default(),
    }
    .combined_bin()
}

/// Unix seconds in 32 bits (enough until 2106).
fn secs32(s: u64) -> u32 {
    u32::try_from(s).unwrap_or(u32::MAX)
}

/// Open an entry file and parse its header; `None` when there is no such file.
fn read_entry(path: &Path) -> std::io::Result<Option<(Entry, File)>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let entry = parse_entry(&f)?;
    Ok(Some((entry, f)))
}

/// The fixed header of an open entry file, parsed and checked against the file's length.
/// Always read from the descriptor being served: the file may have been replaced by a newer
/// fill since the index learnt about it.
fn parse_entry(f: &File) -> std::io::Result<Entry> {
    let len = f.metadata()?.len();
    let mut head = [0u8; FIXED];
    if len < FIXED as u64 || f.read_exact_at(&mut head, 0).is_err() || &head[0..8] != MAGIC {
        return Err(std::io::Error::new(ErrorKind::InvalidData, "bad header"));
    }
    let u64_at = |o: usize| u64::from_le_bytes(head[o..o + 8].try_into().unwrap_or([0; 8]));
    let u32_at = |o: usize| u32::from_le_bytes(head[o..o + 4].try_into().unwrap_or([0; 4]));
    let body_len = u64_at(8);
    let m0 = u32_at(16);
    let m1 = u32_at(20);
    let mut primary = [0u8; 16];
    primary.copy_from_slice(&head[24..40]);
    let variance = if head[40] == 1 {
        let mut v = [0u8; 16];
        v.copy_from_slice(&head[41..57]);
        Some(Box::new(v))
    } else {
        None
    };
    let tag_len = u16::from_le_bytes([head[57], head[58]]) as u64;
    let meta_offset = FIXED as u64 + tag_len;
    let body_offset = meta_offset + m0 as u64 + m1 as u64;
    if body_offset.checked_add(body_len) != Some(len) {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            "truncated entry",
        ));
    }
    let mut tag = vec![0u8; tag_len as usize];
    f.read_exact_at(&mut tag, FIXED as u64)?;
    let user_tag = String::from_utf8(tag)
        .map_err(|_| std::io::Error::new(ErrorKind::InvalidData, "bad user tag"))?;
    let key = CompactCacheKey {
        primary,
        variance,
        user_tag: user_tag.into_boxed_str(),
    };
    Ok(Entry::new(key.combined_bin(), &key, (m0, m1), body_len, 0))
}

fn read_meta(f: &File, e: &Entry) -> std::io::Result<CacheMeta> {
    let mut buf = vec![0u8; e.meta_lens.0 as usize + e.meta_lens.1 as usize];
    f.read_exact_at(&mut buf, e.meta_offset())?;
    let (a, b) = buf.split_at(e.meta_lens.0 as usize);
    CacheMeta::deserialize(a, b)
        .map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e.to_string()))
}

/// The fixed header, user tag and meta blobs of an entry file (the body follows them).
fn encode_head(
    key: &CompactCacheKey,
    meta: &(Vec<u8>, Vec<u8>),
    body_len: u64,
    extra_capacity: usize,
) -> std::io::Result<Vec<u8>> {
    let tag = key.user_tag.as_bytes();
    let tag_len = u16::try_from(tag.len())
        .map_err(|_| std::io::Error::new(ErrorKind::InvalidInput, "user tag too long"))?;
    let m0 = u32::try_from(meta.0.len())
        .map_err(|_| std::io::Error::new(ErrorKind::InvalidInput, "meta too long"))?;
    let m1 = u32::try_from(meta.1.len())
        .map_err(|_| std::io::Error::new(ErrorKind::InvalidInput, "meta too long"))?;
    let mut head =
        Vec::with_capacity(FIXED + tag.len() + meta.0.len() + meta.1.len() + extra_capacity);
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&body_len.to_le_bytes());
    head.extend_from_slice(&m0.to_le_bytes());
    head.extend_from_slice(&m1.to_le_bytes());
    head.extend_from_slice(&key.primary);
    match &key.variance {
        Some(v) => {
            head.push(1);
            head.extend_from_slice(v.as_ref());
        }
        None => {
            head.push(0);
            head.extend_from_slice(&[0u8; 16]);
        }
    }
    head.extend_from_slice(&tag_len.to_le_bytes());
    head.extend_from_slice(tag);
    head.extend_from_slice(&meta.0);
    head.extend_from_slice(&meta.1);
    Ok(head)
}

/// A small, hot entry kept in memory (the zone's `memory` tier): answered without touching
/// the disk or deserialising metadata. An entry enters the tier when it is first read back
/// from disk (a HIT, or a request that waited on the fill), not when it is stored: entries
/// requested once, often most of a cache, never take RAM (S7 bench: 10,000 keys each fetched
/// once).
pub struct HotEntry {
    /// The header as a memory-tier HIT sends it before the location's header rules: hidden
    /// upstream headers, `Transfer-Encoding`, `Date` and `Connection` removed (the session or
    /// the front writes its own `Date` and `Connection`), `Content-Length` and `Server` set.
    pub header: pingora_http::ResponseHeader,
    pub body: Bytes,
    pub fresh_until: SystemTime,
    /// What `Age` counts from (the meta's epoch: stored or last revalidated).
    pub epoch: SystemTime,
    pub variance: Option<HashBinary>,
    /// When a hit last refreshed the entry's recency (Unix seconds).
    touched: AtomicU64,
}

#[derive(Clone)]
struct HotWeight;

impl quick_cache::Weighter<HashBinary, Arc<HotEntry>> for HotWeight {
    fn weight(&self, _k: &HashBinary, v: &Arc<HotEntry>) -> u64 {
        // body, header bytes, and the map/allocator overhead measured per entry (S7 bench:
        // ~3 KiB beyond a 2 KiB body)
        let header: usize = v
            .header
            .headers
            .iter()
            .map(|(n, val)| n.as_str().len() + val.len() + 64)
            .sum();
        (v.body.len() + header + 2048) as u64
    }
}

type HotMap = quick_cache::sync::Cache<HashBinary, Arc<HotEntry>, HotWeight>;

/// What the memory tier needs of an entry's metadata: header, fresh until, variance, epoch.
type HotHead = (
    pingora_http::ResponseHeader,
    SystemTime,
    Option<HashBinary>,
    SystemTime,
);

fn hot_head(meta: &CacheMeta) -> HotHead {
    (
        own_header(meta.response_header()),
        meta.fresh_until(),
        meta.variance(),
        meta.epoch(),
    )
}

/// A copy of `h` that owns its bytes. A plain clone shares header values with the buffer the
/// upstream response was read into, so keeping it would pin that whole buffer (several KiB) per
/// entry of the memory tier.
fn own_header(h: &pingora_http::ResponseHeader) -> pingora_http::ResponseHeader {
    let mut out = match pingora_http::ResponseHeader::build(h.status, Some(h.headers.len())) {
        Ok(o) => o,
        Err(_) => return h.clone(),
    };
    out.set_version(h.version);
    // with the names' case as received (`Last-Modified`, not `last-modified`)
    for (name, value) in h.case_header_iter() {
        if let Ok(v) = http::HeaderValue::from_bytes(value.as_bytes()) {
            let _ = out.append_header(Bytes::copy_from_slice(name.as_slice()), v);
        }
    }
    out
}

/// A zone's disk store.
pub struct DiskStorage {
    /// The zone's name, for metrics.
    name: String,
    dir: PathBuf,
    levels: Vec<usize>,
    max_entry_size: Option<u64>,
    /// Entries, LRU order and size (`index`): admitted, touched and evicted here, not through
    /// Pingora's eviction manager.
    index: Mutex<Index>,
    /// Combined ids of the variants (entries with a variance) stored under a primary key; an
    /// entry without one has the primary as its id, and one varying by encoding alone has an
    /// id derived from the primary (`remove_primary`): neither needs a record here. Inline for one
    /// variant: no allocation per key (S7 bench).
    variants: RwLock<HashMap<HashBinary, SmallVec<[HashBinary; 1]>>>,
    seq: AtomicU64,
    hot: Option<HotMap>,
    /// Largest body kept in the memory tier.
    hot_max: u64,
}

impl DiskStorage {
    /// A store in `dir` evicting beyond `max_size` bytes or `max_entries` entries.
    pub fn new(
        name: &str,
        dir: PathBuf,
        levels: Vec<usize>,
        max_entry_size: Option<u64>,
        (max_size, max_entries): (u64, usize),
        memory: u64,
    ) -> std::io::Result<DiskStorage> {
        std::fs::create_dir_all(dir.join("tmp"))?;
        // Fills that never finished (a crash) are garbage.
        for e in std::fs::read_dir(dir.join("tmp"))?.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        Ok(DiskStorage {
            name: name.to_string(),
            dir,
            levels,
            max_entry_size,
            index: Mutex::new(Index::new(max_size, max_entries)),
            variants: RwLock::new(HashMap::new()),
            seq: AtomicU64::new(0),
            hot: (memory > 0).then(|| {
                HotMap::with_weighter(
                    (memory / 4096).clamp(16, 1 << 20) as usize,
                    memory,
                    HotWeight,
                )
            }),
            // at most 1/16 of the tier, and 1 MiB
            hot_max: (memory / 16).min(1 << 20),
        })
    }

    /// `<dir>/<last hex chars per level>/.../<hex>`, as NGINX's `levels`.
    pub fn path_of(&self, id: &HashBinary) -> PathBuf {
        let h = hex(id);
        let mut p = self.dir.clone();
        let mut end = h.len();
        for l in &self.levels {
            p.push(&h[end - l..end]);
            end -= l;
        }
        p.push(h);
        p
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn entries(&self) -> usize {
        self.index().len()
    }

    pub fn bytes(&self) -> u64 {
        self.index().bytes()
    }

    /// A reload's `max_size`; it applies from the next entry stored.
    pub fn set_max_size(&self, max_size: u64) {
        self.index().set_max_bytes(max_size);
    }

    /// Index an entry (replacing one under its id) and remove what that evicts. A memory-tier
    /// copy under the id is of the file replaced: it goes (the next HIT reads the new one).
    fn insert(&self, entry: Entry) {
        if let Some(h) = &self.hot {
            h.remove(&entry.id);
        }
        let (_, evicted) = self.index().insert(entry);
        // Variants by encoding alone are derived when needed (`remove_primary`), not recorded:
        // every compressible response a compressing location stores is one.
        if entry.id != entry.primary && !entry.by_encoding {
            if let Ok(mut v) = self.variants.write() {
                let list = v.entry(entry.primary).or_default();
                if !list.contains(&entry.id) {
                    list.push(entry.id);
                }
            }
        }
        for e in &evicted {
            self.forget(e.id, Some(e));
            crate::metrics::METRICS
                .cache_evictions
                .with_label_values(&[&self.name])
                .inc();
        }
    }

    /// Remove an entry from the index and disk. Returns whether it existed.
    fn remove(&self, id: &HashBinary) -> bool {
        let old = self.index().remove(id);
        self.forget(*id, old.as_ref()) || old.is_some()
    }

    /// Drop what is kept of an entry outside the index (its file, memory copy, variant
    /// record); `old` is what the index held. Returns whether a file was removed.
    fn forget(&self, id: HashBinary, old: Option<&Entry>) -> bool {
        // the file first: a HIT putting its copy in memory meanwhile sees the file gone
        // (`lookup`), or its copy is removed here after
        let existed_on_disk = std::fs::remove_file(self.path_of(&id)).is_ok();
        if let Some(h) = &self.hot {
            h.remove(&id);
        }
        if let Some(old) = old.filter(|o| o.id != o.primary) {
            if let Ok(mut v) = self.variants.write() {
                if let Some(list) = v.get_mut(&old.primary) {
                    list.retain(|x| *x != id);
                    if list.is_empty() {
                        v.remove(&old.primary);
                    }
                }
            }
        }
        existed_on_disk
    }

    /// Remove every variant stored under a primary key (PURGE, unsafe-method invalidation).
    pub fn remove_primary(&self, primary: &HashBinary) -> bool {
        let mut ids: SmallVec<[HashBinary; 1]> = self
            .variants
            .read()
            .ok()
            .and_then(|v| v.get(primary).cloned())
            .unwrap_or_default();
        if !ids.contains(primary) {
            ids.push(*primary);
        }
        // variants by encoding alone: derived (also those not indexed yet after a restart)
        for v in policy::encoding_variances() {
            let id = derived_id(primary, v);
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        let mut any = false;
        for id in ids {
            any |= self.remove(&id);
        }
        any
    }

    /// The in-memory copy of an entry, if the memory tier holds it.
    pub fn hot_get(&self, id: &HashBinary) -> Option<Arc<HotEntry>> {
        self.hot.as_ref()?.get(id)
    }

    pub fn memory_get(&self, id: &HashBinary) -> Option<Arc<HotEntry>> {
        self.hot_get(id)
    }
    pub fn memory_hit(&self, id: &HashBinary, e: &HotEntry) {
        self.hot_hit(id, e)
    }

    /// Record a hit served from the memory tier (recency for `inactive` and LRU eviction), at
    /// most once a second per entry: `inactive` counts in seconds, and the LRU order within one
    /// second is not worth taking the index lock on every request.
    pub fn hot_hit(&self, id: &HashBinary, e: &HotEntry) {
        let now = now_secs();
        if e.touched.swap(now, Ordering::Relaxed) == now {
            return;
        }
        self.index().touch(id, secs32(now));
    }

    fn hot_put(&self, id: HashBinary, head: HotHead, body: Bytes) {
        if let Some(h) = &self.hot {
            if body.len() as u64 <= self.hot_max {
                let mut header = head.0;
                // A HIT is sent with its own `Date` and `Connection` (HTTP/1 session, `front`).
                for h in [
                    http::header::TRANSFER_ENCODING,
                    http::header::DATE,
                    http::header::CONNECTION,
                ] {
                    header.remove_header(&h);
                }
                if crate::headers::from_upstream(&mut header)
                    .and_then(|_| header.insert_header(http::header::CONTENT_LENGTH, body.len()))
                    .is_err()
                {
                    return;
                }
                h.insert(
                    id,
                    Arc::new(HotEntry {
                        header,
                        body,
                        fresh_until: head.1,
                        variance: head.2,
                        epoch: head.3,
                        touched: AtomicU64::new(0),
                    }),
                );
            }
        }
    }

    /// Remove every entry whose key carries `tag` (the location that stored it).
    pub fn remove_tag(&self, tag: &str) -> usize {
        let Some(tag) = known_tag(tag) else {
            return 0;
        };
        self.remove_where(|e| e.tag == tag)
    }

    /// Remove every indexed entry `pred` selects. Returns how many.
    fn remove_where(&self, pred: impl Fn(&Entry) -> bool) -> usize {
        let ids = self.index().select(pred);
        for id in &ids {
            self.remove(id);
        }
        ids.len()
    }

    /// An entry by id with its open file, from the index or (not yet indexed: right after a
    /// restart) from disk; a use of it for the LRU order. Offsets come from the file itself.
    fn find(&self, id: &HashBinary) -> Option<(Entry, File)> {
        let known = self.index().get(id).map(|k| k.file_len());
        let path = self.path_of(id);
        match read_entry(&path) {
            Ok(Some((entry, f))) => {
                if entry.id != *id {
                    // the index must not outlive the file (a fill skips what it thinks stored)
                    self.remove(id);
                    return None;
                }
                match known {
                    // the index entry keeps its access time, digest and freshness
                    Some(len) if len == entry.file_len() => {
                        self.index().touch(id, secs32(now_secs()));
                    }
                    _ => {
                        self.insert(entry);
                        // removed (evicted, purged) between the index lookup and now: the
                        // index must not keep what is gone
                        if !still_linked(&f) {
                            self.index().remove(id);
                        }
                    }
                }
                Some((entry, f))
            }
            Ok(None) if known.is_some() => {
                self.remove(id);
                None
            }
            Ok(None) => None,
            Err(err) => {
                log::warn!("cache: removing unreadable entry {}: {err}", path.display());
                self.remove(id);
                None
            }
        }
    }

    /// Index every entry on disk (at start-up, in the background): restarts keep their HITs and
    /// `max_size` accounting. Unreadable or truncated files are removed.
    pub fn scan(&self) -> usize {
        let mut found = 0;
        let mut stack = vec![self.dir.clone()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for de in rd.flatten() {
                let p = de.path();
                let Ok(ft) = de.file_type() else { continue };
                if ft.is_dir() {
                    if p != self.dir.join("tmp") {
                        stack.push(p);
                    }
                    continue;
                }
                let Some(id) = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(pingora_cache::key::str2hex)
                else {
                    continue;
                };
                let already = self.index().contains(&id);
                if !already && self.find(&id).is_some() {
                    found += 1;
                }
            }
        }
        found
    }

    /// Remove entries not read for `inactive`. Returns how many.
    pub fn sweep_inactive(&self, inactive: std::time::Duration) -> usize {
        let cutoff = secs32(now_secs().saturating_sub(inactive.as_secs()));
        self.remove_where(|e| e.last_access < cutoff)
    }

    fn tmp_path(&self, id: &HashBinary) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.dir
            .join("tmp")
            .join(format!("{}.{}.{n}", hex(id), *PID))
    }
}

struct Hit {
    file: File,
    pos: u64,
    end: u64,
    body_offset: u64,
    body_len: u64,
}

#[async_trait]
impl HandleHit for Hit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let n = ((self.end - self.pos) as usize).min(HIT_CHUNK);
        let mut buf = BytesMut::zeroed(n);
        let mut filled = 0;
        while filled < n {
            let r = self
                .file
                .read_at(&mut buf[filled..], self.pos + filled as u64)
                .map_err(|e| io_err("cache read", e))?;
            if r == 0 {
                return Error::e_explain(ErrorType::InternalError, "cache entry shrank");
            }
            filled += r;
        }
        self.pos += n as u64;
        Ok(Some(buf.freeze()))
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        let start = start as u64;
        if start >= self.body_len {
            return Error::e_explain(ErrorType::InternalError, "seek beyond body");
        }
        self.pos = self.body_offset + start;
        self.end = self.body_offset
            + end
                .map(|e| (e as u64).min(self.body_len))
                .unwrap_or(self.body_len);
        Ok(())
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

/// Moves the finished temp file `tmp` to `dest`, atomically replacing any entry there.
///
/// An existing entry is swapped out with `renameat2(RENAME_EXCHANGE)` and then unlinked,
/// rather than renamed over: ext4 (`auto_da_alloc`, the default) forces a synchronous
/// writeback of the new file on every rename that replaces one, which was a third of the
/// CPU time of a bypassed (re-stored) response. A file replaced again within seconds is then
/// usually never written to the disk at all. Readers see the old entry or the new one, never
/// neither. The level directories are created only when the move says they are missing.
fn replace_file(tmp: &Path, dest: &Path) -> std::io::Result<()> {
    match exchange(tmp, dest) {
        // `tmp` now names the old entry
        Ok(()) => return std::fs::remove_file(tmp),
        // no entry yet (or no exchange on this filesystem): a plain rename
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT | libc::EINVAL | libc::ENOSYS)
            ) => {}
        Err(e) => return Err(e),
    }
    match std::fs::rename(tmp, dest) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let Some(parent) = dest.parent() else {
                return Err(e);
            };
            std::fs::create_dir_all(parent)?;
            std::fs::rename(tmp, dest)
        }
        other => other,
    }
}

#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let a = std::ffi::CString::new(a.as_os_str().as_bytes())?;
    let b = std::ffi::CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_a: &Path, _b: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from_raw_os_error(libc::ENOSYS))
}

/// Bytes of a fill kept in memory before the temp file is created: a small entry is written
/// with one `write` (head and body together) when it finishes.
const WRITE_BUFFER: usize = 64 * 1024;

struct Miss {
    storage: &'static DiskStorage,
    id: HashBinary,
    key: CompactCacheKey,
    tmp: PathBuf,
    /// The entry's fixed header and metadata, written first.
    head: Vec<u8>,
    /// The body so far, until head and body pass [`WRITE_BUFFER`] and go to `file`.
    body: BytesMut,
    /// The temp file, once created.
    file: Option<File>,
    /// The temp file exists (Drop removes it unless it was renamed into place).
    created: bool,
    done: bool,
    body_offset: u64,
    written: u64,
    meta_lens: (u32, u32),
    /// Digest of the response so far (see [`Entry::content`]).
    digest: xxhash_rust::xxh3::Xxh3,
    fresh_until: u64,
}

/// Write `a` then `b` to `f`, with as few system calls as the kernel allows.
fn write_both(f: &mut File, a: &[u8], b: &[u8]) -> std::io::Result<()> {
    let n = f.write_vectored(&[std::io::IoSlice::new(a), std::io::IoSlice::new(b)])?;
    if n < a.len() {
        f.write_all(&a[n..])?;
        f.write_all(b)
    } else {
        f.write_all(&b[n - a.len()..])
    }
}

/// Digest of what identifies a stored response apart from its body: status and headers, but
/// not `Date`, which differs between two otherwise identical answers.
fn head_digest(h: &pingora_http::ResponseHeader) -> xxhash_rust::xxh3::Xxh3 {
    let mut d = xxhash_rust::xxh3::Xxh3::new();
    d.update(&h.status.as_u16().to_le_bytes());
    for (name, value) in h.headers.iter() {
        if name == http::header::DATE {
            continue;
        }
        d.update(name.as_str().as_bytes());
        d.update(b":");
        d.update(value.as_bytes());
        d.update(b"\n");
    }
    d
}

impl Miss {
    /// Create the temp file and write head and body so far, in one `writev` when it can.
    fn spill(&mut self) -> Result<File> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&self.tmp)
            .map_err(|e| io_err("cache create", e))?;
        self.created = true;
        write_both(&mut f, &self.head, &self.body).map_err(|e| io_err("cache write", e))?;
        Ok(f)
    }
}

#[async_trait]
impl HandleMiss for Miss {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        if self.done {
            return Error::e_explain(ErrorType::InternalError, "cache write after finish");
        }
        self.written += data.len() as u64;
        self.digest.update(&data);
        if let Some(max) = self.storage.max_entry_size {
            if self.written > max {
                return Error::e_explain(
                    ErrorType::InternalError,
                    "cache entry over max_entry_size",
                );
            }
        }
        if let Some(f) = self.file.as_mut() {
            return f.write_all(&data).map_err(|e| io_err("cache write", e));
        }
        self.body.extend_from_slice(&data);
        if self.head.len() + self.body.len() > WRITE_BUFFER {
            let f = self.spill()?;
            self.file = Some(f);
            self.body = BytesMut::new();
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<MissFinishType> {
        if self.done {
            return Error::e_explain(ErrorType::InternalError, "cache finish twice");
        }
        self.done = true;
        let content = self.digest.digest().max(1);
        let known = self.storage.index().get(&self.id).copied();
        if let Some(old) = known.filter(|o| {
            o.content == content && o.body_len == self.written && o.fresh_until as u64 > now_secs()
        }) {
            // The same response as the fresh entry already stored (a bypass refetching an
            // unchanged answer): keep that file rather than writing it again. It keeps its
            // age; a temp file (a spilled fill) is removed by Drop.
            self.storage.index().touch(&self.id, secs32(now_secs()));
            return Ok(MissFinishType::Created(old.file_len() as usize));
        }
        let len = self.written.to_le_bytes();
        match self.file.take() {
            Some(f) => f
                .write_all_at(&len, 8)
                .map_err(|e| io_err("cache finish", e))?,
            None => {
                // the whole entry is still in memory: one write
                self.head[8..16].copy_from_slice(&len);
                self.spill()?;
            }
        }
        let dest = self.storage.path_of(&self.id);
        replace_file(&self.tmp, &dest).map_err(|e| io_err("cache rename", e))?;
        let file_len = self.body_offset + self.written;
        self.storage.insert(Entry {
            content,
            ..Entry::new(
                self.id,
                &self.key,
                self.meta_lens,
                self.written,
                self.fresh_until,
            )
        });
        // renamed: nothing for Drop to clean up
        self.tmp = PathBuf::new();
        Ok(MissFinishType::Created(file_len as usize))
    }
}

impl Drop for Miss {
    fn drop(&mut self) {
        // A fill that did not finish (client gone, upstream cut, error) leaves nothing behind.
        if self.created && !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[async_trait]
impl Storage for DiskStorage {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let id = key.combined_bin();
        let Some((entry, file)) = self.find(&id) else {
            return Ok(None);
        };
        let meta = match read_meta(&file, &entry) {
            Ok(m) => m,
            Err(e) => {
                log::warn!("cache: removing entry with unreadable meta: {e}");
                self.remove(&id);
                return Ok(None);
            }
        };
        // A fresh entry read back enters the memory tier (once). Should the file be replaced
        // or removed meanwhile (a fill, a purge), that copy goes again: those remove the
        // file first and the memory copy after, and this checks the file after its copy.
        if self.hot.is_some()
            && entry.body_len <= self.hot_max
            && meta.is_fresh(SystemTime::now())
            && self.hot_get(&id).is_none()
        {
            let mut body = vec![0u8; entry.body_len as usize];
            if file.read_exact_at(&mut body, entry.body_offset()).is_ok() {
                self.hot_put(id, hot_head(&meta), Bytes::from(body));
                if !is_at(&file, &self.path_of(&id)) {
                    if let Some(h) = &self.hot {
                        h.remove(&id);
                    }
                }
            }
        }
        Ok(Some((
            meta,
            Box::new(Hit {
                file,
                pos: entry.body_offset(),
                end: entry.file_len(),
                body_offset: entry.body_offset(),
                body_len: entry.body_len,
            }),
        )))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        let id = key.combined_bin();
        let compact = key.to_compact();
        let blobs = meta.serialize()?;
        let tmp = self.tmp_path(&id);
        let head = encode_head(&compact, &blobs, 0, 4096).map_err(|e| io_err("cache head", e))?;
        let body_offset = head.len() as u64;
        let meta_lens = (blobs.0.len() as u32, blobs.1.len() as u32);
        Ok(Box::new(Miss {
            storage: self,
            id,
            meta_lens,
            key: compact,
            tmp,
            head,
            // sized from Content-Length when the body will be buffered whole (written at once)
            body: {
                let limit = WRITE_BUFFER as u64;
                let cl = meta
                    .response_header()
                    .headers
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .filter(|n| *n <= limit)
                    .unwrap_or(0);
                BytesMut::with_capacity(cl as usize)
            },
            file: None,
            created: false,
            done: false,
            body_offset,
            written: 0,
            digest: head_digest(meta.response_header()),
            fresh_until: unix_secs(meta.fresh_until()),
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        let id = target.key().combined_bin();
        // Pingora purges with `PurgeType::Eviction` only for an eviction manager's picks; the
        // index evicts by itself (`insert`).
        let _ = purge_type;
        Ok(if self.remove(&id) {
            PurgeOutcome::Purged(None)
        } else {
            PurgeOutcome::NotFound
        })
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        // Revalidated (304): rewrite the entry with the new meta, atomically as a fill.
        let id = key.combined_bin();
        if let Some(h) = &self.hot {
            h.remove(&id);
        }
        let Some((entry, mut old)) = self.find(&id) else {
            return Ok(false);
        };
        let blobs = meta.serialize()?;
        let tmp = self.tmp_path(&id);
        // the key as stored: the file's own tag
        let stored = CompactCacheKey {
            user_tag: tag_name(entry.tag),
            ..key.to_compact()
        };
        let res = (|| -> std::io::Result<()> {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            let head = encode_head(&stored, &blobs, entry.body_len, 0)?;
            f.write_all(&head)?;
            std::io::Seek::seek(&mut old, std::io::SeekFrom::Start(entry.body_offset()))?;
            let copied = std::io::copy(&mut (&mut old).take(entry.body_len), &mut f)?;
            if copied != entry.body_len {
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "entry shrank",
                ));
            }
            replace_file(&tmp, &self.path_of(&id))?;
            Ok(())
        })();
        match res {
            Ok(()) => {
                let meta_lens = (blobs.0.len() as u32, blobs.1.len() as u32);
                let fresh_until = unix_secs(meta.fresh_until());
                self.insert(Entry::new(
                    id,
                    &stored,
                    meta_lens,
                    entry.body_len,
                    fresh_until,
                ));
                Ok(true)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(io_err("cache update meta", e))
            }
        }
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

#[cfg(test)]
mod layout_tests {
    use super::*;

    /// PURGE right after a restart, before the background scan indexed the entries on disk:
    /// the variants by negotiated encoding are derived from the primary key and removed from
    /// disk too (they were removed only when indexed, and came back with the scan).
    #[test]
    fn purge_removes_encoding_variants_not_indexed_yet() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = DiskStorage::new(
            "z",
            dir.path().to_path_buf(),
            vec![1, 2],
            None,
            (u64::MAX, usize::MAX),
            0,
        )
        .expect("store");
        let primary = [3u8; 16];
        let paths: Vec<PathBuf> = policy::encoding_variances()
            .map(|v| store.path_of(&derived_id(&primary, v)))
            .chain([store.path_of(&primary)])
            .collect();
        for p in &paths {
            std::fs::create_dir_all(p.parent().expect("level dir")).expect("mkdir");
            std::fs::write(p, b"an entry from before the restart").expect("write");
        }
        assert_eq!(store.entries(), 0);
        assert!(store.remove_primary(&primary));
        for p in &paths {
            assert!(!p.exists(), "{} left behind", p.display());
        }
        assert!(!store.remove_primary(&primary), "nothing left to purge");
    }

    /// The index holds one `Entry` per stored response inline (S7 bench: 10,000 keys): keep
    /// it at 72 bytes, no allocation of its own.
    #[test]
    fn entry_stays_compact() {
        assert!(
            std::mem::size_of::<Entry>() <= 72,
            "{}",
            std::mem::size_of::<Entry>()
        );
    }

    #[test]
    fn entry_records_its_key() {
        let key = CompactCacheKey {
            primary: [7; 16],
            variance: Some(Box::new([9; 16])),
            user_tag: "/api/".into(),
        };
        let e = Entry::new(key.combined_bin(), &key, (10, 20), 300, 0);
        assert_eq!(e.primary, key.primary);
        assert!(!e.by_encoding);
        assert_eq!(&*tag_name(e.tag), "/api/");
        assert_eq!(known_tag("/api/"), Some(e.tag));
        assert_eq!(e.meta_offset(), FIXED as u64 + 5);
        assert_eq!(e.file_len(), FIXED as u64 + 5 + 30 + 300);
        // a variant by the negotiated encoding alone derives from the primary key
        let gz = policy::encoding_variances().nth(1).unwrap_or_default();
        let key = CompactCacheKey {
            variance: Some(Box::new(gz)),
            ..key
        };
        let e = Entry::new(key.combined_bin(), &key, (10, 20), 300, 0);
        assert!(e.by_encoding);
        assert_eq!(derived_id(&key.primary, gz), e.id);
    }
}
