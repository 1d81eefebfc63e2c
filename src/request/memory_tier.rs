//! A routed request looked up in its zone's memory tier, the same on both paths: a fresh HIT
//! with its header ready to send, or nothing (Pingora's cache phases take the request).

use super::cache_key::{cacheable_method, primary_hash, variance_for};
use super::conditional;
use super::context::Ctx;
use super::vars::{apply_header_rules, Conn, RequestVars};
use crate::cache::memory::MemoryEntry;
use crate::cache::policy;
use crate::config::Handler;
use bytes::Bytes;
use http::header;
use pingora_cache::key::{CacheHashKey, HashBinary};
use pingora_cache::CacheKey;
use pingora_core::protocols::http::conditional_filter;
use pingora_http::{RequestHeader, ResponseHeader};

/// Request headers that need Pingora's cache machinery (range requests and the preconditions
/// it evaluates; `If-None-Match` and `If-Modified-Since` are answered here with its filter).
const NEEDS_CACHE_PHASES: [header::HeaderName; 4] = [
    header::RANGE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
];

/// A fresh HIT found in a zone's memory tier, with the header to send (rules applied).
pub struct MemoryHit {
    pub id: HashBinary,
    pub entry: std::sync::Arc<MemoryEntry>,
    pub header: ResponseHeader,
    /// The header only: a HEAD request, or a 304.
    pub header_only: bool,
}

impl MemoryHit {
    /// The body to send (none for HEAD or a 304).
    pub fn body(&self) -> Option<&Bytes> {
        (!self.header_only && !self.entry.body.is_empty()).then_some(&self.entry.body)
    }

    /// Count the hit in the zone's recency order.
    pub fn touch(&self, ctx: &Ctx) {
        if let Some(rules) = ctx.cache_rules() {
            ctx.state.zones[rules.zone]
                .storage
                .record_memory_hit(&self.id, &self.entry);
        }
    }
}

/// Look a routed request up in its zone's memory tier. `None` for anything but a fresh HIT
/// there: range requests and `If-Match`/`If-Unmodified-Since`/`If-Range`, bypass, stale or
/// absent entries, other variants. `If-None-Match`/`If-Modified-Since` get their 304 here.
pub fn lookup(req: &RequestHeader, conn: Conn, ctx: &mut Ctx) -> Option<MemoryHit> {
    let state = ctx.state.clone();
    let loc = &state.cfg.locations[ctx.location?];
    let rules = loc.cache.as_ref()?;
    let zone = state.zones[rules.zone];
    if !cacheable_method(rules, &req.method)
        || NEEDS_CACHE_PHASES
            .iter()
            .any(|h| req.headers.contains_key(h))
    {
        return None;
    }
    let (id, entry) = {
        let vars = RequestVars {
            req,
            conn,
            ctx,
            resp: None,
            body_bytes_sent: 0,
        };
        if policy::any_set(&rules.bypass, &vars) {
            return None;
        }
        // the key's hashes without building a `CacheKey` (its user tag is not hashed)
        let primary = primary_hash(rules, &vars, ctx);
        let first = zone.storage.memory_get(&primary)?;
        let want = variance_for(ctx, &first.header, req);
        if want == first.variance {
            (primary, first)
        } else {
            let v = want?;
            let mut k = CacheKey::new("", "");
            k.set_primary_bin_override(primary);
            k.set_variance_key(v);
            let id = k.combined_bin();
            let e = zone
                .storage
                .memory_get(&id)
                .filter(|e| e.variance == Some(v))?;
            (id, e)
        }
    };
    let status = entry.header.status.as_u16();
    let now = std::time::SystemTime::now();
    if now > entry.fresh_until || (loc.intercept_errors && status >= 300) {
        return None;
    }
    ctx.cache_on = true;
    ctx.cache_status = "HIT";
    ctx.memory_hit = true;
    let mut header = entry.header.clone();
    // As Pingora's HIT path: `Age` (RFC 9111 §4: a cache answering without validation must
    // send it), its not-modified filter on the stored header, then the rules.
    let age = now
        .duration_since(entry.epoch)
        .unwrap_or_default()
        .as_secs();
    let _ = header.insert_header(header::AGE, age);
    let not_modified = (req.headers.contains_key(header::IF_NONE_MATCH)
        || req.headers.contains_key(header::IF_MODIFIED_SINCE))
        && conditional::not_modified(req, &header, state.cfg.if_modified_since);
    if not_modified {
        conditional_filter::to_304(&mut header);
    }
    if let Handler::Proxy(p) = &loc.handler {
        p.redirects.apply(&mut header);
    }
    apply_header_rules(req, conn, ctx, loc, &mut header);
    Some(MemoryHit {
        id,
        entry,
        header,
        header_only: not_modified || req.method == http::Method::HEAD,
    })
}
