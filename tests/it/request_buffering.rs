//! The slow-client shield on the request side (NGINX's `proxy_request_buffering on`): a body
//! is read whole (memory, then an unnamed temp file) before the upstream is asked, and reaches
//! it at once with `Content-Length`; `request_buffering: off` streams it as it comes.

use crate::common::*;
use std::time::{Duration, Instant};

fn proxy(extra: &str, location: &str) -> (Origin, Proxy) {
    let origin = start_origin();
    let yaml = format!(
        "{QUIET}client_body_temp_path: \"{{DIR}}/body\"\n{extra}\
         upstreams: {{app: {{address: \"{}\"}}}}\n\
         locations:\n  - prefix: /\n    proxy_pass: http://app\n{location}",
        origin.addr()
    );
    let p = start_proxy(&yaml);
    (origin, p)
}

fn post_head(length: usize, extra: &str) -> Vec<u8> {
    format!(
        "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: {length}\r\n{extra}Connection: close\r\n\r\n"
    )
    .into_bytes()
}

/// Wait until `cond` holds (at most 5 s).
fn eventually(cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn a_slow_upload_reaches_the_upstream_only_when_complete() {
    let body = pattern_body(200_000);
    let (origin, p) = proxy("", "");
    let mut conn = Connection::connect(p.port);
    conn.send(&post_head(body.len(), ""));
    conn.send(&body[..150_000]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        origin.hit_count(),
        0,
        "the upstream was asked before the body was in"
    );
    // the part past client_body_buffer_size is in a temp file nobody can see
    let left: Vec<_> = std::fs::read_dir(p.path("body")).expect("dir").collect();
    assert!(left.is_empty(), "{left:?}");
    conn.send(&body[150_000..]);
    let r = conn.read_response(false);
    assert_eq!(r.status, 200);
    let echo = r.json();
    assert_eq!(echo["body_len"], body.len());
    assert_eq!(
        echo["body"].as_str().map(str::as_bytes),
        Some(body.as_slice())
    );
    assert_eq!(echo["headers"]["content-length"], body.len().to_string());
    assert_eq!(origin.hit_count(), 1);
}

#[test]
fn request_buffering_off_streams_the_body() {
    let body = pattern_body(20_000);
    // in the location, or in the server for every location
    for (server, location) in [
        ("", "    request_buffering: off\n"),
        ("request_buffering: off\n", ""),
    ] {
        let (origin, p) = proxy(server, location);
        let mut conn = Connection::connect(p.port);
        conn.send(&post_head(body.len(), ""));
        conn.send(&body[..10_000]);
        assert!(
            eventually(|| origin.hit_count() == 1),
            "the upstream is asked as the body comes ({server}{location})"
        );
        conn.send(&body[10_000..]);
        assert_eq!(conn.read_response(false).json()["body_len"], body.len());
    }
}

#[test]
fn a_chunked_body_reaches_the_upstream_with_its_length() {
    for size in [100usize, 300_000] {
        let (origin, p) = proxy("client_body_buffer_size: 16k\n", "");
        let body = pattern_body(size);
        let chunks: Vec<&[u8]> = body.chunks(7_000).collect();
        let mut raw = b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
        raw.extend(chunked_encode(&chunks));
        let r = request(p.port, &raw);
        assert_eq!(r.status, 200, "{size}: {}", r.text());
        let echo = r.json();
        assert_eq!(echo["body_len"], size);
        assert_eq!(
            echo["body"].as_str().map(str::as_bytes),
            Some(body.as_slice())
        );
        assert_eq!(echo["headers"]["content-length"], size.to_string());
        assert!(echo["headers"].get("transfer-encoding").is_none(), "{echo}");
        assert_eq!(origin.hit_count(), 1);
    }
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let (origin, p) = proxy("", "");
    let mut conn = Connection::connect(p.port);
    conn.send(&post_head(5, "Expect: 100-continue\r\n"));
    let interim = conn.read_head().expect("an interim response");
    assert_eq!(interim.status, 100);
    conn.send(b"hello");
    let r = conn.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body"], "hello");
    assert!(r.json()["headers"].get("expect").is_none());
    assert_eq!(origin.hit_count(), 1);
}

#[test]
fn a_chunked_body_past_the_limit_is_413_without_the_upstream() {
    let (origin, p) = proxy("", "    client_max_body_size: 10k\n");
    let body = pattern_body(20_000);
    let mut raw = b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    raw.extend(chunked_encode(&[&body]));
    let r = request(p.port, &raw);
    assert_eq!(r.status, 413);
    assert_eq!(origin.hit_count(), 0);
}

#[test]
fn client_body_timeout_ends_a_stalled_upload() {
    let (origin, p) = proxy("client_body_timeout: 1s\n", "");
    let mut conn = Connection::connect(p.port);
    conn.send(&post_head(1000, ""));
    conn.send(&[b'x'; 10]);
    let stalled = Instant::now();
    assert!(conn.is_closed_by_peer(Duration::from_secs(5)));
    assert!(stalled.elapsed() >= Duration::from_millis(900));
    assert_eq!(origin.hit_count(), 0);
}

/// Where no temp file can be made (`client_body_temp_path` replaced by a plain file after the
/// start), a body past `client_body_buffer_size` is passed on as it comes, whole.
#[test]
fn without_a_temp_file_the_body_streams() {
    let origin = start_origin();
    let yaml = format!(
        "{QUIET}client_body_temp_path: \"{{DIR}}/body\"\n\
         upstreams: {{app: {{address: \"{}\"}}}}\n\
         locations:\n  - prefix: /\n    proxy_pass: http://app\n",
        origin.addr()
    );
    let p = start_proxy(&yaml);
    std::fs::remove_dir(p.path("body")).expect("client_body_temp_path made at start");
    std::fs::write(p.path("body"), "a file, not a directory").expect("write");
    let body = pattern_body(100_000);
    let mut raw = post_head(body.len(), "");
    raw.extend_from_slice(&body);
    let r = request(p.port, &raw);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["body"].as_str().map(str::as_bytes),
        Some(body.as_slice())
    );
}
