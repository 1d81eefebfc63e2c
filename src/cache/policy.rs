//! NGINX `proxy_cache` policy on top of pingora-cache: `proxy_cache_bypass` /
//! `proxy_no_cache`, what is cacheable and for how long (`X-Accel-Expires`, `Cache-Control`,
//! `Expires`, then `valid`; `Set-Cookie`, `Vary: *`, `private`, `no-store`, `no-cache` (also
//! qualified) and invalid freshness (`max-age=abc`) refused;
//! `ignore_headers`, with an ignored `Set-Cookie` never stored), `Vary`, stale serving, and
//! `$upstream_cache_status`.

use crate::config::CacheRules;
use crate::template::{Template, VarSource};
use http::header;
use once_cell::sync::Lazy;
use pingora_cache::cache_control::CacheControl;
use pingora_cache::key::HashBinary;
use pingora_cache::{CacheMeta, CachePhase, NoCacheReason, RespCacheable, VarianceBuilder};
use pingora_http::{RequestHeader, ResponseHeader};
use std::time::{Duration, SystemTime};

/// "Stale for as long as the entry exists", for `use_stale: [updating]` / `[error, ...]`.
const STALE_FOREVER: u32 = 365 * 24 * 3600;

/// NGINX's test for `proxy_cache_bypass` / `proxy_no_cache`: any value non-empty and not "0".
pub fn any_set(list: &[Template], vars: &dyn VarSource) -> bool {
    list.iter().any(|t| {
        let v = t.render(vars);
        !v.is_empty() && v != "0"
    })
}

fn header_str(resp: &ResponseHeader, name: header::HeaderName) -> Option<&str> {
    resp.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Time to live from the origin's headers, NGINX order: `X-Accel-Expires`, `Cache-Control`,
/// `Expires`. `Some(Err(reason))`: the headers forbid caching. `None`: they say nothing.
fn header_ttl(
    rules: &CacheRules,
    resp: &ResponseHeader,
    cc: Option<&CacheControl>,
    now: SystemTime,
) -> Option<Result<Duration, NoCacheReason>> {
    if !rules.ignore.x_accel_expires {
        if let Some(v) = header_str(resp, header::HeaderName::from_static("x-accel-expires")) {
            let v = v.trim();
            let ttl = if let Some(ts) = v.strip_prefix('@') {
                ts.parse::<u64>().ok().map(|ts| {
                    (SystemTime::UNIX_EPOCH + Duration::from_secs(ts))
                        .duration_since(now)
                        .unwrap_or_default()
                })
            } else {
                v.parse::<u64>().ok().map(Duration::from_secs)
            };
            if let Some(ttl) = ttl {
                return Some(if ttl.is_zero() {
                    Err(NoCacheReason::OriginNotCache)
                } else {
                    Ok(ttl)
                });
            }
        }
    }
    if let Some(cc) = cc {
        // `no-cache="X-Secret"` too: a shared cache must not replay the named fields without
        // revalidation (RFC 9111 §5.2.2.4), and outrigger stores no-cache responses not at all
        if cc.no_store() || cc.private() || cc.has_key("no-cache") {
            return Some(Err(NoCacheReason::OriginNotCache));
        }
        // s-maxage wins in a shared cache; an invalid value (`max-age=abc`) makes the response
        // stale (RFC 9111 §4.2.1), and NGINX does not store it either, whatever `valid` says
        let age = match cc.s_maxage() {
            Ok(None) => cc.max_age(),
            s_maxage => s_maxage,
        };
        match age {
            Ok(Some(secs)) if secs > 0 => return Some(Ok(Duration::from_secs(secs as u64))),
            Ok(None) => {}
            Ok(Some(_)) | Err(_) => return Some(Err(NoCacheReason::OriginNotCache)),
        }
    }
    if !rules.ignore.expires {
        if let Some(v) = header_str(resp, header::EXPIRES) {
            let base = header_str(resp, header::DATE)
                .and_then(|d| httpdate::parse_http_date(d).ok())
                .unwrap_or(now);
            return Some(match httpdate::parse_http_date(v) {
                Ok(t) => match t.duration_since(base) {
                    Ok(d) if !d.is_zero() => Ok(d),
                    _ => Err(NoCacheReason::OriginNotCache),
                },
                Err(_) => Err(NoCacheReason::OriginNotCache),
            });
        }
    }
    None
}

/// Whether and how long to store `resp` (NGINX rules; see the module doc).
pub fn cacheability(
    rules: &CacheRules,
    req: &RequestHeader,
    resp: &ResponseHeader,
    no_cache: bool,
) -> RespCacheable {
    use RespCacheable::*;
    if no_cache {
        return Uncacheable(NoCacheReason::Custom("no_cache"));
    }
    if !rules.ignore.set_cookie && resp.headers.contains_key(header::SET_COOKIE) {
        return Uncacheable(NoCacheReason::OriginNotCache);
    }
    if !rules.ignore.vary
        && resp
            .headers
            .get_all(header::VARY)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim() == "*"))
    {
        return Uncacheable(NoCacheReason::OriginNotCache);
    }
    let cc = if rules.ignore.cache_control {
        None
    } else {
        CacheControl::from_resp_headers(resp)
    };
    // RFC 9111 §3.5 (NGINX does not check this): a response to an authenticated request is
    // shared only when the origin says so.
    if req.headers.contains_key(header::AUTHORIZATION)
        && !cc.as_ref().is_some_and(|c| {
            c.public() || c.must_revalidate() || c.s_maxage().ok().flatten().is_some()
        })
    {
        return Uncacheable(NoCacheReason::Custom("authorization"));
    }
    let now = SystemTime::now();
    let status = resp.status.as_u16();
    let ttl = match header_ttl(rules, resp, cc.as_ref(), now) {
        Some(Ok(ttl)) => ttl,
        Some(Err(reason)) => return Uncacheable(reason),
        None => match rules
            .valid
            .iter()
            .find(|(s, _)| s.is_none_or(|s| s == status))
        {
            Some((_, ttl)) if !ttl.is_zero() => *ttl,
            _ => return Uncacheable(NoCacheReason::OriginNotCache),
        },
    };
    let from_cc = |f: fn(&CacheControl) -> pingora_error::Result<Option<u32>>| {
        cc.as_ref().and_then(|c| f(c).ok().flatten())
    };
    let revalidate = cc
        .as_ref()
        .is_some_and(|c| c.must_revalidate() || c.proxy_revalidate());
    let swr = if revalidate {
        0
    } else if rules.use_stale.updating {
        STALE_FOREVER
    } else {
        from_cc(CacheControl::stale_while_revalidate).unwrap_or(0)
    };
    let sie = if revalidate {
        0
    } else if rules.use_stale.on_error() {
        STALE_FOREVER
    } else {
        from_cc(CacheControl::stale_if_error).unwrap_or(0)
    };
    Cacheable(CacheMeta::new(
        now + ttl,
        now,
        swr,
        sie,
        stored_header(resp),
    ))
}

/// The header an entry stores: the response's, without `Set-Cookie`. A response with
/// `Set-Cookie` reaches the store only when `ignore_headers` lists it, and one client's cookie
/// must never be replayed to the others (the client whose request filled the entry still gets
/// it: the header sent on a MISS is the upstream's, not the stored one).
fn stored_header(resp: &ResponseHeader) -> ResponseHeader {
    let mut stored = resp.clone();
    stored.remove_header(&header::SET_COOKIE);
    stored
}

/// The variance of a stored response for this request (`Vary`), unless `Vary` is ignored.
/// `encoding`: when the stored response is (or could have been) compressed by outrigger, the
/// request's negotiated encoding (`identity` when none); it stands for `Accept-Encoding`, so all
/// gzip clients share one stored gzip body whatever their exact header, and each encoding —
/// identity included — gets its own variant.
pub fn variance(
    rules: &CacheRules,
    stored: &ResponseHeader,
    req: &RequestHeader,
    encoding: Option<&str>,
) -> Option<HashBinary> {
    if rules.ignore.vary {
        return encoding_variance(encoding?);
    }
    // The usual case, no `Vary` or `Vary: Accept-Encoding` alone, answered without parsing
    // `Vary` into names or hashing per request.
    let mut tokens = stored
        .headers
        .get_all(header::VARY)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty());
    if tokens.all(|t| t.eq_ignore_ascii_case(b"accept-encoding")) {
        if let Some(e) = encoding {
            return encoding_variance(e);
        }
        if !stored.headers.contains_key(header::VARY) {
            return None;
        }
    }
    vary_variance(stored, req, encoding)
}

/// The general path of [`variance`]: every `Vary` name (plus `accept-encoding` when outrigger
/// negotiates the encoding), lower-cased, sorted and hashed with the request's values.
fn vary_variance(
    stored: &ResponseHeader,
    req: &RequestHeader,
    encoding: Option<&str>,
) -> Option<HashBinary> {
    let mut names: Vec<String> = stored
        .headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    if encoding.is_some() {
        names.push("accept-encoding".to_string());
    }
    if names.is_empty() {
        return None;
    }
    names.sort();
    names.dedup();
    let mut vb = VarianceBuilder::new();
    for n in &names {
        if let (Some(e), "accept-encoding") = (encoding, n.as_str()) {
            vb.add_value("accept-encoding", e);
            continue;
        }
        let v: Vec<&[u8]> = req
            .headers
            .get_all(n.as_str())
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        vb.add_owned_value(n.as_str(), v.join(&b","[..]));
    }
    vb.finalize()
}

/// The variance of a request whose only varying header is its negotiated encoding: the same
/// hash as the general path in [`variance`], computed once per process for each token.
fn encoding_variance(encoding: &str) -> Option<HashBinary> {
    match KNOWN_ENCODINGS.iter().find(|(e, _)| *e == encoding) {
        Some((_, h)) => *h,
        None => encoding_hash(encoding),
    }
}

fn encoding_hash(e: &str) -> Option<HashBinary> {
    let mut vb = VarianceBuilder::new();
    vb.add_value("accept-encoding", e);
    vb.finalize()
}

/// The variances of the encodings outrigger negotiates, hashed once per process.
static KNOWN_ENCODINGS: Lazy<[(&str, Option<HashBinary>); 4]> =
    Lazy::new(|| ["identity", "gzip", "br", "zstd"].map(|e| (e, encoding_hash(e))));

/// The variances that depend on the negotiated encoding alone (no other `Vary`): a store can
/// derive a primary key's variants of this kind instead of recording them.
pub fn encoding_variances() -> impl Iterator<Item = HashBinary> {
    KNOWN_ENCODINGS.iter().filter_map(|(_, h)| *h)
}

/// `$upstream_cache_status` from the cache phase.
pub fn status_label(phase: CachePhase, bypass: bool) -> &'static str {
    if bypass {
        return "BYPASS";
    }
    match phase {
        CachePhase::Hit => "HIT",
        CachePhase::Stale => "STALE",
        CachePhase::StaleUpdating => "UPDATING",
        CachePhase::Expired => "EXPIRED",
        CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => "REVALIDATED",
        _ => "MISS",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn rules(ignore_vary: bool) -> CacheRules {
        let src = format!(
            "listen: [\"127.0.0.1:1\"]\nupstreams: {{o: {{address: \"127.0.0.1:9\"}}}}\n\
             caches: {{z: {{path: /tmp/outrigger-unit-z}}}}\nlocations:\n  - prefix: /\n    \
             proxy_pass: http://o/\n    cache: {{zone: z{}}}\n",
            if ignore_vary {
                ", ignore_headers: [Vary]"
            } else {
                ""
            }
        );
        let cfg = Config::from_str(&src, Path::new("/etc/outrigger/t.yaml")).expect("config");
        cfg.locations[0].cache.clone().expect("cache rules")
    }

    fn resp(vary: &[&str]) -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).expect("header");
        for v in vary {
            r.append_header(header::VARY, *v).expect("vary");
        }
        r
    }

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).expect("request");
        for (n, v) in headers {
            r.append_header(n.to_string(), *v).expect("header");
        }
        r
    }

    #[test]
    fn encoding_fast_path_hashes_as_the_general_path() {
        let r = rules(false);
        let rq = req(&[("accept-encoding", "gzip, br"), ("cookie", "a=1")]);
        let varies: [&[&str]; 6] = [
            &[],
            &["Accept-Encoding"],
            &["accept-encoding", " ACCEPT-ENCODING ,"],
            &["Accept-Encoding, Cookie"],
            &["Cookie"],
            &[","],
        ];
        for vary in varies {
            let stored = resp(vary);
            for enc in [
                None,
                Some("identity"),
                Some("gzip"),
                Some("br"),
                Some("zstd"),
                Some("x"),
            ] {
                assert_eq!(
                    variance(&r, &stored, &rq, enc),
                    vary_variance(&stored, &rq, enc),
                    "Vary {vary:?}, encoding {enc:?}"
                );
            }
        }
        // different encodings are different variants; ignoring Vary keeps the encoding's
        let stored = resp(&["Cookie"]);
        assert_ne!(
            variance(&r, &stored, &rq, Some("gzip")),
            variance(&r, &stored, &rq, Some("br"))
        );
        let ri = rules(true);
        assert_eq!(variance(&ri, &stored, &rq, None), None);
        assert_eq!(
            variance(&ri, &stored, &rq, Some("gzip")),
            vary_variance(&resp(&[]), &rq, Some("gzip"))
        );
    }
}
