//! Pingora's phases for the requests the edge hands over (`ProxyHttp`): this file sequences
//! them and delegates to routing (`request::route`), static locations (`static_files`), the
//! cache (`cache`), error pages (`error_page`), compression of upstream bodies (`compression`),
//! header rules (`headers`) and the request's log line (`request::log`).

pub mod cache;
pub mod compression;
pub mod error_page;
pub mod static_files;

use crate::cache::policy;
use crate::config::{Handler, Location, ProxyConfig};
use crate::files;
use crate::headers;
use crate::metrics::METRICS;
use crate::request::cache_key::variance_for;
use crate::request::conditional;
use crate::request::context::Ctx;
use crate::request::log::{count_request, log_request, PendingLine};
use crate::request::route::{route, Routed};
use crate::request::vars::{apply_header_rules_for, host, RequestVars};
use crate::state::State;
use crate::wire::Wire;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use http::{header, Version};
use pingora_cache::key::HashBinary;
use pingora_cache::{CacheKey, CacheMeta, RespCacheable};
use pingora_core::modules::http::HttpModules;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// outrigger's `ProxyHttp`: Pingora's phases for every request the edge hands over.
pub struct Proxy {
    pub state: Arc<ArcSwap<State>>,
}

/// NGINX `client_max_body_size`: whether the request declares a body over the location's limit
/// (a chunked body is counted as it streams, in `request_body_filter`).
fn body_too_large(session: &Session, location: &Location) -> bool {
    let Some(max) = location.client_max_body_size else {
        return false;
    };
    session
        .req_header()
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|len| len > max)
}

/// Whether `e` means the client went away (errors writing to or reading from it) or stopped
/// reading (`send_timeout`). Errors of our own `write_response_*` calls in `request_filter`
/// carry no source, hence "not upstream".
fn client_gone(e: &Error) -> bool {
    *e.esource() != ErrorSource::Upstream
        && matches!(
            e.etype(),
            ErrorType::WriteError
                | ErrorType::ReadError
                | ErrorType::ConnectionClosed
                | ErrorType::WriteTimedout
        )
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = Ctx;

    /// No downstream modules: compression is `compress`'s, and Pingora's default (a disabled
    /// compression module) only cost a context allocation and two filter calls per request.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    fn new_ctx(&self) -> Ctx {
        Ctx::new(self.state.load_full())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        // NGINX `send_timeout`: each write to the client must progress within it (Pingora
        // applies it per body write; large bodies go out in several writes, `output`).
        session.set_write_timeout(Some(ctx.state.cfg.send_timeout));
        headers::drop_unnamed_upgrade(session.req_header_mut());
        cache::subrequest_is_get(session);
        let wire = wire_of(session);
        // The edge's keep-alive verdict (`keepalive_requests`, `keepalive_timeout: 0`,
        // shutdown); Pingora's session only reads the request's `Connection`.
        let close = wire.is_some_and(|w| !w.keep);
        ctx.connection = wire.map_or(0, |w| w.connection);
        // What the edge found for this request (in this config) is not found again.
        let found = wire
            .and_then(|w| w.route.as_ref())
            .filter(|r| Arc::ptr_eq(&r.cfg, &ctx.state.cfg))
            .map(|r| (r.path.clone(), r.location));
        if close {
            session.set_keepalive(None);
        }
        let memory_asked = found.is_some();
        let routed = match found {
            Some((path, loc)) => {
                ctx.path = path;
                ctx.assign_location(session.req_header(), loc);
                Ok(Routed::Location(loc))
            }
            None => route(session.req_header(), ctx),
        };
        let (loc, slash_redirect) = match routed {
            Ok(Routed::Location(loc)) => (loc, false),
            Ok(Routed::SlashRedirect(loc)) => (loc, true),
            Err(refusal) => {
                error_page::send_error(session, ctx, refusal.0, None).await?;
                return Ok(true);
            }
        };
        let state = ctx.state.clone();
        let location = &state.cfg.locations[loc];
        if body_too_large(session, location) {
            error_page::send_error(session, ctx, 413, None).await?;
            // read what the client sends on for a moment, so that closing with unread bytes
            // does not reset the connection before the answer is read (NGINX's lingering close)
            let _ = tokio::time::timeout(error_page::LINGER, session.drain_request_body()).await;
            return Ok(true);
        }
        if slash_redirect {
            // NGINX's `auto_redirect`, after its `client_max_body_size` check
            let req = session.req_header();
            let mut h = files::slash_redirect(&ctx.path, req.uri.query());
            apply_header_rules_for(session, ctx, location, &mut h);
            session.write_response_header(h, true).await?;
            return Ok(true);
        }
        if session.req_header().method.as_str() == "PURGE" {
            if let Some(rules) = location.cache.as_ref() {
                if !rules.purge_allow.is_empty() {
                    cache::purge(session, ctx, rules).await?;
                    return Ok(true);
                }
            }
        }
        match &location.handler {
            Handler::Static(_) => {
                static_files::answer(session, ctx, loc).await?;
                Ok(true)
            }
            // the edge asked the memory tier already
            Handler::Proxy(_) if memory_asked => Ok(false),
            Handler::Proxy(_) => cache::answer_from_memory(session, ctx).await,
        }
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let max = ctx.location().and_then(|l| l.client_max_body_size);
        if let (Some(max), Some(chunk)) = (max, body.as_ref()) {
            ctx.body_read += chunk.len() as u64;
            if ctx.body_read > max {
                return Error::e_explain(
                    ErrorType::HTTPStatus(413),
                    "client intended to send too large body (client_max_body_size)",
                );
            }
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Some(u) = ctx.upstream else {
            return Error::e_explain(ErrorType::InternalError, "no upstream for this location");
        };
        ctx.upstream_start.get_or_insert_with(Instant::now);
        Ok(Box::new(ctx.cfg().upstreams[u].peer.clone()))
    }

    /// Subrequests only fill the cache of a cold HEAD (`cache::fill_for_head`).
    fn allow_spawning_subrequest(&self, session: &Session, _ctx: &Ctx) -> bool {
        session.req_header().method == http::Method::HEAD
    }

    /// A cold HEAD is answered from a GET subrequest that fills the cache.
    async fn proxy_upstream_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        Ok(!cache::fill_for_head(session, ctx).await?)
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        cache::enable(session, ctx);
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, ctx: &mut Ctx) -> Result<CacheKey> {
        cache::key(session, ctx)
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<RespCacheable> {
        Ok(cache::cacheability(session, resp, ctx))
    }

    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        ctx: &mut Ctx,
        req: &RequestHeader,
    ) -> Option<HashBinary> {
        variance_for(ctx, meta.response_header(), req)
    }

    /// The 304 of a HIT (or of a MISS being stored): `if_modified_since` as for static files.
    fn cache_not_modified_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<bool> {
        Ok(conditional::not_modified(
            session.req_header(),
            resp,
            ctx.cfg().if_modified_since,
        ))
    }

    fn should_serve_stale(
        &self,
        _session: &mut Session,
        ctx: &mut Ctx,
        error: Option<&Error>,
    ) -> bool {
        cache::stale_allowed(ctx, error)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        _ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // One upstream address: a fresh connection that failed is not retried (as NGINX).
        e.set_retry(false);
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let Some(Location {
            handler: Handler::Proxy(p),
            ..
        }) = ctx.location()
        else {
            return Ok(());
        };
        if let Some(target) = p.rewrite_target(&ctx.path, session.req_header().uri.query()) {
            let uri = target
                .parse::<http::Uri>()
                .map_err(|e| Error::because(ErrorType::InternalError, "rewritten URI", e))?;
            upstream.set_uri(uri);
        }
        if ctx
            .location()
            .and_then(|l| l.compress.as_ref())
            .is_some_and(|c| c.any_enabled())
        {
            // We compress (once, before caching): ask the origin for identity bytes.
            upstream.remove_header(&header::ACCEPT_ENCODING);
        }
        let vars = RequestVars::new(session, ctx, None);
        for (name, tpl) in &p.set_headers {
            let v = tpl.render(&vars);
            if v.is_empty() {
                upstream.remove_header(name);
            } else {
                upstream.insert_header(name.clone(), v)?;
            }
        }
        // A body the edge read whole goes upstream with its length, never chunked (as NGINX:
        // WSGI servers handle chunked request bodies poorly), and its `100 Continue` was sent.
        if let Some(length) = wire_of(session).and_then(|w| w.spooled) {
            upstream.remove_header(&header::TRANSFER_ENCODING);
            upstream.remove_header(&header::EXPECT);
            upstream.insert_header(header::CONTENT_LENGTH, length)?;
        }
        // We speak HTTP/1.1 upstream, where Host is mandatory (NGINX speaks 1.0 and may omit it).
        if !upstream.headers.contains_key(header::HOST) {
            upstream.insert_header(header::HOST, &ctx.cfg().upstreams[p.upstream].proxy_host)?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(t) = ctx.upstream_start {
            ctx.upstream_time = Some(t.elapsed());
        }
        ctx.upstream_status = Some(resp.status.as_u16());
        set_buffering(session, resp, ctx);
        compression::set_up_encoding(session, resp, ctx)
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        compression::compress_body(body, end_of_stream, ctx)?;
        Ok(None)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // NGINX answers in HTTP/1.1 whatever the upstream spoke; an HTTP/1.0 client cannot read
        // a chunked body (RFC 9112 §6.1), so its answer of unknown length is close-delimited.
        resp.set_version(Version::HTTP_11);
        if session.req_header().version < Version::HTTP_11 {
            resp.remove_header(&header::TRANSFER_ENCODING);
        }
        let state = ctx.state.clone();
        let Some(location) = ctx.location.map(|i| &state.cfg.locations[i]) else {
            return Ok(());
        };
        if ctx.cache_on {
            ctx.cache_status = policy::status_label(session.cache.phase(), ctx.cache_bypass);
        }
        if let Handler::Proxy(p) = &location.handler {
            // `proxy_redirect` as the answer is sent, a HIT's stored header too (as NGINX);
            // before the invalidation, which then reads `Location` in the client's URI space
            p.redirects.apply(resp);
        }
        cache::invalidate_unsafe(session, ctx, resp);
        headers::from_upstream(resp)?;
        let status = resp.status.as_u16();
        if location.intercept_errors && status >= 300 {
            if let Some((ctype, body)) = error_page::configured_page(&state.cfg, status).await {
                for h in [
                    header::CONTENT_ENCODING,
                    header::TRANSFER_ENCODING,
                    header::ETAG,
                    header::LAST_MODIFIED,
                    header::CONTENT_RANGE,
                    header::ACCEPT_RANGES,
                ] {
                    resp.remove_header(&h);
                }
                resp.insert_header(header::CONTENT_TYPE, ctype)?;
                resp.insert_header(header::CONTENT_LENGTH, body.len())?;
                ctx.intercept = Some(body);
            }
        }
        apply_header_rules_for(session, ctx, location, resp);
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        if ctx.intercept.is_some() {
            *body = if end_of_stream {
                ctx.intercept.take()
            } else {
                None
            };
        }
        Ok(None)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let upstream = *e.esource() == ErrorSource::Upstream;
        if let (true, Some(u)) = (upstream, ctx.upstream) {
            let kind = match e.etype() {
                ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                    "timeout"
                }
                ErrorType::ConnectRefused
                | ErrorType::ConnectNoRoute
                | ErrorType::ConnectError
                | ErrorType::ConnectProxyFailure => "connect",
                _ => "other",
            };
            METRICS
                .upstream_errors
                .with_label_values(&[&ctx.cfg().upstreams[u].name, kind])
                .inc();
        }
        let code = match e.etype() {
            _ if client_gone(e) => 0,
            ErrorType::HTTPStatus(c) => *c,
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
                if upstream =>
            {
                504
            }
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    ErrorType::ReadTimedout => 408,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        // Nothing can be sent once the response has started (an upstream failing mid-body).
        if code > 0 && session.response_written().is_none() {
            // Pingora 0.9 drops the client connection after a failed proxy attempt whatever we
            // return here (NGINX keeps it after a 502/504), so say so to the client.
            session.set_keepalive(None);
            let close = Some(("Connection", "close".to_string()));
            if let Err(err) = error_page::send_error(session, ctx, code, close).await {
                log::debug!("failed to send error response: {err}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        // a subrequest's client is the request that made it, which is logged
        if session.subrequest_ctx.is_some() {
            return;
        }
        let vars = RequestVars::new(session, ctx, None);
        match wire_of(session) {
            // NGINX logs a request once the client has the whole answer (or is gone)
            Some(wire) if wire.has_backlog() => {
                count_request(&vars);
                if let Some(line) = PendingLine::of(&vars) {
                    wire.when_drained(Box::new(move |unsent| line.write(unsent)));
                }
            }
            _ => log_request(&vars),
        }
    }

    fn suppress_error_log(&self, session: &Session, ctx: &Ctx, e: &Error) -> bool {
        // A client that goes away or stops reading is not a server error (NGINX logs both at
        // `info`).
        let client_gone = client_gone(e);
        if client_gone {
            log::info!(
                "client closed the connection or timed out: {e}, {}",
                self.request_summary(session, ctx)
            );
        }
        client_gone
    }

    fn request_summary(&self, session: &Session, ctx: &Ctx) -> String {
        let req = session.req_header();
        let client = session
            .client_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let upstream = ctx
            .upstream
            .map(|u| ctx.cfg().upstreams[u].addr.to_string())
            .unwrap_or_default();
        format!(
            "client: {client}, request: \"{} {}\", upstream: \"{upstream}\", host: \"{}\"",
            req.method,
            req.uri,
            host(req, &ctx.cfg().server_name)
        )
    }
}

/// The client connection under `session` as the edge handed it on (`None` for a connection
/// the edge does not own: TLS, HTTP/2, a subrequest).
fn wire_of(session: &Session) -> Option<&Wire> {
    session
        .as_downstream()
        .stream()
        .and_then(|s| s.as_any().downcast_ref::<Wire>())
}

/// NGINX `proxy_buffering` (and the upstream's `X-Accel-Buffering: yes|no`, which overrides
/// it): an upstream answer may wait in the client connection's backlog for a slow client, so
/// the session, and the upstream connection, are done at the upstream's pace.
fn set_buffering(session: &Session, resp: &ResponseHeader, ctx: &Ctx) {
    let Some(wire) = wire_of(session) else {
        return;
    };
    let location = matches!(
        ctx.location(),
        Some(Location {
            handler: Handler::Proxy(ProxyConfig {
                buffering: true,
                ..
            }),
            ..
        })
    );
    let on = match resp.headers.get("x-accel-buffering").map(|v| v.as_bytes()) {
        Some(v) if v.eq_ignore_ascii_case(b"no") => false,
        Some(v) if v.eq_ignore_ascii_case(b"yes") => true,
        _ => location,
    };
    wire.buffering
        .store(on, std::sync::atomic::Ordering::Relaxed);
}
