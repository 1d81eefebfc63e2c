//! The cache in Pingora's phases: turning it on for a request (zone, collapsing lock,
//! `min_uses`, `max_entry_size`, `bypass`), its key, what is stored, when stale is served, the
//! memory-tier HIT answered before the cache state machine, the fill of a cold HEAD, `PURGE`,
//! and invalidation after unsafe methods (RFC 9111 §4.4).

use super::error_page;
use crate::cache::policy;
use crate::config::{CacheRules, Invalidate};
use crate::request::cache_key::{cache_key, cacheable_method, primary_hash};
use crate::request::context::Ctx;
use crate::request::memory_tier;
use crate::request::vars::{host, Conn, RequestVars, WithUri};
use bytes::Bytes;
use http::header;
use pingora_cache::{CacheKey, CachePhase, NoCacheReason, RespCacheable};
use pingora_core::protocols::http::HttpTask;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

/// Turn the cache on for this request when its location caches and its method is cacheable:
/// the zone's storage and collapsing lock, `min_uses`, `max_entry_size`, and `bypass` (NGINX
/// `proxy_cache_bypass`: no lookup, but the response is still stored).
pub fn enable(session: &mut Session, ctx: &mut Ctx) {
    let state = ctx.state.clone();
    let Some(rules) = ctx
        .location
        .and_then(|i| state.cfg.locations[i].cache.as_ref())
    else {
        return;
    };
    if !cacheable_method(rules, &session.req_header().method) {
        return;
    }
    let zone = state.zones[rules.zone];
    let lock = rules.lock.map(|(_, age)| zone.lock(age));
    let mut overrides = pingora_cache::CacheOptionOverrides::default();
    overrides.wait_timeout = rules.lock.map(|(timeout, _)| timeout);
    // no eviction manager: the store's index admits, orders and evicts (`cache::index`)
    session
        .cache
        .enable(zone.storage, None, None, lock, Some(overrides));
    if rules.min_uses > 1 {
        session
            .cache
            .set_admission_policy(zone.min_uses(rules.min_uses));
    }
    if let Some(max) = state.cfg.zones[rules.zone].max_entry_size {
        session
            .cache
            .set_max_file_size_bytes(usize::try_from(max).unwrap_or(usize::MAX));
    }
    ctx.cache_on = true;
    let vars = RequestVars::new(session, ctx, None);
    if policy::any_set(&rules.bypass, &vars) {
        let key = cache_key(rules, &vars, ctx);
        session.cache.set_cache_key(key);
        session.cache.bypass();
        ctx.cache_bypass = true;
    }
}

/// The request's cache key: the rendered `key` template, tagged with its location.
pub fn key(session: &Session, ctx: &Ctx) -> Result<CacheKey> {
    let Some(rules) = ctx.cache_rules() else {
        return Error::e_explain(ErrorType::InternalError, "cache key without cache rules");
    };
    let vars = RequestVars::new(session, ctx, None);
    Ok(cache_key(rules, &vars, ctx))
}

/// Whether and for how long the upstream's response is stored (`no_cache`, then the policy).
pub fn cacheability(session: &Session, resp: &ResponseHeader, ctx: &Ctx) -> RespCacheable {
    let Some(rules) = ctx.cache_rules() else {
        return RespCacheable::Uncacheable(NoCacheReason::NeverEnabled);
    };
    let vars = RequestVars::new(session, ctx, Some(resp));
    let no_cache = policy::any_set(&rules.no_cache, &vars);
    let verdict = policy::cacheability(rules, session.req_header(), resp, no_cache);
    if matches!(verdict, RespCacheable::Cacheable(_))
        && resp.headers.contains_key(header::SET_COOKIE)
    {
        // once per fill of the key: HITs never see the cookie
        log::info!(
            "storing the response without its Set-Cookie (ignore_headers: [Set-Cookie]), key: \"{}\"",
            session
                .cache
                .maybe_cache_key()
                .and_then(CacheKey::primary_key_str)
                .unwrap_or_default()
        );
    }
    verdict
}

/// NGINX `proxy_cache_use_stale`: whether a stale entry answers instead of `error` (`None`:
/// while it is being revalidated, `updating`).
pub fn stale_allowed(ctx: &Ctx, error: Option<&Error>) -> bool {
    let Some(rules) = ctx.cache_rules() else {
        return false;
    };
    let stale = &rules.use_stale;
    match error {
        None => stale.updating,
        Some(e) => match e.etype() {
            ErrorType::HTTPStatus(code) => stale.statuses.contains(code),
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                stale.timeout
            }
            _ => stale.error && *e.esource() == ErrorSource::Upstream,
        },
    }
}

/// Answer a fresh HIT from the zone's memory tier, before Pingora's cache machinery (no
/// disk, no metadata decoding, no cache state machine). Falls through (`false`) for anything
/// else (see [`memory_tier::lookup`]).
pub async fn answer_from_memory(session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
    let Some(hit) = memory_tier::lookup(session.req_header(), Conn::of(session), ctx) else {
        return Ok(false);
    };
    hit.touch(ctx);
    let body = hit.body().cloned();
    session
        .write_response_header(Box::new(hit.header), body.is_none())
        .await?;
    if let Some(body) = body {
        crate::output::write_body(session, body).await?;
    }
    Ok(true)
}

/// A HEAD whose lookup missed (or found a stale entry), answered from a GET subrequest that
/// fills the entry, as NGINX turns such a HEAD into a GET and stores it. Pingora would fetch
/// the GET itself but stop reading it once the HEAD's header is sent, so the fill was lost
/// unless the whole body came in the header's read. The subrequest (made a GET in
/// `request_filter`, see [`subrequest_is_get`]) takes the lock this request lets go of, reads the
/// whole response into the cache in the background, and its header, rules applied, is this
/// HEAD's answer. `false`: not such a request, Pingora goes on upstream.
pub async fn fill_for_head(session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
    let phase = session.cache.phase();
    if session.req_header().method != http::Method::HEAD
        || !matches!(phase, CachePhase::Miss | CachePhase::Expired)
    {
        return Ok(false);
    }
    let Some(spawner) = session.subrequest_spawner.as_ref() else {
        return Ok(false);
    };
    let (sub, mut handle) =
        spawner.create_subrequest(session, pingora_proxy::subrequest::Ctx::builder().build());
    // lets waiters (and the subrequest) look up again; one of them fills
    session.cache.disable(NoCacheReason::DeclinedToUpstream);
    tokio::spawn(sub.run());
    let header = loop {
        match handle.rx.recv().await {
            Some(HttpTask::Header(h, _)) if !h.status.is_informational() => break h,
            Some(HttpTask::Failed(e)) => return Err(e),
            Some(_) => {}
            None => return Error::e_explain(ErrorType::InternalError, "HEAD fill: no response"),
        }
    };
    // the GET goes on into the cache without us
    handle.drain_tasks();
    ctx.cache_status = policy::status_label(phase, false);
    session.write_response_header(header, true).await?;
    Ok(true)
}

/// A subrequest fills the cache (a cold HEAD's, Pingora's background revalidation): it asks
/// for the whole response, whatever the request it was made from.
pub fn subrequest_is_get(session: &mut Session) {
    if session.subrequest_ctx.is_some() && session.req_header().method == http::Method::HEAD {
        session.req_header_mut().set_method(http::Method::GET);
    }
}

/// `PURGE /uri`: drop every stored variant of the URI's key; 200, 404 when absent, 403 for
/// clients outside `purge.allow`.
pub async fn purge(session: &mut Session, ctx: &mut Ctx, rules: &CacheRules) -> Result<()> {
    let ip = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    if !ip.is_some_and(|ip| rules.purge_allow.iter().any(|n| n.contains(&ip))) {
        return error_page::send_error(session, ctx, 403, None).await;
    }
    let primary = primary_hash(rules, &RequestVars::new(session, ctx, None), ctx);
    let found = ctx.state.zones[rules.zone].storage.remove_primary(&primary);
    if !found {
        return error_page::send_error(session, ctx, 404, None).await;
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
    storage.remove_primary(&primary_hash(rules, &vars, ctx));
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
        if uri.host().is_some_and(|h| !h.eq_ignore_ascii_case(&host)) {
            continue;
        }
        let Ok(normalised) = crate::uri::normalize(uri.path()) else {
            continue;
        };
        let other = WithUri {
            inner: &vars,
            path: uri.path(),
            uri: &normalised,
            query: uri.query(),
        };
        storage.remove_primary(&primary_hash(rules, &other, ctx));
    }
}
