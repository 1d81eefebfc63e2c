//! The error log's file target (`error_log: {target: FILE}`): appended to, and reopened at its
//! path on demand (SIGUSR1, after logrotate renamed it), as NGINX does with its log files.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// The process's error-log file, once one is opened.
static FILE: OnceLock<(PathBuf, Arc<Mutex<File>>)> = OnceLock::new();

fn append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// A writer of the error-log file: every write goes to the file open at that moment.
pub struct ErrorLogFile(Arc<Mutex<File>>);

impl Write for ErrorLogFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        // one record, one write: lines of several threads never interleave
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Open `path` as the process's error log (once per process; the log's target does not change
/// on reload).
pub fn open(path: &Path) -> std::io::Result<ErrorLogFile> {
    let file = Arc::new(Mutex::new(append(path)?));
    let _ = FILE.set((path.to_path_buf(), file.clone()));
    Ok(ErrorLogFile(file))
}

/// Open the error-log file again at its path; `Ok(false)` when the error log is no file.
pub fn reopen() -> std::io::Result<bool> {
    let Some((path, file)) = FILE.get() else {
        return Ok(false);
    };
    let new = append(path)?;
    *file.lock().unwrap_or_else(PoisonError::into_inner) = new;
    Ok(true)
}
