//! The redirects outrigger makes for a `proxy_pass` location, as NGINX 1.22 does (checked side
//! by side with the equivalent `location` blocks): the slash redirect of a `proxy_pass`
//! location's name (NGINX's `auto_redirect`: `/api` → `301 Location: /api/`). NGINX makes the
//! `Location` absolute (`http://$host:$server_port/api/`); outrigger keeps it relative, as its
//! directory redirect (README, "Differences from NGINX").

use crate::common::*;

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
