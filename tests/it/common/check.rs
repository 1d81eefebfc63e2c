//! Assertions and polling shared by the test modules.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use super::{Proxy, Response};

/// Assert `got == want`; on a mismatch the message gives both lengths, the first differing
/// byte and how `got` starts (not the whole bodies, which may be megabytes).
#[track_caller]
pub fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let first_diff = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    panic!(
        "{what}: got {} bytes, want {} bytes; first difference at byte {first_diff}; got starts {:?}",
        got.len(),
        want.len(),
        String::from_utf8_lossy(&got[..got.len().min(80)])
    );
}

/// The response's `X-Proxy-Cache` (the tests' `$upstream_cache_status`), or `<absent>`.
pub fn cache_status(r: &Response) -> &str {
    r.header("x-proxy-cache").unwrap_or("<absent>")
}

/// Assert the proxy's logs hold no panic.
#[track_caller]
pub fn no_panic_in_logs(proxy: &Proxy) {
    let logs = proxy.logs();
    assert!(!logs.contains("panicked"), "outrigger panicked:\n{logs}");
}

/// Poll `f` every 50 ms until it is true (true) or `timeout` elapses (false).
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// [`wait_until`] `f` holds, or panic with `what`.
#[track_caller]
pub fn eventually(what: &str, timeout: Duration, f: impl FnMut() -> bool) {
    assert!(wait_until(timeout, f), "timed out waiting for: {what}");
}

/// Poll the file `path` until it has at least `n` lines (for 5 s at most, then panic); returns
/// its lines.
#[track_caller]
pub fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} has {} line(s), expected {n}: {text:?}",
            path.display(),
            lines.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// 90 days in seconds (`expires: 90d`, `max-age=7776000`).
pub const NINETY_DAYS: u64 = 90 * 24 * 3600;

/// Assert `r` has an `Expires` 90 days ahead (within 2 minutes).
#[track_caller]
pub fn assert_expires_in_90_days(r: &Response) {
    let expires = r
        .header("expires")
        .unwrap_or_else(|| panic!("no Expires header: {:?}", r.headers));
    let t = httpdate::parse_http_date(expires)
        .unwrap_or_else(|e| panic!("bad Expires {expires:?}: {e}"));
    let ahead = t
        .duration_since(SystemTime::now())
        .unwrap_or_else(|_| panic!("Expires {expires:?} is in the past"))
        .as_secs();
    assert!(
        ahead.abs_diff(NINETY_DAYS) < 120,
        "Expires {expires:?} is {ahead}s ahead, expected ~{NINETY_DAYS}s"
    );
}
