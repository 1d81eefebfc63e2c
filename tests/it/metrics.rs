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

/// The value of the series `series` (name and labels as printed), if `text` has it.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// Build information, the standard `process_*` metrics, client connections, HITs by tier,
/// the zone's `max_size` and the outcome of the last config load: there from the start
/// (counters at 0), and moving with the traffic and reloads.
#[test]
fn build_process_connection_tier_and_reload_metrics() {
    let origin = start_origin();
    let cfg = format!(
        r#"listen: ["127.0.0.1:{{PORT}}"]
admin: {{listen: "127.0.0.1:{{PORT2}}"}}
reload: {{watch: on, interval: 200ms}}
upstreams: {{up: {{address: "{}"}}}}
caches: {{z: {{path: "{{DIR}}/cache", max_size: 10m}}, y: {{path: "{{DIR}}/y"}}}}
locations:
  - prefix: /
    proxy_pass: http://up/
    add_header: {{X-Proxy-Cache: $upstream_cache_status}}
    cache: {{zone: z, valid: {{"200": 1m}}}}
"#,
        origin.addr()
    );
    let started = now_seconds();
    let p = start_proxy(&cfg);
    // (the harness's connection that saw the port open is counted, and closes)
    let text = scrape_until(&p, "outrigger_connections_active 0");
    let accepted = "outrigger_connections_accepted_total";
    let before = value(&text, accepted).unwrap_or_else(|| panic!("no {accepted}:\n{text}"));
    let build = text
        .lines()
        .find(|l| l.starts_with("outrigger_build_info{"))
        .unwrap_or_else(|| panic!("no build info:\n{text}"));
    assert!(
        build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
            && build.ends_with("} 1"),
        "{build}"
    );
    assert_lines(
        &text,
        &[
            r#"outrigger_cache_hits_total{tier="disk",zone="z"} 0"#,
            r#"outrigger_cache_hits_total{tier="memory",zone="z"} 0"#,
            r#"outrigger_cache_max_size_bytes{zone="z"} 10485760"#,
            "outrigger_config_last_reload_successful 1",
            "# TYPE process_cpu_seconds_total counter",
            "# TYPE process_resident_memory_bytes gauge",
        ],
    );
    // a zone without max_size has no limit to show
    assert!(!text.contains(r#"outrigger_cache_max_size_bytes{zone="y"}"#));
    let loaded = value(
        &text,
        "outrigger_config_last_reload_success_timestamp_seconds",
    )
    .unwrap_or_else(|| panic!("no reload timestamp:\n{text}"));
    assert!(
        loaded >= started - 1.0 && loaded <= now_seconds() + 1.0,
        "{loaded}"
    );
    let start = value(&text, "process_start_time_seconds").unwrap_or(0.0);
    assert!(
        start >= started - 5.0 && start <= now_seconds() + 1.0,
        "{start}"
    );
    assert!(value(&text, "process_resident_memory_bytes").unwrap_or(0.0) > 1e6);
    assert!(value(&text, "process_open_fds").unwrap_or(0.0) >= 3.0);
    assert!(value(&text, "process_max_fds").unwrap_or(0.0) >= 3.0);
    assert!(value(&text, "process_cpu_seconds_total").unwrap_or(-1.0) >= 0.0);

    // MISS, then a HIT read from disk (which admits the entry to memory), then a memory HIT
    let mut conn = Connection::connect(p.port);
    for want in ["MISS", "HIT", "HIT"] {
        conn.send(&build_request(
            "GET",
            "/a",
            &[("Connection", "keep-alive")],
            b"",
        ));
        let r = conn.read_response(false);
        assert_eq!(r.status, 200);
        assert_eq!(cache_status(&r), want);
    }
    let text = scrape_until(
        &p,
        r#"outrigger_cache_hits_total{tier="memory",zone="z"} 1"#,
    );
    assert_lines(
        &text,
        &[
            r#"outrigger_cache_hits_total{tier="disk",zone="z"} 1"#,
            "outrigger_connections_active 1",
        ],
    );
    // this test's connection, and maybe the harness's port probe, accepted after `before` was
    // read (its accept can be counted a moment after the probe returned)
    let now = value(&text, accepted).unwrap_or(0.0);
    assert!(
        now >= before + 1.0 && now <= before + 2.0,
        "{before} -> {now}\n{text}"
    );
    drop(conn);
    scrape_until(&p, "outrigger_connections_active 0");

    // a broken reload: 0, the success time stays; a good one: 1, a later time
    let good = std::fs::read_to_string(&p.config_path).expect("config");
    std::fs::write(&p.config_path, good.replace("1m}", "1x}")).expect("edit");
    let text = scrape_until(&p, "outrigger_config_last_reload_successful 0");
    let ts = "outrigger_config_last_reload_success_timestamp_seconds";
    assert_eq!(value(&text, ts), Some(loaded));
    std::fs::write(&p.config_path, good.replace("10m", "20m")).expect("edit");
    let text = scrape_until(&p, "outrigger_config_last_reload_successful 1");
    assert!(value(&text, ts).unwrap_or(0.0) > loaded, "{text}");
    assert_lines(
        &text,
        &[r#"outrigger_cache_max_size_bytes{zone="z"} 20971520"#],
    );
}
