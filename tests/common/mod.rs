//! Shared integration-test harness for `outrigger`.
//!
//! * [`origin`]: a controllable tokio + hyper 1 test origin running on its own
//!   background thread (`start_origin`, `start_origin_on`).
//! * [`client`]: a raw, byte-exact HTTP/1.1 client over `std::net::TcpStream`
//!   (`request`, `get`, `get_with`, `send`, `open_stream`, `keepalive_pair`).
//! * [`proxy`]: spawn/stop the `outrigger` binary under test (`start_proxy`,
//!   `start_proxy_with`, `run_outrigger`, ...).
//!
//! Each test binary uses only a subset of this, hence the blanket allows.
#![allow(dead_code)]
#![allow(unused_imports)]

pub mod client;
pub mod origin;
pub mod proxy;

pub use client::*;
pub use origin::*;
pub use proxy::*;

use std::net::TcpListener;

/// Bind `127.0.0.1:0`, read the kernel-assigned port, drop the listener.
///
/// Racy by nature (another process may grab the port before it is reused),
/// but good enough for tests.
///
/// A port is never handed out twice in one test process: the kernel may return a port again as
/// soon as its probe listener is closed, and two proxies started on the same port in parallel
/// tests would answer each other's requests.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("free_port: bind 127.0.0.1:0");
        let port = listener.local_addr().expect("free_port: local_addr").port();
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Replace `path` by a new file (another inode) holding `bytes`, with the old file's mtime: a
/// change that neither size nor mtime reveals. `tmp` is a free path on the same filesystem.
pub fn replace_keeping_mtime(path: &std::path::Path, tmp: &std::path::Path, bytes: &[u8]) {
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    std::fs::write(tmp, bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(tmp)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    std::fs::rename(tmp, path).unwrap();
}
