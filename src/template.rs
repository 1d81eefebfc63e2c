//! NGINX variables (`$host`, `$status`, `$http_referer`, ...) in config strings: parsed once into
//! a [`Template`] at config load, rendered per request against a [`VarSource`].

use std::fmt::Write;

/// A variable a template can reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    TimeLocal,
    TimeIso8601,
    Msec,
    Status,
    RemoteAddr,
    RemotePort,
    RemoteUser,
    Request,
    RequestMethod,
    RequestUri,
    Uri,
    Args,
    IsArgs,
    Host,
    Scheme,
    ServerProtocol,
    ServerPort,
    RequestTime,
    RequestLength,
    UpstreamResponseTime,
    UpstreamAddr,
    UpstreamStatus,
    BodyBytesSent,
    UpstreamCacheStatus,
    ProxyHost,
    ProxyAddXForwardedFor,
    /// `$http_<name>`: a request header, `_` → `-`, lowercase.
    Http(String),
    /// `$arg_<name>`: a query argument.
    Arg(String),
    /// `$sent_http_<name>`: a response header.
    SentHttp(String),
}

impl Var {
    fn from_name(name: &str) -> Option<Var> {
        Some(match name {
            "time_local" => Var::TimeLocal,
            "time_iso8601" => Var::TimeIso8601,
            "msec" => Var::Msec,
            "status" => Var::Status,
            "remote_addr" => Var::RemoteAddr,
            "remote_port" => Var::RemotePort,
            "remote_user" => Var::RemoteUser,
            "request" => Var::Request,
            "request_method" => Var::RequestMethod,
            "request_uri" => Var::RequestUri,
            "uri" | "document_uri" => Var::Uri,
            "args" | "query_string" => Var::Args,
            "is_args" => Var::IsArgs,
            "host" => Var::Host,
            "scheme" => Var::Scheme,
            "server_protocol" => Var::ServerProtocol,
            "server_port" => Var::ServerPort,
            "request_time" => Var::RequestTime,
            "request_length" => Var::RequestLength,
            "upstream_response_time" => Var::UpstreamResponseTime,
            "upstream_addr" => Var::UpstreamAddr,
            "upstream_status" => Var::UpstreamStatus,
            "body_bytes_sent" => Var::BodyBytesSent,
            "upstream_cache_status" => Var::UpstreamCacheStatus,
            "proxy_host" => Var::ProxyHost,
            "proxy_add_x_forwarded_for" => Var::ProxyAddXForwardedFor,
            _ => {
                let header = |s: &str| s.replace('_', "-").to_ascii_lowercase();
                if let Some(h) = name.strip_prefix("http_") {
                    Var::Http(header(h))
                } else if let Some(h) = name.strip_prefix("sent_http_") {
                    Var::SentHttp(header(h))
                } else if let Some(a) = name.strip_prefix("arg_") {
                    Var::Arg(a.to_string())
                } else {
                    return None;
                }
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var(Var),
}

/// A string with NGINX variables, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Supplies variable values while rendering. Implementations write nothing for a variable that
/// has no value (NGINX renders it empty; the access log renders `-` itself).
pub trait VarSource {
    fn write_var(&self, var: &Var, out: &mut String);
}

impl Template {
    /// Parse `s`; `$name` references a variable, an unknown name is an error.
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = s.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c != '$' {
                lit.push(c);
                continue;
            }
            let start = i + 1;
            let mut end = start;
            while let Some(&(j, n)) = chars.peek() {
                if n.is_ascii_alphanumeric() || n == '_' {
                    end = j + n.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            if end == start {
                lit.push('$');
                continue;
            }
            let name = &s[start..end];
            let var = Var::from_name(name).ok_or_else(|| format!("unknown variable `${name}`"))?;
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(Part::Var(var));
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template { parts })
    }

    /// The value when the template has no variables.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Lit(s)] => Some(s),
            _ => None,
        }
    }

    /// Whether the template reads the response (`$status`, `$sent_http_*`).
    pub fn reads_response(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Var(Var::Status | Var::SentHttp(_))))
    }

    /// Whether the template references `var`.
    pub fn uses(&self, var: &Var) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Var(v) if v == var))
    }

    /// Render into `out`; `empty` is written for variables without a value (`-` for logs).
    pub fn render_into(&self, src: &dyn VarSource, empty: &str, out: &mut String) {
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(v) => {
                    let before = out.len();
                    src.write_var(v, out);
                    if out.len() == before {
                        out.push_str(empty);
                    }
                }
            }
        }
    }

    pub fn render(&self, src: &dyn VarSource) -> String {
        if let Some(l) = self.as_literal() {
            return l.to_string();
        }
        let mut out = String::with_capacity(64);
        self.render_into(src, "", &mut out);
        out
    }
}

/// NGINX's `$time_local` format: `23/Nov/2026:18:49:03 +0000`.
pub fn write_time_local(out: &mut String, t: chrono::DateTime<chrono::Local>) {
    let _ = write!(out, "{}", t.format("%d/%b/%Y:%H:%M:%S %z"));
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Src;
    impl VarSource for Src {
        fn write_var(&self, var: &Var, out: &mut String) {
            match var {
                Var::Host => out.push_str("example.org"),
                Var::Http(h) if h == "x-forwarded-for" => out.push_str("1.2.3.4"),
                _ => {}
            }
        }
    }

    #[test]
    fn parse_and_render() {
        let t = Template::parse("[$host] $http_x_forwarded_for $remote_user $ a$").unwrap();
        let mut out = String::new();
        t.render_into(&Src, "-", &mut out);
        assert_eq!(out, "[example.org] 1.2.3.4 - $ a$");
        assert_eq!(
            Template::parse("public").unwrap().as_literal(),
            Some("public")
        );
        assert!(Template::parse("$nope").unwrap_err().contains("$nope"));
        assert!(Template::parse("$upstream_cache_status")
            .unwrap()
            .uses(&Var::UpstreamCacheStatus));
    }
}
