//! outrigger: a caching reverse-proxy and web-server sidecar on Pingora, configured with the
//! NGINX vocabulary in YAML.

// Process: lifecycle and the config snapshot.
pub mod admin;
pub mod reload;
pub mod server;
pub mod state;

// Request handling: the HTTP/1 edge, Pingora's phases, and what both share.
pub mod edge;
pub mod proxy;
pub mod request;

// Engines and the config model.
pub mod access_log;
pub mod cache;
pub mod compress;
pub mod config;
pub mod files;
pub mod headers;
pub mod lifecycle;
pub mod metrics;
pub mod output;
pub mod router;
pub mod uri;
pub mod vars;

/// The `Server` header value and the signature of built-in error pages.
pub const SERVER_NAME: &str = "outrigger";
