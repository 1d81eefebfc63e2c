//! A request body read whole before it is handed on (NGINX's `proxy_request_buffering on`):
//! in the connection's buffer up to `client_body_buffer_size`, past it in an unnamed temp file,
//! so the upstream is asked only once the upload is over, and gets it at memory speed.

use super::chunk_scan::ChunkScan;
use super::{Framing, Wire};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

/// How a body is read.
#[derive(Debug, Clone, Copy)]
pub struct SpoolLimits<'a> {
    /// Bytes kept in memory (`client_body_buffer_size`).
    pub memory: usize,
    /// The largest body (`client_max_body_size`; `None`: no limit).
    pub max: Option<u64>,
    /// Longest wait between two reads (`client_body_timeout`).
    pub timeout: Duration,
    /// Where the temp file is made (`client_body_temp_path`).
    pub dir: &'a Path,
}

/// A body read whole: its decoded length, and the temp file holding it when it did not stay
/// in memory.
#[derive(Debug)]
pub struct Spooled {
    pub length: u64,
    pub(super) file: Option<(File, u64)>,
}

/// Why a body was not read whole.
#[derive(Debug)]
pub enum SpoolError {
    /// Larger than `client_max_body_size` (413).
    TooLarge,
    /// The client stopped sending (`client_body_timeout`) or closed.
    Gone(&'static str),
    /// Not a chunked body (400).
    Invalid,
    /// No temp file could be made or written: the body is handed on as it comes instead.
    NoRoom(io::Error),
}

impl Wire {
    /// Read the whole body of the request whose head is the first `head` bytes of the buffer.
    /// What follows the body stays in the buffer.
    pub async fn spool(
        &mut self,
        head: usize,
        framing: Framing,
        limits: &SpoolLimits<'_>,
    ) -> Result<Spooled, SpoolError> {
        let mut scan = ChunkScan::default();
        let mut left = match framing {
            Framing::Length(n) => n,
            Framing::Chunked => u64::MAX,
            Framing::Empty | Framing::Tunnel => {
                return Ok(Spooled {
                    length: 0,
                    file: None,
                })
            }
        };
        // body bytes kept in the buffer, after the head
        let mut in_memory = 0usize;
        let mut file: Option<(File, u64)> = None;
        loop {
            let fresh = &self.buf[head + in_memory..];
            let (take, done, length) = match framing {
                Framing::Chunked => {
                    let (n, done) = scan.advance(fresh);
                    if scan.is_broken() {
                        return Err(SpoolError::Invalid);
                    }
                    (n, done, scan.data)
                }
                _ => {
                    // left <= the declared length, whatever its size
                    let n = left.min(fresh.len() as u64) as usize;
                    left -= n as u64;
                    (n, left == 0, 0)
                }
            };
            let length = match framing {
                Framing::Length(n) => n - left,
                _ => length,
            };
            if limits.max.is_some_and(|max| length > max) {
                return Err(SpoolError::TooLarge);
            }
            if file.is_some() || in_memory + take > limits.memory {
                if let Err(e) = self.move_to_file(&mut file, head, in_memory + take, limits.dir) {
                    // what went to the file comes back, and the body is passed on as it comes
                    self.restore(file, head)?;
                    return Err(SpoolError::NoRoom(e));
                }
                in_memory = 0;
            } else {
                in_memory += take;
            }
            if done {
                return Ok(Spooled { length, file });
            }
            match tokio::time::timeout(limits.timeout, self.read_more()).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return Err(SpoolError::Gone("closed")),
                Err(_) => return Err(SpoolError::Gone("timed out")),
            }
        }
    }
}

impl Wire {
    /// Append the `n` body bytes after the head to the temp file (made on first use), and take
    /// them out of the buffer.
    fn move_to_file(
        &mut self,
        file: &mut Option<(File, u64)>,
        head: usize,
        n: usize,
        dir: &Path,
    ) -> io::Result<()> {
        let (f, written) = match file {
            Some(f) => f,
            None => file.insert((tempfile::tempfile_in(dir)?, 0)),
        };
        f.write_all_at(&self.buf[head..head + n], *written)?;
        *written += n as u64;
        let rest = self.buf.split_off(head + n);
        self.buf.truncate(head);
        self.buf.unsplit(rest);
        Ok(())
    }

    /// Put what the temp file holds back in the buffer after the head.
    fn restore(&mut self, file: Option<(File, u64)>, head: usize) -> Result<(), SpoolError> {
        let Some((f, written)) = file else {
            return Ok(());
        };
        let mut body = vec![0u8; usize::try_from(written).map_err(|_| SpoolError::Gone("lost"))?];
        f.read_exact_at(&mut body, 0)
            .map_err(|_| SpoolError::Gone("lost (temp file unreadable)"))?;
        let rest = self.buf.split_off(head);
        self.buf.extend_from_slice(&body);
        self.buf.unsplit(rest);
        Ok(())
    }
}
