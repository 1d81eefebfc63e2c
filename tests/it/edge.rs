//! The HTTP/1 edge (`src/edge/`): memory-tier HITs are answered on the connection itself,
//! everything else is handed to Pingora with the bytes already read and the connection comes
//! back. Whatever answers, the client must see one coherent HTTP/1 conversation.

use crate::common::*;
use std::time::{Duration, Instant};

fn config(origin: &str) -> String {
    format!(
        r#"listen: ["127.0.0.1:{{PORT}}"]
admin: {{listen: "127.0.0.1:{{PORT2}}"}}
access_log: {{format: '$request $status $body_bytes_sent $upstream_cache_status $remote_addr $http_x_tag', path: "{{DIR}}/access.log"}}
caches: {{z: {{path: "{{DIR}}/cache", memory: 4m}}}}
upstreams: {{up: {{address: "{origin}"}}}}
locations:
  - prefix: /
    proxy_pass: http://up
    add_header: {{X-Proxy-Cache: $upstream_cache_status}}
    cache: {{zone: z, valid: {{"200": 1m}}}}
"#
    )
}

/// A request that keeps the connection open (`build_request` closes it by default).
fn keep(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut h = headers.to_vec();
    if !h.iter().any(|(n, _)| n.eq_ignore_ascii_case("connection")) {
        h.push(("Connection", "keep-alive"));
    }
    build_request(method, path, &h, body)
}

fn get_req(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    keep("GET", path, headers, b"")
}

/// Fill `path` in the cache (MISS, then a HIT to be sure the memory tier has it).
fn warm(port: u16, path: &str) -> Response {
    let first = get(port, path);
    assert_eq!(cache_status(&first), "MISS");
    let hit = get(port, path);
    assert_eq!(cache_status(&hit), "HIT");
    hit
}

#[test]
fn pipelined_hits_are_answered_in_order() {
    let origin = start_origin();
    let p = start_proxy(&config(&origin.addr()));
    let a = warm(p.port, "/a");
    let b = warm(p.port, "/b");
    let mut conn = Connection::connect(p.port);
    let mut batch = Vec::new();
    for path in ["/a", "/b", "/a", "/b", "/a"] {
        batch.extend(get_req(path, &[]));
    }
    conn.send(&batch);
    for want in [&a, &b, &a, &b, &a] {
        let r = conn.read_response(false);
        assert_eq!((r.status, cache_status(&r)), (200, "HIT"));
        assert_eq!(r.body, want.body);
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
    // the connection is still usable
    conn.send(&get_req("/a", &[]));
    assert_eq!(conn.read_response(false).body, a.body);
}

#[test]
fn hits_and_misses_share_one_connection() {
    let origin = start_origin();
    let p = start_proxy(&config(&origin.addr()));
    let a = warm(p.port, "/a");
    let mut conn = Connection::connect(p.port);
    // HIT (edge), MISS (Pingora), HIT (edge again), a POST with a body (Pingora), HIT
    conn.send(&get_req("/a", &[]));
    let r = conn.read_response(false);
    assert_eq!((cache_status(&r), r.body.clone()), ("HIT", a.body.clone()));
    conn.send(&get_req("/new", &[]));
    let r = conn.read_response(false);
    assert_eq!((r.status, cache_status(&r)), (200, "MISS"));
    assert_eq!(r.json()["uri"], "/new");
    conn.send(&get_req("/a", &[]));
    let r = conn.read_response(false);
    assert_eq!((cache_status(&r), r.body.clone()), ("HIT", a.body.clone()));
    conn.send(&keep("POST", "/a", &[], b"GET /a HTTP/1.1\r\n\r\n"));
    let r = conn.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["method"], "POST");
    assert_eq!(r.json()["body_len"], 19, "{}", r.text());
    conn.send(&get_req("/new", &[]));
    let r = conn.read_response(false);
    assert_eq!((r.status, cache_status(&r)), (200, "HIT"));
    assert_eq!(r.json()["uri"], "/new");
    assert!(!conn.is_closed_by_peer(Duration::from_millis(100)));
}

#[test]
fn a_miss_pipelined_behind_a_hit_is_answered() {
    let origin = start_origin();
    let p = start_proxy(&config(&origin.addr()));
    let a = warm(p.port, "/a");
    let mut conn = Connection::connect(p.port);
    let mut batch = get_req("/a", &[]);
    batch.extend(get_req("/other", &[]));
    conn.send(&batch);
    let r = conn.read_response(false);
    assert_eq!((cache_status(&r), r.body.clone()), ("HIT", a.body.clone()));
    let r = conn.read_response(false);
    assert_eq!((r.status, cache_status(&r)), (200, "MISS"));
    assert_eq!(r.json()["uri"], "/other");
}

#[test]
fn a_head_split_across_writes_is_reassembled() {
    let origin = start_origin();
    let p = start_proxy(&config(&origin.addr()));
    let a = warm(p.port, "/a");
    let mut conn = Connection::connect(p.port);
    let raw = get_req("/a", &[("X-Tag", "split")]);
    for part in raw.chunks(7) {
        conn.send(part);
        std::thread::sleep(Duration::from_millis(5));
    }
    let r = conn.read_response(false);
    assert_eq!((r.status, cache_status(&r)), (200, "HIT"));
    assert_eq!(r.body, a.body);
}

#[test]
fn connection_close_and_http10_are_honoured_on_hits() {
    let origin = start_origin();
    let p = start_proxy(&config(&origin.addr()));
    let a = warm(p.port, "/a");

    // HTTP/1.1 with `Connection: close`: answered, announced, closed.
    let mut conn = Connection::connect(p.port);
    conn.send(&get_req("/a", &[("Connection", "close")]));
    let r = conn.read_response(false);
    assert_eq!(
        (cache_status(&r), r.header("connection")),
        ("HIT", Some("close"))
    );
    assert_eq!(r.body, a.body);
    assert!(conn.is_closed_by_peer(Duration::from_secs(2)));

    // HTTP/1.0 without keep-alive: closed after the answer.
    let mut conn = Connection::connect(p.port);
    conn.send(b"GET /a HTTP/1.0\r\n\r\n");
    let r = conn.read_response(false);
    assert_eq!(
        (cache_status(&r), r.header("connection")),
        ("HIT", Some("close"))
    );
    assert!(conn.is_closed_by_peer(Duration::from_secs(2)));

    // HTTP/1.0 asking for keep-alive keeps the connection.
    let mut conn = Connection::connect(p.port);
    for _ in 0..2 {
        conn.send(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let r = conn.read_response(false);
        assert_eq!(
            (cache_status(&r), r.header("connection")),
            ("HIT", Some("keep-alive"))
        );
        assert_eq!(r.body, a.body);
    }
}

#[test]
fn head_hit_and_large_hit_are_exact() {
    let origin = start_origin();
    let p = start_proxy(&config(&origin.addr()));
    // 200 KiB: above the edge's single-write copy (16 KiB), within the tier (256 KiB entries)
    let big = [("X-Origin-Body-Size", "200000")];
    assert_eq!(cache_status(&get_with(p.port, "/big", &big)), "MISS");
    let mut conn = Connection::connect(p.port);
    for _ in 0..2 {
        conn.send(&get_req("/big", &[]));
        let r = conn.read_response(false);
        assert_eq!((r.status, cache_status(&r)), (200, "HIT"));
        assert_eq!(r.body, pattern_body(200_000));
        assert_eq!(r.header("content-length"), Some("200000"));
        conn.send(&keep("HEAD", "/big", &[], b""));
        let r = conn.read_response(true);
        assert_eq!((r.status, cache_status(&r)), (200, "HIT"));
        assert_eq!(r.header("content-length"), Some("200000"));
    }
    // nothing followed the HEAD answer: the next response parses cleanly
    conn.send(&get_req("/big", &[]));
    assert_eq!(conn.read_response(false).body.len(), 200_000);
}

#[test]
fn malformed_and_oversized_heads_still_get_pingoras_answers() {
    let origin = start_origin();
    let p = start_proxy(&config(&origin.addr()));
    warm(p.port, "/a");
    let r = request(p.port, b"GARBAGE\r\n\r\n");
    assert_eq!(r.status, 400);
    let long = format!("/a?{}", "x".repeat(9000));
    let r = get(p.port, &long);
    assert_eq!(r.status, 414);
    let r = request(p.port, b"GET /a HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 400, "HTTP/1.1 without Host");
    let r = request(
        p.port,
        b"GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 400, "two Host fields");
}

#[test]
fn edge_hits_are_logged_and_counted() {
    let origin = start_origin();
    let p = start_proxy(&config(&origin.addr()));
    warm(p.port, "/a");
    let r = get_with(p.port, "/a", &[("X-Tag", "edge")]);
    assert_eq!(cache_status(&r), "HIT");
    let r = head_with(p.port, "/a", &[("X-Tag", "head")]);
    assert_eq!(cache_status(&r), "HIT");
    let lines = wait_lines(&p.path("access.log"), 4);
    assert_eq!(lines.len(), 4, "{lines:?}");
    let len = r.header("content-length").unwrap_or("?").to_string();
    assert_eq!(
        lines[0],
        format!("GET /a HTTP/1.1 200 {len} MISS 127.0.0.1 -")
    );
    assert_eq!(
        lines[2],
        format!("GET /a HTTP/1.1 200 {len} HIT 127.0.0.1 edge")
    );
    assert_eq!(lines[3], "HEAD /a HTTP/1.1 200 0 HIT 127.0.0.1 head");
    let m = get(p.port2, "/metrics").text();
    let hits = m
        .lines()
        .find(|l| l.starts_with("outrigger_cache_requests_total") && l.contains("\"HIT\""))
        .unwrap_or_else(|| panic!("no HIT counter:\n{m}"));
    assert!(hits.ends_with(" 3"), "{hits}");
}

/// `Connection: close` wins over `keep-alive` in the same request (RFC 9112 §9.6).
#[test]
fn close_wins_over_keep_alive() {
    let origin = start_origin();
    let p = start_proxy(&config(&origin.addr()));
    warm(p.port, "/a");
    let mut conn = Connection::connect(p.port);
    conn.send(&get_req("/a", &[("Connection", "close, keep-alive")]));
    let r = conn.read_response(false);
    assert_eq!(
        (cache_status(&r), r.header("connection")),
        ("HIT", Some("close"))
    );
    assert!(conn.is_closed_by_peer(Duration::from_secs(2)));
    let mut conn = Connection::connect(p.port);
    conn.send(&get_req(
        "/a",
        &[("Connection", "keep-alive"), ("Connection", "close")],
    ));
    let r = conn.read_response(false);
    assert_eq!(
        (cache_status(&r), r.header("connection")),
        ("HIT", Some("close"))
    );
    assert!(conn.is_closed_by_peer(Duration::from_secs(2)));
}

/// Header rules that touch the framing headers: the HIT is still framed correctly (the edge
/// leaves such responses to Pingora's session) and the connection stays coherent.
#[test]
fn rules_on_framing_headers_keep_responses_framed() {
    let origin = start_origin();
    let cfg = config(&origin.addr()).replace(
        "    add_header: {X-Proxy-Cache: $upstream_cache_status}\n",
        "    add_header: {X-Proxy-Cache: $upstream_cache_status, Connection: upgrade}\n    hide_header: [Content-Length]\n",
    );
    let p = start_proxy(&cfg);
    let first = get(p.port, "/a");
    assert_eq!((first.status, cache_status(&first)), (200, "MISS"));
    for _ in 0..2 {
        let mut conn = Connection::connect(p.port);
        conn.send(&get_req("/a", &[]));
        let r = conn.read_response(false);
        assert_eq!((r.status, cache_status(&r)), (200, "HIT"));
        assert_eq!(r.body, first.body);
        // without a length the body ends with the connection (Pingora's session still says
        // `keep-alive` in that case; the body is delimited by the close all the same)
        assert_eq!(r.header("content-length"), None);
        assert!(conn.is_closed_by_peer(Duration::from_secs(2)));
    }
}

/// SIGTERM while a slow request is in flight: an idle keep-alive connection is closed at
/// once (as Pingora closes its idle ones), the slow request completes.
#[test]
fn shutdown_closes_idle_keep_alive_connections() {
    let origin = start_origin();
    let mut p = start_proxy(&config(&origin.addr()));
    warm(p.port, "/a");
    let mut idle = Connection::connect(p.port);
    idle.send(&get_req("/a", &[]));
    assert_eq!(cache_status(&idle.read_response(false)), "HIT");
    let port = p.port;
    let slow = std::thread::spawn(move || {
        get_with(port, "/slow", &[("X-Origin-Sleep-Ms", "2000")]).status
    });
    std::thread::sleep(Duration::from_millis(300));
    p.signal(libc::SIGTERM);
    assert!(
        idle.is_closed_by_peer(Duration::from_millis(1000)),
        "idle keep-alive connection still open after SIGTERM"
    );
    assert_eq!(slow.join().expect("slow request"), 200);
    assert!(p
        .wait_exit(Duration::from_secs(5))
        .is_some_and(|s| s.success()));
}

/// A config reload reaches the edge at once: the next HIT on an open connection carries the
/// new header rules, from the same stored entry.
#[test]
fn hits_follow_a_reload_on_an_open_connection() {
    let origin = start_origin();
    let cfg = config(&origin.addr()).replace(
        "add_header: {X-Proxy-Cache: $upstream_cache_status}",
        "add_header: {X-Proxy-Cache: $upstream_cache_status, X-Marker: one}",
    );
    let cfg = format!("reload: {{watch: on, interval: 200ms}}\n{cfg}");
    let p = start_proxy(&cfg);
    let a = warm(p.port, "/a");
    assert_eq!(a.header("x-marker"), Some("one"));
    let mut conn = Connection::connect(p.port);
    conn.send(&get_req("/a", &[]));
    assert_eq!(conn.read_response(false).header("x-marker"), Some("one"));
    let text = std::fs::read_to_string(&p.config_path).expect("config");
    std::fs::write(
        &p.config_path,
        text.replace("X-Marker: one", "X-Marker: two"),
    )
    .expect("edit");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        conn.send(&get_req("/a", &[]));
        let r = conn.read_response(false);
        assert_eq!((cache_status(&r), r.body.clone()), ("HIT", a.body.clone()));
        if r.header("x-marker") == Some("two") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reload never reached the edge"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(origin.recorded().len(), 1, "the entry survived the reload");
}

/// Without a memory tier the edge parses nothing: it waits for each request and hands the
/// bytes to Pingora, on the same keep-alive connection, request after request.
#[test]
fn without_a_memory_tier_every_request_goes_to_pingora() {
    let origin = start_origin();
    let p = start_proxy(&config(&origin.addr()).replace("memory: 4m", "memory: 0"));
    let mut conn = Connection::connect(p.port);
    for (i, want) in ["MISS", "HIT", "HIT"].iter().enumerate() {
        conn.send(&get_req("/d", &[]));
        let r = conn.read_response(false);
        assert_eq!((r.status, cache_status(&r)), (200, *want), "request {i}");
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
    // a head split across writes is reassembled by Pingora from the edge's bytes
    let raw = get_req("/d", &[]);
    for part in raw.chunks(9) {
        conn.send(part);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(cache_status(&conn.read_response(false)), "HIT");
    assert_eq!(origin.recorded().len(), 1);
}

/// Revalidations (`If-None-Match`, `If-Modified-Since`) of a memory HIT get their 304 from the
/// edge, with Pingora's not-modified rules; a mismatch gets the whole entry; the connection
/// stays framed either way.
#[test]
fn conditional_hits_get_304_on_the_connection() {
    let origin = start_origin();
    let p = start_proxy(&config(&origin.addr()));
    let h = [
        ("X-Origin-Header", "ETag: \"v1\""),
        (
            "X-Origin-Header",
            "Last-Modified: Mon, 02 Nov 2026 10:00:00 GMT",
        ),
    ];
    let fill = get_with(p.port, "/c", &h);
    assert_eq!(cache_status(&fill), "MISS");
    assert_eq!(cache_status(&get(p.port, "/c")), "HIT");
    let mut conn = Connection::connect(p.port);
    let cases: [(&[(&str, &str)], u16); 6] = [
        (&[("If-None-Match", "\"v1\"")], 304),
        (&[("If-None-Match", "W/\"v1\", \"v0\"")], 304),
        (&[("If-None-Match", "\"v2\"")], 200),
        // If-None-Match wins over If-Modified-Since
        (
            &[
                ("If-None-Match", "\"v2\""),
                ("If-Modified-Since", "Tue, 03 Nov 2026 10:00:00 GMT"),
            ],
            200,
        ),
        (
            &[("If-Modified-Since", "Mon, 02 Nov 2026 10:00:00 GMT")],
            304,
        ),
        (
            &[("If-Modified-Since", "Sun, 01 Nov 2026 10:00:00 GMT")],
            200,
        ),
    ];
    for (headers, want) in cases {
        conn.send(&get_req("/c", headers));
        let r = conn.read_response(false);
        assert_eq!((r.status, cache_status(&r)), (want, "HIT"), "{headers:?}");
        if want == 304 {
            assert!(r.body.is_empty());
            assert_eq!(r.header("etag"), Some("\"v1\""));
            assert_eq!(r.header("content-length"), None);
            assert_eq!(r.header("content-type"), None);
        } else {
            assert_eq!(r.body, fill.body);
        }
    }
    assert_eq!(origin.recorded().len(), 1);
}
