//! A zone's eviction order (`max_size`, `keys_zone`): a least-recently-used list behind
//! Pingora's `EvictionManager`, keeping per entry only its 16-byte id, its weight and two links
//! in one array (Pingora's own LRU boxes a node per entry holding a copy of the whole cache key,
//! about twice the memory per key).
//!
//! Entries are identified by their combined id (`combined_bin()`: primary key and variance). An
//! evicted entry is handed back as a key whose primary is that id and which has no variance, so
//! its `combined_bin()` is the id again: what the store's `purge` looks up.

use async_trait::async_trait;
use hashbrown::HashTable;
use pingora_cache::eviction::{CacheEntryKey, CacheEntryKeyRef, EvictionManager};
use pingora_cache::key::{CacheHashKey, CompactCacheKey, HashBinary};
use pingora_error::Result;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

const NIL: u32 = u32::MAX;

struct Node {
    id: HashBinary,
    /// Towards the most recently used end.
    prev: u32,
    /// Towards the least recently used end.
    next: u32,
    weight: usize,
}

/// The table's hash of an id: ids are already uniform hashes (blake2b), their first 8 bytes do.
fn hash(id: &HashBinary) -> u64 {
    let [a, b, c, d, e, f, g, h, ..] = *id;
    u64::from_le_bytes([a, b, c, d, e, f, g, h])
}

#[derive(Default)]
struct List {
    /// Slots in `nodes`, found by their node's id: 4 bytes a bucket.
    index: HashTable<u32>,
    nodes: Vec<Node>,
    /// Slots of removed nodes, reused first.
    free: Vec<u32>,
    /// Most recently used.
    head: Option<u32>,
    /// Least recently used.
    tail: Option<u32>,
    weight: usize,
}

impl List {
    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let n = &self.nodes[i as usize];
            (n.prev, n.next)
        };
        match prev {
            NIL => self.head = (next != NIL).then_some(next),
            p => self.nodes[p as usize].next = next,
        }
        match next {
            NIL => self.tail = (prev != NIL).then_some(prev),
            n => self.nodes[n as usize].prev = prev,
        }
    }

    fn push_front(&mut self, i: u32) {
        let old = self.head;
        {
            let n = &mut self.nodes[i as usize];
            n.prev = NIL;
            n.next = old.unwrap_or(NIL);
        }
        match old {
            Some(h) => self.nodes[h as usize].prev = i,
            None => self.tail = Some(i),
        }
        self.head = Some(i);
    }

    fn slot(&self, id: &HashBinary) -> Option<u32> {
        self.index
            .find(hash(id), |&i| self.nodes[i as usize].id == *id)
            .copied()
    }

    fn promote(&mut self, id: &HashBinary) -> bool {
        let Some(i) = self.slot(id) else {
            return false;
        };
        if self.head != Some(i) {
            self.unlink(i);
            self.push_front(i);
        }
        true
    }

    /// Set the entry's weight (adding it when new) and make it the most recently used. Returns
    /// its previous weight, `None` when it is new.
    fn upsert(&mut self, id: HashBinary, weight: usize) -> Option<usize> {
        if let Some(i) = self.slot(&id) {
            let old = std::mem::replace(&mut self.nodes[i as usize].weight, weight);
            self.weight = self.weight - old + weight;
            self.promote(&id);
            return Some(old);
        }
        let node = Node {
            id,
            prev: NIL,
            next: NIL,
            weight,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        let nodes = &self.nodes;
        self.index
            .insert_unique(hash(&id), i, |&j| hash(&nodes[j as usize].id));
        self.push_front(i);
        self.weight += weight;
        None
    }

    fn remove(&mut self, id: &HashBinary) -> Option<usize> {
        let nodes = &self.nodes;
        let (i, _) = self
            .index
            .find_entry(hash(id), |&i| nodes[i as usize].id == *id)
            .ok()?
            .remove();
        self.unlink(i);
        let weight = std::mem::take(&mut self.nodes[i as usize].weight);
        self.weight -= weight;
        self.free.push(i);
        Some(weight)
    }

    fn pop_lru(&mut self) -> Option<(HashBinary, usize)> {
        let id = self.nodes[self.tail? as usize].id;
        self.remove(&id).map(|w| (id, w))
    }
}

/// The eviction manager of one zone.
pub struct Lru {
    list: Mutex<List>,
    /// `max_size` in bytes (changed by a reload).
    limit: AtomicUsize,
    /// `keys_zone` in entries.
    max_items: usize,
    evicted_size: AtomicUsize,
    evicted_items: AtomicUsize,
}

fn id_of(k: &CompactCacheKey) -> HashBinary {
    k.combined_bin()
}

/// The key an entry is known by here, and handed back as when evicted (see the module
/// comment); the store passes it for its own calls too.
pub(crate) fn key_of(id: HashBinary) -> CacheEntryKey {
    CacheEntryKey::key_only(CompactCacheKey {
        primary: id,
        variance: None,
        user_tag: "".into(),
    })
}

impl Lru {
    pub fn new(limit: usize, max_items: usize) -> Lru {
        Lru {
            list: Mutex::new(List::default()),
            limit: AtomicUsize::new(limit),
            max_items,
            evicted_size: AtomicUsize::new(0),
            evicted_items: AtomicUsize::new(0),
        }
    }

    pub fn set_weight_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    fn list(&self) -> std::sync::MutexGuard<'_, List> {
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drop least recently used entries until the weight and the count are within limits.
    fn evict(&self, list: &mut List) -> Vec<CacheEntryKey> {
        let limit = self.limit.load(Ordering::Relaxed);
        let mut out = Vec::new();
        while list.weight > limit || list.index.len() > self.max_items {
            let Some((id, weight)) = list.pop_lru() else {
                break;
            };
            self.evicted_size.fetch_add(weight, Ordering::Relaxed);
            self.evicted_items.fetch_add(1, Ordering::Relaxed);
            out.push(key_of(id));
        }
        out
    }
}

#[async_trait]
impl EvictionManager for Lru {
    fn total_size(&self) -> usize {
        self.list().weight
    }

    fn total_items(&self) -> usize {
        self.list().index.len()
    }

    fn evicted_size(&self) -> usize {
        self.evicted_size.load(Ordering::Relaxed)
    }

    fn evicted_items(&self) -> usize {
        self.evicted_items.load(Ordering::Relaxed)
    }

    fn admit(&self, item: CacheEntryKey, size: usize, _fresh: SystemTime) -> Vec<CacheEntryKey> {
        let mut list = self.list();
        list.upsert(id_of(item.key()), size.max(1));
        self.evict(&mut list)
    }

    fn increment_weight(
        &self,
        item: &CacheEntryKey,
        delta: usize,
        max_weight: Option<usize>,
    ) -> Vec<CacheEntryKey> {
        let id = id_of(item.key());
        let mut list = self.list();
        let old = list.slot(&id).map(|i| list.nodes[i as usize].weight);
        let grown = old.unwrap_or(0).saturating_add(delta);
        let weight = match max_weight {
            Some(m) => grown.min(m).max(old.unwrap_or(0)),
            None => grown,
        };
        list.upsert(id, weight.max(1));
        self.evict(&mut list)
    }

    fn remove(&self, item: CacheEntryKeyRef<'_>) {
        self.list().remove(&id_of(item.key()));
    }

    fn access(&self, item: &CacheEntryKey, size: usize, _fresh: SystemTime) -> bool {
        let id = id_of(item.key());
        let mut list = self.list();
        if list.promote(&id) {
            return true;
        }
        list.upsert(id, size.max(1));
        false
    }

    fn peek(&self, item: &CacheEntryKey) -> bool {
        self.list().slot(&id_of(item.key())).is_some()
    }

    /// Not kept across restarts: the store rebuilds the order from the files on disk.
    async fn save(&self, _dir_path: &str) -> Result<()> {
        Ok(())
    }

    async fn load(&self, _dir_path: &str) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> CacheEntryKey {
        CacheEntryKey::key_only(CompactCacheKey {
            primary: [n; 16],
            variance: None,
            user_tag: "loc".into(),
        })
    }

    fn ids(v: Vec<CacheEntryKey>) -> Vec<u8> {
        v.iter().map(|k| k.key().combined_bin()[0]).collect()
    }

    fn admit(l: &Lru, n: u8, size: usize) -> Vec<u8> {
        ids(l.admit(key(n), size, SystemTime::now()))
    }

    #[test]
    fn evicts_least_recently_used_to_the_weight_limit() {
        let l = Lru::new(100, 1000);
        assert!(admit(&l, 1, 40).is_empty());
        assert!(admit(&l, 2, 40).is_empty());
        // 1 is used again: 2 is now the oldest
        assert!(l.access(&key(1), 40, SystemTime::now()));
        assert_eq!(admit(&l, 3, 40), vec![2]);
        assert_eq!((l.total_size(), l.total_items()), (80, 2));
        // a large entry pushes out everything older than itself
        assert_eq!(admit(&l, 4, 90), vec![1, 3]);
        assert_eq!((l.evicted_items(), l.evicted_size()), (3, 120));
        assert!(l.peek(&key(4)) && !l.peek(&key(1)));
    }

    #[test]
    fn evicted_keys_name_the_entry_by_its_combined_id() {
        let l = Lru::new(10, 1000);
        let mut variant = CompactCacheKey {
            primary: [7; 16],
            variance: Some(Box::new([9; 16])),
            user_tag: "loc".into(),
        };
        let id = variant.combined_bin();
        assert_ne!(id, variant.primary);
        l.admit(
            CacheEntryKey::key_only(variant.clone()),
            8,
            SystemTime::now(),
        );
        let out = l.admit(key(1), 8, SystemTime::now());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].key().combined_bin(), id);
        // removing by the real key finds the entry
        variant.user_tag = "other".into();
        l.admit(
            CacheEntryKey::key_only(variant.clone()),
            1,
            SystemTime::now(),
        );
        let k = CacheEntryKey::key_only(variant);
        l.remove((&k).into());
        assert!(!l.peek(&k));
        assert_eq!(l.total_items(), 1);
    }

    #[test]
    fn keeps_to_the_entry_count_and_reuses_slots() {
        let l = Lru::new(usize::MAX, 3);
        for n in 1..=3 {
            assert!(admit(&l, n, 1).is_empty());
        }
        assert_eq!(admit(&l, 4, 1), vec![1]);
        l.remove((&key(3)).into());
        assert!(admit(&l, 5, 1).is_empty());
        assert_eq!(l.list().nodes.len(), 4, "the removed slot was reused");
        assert_eq!(admit(&l, 6, 1), vec![2]);
        assert_eq!(admit(&l, 7, 1), vec![4]);
        assert_eq!(admit(&l, 8, 1), vec![5]);
    }

    #[test]
    fn readmitting_updates_the_weight() {
        let l = Lru::new(100, 10);
        admit(&l, 1, 30);
        admit(&l, 1, 50);
        assert_eq!((l.total_size(), l.total_items()), (50, 1));
        // access of an unknown entry tracks it without evicting
        assert!(!l.access(&key(2), 80, SystemTime::now()));
        assert_eq!(l.total_size(), 130);
        assert_eq!(admit(&l, 3, 1), vec![1]);
        // reload: a smaller limit applies at the next admission
        l.set_weight_limit(0);
        assert_eq!(admit(&l, 4, 1), vec![2, 3, 4]);
        assert_eq!(l.total_items(), 0);
    }

    #[test]
    fn increment_weight_grows_up_to_the_cap() {
        let l = Lru::new(1000, 10);
        l.increment_weight(&key(1), 10, None);
        assert_eq!(l.total_size(), 10);
        l.increment_weight(&key(1), 10, Some(15));
        assert_eq!(l.total_size(), 15);
        l.increment_weight(&key(1), 10, Some(5));
        assert_eq!(l.total_size(), 15, "a cap below the weight keeps it");
        l.increment_weight(&key(2), 0, None);
        assert_eq!((l.total_size(), l.total_items()), (16, 2));
    }
}
