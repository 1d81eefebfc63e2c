//! Which ids are stored under a primary key, so that PURGE and invalidation remove every
//! variant of a response. An entry without a variance has the primary as its id, and one
//! varying by the negotiated encoding alone has an id derived from the primary: neither needs a
//! record. Only the others (an origin's `Vary`) are recorded.

use super::index::Entry;
use super::policy;
use pingora_cache::key::{CacheHashKey, CompactCacheKey, HashBinary};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::sync::RwLock;

/// Ids under a primary key: inline for one variant, so no allocation per key.
type Ids = SmallVec<[HashBinary; 1]>;

#[derive(Default)]
pub(super) struct Variants(RwLock<HashMap<HashBinary, Ids>>);

impl Variants {
    /// Record a stored entry if it is a variant that needs a record. Variants by encoding alone
    /// are derived when needed instead: every compressible response a compressing location
    /// stores is one.
    pub(super) fn record(&self, entry: &Entry) {
        if entry.id != entry.primary && !entry.by_encoding {
            if let Ok(mut v) = self.0.write() {
                let list = v.entry(entry.primary).or_default();
                if !list.contains(&entry.id) {
                    list.push(entry.id);
                }
            }
        }
    }

    /// Forget the entry `old`, removed from the store.
    pub(super) fn forget(&self, old: &Entry) {
        if old.id == old.primary {
            return;
        }
        if let Ok(mut v) = self.0.write() {
            if let Some(list) = v.get_mut(&old.primary) {
                list.retain(|x| *x != old.id);
                if list.is_empty() {
                    v.remove(&old.primary);
                }
            }
        }
    }

    /// Every id that may be stored under `primary`: the recorded variants, the primary itself,
    /// and the variants by encoding alone (derived, so also those not indexed yet after a
    /// restart).
    pub(super) fn ids_under(&self, primary: &HashBinary) -> Ids {
        let mut ids: Ids = self
            .0
            .read()
            .ok()
            .and_then(|v| v.get(primary).cloned())
            .unwrap_or_default();
        if !ids.contains(primary) {
            ids.push(*primary);
        }
        for v in policy::encoding_variances() {
            let id = derived_id(primary, v);
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }
}

/// The id of `primary`'s variant with `variance`.
pub(super) fn derived_id(primary: &HashBinary, variance: HashBinary) -> HashBinary {
    CompactCacheKey {
        primary: *primary,
        variance: Some(Box::new(variance)),
        user_tag: Box::default(),
    }
    .combined_bin()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &CompactCacheKey) -> Entry {
        Entry::new(key.combined_bin(), key, (0, 0), 0, 0)
    }

    #[test]
    fn records_only_what_cannot_be_derived() {
        let vs = Variants::default();
        let primary = [7u8; 16];
        let by_vary = CompactCacheKey {
            primary,
            variance: Some(Box::new([9; 16])),
            user_tag: "/api/".into(),
        };
        let gz = policy::encoding_variances().nth(1).unwrap_or_default();
        let by_encoding = CompactCacheKey {
            variance: Some(Box::new(gz)),
            ..by_vary.clone()
        };
        let (a, b) = (entry(&by_vary), entry(&by_encoding));
        assert_eq!(derived_id(&primary, gz), b.id);
        vs.record(&a);
        vs.record(&b);
        let ids = vs.ids_under(&primary);
        assert_eq!(ids[..2], [a.id, primary]);
        assert!(ids.contains(&b.id));
        assert_eq!(ids.len(), 1 + 1 + policy::encoding_variances().count());
        vs.forget(&a);
        assert!(!vs.ids_under(&primary).contains(&a.id));
        assert!(vs.0.read().is_ok_and(|v| v.is_empty()));
    }
}
