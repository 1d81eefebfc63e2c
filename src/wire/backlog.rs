//! What a client has not taken yet of a buffered response (NGINX's `proxy_buffering on`): in
//! memory up to a bound, past it in an unnamed temp file, sent to the socket as it takes it.

use bytes::{Buf, BytesMut};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Bytes read back from the temp file at a time.
const REFILL: u64 = 64 * 1024;

/// How much a response may keep waiting for its client.
#[derive(Debug, Clone, Copy)]
pub struct Bounds<'a> {
    /// Bytes in memory (NGINX `proxy_buffers`).
    pub memory: usize,
    /// Bytes in the temp file (NGINX `proxy_max_temp_file_size`; 0: none).
    pub file: u64,
    /// Where the temp file is made (NGINX `proxy_temp_path`).
    pub dir: &'a Path,
}

/// The bytes waiting, in order: `mem` first, then the unread part of the temp file.
#[derive(Debug, Default)]
pub struct Backlog {
    mem: BytesMut,
    spill: Option<Spill>,
}

/// A temp file with no name (`O_TMPFILE`): nobody else can open it, and it is gone with its
/// last descriptor, whatever happens to the process.
#[derive(Debug)]
struct Spill {
    file: File,
    written: u64,
    read: u64,
}

impl Backlog {
    pub fn is_empty(&self) -> bool {
        self.mem.is_empty() && self.spill.is_none()
    }

    /// How many bytes wait.
    pub fn len(&self) -> u64 {
        self.mem.len() as u64 + self.spill.as_ref().map_or(0, |s| s.written - s.read)
    }

    /// Keep `buf` after what waits already; `false` when the bounds (or the temp file) do not
    /// allow it, and the writer must wait for the client instead.
    pub fn push(&mut self, buf: &[u8], bounds: &Bounds) -> bool {
        if self.spill.is_none() && self.mem.len() + buf.len() <= bounds.memory {
            self.mem.extend_from_slice(buf);
            return true;
        }
        let spill = match &mut self.spill {
            Some(spill) => spill,
            None => {
                if bounds.file == 0 {
                    return false;
                }
                match tempfile::tempfile_in(bounds.dir) {
                    Ok(file) => self.spill.insert(Spill {
                        file,
                        written: 0,
                        read: 0,
                    }),
                    Err(e) => {
                        log::warn!(
                            "cannot make a temp file in {}: {e}; the response waits for its client",
                            bounds.dir.display()
                        );
                        return false;
                    }
                }
            }
        };
        if spill.written - spill.read + buf.len() as u64 > bounds.file {
            return false;
        }
        match spill.file.write_all_at(buf, spill.written) {
            Ok(()) => {
                spill.written += buf.len() as u64;
                true
            }
            Err(e) => {
                // ENOSPC and the like: this response streams from here on
                log::warn!("cannot write a temp file: {e}; the response waits for its client");
                false
            }
        }
    }

    /// The next bytes to send (read back from the temp file when memory is empty); empty
    /// when nothing waits.
    pub fn front(&mut self) -> io::Result<&[u8]> {
        if self.mem.is_empty() {
            if let Some(spill) = &mut self.spill {
                let n = REFILL.min(spill.written - spill.read);
                // n <= REFILL
                self.mem.resize(n as usize, 0);
                spill.file.read_exact_at(&mut self.mem, spill.read)?;
                spill.read += n;
                if spill.read == spill.written {
                    self.spill = None;
                }
            }
        }
        Ok(&self.mem)
    }

    /// `n` bytes of the front were sent. Once nothing waits, the memory goes back: an idle
    /// keep-alive connection keeps no buffer of its last answer.
    pub fn consume(&mut self, n: usize) {
        self.mem.advance(n);
        if self.is_empty() {
            self.mem = BytesMut::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(b: &mut Backlog) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let front = b.front().expect("read back").to_vec();
            if front.is_empty() {
                return out;
            }
            // a socket that takes 1000 bytes at a time
            let n = front.len().min(1000);
            out.extend_from_slice(&front[..n]);
            b.consume(n);
        }
    }

    #[test]
    fn bytes_come_back_in_order_through_memory_and_the_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bounds = Bounds {
            memory: 4096,
            file: 1 << 20,
            dir: dir.path(),
        };
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut b = Backlog::default();
        let mut sent = Vec::new();
        for (i, piece) in data.chunks(3000).enumerate() {
            assert!(b.push(piece, &bounds));
            if i % 7 == 0 {
                // the client takes some now and then
                let front = b.front().expect("read back").to_vec();
                let n = front.len().min(2500);
                sent.extend_from_slice(&front[..n]);
                b.consume(n);
            }
        }
        sent.extend(drain(&mut b));
        assert_eq!(sent, data);
        assert!(b.is_empty());
        // past the file bound: refused
        let small = Bounds {
            file: 10_000,
            ..bounds
        };
        let mut b = Backlog::default();
        assert!(b.push(&[1; 4096], &small));
        assert!(b.push(&[2; 9_000], &small));
        assert!(!b.push(&[3; 2_000], &small));
        // no temp file allowed: memory only
        let none = Bounds { file: 0, ..bounds };
        let mut b = Backlog::default();
        assert!(b.push(&[1; 4096], &none));
        assert!(!b.push(&[1; 1], &none));
        // nowhere to make a temp file
        let nowhere = Bounds {
            dir: Path::new("/nonexistent/outrigger"),
            ..bounds
        };
        let mut b = Backlog::default();
        assert!(!b.push(&[1; 5000], &nowhere));
    }
}
