//! `client_max_body_size` (NGINX's, default 1m, `0` = no limit, server and location): a body
//! declared over the limit is answered 413 before the upstream is contacted; a chunked body that
//! grows past it ends in 413 and its upstream request is aborted.

use crate::common::*;

fn proxy(origin: &Origin, server: &str, loc: &str) -> Proxy {
    start_proxy_with(
        &format!(
            "{QUIET}{server}error_pages: {{\"413\": /413.html}}\n\
             upstreams: {{app: {{address: \"{}\"}}}}\n\
             locations:\n  \
             - exact: /413.html\n    root: \"{{DIR}}/pages\"\n  \
             - prefix: /free/\n    proxy_pass: http://app\n    client_max_body_size: 0\n  \
             - prefix: /\n    proxy_pass: http://app\n{loc}",
            origin.addr()
        ),
        &[("pages/413.html", b"too big for us\n")],
    )
}

#[test]
fn declared_bodies_over_the_default_1m_get_413_before_the_upstream() {
    let origin = start_origin();
    let p = proxy(&origin, "", "");
    let exact = pattern_body(1 << 20);
    let r = send(p.port, "PUT", "/upload", &[], &exact);
    assert_eq!(r.status, 200, "exactly 1 MiB is allowed, as NGINX");
    assert_eq!(r.json()["body_len"], exact.len());
    let hits = origin.hit_count();

    let over = pattern_body((1 << 20) + 1);
    let r = send(p.port, "PUT", "/upload", &[], &over);
    assert_eq!(r.status, 413);
    assert_eq!(r.text(), "too big for us\n", "the configured error page");
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(origin.hit_count(), hits, "the upstream was contacted");

    // 0 lifts the limit
    let big = pattern_body(3 << 20);
    let r = send(p.port, "PUT", "/free/upload", &[], &big);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_len"], big.len());
    no_panic_in_logs(&p);
}

#[test]
fn server_and_location_limits() {
    let origin = start_origin();
    let p = proxy(
        &origin,
        "client_max_body_size: 10k\n",
        "    client_max_body_size: 20k\n",
    );
    assert_eq!(
        send(p.port, "POST", "/a", &[], &pattern_body(20 * 1024)).status,
        200
    );
    assert_eq!(
        send(p.port, "POST", "/a", &[], &pattern_body(20 * 1024 + 1)).status,
        413
    );
    let p = proxy(&origin, "client_max_body_size: 10k\n", "");
    assert_eq!(
        send(p.port, "POST", "/a", &[], &pattern_body(10 * 1024)).status,
        200
    );
    assert_eq!(
        send(p.port, "POST", "/a", &[], &pattern_body(10 * 1024 + 1)).status,
        413
    );
}

fn post_chunked(port: u16, pieces: &[&[u8]]) -> Response {
    let body = chunked_encode(pieces);
    send(
        port,
        "POST",
        "/upload",
        &[("Transfer-Encoding", "chunked")],
        &body,
    )
}

#[test]
fn a_chunked_body_growing_past_the_limit_ends_in_413() {
    let origin = start_origin();
    let p = proxy(&origin, "client_max_body_size: 64k\n", "");
    let piece = pattern_body(16 * 1024);
    let r = post_chunked(p.port, &[piece.as_slice(); 4]);
    assert_eq!(r.status, 200, "64 KiB chunked is within 64k");
    assert_eq!(r.json()["body_len"], 64 * 1024);

    let r = post_chunked(p.port, &[piece.as_slice(); 5]);
    assert_eq!(r.status, 413);
    let full = origin
        .recorded()
        .iter()
        .filter(|j| j["body_len"] == 80 * 1024)
        .count();
    assert_eq!(full, 0, "the upstream received the whole oversized body");
}

#[test]
fn a_bad_size_names_its_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "listen: [\"127.0.0.1:1\"]\nlocations:\n  - prefix: /\n    root: /tmp\n    client_max_body_size: lots\n",
    )
    .expect("write config");
    let out = run_outrigger(&["-t", "-c", path.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("locations[0].client_max_body_size"), "{err}");
    assert!(err.contains(":5:"), "{err}");
}
