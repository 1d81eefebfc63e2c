//! Static locations in Pingora's phases: the files engine's [`Plan`] answered on the session,
//! with the location's header rules, the compressed variant when the client gets one, and the
//! body from the file cache or streamed from disk.

use super::error_page;
use crate::compress;
use crate::compress::CompressConfig;
use crate::config::{Handler, StaticConfig};
use crate::files::{compressed_copy, plan, precompressed_sibling, FileVersion, Plan};
use crate::output;
use crate::request::context::Ctx;
use crate::request::vars::apply_header_rules_for;
use bytes::{Bytes, BytesMut};
use http::header;
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use std::path::Path;

/// Stream `len` bytes of `path` from `offset` to the client (headers already written).
///
/// Reads are plain blocking `pread`s of page-cached data between socket writes, as NGINX's
/// workers do: `tokio::fs` would add a thread hop and an extra copy per piece.
pub async fn send_body(session: &mut Session, path: &Path, offset: u64, len: u64) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let read_err = |what: &'static str, e: std::io::Error| {
        pingora_error::Error::because(pingora_error::ErrorType::FileReadError, what, e)
    };
    let f = std::fs::File::open(path).map_err(|e| read_err("open static file", e))?;
    let mut pos = offset;
    let end = offset + len;
    while pos < end {
        let want = ((end - pos) as usize).min(output::WRITE_SIZE);
        let mut buf = BytesMut::zeroed(want);
        let mut filled = 0;
        while filled < want {
            let n = f
                .read_at(&mut buf[filled..], pos + filled as u64)
                .map_err(|e| read_err("read static file", e))?;
            if n == 0 {
                return pingora_error::Error::e_explain(
                    pingora_error::ErrorType::FileReadError,
                    "static file shrank while being sent",
                );
            }
            filled += n;
        }
        pos += want as u64;
        let chunk: Bytes = buf.freeze();
        session.write_response_body(Some(chunk), pos == end).await?;
    }
    Ok(())
}

/// Answer a request routed to a static location.
pub async fn answer(session: &mut Session, ctx: &mut Ctx, loc: usize) -> Result<()> {
    let state = ctx.state.clone();
    let cfg = &state.cfg;
    let location = &cfg.locations[loc];
    let Handler::Static(st) = &location.handler else {
        return Ok(());
    };
    match plan(cfg, st, session.req_header(), &ctx.path) {
        Plan::Error(status) => error_page::send_error(session, ctx, status, None).await,
        Plan::Unsatisfiable(size) => {
            let range = format!("bytes */{size}");
            error_page::send_error(session, ctx, 416, Some(("Content-Range", range))).await
        }
        Plan::Head(mut h) => {
            apply_header_rules_for(session, ctx, location, &mut h);
            session.write_response_header(h, true).await
        }
        Plan::Body {
            path,
            version,
            mut header,
            offset,
            len,
        } => {
            let compressed = match location.compress.as_deref() {
                Some(c) => compressed_variant(ctx, c, st, &path, version, &mut header)?,
                None => None,
            };
            apply_header_rules_for(session, ctx, location, &mut header);
            let head = session.req_header().method == http::Method::HEAD;
            if let Some(body) = compressed {
                session.write_response_header(header, head).await?;
                if !head {
                    output::write_body(session, body).await?;
                }
                return Ok(());
            }
            session
                .write_response_header(header, head || len == 0)
                .await?;
            if head || len == 0 {
                return Ok(());
            }
            let cached = state.files.as_ref().and_then(|c| c.get(&path, version));
            match cached {
                Some(all) => {
                    let body = all.slice(offset as usize..(offset + len) as usize);
                    output::write_body(session, body).await
                }
                None => send_body(session, &path, offset, len).await,
            }
        }
    }
}

/// The compressed body for a static file when this request gets one: a precompressed
/// sibling (`static.precompressed`) or the file compressed once and kept in memory. Rewrites
/// `header` to match (a range request gets the whole compressed body, as NGINX).
fn compressed_variant(
    ctx: &Ctx,
    c: &CompressConfig,
    st: &StaticConfig,
    path: &Path,
    version: FileVersion,
    header: &mut ResponseHeader,
) -> Result<Option<Bytes>> {
    let symlinks = (st.symlinks, st.map_path(&ctx.path).map(|(_, root)| root));
    let full_len = header
        .headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit('/').next())
        .and_then(|v| v.parse::<u64>().ok());
    // judge the representation, not the requested range
    let mut probe = header.clone();
    if let Some(len) = full_len {
        probe.set_status(200)?;
        probe.insert_header(header::CONTENT_LENGTH, len)?;
    }
    if !compress::compressible(c, &probe) {
        return Ok(None);
    }
    let Some(enc) = ctx.encoding else {
        if c.vary {
            compress::add_vary(header);
        }
        return Ok(None);
    };
    let sibling = c
        .precompressed
        .then(|| precompressed_sibling(path, enc.suffix(), symlinks))
        .flatten();
    let body = match sibling.map(std::fs::read) {
        Some(Ok(b)) => Bytes::from(b),
        _ => {
            let Some(level) = c.level(enc) else {
                return Ok(None);
            };
            let size = full_len.or_else(|| {
                header
                    .headers
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
            });
            if size.unwrap_or(u64::MAX) > compress::MAX_STATIC_COMPRESS {
                return Ok(None);
            }
            let cache = ctx.state.compressed.as_ref().filter(|_| c.memory_cache > 0);
            match compressed_copy(cache, path, version, enc, level) {
                Ok(b) => b,
                Err(e) => {
                    log::warn!("cannot compress {}: {e}", path.display());
                    return Ok(None);
                }
            }
        }
    };
    if full_len.is_some() {
        header.set_status(200)?;
        header.remove_header(&header::CONTENT_RANGE);
    }
    compress::compressed_headers(header, enc, c.vary);
    header.insert_header(header::CONTENT_LENGTH, body.len())?;
    Ok(Some(body))
}
