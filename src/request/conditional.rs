//! Whether a cached response answers a conditional request with 304, the same on both paths
//! (a memory HIT on the edge, Pingora's HIT and MISS): `If-None-Match` as Pingora compares it,
//! else `If-Modified-Since` under `if_modified_since`, the rule static files follow too.

use crate::config::ImsMode;
use http::header;
use pingora_core::protocols::http::conditional_filter;
use pingora_http::{RequestHeader, ResponseHeader};

/// Whether `resp` (a 200 about to be sent from or into the cache) is not modified for `req`:
/// `If-None-Match`, when present, decides alone (RFC 9110 §13.1.3); else `If-Modified-Since`
/// against `Last-Modified`, compared as `mode` says ([`ImsMode::not_modified`]).
pub fn not_modified(req: &RequestHeader, resp: &ResponseHeader, mode: ImsMode) -> bool {
    if req.headers.contains_key(header::IF_NONE_MATCH) {
        return conditional_filter::not_modified_filter(req, resp);
    }
    let date = |v: Option<&http::HeaderValue>| {
        v.and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
    };
    resp.status == http::StatusCode::OK
        && matches!(req.method, http::Method::GET | http::Method::HEAD)
        && match (
            date(req.headers.get(header::IF_MODIFIED_SINCE)),
            date(resp.headers.get(header::LAST_MODIFIED)),
        ) {
            (Some(since), Some(last_modified)) => mode.not_modified(since, last_modified),
            _ => false,
        }
}
