//! The HTTP/1 edge of every plain listener: it reads each request head itself, within NGINX's
//! limits, refuses what NGINX would refuse (`head`), and answers fresh memory-tier cache HITs
//! straight from the connection (one parse, one write); every other request, and anything it
//! does not fully understand, is handed to Pingora's proxy with the bytes already read, and
//! the connection comes back to the edge afterwards.
//!
//! Pingora's session machinery (a boxed session, a cache state machine and a request context
//! per request) costs more than the whole answer of a memory HIT; this path keeps the same
//! routing, cache lookup, header rules, metrics and access log (`request`, shared with `proxy`).

mod body;
pub mod head;

use crate::config::{ClientLimits, Config};
use crate::output;
use crate::proxy::error_page;
use crate::proxy::Proxy;
use crate::request::context::Ctx;
use crate::request::log::log_request;
use crate::request::memory_tier::{self, MemoryHit};
use crate::request::route;
use crate::request::vars::{Conn, RequestVars};
use crate::state::State;
use crate::wire::{EdgeRoute, Framing, Wire};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use head::{HeadScan, Rejection};
use http::{header, Method, Version};
use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::ShutdownWatch;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::HttpProxy;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout, timeout_at};

/// Bodies up to this size are copied behind the header for a single write.
const COALESCE: usize = 16 * 1024;

/// The listeners' application: the edge, and Pingora's proxy behind it.
pub struct Edge {
    pub proxy: Arc<HttpProxy<Proxy>>,
    pub state: Arc<ArcSwap<State>>,
}

/// A HIT ready to send: its response in the edge's output buffer, and what is needed to log
/// it once sent.
struct Answered {
    /// Bytes of the connection buffer the request used.
    used: usize,
    keepalive: bool,
    /// A body too large to copy behind the head, written after it.
    tail: Option<Bytes>,
    req: RequestHeader,
    ctx: Ctx,
    hit: MemoryHit,
}

/// What the edge makes of the bytes at the start of its buffer (returned by value: a box
/// would be an allocation per HIT).
#[allow(clippy::large_enum_variant)]
enum Verdict {
    /// Not a whole head yet.
    Incomplete,
    /// A memory-tier HIT, its response ready in the output buffer.
    Answer(Answered),
    /// Pingora handles this request.
    HandOff(Hand),
    /// A head NGINX would refuse: answered here, and the connection closed.
    Refuse(Rejection),
    /// A head NGINX accepts in another shape: this head replaces it.
    Rewrite(Vec<u8>),
}

/// A request for Pingora: how its body ends, what the edge found for it, and whether the edge
/// reads its body whole first.
struct Hand {
    framing: Framing,
    route: Option<EdgeRoute>,
    spool: Option<body::Spool>,
}

/// What the edge knows when a head is whole.
struct Turn<'a> {
    conn: Conn<'a>,
    /// `$connection`.
    connection: u64,
    limits: ClientLimits,
    /// Some zone has a memory tier, so the edge may answer.
    memory_tier: bool,
    /// The connection may be kept after this request (not shutting down, keep-alive limits).
    may_keep: bool,
    /// The head was rewritten already (`head::rewrite`).
    rewritten: bool,
}

/// What the edge does with a parsed head.
enum Next {
    /// Answered; keep the connection for another request (or close it).
    Answered { keepalive: bool },
    /// Pingora handles the request whose head is the first `head` bytes of the buffer.
    HandOff { head: usize, hand: Hand },
}

#[async_trait]
impl ServerApp for Edge {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // `outrigger_connections_accepted_total`, and `_active` until this returns
        let _counted = crate::metrics::METRICS.connection();
        // Only plain TCP listeners exist today; a TLS or HTTP/2 stream would be Pingora's.
        if stream.get_ssl_digest().is_some()
            || matches!(stream.selected_alpn_proto(), Some(ALPN::H2))
        {
            return self.proxy.process_new(stream, shutdown).await;
        }
        let digest = stream.get_socket_digest();
        let client = digest.as_ref().and_then(|d| d.peer_addr().cloned());
        let server = digest.as_ref().and_then(|d| d.local_addr().cloned());
        let conn = Conn {
            client: client.as_ref(),
            server: server.as_ref(),
        };
        // Without a memory tier there is nothing for the edge to answer: it reads and checks
        // each request head and hands it on.
        let memory_tier = self.state.load().cfg.zones.iter().any(|z| z.memory > 0);
        // Requests answered on this connection so far (NGINX `keepalive_requests`).
        let mut served: u64 = 0;
        let mut wire = Box::new(Wire::new(stream, crate::lifecycle::next_connection()));
        let mut out = BytesMut::new();
        let mut stopping = shutdown.clone();
        // When the first bytes of the head being read arrived: NGINX's `client_header_timeout`
        // bounds the whole head, not each read.
        let mut head_since: Option<Instant>;
        loop {
            // a new head: its clock starts with its first bytes (or the next read, for bytes
            // left over from the last request)
            head_since = None;
            let limits = self.state.load().cfg.client;
            let mut scan = HeadScan::new(&limits);
            let mut turn = Turn {
                conn,
                connection: wire.connection,
                limits,
                memory_tier,
                may_keep: false,
                rewritten: false,
            };
            // Read until a whole head is buffered (or it is not ours to parse).
            let next = loop {
                let mut head_len = 0;
                if !wire.buf.is_empty() {
                    let verdict = match scan.advance(&wire.buf) {
                        Err(rejection) => Verdict::Refuse(rejection),
                        Ok(None) => Verdict::Incomplete,
                        Ok(Some(len)) => {
                            head_len = len;
                            // NGINX `keepalive_requests`: the last one closes the connection.
                            turn.may_keep = !*shutdown.borrow()
                                && !limits.keepalive_timeout.is_zero()
                                && served + 1 < limits.keepalive_requests;
                            self.answer(&wire.buf[..len], &turn, &mut out)
                        }
                    };
                    match verdict {
                        Verdict::Answer(a) => {
                            // NGINX `send_timeout`: each write must progress within it.
                            let limit = a.ctx.state.cfg.send_timeout;
                            let stream = &mut wire.stream;
                            let sent = async {
                                within(limit, stream.write_all(&out)).await?;
                                if let Some(tail) = &a.tail {
                                    let size = output::write_size_for(tail.len(), || {
                                        output::mss_of(stream.get_socket_digest().as_deref())
                                    });
                                    for part in tail.chunks(size) {
                                        within(limit, stream.write_all(part)).await?;
                                    }
                                }
                                within(limit, stream.flush()).await
                            }
                            .await
                            .is_ok();
                            a.hit.touch(&a.ctx);
                            log_request(&RequestVars {
                                req: &a.req,
                                conn,
                                ctx: &a.ctx,
                                resp: Some(&a.hit.header),
                                body_bytes_sent: match a.hit.body() {
                                    Some(b) if sent => b.len(),
                                    _ => 0,
                                },
                            });
                            if !sent {
                                return None;
                            }
                            wire.buf.advance(a.used);
                            break Next::Answered {
                                keepalive: a.keepalive,
                            };
                        }
                        Verdict::HandOff(hand) => {
                            break Next::HandOff {
                                head: head_len,
                                hand,
                            }
                        }
                        Verdict::Refuse(rejection) => {
                            // boxed: its state (error page, lingering read) would otherwise
                            // enlarge every connection's future
                            Box::pin(self.refuse(&mut wire, conn, rejection)).await;
                            return None;
                        }
                        Verdict::Rewrite(head) => {
                            let rest = wire.buf.split_off(head_len);
                            wire.buf.clear();
                            wire.buf.extend_from_slice(&head);
                            wire.buf.unsplit(rest);
                            scan = HeadScan::new(&limits);
                            turn.rewritten = true;
                            continue;
                        }
                        Verdict::Incomplete => {}
                    }
                }
                let idle = wire.buf.is_empty();
                if !idle {
                    // a partial head: read the rest by the head's deadline
                    let limit = self.state.load().cfg.client_header_timeout;
                    let since = *head_since.get_or_insert_with(Instant::now);
                    match timeout_at((since + limit).into(), wire.read_more()).await {
                        Ok(Ok(n)) if n > 0 => continue,
                        Ok(_) => return None,
                        Err(_) => {
                            log::info!(
                                "client {} timed out ({limit:?}) while sending its request head ({} bytes)",
                                conn.client.map_or_else(String::new, |a| a.to_string()),
                                wire.buf.len()
                            );
                            // NGINX logs a 408 (and sends nothing)
                            if let Ok(resp) = ResponseHeader::build(408, Some(0)) {
                                self.log_unparsed(&wire, conn, &resp, 0);
                            }
                            return None;
                        }
                    }
                }
                // Idle between requests: a shutdown closes the connection at once (as Pingora
                // does with its idle keep-alive connections).
                if *stopping.borrow() {
                    return None;
                }
                // NGINX: `client_header_timeout` for the first request, `keepalive_timeout`
                // between requests.
                let idle = if served == 0 {
                    self.state.load().cfg.client_header_timeout
                } else {
                    limits.keepalive_timeout
                };
                let read = tokio::select! {
                    r = timeout(idle, wire.read_more()) => r,
                    _ = stopping.changed() => return None,
                };
                match read {
                    Ok(Ok(n)) if n > 0 => head_since = Some(Instant::now()),
                    // closed, failed or idle too long
                    _ => return None,
                }
            };
            served += 1;
            match next {
                Next::Answered { keepalive: true } => {}
                Next::Answered { keepalive: false } => return None,
                Next::HandOff { head, hand } => {
                    let cfg = self.state.load().cfg.clone();
                    // NGINX `proxy_request_buffering`: the upstream is asked once the upload
                    // is over
                    let body = match hand.spool {
                        Some(spool) => self
                            .read_body(&mut wire, head, hand.framing, spool, &cfg, conn)
                            .await
                            .ok()?,
                        None => None,
                    };
                    // The session reads this one request through the wire; what the client
                    // sends after it stays in the wire's buffer for the edge.
                    wire.hand_on(head, hand.framing, turn.may_keep, hand.route, &cfg, body);
                    let mut session = ServerSession::new_http1(wire);
                    session.set_keepalive(
                        turn.may_keep
                            .then_some(limits.keepalive_timeout.as_secs().max(1)),
                    );
                    let reused = self.proxy.process_new_http(session, shutdown).await?;
                    // The persistent settings carry nothing we use: the wire keeps what
                    // follows the request, and the edge counts requests.
                    wire = reused.consume().0.into_any().downcast::<Wire>().ok()?;
                    if !wire.request_read() {
                        // the session kept the connection without reading its request whole
                        return None;
                    }
                    // what the client has not taken yet of a buffered response goes first
                    if wire.drain(cfg.send_timeout).await.is_err() {
                        return None;
                    }
                }
            }
        }
    }

    async fn cleanup(&self) {
        self.proxy.cleanup().await;
    }
}

impl Edge {
    /// Check the whole head `head` and, where a memory tier may answer it and it is a fresh
    /// HIT there, put the response in `out`.
    fn answer(&self, head: &[u8], turn: &Turn, out: &mut BytesMut) -> Verdict {
        let mut room = head::fields();
        let mut parsed = httparse::Request::new(&mut []);
        let framing = match head::parse(head, &mut room, &mut parsed) {
            Ok(_) if !turn.rewritten && head::needs_rewrite(&parsed, &turn.limits) => {
                return rewrite(head, &turn.limits, None)
            }
            Ok(framing) => framing,
            Err(rejection) if rejection == head::INVALID_HEADER_NAME && !turn.rewritten => {
                return rewrite(head, &turn.limits, Some(rejection))
            }
            Err(rejection) => return Verdict::Refuse(rejection),
        };
        if !matches!(framing, Framing::Empty | Framing::Length(0)) {
            // a body: never a memory HIT
            return Verdict::HandOff(Hand {
                framing,
                route: None,
                spool: body::spool_for(&self.state.load().cfg, &parsed, framing),
            });
        }
        let mut hand = Hand {
            framing,
            route: None,
            spool: None,
        };
        if !turn.memory_tier {
            return Verdict::HandOff(hand);
        }
        match self.answer_parsed(&parsed, head.len(), turn, out, &mut hand.route) {
            Some(a) => Verdict::Answer(a),
            None => Verdict::HandOff(hand),
        }
    }

    /// Answer a refused head with its error status (the error page when one is configured),
    /// log it at `info` as NGINX does, and linger briefly before the connection closes.
    async fn refuse(&self, wire: &mut Wire, conn: Conn<'_>, rejection: Rejection) {
        let client = conn.client.map_or_else(String::new, |a| a.to_string());
        log::info!("{}, client: {client}", rejection.reason);
        let cfg = self.state.load().cfg.clone();
        let Ok((mut header, body)) = error_page::build(&cfg, rejection.status).await else {
            return;
        };
        let _ = header.insert_header(header::CONNECTION, "close");
        let mut out = BytesMut::with_capacity(512 + body.len());
        put_head(&mut out, &header);
        out.put_slice(b"\r\n");
        let with_body = !wire.buf.trim_ascii_start().starts_with(b"HEAD ");
        if with_body {
            out.put_slice(&body);
        }
        let limit = cfg.send_timeout;
        let stream = &mut wire.stream;
        let sent = within(limit, stream.write_all(&out)).await.is_ok()
            && within(limit, stream.flush()).await.is_ok();
        self.log_unparsed(
            wire,
            conn,
            &header,
            if sent && with_body { body.len() } else { 0 },
        );
        if !sent {
            return;
        }
        let stream = &mut wire.stream;
        let _ = stream.shutdown().await;
        let mut sink = vec![0u8; 16 * 1024];
        let _ = timeout(error_page::LINGER, async {
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }

    /// Log a request answered without a parsed head (refused, or its head timed out: 408, as
    /// NGINX) in the access log and the metrics; `$request` is what arrived of its first line.
    fn log_unparsed(&self, wire: &Wire, conn: Conn<'_>, resp: &ResponseHeader, sent: usize) {
        let line = wire.buf.trim_ascii_start();
        let line = &line[..memchr::memchr(b'\n', line).unwrap_or(line.len())];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut ctx = Ctx::new(self.state.load_full());
        ctx.connection = wire.connection;
        ctx.request_line =
            Some(String::from_utf8_lossy(&line[..line.len().min(2048)]).into_owned());
        // the method and target when they parse, for `$request_method` and `$request_uri`
        let mut words = line.split(|b| *b == b' ');
        let req = match (words.next(), words.next()) {
            (Some(m), Some(t)) => RequestHeader::build(m, t, Some(0)).ok(),
            _ => None,
        }
        .or_else(|| RequestHeader::build("GET", b"/", Some(0)).ok());
        let Some(req) = req else {
            return;
        };
        log_request(&RequestVars {
            req: &req,
            conn,
            ctx: &ctx,
            resp: Some(resp),
            body_bytes_sent: sent,
        });
    }

    /// The memory-tier HIT answering a whole parsed head; `None` hands the request to Pingora,
    /// with what was found on the way in `found` when the memory tier was asked.
    fn answer_parsed(
        &self,
        parsed: &httparse::Request,
        used: usize,
        turn: &Turn,
        out: &mut BytesMut,
        found: &mut Option<EdgeRoute>,
    ) -> Option<Answered> {
        let method = match parsed.method {
            Some("GET") => Method::GET,
            Some("HEAD") => Method::HEAD,
            _ => return None,
        };
        let path = parsed.path?;
        if !path.starts_with('/') {
            return None;
        }
        let version = match parsed.version {
            Some(1) => Version::HTTP_11,
            Some(0) => Version::HTTP_10,
            _ => return None,
        };
        // Requests with a body, an upgrade or an expectation are Pingora's.
        let (mut close, mut keep) = (false, false);
        for f in parsed.headers.iter() {
            let n = f.name.as_bytes();
            if n.eq_ignore_ascii_case(b"transfer-encoding")
                || n.eq_ignore_ascii_case(b"upgrade")
                || n.eq_ignore_ascii_case(b"expect")
                || (n.eq_ignore_ascii_case(b"content-length") && f.value != b"0")
            {
                return None;
            }
            if n.eq_ignore_ascii_case(b"connection") {
                for token in f.value.split(|b| *b == b',') {
                    let token = token.trim_ascii();
                    close |= token.eq_ignore_ascii_case(b"close");
                    keep |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
        }
        // Only a location caching in a memory tier can be answered here; anything else goes to
        // Pingora before any more work. These are `route::route`'s steps, ordered so that a
        // request is handed off before a request header is built; any refusal is Pingora's to
        // answer.
        let state = self.state.load_full();
        let (raw_path, norm, loc) = route::locate_target(&state.cfg, path)?;
        if !answerable(&state.cfg, loc) {
            return None;
        }
        let mut req =
            RequestHeader::build_no_case(method, path.as_bytes(), Some(parsed.headers.len()))
                .ok()?;
        req.set_version(version);
        for f in parsed.headers.iter() {
            let name = header::HeaderName::from_bytes(f.name.as_bytes()).ok()?;
            let value = header::HeaderValue::from_bytes(f.value).ok()?;
            req.append_header(name, value).ok()?;
        }
        pingora_core::protocols::http::authority::validate_request_authority(&req).ok()?;
        if route::check_head(&req, &turn.limits).is_err() || req.uri.path() != raw_path {
            return None;
        }
        let mut ctx = Ctx::new(state);
        ctx.connection = turn.connection;
        ctx.path = norm;
        ctx.assign_location(&req, loc);
        let Some(hit) = memory_tier::lookup(&req, turn.conn, &mut ctx) else {
            *found = Some(EdgeRoute {
                cfg: ctx.state.cfg.clone(),
                path: std::mem::take(&mut ctx.path),
                location: loc,
            });
            return None;
        };
        // `close` wins over `keep-alive` (RFC 9112 §9.6); HTTP/1.0 keeps only when asked.
        let keepalive = turn.may_keep && !close && (keep || version == Version::HTTP_11);
        let tail = write_response(&hit, keepalive, out);
        Some(Answered {
            used,
            keepalive,
            tail,
            req,
            ctx,
            hit,
        })
    }
}

/// The verdict on a head `head::needs_rewrite` or the parser (`refused`) found wanting: its
/// rewrite, or the refusal when there is nothing to rewrite.
fn rewrite(head: &[u8], limits: &ClientLimits, refused: Option<Rejection>) -> Verdict {
    match head::rewrite(head, limits) {
        Ok(Some(new)) => Verdict::Rewrite(new),
        Ok(None) => match refused {
            Some(rejection) => Verdict::Refuse(rejection),
            // (not expected) parsed again as it is, not rewritten again
            None => Verdict::Rewrite(head.to_vec()),
        },
        Err(rejection) => Verdict::Refuse(rejection),
    }
}

/// Whether the edge can answer for location `loc`: it caches in a memory tier, and no header
/// rule of it names `Content-Length` (set when an entry is stored), `Date`, `Connection` or
/// `Transfer-Encoding`, which the edge writes itself (Pingora's session reconciles those).
fn answerable(cfg: &Config, loc: usize) -> bool {
    let l = &cfg.locations[loc];
    l.cache
        .as_ref()
        .is_some_and(|c| cfg.zones[c.zone].memory > 0)
        && !l.headers.names_any(&[
            header::CONTENT_LENGTH,
            header::DATE,
            header::CONNECTION,
            header::TRANSFER_ENCODING,
        ])
}

/// Serialise `hit` as Pingora's HTTP/1 session would (its `Date` and `Connection`); a body
/// over [`COALESCE`] bytes is returned to be written after `out`.
fn write_response(hit: &MemoryHit, keepalive: bool, out: &mut BytesMut) -> Option<Bytes> {
    let h: &ResponseHeader = &hit.header;
    out.clear();
    let body = hit.body();
    out.reserve(512 + body.map_or(0, |b| b.len().min(COALESCE)));
    put_head(out, h);
    out.put_slice(b"Date: ");
    out.put_slice(pingora_core::protocols::http::date::get_cached_date().as_bytes());
    out.put_slice(if keepalive {
        b"\r\nConnection: keep-alive\r\n\r\n"
    } else {
        b"\r\nConnection: close\r\n\r\n"
    });
    match body {
        Some(b) if b.len() > COALESCE => Some(b.clone()),
        Some(b) => {
            out.put_slice(b);
            None
        }
        None => None,
    }
}

/// The status line and the fields of `h`, as Pingora's HTTP/1 session writes them (the caller
/// ends the head).
fn put_head(out: &mut BytesMut, h: &ResponseHeader) {
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(h.status.as_str().as_bytes());
    out.put_u8(b' ');
    if let Some(reason) = h.get_reason_phrase() {
        out.put_slice(reason.as_bytes());
    }
    out.put_slice(b"\r\n");
    h.header_to_h1_wire(out);
}

/// `io` within `limit` (NGINX `send_timeout`): polled once first, and a timer set only when the
/// socket cannot take the bytes at once (a timer per write is measurable on small HITs).
async fn within<F: std::future::Future<Output = std::io::Result<()>>>(
    limit: Duration,
    io: F,
) -> std::io::Result<()> {
    let mut io = std::pin::pin!(io);
    match std::future::poll_fn(|cx| std::task::Poll::Ready(io.as_mut().poll(cx))).await {
        std::task::Poll::Ready(done) => done,
        std::task::Poll::Pending => timeout(limit, io).await?,
    }
}
