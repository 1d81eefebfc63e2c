//! Where a chunked request body ends (RFC 9112 §7.1), found without decoding it.

/// Follows a chunked body (RFC 9112 §7.1) to find where it ends, without decoding it.
#[derive(Debug, Default)]
pub struct ChunkScan {
    state: Chunk,
    /// Data bytes left in the current chunk.
    left: u64,
    /// Data bytes seen so far (the decoded length).
    pub data: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// In a chunk-size line (size, extensions), until its LF.
    #[default]
    Size,
    /// In a chunk's data.
    Data,
    /// After a chunk's data, until the LF of its CRLF.
    DataEnd,
    /// At the start of a trailer line (or the empty line that ends the body).
    TrailerStart,
    /// In a trailer line, until its LF.
    Trailer,
    /// Past the body.
    Done,
    /// Not a chunked body: the rest of the connection is given to the session, which refuses
    /// it and closes the connection.
    Broken,
}

impl ChunkScan {
    /// How many bytes of `bytes` belong to the body, and whether it ended with them.
    pub fn advance(&mut self, bytes: &[u8]) -> (usize, bool) {
        let mut i = 0;
        while i < bytes.len() {
            match self.state {
                Chunk::Size => {
                    let b = bytes[i];
                    i += 1;
                    if b == b'\n' {
                        self.left &= !EXT;
                        self.state = if self.left == 0 {
                            Chunk::TrailerStart
                        } else {
                            Chunk::Data
                        };
                    } else if let Some(d) = (b as char).to_digit(16).filter(|_| !self.in_ext()) {
                        if self.left >= 1 << 58 {
                            // past any body anyone sends, and clear of the EXT bit
                            self.state = Chunk::Broken;
                            continue;
                        }
                        self.left = self.left * 16 + u64::from(d);
                    } else {
                        // extensions, whitespace and the CR: up to the LF
                        self.left |= EXT;
                    }
                }
                Chunk::Data => {
                    let n = self.left.min((bytes.len() - i) as u64);
                    // n <= bytes.len() - i
                    i += n as usize;
                    self.left -= n;
                    self.data += n;
                    if self.left == 0 {
                        self.state = Chunk::DataEnd;
                    }
                }
                Chunk::DataEnd => {
                    let b = bytes[i];
                    i += 1;
                    if b == b'\n' {
                        self.state = Chunk::Size;
                    }
                }
                Chunk::TrailerStart => {
                    let b = bytes[i];
                    i += 1;
                    self.state = match b {
                        b'\n' => Chunk::Done,
                        b'\r' => Chunk::TrailerStart,
                        _ => Chunk::Trailer,
                    };
                }
                Chunk::Trailer => {
                    let b = bytes[i];
                    i += 1;
                    if b == b'\n' {
                        self.state = Chunk::TrailerStart;
                    }
                }
                Chunk::Done => return (i, true),
                Chunk::Broken => return (bytes.len(), false),
            }
            if self.state == Chunk::Done {
                return (i, true);
            }
        }
        (i, false)
    }

    /// Whether the bytes seen are no chunked body.
    pub fn is_broken(&self) -> bool {
        self.state == Chunk::Broken
    }

    fn in_ext(&self) -> bool {
        self.left & EXT != 0
    }
}

/// Marks, in `ChunkScan::left` while a size line is read, that the size has ended (an
/// extension or the CR follows): digits after it are not part of the size.
const EXT: u64 = 1 << 63;

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(body: &[u8]) -> (usize, bool) {
        ChunkScan::default().advance(body)
    }

    #[test]
    fn chunked_bodies_end_where_their_last_chunk_and_trailers_end() {
        let body = b"3\r\nabc\r\n5;ext=1\r\ndefgh\r\n0\r\n\r\n";
        assert_eq!(
            scan(&[body.as_slice(), b"GET /"].concat()),
            (body.len(), true)
        );
        let trailers = b"1\r\nx\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n";
        assert_eq!(
            scan(&[trailers.as_slice(), b"next"].concat()),
            (trailers.len(), true)
        );
        let lf_only = b"2\nab\n0\n\n";
        assert_eq!(scan(lf_only), (lf_only.len(), true));
        // byte by byte, the end is found at the same place
        let mut s = ChunkScan::default();
        let mut total = 0;
        for (i, b) in body.iter().enumerate() {
            let (n, done) = s.advance(std::slice::from_ref(b));
            total += n;
            assert_eq!(done, i == body.len() - 1);
        }
        assert_eq!(total, body.len());
        // an upper-case size, and a size that overflows
        assert_eq!(scan(b"A\r\n0123456789\r\n0\r\n\r\n"), (20, true));
        let huge = b"ffffffffffffffffff\r\n";
        assert_eq!(scan(huge), (huge.len(), false));
    }
}
