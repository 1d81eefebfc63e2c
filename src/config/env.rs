//! `${VAR}` and `${VAR:-default}` expansion of config string values from the environment.

/// Expand every `${NAME}` / `${NAME:-default}` in `s`. `$` not followed by `{` is kept as is
/// (NGINX variables such as `$host` live in the same strings). An unset variable without a
/// default is an error.
pub fn expand(s: &str) -> Result<String, String> {
    expand_with(s, |k| std::env::var(k).ok())
}

pub fn expand_with(s: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    if !s.contains("${") {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated `${{` in `{s}`"))?;
        let inner = &after[..end];
        let (name, default) = match inner.find(":-") {
            Some(j) => (&inner[..j], Some(&inner[j + 2..])),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "invalid environment variable name `{name}` in `{s}`"
            ));
        }
        match (lookup(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "environment variable `{name}` is not set (use `${{{name}:-default}}`)"
                ))
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        (k == "SET").then(|| "v".to_string())
    }

    #[test]
    fn expands() {
        assert_eq!(expand_with("a${SET}b", env).unwrap(), "avb");
        assert_eq!(
            expand_with("${UNSET:-1.2.3.4:80}", env).unwrap(),
            "1.2.3.4:80"
        );
        assert_eq!(expand_with("${SET:-x}", env).unwrap(), "v");
        assert_eq!(expand_with("$host", env).unwrap(), "$host");
        assert!(expand_with("${UNSET}", env).is_err());
        assert!(expand_with("${SET", env).is_err());
        assert!(expand_with("${a b}", env).is_err());
    }
}
