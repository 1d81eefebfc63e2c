//! The integration tests of `outrigger`, in one test binary (`cargo test --test it`): each
//! module starts the real `outrigger` binary against the test origin and clients of
//! [`common`], in its own temp dir and on its own free ports, so that every test can run in
//! parallel with every other one in this process.
//!
//! One binary rather than one per file: the harness in `common` is compiled and the binary
//! linked once, and the test threads are shared by the whole suite. Run one module with
//! `cargo test --test it cache::`, one test with `cargo test --test it -- --exact cache::purge`.
//!
//! Nothing here may change process-wide state (environment variables, the working directory):
//! a child process gets its environment and working directory through its `Command`. Ports are
//! free ports; `start_proxy` gives even the admin listener, whose default is the fixed
//! `0.0.0.0:9145`, one of its own. A taken admin port stops outrigger's start, so proxies
//! started by hand get one too: the shipped configs through `OUTRIGGER_ADMIN_LISTEN`
//! (`shipped_configs`, `e2e_alertmanager`, `listeners`), hand-written ones `admin: off`
//! (`config_cli`).

mod common;

mod body_limit;
mod buffering;
mod cache;
mod cache_correctness;
mod cache_memory;
mod client_timeouts;
mod compression;
mod config_check;
mod config_cli;
mod e2e_alertmanager;
mod edge;
mod edge_head;
mod edge_rewrite;
mod harness_smoke;
mod http10;
mod listeners;
mod logs;
mod metrics;
mod ops;
mod pipelining;
mod proxying;
mod redirects;
mod request_buffering;
mod routing;
mod shipped_configs;
mod signals;
mod static_files;
mod upgrade;
