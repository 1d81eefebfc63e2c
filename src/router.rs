//! NGINX location selection: `exact` (`=`) wins; otherwise the longest matching prefix, which wins
//! outright when marked `no_regex` (`^~`); otherwise the first matching regex in config order;
//! otherwise the longest prefix. And NGINX's slash redirect (`auto_redirect`): `/api` names
//! `/api/` when a `proxy_pass` location is `/api/` and no location is `/api` itself. Compiled
//! once per config (one `RegexSet`), never per request.

use regex::RegexSet;
use std::collections::HashMap;

/// How a location matches the normalised URI path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    Exact(String),
    Prefix {
        prefix: String,
        no_regex: bool,
    },
    Regex {
        pattern: String,
        case_insensitive: bool,
    },
}

#[derive(Debug)]
pub struct Router {
    exact: HashMap<String, usize>,
    /// (prefix, location index, no_regex), longest first.
    prefixes: Vec<(String, usize, bool)>,
    regexes: Option<RegexSet>,
    /// Location index of each pattern in `regexes`.
    regex_locations: Vec<usize>,
    /// NGINX `auto_redirect`: a path one `/` short of a location that asks for it (`/api` for
    /// `/api/`) → that location. Empty for most configs.
    slash_redirects: HashMap<String, usize>,
}

impl Router {
    /// Build from the locations' matchers in config order. Errors carry the offending index.
    pub fn new(matchers: Vec<Matcher>) -> Result<Router, (usize, String)> {
        let mut exact = HashMap::new();
        let mut prefixes = Vec::new();
        let mut patterns = Vec::new();
        let mut regex_locations = Vec::new();
        for (i, m) in matchers.into_iter().enumerate() {
            match m {
                Matcher::Exact(p) => {
                    if exact.insert(p.clone(), i).is_some() {
                        return Err((i, format!("duplicate location `= {p}`")));
                    }
                }
                Matcher::Prefix { prefix, no_regex } => {
                    if prefixes.iter().any(|(p, _, _)| *p == prefix) {
                        return Err((i, format!("duplicate location `{prefix}`")));
                    }
                    prefixes.push((prefix, i, no_regex));
                }
                Matcher::Regex {
                    pattern,
                    case_insensitive,
                } => {
                    patterns.push(if case_insensitive {
                        format!("(?i){pattern}")
                    } else {
                        pattern
                    });
                    regex_locations.push(i);
                }
            }
        }
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        let regexes = if patterns.is_empty() {
            None
        } else {
            Some(RegexSet::new(&patterns).map_err(|e| (regex_locations[0], e.to_string()))?)
        };
        Ok(Router {
            exact,
            prefixes,
            regexes,
            regex_locations,
            slash_redirects: HashMap::new(),
        })
    }

    /// NGINX's `auto_redirect`, set on the locations for which `redirects(index)` holds (NGINX:
    /// those with `proxy_pass`): a request for such a location's name without its trailing `/`
    /// is redirected to it, unless a location (exact or prefix) has that name. When an exact and
    /// a prefix location share the name, the exact one answers, as NGINX's location tree does.
    pub fn with_slash_redirects(mut self, redirects: impl Fn(usize) -> bool) -> Router {
        let mut slash = HashMap::new();
        let bare_free = |name: &str| {
            let bare = name.strip_suffix('/').filter(|b| !b.is_empty())?;
            let taken = self.exact.contains_key(bare) || self.prefixes.iter().any(|p| p.0 == bare);
            (!taken).then(|| bare.to_string())
        };
        for (name, i, _) in &self.prefixes {
            if let Some(bare) = bare_free(name).filter(|_| redirects(*i)) {
                slash.insert(bare, *i);
            }
        }
        // NGINX's tree node holds both: either asks for the redirect, the exact one answers
        for (name, &i) in &self.exact {
            if let Some(bare) = bare_free(name) {
                if redirects(i) || slash.contains_key(&bare) {
                    slash.insert(bare, i);
                }
            }
        }
        self.slash_redirects = slash;
        self
    }

    /// The location a normalised path is redirected to with a `/` appended (NGINX's
    /// `auto_redirect`), checked before [`Router::find`].
    pub fn slash_redirect(&self, path: &str) -> Option<usize> {
        if self.slash_redirects.is_empty() {
            return None;
        }
        self.slash_redirects.get(path).copied()
    }

    /// The location index for a normalised path, or `None` (404). The slash redirect is
    /// [`Router::slash_redirect`]'s, which routing asks first.
    pub fn find(&self, path: &str) -> Option<usize> {
        if let Some(&i) = self.exact.get(path) {
            return Some(i);
        }
        let longest = self
            .prefixes
            .iter()
            .find(|(p, _, _)| path.starts_with(p.as_str()));
        if let Some((_, i, true)) = longest {
            return Some(*i);
        }
        if let Some(set) = &self.regexes {
            // RegexSet reports every match; the lowest index is the first in config order.
            if let Some(first) = set.matches(path).iter().next() {
                return Some(self.regex_locations[first]);
            }
        }
        longest.map(|(_, i, _)| *i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(p: &str, no_regex: bool) -> Matcher {
        Matcher::Prefix {
            prefix: p.into(),
            no_regex,
        }
    }
    fn re(p: &str, ci: bool) -> Matcher {
        Matcher::Regex {
            pattern: p.into(),
            case_insensitive: ci,
        }
    }

    #[test]
    fn nginx_precedence() {
        // The NGINX documentation's example, locations A..E.
        let r = Router::new(vec![
            Matcher::Exact("/".into()),     // A
            prefix("/", false),             // B
            prefix("/documents/", false),   // C
            prefix("/images/", true),       // D
            re(r"\.(gif|jpg|jpeg)$", true), // E
        ])
        .unwrap();
        assert_eq!(r.find("/"), Some(0));
        assert_eq!(r.find("/index.html"), Some(1));
        assert_eq!(r.find("/documents/document.html"), Some(2));
        assert_eq!(r.find("/images/1.gif"), Some(3));
        assert_eq!(r.find("/documents/1.JPG"), Some(4));
    }

    #[test]
    fn first_regex_wins_and_no_match_is_none() {
        let r = Router::new(vec![
            re(r"^/a", false),
            re(r"^/a/b", false),
            prefix("/z", false),
        ])
        .unwrap();
        assert_eq!(r.find("/a/b"), Some(0));
        assert_eq!(r.find("/A"), None);
        assert_eq!(r.find("/q"), None);
        assert_eq!(r.find("/zz"), Some(2));
    }

    #[test]
    fn duplicates_are_errors() {
        assert!(Router::new(vec![prefix("/a", false), prefix("/a", true)]).is_err());
    }

    #[test]
    fn slash_redirect_as_nginx_auto_redirect() {
        let r = Router::new(vec![
            prefix("/", false),            // 0
            prefix("/api/", false),        // 1, proxy
            prefix("/both/", false),       // 2, proxy
            prefix("/both", false),        // 3
            Matcher::Exact("/ex/".into()), // 4, proxy
            prefix("/ex/", false),         // 5, proxy
            prefix("/stat/", false),       // 6, static
            Matcher::Exact("/e".into()),   // 7
            prefix("/e/", true),           // 8, proxy
            re("^/api$", false),           // 9
        ])
        .unwrap()
        .with_slash_redirects(|i| [1, 2, 4, 5, 8].contains(&i));
        assert_eq!(r.slash_redirect("/api"), Some(1));
        assert_eq!(r.slash_redirect("/api/"), None);
        assert_eq!(r.slash_redirect("/apix"), None);
        assert_eq!(r.slash_redirect("/both"), None);
        assert_eq!(r.slash_redirect("/ex"), Some(4));
        assert_eq!(r.slash_redirect("/stat"), None);
        assert_eq!(r.slash_redirect("/e"), None);
        assert_eq!(r.slash_redirect("/"), None);
        assert_eq!(r.find("/api"), Some(9));
    }
}
