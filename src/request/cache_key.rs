//! What names a request's cache entry, the same on both paths: the methods that have one, its
//! key (the rendered `key` template, tagged with the location) and its variance.

use super::context::Ctx;
use crate::cache::policy;
use crate::compress::{self, Encoding};
use crate::config::CacheRules;
use crate::template::VarSource;
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

/// The request's cache key: the rendered `key` template, tagged with its location.
pub fn cache_key(rules: &CacheRules, vars: &dyn VarSource, ctx: &Ctx) -> CacheKey {
    CacheKey::new(policy::key_bytes(rules, vars), entry_tag(ctx))
}

/// The hash of the key's primary part (the tag is not hashed): what the store indexes.
pub fn primary_hash(rules: &CacheRules, vars: &dyn VarSource) -> HashBinary {
    pingora_cache::key::hash_key(policy::key_bytes(rules, vars))
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
