//! The cache's request-side work outside Pingora's cache phases: fresh HITs answered from a
//! zone's memory tier, `PURGE`, and invalidation after unsafe methods (RFC 9111 §4.4).

use crate::cache::memory::MemoryEntry;
use crate::cache::policy;
use crate::compress::{self, Encoding};
use crate::config::{CacheRules, Handler, Invalidate, Location};
use crate::context::{apply_headers_for, host, Conn, Ctx, RequestVars, WithUri};
use bytes::Bytes;
use http::header;
use pingora_cache::key::{CacheHashKey, HashBinary};
use pingora_cache::CacheKey;
use pingora_core::protocols::http::conditional_filter;
use pingora_error::Result;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

/// The variance of a stored response for this request. Responses outrigger compressed, or
/// would compress for a client that asks, vary by the negotiated encoding (whatever the origin's
/// Vary says and `gzip.vary`).
pub fn variance_for(ctx: &Ctx, stored: &ResponseHeader, req: &RequestHeader) -> Option<HashBinary> {
    let encoding = ctx
        .location()
        .and_then(|l| l.compress.as_deref())
        .filter(|c| {
            c.any_enabled()
                && (stored.headers.contains_key(header::CONTENT_ENCODING)
                    || compress::compressible(c, stored))
        })
        .map(|_| ctx.encoding.map_or("identity", Encoding::token));
    policy::variance(ctx.cache_rules()?, stored, req, encoding)
}

/// GET always, HEAD when the rules list it (answered from the GET entry).
pub fn cacheable_method(rules: &CacheRules, method: &http::Method) -> bool {
    *method == http::Method::GET || (*method == http::Method::HEAD && rules.head)
}

/// Request headers that need Pingora's cache machinery (range requests and the preconditions
/// it evaluates; `If-None-Match` and `If-Modified-Since` are answered here with its filter).
const NOT_HOT: [header::HeaderName; 4] = [
    header::RANGE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
];

/// The cache key's user tag: the name of the location that stores the entry (so a location's
/// entries can be dropped together, `invalidate_on_unsafe: location`).
pub fn tag(ctx: &Ctx) -> String {
    ctx.location().map(|l| l.name.clone()).unwrap_or_default()
}

/// A fresh HIT found in a zone's memory tier, with the header to send (rules applied).
pub struct Hot {
    pub id: HashBinary,
    pub entry: std::sync::Arc<MemoryEntry>,
    pub header: ResponseHeader,
    /// The header only: a HEAD request, or a 304.
    pub header_only: bool,
}

impl Hot {
    /// The body to send (none for HEAD or a 304).
    pub fn body(&self) -> Option<&Bytes> {
        (!self.header_only && !self.entry.body.is_empty()).then_some(&self.entry.body)
    }

    /// Count the hit in the zone's recency order.
    pub fn touch(&self, ctx: &Ctx) {
        if let Some(rules) = ctx.cache_rules() {
            ctx.state.zones[rules.zone]
                .storage
                .memory_hit(&self.id, &self.entry);
        }
    }
}

/// Look a routed request up in its zone's memory tier. `None` for anything but a fresh HIT
/// there: range requests and `If-Match`/`If-Unmodified-Since`/`If-Range`, bypass, stale or
/// absent entries, other variants. `If-None-Match`/`If-Modified-Since` get their 304 here.
pub fn lookup_hot(req: &RequestHeader, conn: Conn, ctx: &mut Ctx) -> Option<Hot> {
    let state = ctx.state.clone();
    let loc = &state.cfg.locations[ctx.location?];
    let rules = loc.cache.as_ref()?;
    let zone = state.zones[rules.zone];
    if !cacheable_method(rules, &req.method) || NOT_HOT.iter().any(|h| req.headers.contains_key(h))
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
        let primary = pingora_cache::key::hash_key(policy::key_bytes(rules, &vars));
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
        && conditional_filter::not_modified_filter(req, &header);
    if not_modified {
        conditional_filter::to_304(&mut header);
    }
    apply_headers_for(req, conn, ctx, loc, &mut header);
    Some(Hot {
        id,
        entry,
        header,
        header_only: not_modified || req.method == http::Method::HEAD,
    })
}

/// Answer a fresh HIT from the zone's memory tier, before Pingora's cache machinery (no
/// disk, no metadata decoding, no cache state machine). Falls through (`false`) for anything
/// else (see [`lookup_hot`]).
pub async fn serve_hot(session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
    let Some(hot) = lookup_hot(session.req_header(), Conn::of(session), ctx) else {
        return Ok(false);
    };
    hot.touch(ctx);
    let body = hot.body().cloned();
    session
        .write_response_header(Box::new(hot.header), body.is_none())
        .await?;
    if let Some(body) = body {
        crate::output::write_body(session, body).await?;
    }
    Ok(true)
}

/// `PURGE /uri`: drop every stored variant of the URI's key; 200, 404 when absent, 403 for
/// clients outside `purge.allow`.
pub async fn purge(session: &mut Session, ctx: &mut Ctx, rules: &CacheRules) -> Result<()> {
    let ip = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    if !ip.is_some_and(|ip| rules.purge_allow.iter().any(|n| n.contains(&ip))) {
        return crate::error_page::send_error(session, ctx, 403, None).await;
    }
    if let Some(Location {
        handler: Handler::Proxy(p),
        ..
    }) = ctx.location()
    {
        ctx.upstream = Some(p.upstream);
    }
    let key = policy::key_bytes(rules, &RequestVars::new(session, ctx, None));
    let zone = ctx.state.zones[rules.zone];
    let found = zone
        .storage
        .remove_primary(&pingora_cache::key::hash_key(&key));
    if !found {
        return crate::error_page::send_error(session, ctx, 404, None).await;
    }
    let body = Bytes::from_static(b"{\"purged\":true}\n");
    let mut h = ResponseHeader::build(200, Some(4))?;
    h.insert_header(header::SERVER, crate::SERVER_NAME)?;
    h.insert_header(header::CONTENT_TYPE, "application/json")?;
    h.insert_header(header::CONTENT_LENGTH, body.len())?;
    session.write_response_header(Box::new(h), false).await?;
    session.write_response_body(Some(body), true).await
}

/// RFC 9111 §4.4: a successful unsafe request invalidates the stored GET of its URI and of
/// the same-host URIs its `Location` / `Content-Location` name.
pub fn invalidate_unsafe(session: &Session, ctx: &Ctx, resp: &ResponseHeader) {
    let Some(rules) = ctx.cache_rules() else {
        return;
    };
    let method = &session.req_header().method;
    let unsafe_method = !matches!(
        *method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS | http::Method::TRACE
    );
    if rules.invalidate_on_unsafe == Invalidate::Off
        || !unsafe_method
        || resp.status.as_u16() >= 400
    {
        return;
    }
    let storage = ctx.state.zones[rules.zone].storage;
    if rules.invalidate_on_unsafe == Invalidate::Location {
        if let Some(loc) = ctx.location() {
            storage.remove_tag(&loc.name);
        }
        return;
    }
    let vars = RequestVars::new(session, ctx, None);
    let own = policy::key_bytes(rules, &vars);
    storage.remove_primary(&pingora_cache::key::hash_key(&own));
    let host = host(session.req_header(), &ctx.cfg().server_name);
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        let Some(uri) = resp
            .headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<http::Uri>().ok())
        else {
            continue;
        };
        if uri.host().is_some_and(|h| !h.eq_ignore_ascii_case(&host))
            || !uri.path().starts_with('/')
        {
            continue;
        }
        let other = WithUri {
            inner: &vars,
            path: uri.path(),
            query: uri.query(),
        };
        let key = policy::key_bytes(rules, &other);
        storage.remove_primary(&pingora_cache::key::hash_key(&key));
    }
}
