//! NGINX units: durations (`10` = seconds, `500ms`, `10s`, `5m`, `1h`, `1d`, `1w`, `1M`, `1y`, and
//! combinations such as `1h30m`) and sizes (`512`, `1k`, `100m`, `10g`).

use std::time::Duration;

/// Parse an NGINX time value. A bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    let bad = || {
        format!("invalid duration `{s}` (expected e.g. `10`, `500ms`, `10s`, `5m`, `1h`, `90d`)")
    };
    let bytes = t.as_bytes();
    let mut total_ms: u128 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(bad());
        }
        let n: u128 = t[start..i].parse().map_err(|_| bad())?;
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit_ms: u128 = match &t[ustart..i] {
            "" if ustart == bytes.len() && start == 0 => 1000,
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "M" => 30 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return Err(bad()),
        };
        total_ms = total_ms
            .checked_add(n.checked_mul(unit_ms).ok_or_else(bad)?)
            .ok_or_else(bad)?;
    }
    let ms = u64::try_from(total_ms).map_err(|_| bad())?;
    Ok(Duration::from_millis(ms))
}

/// Parse an NGINX size value. A bare number is bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad = || format!("invalid size `{s}` (expected e.g. `512`, `1k`, `100m`, `10g`)");
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&t[..t.len() - 1], 1u64 << 20),
        Some('g' | 'G') => (&t[..t.len() - 1], 1u64 << 30),
        Some(c) if c.is_ascii_digit() => (t, 1),
        _ => return Err(bad()),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    n.checked_mul(mult).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration("90d").unwrap(),
            Duration::from_secs(7_776_000)
        );
        assert_eq!(
            parse_duration("1y").unwrap(),
            Duration::from_secs(31_536_000)
        );
        for bad in [
            "",
            "10x",
            "s",
            "1.5s",
            "-1",
            "10 s",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("1k").unwrap(), 1024);
        assert_eq!(parse_size("100m").unwrap(), 100 << 20);
        assert_eq!(parse_size("10G").unwrap(), 10 << 30);
        for bad in ["", "k", "1t", "1.5m", "-1"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
