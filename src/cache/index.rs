//! A zone's in-memory index: what is known of each stored entry (`Entry`), the
//! least-recently-used order that `max_size` and `keys_zone` evict by, and the zone's total
//! size. Entries sit inline in one chunked array with their two LRU links (80 bytes a slot),
//! found through a table of 4-byte slot numbers: no allocation per entry. The store admits,
//! touches and evicts here itself, with no second table or lock (Pingora's `EvictionManager`
//! is not used).

use super::entry_file::{EntryHead, Layout};
use super::policy;
use super::tags::tag_index;
use hashbrown::HashTable;
use pingora_cache::key::{CacheHashKey, CompactCacheKey, HashBinary};
use std::time::{SystemTime, UNIX_EPOCH};

/// The time in Unix seconds, as entries record it.
pub(super) fn now_secs() -> u64 {
    unix_secs(SystemTime::now())
}

pub(super) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Unix seconds in 32 bits (enough until 2106).
pub(super) fn secs32(s: u64) -> u32 {
    u32::try_from(s).unwrap_or(u32::MAX)
}

/// What the index knows about one stored entry: 72 bytes, no allocation of its own (the index
/// holds one per stored response). Its offsets follow from the file's [`Layout`].
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// `combined_bin()` of the entry's key: primary key and variance (the tag plays no part).
    pub id: HashBinary,
    /// The primary key (the id when there is no variance).
    pub primary: HashBinary,
    /// Digest of the stored response (status, headers but `Date`, body); 0 when unknown (an
    /// entry found on disk, or rewritten by a revalidation).
    pub(super) content: u64,
    /// [`tag_index`] of the user tag, and the tag's length in the file.
    pub(super) tag: u16,
    pub(super) tag_len: u16,
    pub(super) meta_lens: (u32, u32),
    pub(super) body_len: u64,
    /// Unix seconds.
    pub last_access: u32,
    /// When the stored response stops being fresh, in Unix seconds; 0 when unknown.
    pub(super) fresh_until: u32,
    /// The variance is the negotiated encoding's alone: the id derives from the primary key
    /// (`remove_primary`) and is not recorded in `variants`.
    pub(super) by_encoding: bool,
}

impl Entry {
    /// An entry stored now under `key`, fresh until `fresh_until` (Unix seconds).
    pub(super) fn new(
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

    /// The entry a file's header describes (digest and freshness unknown).
    pub(super) fn on_disk(head: &EntryHead) -> Entry {
        let key = &head.key;
        let l = &head.layout;
        Entry::new(key.combined_bin(), key, l.meta_lens, l.body_len, 0)
    }

    /// An entry whose file is `file_len` bytes (at least the fixed header), for tests.
    #[cfg(test)]
    pub fn for_test(id: HashBinary, file_len: u64) -> Entry {
        Entry {
            id,
            primary: id,
            content: 0,
            tag: 0,
            tag_len: 0,
            meta_lens: (0, 0),
            body_len: file_len.saturating_sub(super::entry_file::FIXED as u64),
            last_access: 0,
            fresh_until: 0,
            by_encoding: false,
        }
    }

    pub(super) fn layout(&self) -> Layout {
        Layout {
            tag_len: self.tag_len,
            meta_lens: self.meta_lens,
            body_len: self.body_len,
        }
    }

    pub(super) fn body_offset(&self) -> u64 {
        self.layout().body_offset()
    }

    pub fn file_len(&self) -> u64 {
        self.layout().file_len()
    }
}

/// The digest [`Entry::content`] is of, begun with what identifies a response apart from its
/// body: status and headers, but not `Date`, which differs between two otherwise identical
/// answers. The body is added as it is stored.
pub(super) fn content_digest(h: &pingora_http::ResponseHeader) -> xxhash_rust::xxh3::Xxh3 {
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

const NIL: u32 = u32::MAX;
/// Slots per chunk: the array grows by 40 KiB without moving what it holds.
const CHUNK: usize = 512;

struct Slot {
    entry: Entry,
    /// Towards the most recently used end.
    prev: u32,
    /// Towards the least recently used end.
    next: u32,
}

/// The table's hash of an id: ids are already uniform hashes (blake2b), their first 8 bytes do.
fn hash(id: &HashBinary) -> u64 {
    let [a, b, c, d, e, f, g, h, ..] = *id;
    u64::from_le_bytes([a, b, c, d, e, f, g, h])
}

pub struct Index {
    chunks: Vec<Vec<Slot>>,
    table: HashTable<u32>,
    /// Slots of removed entries, reused first.
    free: Vec<u32>,
    /// Most recently used.
    head: u32,
    /// Least recently used.
    tail: u32,
    /// Sum of the entries' file sizes.
    bytes: u64,
    /// `max_size`, bytes (changed by a reload).
    max_bytes: u64,
    /// `keys_zone`, entries.
    max_entries: usize,
}

impl Index {
    pub fn new(max_bytes: u64, max_entries: usize) -> Index {
        Index {
            chunks: Vec::new(),
            table: HashTable::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            bytes: 0,
            max_bytes,
            max_entries,
        }
    }

    pub fn set_max_bytes(&mut self, max_bytes: u64) {
        self.max_bytes = max_bytes;
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn slot(&self, i: u32) -> &Slot {
        &self.chunks[i as usize / CHUNK][i as usize % CHUNK]
    }

    fn slot_mut(&mut self, i: u32) -> &mut Slot {
        &mut self.chunks[i as usize / CHUNK][i as usize % CHUNK]
    }

    fn find(&self, id: &HashBinary) -> Option<u32> {
        self.table
            .find(hash(id), |&i| self.slot(i).entry.id == *id)
            .copied()
    }

    pub fn get(&self, id: &HashBinary) -> Option<&Entry> {
        self.find(id).map(|i| &self.slot(i).entry)
    }

    pub fn contains(&self, id: &HashBinary) -> bool {
        self.find(id).is_some()
    }

    /// Record a use of the entry: it becomes the most recently used, read at `now` (Unix
    /// seconds). Returns it.
    pub fn touch(&mut self, id: &HashBinary, now: u32) -> Option<Entry> {
        let i = self.find(id)?;
        self.promote(i);
        let s = self.slot_mut(i);
        s.entry.last_access = now;
        Some(s.entry)
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let s = self.slot(i);
            (s.prev, s.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.slot_mut(p).next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slot_mut(n).prev = prev,
        }
    }

    fn push_front(&mut self, i: u32) {
        let old = self.head;
        {
            let s = self.slot_mut(i);
            s.prev = NIL;
            s.next = old;
        }
        match old {
            NIL => self.tail = i,
            h => self.slot_mut(h).prev = i,
        }
        self.head = i;
    }

    fn promote(&mut self, i: u32) {
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
    }

    /// Add or replace the entry under `entry.id` as the most recently used, then evict least
    /// recently used entries (possibly this one, when it alone is over `max_size`) until the
    /// zone is within `max_size` and `keys_zone`. Returns the entry replaced and those evicted.
    pub fn insert(&mut self, entry: Entry) -> (Option<Entry>, Vec<Entry>) {
        let old = match self.find(&entry.id) {
            Some(i) => {
                let old = std::mem::replace(&mut self.slot_mut(i).entry, entry);
                self.bytes = self.bytes - old.file_len() + entry.file_len();
                self.promote(i);
                Some(old)
            }
            None => {
                let slot = Slot {
                    entry,
                    prev: NIL,
                    next: NIL,
                };
                let i = match self.free.pop() {
                    Some(i) => {
                        *self.slot_mut(i) = slot;
                        i
                    }
                    None => {
                        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
                            self.chunks.push(Vec::with_capacity(CHUNK));
                        }
                        let n = (self.chunks.len() - 1) * CHUNK;
                        let Some(last) = self.chunks.last_mut() else {
                            unreachable!("a chunk was just pushed")
                        };
                        last.push(slot);
                        (n + last.len() - 1) as u32
                    }
                };
                let chunks = &self.chunks;
                self.table.insert_unique(hash(&entry.id), i, |&j| {
                    hash(&chunks[j as usize / CHUNK][j as usize % CHUNK].entry.id)
                });
                self.push_front(i);
                self.bytes += entry.file_len();
                None
            }
        };
        let mut evicted = Vec::new();
        while self.bytes > self.max_bytes || self.table.len() > self.max_entries {
            let id = match self.tail {
                NIL => break,
                t => self.slot(t).entry.id,
            };
            evicted.extend(self.remove(&id));
        }
        (old, evicted)
    }

    pub fn remove(&mut self, id: &HashBinary) -> Option<Entry> {
        let chunks = &self.chunks;
        let (i, _) = self
            .table
            .find_entry(hash(id), |&i| {
                chunks[i as usize / CHUNK][i as usize % CHUNK].entry.id == *id
            })
            .ok()?
            .remove();
        self.unlink(i);
        let entry = self.slot(i).entry;
        self.bytes -= entry.file_len();
        self.free.push(i);
        Some(entry)
    }

    /// The ids of the entries `pred` selects.
    pub fn select(&self, pred: impl Fn(&Entry) -> bool) -> Vec<HashBinary> {
        self.table
            .iter()
            .map(|&i| &self.slot(i).entry)
            .filter(|e| pred(e))
            .map(|e| e.id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::entry_file::FIXED;
    use super::super::tags::{known_tag, tag_name};
    use super::*;

    /// Sizes in hundreds of bytes (an entry file is at least its fixed header).
    fn entry(n: u8, size: u64) -> Entry {
        Entry::for_test([n; 16], size * 100)
    }

    fn ids(v: Vec<Entry>) -> Vec<u8> {
        v.iter().map(|e| e.id[0]).collect()
    }

    fn admit(ix: &mut Index, n: u8, size: u64) -> Vec<u8> {
        ids(ix.insert(entry(n, size)).1)
    }

    #[test]
    fn evicts_least_recently_used_to_the_size_limit() {
        let mut ix = Index::new(100 * 100, 1000);
        assert!(admit(&mut ix, 1, 40).is_empty());
        assert!(admit(&mut ix, 2, 40).is_empty());
        // 1 is used again: 2 is now the oldest
        assert!(ix.touch(&[1; 16], 5).is_some());
        assert_eq!(ix.get(&[1; 16]).map(|e| e.last_access), Some(5));
        assert_eq!(admit(&mut ix, 3, 40), vec![2]);
        assert_eq!((ix.bytes(), ix.len()), (80 * 100, 2));
        // a large entry pushes out everything older than itself
        assert_eq!(admit(&mut ix, 4, 90), vec![1, 3]);
        assert!(ix.contains(&[4; 16]) && !ix.contains(&[1; 16]));
        // one over the limit alone does not stay
        assert_eq!(admit(&mut ix, 5, 101), vec![4, 5]);
        assert_eq!((ix.bytes(), ix.len()), (0, 0));
    }

    #[test]
    fn keeps_to_the_entry_count_and_reuses_slots() {
        let mut ix = Index::new(u64::MAX, 3);
        for n in 1..=3 {
            assert!(admit(&mut ix, n, 1).is_empty());
        }
        assert_eq!(admit(&mut ix, 4, 1), vec![1]);
        assert_eq!(ix.remove(&[3; 16]).map(|e| e.id), Some([3; 16]));
        assert!(ix.remove(&[3; 16]).is_none());
        assert!(admit(&mut ix, 5, 1).is_empty());
        assert_eq!(ix.chunks[0].len(), 4, "the removed slots were reused");
        assert_eq!(admit(&mut ix, 6, 1), vec![2]);
        assert_eq!(admit(&mut ix, 7, 1), vec![4]);
        assert_eq!(admit(&mut ix, 8, 1), vec![5]);
    }

    #[test]
    fn replacing_updates_the_size_and_recency() {
        let mut ix = Index::new(100 * 100, 10);
        admit(&mut ix, 1, 30);
        admit(&mut ix, 2, 10);
        let (old, evicted) = ix.insert(entry(1, 50));
        assert_eq!(old.map(|e| e.file_len()), Some(30 * 100));
        assert!(evicted.is_empty());
        assert_eq!((ix.bytes(), ix.len()), (60 * 100, 2));
        // 2 is now the least recently used
        assert_eq!(admit(&mut ix, 3, 45), vec![2]);
        // reload: a smaller limit applies at the next insert
        ix.set_max_bytes(0);
        assert_eq!(admit(&mut ix, 4, 1), vec![1, 3, 4]);
        assert_eq!((ix.bytes(), ix.len()), (0, 0));
    }

    #[test]
    fn grows_past_a_chunk_and_selects() {
        let mut ix = Index::new(u64::MAX, usize::MAX);
        for n in 0..(2 * CHUNK as u32 + 7) {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&n.to_le_bytes());
            let mut e = entry(0, 1);
            e.id = id;
            assert!(ix.insert(e).1.is_empty());
        }
        assert_eq!(ix.len(), 2 * CHUNK + 7);
        assert_eq!(ix.chunks.len(), 3);
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&(CHUNK as u32 + 3).to_le_bytes());
        assert!(ix.contains(&id));
        // n = 5, 261, 517, 773, 1029
        assert_eq!(ix.select(|e| e.id[0] == 5).len(), 5);
    }

    /// The index holds one `Entry` per stored response inline: keep it at 72 bytes, no
    /// allocation of its own.
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
        assert_eq!(e.layout().meta_offset(), FIXED as u64 + 5);
        assert_eq!(e.file_len(), FIXED as u64 + 5 + 30 + 300);
        // a variant by the negotiated encoding alone
        let gz = policy::encoding_variances().nth(1).unwrap_or_default();
        let key = CompactCacheKey {
            variance: Some(Box::new(gz)),
            ..key
        };
        let e = Entry::new(key.combined_bin(), &key, (10, 20), 300, 0);
        assert!(e.by_encoding);
    }
}
