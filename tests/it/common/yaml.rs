//! The one builder of the configs that the proxy tests share. `{PORT}`, `{PORT2}` and `{DIR}`
//! are left in for [`start_proxy`](super::start_proxy) to fill in.

use super::{start_proxy, Proxy};

/// The server-level start of most configs: a listener on `{PORT}`, only errors logged (to
/// stderr), no access log.
pub const QUIET: &str = "listen: [\"127.0.0.1:{PORT}\"]\n\
                         error_log: {level: error, target: stderr}\n\
                         access_log: off\n";

/// [`QUIET`] plus upstream `app` at `127.0.0.1:<origin>`: 1 s to connect and to send,
/// `read_timeout` to read.
pub fn preamble_read_timeout(origin: u16, read_timeout: &str) -> String {
    format!(
        "{QUIET}upstreams:\n  \
           app: {{address: \"127.0.0.1:{origin}\", connect_timeout: 1s, read_timeout: {read_timeout}, send_timeout: 1s}}\n"
    )
}

/// [`preamble_read_timeout`] with a 5 s read timeout.
pub fn preamble(origin: u16) -> String {
    preamble_read_timeout(origin, "5s")
}

/// [`preamble`], then the server-level keys `server`, then a single location `prefix: /` ->
/// `app` with `loc` appended to it (its lines indented by 4 spaces).
pub fn proxy_all_yaml(origin: u16, server: &str, loc: &str) -> String {
    format!(
        "{}{server}locations:\n  - prefix: /\n    proxy_pass: http://app\n{loc}",
        preamble(origin)
    )
}

/// A proxy started on [`proxy_all_yaml`].
pub fn simple_proxy(origin: u16, server: &str, loc: &str) -> Proxy {
    start_proxy(&proxy_all_yaml(origin, server, loc))
}
