//! Request heads the edge refuses before any upstream sees them, with NGINX's statuses (RFC 9112
//! where NGINX is laxer), through both paths: a location with a memory tier (the edge parses
//! every head) and one without (the edge used to hand the bytes over unread). Each refusal is
//! answered, the connection closed, and the origin never contacted.

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A proxy in front of a fresh origin; `memory` sizes the zone's memory tier (`0`: none).
fn proxy(memory: &str, extra: &str) -> (Origin, Proxy) {
    let origin = start_origin();
    let yaml = format!(
        "{QUIET}{extra}caches: {{z: {{path: \"{{DIR}}/cache\", memory: {memory}}}}}\n\
         upstreams: {{app: {{address: \"{}\"}}}}\n\
         proxy_set_header: {{Host: $host}}\n\
         locations:\n  - prefix: /\n    proxy_pass: http://app\n    \
         cache: {{zone: z, valid: {{\"200\": 1m}}}}\n",
        origin.addr()
    );
    let p = start_proxy(&yaml);
    (origin, p)
}

/// Send `raw` on a new connection; the status line's code and whether the proxy then closed
/// the connection.
fn status_of(port: u16, raw: &[u8]) -> (u16, bool) {
    let mut conn = Connection::connect(port);
    conn.send(raw);
    let r = conn.read_response(raw.starts_with(b"HEAD "));
    (r.status, conn.is_closed_by_peer(Duration::from_secs(3)))
}

const REFUSED: [(&str, &[u8], u16); 16] = [
    ("Content-Length list", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", 400),
    ("two Content-Length", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400),
    ("gzip, chunked", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 501),
    ("chunked + Content-Length", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400),
    ("Host with a space", b"GET /echo HTTP/1.1\r\nHost: bad host\r\n\r\n", 400),
    ("Host list", b"GET /echo HTTP/1.1\r\nHost: a, b\r\n\r\n", 400),
    ("empty Host", b"GET /echo HTTP/1.1\r\nHost:\r\n\r\n", 400),
    ("Host with a slash", b"GET /echo HTTP/1.1\r\nHost: x/y\r\n\r\n", 400),
    ("two Host", b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("space in the target", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("control byte in the target", b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("target without a slash", b"GET echo?t=1 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("lower-case method", b"get /echo HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("TRACE", b"TRACE /echo HTTP/1.1\r\nHost: a\r\n\r\n", 405),
    ("CONNECT", b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405),
    ("HTTP/2.0", b"GET /echo HTTP/2.0\r\nHost: a\r\n\r\n", 505),
];

#[test]
fn refused_heads_get_nginx_statuses_and_never_reach_the_origin() {
    for memory in ["4m", "0"] {
        let (origin, p) = proxy(memory, "");
        for (what, raw, want) in REFUSED {
            let (status, closed) = status_of(p.port, raw);
            assert_eq!(status, want, "{what} (memory: {memory})");
            assert!(
                closed,
                "{what}: the connection stays open (memory: {memory})"
            );
        }
        assert_eq!(
            origin.hit_count(),
            0,
            "memory: {memory}: the origin was contacted"
        );
        // CONNECT's 405 says what is allowed (RFC 9110 §15.5.6)
        let r = request(p.port, b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n");
        assert!(r.header("allow").is_some(), "405 without Allow");
        // and a well-formed request still goes through
        let r = get(p.port, "/echo");
        assert_eq!(r.status, 200);
        no_panic_in_logs(&p);
    }
}

#[test]
fn a_trailing_dot_is_dropped_from_host() {
    let (origin, p) = proxy("0", "");
    let r = request(
        p.port,
        b"GET /echo HTTP/1.1\r\nHost: Example.COM.\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let seen = origin.last_request().expect("the origin saw the request");
    assert_eq!(seen_header(&seen, "host").as_deref(), Some("example.com"));
}

#[test]
fn heads_are_bounded_like_nginx() {
    for memory in ["4m", "0"] {
        let (origin, p) = proxy(memory, "");
        // 24 KB of fields in 8 KiB lines: within 4 x 8k, served
        let field = "v".repeat(7_000);
        let mut raw = b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n".to_vec();
        for i in 0..3 {
            raw.extend(format!("X-Big-{i}: {field}\r\n").as_bytes());
        }
        raw.extend(b"\r\n");
        assert_eq!(
            request(p.port, &raw).status,
            200,
            "24 KB head (memory: {memory})"
        );
        let served = origin.hit_count();
        // past 32 KiB: 400; a request line over 8 KiB: 414; a field line over 8 KiB: 400
        let mut big = b"GET /echo HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..6 {
            big.extend(format!("X-Big-{i}: {field}\r\n").as_bytes());
        }
        big.extend(b"\r\n");
        assert_eq!(
            status_of(p.port, &big),
            (400, true),
            "40 KB head (memory: {memory})"
        );
        let long_uri = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "u".repeat(9_000));
        assert_eq!(status_of(p.port, long_uri.as_bytes()), (414, true));
        let long_field = format!(
            "GET /echo HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "f".repeat(9_000)
        );
        assert_eq!(status_of(p.port, long_field.as_bytes()), (400, true));
        let many = format!(
            "GET /echo HTTP/1.1\r\nHost: a\r\n{}\r\n",
            "X-F: 1\r\n".repeat(101)
        );
        assert_eq!(status_of(p.port, many.as_bytes()), (400, true));
        assert_eq!(
            origin.hit_count(),
            served,
            "memory: {memory}: a refused head reached the origin"
        );
        no_panic_in_logs(&p);
    }
}

/// `client_header_timeout` bounds every head, whatever its size (a head over 16 KiB used to be
/// handed to Pingora, whose per-read timeout a trickle never trips).
#[test]
fn client_header_timeout_applies_to_large_heads() {
    for memory in ["4m", "0"] {
        let (origin, p) = proxy(memory, "client_header_timeout: 1s\n");
        let mut s = TcpStream::connect(("127.0.0.1", p.port)).expect("connect");
        let mut head = b"GET /echo HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..3 {
            head.extend(format!("X-Big-{i}: {}\r\n", "v".repeat(7_000)).as_bytes());
        }
        head.extend(b"X-Slow: ");
        s.write_all(&head).expect("send 21 KB");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        let start = Instant::now();
        let mut closed_after = None;
        while start.elapsed() < Duration::from_secs(8) {
            let wrote = s.write_all(b"x").is_ok();
            let mut tmp = [0u8; 64];
            let eof = match s.read(&mut tmp) {
                Ok(0) => true,
                Ok(_) => panic!("memory: {memory}: an answer to an unfinished head"),
                Err(e) => !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
            };
            if !wrote || eof {
                closed_after = Some(start.elapsed());
                break;
            }
        }
        let took = closed_after.unwrap_or_else(|| {
            panic!("memory: {memory}: a 21 KB head trickled for 8 s was not cut off at 1 s")
        });
        assert!(took < Duration::from_secs(4), "cut off after {took:?}");
        assert_eq!(origin.hit_count(), 0);
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// 300 connections each holding 30 KB of an unfinished head: memory stays bounded (the edge
/// keeps at most 32 KiB of head per connection) and goes back to the system when they close. Figures are
/// printed (`--nocapture`).
#[test]
fn large_head_flood_memory_is_bounded() {
    let (origin, p) = proxy("0", "client_header_timeout: 30s\n");
    let pid = p.pid();
    let before = rss_kib(pid);
    let chunk = format!(
        "GET /echo HTTP/1.1\r\nHost: a\r\nX-Big: {}",
        "v".repeat(7_000)
    );
    let more = format!("\r\nX-More: {}", "w".repeat(7_000));
    let mut conns = Vec::new();
    for _ in 0..300 {
        let mut s = TcpStream::connect(("127.0.0.1", p.port)).expect("connect");
        s.write_all(chunk.as_bytes()).expect("send");
        for _ in 0..3 {
            s.write_all(more.as_bytes()).expect("send");
        }
        conns.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let during = rss_kib(pid);
    drop(conns);
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(pid);
    println!("RSS KiB: before {before}, with 300 x 30 KB heads {during}, after {after}");
    assert!(
        during < before + 40 * 1024,
        "300 large heads took {} KiB",
        during.saturating_sub(before)
    );
    // and most of it goes back to the system once they are closed
    assert!(
        after < before + during.saturating_sub(before) / 2,
        "RSS stayed at {after} KiB after the connections closed (before: {before} KiB)"
    );
    assert_eq!(origin.hit_count(), 0);
    assert_eq!(get(p.port, "/echo").status, 200);
}
