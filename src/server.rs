//! Process lifecycle: logging set-up, the Pingora server with our listeners and thread count, the
//! pid file, and graceful shutdown (SIGTERM: stop accepting, exit 0 as soon as in-flight requests
//! finish or the grace period ends; SIGINT: fast exit).

use crate::admin::AdminListener;
use crate::config::{Config, LogTarget};
use crate::edge::Edge;
use crate::lifecycle::{inflight, start_draining};
use crate::proxy::Proxy;
use crate::state::State;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora_core::services::background::background_service;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Install the error log (`log` facade) at the config's level and target, NGINX-style lines.
pub fn init_logging(cfg: &Config) {
    let target = match cfg.error_log.target {
        LogTarget::Stdout => env_logger::Target::Stdout,
        _ => env_logger::Target::Stderr,
    };
    let _ = env_logger::Builder::new()
        .filter_level(cfg.error_log.level)
        // Pingora warns once that cache metadata headers are compressed without a dictionary.
        .filter_module("pingora_cache::meta", log::LevelFilter::Error)
        .target(target)
        .format(|buf, rec| {
            writeln!(
                buf,
                "{} [{}] {}: {}",
                chrono::Local::now().format("%Y/%m/%d %H:%M:%S"),
                rec.level().as_str().to_ascii_lowercase(),
                rec.target(),
                rec.args()
            )
        })
        .try_init();
}

struct Signals {
    grace: Duration,
    delay: Duration,
    pid_file: Option<std::path::PathBuf>,
}

fn exit_now(pid_file: &Option<std::path::PathBuf>) -> ! {
    if let Some(p) = pid_file {
        let _ = std::fs::remove_file(p);
    }
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(0)
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            log::error!("cannot install signal handlers");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = term.recv() => {
                start_draining();
                if !self.delay.is_zero() {
                    log::info!("SIGTERM: /readyz answers 503, closing listeners in {:?}", self.delay);
                    tokio::time::sleep(self.delay).await;
                }
                log::info!("SIGTERM: draining {} in-flight request(s), grace {:?}", inflight(), self.grace);
                let grace = self.grace;
                let pid_file = self.pid_file.clone();
                // Pingora stops accepting and then sleeps the whole grace period; we exit as
                // soon as nothing is in flight.
                std::thread::spawn(move || {
                    let start = Instant::now();
                    // let the listeners close and late requests register first
                    std::thread::sleep(Duration::from_millis(50));
                    while inflight() > 0 && start.elapsed() < grace {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    if inflight() > 0 {
                        log::warn!("grace period over with {} request(s) in flight", inflight());
                    }
                    exit_now(&pid_file);
                });
                ShutdownSignal::GracefulTerminate
            }
            _ = int.recv() => {
                log::info!("SIGINT: exiting");
                exit_now(&self.pid_file);
            }
        }
    }
}

/// Run the proxy with `cfg` until a signal stops it.
pub fn run(cfg: Config) -> Result<(), String> {
    let cfg = Arc::new(cfg);
    init_logging(&cfg);
    // Fail clearly on a taken port before Pingora would.
    for addr in &cfg.listen {
        std::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    }
    // The admin socket is bound once, here, and served as it is: a taken port stops the start.
    let admin_socket = cfg
        .admin
        .as_ref()
        .map(|a| crate::admin::bind(a.listen))
        .transpose()?;
    let state = State::build(cfg.clone()).map_err(|e| format!("cannot start: {e}"))?;
    let grace = cfg.grace_period;
    let conf = ServerConf {
        threads: cfg.threads,
        grace_period_seconds: Some(grace.as_secs_f64().ceil() as u64 + 1),
        graceful_shutdown_timeout_seconds: Some(1),
        upstream_keepalive_pool_size: cfg.keepalive_pool,
        max_retries: 3,
        work_stealing: false,
        pid_file: cfg
            .pid_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "/tmp/outrigger.pid".into()),
        upgrade_sock: format!("/tmp/outrigger_upgrade_{}.sock", std::process::id()),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let shared = Arc::new(ArcSwap::from_pointee(state));
    let proxy = Proxy {
        state: shared.clone(),
    };
    let proxy = Arc::new(pingora_proxy::http_proxy(&server.configuration, proxy));
    let mut svc = pingora_core::services::listening::Service::new(
        "outrigger".to_string(),
        Edge {
            proxy,
            state: shared.clone(),
        },
    );
    for addr in &cfg.listen {
        svc.add_listener(
            ListenerConfig::tcp(addr.to_string())
                // No L4 read buffer: Pingora reads requests into its own buffers anyway, and
                // tokio's BufReader would zero its 64 KiB on every new connection.
                .l4_buffer(L4BufferSettings::new(0, cfg.client_write_buffer)),
        );
    }
    server.add_service(svc);
    if let Some(socket) = admin_socket {
        server.add_service(background_service(
            "admin",
            AdminListener::new(socket, shared.clone()),
        ));
    }
    crate::reload::spawn(cfg.file.clone(), shared, cfg.reload_interval);
    if let Some(p) = &cfg.pid_file {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .map_err(|e| format!("cannot write pid file {}: {e}", p.display()))?;
    }
    log::info!(
        "outrigger {} listening on {:?} with {} thread(s)",
        env!("CARGO_PKG_VERSION"),
        cfg.listen,
        cfg.threads
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals {
            grace,
            delay: cfg.shutdown_delay,
            pid_file: cfg.pid_file.clone(),
        }),
    });
    exit_now(&cfg.pid_file)
}
