//! Black-box tests of outrigger's response compression (NGINX `gzip*` semantics plus brotli
//! and zstd): Accept-Encoding negotiation with q-values and the server preference
//! zstd > br > gzip, the conditions under which a response is (not) compressed, the header
//! changes that go with it (Content-Encoding, Content-Length, Vary, weak ETag), the interplay
//! with the response cache (one stored variant per negotiated encoding), static files
//! (on the fly and precompressed siblings), streaming and HEAD.
//!
//! Every compressed body is decoded here and compared byte for byte with what the origin or
//! the file holds.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::common::*;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The User-Agent of Internet Explorer 6 (matched by `disable: 'MSIE [1-6]\.'`).
const MSIE6: &str = "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)";
/// The User-Agent of Internet Explorer 7 (not matched).
const MSIE7: &str = "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 6.0)";
/// The Accept-Encoding Chrome sends.
const CHROME_AE: &str = "gzip, deflate, br, zstd";

/// The server-level gzip block used by most tests (the shipped config's settings).
const GZIP: &str = "gzip:\n  \
     enabled: on\n  \
     min_length: 1k\n  \
     level: 2\n  \
     types: [text/plain, application/javascript, application/json]\n  \
     vary: on\n  \
     disable: 'MSIE [1-6]\\.'\n  \
     proxied: any\n";

/// gzip plus brotli and zstd.
const ALL_CODECS: &str = "brotli: {enabled: on, level: 4}\nzstd: {enabled: on, level: 3}\n";

/// Origin plus a proxy compressing with [`GZIP`] (and `extra` server-level keys).
fn setup(extra: &str) -> (Origin, Proxy) {
    let origin = start_origin();
    let proxy = simple_proxy(origin.port, &format!("{GZIP}{extra}"), "");
    (origin, proxy)
}

/// `GET path` asking the origin for `size` bytes of `text/plain` (unless `extra` overrides
/// the type), with the client headers `extra`.
fn fetch(port: u16, path: &str, size: usize, extra: &[(&str, &str)]) -> Response {
    let size = size.to_string();
    let mut headers = vec![("X-Origin-Body-Size", size.as_str())];
    headers.extend_from_slice(extra);
    get_with(port, path, &headers)
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("body is not valid gzip ({e}); {} bytes", data.len()));
    out
}

fn unbrotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(data, 4096)
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("body is not valid brotli ({e}); {} bytes", data.len()));
    out
}

fn unzstd(data: &[u8]) -> Vec<u8> {
    zstd::decode_all(data)
        .unwrap_or_else(|e| panic!("body is not valid zstd ({e}); {} bytes", data.len()))
}

/// Decode `data` according to the Content-Encoding token `enc`.
fn decode(enc: &str, data: &[u8]) -> Vec<u8> {
    match enc {
        "gzip" => gunzip(data),
        "br" => unbrotli(data),
        "zstd" => unzstd(data),
        other => panic!("unexpected Content-Encoding {other:?}"),
    }
}

fn gzip_bytes(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn brotli_bytes(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 9, 22);
        w.write_all(data).unwrap();
        w.flush().unwrap();
    }
    out
}

/// Whether some `Vary` header of `r` lists `Accept-Encoding`.
fn varies_on_ae(r: &Response) -> bool {
    r.headers_all("vary")
        .iter()
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("accept-encoding"))
}

/// Assert `r` is a 200 compressed with `enc` whose body decodes to `want`; returns the
/// (still compressed) body.
fn assert_compressed(r: &Response, enc: &str, want: &[u8], what: &str) -> Vec<u8> {
    assert_eq!(r.status, 200, "{what}: {:?}", r.headers);
    assert_eq!(
        r.headers_all("content-encoding"),
        vec![enc],
        "{what}: Content-Encoding; headers {:?}",
        r.headers
    );
    if let Some(cl) = r.header("content-length") {
        assert_eq!(
            cl,
            r.body.len().to_string(),
            "{what}: Content-Length must be the compressed length"
        );
    }
    assert_same_bytes(
        &decode(enc, &r.body),
        want,
        &format!("{what}: decoded body"),
    );
    r.body.clone()
}

/// Assert `r` is an uncompressed 200 whose body is exactly `want`.
fn assert_identity(r: &Response, want: &[u8], what: &str) {
    assert_eq!(r.status, 200, "{what}: {:?}", r.headers);
    assert!(
        !r.has_header("content-encoding"),
        "{what}: expected no Content-Encoding; headers {:?}",
        r.headers
    );
    if let Some(cl) = r.header("content-length") {
        assert_eq!(cl, want.len().to_string(), "{what}: Content-Length");
    }
    assert_same_bytes(&r.body, want, &format!("{what}: body"));
}

// ---------------------------------------------------------------------------
// 1. gzip of a listed type
// ---------------------------------------------------------------------------

#[test]
fn gzip_compresses_listed_type_and_asks_origin_for_identity() {
    let (origin, proxy) = setup("");
    let r = fetch(
        proxy.port,
        "/text",
        4096,
        &[("Accept-Encoding", "gzip"), ("X-Client", "c1")],
    );
    let body = assert_compressed(&r, "gzip", &pattern_body(4096), "gzip 4 KiB text/plain");
    assert!(
        body.len() < 4096 / 4,
        "a 4 KiB repetitive body should shrink a lot, got {} bytes",
        body.len()
    );
    assert!(
        varies_on_ae(&r),
        "Vary: Accept-Encoding expected: {:?}",
        r.headers
    );
    assert_eq!(r.header("content-type"), Some("text/plain"));

    let rec = origin.recorded();
    assert_eq!(rec.len(), 1, "origin hit once");
    assert_eq!(seen_header(&rec[0], "x-client").as_deref(), Some("c1"));
    assert_eq!(
        seen_header(&rec[0], "accept-encoding"),
        None,
        "outrigger compresses itself and must ask the origin for identity: {}",
        rec[0]
    );

    // application/json (the echo itself) is listed too.
    let r = get_with(
        proxy.port,
        "/json?pad=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        &[("Accept-Encoding", "gzip"), ("X-Pad", &"p".repeat(1500))],
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-encoding"),
        Some("gzip"),
        "{:?}",
        r.headers
    );
    let json: serde_json::Value = serde_json::from_slice(&gunzip(&r.body)).expect("json");
    assert_eq!(json["method"], "GET");
    assert_eq!(seen_header(&json, "accept-encoding"), None, "{json}");
    no_panic_in_logs(&proxy);
}

// ---------------------------------------------------------------------------
// 2. Accept-Encoding negotiation
// ---------------------------------------------------------------------------

#[test]
fn q_values_with_gzip_only() {
    let (_origin, proxy) = setup("");
    let want = pattern_body(4096);
    let cases: &[(&str, Option<&str>)] = &[
        ("gzip", Some("gzip")),
        ("gzip;q=0", None),
        ("gzip; q=0.0", None),
        ("*;q=0.5", Some("gzip")),
        ("*", Some("gzip")),
        ("*;q=0.5, gzip;q=0", None),
        ("identity", None),
        ("deflate", None),
        ("br, zstd", None),
        ("x-gzip", Some("gzip")),
        ("GZIP", Some("gzip")),
        (CHROME_AE, Some("gzip")),
        ("gzip;q=0.1, identity;q=1", Some("gzip")),
    ];
    for (ae, expect) in cases {
        let r = fetch(proxy.port, "/q", 4096, &[("Accept-Encoding", ae)]);
        let what = format!("Accept-Encoding: {ae}");
        match expect {
            Some(enc) => {
                assert_compressed(&r, enc, &want, &what);
            }
            None => assert_identity(&r, &want, &what),
        }
    }
}

#[test]
fn server_prefers_zstd_then_br_then_gzip() {
    let (_origin, proxy) = setup(ALL_CODECS);
    let want = pattern_body(8000);
    let cases: &[(&str, Option<&str>)] = &[
        (CHROME_AE, Some("zstd")),
        ("gzip, deflate, br", Some("br")),
        ("br, gzip", Some("br")),
        ("gzip", Some("gzip")),
        ("zstd", Some("zstd")),
        ("br", Some("br")),
        // the client's q-values decide acceptability, the server's preference the choice
        ("gzip;q=1, br;q=0.5, zstd;q=0.1", Some("zstd")),
        ("gzip, br;q=0, zstd;q=0", Some("gzip")),
        ("*", Some("zstd")),
        ("*;q=0.5, zstd;q=0", Some("br")),
        ("*;q=0.5, zstd;q=0, br;q=0", Some("gzip")),
        ("identity", None),
        ("*;q=0", None),
    ];
    for (ae, expect) in cases {
        let r = fetch(proxy.port, "/pref", 8000, &[("Accept-Encoding", ae)]);
        let what = format!("Accept-Encoding: {ae}");
        match expect {
            Some(enc) => {
                assert_compressed(&r, enc, &want, &what);
            }
            None => assert_identity(&r, &want, &what),
        }
    }
}

// ---------------------------------------------------------------------------
// 3. Responses that are not compressed
// ---------------------------------------------------------------------------

#[test]
fn body_below_min_length_is_not_compressed() {
    let (_origin, proxy) = setup("");
    let r = fetch(proxy.port, "/small", 1000, &[("Accept-Encoding", "gzip")]);
    assert_identity(&r, &pattern_body(1000), "1000 bytes < min_length 1k");
    assert_eq!(r.header("content-length"), Some("1000"));
    // exactly min_length is compressed (NGINX: length >= gzip_min_length)
    let r = fetch(proxy.port, "/edge", 1024, &[("Accept-Encoding", "gzip")]);
    assert_compressed(&r, "gzip", &pattern_body(1024), "1024 bytes == min_length");
}

#[test]
fn default_min_length_is_20_bytes() {
    let origin = start_origin();
    let proxy = simple_proxy(
        origin.port,
        "gzip: {enabled: on, types: [text/plain]}\n",
        "",
    );
    let r = fetch(proxy.port, "/a", 19, &[("Accept-Encoding", "gzip")]);
    assert_identity(&r, &pattern_body(19), "19 bytes");
    let r = fetch(proxy.port, "/b", 20, &[("Accept-Encoding", "gzip")]);
    assert_compressed(&r, "gzip", &pattern_body(20), "20 bytes");
    // vary defaults to off (NGINX gzip_vary off)
    assert!(!varies_on_ae(&r), "{:?}", r.headers);
}

#[test]
fn unlisted_type_is_not_compressed_but_text_html_always_is() {
    let (_origin, proxy) = setup("");
    let want = pattern_body(4096);
    let r = fetch(
        proxy.port,
        "/img",
        4096,
        &[
            ("Accept-Encoding", "gzip"),
            ("X-Origin-Content-Type", "image/png"),
        ],
    );
    assert_identity(&r, &want, "image/png is not in types");
    assert!(
        !varies_on_ae(&r),
        "an uncompressible type gets no Vary: {:?}",
        r.headers
    );

    let r = fetch(
        proxy.port,
        "/page",
        4096,
        &[
            ("Accept-Encoding", "gzip"),
            ("X-Origin-Content-Type", "text/html; charset=utf-8"),
        ],
    );
    assert_compressed(
        &r,
        "gzip",
        &want,
        "text/html (not listed, always compressible)",
    );
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));

    // media type parameters and case do not hide a listed type
    let r = fetch(
        proxy.port,
        "/plain",
        4096,
        &[
            ("Accept-Encoding", "gzip"),
            ("X-Origin-Content-Type", "Text/Plain; charset=UTF-8"),
        ],
    );
    assert_compressed(&r, "gzip", &want, "Text/Plain; charset=UTF-8");
}

#[test]
fn wildcard_types_compress_anything() {
    let origin = start_origin();
    let proxy = simple_proxy(
        origin.port,
        "gzip: {enabled: on, min_length: 1k, types: [\"*\"]}\n",
        "",
    );
    let r = fetch(
        proxy.port,
        "/img",
        4096,
        &[
            ("Accept-Encoding", "gzip"),
            ("X-Origin-Content-Type", "image/png"),
        ],
    );
    assert_compressed(&r, "gzip", &pattern_body(4096), "types: [*] and image/png");
}

#[test]
fn already_encoded_response_passes_through_untouched() {
    let (origin, proxy) = setup(ALL_CODECS);
    // The origin claims gzip; the bytes are whatever it sends. outrigger must neither
    // compress again nor touch them.
    for (ce, ae) in [
        ("gzip", "gzip"),
        ("br", "gzip, br, zstd"),
        ("deflate", "gzip"),
    ] {
        let r = fetch(
            proxy.port,
            "/enc",
            4096,
            &[
                ("Accept-Encoding", ae),
                ("X-Origin-Header", &format!("Content-Encoding: {ce}")),
            ],
        );
        assert_eq!(r.status, 200);
        assert_eq!(
            r.headers_all("content-encoding"),
            vec![ce],
            "origin's Content-Encoding kept, not doubled: {:?}",
            r.headers
        );
        assert_same_bytes(&r.body, &pattern_body(4096), "already encoded body");
        if let Some(cl) = r.header("content-length") {
            assert_eq!(cl, "4096");
        }
    }
    // Even so, outrigger asked the origin for identity (the client's header is not forwarded).
    for rec in origin.recorded() {
        assert_eq!(seen_header(&rec, "accept-encoding"), None, "{rec}");
    }
}

#[test]
fn no_body_statuses_are_not_compressed() {
    let (_origin, proxy) = setup("");
    for status in ["204", "304"] {
        let r = get_with(
            proxy.port,
            "/nobody",
            &[
                ("Accept-Encoding", "gzip"),
                ("X-Origin-Status", status),
                ("X-Origin-Header", "Content-Type: text/plain"),
                ("X-Origin-Header", "ETag: \"v1\""),
            ],
        );
        assert_eq!(r.status.to_string(), status, "{:?}", r.headers);
        assert!(
            !r.has_header("content-encoding"),
            "{status} must not get Content-Encoding: {:?}",
            r.headers
        );
        assert!(r.body.is_empty());
        assert!(
            !r.has_header("transfer-encoding"),
            "{status} must not be framed: {:?}",
            r.headers
        );
        assert_eq!(
            r.header("etag"),
            Some("\"v1\""),
            "{status}: ETag of an uncompressed response stays strong"
        );
    }
    no_panic_in_logs(&proxy);
}

#[test]
fn origin_partial_content_is_not_compressed() {
    let (_origin, proxy) = setup("");
    let r = fetch(
        proxy.port,
        "/partial",
        4096,
        &[
            ("Accept-Encoding", "gzip"),
            ("X-Origin-Status", "206"),
            ("X-Origin-Header", "Content-Range: bytes 0-4095/10000"),
        ],
    );
    assert_eq!(r.status, 206);
    assert!(!r.has_header("content-encoding"), "{:?}", r.headers);
    assert_same_bytes(&r.body, &pattern_body(4096), "206 body");
}

#[test]
fn cache_control_no_transform_is_respected() {
    let (_origin, proxy) = setup("");
    for cc in ["no-transform", "public, max-age=60, no-transform"] {
        let r = fetch(
            proxy.port,
            "/nt",
            4096,
            &[
                ("Accept-Encoding", "gzip"),
                ("X-Origin-Header", &format!("Cache-Control: {cc}")),
            ],
        );
        assert_identity(&r, &pattern_body(4096), &format!("Cache-Control: {cc}"));
    }
}

#[test]
fn disabled_user_agents_get_identity() {
    let (_origin, proxy) = setup("");
    let want = pattern_body(4096);
    let r = fetch(
        proxy.port,
        "/ua",
        4096,
        &[("Accept-Encoding", "gzip, deflate"), ("User-Agent", MSIE6)],
    );
    assert_identity(&r, &want, "MSIE 6");
    let r = fetch(
        proxy.port,
        "/ua",
        4096,
        &[("Accept-Encoding", "gzip, deflate"), ("User-Agent", MSIE7)],
    );
    assert_compressed(&r, "gzip", &want, "MSIE 7");
}

#[test]
fn proxied_off_skips_requests_with_via() {
    let origin = start_origin();
    let proxy = simple_proxy(
        origin.port,
        "gzip: {enabled: on, min_length: 1k, types: [text/plain], proxied: off}\n",
        "",
    );
    let want = pattern_body(4096);
    let r = fetch(
        proxy.port,
        "/via",
        4096,
        &[("Accept-Encoding", "gzip"), ("Via", "1.1 cdn.example")],
    );
    assert_identity(&r, &want, "proxied: off with Via");
    let r = fetch(proxy.port, "/via", 4096, &[("Accept-Encoding", "gzip")]);
    assert_compressed(&r, "gzip", &want, "proxied: off without Via");

    // proxied: any (the GZIP block) compresses with Via
    let (_origin2, proxy2) = setup("");
    let r = fetch(
        proxy2.port,
        "/via",
        4096,
        &[("Accept-Encoding", "gzip"), ("Via", "1.1 cdn.example")],
    );
    assert_compressed(&r, "gzip", &want, "proxied: any with Via");
}

// ---------------------------------------------------------------------------
// 4. Vary
// ---------------------------------------------------------------------------

#[test]
fn vary_on_is_sent_on_uncompressed_compressible_responses() {
    let (_origin, proxy) = setup("");
    let want = pattern_body(4096);
    // no Accept-Encoding at all
    let r = fetch(proxy.port, "/v", 4096, &[]);
    assert_identity(&r, &want, "no Accept-Encoding");
    assert!(
        varies_on_ae(&r),
        "vary on: an uncompressed response of a compressible type must carry \
         Vary: Accept-Encoding (shared caches must not hand it to gzip clients or \
         vice versa): {:?}",
        r.headers
    );
    // refusing gzip
    let r = fetch(proxy.port, "/v", 4096, &[("Accept-Encoding", "identity")]);
    assert_identity(&r, &want, "identity");
    assert!(varies_on_ae(&r), "{:?}", r.headers);

    // the origin's own Vary is kept, Accept-Encoding appended (once)
    let r = fetch(
        proxy.port,
        "/v",
        4096,
        &[
            ("Accept-Encoding", "gzip"),
            ("X-Origin-Header", "Vary: Accept-Language"),
        ],
    );
    assert_compressed(&r, "gzip", &want, "origin Vary");
    let tokens: Vec<String> = r
        .headers_all("vary")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    assert!(
        tokens.contains(&"accept-language".to_string()),
        "{tokens:?}"
    );
    assert_eq!(
        tokens.iter().filter(|t| *t == "accept-encoding").count(),
        1,
        "{tokens:?}"
    );

    // the origin already varies on Accept-Encoding: not duplicated
    let r = fetch(
        proxy.port,
        "/v",
        4096,
        &[
            ("Accept-Encoding", "gzip"),
            ("X-Origin-Header", "Vary: Accept-Encoding"),
        ],
    );
    assert_compressed(&r, "gzip", &want, "origin Vary: Accept-Encoding");
    let n = r
        .headers_all("vary")
        .iter()
        .flat_map(|v| v.split(','))
        .filter(|t| t.trim().eq_ignore_ascii_case("accept-encoding"))
        .count();
    assert_eq!(n, 1, "{:?}", r.headers);
}

#[test]
fn vary_off_adds_no_vary() {
    let origin = start_origin();
    let proxy = simple_proxy(
        origin.port,
        "gzip: {enabled: on, min_length: 1k, types: [text/plain], vary: off}\n",
        "",
    );
    let want = pattern_body(4096);
    let r = fetch(proxy.port, "/v", 4096, &[("Accept-Encoding", "gzip")]);
    assert_compressed(&r, "gzip", &want, "vary off, gzip client");
    assert!(!r.has_header("vary"), "{:?}", r.headers);
    let r = fetch(proxy.port, "/v", 4096, &[]);
    assert_identity(&r, &want, "vary off, no Accept-Encoding");
    assert!(!r.has_header("vary"), "{:?}", r.headers);
}

// ---------------------------------------------------------------------------
// 5. ETag
// ---------------------------------------------------------------------------

#[test]
fn strong_etag_is_weakened_only_when_compressed() {
    let (_origin, proxy) = setup(ALL_CODECS);
    let etag = ("X-Origin-Header", "ETag: \"abc123\"");
    for ae in ["gzip", "br", "zstd"] {
        let r = fetch(proxy.port, "/e", 4096, &[("Accept-Encoding", ae), etag]);
        assert_eq!(r.header("content-encoding"), Some(ae));
        assert_eq!(r.headers_all("etag"), vec!["W/\"abc123\""], "{ae}");
    }
    let r = fetch(proxy.port, "/e", 4096, &[etag]);
    assert_identity(&r, &pattern_body(4096), "no Accept-Encoding");
    assert_eq!(r.header("etag"), Some("\"abc123\""));
    // too small to compress: strong
    let r = fetch(proxy.port, "/e", 100, &[("Accept-Encoding", "gzip"), etag]);
    assert_identity(&r, &pattern_body(100), "small");
    assert_eq!(r.header("etag"), Some("\"abc123\""));
    // an ETag that is already weak is kept as is (not W/W/)
    let r = fetch(
        proxy.port,
        "/e",
        4096,
        &[
            ("Accept-Encoding", "gzip"),
            ("X-Origin-Header", "ETag: W/\"weak1\""),
        ],
    );
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.headers_all("etag"), vec!["W/\"weak1\""]);
}

// ---------------------------------------------------------------------------
// 6. Response cache
// ---------------------------------------------------------------------------

/// A proxy with a cache zone in the temp dir, gzip + brotli + zstd, `vary` as given.
fn cached_proxy(origin: u16, vary: bool) -> Proxy {
    cached_proxy_opts(origin, vary, "")
}

/// Like [`cached_proxy`] with `cache_extra` appended to the `cache:` mapping (indented by 6).
fn cached_proxy_opts(origin: u16, vary: bool, cache_extra: &str) -> Proxy {
    let vary = if vary { "on" } else { "off" };
    simple_proxy(
        origin,
        &format!(
            "gzip: {{enabled: on, min_length: 1k, level: 2, types: [text/plain], vary: {vary}}}\n\
             {ALL_CODECS}\
             caches:\n  z: {{path: \"{{DIR}}/cache\", levels: \"1:2\", inactive: 10m}}\n"
        ),
        &format!(
            "    add_header: {{X-Proxy-Cache: $upstream_cache_status}}\n    \
             cache:\n      zone: z\n      valid: {{\"200\": 10m}}\n{cache_extra}"
        ),
    )
}

/// The sequence of the brief: gzip MISS/HIT, identity MISS/HIT, zstd MISS/HIT, gzip HIT.
fn cache_variants_sequence(vary: bool, cache_extra: &str) {
    let origin = start_origin();
    let proxy = cached_proxy_opts(origin.port, vary, cache_extra);
    let want = pattern_body(8192);
    let path = "/cached/asset.txt";
    let gz = [("Accept-Encoding", "gzip")];

    let r = fetch(proxy.port, path, 8192, &gz);
    let first = assert_compressed(&r, "gzip", &want, "gzip #1");
    assert_eq!(cache_status(&r), "MISS", "{:?}", r.headers);
    assert_eq!(origin.hit_count(), 1);

    let r = fetch(proxy.port, path, 8192, &gz);
    let second = assert_compressed(&r, "gzip", &want, "gzip #2");
    assert_eq!(cache_status(&r), "HIT", "{:?}", r.headers);
    assert_same_bytes(&second, &first, "gzip HIT serves the stored gzip bytes");
    assert_eq!(origin.hit_count(), 1, "gzip HIT must not reach the origin");

    // a client without Accept-Encoding: its own (identity) variant
    let r = fetch(proxy.port, path, 8192, &[]);
    assert_identity(&r, &want, "identity after gzip");
    assert_eq!(
        cache_status(&r),
        "MISS",
        "identity is a separate variant: {:?}",
        r.headers
    );
    assert_eq!(origin.hit_count(), 2);

    let r = fetch(proxy.port, path, 8192, &[]);
    assert_identity(&r, &want, "identity #2");
    assert_eq!(cache_status(&r), "HIT", "{:?}", r.headers);
    assert_eq!(origin.hit_count(), 2);

    // zstd: its own variant
    let zs = [("Accept-Encoding", "zstd")];
    let r = fetch(proxy.port, path, 8192, &zs);
    let zfirst = assert_compressed(&r, "zstd", &want, "zstd #1");
    assert_eq!(cache_status(&r), "MISS", "{:?}", r.headers);
    assert_eq!(origin.hit_count(), 3);
    let r = fetch(proxy.port, path, 8192, &zs);
    let zsecond = assert_compressed(&r, "zstd", &want, "zstd #2");
    assert_eq!(cache_status(&r), "HIT", "{:?}", r.headers);
    assert_same_bytes(&zsecond, &zfirst, "zstd HIT bytes");

    // gzip once more: still the first stored gzip entry
    let r = fetch(proxy.port, path, 8192, &gz);
    let third = assert_compressed(&r, "gzip", &want, "gzip #3");
    assert_eq!(cache_status(&r), "HIT", "{:?}", r.headers);
    assert_same_bytes(&third, &first, "gzip HIT after other variants");

    // identity again: still its own HIT, never a compressed body
    let r = fetch(proxy.port, path, 8192, &[]);
    assert_identity(&r, &want, "identity #3");
    assert_eq!(cache_status(&r), "HIT", "{:?}", r.headers);

    // Chrome negotiates zstd: shares the zstd entry
    let r = fetch(proxy.port, path, 8192, &[("Accept-Encoding", CHROME_AE)]);
    assert_compressed(&r, "zstd", &want, "Chrome");
    assert_eq!(cache_status(&r), "HIT", "{:?}", r.headers);
    assert_eq!(origin.hit_count(), 3);

    // br: a new variant
    let r = fetch(proxy.port, path, 8192, &[("Accept-Encoding", "br")]);
    assert_compressed(&r, "br", &want, "br");
    assert_eq!(cache_status(&r), "MISS", "{:?}", r.headers);
    assert_eq!(origin.hit_count(), 4);

    for rec in origin.recorded() {
        assert_eq!(seen_header(&rec, "accept-encoding"), None, "{rec}");
    }
    no_panic_in_logs(&proxy);
}

#[test]
fn cache_stores_one_variant_per_negotiated_encoding() {
    cache_variants_sequence(true, "");
}

/// `vary: off` (NGINX's default) only drops the `Vary` header sent to clients; the cache
/// must still keep one variant per negotiated encoding.
#[test]
fn cache_stores_one_variant_per_negotiated_encoding_with_vary_off() {
    cache_variants_sequence(false, "");
}

/// `ignore_headers: [Vary]` ignores the origin's Vary; the encoding variance is outrigger's
/// own and must survive it.
#[test]
fn cache_stores_one_variant_per_negotiated_encoding_with_vary_ignored() {
    cache_variants_sequence(true, "      ignore_headers: [Vary]\n");
}

/// The identity variant stored first must not capture compressing clients.
#[test]
fn cache_identity_first_then_compressed_variants() {
    let origin = start_origin();
    let proxy = cached_proxy(origin.port, true);
    let want = pattern_body(8192);
    let path = "/identity-first.txt";
    let sequence: &[(Option<&str>, &str, usize)] = &[
        (None, "MISS", 1),
        (Some("gzip"), "MISS", 2),
        (Some("zstd"), "MISS", 3),
        (Some("br"), "MISS", 4),
        (None, "HIT", 4),
        (Some("gzip"), "HIT", 4),
        (Some("zstd"), "HIT", 4),
        (Some("br"), "HIT", 4),
    ];
    for (i, (enc, status, hits)) in sequence.iter().enumerate() {
        let headers: Vec<(&str, &str)> = enc.iter().map(|e| ("Accept-Encoding", *e)).collect();
        let r = fetch(proxy.port, path, 8192, &headers);
        let what = format!("request {i} ({enc:?})");
        match enc {
            Some(e) => {
                assert_compressed(&r, e, &want, &what);
            }
            None => assert_identity(&r, &want, &what),
        }
        assert_eq!(cache_status(&r), *status, "{what}: {:?}", r.headers);
        assert_eq!(origin.hit_count(), *hits, "{what}");
    }
}

#[test]
fn gzip_clients_with_different_accept_encoding_share_one_entry() {
    let origin = start_origin();
    let proxy = cached_proxy(origin.port, true);
    let want = pattern_body(8192);
    let path = "/shared.txt";
    // only gzip is acceptable in all three, so all negotiate gzip
    let r = fetch(proxy.port, path, 8192, &[("Accept-Encoding", "gzip")]);
    let first = assert_compressed(&r, "gzip", &want, "gzip");
    assert_eq!(cache_status(&r), "MISS");
    let r = fetch(
        proxy.port,
        path,
        8192,
        &[("Accept-Encoding", "gzip, deflate")],
    );
    let second = assert_compressed(&r, "gzip", &want, "gzip, deflate");
    assert_eq!(
        cache_status(&r),
        "HIT",
        "\"gzip\" and \"gzip, deflate\" negotiate the same encoding: {:?}",
        r.headers
    );
    assert_same_bytes(&second, &first, "shared gzip entry");
    let r = fetch(
        proxy.port,
        path,
        8192,
        &[(
            "Accept-Encoding",
            "deflate;q=1, gzip;q=0.5, br;q=0, zstd;q=0",
        )],
    );
    assert_compressed(&r, "gzip", &want, "q-valued gzip");
    assert_eq!(cache_status(&r), "HIT", "{:?}", r.headers);
    assert_eq!(origin.hit_count(), 1);

    // a client refusing everything is the identity variant, not the gzip one
    let r = fetch(proxy.port, path, 8192, &[("Accept-Encoding", "gzip;q=0")]);
    assert_identity(&r, &want, "gzip;q=0");
    assert_eq!(cache_status(&r), "MISS", "{:?}", r.headers);
    let r = fetch(proxy.port, path, 8192, &[("Accept-Encoding", "identity")]);
    assert_identity(&r, &want, "identity");
    assert_eq!(cache_status(&r), "HIT", "{:?}", r.headers);
    assert_eq!(origin.hit_count(), 2);
}

/// An expired compressed entry revalidated by a 304 that carries the origin's (strong) ETag:
/// the stored gzip body must keep a weak ETag (it is not the identity representation).
#[test]
fn cache_revalidated_compressed_entry_keeps_weak_etag() {
    let origin = start_origin();
    let proxy = cached_proxy(origin.port, true);
    let want = pattern_body(8192);
    let path = "/reval.txt";
    let fill = [
        ("X-Origin-Header", "Cache-Control: max-age=1"),
        ("X-Origin-Header", "ETag: \"v1\""),
    ];
    let gz_fill: Vec<(&str, &str)> = [("Accept-Encoding", "gzip")]
        .into_iter()
        .chain(fill)
        .collect();
    let r = fetch(proxy.port, path, 8192, &gz_fill);
    let stored = assert_compressed(&r, "gzip", &want, "gzip fill");
    assert_eq!(cache_status(&r), "MISS");
    assert_eq!(r.header("etag"), Some("W/\"v1\""));
    let r = fetch(proxy.port, path, 8192, &fill);
    assert_identity(&r, &want, "identity fill");
    assert_eq!(r.header("etag"), Some("\"v1\""));

    std::thread::sleep(Duration::from_millis(2100));

    // the origin answers the revalidation with 304 + its strong ETag
    let reval: Vec<(&str, &str)> = gz_fill
        .iter()
        .copied()
        .chain([("X-Origin-Status", "304")])
        .collect();
    let r = fetch(proxy.port, path, 8192, &reval);
    assert_eq!(cache_status(&r), "REVALIDATED", "{:?}", r.headers);
    let body = assert_compressed(&r, "gzip", &want, "gzip revalidated");
    assert_same_bytes(&body, &stored, "revalidated gzip body");
    let rec = origin.last_request().unwrap();
    assert_eq!(seen_header(&rec, "accept-encoding"), None, "{rec}");
    assert_eq!(
        r.header("etag"),
        Some("W/\"v1\""),
        "a gzip body must not carry the identity's strong ETag after revalidation: {:?}",
        r.headers
    );
    let r = fetch(proxy.port, path, 8192, &gz_fill);
    assert_eq!(cache_status(&r), "HIT", "{:?}", r.headers);
    assert_compressed(&r, "gzip", &want, "gzip HIT after revalidation");
    assert_eq!(r.header("etag"), Some("W/\"v1\""), "{:?}", r.headers);

    // the identity variant revalidates to the strong tag
    let reval: Vec<(&str, &str)> = fill
        .into_iter()
        .chain([("X-Origin-Status", "304")])
        .collect();
    let r = fetch(proxy.port, path, 8192, &reval);
    assert_eq!(cache_status(&r), "REVALIDATED", "{:?}", r.headers);
    assert_identity(&r, &want, "identity revalidated");
    assert_eq!(r.header("etag"), Some("\"v1\""));
}

#[test]
fn cached_head_gets_compression_headers_without_body() {
    let origin = start_origin();
    let proxy = cached_proxy(origin.port, true);
    let want = pattern_body(8192);
    let path = "/head-cached.txt";
    let r = fetch(proxy.port, path, 8192, &[("Accept-Encoding", "gzip")]);
    assert_compressed(&r, "gzip", &want, "gzip fill");
    let r = head_with(
        proxy.port,
        path,
        &[("Accept-Encoding", "gzip"), ("X-Origin-Body-Size", "8192")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-encoding"),
        Some("gzip"),
        "{:?}",
        r.headers
    );
    assert!(r.body.is_empty());
    assert_ne!(
        r.header("content-length"),
        Some("8192"),
        "a gzip HEAD must not announce the identity length"
    );
    let r = head_with(proxy.port, path, &[("X-Origin-Body-Size", "8192")]);
    assert_eq!(r.status, 200);
    assert!(!r.has_header("content-encoding"), "{:?}", r.headers);
}

// ---------------------------------------------------------------------------
// 7. Static files
// ---------------------------------------------------------------------------

/// About 1 MiB of JavaScript-looking text.
fn script_js() -> Vec<u8> {
    let mut out = Vec::with_capacity(1 << 20);
    let mut i: u64 = 0;
    while out.len() < 1 << 20 {
        out.extend_from_slice(
            format!(
                "var v{i} = \"{}\"; function f{i}(a) {{ return a * {} + v{i}.length; }}\n",
                i.wrapping_mul(2_654_435_761) % 1_000_003,
                i % 97
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(1 << 20);
    out
}

fn static_config(server_extra: &str) -> String {
    format!(
        "{QUIET}{GZIP}{server_extra}\
         types: {{js: application/javascript}}\n\
         locations:\n  \
           - exact: /script.js\n    \
             root: \"{{DIR}}/www\"\n  \
           - prefix: /\n    \
             root: \"{{DIR}}/www\"\n"
    )
}

#[test]
fn static_file_compressed_on_the_fly() {
    let js = script_js();
    let proxy = start_proxy_with(
        &static_config(""),
        &[("www/script.js", &js), ("www/small.txt", b"tiny\n")],
    );
    let gz = [("Accept-Encoding", "gzip")];

    let r = get_with(proxy.port, "/script.js", &gz);
    let first = assert_compressed(&r, "gzip", &js, "static gzip");
    assert_eq!(
        r.header("content-length"),
        Some(first.len().to_string().as_str()),
        "static compressed responses carry the compressed Content-Length: {:?}",
        r.headers
    );
    assert!(first.len() < js.len() / 2, "{} bytes", first.len());
    assert_eq!(r.header("content-type"), Some("application/javascript"));
    assert!(varies_on_ae(&r), "{:?}", r.headers);
    let weak = r.header("etag").expect("etag").to_string();
    assert!(
        weak.starts_with("W/\""),
        "compressed static ETag is weak: {weak}"
    );
    assert!(
        !r.has_header("accept-ranges") || r.header("accept-ranges") == Some("none"),
        "ranges of the compressed body are not offered: {:?}",
        r.headers
    );

    let r = get_with(proxy.port, "/script.js", &gz);
    let second = assert_compressed(&r, "gzip", &js, "static gzip #2");
    assert_same_bytes(
        &second,
        &first,
        "second request: identical compressed bytes",
    );
    assert_eq!(r.header("etag"), Some(weak.as_str()));

    // without Accept-Encoding: the file itself
    let r = get(proxy.port, "/script.js");
    assert_identity(&r, &js, "static identity");
    assert_eq!(r.header("content-length"), Some("1048576"));
    assert!(varies_on_ae(&r), "vary on: {:?}", r.headers);
    let strong = r.header("etag").expect("etag").to_string();
    assert!(strong.starts_with('"'), "{strong}");
    assert_eq!(weak, format!("W/{strong}"));

    // conditional GET with the weak tag the gzip client got: 304 (weak comparison)
    let r = get_with(
        proxy.port,
        "/script.js",
        &[("Accept-Encoding", "gzip"), ("If-None-Match", &weak)],
    );
    assert_eq!(r.status, 304, "{:?}", r.headers);
    assert!(r.body.is_empty());

    // HEAD with gzip: the headers of the compressed response, no body
    let r = head_with(proxy.port, "/script.js", &gz);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-encoding"),
        Some("gzip"),
        "{:?}",
        r.headers
    );
    assert!(r.body.is_empty());
    assert_eq!(
        r.header("content-length"),
        Some(first.len().to_string().as_str()),
        "HEAD announces the compressed length the GET would send"
    );

    // a tiny file is not compressed
    let r = get_with(proxy.port, "/small.txt", &gz);
    assert_identity(&r, b"tiny\n", "small static file");

    // brotli is not enabled in this config
    let r = get_with(proxy.port, "/script.js", &[("Accept-Encoding", "br;q=1")]);
    assert_identity(&r, &js, "br not enabled");
    no_panic_in_logs(&proxy);
}

/// The compressed copy kept in memory is the current file's: a rewrite within the same second
/// (same size), and a new inode with the same size and mtime, each get a fresh copy; with
/// `static.memory_cache: 0` nothing is kept and every request compresses the file.
#[test]
fn compressed_copies_follow_every_change_of_the_file() {
    let gz = [("Accept-Encoding", "gzip")];
    for extra in ["", "static: {memory_cache: 0}\n"] {
        let a = b"AAAAAAAAAA".repeat(200);
        let proxy = start_proxy_with(&static_config(extra), &[("www/c.txt", &a)]);
        let path = proxy.path("www/c.txt");
        for what in ["first", "from memory"] {
            let r = get_with(proxy.port, "/c.txt", &gz);
            assert_compressed(&r, "gzip", &a, &format!("{what} ({extra})"));
        }

        let b = b"BBBBBBBBBB".repeat(200);
        std::fs::write(&path, &b).unwrap();
        let r = get_with(proxy.port, "/c.txt", &gz);
        assert_compressed(&r, "gzip", &b, &format!("rewritten in place ({extra})"));

        let c = b"CCCCCCCCCC".repeat(200);
        replace_keeping_mtime(&path, &proxy.path("www/c.tmp"), &c);
        let r = get_with(proxy.port, "/c.txt", &gz);
        assert_compressed(&r, "gzip", &c, &format!("new inode, same mtime ({extra})"));
        no_panic_in_logs(&proxy);
    }
}

#[test]
fn static_range_request_from_compressing_client_gets_whole_compressed_body() {
    let js = script_js();
    let proxy = start_proxy_with(&static_config(""), &[("www/script.js", &js)]);

    let r = get_with(
        proxy.port,
        "/script.js",
        &[("Accept-Encoding", "gzip"), ("Range", "bytes=0-99")],
    );
    assert_eq!(r.status, 200, "{:?}", r.headers);
    assert!(!r.has_header("content-range"), "{:?}", r.headers);
    let body = assert_compressed(&r, "gzip", &js, "range + gzip");
    assert_eq!(
        r.header("content-length"),
        Some(body.len().to_string().as_str())
    );

    // without compression the range is honoured
    let r = get_with(proxy.port, "/script.js", &[("Range", "bytes=0-99")]);
    assert_eq!(r.status, 206, "{:?}", r.headers);
    assert!(!r.has_header("content-encoding"));
    assert_eq!(r.header("content-range"), Some("bytes 0-99/1048576"));
    assert_same_bytes(&r.body, &js[..100], "identity range");

    // an unsatisfiable range stays 416 (nothing to compress)
    let r = get_with(
        proxy.port,
        "/script.js",
        &[("Accept-Encoding", "gzip"), ("Range", "bytes=2000000-")],
    );
    assert!(
        r.status == 416 || r.status == 200,
        "unsatisfiable range: {} {:?}",
        r.status,
        r.headers
    );
    if r.status == 200 {
        assert_compressed(&r, "gzip", &js, "unsatisfiable range, gzip");
    }
}

#[test]
fn static_precompressed_siblings_are_served() {
    let js = script_js();
    // Siblings with content different from the file, so the test can tell which was served.
    let gz_plain: Vec<u8> = b"/* precompressed gzip sibling */\n".repeat(500);
    let br_plain: Vec<u8> = b"/* precompressed brotli sibling */\n".repeat(500);
    let gz = gzip_bytes(&gz_plain);
    let br = brotli_bytes(&br_plain);
    let proxy = start_proxy_with(
        &static_config("brotli: {enabled: on}\nzstd: {enabled: on}\nstatic: {precompressed: on}\n"),
        &[
            ("www/script.js", &js),
            ("www/script.js.gz", &gz),
            ("www/script.js.br", &br),
        ],
    );

    let r = get_with(proxy.port, "/script.js", &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-encoding"),
        Some("gzip"),
        "{:?}",
        r.headers
    );
    assert_same_bytes(&r.body, &gz, "the .gz sibling's bytes");
    assert_eq!(
        r.header("content-length"),
        Some(gz.len().to_string().as_str())
    );
    assert_eq!(r.header("content-type"), Some("application/javascript"));
    assert!(varies_on_ae(&r), "{:?}", r.headers);

    for ae in ["br", "br, gzip", "gzip, deflate, br"] {
        let r = get_with(proxy.port, "/script.js", &[("Accept-Encoding", ae)]);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-encoding"),
            Some("br"),
            "{ae}: {:?}",
            r.headers
        );
        assert_same_bytes(&r.body, &br, &format!("{ae}: the .br sibling's bytes"));
        assert_same_bytes(&unbrotli(&r.body), &br_plain, "decoded .br");
    }

    // no .zst sibling: compressed on the fly from the file itself
    let r = get_with(proxy.port, "/script.js", &[("Accept-Encoding", CHROME_AE)]);
    assert_compressed(&r, "zstd", &js, "zstd on the fly (no .zst sibling)");

    // identity clients get the file
    let r = get(proxy.port, "/script.js");
    assert_identity(&r, &js, "identity with siblings present");

    // HEAD: the sibling's length
    let r = head_with(proxy.port, "/script.js", &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(
        r.header("content-length"),
        Some(gz.len().to_string().as_str())
    );
    assert!(r.body.is_empty());

    // the siblings are still ordinary files of their own
    let r = get(proxy.port, "/script.js.gz");
    assert_eq!(r.status, 200);
    assert_same_bytes(&r.body, &gz, "/script.js.gz itself");
}

#[test]
fn static_siblings_ignored_without_precompressed() {
    let js = script_js();
    let gz = gzip_bytes(b"not the file\n");
    let proxy = start_proxy_with(
        &static_config(""),
        &[("www/script.js", &js), ("www/script.js.gz", &gz)],
    );
    let r = get_with(proxy.port, "/script.js", &[("Accept-Encoding", "gzip")]);
    assert_compressed(
        &r,
        "gzip",
        &js,
        "precompressed off: the file compressed on the fly, not the sibling",
    );
}

// ---------------------------------------------------------------------------
// 8. Streaming
// ---------------------------------------------------------------------------

#[test]
fn streamed_response_is_compressed_chunk_by_chunk() {
    let origin = start_origin();
    let proxy = simple_proxy(
        origin.port,
        &format!("{GZIP}{ALL_CODECS}"),
        "    buffering: off\n",
    );
    let n = 5;
    let delay_ms = 300u64;
    let expected: Vec<u8> = (0..n).flat_map(|i| chunk_text(i).into_bytes()).collect();

    for ae in ["gzip", "br", "zstd"] {
        let delay = delay_ms.to_string();
        let count = n.to_string();
        let raw = build_request(
            "GET",
            "/stream",
            &[
                ("Accept-Encoding", ae),
                ("X-Origin-Chunks", &count),
                ("X-Origin-Chunk-Delay-Ms", &delay),
            ],
            b"",
        );
        let start = Instant::now();
        let mut s = open_stream(proxy.port, &raw);
        let (status, headers) = s.read_head();
        assert_eq!(status, 200, "{ae}: {headers:?}");
        assert_eq!(
            s.header("content-encoding").as_deref(),
            Some(ae),
            "{ae}: chunked bodies have no length, so they are compressed: {headers:?}"
        );
        assert!(s.header("content-length").is_none(), "{ae}: {headers:?}");

        // Feed what arrives into an incremental decoder and note when each chunk's text
        // became decodable.
        let mut received = Vec::new();
        let mut decoded_at: Vec<Duration> = Vec::new();
        let mut incremental = IncrementalDecoder::new(ae);
        while let Some(piece) = s.next_chunk() {
            let now = start.elapsed();
            received.extend_from_slice(&piece);
            let text = incremental.feed(&piece);
            while decoded_at.len() < n
                && text.len()
                    >= (0..=decoded_at.len())
                        .map(|i| chunk_text(i).len())
                        .sum::<usize>()
            {
                decoded_at.push(now);
            }
        }
        let total = start.elapsed();
        assert_same_bytes(&decode(ae, &received), &expected, &format!("{ae}: stream"));
        assert_eq!(decoded_at.len(), n, "{ae}: all chunks decodable");
        assert!(
            total >= Duration::from_millis(delay_ms * (n as u64 - 1) - 100),
            "{ae}: stream ended after {total:?}"
        );
        assert!(
            decoded_at[0] < Duration::from_millis(delay_ms * 2),
            "{ae}: the first chunk must be decodable long before the end of the stream; \
             decodable at {decoded_at:?}, stream ended at {total:?}"
        );
        // chunk 3 (sent at ~900 ms) is decodable before chunk 4 was sent (~1200 ms)
        assert!(
            decoded_at[3] + Duration::from_millis(150) < total,
            "{ae}: chunks are flushed as they arrive; decodable at {decoded_at:?}, \
             stream ended at {total:?}"
        );
    }
    no_panic_in_logs(&proxy);
}

/// Decodes a compressed stream piece by piece, returning everything decoded so far.
enum IncrementalDecoder {
    Gzip(flate2::write::GzDecoder<Vec<u8>>),
    Br(Box<brotli::DecompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Decoder<'static, Vec<u8>>),
}

impl IncrementalDecoder {
    fn new(enc: &str) -> IncrementalDecoder {
        match enc {
            "gzip" => IncrementalDecoder::Gzip(flate2::write::GzDecoder::new(Vec::new())),
            "br" => {
                IncrementalDecoder::Br(Box::new(brotli::DecompressorWriter::new(Vec::new(), 4096)))
            }
            "zstd" => IncrementalDecoder::Zstd(
                zstd::stream::write::Decoder::new(Vec::new()).expect("zstd decoder"),
            ),
            other => panic!("unexpected encoding {other}"),
        }
    }

    fn feed(&mut self, data: &[u8]) -> Vec<u8> {
        match self {
            IncrementalDecoder::Gzip(d) => {
                d.write_all(data).expect("gzip stream");
                d.flush().expect("gzip flush");
                d.get_ref().clone()
            }
            IncrementalDecoder::Br(d) => {
                d.write_all(data).expect("brotli stream");
                d.flush().expect("brotli flush");
                d.get_ref().clone()
            }
            IncrementalDecoder::Zstd(d) => {
                d.write_all(data).expect("zstd stream");
                d.flush().expect("zstd flush");
                d.get_ref().clone()
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 9. HEAD through the proxy
// ---------------------------------------------------------------------------

#[test]
fn proxied_head_gets_compression_headers_and_no_body() {
    let (origin, proxy) = setup("");
    let r = head_with(
        proxy.port,
        "/h",
        &[("Accept-Encoding", "gzip"), ("X-Origin-Body-Size", "4096")],
    );
    assert_eq!(r.status, 200, "{:?}", r.headers);
    assert_eq!(
        r.header("content-encoding"),
        Some("gzip"),
        "{:?}",
        r.headers
    );
    assert!(varies_on_ae(&r), "{:?}", r.headers);
    assert!(r.body.is_empty());
    assert_ne!(
        r.header("content-length"),
        Some("4096"),
        "the identity length must not be announced with Content-Encoding: gzip"
    );
    let rec = origin.last_request().expect("origin saw the HEAD");
    assert_eq!(rec["method"], "HEAD");
    assert_eq!(seen_header(&rec, "accept-encoding"), None, "{rec}");

    // The connection is still usable afterwards (no stray body bytes were sent).
    let mut conn = Connection::connect(proxy.port);
    conn.send(&build_request(
        "HEAD",
        "/h",
        &[
            ("Accept-Encoding", "gzip"),
            ("X-Origin-Body-Size", "4096"),
            ("Connection", "keep-alive"),
        ],
        b"",
    ));
    let r = conn.read_response(true);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    conn.send(&build_request(
        "GET",
        "/h2",
        &[("Accept-Encoding", "gzip"), ("X-Origin-Body-Size", "4096")],
        b"",
    ));
    let r = conn.read_response(false);
    assert_compressed(
        &r,
        "gzip",
        &pattern_body(4096),
        "GET after HEAD on one connection",
    );
}

// ---------------------------------------------------------------------------
// 10. Per-location settings
// ---------------------------------------------------------------------------

#[test]
fn gzip_off_in_a_location_disables_compression_there() {
    let origin = start_origin();
    let proxy = start_proxy(&format!(
        "{}{GZIP}{ALL_CODECS}locations:\n  \
           - prefix: /plain/\n    proxy_pass: http://app\n    gzip: off\n  \
           - prefix: /big/\n    proxy_pass: http://app\n    gzip: {{min_length: 10k, level: 9}}\n  \
           - prefix: /\n    proxy_pass: http://app\n",
        preamble(origin.port)
    ));
    let want = pattern_body(4096);

    for ae in ["gzip", CHROME_AE] {
        let r = fetch(proxy.port, "/plain/x", 4096, &[("Accept-Encoding", ae)]);
        assert_identity(&r, &want, &format!("gzip: off location, {ae}"));
        assert!(!varies_on_ae(&r), "{:?}", r.headers);
        // NGINX with gzip off passes the client's Accept-Encoding on
        let rec = origin.last_request().unwrap();
        assert_eq!(
            seen_header(&rec, "accept-encoding").as_deref(),
            Some(ae),
            "{rec}"
        );
    }

    let r = fetch(proxy.port, "/other/x", 4096, &[("Accept-Encoding", "gzip")]);
    assert_compressed(&r, "gzip", &want, "server-level gzip elsewhere");
    let r = fetch(
        proxy.port,
        "/other/x",
        4096,
        &[("Accept-Encoding", CHROME_AE)],
    );
    assert_compressed(&r, "zstd", &want, "server-level zstd elsewhere");

    // A location with its own gzip mapping: min_length 10k there, the rest inherited.
    let r = fetch(proxy.port, "/big/x", 4096, &[("Accept-Encoding", "gzip")]);
    assert_identity(&r, &want, "4 KiB < location min_length 10k");
    let big = pattern_body(20_000);
    let r = fetch(proxy.port, "/big/x", 20_000, &[("Accept-Encoding", "gzip")]);
    assert_compressed(&r, "gzip", &big, "20000 >= 10k");
    assert!(varies_on_ae(&r), "vary inherited: {:?}", r.headers);
    let r = fetch(
        proxy.port,
        "/big/x",
        20_000,
        &[
            ("Accept-Encoding", "gzip"),
            ("X-Origin-Content-Type", "image/png"),
        ],
    );
    assert_identity(&r, &big, "types inherited");
    let r = fetch(
        proxy.port,
        "/big/x",
        20_000,
        &[("Accept-Encoding", "gzip"), ("User-Agent", MSIE6)],
    );
    assert_identity(&r, &big, "disable inherited");
}

#[test]
fn gzip_off_in_a_static_location() {
    let js = script_js();
    let proxy = start_proxy_with(
        &format!(
            "{QUIET}{GZIP}\
             locations:\n  \
               - exact: /script.js\n    root: \"{{DIR}}/www\"\n    gzip: off\n  \
               - prefix: /\n    root: \"{{DIR}}/www\"\n"
        ),
        &[("www/script.js", &js), ("www/other.js", &js)],
    );
    let gz = [("Accept-Encoding", "gzip")];
    let r = get_with(proxy.port, "/script.js", &gz);
    assert_identity(&r, &js, "gzip: off static location");
    assert!(!varies_on_ae(&r), "{:?}", r.headers);
    let r = get_with(proxy.port, "/other.js", &gz);
    assert_compressed(
        &r,
        "gzip",
        &js,
        "server-level gzip in the other static location",
    );
}

/// A precompressed sibling that is a symlink leaving the root is not served (as any file under
/// `symlinks: within_root`); the file is compressed on the fly instead.
#[test]
fn precompressed_sibling_symlink_outside_root_is_ignored() {
    let js = script_js();
    let secret = gzip_bytes(b"SECRET outside the root\n");
    let proxy = start_proxy_with(
        &static_config("static: {precompressed: on}\n"),
        &[("www/script.js", &js), ("outside/secret.gz", &secret)],
    );
    std::os::unix::fs::symlink(
        proxy.path("outside/secret.gz"),
        proxy.path("www/script.js.gz"),
    )
    .expect("symlink");
    let r = get_with(proxy.port, "/script.js", &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_ne!(r.body, secret, "the sibling outside the root was served");
    assert_same_bytes(&gunzip(&r.body), &js, "compressed on the fly from the file");
}

// ---------------------------------------------------------------------------
// NGINX `gzip_disable` ignores case; `gzip_http_version`
// ---------------------------------------------------------------------------

/// `gzip.disable` matches the User-Agent whatever its case, as NGINX's `gzip_disable` does.
#[test]
fn disable_ignores_case() {
    let (_origin, proxy) = setup("brotli: {enabled: on}\n");
    let want = pattern_body(4096);
    for ua in [
        "mozilla/4.0 (compatible; msie 6.0; windows nt 5.1)",
        "MOZILLA/4.0 (COMPATIBLE; MSIE 5.5)",
    ] {
        let r = fetch(
            proxy.port,
            "/ua-case",
            4096,
            &[("Accept-Encoding", "gzip, br"), ("User-Agent", ua)],
        );
        assert_identity(&r, &want, ua);
    }
}

/// `GET path` over HTTP/1.0 with `Accept-Encoding: gzip, br`.
fn get_http10(port: u16, path: &str) -> Response {
    request(
        port,
        format!(
            "GET {path} HTTP/1.0\r\nHost: localhost\r\nAccept-Encoding: gzip, br\r\n\
             X-Origin-Body-Size: 4096\r\n\r\n"
        )
        .as_bytes(),
    )
}

/// NGINX's `gzip_http_version 1.1` default: an HTTP/1.0 client gets identity (proxied, cached
/// and static alike), for every encoding; `http_version: "1.0"` compresses for it too.
#[test]
fn http10_clients_get_identity_unless_http_version_1_0() {
    let js = script_js();
    let origin = start_origin();
    let config = |gzip_extra: &str| {
        format!(
            "{QUIET}{GZIP}{gzip_extra}brotli: {{enabled: on}}\n\
             types: {{js: application/javascript}}\n\
             caches: {{c: {{path: \"{{DIR}}/cache\"}}}}\n\
             locations:\n  \
               - exact: /script.js\n    \
                 root: \"{{DIR}}/www\"\n  \
               - prefix: /cached/\n    \
                 proxy_pass: http://{addr}\n    \
                 cache: {{zone: c, valid: {{any: 1m}}}}\n  \
               - prefix: /\n    \
                 proxy_pass: http://{addr}\n",
            addr = origin.addr()
        )
    };
    let proxy = start_proxy_with(&config(""), &[("www/script.js", &js)]);
    let want = pattern_body(4096);
    for path in ["/plain", "/cached/a", "/cached/a"] {
        assert_identity(&get_http10(proxy.port, path), &want, path);
    }
    assert_identity(
        &get_http10(proxy.port, "/script.js"),
        &js,
        "static over HTTP/1.0",
    );
    // HTTP/1.1 clients still get compressed bodies
    let r = fetch(
        proxy.port,
        "/plain",
        4096,
        &[("Accept-Encoding", "gzip, br")],
    );
    assert_compressed(&r, "br", &want, "HTTP/1.1");

    let proxy = start_proxy_with(
        &config("  http_version: \"1.0\"\n"),
        &[("www/script.js", &js)],
    );
    assert_compressed(
        &get_http10(proxy.port, "/plain"),
        "br",
        &want,
        "http_version 1.0",
    );
    assert_compressed(
        &get_http10(proxy.port, "/script.js"),
        "br",
        &js,
        "static, http_version 1.0",
    );
}
