//! What names a request's cache entry, the same on both paths: the methods that have one, its
//! key (the rendered `key` template, else the request as sent upstream; tagged with the
//! location) and its variance.

use super::context::Ctx;
use crate::cache::policy;
use crate::compress::{self, Encoding};
use crate::config::{CacheRules, Handler, ProxyConfig};
use crate::template::{Var, VarSource};
use http::header;
use pingora_cache::key::HashBinary;
use pingora_cache::CacheKey;
use pingora_http::{RequestHeader, ResponseHeader};

/// GET always, HEAD when the rules list it (answered from the GET entry).
pub fn cacheable_method(rules: &CacheRules, method: &http::Method) -> bool {
    *method == http::Method::GET || (*method == http::Method::HEAD && rules.head)
}

/// The cache key's user tag: the name of the location that stores the entry (so a location's
/// entries can be dropped together, `invalidate_on_unsafe: location`).
pub fn entry_tag(ctx: &Ctx) -> String {
    ctx.location().map(|l| l.name.clone()).unwrap_or_default()
}

/// The primary key of the request `vars` describe: the rendered `key` template; without one,
/// NGINX's default key, which names the request as sent upstream: `$scheme$proxy_host`, then
/// the target (with a URI part in `proxy_pass`, the normalised path as rewritten and re-escaped,
/// `$is_args$args`; without one, `$request_uri` as the client sent it). Two requests share an
/// entry exactly when the upstream is asked the same thing.
/// `proxy`: the location's `proxy_pass`.
pub fn key_bytes(rules: &CacheRules, proxy: Option<&ProxyConfig>, vars: &dyn VarSource) -> String {
    if let Some(key) = &rules.key {
        return key.render(vars);
    }
    let mut out = String::with_capacity(128);
    vars.write_var(&Var::Scheme, &mut out);
    vars.write_var(&Var::ProxyHost, &mut out);
    let start = out.len();
    match proxy {
        Some(p) if p.rewrite.is_some() => {
            vars.write_var(&Var::Uri, &mut out);
            let path = out.split_off(start);
            p.push_rewritten_path(&mut out, &path);
            vars.write_var(&Var::IsArgs, &mut out);
            vars.write_var(&Var::Args, &mut out);
        }
        _ => vars.write_var(&Var::RequestUri, &mut out),
    }
    out
}

/// The `proxy_pass` of the request's location.
fn proxy_of(ctx: &Ctx) -> Option<&ProxyConfig> {
    match &ctx.location()?.handler {
        Handler::Proxy(p) => Some(p),
        Handler::Static(_) => None,
    }
}

/// The request's cache key: [`key_bytes`], tagged with its location.
pub fn cache_key(rules: &CacheRules, vars: &dyn VarSource, ctx: &Ctx) -> CacheKey {
    CacheKey::new(key_bytes(rules, proxy_of(ctx), vars), entry_tag(ctx))
}

/// The hash of the key's primary part (the tag is not hashed): what the store indexes.
pub fn primary_hash(rules: &CacheRules, vars: &dyn VarSource, ctx: &Ctx) -> HashBinary {
    pingora_cache::key::hash_key(key_bytes(rules, proxy_of(ctx), vars))
}

/// The variance of a stored response for this request. Responses outrigger compressed, or
/// would compress for a client that asks, vary by the negotiated encoding (whatever the origin's
/// Vary says and `gzip.vary`).
pub fn variance_for(ctx: &Ctx, stored: &ResponseHeader, req: &RequestHeader) -> Option<HashBinary> {
    let encoding = ctx
        .location()
        .and_then(|l| l.compress.as_deref())
        .filter(|c| {
            c.any_enabled()
                && (stored.headers.contains_key(header::CONTENT_ENCODING)
                    || compress::compressible(c, stored))
        })
        .map(|_| ctx.encoding.map_or("identity", Encoding::token));
    policy::variance(ctx.cache_rules()?, stored, req, encoding)
}
