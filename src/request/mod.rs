//! What both paths (the HTTP/1 `edge` and Pingora's `proxy` phases) share for one request:
//! its context, its NGINX variables, routing, its cache key, the memory-tier lookup, the 304
//! rule of cached responses and the final log line.

pub mod cache_key;
pub mod conditional;
pub mod context;
pub mod log;
pub mod memory_tier;
pub mod route;
pub mod vars;
