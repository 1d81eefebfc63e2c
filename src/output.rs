//! How response bodies held in memory reach the client: in writes of at most
//! [`WRITE_SIZE`] bytes, as NGINX's output buffers (`output_buffers 2 32k`) and Go's
//! `io.Copy` do, never as one large write. Bodies read from disk (`files`, cache HITs) are
//! read in pieces of the same size, one write each.
//!
//! Measured on loopback (BENCHMARKS.md, S3 and the body-size table): a 1 MiB body in one
//! `send` saturated the proxy's core while the load generator's was half idle, and did 0.85×
//! NGINX; in 32 KiB writes the proxy's CPU per request fell and it does 1.13–1.16×. One write is
//! faster for bodies up to 128 KiB, but much slower at some larger sizes (how a body splits
//! into 65,483-byte loopback segments matters more than its size; 64 KiB writes, a full
//! segment plus a 53-byte runt each, were the worst), while 32 KiB writes were at or above
//! NGINX at every size measured.

use bytes::Bytes;
use pingora_error::Result;
use pingora_proxy::Session;

/// The most bytes handed to the socket in one write.
pub const WRITE_SIZE: usize = 32 * 1024;

/// `body` cut into slices of at most [`WRITE_SIZE`] bytes (no copy).
pub fn parts(body: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    (0..body.len())
        .step_by(WRITE_SIZE)
        .map(move |at| body.slice(at..body.len().min(at + WRITE_SIZE)))
}

/// Write `body` (the whole rest of the response) to the client in [`parts`]; the last one
/// ends the response.
pub async fn write_body(session: &mut Session, body: Bytes) -> Result<()> {
    if body.is_empty() {
        return session.write_response_body(Some(body), true).await;
    }
    let mut parts = parts(&body).peekable();
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
        for len in [
            0,
            1,
            WRITE_SIZE - 1,
            WRITE_SIZE,
            WRITE_SIZE + 1,
            3 * WRITE_SIZE + 17,
        ] {
            let body = Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>());
            let parts: Vec<Bytes> = parts(&body).collect();
            assert!(parts.iter().all(|p| !p.is_empty() && p.len() <= WRITE_SIZE));
            assert_eq!(parts.len(), len.div_ceil(WRITE_SIZE), "len {len}");
            assert_eq!(parts.concat(), body.to_vec(), "len {len}");
        }
    }
}
