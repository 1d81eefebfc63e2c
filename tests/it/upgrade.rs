//! Protocol upgrades (RFC 9110 §7.8): a request naming an upgrade in `Upgrade` and in
//! `Connection` is tunnelled after the upstream's `101`; an `Upgrade` that `Connection` does not
//! name is a hop-by-hop header that is not passed on (RFC 9110 §7.6.1).

use crate::common::*;
use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::Duration;

/// An upstream that answers a request naming `Upgrade` with `101` and then echoes every byte,
/// and any other request with `200` and the request head as its body. Each request head it
/// reads is sent on the returned channel.
fn start_upgrading_origin() -> (u16, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let port = start_raw_origin(move |mut conn, head| {
        let text = String::from_utf8_lossy(&head).to_string();
        let _ = tx.lock().map(|tx| tx.send(text.clone()));
        if text.to_ascii_lowercase().contains("\r\nupgrade:") {
            let _ = conn.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            );
            let mut buf = [0u8; 4096];
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 || conn.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        } else {
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = conn.write_all(reply.as_bytes());
        }
    });
    (port, rx)
}

fn config(port: u16) -> String {
    format!(
        r#"listen: ["127.0.0.1:{{PORT}}"]
admin: {{listen: "127.0.0.1:{{PORT2}}"}}
caches: {{z: {{path: "{{DIR}}/cache", memory: 4m}}}}
upstreams: {{up: {{address: "127.0.0.1:{port}"}}}}
locations:
  - prefix: /
    proxy_pass: http://up
"#
    )
}

#[test]
fn an_upgrade_is_tunnelled_both_ways_after_101() {
    let (port, heads) = start_upgrading_origin();
    let p = start_proxy(&config(port));
    let mut conn = Connection::connect(p.port);
    conn.send(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    );
    let seen = heads
        .recv_timeout(Duration::from_secs(5))
        .expect("origin saw the request");
    assert!(
        seen.to_ascii_lowercase().contains("upgrade: websocket"),
        "{seen}"
    );
    let head = conn.read_head().expect("a response head");
    assert_eq!(head.status, 101);
    // bytes in both directions, in several writes, after the head
    for word in ["ping", "pong pong", "x"] {
        conn.send(word.as_bytes());
        let echoed = conn.read_exact(word.len(), "echo").expect("echoed bytes");
        assert_eq!(echoed, word.as_bytes());
    }
}

#[test]
fn an_upgrade_not_named_in_connection_is_not_passed_on() {
    let (port, heads) = start_upgrading_origin();
    let p = start_proxy(&config(port));
    let r = request(
        p.port,
        b"GET /plain HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = heads
        .recv_timeout(Duration::from_secs(5))
        .expect("origin saw the request")
        .to_ascii_lowercase();
    assert!(!seen.contains("upgrade"), "{seen}");
}
