//! `upstreams:` (address, timeouts, keep-alive) and a location's `proxy_pass`,
//! `proxy_set_header`, `buffering`, `request_buffering` and `proxy_redirect`. Addresses are resolved once, here.

use super::{inherit, literal_prefix, Compiler, Result, ServerDefaults};
use crate::config::model::{ProxyConfig, Upstream};
use crate::config::raw::{RawLocation, RawUpstream};
use crate::headers::Redirects;
use crate::router::Matcher;
use crate::template::{Template, Var};
use http::{HeaderName, HeaderValue};
use indexmap::IndexMap;
use pingora_core::upstreams::peer::HttpPeer;
use serde_yaml::Value;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// NGINX `proxy_connect_timeout`, `proxy_read_timeout`, `proxy_send_timeout` and the upstream
/// `keepalive_timeout`.
const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per upstream (NGINX `keepalive`, which has no default).
const DEFAULT_KEEPALIVE: usize = 128;
/// NGINX `proxy_buffering on`.
pub(super) const DEFAULT_PROXY_BUFFERING: bool = true;
/// NGINX `proxy_request_buffering on`.
pub(super) const DEFAULT_REQUEST_BUFFERING: bool = true;
/// The `Host` sent upstream when `proxy_set_header` sets none (NGINX
/// `proxy_set_header Host $proxy_host`).
const DEFAULT_HOST_HEADER: &str = "$proxy_host";

/// How outrigger talks to one upstream.
#[derive(Debug, Clone, Copy)]
struct PeerSettings {
    /// NGINX `proxy_connect_timeout`.
    connect: Duration,
    /// NGINX `proxy_read_timeout`.
    read: Duration,
    /// NGINX `proxy_send_timeout`.
    send: Duration,
    /// NGINX `keepalive_timeout` (upstream): how long an idle connection is kept.
    idle: Duration,
    /// NGINX `keepalive`: idle connections kept.
    keepalive: usize,
}

impl PeerSettings {
    /// For an upstream written only as `host:port` in `proxy_pass`.
    const DEFAULT: PeerSettings = PeerSettings {
        connect: DEFAULT_UPSTREAM_TIMEOUT,
        read: DEFAULT_UPSTREAM_TIMEOUT,
        send: DEFAULT_UPSTREAM_TIMEOUT,
        idle: DEFAULT_UPSTREAM_TIMEOUT,
        keepalive: DEFAULT_KEEPALIVE,
    };

    /// The upstream `name` at `addr`, with a ready `HttpPeer`; `proxy_host` as written.
    fn upstream(self, name: &str, addr: SocketAddr, proxy_host: &str) -> Upstream {
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout = Some(self.connect);
        peer.options.total_connection_timeout = Some(self.connect);
        peer.options.read_timeout = Some(self.read);
        peer.options.write_timeout = Some(self.send);
        peer.options.idle_timeout = Some(self.idle);
        Upstream {
            name: name.to_string(),
            addr,
            proxy_host: proxy_host.to_string(),
            peer,
            keepalive: self.keepalive,
        }
    }
}

impl Compiler {
    /// `upstreams:`, in the order written (`ProxyConfig::upstream` indexes them).
    pub(super) fn upstreams(
        &self,
        upstreams: &IndexMap<String, RawUpstream>,
    ) -> Result<Vec<Upstream>> {
        upstreams
            .iter()
            .map(|(name, upstream)| self.upstream(&format!("upstreams.{name}"), name, upstream))
            .collect()
    }

    /// `upstreams.NAME`.
    fn upstream(&self, at: &str, name: &str, upstream: &RawUpstream) -> Result<Upstream> {
        let address_at = format!("{at}.address");
        let address = self.scalar(&address_at, &upstream.address)?;
        let address = address
            .strip_prefix("http://")
            .unwrap_or(&address)
            .trim_end_matches('/')
            .to_string();
        let addr = resolve(&address).map_err(|e| self.err(&address_at, e))?;
        let timeout =
            |key: &str, v| self.duration(&format!("{at}.{key}"), v, DEFAULT_UPSTREAM_TIMEOUT);
        let settings = PeerSettings {
            connect: timeout("connect_timeout", upstream.connect_timeout.as_ref())?,
            read: timeout("read_timeout", upstream.read_timeout.as_ref())?,
            send: timeout("send_timeout", upstream.send_timeout.as_ref())?,
            idle: timeout("keepalive_timeout", upstream.keepalive_timeout.as_ref())?,
            keepalive: upstream.keepalive.unwrap_or(DEFAULT_KEEPALIVE),
        };
        Ok(settings.upstream(name, addr, &address))
    }

    /// A location's `proxy_pass: http://UPSTREAM[/uri]`, with its `proxy_set_header`,
    /// `buffering` and `proxy_redirect`. `UPSTREAM` is a name under `upstreams:` or a
    /// `host:port`, which becomes an upstream of its own with the default settings.
    pub(super) fn proxy(
        &self,
        at: &str,
        proxy_pass: &str,
        loc: &RawLocation,
        matcher: &Matcher,
        server: &ServerDefaults,
        upstreams: &mut Vec<Upstream>,
    ) -> Result<ProxyConfig> {
        let pass_at = format!("{at}.proxy_pass");
        let proxy_pass = self.expand(&pass_at, proxy_pass)?;
        let (host, uri) = self.split_proxy_pass(&pass_at, &proxy_pass)?;
        let upstream = self.upstream_for(&pass_at, host, upstreams)?;
        let rewrite = match uri {
            None => None,
            Some(uri) => {
                let prefix = literal_prefix(matcher).ok_or_else(|| self.err(&pass_at, "`proxy_pass` cannot have a URI part in a regex location (NGINX forbids it too)"))?;
                Some((prefix.to_string(), uri.to_string()))
            }
        };
        let set_headers = self.proxy_set_header(at, &pass_at, loc, server)?;
        let default = default_redirects(
            &proxy_pass,
            &rewrite,
            (host, &upstreams[upstream].proxy_host),
        );
        let redirects = self.proxy_redirect(at, loc.proxy_redirect.as_ref(), default)?;
        Ok(ProxyConfig {
            upstream,
            rewrite,
            set_headers,
            redirects,
            buffering: self.flag(
                &format!("{at}.buffering"),
                loc.buffering.as_ref(),
                server.buffering,
            )?,
            request_buffering: self.flag(
                &format!("{at}.request_buffering"),
                loc.request_buffering.as_ref(),
                server.request_buffering,
            )?,
        })
    }

    /// `proxy_redirect`: `default` (also when absent), `off`, or a list whose items are
    /// `{from, to}` or `default`. Values are literal: NGINX's variables there are refused.
    fn proxy_redirect(
        &self,
        at: &str,
        v: Option<&Value>,
        default: Vec<(String, String)>,
    ) -> Result<Redirects> {
        let at = format!("{at}.proxy_redirect");
        let items = match v {
            None => return Ok(Redirects::new(default)),
            Some(Value::Sequence(items)) => items.as_slice(),
            Some(v) => std::slice::from_ref(v),
        };
        let list = matches!(v, Some(Value::Sequence(_)));
        let mut pairs = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_at = if list {
                format!("{at}[{i}]")
            } else {
                at.clone()
            };
            if let Value::Mapping(m) = item {
                let part = |key: &str| -> Result<String> {
                    let part_at = format!("{item_at}.{key}");
                    let value = m
                        .get(key)
                        .ok_or_else(|| self.err(&item_at, format!("`{key}` is missing")))?;
                    let value = self.scalar(&part_at, value)?;
                    if value.contains('$') {
                        return Err(self.err(&part_at, "variables are not supported here"));
                    }
                    HeaderValue::from_str(&value)
                        .map_err(|_| self.err(&part_at, "not a valid header value"))?;
                    Ok(value)
                };
                if let Some(key) = m
                    .keys()
                    .find(|k| !matches!(k.as_str(), Some("from" | "to")))
                {
                    return Err(self.err(&item_at, format!("unknown key `{}`", scalar_text(key))));
                }
                let from = part("from")?;
                if from.is_empty() {
                    return Err(self.err(&format!("{item_at}.from"), "must not be empty"));
                }
                pairs.push((from, part("to")?));
                continue;
            }
            match self.scalar(&item_at, item)?.as_str() {
                "default" => pairs.extend(default.iter().cloned()),
                "off" | "false" if items.len() == 1 => return Ok(Redirects::default()),
                other => {
                    return Err(self.err(
                        &item_at,
                        format!("`{other}`: expected `default`, `off` or `{{from, to}}`"),
                    ))
                }
            }
        }
        Ok(Redirects::new(pairs))
    }

    /// `http://HOST[/uri]` → (`HOST`, `/uri`).
    fn split_proxy_pass<'a>(
        &self,
        pass_at: &str,
        proxy_pass: &'a str,
    ) -> Result<(&'a str, Option<&'a str>)> {
        let rest = if let Some(rest) = proxy_pass.strip_prefix("http://") {
            rest
        } else if proxy_pass.starts_with("https://") {
            return Err(self.err(pass_at, "https upstreams are not supported (outrigger is a loopback sidecar; build with TLS to add them)"));
        } else {
            return Err(self.err(
                pass_at,
                format!("`{proxy_pass}`: expected `http://UPSTREAM[/uri]`"),
            ));
        };
        let (host, uri) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i..])),
            None => (rest, None),
        };
        if host.is_empty() {
            return Err(self.err(pass_at, format!("`{proxy_pass}`: missing upstream name")));
        }
        Ok((host, uri))
    }

    /// The index of the upstream `host` names, adding one for a `host:port` not seen before.
    fn upstream_for(
        &self,
        pass_at: &str,
        host: &str,
        upstreams: &mut Vec<Upstream>,
    ) -> Result<usize> {
        if let Some(i) = upstreams.iter().position(|u| u.name == host) {
            return Ok(i);
        }
        if !host.contains(':') {
            return Err(self.err(
                pass_at,
                format!(
                    "unknown upstream `{host}` (define it under `upstreams:` or write `host:port`)"
                ),
            ));
        }
        let addr = resolve(host)
            .map_err(|e| self.err(pass_at, format!("unknown upstream `{host}`: {e}")))?;
        upstreams.push(PeerSettings::DEFAULT.upstream(host, addr, host));
        Ok(upstreams.len() - 1)
    }

    /// `proxy_set_header` (the location's or else the server's), with `Host` added when it
    /// sets none.
    fn proxy_set_header(
        &self,
        at: &str,
        pass_at: &str,
        loc: &RawLocation,
        server: &ServerDefaults,
    ) -> Result<Vec<(HeaderName, Template)>> {
        let mut set_headers = Vec::new();
        let list = inherit(
            at,
            "proxy_set_header",
            loc.proxy_set_header.as_ref(),
            server.proxy_set_header,
        );
        if let Some((map, list_at)) = list {
            for (name, value) in map {
                set_headers.push(self.header_line(&format!("{list_at}.{name}"), name, value)?);
            }
        }
        if !set_headers.iter().any(|(n, _)| n == http::header::HOST) {
            set_headers.push((
                http::header::HOST,
                Template::parse(DEFAULT_HOST_HEADER).map_err(|e| self.err(pass_at, e))?,
            ));
        }
        // request headers are sent before there is a response status
        debug_assert!(set_headers.iter().all(|(_, t)| !t.uses(&Var::Status)));
        Ok(set_headers)
    }
}

/// NGINX's `proxy_redirect default`: the `proxy_pass` URL as written → the location's prefix
/// (with a URI part), else the URL plus `/` → `/`. For a named upstream (`written` is not its
/// `address`), also the same URL with the address, which outrigger sends as `Host`
/// (`$proxy_host`) and an app then names in its redirects.
fn default_redirects(
    proxy_pass: &str,
    rewrite: &Option<(String, String)>,
    (written, address): (&str, &str),
) -> Vec<(String, String)> {
    let (from, to) = match rewrite {
        Some((prefix, _)) => (proxy_pass.to_string(), prefix.clone()),
        None => (format!("{proxy_pass}/"), "/".to_string()),
    };
    let mut pairs = vec![(from.clone(), to.clone())];
    if written != address {
        let by_address = from.replacen(&format!("//{written}"), &format!("//{address}"), 1);
        pairs.push((by_address, to));
    }
    pairs
}

/// A YAML key as text, for messages.
fn scalar_text(v: &Value) -> String {
    serde_yaml::to_string(v).map_or_else(|_| "?".into(), |s| s.trim().to_string())
}

/// The keep-alive pool size: the largest any upstream asks for.
pub(super) fn keepalive_pool(upstreams: &[Upstream]) -> usize {
    upstreams
        .iter()
        .map(|u| u.keepalive)
        .max()
        .unwrap_or(DEFAULT_KEEPALIVE)
}

/// `host:port` → its first address.
fn resolve(s: &str) -> Result<SocketAddr, String> {
    if !s.contains(':') {
        return Err(format!("`{s}` needs a port (`host:port`)"));
    }
    s.to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{s}`: {e}"))?
        .next()
        .ok_or_else(|| format!("`{s}` resolves to no address"))
}
