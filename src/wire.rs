//! A plain client connection as the edge owns it: the edge reads request heads into its
//! buffer, and while Pingora's HTTP/1 session handles one request the same connection yields
//! that session the request's bytes and nothing past them. Bytes that arrive meanwhile
//! (pipelined requests) stay in the buffer for the edge, so Pingora never reads a byte the edge
//! has not accepted. The proxy's phases read what the edge decided about the request from it.

use crate::config::Config;
use bytes::{Buf, BytesMut};
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType,
};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
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
    /// The connection may carry another request after the one handed on (the edge's keep-alive
    /// limits and shutdown; the session's own reading of `Connection` comes on top).
    pub keep: bool,
    /// What the edge found for the request handed on, when it got as far as the memory tier.
    pub route: Option<EdgeRoute>,
}

impl Wire {
    pub fn new(stream: Stream) -> Self {
        Wire {
            stream,
            buf: BytesMut::with_capacity(4096),
            extent: Extent::Done,
            granted: 0,
            eof: false,
            keep: true,
            route: None,
        }
    }

    /// Hand on the request whose head is the first `head` bytes of the buffer and whose body
    /// is framed by `framing`: reads yield exactly its bytes from now on.
    pub fn hand_on(&mut self, head: usize, framing: Framing, keep: bool, route: Option<EdgeRoute>) {
        self.keep = keep;
        self.route = route;
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
            if matches!(this.extent, Extent::Done) {
                // The request is read whole; the session only probes whether the client is
                // still there. Keep what arrives for the next request; a client that closed
                // with nothing pending is gone (the session ends its request, as NGINX does).
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
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[async_trait::async_trait]
impl Shutdown for Wire {
    async fn shutdown(&mut self) {
        self.stream.shutdown().await
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

/// Follows a chunked body (RFC 9112 §7.1) to find where it ends, without decoding it.
#[derive(Debug, Default)]
struct ChunkScan {
    state: Chunk,
    /// Data bytes left in the current chunk.
    left: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// In a chunk-size line (size, extensions), until its LF.
    #[default]
    Size,
    /// In a chunk's data.
    Data,
    /// After a chunk's data, until the LF of its CRLF.
    DataEnd,
    /// At the start of a trailer line (or the empty line that ends the body).
    TrailerStart,
    /// In a trailer line, until its LF.
    Trailer,
    /// Past the body.
    Done,
    /// Not a chunked body: the rest of the connection is given to the session, which refuses
    /// it and closes the connection.
    Broken,
}

impl ChunkScan {
    /// How many bytes of `bytes` belong to the body, and whether it ended with them.
    fn advance(&mut self, bytes: &[u8]) -> (usize, bool) {
        let mut i = 0;
        while i < bytes.len() {
            match self.state {
                Chunk::Size => {
                    let b = bytes[i];
                    i += 1;
                    if b == b'\n' {
                        self.left &= !EXT;
                        self.state = if self.left == 0 {
                            Chunk::TrailerStart
                        } else {
                            Chunk::Data
                        };
                    } else if let Some(d) = (b as char).to_digit(16).filter(|_| !self.in_ext()) {
                        if self.left >= 1 << 58 {
                            // past any body anyone sends, and clear of the EXT bit
                            self.state = Chunk::Broken;
                            continue;
                        }
                        self.left = self.left * 16 + u64::from(d);
                    } else {
                        // extensions, whitespace and the CR: up to the LF
                        self.left |= EXT;
                    }
                }
                Chunk::Data => {
                    let n = self.left.min((bytes.len() - i) as u64);
                    // n <= bytes.len() - i
                    i += n as usize;
                    self.left -= n;
                    if self.left == 0 {
                        self.state = Chunk::DataEnd;
                    }
                }
                Chunk::DataEnd => {
                    let b = bytes[i];
                    i += 1;
                    if b == b'\n' {
                        self.state = Chunk::Size;
                    }
                }
                Chunk::TrailerStart => {
                    let b = bytes[i];
                    i += 1;
                    self.state = match b {
                        b'\n' => Chunk::Done,
                        b'\r' => Chunk::TrailerStart,
                        _ => Chunk::Trailer,
                    };
                }
                Chunk::Trailer => {
                    let b = bytes[i];
                    i += 1;
                    if b == b'\n' {
                        self.state = Chunk::TrailerStart;
                    }
                }
                Chunk::Done => return (i, true),
                Chunk::Broken => return (bytes.len(), false),
            }
            if self.state == Chunk::Done {
                return (i, true);
            }
        }
        (i, false)
    }

    fn in_ext(&self) -> bool {
        self.left & EXT != 0
    }
}

/// Marks, in `ChunkScan::left` while a size line is read, that the size has ended (an
/// extension or the CR follows): digits after it are not part of the size.
const EXT: u64 = 1 << 63;

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(body: &[u8]) -> (usize, bool) {
        ChunkScan::default().advance(body)
    }

    #[test]
    fn chunked_bodies_end_where_their_last_chunk_and_trailers_end() {
        let body = b"3\r\nabc\r\n5;ext=1\r\ndefgh\r\n0\r\n\r\n";
        assert_eq!(
            scan(&[body.as_slice(), b"GET /"].concat()),
            (body.len(), true)
        );
        let trailers = b"1\r\nx\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n";
        assert_eq!(
            scan(&[trailers.as_slice(), b"next"].concat()),
            (trailers.len(), true)
        );
        let lf_only = b"2\nab\n0\n\n";
        assert_eq!(scan(lf_only), (lf_only.len(), true));
        // byte by byte, the end is found at the same place
        let mut s = ChunkScan::default();
        let mut total = 0;
        for (i, b) in body.iter().enumerate() {
            let (n, done) = s.advance(std::slice::from_ref(b));
            total += n;
            assert_eq!(done, i == body.len() - 1);
        }
        assert_eq!(total, body.len());
        // an upper-case size, and a size that overflows
        assert_eq!(scan(b"A\r\n0123456789\r\n0\r\n\r\n"), (20, true));
        let huge = b"ffffffffffffffffff\r\n";
        assert_eq!(scan(huge), (huge.len(), false));
    }
}
