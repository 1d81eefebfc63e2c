//! The redirects outrigger makes or rewrites for a `proxy_pass` location, as NGINX 1.22 does
//! (checked side by side with the equivalent `location` blocks): `proxy_redirect default` on
//! the upstream's `Location` and `Refresh`, on a proxied answer and on disk and memory HITs;
//! `proxy_redirect off` and `{from, to}` pairs; and the slash redirect of a `proxy_pass`
//! location's name (NGINX's `auto_redirect`: `/api` → `301 Location: /api/`). NGINX makes both
//! `Location`s absolute (`http://$host:$server_port/api/x`); outrigger keeps them relative, as
//! its directory redirect (README, "Differences from NGINX").

use crate::common::*;

/// Ask the origin for `302 Location: upstream` on each `(path, upstream, want)` and check the
/// `Location` the client gets.
fn check_locations(port: u16, table: &[(&str, String, String)]) {
    let mut failures = Vec::new();
    for (path, upstream, want) in table {
        let header = format!("Location: {upstream}");
        let r = get_with(
            port,
            path,
            &[("X-Origin-Status", "302"), ("X-Origin-Header", &header)],
        );
        if r.status != 302 || r.headers_all("location") != [want.as_str()] {
            failures.push(format!(
                "{path} with Location {upstream}: want {want}, got {} {:?}",
                r.status,
                r.headers_all("location")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `proxy_redirect default` (no key written): a `Location` starting with the `proxy_pass` URL
/// gets the location's prefix instead (without a URI part: the URL plus `/` becomes `/`),
/// whatever the rest; a `Location` naming anything else, in another case or relative, passes
/// unchanged. `Refresh` gets the same after its `url=`.
#[test]
fn proxy_redirect_default_rewrites_location_and_refresh() {
    let origin = start_origin();
    let up = origin.addr();
    let yaml = format!(
        "{QUIET}upstreams: {{app: {{address: \"{up}\"}}}}\nlocations:\n\
         \x20 - prefix: /api/\n    proxy_pass: http://{up}/\n\
         \x20 - prefix: /named/\n    proxy_pass: http://app/\n\
         \x20 - prefix: /nouri/\n    proxy_pass: http://{up}\n\
         \x20 - prefix: /v2/\n    proxy_pass: http://{up}/inner/\n\
         \x20 - regex: ^/re/\n    proxy_pass: http://{up}\n"
    );
    let p = start_proxy(&yaml);
    check_locations(
        p.port,
        &[
            ("/api/a", format!("http://{up}/x?q=1"), "/api/x?q=1".into()),
            ("/api/a", format!("http://{up}/"), "/api/".into()),
            // not the proxy_pass URL: unchanged
            ("/api/a", format!("http://{up}"), format!("http://{up}")),
            ("/api/a", format!("HTTP://{up}/x"), format!("HTTP://{up}/x")),
            ("/api/a", "http://other/x".into(), "http://other/x".into()),
            ("/api/a", "/rel".into(), "/rel".into()),
            // by upstream name: NGINX compares the name as written ...
            ("/named/a", "http://app/x".into(), "/named/x".into()),
            // ... and outrigger also the address it sends as `Host` ($proxy_host)
            ("/named/a", format!("http://{up}/x"), "/named/x".into()),
            ("/nouri/a", format!("http://{up}/x"), "/x".into()),
            ("/v2/a", format!("http://{up}/inner/x"), "/v2/x".into()),
            (
                "/v2/a",
                format!("http://{up}/other"),
                format!("http://{up}/other"),
            ),
            ("/re/a", format!("http://{up}/x"), "/x".into()),
        ],
    );
    // `Refresh`: the URL after `url=` (any case), on any status; without one, unchanged
    for (refresh, want) in [
        (format!("5; url=http://{up}/r"), "5; url=/api/r".to_string()),
        (format!("0;URL=http://{up}/r"), "0;URL=/api/r".into()),
        ("3".into(), "3".into()),
    ] {
        let header = format!("Refresh: {refresh}");
        let r = get_with(p.port, "/api/a", &[("X-Origin-Header", &header)]);
        assert_eq!((r.status, r.header("refresh")), (200, Some(want.as_str())));
    }
    no_panic_in_logs(&p);
}

/// `proxy_redirect: off` leaves `Location` alone; a list of `{from, to}` pairs is tried in
/// order, with `default` where it is listed.
#[test]
fn proxy_redirect_off_and_pairs() {
    let origin = start_origin();
    let up = origin.addr();
    let yaml = format!(
        "{QUIET}locations:\n\
         \x20 - prefix: /off/\n    proxy_pass: http://{up}/\n    proxy_redirect: off\n\
         \x20 - prefix: /pairs/\n    proxy_pass: http://{up}/\n    proxy_redirect:\n\
         \x20     - {{from: \"http://elsewhere/\", to: \"/moved/\"}}\n\
         \x20     - default\n\
         \x20 - prefix: /only/\n    proxy_pass: http://{up}/\n\
         \x20   proxy_redirect: {{from: \"http://{up}/a/\", to: \"http://front/b/\"}}\n"
    );
    let p = start_proxy(&yaml);
    check_locations(
        p.port,
        &[
            ("/off/a", format!("http://{up}/x"), format!("http://{up}/x")),
            ("/pairs/a", "http://elsewhere/y".into(), "/moved/y".into()),
            ("/pairs/a", format!("http://{up}/x"), "/pairs/x".into()),
            (
                "/only/a",
                format!("http://{up}/a/x"),
                "http://front/b/x".into(),
            ),
            (
                "/only/a",
                format!("http://{up}/x"),
                format!("http://{up}/x"),
            ),
        ],
    );
    no_panic_in_logs(&p);
}

/// The rewrite applies to what is served, not to what is stored: a cached `302` gets it on the
/// MISS, on the disk HIT and on the memory HIT the edge answers.
#[test]
fn proxy_redirect_applies_to_cache_hits_from_disk_and_memory() {
    let origin = start_origin();
    let up = origin.addr();
    let yaml = format!(
        "{QUIET}caches: {{z: {{path: \"{{DIR}}/cache\", memory: 4m}}}}\nlocations:\n\
         \x20 - prefix: /c/\n    proxy_pass: http://{up}/\n\
         \x20   add_header: {{X-Proxy-Cache: $upstream_cache_status}}\n\
         \x20   cache: {{zone: z, valid: {{\"302\": 1m}}}}\n"
    );
    let p = start_proxy(&yaml);
    let location = format!("Location: http://{up}/target?x=1");
    let origin_302 = [
        ("X-Origin-Status", "302"),
        ("X-Origin-Header", location.as_str()),
    ];
    for want in ["MISS", "HIT", "HIT"] {
        let r = get_with(p.port, "/c/a", &origin_302);
        assert_eq!((r.status, cache_status(&r)), (302, want), "{r:?}");
        assert_eq!(
            r.headers_all("location"),
            ["/c/target?x=1"],
            "{want}: {r:?}"
        );
    }
    assert_eq!(hits(&origin, "/a"), 1);
    no_panic_in_logs(&p);
}

/// A successful POST invalidates the stored GET of the URI its `Location` names (RFC 9111
/// §4.4): the rewritten one, in the client's URI space (`/c/x`), not the upstream's.
#[test]
fn proxy_redirect_location_is_what_invalidation_reads() {
    let origin = start_origin();
    let up = origin.addr();
    let yaml = format!(
        "{QUIET}caches: {{z: {{path: \"{{DIR}}/cache\"}}}}\nlocations:\n\
         \x20 - prefix: /c/\n    proxy_pass: http://{up}/\n\
         \x20   add_header: {{X-Proxy-Cache: $upstream_cache_status}}\n\
         \x20   cache: {{zone: z, valid: {{\"200\": 1m}}}}\n"
    );
    let p = start_proxy(&yaml);
    for want in ["MISS", "HIT"] {
        assert_eq!(cache_status(&get(p.port, "/c/x")), want);
    }
    let location = format!("Location: http://{up}/x");
    let headers = [
        ("X-Origin-Status", "201"),
        ("X-Origin-Header", location.as_str()),
    ];
    let r = send(p.port, "POST", "/c/new", &headers, b"{}");
    assert_eq!(
        (r.status, r.header("location")),
        (201, Some("/c/x")),
        "{r:?}"
    );
    assert_eq!(cache_status(&get(p.port, "/c/x")), "MISS");
    no_panic_in_logs(&p);
}

/// NGINX's slash redirect: `/api` for a `proxy_pass` location `/api/` (prefix, `^~` or exact)
/// is `301` to `/api/` with the query string, whatever the method, after normalisation, over a
/// regex or a shorter prefix that would match, with the redirecting location's header rules;
/// `413` comes first. Not when a location is named `/api` itself, nor for a static location.
#[test]
fn slash_redirect_for_proxy_pass_locations() {
    let origin = start_origin();
    let up = origin.addr();
    let yaml = format!(
        "{QUIET}locations:\n\
         \x20 - prefix: /\n    root: \"{{DIR}}/www\"\n\
         \x20 - prefix: /api/\n    proxy_pass: http://{up}/\n    add_header: {{X-Loc: api}}\n\
         \x20 - regex: ^/api$\n    root: \"{{DIR}}/www\"\n\
         \x20 - prefix: /nr/\n    no_regex: on\n    proxy_pass: http://{up}/\n\
         \x20 - exact: /ex/\n    proxy_pass: http://{up}/\n\
         \x20 - prefix: /both\n    root: \"{{DIR}}/www\"\n\
         \x20 - prefix: /both/\n    proxy_pass: http://{up}/\n\
         \x20 - prefix: /stat/\n    root: \"{{DIR}}/www\"\n"
    );
    let p = start_proxy_with(&yaml, &[("www/index.html", b"home\n")]);
    let table: [(&[u8], u16, Option<&str>); 10] = [
        (b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n", 301, Some("/api/")),
        (
            b"GET /api?a=1&b=%20 HTTP/1.1\r\nHost: x\r\n\r\n",
            301,
            Some("/api/?a=1&b=%20"),
        ),
        (b"HEAD /api HTTP/1.1\r\nHost: x\r\n\r\n", 301, Some("/api/")),
        (
            b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab",
            301,
            Some("/api/"),
        ),
        (b"GET //api HTTP/1.1\r\nHost: x\r\n\r\n", 301, Some("/api/")),
        (
            b"GET /ap%69 HTTP/1.1\r\nHost: x\r\n\r\n",
            301,
            Some("/api/"),
        ),
        (b"GET /nr HTTP/1.1\r\nHost: x\r\n\r\n", 301, Some("/nr/")),
        (b"GET /ex HTTP/1.1\r\nHost: x\r\n\r\n", 301, Some("/ex/")),
        // a location named `/both` serves it (a static one: no such file)
        (b"GET /both HTTP/1.1\r\nHost: x\r\n\r\n", 404, None),
        // static locations do not ask for it (the `/` location has no such file)
        (b"GET /stat HTTP/1.1\r\nHost: x\r\n\r\n", 404, None),
    ];
    let mut failures = Vec::new();
    for (raw, status, location) in table {
        let r = request(p.port, raw);
        let body_ok = status != 301 || r.body.is_empty();
        if r.status != status || r.header("location") != location || !body_ok {
            failures.push(format!(
                "{}: want {status} {location:?}, got {r:?}",
                String::from_utf8_lossy(raw).lines().next().unwrap_or("")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let r = get(p.port, "/api");
    assert_eq!(r.header("x-loc"), Some("api"), "{r:?}");
    assert_eq!(r.header("content-length"), Some("0"), "{r:?}");
    assert_eq!(
        origin.hit_count(),
        0,
        "a redirect never reaches the upstream"
    );
    let big = request(
        p.port,
        b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(big.status, 413, "{big:?}");
    // the location itself is proxied as before
    let r = get(p.port, "/api/x");
    assert_eq!((r.status, r.json()["uri"].as_str()), (200, Some("/x")));
    no_panic_in_logs(&p);
}

/// A request the slash redirect answers is never a memory-tier HIT of another location, even
/// when that location's key would find one (a `/` location keyed without the URI).
#[test]
fn slash_redirect_wins_over_a_memory_hit() {
    let origin = start_origin();
    let up = origin.addr();
    let yaml = format!(
        "{QUIET}caches: {{z: {{path: \"{{DIR}}/cache\", memory: 4m}}}}\nlocations:\n\
         \x20 - prefix: /\n    proxy_pass: http://{up}\n\
         \x20   add_header: {{X-Proxy-Cache: $upstream_cache_status}}\n\
         \x20   cache: {{zone: z, key: $scheme$proxy_host, valid: {{\"200\": 1m}}}}\n\
         \x20 - prefix: /api/\n    proxy_pass: http://{up}/\n"
    );
    let p = start_proxy(&yaml);
    for want in ["MISS", "HIT", "HIT"] {
        let r = get(p.port, "/");
        assert_eq!((r.status, cache_status(&r)), (200, want), "{r:?}");
    }
    let r = get(p.port, "/api");
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("/api/")),
        "{r:?}"
    );
    no_panic_in_logs(&p);
}

/// `proxy_redirect` values `outrigger -t` refuses: without `proxy_pass`, an unknown word,
/// variables (not supported), a pair without `to`.
#[test]
fn proxy_redirect_config_errors() {
    for (loc, needle) in [
        ("root: /tmp\n    proxy_redirect: off", "needs `proxy_pass`"),
        (
            "proxy_pass: http://127.0.0.1:1/\n    proxy_redirect: sometimes",
            "expected `default`",
        ),
        (
            "proxy_pass: http://127.0.0.1:1/\n    proxy_redirect: [{from: http://$host/, to: /}]",
            "variables",
        ),
        (
            "proxy_pass: http://127.0.0.1:1/\n    proxy_redirect: [{from: /a}]",
            "`to` is missing",
        ),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("c.yaml");
        let yaml = format!("listen: [\"127.0.0.1:1\"]\nlocations:\n  - prefix: /\n    {loc}\n");
        std::fs::write(&path, yaml).expect("write config");
        let out = run_outrigger(&["-t", "-c", path.to_str().expect("utf-8 path")]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(needle),
            "{loc}: {err}"
        );
        assert!(err.contains("proxy_redirect"), "{loc}: {err}");
    }
}
