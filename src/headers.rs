//! Response header rules of a location: `expires` (and the per-path `expires_if`), `add_header`
//! with NGINX's status rule, `set_header` (replaces), `hide_header`; what every upstream
//! response gets first (the `X-Accel-*` headers NGINX hides, the upstream connection's
//! `Keep-Alive`, outrigger's `Server`); the `Location`/`Refresh` rewrite of a proxy location
//! (`proxy_redirect`, [`Redirects`]); and the request's hop-by-hop `Upgrade` rule.

use crate::template::{Template, VarSource};
use http::header::{CACHE_CONTROL, LOCATION, REFRESH};
use http::{HeaderName, HeaderValue};
use pingora_http::{RequestHeader, ResponseHeader};
use regex::Regex;
use std::time::{Duration, SystemTime};

/// Hidden from upstream responses by default, as NGINX does.
const HIDDEN_UPSTREAM: [&str; 5] = [
    "x-accel-expires",
    "x-accel-redirect",
    "x-accel-limit-rate",
    "x-accel-buffering",
    "x-accel-charset",
];

/// Fields of the upstream's connection, never passed on (RFC 9110 §7.6.1); `Connection` and
/// `Transfer-Encoding` are Pingora's.
const HOP_BY_HOP: [&str; 2] = ["keep-alive", "proxy-connection"];

/// What every upstream response (fresh or cached) gets before the location's rules: the
/// headers NGINX hides from clients and the upstream connection's own fields removed, and
/// outrigger's `Server`.
pub fn from_upstream(resp: &mut ResponseHeader) -> pingora_error::Result<()> {
    // one look at the answer's names first: most carry none of these
    let hidden = |n: &str| HIDDEN_UPSTREAM.contains(&n) || HOP_BY_HOP.contains(&n);
    if resp.headers.keys().any(|n| hidden(n.as_str())) {
        for h in HIDDEN_UPSTREAM.iter().chain(&HOP_BY_HOP) {
            resp.remove_header(*h);
        }
    }
    resp.insert_header(http::header::SERVER, crate::SERVER_NAME)?;
    Ok(())
}

/// Whether a `Connection` value names `option` (a comma-separated list, any case).
pub fn connection_names(value: &[u8], option: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(option))
}

/// A request's `Upgrade` that its `Connection` does not name is a stray hop-by-hop field
/// (RFC 9110 §7.6.1, §7.8): removed, so that nothing upgrades on it.
pub fn drop_unnamed_upgrade(req: &mut RequestHeader) {
    if req.headers.contains_key(http::header::UPGRADE)
        && !req
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .any(|v| connection_names(v.as_bytes(), b"upgrade"))
    {
        req.remove_header(&http::header::UPGRADE);
    }
}

/// NGINX `proxy_redirect`: `(from, to)` pairs, tried in order on an upstream response's
/// `Location` and on the URL after `url=` in its `Refresh`. The first `from` the value starts
/// with (case-sensitive, as NGINX) is replaced by its `to`; the rest of the value is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redirects {
    pairs: Vec<(String, String)>,
}

impl Redirects {
    pub fn new(pairs: Vec<(String, String)>) -> Redirects {
        Redirects { pairs }
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// Rewrite every `Location` and `Refresh` of `resp` that a pair matches.
    pub fn apply(&self, resp: &mut ResponseHeader) {
        if self.pairs.is_empty() {
            return;
        }
        for (name, case) in [(LOCATION, "Location"), (REFRESH, "Refresh")] {
            if !resp.headers.contains_key(&name) {
                continue;
            }
            let mut changed = false;
            let values: Vec<HeaderValue> = resp
                .headers
                .get_all(&name)
                .iter()
                .map(|v| {
                    let at = if name == LOCATION {
                        Some(0)
                    } else {
                        url_at(v.as_bytes())
                    };
                    match at.and_then(|at| self.rewrite(v.as_bytes(), at)) {
                        Some(new) => {
                            changed = true;
                            new
                        }
                        None => v.clone(),
                    }
                })
                .collect();
            if changed {
                resp.remove_header(&name);
                for v in values {
                    let _ = resp.append_header(case, v);
                }
            }
        }
    }

    /// `value` with the first matching `from` at `at` replaced, if any matches.
    fn rewrite(&self, value: &[u8], at: usize) -> Option<HeaderValue> {
        let url = value.get(at..)?;
        let (from, to) = self
            .pairs
            .iter()
            .find(|(from, _)| url.starts_with(from.as_bytes()))?;
        let mut out = Vec::with_capacity(value.len() + to.len());
        out.extend_from_slice(&value[..at]);
        out.extend_from_slice(to.as_bytes());
        out.extend_from_slice(&url[from.len()..]);
        HeaderValue::from_bytes(&out).ok()
    }
}

/// Where the URL of a `Refresh` value starts: after its first `url=` (any case), as NGINX.
fn url_at(value: &[u8]) -> Option<usize> {
    value
        .windows(4)
        .position(|w| w.eq_ignore_ascii_case(b"url="))
        .map(|i| i + 4)
}

/// NGINX `expires`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expires {
    Off,
    /// `Expires: Thu, 01 Jan 1970 00:00:01 GMT`, `Cache-Control: no-cache`.
    Epoch,
    /// `Expires: Thu, 31 Dec 2037 23:55:55 GMT`, `Cache-Control: max-age=315360000`.
    Max,
    /// `Expires: now + d`, `Cache-Control: max-age=<d>`.
    After(Duration),
}

#[derive(Debug, Clone)]
pub struct AddHeader {
    pub name: HeaderName,
    /// The name as written in the config, which is how it is sent (as NGINX does).
    pub case: bytes::Bytes,
    pub value: Template,
    pub always: bool,
}

#[derive(Debug, Clone, Default)]
pub struct HeaderRules {
    pub expires: Option<Expires>,
    /// First match on the URI path overrides `expires` (the seed's `if ($request_filename ~ ...)`).
    pub expires_if: Vec<(Regex, Expires)>,
    pub add: Vec<AddHeader>,
    pub set: Vec<AddHeader>,
    pub hide: Vec<HeaderName>,
}

/// Statuses NGINX's `add_header` and `expires` apply to (without `always`).
pub fn is_header_status(status: u16) -> bool {
    matches!(
        status,
        200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308
    )
}

impl HeaderRules {
    /// The `expires` that applies to `path`, if any.
    pub fn expires_for(&self, path: &str) -> Option<Expires> {
        self.expires_if
            .iter()
            .find(|(re, _)| re.is_match(path))
            .map(|(_, e)| *e)
            .or(self.expires)
    }

    /// Whether any value reads the response being built (then it is rendered from a copy).
    pub fn reads_response(&self) -> bool {
        self.add
            .iter()
            .chain(&self.set)
            .any(|h| h.value.reads_response())
    }

    /// Whether any rule sets, adds or hides one of `names`.
    pub fn names_any(&self, names: &[HeaderName]) -> bool {
        self.add
            .iter()
            .chain(&self.set)
            .map(|h| &h.name)
            .chain(&self.hide)
            .any(|n| names.contains(n))
    }

    pub fn is_empty(&self) -> bool {
        self.expires.is_none()
            && self.expires_if.is_empty()
            && self.add.is_empty()
            && self.set.is_empty()
            && self.hide.is_empty()
    }

    /// Apply every rule to `resp` (after the status is final).
    pub fn apply(&self, resp: &mut ResponseHeader, path: &str, vars: &dyn VarSource) {
        for h in &self.hide {
            resp.remove_header(h);
        }
        let status = resp.status.as_u16();
        let ok = is_header_status(status);
        let mut set_cc = None;
        for h in &self.set {
            if ok || h.always {
                let v = h.value.render(vars);
                if v.is_empty() {
                    resp.remove_header(&h.name);
                } else {
                    if h.name == CACHE_CONTROL {
                        set_cc = Some(v.clone());
                    }
                    let _ = resp.insert_header(h.case.clone(), v);
                }
            }
        }
        if ok {
            if let Some(e) = self.expires_for(path) {
                apply_expires(resp, e, SystemTime::now());
                // `set_header: {Cache-Control: public}` with `expires` gives one coherent
                // header, `public, max-age=N`, instead of NGINX's two.
                if let (Some(cc), Some(exp)) = (set_cc, resp.headers.get(CACHE_CONTROL)) {
                    if e != Expires::Off {
                        let merged = format!("{cc}, {}", exp.to_str().unwrap_or(""));
                        let _ = resp.insert_header(CACHE_CONTROL, merged);
                    }
                }
            }
        }
        for h in &self.add {
            if ok || h.always {
                let v = h.value.render(vars);
                // NGINX adds nothing for an empty value.
                if !v.is_empty() {
                    let _ = resp.append_header(h.case.clone(), v);
                }
            }
        }
    }
}

/// Set `Expires` and `Cache-Control` as NGINX's `expires` does (replacing existing ones).
pub fn apply_expires(resp: &mut ResponseHeader, e: Expires, now: SystemTime) {
    let (expires, cc) = match e {
        Expires::Off => return,
        Expires::Epoch => (
            "Thu, 01 Jan 1970 00:00:01 GMT".to_string(),
            "no-cache".to_string(),
        ),
        Expires::Max => (
            "Thu, 31 Dec 2037 23:55:55 GMT".to_string(),
            "max-age=315360000".to_string(),
        ),
        Expires::After(d) => (
            httpdate::fmt_http_date(now + d),
            format!("max-age={}", d.as_secs()),
        ),
    };
    let _ = resp.insert_header("Expires", expires);
    let _ = resp.insert_header(CACHE_CONTROL, cc);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Var;

    struct NoVars;
    impl VarSource for NoVars {
        fn write_var(&self, _: &Var, _: &mut String) {}
    }

    fn rules() -> HeaderRules {
        HeaderRules {
            expires: None,
            expires_if: vec![(
                Regex::new(r"\.js$").unwrap(),
                Expires::After(Duration::from_secs(7_776_000)),
            )],
            add: vec![
                AddHeader {
                    name: HeaderName::from_static("x-proxy-cache"),
                    case: bytes::Bytes::from_static(b"X-Proxy-Cache"),
                    value: Template::parse("$upstream_cache_status").unwrap(),
                    always: false,
                },
                AddHeader {
                    name: HeaderName::from_static("cache-control"),
                    case: bytes::Bytes::from_static(b"Cache-Control"),
                    value: Template::parse("public").unwrap(),
                    always: false,
                },
                AddHeader {
                    name: HeaderName::from_static("x-always"),
                    case: bytes::Bytes::from_static(b"X-Always"),
                    value: Template::parse("1").unwrap(),
                    always: true,
                },
            ],
            set: vec![],
            hide: vec![HeaderName::from_static("x-secret")],
        }
    }

    #[test]
    fn nginx_rules() {
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.insert_header("x-secret", "s").unwrap();
        rules().apply(&mut r, "/a.js", &NoVars);
        assert!(r.headers.get("x-secret").is_none());
        assert!(
            r.headers.get("x-proxy-cache").is_none(),
            "empty value adds nothing"
        );
        let cc: Vec<_> = r
            .headers
            .get_all("cache-control")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        assert_eq!(cc, ["max-age=7776000", "public"]);
        assert!(r.headers.get("expires").is_some());

        let mut r = ResponseHeader::build(404, None).unwrap();
        rules().apply(&mut r, "/a.js", &NoVars);
        assert!(r.headers.get("cache-control").is_none());
        assert!(r.headers.get("expires").is_none());
        assert_eq!(r.headers.get("x-always").unwrap(), "1");
    }

    #[test]
    fn redirects_rewrite_location_and_refresh_as_nginx() {
        let r = Redirects::new(vec![
            ("http://up:5000/".into(), "/api/".into()),
            ("http://up:5000".into(), "/".into()),
        ]);
        let mut resp = ResponseHeader::build(302, None).unwrap();
        resp.append_header("Location", "http://up:5000/x?q=1")
            .unwrap();
        resp.append_header("Refresh", "5; URL=http://up:5000/r")
            .unwrap();
        resp.append_header("X-Other", "http://up:5000/x").unwrap();
        r.apply(&mut resp);
        assert_eq!(resp.headers["location"], "/api/x?q=1");
        assert_eq!(resp.headers["refresh"], "5; URL=/api/r");
        assert_eq!(resp.headers["x-other"], "http://up:5000/x");
        // no match: case-sensitive, another host, relative, a Refresh without `url=`
        for (name, v) in [
            ("Location", "HTTP://up:5000/x"),
            ("Location", "http://other/x"),
            ("Location", "/rel"),
            ("Refresh", "3"),
        ] {
            let mut resp = ResponseHeader::build(302, None).unwrap();
            resp.append_header(name, v).unwrap();
            r.apply(&mut resp);
            assert_eq!(resp.headers[name], v);
        }
        let mut resp = ResponseHeader::build(302, None).unwrap();
        resp.append_header("Location", "http://up:5000").unwrap();
        r.apply(&mut resp);
        assert_eq!(resp.headers["location"], "/");
    }
}
