//! `/metrics` on the admin listener: the `location` label (a location's `name:` or a short
//! form of its matcher, `none` for requests that matched no location).

use crate::common::*;
use std::time::Duration;

/// One scrape of `/metrics` from the admin listener of `p`.
fn scrape(p: &Proxy) -> String {
    let m = get(p.port2, "/metrics");
    assert_eq!(m.status, 200);
    m.text()
}

/// Scrape until a line of `/metrics` is `line` (requests are counted just after their answer).
fn scrape_until(p: &Proxy, line: &str) -> String {
    let mut text = String::new();
    eventually(line, Duration::from_secs(3), || {
        text = scrape(p);
        text.lines().any(|l| l == line)
    });
    text
}

fn assert_lines(text: &str, lines: &[&str]) {
    for line in lines {
        assert!(
            text.lines().any(|l| l == *line),
            "metrics lack `{line}`:\n{text}"
        );
    }
}

/// The `location` label: `name:` when given, else `exact:`, `prefix:`, `regex:` (the pattern
/// cut after 32 characters), `regex_i:`; `none` for a request that matched nothing, never an
/// empty label.
#[test]
fn location_labels_are_names_or_short_forms() {
    let origin = start_origin();
    let cfg = format!(
        r#"listen: ["127.0.0.1:{{PORT}}"]
admin: {{listen: "127.0.0.1:{{PORT2}}"}}
upstreams: {{up: {{address: "{}"}}}}
locations:
  - exact: /exact
    proxy_pass: http://up
  - prefix: /api/
    proxy_pass: http://up
  - regex: '\.(?:js|css|jpg|jpeg|gif|png|ico|cur|gz|svg|svgz|mp4)$'
    proxy_pass: http://up
  - regex_i: '\.TXT$'
    name: texts
    proxy_pass: http://up
"#,
        origin.addr()
    );
    let p = start_proxy(&cfg);
    for path in ["/exact", "/api/x", "/a.css", "/a.txt"] {
        assert_eq!(get(p.port, path).status, 200, "{path}");
    }
    assert_eq!(get(p.port, "/nowhere").status, 404);
    let text = scrape_until(
        &p,
        r#"outrigger_requests_total{location="none",status="4xx"} 1"#,
    );
    assert_lines(
        &text,
        &[
            r#"outrigger_requests_total{location="exact:/exact",status="2xx"} 1"#,
            r#"outrigger_requests_total{location="prefix:/api/",status="2xx"} 1"#,
            r#"outrigger_requests_total{location="regex:\\.(?:js|css|jpg|jpeg|gif|png|ico...",status="2xx"} 1"#,
            r#"outrigger_requests_total{location="texts",status="2xx"} 1"#,
            r#"outrigger_request_duration_seconds_count{location="none"} 1"#,
        ],
    );
    assert!(!text.contains(r#"location="""#), "an empty label:\n{text}");
}

/// `name:` must be unique, not empty and not `none`; the error names the line.
#[test]
fn location_names_are_checked() {
    for (names, problem) in [
        (["a", "a"], "earlier location"),
        (["", "b"], "empty"),
        (["none", "b"], "match no location"),
    ] {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("c.yaml");
        let yaml = format!(
            "listen: [\"127.0.0.1:1\"]\nadmin: off\nlocations:\n  - prefix: /x/\n    name: \"{}\"\n    root: /tmp\n  - prefix: /y/\n    name: \"{}\"\n    root: /tmp\n",
            names[0], names[1]
        );
        std::fs::write(&path, &yaml).expect("write");
        let out = run_outrigger(&["-t", "-c", path.to_str().expect("utf-8")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{yaml}\n{stderr}");
        let line = if problem == "earlier location" { 8 } else { 5 };
        assert!(
            stderr.contains(&format!("c.yaml:{line}:")) && stderr.contains(problem),
            "{yaml}\n{stderr}"
        );
    }
}
