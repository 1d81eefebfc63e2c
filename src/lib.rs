//! outrigger: a caching reverse-proxy and web-server sidecar on Pingora, configured with the
//! NGINX vocabulary in YAML.

// Imports point down this list, never up.

// The process: its listeners and signals, hot reload, the admin listener.
pub mod admin;
pub mod reload;
pub mod server;
pub mod signals;

// Request handling: the HTTP/1 edge, Pingora's phases, and what both share.
pub mod edge;
pub mod proxy;
pub mod request;

// The snapshot a request reads: the compiled config and what it opened.
pub mod state;

// Engines and the config model.
pub mod access_log;
pub mod cache;
pub mod compress;
pub mod config;
pub mod error_log;
pub mod files;
pub mod headers;
pub mod lifecycle;
pub mod metrics;
pub mod output;
pub mod router;
pub mod template;
pub mod uri;
pub mod wire;

/// The `Server` header value and the signature of built-in error pages.
pub const SERVER_NAME: &str = "outrigger";
