//! outrigger: a caching reverse-proxy and web-server sidecar on Pingora, configured with the
//! NGINX vocabulary in YAML.

pub mod access_log;
pub mod admin;
pub mod cache;
pub mod compress;
pub mod config;
pub mod context;
pub mod error_page;
pub mod files;
pub mod front;
pub mod headers;
pub mod metrics;
pub mod output;
pub mod proxy;
pub mod reload;
pub mod router;
pub mod server;
pub mod uri;
pub mod vars;

/// The `Server` header value and the signature of built-in error pages.
pub const SERVER_NAME: &str = "outrigger";
