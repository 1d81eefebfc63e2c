//! Smoke tests of the shared test harness itself (origin + raw client only).

use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn echo_get_with_query_and_repeated_header() {
    let origin = start_origin();
    let raw = format!(
        "GET /a/b%2Fc?x=1&y=%20z HTTP/1.1\r\nHost: localhost:{}\r\nX-Multi: one\r\n\
         X-Multi: two\r\nConnection: close\r\n\r\n",
        origin.port
    );
    let r = request(origin.port, raw.as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let j = r.json();
    assert_eq!(j["method"], "GET");
    assert_eq!(j["uri"], "/a/b%2Fc?x=1&y=%20z");
    assert_eq!(j["version"], "HTTP/1.1");
    assert_eq!(j["headers"]["x-multi"], "one, two");
    assert_eq!(j["headers"]["host"], format!("localhost:{}", origin.port));
    assert_eq!(j["body"], "");
    assert_eq!(j["body_len"], 0);
    assert_eq!(origin.hit_count(), 1);
    assert_eq!(origin.last_request().unwrap()["uri"], "/a/b%2Fc?x=1&y=%20z");
}

#[test]
fn odd_paths_are_echoed_byte_exactly() {
    let origin = start_origin();
    for path in ["/%2e%2e/etc/passwd", "/x/../script.js", "/a\\b", "/./a//b"] {
        let r = get(origin.port, path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.json()["uri"], path);
    }
}

#[test]
fn post_with_chunked_request_body() {
    let origin = start_origin();
    let body = chunked_encode(&[b"hello ", b"chunked ", b"world"]);
    let r = send(
        origin.port,
        "POST",
        "/submit",
        &[("Transfer-Encoding", "chunked")],
        &body,
    );
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["method"], "POST");
    assert_eq!(j["body"], "hello chunked world");
    assert_eq!(j["body_len"], 19);
    assert_eq!(j["headers"]["transfer-encoding"], "chunked");

    // And a plain Content-Length body.
    let r = send(origin.port, "PUT", "/p", &[], b"abc");
    assert_eq!(r.json()["body"], "abc");
    assert_eq!(r.json()["headers"]["content-length"], "3");
    assert_eq!(origin.hit_count(), 2);
}

#[test]
fn status_control() {
    let origin = start_origin();
    let r = get_with(origin.port, "/missing", &[("X-Origin-Status", "404")]);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["uri"], "/missing");

    let r = get_with(origin.port, "/empty", &[("X-Origin-Status", "204")]);
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());

    let r = get_with(origin.port, "/nm", &[("X-Origin-Status", "304")]);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
}

#[test]
fn custom_response_headers() {
    let origin = start_origin();
    let r = get_with(
        origin.port,
        "/h",
        &[
            ("X-Origin-Header", "Cache-Control: max-age=60"),
            ("X-Origin-Header", "Set-Cookie: a=1"),
            ("X-Origin-Header", "Set-Cookie: b=2"),
            ("X-Origin-Header", "Content-Type: text/css"),
        ],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("max-age=60"));
    assert_eq!(r.headers_all("set-cookie"), vec!["a=1", "b=2"]);
    assert_eq!(r.headers_all("content-type"), vec!["text/css"]);
}

#[test]
fn head_request_has_no_body() {
    let origin = start_origin();
    let r = head_with(origin.port, "/x", &[("X-Origin-Body-Size", "100")]);
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), Some("100"));
}

#[test]
fn sleep_delays_response() {
    let origin = start_origin();
    let t = Instant::now();
    let r = get_with(origin.port, "/slow", &[("X-Origin-Sleep-Ms", "300")]);
    assert_eq!(r.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
}

#[test]
fn chunk_streaming_is_incremental() {
    let origin = start_origin();
    let raw = build_request(
        "GET",
        "/stream",
        &[("X-Origin-Chunks", "4"), ("X-Origin-Chunk-Delay-Ms", "300")],
        b"",
    );
    let start = Instant::now();
    let mut s = open_stream(origin.port, &raw);
    let (status, headers) = s.read_head();
    assert_eq!(status, 200);
    assert!(headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v == "chunked"));
    assert!(!headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length")));
    assert_eq!(s.framing(), Framing::Chunked);

    let mut arrivals = Vec::new();
    let mut i = 0;
    while let Some(chunk) = s.next_chunk() {
        assert_eq!(chunk, chunk_text(i).as_bytes());
        arrivals.push(start.elapsed());
        i += 1;
    }
    assert_eq!(i, 4);
    let total = start.elapsed();
    assert!(total >= Duration::from_millis(900), "total {total:?}");
    // Chunk 0 arrives well before the stream is complete.
    assert!(
        arrivals[0] < Duration::from_millis(250),
        "chunk 0 at {:?}",
        arrivals[0]
    );
    for w in arrivals.windows(2) {
        assert!(w[1] - w[0] >= Duration::from_millis(200), "{arrivals:?}");
    }
}

#[test]
fn chunked_response_via_request() {
    let origin = start_origin();
    let r = get_with(origin.port, "/c", &[("X-Origin-Chunks", "3")]);
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.text(), "chunk-0\nchunk-1\nchunk-2\n");
}

#[test]
fn body_size() {
    let origin = start_origin();
    let r = get_with(origin.port, "/big", &[("X-Origin-Body-Size", "100000")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("100000"));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.body, pattern_body(100000));
    assert_eq!(&r.body[..40], b"abcdefghijklmnopqrstuvwxyz0123456789abcd");

    let r = get_with(
        origin.port,
        "/img",
        &[
            ("X-Origin-Body-Size", "7"),
            ("X-Origin-Content-Type", "image/png"),
        ],
    );
    assert_eq!(r.body, b"abcdefg");
    assert_eq!(r.header("content-type"), Some("image/png"));
}

#[test]
fn keepalive_pair_reuses_connection() {
    let origin = start_origin();
    let (a, b) = keepalive_pair(origin.port, "/ka?n=1");
    assert_eq!(a.status, 200);
    assert_eq!(b.status, 200);
    assert_eq!(a.json()["uri"], "/ka?n=1");
    assert_eq!(b.json()["headers"]["connection"], "close");
    assert_eq!(origin.hit_count(), 2);
}

#[test]
fn origin_on_given_port_and_free_port() {
    let port = free_port();
    assert_ne!(port, 0);
    let origin = start_origin_on(port);
    assert_eq!(origin.port, port);
    assert_eq!(origin.addr(), format!("127.0.0.1:{port}"));
    assert_eq!(get(port, "/").status, 200);
}

#[test]
fn origin_stops_on_drop() {
    let origin = start_origin();
    let port = origin.port;
    drop(origin);
    assert!(try_request(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").is_err());
}
