//! The cache's request-side work outside Pingora's cache phases: fresh HITs answered from a
//! zone's memory tier, `PURGE`, and invalidation after unsafe methods (RFC 9111 §4.4).

use crate::cache::policy;
use crate::compress::{self, Encoding};
use crate::config::{CacheRules, Handler, Invalidate, Location};
use crate::context::{apply_headers, host, Ctx, RequestVars, WithUri};
use bytes::Bytes;
use http::header;
use pingora_cache::key::{CacheHashKey, HashBinary};
use pingora_cache::CacheKey;
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

/// Request headers that need Pingora's cache machinery (conditional and range requests).
const NOT_HOT: [header::HeaderName; 6] = [
    header::RANGE,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
];

/// The cache key's user tag: the name of the location that stores the entry (so a location's
/// entries can be dropped together, `invalidate_on_unsafe: location`).
pub fn tag(ctx: &Ctx) -> String {
    ctx.location().map(|l| l.name.clone()).unwrap_or_default()
}

/// Answer a fresh HIT from the zone's memory tier, before Pingora's cache machinery (no
/// disk, no metadata decoding, no cache state machine). Falls through (`false`) for anything
/// else: conditional or range requests, bypass, stale or absent entries, other variants.
pub async fn serve_hot(session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
    let state = ctx.state.clone();
    let Some(loc) = ctx.location.map(|i| &state.cfg.locations[i]) else {
        return Ok(false);
    };
    let Some(rules) = loc.cache.as_ref() else {
        return Ok(false);
    };
    let zone = state.zones[rules.zone];
    let req = session.req_header();
    let head = req.method == http::Method::HEAD;
    if !cacheable_method(rules, &req.method) || NOT_HOT.iter().any(|h| req.headers.contains_key(h))
    {
        return Ok(false);
    }
    let found = {
        let vars = RequestVars {
            session,
            ctx,
            resp: None,
        };
        if policy::any_set(&rules.bypass, &vars) {
            return Ok(false);
        }
        // the key's hashes without building a `CacheKey` (its user tag is not hashed)
        let primary = pingora_cache::key::hash_key(policy::key_bytes(rules, &vars));
        let Some(first) = zone.storage.hot_get(&primary) else {
            return Ok(false);
        };
        let want = variance_for(ctx, &first.header, req);
        if want == first.variance {
            Some((primary, first))
        } else if let Some(v) = want {
            let mut k = CacheKey::new("", "");
            k.set_primary_bin_override(primary);
            k.set_variance_key(v);
            let id = k.combined_bin();
            zone.storage
                .hot_get(&id)
                .filter(|e| e.variance == Some(v))
                .map(|e| (id, e))
        } else {
            None
        }
    };
    let Some((id, entry)) = found else {
        return Ok(false);
    };
    let status = entry.header.status.as_u16();
    if std::time::SystemTime::now() > entry.fresh_until || (loc.intercept_errors && status >= 300) {
        return Ok(false);
    }
    ctx.cache_on = true;
    ctx.cache_status = "HIT";
    let mut resp = entry.header.clone();
    apply_headers(session, ctx, loc, &mut resp);
    let no_body = head || entry.body.is_empty();
    session
        .write_response_header(Box::new(resp), no_body)
        .await?;
    if !no_body {
        session
            .write_response_body(Some(entry.body.clone()), true)
            .await?;
    }
    zone.storage.hot_hit(&id, &entry);
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
    let key = policy::key_bytes(
        rules,
        &RequestVars {
            session,
            ctx,
            resp: None,
        },
    );
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
    let vars = RequestVars {
        session,
        ctx,
        resp: None,
    };
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
