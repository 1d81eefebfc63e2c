//! Where a zone's files live: each entry file under subdirectories named from the end of its
//! id's hex, as NGINX's `levels` (`levels: "1:2"` → `c/29/<hex>`), and fills in progress
//! under `tmp/`.

use pingora_cache::key::HashBinary;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// This process's id, for temp file names (`getpid` is a system call on every use).
static PID: once_cell::sync::Lazy<u32> = once_cell::sync::Lazy::new(std::process::id);

pub(super) struct ZoneDir {
    dir: PathBuf,
    /// Hex characters per level, checked by the config (up to three levels of 1 or 2).
    levels: Vec<usize>,
    /// Numbers the temp files.
    seq: AtomicU64,
}

impl ZoneDir {
    /// The zone directory `dir`, created if missing, its `tmp/` emptied: fills that never
    /// finished (a crash) are garbage.
    pub(super) fn open(dir: PathBuf, levels: Vec<usize>) -> std::io::Result<ZoneDir> {
        std::fs::create_dir_all(dir.join("tmp"))?;
        for e in std::fs::read_dir(dir.join("tmp"))?.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        Ok(ZoneDir {
            dir,
            levels,
            seq: AtomicU64::new(0),
        })
    }

    /// `<dir>/<last hex chars per level>/.../<hex>`, as NGINX's `levels`.
    pub(super) fn path_of(&self, id: &HashBinary) -> PathBuf {
        let h = hex::encode(id);
        let mut p = self.dir.clone();
        let mut end = h.len();
        for l in &self.levels {
            p.push(&h[end - l..end]);
            end -= l;
        }
        p.push(h);
        p
    }

    /// A new temp file name for a fill of `id`.
    pub(super) fn tmp_path(&self, id: &HashBinary) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.dir
            .join("tmp")
            .join(format!("{}.{}.{n}", hex::encode(id), *PID))
    }

    /// Call `f` with the id of every file named as an entry under the directory, `tmp/` aside.
    pub(super) fn each_id(&self, mut f: impl FnMut(HashBinary)) {
        let mut stack = vec![self.dir.clone()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for de in rd.flatten() {
                let p = de.path();
                let Ok(ft) = de.file_type() else { continue };
                if ft.is_dir() {
                    if p != self.dir.join("tmp") {
                        stack.push(p);
                    }
                    continue;
                }
                let Some(id) = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(pingora_cache::key::str2hex)
                else {
                    continue;
                };
                f(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_entries_by_levels() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let zd = ZoneDir::open(tmp.path().to_path_buf(), vec![1, 2]).expect("zone dir");
        let mut id = [0u8; 16];
        id[15] = 0xc2;
        id[14] = 0x9a;
        let p = zd.path_of(&id);
        let h = hex::encode(id);
        assert_eq!(p, tmp.path().join("2").join("ac").join(&h));
        std::fs::create_dir_all(p.parent().expect("level dir")).expect("mkdir");
        std::fs::write(&p, b"x").expect("write");
        std::fs::write(zd.tmp_path(&id), b"x").expect("write");
        let mut seen = Vec::new();
        zd.each_id(|id| seen.push(id));
        assert_eq!(seen, vec![id], "the temp file is not an entry");
    }
}
