//! What a compiled config needs from the disk, checked when a file is loaded (`-t`, the start, a
//! reload) so that a config that cannot start fails where it is written: each cache zone's
//! directory and each temp path set (`proxy_temp_path`, `client_body_temp_path`) can be
//! created and written, each `error_pages` URI maps to a file; a `root` or
//! `alias` that does not exist is only a warning (NGINX starts without it; its requests get
//! 404). Nothing is written, except, as root (whom `access(2)` lets write almost anywhere),
//! an empty probe directory, removed at once, where a cache directory would be created.

use super::{status_key, Compiler, Result};
use crate::config::model::{Config, DocRoot, Handler};
use crate::config::raw::RawConfig;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

impl Compiler {
    /// Check `cfg`, compiled from `raw`, against the disk: an error for what stops a start,
    /// warnings (in `cfg.warnings`) for what does not.
    pub(in crate::config) fn check_disk(&self, raw: &RawConfig, cfg: &mut Config) -> Result<()> {
        for zone in &cfg.zones {
            usable_dir(&zone.path).map_err(|why| {
                self.err(
                    &format!("caches.{}.path", zone.name),
                    format!(
                        "cannot create or write the cache directory {}: {why}",
                        zone.path.display()
                    ),
                )
            })?;
        }
        // NGINX creates its temp paths at start and fails without them; the defaults (the
        // system temp dir) are only warned about at start (their buffers then stream)
        for (at, set, dir) in [
            (
                "proxy_temp_path",
                raw.proxy_temp_path.is_some(),
                &cfg.buffers.temp_path,
            ),
            (
                "client_body_temp_path",
                raw.client_body_temp_path.is_some(),
                &cfg.buffers.body_temp_path,
            ),
        ] {
            if set {
                usable_dir(dir).map_err(|why| {
                    self.err(
                        at,
                        format!("cannot create or write {}: {why}", dir.display()),
                    )
                })?;
            }
        }
        for (key, uri) in &raw.error_pages {
            let at = format!("error_pages.{}", status_key(key).unwrap_or_default());
            self.error_page_file(&at, uri, cfg)?;
        }
        let mut warned = Vec::new();
        for (i, loc) in cfg.locations.iter().enumerate() {
            let Handler::Static(st) = &loc.handler else {
                continue;
            };
            let own_root = raw.locations.get(i).is_some_and(|l| l.root.is_some());
            let (at, dir, want_dir) = match &st.doc_root {
                DocRoot::Alias { dir, .. } => (format!("locations[{i}].alias"), dir, false),
                DocRoot::Root(dir) if own_root => (format!("locations[{i}].root"), dir, true),
                DocRoot::Root(dir) => ("root".to_string(), dir, true),
            };
            if warned.contains(&at) {
                continue;
            }
            let problem = match std::fs::metadata(dir) {
                Ok(m) if want_dir && !m.is_dir() => "not a directory".to_string(),
                Ok(_) => continue,
                Err(e) => e.to_string(),
            };
            cfg.warnings.push(self.err(
                &at,
                format!("{}: {problem}; its requests will get 404", dir.display()),
            ));
            warned.push(at);
        }
        Ok(())
    }

    /// The file an error page URI is read from must exist (the compiler checked that the URI
    /// routes to a static location).
    fn error_page_file(&self, at: &str, uri: &str, cfg: &Config) -> Result<()> {
        let st = cfg
            .router
            .find(uri)
            .and_then(|i| cfg.locations.get(i))
            .and_then(|l| match &l.handler {
                Handler::Static(st) => Some(st),
                Handler::Proxy(_) => None,
            });
        let Some((file, _)) = st.and_then(|st| st.map_path(uri)) else {
            return Ok(());
        };
        let problem = match std::fs::metadata(&file) {
            Ok(m) if m.is_file() => return Ok(()),
            Ok(_) => "not a regular file".to_string(),
            Err(e) => e.to_string(),
        };
        Err(self.err(
            at,
            format!(
                "error page `{uri}` cannot be read from {}: {problem}",
                file.display()
            ),
        ))
    }
}

/// Whether a directory is there or can be made, and written: its nearest existing ancestor
/// must be a directory this process may write and search.
fn usable_dir(dir: &Path) -> std::result::Result<(), String> {
    let mut existing = dir;
    let meta = loop {
        match std::fs::metadata(existing) {
            Ok(m) => break m,
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                existing = match existing.parent() {
                    Some(p) if p.as_os_str().is_empty() => Path::new("."),
                    Some(p) => p,
                    None => return Err(e.to_string()),
                };
            }
            Err(e) => return Err(format!("{}: {e}", existing.display())),
        }
    };
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", existing.display()));
    }
    let c = CString::new(existing.as_os_str().as_bytes())
        .map_err(|_| "the path holds a NUL byte".to_string())?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        let e = io::Error::last_os_error();
        return Err(format!("{} is not writable: {e}", existing.display()));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 && existing != dir {
        let probe = existing.join(format!(".outrigger-t-{}", std::process::id()));
        match std::fs::create_dir(&probe) {
            Ok(()) => {
                let _ = std::fs::remove_dir(&probe);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(format!(
                    "no directory can be created in {}: {e}",
                    existing.display()
                ))
            }
        }
    }
    Ok(())
}
