//! A controllable test origin: tokio + hyper 1, HTTP/1.1 only, on its own
//! background thread with its own runtime.
//!
//! Every request (any method, any path) is answered according to these
//! request headers (the path and query are never interpreted):
//!
//! * default: `200`, `Content-Type: application/json`, body is a JSON echo
//!   `{"method", "uri", "version", "headers", "body", "body_len"}`.
//! * `X-Origin-Status: NNN`: respond with that status (204/304 have no body).
//! * `X-Origin-Header: Name: Value` (repeatable): add a response header. The
//!   first custom occurrence of a name replaces any default header of that
//!   name (e.g. `Content-Type`), later ones append.
//! * `X-Origin-Sleep-Ms: N`: sleep before sending the response headers.
//! * `X-Origin-Chunks: N` (+ `X-Origin-Chunk-Delay-Ms: M`): stream N chunks
//!   `chunk-<i>\n` with chunked encoding, sleeping M ms before every chunk
//!   after the first. `Content-Type: text/plain`.
//! * `X-Origin-Body-Size: N`: N bytes of `abc..xyz0..9` repeated, with
//!   `Content-Length`; `Content-Type` from `X-Origin-Content-Type` or
//!   `text/plain`.
//! * `X-Origin-Content-Type: T`: overrides the default content type in every
//!   mode.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use tokio::sync::oneshot;

/// The pattern used by `X-Origin-Body-Size`.
pub const BODY_PATTERN: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Expected body for `X-Origin-Body-Size: n`.
pub fn pattern_body(n: usize) -> Vec<u8> {
    BODY_PATTERN.iter().copied().cycle().take(n).collect()
}

/// Expected payload of chunk `i` in `X-Origin-Chunks` mode.
pub fn chunk_text(i: usize) -> String {
    format!("chunk-{i}\n")
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Handle on a running test origin. Dropping it stops the accept loop, drops
/// all connections and joins the background thread.
pub struct Origin {
    pub port: u16,
    /// Number of requests received (counted when the request head arrives).
    pub hits: Arc<AtomicUsize>,
    /// JSON echo (same shape as the default response body) of every request
    /// received, in arrival order (recorded once the request body was read).
    pub requests: Arc<Mutex<Vec<Value>>>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Origin {
    /// `"127.0.0.1:PORT"`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Current value of `hits`.
    pub fn hit_count(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Snapshot of the recorded request echoes.
    pub fn recorded(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }

    /// The most recently recorded request echo, if any.
    pub fn last_request(&self) -> Option<Value> {
        self.requests.lock().unwrap().last().cloned()
    }

    /// Stop the origin now (same as dropping it).
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Start a test origin on an ephemeral port of 127.0.0.1.
pub fn start_origin() -> Origin {
    start_origin_on(0)
}

/// Start a test origin on `127.0.0.1:port` (`0` = ephemeral).
pub fn start_origin_on(port: u16) -> Origin {
    let std_listener = StdTcpListener::bind(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("origin: cannot bind 127.0.0.1:{port}: {e}"));
    std_listener
        .set_nonblocking(true)
        .expect("origin: set_nonblocking");
    let port = std_listener
        .local_addr()
        .expect("origin: local_addr")
        .port();

    let hits = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = oneshot::channel::<()>();

    let state = Arc::new(State {
        hits: hits.clone(),
        requests: requests.clone(),
    });
    let thread = std::thread::Builder::new()
        .name(format!("test-origin-{port}"))
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("origin: build tokio runtime");
            rt.block_on(accept_loop(std_listener, state, rx));
            rt.shutdown_timeout(Duration::from_secs(1));
        })
        .expect("origin: spawn thread");

    Origin {
        port,
        hits,
        requests,
        shutdown: Some(tx),
        thread: Some(thread),
    }
}

struct State {
    hits: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Value>>>,
}

async fn accept_loop(
    std_listener: StdTcpListener,
    state: Arc<State>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(std_listener).expect("origin: tokio listener");
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => r,
        };
        let (stream, _peer): (_, SocketAddr) = match accepted {
            Ok(x) => x,
            Err(e) => {
                eprintln!("test origin: accept error: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(req, state).await) }
            });
            // Errors here are client/proxy aborts; tests observe them on the
            // other side, so stay quiet.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn header_str(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
}

fn error_response(msg: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(msg)).boxed_unsync());
    *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

fn parse_num<T: std::str::FromStr>(
    req: &Request<Incoming>,
    name: &str,
) -> Result<Option<T>, String> {
    match header_str(req, name) {
        None => Ok(None),
        Some(s) => s
            .parse::<T>()
            .map(Some)
            .map_err(|_| format!("origin harness: bad {name} header value {s:?}")),
    }
}

async fn handle(req: Request<Incoming>, state: Arc<State>) -> Response<Body> {
    state.hits.fetch_add(1, Ordering::SeqCst);
    match handle_inner(req, &state).await {
        Ok(r) => r,
        Err(msg) => error_response(msg),
    }
}

async fn handle_inner(req: Request<Incoming>, state: &State) -> Result<Response<Body>, String> {
    // Parse the control headers first (before consuming the request).
    let status = match parse_num::<u16>(&req, "x-origin-status")? {
        None => StatusCode::OK,
        Some(n) => StatusCode::from_u16(n)
            .map_err(|_| format!("origin harness: invalid X-Origin-Status {n}"))?,
    };
    let sleep_ms = parse_num::<u64>(&req, "x-origin-sleep-ms")?;
    let chunks = parse_num::<usize>(&req, "x-origin-chunks")?;
    let chunk_delay_ms = parse_num::<u64>(&req, "x-origin-chunk-delay-ms")?.unwrap_or(0);
    let body_size = parse_num::<usize>(&req, "x-origin-body-size")?;
    let content_type_override = header_str(&req, "x-origin-content-type");

    let mut custom: Vec<(HeaderName, HeaderValue)> = Vec::new();
    for v in req.headers().get_all("x-origin-header") {
        let s = String::from_utf8_lossy(v.as_bytes()).to_string();
        let (name, value) = s
            .split_once(':')
            .ok_or_else(|| format!("origin harness: X-Origin-Header {s:?} lacks ':'"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|e| format!("origin harness: bad header name in {s:?}: {e}"))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|e| format!("origin harness: bad header value in {s:?}: {e}"))?;
        custom.push((name, value));
    }

    // Echo data.
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let version = format!("{:?}", req.version());
    let mut headers = Map::new();
    for name in req.headers().keys() {
        let joined = req
            .headers()
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string())
            .collect::<Vec<_>>()
            .join(", ");
        headers.insert(name.as_str().to_string(), Value::String(joined));
    }

    // Read the entire request body (may be chunked / streamed).
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("origin harness: error reading request body: {e}"))?
        .to_bytes();

    let echo = json!({
        "method": method,
        "uri": uri,
        "version": version,
        "headers": Value::Object(headers),
        "body": String::from_utf8_lossy(&body),
        "body_len": body.len(),
    });
    state.requests.lock().unwrap().push(echo.clone());

    if let Some(ms) = sleep_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    let no_body = status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let (body, default_ct): (Body, &str) = if no_body {
        (Empty::new().boxed_unsync(), "")
    } else if let Some(n) = chunks {
        let delay = Duration::from_millis(chunk_delay_ms);
        let stream = futures_util::stream::unfold(0usize, move |i| async move {
            if i >= n {
                return None;
            }
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let frame = Frame::data(Bytes::from(chunk_text(i)));
            Some((Ok::<_, Infallible>(frame), i + 1))
        });
        (StreamBody::new(stream).boxed_unsync(), "text/plain")
    } else if let Some(n) = body_size {
        (
            Full::new(Bytes::from(pattern_body(n))).boxed_unsync(),
            "text/plain",
        )
    } else {
        let text = serde_json::to_vec(&echo).expect("serialize echo");
        (
            Full::new(Bytes::from(text)).boxed_unsync(),
            "application/json",
        )
    };

    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    if !no_body {
        let ct = content_type_override.unwrap_or_else(|| default_ct.to_string());
        let ct = HeaderValue::from_str(&ct)
            .map_err(|e| format!("origin harness: bad X-Origin-Content-Type {ct:?}: {e}"))?;
        resp.headers_mut().insert(CONTENT_TYPE, ct);
    }
    let mut seen: Vec<HeaderName> = Vec::new();
    for (name, value) in custom {
        if !seen.contains(&name) {
            resp.headers_mut().remove(&name);
            seen.push(name.clone());
        }
        resp.headers_mut().append(name, value);
    }
    Ok(resp)
}

/// Requests `origin` received for exactly this URI (path + query).
pub fn hits(origin: &Origin, uri: &str) -> usize {
    origin.recorded().iter().filter(|e| e["uri"] == uri).count()
}

/// Requests `origin` received for this URI with this method.
pub fn hits_m(origin: &Origin, method: &str, uri: &str) -> usize {
    origin
        .recorded()
        .iter()
        .filter(|e| e["uri"] == uri && e["method"] == method)
        .count()
}

/// The value of request header `name` (lowercase) as the origin saw it, from its JSON echo.
pub fn seen_header(echo: &Value, name: &str) -> Option<String> {
    echo["headers"][name].as_str().map(str::to_string)
}

/// A raw HTTP/1 upstream on 127.0.0.1 for what the hyper origin cannot do (101 tunnels, an
/// HTTP/1.0 status line, knowing when a whole answer was written): each connection's request
/// head is read byte by byte and handed, with the connection, to `answer` on its own thread.
/// Returns the port.
pub fn start_raw_origin<F>(answer: F) -> u16
where
    F: Fn(std::net::TcpStream, Vec<u8>) + Send + Sync + 'static,
{
    use std::io::Read;
    let listener = StdTcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let answer = answer.clone();
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                answer(conn, head);
            });
        }
    });
    port
}
