//! A request body read whole by the edge before the request is handed on (NGINX's
//! `proxy_request_buffering on`, per location `request_buffering`): which requests, the
//! `100 Continue` a client waits for, and what a failed read becomes.

use super::head::Rejection;
use super::{within, Edge};
use crate::config::{Config, Handler};
use crate::request::route;
use crate::request::vars::Conn;
use crate::wire::{Framing, SpoolError, SpoolLimits, Spooled, Wire};
use tokio::io::AsyncWriteExt;

/// A body the edge reads whole: for the location `location`, after a `100 Continue` when the
/// client asked for one.
#[derive(Debug, Clone, Copy)]
pub struct Spool {
    location: usize,
    expect_continue: bool,
}

/// Whether the body of the parsed request `parsed`, framed by `framing`, is read whole first:
/// a body for a `proxy_pass` location with `request_buffering: on`, not declared larger than
/// its `client_max_body_size` (that is the proxy's 413, before any byte of it is read).
pub fn spool_for(cfg: &Config, parsed: &httparse::Request, framing: Framing) -> Option<Spool> {
    let declared = match framing {
        Framing::Length(0) | Framing::Empty | Framing::Tunnel => return None,
        Framing::Length(n) => Some(n),
        Framing::Chunked => None,
    };
    let (_, _, loc) = route::locate_target(cfg, parsed.path?)?;
    let location = &cfg.locations[loc];
    match &location.handler {
        Handler::Proxy(p) if p.request_buffering => {}
        _ => return None,
    }
    if let (Some(n), Some(max)) = (declared, location.client_max_body_size) {
        if n > max {
            return None;
        }
    }
    let expect_continue = parsed.version == Some(1)
        && parsed.headers.iter().any(|f| {
            f.name.eq_ignore_ascii_case("expect") && f.value.eq_ignore_ascii_case(b"100-continue")
        });
    Some(Spool {
        location: loc,
        expect_continue,
    })
}

impl Edge {
    /// Read the body of the request whose head is the first `head` bytes of the wire's buffer.
    /// `Ok(Some)`: read whole; `Ok(None)`: hand it on as it comes (no room for a temp file);
    /// `Err(())`: answered or gone, the connection closes.
    pub(super) async fn read_body(
        &self,
        wire: &mut Wire,
        head: usize,
        framing: Framing,
        spool: Spool,
        cfg: &Config,
        conn: Conn<'_>,
    ) -> Result<Option<Spooled>, ()> {
        if spool.expect_continue {
            // the client waits for it before it sends the body (RFC 9110 §10.1.1)
            let sent = within(
                cfg.send_timeout,
                wire.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n"),
            )
            .await;
            if sent.is_err() || within(cfg.send_timeout, wire.stream.flush()).await.is_err() {
                return Err(());
            }
        }
        let limits = SpoolLimits {
            memory: cfg.buffers.body_memory,
            max: cfg.locations[spool.location].client_max_body_size,
            timeout: cfg.buffers.body_timeout,
            dir: &cfg.buffers.body_temp_path,
        };
        let client = || conn.client.map_or_else(String::new, |a| a.to_string());
        let refused = match wire.spool(head, framing, &limits).await {
            Ok(body) => return Ok(Some(body)),
            Err(SpoolError::NoRoom(e)) => {
                log::warn!(
                    "client_body_temp_path {}: {e}; the request body is passed on as it comes",
                    limits.dir.display()
                );
                return Ok(None);
            }
            Err(SpoolError::Gone(why)) => {
                log::info!("client {} {why} while sending its request body", client());
                return Err(());
            }
            Err(SpoolError::TooLarge) => Rejection {
                status: 413,
                reason: "client intended to send too large chunked body",
            },
            Err(SpoolError::Invalid) => Rejection {
                status: 400,
                reason: "client sent invalid chunked body",
            },
        };
        Box::pin(self.refuse(wire, conn, refused)).await;
        Err(())
    }
}
