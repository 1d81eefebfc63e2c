//! Operations: the admin listener (/healthz, /readyz, /metrics), readiness while draining, and hot
//! reload (file edits, broken edits, the ConfigMap symlink swap, SIGHUP, edits under load).

use crate::common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config(origin: &str, marker: &str) -> String {
    format!(
        r#"listen: ["127.0.0.1:{{PORT}}"]
admin: {{listen: "127.0.0.1:{{PORT2}}"}}
reload: {{watch: on, interval: 200ms}}
upstreams: {{up: {{address: "{origin}"}}}}
caches: {{z: {{path: "{{DIR}}/cache"}}}}
locations:
  - prefix: /
    proxy_pass: http://up/
    add_header: {{X-Marker: {marker}, X-Proxy-Cache: $upstream_cache_status}}
    cache: {{zone: z, valid: {{"200": 1m}}}}
"#
    )
}

fn marker(port: u16) -> Option<String> {
    try_request(port, &build_request("GET", "/m", &[], b""))
        .ok()
        .and_then(|r| r.header("x-marker").map(str::to_string))
}

#[test]
fn admin_probes_and_metrics() {
    let origin = start_origin();
    let p = start_proxy(&config(&origin.addr(), "one"));
    assert_eq!(get(p.port2, "/healthz").status, 200);
    assert_eq!(get(p.port2, "/readyz").status, 200);
    assert_eq!(get(p.port2, "/nope").status, 404);
    assert_eq!(get(p.port, "/a").status, 200);
    assert_eq!(get(p.port, "/a").header("x-proxy-cache"), Some("HIT"));
    assert_eq!(get(p.port, "/missing-location-is-fine").status, 200);
    let mut text = String::new();
    eventually("3 requests counted", Duration::from_secs(3), || {
        let m = get(p.port2, "/metrics");
        assert_eq!(m.status, 200);
        text = m.text();
        text.contains(r#"outrigger_requests_total{location="prefix:/",status="2xx"} 3"#)
    });
    for needle in [
        r#"outrigger_requests_total{location="prefix:/",status="2xx"} 3"#,
        r#"outrigger_cache_requests_total{status="HIT",zone="z"} 1"#,
        r#"outrigger_cache_requests_total{status="MISS",zone="z"} 2"#,
        r#"outrigger_cache_entries{zone="z"} 2"#,
        "outrigger_request_duration_seconds_bucket",
        "outrigger_upstream_response_seconds_count{upstream=\"up\"} 2",
        "outrigger_requests_in_flight",
    ] {
        assert!(text.contains(needle), "metrics lack `{needle}`:\n{text}");
    }
    // the traffic listener does not serve the admin endpoints
    assert_eq!(get(p.port, "/metrics").json()["uri"], "/metrics");
}

#[test]
fn upstream_errors_are_counted() {
    let dead = free_port();
    let p = start_proxy(&config(&format!("127.0.0.1:{dead}"), "x"));
    assert_eq!(get(p.port, "/").status, 502);
    // requests are counted when they are logged, just after the response is sent
    let mut text = String::new();
    eventually("502 counted", Duration::from_secs(3), || {
        text = get(p.port2, "/metrics").text();
        text.contains(r#"outrigger_requests_total{location="prefix:/",status="5xx"} 1"#)
    });
    assert!(
        text.contains(r#"outrigger_upstream_errors_total{kind="connect",upstream="up"} 1"#),
        "{text}"
    );
}

/// Every counter, and the upstream histogram, is on `/metrics` at 0 before its first event, so
/// that `rate()` sees the first one; one scrape before any traffic.
#[test]
fn metrics_start_at_zero() {
    let origin = start_origin();
    let p = start_proxy(&config(&origin.addr(), "one"));
    let text = get(p.port2, "/metrics").text();
    for needle in [
        r#"outrigger_upstream_errors_total{kind="connect",upstream="up"} 0"#,
        r#"outrigger_upstream_errors_total{kind="timeout",upstream="up"} 0"#,
        r#"outrigger_upstream_errors_total{kind="other",upstream="up"} 0"#,
        r#"outrigger_upstream_response_seconds_count{upstream="up"} 0"#,
        r#"outrigger_cache_evictions_total{zone="z"} 0"#,
        r#"outrigger_cache_inactive_removals_total{zone="z"} 0"#,
        r#"outrigger_config_reloads_total{result="success"} 0"#,
        r#"outrigger_config_reloads_total{result="failure"} 0"#,
        r#"outrigger_compression_input_bytes_total{encoding="gzip"} 0"#,
        r#"outrigger_compression_output_bytes_total{encoding="zstd"} 0"#,
        r#"outrigger_requests_total{location="prefix:/",status="5xx"} 0"#,
        r#"outrigger_cache_requests_total{status="STALE",zone="z"} 0"#,
    ] {
        assert!(
            text.lines().any(|l| l == needle),
            "metrics lack `{needle}`:\n{text}"
        );
    }
}

#[test]
fn readyz_is_503_while_draining() {
    let origin = start_origin();
    let cfg = format!("shutdown_delay: 1s\n{}", config(&origin.addr(), "one"));
    let mut p = start_proxy(&cfg);
    let port = p.port;
    let slow = std::thread::spawn(move || {
        get_with(port, "/slow", &[("X-Origin-Sleep-Ms", "1500")]).status
    });
    std::thread::sleep(Duration::from_millis(300));
    p.signal(libc::SIGTERM);
    eventually("readyz 503", Duration::from_secs(2), || {
        try_request(p.port2, &build_request("GET", "/readyz", &[], b""))
            .map(|r| r.status == 503)
            .unwrap_or(false)
    });
    // still serving during the delay
    assert_eq!(get(p.port, "/during-delay").status, 200);
    assert_eq!(slow.join().expect("slow request"), 200);
    assert!(p
        .wait_exit(Duration::from_secs(5))
        .is_some_and(|s| s.success()));
}

#[test]
fn edit_reloads_and_broken_edit_keeps_old_config() {
    let origin = start_origin();
    let p = start_proxy(&config(&origin.addr(), "one"));
    assert_eq!(marker(p.port).as_deref(), Some("one"));
    let text = std::fs::read_to_string(&p.config_path).expect("config");
    std::fs::write(
        &p.config_path,
        text.replace("X-Marker: one", "X-Marker: two"),
    )
    .expect("edit");
    eventually("new header", Duration::from_secs(5), || {
        marker(p.port).as_deref() == Some("two")
    });
    // a broken edit: the error names the file and line, the old config keeps serving
    let good = std::fs::read_to_string(&p.config_path).expect("config");
    let broken = good.replace("valid: {\"200\": 1m}", "valid: {\"200\": 1x}");
    assert_ne!(broken, good);
    std::fs::write(&p.config_path, &broken).expect("edit");
    let line = broken.lines().position(|l| l.contains("1x")).expect("line") + 1;
    let needle = format!("{}:{line}:", p.config_path.display());
    assert!(
        p.wait_for_log(&needle, Duration::from_secs(5)),
        "no error naming {needle}:\n{}",
        p.logs()
    );
    for _ in 0..5 {
        assert_eq!(marker(p.port).as_deref(), Some("two"));
    }
    let m = get(p.port2, "/metrics").text();
    assert!(
        m.contains(r#"outrigger_config_reloads_total{result="failure"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"outrigger_config_reloads_total{result="success"} 1"#),
        "{m}"
    );
    // the cache survives reloads
    assert_eq!(get(p.port, "/m").header("x-proxy-cache"), Some("HIT"));
}

#[test]
fn sighup_reloads_when_watching_is_off() {
    let origin = start_origin();
    let cfg = config(&origin.addr(), "one").replace(
        "reload: {watch: on, interval: 200ms}",
        "reload: {watch: off}",
    );
    let p = start_proxy(&cfg);
    let text = std::fs::read_to_string(&p.config_path).expect("config");
    std::fs::write(
        &p.config_path,
        text.replace("X-Marker: one", "X-Marker: hup"),
    )
    .expect("edit");
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        marker(p.port).as_deref(),
        Some("one"),
        "reloaded without SIGHUP"
    );
    p.signal(libc::SIGHUP);
    eventually("reload on SIGHUP", Duration::from_secs(3), || {
        marker(p.port).as_deref() == Some("hup")
    });
}

fn symlink(target: &str, link: &Path) {
    std::os::unix::fs::symlink(target, link).expect("symlink");
}

/// Kubernetes updates a mounted ConfigMap by writing a new `..2026_...` directory and renaming a
/// fresh `..data` symlink over the old one; `outrigger.yaml` is a symlink to `..data/...`.
#[test]
fn configmap_symlink_swap_reloads() {
    let origin = start_origin();
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let admin = free_port();
    let mount = dir.path().join("cm");
    std::fs::create_dir_all(mount.join("..v1")).expect("mkdir");
    let render = |marker: &str| {
        config(&origin.addr(), marker)
            .replace("{PORT}", &port.to_string())
            .replace("{PORT2}", &admin.to_string())
            .replace("{DIR}", &dir.path().display().to_string())
    };
    std::fs::write(mount.join("..v1/outrigger.yaml"), render("v1")).expect("write");
    symlink("..v1", &mount.join("..data"));
    symlink("..data/outrigger.yaml", &mount.join("outrigger.yaml"));
    let mut child = Command::new(OUTRIGGER_BIN)
        .arg("-c")
        .arg(mount.join("outrigger.yaml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    assert!(
        wait_for_port(port, Duration::from_secs(15)),
        "proxy did not start"
    );
    assert_eq!(marker(port).as_deref(), Some("v1"));
    std::fs::create_dir_all(mount.join("..v2")).expect("mkdir");
    std::fs::write(mount.join("..v2/outrigger.yaml"), render("v2")).expect("write");
    symlink("..v2", &mount.join("..data_tmp"));
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).expect("swap");
    std::fs::remove_dir_all(mount.join("..v1")).expect("rm old");
    eventually("reload after symlink swap", Duration::from_secs(5), || {
        marker(port).as_deref() == Some("v2")
    });
    let _ = child.kill();
    let _ = child.wait();
}

/// Requests keep succeeding while the config is rewritten again and again (bounded: 3 s).
#[test]
fn reload_under_load_drops_nothing() {
    let origin = start_origin();
    let p = start_proxy(&config(&origin.addr(), "m0"));
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (stop, ok, failed, port) = (stop.clone(), ok.clone(), failed.clone(), p.port);
            std::thread::spawn(move || {
                let mut conn = Connection::connect(port);
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let path = format!("/load/{w}/{}", i % 20);
                    let req = build_request("GET", &path, &[("Connection", "keep-alive")], b"");
                    let res = conn
                        .try_send(&req)
                        .map_err(|e| e.to_string())
                        .and_then(|_| conn.try_read_response(false));
                    match res {
                        Ok(r) if r.status == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            // `keepalive_requests` (1000) closes a connection now and then
                            if r.header("connection") == Some("close") {
                                conn = Connection::connect(port);
                            }
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            conn = Connection::connect(port);
                        }
                    }
                }
            })
        })
        .collect();
    let text = std::fs::read_to_string(&p.config_path).expect("config");
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(3) {
        n += 1;
        std::fs::write(
            &p.config_path,
            text.replace("X-Marker: m0", &format!("X-Marker: m{n}")),
        )
        .expect("edit");
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests during reloads"
    );
    assert!(ok.load(Ordering::Relaxed) > 100, "too few requests: {ok:?}");
    assert_eq!(marker(p.port), Some(format!("m{n}")));
}
