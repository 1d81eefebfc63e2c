//! Files and directories: test fixtures, the shipped `conf/` and `static/`, cache entries.

use std::path::{Path, PathBuf};

/// The package root (where `conf/`, `static/` and `tests/` are).
pub const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// Write `contents` to `dir/rel`, creating parent directories.
pub fn write_file(dir: &Path, rel: &str, contents: &[u8]) {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .unwrap_or_else(|e| panic!("create_dir_all {}: {e}", parent.display()));
    }
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Replace `path` by a new file (another inode) holding `bytes`, with the old file's mtime: a
/// change that neither size nor mtime reveals. `tmp` is a free path on the same filesystem.
pub fn replace_keeping_mtime(path: &Path, tmp: &Path, bytes: &[u8]) {
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    std::fs::write(tmp, bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(tmp)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    std::fs::rename(tmp, path).unwrap();
}

/// Copy the directory tree `from` to `to` (created if missing).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir {}: {e}", to.display()));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("copy {}: {e}", entry.path().display()));
        }
    }
}

/// Copy the shipped `conf/` and `static/` into `to` (as `to/conf`, `to/static`), so a shipped
/// config can run from there with its relative paths.
pub fn copy_shipped(to: &Path) {
    let root = Path::new(MANIFEST_DIR);
    copy_dir(&root.join("conf"), &to.join("conf"));
    copy_dir(&root.join("static"), &to.join("static"));
}

/// Whether `name` looks like a cache entry file (NGINX-style: the key's hash
/// in 32 hex digits). Temp files of in-progress fills are not entries.
fn is_entry_name(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Every committed entry file under `dir` with its size.
pub fn entry_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for de in rd.flatten() {
            let p = de.path();
            let Ok(md) = de.metadata() else { continue };
            if md.is_dir() {
                stack.push(p);
            } else if p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_entry_name)
            {
                out.push((p, md.len()));
            }
        }
    }
    out
}
