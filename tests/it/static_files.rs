//! Static file serving: root/alias mapping, index, directory redirects, content types,
//! validators and conditional requests, ranges, methods, `expires`, `add_header`, and path
//! traversal / symlink containment. Expectations follow NGINX 1.22 (checked with the equivalent
//! configuration) unless the outrigger schema says otherwise (symlinks: `within_root` default).

use std::time::{Duration, SystemTime};

use crate::common::*;

const SECRET: &[u8] = b"TOPSECRET-outside-the-root";

/// 1000 bytes whose values depend on their position (so ranges are checkable).
fn data_1000() -> Vec<u8> {
    (0..1000u32).map(|i| (i * 7 + i / 256) as u8).collect()
}

/// 1 MiB of pseudo-random bytes (xorshift), reproducible.
fn data_1mib() -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

const CONFIG: &str = r#"listen: ["127.0.0.1:{PORT}"]
locations:
  - prefix: /
    root: "{DIR}/root"
    index: [nope.html, second.html, index.html]
  - prefix: /al/
    alias: "{DIR}/aliased/"
  - prefix: /rt/
    root: "{DIR}/rootdir"
  - prefix: /exp/
    alias: "{DIR}/root/"
    expires: 90d
    add_header:
      X-Plain: p
      X-Always: {value: a, always: on}
  - prefix: /follow/
    alias: "{DIR}/root/"
    symlinks: follow
"#;

fn start_static() -> Proxy {
    let data = data_1000();
    let big = data_1mib();
    start_proxy_with(
        CONFIG,
        &[
            ("secret", SECRET),
            ("outside/s.txt", SECRET),
            ("root/index.html", b"<h1>root index</h1>"),
            ("root/page.html", b"<p>page</p>"),
            ("root/app.js", b"console.log(1);"),
            ("root/style.css", b"body{}"),
            ("root/img.png", PNG),
            ("root/data.bin", &data),
            ("root/big.bin", &big),
            ("root/sub/second.html", b"second wins"),
            ("root/sub/index.html", b"sub index"),
            ("root/only/index.html", b"only index"),
            ("root/noindex/file.txt", b"no index here"),
            ("aliased/f.txt", b"from alias"),
            ("aliased/al/f.txt", b"WRONG: alias appended the prefix"),
            ("rootdir/rt/f.txt", b"from root"),
            ("rootdir/f.txt", b"WRONG: root stripped the prefix"),
        ],
    )
}

fn etag_of(r: &Response) -> String {
    r.header("etag")
        .unwrap_or_else(|| panic!("no ETag in {:?}", r.headers))
        .to_string()
}

fn assert_status(r: &Response, status: u16, what: &str) {
    assert_eq!(
        r.status,
        status,
        "{what}: headers {:?} body {:?}",
        r.headers,
        r.text()
    );
}

/// Send `first` (keep-alive) and then a GET of /page.html on the same connection: if the server
/// sent any body bytes after the first (bodiless) response, the second response is garbled.
fn assert_no_body_then_clean_followup(port: u16, first: &[u8], is_head: bool) -> Response {
    let mut conn = Connection::connect(port);
    conn.send(first);
    let resp = conn.read_response(is_head);
    conn.send(&build_request("GET", "/page.html", &[], b""));
    let next = conn.try_read_response(false).unwrap_or_else(|e| {
        panic!(
            "follow-up request on the same connection failed (stray body bytes?): {e}; \
             first response {} {:?}",
            resp.status, resp.headers
        )
    });
    assert_status(&next, 200, "follow-up GET /page.html");
    assert_eq!(next.body, b"<p>page</p>", "follow-up body garbled");
    resp
}

// ---------------------------------------------------------------------------------------------
// Mapping, index, directories

#[test]
fn root_appends_full_uri_and_alias_replaces_prefix() {
    let proxy = start_static();
    let r = get(proxy.port, "/rt/f.txt");
    assert_status(&r, 200, "GET /rt/f.txt (root)");
    assert_eq!(r.text(), "from root");

    let r = get(proxy.port, "/al/f.txt");
    assert_status(&r, 200, "GET /al/f.txt (alias)");
    assert_eq!(r.text(), "from alias");

    let r = get(proxy.port, "/page.html");
    assert_status(&r, 200, "GET /page.html");
    assert_eq!(r.text(), "<p>page</p>");
}

#[test]
fn index_list_first_existing_wins() {
    let proxy = start_static();
    let r = get(proxy.port, "/sub/");
    assert_status(&r, 200, "GET /sub/");
    assert_eq!(r.text(), "second wins");
    assert_eq!(r.header("content-type"), Some("text/html"));

    let r = get(proxy.port, "/only/");
    assert_status(&r, 200, "GET /only/");
    assert_eq!(r.text(), "only index");

    let r = get(proxy.port, "/");
    assert_status(&r, 200, "GET /");
    assert_eq!(r.text(), "<h1>root index</h1>");
}

#[test]
fn directory_without_slash_redirects() {
    let proxy = start_static();
    let r = get(proxy.port, "/sub");
    assert_status(&r, 301, "GET /sub");
    let loc = r.header("location").expect("Location on 301");
    assert!(
        loc.ends_with("/sub/"),
        "Location {loc:?} should end in /sub/"
    );

    // The query string is kept (NGINX: /sub?a=1 -> /sub/?a=1).
    let r = get(proxy.port, "/noindex?a=1");
    assert_status(&r, 301, "GET /noindex?a=1");
    let loc = r.header("location").expect("Location on 301");
    assert!(
        loc.ends_with("/noindex/?a=1"),
        "Location {loc:?} should end in /noindex/?a=1"
    );
}

#[test]
fn directory_without_index_is_403_and_missing_is_404() {
    let proxy = start_static();
    let r = get(proxy.port, "/noindex/");
    assert_status(&r, 403, "GET /noindex/");
    let r = get(proxy.port, "/nope.html");
    assert_status(&r, 404, "GET /nope.html");
    let r = get(proxy.port, "/no/such/dir/");
    assert_status(&r, 404, "GET /no/such/dir/");
    // A file used as a directory.
    let r = get(proxy.port, "/page.html/x");
    assert_status(&r, 404, "GET /page.html/x");
}

// ---------------------------------------------------------------------------------------------
// Content types, validators

#[test]
fn content_type_by_extension() {
    let proxy = start_static();
    for (path, ctype) in [
        ("/page.html", "text/html"),
        ("/app.js", "application/javascript"),
        ("/style.css", "text/css"),
        ("/img.png", "image/png"),
    ] {
        let r = get(proxy.port, path);
        assert_status(&r, 200, path);
        assert_eq!(r.header("content-type"), Some(ctype), "{path}");
    }
    let r = get(proxy.port, "/img.png");
    assert_eq!(r.body, PNG);
}

#[test]
fn types_override() {
    let proxy = start_proxy_with(
        r#"listen: ["127.0.0.1:{PORT}"]
types: {js: text/javascript, foo: application/x-foo}
default_type: application/x-default
locations:
  - prefix: /
    root: "{DIR}/root"
"#,
        &[
            ("root/app.js", b"1"),
            ("root/x.foo", b"2"),
            ("root/s.css", b"3"),
            ("root/u.zzqx", b"4"),
        ],
    );
    for (path, ctype) in [
        ("/app.js", "text/javascript"),
        ("/x.foo", "application/x-foo"),
        ("/s.css", "text/css"),
        ("/u.zzqx", "application/x-default"),
    ] {
        let r = get(proxy.port, path);
        assert_status(&r, 200, path);
        assert_eq!(r.header("content-type"), Some(ctype), "{path}");
    }
}

#[test]
fn last_modified_and_strong_etag() {
    let proxy = start_static();
    let r = get(proxy.port, "/data.bin");
    assert_status(&r, 200, "GET /data.bin");
    assert_eq!(r.header("content-length"), Some("1000"));
    let lm = r.header("last-modified").expect("Last-Modified");
    let lm_t = httpdate::parse_http_date(lm).expect("Last-Modified is an HTTP date");
    let mtime = std::fs::metadata(proxy.path("root/data.bin"))
        .unwrap()
        .modified()
        .unwrap();
    let diff = mtime.duration_since(lm_t).unwrap_or_else(|e| e.duration());
    assert!(diff < Duration::from_secs(1), "Last-Modified {lm} vs mtime");
    let tag = etag_of(&r);
    assert!(
        tag.starts_with('"') && tag.ends_with('"'),
        "ETag {tag:?} must be strong"
    );
    assert!(
        tag.ends_with("-3e8\""),
        "ETag {tag:?} should end in -<size hex>"
    );
}

#[test]
fn if_none_match_gives_304() {
    let proxy = start_static();
    let tag = etag_of(&get(proxy.port, "/data.bin"));
    let raw = build_request(
        "GET",
        "/data.bin",
        &[("If-None-Match", &tag), ("Connection", "keep-alive")],
        b"",
    );
    let r = assert_no_body_then_clean_followup(proxy.port, &raw, false);
    assert_status(&r, 304, "If-None-Match: <etag>");
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(tag.as_str()));

    // Weak comparison for If-None-Match.
    let weak = format!("W/{tag}");
    let r = get_with(proxy.port, "/data.bin", &[("If-None-Match", &weak)]);
    assert_status(&r, 304, "If-None-Match: W/<etag>");

    // In a list.
    let list = format!("\"other\", {tag}");
    let r = get_with(proxy.port, "/data.bin", &[("If-None-Match", &list)]);
    assert_status(&r, 304, "If-None-Match: list");

    let r = get_with(proxy.port, "/data.bin", &[("If-None-Match", "\"other\"")]);
    assert_status(&r, 200, "If-None-Match: other");
    assert_eq!(r.body, data_1000());
}

#[test]
fn if_modified_since_exact() {
    let proxy = start_static();
    let r = get(proxy.port, "/data.bin");
    let lm = r
        .header("last-modified")
        .expect("Last-Modified")
        .to_string();

    let r = get_with(proxy.port, "/data.bin", &[("If-Modified-Since", &lm)]);
    assert_status(&r, 304, "If-Modified-Since == Last-Modified");
    assert!(r.body.is_empty());

    // NGINX `if_modified_since exact`: any other date, even a later one, gives 200.
    let later = httpdate::fmt_http_date(
        httpdate::parse_http_date(&lm).unwrap() + Duration::from_secs(3600),
    );
    let r = get_with(proxy.port, "/data.bin", &[("If-Modified-Since", &later)]);
    assert_status(&r, 200, "If-Modified-Since later than Last-Modified");
    assert_eq!(r.body, data_1000());

    let earlier = "Mon, 01 Jan 2001 00:00:00 GMT";
    let r = get_with(proxy.port, "/data.bin", &[("If-Modified-Since", earlier)]);
    assert_status(&r, 200, "If-Modified-Since earlier");
}

#[test]
fn if_match_mismatch_is_412() {
    let proxy = start_static();
    let r = get_with(proxy.port, "/data.bin", &[("If-Match", "\"nope\"")]);
    assert_status(&r, 412, "If-Match mismatch");
    let tag = etag_of(&get(proxy.port, "/data.bin"));
    let r = get_with(proxy.port, "/data.bin", &[("If-Match", &tag)]);
    assert_status(&r, 200, "If-Match match");
}

// ---------------------------------------------------------------------------------------------
// Ranges

#[test]
fn range_first_bytes() {
    let proxy = start_static();
    let r = get_with(proxy.port, "/data.bin", &[("Range", "bytes=0-9")]);
    assert_status(&r, 206, "Range: bytes=0-9");
    assert_eq!(r.header("content-range"), Some("bytes 0-9/1000"));
    assert_eq!(r.header("content-length"), Some("10"));
    assert_eq!(r.body, &data_1000()[..10]);

    let r = get_with(proxy.port, "/data.bin", &[("Range", "bytes=500-599")]);
    assert_status(&r, 206, "Range: bytes=500-599");
    assert_eq!(r.header("content-range"), Some("bytes 500-599/1000"));
    assert_eq!(r.body, &data_1000()[500..600]);
}

#[test]
fn range_suffix() {
    let proxy = start_static();
    let r = get_with(proxy.port, "/data.bin", &[("Range", "bytes=-5")]);
    assert_status(&r, 206, "Range: bytes=-5");
    assert_eq!(r.header("content-range"), Some("bytes 995-999/1000"));
    assert_eq!(r.body, &data_1000()[995..]);
}

#[test]
fn range_beyond_size_is_416() {
    let proxy = start_static();
    let r = get_with(proxy.port, "/data.bin", &[("Range", "bytes=100000-")]);
    assert_status(&r, 416, "Range: bytes=100000-");
    assert_eq!(r.header("content-range"), Some("bytes */1000"));
    // NGINX answers 416 with its error page, not an empty body
    assert!(
        r.text().contains("416 Range Not Satisfiable"),
        "{}",
        r.text()
    );
}

/// A client that disconnects mid-download is not a server error: nothing at `[error]` level
/// (NGINX logs it at `info`), and the server keeps serving.
#[test]
fn client_abort_is_not_logged_as_error() {
    let proxy = start_static();
    for _ in 0..5 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", proxy.port)).expect("connect");
        std::io::Write::write_all(&mut s, b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send");
        let mut buf = [0u8; 1024];
        let _ = std::io::Read::read(&mut s, &mut buf);
        drop(s); // close with most of the 1 MiB body unsent
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(get(proxy.port, "/page.html").status, 200);
    let logs = proxy.logs();
    assert!(
        !logs.contains("[error]"),
        "client aborts logged as errors:\n{logs}"
    );
}

#[test]
fn if_range() {
    let proxy = start_static();
    let tag = etag_of(&get(proxy.port, "/data.bin"));
    let r = get_with(
        proxy.port,
        "/data.bin",
        &[("Range", "bytes=0-9"), ("If-Range", &tag)],
    );
    assert_status(&r, 206, "If-Range: current ETag");
    assert_eq!(r.body, &data_1000()[..10]);

    let r = get_with(
        proxy.port,
        "/data.bin",
        &[("Range", "bytes=0-9"), ("If-Range", "\"5f000000-3e8\"")],
    );
    assert_status(&r, 200, "If-Range: stale ETag");
    assert_eq!(r.body, data_1000());
    assert!(!r.has_header("content-range"));
}

// ---------------------------------------------------------------------------------------------
// Methods, size

#[test]
fn head_has_full_length_and_no_body() {
    let proxy = start_static();
    let raw = build_request("HEAD", "/data.bin", &[("Connection", "keep-alive")], b"");
    let r = assert_no_body_then_clean_followup(proxy.port, &raw, true);
    assert_status(&r, 200, "HEAD /data.bin");
    assert_eq!(r.header("content-length"), Some("1000"));
    assert!(r.has_header("etag"));
    assert!(r.has_header("last-modified"));
}

#[test]
fn post_and_put_are_405() {
    let proxy = start_static();
    let r = send(proxy.port, "POST", "/page.html", &[], b"x=1");
    assert_status(&r, 405, "POST /page.html");
    let r = send(proxy.port, "PUT", "/page.html", &[], b"x=1");
    assert_status(&r, 405, "PUT /page.html");
    // NGINX: POST to a missing file is a 404.
    let r = send(proxy.port, "POST", "/missing.html", &[], b"");
    assert_status(&r, 404, "POST /missing.html");
}

#[test]
fn one_mib_file_is_byte_exact() {
    let proxy = start_static();
    let r = get(proxy.port, "/big.bin");
    assert_status(&r, 200, "GET /big.bin");
    assert_eq!(r.body.len(), 1 << 20);
    assert!(r.body == data_1mib(), "1 MiB body differs from the file");
}

/// Bodies over 128 KiB go out in several writes (whole TCP segments; disk reads of 32 KiB): a
/// large file whole, and ranges that start and end inside
/// a write, arrive byte-exact from the memory copy and from disk (`file_cache: 0`).
#[test]
fn large_file_and_ranges_are_byte_exact_in_parts() {
    let big = data_1mib();
    for cache in ["", "file_cache: 0\n"] {
        let cfg = format!("{cache}{CONFIG}");
        let proxy = start_proxy_with(&cfg, &[("root/big.bin", &big)]);
        for _ in 0..2 {
            let r = get(proxy.port, "/big.bin");
            assert_status(&r, 200, "GET /big.bin");
            assert!(r.body == big, "1 MiB body differs ({cache})");
        }
        for (first, last) in [(40_000, 200_000), (32_767, 32_768), (1_000_000, 1_048_575)] {
            let range = format!("bytes={first}-{last}");
            let r = get_with(proxy.port, "/big.bin", &[("Range", &range)]);
            assert_status(&r, 206, &range);
            assert!(r.body == big[first..=last], "{range} differs ({cache})");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Response header rules

#[test]
fn expires_90d() {
    let proxy = start_static();
    let r = get(proxy.port, "/exp/data.bin");
    assert_status(&r, 200, "GET /exp/data.bin");
    assert_eq!(r.header("cache-control"), Some("max-age=7776000"));
    let exp = r.header("expires").expect("Expires");
    let exp_t = httpdate::parse_http_date(exp).expect("Expires is an HTTP date");
    let target = SystemTime::now() + Duration::from_secs(7_776_000);
    let diff = exp_t
        .duration_since(target)
        .unwrap_or_else(|e| e.duration());
    assert!(
        diff < Duration::from_secs(120),
        "Expires {exp} is not ~90 days ahead"
    );
}

#[test]
fn add_header_always_vs_plain() {
    let proxy = start_static();
    let r = get(proxy.port, "/exp/page.html");
    assert_status(&r, 200, "GET /exp/page.html");
    assert_eq!(r.header("x-plain"), Some("p"));
    assert_eq!(r.header("x-always"), Some("a"));

    // NGINX: on a 404 only `always` headers are added (and no expires headers).
    let r = get(proxy.port, "/exp/missing.html");
    assert_status(&r, 404, "GET /exp/missing.html");
    assert_eq!(
        r.header("x-always"),
        Some("a"),
        "add_header ... always must apply to a 404; headers {:?}",
        r.headers
    );
    assert_eq!(r.header("x-plain"), None, "plain add_header on a 404");
    assert_eq!(r.header("cache-control"), None, "expires on a 404");
    assert_eq!(r.header("expires"), None, "expires on a 404");
}

// ---------------------------------------------------------------------------------------------
// Traversal and symlinks

#[test]
fn traversal_attempts_never_return_the_secret() {
    let proxy = start_static();
    let mut failures = Vec::new();
    for (path, status) in [
        ("/../secret", 400),
        ("/%2e%2e/secret", 400),
        ("/%2e%2e%2fsecret", 400),
        ("/..%2fsecret", 400),
        ("/a/..%2f..%2fsecret", 400),
        ("/secret%00.html", 400),
        ("/al/../../secret", 400),
        ("/al/..%2f..%2fsecret", 400),
        // On Unix a backslash is an ordinary character: a (missing) file name in the root.
        ("/..%5csecret", 404),
        ("/%5c..%5csecret", 404),
        ("/..\\secret", 404),
    ] {
        let r = get(proxy.port, path);
        let leaked = r.body.windows(SECRET.len()).any(|w| w == SECRET);
        if leaked || r.status == 200 || r.status != status {
            failures.push(format!(
                "GET {path}: expected {status}, got {} (secret leaked: {leaked}) body {:?}",
                r.status,
                r.text()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn symlink_out_of_root_is_404_by_default_and_200_with_follow() {
    let proxy = start_static();
    std::os::unix::fs::symlink(proxy.path("secret"), proxy.path("root/link")).unwrap();
    std::os::unix::fs::symlink(proxy.path("outside"), proxy.path("root/dirlink")).unwrap();

    for path in ["/link", "/dirlink/s.txt"] {
        let r = get(proxy.port, path);
        assert_status(&r, 404, path);
        assert!(
            !r.body.windows(SECRET.len()).any(|w| w == SECRET),
            "{path} leaked the secret"
        );
    }

    let r = get(proxy.port, "/follow/link");
    assert_status(&r, 200, "GET /follow/link (symlinks: follow)");
    assert_eq!(r.body, SECRET);
}

#[test]
fn symlink_within_root_is_served() {
    let proxy = start_static();
    std::os::unix::fs::symlink(proxy.path("root/page.html"), proxy.path("root/inlink")).unwrap();
    std::os::unix::fs::symlink("page.html", proxy.path("root/inlink_rel")).unwrap();
    for path in ["/inlink", "/inlink_rel"] {
        let r = get(proxy.port, path);
        assert_status(&r, 200, path);
        assert_eq!(r.text(), "<p>page</p>", "{path}");
    }
}

// ---------------------------------------------------------------------------
// The memory cache of file contents (`file_cache`)
// ---------------------------------------------------------------------------

/// A file served from memory is re-read when it changes, even with the same size within the
/// same second (rewritten in place: new mtime) or swapped for another file with the very same
/// mtime (new inode); ranges are cut from the cached copy; `file_cache: 0` serves from disk.
#[test]
fn file_cache_follows_every_change_of_the_file() {
    for cache in ["", "file_cache: 0\n"] {
        let cfg = format!("{cache}{CONFIG}");
        let proxy = start_proxy_with(&cfg, &[("root/fc.txt", b"AAAAAAAAAA")]);
        let path = proxy.path("root/fc.txt");
        let r = get(proxy.port, "/fc.txt");
        assert_status(&r, 200, "first read");
        assert_eq!(r.body, b"AAAAAAAAAA");
        assert_eq!(get(proxy.port, "/fc.txt").body, b"AAAAAAAAAA", "{cache}");

        // same size, rewritten in place right away
        std::fs::write(&path, b"BBBBBBBBBB").unwrap();
        assert_eq!(get(proxy.port, "/fc.txt").body, b"BBBBBBBBBB", "{cache}");
        let r = get_with(proxy.port, "/fc.txt", &[("Range", "bytes=2-5")]);
        assert_status(&r, 206, "range");
        assert_eq!(r.body, b"BBBB");

        // same size and same mtime, another inode
        replace_keeping_mtime(&path, &proxy.path("root/fc.tmp"), b"CCCCCCCCCC");
        assert_eq!(get(proxy.port, "/fc.txt").body, b"CCCCCCCCCC", "{cache}");
        assert_eq!(
            get_with(proxy.port, "/fc.txt", &[("Range", "bytes=-3")]).body,
            b"CCC"
        );
    }
}

/// Static responses name their headers as NGINX does (`Last-Modified`, `ETag`, `Expires`,
/// `Content-Range`), not in `http`'s lower case.
#[test]
fn static_header_names_are_title_case() {
    let proxy = start_static();
    let r = get_with(proxy.port, "/exp/page.html", &[("Range", "bytes=0-3")]);
    assert_status(&r, 206, "range on /exp/page.html");
    let names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
    for n in [
        "Last-Modified",
        "ETag",
        "Expires",
        "Content-Range",
        "X-Plain",
    ] {
        assert!(names.contains(&n), "`{n}` missing from {names:?}");
    }
}
