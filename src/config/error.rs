//! [`ConfigError`]: what is wrong with a config, and where (file, line, column).

use regex::Regex;
use std::fmt;
use std::path::PathBuf;

/// A config error with the file, line and column it refers to.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            // not about a position in the file (e.g. it cannot be read)
            return write!(f, "{}: {}", self.file.display(), self.message);
        }
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// serde_yaml writes " at line L column C" into its messages; we print the position in front
/// instead, and quote the key path it starts with (`a.b[0]: msg` → `` `a.b[0]`: msg``).
pub(super) fn strip_position(msg: &str) -> String {
    static POS: once_cell::sync::Lazy<Regex> = once_cell::sync::Lazy::new(|| {
        Regex::new(r" at line \d+ column \d+").expect("static regex")
    });
    static PATH: once_cell::sync::Lazy<Regex> = once_cell::sync::Lazy::new(|| {
        Regex::new(r"^([A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+|\[\d+\])*): ").expect("static regex")
    });
    let m = POS.replace_all(msg, "");
    PATH.replace(&m, "`$1`: ").into_owned()
}
