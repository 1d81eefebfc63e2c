//! A request's NGINX variables (`$host`, `$remote_addr`, `$upstream_cache_status`, ...) for
//! templates, header rules and the access log, read from its head, connection and context.

use super::context::Ctx;
use crate::config::Location;
use crate::template::{self, Var, VarSource};
use http::header;
use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use std::fmt::Write;
use std::time::{Duration, Instant};

/// A request's variables with a different request URI (to compute the cache key of the URI a
/// `Location` header names).
pub struct WithUri<'a> {
    pub inner: &'a RequestVars<'a>,
    /// The path as written (`$request_uri` without its query).
    pub path: &'a str,
    /// `path` normalised (`$uri`).
    pub uri: &'a str,
    pub query: Option<&'a str>,
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
            Var::Uri => out.push_str(self.uri),
            Var::Args => out.push_str(self.query.unwrap_or("")),
            Var::IsArgs => {
                if self.query.is_some() {
                    out.push('?')
                }
            }
            other => self.inner.write_var(other, out),
        }
    }
}

/// The connection a request came on (`$remote_addr`, `$remote_port`, `$server_port`).
#[derive(Clone, Copy)]
pub struct Conn<'a> {
    pub client: Option<&'a SocketAddr>,
    pub server: Option<&'a SocketAddr>,
}

impl<'a> Conn<'a> {
    pub fn of(session: &'a Session) -> Conn<'a> {
        Conn {
            client: session.client_addr(),
            server: session.server_addr(),
        }
    }
}

/// Variables of one request, for templates and the access log.
pub struct RequestVars<'a> {
    pub req: &'a RequestHeader,
    pub conn: Conn<'a>,
    pub ctx: &'a Ctx,
    /// The response being built, else the one sent (`$status`, `$sent_http_*`).
    pub resp: Option<&'a ResponseHeader>,
    pub body_bytes_sent: usize,
}

impl<'a> RequestVars<'a> {
    /// The variables of `session`'s request; `resp` is the response being built, if any.
    pub fn new(
        session: &'a Session,
        ctx: &'a Ctx,
        resp: Option<&'a ResponseHeader>,
    ) -> RequestVars<'a> {
        RequestVars {
            req: session.req_header(),
            conn: Conn::of(session),
            ctx,
            resp: resp.or_else(|| session.response_written()),
            body_bytes_sent: session.body_bytes_sent(),
        }
    }
}

/// A variable known once the client has the answer ([`Var::at_send`]; nothing for another):
/// the clocks now, `$request_time` since `start`, and the bytes sent, `head()` of the
/// response's head and `body` of its body.
pub fn write_at_send(
    var: &Var,
    start: Instant,
    head: impl FnOnce() -> usize,
    body: usize,
    out: &mut String,
) {
    match var {
        Var::RequestTime => secs(out, start.elapsed()),
        Var::BodyBytesSent => {
            let _ = write!(out, "{body}");
        }
        Var::BytesSent => {
            let _ = write!(out, "{}", head() + body);
        }
        Var::TimeLocal => template::write_time_local(out),
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
        _ => {}
    }
}

/// A duration as NGINX logs times: seconds with milliseconds.
pub fn secs(out: &mut String, d: Duration) {
    let _ = write!(out, "{}.{:03}", d.as_secs(), d.subsec_millis());
}

/// `$host`: the request line's host, else the Host header, lowercase and without the port, else
/// the configured `server_name` (as NGINX: an HTTP/1.0 request may come without Host). A
/// trailing dot is dropped (`example.com.` is `example.com`), as NGINX does.
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
        raw.split_inclusive(']').next().unwrap_or("")
    } else {
        let name = raw.split(':').next().unwrap_or("");
        name.strip_suffix('.').unwrap_or(name)
    };
    if h.is_empty() {
        return server_name.to_string();
    }
    h.to_ascii_lowercase()
}

impl VarSource for RequestVars<'_> {
    fn write_var(&self, var: &Var, out: &mut String) {
        let req = self.req;
        let ctx = self.ctx;
        match var {
            Var::TimeLocal
            | Var::TimeIso8601
            | Var::Msec
            | Var::RequestTime
            | Var::BodyBytesSent
            | Var::BytesSent => write_at_send(
                var,
                ctx.start,
                || self.resp.map_or(0, head_len),
                self.body_bytes_sent,
                out,
            ),
            Var::Status => {
                let s = self.resp.map_or(0, |r| r.status.as_u16());
                let _ = write!(out, "{s:03}");
            }
            Var::RemoteAddr => {
                if let Some(a) = self.conn.client.and_then(|a| a.as_inet()) {
                    let _ = write!(out, "{}", a.ip());
                }
            }
            Var::RemotePort => {
                if let Some(a) = self.conn.client.and_then(|a| a.as_inet()) {
                    let _ = write!(out, "{}", a.port());
                }
            }
            Var::RemoteUser => {
                if let Some(u) = remote_user(req) {
                    out.push_str(&u);
                }
            }
            Var::Request => match &ctx.request_line {
                Some(line) => out.push_str(line),
                None => {
                    let _ = write!(
                        out,
                        "{} {} {:?}",
                        req.method,
                        req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
                        req.version
                    );
                }
            },
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
                if let Some(a) = self.conn.server.and_then(|a| a.as_inet()) {
                    let _ = write!(out, "{}", a.port());
                }
            }
            Var::RequestLength => {}
            Var::UpstreamResponseTime => {
                if let Some(d) = ctx.upstream_time {
                    secs(out, d)
                }
            }
            Var::UpstreamAddr => {
                // only once the upstream was asked (not for a HIT or a refused request)
                if let Some(u) = ctx.upstream.filter(|_| ctx.upstream_start.is_some()) {
                    let _ = write!(out, "{}", ctx.cfg().upstreams[u].addr);
                }
            }
            Var::UpstreamStatus => {
                if let Some(s) = ctx.upstream_status {
                    let _ = write!(out, "{s}");
                }
            }
            Var::RequestId => {
                let mut hex = [0u8; 32];
                // 32 bytes of room for 16 bytes: cannot fail
                if hex::encode_to_slice(ctx.request_id(), &mut hex).is_ok() {
                    out.push_str(std::str::from_utf8(&hex).unwrap_or_default());
                }
            }
            Var::Connection => {
                if ctx.connection != 0 {
                    let _ = write!(out, "{}", ctx.connection);
                }
            }
            Var::Cookie(name) => {
                if let Some(v) = cookie(req, name) {
                    out.push_str(v);
                }
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
                // bytes past ASCII are kept (as UTF-8, else U+FFFD) for the log to escape
                for (i, v) in req.headers.get_all(name.as_str()).iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&String::from_utf8_lossy(v.as_bytes()));
                }
            }
            Var::SentHttp(name) => {
                if let Some(v) = self.resp.and_then(|r| r.headers.get(name.as_str())) {
                    out.push_str(&String::from_utf8_lossy(v.as_bytes()));
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

/// The value of cookie `name` in the request's `Cookie` headers (the first one; the name is
/// matched ignoring case, as NGINX's `$cookie_NAME`).
fn cookie<'r>(req: &'r RequestHeader, name: &str) -> Option<&'r str> {
    req.headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
}

/// The length of `resp`'s head as written (status line, header lines, blank line), for
/// `$bytes_sent`.
pub fn head_len(resp: &ResponseHeader) -> usize {
    let reason = resp.status.canonical_reason().unwrap_or("").len();
    let lines: usize = resp
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + 2 + v.len() + 2)
        .sum();
    "HTTP/1.1 200 \r\n".len() + reason + lines + 2
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

/// [`apply_header_rules`] for the request of Pingora's `session`.
pub fn apply_header_rules_for(
    session: &Session,
    ctx: &Ctx,
    location: &Location,
    resp: &mut ResponseHeader,
) {
    apply_header_rules(session.req_header(), Conn::of(session), ctx, location, resp)
}

/// Apply the location's header rules (expires, set/add/hide header) to `resp`.
pub fn apply_header_rules(
    req: &RequestHeader,
    conn: Conn,
    ctx: &Ctx,
    location: &Location,
    resp: &mut ResponseHeader,
) {
    if location.headers.is_empty() {
        return;
    }
    // Rules that read the response being built render against a copy of it; the others need
    // no copy (a header clone per request on the hot path).
    let snapshot = location.headers.reads_response().then(|| resp.clone());
    let vars = RequestVars {
        req,
        conn,
        ctx,
        resp: snapshot.as_ref(),
        body_bytes_sent: 0,
    };
    location.headers.apply(resp, &ctx.path, &vars);
}
