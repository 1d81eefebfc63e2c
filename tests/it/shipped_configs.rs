//! Acceptance checks of the shipped configurations: `conf/outrigger.yaml` (the Alertmanager
//! sidecar) and `conf/static-api.yaml` (static site + API), each run from a copy of `conf/` and
//! `static/` in a temp dir, with the addresses set through the environment as in Kubernetes.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

/// The shipped `conf/` + `static/` copied into a temp dir (the proxy's), and an outrigger
/// running one of the configs from there, started from an unrelated working directory.
struct Shipped {
    proxy: Proxy,
    _cwd: tempfile::TempDir,
}

impl Shipped {
    fn start(config: &str, env: &[(&str, &str)]) -> Shipped {
        let tmp = tempfile::Builder::new()
            .prefix("outrigger-shipped-")
            .tempdir()
            .expect("temp dir");
        copy_shipped(tmp.path());
        let cwd = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let config_path = tmp.path().join("conf").join(config);
        let mut cmd = Command::new(OUTRIGGER_BIN);
        cmd.arg("-c")
            .arg(&config_path)
            .env("OUTRIGGER_LISTEN", &listen)
            .env(
                "OUTRIGGER_ADMIN_LISTEN",
                format!("127.0.0.1:{}", free_port()),
            )
            .env("OUTRIGGER_CACHE_DIR", tmp.path().join("cache"))
            .env_remove("OUTRIGGER_PID_FILE")
            .envs(env.iter().copied())
            .current_dir(cwd.path());
        let mut proxy = Proxy::spawn(&mut cmd, tmp, config_path, port, 0);
        proxy.wait_ready(STARTUP_TIMEOUT);
        Shipped { proxy, _cwd: cwd }
    }

    fn static_file(&self, rel: &str) -> Vec<u8> {
        let p = self.proxy.path("static").join(rel);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }
}

impl std::ops::Deref for Shipped {
    type Target = Proxy;

    fn deref(&self) -> &Proxy {
        &self.proxy
    }
}

/// An address nothing listens on.
fn dead_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

// ---------------------------------------------------------------------------------------------
// `-t` on the shipped files in place
// ---------------------------------------------------------------------------------------------

#[test]
fn shipped_configs_pass_config_test_in_place() {
    for name in ["outrigger.yaml", "static-api.yaml"] {
        let path = Path::new(MANIFEST_DIR).join("conf").join(name);
        let out = run_outrigger(&["-t", "-c", path.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "`outrigger -t -c {}` failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// conf/outrigger.yaml: the Alertmanager sidecar
// ---------------------------------------------------------------------------------------------

fn alertmanager(origin_addr: &str) -> Shipped {
    Shipped::start("outrigger.yaml", &[("ALERTMANAGER_ADDR", origin_addr)])
}

#[test]
fn sidecar_serves_script_js_from_static_with_90d_expiry() {
    let origin = start_origin();
    let s = alertmanager(&origin.addr());
    let expected = s.static_file("script.js");
    for path in ["/script.js", "/%73cript.js"] {
        let r = get(s.port, path);
        assert_eq!(r.status, 200, "{path}: {}\n{}", r.text(), s.logs());
        assert!(
            r.body == expected,
            "{path}: body differs from static/script.js"
        );
        assert_eq!(
            r.header("cache-control"),
            Some("max-age=7776000"),
            "{path}: {:?}",
            r.headers
        );
        assert_eq!(r.headers_all("cache-control").len(), 1, "{:?}", r.headers);
        assert_expires_in_90_days(&r);
        assert!(
            !r.has_header("x-proxy-cache"),
            "{path}: static response has X-Proxy-Cache: {:?}",
            r.headers
        );
    }
    assert_eq!(
        origin.hit_count(),
        0,
        "script.js must not reach the upstream"
    );
}

#[test]
fn sidecar_proxies_api_with_client_host_and_public_cache_control() {
    let origin = start_origin();
    let s = alertmanager(&origin.addr());

    let r = get_with(
        s.port,
        "/api/v2/status",
        &[("Host", "alertmanager.example.com:8080")],
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text(), s.logs());
    let echo = r.json();
    assert_eq!(echo["uri"], "/api/v2/status");
    assert_eq!(
        echo["headers"]["host"], "alertmanager.example.com",
        "Host is $host: the client's host without port"
    );
    assert_eq!(
        r.headers_all("cache-control"),
        vec!["public"],
        "{:?}",
        r.headers
    );
    assert!(!r.has_header("expires"), "{:?}", r.headers);
    assert_eq!(
        r.header("x-proxy-cache"),
        Some("MISS"),
        "the API has a micro-cache: {:?}",
        r.headers
    );

    // Alertmanager answers with its own `Cache-Control: no-store`; set_header replaces it.
    let r = get_with(
        s.port,
        "/api/v2/alerts?active=true",
        &[("X-Origin-Header", "Cache-Control: no-store")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["uri"], "/api/v2/alerts?active=true");
    assert_eq!(
        r.headers_all("cache-control"),
        vec!["public"],
        "{:?}",
        r.headers
    );
    assert!(!r.has_header("expires"), "{:?}", r.headers);
    assert_eq!(r.header("x-proxy-cache"), Some("MISS"), "{:?}", r.headers);
}

/// The API micro-cache collapses reads, and a write through the proxy (a new silence) is visible
/// to the very next read: the write drops the location's micro-cache.
#[test]
fn sidecar_api_micro_cache_never_hides_a_new_silence() {
    let origin = start_origin();
    let s = alertmanager(&origin.addr());
    let first = get(s.port, "/api/v2/silences?filter=a");
    assert_eq!(first.header("x-proxy-cache"), Some("MISS"));
    let again = get(s.port, "/api/v2/silences?filter=a");
    assert_eq!(
        again.header("x-proxy-cache"),
        Some("HIT"),
        "{:?}",
        again.headers
    );
    assert_eq!(origin.hit_count(), 1);
    let r = send(
        s.port,
        "POST",
        "/api/v2/silences",
        &[("Content-Type", "application/json")],
        b"{}",
    );
    assert_eq!(r.status, 200);
    let after = get(s.port, "/api/v2/silences?filter=a");
    assert_eq!(
        after.header("x-proxy-cache"),
        Some("MISS"),
        "a cached list survived a POST: {:?}",
        after.headers
    );
    assert_eq!(origin.hit_count(), 3);
    // and the micro-cache is short: 1 s
    std::thread::sleep(std::time::Duration::from_millis(1300));
    let later = get(s.port, "/api/v2/silences?filter=a");
    assert_ne!(
        later.header("x-proxy-cache"),
        Some("HIT"),
        "{:?}",
        later.headers
    );
}

/// `/`, `/-/healthy` and `/metrics` are proxied but never cached.
#[test]
fn sidecar_does_not_cache_the_rest() {
    let origin = start_origin();
    let s = alertmanager(&origin.addr());
    for path in ["/", "/-/healthy", "/metrics"] {
        for _ in 0..2 {
            let r = get(s.port, path);
            assert_eq!(r.status, 200);
            assert!(!r.has_header("x-proxy-cache"), "{path}: {:?}", r.headers);
        }
    }
    assert_eq!(origin.hit_count(), 6);
}

#[test]
fn sidecar_proxied_static_extensions_get_90d() {
    let origin = start_origin();
    let s = alertmanager(&origin.addr());
    for (path, origin_cc) in [
        ("/some/app.js", None),
        ("/static/style.css", Some("Cache-Control: no-store")),
        ("/favicon.ico", None),
    ] {
        let mut headers = vec![("Host", "am.local")];
        if let Some(h) = origin_cc {
            headers.push(("X-Origin-Header", h));
        }
        let r = get_with(s.port, path, &headers);
        assert_eq!(r.status, 200, "{path}: {}\n{}", r.text(), s.logs());
        assert_eq!(r.json()["uri"], path, "proxied to the origin unchanged");
        assert_eq!(
            r.headers_all("cache-control"),
            vec!["public, max-age=7776000"],
            "{path}: {:?}",
            r.headers
        );
        assert_expires_in_90_days(&r);
        assert_eq!(
            r.header("x-proxy-cache"),
            Some("MISS"),
            "{path}: {:?}",
            r.headers
        );
        // cached although Alertmanager says no-store (ignore_headers), served with the same headers
        let again = get_with(s.port, path, &headers);
        assert_eq!(
            again.header("x-proxy-cache"),
            Some("HIT"),
            "{path}: {:?}",
            again.headers
        );
        assert_eq!(again.body, r.body, "{path}");
        assert_eq!(
            again.headers_all("cache-control"),
            vec!["public, max-age=7776000"],
            "{path}: {:?}",
            again.headers
        );
    }
    assert_eq!(origin.hit_count(), 3);
}

/// The asset location ignores only what Alertmanager needs ignored (`Cache-Control`,
/// `Expires`): a response that sets a cookie is not stored, so no client gets another's cookie.
#[test]
fn sidecar_does_not_cache_responses_that_set_cookies() {
    let origin = start_origin();
    let s = alertmanager(&origin.addr());
    let h = [
        ("Host", "am.local"),
        ("X-Origin-Header", "Set-Cookie: session=alice"),
    ];
    for i in 0..2 {
        let r = get_with(s.port, "/cookie/app.js", &h);
        assert_eq!(r.status, 200, "{}\n{}", r.text(), s.logs());
        assert_eq!(
            r.header("x-proxy-cache"),
            Some("MISS"),
            "request {i}: {:?}",
            r.headers
        );
        assert_eq!(r.header("set-cookie"), Some("session=alice"));
    }
    assert_eq!(origin.hit_count(), 2);
}

#[test]
fn sidecar_post_body_reaches_alertmanager() {
    let origin = start_origin();
    let s = alertmanager(&origin.addr());
    let body = br#"{"matchers":[{"name":"alertname","value":"Watchdog","isRegex":false}],"createdBy":"test","comment":"x","startsAt":"2026-01-01T00:00:00Z","endsAt":"2026-01-02T00:00:00Z"}"#;
    let r = send(
        s.port,
        "POST",
        "/api/v2/silences",
        &[("Content-Type", "application/json")],
        body,
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text(), s.logs());
    let echo = r.json();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["uri"], "/api/v2/silences");
    assert_eq!(echo["body"], String::from_utf8_lossy(body).as_ref());
    assert_eq!(echo["body_len"], body.len());
    assert_eq!(echo["headers"]["content-type"], "application/json");
    let recorded = origin.last_request().expect("origin saw the POST");
    assert_eq!(recorded["body"], String::from_utf8_lossy(body).as_ref());
}

#[test]
fn sidecar_alertmanager_down_gives_502_with_50x_page() {
    let s = alertmanager(&dead_addr());
    let expected = s.static_file("50x.html");
    for path in ["/", "/api/v2/status"] {
        let r = get(s.port, path);
        assert_eq!(r.status, 502, "{path}: {}\n{}", r.text(), s.logs());
        assert!(
            r.body == expected,
            "{path}: body is not static/50x.html: {:?}",
            r.text()
        );
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("text/html")),
            "{path}: {:?}",
            r.headers
        );
    }
    // The static script still works while the app is down.
    let r = get(s.port, "/script.js");
    assert_eq!(r.status, 200);
    assert!(r.body == s.static_file("script.js"));
}

// ---------------------------------------------------------------------------------------------
// conf/static-api.yaml: static site + API
// ---------------------------------------------------------------------------------------------

fn static_api(api_addr: &str) -> Shipped {
    Shipped::start("static-api.yaml", &[("API_ADDR", api_addr)])
}

#[test]
fn static_api_serves_site() {
    let origin = start_origin();
    let s = static_api(&origin.addr());
    let index = s.static_file("site/index.html");
    for path in ["/", "/index.html"] {
        let r = get(s.port, path);
        assert_eq!(r.status, 200, "{path}: {}\n{}", r.text(), s.logs());
        assert!(
            r.body == index,
            "{path}: not static/site/index.html: {}",
            r.text()
        );
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("text/html")),
            "{:?}",
            r.headers
        );
    }
    let r = get(s.port, "/script.js");
    assert_eq!(r.status, 200, "{}", s.logs());
    assert!(
        r.body == s.static_file("site/script.js"),
        "/script.js is not the site script: {}",
        r.text()
    );
    assert_eq!(get(s.port, "/nope.html").status, 404);
    assert_eq!(origin.hit_count(), 0);
}

#[test]
fn static_api_strips_api_prefix() {
    let origin = start_origin();
    let s = static_api(&origin.addr());
    let r = get(s.port, "/api/x?q=1");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), s.logs());
    assert_eq!(r.json()["uri"], "/x?q=1");
    let r = get(s.port, "/api/");
    assert_eq!(r.status, 200, "{}", s.logs());
    assert_eq!(r.json()["uri"], "/");
    let r = get(s.port, "/api/deep/path/item");
    assert_eq!(r.json()["uri"], "/deep/path/item");
    assert_eq!(origin.hit_count(), 3);
}

#[test]
fn static_api_api_down_gives_502_with_50x_page() {
    let s = static_api(&dead_addr());
    let r = get(s.port, "/api/");
    assert_eq!(r.status, 502, "{}\n{}", r.text(), s.logs());
    assert!(
        r.body == s.static_file("50x.html"),
        "body is not static/50x.html: {:?}",
        r.text()
    );
    // The site itself is unaffected.
    let r = get(s.port, "/");
    assert_eq!(r.status, 200);
    assert!(r.body == s.static_file("site/index.html"));
}

#[test]
fn static_api_logs_combined_to_stdout() {
    let origin = start_origin();
    let s = static_api(&origin.addr());
    assert_eq!(
        get_with(s.port, "/api/logged?z=9", &[("User-Agent", "acceptance/1")]).status,
        200
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let logs = s.logs();
        if let Some(line) = logs.lines().find(|l| l.contains("/api/logged?z=9")) {
            assert!(
                line.starts_with("127.0.0.1 - - [")
                    && line.contains("\"GET /api/logged?z=9 HTTP/1.1\" 200 ")
                    && line.ends_with("\"-\" \"acceptance/1\""),
                "combined access log line: {line:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no access log line\n{logs}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
