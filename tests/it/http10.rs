//! HTTP/1.0 clients and upstreams: an answer of unknown length to an HTTP/1.0 client ends with
//! the connection, never chunked (RFC 9112 §6.1), and every answer's status line is HTTP/1.1
//! whatever the upstream spoke, as NGINX does.

use crate::common::*;
use std::io::Write;

fn config(origin: &str, compress: bool) -> String {
    let gzip = if compress {
        "    gzip: {enabled: on, min_length: 1, types: [text/plain], http_version: \"1.0\"}\n"
    } else {
        ""
    };
    format!(
        "{QUIET}upstreams: {{app: {{address: \"{origin}\"}}}}\n\
         locations:\n  - prefix: /\n    proxy_pass: http://app\n{gzip}"
    )
}

#[test]
fn an_http10_client_gets_a_close_delimited_body_not_chunks() {
    let origin = start_origin();
    for compress in [false, true] {
        let p = start_proxy(&config(&origin.addr(), compress));
        let mut headers = vec![("X-Origin-Chunks", "3")];
        if compress {
            headers.push(("Accept-Encoding", "gzip"));
        }
        let mut raw = b"GET /chunks HTTP/1.0\r\n".to_vec();
        for (n, v) in &headers {
            raw.extend(format!("{n}: {v}\r\n").as_bytes());
        }
        raw.extend(b"\r\n");
        let mut conn = Connection::connect(p.port);
        conn.send(&raw);
        let r = conn.read_response(false);
        assert_eq!(r.status, 200);
        assert_eq!(r.version, "HTTP/1.1");
        assert_eq!(r.header("transfer-encoding"), None, "compress: {compress}");
        assert_eq!(r.header("connection"), Some("close"));
        if !compress {
            assert_eq!(r.body, b"chunk-0\nchunk-1\nchunk-2\n");
        } else {
            assert_eq!(r.header("content-encoding"), Some("gzip"));
            assert!(!r.body.is_empty());
        }
        // the same request in HTTP/1.1 is chunked
        let r = get_with(p.port, "/chunks", &[("X-Origin-Chunks", "3")]);
        assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    }
}

#[test]
fn an_http10_upstream_is_answered_in_http11() {
    let port = start_raw_origin(|mut conn, _head| {
        let _ = conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
    });
    let p = start_proxy(&config(&format!("127.0.0.1:{port}"), false));
    let r = get(p.port, "/old");
    assert_eq!((r.status, r.body.as_slice()), (200, b"ok".as_slice()));
    assert_eq!(r.version, "HTTP/1.1");
}
