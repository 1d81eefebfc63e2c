//! The admin listener, apart from traffic: `/healthz` (alive), `/readyz` (serving; 503 while
//! draining after SIGTERM, so Kubernetes stops routing first), `/metrics` (Prometheus text).
//! Its socket is bound once, at start-up ([`bind`]): a taken port stops the start, and no
//! second bind can lose the port to another process in between.

use crate::lifecycle;
use crate::metrics::METRICS;
use crate::state::State;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::l4::stream::Stream;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_core::services::listening::Service;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long the accept loop waits after a failed accept (out of file descriptors, say).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Bind the admin listener's socket at `addr`; the error names the address.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    let socket = TcpListener::bind(addr)
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .map_err(|e| {
            format!(
                "cannot listen on {addr} (admin listener: /healthz, /readyz, /metrics): {e}; \
                 set `admin: {{listen: ADDR}}` to another address, or `admin: off`"
            )
        })?;
    Ok(socket)
}

/// The admin listener as a Pingora background service: it accepts on the socket [`bind`]
/// made and serves each connection with [`Admin`], until the server shuts down.
pub struct AdminListener {
    socket: Mutex<Option<TcpListener>>,
    app: Arc<Admin>,
}

impl AdminListener {
    /// Serve [`Admin`] on `socket` (from [`bind`]).
    pub fn new(socket: TcpListener, state: Arc<ArcSwap<State>>) -> AdminListener {
        AdminListener {
            socket: Mutex::new(Some(socket)),
            app: Arc::new(Admin { state }),
        }
    }
}

#[async_trait]
impl BackgroundService for AdminListener {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let socket = self.socket.lock().ok().and_then(|mut s| s.take());
        let listener = match socket.map(tokio::net::TcpListener::from_std) {
            Some(Ok(l)) => l,
            Some(Err(e)) => {
                log::error!("admin listener: {e}");
                return;
            }
            None => return,
        };
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _)) => {
                        let _ = tcp.set_nodelay(true);
                        let (app, shutdown) = (self.app.clone(), shutdown.clone());
                        let stream = Box::new(Stream::from(tcp));
                        tokio::spawn(Service::handle_event(stream, app, shutdown));
                    }
                    Err(e) => {
                        log::warn!("admin listener: accept failed: {e}");
                        tokio::time::sleep(ACCEPT_RETRY).await;
                    }
                },
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    }
}

/// The admin listener's application.
pub struct Admin {
    pub state: Arc<ArcSwap<State>>,
}

fn reply(status: u16, ctype: &str, body: impl Into<Vec<u8>>) -> Response<Vec<u8>> {
    let body = body.into();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, ctype)
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        match path.as_str() {
            "/healthz" => reply(200, "text/plain", "ok\n"),
            "/readyz" => {
                if lifecycle::draining() {
                    reply(503, "text/plain", "draining\n")
                } else {
                    reply(200, "text/plain", "ready\n")
                }
            }
            "/metrics" => {
                let state = self.state.load();
                let zones = state.zones.iter().zip(&state.cfg.zones).map(|(z, c)| {
                    let (bytes, entries) = (z.storage.bytes(), z.storage.entries());
                    (z.name.as_str(), bytes, entries, c.written_max_size())
                });
                METRICS.set_gauges(lifecycle::inflight(), zones);
                reply(200, "text/plain; version=0.0.4", METRICS.render())
            }
            _ => reply(404, "text/plain", "not found\n"),
        }
    }
}
