//! Heads NGINX accepts in another shape, and the connection limits NGINX users configure:
//! an absolute-form target (RFC 9112 §3.2.2: its authority is the host), header lines NGINX
//! ignores (`underscores_in_headers`, `ignore_invalid_headers`), `large_client_header_buffers`,
//! `keepalive_requests` and `keepalive_timeout`. Through both paths: a location with a memory
//! tier (HITs answered by the edge) and one without.

use crate::common::*;
use std::time::{Duration, Instant};

/// A proxy in front of a fresh origin, `extra` server keys first; `/c/` caches (in a memory
/// tier of `memory`), `/p/` does not. The origin sees `Host: $host`.
fn proxy(memory: &str, extra: &str) -> (Origin, Proxy) {
    let origin = start_origin();
    let yaml = format!(
        "{QUIET}{extra}caches: {{z: {{path: \"{{DIR}}/cache\", memory: {memory}}}}}\n\
         upstreams: {{app: {{address: \"{}\"}}}}\n\
         proxy_set_header: {{Host: $host}}\n\
         locations:\n  - prefix: /c/\n    proxy_pass: http://app\n    \
         add_header: {{X-Proxy-Cache: $upstream_cache_status, X-Host: $host}}\n    \
         cache: {{zone: z, valid: {{\"200\": 1m}}}}\n  \
         - prefix: /p/\n    proxy_pass: http://app\n",
        origin.addr()
    );
    let p = start_proxy(&yaml);
    (origin, p)
}

fn seen(r: &Response, header: &str) -> Option<String> {
    r.json()["headers"][header].as_str().map(str::to_string)
}

#[test]
fn an_absolute_form_target_is_served_with_its_authority_as_host() {
    for memory in ["4m", "0"] {
        let (origin, p) = proxy(memory, "");
        let r = request(
            p.port,
            b"GET http://other.example/p/echo?x=1 HTTP/1.1\r\nHost: ignored\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(r.status, 200, "memory {memory}: {}", r.text());
        assert_eq!(r.json()["uri"], "/p/echo?x=1");
        assert_eq!(seen(&r, "host").as_deref(), Some("other.example"));
        // a query without a path, and an https target, upper-case scheme
        let r = request(
            p.port,
            b"GET HTTPS://b.example:8443?q HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(r.status, 404, "no location for /?q");
        // the cached location: a MISS, then a HIT answered with the same host
        let raw =
            b"GET http://c.example/c/abs HTTP/1.1\r\nHost: c.example\r\nConnection: close\r\n\r\n";
        assert_eq!(request(p.port, raw).header("x-proxy-cache"), Some("MISS"));
        let hit = request(p.port, raw);
        assert_eq!(hit.header("x-proxy-cache"), Some("HIT"));
        assert_eq!(hit.header("x-host"), Some("c.example"));
        // HTTP/1.1 still needs a Host (NGINX, RFC 9112 §3.2), and userinfo is not a host
        let before = origin.hit_count();
        for raw in [
            b"GET http://other.example/p/x HTTP/1.1\r\n\r\n".as_slice(),
            b"GET http://u@other.example/p/x HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET http:///p/x HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(request(p.port, raw).status, 400, "{}", raw.escape_ascii());
        }
        assert_eq!(origin.hit_count(), before);
        no_panic_in_logs(&p);
    }
}

const ODD_NAMES: &[u8] = b"GET /p/names HTTP/1.1\r\nHost: a\r\nX_Under: 1\r\nX.Dot: 2\r\nX@At: 3\r\nX-Plain: 4\r\nConnection: close\r\n\r\n";

#[test]
fn header_names_nginx_ignores_do_not_reach_the_upstream() {
    for memory in ["4m", "0"] {
        let (_origin, p) = proxy(memory, "");
        let r = request(p.port, ODD_NAMES);
        assert_eq!(r.status, 200, "memory {memory}: {}", r.text());
        assert_eq!(seen(&r, "x-plain").as_deref(), Some("4"));
        for name in ["x_under", "x.dot", "x@at"] {
            assert_eq!(seen(&r, name), None, "{name} (memory {memory})");
        }
        // `Transfer_Encoding` is not a framing header, and not passed on either
        let raw = b"POST /p/te HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
        let r = request(p.port, raw);
        assert_eq!((r.status, r.json()["body"].as_str()), (200, Some("ok")));
        assert_eq!(seen(&r, "transfer_encoding"), None);
    }
}

#[test]
fn underscores_in_headers_and_ignore_invalid_headers_keep_them() {
    let (_origin, p) = proxy("4m", "underscores_in_headers: on\n");
    let r = request(p.port, ODD_NAMES);
    assert_eq!(seen(&r, "x_under").as_deref(), Some("1"));
    assert_eq!(seen(&r, "x.dot"), None);
    let (_origin, p) = proxy("4m", "ignore_invalid_headers: off\n");
    let r = request(p.port, ODD_NAMES);
    // NGINX passes them all; a name that is no HTTP token is refused (RFC 9110 §5.1)
    assert_eq!(r.status, 400);
    let raw =
        b"GET /p/names HTTP/1.1\r\nHost: a\r\nX_Under: 1\r\nX.Dot: 2\r\nConnection: close\r\n\r\n";
    let r = request(p.port, raw);
    assert_eq!(seen(&r, "x_under").as_deref(), Some("1"));
    assert_eq!(seen(&r, "x.dot").as_deref(), Some("2"));
}

#[test]
fn large_client_header_buffers_sets_the_head_limits() {
    for memory in ["4m", "0"] {
        let (origin, p) = proxy(memory, "large_client_header_buffers: 2 1k\n");
        let line = |n: usize| format!("X-F: {}\r\n", "f".repeat(n));
        let ok = format!(
            "GET /p/a HTTP/1.1\r\nHost: a\r\n{}Connection: close\r\n\r\n",
            line(900)
        );
        assert_eq!(request(p.port, ok.as_bytes()).status, 200);
        let long_line = format!("GET /p/a HTTP/1.1\r\nHost: a\r\n{}\r\n", line(1100));
        assert_eq!(request(p.port, long_line.as_bytes()).status, 400);
        let long_uri = format!("GET /p/{} HTTP/1.1\r\nHost: a\r\n\r\n", "u".repeat(1100));
        assert_eq!(request(p.port, long_uri.as_bytes()).status, 414);
        let long_head = format!(
            "GET /p/a HTTP/1.1\r\nHost: a\r\n{}{}{}\r\n",
            line(900),
            line(900),
            line(900)
        );
        assert_eq!(request(p.port, long_head.as_bytes()).status, 400);
        assert_eq!(origin.hit_count(), 1, "memory {memory}");
    }
}

#[test]
fn keepalive_requests_closes_the_connection_after_the_last() {
    for memory in ["4m", "0"] {
        let (_origin, p) = proxy(memory, "keepalive_requests: 3\n");
        let warm = b"GET /c/k HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
        request(p.port, warm);
        let mut conn = Connection::connect(p.port);
        for (i, path) in ["/c/k", "/p/k", "/c/k"].iter().enumerate() {
            conn.send(&build_request(
                "GET",
                path,
                &[("Connection", "keep-alive")],
                b"",
            ));
            let r = conn.read_response(false);
            assert_eq!(r.status, 200);
            let last = i == 2;
            assert_eq!(
                r.header("connection") == Some("close"),
                last,
                "response {i} (memory {memory})"
            );
        }
        assert!(conn.is_closed_by_peer(Duration::from_secs(3)));
    }
}

/// The response to a keep-alive `GET /p/t` on a new connection to a proxy with `extra`, and
/// the connection.
fn keep_alive_get(extra: &str) -> (Proxy, Connection, Response) {
    let (_origin, p) = proxy("4m", extra);
    let mut conn = Connection::connect(p.port);
    conn.send(&build_request(
        "GET",
        "/p/t",
        &[("Connection", "keep-alive")],
        b"",
    ));
    let r = conn.read_response(false);
    (p, conn, r)
}

#[test]
fn keepalive_timeout_closes_idle_connections() {
    let (_p, mut conn, r) = keep_alive_get("keepalive_timeout: 1s\n");
    assert_eq!(r.status, 200);
    let idle = Instant::now();
    assert!(conn.is_closed_by_peer(Duration::from_secs(5)));
    assert!(idle.elapsed() >= Duration::from_millis(900));
    // `keepalive_timeout: 0` closes after each request (NGINX)
    let (_p, _conn, r) = keep_alive_get("keepalive_timeout: 0s\n");
    assert_eq!(r.header("connection"), Some("close"));
}

#[test]
fn client_limit_keys_are_checked_at_load() {
    for (yaml, needle) in [
        (
            "large_client_header_buffers: 4\n",
            "large_client_header_buffers",
        ),
        ("large_client_header_buffers: 4 100\n", "at least 1k"),
        ("large_client_header_buffers: 64 64k\n", "at most 1m"),
        ("keepalive_requests: many\n", "keepalive_requests"),
        ("underscores_in_headers: maybe\n", "underscores_in_headers"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.yaml");
        let locations = "locations: [{prefix: /, root: /tmp}]\n";
        std::fs::write(
            &file,
            format!("listen: [\"127.0.0.1:1\"]\n{yaml}{locations}"),
        )
        .expect("write");
        let out = run_outrigger(&["-t", "-c", file.to_str().expect("utf-8")]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{yaml}");
        assert!(
            err.contains(needle) && err.contains("c.yaml:2:"),
            "{yaml}: {err}"
        );
    }
}
