//! Black-box tests of the command line (`--version`, `-t`), config validation errors with their
//! `FILE:LINE:COLUMN:` positions, `${VAR}` expansion, relative path resolution, signals, the pid
//! file, the access log and `threads`.

use std::fs::File;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use regex::Regex;

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/// 1-based line number of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("test bug: {needle:?} not in config:\n{text}"))
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Write `yaml` to a fresh temp dir as `bad.yaml` and run `outrigger -t -c <it>`.
fn test_config(yaml: &str) -> (tempfile::TempDir, PathBuf, Output) {
    let dir = tempfile::Builder::new()
        .prefix("outrigger-cfg-")
        .tempdir()
        .expect("temp dir");
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let out = run_outrigger(&["-t", "-c", path.to_str().expect("utf-8 path")]);
    (dir, path, out)
}

/// Run `-t` on `yaml` and assert: exit status 1, stderr has `FILE:LINE:COLUMN: message` where
/// LINE is the line of one of the `at` needles, and the message mentions every `names` entry.
/// Returns the message.
fn expect_config_error(yaml: &str, at: &[&str], names: &[&str]) -> String {
    let (_dir, path, out) = test_config(yaml);
    let stderr = stderr_of(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "`outrigger -t` should exit 1 on this config:\n{yaml}\nstderr:\n{stderr}"
    );
    let re = Regex::new(&format!(
        r"(?m){}:(\d+):(\d+): (.*)$",
        regex::escape(path.to_str().unwrap())
    ))
    .unwrap();
    let caps = re.captures(&stderr).unwrap_or_else(|| {
        panic!(
            "stderr lacks `{}:LINE:COLUMN: ...`:\n{stderr}",
            path.display()
        )
    });
    let line: usize = caps[1].parse().unwrap();
    let column: usize = caps[2].parse().unwrap();
    let message = caps[3].to_string();
    let expected: Vec<usize> = at.iter().map(|n| line_of(yaml, n)).collect();
    assert!(
        expected.contains(&line),
        "error reported at line {line}, expected line {expected:?} (the line of {at:?});\n\
         config:\n{yaml}\nstderr:\n{stderr}"
    );
    assert!(
        column >= 1,
        "column must be 1-based, got {column}: {stderr}"
    );
    for n in names {
        assert!(
            message.contains(n),
            "error message should name {n:?}: {message:?}\nstderr:\n{stderr}"
        );
    }
    message
}

/// An outrigger started by hand: `-c config` (relative to `cwd` if relative) from the working
/// directory `cwd` with `env`, listening on `port`; its logs go to a temp dir of their own.
fn spawn_by_hand(config: &Path, cwd: &Path, env: &[(&str, &str)], port: u16) -> Proxy {
    let logs = tempfile::Builder::new()
        .prefix("outrigger-logs-")
        .tempdir()
        .expect("temp dir");
    let mut cmd = Command::new(OUTRIGGER_BIN);
    cmd.arg("-c")
        .arg(config)
        .envs(env.iter().copied())
        .current_dir(cwd);
    let mut p = Proxy::spawn(&mut cmd, logs, config.to_path_buf(), port, 0);
    p.wait_ready(STARTUP_TIMEOUT);
    p
}

/// Poll a proxy's stdout until a line contains `needle`; returns that line.
fn wait_stdout_line(proxy: &Proxy, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(l) = proxy.stdout().lines().find(|l| l.contains(needle)) {
            return l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no stdout line containing {needle:?}\n{}",
            proxy.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// NGINX `$time_local`, e.g. `23/Nov/2026:19:00:34 +0000`.
const TIME_LOCAL_RE: &str = r"\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}";

/// Assert `s` is a `$time_local` within a minute of now.
fn assert_time_local_is_now(s: &str) {
    let t = chrono::DateTime::parse_from_str(s, "%d/%b/%Y:%H:%M:%S %z")
        .unwrap_or_else(|e| panic!("bad $time_local {s:?}: {e}"));
    let skew = (chrono::Utc::now().timestamp() - t.timestamp()).abs();
    assert!(skew < 60, "$time_local {s:?} is {skew}s away from now");
}

// ---------------------------------------------------------------------------------------------
// --version, -t
// ---------------------------------------------------------------------------------------------

#[test]
fn version_flag_prints_version() {
    let out = run_outrigger(&["--version"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout_of(&out);
    assert_eq!(
        text.trim(),
        format!("outrigger {}", env!("CARGO_PKG_VERSION")),
        "stdout: {text:?}"
    );
}

const VALID_CONFIG: &str = r#"listen: ["127.0.0.1:1", "2"]
threads: 2
pid_file: ""
grace_period: 10s
error_log: {level: notice, target: stderr}
log_formats:
  main: '[$time_local - $status] $remote_addr - $remote_user $request ($http_referer)'
access_log: {format: main, path: stdout}
upstreams:
  app:
    address: "127.0.0.1:9"
    connect_timeout: 500ms
    read_timeout: 1h30m
    send_timeout: 5
    keepalive: 8
    keepalive_timeout: 60s
root: ./www
index: [index.html, index.htm]
types: {js: application/javascript}
default_type: text/plain
proxy_set_header: {Host: $host, X-Forwarded-For: $proxy_add_x_forwarded_for}
add_header: {X-Served-By: outrigger, X-Always: {value: yes, always: on}}
hide_header: [X-Powered-By]
error_pages: {"500 502 503 504": /50x.html, 404: /404.html}
intercept_errors: off
symlinks: within_root
if_modified_since: before
locations:
  - exact: /50x.html
  - exact: /404.html
    root: ./errors
  - prefix: /static/
    no_regex: on
    alias: ./assets/
    expires: max
  - regex_i: '\.(css|js)$'
    expires: 90d
  - regex: '^/direct/'
    proxy_pass: http://127.0.0.1:9
  - prefix: /api/
    proxy_pass: http://app/
    buffering: off
    proxy_set_header: {X-Real-IP: $remote_addr}
    set_header: {Cache-Control: public}
    expires_if:
      - {path: '\.png$', expires: 1d}
      - {path: '\.txt$', expires: epoch}
    intercept_errors: on
  - prefix: /
    index: [home.html]
    symlinks: follow
"#;

#[test]
fn check_valid_config_exits_0() {
    let (dir, path, _) = test_config(VALID_CONFIG);
    // the error pages' files must exist (the roots and the alias need not: warnings)
    write_file(dir.path(), "www/50x.html", b"50x\n");
    write_file(dir.path(), "errors/404.html", b"404\n");
    let out = run_outrigger(&["-t", "-c", path.to_str().expect("utf-8 path")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "valid config {} rejected: {}",
        path.display(),
        stderr_of(&out)
    );
}

#[test]
fn check_minimal_config_exits_0() {
    let (_dir, _path, out) =
        test_config("listen: [\"127.0.0.1:1\"]\nlocations:\n  - prefix: /\n    root: /tmp\n");
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
}

// ---------------------------------------------------------------------------------------------
// -t on broken configs: FILE:LINE:COLUMN and the key
// ---------------------------------------------------------------------------------------------

#[test]
fn error_unknown_top_level_key() {
    let yaml = "listen: [\"127.0.0.1:1\"]\nthreads: 1\nworker_connections: 1024\nlocations:\n  - prefix: /\n    root: /tmp\n";
    expect_config_error(yaml, &["worker_connections"], &["worker_connections"]);
}

#[test]
fn error_unknown_key_in_location() {
    let yaml = "listen: [\"127.0.0.1:1\"]\nlocations:\n  - prefix: /a/\n    root: /tmp\n  - prefix: /\n    root: /tmp\n    autoindex: on\n";
    expect_config_error(yaml, &["autoindex"], &["autoindex"]);
}

#[test]
fn error_unknown_upstream_in_proxy_pass() {
    let yaml = "listen: [\"127.0.0.1:1\"]\nupstreams:\n  app: {address: \"127.0.0.1:9\"}\nlocations:\n  - prefix: /\n    root: /tmp\n  - prefix: /api/\n    proxy_pass: http://nosuchupstream/\n";
    expect_config_error(yaml, &["nosuchupstream"], &["proxy_pass", "nosuchupstream"]);
}

#[test]
fn error_bad_regex() {
    let yaml = "listen: [\"127.0.0.1:1\"]\nlocations:\n  - prefix: /\n    root: /tmp\n  - regex: '\\.(js|css$'\n    root: /tmp\n";
    expect_config_error(yaml, &["regex:"], &["regex"]);
}

#[test]
fn error_bad_regex_in_expires_if() {
    let yaml = "listen: [\"127.0.0.1:1\"]\nlocations:\n  - prefix: /\n    root: /tmp\n    expires_if:\n      path: '[unclosed'\n      expires: 1d\n";
    expect_config_error(yaml, &["[unclosed"], &["expires_if", "path"]);
}

#[test]
fn error_bad_duration_unit() {
    let yaml = "listen: [\"127.0.0.1:1\"]\nupstreams:\n  app:\n    address: \"127.0.0.1:9\"\n    connect_timeout: 5s\n    read_timeout: 10x\nlocations:\n  - prefix: /\n    proxy_pass: http://app\n";
    expect_config_error(yaml, &["read_timeout"], &["read_timeout", "10x"]);
}

#[test]
fn error_bad_grace_period() {
    let yaml = "listen: [\"127.0.0.1:1\"]\ngrace_period: soon\nlocations:\n  - prefix: /\n    root: /tmp\n";
    expect_config_error(yaml, &["grace_period"], &["grace_period"]);
}

#[test]
fn error_bad_client_timeouts() {
    for key in ["send_timeout", "client_header_timeout"] {
        for bad in ["never", "0", "-1s"] {
            let yaml = format!(
                "listen: [\"127.0.0.1:1\"]\n{key}: {bad}\nlocations:\n  - prefix: /\n    root: /tmp\n"
            );
            expect_config_error(&yaml, &[key], &[key]);
        }
    }
}

#[test]
fn error_bad_threads_value() {
    for bad in ["lots", "0", "-2", "1.5"] {
        let yaml = format!(
            "listen: [\"127.0.0.1:1\"]\nerror_log: {{level: warn}}\nthreads: {bad}\nlocations:\n  - prefix: /\n    root: /tmp\n"
        );
        expect_config_error(&yaml, &["threads"], &["threads"]);
    }
}

#[test]
fn error_bad_keepalive_size() {
    let yaml = "listen: [\"127.0.0.1:1\"]\nupstreams:\n  app:\n    address: \"127.0.0.1:9\"\n    keepalive: lots\nlocations:\n  - prefix: /\n    proxy_pass: http://app\n";
    expect_config_error(yaml, &["keepalive"], &["keepalive"]);
}

#[test]
fn error_location_with_two_matchers() {
    let yaml = "listen: [\"127.0.0.1:1\"]\nlocations:\n  - prefix: /a/\n    root: /tmp\n  - prefix: /b/\n    exact: /b/x\n    root: /tmp\n";
    // Either the location itself or its second matcher is a sensible place to point at.
    expect_config_error(yaml, &["prefix: /b/", "exact: /b/x"], &["exact", "prefix"]);
}

#[test]
fn error_location_with_no_matcher() {
    let yaml =
        "listen: [\"127.0.0.1:1\"]\nlocations:\n  - prefix: /a/\n    root: /tmp\n  - root: /srv\n";
    expect_config_error(yaml, &["root: /srv"], &["locations[1]"]);
}

#[test]
fn error_root_and_proxy_pass_together() {
    let yaml = "listen: [\"127.0.0.1:1\"]\nupstreams:\n  app: {address: \"127.0.0.1:9\"}\nlocations:\n  - prefix: /\n    root: /srv/www\n    proxy_pass: http://app\n";
    expect_config_error(
        yaml,
        &["root: /srv/www", "proxy_pass:"],
        &["root", "proxy_pass"],
    );
}

#[test]
fn error_no_regex_on_regex_location() {
    let yaml = "listen: [\"127.0.0.1:1\"]\nlocations:\n  - regex: '\\.js$'\n    root: /tmp\n    no_regex: on\n";
    expect_config_error(yaml, &["no_regex"], &["no_regex"]);
}

#[test]
fn error_yaml_syntax() {
    // Bad indentation of `root` under the list item.
    let yaml = "listen: [\"127.0.0.1:1\"]\nlocations:\n  - prefix: /\n   root: /tmp\n";
    expect_config_error(yaml, &["   root: /tmp"], &[]);
    // An unterminated flow sequence reports where the parser gave up: the end of the file,
    // i.e. the line after the last one; accept the opening line too.
    let yaml = "listen: [\"127.0.0.1:1\"\nlocations:\n  - prefix: /\n    root: /tmp\n";
    let (_dir, path, out) = test_config(yaml);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains(&format!("{}:", path.display())),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn error_unset_env_var_without_default() {
    let yaml = "listen: [\"127.0.0.1:1\"]\nupstreams:\n  app:\n    address: \"${OUTRIGGER_TEST_SURELY_UNSET_VAR_7Q}\"\nlocations:\n  - prefix: /\n    proxy_pass: http://app\n";
    expect_config_error(
        yaml,
        &["OUTRIGGER_TEST_SURELY_UNSET_VAR_7Q"],
        &["address", "OUTRIGGER_TEST_SURELY_UNSET_VAR_7Q"],
    );
    let yaml = "listen: [\"${OUTRIGGER_TEST_SURELY_UNSET_LISTEN_7Q}\"]\nlocations:\n  - prefix: /\n    root: /tmp\n";
    expect_config_error(
        yaml,
        &["OUTRIGGER_TEST_SURELY_UNSET_LISTEN_7Q"],
        &["listen", "OUTRIGGER_TEST_SURELY_UNSET_LISTEN_7Q"],
    );
}

#[test]
fn error_error_page_routed_to_proxy() {
    let yaml = "listen: [\"127.0.0.1:1\"]\nupstreams:\n  app: {address: \"127.0.0.1:9\"}\nerror_pages:\n  404: /404.html\n  \"502 504\": /50x.html\nlocations:\n  - exact: /404.html\n    root: /tmp\n  - prefix: /\n    proxy_pass: http://app\n";
    expect_config_error(yaml, &["/50x.html"], &["error_pages", "/50x.html"]);
}

#[test]
fn error_missing_listen() {
    let yaml = "threads: 1\nlocations:\n  - prefix: /\n    root: /tmp\n";
    expect_config_error(yaml, &["threads: 1"], &["listen"]);
}

#[test]
fn error_empty_listen() {
    let yaml = "listen: []\nlocations:\n  - prefix: /\n    root: /tmp\n";
    expect_config_error(yaml, &["listen"], &["listen"]);
}

#[test]
fn error_message_names_key_path_in_backticks() {
    // The documented shape: "FILE:LINE:COLUMN: `path.of.key`: message".
    let yaml = "listen: [\"127.0.0.1:1\"]\nupstreams:\n  app:\n    address: \"127.0.0.1:9\"\n    read_timeout: 10x\nlocations:\n  - prefix: /\n    proxy_pass: http://app\n";
    let msg = expect_config_error(yaml, &["read_timeout"], &[]);
    assert!(
        msg.starts_with("`upstreams.app.read_timeout`: "),
        "message: {msg:?}"
    );
}

#[test]
fn missing_or_unreadable_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yaml");
    let missing_s = missing.to_str().unwrap();
    for args in [vec!["-t", "-c", missing_s], vec!["-c", missing_s]] {
        let out = run_outrigger(&args);
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(missing_s), "names the file: {err}");
        assert!(
            err.to_ascii_lowercase().contains("no such file"),
            "says why: {err}"
        );
    }
    // A directory is not a readable config file.
    let d = dir.path().to_str().unwrap();
    let out = run_outrigger(&["-t", "-c", d]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(d), "{err}");
}

// ---------------------------------------------------------------------------------------------
// ${VAR} expansion
// ---------------------------------------------------------------------------------------------

#[test]
fn env_expansion_in_listen_and_upstream() {
    let origin = start_origin();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let cfg = dir.path().join("env.yaml");
    std::fs::write(
        &cfg,
        "listen: [\"${OUTRIGGER_TEST_LISTEN}\"]\n\
         upstreams:\n  app: {address: \"${OUTRIGGER_TEST_APP_ADDR:-127.0.0.1:9}\"}\n\
         admin: off\n\
         locations:\n  - prefix: /\n    proxy_pass: http://app\n",
    )
    .unwrap();
    let addr = origin.addr();
    let p = spawn_by_hand(
        &cfg,
        dir.path(),
        &[
            ("OUTRIGGER_TEST_LISTEN", listen.as_str()),
            ("OUTRIGGER_TEST_APP_ADDR", addr.as_str()),
        ],
        port,
    );
    let r = get(p.port, "/via-env?x=1");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), p.logs());
    assert_eq!(r.json()["uri"], "/via-env?x=1");
    assert_eq!(origin.hit_count(), 1);
}

#[test]
fn env_defaults_in_listen_and_upstream() {
    let origin = start_origin();
    let yaml = format!(
        "listen: [\"${{OUTRIGGER_TEST_UNSET_HOST_9Z:-127.0.0.1}}:{{PORT}}\"]\n\
         upstreams:\n  app: {{address: \"${{OUTRIGGER_TEST_UNSET_ADDR_9Z:-{}}}\"}}\n\
         locations:\n  - prefix: /\n    proxy_pass: http://app\n",
        origin.addr()
    );
    let proxy = start_proxy(&yaml);
    let r = get(proxy.port, "/defaulted");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.logs());
    assert_eq!(r.json()["uri"], "/defaulted");
}

#[test]
fn env_set_but_empty_uses_default() {
    let origin = start_origin();
    let yaml = format!(
        "listen: [\"127.0.0.1:{{PORT}}\"]\n\
         upstreams:\n  app: {{address: \"${{OUTRIGGER_TEST_EMPTY_ADDR:-{}}}\"}}\n\
         locations:\n  - prefix: /\n    proxy_pass: http://app\n",
        origin.addr()
    );
    let proxy = start_proxy_opts(
        &yaml,
        &ProxyOpts {
            env: &[("OUTRIGGER_TEST_EMPTY_ADDR", "")],
            ..Default::default()
        },
    );
    let r = get(proxy.port, "/e");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.logs());
}

#[test]
fn env_set_overrides_default() {
    let origin = start_origin();
    let addr = origin.addr();
    // The default points at a dead port; the variable at the origin.
    let dead = free_port();
    let yaml = format!(
        "listen: [\"127.0.0.1:{{PORT}}\"]\n\
         upstreams:\n  app: {{address: \"${{OUTRIGGER_TEST_SET_ADDR:-127.0.0.1:{dead}}}\"}}\n\
         locations:\n  - prefix: /\n    proxy_pass: http://app\n"
    );
    let proxy = start_proxy_opts(
        &yaml,
        &ProxyOpts {
            env: &[("OUTRIGGER_TEST_SET_ADDR", addr.as_str())],
            ..Default::default()
        },
    );
    let r = get(proxy.port, "/o");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.logs());
    assert_eq!(origin.hit_count(), 1);
}

// ---------------------------------------------------------------------------------------------
// relative paths
// ---------------------------------------------------------------------------------------------

#[test]
fn relative_paths_resolve_against_config_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    write_file(tmp.path(), "www/file", b"served from www\n");
    write_file(tmp.path(), "www/sub/index.html", b"<p>index</p>\n");
    // A decoy at the place `../www` would point to relative to the working directory.
    write_file(elsewhere.path(), "www/file", b"WRONG: relative to cwd\n");
    let port = free_port();
    let cfg = tmp.path().join("conf/x.yaml");
    write_file(
        tmp.path(),
        "conf/x.yaml",
        format!(
            "listen: [\"127.0.0.1:{port}\"]\npid_file: run.pid\nadmin: off\n\
             locations:\n  - prefix: /\n    root: ../www\n"
        )
        .as_bytes(),
    );
    let cwd = elsewhere.path().join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let p = spawn_by_hand(&cfg, &cwd, &[], port);
    let r = get(port, "/file");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), p.logs());
    assert_eq!(r.body, b"served from www\n");
    let r = get(port, "/sub/");
    assert_eq!(r.status, 200, "{}", p.logs());
    assert_eq!(r.body, b"<p>index</p>\n");
    // pid_file: run.pid lands next to the config.
    let pid = std::fs::read_to_string(tmp.path().join("conf/run.pid"))
        .unwrap_or_else(|e| panic!("conf/run.pid: {e}\n{}", p.logs()));
    assert_eq!(pid.trim(), p.pid().to_string());
}

#[test]
fn relative_config_path_with_relative_root() {
    let tmp = tempfile::tempdir().unwrap();
    write_file(tmp.path(), "www/file", b"rel\n");
    let port = free_port();
    write_file(
        tmp.path(),
        "conf/x.yaml",
        format!(
            "listen: [\"127.0.0.1:{port}\"]\nadmin: off\nlocations:\n  - prefix: /\n    root: ../www\n"
        )
        .as_bytes(),
    );
    let p = spawn_by_hand(Path::new("conf/x.yaml"), tmp.path(), &[], port);
    let r = get(port, "/file");
    assert_eq!(r.status, 200, "{}", p.logs());
    assert_eq!(r.body, b"rel\n");
}

// ---------------------------------------------------------------------------------------------
// signals and the pid file
// ---------------------------------------------------------------------------------------------

fn proxy_to(origin: &Origin, extra: &str) -> String {
    format!(
        "listen: [\"127.0.0.1:{{PORT}}\"]\ngrace_period: 10s\n{extra}\
         upstreams:\n  app: {{address: \"{}\"}}\n\
         locations:\n  - prefix: /\n    proxy_pass: http://app\n",
        origin.addr()
    )
}

#[test]
fn sigterm_drains_in_flight_request_and_exits_0() {
    let origin = start_origin();
    let mut proxy = start_proxy(&proxy_to(&origin, ""));
    let raw = build_request("GET", "/slow", &[("X-Origin-Sleep-Ms", "1500")], b"");
    let sent = Instant::now();
    let mut stream = open_stream(proxy.port, &raw);
    // Wait until the request is at the origin, then send SIGTERM mid-request.
    let deadline = Instant::now() + Duration::from_secs(5);
    while origin.hit_count() == 0 {
        assert!(
            Instant::now() < deadline,
            "request never reached the origin"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    let term = Instant::now();
    proxy.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        proxy.try_exit_status().is_none(),
        "exited with a request in flight: {:?}\n{}",
        proxy.try_exit_status(),
        proxy.logs()
    );

    // New connections are refused while draining.
    match TcpStream::connect(("127.0.0.1", proxy.port)) {
        Err(e) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "unexpected connect error: {e}"
        ),
        Ok(_) => panic!(
            "a new connection was accepted {:?} after SIGTERM\n{}",
            term.elapsed(),
            proxy.logs()
        ),
    }

    // The in-flight request completes.
    let (status, _) = stream.read_head();
    assert_eq!(status, 200, "{}", proxy.logs());
    let mut body = Vec::new();
    while let Some(c) = stream.next_chunk() {
        body.extend_from_slice(&c);
    }
    let echo: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("body {:?}: {e}", String::from_utf8_lossy(&body)));
    assert_eq!(echo["uri"], "/slow");
    assert!(sent.elapsed() >= Duration::from_millis(1400));

    // ... and the process exits 0 soon after, well before the 10 s grace period.
    let st = proxy
        .wait_exit(Duration::from_secs(4))
        .unwrap_or_else(|| panic!("still running 4 s after the drain\n{}", proxy.logs()));
    assert!(st.success(), "exit status {st}\n{}", proxy.logs());
    assert!(
        term.elapsed() < Duration::from_secs(4),
        "took {:?} to exit after SIGTERM",
        term.elapsed()
    );
}

#[test]
fn sigterm_exits_0_when_grace_period_ends() {
    let origin = start_origin();
    let yaml = format!(
        "listen: [\"127.0.0.1:{{PORT}}\"]\ngrace_period: 1s\n\
         upstreams:\n  app: {{address: \"{}\"}}\n\
         locations:\n  - prefix: /\n    proxy_pass: http://app\n",
        origin.addr()
    );
    let mut proxy = start_proxy(&yaml);
    let raw = build_request("GET", "/very-slow", &[("X-Origin-Sleep-Ms", "6000")], b"");
    let _stream = open_stream(proxy.port, &raw);
    let deadline = Instant::now() + Duration::from_secs(5);
    while origin.hit_count() == 0 {
        assert!(
            Instant::now() < deadline,
            "request never reached the origin"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let t = Instant::now();
    proxy.signal(libc::SIGTERM);
    let st = proxy
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("grace period 1s ignored\n{}", proxy.logs()));
    assert!(st.success(), "exit status {st}");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(3000),
        "exited {took:?} after SIGTERM with grace_period 1s"
    );
}

#[test]
fn sigterm_when_idle_exits_0_quickly() {
    let origin = start_origin();
    let mut proxy = start_proxy(&proxy_to(&origin, ""));
    assert_eq!(get(proxy.port, "/warm").status, 200);
    let t = Instant::now();
    proxy.signal(libc::SIGTERM);
    let st = proxy
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("did not exit within 5 s of SIGTERM\n{}", proxy.logs()));
    assert!(st.success(), "exit status {st}\n{}", proxy.logs());
    assert!(
        t.elapsed() < Duration::from_millis(2000),
        "idle SIGTERM took {:?}",
        t.elapsed()
    );
}

#[test]
fn sigterm_with_idle_keepalive_connection_exits_quickly() {
    // An idle keep-alive client must not hold the process for the whole grace period.
    let origin = start_origin();
    let mut proxy = start_proxy(&proxy_to(&origin, ""));
    let mut conn = Connection::connect(proxy.port);
    conn.send(&build_request(
        "GET",
        "/ka",
        &[("Connection", "keep-alive")],
        b"",
    ));
    assert_eq!(conn.read_response(false).status, 200);
    let t = Instant::now();
    proxy.signal(libc::SIGTERM);
    let st = proxy
        .wait_exit(Duration::from_secs(12))
        .unwrap_or_else(|| panic!("did not exit within 12 s of SIGTERM\n{}", proxy.logs()));
    assert!(st.success(), "exit status {st}");
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "SIGTERM with an idle keep-alive connection took {:?}",
        t.elapsed()
    );
}

#[test]
fn sigint_exits() {
    let origin = start_origin();
    let mut proxy = start_proxy(&proxy_to(&origin, ""));
    assert_eq!(get(proxy.port, "/x").status, 200);
    let t = Instant::now();
    proxy.signal(libc::SIGINT);
    let st = proxy.wait_exit(Duration::from_secs(3));
    assert!(
        st.is_some(),
        "SIGINT did not stop the process\n{}",
        proxy.logs()
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn pid_file_holds_pid_while_running() {
    let origin = start_origin();
    let mut proxy = start_proxy(&proxy_to(&origin, "pid_file: \"{DIR}/outrigger.pid\"\n"));
    let pid_path = proxy.path("outrigger.pid");
    let text = std::fs::read_to_string(&pid_path)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", pid_path.display(), proxy.logs()));
    assert_eq!(text.trim(), proxy.pid().to_string(), "pid file {text:?}");
    assert!(
        text.ends_with('\n'),
        "pid file ends with a newline: {text:?}"
    );
    proxy.signal(libc::SIGTERM);
    let st = proxy.wait_exit(Duration::from_secs(5));
    assert!(st.is_some_and(|s| s.success()), "{st:?}");
    assert!(
        !pid_path.exists(),
        "pid file left behind after a clean exit"
    );
}

// ---------------------------------------------------------------------------------------------
// access log
// ---------------------------------------------------------------------------------------------

#[test]
fn access_log_main_format_to_file() {
    let yaml = "listen: [\"127.0.0.1:{PORT}\"]\n\
        access_log:\n  format: '[$time_local - $status] $remote_addr - $remote_user $request ($http_referer)'\n  path: {DIR}/access.log\n\
        locations:\n  - prefix: /\n    root: {DIR}/www\n";
    let proxy = start_proxy_with(yaml, &[("www/x", b"x file\n")]);
    let r = get_with(proxy.port, "/x", &[("Referer", "http://ref.example/page")]);
    assert_eq!(r.status, 200, "{}", proxy.logs());
    let log = proxy.path("access.log");
    let lines = wait_lines(&log, 1);
    let re = Regex::new(&format!(
        r"^\[({TIME_LOCAL_RE}) - 200\] 127\.0\.0\.1 - - GET /x HTTP/1\.1 \(http://ref\.example/page\)$"
    ))
    .unwrap();
    let caps = re
        .captures(&lines[0])
        .unwrap_or_else(|| panic!("access log line {:?} does not match {re}", lines[0]));
    assert_time_local_is_now(&caps[1]);

    // A 404 without a referer, with Basic credentials: `$remote_user` is the user name.
    let r = get_with(
        proxy.port,
        "/missing?a=1",
        &[("Authorization", "Basic YWxpY2U6cHc=")],
    );
    assert_eq!(r.status, 404);
    let lines = wait_lines(&log, 2);
    let re = Regex::new(&format!(
        r"^\[{TIME_LOCAL_RE} - 404\] 127\.0\.0\.1 - alice GET /missing\?a=1 HTTP/1\.1 \(-\)$"
    ))
    .unwrap();
    assert!(re.is_match(&lines[1]), "line {:?} vs {re}", lines[1]);
    assert!(
        !proxy.stdout().contains("GET /x"),
        "a file access log must not also go to stdout\n{}",
        proxy.logs()
    );
}

#[test]
fn access_log_variables_render_sensibly() {
    let origin = start_origin();
    let yaml = format!(
        "listen: [\"127.0.0.1:{{PORT}}\"]\n\
         access_log:\n  format: 'cache=$upstream_cache_status rt=$request_time urt=$upstream_response_time bytes=$body_bytes_sent ua=\"$http_user_agent\" host=$host uri=$uri args=$args status=$status'\n  path: {{DIR}}/vars.log\n\
         upstreams:\n  app: {{address: \"{}\"}}\n\
         locations:\n  - exact: /static.txt\n    root: {{DIR}}/www\n  - prefix: /\n    proxy_pass: http://app\n",
        origin.addr()
    );
    let proxy = start_proxy_with(&yaml, &[("www/static.txt", b"0123456789")]);
    let log = proxy.path("vars.log");
    let re = Regex::new(
        r#"^cache=(\S+) rt=(\S+) urt=(\S+) bytes=(\S+) ua="([^"]*)" host=(\S+) uri=(\S+) args=(\S+) status=(\d+)$"#,
    )
    .unwrap();
    let secs = Regex::new(r"^\d+\.\d{3}$").unwrap();

    // Proxied, with a query, a port in Host, a user agent, a dot segment and a slow origin.
    let r = get_with(
        proxy.port,
        "/app/one/../two?x=1&y=2",
        &[
            ("Host", "Example.COM:8080"),
            ("User-Agent", "test-agent/1.0"),
            ("X-Origin-Sleep-Ms", "200"),
        ],
    );
    assert_eq!(r.status, 200, "{}", proxy.logs());
    let lines = wait_lines(&log, 1);
    let c = re
        .captures(&lines[0])
        .unwrap_or_else(|| panic!("line {:?} vs {re}", lines[0]));
    assert_eq!(&c[1], "-", "no cache: $upstream_cache_status is empty");
    assert!(secs.is_match(&c[2]), "$request_time {:?}", &c[2]);
    assert!(secs.is_match(&c[3]), "$upstream_response_time {:?}", &c[3]);
    let rt: f64 = c[2].parse().unwrap();
    let urt: f64 = c[3].parse().unwrap();
    assert!(urt >= 0.19, "$upstream_response_time {urt} < origin delay");
    assert!(
        rt >= urt,
        "$request_time {rt} < $upstream_response_time {urt}"
    );
    assert!(rt < 5.0, "$request_time {rt}");
    assert_eq!(
        c[4].parse::<usize>().unwrap(),
        r.body.len(),
        "$body_bytes_sent"
    );
    assert_eq!(&c[5], "test-agent/1.0");
    assert_eq!(&c[6], "example.com", "$host is lowercase, without port");
    assert_eq!(&c[7], "/app/two", "$uri is normalised");
    assert_eq!(&c[8], "x=1&y=2");
    assert_eq!(&c[9], "200");

    // Static: no upstream, no args, no user agent.
    let r = get(proxy.port, "/static.txt");
    assert_eq!(r.status, 200);
    let lines = wait_lines(&log, 2);
    let c = re
        .captures(&lines[1])
        .unwrap_or_else(|| panic!("line {:?} vs {re}", lines[1]));
    assert_eq!(&c[1], "-");
    assert!(secs.is_match(&c[2]), "$request_time {:?}", &c[2]);
    assert_eq!(&c[3], "-", "no upstream: $upstream_response_time is empty");
    assert_eq!(&c[4], "10", "$body_bytes_sent of a 10-byte file");
    assert_eq!(&c[5], "-");
    assert_eq!(&c[6], "localhost");
    assert_eq!(&c[7], "/static.txt");
    assert_eq!(&c[8], "-");
    assert_eq!(&c[9], "200");
}

#[test]
fn access_log_off_writes_nothing_to_stdout() {
    let origin = start_origin();
    let yaml = format!(
        "listen: [\"127.0.0.1:{{PORT}}\"]\naccess_log: off\n\
         error_log: {{level: warn, target: stderr}}\n\
         upstreams:\n  app: {{address: \"{}\"}}\n\
         locations:\n  - prefix: /files/\n    root: {{DIR}}/www\n  - prefix: /\n    proxy_pass: http://app\n",
        origin.addr()
    );
    let proxy = start_proxy_with(&yaml, &[("www/files/f", b"f")]);
    assert_eq!(get(proxy.port, "/files/f").status, 200);
    assert_eq!(get(proxy.port, "/proxied-path").status, 200);
    assert_eq!(get(proxy.port, "/files/missing-path").status, 404);
    std::thread::sleep(Duration::from_millis(300));
    let out = proxy.stdout();
    assert!(
        !out.contains("proxied-path") && !out.contains("missing-path") && !out.contains("GET"),
        "access_log: off, yet stdout has request lines:\n{out}"
    );
    assert!(out.trim().is_empty(), "stdout not empty:\n{out}");
}

#[test]
fn access_log_combined_format_to_stdout() {
    let origin = start_origin();
    let yaml = format!(
        "listen: [\"127.0.0.1:{{PORT}}\"]\n\
         access_log: {{format: combined, path: stdout}}\n\
         upstreams:\n  app: {{address: \"{}\"}}\n\
         locations:\n  - prefix: /\n    proxy_pass: http://app\n",
        origin.addr()
    );
    let proxy = start_proxy(&yaml);
    let r = get_with(
        proxy.port,
        "/c?z=1",
        &[("User-Agent", "curl/8.0"), ("Referer", "http://r.example/")],
    );
    assert_eq!(r.status, 200);
    let line = wait_stdout_line(&proxy, "/c?z=1");
    let re = Regex::new(&format!(
        r#"^127\.0\.0\.1 - - \[({TIME_LOCAL_RE})\] "GET /c\?z=1 HTTP/1\.1" 200 (\d+) "http://r\.example/" "curl/8\.0"$"#
    ))
    .unwrap();
    let c = re
        .captures(&line)
        .unwrap_or_else(|| panic!("combined line {line:?} vs {re}"));
    assert_time_local_is_now(&c[1]);
    assert_eq!(c[2].parse::<usize>().unwrap(), r.body.len());
}

#[test]
fn access_log_default_format_is_combined() {
    let yaml = "listen: [\"127.0.0.1:{PORT}\"]\n\
        access_log: {path: {DIR}/default.log}\n\
        locations:\n  - prefix: /\n    root: {DIR}/www\n";
    let proxy = start_proxy_with(yaml, &[("www/d.txt", b"abc")]);
    assert_eq!(get(proxy.port, "/d.txt").status, 200);
    let lines = wait_lines(&proxy.path("default.log"), 1);
    let re = Regex::new(&format!(
        r#"^127\.0\.0\.1 - - \[{TIME_LOCAL_RE}\] "GET /d\.txt HTTP/1\.1" 200 3 "-" "-"$"#
    ))
    .unwrap();
    assert!(re.is_match(&lines[0]), "{:?} vs {re}", lines[0]);
}

#[test]
fn access_log_named_log_format() {
    let yaml = "listen: [\"127.0.0.1:{PORT}\"]\n\
        log_formats:\n  short: '$request_method $uri $status $http_x_test_id'\n  other: 'unused $status'\n\
        access_log: {format: short, path: {DIR}/named.log}\n\
        locations:\n  - prefix: /\n    root: {DIR}/www\n";
    let proxy = start_proxy_with(yaml, &[("www/here.txt", b"here")]);
    assert_eq!(
        get_with(proxy.port, "/here.txt", &[("X-Test-Id", "abc-1")]).status,
        200
    );
    assert_eq!(get(proxy.port, "/not-here").status, 404);
    let lines = wait_lines(&proxy.path("named.log"), 2);
    assert_eq!(lines[0], "GET /here.txt 200 abc-1");
    assert_eq!(lines[1], "GET /not-here 404 -");
}

#[test]
fn access_log_unknown_variable_is_a_config_error() {
    let yaml = "listen: [\"127.0.0.1:1\"]\nlog_formats:\n  main: '$remote_addr $no_such_variable'\naccess_log: {format: main, path: stdout}\nlocations:\n  - prefix: /\n    root: /tmp\n";
    let (_dir, _path, out) = test_config(yaml);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no_such_variable"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// threads
// ---------------------------------------------------------------------------------------------

#[test]
fn threads_auto_starts_and_serves() {
    let yaml = "listen: [\"127.0.0.1:{PORT}\"]\nthreads: auto\n\
        locations:\n  - prefix: /\n    root: {DIR}/www\n";
    let proxy = start_proxy_with(yaml, &[("www/t.txt", b"threads")]);
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let port = proxy.port;
            std::thread::spawn(move || get(port, "/t.txt"))
        })
        .collect();
    for h in handles {
        let r = h.join().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"threads");
    }
}

#[test]
fn threads_number_starts_and_serves() {
    let yaml = "listen: [\"127.0.0.1:{PORT}\"]\nthreads: 3\n\
        locations:\n  - prefix: /\n    root: {DIR}/www\n";
    let proxy = start_proxy_with(yaml, &[("www/t.txt", b"three")]);
    assert_eq!(get(proxy.port, "/t.txt").body, b"three");
}

#[test]
fn port_in_use_fails_clearly() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("busy.yaml");
    std::fs::write(
        &cfg,
        format!("listen: [\"127.0.0.1:{port}\"]\nlocations:\n  - prefix: /\n    root: /tmp\n"),
    )
    .unwrap();
    let err_path = dir.path().join("stderr.log");
    let mut child = Command::new(OUTRIGGER_BIN)
        .arg("-c")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "listening on a taken port: {status:?}\n{err}"
    );
    assert!(err.contains(&port.to_string()), "{err}");
    drop(holder);
}
