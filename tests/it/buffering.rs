//! The slow-client shield (NGINX's `proxy_buffering on`): an upstream answer the client does not
//! take as fast as it comes waits in outrigger (memory, then an unnamed temp file), so the
//! upstream is done at its own pace; `buffering: off` streams at the client's pace.

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// More than the kernel buffers between the upstream and the client can hold (TCP receive buffers
/// grow to 32 MiB here).
const BIG: usize = 64 << 20;

/// An upstream that answers every request with `BIG` pattern bytes, optionally with
/// `X-Accel-Buffering: <accel>`, and reports when it has written the whole answer.
fn start_big_origin(accel: Option<&'static str>) -> (u16, mpsc::Receiver<Instant>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let port = start_raw_origin(move |mut conn, _head| {
        let extra = accel.map_or(String::new(), |v| format!("X-Accel-Buffering: {v}\r\n"));
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\nContent-Type: text/plain\r\n{extra}\r\n"
        );
        if conn.write_all(reply.as_bytes()).is_ok() && conn.write_all(&pattern_body(BIG)).is_ok() {
            let _ = tx.lock().map(|tx| tx.send(Instant::now()));
        }
    });
    (port, rx)
}

fn config(port: u16, buffering: &str) -> String {
    format!(
        "{QUIET}proxy_temp_path: \"{{DIR}}/tmp\"\n\
         upstreams: {{app: {{address: \"127.0.0.1:{port}\"}}}}\n\
         locations:\n  - prefix: /\n    proxy_pass: http://app\n    buffering: {buffering}\n"
    )
}

/// Ask for the big answer and read only its first bytes; then the rest, checked byte for byte.
fn slow_read(proxy_port: u16) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", proxy_port)).expect("connect");
    // a small receive window, so the client really holds the answer back
    s.write_all(b"GET /big HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut first = vec![0u8; 1024];
    s.read_exact(&mut first).expect("the head and some body");
    (s, first)
}

fn read_rest(mut s: TcpStream, mut got: Vec<u8>) {
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.read_to_end(&mut got).expect("the rest");
    let at = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    assert_eq!(got.len() - at, BIG, "the whole body");
    assert!(
        got[at..] == pattern_body(BIG)[..],
        "the body arrives byte for byte"
    );
}

/// Ask through `proxy_port` for the big answer and read a little: the upstream is still writing
/// 2 s later (`what`: the case); then the rest arrives, byte for byte.
fn upstream_waits_for_the_client(proxy_port: u16, written: &mpsc::Receiver<Instant>, what: &str) {
    let (s, first) = slow_read(proxy_port);
    assert!(
        written.recv_timeout(Duration::from_secs(2)).is_err(),
        "{what}: the upstream finished without the client"
    );
    read_rest(s, first);
}

#[test]
fn a_slow_reader_does_not_hold_the_upstream() {
    let (port, written) = start_big_origin(None);
    let p = start_proxy(&config(port, "on"));
    let (s, first) = slow_read(p.port);
    // the upstream writes all of it while the client reads nothing more
    written
        .recv_timeout(Duration::from_secs(10))
        .expect("the upstream finished its answer while the client was not reading");
    // the temp file has no name: nothing to find in proxy_temp_path
    let left: Vec<_> = std::fs::read_dir(p.path("tmp"))
        .expect("proxy_temp_path exists")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    read_rest(s, first);
    no_panic_in_logs(&p);
}

#[test]
fn buffering_off_streams_at_the_clients_pace() {
    for (buffering, accel) in [("off", None), ("on", Some("no")), ("server off", None)] {
        let (port, written) = start_big_origin(accel);
        // `server off`: the server's `buffering: off`, which the location inherits
        let yaml = match buffering.strip_prefix("server ") {
            Some(value) => config(port, "on")
                .replace("    buffering: on\n", "")
                .replace(
                    "proxy_temp_path",
                    &format!("buffering: {value}\nproxy_temp_path"),
                ),
            None => config(port, buffering),
        };
        let p = start_proxy(&yaml);
        upstream_waits_for_the_client(
            p.port,
            &written,
            &format!("buffering {buffering}, X-Accel-Buffering {accel:?}"),
        );
        written
            .recv_timeout(Duration::from_secs(10))
            .expect("finished once the client read");
    }
}

#[test]
fn x_accel_buffering_yes_buffers_a_location_with_buffering_off() {
    let (port, written) = start_big_origin(Some("yes"));
    let p = start_proxy(&config(port, "off"));
    let (s, first) = slow_read(p.port);
    written
        .recv_timeout(Duration::from_secs(10))
        .expect("the upstream finished its answer while the client was not reading");
    read_rest(s, first);
}

#[test]
fn past_proxy_max_temp_file_size_the_upstream_waits_for_the_client() {
    let (port, written) = start_big_origin(None);
    let yaml = config(port, "on").replace(
        "proxy_temp_path",
        "proxy_max_temp_file_size: 1m\nproxy_temp_path",
    );
    let p = start_proxy(&yaml);
    upstream_waits_for_the_client(p.port, &written, "past proxy_max_temp_file_size");
}

/// Where no temp file can be made (`proxy_temp_path` replaced by a plain file after the start),
/// a buffered answer past `proxy_buffers` waits for the client instead, as with
/// `buffering: off`, and still arrives whole.
#[test]
fn without_a_temp_file_the_answer_streams() {
    let (port, written) = start_big_origin(None);
    let p = start_proxy(&config(port, "on"));
    std::fs::remove_dir(p.path("tmp")).expect("proxy_temp_path made at start");
    std::fs::write(p.path("tmp"), "a file, not a directory").expect("write");
    upstream_waits_for_the_client(p.port, &written, "no temp file");
}

/// A client that takes nothing more for `send_timeout` loses what waits for it, whether the
/// connection was to close after the answer or to be kept: the connection ends, it is not held
/// forever.
#[test]
fn send_timeout_bounds_a_buffered_answer() {
    let (port, written) = start_big_origin(None);
    let yaml = config(port, "on").replace("proxy_temp_path", "send_timeout: 1s\nproxy_temp_path");
    let p = start_proxy(&yaml);
    for connection in ["close", "keep-alive"] {
        let mut s = TcpStream::connect(("127.0.0.1", p.port)).expect("connect");
        let req = format!("GET /big HTTP/1.1\r\nHost: a\r\nConnection: {connection}\r\n\r\n");
        s.write_all(req.as_bytes()).expect("send");
        let mut first = vec![0u8; 1024];
        s.read_exact(&mut first).expect("the head");
        written
            .recv_timeout(Duration::from_secs(10))
            .expect("the upstream finished");
        std::thread::sleep(Duration::from_secs(3));
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(
            first.len() + rest.len() < BIG,
            "{connection}: all {} bytes arrived after the client stalled past send_timeout",
            first.len() + rest.len()
        );
    }
}

/// NGINX logs a request once its client has the whole answer: the line of a buffered answer
/// comes when the slow client has read it all, with the time that took and every byte; a client
/// that goes first gets a line with the bytes it had.
#[test]
fn a_buffered_answer_is_logged_when_its_client_has_it() {
    let (port, written) = start_big_origin(None);
    let yaml = config(port, "on").replace(
        "access_log: off\n",
        "access_log: {format: '$status $body_bytes_sent $request_time', path: \"{DIR}/access.log\"}\n",
    );
    let p = start_proxy(&yaml);
    let log = p.path("access.log");
    let lines = || std::fs::read_to_string(&log).unwrap_or_default();
    // the fields of line `n` (from 1) of the access log, once it is there
    let line = |n: usize| -> Vec<String> {
        assert!(
            wait_until(Duration::from_secs(5), || lines().lines().count() >= n),
            "no line {n} once the client was done: {}",
            lines()
        );
        let all = lines();
        let line = all.lines().nth(n - 1).unwrap_or_default();
        line.split_whitespace().map(str::to_string).collect()
    };
    let upstream_done = || {
        written
            .recv_timeout(Duration::from_secs(10))
            .expect("the upstream finished its answer while the client was not reading")
    };

    let (s, first) = slow_read(p.port);
    upstream_done();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(lines(), "", "logged before the client had the answer");
    read_rest(s, first);
    let fields = line(1);
    assert_eq!(fields[..2], ["200", &BIG.to_string()], "{fields:?}");
    let took: f64 = fields[2].parse().expect("$request_time");
    assert!(
        took >= 1.5,
        "$request_time {took} s: the client took longer"
    );

    // a client that reads a little and goes
    let (s, _) = slow_read(p.port);
    upstream_done();
    drop(s);
    let fields = line(2);
    assert_eq!(fields[0], "200", "{fields:?}");
    let sent: usize = fields[1].parse().expect("$body_bytes_sent");
    assert!(
        sent < BIG,
        "{sent} bytes logged as sent to a client that read 1 KiB"
    );

    // on a kept connection: logged once the answer is read, before the next request
    let mut s = TcpStream::connect(("127.0.0.1", p.port)).expect("connect");
    s.write_all(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        .expect("send");
    upstream_done();
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        lines().lines().count(),
        2,
        "logged before the client had it"
    );
    // the whole answer comes as the client reads, not at the keep-alive timeout
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut want = usize::MAX;
    while got.len() < want {
        let n = s
            .read(&mut buf)
            .expect("the rest of the answer within 10 s");
        assert!(n > 0, "closed after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
        if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            want = at + 4 + BIG;
        }
    }
    let fields = line(3);
    assert_eq!(fields[..2], ["200", &BIG.to_string()], "{fields:?}");
}
