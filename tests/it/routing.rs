//! Location selection with NGINX precedence, URI normalisation before matching, and the
//! `proxy_pass` URI rewrite table. Every expectation below was checked against NGINX 1.22 with
//! the equivalent `server { location ... }` configuration.

use crate::common::*;

/// The static locations of the precedence config: (name, matcher YAML). Each location has its own
/// root `{DIR}/roots/<name>`, and every root holds every test path with the location's name as
/// content, so the body of a 200 names the location that served it.
const LOCATIONS: &[(&str, &str)] = &[
    ("exact_js", "exact: /exact.js"),
    ("docs", "prefix: /docs/"),
    ("docs_long", "prefix: /docs/long/"),
    ("noregex", "prefix: /static/\n    no_regex: on"),
    ("static_deep", "prefix: /static/deep/"),
    ("re_js", r"regex: '\.js$'"),
    ("re_docs", r"regex: '^/docs/.*\.(js|css)$'"),
    ("re_img", r"regex_i: '\.(png|jpg)$'"),
    ("script_exact", "exact: /script.js"),
];

/// Every path any precedence test requests (as a file in every root).
const FILES: &[&str] = &[
    "/exact.js",
    "/script.js",
    "/docs/x.txt",
    "/docs/long/x.txt",
    "/docs/a.js",
    "/docs/a.JS",
    "/docs/s.css",
    "/docs/long/a.js",
    "/docs/pic.JPG",
    "/static/a.js",
    "/static/x.txt",
    "/static/deep/a.js",
    "/static/deep/x.txt",
    "/a.js",
    "/A.JS",
    "/img/LOGO.PNG",
    "/img/logo.png",
    "/b.css",
    "/zzz",
];

fn start_precedence_proxy() -> Proxy {
    let mut yaml = String::from("listen: [\"127.0.0.1:{PORT}\"]\nlocations:\n");
    for (name, matcher) in LOCATIONS {
        yaml.push_str(&format!(
            "  - {matcher}\n    root: \"{{DIR}}/roots/{name}\"\n"
        ));
    }
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, _) in LOCATIONS {
        for f in FILES {
            files.push((format!("roots/{name}{f}"), name.as_bytes().to_vec()));
        }
    }
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_slice()))
        .collect();
    start_proxy_with(&yaml, &refs)
}

/// Request every `(raw request target, expected)` and assert all of them at once, where
/// `expected` is a location name (200 with that body) or a bare status such as `"404"`.
fn check_table(proxy: &Proxy, table: &[(&str, &str)]) {
    let mut failures = Vec::new();
    for (target, expected) in table {
        let r = get(proxy.port, target);
        let got = if r.status == 200 {
            r.text()
        } else {
            r.status.to_string()
        };
        if got != *expected {
            failures.push(format!(
                "GET {target}: expected {expected}, got status {} body {:?}",
                r.status,
                r.text()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "location selection mismatches:\n  {}\nconfig:\n{}",
        failures.join("\n  "),
        proxy.config
    );
}

#[test]
fn exact_location_beats_everything() {
    let proxy = start_precedence_proxy();
    check_table(
        &proxy,
        &[
            // `= /exact.js` beats the regex `\.js$` that also matches.
            ("/exact.js", "exact_js"),
            // The query string does not take part in matching.
            ("/exact.js?x=1", "exact_js"),
            // `= /script.js` is last in config order and still wins over the first regex.
            ("/script.js", "script_exact"),
            // An exact location matches only the whole path.
            ("/script.js/", "404"),
        ],
    );
}

#[test]
fn longest_prefix_wins() {
    let proxy = start_precedence_proxy();
    check_table(
        &proxy,
        &[
            ("/docs/x.txt", "docs"),
            ("/docs/long/x.txt", "docs_long"),
            ("/static/deep/x.txt", "static_deep"),
        ],
    );
}

#[test]
fn no_regex_prefix_beats_regexes() {
    let proxy = start_precedence_proxy();
    check_table(
        &proxy,
        &[
            // `^~ /static/` is the longest prefix: regexes are not checked.
            ("/static/a.js", "noregex"),
            ("/static/x.txt", "noregex"),
            // The longest prefix is the plain `/static/deep/` (not `^~`), so regexes are
            // checked and `\.js$` wins.
            ("/static/deep/a.js", "re_js"),
        ],
    );
}

#[test]
fn first_regex_in_config_order_wins() {
    let proxy = start_precedence_proxy();
    check_table(
        &proxy,
        &[
            // Matches prefix /docs/, `\.js$` and `^/docs/.*\.(js|css)$`: the first regex wins.
            ("/docs/a.js", "re_js"),
            // Regex beats even the longer plain prefix /docs/long/.
            ("/docs/long/a.js", "re_js"),
            // Only the second regex matches: it beats the plain prefix /docs/.
            ("/docs/s.css", "re_docs"),
            // No prefix at all.
            ("/a.js", "re_js"),
        ],
    );
}

#[test]
fn regex_i_is_case_insensitive_and_regex_is_not() {
    let proxy = start_precedence_proxy();
    check_table(
        &proxy,
        &[
            ("/img/logo.png", "re_img"),
            ("/img/LOGO.PNG", "re_img"),
            ("/docs/pic.JPG", "re_img"),
            // `~ \.js$` is case-sensitive: nothing matches.
            ("/A.JS", "404"),
        ],
    );
}

#[test]
fn falls_back_to_longest_prefix_when_no_regex_matches() {
    let proxy = start_precedence_proxy();
    check_table(
        &proxy,
        &[
            // `\.js$` does not match `.JS`: back to the longest prefix.
            ("/docs/a.JS", "docs"),
            ("/docs/long/x.txt", "docs_long"),
        ],
    );
}

#[test]
fn nothing_matches_is_404() {
    let proxy = start_precedence_proxy();
    check_table(
        &proxy,
        &[
            ("/zzz", "404"),
            ("/b.css", "404"),
            // Prefix `/docs/` does not match `/docs`.
            ("/docs", "404"),
            ("/", "404"),
        ],
    );
    let r = get(proxy.port, "/zzz");
    assert_eq!(r.status, 404);
    assert!(
        r.text().contains("404"),
        "expected an error page, got {:?}",
        r.text()
    );
}

#[test]
fn uri_is_normalised_before_matching() {
    let proxy = start_precedence_proxy();
    check_table(
        &proxy,
        &[
            ("/%73cript.js", "script_exact"),
            ("/x/../script.js", "script_exact"),
            ("//script.js", "script_exact"),
            ("/./script.js", "script_exact"),
            ("/docs/../script.js", "script_exact"),
            ("/%64ocs/x.txt", "docs"),
            ("/docs//long/x.txt", "docs_long"),
        ],
    );
}

#[test]
fn climbing_above_root_and_nul_are_400() {
    let proxy = start_precedence_proxy();
    check_table(
        &proxy,
        &[
            ("/../x", "400"),
            ("/%2e%2e/x", "400"),
            ("/docs/../../x", "400"),
            ("/a%00b", "400"),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// proxy_pass URI rewriting

fn start_rewrite_proxy(origin: &Origin) -> Proxy {
    let yaml = format!(
        r#"listen: ["127.0.0.1:{{PORT}}"]
upstreams:
  up: {{address: "127.0.0.1:{origin_port}"}}
locations:
  - prefix: /api/
    proxy_pass: http://up/
  - prefix: /a/
    proxy_pass: http://up/b/
  - prefix: /raw/
    proxy_pass: http://up
  - exact: /e
    proxy_pass: http://up/target
  - regex: '\.php$'
    proxy_pass: http://up
  - prefix: /
    proxy_pass: http://up/
"#,
        origin_port = origin.port
    );
    start_proxy(&yaml)
}

/// GET every `(request target, expected upstream request target)` through the proxy and assert
/// all of them at once against the origin's echoed `uri`.
fn check_rewrites(proxy: &Proxy, table: &[(&str, &str)]) {
    let mut failures = Vec::new();
    for (target, expected) in table {
        let r = get(proxy.port, target);
        if r.status != 200 {
            failures.push(format!(
                "GET {target}: expected upstream uri {expected}, got status {} body {:?}",
                r.status,
                r.text()
            ));
            continue;
        }
        let got = r.json()["uri"].as_str().unwrap_or_default().to_string();
        if got != *expected {
            failures.push(format!(
                "GET {target}: expected upstream uri {expected}, got {got}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "proxy_pass rewrite mismatches:\n  {}\nconfig:\n{}",
        failures.join("\n  "),
        proxy.config
    );
}

#[test]
fn proxy_pass_with_uri_replaces_the_prefix() {
    let origin = start_origin();
    let proxy = start_rewrite_proxy(&origin);
    check_rewrites(
        &proxy,
        &[
            ("/api/x?q=1", "/x?q=1"),
            ("/api/", "/"),
            ("/api/deep/er/path", "/deep/er/path"),
            // The rewritten part is the normalised URI, re-escaped; the query stays raw.
            ("/api/a%20b?x=%41", "/a%20b?x=%41"),
            ("/%61pi/x", "/x"),
            ("/api//x", "/x"),
            ("/api/a%2Fb", "/a/b"),
        ],
    );
}

#[test]
fn proxy_pass_slash_on_root_prefix_is_unchanged() {
    let origin = start_origin();
    let proxy = start_rewrite_proxy(&origin);
    check_rewrites(
        &proxy,
        &[("/y/z?k=v", "/y/z?k=v"), ("/", "/"), ("/q", "/q")],
    );
}

#[test]
fn proxy_pass_with_other_uri_replaces_prefix() {
    let origin = start_origin();
    let proxy = start_rewrite_proxy(&origin);
    check_rewrites(
        &proxy,
        &[
            ("/a/c", "/b/c"),
            ("/a/c/d?e=f", "/b/c/d?e=f"),
            ("/a/", "/b/"),
        ],
    );
}

#[test]
fn proxy_pass_without_uri_passes_the_raw_request_uri() {
    let origin = start_origin();
    let proxy = start_rewrite_proxy(&origin);
    check_rewrites(
        &proxy,
        &[
            ("/raw/a%20b?x=%41", "/raw/a%20b?x=%41"),
            ("/raw/%7Efoo", "/raw/%7Efoo"),
            ("/raw/a+b?c", "/raw/a+b?c"),
            // Matched after decoding, but passed exactly as received.
            ("/%72aw/q", "/%72aw/q"),
            ("/raw//x", "/raw//x"),
            ("/raw/x/../y", "/raw/x/../y"),
            // A regex location (no URI part allowed) passes it raw as well.
            ("/x/y.php?z=%41", "/x/y.php?z=%41"),
        ],
    );
}

#[test]
fn exact_location_with_proxy_pass_uri() {
    let origin = start_origin();
    let proxy = start_rewrite_proxy(&origin);
    check_rewrites(&proxy, &[("/e", "/target"), ("/e?x=1", "/target?x=1")]);
}
