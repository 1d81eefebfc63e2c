//! How response bodies held in memory reach the client: a body up to [`MAX_WRITE`] (128 KiB)
//! in one write, a larger one in writes of whole TCP segments of up to that size (the
//! connection's MSS from `TCP_INFO`; [`WRITE_SIZE`], 32 KiB like NGINX's output buffers, when
//! it is unknown), never as one large write: with `TCP_NODELAY` a write that is not whole
//! segments ends in a short packet. Bodies read from disk (static files, disk HITs) are read in
//! [`WRITE_SIZE`] pieces, one write each. The measurements are in BENCHMARKS.md (S3).

use bytes::Bytes;
use pingora_core::protocols::SocketDigest;
use pingora_error::Result;
use pingora_proxy::Session;

/// Bodies up to this size go in one write; larger ones in writes of whole TCP segments up to
/// this size.
pub const MAX_WRITE: usize = 128 * 1024;

/// The size of reads from disk (one write each), and of writes when the connection's segment
/// size is unknown.
pub const WRITE_SIZE: usize = 32 * 1024;

/// The largest whole number of segments of `mss` bytes within [`MAX_WRITE`]: with
/// `TCP_NODELAY` every write ends in a pushed packet, so a write of whole segments leaves no
/// short packet behind it.
pub fn write_size(mss: Option<u32>) -> usize {
    match mss.map(|m| m as usize) {
        Some(m) if (536..=MAX_WRITE).contains(&m) => MAX_WRITE / m * m,
        _ => WRITE_SIZE,
    }
}

/// The write size for a body of `len` bytes: the whole body up to [`MAX_WRITE`], else
/// [`write_size`] of the connection's MSS, which `mss` asks the socket for (`TCP_INFO`) only
/// then.
pub fn write_size_for(len: usize, mss: impl FnOnce() -> Option<u32>) -> usize {
    if len <= MAX_WRITE {
        return MAX_WRITE;
    }
    write_size(mss())
}

/// The MSS of a client socket, from `TCP_INFO`.
pub fn mss_of(socket: Option<&SocketDigest>) -> Option<u32> {
    socket?.tcp_info().map(|i| i.tcpi_snd_mss)
}

/// `body` cut into slices of at most `size` bytes (no copy).
pub fn parts(body: &Bytes, size: usize) -> impl Iterator<Item = Bytes> + '_ {
    (0..body.len())
        .step_by(size)
        .map(move |at| body.slice(at..body.len().min(at + size)))
}

/// Write `body` (the whole rest of the response) to the client in [`parts`] of the
/// connection's [`write_size_for`]; the last one ends the response.
pub async fn write_body(session: &mut Session, body: Bytes) -> Result<()> {
    if body.is_empty() {
        return session.write_response_body(Some(body), true).await;
    }
    let size = write_size_for(body.len(), || {
        mss_of(session.digest().and_then(|d| d.socket_digest.as_deref()))
    });
    let mut parts = parts(&body, size).peekable();
    while let Some(part) = parts.next() {
        let last = parts.peek().is_none();
        session.write_response_body(Some(part), last).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_body_in_order() {
        for size in [WRITE_SIZE, 130_966] {
            for len in [0, 1, size - 1, size, size + 1, 3 * size + 17] {
                let body = Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>());
                let parts: Vec<Bytes> = parts(&body, size).collect();
                assert!(parts.iter().all(|p| !p.is_empty() && p.len() <= size));
                assert_eq!(parts.len(), len.div_ceil(size), "len {len}");
                assert_eq!(parts.concat(), body.to_vec(), "len {len}");
            }
        }
    }

    #[test]
    fn writes_are_whole_segments() {
        assert_eq!(write_size(Some(65_483)), 130_966); // loopback
        assert_eq!(write_size(Some(1_448)), 130_320); // 1,500-byte MTU with timestamps
        assert_eq!(write_size(Some(8_948)), 125_272); // jumbo frames
        assert_eq!(write_size(None), WRITE_SIZE);
        assert_eq!(write_size(Some(0)), WRITE_SIZE);
        assert_eq!(write_size(Some(1 << 20)), WRITE_SIZE);
        assert_eq!(write_size_for(MAX_WRITE, || Some(1_448)), MAX_WRITE);
        assert_eq!(write_size_for(MAX_WRITE + 1, || Some(1_448)), 130_320);
        assert_eq!(write_size_for(MAX_WRITE + 1, || None), WRITE_SIZE);
    }
}
