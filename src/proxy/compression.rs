//! Compression of upstream bodies in Pingora's phases: the headers of a response about to be
//! compressed (or only `Vary`), and the body through the negotiated encoder. It runs before the
//! cache stores the body, so a HIT never compresses again.

use crate::compress::{self, Encoder};
use crate::metrics::METRICS;
use crate::request::context::Ctx;
use bytes::Bytes;
use http::header;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

/// Rewrite the upstream's response header for the location's compression and start the
/// encoder when this client gets an encoding. A 304 revalidating a stored compressed variant
/// gets its ETag weakened (the origin's strong ETag describes the identity bytes, and Pingora
/// merges this header into the stored one).
pub fn set_up_encoding(session: &Session, resp: &mut ResponseHeader, ctx: &mut Ctx) -> Result<()> {
    let state = ctx.state.clone();
    let Some(c) = ctx
        .location
        .and_then(|i| state.cfg.locations[i].compress.as_deref())
    else {
        return Ok(());
    };
    if resp.status.as_u16() == 304 {
        // Revalidating a stored compressed variant: the origin's strong ETag describes the
        // identity bytes, and Pingora merges this header into the stored one.
        let stored_encoded = session
            .cache
            .maybe_cache_meta()
            .is_some_and(|m| m.headers().contains_key(header::CONTENT_ENCODING));
        if stored_encoded {
            compress::weaken_etag(resp);
        }
        return Ok(());
    }
    if c.any_enabled() && compress::compressible(c, resp) {
        match ctx.encoding.and_then(|e| c.level(e).map(|l| (e, l))) {
            Some((enc, level)) => {
                compress::compressed_headers(resp, enc, c.vary);
                if session.req_header().method != http::Method::HEAD {
                    ctx.encoder =
                        Some(Encoder::new(enc, level).map_err(|e| {
                            Error::because(ErrorType::InternalError, "compressor", e)
                        })?);
                }
            }
            None if c.vary => compress::add_vary(resp),
            None => {}
        }
    }
    Ok(())
}

/// Pass `body` through the request's encoder, if any; at `end_of_stream` the encoder's tail
/// follows.
pub fn compress_body(body: &mut Option<Bytes>, end_of_stream: bool, ctx: &mut Ctx) -> Result<()> {
    let Some(enc) = ctx.encoder.as_mut() else {
        return Ok(());
    };
    let err = |e| Error::because(ErrorType::InternalError, "compress", e);
    let name = enc.encoding().token();
    let mut out = match body.take() {
        Some(data) if !data.is_empty() => {
            METRICS
                .compress_in
                .with_label_values(&[name])
                .inc_by(data.len() as u64);
            enc.push(&data).map_err(err)?
        }
        _ => Bytes::new(),
    };
    if end_of_stream {
        if let Some(enc) = ctx.encoder.take() {
            let tail = enc.finish().map_err(err)?;
            let mut all = bytes::BytesMut::with_capacity(out.len() + tail.len());
            all.extend_from_slice(&out);
            all.extend_from_slice(&tail);
            out = all.freeze();
        }
    }
    METRICS
        .compress_out
        .with_label_values(&[name])
        .inc_by(out.len() as u64);
    *body = if out.is_empty() { None } else { Some(out) };
    Ok(())
}
