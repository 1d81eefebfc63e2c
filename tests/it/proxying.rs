//! Black-box tests of outrigger's reverse-proxy behaviour (NGINX semantics):
//! pass-through of requests and responses, `proxy_set_header`, response header
//! rules, proxy-produced errors and error pages, streaming, keep-alive and
//! upstream connection reuse, robustness against malformed requests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::common::*;

/// Contents of the configured `/50x.html` error page.
const PAGE_50X: &[u8] = b"<html><body>custom 50x page</body></html>\n";

/// Preamble plus `rest` (further server-level keys and `locations:`).
fn config(origin: u16, rest: &str) -> String {
    format!("{}{rest}", preamble(origin))
}

/// A printable, non-repeating-looking body of `n` bytes.
fn test_body(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            b' ' + ((x >> 16) % 95) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Pass-through of requests and responses
// ---------------------------------------------------------------------------

#[test]
fn get_is_proxied_with_status_headers_and_body() {
    let origin = start_origin();
    let proxy = simple_proxy(origin.port, "", "");

    let r = get_with(
        proxy.port,
        "/some/path?q=1&x=%20y",
        &[
            ("X-Origin-Status", "201"),
            ("X-Origin-Header", "X-Custom: hello"),
            ("X-Origin-Header", "Set-Cookie: a=1"),
            ("X-Origin-Header", "Set-Cookie: b=2"),
            ("X-Client", "abc"),
        ],
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("x-custom"), Some("hello"));
    assert_eq!(r.headers_all("set-cookie"), vec!["a=1", "b=2"]);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let j = r.json();
    assert_eq!(j["method"], "GET");
    assert_eq!(j["uri"], "/some/path?q=1&x=%20y");
    assert_eq!(seen_header(&j, "x-client").as_deref(), Some("abc"));
    assert_eq!(origin.hit_count(), 1);

    // A large body passes through byte-exact.
    let r = get_with(proxy.port, "/big", &[("X-Origin-Body-Size", "1048576")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_same_bytes(&r.body, &pattern_body(1 << 20), "1 MiB response body");
}

#[test]
fn server_header_is_outrigger_and_upstream_internal_headers_are_hidden() {
    let origin = start_origin();
    let proxy = simple_proxy(origin.port, "", "");
    let r = get_with(
        proxy.port,
        "/h",
        &[
            ("X-Origin-Header", "Server: origin-server/1.0"),
            ("X-Origin-Header", "X-Accel-Expires: 60"),
            ("X-Origin-Header", "X-Accel-Buffering: no"),
            ("X-Origin-Header", "X-Kept: yes"),
        ],
    );
    assert_eq!(r.status, 200);
    // NGINX hides the upstream's Server and sends its own.
    assert_eq!(r.headers_all("server"), vec!["outrigger"], "{r:?}");
    assert!(!r.has_header("x-accel-expires"), "{r:?}");
    assert!(!r.has_header("x-accel-buffering"), "{r:?}");
    assert_eq!(r.header("x-kept"), Some("yes"));
}

#[test]
fn methods_reach_origin() {
    let origin = start_origin();
    let proxy = simple_proxy(origin.port, "", "");
    for method in ["GET", "DELETE", "OPTIONS", "PATCH", "PROPFIND"] {
        let r = send(proxy.port, method, "/m?x=1", &[], b"");
        assert_eq!(r.status, 200, "{method}: {r:?}");
        assert_eq!(r.json()["method"], method);
        assert_eq!(r.json()["uri"], "/m?x=1");
    }
    assert_eq!(origin.hit_count(), 5);
}

#[test]
fn request_uri_is_passed_unchanged_without_uri_part() {
    // NGINX: `proxy_pass http://host:port` (no URI) sends the request URI as
    // the client sent it.
    let origin = start_origin();
    let proxy = simple_proxy(origin.port, "", "");
    for uri in ["/a//b/../c%20d?x=1&y", "/%7Efoo/b?q=%41"] {
        let r = get(proxy.port, uri);
        assert_eq!(r.status, 200, "{uri}: {r:?}");
        assert_eq!(r.json()["uri"], uri);
    }
}

#[test]
fn proxy_pass_with_uri_part_replaces_the_prefix() {
    let origin = start_origin();
    let proxy = start_proxy(&config(
        origin.port,
        "locations:\n  - prefix: /api/\n    proxy_pass: http://app/\n",
    ));
    for (sent, want) in [
        ("/api/x%20y?q=1", "/x%20y?q=1"),
        ("/api/a/../b//c?q=%41", "/b/c?q=%41"),
        ("/api/", "/"),
    ] {
        let r = get(proxy.port, sent);
        assert_eq!(r.status, 200, "{sent}: {r:?}");
        assert_eq!(r.json()["uri"], want, "{sent}");
    }
}

#[test]
fn head_is_proxied_without_body() {
    let origin = start_origin();
    let proxy = simple_proxy(origin.port, "", "");
    let mut conn = Connection::connect(proxy.port);
    conn.send(&build_request(
        "HEAD",
        "/h",
        &[("X-Origin-Body-Size", "100"), ("Connection", "keep-alive")],
        b"",
    ));
    let r = conn.read_response(true);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), Some("100"), "{r:?}");
    assert_eq!(origin.last_request().unwrap()["method"], "HEAD");
    // No stray body bytes: the next response on the connection parses.
    conn.send(&build_request("GET", "/after-head", &[], b""));
    let r = conn.read_response(false);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["uri"], "/after-head");
}

#[test]
fn post_and_put_bodies_with_content_length_are_byte_exact() {
    let origin = start_origin();
    let proxy = simple_proxy(origin.port, "", "");

    let small = b"hello=world&x=1";
    let r = send(
        proxy.port,
        "POST",
        "/form",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        small,
    );
    assert_eq!(r.status, 200, "{r:?}");
    let j = r.json();
    assert_eq!(j["method"], "POST");
    assert_eq!(j["body"], "hello=world&x=1");
    assert_eq!(j["body_len"], small.len());
    assert_eq!(
        seen_header(&j, "content-type").as_deref(),
        Some("application/x-www-form-urlencoded")
    );

    let big = test_body(1 << 20);
    let r = send(proxy.port, "PUT", "/upload", &[], &big);
    assert_eq!(r.status, 200, "status {} headers {:?}", r.status, r.headers);
    let j = r.json();
    assert_eq!(j["method"], "PUT");
    assert_eq!(j["body_len"], big.len());
    assert_same_bytes(
        j["body"].as_str().unwrap().as_bytes(),
        &big,
        "PUT body at origin",
    );

    // Empty POST body.
    let r = send(proxy.port, "POST", "/empty", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_len"], 0);
}

#[test]
fn chunked_request_body_is_byte_exact() {
    let origin = start_origin();
    let proxy = simple_proxy(origin.port, "", "");
    let big = test_body(1 << 20);
    let pieces: Vec<&[u8]> = vec![
        &big[..1],
        &big[1..101],
        &big[101..8293],
        &big[8293..73829],
        &big[73829..],
    ];
    let body = chunked_encode(&pieces);
    let r = send(
        proxy.port,
        "POST",
        "/chunked",
        &[("Transfer-Encoding", "chunked")],
        &body,
    );
    assert_eq!(r.status, 200, "status {} headers {:?}", r.status, r.headers);
    let j = r.json();
    assert_eq!(j["method"], "POST");
    assert_eq!(j["body_len"], big.len());
    assert_same_bytes(
        j["body"].as_str().unwrap().as_bytes(),
        &big,
        "chunked POST body at origin",
    );

    // A small chunked PUT too.
    let body = chunked_encode(&[b"abc", b"defgh", b"i"]);
    let r = send(
        proxy.port,
        "PUT",
        "/c2",
        &[("Transfer-Encoding", "chunked")],
        &body,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body"], "abcdefghi");
}

#[test]
fn origin_errors_pass_through_without_intercept_errors() {
    let origin = start_origin();
    let proxy = start_proxy_with(
        &config(
            origin.port,
            "error_pages: {\"404 500 502 503 504\": /50x.html}\n\
             locations:\n  \
               - exact: /50x.html\n    root: {DIR}/html\n  \
               - prefix: /\n    proxy_pass: http://app\n",
        ),
        &[("html/50x.html", PAGE_50X)],
    );
    for status in ["404", "500", "503"] {
        let r = get_with(
            proxy.port,
            "/err",
            &[
                ("X-Origin-Status", status),
                ("X-Origin-Header", "X-From-Origin: 1"),
            ],
        );
        assert_eq!(r.status.to_string(), status, "{r:?}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("x-from-origin"), Some("1"));
        assert_eq!(r.json()["uri"], "/err", "origin body must be preserved");
    }
}

// ---------------------------------------------------------------------------
// proxy_set_header
// ---------------------------------------------------------------------------

#[test]
fn host_from_server_level_proxy_set_header_drops_the_port() {
    let origin = start_origin();
    let proxy = simple_proxy(origin.port, "proxy_set_header: {Host: $host}\n", "");
    let r = get_with(proxy.port, "/h", &[("Host", "example.com:8080")]);
    assert_eq!(r.status, 200);
    assert_eq!(
        seen_header(&r.json(), "host").as_deref(),
        Some("example.com")
    );
    // $host is lowercase.
    let r = get_with(proxy.port, "/h", &[("Host", "Example.COM:8080")]);
    assert_eq!(
        seen_header(&r.json(), "host").as_deref(),
        Some("example.com")
    );
    let r = get_with(proxy.port, "/h", &[("Host", "plain.example")]);
    assert_eq!(
        seen_header(&r.json(), "host").as_deref(),
        Some("plain.example")
    );
}

#[test]
fn default_host_is_the_upstream_address() {
    let origin = start_origin();
    // Named upstream: the schema's $proxy_host is its `host:port`.
    let proxy = simple_proxy(origin.port, "", "");
    let r = get_with(proxy.port, "/h", &[("Host", "example.com:8080")]);
    assert_eq!(
        seen_header(&r.json(), "host"),
        Some(format!("127.0.0.1:{}", origin.port))
    );

    // Inline `host:port` in proxy_pass (NGINX: Host is that host:port).
    let inline = start_proxy(&format!(
        "{QUIET}locations:\n  - prefix: /\n    proxy_pass: http://127.0.0.1:{}\n",
        origin.port
    ));
    let r = get_with(inline.port, "/h", &[("Host", "example.com:8080")]);
    assert_eq!(r.status, 200);
    assert_eq!(
        seen_header(&r.json(), "host"),
        Some(format!("127.0.0.1:{}", origin.port))
    );
}

#[test]
fn location_proxy_set_header_replaces_the_server_list() {
    let origin = start_origin();
    let proxy = start_proxy(&config(
        origin.port,
        "proxy_set_header: {Host: $host, X-Server-Level: \"yes\"}\n\
         locations:\n  \
           - prefix: /own/\n    proxy_pass: http://app\n    proxy_set_header: {X-Loc: \"1\"}\n  \
           - prefix: /\n    proxy_pass: http://app\n",
    ));
    // Location without its own list inherits the server's.
    let r = get_with(proxy.port, "/inherit", &[("Host", "example.com:8080")]);
    let j = r.json();
    assert_eq!(seen_header(&j, "host").as_deref(), Some("example.com"));
    assert_eq!(seen_header(&j, "x-server-level").as_deref(), Some("yes"));
    assert_eq!(seen_header(&j, "x-loc"), None);

    // Location with its own list: nothing from the server level, Host falls
    // back to $proxy_host.
    let r = get_with(proxy.port, "/own/x", &[("Host", "example.com:8080")]);
    let j = r.json();
    assert_eq!(seen_header(&j, "x-loc").as_deref(), Some("1"));
    assert_eq!(seen_header(&j, "x-server-level"), None, "{j}");
    assert_eq!(
        seen_header(&j, "host"),
        Some(format!("127.0.0.1:{}", origin.port)),
        "{j}"
    );
}

#[test]
fn empty_proxy_set_header_value_removes_the_header() {
    let origin = start_origin();
    let proxy = simple_proxy(
        origin.port,
        "proxy_set_header: {Accept-Encoding: \"\", X-Absent: \"\"}\n",
        "",
    );
    let r = get_with(
        proxy.port,
        "/e",
        &[("Accept-Encoding", "gzip"), ("X-Other", "kept")],
    );
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(seen_header(&j, "accept-encoding"), None, "{j}");
    assert_eq!(seen_header(&j, "x-absent"), None, "{j}");
    assert_eq!(seen_header(&j, "x-other").as_deref(), Some("kept"));
}

#[test]
fn x_forwarded_for_and_x_real_ip() {
    let origin = start_origin();
    let proxy = simple_proxy(
        origin.port,
        "proxy_set_header: {X-Forwarded-For: $proxy_add_x_forwarded_for, X-Real-IP: $remote_addr}\n",
        "",
    );
    let r = get_with(proxy.port, "/x", &[("X-Forwarded-For", "10.0.0.1")]);
    let j = r.json();
    assert_eq!(
        seen_header(&j, "x-forwarded-for").as_deref(),
        Some("10.0.0.1, 127.0.0.1")
    );
    assert_eq!(seen_header(&j, "x-real-ip").as_deref(), Some("127.0.0.1"));

    let r = get(proxy.port, "/x");
    let j = r.json();
    assert_eq!(
        seen_header(&j, "x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    // Spoofed X-Real-IP is replaced.
    let r = get_with(proxy.port, "/x", &[("X-Real-IP", "6.6.6.6")]);
    assert_eq!(
        seen_header(&r.json(), "x-real-ip").as_deref(),
        Some("127.0.0.1")
    );
}

// ---------------------------------------------------------------------------
// Response header rules
// ---------------------------------------------------------------------------

#[test]
fn add_header_empty_variable_renders_nothing() {
    let origin = start_origin();
    let proxy = simple_proxy(
        origin.port,
        "",
        "    add_header: {X-Proxy-Cache: $upstream_cache_status, X-Static: hello}\n",
    );
    let r = get(proxy.port, "/a");
    assert_eq!(r.status, 200);
    assert!(!r.has_header("x-proxy-cache"), "{r:?}");
    assert_eq!(r.header("x-static"), Some("hello"));
}

#[test]
fn add_header_only_on_success_statuses_unless_always() {
    let origin = start_origin();
    let proxy = simple_proxy(
        origin.port,
        "",
        "    add_header: {X-Static: hello, X-Always: {value: \"yes\", always: on}}\n",
    );
    let with = [
        "200", "201", "204", "206", "301", "302", "303", "304", "307", "308",
    ];
    let without = ["202", "400", "403", "404", "410", "500", "502", "503"];
    for status in with.iter().chain(without.iter()) {
        let r = get_with(proxy.port, "/s", &[("X-Origin-Status", status)]);
        assert_eq!(r.status.to_string(), *status, "{r:?}");
        let expect_static = with.contains(status);
        assert_eq!(
            r.header("x-static"),
            expect_static.then_some("hello"),
            "status {status}: {r:?}"
        );
        assert_eq!(r.header("x-always"), Some("yes"), "status {status}: {r:?}");
    }
}

#[test]
fn add_header_always_applies_to_proxy_generated_errors() {
    // NGINX: for a 502 of its own, `add_header ... always` is sent, a plain
    // add_header is not.
    let dead = free_port();
    let proxy = simple_proxy(
        dead,
        "",
        "    add_header: {X-Static: hello, X-Always: {value: \"yes\", always: on}}\n",
    );
    let r = get(proxy.port, "/down");
    assert_eq!(r.status, 502, "{r:?}");
    assert!(!r.has_header("x-static"), "{r:?}");
    assert_eq!(r.header("x-always"), Some("yes"), "{r:?}");
}

#[test]
fn location_add_header_replaces_server_add_header() {
    let origin = start_origin();
    let proxy = start_proxy(&config(
        origin.port,
        "add_header: {X-Server: s}\n\
         locations:\n  \
           - prefix: /own/\n    proxy_pass: http://app\n    add_header: {X-Loc: l}\n  \
           - prefix: /\n    proxy_pass: http://app\n",
    ));
    let r = get(proxy.port, "/x");
    assert_eq!(r.header("x-server"), Some("s"), "{r:?}");
    assert!(!r.has_header("x-loc"));
    let r = get(proxy.port, "/own/x");
    assert_eq!(r.header("x-loc"), Some("l"), "{r:?}");
    assert!(!r.has_header("x-server"), "{r:?}");
}

#[test]
fn set_header_replaces_origin_cache_control() {
    let origin = start_origin();
    let proxy = simple_proxy(origin.port, "", "    set_header: {Cache-Control: public}\n");
    let r = get_with(
        proxy.port,
        "/page",
        &[("X-Origin-Header", "Cache-Control: no-store")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.headers_all("cache-control"), vec!["public"], "{r:?}");
    // Also when the origin sends none.
    let r = get(proxy.port, "/page");
    assert_eq!(r.headers_all("cache-control"), vec!["public"], "{r:?}");
}

fn assert_expires_in(r: &Response, secs: u64) {
    let exp = r
        .header("expires")
        .unwrap_or_else(|| panic!("no Expires header: {r:?}"));
    let t = httpdate::parse_http_date(exp).unwrap_or_else(|e| panic!("Expires {exp:?}: {e}"));
    let want = SystemTime::now() + Duration::from_secs(secs);
    let diff = match t.duration_since(want) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    assert!(
        diff < Duration::from_secs(60),
        "Expires {exp:?} not ~now+{secs}s"
    );
}

#[test]
fn expires_if_on_matching_paths_merges_with_set_header() {
    let origin = start_origin();
    let proxy = simple_proxy(
        origin.port,
        "",
        "    set_header: {Cache-Control: public}\n    \
             expires_if: {path: '\\.(?:js|css)$', expires: 90d}\n",
    );
    let no_store = [("X-Origin-Header", "Cache-Control: no-store")];

    for path in ["/static/app.js", "/app.js?v=3", "/s/site.css"] {
        let r = get_with(proxy.port, path, &no_store);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(
            r.headers_all("cache-control"),
            vec!["public, max-age=7776000"],
            "{path}: {r:?}"
        );
        assert_expires_in(&r, 7_776_000);
    }

    for path in ["/index.html", "/app.js/x", "/api/v1/alerts"] {
        let r = get_with(proxy.port, path, &no_store);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(
            r.headers_all("cache-control"),
            vec!["public"],
            "{path}: {r:?}"
        );
        assert!(!r.has_header("expires"), "{path}: {r:?}");
    }

    // `expires` only applies to the success statuses.
    let r = get_with(proxy.port, "/missing.js", &[("X-Origin-Status", "404")]);
    assert_eq!(r.status, 404);
    assert!(!r.has_header("expires"), "{r:?}");
}

#[test]
fn hide_header_removes_origin_header() {
    let origin = start_origin();
    let proxy = simple_proxy(origin.port, "", "    hide_header: [X-Secret]\n");
    let r = get_with(
        proxy.port,
        "/h",
        &[
            ("X-Origin-Header", "X-Secret: s3cr3t"),
            ("X-Origin-Header", "X-Public: p"),
        ],
    );
    assert_eq!(r.status, 200);
    assert!(!r.has_header("x-secret"), "{r:?}");
    assert_eq!(r.header("x-public"), Some("p"));
    // Also on an error status.
    let r = get_with(
        proxy.port,
        "/h",
        &[
            ("X-Origin-Status", "500"),
            ("X-Origin-Header", "X-Secret: s3cr3t"),
        ],
    );
    assert_eq!(r.status, 500);
    assert!(!r.has_header("x-secret"), "{r:?}");
}

// ---------------------------------------------------------------------------
// Proxy-produced errors, error pages, intercept_errors
// ---------------------------------------------------------------------------

fn error_page_proxy(origin: u16, read_timeout: &str) -> Proxy {
    start_proxy_with(
        &format!(
            "{}error_pages: {{\"500 502 503 504\": /50x.html}}\n\
             locations:\n  \
               - exact: /50x.html\n    root: {{DIR}}/html\n  \
               - prefix: /ic/\n    proxy_pass: http://app\n    intercept_errors: on\n  \
               - prefix: /\n    proxy_pass: http://app\n",
            preamble_read_timeout(origin, read_timeout)
        ),
        &[("html/50x.html", PAGE_50X)],
    )
}

#[test]
fn upstream_down_gives_502_with_builtin_page() {
    let dead = free_port();
    let proxy = simple_proxy(dead, "", "");
    let t = Instant::now();
    let r = get(proxy.port, "/x");
    assert_eq!(r.status, 502, "{r:?}");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(r.header("content-type"), Some("text/html"));
    let body = r.text();
    assert!(body.contains("502 Bad Gateway"), "{body}");
    assert!(body.contains("<center>outrigger</center>"), "{body}");
    // Still serving afterwards.
    assert_eq!(get(proxy.port, "/y").status, 502);
    no_panic_in_logs(&proxy);
}

#[test]
fn upstream_down_gives_502_with_configured_error_page() {
    let dead = free_port();
    let proxy = error_page_proxy(dead, "1s");
    let r = get(proxy.port, "/x");
    assert_eq!(r.status, 502, "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert_same_bytes(&r.body, PAGE_50X, "502 error page body");
    // The page itself is directly reachable with 200.
    let r = get(proxy.port, "/50x.html");
    assert_eq!(r.status, 200);
    assert_same_bytes(&r.body, PAGE_50X, "/50x.html");
}

#[test]
fn read_timeout_gives_504_with_builtin_page() {
    let origin = start_origin();
    let proxy = start_proxy(&format!(
        "{}locations:\n  - prefix: /\n    proxy_pass: http://app\n",
        preamble_read_timeout(origin.port, "1s")
    ));
    let t = Instant::now();
    let r = get_with(proxy.port, "/slow", &[("X-Origin-Sleep-Ms", "3000")]);
    let took = t.elapsed();
    assert_eq!(r.status, 504, "{r:?}");
    assert!(r.text().contains("504 Gateway Time"), "{}", r.text());
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2800),
        "504 after {took:?}, want ~1s (read_timeout)"
    );
    // Not retried.
    assert_eq!(origin.hit_count(), 1);
}

#[test]
fn read_timeout_gives_504_with_configured_error_page() {
    let origin = start_origin();
    let proxy = error_page_proxy(origin.port, "1s");
    let r = get_with(proxy.port, "/slow", &[("X-Origin-Sleep-Ms", "3000")]);
    assert_eq!(r.status, 504, "{r:?}");
    assert_same_bytes(&r.body, PAGE_50X, "504 error page body");
    // A fast request afterwards works.
    let r = get(proxy.port, "/fast");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["uri"], "/fast");
}

#[test]
fn intercept_errors_replaces_origin_error_with_page() {
    let origin = start_origin();
    let proxy = error_page_proxy(origin.port, "5s");

    // on: origin 503 -> the page, status kept.
    let r = get_with(proxy.port, "/ic/x", &[("X-Origin-Status", "503")]);
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/html"), "{r:?}");
    assert_same_bytes(&r.body, PAGE_50X, "intercepted 503 body");

    // on, 500 with a chunked origin body -> the page too.
    let r = get_with(
        proxy.port,
        "/ic/x",
        &[("X-Origin-Status", "500"), ("X-Origin-Chunks", "3")],
    );
    assert_eq!(r.status, 500, "{r:?}");
    assert_same_bytes(&r.body, PAGE_50X, "intercepted chunked 500 body");

    // on, but no page for 404 -> origin body.
    let r = get_with(proxy.port, "/ic/x", &[("X-Origin-Status", "404")]);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["uri"], "/ic/x");

    // on, 200 -> untouched.
    let r = get(proxy.port, "/ic/ok");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["uri"], "/ic/ok");

    // off: origin 503 body passes.
    let r = get_with(proxy.port, "/x", &[("X-Origin-Status", "503")]);
    assert_eq!(r.status, 503);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json()["uri"], "/x");
}

// ---------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------

/// Send `raw`, read the head, and return (status, headers, arrival time of
/// each complete `chunk-<i>\n` measured from just before sending, total).
fn chunk_arrivals(
    port: u16,
    raw: &[u8],
    n: usize,
) -> (u16, Vec<(String, String)>, Vec<Duration>, Duration) {
    let start = Instant::now();
    let mut s = open_stream(port, raw);
    let (status, headers) = s.read_head();
    let expected: Vec<u8> = (0..n).flat_map(|i| chunk_text(i).into_bytes()).collect();
    let ends: Vec<usize> = (0..n)
        .scan(0, |acc, i| {
            *acc += chunk_text(i).len();
            Some(*acc)
        })
        .collect();
    let mut got = Vec::new();
    let mut arrivals = Vec::new();
    while let Some(piece) = s.next_chunk() {
        got.extend_from_slice(&piece);
        let now = start.elapsed();
        while arrivals.len() < n && got.len() >= ends[arrivals.len()] {
            arrivals.push(now);
        }
    }
    let total = start.elapsed();
    assert_same_bytes(&got, &expected, "streamed body");
    (status, headers, arrivals, total)
}

fn assert_streamed(arrivals: &[Duration], total: Duration, delay_ms: u64) {
    let n = arrivals.len();
    let min_total = Duration::from_millis(delay_ms * (n as u64 - 1));
    assert!(
        total >= min_total - Duration::from_millis(100),
        "stream took {total:?}, expected >= {min_total:?}"
    );
    assert!(
        arrivals[0] < Duration::from_secs(1),
        "first chunk only after {:?} (arrivals {arrivals:?})",
        arrivals[0]
    );
    // Each chunk reaches the client soon after the origin sent it.
    for (i, a) in arrivals.iter().enumerate() {
        let sent = Duration::from_millis(delay_ms * i as u64);
        assert!(
            *a < sent + Duration::from_millis(700),
            "chunk {i} arrived at {a:?}, sent at ~{sent:?} (arrivals {arrivals:?})"
        );
    }
    assert!(
        arrivals[n - 1] - arrivals[0] >= min_total - Duration::from_millis(300),
        "chunks arrived together: {arrivals:?}"
    );
}

#[test]
fn buffering_off_streams_chunks_as_they_arrive() {
    let origin = start_origin();
    let proxy = simple_proxy(origin.port, "", "    buffering: off\n");
    let raw = build_request(
        "GET",
        "/stream",
        &[("X-Origin-Chunks", "5"), ("X-Origin-Chunk-Delay-Ms", "300")],
        b"",
    );
    let (status, _headers, arrivals, total) = chunk_arrivals(proxy.port, &raw, 5);
    assert_eq!(status, 200);
    assert!(total >= Duration::from_millis(1200), "total {total:?}");
    assert_streamed(&arrivals, total, 300);
}

#[test]
fn server_sent_events_stream() {
    let origin = start_origin();
    let proxy = simple_proxy(origin.port, "", "    buffering: off\n");
    let raw = build_request(
        "GET",
        "/events",
        &[
            ("Accept", "text/event-stream"),
            ("X-Origin-Content-Type", "text/event-stream"),
            ("X-Origin-Header", "Cache-Control: no-cache"),
            ("X-Origin-Chunks", "4"),
            ("X-Origin-Chunk-Delay-Ms", "400"),
        ],
        b"",
    );
    let (status, headers, arrivals, total) = chunk_arrivals(proxy.port, &raw, 4);
    assert_eq!(status, 200);
    let ct = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.as_str());
    assert_eq!(ct, Some("text/event-stream"), "{headers:?}");
    assert_streamed(&arrivals, total, 400);
}

#[test]
fn default_buffering_still_delivers_the_whole_stream() {
    let origin = start_origin();
    let proxy = simple_proxy(origin.port, "", "");
    let r = get_with(
        proxy.port,
        "/s",
        &[("X-Origin-Chunks", "5"), ("X-Origin-Chunk-Delay-Ms", "50")],
    );
    assert_eq!(r.status, 200);
    let want: String = (0..5).map(chunk_text).collect();
    assert_eq!(r.text(), want);
}

// ---------------------------------------------------------------------------
// Keep-alive and upstream connection reuse
// ---------------------------------------------------------------------------

#[test]
fn client_keepalive_serves_several_requests_on_one_connection() {
    let origin = start_origin();
    let proxy = simple_proxy(origin.port, "", "");
    let (a, b) = keepalive_pair(proxy.port, "/ka?n=1");
    assert_eq!(a.status, 200);
    assert_eq!(b.status, 200);
    assert_eq!(a.json()["uri"], "/ka?n=1");
    assert_eq!(b.json()["uri"], "/ka?n=1");

    let mut conn = Connection::connect(proxy.port);
    let ka = [("Connection", "keep-alive")];
    conn.send(&build_request("GET", "/one", &ka, b""));
    let r1 = conn.read_response(false);
    conn.send(&build_request("POST", "/two", &ka, b"payload"));
    let r2 = conn.read_response(false);
    conn.send(&build_request(
        "GET",
        "/three",
        &[("Connection", "keep-alive"), ("X-Origin-Status", "404")],
        b"",
    ));
    let r3 = conn.read_response(false);
    conn.send(&build_request("GET", "/four", &[], b""));
    let r4 = conn.read_response(false);
    assert_eq!(r1.json()["uri"], "/one");
    assert_eq!(r2.json()["body"], "payload");
    assert_eq!(r3.status, 404);
    assert_eq!(r3.json()["uri"], "/three");
    assert_eq!(r4.json()["uri"], "/four");
    assert!(conn.is_closed_by_peer(Duration::from_secs(2)));
    assert_eq!(origin.hit_count(), 6);
}

#[test]
fn client_connection_stays_open_after_upstream_errors() {
    // NGINX keeps the client connection alive after an upstream's own 500
    // and after its own 502 / 504 (it only closes after 400, 413, 414, 500
    // and 501 of its own).
    let origin = start_origin();
    let proxy = simple_proxy(origin.port, "", "");
    let mut conn = Connection::connect(proxy.port);
    conn.send(&build_request(
        "GET",
        "/e",
        &[("Connection", "keep-alive"), ("X-Origin-Status", "500")],
        b"",
    ));
    assert_eq!(conn.read_response(false).status, 500);
    conn.send(&build_request("GET", "/after-500", &[], b""));
    let r = conn
        .try_read_response(false)
        .unwrap_or_else(|e| panic!("connection not kept alive after origin 500: {e}"));
    assert_eq!(r.json()["uri"], "/after-500");

    // NGINX keeps the client connection after its own 502/504. Pingora 0.9 closes it after any
    // failed upstream attempt (`HttpProxy::finish` reuses the downstream only when the upstream
    // connection was reusable), so outrigger must at least announce the close.
    let dead = free_port();
    let down = simple_proxy(dead, "", "");
    let mut conn = Connection::connect(down.port);
    let ka = [("Connection", "keep-alive")];
    conn.send(&build_request("GET", "/a", &ka, b""));
    let r = conn.read_response(false);
    assert_eq!(r.status, 502);
    assert_eq!(
        r.header("connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("close"),
        "a 502 that closes the connection must say so: {r:?}"
    );
    assert!(
        conn.is_closed_by_peer(Duration::from_secs(2)),
        "connection announced as closed stays open"
    );
    // the client reconnects and gets the next answer
    assert_eq!(get(down.port, "/b").status, 502);
}

/// A minimal HTTP/1.1 keep-alive origin that counts TCP connections; every
/// response body is `conn-<connection number>`.
struct CountingOrigin {
    port: u16,
    conns: Arc<AtomicUsize>,
    reqs: Arc<AtomicUsize>,
}

fn start_counting_origin() -> CountingOrigin {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind counting origin");
    let port = listener.local_addr().unwrap().port();
    let conns = Arc::new(AtomicUsize::new(0));
    let reqs = Arc::new(AtomicUsize::new(0));
    let (c, r) = (conns.clone(), reqs.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let id = c.fetch_add(1, Ordering::SeqCst) + 1;
            let r = r.clone();
            std::thread::spawn(move || serve_counting(stream, id, &r));
        }
    });
    CountingOrigin { port, conns, reqs }
}

fn serve_counting(stream: TcpStream, id: usize, reqs: &AtomicUsize) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut content_length = 0usize;
        let mut close = false;
        let mut first = true;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = line.trim_end();
            if line.is_empty() {
                if first {
                    continue;
                }
                break;
            }
            first = false;
            if let Some((name, value)) = line.split_once(':') {
                let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
                if name == "content-length" {
                    content_length = value.parse().unwrap_or(0);
                } else if name == "connection" && value.eq_ignore_ascii_case("close") {
                    close = true;
                }
            }
        }
        let mut body = vec![0u8; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        reqs.fetch_add(1, Ordering::SeqCst);
        let payload = format!("conn-{id}");
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{payload}",
            payload.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if writer.write_all(resp.as_bytes()).is_err() || close {
            return;
        }
    }
}

#[test]
fn upstream_connections_are_reused() {
    let origin = start_counting_origin();
    let proxy = simple_proxy(origin.port, "", "");
    // Separate client connections, each closed by the client.
    for i in 0..6 {
        let r = get(proxy.port, &format!("/r{i}"));
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.text().starts_with("conn-"), "{}", r.text());
    }
    // And several requests on one keep-alive client connection.
    let mut conn = Connection::connect(proxy.port);
    for i in 0..4 {
        conn.send(&build_request(
            "GET",
            &format!("/k{i}"),
            &[("Connection", "keep-alive")],
            b"",
        ));
        assert_eq!(conn.read_response(false).status, 200);
    }
    assert_eq!(origin.reqs.load(Ordering::SeqCst), 10);
    let conns = origin.conns.load(Ordering::SeqCst);
    assert!(
        conns <= 2,
        "10 sequential requests used {conns} upstream connections (no keep-alive reuse)"
    );
}

// ---------------------------------------------------------------------------
// Robustness
// ---------------------------------------------------------------------------

/// What the server did with a malformed request.
#[derive(Debug)]
enum Outcome {
    Status(u16),
    /// Closed or reset without a (complete) response.
    Closed(String),
    /// Neither answered nor closed within 3 s.
    Hang(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Status(s) => write!(f, "status {s}"),
            Outcome::Closed(e) => write!(f, "closed ({e})"),
            Outcome::Hang(e) => write!(f, "hang ({e})"),
        }
    }
}

fn send_malformed(port: u16, raw: &[u8]) -> Outcome {
    let mut conn = Connection::connect(port);
    conn.set_timeout(Duration::from_secs(3));
    if let Err(e) = conn.try_send(raw) {
        return Outcome::Closed(format!("write failed: {e}"));
    }
    match conn.try_read_response(false) {
        Ok(r) => Outcome::Status(r.status),
        Err(e) if e.contains("timed out") => Outcome::Hang(e),
        Err(e) => Outcome::Closed(e),
    }
}

#[test]
fn malformed_requests_get_4xx_or_close_and_the_server_survives() {
    let origin = start_origin();
    let mut proxy = simple_proxy(origin.port, "", "");
    let mut huge = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 100 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    let mut many = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..2000 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage line", b"GARBAGE\r\n\r\n".to_vec()),
        ("method only", b"GET\r\n\r\n".to_vec()),
        ("binary", b"\x00\x01\x02\xff\xfe\r\n\r\n".to_vec()),
        ("bad protocol", b"GET / FOO/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("HTTP/9.9", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n".to_vec()),
        (
            "HTTP/2.0 over h1",
            b"GET / HTTP/2.0\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "header without colon",
            b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".to_vec(),
        ),
        (
            "bad content-length",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec(),
        ),
        (
            "bad chunk size",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n".to_vec(),
        ),
        ("100 KiB header", huge),
        ("2000 headers", many),
    ];
    let mut bad = Vec::new();
    for (name, raw) in &cases {
        let outcome = send_malformed(proxy.port, raw);
        eprintln!("{name}: {outcome}");
        // NGINX: 400 for all of these ("Request Header Or Cookie Too Large"
        // is a 400 too), 505 for an unsupported HTTP major version.
        let ok = match &outcome {
            Outcome::Status(s) => {
                (400..500).contains(s) || (name.starts_with("HTTP/") && *s == 505)
            }
            Outcome::Closed(_) => true,
            Outcome::Hang(_) => false,
        };
        if !ok {
            bad.push(format!("{name}: {outcome}"));
        }
        assert!(
            proxy.try_exit_status().is_none(),
            "outrigger exited after {name}:\n{}",
            proxy.logs()
        );
    }
    let r = get(proxy.port, "/after");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["uri"], "/after");
    no_panic_in_logs(&proxy);
    assert!(
        bad.is_empty(),
        "malformed requests not rejected with 4xx or a close:\n{}",
        bad.join("\n")
    );
}

#[test]
fn http11_request_without_host_is_400() {
    // RFC 9112 / NGINX: an HTTP/1.1 request without Host is a 400.
    let origin = start_origin();
    let proxy = simple_proxy(origin.port, "", "");
    let r = request(
        proxy.port,
        b"GET /nohost HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(origin.hit_count(), 0);
    // HTTP/1.0 without Host is fine.
    let r = request(proxy.port, b"GET /old HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["uri"], "/old");
}

#[test]
fn client_abort_mid_stream_does_not_hurt() {
    let origin = start_origin();
    let mut proxy = simple_proxy(origin.port, "", "    buffering: off\n");
    let raw = build_request(
        "GET",
        "/stream",
        &[("X-Origin-Chunks", "5"), ("X-Origin-Chunk-Delay-Ms", "200")],
        b"",
    );
    {
        let mut s = open_stream(proxy.port, &raw);
        s.read_head();
        assert_eq!(s.next_chunk().as_deref(), Some(chunk_text(0).as_bytes()));
        // Dropped here: the client goes away mid-stream.
    }
    std::thread::sleep(Duration::from_millis(1200));
    assert!(proxy.try_exit_status().is_none(), "{}", proxy.logs());
    let r = get(proxy.port, "/after");
    assert_eq!(r.status, 200);
    no_panic_in_logs(&proxy);
}

// ---------------------------------------------------------------------------
// Upstream appearing after start-up
// ---------------------------------------------------------------------------

#[test]
fn starts_without_upstream_then_recovers_when_it_appears() {
    let port = free_port();
    let proxy = simple_proxy(port, "", "");
    let r = get(proxy.port, "/first");
    assert_eq!(r.status, 502, "{r:?}");

    let origin = start_origin_on(port);
    let r = get(proxy.port, "/second");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["uri"], "/second");
    assert_eq!(origin.hit_count(), 1);
}

/// An HTTP/1.0 request may come without Host; `$host` then is `server_name` (NGINX), and the
/// upstream (spoken to in HTTP/1.1) always gets a Host.
#[test]
fn http10_without_host_gets_server_name_as_host() {
    let origin = start_origin();
    for (server_name, want) in [
        ("", "localhost"),
        ("server_name: sidecar.test\n", "sidecar.test"),
    ] {
        let proxy = start_proxy(&format!(
            "listen: [\"127.0.0.1:{{PORT}}\"]\n{server_name}proxy_set_header: {{Host: $host}}\n\
             upstreams: {{up: {{address: \"{}\"}}}}\nlocations:\n  - prefix: /\n    proxy_pass: http://up\n",
            origin.addr()
        ));
        let r = request(proxy.port, b"GET /h10 HTTP/1.0\r\n\r\n");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["headers"]["host"], want);
    }
    // without any proxy_set_header the default Host is the upstream address
    let proxy = start_proxy(&format!(
        "listen: [\"127.0.0.1:{{PORT}}\"]\nproxy_set_header: {{Host: \"\"}}\n\
         upstreams: {{up: {{address: \"{}\"}}}}\nlocations:\n  - prefix: /\n    proxy_pass: http://up\n",
        origin.addr()
    ));
    let r = request(proxy.port, b"GET /h10 HTTP/1.0\r\n\r\n");
    assert_eq!(r.json()["headers"]["host"], origin.addr().as_str());
}

/// Header rules may read the response being built (`$status`, `$sent_http_*`).
#[test]
fn add_header_reads_the_response() {
    let origin = start_origin();
    let proxy = start_proxy(&format!(
        "listen: [\"127.0.0.1:{{PORT}}\"]\nupstreams: {{up: {{address: \"{}\"}}}}\nlocations:\n  - prefix: /\n    proxy_pass: http://up\n    add_header: {{X-S: $status, X-T: $sent_http_content_type}}\n",
        origin.addr()
    ));
    let r = get(proxy.port, "/s");
    assert_eq!(r.header("x-s"), Some("200"));
    assert_eq!(r.header("x-t"), Some("application/json"));
}

/// A bare origin on a free port answering every request with `Content-Length: 200`: 100
/// bytes at once, the other 100 after `delay`.
fn trickling_origin(delay: Duration) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut buf = [0u8; 4096];
                let _ = std::io::Read::read(&mut conn, &mut buf);
                let head =
                    "HTTP/1.1 200 OK\r\nContent-Length: 200\r\nContent-Type: text/plain\r\n\r\n";
                let _ = std::io::Write::write_all(&mut conn, head.as_bytes());
                let _ = std::io::Write::write_all(&mut conn, &[b'a'; 100]);
                std::thread::sleep(delay);
                let _ = std::io::Write::write_all(&mut conn, &[b'b'; 100]);
            });
        }
    });
    port
}

/// Reads a response from `port` for `GET /`; returns when the first `n` body bytes arrived
/// and the whole body.
fn first_body_bytes_after(port: u16, n: usize) -> (Duration, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut first = None;
    let mut buf = [0u8; 4096];
    loop {
        let k = s.read(&mut buf).unwrap();
        if k == 0 {
            break;
        }
        got.extend_from_slice(&buf[..k]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            if first.is_none() && got.len() - (i + 4) >= n {
                first = Some(start.elapsed());
            }
        }
    }
    let i = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    (first.expect("body arrived"), got[i + 4..].to_vec())
}

#[test]
fn unbuffered_client_writes_pass_a_trickling_content_length_body_at_once() {
    let origin = trickling_origin(Duration::from_millis(1500));
    let mut want = vec![b'a'; 100];
    want.extend_from_slice(&[b'b'; 100]);

    // client_write_buffer: 0: the first 100 bytes leave as soon as they arrive, as NGINX
    // does with proxy_buffering off.
    let proxy = simple_proxy(origin, "client_write_buffer: 0\n", "    buffering: off\n");
    let (first, body) = first_body_bytes_after(proxy.port, 100);
    assert_eq!(body, want);
    assert!(
        first < Duration::from_millis(1000),
        "first bytes after {first:?}"
    );

    // The default 8 KiB buffer holds them until the response is complete (documented).
    let proxy = simple_proxy(origin, "", "    buffering: off\n");
    let (first, body) = first_body_bytes_after(proxy.port, 100);
    assert_eq!(body, want);
    assert!(
        first >= Duration::from_millis(1400),
        "first bytes after {first:?}"
    );
}

/// RFC 9110 §7.6.1: the fields of the upstream's own connection (`Keep-Alive`,
/// `Proxy-Connection`) are not passed on, neither fresh nor from the cache (disk or memory);
/// nor are those NGINX hides (`X-Accel-Charset`).
#[test]
fn upstream_connection_fields_are_not_passed_on() {
    let origin = start_origin();
    let p = simple_proxy(
        origin.port,
        "caches: {z: {path: \"{DIR}/cache\"}}\n",
        "    cache: {zone: z, valid: {\"200\": 1m}}\n",
    );
    let ask = [
        ("X-Origin-Header", "Keep-Alive: timeout=5, max=100"),
        ("X-Origin-Header", "Proxy-Connection: keep-alive"),
        ("X-Origin-Header", "X-Kept: yes"),
        ("X-Origin-Header", "X-Accel-Charset: utf-8"),
    ];
    for round in ["MISS", "disk HIT", "memory HIT"] {
        let r = get_with(p.port, "/hop", &ask);
        assert_eq!(r.status, 200, "{round}");
        assert_eq!(r.header("x-kept"), Some("yes"), "{round}");
        assert_eq!(r.header("keep-alive"), None, "{round}");
        assert_eq!(r.header("proxy-connection"), None, "{round}");
        assert_eq!(r.header("x-accel-charset"), None, "{round}");
    }
    assert_eq!(hits(&origin, "/hop"), 1);
}
