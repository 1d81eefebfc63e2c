//! The `ProxyHttp` implementation. It sequences Pingora's phases and delegates: URI
//! normalisation (`uri`), location choice (`router`), static files (`files`), the cache
//! (`cache::policy`, `cache::serve`), compression (`compress`), header rules (`headers`), error
//! pages (`error_page`), the access log (`access_log`) and metrics (`metrics`).

use crate::cache::serve::{cacheable_method, tag, variance_for};
use crate::cache::{policy, serve};
use crate::compress::{self, Encoder};
use crate::config::{Handler, Location, ProxyConfig};
use crate::context::{apply_headers, host, Ctx, RequestVars, State};
use crate::error_page;
use crate::files;
use crate::headers;
use crate::metrics::METRICS;
use crate::uri;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use http::header;
use pingora_cache::key::HashBinary;
use pingora_cache::{CacheKey, CacheMeta, NoCacheReason, RespCacheable};
use pingora_core::modules::http::HttpModules;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The proxy application.
pub struct App {
    pub state: Arc<ArcSwap<State>>,
}

/// Longest request line and header line accepted (NGINX's `large_client_header_buffers 4 8k`).
const MAX_HEAD_LINE: usize = 8 * 1024;

/// Request-head checks NGINX makes and Pingora does not: 414 for a request line over 8 KiB,
/// 400 for a header line over 8 KiB, 400 for HTTP/1.1 without `Host`.
pub fn check_request_head(req: &RequestHeader) -> Option<u16> {
    let target_len = req.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if target_len + req.method.as_str().len() + 10 > MAX_HEAD_LINE {
        return Some(414);
    }
    if req
        .headers
        .iter()
        .any(|(n, v)| n.as_str().len() + v.len() + 2 > MAX_HEAD_LINE)
    {
        return Some(400);
    }
    if req.version == http::Version::HTTP_11
        && req.uri.host().is_none()
        && !req.headers.contains_key(header::HOST)
    {
        return Some(400);
    }
    None
}

/// What every request goes through first: the head checks, URI normalisation (`ctx.path`),
/// the location (`ctx.location`, its upstream and negotiated encoding). `Err` is the status
/// to answer with. `front::Front::answer_parsed` makes the same steps in its own order.
pub fn route(req: &RequestHeader, ctx: &mut Ctx) -> std::result::Result<usize, u16> {
    if let Some(status) = check_request_head(req) {
        return Err(status);
    }
    ctx.path = uri::normalize(req.uri.path()).map_err(|_| 400u16)?;
    let loc = ctx.state.cfg.router.find(&ctx.path).ok_or(404u16)?;
    enter(req, ctx, loc);
    Ok(loc)
}

/// The request enters location `loc`: its upstream and negotiated encoding.
pub fn enter(req: &RequestHeader, ctx: &mut Ctx, loc: usize) {
    let location = &ctx.state.cfg.locations[loc];
    ctx.encoding = location
        .compress
        .as_ref()
        .and_then(|c| compress::negotiate(c, req));
    if let Handler::Proxy(p) = &location.handler {
        ctx.upstream = Some(p.upstream);
    }
    ctx.location = Some(loc);
}

/// Count a finished request in the metrics and write its access-log line.
pub fn log_request(vars: &RequestVars) {
    let ctx = vars.ctx;
    let status = vars.resp.map_or(0, |r| r.status.as_u16());
    let metrics = ctx.state.metrics(ctx.location);
    metrics.request(status, ctx.start.elapsed());
    if let (Some(u), Some(t)) = (ctx.upstream, ctx.upstream_time) {
        METRICS
            .upstream_seconds
            .with_label_values(&[&ctx.cfg().upstreams[u].name])
            .observe(t.as_secs_f64());
    }
    if ctx.cache_on {
        let label = if ctx.cache_status.is_empty() {
            "MISS"
        } else {
            ctx.cache_status
        };
        metrics.cache(label);
    }
    if let Some(log) = &ctx.state.access_log {
        log.log(vars);
    }
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

/// Build the upstream request target for a `proxy_pass` with a URI part.
pub fn rewrite_target(p: &ProxyConfig, path: &str, query: Option<&str>) -> Option<String> {
    let (prefix, replacement) = p.rewrite.as_ref()?;
    let rest = path.strip_prefix(prefix.as_str()).unwrap_or(path);
    let mut t = String::with_capacity(replacement.len() + rest.len() + 16);
    t.push_str(replacement);
    t.push_str(&uri::escape_path(rest));
    if let Some(q) = query {
        t.push('?');
        t.push_str(q);
    }
    Some(t)
}

#[async_trait]
impl ProxyHttp for App {
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
        let loc = match route(session.req_header(), ctx) {
            Ok(loc) => loc,
            Err(status) => {
                error_page::send_error(session, ctx, status, None).await?;
                return Ok(true);
            }
        };
        let state = ctx.state.clone();
        let location = &state.cfg.locations[loc];
        if session.req_header().method.as_str() == "PURGE" {
            if let Some(rules) = location.cache.as_ref() {
                if !rules.purge_allow.is_empty() {
                    serve::purge(session, ctx, rules).await?;
                    return Ok(true);
                }
            }
        }
        match &location.handler {
            Handler::Static(_) => {
                files::serve(session, ctx, loc).await?;
                Ok(true)
            }
            Handler::Proxy(_) => serve::serve_hot(session, ctx).await,
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Some(u) = ctx.upstream else {
            return Error::e_explain(ErrorType::InternalError, "no upstream for this location");
        };
        ctx.upstream_start.get_or_insert_with(Instant::now);
        Ok(Box::new(ctx.cfg().upstreams[u].peer.clone()))
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        let state = ctx.state.clone();
        let Some(rules) = ctx
            .location
            .and_then(|i| state.cfg.locations[i].cache.as_ref())
        else {
            return Ok(());
        };
        if !cacheable_method(rules, &session.req_header().method) {
            return Ok(());
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
            // NGINX `proxy_cache_bypass`: no lookup, but the response is still stored.
            let key = CacheKey::new(policy::key_bytes(rules, &vars), tag(ctx));
            session.cache.set_cache_key(key);
            session.cache.bypass();
            ctx.cache_bypass = true;
        }
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, ctx: &mut Ctx) -> Result<CacheKey> {
        let Some(rules) = ctx.cache_rules() else {
            return Error::e_explain(ErrorType::InternalError, "cache key without cache rules");
        };
        let vars = RequestVars::new(session, ctx, None);
        Ok(CacheKey::new(policy::key_bytes(rules, &vars), tag(ctx)))
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<RespCacheable> {
        let Some(rules) = ctx.cache_rules() else {
            return Ok(RespCacheable::Uncacheable(NoCacheReason::NeverEnabled));
        };
        let vars = RequestVars::new(session, ctx, Some(resp));
        let no_cache = policy::any_set(&rules.no_cache, &vars);
        Ok(policy::cacheability(
            rules,
            session.req_header(),
            resp,
            no_cache,
        ))
    }

    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        ctx: &mut Ctx,
        req: &RequestHeader,
    ) -> Option<HashBinary> {
        variance_for(ctx, meta.response_header(), req)
    }

    fn should_serve_stale(
        &self,
        _session: &mut Session,
        ctx: &mut Ctx,
        error: Option<&Error>,
    ) -> bool {
        let Some(rules) = ctx.cache_rules() else {
            return false;
        };
        let stale = &rules.use_stale;
        match error {
            // stale-while-revalidate
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
        if let Some(target) = rewrite_target(p, &ctx.path, session.req_header().uri.query()) {
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
        let state = ctx.state.clone();
        let Some(c) = ctx
            .location
            .and_then(|i| state.cfg.locations[i].compress.as_deref())
        else {
            return Ok(());
        };
        if resp.status.as_u16() == 304 {
            // Revalidating a stored compressed variant: the origin's strong ETag describes the
            // identity bytes, and Pingora merges this header into the stored one.
            let stored_encoded = session
                .cache
                .maybe_cache_meta()
                .is_some_and(|m| m.headers().contains_key(header::CONTENT_ENCODING));
            if stored_encoded {
                compress::weaken_etag(resp);
            }
            return Ok(());
        }
        if c.any_enabled() && compress::compressible(c, resp) {
            match ctx.encoding.and_then(|e| c.level(e).map(|l| (e, l))) {
                Some((enc, level)) => {
                    compress::compressed_headers(resp, enc, c.vary);
                    if session.req_header().method != http::Method::HEAD {
                        ctx.encoder = Some(Encoder::new(enc, level).map_err(|e| {
                            Error::because(ErrorType::InternalError, "compressor", e)
                        })?);
                    }
                }
                None if c.vary => compress::add_vary(resp),
                None => {}
            }
        }
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        let Some(enc) = ctx.encoder.as_mut() else {
            return Ok(None);
        };
        let err = |e| Error::because(ErrorType::InternalError, "compress", e);
        let name = enc.encoding().token();
        let mut out = match body.take() {
            Some(data) if !data.is_empty() => {
                METRICS
                    .compress_in
                    .with_label_values(&[name])
                    .inc_by(data.len() as u64);
                enc.push(&data).map_err(err)?
            }
            _ => Bytes::new(),
        };
        if end_of_stream {
            if let Some(enc) = ctx.encoder.take() {
                let tail = enc.finish().map_err(err)?;
                let mut all = bytes::BytesMut::with_capacity(out.len() + tail.len());
                all.extend_from_slice(&out);
                all.extend_from_slice(&tail);
                out = all.freeze();
            }
        }
        METRICS
            .compress_out
            .with_label_values(&[name])
            .inc_by(out.len() as u64);
        *body = if out.is_empty() { None } else { Some(out) };
        Ok(None)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let state = ctx.state.clone();
        let Some(location) = ctx.location.map(|i| &state.cfg.locations[i]) else {
            return Ok(());
        };
        if ctx.cache_on {
            ctx.cache_status = policy::status_label(session.cache.phase(), ctx.cache_bypass);
        }
        serve::invalidate_unsafe(session, ctx, resp);
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
        apply_headers(session, ctx, location, resp);
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
        log_request(&RequestVars::new(session, ctx, None));
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
