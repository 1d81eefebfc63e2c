//! Where an upstream response waits for a slow client: `proxy_buffers`,
//! `proxy_max_temp_file_size`, `proxy_temp_path`; and a request body for its upload to end:
//! `client_body_buffer_size`, `client_body_temp_path`, `client_body_timeout` (NGINX's names
//! and defaults).

use super::{Compiler, Result};
use crate::config::model::Buffers;
use crate::config::raw::RawConfig;

/// NGINX `proxy_buffers 8 8k`.
const DEFAULT_BUFFERS: usize = 8 * 8 * 1024;
/// NGINX `proxy_max_temp_file_size 1024m`.
const DEFAULT_TEMP_FILE_MAX: u64 = 1024 << 20;
/// The most memory one response may keep.
const MAX_BUFFERS: u64 = 64 << 20;
/// NGINX `client_body_buffer_size 16k` (two pages on 64-bit).
const DEFAULT_BODY_MEMORY: u64 = 16 * 1024;
/// NGINX `client_body_timeout 60s`.
const DEFAULT_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl Compiler {
    /// The response buffers of the server.
    pub(super) fn buffers(&self, raw: &RawConfig) -> Result<Buffers> {
        const AT: &str = "proxy_buffers";
        let memory = match &raw.proxy_buffers {
            None => DEFAULT_BUFFERS,
            Some(v) => {
                let (count, size) = self.count_and_size(AT, v, "8 8k")?;
                let total = count.saturating_mul(size);
                if size == 0 || total > MAX_BUFFERS {
                    return Err(self.err(AT, "from 1 byte to 64m in all"));
                }
                // total <= 64m
                total as usize
            }
        };
        let temp_file_max = self
            .size(
                "proxy_max_temp_file_size",
                raw.proxy_max_temp_file_size.as_ref(),
            )?
            .unwrap_or(DEFAULT_TEMP_FILE_MAX);
        let temp_path = match raw.proxy_temp_path.as_deref() {
            Some(p) => self.path("proxy_temp_path", p)?,
            None => std::env::temp_dir(),
        };
        let body_memory = self
            .size(
                "client_body_buffer_size",
                raw.client_body_buffer_size.as_ref(),
            )?
            .unwrap_or(DEFAULT_BODY_MEMORY);
        if body_memory > MAX_BUFFERS {
            return Err(self.err("client_body_buffer_size", "at most 64m"));
        }
        let body_temp_path = match raw.client_body_temp_path.as_deref() {
            Some(p) => self.path("client_body_temp_path", p)?,
            None => std::env::temp_dir(),
        };
        let body_timeout = self.duration(
            "client_body_timeout",
            raw.client_body_timeout.as_ref(),
            DEFAULT_BODY_TIMEOUT,
        )?;
        if body_timeout.is_zero() {
            return Err(self.err("client_body_timeout", "must be more than 0"));
        }
        Ok(Buffers {
            memory,
            temp_file_max,
            temp_path,
            // at most 64m
            body_memory: body_memory as usize,
            body_temp_path,
            body_timeout,
        })
    }
}
