//! Pipelining (RFC 9112 §9.3.2): requests sent back to back on one connection are answered in
//! order, whatever answers them (a memory HIT, a MISS, a POST, a static file, a 304, a HEAD),
//! whether they arrive in one write or a byte at a time, and bytes that arrive while a request
//! waits on its upstream are kept for the next request instead of failing the current one.

use crate::common::*;
use std::time::Duration;

fn config(origin: &str) -> String {
    format!(
        r#"listen: ["127.0.0.1:{{PORT}}"]
admin: {{listen: "127.0.0.1:{{PORT2}}"}}
caches: {{z: {{path: "{{DIR}}/cache", memory: 4m}}}}
upstreams: {{up: {{address: "{origin}"}}}}
locations:
  - prefix: /c/
    proxy_pass: http://up
    add_header: {{X-Proxy-Cache: $upstream_cache_status}}
    cache: {{zone: z, valid: {{"200": 1m}}}}
  - prefix: /p/
    proxy_pass: http://up
  - prefix: /s/
    root: "{{DIR}}/www"
"#
    )
}

fn start() -> (Origin, Proxy) {
    let origin = start_origin();
    let p = start_proxy_with(
        &config(&origin.addr()),
        &[("www/s/f.txt", b"static file\n")],
    );
    (origin, p)
}

/// One kind of request in the matrix: its bytes, and a check of its answer.
struct Step {
    raw: Vec<u8>,
    head: bool,
    check: fn(&Response),
}

fn keep(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut h = headers.to_vec();
    h.push(("Connection", "keep-alive"));
    build_request(method, path, &h, body)
}

fn echo_uri(r: &Response) -> String {
    r.json()["uri"].as_str().unwrap_or_default().to_string()
}

/// The matrix: a HIT, a MISS, a POST with a body, a static file, a 304 and a HEAD.
fn matrix(last_modified: &str) -> Vec<Step> {
    vec![
        Step {
            raw: keep("GET", "/c/warm", &[], b""),
            head: false,
            check: |r| {
                assert_eq!(r.status, 200);
                assert_eq!(r.header("x-proxy-cache"), Some("HIT"));
            },
        },
        Step {
            raw: keep("GET", "/p/miss?n=1", &[], b""),
            head: false,
            check: |r| {
                assert_eq!(r.status, 200);
                assert_eq!(echo_uri(r), "/p/miss?n=1");
            },
        },
        Step {
            raw: keep("POST", "/p/post", &[], b"hello=world"),
            head: false,
            check: |r| {
                assert_eq!(r.status, 200);
                assert_eq!(r.json()["body"], "hello=world");
            },
        },
        Step {
            raw: keep("GET", "/s/f.txt", &[], b""),
            head: false,
            check: |r| {
                assert_eq!(r.status, 200);
                assert_eq!(r.body, b"static file\n");
            },
        },
        Step {
            raw: keep(
                "GET",
                "/s/f.txt",
                &[("If-Modified-Since", last_modified)],
                b"",
            ),
            head: false,
            check: |r| assert_eq!(r.status, 304),
        },
        Step {
            raw: keep("HEAD", "/p/head", &[], b""),
            head: true,
            check: |r| {
                assert_eq!(r.status, 200);
                assert!(r.body.is_empty());
            },
        },
    ]
}

/// Every order in which each step is followed by each other one (and by itself), so that each
/// kind of request is pipelined behind each kind.
fn sequence(steps: &[Step]) -> Vec<&Step> {
    let mut seq = Vec::new();
    for a in steps {
        for b in steps {
            seq.push(a);
            seq.push(b);
        }
    }
    seq
}

fn warm(port: u16) -> String {
    assert_eq!(get(port, "/c/warm").status, 200);
    let hit = get(port, "/c/warm");
    assert_eq!(hit.header("x-proxy-cache"), Some("HIT"));
    let file = get(port, "/s/f.txt");
    file.header("last-modified")
        .expect("a static file has Last-Modified")
        .to_string()
}

fn read_all(conn: &mut Connection, seq: &[&Step]) {
    for (i, step) in seq.iter().enumerate() {
        let r = conn
            .try_read_response(step.head)
            .unwrap_or_else(|e| panic!("response {i} of {}: {e}", seq.len()));
        (step.check)(&r);
    }
}

/// Send the whole matrix on one connection, in writes of `piece` bytes, and check every answer
/// in order; then one more request on the same connection.
fn run_matrix(piece: usize) {
    let (_origin, p) = start();
    let lm = warm(p.port);
    let steps = matrix(&lm);
    let seq = sequence(&steps);
    let batch: Vec<u8> = seq.iter().flat_map(|s| s.raw.clone()).collect();
    let mut conn = Connection::connect(p.port);
    for part in batch.chunks(piece) {
        conn.send(part);
    }
    read_all(&mut conn, &seq);
    conn.send(&keep("GET", "/c/warm", &[], b""));
    assert_eq!(conn.read_response(false).status, 200);
    no_panic_in_logs(&p);
}

#[test]
fn the_matrix_in_one_write_is_answered_in_order() {
    run_matrix(usize::MAX);
}

#[test]
fn the_matrix_trickled_a_byte_at_a_time_is_answered_in_order() {
    run_matrix(1);
}

#[test]
fn a_request_sent_while_the_first_waits_on_its_upstream_is_answered_after_it() {
    let (origin, p) = start();
    for first in [
        keep("GET", "/p/slow", &[("X-Origin-Sleep-Ms", "600")], b""),
        keep(
            "POST",
            "/p/slow-post",
            &[("X-Origin-Sleep-Ms", "600")],
            b"a=1",
        ),
    ] {
        let mut conn = Connection::connect(p.port);
        conn.send(&first);
        std::thread::sleep(Duration::from_millis(200));
        conn.send(&keep("GET", "/p/second", &[], b""));
        let a = conn.read_response(false);
        assert_eq!(a.status, 200, "{}", a.text());
        assert!(echo_uri(&a).starts_with("/p/slow"));
        let b = conn.read_response(false);
        assert_eq!((b.status, echo_uri(&b).as_str()), (200, "/p/second"));
    }
    let seen: Vec<String> = origin
        .recorded()
        .iter()
        .map(|r| r["uri"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(seen.iter().filter(|u| *u == "/p/second").count(), 2);
    no_panic_in_logs(&p);
}

#[test]
fn a_lone_crlf_after_a_post_body_does_not_fail_the_post() {
    let (origin, p) = start();
    let mut conn = Connection::connect(p.port);
    let mut raw = keep("POST", "/p/crlf", &[("X-Origin-Sleep-Ms", "300")], b"x=1");
    conn.send(&raw);
    std::thread::sleep(Duration::from_millis(100));
    conn.send(b"\r\n");
    let r = conn.read_response(false);
    assert_eq!((r.status, r.json()["body"].as_str()), (200, Some("x=1")));
    // and the next request on the connection is answered
    raw = keep("GET", "/p/after", &[], b"");
    conn.send(&raw);
    let r = conn.read_response(false);
    assert_eq!((r.status, echo_uri(&r).as_str()), (200, "/p/after"));
    assert_eq!(origin.recorded().len(), 2);
}

#[test]
fn a_chunked_post_then_a_pipelined_get_reach_the_upstream_as_sent() {
    let (origin, p) = start();
    let mut raw = build_request(
        "POST",
        "/p/chunked",
        &[
            ("Transfer-Encoding", "chunked"),
            ("Connection", "keep-alive"),
        ],
        b"",
    );
    raw.extend(chunked_encode(&[b"abc", b"defgh"]));
    raw.extend(keep("GET", "/p/next", &[], b""));
    let mut conn = Connection::connect(p.port);
    conn.send(&raw);
    let a = conn.read_response(false);
    assert_eq!(
        (a.status, a.json()["body"].as_str()),
        (200, Some("abcdefgh"))
    );
    let b = conn.read_response(false);
    assert_eq!((b.status, echo_uri(&b).as_str()), (200, "/p/next"));
    assert_eq!(origin.recorded().len(), 2);
}
