//! Responses the proxy produces itself (400, 403, 404, 405, 412, 416, 502, 504, ...): the
//! configured `error_pages` URI served from its static location with the error's status, or
//! NGINX's built-in HTML page.

use crate::config::{Config, Handler};
use crate::files;
use crate::request::context::Ctx;
use crate::request::vars::apply_header_rules_for;
use bytes::Bytes;
use http::header;
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use std::time::{Duration, SystemTime};

/// How long a refused client's further bytes are read and dropped after the answer, so that
/// closing with unread bytes does not reset the connection before the answer is read (NGINX's
/// lingering close).
pub const LINGER: Duration = Duration::from_secs(2);

/// Largest error page read into memory.
const MAX_PAGE: u64 = 1 << 20;

/// NGINX's built-in page for `status`.
pub fn builtin_body(status: u16) -> Bytes {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    Bytes::from(format!(
        "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n<hr><center>{}</center>\r\n</body>\r\n</html>\r\n",
        crate::SERVER_NAME
    ))
}

/// The configured page for `status` as (content type, body), if one is configured and readable.
pub async fn configured_page(cfg: &Config, status: u16) -> Option<(String, Bytes)> {
    let uri = cfg.error_pages.get(&status)?;
    let loc = cfg.router.find(uri)?;
    let Handler::Static(st) = &cfg.locations[loc].handler else {
        return None;
    };
    let (path, _) = st.map_path(uri)?;
    let meta = tokio::fs::metadata(&path).await.ok()?;
    if !meta.is_file() || meta.len() > MAX_PAGE {
        return None;
    }
    let body = tokio::fs::read(&path).await.ok()?;
    Some((files::content_type(cfg, &path), Bytes::from(body)))
}

/// Whether NGINX drops keep-alive after answering `status` itself (its special responses for
/// 400, 413, 414, 500 and 501; a 502/504 keeps the client connection).
pub fn closes_connection(status: u16) -> bool {
    matches!(status, 400 | 413 | 414 | 500 | 501)
}

/// Build the complete error response for `status`: its header and body.
pub async fn build(cfg: &Config, status: u16) -> Result<(Box<ResponseHeader>, Bytes)> {
    let (ctype, body) = match configured_page(cfg, status).await {
        Some(p) => p,
        None => ("text/html".to_string(), builtin_body(status)),
    };
    let mut h = ResponseHeader::build(status, Some(5))?;
    h.insert_header(header::SERVER, crate::SERVER_NAME)?;
    h.insert_header(header::DATE, httpdate::fmt_http_date(SystemTime::now()))?;
    h.insert_header(header::CONTENT_TYPE, ctype)?;
    h.insert_header(header::CONTENT_LENGTH, body.len())?;
    if status == 405 {
        h.insert_header("Allow", "GET, HEAD")?;
    }
    if closes_connection(status) {
        h.insert_header(header::CONNECTION, "close")?;
    }
    Ok((Box::new(h), body))
}

/// Write a response built by [`build`] (after the caller applied its header rules).
pub async fn send(session: &mut Session, h: Box<ResponseHeader>, body: Bytes) -> Result<()> {
    let status = h.status.as_u16();
    if closes_connection(status) {
        session.set_keepalive(None);
    }
    session.write_response_header(h, false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

/// Answer with an error status: the error page (or built-in page), plus the matched
/// location's header rules (only its `always` ones apply to error statuses).
pub async fn send_error(
    session: &mut Session,
    ctx: &Ctx,
    status: u16,
    extra: Option<(&'static str, String)>,
) -> Result<()> {
    let (mut h, body) = build(&ctx.state.cfg, status).await?;
    if let Some((name, value)) = extra {
        h.insert_header(name, value)?;
    }
    if let Some(location) = ctx.location() {
        apply_header_rules_for(session, ctx, location, &mut h);
    }
    send(session, h, body).await
}
