//! Black-box tests of what a shared cache may store and replay (RFC 9111, and NGINX where the
//! RFC allows both): an ignored `Set-Cookie` is never stored, qualified `no-cache` and invalid
//! freshness directives are not stored, a cold HEAD fills the entry, the key names the request
//! sent upstream, and `If-Modified-Since` gets one rule for HITs and static files.
//!
//! Every test uses its own paths; the origin is steered by `X-Origin-*` request headers (see
//! `common::origin`) and counts requests per URI, which a HIT never reaches.

use std::time::Duration;

use crate::common::*;

/// `$upstream_cache_status`, as every location here adds it.
const XC: &str = "X-Proxy-Cache";

/// A config with one upstream `app` (the origin), zone `c` in the temp dir, `error_log` at
/// `info`, and `locations` (YAML list items) appended.
fn yaml(origin: u16, locations: &str) -> String {
    format!(
        "listen: [\"127.0.0.1:{{PORT}}\"]\n\
         error_log: {{level: info, target: stderr}}\n\
         access_log: off\n\
         upstreams:\n  app: {{address: \"127.0.0.1:{origin}\", connect_timeout: 1s, read_timeout: 5s, send_timeout: 1s}}\n\
         caches:\n  c: {{path: \"{{DIR}}/cache\"}}\n\
         locations:\n{locations}"
    )
}

/// A location `prefix` proxied to `proxy_pass` with `cache: {zone: c, <cache>}`.
fn cached(prefix: &str, proxy_pass: &str, cache: &str) -> String {
    format!(
        "  - prefix: {prefix}\n    proxy_pass: {proxy_pass}\n    \
         add_header: {{{XC}: {{value: $upstream_cache_status, always: on}}}}\n    \
         cache: {{zone: c, {cache}}}\n"
    )
}

#[track_caller]
fn expect(r: &Response, status: u16, cache: &str, what: &str) {
    assert!(
        r.status == status && cache_status(r) == cache,
        "{what}: want {status} {cache}, got {} {}; headers {:?}",
        r.status,
        cache_status(r),
        r.headers
    );
}

// ---------------------------------------------------------------------------
// 1. Set-Cookie
// ---------------------------------------------------------------------------

/// With `ignore_headers: [Set-Cookie]`, the entry is stored without the cookie: the client
/// whose request filled it gets its own `Set-Cookie`, nobody else gets it (disk HIT, memory
/// HIT), and the log says so at info once for the fill.
#[test]
fn ignored_set_cookie_is_not_stored() {
    let origin = start_origin();
    let proxy = start_proxy(&yaml(
        origin.port,
        &cached(
            "/",
            "http://app",
            r#"valid: {"200": 1m}, ignore_headers: [Set-Cookie]"#,
        ),
    ));
    let alice = get_with(
        proxy.port,
        "/sc/a",
        &[
            ("X-Origin-Header", "Set-Cookie: session=SECRET-alice"),
            // not the default echo, whose body would hold the request's headers
            ("X-Origin-Body-Size", "10"),
        ],
    );
    expect(&alice, 200, "MISS", "alice");
    assert_eq!(alice.header("set-cookie"), Some("session=SECRET-alice"));
    for i in 0..3 {
        // bob's origin answer would set his own cookie, but he is answered from the cache
        let bob = get_with(
            proxy.port,
            "/sc/a",
            &[
                ("X-Origin-Header", "Set-Cookie: session=SECRET-bob"),
                ("X-Origin-Body-Size", "10"),
            ],
        );
        expect(&bob, 200, "HIT", &format!("bob {i}"));
        assert_eq!(
            bob.header("set-cookie"),
            None,
            "bob {i} got someone's cookie: {:?}",
            bob.headers
        );
    }
    assert_eq!(hits(&origin, "/sc/a"), 1);
    eventually("the info line", Duration::from_secs(5), || {
        proxy.stderr().matches("without its Set-Cookie").count() == 1
    });
    let entry = entry_files(&proxy.path("cache"));
    assert_eq!(entry.len(), 1);
    let bytes = std::fs::read(&entry[0].0).expect("entry file");
    assert!(
        !String::from_utf8_lossy(&bytes).contains("SECRET"),
        "the entry file holds the cookie"
    );
}

// ---------------------------------------------------------------------------
// 2. qualified no-cache, invalid freshness
// ---------------------------------------------------------------------------

/// `no-cache="X-Secret"` is no-cache (RFC 9111 §5.2.2.4: not replayed without revalidation;
/// here not stored), and an invalid `max-age` makes the response stale (RFC 9111 §4.2.1): not
/// stored, even with `valid` or `Expires`. A valid `s-maxage` is what a shared cache uses.
#[test]
fn qualified_no_cache_and_invalid_max_age_are_not_stored() {
    let origin = start_origin();
    let proxy = start_proxy(&yaml(
        origin.port,
        &cached("/", "http://app", r#"valid: {"200": 1m}"#),
    ));
    let in_an_hour =
        httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(3600));
    let expires = format!("Expires: {in_an_hour}");
    let cases: &[(&str, &[&str])] = &[
        (
            "qualified",
            &["Cache-Control: no-cache=\"X-Secret\"", "X-Secret: s1"],
        ),
        (
            "qualified-list",
            &["Cache-Control: public, no-cache=\"X-Secret, X-Other\", max-age=60"],
        ),
        ("abc", &["Cache-Control: max-age=abc"]),
        ("abc-expires", &["Cache-Control: max-age=abc", &expires]),
        ("s-abc", &["Cache-Control: s-maxage=abc, max-age=60"]),
    ];
    for (name, headers) in cases {
        let path = format!("/nc/{name}");
        let h: Vec<(&str, &str)> = headers.iter().map(|v| ("X-Origin-Header", *v)).collect();
        for i in 0..2 {
            expect(
                &get_with(proxy.port, &path, &h),
                200,
                "MISS",
                &format!("{headers:?} {i}"),
            );
        }
        assert_eq!(hits(&origin, &path), 2, "{headers:?}: stored");
    }
    // the controls: a valid s-maxage beside an invalid max-age, and no Cache-Control (`valid`)
    for (path, h) in [
        (
            "/nc/s-ok",
            vec![("X-Origin-Header", "Cache-Control: s-maxage=60, max-age=abc")],
        ),
        ("/nc/plain", vec![]),
    ] {
        expect(&get_with(proxy.port, path, &h), 200, "MISS", path);
        expect(&get_with(proxy.port, path, &h), 200, "HIT", path);
    }
}

// ---------------------------------------------------------------------------
// 5. If-Modified-Since: one rule for HITs and static files
// ---------------------------------------------------------------------------

/// Under each `if_modified_since` mode, a cached response (cold MISS, disk HIT, memory HIT) and
/// a static file answer the same `If-Modified-Since` dates alike, as NGINX: `exact` 304 only
/// for the date itself, `before` for it and any later date, `off` never.
#[test]
fn if_modified_since_is_one_rule_for_hits_and_static_files() {
    const LM: &str = "Mon, 01 Jan 2024 00:00:00 GMT";
    const LATER: &str = "Fri, 01 Jan 2100 00:00:00 GMT";
    const EARLIER: &str = "Mon, 01 Jan 2001 00:00:00 GMT";
    let origin = start_origin();
    let lm_header = format!("Last-Modified: {LM}");
    for (mode, equal, later) in [("exact", 304, 200), ("before", 304, 304), ("off", 200, 200)] {
        let locations = format!(
            "  - prefix: /files/\n    root: \"{{DIR}}/www\"\n{}",
            cached("/", "http://app", r#"valid: {"200": 1m}"#)
        );
        let config = yaml(origin.port, &locations).replace(
            "access_log: off\n",
            &format!("access_log: off\nif_modified_since: {mode}\n"),
        );
        let proxy = start_proxy_with(&config, &[("www/files/f.txt", b"hello")]);
        let file_lm = get(proxy.port, "/files/f.txt")
            .header("last-modified")
            .expect("the file's Last-Modified")
            .to_string();
        let origin_h = ("X-Origin-Header", lm_header.as_str());
        // a cold MISS with a later date
        let path = format!("/ims/{mode}/cold");
        let r = get_with(proxy.port, &path, &[origin_h, ("If-Modified-Since", LATER)]);
        expect(&r, later, "MISS", &format!("{mode}: cold MISS, later date"));
        // filled, then the later date first (a disk HIT, then memory HITs)
        let path = format!("/ims/{mode}/hit");
        expect(
            &get_with(proxy.port, &path, &[origin_h]),
            200,
            "MISS",
            "fill",
        );
        for (since, file_since, want) in [
            (LATER, LATER, later),
            (LATER, LATER, later),
            (LM, file_lm.as_str(), equal),
            (EARLIER, EARLIER, 200),
        ] {
            let what = format!("{mode}: If-Modified-Since {since}");
            let r = get_with(proxy.port, &path, &[origin_h, ("If-Modified-Since", since)]);
            expect(&r, want, "HIT", &format!("{what}, cached"));
            let f = get_with(
                proxy.port,
                "/files/f.txt",
                &[("If-Modified-Since", file_since)],
            );
            assert_eq!(f.status, want, "{what}, static file");
        }
        assert_eq!(hits(&origin, &path), 1);
    }
}

// ---------------------------------------------------------------------------
// 4. the key names the request sent upstream
// ---------------------------------------------------------------------------

/// With a URI part in `proxy_pass`, the upstream is asked for the normalised URI, so the
/// spellings of one path share an entry (NGINX 1.22: one MISS, then HITs; here through the disk
/// and the memory tier). Without one, the client's target goes upstream as sent: spellings that
/// reach the upstream differently are different entries. The query stays in the key.
#[test]
fn the_key_names_the_request_sent_upstream() {
    let origin = start_origin();
    let rules = r#"valid: {"200": 1m}"#;
    let locations = format!(
        "{}{}",
        cached("/count/", "http://app/count/", rules),
        cached("/raw/", "http://app", rules)
    );
    let proxy = start_proxy(&yaml(origin.port, &locations));
    for (i, path) in [
        "/count/x",
        "/count/./x",
        "//count/x",
        "/%63ount/x",
        "/count/x",
    ]
    .iter()
    .enumerate()
    {
        let r = get(proxy.port, path);
        expect(&r, 200, if i == 0 { "MISS" } else { "HIT" }, path);
        assert_eq!(r.json()["uri"], "/count/x", "{path}");
    }
    assert_eq!(origin.hit_count(), 1, "{:?}", origin.recorded());
    expect(&get(proxy.port, "/count/./x?a=1"), 200, "MISS", "query a=1");
    expect(
        &get(proxy.port, "/count/x?a=1"),
        200,
        "HIT",
        "query a=1 again",
    );
    expect(&get(proxy.port, "/count/x?a=2"), 200, "MISS", "query a=2");
    // without a URI part: what the upstream sees differs, so do the entries
    for path in ["/raw/x", "/raw/./x", "/%72aw/x"] {
        let r = get(proxy.port, path);
        expect(&r, 200, "MISS", path);
        assert_eq!(r.json()["uri"], *path, "sent upstream as it came");
        expect(&get(proxy.port, path), 200, "HIT", path);
    }
}

// ---------------------------------------------------------------------------
// 3. a cold HEAD fills the entry
// ---------------------------------------------------------------------------

/// A HEAD on a cold key is fetched with GET (NGINX's `proxy_cache_convert_head on`) and stored,
/// even when the body arrives after the header has been answered: the GET that follows is a
/// HIT with the whole body, and the origin was asked once.
#[test]
fn a_cold_head_fills_the_entry() {
    let origin = start_origin();
    let proxy = start_proxy(&yaml(
        origin.port,
        &cached("/", "http://app", r#"valid: {"200": 1m}"#),
    ));
    let slow = [("X-Origin-Chunks", "3"), ("X-Origin-Chunk-Delay-Ms", "200")];
    let h = head_with(proxy.port, "/head/a", &slow);
    expect(&h, 200, "MISS", "cold HEAD");
    assert!(h.body.is_empty());
    let g = get_with(proxy.port, "/head/a", &slow);
    expect(&g, 200, "HIT", "GET after the cold HEAD");
    let body: Vec<u8> = (0..3).flat_map(|i| chunk_text(i).into_bytes()).collect();
    assert_same_bytes(&g.body, &body, "the stored body");
    assert_eq!(
        hits_m(&origin, "GET", "/head/a"),
        1,
        "{:?}",
        origin.recorded()
    );
    assert_eq!(hits(&origin, "/head/a"), 1);
    // a HEAD on a stored entry is a HIT
    expect(
        &head_with(proxy.port, "/head/a", &slow),
        200,
        "HIT",
        "warm HEAD",
    );
}
