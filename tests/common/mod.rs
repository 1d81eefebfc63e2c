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
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("free_port: bind 127.0.0.1:0");
    listener.local_addr().expect("free_port: local_addr").port()
}
