//! The `ProxyHttp` implementation. It only sequences Pingora's phases and delegates: URI
//! normalisation (`uri`), location choice (`router`), static files (`files`), header rules
//! (`headers`), error pages (`error_page`) and the access log (`access_log`).

use crate::access_log::AccessLog;
use crate::cache::{policy, Zone};
use crate::compress::{self, Encoder, Encoding};
use crate::config::{CacheRules, Config, Handler, Invalidate, Location, ProxyConfig};
use crate::error_page;
use crate::files::{self, Plan};
use crate::metrics::METRICS;
use crate::server::InflightGuard;
use crate::uri;
use crate::vars::{self, Var, VarSource};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use http::header;
use pingora_cache::key::{CacheHashKey, HashBinary};
use pingora_cache::{CacheKey, CacheMeta, NoCacheReason, RespCacheable};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What request handling reads: the compiled config and the open access log, swapped as one.
pub struct State {
    pub cfg: Arc<Config>,
    pub access_log: Option<AccessLog>,
    /// The open cache zones, indexed like `cfg.zones`.
    pub zones: Vec<&'static Zone>,
}

/// The proxy application.
pub struct App {
    pub state: Arc<ArcSwap<State>>,
}

/// Per-request state.
pub struct Ctx {
    pub state: Arc<State>,
    pub start: Instant,
    /// The normalised, decoded URI path (`$uri`).
    pub path: String,
    pub location: Option<usize>,
    pub upstream: Option<usize>,
    pub upstream_start: Option<Instant>,
    pub upstream_time: Option<Duration>,
    pub upstream_status: Option<u16>,
    /// `$upstream_cache_status`; empty while the location has no cache.
    pub cache_status: &'static str,
    /// The cache is in play for this request (cacheable method on a location with `cache:`).
    pub cache_on: bool,
    /// `cache.bypass` matched: lookup skipped, the response is still stored.
    pub cache_bypass: bool,
    /// An error page replacing an upstream error body (`intercept_errors`).
    pub intercept: Option<Bytes>,
    /// The encoding negotiated for this request, if the location compresses.
    pub encoding: Option<Encoding>,
    /// Compresses the upstream body (before it is cached, so hits never recompress).
    pub encoder: Option<Encoder>,
    _inflight: InflightGuard,
}

impl Ctx {
    fn cfg(&self) -> &Config {
        &self.state.cfg
    }

    fn location(&self) -> Option<&Location> {
        self.location.map(|i| &self.state.cfg.locations[i])
    }

    fn cache_rules(&self) -> Option<&CacheRules> {
        self.location().and_then(|l| l.cache.as_ref())
    }
}

/// A request's variables with a different request URI (to compute the cache key of the URI a
/// `Location` header names).
struct WithUri<'a> {
    inner: &'a RequestVars<'a>,
    path: &'a str,
    query: Option<&'a str>,
}

impl VarSource for WithUri<'_> {
    fn write_var(&self, var: &Var, out: &mut String) {
        match var {
            Var::RequestUri => {
                out.push_str(self.path);
                if let Some(q) = self.query {
                    out.push('?');
                    out.push_str(q);
                }
            }
            Var::Uri => out.push_str(self.path),
            Var::Args => out.push_str(self.query.unwrap_or("")),
            other => self.inner.write_var(other, out),
        }
    }
}

/// Variables of one request, for templates and the access log.
pub struct RequestVars<'a> {
    pub session: &'a Session,
    pub ctx: &'a Ctx,
    pub resp: Option<&'a ResponseHeader>,
}

fn secs(out: &mut String, d: Duration) {
    let _ = write!(out, "{}.{:03}", d.as_secs(), d.subsec_millis());
}

/// `$host`: the request line's host, else the Host header, lowercase and without the port, else
/// the configured `server_name` (as NGINX: an HTTP/1.0 request may come without Host).
pub fn host(req: &RequestHeader, server_name: &str) -> String {
    let raw = req
        .uri
        .host()
        .map(str::to_string)
        .or_else(|| {
            req.headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let h = if raw.starts_with('[') {
        raw.split_inclusive(']').next().unwrap_or("").to_string()
    } else {
        raw.split(':').next().unwrap_or("").to_string()
    };
    if h.is_empty() {
        return server_name.to_string();
    }
    h.to_ascii_lowercase()
}

impl VarSource for RequestVars<'_> {
    fn write_var(&self, var: &Var, out: &mut String) {
        let req = self.session.req_header();
        let ctx = self.ctx;
        match var {
            Var::TimeLocal => vars::write_time_local(out, chrono::Local::now()),
            Var::TimeIso8601 => {
                let _ = write!(
                    out,
                    "{}",
                    chrono::Local::now().format("%Y-%m-%dT%H:%M:%S%:z")
                );
            }
            Var::Msec => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                let _ = write!(out, "{}.{:03}", now.as_secs(), now.subsec_millis());
            }
            Var::Status => {
                let s = self
                    .resp
                    .or_else(|| self.session.response_written())
                    .map(|r| r.status.as_u16())
                    .unwrap_or(0);
                let _ = write!(out, "{s:03}");
            }
            Var::RemoteAddr => {
                if let Some(a) = self.session.client_addr().and_then(|a| a.as_inet()) {
                    let _ = write!(out, "{}", a.ip());
                }
            }
            Var::RemotePort => {
                if let Some(a) = self.session.client_addr().and_then(|a| a.as_inet()) {
                    let _ = write!(out, "{}", a.port());
                }
            }
            Var::RemoteUser => {
                if let Some(u) = remote_user(req) {
                    out.push_str(&u);
                }
            }
            Var::Request => {
                let _ = write!(
                    out,
                    "{} {} {:?}",
                    req.method,
                    req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
                    req.version
                );
            }
            Var::RequestMethod => out.push_str(req.method.as_str()),
            Var::RequestUri => {
                out.push_str(req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
            }
            Var::Uri => out.push_str(&ctx.path),
            Var::Args => out.push_str(req.uri.query().unwrap_or("")),
            Var::IsArgs => {
                if req.uri.query().is_some() {
                    out.push('?')
                }
            }
            Var::Host => out.push_str(&host(req, &ctx.cfg().server_name)),
            Var::Scheme => out.push_str("http"),
            Var::ServerProtocol => {
                let _ = write!(out, "{:?}", req.version);
            }
            Var::ServerPort => {
                if let Some(a) = self.session.server_addr().and_then(|a| a.as_inet()) {
                    let _ = write!(out, "{}", a.port());
                }
            }
            Var::RequestTime => secs(out, ctx.start.elapsed()),
            Var::RequestLength => {}
            Var::UpstreamResponseTime => {
                if let Some(d) = ctx.upstream_time {
                    secs(out, d)
                }
            }
            Var::UpstreamAddr => {
                if let Some(u) = ctx.upstream {
                    let _ = write!(out, "{}", ctx.cfg().upstreams[u].addr);
                }
            }
            Var::UpstreamStatus => {
                if let Some(s) = ctx.upstream_status {
                    let _ = write!(out, "{s}");
                }
            }
            Var::BodyBytesSent => {
                let _ = write!(out, "{}", self.session.body_bytes_sent());
            }
            Var::UpstreamCacheStatus => out.push_str(ctx.cache_status),
            Var::ProxyHost => {
                if let Some(u) = ctx.upstream {
                    out.push_str(&ctx.cfg().upstreams[u].proxy_host);
                }
            }
            Var::ProxyAddXForwardedFor => {
                let prev = req
                    .headers
                    .get_all("x-forwarded-for")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect::<Vec<_>>()
                    .join(", ");
                if !prev.is_empty() {
                    out.push_str(&prev);
                    out.push_str(", ");
                }
                self.write_var(&Var::RemoteAddr, out);
            }
            Var::Http(name) => {
                let vals: Vec<&str> = req
                    .headers
                    .get_all(name.as_str())
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect();
                out.push_str(&vals.join(", "));
            }
            Var::SentHttp(name) => {
                if let Some(v) = self
                    .resp
                    .or_else(|| self.session.response_written())
                    .and_then(|r| r.headers.get(name.as_str()))
                    .and_then(|v| v.to_str().ok())
                {
                    out.push_str(v);
                }
            }
            Var::Arg(name) => {
                if let Some(q) = req.uri.query() {
                    for pair in q.split('&') {
                        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                        if k == name {
                            out.push_str(v);
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// The user name of Basic authentication, as NGINX's `$remote_user`.
fn remote_user(req: &RequestHeader) -> Option<String> {
    use base64::Engine;
    let v = req.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, cred) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(cred.trim())
        .ok()?;
    let s = String::from_utf8(decoded).ok()?;
    Some(s.split(':').next().unwrap_or("").to_string())
}

/// Hidden from upstream responses by default, as NGINX does.
const HIDDEN_UPSTREAM: [&str; 5] = [
    "x-accel-expires",
    "x-accel-redirect",
    "x-accel-limit-rate",
    "x-accel-buffering",
    "x-accel-charset",
];

/// Longest request line and header line accepted (NGINX's `large_client_header_buffers 4 8k`).
const MAX_HEAD_LINE: usize = 8 * 1024;

/// Request-head checks NGINX makes and Pingora does not: 414 for a request line over 8 KiB,
/// 400 for a header line over 8 KiB, 400 for HTTP/1.1 without `Host`.
fn check_request_head(req: &RequestHeader) -> Option<u16> {
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

/// The variance of a stored response for this request. Responses outrigger compressed, or
/// would compress for a client that asks, vary by the negotiated encoding (whatever the origin's
/// Vary says and `gzip.vary`).
fn variance_for(ctx: &Ctx, stored: &ResponseHeader, req: &RequestHeader) -> Option<HashBinary> {
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
fn cacheable_method(rules: &CacheRules, method: &http::Method) -> bool {
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
fn tag(ctx: &Ctx) -> String {
    ctx.location().map(|l| l.name.clone()).unwrap_or_default()
}

/// Whether `e` means the client went away (errors writing to or reading from it). Errors of
/// our own `write_response_*` calls in `request_filter` carry no source, hence "not upstream".
fn client_gone(e: &Error) -> bool {
    *e.esource() != ErrorSource::Upstream
        && matches!(
            e.etype(),
            ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed
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

impl App {
    async fn serve_static(&self, session: &mut Session, ctx: &mut Ctx, loc: usize) -> Result<()> {
        let state = ctx.state.clone();
        let cfg = &state.cfg;
        let location = &cfg.locations[loc];
        let Handler::Static(st) = &location.handler else {
            return Ok(());
        };
        match files::plan(cfg, st, session.req_header(), &ctx.path) {
            Plan::Error(status) => self.send_error(session, ctx, status, None).await,
            Plan::Unsatisfiable(size) => {
                let range = format!("bytes */{size}");
                self.send_error(session, ctx, 416, Some((header::CONTENT_RANGE, range)))
                    .await
            }
            Plan::Head(mut h) => {
                self.apply_headers(session, ctx, location, &mut h);
                session.write_response_header(h, true).await
            }
            Plan::Body {
                path,
                mut header,
                offset,
                len,
            } => {
                if let Some(c) = location.compress.as_deref() {
                    if let Some(body) = self.compressed_static(ctx, c, st, &path, &mut header)? {
                        self.apply_headers(session, ctx, location, &mut header);
                        let head = session.req_header().method == http::Method::HEAD;
                        session.write_response_header(header, head).await?;
                        if !head {
                            session.write_response_body(Some(body), true).await?;
                        }
                        return Ok(());
                    }
                }
                self.apply_headers(session, ctx, location, &mut header);
                let head = session.req_header().method == http::Method::HEAD;
                session
                    .write_response_header(header, head || len == 0)
                    .await?;
                if head || len == 0 {
                    return Ok(());
                }
                files::send_body(session, &path, offset, len).await
            }
        }
    }

    /// Answer a fresh HIT from the zone's memory tier, before Pingora's cache machinery (no
    /// disk, no metadata decoding, no cache state machine). Falls through (`false`) for anything
    /// else: conditional or range requests, bypass, stale or absent entries, other variants.
    async fn serve_hot(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
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
        if !cacheable_method(rules, &req.method)
            || NOT_HOT.iter().any(|h| req.headers.contains_key(h))
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
            let key = CacheKey::new(policy::key_bytes(rules, &vars), tag(ctx));
            let primary = key.primary_bin();
            let Some(first) = zone.storage.hot_get(&primary) else {
                return Ok(false);
            };
            let want = variance_for(ctx, &first.header, req);
            if want == first.variance {
                Some((primary, first))
            } else if let Some(v) = want {
                let mut k = key;
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
        if std::time::SystemTime::now() > entry.fresh_until
            || (loc.intercept_errors && status >= 300)
        {
            return Ok(false);
        }
        ctx.cache_on = true;
        ctx.cache_status = "HIT";
        let mut resp = entry.header.clone();
        for h in HIDDEN_UPSTREAM {
            resp.remove_header(h);
        }
        resp.remove_header(&header::TRANSFER_ENCODING);
        resp.insert_header(header::CONTENT_LENGTH, entry.body.len())?;
        resp.insert_header(header::SERVER, crate::SERVER_NAME)?;
        self.apply_headers(session, ctx, loc, &mut resp);
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

    /// The compressed body for a static file when this request gets one: a precompressed
    /// sibling (`static.precompressed`) or the file compressed once and kept in memory. Rewrites
    /// `header` to match (a range request gets the whole compressed body, as NGINX).
    fn compressed_static(
        &self,
        ctx: &Ctx,
        c: &crate::config::CompressConfig,
        st: &crate::config::StaticConfig,
        path: &std::path::Path,
        header: &mut ResponseHeader,
    ) -> Result<Option<Bytes>> {
        let symlinks = (
            st.symlinks,
            files::map_path(st, &ctx.path).map(|(_, root)| root),
        );
        let full_len = header
            .headers
            .get(header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit('/').next())
            .and_then(|v| v.parse::<u64>().ok());
        // judge the representation, not the requested range
        let mut probe = header.clone();
        if let Some(len) = full_len {
            probe.set_status(200)?;
            probe.insert_header(header::CONTENT_LENGTH, len)?;
        }
        if !compress::compressible(c, &probe) {
            return Ok(None);
        }
        let Some(enc) = ctx.encoding else {
            if c.vary {
                compress::add_vary(header);
            }
            return Ok(None);
        };
        let sibling = c
            .precompressed
            .then(|| files::precompressed_sibling(path, enc.suffix(), symlinks))
            .flatten();
        let body = match sibling.map(std::fs::read) {
            Some(Ok(b)) => Bytes::from(b),
            _ => {
                let (Some(level), Some(tag)) = (
                    c.level(enc),
                    header
                        .headers
                        .get(header::ETAG)
                        .and_then(|v| v.to_str().ok()),
                ) else {
                    return Ok(None);
                };
                let size = full_len.or_else(|| {
                    header
                        .headers
                        .get(header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                });
                if size.unwrap_or(u64::MAX) > compress::MAX_STATIC_COMPRESS {
                    return Ok(None);
                }
                let tag = tag.to_string();
                match compress::StaticCache::global().get_or_compress(
                    path,
                    &tag,
                    enc,
                    level,
                    c.memory_cache,
                ) {
                    Ok(b) => b,
                    Err(e) => {
                        log::warn!("cannot compress {}: {e}", path.display());
                        return Ok(None);
                    }
                }
            }
        };
        if full_len.is_some() {
            header.set_status(200)?;
            header.remove_header(&header::CONTENT_RANGE);
        }
        compress::compressed_headers(header, enc, c.vary);
        header.insert_header(header::CONTENT_LENGTH, body.len())?;
        Ok(Some(body))
    }

    /// `PURGE /uri`: drop every stored variant of the URI's key; 200, 404 when absent, 403 for
    /// clients outside `purge.allow`.
    async fn purge(&self, session: &mut Session, ctx: &mut Ctx, rules: &CacheRules) -> Result<()> {
        let ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        if !ip.is_some_and(|ip| rules.purge_allow.iter().any(|n| n.contains(&ip))) {
            return self.send_error(session, ctx, 403, None).await;
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
            return self.send_error(session, ctx, 404, None).await;
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
    fn invalidate_unsafe(&self, session: &Session, ctx: &Ctx, resp: &ResponseHeader) {
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

    /// Answer with an error status: the error page (or built-in page), plus the matched
    /// location's header rules (only its `always` ones apply to error statuses).
    async fn send_error(
        &self,
        session: &mut Session,
        ctx: &Ctx,
        status: u16,
        extra: Option<(http::HeaderName, String)>,
    ) -> Result<()> {
        let (mut h, body) = error_page::build(&ctx.state.cfg, status).await?;
        if let Some((name, value)) = extra {
            h.insert_header(name, value)?;
        }
        if let Some(location) = ctx.location() {
            self.apply_headers(session, ctx, location, &mut h);
        }
        error_page::send(session, h, body).await
    }

    fn apply_headers(
        &self,
        session: &Session,
        ctx: &Ctx,
        location: &Location,
        resp: &mut ResponseHeader,
    ) {
        if location.headers.is_empty() {
            return;
        }
        // The rules read variables of the response being built; render against a snapshot.
        let snapshot = resp.clone();
        let vars = RequestVars {
            session,
            ctx,
            resp: Some(&snapshot),
        };
        location.headers.apply(resp, &ctx.path, &vars);
    }
}

#[async_trait]
impl ProxyHttp for App {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            state: self.state.load_full(),
            start: Instant::now(),
            path: String::new(),
            location: None,
            upstream: None,
            upstream_start: None,
            upstream_time: None,
            upstream_status: None,
            cache_status: "",
            cache_on: false,
            cache_bypass: false,
            intercept: None,
            encoding: None,
            encoder: None,
            _inflight: InflightGuard::new(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let state = ctx.state.clone();
        let cfg = &state.cfg;
        if let Some(status) = check_request_head(session.req_header()) {
            self.send_error(session, ctx, status, None).await?;
            return Ok(true);
        }
        match uri::normalize(session.req_header().uri.path()) {
            Ok(p) => ctx.path = p,
            Err(_) => {
                self.send_error(session, ctx, 400, None).await?;
                return Ok(true);
            }
        }
        let Some(loc) = cfg.router.find(&ctx.path) else {
            self.send_error(session, ctx, 404, None).await?;
            return Ok(true);
        };
        ctx.location = Some(loc);
        if let Some(c) = &cfg.locations[loc].compress {
            ctx.encoding = compress::negotiate(c, session.req_header());
        }
        if session.req_header().method.as_str() == "PURGE" {
            if let Some(rules) = cfg.locations[loc].cache.as_ref() {
                if !rules.purge_allow.is_empty() {
                    self.purge(session, ctx, rules).await?;
                    return Ok(true);
                }
            }
        }
        match &cfg.locations[loc].handler {
            Handler::Static(_) => {
                self.serve_static(session, ctx, loc).await?;
                Ok(true)
            }
            Handler::Proxy(p) => {
                ctx.upstream = Some(p.upstream);
                self.serve_hot(session, ctx).await
            }
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
        session.cache.enable(
            zone.storage,
            Some(zone.eviction),
            None,
            lock,
            Some(overrides),
        );
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
        let vars = RequestVars {
            session,
            ctx,
            resp: None,
        };
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
        let vars = RequestVars {
            session,
            ctx,
            resp: None,
        };
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
        let vars = RequestVars {
            session,
            ctx,
            resp: Some(resp),
        };
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
        let vars = RequestVars {
            session,
            ctx,
            resp: None,
        };
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
        self.invalidate_unsafe(session, ctx, resp);
        for h in HIDDEN_UPSTREAM {
            resp.remove_header(h);
        }
        resp.insert_header(header::SERVER, crate::SERVER_NAME)?;
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
        self.apply_headers(session, ctx, location, resp);
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
            let close = Some((header::CONNECTION, "close".to_string()));
            if let Err(err) = self.send_error(session, ctx, code, close).await {
                log::debug!("failed to send error response: {err}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let location = ctx.location().map_or("", |l| l.name.as_str());
        METRICS.request(location, status, ctx.start.elapsed());
        if let (Some(u), Some(t)) = (ctx.upstream, ctx.upstream_time) {
            METRICS
                .upstream_seconds
                .with_label_values(&[&ctx.cfg().upstreams[u].name])
                .observe(t.as_secs_f64());
        }
        if let Some(rules) = ctx.cache_rules().filter(|_| ctx.cache_on) {
            let zone = &ctx.cfg().zones[rules.zone].name;
            let label = if ctx.cache_status.is_empty() {
                "MISS"
            } else {
                ctx.cache_status
            };
            METRICS
                .cache_lookups
                .with_label_values(&[zone, label])
                .inc();
        }
        if let Some(log) = &ctx.state.access_log {
            let vars = RequestVars {
                session,
                ctx,
                resp: None,
            };
            log.log(&vars);
        }
    }

    fn suppress_error_log(&self, session: &Session, ctx: &Ctx, e: &Error) -> bool {
        // A client that goes away is not a server error (NGINX logs it at `info`).
        let client_gone = client_gone(e);
        if client_gone {
            log::info!(
                "client closed the connection: {e}, {}",
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
