//! Process lifecycle: logging set-up, the Pingora server with our listeners and thread count, and
//! the pid file; the main loop ends when `signals.rs` says so.

use crate::admin::AdminListener;
use crate::config::{Config, LogTarget};
use crate::edge::Edge;
use crate::proxy::Proxy;
use crate::signals::{self, GracefulStop};
use crate::state::State;
use arc_swap::ArcSwap;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{RunArgs, Server};
use pingora_core::services::background::background_service;
use std::io::Write;
use std::sync::Arc;

/// Install the error log (`log` facade) at the config's level and target (stdout, stderr or a
/// file, reopened on SIGUSR1), NGINX-style lines.
pub fn init_logging(cfg: &Config) -> Result<(), String> {
    let target = match &cfg.error_log.target {
        LogTarget::Stdout => env_logger::Target::Stdout,
        LogTarget::Stderr => env_logger::Target::Stderr,
        LogTarget::File(path) => env_logger::Target::Pipe(Box::new(
            crate::error_log::open(path)
                .map_err(|e| format!("cannot open the error log {}: {e}", path.display()))?,
        )),
    };
    let logger = env_logger::Builder::new()
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
        .build();
    let max = logger.filter();
    if log::set_boxed_logger(Box::new(Leveled(logger))).is_ok() {
        log::set_max_level(max);
    }
    Ok(())
}

/// The longest message of a client's malformed request that is logged (its raw bytes follow
/// Pingora's words).
const CLIENT_ERROR_MAX: usize = 200;

/// The error log, with some of Pingora's lines at the level they deserve.
struct Leveled(env_logger::Logger);

impl Leveled {
    /// The level and text of a Pingora line that deserves another level than Pingora's.
    fn relevel(rec: &log::Record) -> Option<(log::Level, String)> {
        match rec.target() {
            // A pooled upstream connection that another thread's idle watcher still held at the
            // moment it was picked (Arc::try_unwrap in TransportConnector::reused_stream): the
            // request opens a new connection and goes on. Nothing failed.
            "pingora_core::connectors" => {
                let msg = rec.args().to_string();
                (msg == "failed to acquire reusable stream").then_some((log::Level::Debug, msg))
            }
            // A client sent what is not HTTP (on the admin port: the edge answers the proxy
            // port's itself): the client's error, logged with its raw bytes, truncated.
            "pingora_core::apps::http_app" => {
                let mut msg = rec.args().to_string();
                if !msg.starts_with("HTTP server fails to read from downstream") {
                    return None;
                }
                if msg.len() > CLIENT_ERROR_MAX {
                    let mut end = CLIENT_ERROR_MAX;
                    while !msg.is_char_boundary(end) {
                        end -= 1;
                    }
                    msg.truncate(end);
                    msg.push_str("...");
                }
                Some((log::Level::Info, msg))
            }
            _ => None,
        }
    }
}

impl log::Log for Leveled {
    fn enabled(&self, meta: &log::Metadata) -> bool {
        self.0.enabled(meta)
    }

    fn log(&self, rec: &log::Record) {
        let Some((level, msg)) = Self::relevel(rec) else {
            return self.0.log(rec);
        };
        self.0.log(
            &log::Record::builder()
                .args(format_args!("{msg}"))
                .level(level)
                .target(rec.target())
                .module_path(rec.module_path())
                .file(rec.file())
                .line(rec.line())
                .build(),
        );
    }

    fn flush(&self) {
        self.0.flush()
    }
}

/// Run the proxy with `cfg` until a signal stops it.
pub fn run(cfg: Config) -> Result<(), String> {
    let cfg = Arc::new(cfg);
    init_logging(&cfg)?;
    for w in &cfg.warnings {
        log::warn!("{w}");
    }
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
    crate::metrics::METRICS.config_loaded(true, false);
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
    crate::reload::spawn(cfg.file.clone(), shared.clone(), cfg.reload_interval);
    signals::attach(shared, cfg.pid_file.clone());
    if let Some(sig) = signals::stop_requested() {
        log::info!("{sig} during start-up: exiting");
        signals::exit_now();
    }
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
        shutdown_signal: Box::new(GracefulStop {
            grace,
            delay: cfg.shutdown_delay,
        }),
    });
    signals::exit_now()
}
