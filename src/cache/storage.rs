//! A zone's store behind pingora-cache: `DiskStorage` and its `Storage`, `HandleHit` (`Hit`)
//! and `HandleMiss` (`Miss`). One file per entry (`entry_file`, placed by `zone_dir`); bodies
//! stream to a temp file moved into place only on a complete `finish`, so a dropped fill, a
//! truncated upstream body or a crash never leaves an entry that is later served. The `index`
//! drives `max_size` and `keys_zone` eviction, `inactive` expiry and restart recovery. A hit
//! reads and deserialises the entry's metadata (`CacheMeta` is not `Clone`, so it is not kept
//! parsed); small entries read back also go to the zone's memory tier (`memory`).

use crate::cache::entry_file::{self, encode_head, is_at, read_entry, read_meta, still_linked};
use crate::cache::index::{content_digest, now_secs, secs32, unix_secs, Entry, Index};
use crate::cache::memory::{MemoryEntry, MemoryTier, PrepareHeader};
use crate::cache::tags::{known_tag, tag_name};
use crate::cache::variants::Variants;
use crate::cache::zone_dir::ZoneDir;
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
use std::any::Any;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

/// Body bytes returned per `read_body` on a disk hit: one client write each (`output`).
const HIT_CHUNK: usize = crate::output::WRITE_SIZE;

fn io_err(what: &'static str, e: std::io::Error) -> Box<Error> {
    Error::because(ErrorType::InternalError, what, e)
}

/// A zone's disk store.
pub struct DiskStorage {
    /// The zone's name, for metrics.
    name: String,
    dir: ZoneDir,
    max_entry_size: Option<u64>,
    /// Entries, LRU order and size (`index`): admitted, touched and evicted here, not through
    /// Pingora's eviction manager.
    index: Mutex<Index>,
    /// The ids stored under each primary key (`remove_primary`).
    variants: Variants,
    memory: Option<MemoryTier>,
}

impl DiskStorage {
    /// A store in `dir` evicting beyond `max_size` bytes or `max_entries` entries, with a
    /// memory tier of `memory` bytes whose entries get their header from `prepare`.
    pub fn new(
        name: &str,
        dir: PathBuf,
        levels: Vec<usize>,
        max_entry_size: Option<u64>,
        (max_size, max_entries): (u64, usize),
        memory: u64,
        prepare: PrepareHeader,
    ) -> std::io::Result<DiskStorage> {
        Ok(DiskStorage {
            name: name.to_string(),
            dir: ZoneDir::open(dir, levels)?,
            max_entry_size,
            index: Mutex::new(Index::new(max_size, max_entries)),
            variants: Variants::default(),
            memory: MemoryTier::new(memory, prepare),
        })
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
        if let Some(m) = &self.memory {
            m.remove(&entry.id);
        }
        let (_, evicted) = self.index().insert(entry);
        self.variants.record(&entry);
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
        let existed_on_disk = std::fs::remove_file(self.dir.path_of(&id)).is_ok();
        if let Some(m) = &self.memory {
            m.remove(&id);
        }
        if let Some(old) = old {
            self.variants.forget(old);
        }
        existed_on_disk
    }

    /// Remove every variant stored under a primary key (PURGE, unsafe-method invalidation).
    pub fn remove_primary(&self, primary: &HashBinary) -> bool {
        let mut any = false;
        for id in self.variants.ids_under(primary) {
            any |= self.remove(&id);
        }
        any
    }

    /// The in-memory copy of an entry, if the memory tier holds it.
    pub fn memory_get(&self, id: &HashBinary) -> Option<Arc<MemoryEntry>> {
        self.memory.as_ref()?.get(id)
    }

    /// Record a hit served from the memory tier (recency for `inactive` and LRU eviction), at
    /// most once a second per entry: `inactive` counts in seconds, and the LRU order within one
    /// second is not worth taking the index lock on every request.
    pub fn record_memory_hit(&self, id: &HashBinary, e: &MemoryEntry) {
        let now = now_secs();
        if !e.touch(now) {
            return;
        }
        self.index().touch(id, secs32(now));
    }

    /// Put a fresh entry read back from disk into the memory tier (once). Should the file be
    /// replaced or removed meanwhile (a fill, a purge), that copy goes again: those remove the
    /// file first and the memory copy after, and this checks the file after its copy.
    fn memory_fill(&self, id: HashBinary, entry: &Entry, file: &File, meta: &CacheMeta) {
        let Some(m) = &self.memory else {
            return;
        };
        if entry.body_len > m.max_body()
            || !meta.is_fresh(SystemTime::now())
            || m.get(&id).is_some()
        {
            return;
        }
        let mut body = vec![0u8; entry.body_len as usize];
        if file.read_exact_at(&mut body, entry.body_offset()).is_ok() {
            m.put(id, meta, Bytes::from(body));
            if !is_at(file, &self.dir.path_of(&id)) {
                m.remove(&id);
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
        let path = self.dir.path_of(id);
        match read_entry(&path) {
            Ok(Some((head, f))) => {
                let entry = Entry::on_disk(&head);
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
        self.dir.each_id(|id| {
            let already = self.index().contains(&id);
            if !already && self.find(&id).is_some() {
                found += 1;
            }
        });
        found
    }

    /// Remove entries not read for `inactive`. Returns how many.
    pub fn sweep_inactive(&self, inactive: std::time::Duration) -> usize {
        let cutoff = secs32(now_secs().saturating_sub(inactive.as_secs()));
        self.remove_where(|e| e.last_access < cutoff)
    }
}

/// A HIT served from disk: the body read from the open entry file, so a fill replacing the
/// file meanwhile does not change what this response sends.
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

/// Bytes of a fill kept in memory before the temp file is created: a small entry is written
/// with one `write` (head and body together) when it finishes.
const WRITE_BUFFER: usize = 64 * 1024;

/// A fill: the response being stored, written to a temp file renamed into place on `finish`.
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

impl Miss {
    /// Create the temp file and write head and body so far, in one `writev` when it can.
    fn spill(&mut self) -> Result<File> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&self.tmp)
            .map_err(|e| io_err("cache create", e))?;
        self.created = true;
        entry_file::write_both(&mut f, &self.head, &self.body)
            .map_err(|e| io_err("cache write", e))?;
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
        match self.file.take() {
            Some(f) => entry_file::write_body_len(&f, self.written)
                .map_err(|e| io_err("cache finish", e))?,
            None => {
                // the whole entry is still in memory: one write
                entry_file::set_body_len(&mut self.head, self.written);
                self.spill()?;
            }
        }
        let dest = self.storage.dir.path_of(&self.id);
        entry_file::replace_file(&self.tmp, &dest).map_err(|e| io_err("cache rename", e))?;
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
        let meta = match read_meta(&file, &entry.layout()) {
            Ok(m) => m,
            Err(e) => {
                log::warn!("cache: removing entry with unreadable meta: {e}");
                self.remove(&id);
                return Ok(None);
            }
        };
        self.memory_fill(id, &entry, &file, &meta);
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
        let tmp = self.dir.tmp_path(&id);
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
            digest: content_digest(meta.response_header()),
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
        if let Some(m) = &self.memory {
            m.remove(&id);
        }
        let Some((entry, mut old)) = self.find(&id) else {
            return Ok(false);
        };
        let blobs = meta.serialize()?;
        let tmp = self.dir.tmp_path(&id);
        // the key as stored: the file's own tag
        let stored = CompactCacheKey {
            user_tag: tag_name(entry.tag),
            ..key.to_compact()
        };
        let dest = self.dir.path_of(&id);
        entry_file::rewrite_meta(&mut old, &entry.layout(), &stored, &blobs, &tmp, &dest)
            .map_err(|e| io_err("cache update meta", e))?;
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

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::policy;
    use crate::cache::variants::derived_id;

    /// PURGE right after a restart, before the background scan indexed the entries on disk,
    /// removes the variants by negotiated encoding too: their ids derive from the primary key.
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
            |_| Ok(()),
        )
        .expect("store");
        let primary = [3u8; 16];
        let paths: Vec<PathBuf> = policy::encoding_variances()
            .map(|v| store.dir.path_of(&derived_id(&primary, v)))
            .chain([store.dir.path_of(&primary)])
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
}
