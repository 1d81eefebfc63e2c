//! Routing, the same on both paths: the request-head checks NGINX makes and Pingora does not,
//! URI normalisation (`$uri`), the choice of location, and NGINX's slash redirect (`/api` →
//! `/api/` for a `proxy_pass` location `/api/`).

use super::context::Ctx;
use crate::config::{ClientLimits, Config};
use crate::uri;
use http::header;
use pingora_http::RequestHeader;

/// A request refused by routing, before any handler: the status to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal(pub u16);

/// Request-head checks NGINX makes and Pingora does not: 414 for a request line over the line
/// limit (`large_client_header_buffers`), 400 for a header line over it, 400 for HTTP/1.1
/// without `Host`.
pub fn check_head(req: &RequestHeader, limits: &ClientLimits) -> Result<(), Refusal> {
    let target_len = req.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if target_len + req.method.as_str().len() + 10 > limits.header_line {
        return Err(Refusal(414));
    }
    if req
        .headers
        .iter()
        .any(|(n, v)| n.as_str().len() + v.len() + 2 > limits.header_line)
    {
        return Err(Refusal(400));
    }
    if req.version == http::Version::HTTP_11
        && req.uri.host().is_none()
        && !req.headers.contains_key(header::HOST)
    {
        return Err(Refusal(400));
    }
    Ok(())
}

/// The normalised form of a raw request path (400 when it climbs above `/` or holds NUL).
pub fn normalize(raw_path: &str) -> Result<String, Refusal> {
    uri::normalize(raw_path).map_err(|_| Refusal(400))
}

/// Where routing sends a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// The location serving it.
    Location(usize),
    /// A `301` to the path with `/` appended, answered in the name of this location (NGINX's
    /// `auto_redirect`, which wins over any other match but an exact one).
    SlashRedirect(usize),
}

fn find(cfg: &Config, path: &str) -> Result<Routed, Refusal> {
    if let Some(loc) = cfg.router.slash_redirect(path) {
        return Ok(Routed::SlashRedirect(loc));
    }
    cfg.router
        .find(path)
        .map(Routed::Location)
        .ok_or(Refusal(404))
}

/// The location serving normalised `path` (404 when none matches; 301 when the slash redirect
/// applies, which [`route`] answers: whoever gets a refusal here leaves it to `route`).
pub fn locate(cfg: &Config, path: &str) -> Result<usize, Refusal> {
    match find(cfg, path)? {
        Routed::Location(loc) => Ok(loc),
        Routed::SlashRedirect(_) => Err(Refusal(301)),
    }
}

/// For a raw request target, before a request header is built (the edge): its path without
/// the query, that path normalised and the location serving it; `None` where [`route`] would
/// refuse.
pub fn locate_target<'a>(cfg: &Config, target: &'a str) -> Option<(&'a str, String, usize)> {
    let raw_path = target.split_once('?').map_or(target, |(p, _)| p);
    let path = normalize(raw_path).ok()?;
    let loc = locate(cfg, &path).ok()?;
    Some((raw_path, path, loc))
}

/// Every step in order for a parsed request: head checks, normalisation (`ctx.path`), the
/// location and what it assigns (`Ctx::assign_location`; a slash redirect only names its
/// location, it has no upstream).
pub fn route(req: &RequestHeader, ctx: &mut Ctx) -> Result<Routed, Refusal> {
    check_head(req, &ctx.cfg().client)?;
    ctx.path = normalize(req.uri.path())?;
    let routed = find(&ctx.state.cfg, &ctx.path)?;
    match routed {
        Routed::Location(loc) => ctx.assign_location(req, loc),
        Routed::SlashRedirect(loc) => ctx.location = Some(loc),
    }
    Ok(routed)
}
