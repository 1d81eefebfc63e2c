//! A raw HTTP/1.1 client over `std::net::TcpStream`.
//!
//! Requests are sent byte-exactly (no URL normalisation), so tests can send
//! `/%2e%2e/etc/passwd`, `/x/../a.js`, backslashes, odd methods, malformed
//! requests and so on. Responses are parsed leniently but framed exactly as
//! RFC 9112 says: no body for HEAD / 1xx / 204 / 304, then chunked, then
//! Content-Length, else read until close.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Default read timeout for every client read.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The protocol from the status line, e.g. `"HTTP/1.1"` (no test reads it yet: it is there
    /// for the `{:?}` of a failing assertion).
    #[allow(dead_code)]
    pub version: String,
    /// The reason phrase from the status line (may be empty; read by no test yet, as `version`).
    #[allow(dead_code)]
    pub reason: String,
}

impl Response {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of header `name` (case-insensitive), in order.
    pub fn headers_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether header `name` is present at all.
    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// Body as a (lossy) UTF-8 string.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Body parsed as JSON; panics with the body text if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}); status {} headers {:?} body {:?}",
                self.status,
                self.headers,
                self.text()
            )
        })
    }
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    None,
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// `Content-Length: n`.
    Length(u64),
    /// Read until the server closes the connection.
    Close,
}

/// A response head: status line + headers.
#[derive(Debug, Clone)]
pub struct Head {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Body framing of this response to a request that was (or was not) HEAD.
    pub fn framing(&self, is_head_request: bool) -> Result<Framing, String> {
        if is_head_request
            || (100..200).contains(&self.status)
            || self.status == 204
            || self.status == 304
        {
            return Ok(Framing::None);
        }
        let te: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
            .map(|(_, v)| v.as_str())
            .collect();
        if !te.is_empty() {
            let last = te
                .join(",")
                .rsplit(',')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            return Ok(if last == "chunked" {
                Framing::Chunked
            } else {
                Framing::Close
            });
        }
        if let Some(cl) = self.header("content-length") {
            let n = cl
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("invalid Content-Length {cl:?}"))?;
            return Ok(Framing::Length(n));
        }
        Ok(Framing::Close)
    }
}

/// A client connection with its own read buffer. Supports several requests
/// on one connection (keep-alive) via [`Connection::send`] +
/// [`Connection::read_response`].
pub struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
    port: u16,
    timeout: Duration,
    eof: bool,
    reset: bool,
}

impl Connection {
    /// Connect to `127.0.0.1:port` with the default 10 s read timeout.
    pub fn connect(port: u16) -> Connection {
        Self::try_connect(port)
            .unwrap_or_else(|e| panic!("cannot connect to 127.0.0.1:{port}: {e}"))
    }

    /// Like [`Connection::connect`] but returns the error.
    pub fn try_connect(port: u16) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_write_timeout(Some(READ_TIMEOUT))?;
        let _ = stream.set_nodelay(true);
        Ok(Connection {
            stream,
            buf: Vec::new(),
            port,
            timeout: READ_TIMEOUT,
            eof: false,
            reset: false,
        })
    }

    /// Change the read timeout.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("set_read_timeout");
    }

    /// Write raw bytes to the connection.
    pub fn send(&mut self, raw: &[u8]) {
        if let Err(e) = self.try_send(raw) {
            panic!("write to 127.0.0.1:{} failed: {e}", self.port);
        }
    }

    /// Write raw bytes, returning any error.
    pub fn try_send(&mut self, raw: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(raw)?;
        self.stream.flush()
    }

    /// Read one response (skipping interim 1xx responses other than 101).
    pub fn read_response(&mut self, is_head_request: bool) -> Response {
        self.try_read_response(is_head_request)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Connection::read_response`] but returns errors (timeouts,
    /// premature close, malformed response) as messages.
    pub fn try_read_response(&mut self, is_head_request: bool) -> Result<Response, String> {
        let head = self.read_final_head()?;
        let body = match head.framing(is_head_request)? {
            Framing::None => Vec::new(),
            Framing::Length(n) => self.read_exact(n as usize, "response body")?,
            Framing::Chunked => self.read_chunked_body()?,
            Framing::Close => self.read_to_close()?,
        };
        Ok(Response {
            status: head.status,
            headers: head.headers,
            body,
            version: head.version,
            reason: head.reason,
        })
    }

    /// True if the server has closed the connection (EOF within `wait`) with
    /// no further bytes pending. Any unread bytes make this return false.
    pub fn is_closed_by_peer(&mut self, wait: Duration) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        if self.eof {
            return true;
        }
        let _ = self.stream.set_read_timeout(Some(wait));
        let mut tmp = [0u8; 4096];
        let res = self.stream.read(&mut tmp);
        let _ = self.stream.set_read_timeout(Some(self.timeout));
        match res {
            Ok(0) => {
                self.eof = true;
                true
            }
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                false
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => true,
            Err(_) => false,
        }
    }

    fn excerpt(&self) -> String {
        let n = self.buf.len().min(512);
        String::from_utf8_lossy(&self.buf[..n]).into_owned()
    }

    /// Read more bytes into the buffer. Ok(0) means EOF.
    fn fill(&mut self, what: &str) -> Result<usize, String> {
        if self.eof {
            return Ok(0);
        }
        let mut tmp = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    return Err(format!(
                        "timed out after {:?} waiting for {what} from 127.0.0.1:{}; \
                         unparsed bytes buffered: {:?}",
                        self.timeout,
                        self.port,
                        self.excerpt()
                    ));
                }
                Err(e) => {
                    if e.kind() == ErrorKind::ConnectionReset {
                        self.eof = true;
                        self.reset = true;
                    }
                    return Err(format!(
                        "read error while waiting for {what} from 127.0.0.1:{}: {e}; \
                         unparsed bytes buffered: {:?}",
                        self.port,
                        self.excerpt()
                    ));
                }
            }
        }
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let rest = self.buf.split_off(n);
        std::mem::replace(&mut self.buf, rest)
    }

    /// Read one response head (which may be an interim 1xx).
    pub fn read_head(&mut self) -> Result<Head, String> {
        loop {
            if let Some((head_len, sep_len)) = find_head_end(&self.buf) {
                let raw = self.take(head_len + sep_len);
                return parse_head(&raw[..head_len]);
            }
            if self.fill("response head")? == 0 {
                return Err(format!(
                    "connection to 127.0.0.1:{} closed before a complete response head \
                     was received; got {:?}",
                    self.port,
                    self.excerpt()
                ));
            }
        }
    }

    /// Read response heads until a final one (status >= 200, or 101).
    pub fn read_final_head(&mut self) -> Result<Head, String> {
        loop {
            let head = self.read_head()?;
            if head.status >= 200 || head.status == 101 {
                return Ok(head);
            }
        }
    }

    fn read_line(&mut self, what: &str) -> Result<Vec<u8>, String> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line = self.take(pos + 1);
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.fill(what)? == 0 {
                return Err(format!(
                    "connection to 127.0.0.1:{} closed while reading {what}; got {:?}",
                    self.port,
                    self.excerpt()
                ));
            }
        }
    }

    pub fn read_exact(&mut self, n: usize, what: &str) -> Result<Vec<u8>, String> {
        while self.buf.len() < n {
            if self.fill(what)? == 0 {
                return Err(format!(
                    "connection to 127.0.0.1:{} closed after {} of {n} bytes of {what}",
                    self.port,
                    self.buf.len()
                ));
            }
        }
        Ok(self.take(n))
    }

    fn read_to_close(&mut self) -> Result<Vec<u8>, String> {
        loop {
            match self.fill("response body (read until close)") {
                Ok(0) => break,
                Ok(_) => {}
                // A reset after the body was sent counts as the end.
                Err(_) if self.reset => break,
                Err(e) => return Err(e),
            }
        }
        Ok(std::mem::take(&mut self.buf))
    }

    /// Read one chunk of a chunked body: `Some(payload)`, or `None` for the
    /// terminating zero-size chunk (whose trailers are consumed).
    fn read_chunk(&mut self) -> Result<Option<Vec<u8>>, String> {
        let line = self.read_line("chunk size line")?;
        let line = String::from_utf8_lossy(&line).into_owned();
        let size_str = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_str, 16)
            .map_err(|_| format!("invalid chunk size line {line:?}"))?;
        if size == 0 {
            // Trailers until an empty line.
            loop {
                let l = self.read_line("chunked trailers")?;
                if l.is_empty() {
                    break;
                }
            }
            return Ok(None);
        }
        let data = self.read_exact(size, "chunk data")?;
        let crlf = self.read_line("chunk terminator")?;
        if !crlf.is_empty() {
            return Err(format!(
                "chunk of size {size} not followed by CRLF (got {:?})",
                String::from_utf8_lossy(&crlf)
            ));
        }
        Ok(Some(data))
    }

    fn read_chunked_body(&mut self) -> Result<Vec<u8>, String> {
        let mut body = Vec::new();
        while let Some(chunk) = self.read_chunk()? {
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Position of the end of the head: (head length, separator length).
fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, 4));
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn parse_head(raw: &[u8]) -> Result<Head, String> {
    let text = String::from_utf8_lossy(raw);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("").to_string();
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| version.starts_with("HTTP/"))
        .ok_or_else(|| format!("malformed status line {status_line:?} (head: {text:?})"))?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("malformed header line {line:?} (head: {text:?})"))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok(Head {
        version,
        status,
        reason,
        headers,
    })
}

/// Whether the raw request is a HEAD request.
pub fn is_head_request(raw: &[u8]) -> bool {
    raw.starts_with(b"HEAD ")
}

/// Send exactly `raw` on a fresh connection and read one response.
/// Panics (with a clear message) on timeout, premature close, or garbage.
pub fn request(port: u16, raw: &[u8]) -> Response {
    try_request(port, raw).unwrap_or_else(|e| panic!("request to 127.0.0.1:{port}: {e}"))
}

/// Like [`request`] but returns errors as messages (useful to assert that
/// the server refused or dropped a request).
pub fn try_request(port: u16, raw: &[u8]) -> Result<Response, String> {
    let mut conn = Connection::try_connect(port).map_err(|e| format!("connect failed: {e}"))?;
    conn.try_send(raw)
        .map_err(|e| format!("write failed: {e}"))?;
    conn.try_read_response(is_head_request(raw))
}

fn has_header(headers: &[(&str, &str)], name: &str) -> bool {
    headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
}

/// Build `METHOD path HTTP/1.1` with `Host: localhost` (unless given), the
/// caller's headers, `Content-Length` (when there is a body or the method
/// is POST/PUT/PATCH, unless the caller gave Content-Length or
/// Transfer-Encoding: then `body` is sent verbatim, e.g. pre-chunked), and
/// `Connection: close` (unless the caller gave a Connection header).
pub fn build_request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    if !has_header(headers, "host") {
        out.push_str("Host: localhost\r\n");
    }
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    let framed = has_header(headers, "content-length") || has_header(headers, "transfer-encoding");
    if !framed && (!body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH")) {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if !has_header(headers, "connection") {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Encode `chunks` as a chunked body (including the terminating chunk).
pub fn chunked_encode(chunks: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks.iter().filter(|c| !c.is_empty()) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// `GET path` with `Connection: close`.
pub fn get(port: u16, path: &str) -> Response {
    get_with(port, path, &[])
}

/// `GET path` with extra headers.
pub fn get_with(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    send(port, "GET", path, headers, b"")
}

/// `HEAD path` with extra headers.
pub fn head_with(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    send(port, "HEAD", path, headers, b"")
}

/// Arbitrary method/path/headers/body; see [`build_request`].
pub fn send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    request(port, &build_request(method, path, headers, body))
}

/// Two GETs on one connection: the first without `Connection: close`, the
/// second with it. Panics if the server closes the connection in between.
pub fn keepalive_pair(port: u16, path: &str) -> (Response, Response) {
    let mut conn = Connection::connect(port);
    conn.send(&build_request(
        "GET",
        path,
        &[("Connection", "keep-alive")],
        b"",
    ));
    let first = conn
        .try_read_response(false)
        .unwrap_or_else(|e| panic!("keepalive_pair: first response: {e}"));
    conn.send(&build_request("GET", path, &[], b""));
    let second = conn.try_read_response(false).unwrap_or_else(|e| {
        panic!(
            "keepalive_pair: second response on the same connection failed \
             (server did not keep the connection alive?): {e}; first response: \
             status {} headers {:?}",
            first.status, first.headers
        )
    });
    (first, second)
}

/// Incremental response reader for timing tests.
pub struct StreamReader {
    conn: Connection,
    is_head: bool,
    head: Option<Head>,
    framing: Framing,
    remaining: u64,
    done: bool,
}

/// Connect, send exactly `raw`, and return a reader for the response.
pub fn open_stream(port: u16, raw: &[u8]) -> StreamReader {
    let mut conn = Connection::connect(port);
    conn.send(raw);
    StreamReader {
        conn,
        is_head: is_head_request(raw),
        head: None,
        framing: Framing::None,
        remaining: 0,
        done: false,
    }
}

impl StreamReader {
    /// Change the read timeout (default 10 s).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.conn.set_timeout(timeout);
    }

    /// Read the final response head (interim 1xx are skipped). Idempotent.
    pub fn read_head(&mut self) -> (u16, Vec<(String, String)>) {
        if self.head.is_none() {
            let head = self
                .conn
                .read_final_head()
                .unwrap_or_else(|e| panic!("open_stream: {e}"));
            self.framing = head
                .framing(self.is_head)
                .unwrap_or_else(|e| panic!("open_stream: {e}"));
            if let Framing::Length(n) = self.framing {
                self.remaining = n;
            }
            self.done = self.framing == Framing::None;
            self.head = Some(head);
        }
        let head = self.head.as_ref().expect("head");
        (head.status, head.headers.clone())
    }

    /// First value of a response header (reads the head if needed).
    pub fn header(&mut self, name: &str) -> Option<String> {
        self.read_head();
        self.head
            .as_ref()
            .and_then(|h| h.header(name))
            .map(str::to_string)
    }

    /// The body framing (reads the head if needed).
    pub fn framing(&mut self) -> Framing {
        self.read_head();
        self.framing
    }

    /// Next piece of the body as soon as it arrives: for a chunked body the
    /// payload of the next chunk (`None` at the terminating 0 chunk); for
    /// other bodies whatever bytes one read returns (`None` at the end).
    /// Panics on timeout or premature close.
    pub fn next_chunk(&mut self) -> Option<Vec<u8>> {
        self.try_next_chunk()
            .unwrap_or_else(|e| panic!("open_stream: {e}"))
    }

    /// Like [`StreamReader::next_chunk`] but returns errors.
    pub fn try_next_chunk(&mut self) -> Result<Option<Vec<u8>>, String> {
        self.read_head();
        if self.done {
            return Ok(None);
        }
        match self.framing {
            Framing::None => {
                self.done = true;
                Ok(None)
            }
            Framing::Chunked => {
                let c = self.conn.read_chunk()?;
                if c.is_none() {
                    self.done = true;
                }
                Ok(c)
            }
            Framing::Length(_) => {
                if self.remaining == 0 {
                    self.done = true;
                    return Ok(None);
                }
                if self.conn.buf.is_empty() && self.conn.fill("response body")? == 0 {
                    return Err(format!(
                        "connection closed with {} bytes of body outstanding",
                        self.remaining
                    ));
                }
                let n = (self.conn.buf.len() as u64).min(self.remaining) as usize;
                self.remaining -= n as u64;
                Ok(Some(self.conn.take(n)))
            }
            Framing::Close => {
                if self.conn.buf.is_empty() {
                    match self.conn.fill("response body") {
                        Ok(0) => {
                            self.done = true;
                            return Ok(None);
                        }
                        Ok(_) => {}
                        Err(_) if self.conn.reset => {
                            self.done = true;
                            return Ok(None);
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(Some(std::mem::take(&mut self.conn.buf)))
            }
        }
    }
}
