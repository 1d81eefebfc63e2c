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
    /// `$bytes_sent`: the response's head and body bytes.
    BytesSent,
    /// `$request_id`: 16 random bytes in hex, one value per request.
    RequestId,
    /// `$connection`: the client connection's serial number.
    Connection,
    UpstreamCacheStatus,
    ProxyHost,
    ProxyAddXForwardedFor,
    /// `$http_<name>`: a request header, `_` → `-`, lowercase.
    Http(String),
    /// `$arg_<name>`: a query argument.
    Arg(String),
    /// `$sent_http_<name>`: a response header.
    SentHttp(String),
    /// `$cookie_<name>`: a cookie of the request's `Cookie` header (name matched ignoring case,
    /// as NGINX).
    Cookie(String),
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
            "bytes_sent" => Var::BytesSent,
            "request_id" => Var::RequestId,
            "connection" => Var::Connection,
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
                } else if let Some(c) = name.strip_prefix("cookie_") {
                    Var::Cookie(c.to_string())
                } else {
                    return None;
                }
            }
        })
    }
}

impl Var {
    /// Whether the value is known only once the client has the whole answer: the clocks and
    /// the bytes sent (NGINX logs a request then).
    pub fn at_send(&self) -> bool {
        matches!(
            self,
            Var::TimeLocal
                | Var::TimeIso8601
                | Var::Msec
                | Var::RequestTime
                | Var::BodyBytesSent
                | Var::BytesSent
        )
    }

    /// Whether the value differs from one request to the next whatever the request says
    /// (`$request_id`, clocks, the connection) or is only known once the response is under way
    /// (`$status`, `$upstream_*`, bytes sent): such a variable cannot name a cache entry.
    pub fn unknown_before_response(&self) -> bool {
        matches!(
            self,
            Var::TimeLocal
                | Var::TimeIso8601
                | Var::Msec
                | Var::Status
                | Var::RequestTime
                | Var::UpstreamResponseTime
                | Var::UpstreamAddr
                | Var::UpstreamStatus
                | Var::UpstreamCacheStatus
                | Var::BodyBytesSent
                | Var::BytesSent
                | Var::RequestId
                | Var::Connection
                | Var::SentHttp(_)
        )
    }
}

/// How variable values are escaped in an access-log line (NGINX `log_format escape=`);
/// literal text is written as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Escape {
    /// `"`, `\`, and bytes below 32 or above 126 as `\xHH`; an empty value is `-`.
    #[default]
    Default,
    /// As a JSON string's contents (RFC 8259); an empty value is empty.
    Json,
    /// Nothing escaped; an empty value is `-`.
    None,
}

impl Escape {
    /// `default`, `json` or `none`.
    pub fn from_name(name: &str) -> Option<Escape> {
        match name {
            "default" => Some(Escape::Default),
            "json" => Some(Escape::Json),
            "none" => Some(Escape::None),
            _ => None,
        }
    }

    /// Whether `b` is written otherwise than as itself.
    fn escapes(self, b: u8) -> bool {
        match self {
            Escape::Default => b == b'"' || b == b'\\' || !(32..=126).contains(&b),
            Escape::Json => b == b'"' || b == b'\\' || b < 32,
            Escape::None => false,
        }
    }

    /// Append `value` to `out`, escaped.
    fn push(self, value: &str, out: &mut String) {
        for c in value.chars() {
            if c.is_ascii() && !self.escapes(c as u8) {
                out.push(c);
                continue;
            }
            match self {
                Escape::Json => match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if (c as u32) < 32 => {
                        let _ = write!(out, "\\u{:04x}", c as u32);
                    }
                    c => out.push(c),
                },
                Escape::None => out.push(c),
                Escape::Default => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        let _ = write!(out, "\\x{b:02X}");
                    }
                }
            }
        }
    }

    /// What an empty value renders as.
    fn empty(self) -> &'static str {
        match self {
            Escape::Json => "",
            _ => "-",
        }
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

    /// Render into `out`; `empty` is written for variables without a value.
    pub fn render_into(&self, src: &dyn VarSource, empty: &str, out: &mut String) {
        self.render_with(src, empty, Escape::None, out);
    }

    /// Render a log line into `out`: each variable's value escaped by `escape`, and an empty
    /// one as NGINX writes it (`-`, or nothing for `json`).
    pub fn render_escaped(&self, src: &dyn VarSource, escape: Escape, out: &mut String) {
        self.render_with(src, escape.empty(), escape, out);
    }

    fn render_with(&self, src: &dyn VarSource, empty: &str, escape: Escape, out: &mut String) {
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(v) => {
                    let before = out.len();
                    src.write_var(v, out);
                    if out.len() == before {
                        out.push_str(empty);
                    } else if escape != Escape::None
                        && out.as_bytes()[before..].iter().any(|&b| escape.escapes(b))
                    {
                        let value = out.split_off(before);
                        escape.push(&value, out);
                    }
                }
            }
        }
    }

    /// The variables the template uses, in order (repeats included).
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v),
            Part::Lit(_) => None,
        })
    }

    /// Whether some variable of the template cannot name a cache entry (see
    /// [`Var::unknown_before_response`]); its name if so.
    pub fn unknown_before_response(&self) -> Option<&Var> {
        self.parts.iter().find_map(|p| match p {
            Part::Var(v) if v.unknown_before_response() => Some(v),
            _ => None,
        })
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

/// The time now in NGINX's `$time_local` format, `23/Nov/2026:18:49:03 +0000`: formatted
/// once a second per thread, as NGINX caches its log times.
pub fn write_time_local(out: &mut String) {
    use chrono::TimeZone;
    thread_local!(static LAST: std::cell::RefCell<(u64, String)> = const {
        std::cell::RefCell::new((0, String::new()))
    });
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    LAST.with_borrow_mut(|(at, text)| {
        if *at != secs || text.is_empty() {
            text.clear();
            let t = i64::try_from(secs)
                .ok()
                .and_then(|s| chrono::Local.timestamp_opt(s, 0).single())
                .unwrap_or_else(chrono::Local::now);
            let _ = write!(text, "{}", t.format("%d/%b/%Y:%H:%M:%S %z"));
            *at = secs;
        }
        out.push_str(text);
    });
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

    struct Ua(&'static str);
    impl VarSource for Ua {
        fn write_var(&self, var: &Var, out: &mut String) {
            if let Var::Http(_) = var {
                out.push_str(self.0)
            }
        }
    }

    fn escaped(value: &'static str, escape: Escape) -> String {
        let t = Template::parse("\"$http_user_agent\" $remote_user").unwrap();
        let mut out = String::new();
        t.render_escaped(&Ua(value), escape, &mut out);
        out
    }

    #[test]
    fn escapes() {
        let hostile = "a\"b\\c\td\u{1}é";
        assert_eq!(
            escaped(hostile, Escape::Default),
            "\"a\\x22b\\x5Cc\\x09d\\x01\\xC3\\xA9\" -"
        );
        assert_eq!(
            escaped(hostile, Escape::Json),
            "\"a\\\"b\\\\c\\td\\u0001é\" "
        );
        assert_eq!(escaped(hostile, Escape::None), format!("\"{hostile}\" -"));
        assert_eq!(escaped("plain", Escape::Json), "\"plain\" ");
    }
}
