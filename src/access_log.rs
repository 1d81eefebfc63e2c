//! The access log: one line per request in the configured NGINX `log_format`, written to stdout,
//! stderr or a file (reopened on demand, for SIGUSR1). When `access_log: off` nothing is
//! formatted.

use crate::config::{AccessLogConfig, LogTarget};
use crate::template::{Escape, Template, VarSource};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

enum Out {
    Stdout,
    Stderr,
    File { path: PathBuf, file: Mutex<File> },
}

fn append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// An open access log.
pub struct AccessLog {
    format: Template,
    escape: Escape,
    out: Out,
}

impl AccessLog {
    /// Open the log's target (files are created and appended to).
    pub fn open(cfg: &AccessLogConfig) -> std::io::Result<AccessLog> {
        let out = match &cfg.target {
            LogTarget::Stdout => Out::Stdout,
            LogTarget::Stderr => Out::Stderr,
            LogTarget::File(p) => Out::File {
                path: p.clone(),
                file: Mutex::new(append(p)?),
            },
        };
        Ok(AccessLog {
            format: cfg.format.clone(),
            escape: cfg.escape,
            out,
        })
    }

    /// The line's format.
    pub fn format(&self) -> &Template {
        &self.format
    }

    /// Open a file target again at its path (a rotated file is let go, a new one created);
    /// stdout and stderr stay as they are.
    pub fn reopen(&self) -> std::io::Result<()> {
        if let Out::File { path, file } = &self.out {
            let new = append(path)?;
            *file.lock().unwrap_or_else(PoisonError::into_inner) = new;
        }
        Ok(())
    }

    /// Format one line (values escaped, and those without a value as `-`, or empty with
    /// `escape: json`, like NGINX) and write it.
    pub fn log(&self, vars: &dyn VarSource) {
        let mut line = String::with_capacity(160);
        self.format.render_escaped(vars, self.escape, &mut line);
        line.push('\n');
        let res = match &self.out {
            Out::Stdout => std::io::stdout().lock().write_all(line.as_bytes()),
            Out::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
            Out::File { file, .. } => match file.lock() {
                Ok(mut f) => f.write_all(line.as_bytes()),
                Err(_) => Ok(()),
            },
        };
        if let Err(e) = res {
            log::warn!("access log write failed: {e}");
        }
    }
}
