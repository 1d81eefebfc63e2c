//! Request-target normalisation as NGINX does before matching locations: percent-decoding, dot
//! segments resolved, slashes merged. A path that climbs above `/`, or contains NUL, is rejected.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

/// Why a request target is refused (both are 400 Bad Request).
#[derive(Debug, PartialEq, Eq)]
pub enum UriError {
    AboveRoot,
    Invalid,
}

/// Decode and normalise the path part (without query) of a request target.
pub fn normalize(raw_path: &str) -> Result<String, UriError> {
    if !raw_path.starts_with('/') {
        return Err(UriError::Invalid);
    }
    let decoded = percent_decode_str(raw_path).collect::<Vec<u8>>();
    if decoded.contains(&0) {
        return Err(UriError::Invalid);
    }
    let decoded = String::from_utf8_lossy(&decoded);
    let mut segs: Vec<&str> = Vec::new();
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if segs.pop().is_none() {
                    return Err(UriError::AboveRoot);
                }
            }
            s => segs.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segs {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    Ok(out)
}

/// Characters escaped when a normalised path is sent upstream (NGINX's `NGX_ESCAPE_URI`).
const PATH_ESCAPE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|');

/// Re-escape a normalised path for the upstream request line.
pub fn escape_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    push_escaped_path(&mut out, path);
    out
}

/// [`escape_path`] appended to `out`.
pub fn push_escaped_path(out: &mut String, path: &str) {
    out.extend(utf8_percent_encode(path, PATH_ESCAPE));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_nginx() {
        assert_eq!(normalize("/").unwrap(), "/");
        assert_eq!(normalize("/%73cript.js").unwrap(), "/script.js");
        assert_eq!(normalize("/x/../script.js").unwrap(), "/script.js");
        assert_eq!(normalize("//a///b/").unwrap(), "/a/b/");
        assert_eq!(normalize("/a/./b/.").unwrap(), "/a/b/");
        assert_eq!(normalize("/a/b/..").unwrap(), "/a/");
        assert_eq!(normalize("/a%2fb").unwrap(), "/a/b");
        assert_eq!(normalize("/..").unwrap_err(), UriError::AboveRoot);
        assert_eq!(
            normalize("/%2e%2e/etc/passwd").unwrap_err(),
            UriError::AboveRoot
        );
        assert_eq!(
            normalize("/a/..%2f..%2fetc").unwrap_err(),
            UriError::AboveRoot
        );
        assert_eq!(normalize("/a%00b").unwrap_err(), UriError::Invalid);
        assert_eq!(normalize("a").unwrap_err(), UriError::Invalid);
    }

    #[test]
    fn escapes_for_upstream() {
        assert_eq!(escape_path("/a b/%?#"), "/a%20b/%25%3F%23");
        assert_eq!(escape_path("/ünï"), "/%C3%BCn%C3%AF");
    }
}
