//! Signals, as NGINX users send them. SIGTERM and SIGQUIT stop gracefully (`/readyz` 503,
//! `shutdown_delay`, close the listeners, exit 0 once in-flight requests are done or
//! `grace_period` ends); SIGINT exits at once; SIGUSR1 reopens the log files; SIGUSR2 and
//! SIGWINCH are logged and ignored; SIGHUP is the reload's (`reload.rs`).
//!
//! All of them are caught from the first line of `main` ([`install`]), by one thread that reads
//! them as they come: a signal during start-up never meets its default action, which kills the
//! process. A stop received before the main loop watches for it is kept until it does.

use crate::lifecycle::{inflight, start_draining};
use crate::state::State;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use once_cell::sync::Lazy;
use pingora_core::server::{ShutdownSignal, ShutdownSignalWatch};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The signal that asked for a graceful stop (SIGTERM or SIGQUIT), once one did.
static STOP: Lazy<watch::Sender<Option<i32>>> = Lazy::new(|| watch::channel(None).0);

/// What the running process has opened, for the signals that act on it.
struct Running {
    state: Arc<ArcSwap<State>>,
    pid_file: Option<PathBuf>,
}

static RUNNING: OnceLock<Running> = OnceLock::new();

/// How long the drain waits before counting what is in flight: the listeners close and late
/// requests register first.
const SETTLE: Duration = Duration::from_millis(50);
/// How often the drain checks whether requests are still in flight.
const DRAIN_POLL: Duration = Duration::from_millis(10);

fn name(sig: i32) -> &'static str {
    match sig {
        SIGTERM => "SIGTERM",
        SIGQUIT => "SIGQUIT",
        SIGINT => "SIGINT",
        SIGHUP => "SIGHUP",
        SIGUSR1 => "SIGUSR1",
        SIGUSR2 => "SIGUSR2",
        SIGWINCH => "SIGWINCH",
        _ => "signal",
    }
}

/// Catch the process's signals from now on, in a thread of their own.
pub fn install() -> Result<(), String> {
    let mut signals = signal_hook::iterator::Signals::new([
        SIGTERM, SIGQUIT, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                on_signal(sig);
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    Ok(())
}

fn on_signal(sig: i32) {
    match sig {
        SIGTERM | SIGQUIT => {
            STOP.send_if_modified(|stop| stop.replace(stop.unwrap_or(sig)).is_none());
        }
        SIGINT => {
            log::info!("SIGINT: exiting");
            exit_now();
        }
        SIGUSR1 => reopen_logs(),
        // reload.rs has its own handler; before it is installed, start-up reads the file anyway
        SIGHUP => {}
        _ => log::info!("{}: ignored", name(sig)),
    }
}

/// SIGUSR1: reopen the error log's and the access log's files (after logrotate renamed them).
fn reopen_logs() {
    match crate::error_log::reopen() {
        Ok(true) => log::info!("SIGUSR1: error log reopened"),
        Ok(false) => {}
        Err(e) => log::error!("SIGUSR1: cannot reopen the error log: {e}"),
    }
    let Some(running) = RUNNING.get() else {
        return; // still starting: the log is opened afresh
    };
    if let Some(log) = &running.state.load().access_log {
        match log.reopen() {
            Ok(()) => log::info!("SIGUSR1: access log reopened"),
            Err(e) => log::error!("SIGUSR1: cannot reopen the access log: {e}"),
        }
    }
}

/// Hand the signals what the process opened: the snapshot (its access log) and the pid file.
pub fn attach(state: Arc<ArcSwap<State>>, pid_file: Option<PathBuf>) {
    let _ = RUNNING.set(Running { state, pid_file });
}

/// The stop signal received so far (during start-up), if any.
pub fn stop_requested() -> Option<&'static str> {
    (*STOP.borrow()).map(name)
}

/// Exit 0 now, removing the pid file.
pub fn exit_now() -> ! {
    if let Some(p) = RUNNING.get().and_then(|r| r.pid_file.as_ref()) {
        let _ = std::fs::remove_file(p);
    }
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(0)
}

/// Pingora's watch for the graceful stop: it returns when SIGTERM or SIGQUIT has come (before
/// it was called, too).
pub struct GracefulStop {
    pub grace: Duration,
    pub delay: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for GracefulStop {
    async fn recv(&self) -> ShutdownSignal {
        let mut stop = STOP.subscribe();
        let received = stop.wait_for(Option::is_some).await.map(|sig| *sig);
        let sig = match received {
            Ok(sig) => name(sig.unwrap_or(SIGTERM)),
            Err(_) => return std::future::pending().await,
        };
        start_draining();
        if !self.delay.is_zero() {
            log::info!(
                "{sig}: /readyz answers 503, closing listeners in {:?}",
                self.delay
            );
            tokio::time::sleep(self.delay).await;
        }
        log::info!(
            "{sig}: draining {} in-flight request(s), grace {:?}",
            inflight(),
            self.grace
        );
        let grace = self.grace;
        // Pingora stops accepting and then sleeps the whole grace period; we exit as soon as
        // nothing is in flight.
        std::thread::spawn(move || {
            let start = Instant::now();
            std::thread::sleep(SETTLE);
            while inflight() > 0 && start.elapsed() < grace {
                std::thread::sleep(DRAIN_POLL);
            }
            if inflight() > 0 {
                log::warn!("grace period over with {} request(s) in flight", inflight());
            }
            exit_now();
        });
        ShutdownSignal::GracefulTerminate
    }
}
