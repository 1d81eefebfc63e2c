//! `locations:`: each location's matcher (`exact`, `prefix`, `regex`, `regex_i`, `no_regex`),
//! handler (`root`, `alias`, `index`, `symlinks`; `proxy_pass` is in `upstreams`), header rules
//! (`add_header`, `set_header`, `hide_header`, `expires`, `expires_if`), `intercept_errors`
//! and `client_max_body_size`; the server-level values they inherit (`root`, `index`,
//! `symlinks`, `if_modified_since`, the header lists, `client_max_body_size`); and the
//! [`Router`] over them.

use super::{inherit, literal_prefix, Compiler, Result, ServerDefaults};
use crate::compress::CompressConfig;
use crate::config::model::{
    DocRoot, Handler, ImsMode, Location, StaticConfig, SymlinkPolicy, Upstream, ZoneConfig,
};
use crate::config::raw::{OneOrMany, RawAddHeader, RawConfig, RawExpiresIf, RawLocation};
use crate::config::units;
use crate::headers::{AddHeader, Expires, HeaderRules};
use crate::metrics::UNMATCHED_LOCATION;
use crate::router::{Matcher, Router};
use indexmap::IndexMap;
use regex::Regex;
use serde_yaml::Value;
use std::sync::Arc;

/// `symlinks`: followed only when the target stays inside the root.
const DEFAULT_SYMLINKS: SymlinkPolicy = SymlinkPolicy::WithinRoot;
/// NGINX `if_modified_since exact`.
const DEFAULT_IF_MODIFIED_SINCE: ImsMode = ImsMode::Exact;
/// NGINX `index index.html`.
const DEFAULT_INDEX: &str = "index.html";
/// NGINX `client_max_body_size 1m`.
const DEFAULT_CLIENT_MAX_BODY_SIZE: u64 = 1 << 20;
/// NGINX `proxy_intercept_errors off`.
const DEFAULT_INTERCEPT_ERRORS: bool = false;

impl Compiler {
    /// The server-level `symlinks`, `root`, `index`, header lists and `intercept_errors`.
    pub(super) fn server_defaults<'a>(&self, raw: &'a RawConfig) -> Result<ServerDefaults<'a>> {
        let symlinks = self.symlinks("symlinks", raw.symlinks.as_deref(), DEFAULT_SYMLINKS)?;
        Ok(ServerDefaults {
            root: raw
                .root
                .as_deref()
                .map(|root| self.path("root", root))
                .transpose()?,
            index: raw.index.clone(),
            proxy_set_header: raw.proxy_set_header.as_ref(),
            add_header: raw.add_header.as_ref(),
            set_header: raw.set_header.as_ref(),
            hide_header: raw.hide_header.as_ref(),
            intercept_errors: self.flag(
                "intercept_errors",
                raw.intercept_errors.as_ref(),
                DEFAULT_INTERCEPT_ERRORS,
            )?,
            client_max_body_size: self
                .size("client_max_body_size", raw.client_max_body_size.as_ref())?
                .map_or(Some(DEFAULT_CLIENT_MAX_BODY_SIZE), body_limit),
            symlinks,
            buffering: self.flag(
                "buffering",
                raw.buffering.as_ref(),
                super::upstreams::DEFAULT_PROXY_BUFFERING,
            )?,
            request_buffering: self.flag(
                "request_buffering",
                raw.request_buffering.as_ref(),
                super::upstreams::DEFAULT_REQUEST_BUFFERING,
            )?,
        })
    }

    /// Every location, in the order written, and the router that picks one for a URI.
    /// `host:port` upstreams named by `proxy_pass` are added to `upstreams`.
    pub(super) fn locations(
        &self,
        raw: &RawConfig,
        server: &ServerDefaults,
        server_compress: Option<Arc<CompressConfig>>,
        zones: &[ZoneConfig],
        upstreams: &mut Vec<Upstream>,
    ) -> Result<(Vec<Location>, Router)> {
        let mut locations = Vec::new();
        let mut matchers = Vec::new();
        let mut matcher_at = Vec::new();
        let mut labels = std::collections::HashSet::new();
        for (i, loc) in raw.locations.iter().enumerate() {
            let at = format!("locations[{i}]");
            let (matcher, name) = self.matcher(&at, loc)?;
            let label = self.label(&at, loc, &matcher, i, &mut labels)?;
            let handler = self.handler(&at, loc, &matcher, server, upstreams)?;
            let headers = self.header_rules(&at, loc, server)?;
            let intercept_errors = self.flag(
                &format!("{at}.intercept_errors"),
                loc.intercept_errors.as_ref(),
                server.intercept_errors,
            )?;
            let client_max_body_size = self
                .size(
                    &format!("{at}.client_max_body_size"),
                    loc.client_max_body_size.as_ref(),
                )?
                .map_or(server.client_max_body_size, body_limit);
            let compress = match &loc.gzip {
                None => server_compress.clone(),
                Some(gzip) => self.compress(
                    raw,
                    Some(gzip),
                    &format!("{at}.gzip"),
                    server_compress.as_deref(),
                )?,
            };
            let cache = self.location_cache(&at, loc.cache.as_ref(), &handler, zones)?;
            locations.push(Location {
                name,
                label,
                handler,
                headers,
                intercept_errors,
                client_max_body_size,
                cache,
                compress,
            });
            matchers.push(matcher);
            matcher_at.push(at);
        }
        let router = Router::new(matchers).map_err(|(i, e)| self.err(&matcher_at[i], e))?;
        // NGINX's `auto_redirect`: set by `proxy_pass` (the router looks only at names that end
        // in `/`)
        let router =
            router.with_slash_redirects(|i| matches!(locations[i].handler, Handler::Proxy(_)));
        Ok((locations, router))
    }

    /// A location's matcher, and its name for logs and metrics in NGINX's notation
    /// (`= /x`, `^~ /x`, `~ re`, `~* re`).
    fn matcher(&self, at: &str, loc: &RawLocation) -> Result<(Matcher, String)> {
        let kinds = written(&[
            ("exact", loc.exact.is_some()),
            ("prefix", loc.prefix.is_some()),
            ("regex", loc.regex.is_some()),
            ("regex_i", loc.regex_i.is_some()),
        ]);
        if kinds.len() != 1 {
            let found = if kinds.is_empty() {
                "none".to_string()
            } else {
                kinds.join(", ")
            };
            return Err(self.err(
                at,
                format!("a location needs exactly one of `exact`, `prefix`, `regex`, `regex_i` (found {found})"),
            ));
        }
        let no_regex = self.flag(&format!("{at}.no_regex"), loc.no_regex.as_ref(), false)?;
        if no_regex && loc.prefix.is_none() {
            return Err(self.key_err(
                &format!("{at}.no_regex"),
                "`no_regex` (NGINX `^~`) only applies to a `prefix` location",
            ));
        }
        let check_uri = |key: &str, uri: &str| -> Result<()> {
            if uri.starts_with('/') {
                Ok(())
            } else {
                Err(self.err(
                    &format!("{at}.{key}"),
                    format!("`{uri}` must start with `/`"),
                ))
            }
        };
        let regex = |key: &str, pattern: &str| -> Result<()> {
            Regex::new(pattern)
                .map(drop)
                .map_err(|e| self.err(&format!("{at}.{key}"), format!("invalid regex: {e}")))
        };
        Ok(if let Some(exact) = &loc.exact {
            check_uri("exact", exact)?;
            (Matcher::Exact(exact.clone()), format!("= {exact}"))
        } else if let Some(prefix) = &loc.prefix {
            check_uri("prefix", prefix)?;
            let name = if no_regex {
                format!("^~ {prefix}")
            } else {
                prefix.clone()
            };
            let prefix = prefix.clone();
            (Matcher::Prefix { prefix, no_regex }, name)
        } else if let Some(pattern) = &loc.regex {
            regex("regex", pattern)?;
            let matcher = Matcher::Regex {
                pattern: pattern.clone(),
                case_insensitive: false,
            };
            (matcher, format!("~ {pattern}"))
        } else {
            let pattern = loc.regex_i.as_deref().unwrap_or_default();
            regex("regex_i", &format!("(?i){pattern}"))?;
            let matcher = Matcher::Regex {
                pattern: pattern.to_string(),
                case_insensitive: true,
            };
            (matcher, format!("~* {pattern}"))
        })
    }

    /// A location's `location` label in the metrics: its `name:` (unique, not empty, not
    /// `none`), else [`default_label`], made unique with `#N` (its position) if an earlier
    /// location has it.
    fn label(
        &self,
        at: &str,
        loc: &RawLocation,
        matcher: &Matcher,
        i: usize,
        taken: &mut std::collections::HashSet<String>,
    ) -> Result<String> {
        let Some(name) = &loc.name else {
            let mut label = default_label(matcher);
            if taken.contains(&label) {
                label = format!("{label}#{i}");
            }
            taken.insert(label.clone());
            return Ok(label);
        };
        let problem = if name.is_empty() {
            Some("a location's `name` must not be empty".to_string())
        } else if name == UNMATCHED_LOCATION {
            Some(format!(
                "`{UNMATCHED_LOCATION}` is the label of requests that match no location"
            ))
        } else if !taken.insert(name.clone()) {
            Some(format!("an earlier location has the label `{name}`"))
        } else {
            None
        };
        match problem {
            Some(p) => Err(self.err(&format!("{at}.name"), p)),
            None => Ok(name.clone()),
        }
    }

    /// What answers in a location: `proxy_pass`, or files from `root`/`alias`.
    fn handler(
        &self,
        at: &str,
        loc: &RawLocation,
        matcher: &Matcher,
        server: &ServerDefaults,
        upstreams: &mut Vec<Upstream>,
    ) -> Result<Handler> {
        let handlers = written(&[
            ("root", loc.root.is_some()),
            ("alias", loc.alias.is_some()),
            ("proxy_pass", loc.proxy_pass.is_some()),
        ]);
        if handlers.len() > 1 {
            let (first, second) = (handlers[0], handlers[1]);
            return Err(self.key_err(
                &format!("{at}.{second}"),
                format!("`{first}` and `{second}` cannot be combined in one location"),
            ));
        }
        if let Some(proxy_pass) = &loc.proxy_pass {
            let proxy = self.proxy(at, proxy_pass, loc, matcher, server, upstreams)?;
            return Ok(Handler::Proxy(proxy));
        }
        for (key, is_written) in [
            ("buffering", loc.buffering.is_some()),
            ("request_buffering", loc.request_buffering.is_some()),
            ("proxy_set_header", loc.proxy_set_header.is_some()),
            ("proxy_redirect", loc.proxy_redirect.is_some()),
        ] {
            if is_written {
                return Err(self.key_err(
                    &format!("{at}.{key}"),
                    format!("`{key}` needs `proxy_pass` in the same location"),
                ));
            }
        }
        Ok(Handler::Static(StaticConfig {
            doc_root: self.doc_root(at, loc, matcher, server)?,
            index: loc
                .index
                .clone()
                .or_else(|| server.index.clone())
                .unwrap_or_else(|| vec![DEFAULT_INDEX.to_string()]),
            symlinks: self.symlinks(
                &format!("{at}.symlinks"),
                loc.symlinks.as_deref(),
                server.symlinks,
            )?,
        }))
    }

    /// `alias`, `root`, or the server's `root`.
    fn doc_root(
        &self,
        at: &str,
        loc: &RawLocation,
        matcher: &Matcher,
        server: &ServerDefaults,
    ) -> Result<DocRoot> {
        if let Some(alias) = &loc.alias {
            let alias_at = format!("{at}.alias");
            let prefix = literal_prefix(matcher).ok_or_else(|| {
                self.key_err(
                    &alias_at,
                    "`alias` in a regex location is not supported; use `root`",
                )
            })?;
            return Ok(DocRoot::Alias {
                dir: self.path(&alias_at, alias)?,
                prefix: prefix.to_string(),
            });
        }
        if let Some(root) = &loc.root {
            return Ok(DocRoot::Root(self.path(&format!("{at}.root"), root)?));
        }
        match &server.root {
            Some(root) => Ok(DocRoot::Root(root.clone())),
            None => Err(self.err(
                at,
                "a location needs `root`, `alias` or `proxy_pass` (or a server-level `root`)",
            )),
        }
    }

    /// `symlinks`: `within_root` or `follow`.
    fn symlinks(&self, at: &str, v: Option<&str>, default: SymlinkPolicy) -> Result<SymlinkPolicy> {
        match v {
            None => Ok(default),
            Some("within_root") => Ok(SymlinkPolicy::WithinRoot),
            Some("follow") => Ok(SymlinkPolicy::Follow),
            Some(other) => {
                Err(self.err(at, format!("`{other}`: expected `within_root` or `follow`")))
            }
        }
    }

    /// `if_modified_since` (server level only): `exact`, `before` or `off`.
    pub(super) fn if_modified_since(&self, v: Option<&str>) -> Result<ImsMode> {
        match v {
            None => Ok(DEFAULT_IF_MODIFIED_SINCE),
            Some("exact") => Ok(ImsMode::Exact),
            Some("before") => Ok(ImsMode::Before),
            Some("off") => Ok(ImsMode::Off),
            Some(other) => Err(self.err(
                "if_modified_since",
                format!("`{other}`: expected exact, before or off"),
            )),
        }
    }

    /// `add_header`, `set_header`, `hide_header`, `expires`, `expires_if`.
    fn header_rules(
        &self,
        at: &str,
        loc: &RawLocation,
        server: &ServerDefaults,
    ) -> Result<HeaderRules> {
        let add_header = inherit(at, "add_header", loc.add_header.as_ref(), server.add_header);
        let add = self.response_headers(add_header, |header| match header {
            RawAddHeader::Plain(value) => (value, None),
            RawAddHeader::Full { value, always } => (value, always.as_ref()),
        })?;
        let set_header = inherit(at, "set_header", loc.set_header.as_ref(), server.set_header);
        let set = self.response_headers(set_header, |value| (value, None))?;
        let hide = self.hide_header(at, loc, server)?;
        let expires = loc
            .expires
            .as_ref()
            .map(|v| self.expires(&format!("{at}.expires"), v))
            .transpose()?;
        let expires_if = self.expires_if(at, loc.expires_if.as_ref())?;
        Ok(HeaderRules {
            expires,
            expires_if,
            add,
            set,
            hide,
        })
    }

    /// The entries of an `add_header` or `set_header` mapping: `NAME: VALUE`, or
    /// `NAME: {value, always}` where `value_of` finds one.
    fn response_headers<V>(
        &self,
        list: Option<(&IndexMap<String, V>, String)>,
        value_of: impl Fn(&V) -> (&Value, Option<&Value>),
    ) -> Result<Vec<AddHeader>> {
        let Some((map, list_at)) = list else {
            return Ok(Vec::new());
        };
        let mut headers = Vec::new();
        for (name, entry) in map {
            let at = format!("{list_at}.{name}");
            let (value, always) = value_of(entry);
            let always = self.flag(&format!("{at}.always"), always, false)?;
            let (header, value) = self.header_line(&at, name, value)?;
            headers.push(AddHeader {
                name: header,
                case: bytes::Bytes::from(name.to_string()),
                value,
                always,
            });
        }
        Ok(headers)
    }

    /// `hide_header`: unlike the other lists, the server's and the location's add up.
    fn hide_header(
        &self,
        at: &str,
        loc: &RawLocation,
        server: &ServerDefaults,
    ) -> Result<Vec<http::HeaderName>> {
        let mut hide = Vec::new();
        for (list, list_at) in [
            (server.hide_header, "hide_header".to_string()),
            (loc.hide_header.as_ref(), format!("{at}.hide_header")),
        ] {
            for (i, name) in list.into_iter().flatten().enumerate() {
                hide.push(self.header_name(&format!("{list_at}[{i}]"), name)?);
            }
        }
        Ok(hide)
    }

    /// `expires_if`: one `{path, expires}` or a list of them.
    fn expires_if(
        &self,
        at: &str,
        list: Option<&OneOrMany<RawExpiresIf>>,
    ) -> Result<Vec<(Regex, Expires)>> {
        let (rules, numbered): (Vec<&RawExpiresIf>, bool) = match list {
            None => return Ok(Vec::new()),
            Some(OneOrMany::One(rule)) => (vec![rule], false),
            Some(OneOrMany::Many(rules)) => (rules.iter().collect(), true),
        };
        let mut expires_if = Vec::new();
        for (i, rule) in rules.into_iter().enumerate() {
            let rule_at = if numbered {
                format!("{at}.expires_if[{i}]")
            } else {
                format!("{at}.expires_if")
            };
            let path = Regex::new(&rule.path)
                .map_err(|e| self.err(&format!("{rule_at}.path"), format!("invalid regex: {e}")))?;
            expires_if.push((
                path,
                self.expires(&format!("{rule_at}.expires"), &rule.expires)?,
            ));
        }
        Ok(expires_if)
    }

    /// `expires`: a time (negative: already expired), `epoch`, `max` or `off`.
    fn expires(&self, at: &str, v: &Value) -> Result<Expires> {
        let s = self.scalar(at, v)?;
        Ok(match s.as_str() {
            "off" | "false" => Expires::Off,
            "epoch" => Expires::Epoch,
            "max" => Expires::Max,
            other => {
                let (negative, time) = match other.strip_prefix('-') {
                    Some(time) => (true, time),
                    None => (false, other),
                };
                let after = units::parse_duration(time)
                    .map_err(|e| self.err(at, format!("{e}, or `epoch`, `max`, `off`")))?;
                if negative {
                    Expires::Epoch
                } else {
                    Expires::After(after)
                }
            }
        })
    }
}

/// The keys of `keys` that are written, in order.
/// How long a regex may be in a default label before it is cut (with `...`).
const LABEL_REGEX_CHARS: usize = 32;

/// A location's label without `name:`: `exact:/x`, `prefix:/x/` (`^~` too), `regex:PATTERN`,
/// `regex_i:PATTERN`, the pattern cut after [`LABEL_REGEX_CHARS`] characters.
fn default_label(matcher: &Matcher) -> String {
    match matcher {
        Matcher::Exact(uri) => format!("exact:{uri}"),
        Matcher::Prefix { prefix, .. } => format!("prefix:{prefix}"),
        Matcher::Regex {
            pattern,
            case_insensitive,
        } => {
            let kind = if *case_insensitive {
                "regex_i"
            } else {
                "regex"
            };
            match pattern.char_indices().nth(LABEL_REGEX_CHARS) {
                Some((cut, _)) => format!("{kind}:{}...", &pattern[..cut]),
                None => format!("{kind}:{pattern}"),
            }
        }
    }
}

fn written<'k>(keys: &[(&'k str, bool)]) -> Vec<&'k str> {
    keys.iter()
        .filter(|(_, is_written)| *is_written)
        .map(|(key, _)| *key)
        .collect()
}

/// A `client_max_body_size` value: `0` means no limit, as in NGINX.
fn body_limit(size: u64) -> Option<u64> {
    (size > 0).then_some(size)
}
