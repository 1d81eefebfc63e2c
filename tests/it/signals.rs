//! Signals as NGINX users send them: SIGQUIT stops gracefully like SIGTERM, SIGUSR1 reopens the
//! access log (logrotate), SIGUSR2 and SIGWINCH are logged and ignored, and a stop sent during
//! start-up ends the process cleanly (exit 0). SIGTERM's drain itself is tested in `config_cli`.

use crate::common::*;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// SIGQUIT lets the request in flight finish, then the process exits 0.
#[test]
fn sigquit_drains_like_sigterm() {
    let origin = start_origin();
    let yaml = format!(
        "listen: [\"127.0.0.1:{{PORT}}\"]\ngrace_period: 10s\n\
         upstreams:\n  app: {{address: \"{}\"}}\n\
         locations:\n  - prefix: /\n    proxy_pass: http://app\n",
        origin.addr()
    );
    let mut p = start_proxy(&yaml);
    let raw = build_request("GET", "/slow", &[("X-Origin-Sleep-Ms", "1000")], b"");
    let mut stream = open_stream(p.port, &raw);
    eventually("the request at the origin", Duration::from_secs(5), || {
        origin.hit_count() == 1
    });
    p.signal(libc::SIGQUIT);
    let (status, _) = stream.read_head();
    assert_eq!(status, 200, "{}", p.logs());
    let st = p
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("still running 5 s after SIGQUIT\n{}", p.logs()));
    assert!(st.success(), "exit status {st}\n{}", p.logs());
}

/// logrotate's way: rename the file, send SIGUSR1; the next lines go to a new file at the
/// configured path, and the process keeps serving.
#[test]
fn sigusr1_reopens_the_access_log() {
    let yaml = "listen: [\"127.0.0.1:{PORT}\"]\n\
        access_log: {format: '$request_uri', path: '{DIR}/access.log'}\n\
        locations:\n  - prefix: /\n    root: {DIR}/www\n";
    let mut p = start_proxy_with(yaml, &[("www/a.txt", b"a")]);
    let log = p.path("access.log");
    let rotated = p.path("access.log.1");
    assert_eq!(get(p.port, "/a.txt?before").status, 200);
    assert_eq!(wait_lines(&log, 1), ["/a.txt?before"]);
    std::fs::rename(&log, &rotated).expect("rotate");
    p.signal(libc::SIGUSR1);
    eventually("a new access.log", Duration::from_secs(5), || log.exists());
    assert_eq!(get(p.port, "/a.txt?after").status, 200);
    assert_eq!(wait_lines(&log, 1), ["/a.txt?after"]);
    let old = std::fs::read_to_string(&rotated).expect("rotated log");
    assert_eq!(old, "/a.txt?before\n");
    assert!(p.try_exit_status().is_none(), "{}", p.logs());
}

/// SIGUSR2 (NGINX: binary upgrade) and SIGWINCH are logged at info and change nothing.
#[test]
fn sigusr2_and_sigwinch_are_logged_and_ignored() {
    let yaml = "listen: [\"127.0.0.1:{PORT}\"]\nerror_log: {level: info}\n\
        locations:\n  - prefix: /\n    root: {DIR}/www\n";
    let mut p = start_proxy_with(yaml, &[("www/a.txt", b"a")]);
    for (sig, name) in [(libc::SIGUSR2, "SIGUSR2"), (libc::SIGWINCH, "SIGWINCH")] {
        p.signal(sig);
        let line = format!("{name}: ignored");
        assert!(
            p.wait_for_log(&line, Duration::from_secs(5)),
            "no `{line}`\n{}",
            p.logs()
        );
        assert_eq!(get(p.port, "/a.txt").body, b"a");
    }
    assert!(p.try_exit_status().is_none(), "{}", p.logs());
}

#[test]
fn sigterm_during_start_up_exits_0() {
    stop_during_start_up(libc::SIGTERM);
}

#[test]
fn sigquit_during_start_up_exits_0() {
    stop_during_start_up(libc::SIGQUIT);
}

/// Send `sig` while outrigger is still reading its config: the config is a FIFO, which holds
/// the start-up until the test writes it. The process must end cleanly (exit 0), not by the
/// signal.
fn stop_during_start_up(sig: i32) {
    let dir = tempfile::Builder::new()
        .prefix("outrigger-startup-")
        .tempdir()
        .expect("temp dir");
    let port = free_port();
    let yaml = format!(
        "listen: [\"127.0.0.1:{port}\"]\nadmin: off\nerror_log: {{level: info}}\n\
         locations:\n  - prefix: /\n    root: /tmp\n"
    );
    let text = dir.path().join("outrigger.yaml");
    std::fs::write(&text, &yaml).expect("write config");
    let fifo = dir.path().join("fifo.yaml");
    mkfifo(&fifo);
    let mut cmd = Command::new(OUTRIGGER_BIN);
    cmd.arg("-c").arg(&fifo);
    let mut p = Proxy::spawn(&mut cmd, dir, text, port, 0);
    p.signal(sig);
    // Write the config once outrigger has the FIFO open (until then, or once it is gone, a
    // non-blocking open for writing fails).
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while p.try_exit_status().is_none() && Instant::now() < deadline {
        let writer = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo);
        if let Ok(mut w) = writer {
            w.write_all(yaml.as_bytes())
                .expect("write the config into the FIFO");
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let st = p
        .wait_exit(STARTUP_TIMEOUT)
        .unwrap_or_else(|| panic!("still running after signal {sig}\n{}", p.logs()));
    assert_eq!(st.code(), Some(0), "signal {sig}: {st}\n{}", p.logs());
    no_panic_in_logs(&p);
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().expect("utf-8 path")).expect("no NUL");
    // SAFETY: mkfifo(3) with a NUL-terminated path that lives across the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
}
