//! The process's own figures for the standard `process_*` metrics, read from `/proc/self`
//! (Linux) at scrape time: CPU seconds, resident and virtual memory, open and allowed file
//! descriptors, start time. Elsewhere, or when `/proc` cannot be read, a figure is `None`.

use std::sync::OnceLock;

/// What one look at `/proc/self` found.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Sample {
    /// User plus system CPU time.
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    /// The soft `RLIMIT_NOFILE`.
    pub max_fds: Option<u64>,
}

/// The fields of `/proc/self/stat` after the command name (`state` is index 0): `utime`,
/// `stime`, `starttime`, `vsize`, `rss`.
const UTIME: usize = 11;
const STIME: usize = 12;
const STARTTIME: usize = 19;
const VSIZE: usize = 20;
const RSS: usize = 21;

/// The fields of `/proc/self/stat` after the command name (which may hold spaces and `)`).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf reads a system constant; it has no memory effects.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).ok().filter(|v| *v > 0)
}

/// Read the process's figures now.
pub fn sample() -> Sample {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields = stat_fields(&stat).unwrap_or_default();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let ticks = sysconf(libc::_SC_CLK_TCK);
    let page = sysconf(libc::_SC_PAGESIZE);
    let cpu_seconds = match (field(UTIME), field(STIME), ticks) {
        (Some(u), Some(s), Some(t)) => Some((u + s) as f64 / t as f64),
        _ => None,
    };
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count().saturating_sub(1) as u64); // less the one read_dir holds
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    let max_fds = (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0)
        .then_some(limit.rlim_cur);
    Sample {
        cpu_seconds,
        resident_bytes: field(RSS).zip(page).map(|(r, p)| r * p),
        virtual_bytes: field(VSIZE),
        open_fds,
        max_fds,
    }
}

/// When the process started, in Unix seconds (boot time from `/proc/stat` plus the start
/// tick from `/proc/self/stat`); read once.
pub fn start_time_seconds() -> Option<f64> {
    static START: OnceLock<Option<f64>> = OnceLock::new();
    *START.get_or_init(|| {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let start: u64 = stat_fields(&stat)?.get(STARTTIME)?.parse().ok()?;
        let boot: u64 = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        let ticks = sysconf(libc::_SC_CLK_TCK)?;
        Some(boot as f64 + start as f64 / ticks as f64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_names_with_spaces_and_parens() {
        let stat = "42 (a b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21";
        let f = stat_fields(stat).expect("fields");
        assert_eq!(f[0], "S");
        assert_eq!(f[UTIME], "11");
        assert_eq!(f[RSS], "21");
    }

    #[test]
    fn this_process_has_figures() {
        let s = sample();
        assert!(s.cpu_seconds.is_some() && s.resident_bytes.unwrap_or(0) > 0);
        assert!(s.open_fds.unwrap_or(0) >= 3 && s.max_fds.is_some());
        assert!(start_time_seconds().unwrap_or(0.0) > 1.6e9);
    }
}
