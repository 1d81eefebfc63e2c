//! A zone's memory tier (config `memory`): small fresh entries kept whole in RAM with the
//! header a HIT sends, so they are answered without touching the disk or deserialising
//! metadata. An entry enters the tier when it is first read back from disk (a HIT, or a request
//! that waited on the fill), not when it is stored: entries requested once, often most of a
//! cache, never take RAM.

use bytes::Bytes;
use pingora_cache::key::HashBinary;
use pingora_cache::CacheMeta;
use pingora_http::ResponseHeader;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

/// The header preparation applied to an entry as it enters the tier: what every upstream
/// response gets before it is sent (`headers::from_upstream`), given by the caller of
/// `Zone::open` so that the store knows nothing of response header rules.
pub type PrepareHeader = fn(&mut ResponseHeader) -> pingora_error::Result<()>;

/// An entry of the memory tier.
pub struct MemoryEntry {
    /// The header as a memory-tier HIT sends it before the location's header rules: prepared
    /// ([`PrepareHeader`]), `Transfer-Encoding`, `Date` and `Connection` removed (Pingora's
    /// session or the edge writes its own `Date` and `Connection`), `Content-Length` set.
    pub header: ResponseHeader,
    pub body: Bytes,
    pub fresh_until: SystemTime,
    /// What `Age` counts from (the meta's epoch: stored or last revalidated).
    pub epoch: SystemTime,
    pub variance: Option<HashBinary>,
    /// When a hit last refreshed the entry's recency (Unix seconds).
    touched: AtomicU64,
}

impl MemoryEntry {
    /// Record a hit at `now` (Unix seconds); false when one was already recorded that second.
    pub(super) fn touch(&self, now: u64) -> bool {
        self.touched.swap(now, Ordering::Relaxed) != now
    }
}

#[derive(Clone)]
struct MemoryWeight;

impl quick_cache::Weighter<HashBinary, Arc<MemoryEntry>> for MemoryWeight {
    fn weight(&self, _k: &HashBinary, v: &Arc<MemoryEntry>) -> u64 {
        // body, header bytes, and the map and allocator overhead of an entry
        let header: usize = v
            .header
            .headers
            .iter()
            .map(|(n, val)| n.as_str().len() + val.len() + 64)
            .sum();
        (v.body.len() + header + 2048) as u64
    }
}

type MemoryMap = quick_cache::sync::Cache<HashBinary, Arc<MemoryEntry>, MemoryWeight>;

/// The tier itself: entries by id, weighed against the zone's `memory` bytes.
pub(super) struct MemoryTier {
    map: MemoryMap,
    /// Largest body kept.
    max_body: u64,
    prepare: PrepareHeader,
}

impl MemoryTier {
    /// A tier of `memory` bytes; `None` for 0 (no tier).
    pub(super) fn new(memory: u64, prepare: PrepareHeader) -> Option<MemoryTier> {
        (memory > 0).then(|| MemoryTier {
            map: MemoryMap::with_weighter(
                (memory / 4096).clamp(16, 1 << 20) as usize,
                memory,
                MemoryWeight,
            ),
            // at most 1/16 of the tier, and 1 MiB
            max_body: (memory / 16).min(1 << 20),
            prepare,
        })
    }

    pub(super) fn max_body(&self) -> u64 {
        self.max_body
    }

    pub(super) fn get(&self, id: &HashBinary) -> Option<Arc<MemoryEntry>> {
        self.map.get(id)
    }

    pub(super) fn remove(&self, id: &HashBinary) {
        self.map.remove(id);
    }

    /// Keep the response of `meta` with `body` under `id`, if the body is small enough and its
    /// header can be prepared.
    pub(super) fn put(&self, id: HashBinary, meta: &CacheMeta, body: Bytes) {
        if body.len() as u64 > self.max_body {
            return;
        }
        let mut header = own_header(meta.response_header());
        // A HIT is sent with its own `Date` and `Connection` (Pingora's session, the edge).
        for h in [
            http::header::TRANSFER_ENCODING,
            http::header::DATE,
            http::header::CONNECTION,
        ] {
            header.remove_header(&h);
        }
        if (self.prepare)(&mut header)
            .and_then(|_| header.insert_header(http::header::CONTENT_LENGTH, body.len()))
            .is_err()
        {
            return;
        }
        self.map.insert(
            id,
            Arc::new(MemoryEntry {
                header,
                body,
                fresh_until: meta.fresh_until(),
                variance: meta.variance(),
                epoch: meta.epoch(),
                touched: AtomicU64::new(0),
            }),
        );
    }
}

/// A copy of `h` that owns its bytes. A plain clone shares header values with the buffer the
/// upstream response was read into, so keeping it would pin that whole buffer (several KiB) per
/// entry of the memory tier.
fn own_header(h: &ResponseHeader) -> ResponseHeader {
    let mut out = match ResponseHeader::build(h.status, Some(h.headers.len())) {
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
