//! A plain client connection as the edge owns it: the edge reads request heads into its
//! buffer, and while Pingora's HTTP/1 session handles one request the same connection yields
//! that session the request's bytes and nothing past them. Bytes that arrive meanwhile
//! (pipelined requests) stay in the buffer for the edge, so Pingora never reads a byte the edge
//! has not accepted. The proxy's phases read what the edge decided about the request from it.
//! An upstream response the client does not take as fast as it comes waits in the wire's
//! backlog (`backlog`), so the session, and its upstream connection, are done at the
//! upstream's pace (NGINX's `proxy_buffering`).

mod backlog;
mod chunk_scan;
mod spool;

pub use spool::{SpoolError, SpoolLimits, Spooled};

use crate::config::Config;
use backlog::{Backlog, Bounds};
use bytes::{Buf, BytesMut};
use chunk_scan::ChunkScan;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType,
};
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Most bytes kept for the next request while one is handled (a whole head, NGINX's
/// `large_client_header_buffers`, and some of its body); past it the socket is not read, and
/// the client waits as TCP makes it.
const KEEP_MAX: usize = 64 * 1024;

/// How the body of an accepted request ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// A chunked body, up to its last chunk and trailer section.
    Chunked,
    /// An upgrade request: everything until the connection closes belongs to it.
    Tunnel,
}

/// What the edge found for the request it handed on, so that the proxy's phases do not find it
/// again: its normalised path and location, and that the memory tier had no answer for it.
#[derive(Debug)]
pub struct EdgeRoute {
    /// The config it was found in (after a reload it says nothing).
    pub cfg: Arc<Config>,
    /// The normalised path (`$uri`).
    pub path: String,
    pub location: usize,
}

/// Where the request being handed on ends.
#[derive(Debug)]
enum Extent {
    /// No request: the session has read all of its own.
    Done,
    /// This many bytes of head are left, then the body.
    Head(usize, Framing),
    Length(u64),
    Chunked(ChunkScan),
    Tunnel,
    /// A body read whole into a temp file: its bytes from `pos` to `end`.
    File {
        file: std::fs::File,
        pos: u64,
        end: u64,
    },
}

/// The client connection, and the bytes read from it that no one has consumed yet.
#[derive(Debug)]
pub struct Wire {
    pub stream: Stream,
    /// Read, not yet consumed: a head the edge is reading, or the part of the request being
    /// handed on that its session has not read yet, then whatever the client sent after it.
    pub buf: BytesMut,
    extent: Extent,
    /// How many bytes at the start of `buf` are known to belong to the request handed on.
    granted: usize,
    /// The client has closed its side.
    eof: bool,
    /// `$connection`: the connection's serial number.
    pub connection: u64,
    /// The decoded length of the body of the request handed on, when it was read whole before
    /// (`spool`): the upstream gets it with this `Content-Length`.
    pub spooled: Option<u64>,
    /// That body's temp file, read after the head.
    body_file: Option<(std::fs::File, u64)>,
    /// The connection may carry another request after the one handed on (the edge's keep-alive
    /// limits and shutdown; the session's own reading of `Connection` comes on top).
    pub keep: bool,
    /// What the edge found for the request handed on, when it got as far as the memory tier.
    pub route: Option<EdgeRoute>,
    /// The response being written is an upstream's that may wait for its client (set by the
    /// proxy for a location with `buffering: on`).
    pub buffering: AtomicBool,
    /// What the client has not taken yet of a buffered response.
    backlog: Backlog,
    /// The config of the request handed on (the buffers' bounds, `send_timeout`).
    cfg: Option<Arc<Config>>,
    /// Since when the backlog has made no progress while the session closes the connection.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    /// What runs once the backlog is gone (see [`Wire::when_drained`]).
    drained: OnDrained,
    /// Backlog bytes went to the stream since its last flush (they may sit in its buffer).
    unflushed: bool,
}

#[derive(Default)]
struct OnDrained(Mutex<Option<Drained>>);

impl std::fmt::Debug for OnDrained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnDrained")
    }
}

/// Run once a buffered response has left the backlog: with 0 when the client took all of it,
/// else with the bytes it never got (the connection went first).
pub type Drained = Box<dyn FnOnce(u64) + Send>;

impl Wire {
    /// The connection `stream`, numbered `connection` (`$connection`).
    pub fn new(stream: Stream, connection: u64) -> Self {
        Wire {
            stream,
            buf: BytesMut::with_capacity(4096),
            extent: Extent::Done,
            granted: 0,
            eof: false,
            connection,
            spooled: None,
            body_file: None,
            keep: true,
            route: None,
            buffering: AtomicBool::new(false),
            backlog: Backlog::default(),
            cfg: None,
            stall: None,
            drained: OnDrained::default(),
            unflushed: false,
        }
    }

    /// Whether some of the response written waits for the client.
    pub fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Run `done` once the client has taken what waits in the backlog, or when the connection
    /// goes without (at once when nothing waits): the end of the request as the client sees it.
    pub fn when_drained(&self, done: Drained) {
        if self.backlog.is_empty() {
            done(0);
            return;
        }
        let mut slot = self
            .drained
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *slot = Some(match slot.take() {
            // (the edge drains the backlog before the next request: not expected)
            Some(earlier) => Box::new(move |unsent| {
                earlier(unsent);
                done(unsent);
            }),
            None => done,
        });
    }

    /// Hand on the request whose head is the first `head` bytes of the buffer and whose body
    /// is framed by `framing`: reads yield exactly its bytes from now on.
    pub fn hand_on(
        &mut self,
        head: usize,
        framing: Framing,
        keep: bool,
        route: Option<EdgeRoute>,
        cfg: &Arc<Config>,
        body: Option<Spooled>,
    ) {
        self.keep = keep;
        self.route = route;
        self.spooled = body.as_ref().map(|b| b.length);
        self.body_file = body.and_then(|b| b.file);
        *self.buffering.get_mut() = false;
        if !self.cfg.as_ref().is_some_and(|c| Arc::ptr_eq(c, cfg)) {
            self.cfg = Some(cfg.clone());
        }
        self.extent = Extent::Head(head, framing);
        self.granted = 0;
        self.grant();
    }

    /// Whether the request handed on has been read whole, so the connection may carry another.
    pub fn request_read(&self) -> bool {
        matches!(self.extent, Extent::Done) && self.granted == 0
    }

    /// Count the bytes of the buffer past `granted` that belong to the request handed on.
    fn grant(&mut self) {
        loop {
            let available = self.buf.len() - self.granted;
            match &mut self.extent {
                Extent::Done => return,
                Extent::Head(left, framing) => {
                    let n = (*left).min(available);
                    *left -= n;
                    self.granted += n;
                    if *left > 0 {
                        return;
                    }
                    if let Some((file, end)) = self.body_file.take() {
                        self.extent = Extent::File { file, pos: 0, end };
                        return;
                    }
                    self.extent = match *framing {
                        Framing::Empty | Framing::Length(0) => Extent::Done,
                        Framing::Length(n) => Extent::Length(n),
                        Framing::Chunked => Extent::Chunked(ChunkScan::default()),
                        Framing::Tunnel => Extent::Tunnel,
                    };
                }
                Extent::Length(left) => {
                    let n = (*left).min(available as u64);
                    *left -= n;
                    // n <= available, a usize
                    self.granted += n as usize;
                    if *left == 0 {
                        self.extent = Extent::Done;
                    }
                    return;
                }
                Extent::Chunked(scan) => {
                    let (n, done) = scan.advance(&self.buf[self.granted..]);
                    self.granted += n;
                    if done {
                        self.extent = Extent::Done;
                    }
                    return;
                }
                Extent::Tunnel => {
                    self.granted = self.buf.len();
                    return;
                }
                Extent::File { .. } => return,
            }
        }
    }

    /// Read what the client sent into the buffer (for the edge, between requests).
    pub async fn read_more(&mut self) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(4096);
        }
        tokio::io::AsyncReadExt::read_buf(&mut self.stream, &mut self.buf).await
    }

    /// Send what waits in the backlog, each write progressing within `limit` (NGINX
    /// `send_timeout`), and flush it: the stream's own write buffer would otherwise keep the
    /// last bytes until the next answer.
    pub async fn drain(&mut self, limit: Duration) -> io::Result<()> {
        if self.backlog.is_empty() && !self.unflushed {
            return Ok(());
        }
        let timed_out = |_| io::Error::new(io::ErrorKind::TimedOut, "send_timeout");
        while !self.backlog.is_empty() {
            tokio::time::timeout(limit, std::future::poll_fn(|cx| self.poll_send_some(cx)))
                .await
                .map_err(timed_out)??;
        }
        tokio::time::timeout(limit, tokio::io::AsyncWriteExt::flush(&mut self.stream))
            .await
            .map_err(timed_out)??;
        self.unflushed = false;
        Ok(())
    }

    /// One write of the backlog's front to the socket.
    fn poll_send_some(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let front = self.backlog.front()?;
        if front.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let n = ready!(Pin::new(&mut self.stream).poll_write(cx, front))?;
        self.unflushed = true;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        self.backlog.consume(n);
        if self.backlog.is_empty() {
            self.run_drained();
        }
        Poll::Ready(Ok(()))
    }

    /// Run what waits for the backlog to be gone ([`Wire::when_drained`]), with what it holds
    /// still.
    fn run_drained(&mut self) {
        let slot = self
            .drained
            .0
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(done) = slot.take() {
            done(self.backlog.len());
        }
    }

    /// Send the whole backlog, as far as the socket takes it now.
    fn poll_send_backlog(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.backlog.is_empty() {
            ready!(self.poll_send_some(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// Keep `buf` in the backlog if this response may wait for its client and the bounds allow.
    fn keep_back(&mut self, buf: &[u8]) -> bool {
        let Some(cfg) = self.cfg.as_ref() else {
            return false;
        };
        self.buffering.load(Ordering::Relaxed)
            && self.backlog.push(
                buf,
                &Bounds {
                    memory: cfg.buffers.memory,
                    file: cfg.buffers.temp_file_max,
                    dir: &cfg.buffers.temp_path,
                },
            )
    }

    /// Poll a read from the socket into the buffer: `Ok(0)` when the client has closed.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(16 * 1024);
        }
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.stream),
            cx,
            &mut self.buf
        ))?;
        if n == 0 {
            self.eof = true;
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.granted > 0 {
                let n = this.granted.min(out.remaining());
                out.put_slice(&this.buf[..n]);
                this.buf.advance(n);
                this.granted -= n;
                return Poll::Ready(Ok(()));
            }
            if let Extent::File { file, pos, end } = &mut this.extent {
                // a body read whole: from its temp file (blocking, from the page cache)
                let n = (out.remaining() as u64).min(*end - *pos);
                // n <= out.remaining()
                let dst = out.initialize_unfilled_to(n as usize);
                file.read_exact_at(dst, *pos)?;
                out.advance(n as usize);
                *pos += n;
                if *pos == *end {
                    this.extent = Extent::Done;
                }
                return Poll::Ready(Ok(()));
            }
            if matches!(this.extent, Extent::Done) {
                // The request is read whole; the session only probes whether the client is
                // still there. Meanwhile the backlog goes out as the client takes it.
                if let Poll::Ready(Err(e)) = this.poll_send_backlog(cx) {
                    return Poll::Ready(Err(e));
                }
                // Keep what arrives for the next request; a client that closed with nothing
                // pending is gone (the session ends its request, as NGINX does).
                while !this.eof && this.buf.len() < KEEP_MAX {
                    ready!(this.poll_fill(cx))?;
                }
                return if this.eof && this.buf.is_empty() {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                };
            }
            if this.eof || ready!(this.poll_fill(cx))? == 0 {
                // closed in the middle of the request: the session sees the end
                return Poll::Ready(Ok(()));
            }
            this.grant();
        }
    }
}

impl AsyncWrite for Wire {
    /// Straight to the socket when it takes the bytes; otherwise, for a buffered response,
    /// into the backlog (the write is done), else wait for the client.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.backlog.is_empty() {
            // what waits goes first
            match this.poll_send_backlog(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    return if this.keep_back(buf) {
                        Poll::Ready(Ok(buf.len()))
                    } else {
                        Poll::Pending
                    }
                }
            }
        }
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Pending if this.keep_back(buf) => Poll::Ready(Ok(buf.len())),
            other => other,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.backlog.is_empty() && !this.buffering.load(Ordering::Relaxed) {
            return Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        }
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &**b);
        Pin::new(this).poll_write(cx, first)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    /// A buffered response is flushed as far as the client takes it now; the rest waits.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_send_backlog(cx) {
            Poll::Ready(Ok(())) => {
                ready!(Pin::new(&mut this.stream).poll_flush(cx))?;
                this.unflushed = false;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if this.buffering.load(Ordering::Relaxed) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    /// The backlog goes out first, each write progressing within `send_timeout` (the session
    /// closes through here, with no timeout of its own).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while !this.backlog.is_empty() {
            match this.poll_send_some(cx) {
                Poll::Ready(Ok(())) => this.stall = None,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    let limit = this
                        .cfg
                        .as_ref()
                        .map_or(Duration::from_secs(60), |c| c.send_timeout);
                    let stall = this
                        .stall
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                    ready!(std::future::Future::poll(stall.as_mut(), cx));
                    this.stall = None;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "send_timeout",
                    )));
                }
            }
        }
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        self.run_drained();
    }
}

#[async_trait::async_trait]
impl Shutdown for Wire {
    /// As `AsyncWrite::poll_shutdown`: the backlog goes out first, each write within
    /// `send_timeout`.
    async fn shutdown(&mut self) {
        let _ = tokio::io::AsyncWriteExt::shutdown(self).await;
    }
}

impl UniqueID for Wire {
    fn id(&self) -> UniqueIDType {
        self.stream.id()
    }
}

impl Ssl for Wire {}

impl GetTimingDigest for Wire {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.stream.get_timing_digest()
    }
}

impl GetProxyDigest for Wire {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.stream.get_proxy_digest()
    }
}

impl GetSocketDigest for Wire {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.stream.get_socket_digest()
    }
}

/// Peeking would see bytes past the request: not offered.
impl Peek for Wire {}
