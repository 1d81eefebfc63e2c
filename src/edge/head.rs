//! A request head as the edge reads it: NGINX's size limits while it arrives
//! (`large_client_header_buffers`, by default a line up to 8 KiB and the head up to 32 KiB; at
//! most 100 fields), the checks NGINX and RFC 9112 make of a whole head, so that a head the
//! edge hands on is one NGINX would have accepted, and the rewrite of the heads NGINX accepts
//! in another shape (header lines it ignores, an absolute-form target).

use crate::config::ClientLimits;
use crate::headers::connection_names;
use crate::wire::Framing;
use std::mem::MaybeUninit;

/// Most header fields in a head.
pub const MAX_FIELDS: usize = 100;

/// A head refused: the status to answer with, and NGINX's reason (logged at `info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub reason: &'static str,
}

fn reject(status: u16, reason: &'static str) -> Rejection {
    Rejection { status, reason }
}

/// Follows a head while it arrives, looking at each byte once: where its lines end, whether
/// one is too long, and where the head ends.
#[derive(Debug)]
pub struct HeadScan {
    /// Longest line.
    line_max: usize,
    /// Longest head.
    head_max: usize,
    /// Bytes of the buffer looked at so far.
    scanned: usize,
    /// Where the line being read starts.
    line_start: usize,
    /// Whether the request line has been read (empty lines before it are skipped, RFC 9112 §2.2).
    request_line: bool,
}

impl HeadScan {
    /// A scan of a new head, with the line and head limits of `limits`.
    pub fn new(limits: &ClientLimits) -> Self {
        HeadScan {
            line_max: limits.header_line,
            head_max: limits.header_total,
            scanned: 0,
            line_start: 0,
            request_line: false,
        }
    }

    /// Look at the bytes of `buf` not seen yet. `Ok(Some(len))`: the head is whole, `len`
    /// bytes long; `Ok(None)`: it is not yet; `Err`: it passes a limit (414 for the request
    /// line, 400 otherwise).
    pub fn advance(&mut self, buf: &[u8]) -> Result<Option<usize>, Rejection> {
        while let Some(at) = memchr::memchr(b'\n', &buf[self.scanned..]) {
            let end = self.scanned + at;
            self.scanned = end + 1;
            let line = &buf[self.line_start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            self.line_start = end + 1;
            if line.is_empty() {
                if !self.request_line {
                    continue;
                }
                if end + 1 > self.head_max {
                    return Err(reject(400, "client sent too large request"));
                }
                return Ok(Some(end + 1));
            }
            self.check_line(line.len())?;
            self.request_line = true;
        }
        self.scanned = buf.len();
        self.check_line(buf.len() - self.line_start)?;
        if buf.len() > self.head_max {
            return Err(reject(400, "client sent too large request"));
        }
        Ok(None)
    }

    fn check_line(&self, len: usize) -> Result<(), Rejection> {
        match (len > self.line_max, self.request_line) {
            (false, _) => Ok(()),
            (true, false) => Err(reject(414, "client sent too long URI")),
            (true, true) => Err(reject(400, "client sent too long header line")),
        }
    }
}

/// Room for the fields of one head, left uninitialised until parsed.
pub type Fields<'b> = [MaybeUninit<httparse::Header<'b>>; MAX_FIELDS];

/// Room for [`parse`]'s fields.
pub fn fields<'b>() -> Fields<'b> {
    [const { MaybeUninit::uninit() }; MAX_FIELDS]
}

/// Parse a whole head (`head` ends with its empty line) into `parsed`, its fields in `fields`,
/// and make NGINX's checks of it: the request line (method, target, version) and the fields
/// that frame the request (`Host`, `Content-Length`, `Transfer-Encoding`). Returns how the
/// request's body ends.
pub fn parse<'h, 'b>(
    head: &'b [u8],
    fields: &'h mut Fields<'b>,
    parsed: &mut httparse::Request<'h, 'b>,
) -> Result<Framing, Rejection> {
    match parsed.parse_with_uninit_headers(head, fields) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(reject(400, "client sent invalid request")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(reject(400, "client sent too many header lines"))
        }
        Err(httparse::Error::HeaderName) => return Err(INVALID_HEADER_NAME),
        Err(httparse::Error::Version) if newer_version(head) => {
            return Err(reject(505, "client sent unsupported HTTP version"))
        }
        Err(_) => return Err(reject(400, "client sent invalid request")),
    }
    check_request_line(parsed)?;
    check_fields(parsed)
}

/// A header name httparse refuses (not an HTTP token): a line NGINX may ignore (`rewrite`).
pub const INVALID_HEADER_NAME: Rejection = Rejection {
    status: 400,
    reason: "client sent invalid header line",
};

/// Whether a parsed head must be rewritten (`rewrite`) before it is used: its target is in
/// absolute form, or a header name is one NGINX ignores under `limits`.
pub fn needs_rewrite(parsed: &httparse::Request, limits: &ClientLimits) -> bool {
    parsed
        .path
        .is_some_and(|p| absolute_form(p.as_bytes()).is_some())
        || (limits.ignore_invalid_headers
            && parsed
                .headers
                .iter()
                .any(|f| ignored_name(f.name.as_bytes(), limits)))
}

/// Whether NGINX ignores a header line with this name (`ignore_invalid_headers`): a name with
/// characters other than letters, digits and `-`, or `_` without `underscores_in_headers`.
fn ignored_name(name: &[u8], limits: &ClientLimits) -> bool {
    limits.ignore_invalid_headers
        && !name.iter().all(|b| {
            b.is_ascii_alphanumeric() || *b == b'-' || (*b == b'_' && limits.underscores_in_headers)
        })
}

/// The authority and the rest (path and query) of an absolute-form target.
fn absolute_form(target: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = [b"http://".as_slice(), b"https://"]
        .iter()
        .find_map(|scheme| {
            target
                .get(..scheme.len())
                .filter(|s| s.eq_ignore_ascii_case(scheme))
                .map(|_| &target[scheme.len()..])
        })?;
    let end = rest
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    Some(rest.split_at(end))
}

/// The head as NGINX would use it, when that is not the head as sent: header lines NGINX
/// ignores are dropped (logged at `info`, as NGINX does), and an absolute-form target becomes
/// origin-form with its authority as `Host` (RFC 9112 §3.2.2). `Ok(None)`: nothing to change.
/// Lines the parser must refuse (a name with white space, no colon) are left for it to refuse.
pub fn rewrite(head: &[u8], limits: &ClientLimits) -> Result<Option<Vec<u8>>, Rejection> {
    let mut out = Vec::with_capacity(head.len());
    let mut changed = false;
    let mut authority: Option<&[u8]> = None;
    let mut request_line = true;
    for line in head.split_inclusive(|b| *b == b'\n') {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if request_line {
            if text.is_empty() {
                // an empty line before the request line (RFC 9112 §2.2)
                changed = true;
                continue;
            }
            request_line = false;
            let mut parts = text.splitn(3, |b| *b == b' ');
            let (Some(method), Some(target), Some(version)) =
                (parts.next(), parts.next(), parts.next())
            else {
                out.extend_from_slice(line);
                continue;
            };
            match absolute_form(target) {
                Some((host, rest)) => {
                    if !valid_host(host) || host.contains(&b'@') {
                        return Err(reject(400, "client sent invalid host in request line"));
                    }
                    authority = Some(host);
                    changed = true;
                    out.extend_from_slice(method);
                    out.push(b' ');
                    if !rest.starts_with(b"/") {
                        out.push(b'/');
                    }
                    out.extend_from_slice(rest);
                    out.push(b' ');
                    out.extend_from_slice(version);
                    out.extend_from_slice(b"\r\n");
                }
                None => out.extend_from_slice(line),
            }
            continue;
        }
        if text.is_empty() {
            out.extend_from_slice(b"\r\n");
            break;
        }
        let Some(colon) = text.iter().position(|b| *b == b':') else {
            out.extend_from_slice(line);
            continue;
        };
        let name = &text[..colon];
        if name.is_empty() || name.iter().any(|b| *b <= b' ' || *b == 0x7f) {
            out.extend_from_slice(line);
        } else if let Some(host) = authority.filter(|_| name.eq_ignore_ascii_case(b"host")) {
            out.extend_from_slice(b"Host: ");
            out.extend_from_slice(host);
            out.extend_from_slice(b"\r\n");
            changed = true;
        } else if ignored_name(name, limits) {
            log::info!(
                "client sent invalid header line: \"{}\"",
                text[..text.len().min(256)].escape_ascii()
            );
            changed = true;
        } else {
            out.extend_from_slice(line);
        }
    }
    Ok(changed.then_some(out))
}

/// Whether the request line names a version above HTTP/1 (`HTTP/2.0` on an HTTP/1 connection:
/// 505, as NGINX).
fn newer_version(head: &[u8]) -> bool {
    let line = head
        .split(|b| *b == b'\n')
        .find(|l| !l.trim_ascii().is_empty());
    let Some(version) = line.and_then(|l| l.trim_ascii().rsplit(|b| *b == b' ').next()) else {
        return false;
    };
    version
        .strip_prefix(b"HTTP/")
        .and_then(|v| v.first())
        .is_some_and(|major| major.is_ascii_digit() && *major >= b'2')
}

fn check_request_line(parsed: &httparse::Request) -> Result<(), Rejection> {
    let method = parsed.method.unwrap_or("");
    // NGINX: a method is upper-case letters, `_` and `-`.
    if method.is_empty()
        || !method
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'_' || b == b'-')
    {
        return Err(reject(400, "client sent invalid method"));
    }
    if method == "TRACE" {
        return Err(reject(405, "client sent TRACE method"));
    }
    if method == "CONNECT" {
        return Err(reject(405, "client sent CONNECT method"));
    }
    let target = parsed.path.unwrap_or("");
    let absolute = target
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
        || target
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
    let asterisk = target == "*" && method == "OPTIONS";
    if !(target.starts_with('/') || absolute || asterisk) {
        return Err(reject(400, "client sent invalid request target"));
    }
    Ok(())
}

fn check_fields(parsed: &httparse::Request) -> Result<Framing, Rejection> {
    let (mut host, mut length, mut coding) = (None, None, None::<String>);
    let (mut upgrade, mut connection_upgrade) = (false, false);
    for f in parsed.headers.iter() {
        let name = f.name.as_bytes();
        if name.eq_ignore_ascii_case(b"host") {
            if host.replace(f.value).is_some() {
                return Err(reject(400, "client sent duplicate header line: Host"));
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            if length.replace(f.value).is_some() {
                return Err(reject(
                    400,
                    "client sent duplicate header line: Content-Length",
                ));
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let value = String::from_utf8_lossy(f.value);
            coding = Some(match coding {
                Some(before) => format!("{before}, {value}"),
                None => value.into_owned(),
            });
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            connection_upgrade |= connection_names(f.value, b"upgrade");
        }
    }
    let http11 = parsed.version == Some(1);
    match host {
        Some(value) if !valid_host(value.trim_ascii()) => {
            return Err(reject(400, "client sent invalid host header"))
        }
        None if http11 && parsed.path.is_some_and(|p| p.starts_with('/')) => {
            return Err(reject(
                400,
                "client sent HTTP/1.1 request without \"Host\" header",
            ))
        }
        _ => {}
    }
    let mut framing = Framing::Empty;
    if let Some(value) = length {
        let digits = value.trim_ascii();
        if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(reject(400, "client sent invalid \"Content-Length\" header"));
        }
        framing = Framing::Length(digits.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')));
    }
    if let Some(coding) = coding {
        if !http11 {
            return Err(reject(
                400,
                "client sent HTTP/1.0 request with \"Transfer-Encoding\" header",
            ));
        }
        if !coding.trim().eq_ignore_ascii_case("chunked") {
            return Err(reject(501, "client sent unknown \"Transfer-Encoding\""));
        }
        if length.is_some() {
            return Err(reject(
                400,
                "client sent \"Content-Length\" and \"Transfer-Encoding\" headers at the same time",
            ));
        }
        framing = Framing::Chunked;
    }
    // Pingora tunnels an HTTP/1.1 request naming an upgrade (`headers::drop_unnamed_upgrade`
    // removes any other `Upgrade`)
    if http11 && upgrade && connection_upgrade {
        framing = Framing::Tunnel;
    }
    Ok(framing)
}

/// A `Host` value as RFC 3986's `host [":" port]`, with NGINX's extra rule that no label is
/// empty (`a..b`); a trailing dot is allowed (`$host` drops it).
pub fn valid_host(value: &[u8]) -> bool {
    let port = if value.first() == Some(&b'[') {
        let Some(close) = value.iter().position(|b| *b == b']') else {
            return false;
        };
        let literal = &value[1..close];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|b| b.is_ascii_hexdigit() || b".:vV".contains(b) || sub_delim(*b))
        {
            return false;
        }
        &value[close + 1..]
    } else {
        let split = value.iter().position(|b| *b == b':').unwrap_or(value.len());
        let host = &value[..split];
        let name = host.strip_suffix(b".").unwrap_or(host);
        if name.is_empty()
            || name.split(|b| *b == b'.').any(|label| label.is_empty())
            || !name.iter().all(|b| reg_name_char(*b))
        {
            return false;
        }
        &value[split..]
    };
    match port.strip_prefix(b":") {
        None => port.is_empty(),
        // `port = *DIGIT`: an empty port is allowed (RFC 3986 §3.2.3)
        Some(digits) => {
            digits.len() <= 5
                && digits.iter().all(u8::is_ascii_digit)
                && digits
                    .iter()
                    .fold(0u32, |port, d| port * 10 + u32::from(d - b'0'))
                    <= 65535
        }
    }
}

fn sub_delim(b: u8) -> bool {
    b"!$&'()*+,;=".contains(&b)
}

/// unreserved, pct-encoded and sub-delims (RFC 3986 `reg-name`).
fn reg_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%".contains(&b) || sub_delim(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_HEAD_LINE: usize = 8 * 1024;

    fn scan_all(buf: &[u8]) -> Result<Option<usize>, Rejection> {
        HeadScan::new(&ClientLimits::default()).advance(buf)
    }

    fn check(head: &str) -> Result<Framing, Rejection> {
        let mut room = fields();
        let mut parsed = httparse::Request::new(&mut []);
        parse(head.as_bytes(), &mut room, &mut parsed)
    }

    fn status(head: &str) -> u16 {
        check(head).err().map_or(0, |r| r.status)
    }

    #[test]
    fn scan_finds_the_end_in_pieces_and_bounds_lines() {
        let head = b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nrest";
        let mut scan = HeadScan::new(&ClientLimits::default());
        for end in 1..head.len() {
            match scan.advance(&head[..end]) {
                Ok(Some(len)) => {
                    assert_eq!(len, head.len() - 4);
                    break;
                }
                Ok(None) => assert!(end < head.len() - 4),
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(scan_all(b"GET / HTTP/1.1\nHost: a\n\n"), Ok(Some(24)));
        let long_uri = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD_LINE));
        assert_eq!(
            scan_all(long_uri.as_bytes()).map_err(|r| r.status),
            Err(414)
        );
        assert_eq!(
            scan_all(&long_uri.as_bytes()[..MAX_HEAD_LINE + 1]).map_err(|r| r.status),
            Err(414)
        );
        let long_field = format!("GET / HTTP/1.1\r\nX: {}", "b".repeat(MAX_HEAD_LINE));
        assert_eq!(
            scan_all(long_field.as_bytes()).map_err(|r| r.status),
            Err(400)
        );
        let many = format!("GET / HTTP/1.1\r\n{}", "X-A: 1234567890\r\n".repeat(2000));
        assert_eq!(scan_all(many.as_bytes()).map_err(|r| r.status), Err(400));
        let whole = format!("{many}\r\n");
        assert_eq!(scan_all(whole.as_bytes()).map_err(|r| r.status), Err(400));
    }

    #[test]
    fn nginx_rejections() {
        let ok = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(status(ok), 0);
        assert_eq!(status("get / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status("TRACE / HTTP/1.1\r\nHost: a\r\n\r\n"), 405);
        assert_eq!(status("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n"), 405);
        assert_eq!(status("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(status("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status("GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status("GET echo?t=1 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status("GET http://b/x HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
        assert_eq!(status("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.0\r\n\r\n"), 0);
        for host in [
            "bad host", "a, b", "", "x/y", "a..b", "[::1", "a:99999", "a:b",
        ] {
            assert_eq!(
                status(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")),
                400,
                "{host}"
            );
        }
        for host in ["a.", "A.example:8080", "[::1]:80", "127.0.0.1", "a_b", "x:"] {
            assert_eq!(
                status(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")),
                0,
                "{host}"
            );
        }
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
        let body = "POST / HTTP/1.1\r\nHost: a\r\n";
        assert_eq!(status(&format!("{body}Content-Length: 5, 5\r\n\r\n")), 400);
        assert_eq!(
            status(&format!(
                "{body}Content-Length: 5\r\nContent-Length: 5\r\n\r\n"
            )),
            400
        );
        assert_eq!(status(&format!("{body}Content-Length: -1\r\n\r\n")), 400);
        assert_eq!(status(&format!("{body}Content-Length: 5\r\n\r\n")), 0);
        assert_eq!(
            status(&format!("{body}Transfer-Encoding: gzip, chunked\r\n\r\n")),
            501
        );
        assert_eq!(
            status(&format!("{body}Transfer-Encoding: chunked\r\n\r\n")),
            0
        );
        assert_eq!(
            status(&format!(
                "{body}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
            )),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        let many = format!(
            "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
            "X: 1\r\n".repeat(MAX_FIELDS)
        );
        assert_eq!(status(&many), 400);
    }

    #[test]
    fn rewrites_absolute_targets_and_drops_ignored_lines() {
        let nginx = ClientLimits::default();
        let rewrite_str = |head: &str, limits: &ClientLimits| {
            rewrite(head.as_bytes(), limits)
                .map(|o| o.map(|v| String::from_utf8_lossy(&v).into_owned()))
        };
        assert_eq!(
            rewrite_str(
                "GET http://h.example:81/a?b HTTP/1.1\r\nHost: x\r\nX: 1\r\n\r\n",
                &nginx
            ),
            Ok(Some(
                "GET /a?b HTTP/1.1\r\nHost: h.example:81\r\nX: 1\r\n\r\n".into()
            ))
        );
        assert_eq!(
            rewrite_str("\r\nGET https://h?q HTTP/1.1\nHost: x\n\n", &nginx),
            Ok(Some("GET /?q HTTP/1.1\r\nHost: h\r\n\r\n".into()))
        );
        assert_eq!(
            rewrite_str("GET / HTTP/1.1\r\nA_B: 1\r\nC.D: 2\r\nE: 3\r\n\r\n", &nginx),
            Ok(Some("GET / HTTP/1.1\r\nE: 3\r\n\r\n".into()))
        );
        let underscores = ClientLimits {
            underscores_in_headers: true,
            ..nginx
        };
        assert_eq!(
            rewrite_str("GET / HTTP/1.1\r\nA_B: 1\r\nC.D: 2\r\n\r\n", &underscores),
            Ok(Some("GET / HTTP/1.1\r\nA_B: 1\r\n\r\n".into()))
        );
        // a name with white space is left for the parser to refuse; nothing to change
        assert_eq!(
            rewrite_str("GET / HTTP/1.1\r\nA : 1\r\n\r\n", &nginx),
            Ok(None)
        );
        assert_eq!(
            rewrite_str("GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n", &nginx)
                .map_err(|r| r.status),
            Err(400)
        );
    }
}
