//! The access log's formats and variables, and the error log: the built-in `json` format,
//! NGINX's `escape=default|json|none`, the variables `$request_id`, `$cookie_NAME`,
//! `$bytes_sent`, `$upstream_addr`, `$upstream_status`, `$msec`, `$time_iso8601`,
//! `$connection` on every path (proxied, disk HIT, memory HIT answered by the edge, static),
//! and where a variable makes no sense (a cache key) the config is refused.

use crate::common::*;
use regex::Regex;
use serde_json::Value;
use std::process::Output;
use std::time::Duration;

/// A user agent no hand-written JSON template survives: quotes, a backslash, a tab, non-ASCII.
const HOSTILE_UA: &str = "evil\"agent\\ \"}{\t,\"x\":é";

/// A proxy logging to `{DIR}/access.log` in `format` (with `log_formats` written before it),
/// with a cached location `/c/` (memory tier, so repeated GETs are answered by the edge), an
/// uncached one and a static one.
fn logging_proxy(origin: &Origin, log_formats: &str, format: &str) -> Proxy {
    let yaml = format!(
        "listen: [\"127.0.0.1:{{PORT}}\"]\n\
         admin: off\n\
         error_log: {{level: error, target: stderr}}\n\
         {log_formats}\
         access_log: {{format: {format}, path: \"{{DIR}}/access.log\"}}\n\
         caches: {{z: {{path: \"{{DIR}}/cache\", memory: 4m}}}}\n\
         upstreams: {{app: {{address: \"{}\"}}}}\n\
         locations:\n  \
           - prefix: /c/\n    \
             proxy_pass: http://app\n    \
             cache: {{zone: z, valid: {{any: 1m}}}}\n  \
           - exact: /s.txt\n    \
             root: \"{{DIR}}/www\"\n  \
           - prefix: /\n    \
             proxy_pass: http://app\n",
        origin.addr()
    );
    start_proxy_with(&yaml, &[("www/s.txt", b"static\n")])
}

fn parse_json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// `access_log: {format: json}` writes one valid JSON object per request, with NGINX's
/// variable names as keys, whatever the client puts in its headers, on every path.
#[test]
fn json_format_is_valid_json_whatever_the_client_sends() {
    let origin = start_origin();
    let proxy = logging_proxy(&origin, "", "json");
    let hostile = [("User-Agent", HOSTILE_UA), ("Referer", "\\\"\tx")];
    // proxied, cached MISS, disk or memory HITs (the edge answers the last), static
    for path in ["/p?a=1", "/c/x", "/c/x", "/c/x", "/s.txt"] {
        assert_eq!(get_with(proxy.port, path, &hostile).status, 200, "{path}");
    }
    let lines = wait_lines(&proxy.path("access.log"), 5);
    let entries: Vec<Value> = lines.iter().map(|l| parse_json(l)).collect();
    let id = Regex::new("^[0-9a-f]{32}$").unwrap();
    let iso = Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$").unwrap();
    let msec = Regex::new(r"^\d{10}\.\d{3}$").unwrap();
    let mut ids = Vec::new();
    for e in &entries {
        assert_eq!(e["http_user_agent"], HOSTILE_UA, "{e}");
        assert_eq!(e["http_referer"], "\\\"\tx", "{e}");
        assert_eq!(e["remote_addr"], "127.0.0.1", "{e}");
        assert!(id.is_match(e["request_id"].as_str().unwrap_or("")), "{e}");
        assert!(
            iso.is_match(e["time_iso8601"].as_str().unwrap_or("")),
            "{e}"
        );
        assert!(msec.is_match(e["msec"].as_str().unwrap_or("")), "{e}");
        assert_eq!(e["remote_user"], "", "an empty value is empty in JSON: {e}");
        ids.push(e["request_id"].as_str().unwrap_or("").to_string());
    }
    ids.dedup();
    assert_eq!(ids.len(), entries.len(), "one $request_id per request");
    assert_eq!(entries[0]["request"], "GET /p?a=1 HTTP/1.1");
    assert_eq!(entries[0]["status"], "200");
    assert_eq!(entries[0]["upstream_addr"], origin.addr());
    assert_eq!(entries[0]["upstream_status"], "200");
    assert_eq!(entries[1]["upstream_cache_status"], "MISS");
    for hit in &entries[2..4] {
        assert_eq!(hit["upstream_cache_status"], "HIT", "{hit}");
        assert_eq!(hit["upstream_addr"], "", "a HIT asks no upstream: {hit}");
        assert_eq!(hit["upstream_status"], "", "{hit}");
    }
    assert_eq!(entries[4]["body_bytes_sent"], "7");
    assert_eq!(entries[4]["upstream_addr"], "", "{}", entries[4]);
}

/// NGINX's `escape=`: `default` (also the short form and `combined`) writes `"`, `\` and bytes
/// outside 32..=126 as `\xHH`; `json` escapes as JSON and writes an empty value as nothing;
/// `none` writes values as they are.
#[test]
fn log_format_escape_default_json_none() {
    let origin = start_origin();
    let ua = "a\"b\\c\tdé";
    let cases = [
        ("log_formats: {f: '\"$http_user_agent\" $remote_user'}\n", "f", r#""a\x22b\x5Cc\x09d\xC3\xA9" -"#),
        ("", "combined", r#""a\x22b\x5Cc\x09d\xC3\xA9""#),
        (
            "log_formats: {f: {format: '{\"ua\":\"$http_user_agent\",\"u\":\"$remote_user\"}', escape: json}}\n",
            "f",
            r#"{"ua":"a\"b\\c\td\u00e9"..."#,
        ),
        ("log_formats: {f: {format: '$http_user_agent $remote_user', escape: none}}\n", "f", "a\"b\\c\tdé -"),
    ];
    for (formats, name, want) in cases {
        let proxy = logging_proxy(&origin, formats, name);
        assert_eq!(
            get_with(proxy.port, "/e", &[("User-Agent", ua)]).status,
            200
        );
        let line = &wait_lines(&proxy.path("access.log"), 1)[0];
        match want.strip_suffix("...") {
            Some(_) => {
                let e = parse_json(line);
                assert_eq!(e["ua"], ua, "{line}");
                assert_eq!(e["u"], "", "{line}");
            }
            None if name == "combined" => assert!(line.ends_with(want), "{line}"),
            None => assert_eq!(line, want, "{formats}"),
        }
    }
}

/// `$request_id` is one value for the whole request: the header sent upstream, the header
/// added to the response and the log line agree; `$cookie_NAME`, `$bytes_sent`,
/// `$upstream_status` and `$connection` render.
#[test]
fn request_id_cookie_and_bytes_sent_everywhere() {
    let origin = start_origin();
    let yaml = format!(
        "listen: [\"127.0.0.1:{{PORT}}\"]\n\
         admin: off\n\
         access_log: {{format: '$request_id $cookie_session $bytes_sent $body_bytes_sent $upstream_status $connection', path: \"{{DIR}}/access.log\"}}\n\
         upstreams: {{app: {{address: \"{}\"}}}}\n\
         proxy_set_header: {{X-Request-ID: $request_id, X-Session: $cookie_SESSION, Host: $proxy_host}}\n\
         add_header: {{X-Request-ID: $request_id}}\n\
         locations:\n  - prefix: /\n    proxy_pass: http://app\n",
        origin.addr()
    );
    let proxy = start_proxy(&yaml);
    let r = get_with(
        proxy.port,
        "/id",
        &[("Cookie", "a=1; session=s3cr3t; b=2"), ("Cookie", "c=3")],
    );
    assert_eq!(r.status, 200);
    let sent = r.header("x-request-id").expect("X-Request-ID").to_string();
    assert!(
        Regex::new("^[0-9a-f]{32}$").unwrap().is_match(&sent),
        "{sent}"
    );
    let echo = origin.last_request().expect("origin saw the request");
    assert_eq!(
        seen_header(&echo, "x-request-id").as_deref(),
        Some(sent.as_str())
    );
    assert_eq!(seen_header(&echo, "x-session").as_deref(), Some("s3cr3t"));
    let line = wait_lines(&proxy.path("access.log"), 1).remove(0);
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(f[0], sent, "{line}");
    assert_eq!(f[1], "s3cr3t", "{line}");
    let (bytes, body): (usize, usize) = (f[2].parse().unwrap(), f[3].parse().unwrap());
    assert_eq!(body, r.body.len(), "{line}");
    assert!(bytes > body + 60, "$bytes_sent counts the head too: {line}");
    assert_eq!(f[4], "200", "{line}");
    assert!(f[5] == "-" || f[5].parse::<u64>().is_ok(), "{line}");
    // another request, another id
    let r2 = get(proxy.port, "/id");
    assert_ne!(r2.header("x-request-id"), Some(sent.as_str()));
}

/// The README's own example, `no_cache: [$cookie_session]`: a response to a request with the
/// cookie is not stored; without it, it is.
#[test]
fn no_cache_on_a_cookie() {
    let origin = start_origin();
    let proxy = simple_proxy(
        origin.port,
        "caches: {z: {path: \"{DIR}/cache\"}}\n",
        "    add_header: {X-Proxy-Cache: $upstream_cache_status}\n    \
         cache: {zone: z, valid: {any: 1m}, no_cache: [$cookie_session]}\n",
    );
    let with = [("Cookie", "session=1")];
    assert_eq!(cache_status(&get_with(proxy.port, "/nc", &with)), "MISS");
    assert_eq!(cache_status(&get_with(proxy.port, "/nc", &with)), "MISS");
    assert_eq!(cache_status(&get(proxy.port, "/nc")), "MISS");
    assert_eq!(cache_status(&get(proxy.port, "/nc")), "HIT");
}

fn check(yaml: &str) -> (String, Output) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("o.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let out = run_outrigger(&["-t", "-c", path.to_str().expect("utf-8")]);
    (path.display().to_string(), out)
}

/// A variable that differs for every request, or is known only with the response, cannot be
/// part of a cache key: `-t` refuses it with FILE:LINE.
#[test]
fn cache_key_refuses_per_request_variables() {
    for var in ["$request_id", "$msec", "$status", "$connection"] {
        let yaml = format!(
            "listen: [\"127.0.0.1:1\"]\nadmin: off\ncaches: {{z: {{path: /tmp/outrigger-never}}}}\n\
             locations:\n  - prefix: /\n    proxy_pass: http://127.0.0.1:1\n    cache:\n      zone: z\n      key: \"$host{var}\"\n"
        );
        let (path, out) = check(&yaml);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{var}: {err}");
        assert!(err.contains(&format!("{path}:9:")), "{var}: {err}");
        assert!(err.contains(var), "{var}: {err}");
    }
    let (_, out) = check(
        "listen: [\"127.0.0.1:1\"]\nadmin: off\n\
         log_formats: {j: {format: '$request_id $connection $bytes_sent $cookie_x', escape: json}}\n\
         access_log: {format: j}\nlocations:\n  - prefix: /\n    root: /tmp\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// The error log
// ---------------------------------------------------------------------------------------------

/// `error_log: {target: FILE}` writes there (not to stderr), and SIGUSR1 reopens it at its
/// path after logrotate renamed it.
#[test]
fn error_log_to_a_file_reopened_on_sigusr1() {
    let yaml = "listen: [\"127.0.0.1:{PORT}\"]\n\
        error_log: {level: info, target: '{DIR}/error.log'}\n\
        locations:\n  - prefix: /\n    root: {DIR}/www\n";
    let mut p = start_proxy_with(yaml, &[("www/a.txt", b"a")]);
    let log = p.path("error.log");
    let rotated = p.path("error.log.1");
    eventually(
        "the start-up line in error.log",
        Duration::from_secs(5),
        || std::fs::read_to_string(&log).is_ok_and(|t| t.contains("listening on")),
    );
    assert!(!p.stderr().contains("listening on"), "{}", p.stderr());
    std::fs::rename(&log, &rotated).expect("rotate");
    p.signal(libc::SIGUSR1);
    eventually("a new error.log", Duration::from_secs(5), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("SIGUSR1: error log reopened"))
    });
    let old = std::fs::read_to_string(&rotated).expect("rotated log");
    assert!(!old.contains("SIGUSR1"), "{old}");
    assert_eq!(get(p.port, "/a.txt").body, b"a");
    assert!(p.try_exit_status().is_none(), "{}", p.logs());
}

/// The error-log line that `line_part` is part of.
fn log_line(p: &Proxy, line_part: &str) -> String {
    assert!(
        p.wait_for_log(line_part, Duration::from_secs(5)),
        "no `{line_part}`\n{}",
        p.logs()
    );
    let logs = p.logs();
    let line = logs.lines().find(|l| l.contains(line_part));
    line.unwrap_or_default().to_string()
}

/// A successful reload is news, not a warning: logged at `info`.
#[test]
fn successful_reload_is_logged_at_info() {
    let yaml = "listen: [\"127.0.0.1:{PORT}\"]\nerror_log: {level: info}\n\
        locations:\n  - prefix: /\n    root: {DIR}/www\n";
    let p = start_proxy_with(yaml, &[("www/a.txt", b"a")]);
    let config = p.path("outrigger.yaml");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str("# changed\n");
    std::fs::write(&config, text).expect("rewrite config");
    p.signal(libc::SIGHUP);
    let line = log_line(&p, "config reloaded from");
    assert!(line.contains(" [info] "), "{line}");
}

/// What a client sends that is not HTTP, on the admin port, is the client's error: logged at
/// `info` (not `error`), and its raw bytes truncated.
#[test]
fn malformed_request_on_the_admin_port_is_logged_at_info_truncated() {
    let yaml = "listen: [\"127.0.0.1:{PORT}\"]\nerror_log: {level: info}\n\
        admin: {listen: \"127.0.0.1:{PORT2}\"}\n\
        locations:\n  - prefix: /\n    root: {DIR}/www\n";
    let p = start_proxy(yaml);
    let mut raw = b"GET / HTTP/1.1\r\nHost: x\r\nNo Colon Here\r\n\r\n".to_vec();
    raw.extend(std::iter::repeat_n(b'A', 4000));
    let mut c = Connection::connect(p.port2);
    let _ = c.try_send(&raw);
    let _ = c.is_closed_by_peer(Duration::from_secs(2));
    let line = log_line(&p, "fails to read from downstream");
    assert!(line.contains(" [info] "), "{line}");
    assert!(line.len() < 400, "{} bytes: {line}", line.len());
}

/// Pingora's `failed to acquire reusable stream` (a pooled upstream connection another
/// worker's idle watcher still held when it was picked; the request opens a new connection)
/// is no error: ordinary POST traffic over several threads logs none at `error`, and every
/// POST is answered.
#[test]
fn pooled_connection_handover_is_not_an_error() {
    let origin = start_origin();
    let p = simple_proxy(origin.port, "threads: 4\n", "");
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let port = p.port;
            std::thread::spawn(move || {
                let mut c = Connection::connect(port);
                for i in 0..60 {
                    let body = format!("post {i}");
                    c.send(&build_request(
                        "POST",
                        "/post",
                        &[("Connection", "keep-alive")],
                        body.as_bytes(),
                    ));
                    assert_eq!(c.read_response(false).status, 200);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    let logs = p.logs();
    assert!(!logs.contains("reusable stream"), "{logs}");
}

/// `$connection` is the same for every request of a connection, whoever answers it (the edge's
/// memory tier, a proxied request, a static file), and differs between connections.
#[test]
fn connection_numbers_requests_of_one_connection() {
    let origin = start_origin();
    let p = logging_proxy(&origin, "", "'$connection $request_uri'");
    get(p.port, "/c/warm");
    get(p.port, "/c/warm");
    let mut conn = Connection::connect(p.port);
    for path in ["/c/warm", "/p", "/s.txt", "/c/warm"] {
        conn.send(&build_request(
            "GET",
            path,
            &[("Connection", "keep-alive")],
            b"",
        ));
        assert_eq!(conn.read_response(false).status, 200, "{path}");
    }
    let log = p.path("access.log");
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while lines.len() < 6 && std::time::Instant::now() < deadline {
        lines = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(lines.len(), 6, "{lines:?}");
    let numbers: Vec<&str> = lines
        .iter()
        .map(|l| l.split(' ').next().unwrap_or_default())
        .collect();
    assert!(
        numbers.iter().all(|n| n.parse::<u64>().is_ok()),
        "{lines:?}"
    );
    assert_ne!(numbers[0], numbers[1], "two connections");
    assert!(numbers[2..].iter().all(|n| *n == numbers[2]), "{lines:?}");
    assert!(!numbers[..2].contains(&numbers[2]), "{lines:?}");
}

/// The access-log lines of `p` once there are `n` (at most 5 s).
fn access_lines(p: &Proxy, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let lines: Vec<String> = std::fs::read_to_string(p.path("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        if lines.len() >= n || std::time::Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Heads the edge refuses are logged with their status and the request line as it arrived, and
/// a head that times out with 408, as NGINX does.
#[test]
fn refused_and_timed_out_heads_are_logged() {
    let origin = start_origin();
    let p = logging_proxy(
        &origin,
        "client_header_timeout: 1s\n",
        "'$status \"$request\" $body_bytes_sent'",
    );
    assert_eq!(
        request(p.port, b"get /lower HTTP/1.1\r\nHost: a\r\n\r\n").status,
        400
    );
    assert_eq!(
        request(p.port, b"TRACE /t HTTP/1.1\r\nHost: a\r\n\r\n").status,
        405
    );
    let mut conn = Connection::connect(p.port);
    conn.send(b"GET /slow HTTP/1.1\r\nHost: a\r\n");
    assert!(conn.is_closed_by_peer(Duration::from_secs(5)));
    let lines = access_lines(&p, 3);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].starts_with("400 \"get /lower HTTP/1.1\" "),
        "{lines:?}"
    );
    assert!(
        lines[0].split(' ').nth(4).is_some_and(|n| n != "0"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("405 \"TRACE /t HTTP/1.1\" "),
        "{lines:?}"
    );
    assert_eq!(lines[2], "408 \"GET /slow HTTP/1.1\" 0");
    assert_eq!(origin.hit_count(), 0);
}
