//! Shared integration-test harness for `outrigger`, compiled once for the whole suite.
//!
//! * [`origin`]: a controllable tokio + hyper 1 test origin running on its own
//!   background thread (`start_origin`, `start_origin_on`), and what it saw (`hits`, `hits_m`,
//!   `seen_header`).
//! * [`client`]: a raw, byte-exact HTTP/1.1 client over `std::net::TcpStream`
//!   (`request`, `get`, `get_with`, `send`, `open_stream`, `keepalive_pair`).
//! * [`proxy`]: spawn/stop the `outrigger` binary under test (`start_proxy`,
//!   `start_proxy_with`, `start_proxy_opts`, `Proxy::spawn`, `run_outrigger`, ...).
//! * [`yaml`]: the one builder of the configs most proxy tests share (`QUIET`, `preamble`,
//!   `proxy_all_yaml`, `simple_proxy`).
//! * [`check`]: assertions and polling shared by several test modules (`assert_same_bytes`,
//!   `cache_status`, `no_panic_in_logs`, `wait_until`, `eventually`, `wait_lines`,
//!   `assert_expires_in_90_days`).
//! * [`files`]: files and directories (`write_file`, `replace_keeping_mtime`, `copy_dir`,
//!   `copy_shipped`, `entry_files`).
//!
//! Every helper is written here once; the test modules use it from here.

pub mod check;
pub mod client;
pub mod files;
pub mod origin;
pub mod proxy;
pub mod yaml;

pub use check::*;
pub use client::*;
pub use files::*;
pub use origin::*;
pub use proxy::*;
pub use yaml::*;

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
