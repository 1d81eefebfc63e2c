//! The admin listener, apart from traffic: `/healthz` (alive), `/readyz` (serving; 503 while
//! draining after SIGTERM, so Kubernetes stops routing first), `/metrics` (Prometheus text).

use crate::lifecycle;
use crate::metrics::METRICS;
use crate::state::State;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use std::sync::Arc;

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
                let zones = state
                    .zones
                    .iter()
                    .map(|z| (z.name.as_str(), z.storage.bytes(), z.storage.entries()));
                METRICS.set_gauges(lifecycle::inflight(), zones);
                reply(200, "text/plain; version=0.0.4", METRICS.render())
            }
            _ => reply(404, "text/plain", "not found\n"),
        }
    }
}
