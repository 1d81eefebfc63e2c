//! Configuration: reading a YAML file into the compiled, immutable [`Config`] snapshot that
//! request handling reads. Nothing here runs per request.
//!
//! Where things are:
//! - `raw`: the YAML schema as written (`deny_unknown_fields`);
//! - `compile`: raw → compiled, one file per concern; a directive's code is found by its name
//!   (`server`: listen, threads, timeouts, logs, admin, error pages; `locations`: matchers,
//!   `root`/`alias`, headers, `expires`; `upstreams`: `upstreams:`, `proxy_pass`; `cache`:
//!   `caches:`, `cache:`; `compression`: `gzip:`, `brotli:`, `zstd:`, `static:`);
//! - `model`: the compiled types, re-exported here;
//! - `error`: [`ConfigError`] with its FILE:LINE:COLUMN;
//! - `units` (NGINX sizes and times), `env` (`${VAR}`), `span` (YAML paths → positions).

mod compile;
pub mod env;
mod error;
mod model;
pub mod raw;
pub mod span;
pub mod units;

pub use compile::DEFAULT_MEMORY_TIER;
pub use error::ConfigError;
pub use model::*;

use raw::RawConfig;
use std::path::Path;

impl Config {
    /// Read, parse, validate and compile a config file, and check what it names on disk (cache
    /// directories, error page files: errors; `root`s and `alias`es: [`Config::warnings`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read config: {e}"),
        })?;
        let raw = parse(&src, path)?;
        let compiler = compile::Compiler::new(&src, path);
        let mut cfg = compiler.compile(&raw)?;
        compiler.check_disk(&raw, &mut cfg)?;
        Ok(cfg)
    }

    /// Parse `src` as if read from `path` (relative paths resolve against its directory),
    /// without looking at the disk.
    pub fn from_str(src: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw = parse(src, path)?;
        compile::Compiler::new(src, path).compile(&raw)
    }
}

/// `src` deserialised as written, or the YAML error with its position.
fn parse(src: &str, path: &Path) -> Result<RawConfig, ConfigError> {
    serde_yaml::from_str(src).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        ConfigError {
            file: path.to_path_buf(),
            line,
            column,
            message: error::strip_position(&e.to_string()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(src: &str) -> Result<Config, ConfigError> {
        Config::from_str(src, Path::new("/etc/outrigger/test.yaml"))
    }

    #[test]
    fn errors_name_line_and_key() {
        let e = load("listen: [\"127.0.0.1:1\"]\nlocations:\n  - prefix: /\n    root: /tmp\n  - prefix: /api/\n    proxy_pass: http://nope/\n").unwrap_err();
        assert_eq!((e.line, e.column), (6, 17), "{e}");
        assert!(e.to_string().contains("locations[1].proxy_pass"), "{e}");
        assert!(e.to_string().contains("unknown upstream `nope`"), "{e}");

        let e = load("listen: [\"127.0.0.1:1\"]\nupstreams:\n  a: {address: \"127.0.0.1:9\", read_timeout: 10x}\nlocations: []\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.to_string().contains("upstreams.a.read_timeout"), "{e}");

        let e =
            load("listen: [\"127.0.0.1:1\"]\nlocations:\n  - regex: '(unclosed'\n    root: /tmp\n")
                .unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.to_string().contains("invalid regex"), "{e}");

        let e = load("listen: [\"127.0.0.1:1\"]\nbogus: 1\nlocations: []\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn relative_paths_resolve_against_config_dir() {
        let c = load("listen: [\"127.0.0.1:1\"]\nlocations:\n  - prefix: /\n    root: ../static\n")
            .unwrap();
        match &c.locations[0].handler {
            Handler::Static(s) => match &s.doc_root {
                DocRoot::Root(r) => assert_eq!(r, Path::new("/etc/outrigger/../static")),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }
}
