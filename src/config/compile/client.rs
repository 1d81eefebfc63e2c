//! How client connections and their request heads are read: `keepalive_timeout`,
//! `keepalive_requests`, `large_client_header_buffers`, `underscores_in_headers`,
//! `ignore_invalid_headers` (NGINX's names and defaults).

use super::{Compiler, Result};
use crate::config::model::ClientLimits;
use crate::config::raw::RawConfig;
use serde_yaml::Value;

/// The shortest line limit accepted.
const MIN_HEADER_LINE: u64 = 1024;
/// The longest head accepted, so that a connection's head stays bounded.
const MAX_HEADER_TOTAL: u64 = 1 << 20;

impl Compiler {
    /// The client connection settings of the server.
    /// (defaults: `ClientLimits::default`, NGINX's).
    pub(super) fn client_limits(&self, raw: &RawConfig) -> Result<ClientLimits> {
        let nginx = ClientLimits::default();
        let keepalive_timeout = self.duration(
            "keepalive_timeout",
            raw.keepalive_timeout.as_ref(),
            nginx.keepalive_timeout,
        )?;
        let keepalive_requests = match &raw.keepalive_requests {
            None => nginx.keepalive_requests,
            Some(v) => {
                let s = self.scalar("keepalive_requests", v)?;
                s.parse::<u64>().map_err(|_| {
                    self.err(
                        "keepalive_requests",
                        format!("expected a number, got `{s}`"),
                    )
                })?
            }
        };
        let (header_line, header_total) = match &raw.large_client_header_buffers {
            None => (nginx.header_line, nginx.header_total),
            Some(v) => self.header_buffers(v)?,
        };
        Ok(ClientLimits {
            keepalive_timeout,
            keepalive_requests,
            header_line,
            header_total,
            underscores_in_headers: self.flag(
                "underscores_in_headers",
                raw.underscores_in_headers.as_ref(),
                nginx.underscores_in_headers,
            )?,
            ignore_invalid_headers: self.flag(
                "ignore_invalid_headers",
                raw.ignore_invalid_headers.as_ref(),
                nginx.ignore_invalid_headers,
            )?,
        })
    }

    /// `large_client_header_buffers: "NUMBER SIZE"`: the longest line (SIZE) and head
    /// (NUMBER x SIZE).
    fn header_buffers(&self, v: &Value) -> Result<(usize, usize)> {
        const AT: &str = "large_client_header_buffers";
        let (count, size) = self.count_and_size(AT, v, "4 8k")?;
        if size < MIN_HEADER_LINE {
            return Err(self.err(AT, "the size must be at least 1k"));
        }
        match count.checked_mul(size) {
            // at most 1m, so both fit
            Some(total) if total <= MAX_HEADER_TOTAL => Ok((size as usize, total as usize)),
            _ => Err(self.err(AT, "at most 1m in all")),
        }
    }
}
