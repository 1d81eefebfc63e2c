//! The timeouts on clients, NGINX's directives with NGINX's defaults (60 s):
//! - `send_timeout`: a client that stops reading a response is disconnected once a write to it
//!   has made no progress for that long, whoever writes the body (Pingora's path for files from
//!   disk and proxied bodies, the edge for memory HITs);
//! - `client_header_timeout`: a request head must arrive whole within that long of its first
//!   byte, however steadily it trickles in.

use crate::common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const BIG: usize = 16 << 20;

fn config(origin: &str) -> String {
    format!(
        r#"listen: ["127.0.0.1:{{PORT}}"]
send_timeout: 1s
file_cache: 0
caches: {{z: {{path: "{{DIR}}/cache", memory: 16m}}}}
upstreams: {{up: {{address: "{origin}"}}}}
locations:
  - prefix: /files/
    root: "{{DIR}}/root"
  - prefix: /stream/
    proxy_pass: http://up
  - prefix: /
    proxy_pass: http://up
    add_header: {{X-Proxy-Cache: $upstream_cache_status}}
    cache: {{zone: z, valid: {{"200": 1m}}}}
"#
    )
}

/// Send `raw` on a connection whose client reads nothing for `stall`, then read what arrives
/// (the bodies are larger than both sockets' buffers: 4 MiB to send, 128 KiB to receive). Returns the bytes read and whether the server closed the
/// connection (end of stream or reset) rather than going quiet.
fn stalled(port: u16, raw: &[u8], stall: Duration) -> (usize, bool) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(raw).expect("send request");
    std::thread::sleep(stall);
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("read timeout");
    let mut buf = vec![0; 1 << 16];
    let mut n = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (n, true),
            Ok(k) => n += k,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (n, false)
            }
            Err(_) => return (n, true),
        }
    }
}

fn keep_get(path: &str) -> Vec<u8> {
    build_request("GET", path, &[("Connection", "keep-alive")], b"")
}

#[test]
fn a_client_that_stops_reading_is_disconnected() {
    let origin = start_origin();
    let big = pattern_body(BIG);
    let p = start_proxy_with(&config(&origin.addr()), &[("root/files/big.bin", &big)]);
    let stall = Duration::from_secs(3);

    // a file read from disk (Pingora's path)
    let (n, closed) = stalled(p.port, &keep_get("/files/big.bin"), stall);
    assert!(closed && n < BIG, "static file: {n} bytes, closed {closed}");

    // a proxied body (Pingora's path, streaming from the origin)
    let size = BIG.to_string();
    let raw = build_request(
        "GET",
        "/stream/x",
        &[("Connection", "keep-alive"), ("X-Origin-Body-Size", &size)],
        b"",
    );
    let (n, closed) = stalled(p.port, &raw, stall);
    assert!(
        closed && n < BIG,
        "proxied body: {n} bytes, closed {closed}"
    );

    // memory-tier HITs answered by the edge: 1 MiB each, 24 of them pipelined
    let one = [("X-Origin-Body-Size", "1048576")];
    get_with(p.port, "/hit", &one);
    let r = get_with(p.port, "/hit", &one);
    assert_eq!(r.header("x-proxy-cache"), Some("HIT"));
    let mut raw = Vec::new();
    for _ in 0..24 {
        raw.extend(build_request(
            "GET",
            "/hit",
            &[("Connection", "keep-alive"), one[0]],
            b"",
        ));
    }
    let (n, closed) = stalled(p.port, &raw, stall);
    assert!(
        closed && n < 24 << 20,
        "edge HITs: {n} bytes, closed {closed}"
    );

    // a client that reads gets everything
    let r = get(p.port, "/files/big.bin");
    assert!(r.body == big, "whole file for a reading client");
}

fn header_config(origin: &str, memory: &str) -> String {
    format!(
        r#"listen: ["127.0.0.1:{{PORT}}"]
client_header_timeout: 1s
caches: {{z: {{path: "{{DIR}}/cache", memory: {memory}}}}}
upstreams: {{up: {{address: "{origin}"}}}}
locations:
  - prefix: /
    proxy_pass: http://up
    cache: {{zone: z, valid: {{"200": 1m}}}}
"#
    )
}

/// A head trickled in a line every 250 ms is cut off one second after its first byte with no
/// response (as NGINX: its access log says 408, the client gets nothing), whether the edge
/// parses heads (memory tier) or only waits for whole ones (`memory: 0`); a head that arrives
/// in parts within the limit is answered.
#[test]
fn a_request_head_must_arrive_within_client_header_timeout() {
    let origin = start_origin();
    for memory in ["16m", "0"] {
        let p = start_proxy(&header_config(&origin.addr(), memory));

        let mut s = TcpStream::connect(("127.0.0.1", p.port)).expect("connect");
        s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(300));
        s.write_all(b"Connection: close\r\n\r\n").unwrap();
        let mut answer = Vec::new();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.read_to_end(&mut answer);
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "memory {memory}: a head in two parts 300 ms apart: {:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(40)])
        );

        let mut s = TcpStream::connect(("127.0.0.1", p.port)).expect("connect");
        let start = Instant::now();
        s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n").unwrap();
        while start.elapsed() < Duration::from_secs(6) {
            std::thread::sleep(Duration::from_millis(250));
            if s.write_all(b"X-Trickle: 1\r\n").is_err() {
                break;
            }
        }
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut got = Vec::new();
        let closed = match s.read_to_end(&mut got) {
            Ok(_) => true,
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        };
        let took = start.elapsed();
        assert!(
            closed && got.is_empty() && took < Duration::from_secs(4),
            "memory {memory}: trickled head: closed {closed}, {} bytes back, after {took:?}",
            got.len()
        );
    }
}
