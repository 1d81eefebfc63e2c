//! What a request carries from its head to its log line (`Ctx`): the snapshot it started on,
//! its normalised path, location, upstream and cache outcome, and its negotiated encoding.

use crate::compress::{self, Encoder, Encoding};
use crate::config::{CacheRules, Config, Handler, Location};
use crate::lifecycle::InflightGuard;
use crate::state::State;
use bytes::Bytes;
use pingora_http::RequestHeader;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Per-request state.
pub struct Ctx {
    pub state: Arc<State>,
    pub start: Instant,
    /// The normalised, decoded URI path (`$uri`).
    pub path: String,
    pub location: Option<usize>,
    pub upstream: Option<usize>,
    pub upstream_start: Option<Instant>,
    pub upstream_time: Option<Duration>,
    pub upstream_status: Option<u16>,
    /// `$upstream_cache_status`; empty while the location has no cache.
    pub cache_status: &'static str,
    /// The memory tier answered (a HIT without Pingora's cache phases or a disk read).
    pub memory_hit: bool,
    /// The cache is in play for this request (cacheable method on a location with `cache:`).
    pub cache_on: bool,
    /// `cache.bypass` matched: lookup skipped, the response is still stored.
    pub cache_bypass: bool,
    /// An error page replacing an upstream error body (`intercept_errors`).
    pub intercept: Option<Bytes>,
    /// The encoding negotiated for this request, if the location compresses.
    pub encoding: Option<Encoding>,
    /// Compresses the upstream body (before it is cached, so hits never recompress).
    pub encoder: Option<Encoder>,
    /// Request body bytes read so far, counted against the location's `client_max_body_size`.
    pub body_read: u64,
    /// `$connection`: the serial number of the client connection (`lifecycle::next_connection`),
    /// 0 while the path that made the request has not said.
    pub connection: u64,
    /// `$request` as it arrived, for a head the edge refused or that timed out (no request was
    /// parsed from it).
    pub request_line: Option<String>,
    /// `$request_id`, drawn the first time something reads it.
    request_id: OnceLock<[u8; 16]>,
    _inflight: InflightGuard,
}

impl Ctx {
    /// A new request's context on the current snapshot; counts the request as in flight.
    pub fn new(state: Arc<State>) -> Ctx {
        Ctx {
            state,
            start: Instant::now(),
            path: String::new(),
            location: None,
            upstream: None,
            upstream_start: None,
            upstream_time: None,
            upstream_status: None,
            cache_status: "",
            memory_hit: false,
            cache_on: false,
            cache_bypass: false,
            intercept: None,
            encoding: None,
            encoder: None,
            body_read: 0,
            connection: 0,
            request_line: None,
            request_id: OnceLock::new(),
            _inflight: InflightGuard::new(),
        }
    }

    /// `$request_id`: 16 random bytes, the same for the whole request.
    pub fn request_id(&self) -> &[u8; 16] {
        self.request_id.get_or_init(rand::random)
    }

    pub fn cfg(&self) -> &Config {
        &self.state.cfg
    }

    pub fn location(&self) -> Option<&Location> {
        self.location.map(|i| &self.state.cfg.locations[i])
    }

    pub fn cache_rules(&self) -> Option<&CacheRules> {
        self.location().and_then(|l| l.cache.as_ref())
    }

    /// Assign the request to location `loc`, with its upstream and negotiated encoding.
    pub fn assign_location(&mut self, req: &RequestHeader, loc: usize) {
        let location = &self.state.cfg.locations[loc];
        self.encoding = location
            .compress
            .as_ref()
            .and_then(|c| compress::negotiate(c, req));
        if let Handler::Proxy(p) = &location.handler {
            self.upstream = Some(p.upstream);
        }
        self.location = Some(loc);
    }
}
