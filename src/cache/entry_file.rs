//! The on-disk entry format and its atomic replace. An entry file is a fixed header (magic,
//! body length, the two meta lengths, primary key, variance), the user tag, the serialized
//! `CacheMeta` blobs, then the body. A file whose length disagrees with its header is rejected
//! (a truncated or foreign file is never served). Files are written under a temp name and moved
//! into place whole (`replace_file`), so readers see the old entry or the new one.

use pingora_cache::key::CompactCacheKey;
use pingora_cache::CacheMeta;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

const MAGIC: &[u8; 8] = b"ORCACHE1";
/// magic, body length, two meta lengths, primary, variance flag + variance, user-tag length
pub const FIXED: usize = 8 + 8 + 4 + 4 + 16 + 1 + 16 + 2;
/// Where the body length sits in the fixed header: written last, when the body is complete.
const BODY_LEN_AT: usize = 8;

/// Where the parts of an entry file lie: fixed header, tag, meta, body.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub tag_len: u16,
    pub meta_lens: (u32, u32),
    pub body_len: u64,
}

impl Layout {
    pub fn meta_offset(&self) -> u64 {
        FIXED as u64 + self.tag_len as u64
    }

    pub fn body_offset(&self) -> u64 {
        self.meta_offset() + self.meta_lens.0 as u64 + self.meta_lens.1 as u64
    }

    pub fn file_len(&self) -> u64 {
        self.body_offset() + self.body_len
    }
}

/// What an entry file's header says: the key it was stored under and its layout.
pub struct EntryHead {
    pub key: CompactCacheKey,
    pub layout: Layout,
}

/// Whether the open entry file still has a name (not unlinked).
pub fn still_linked(f: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    f.metadata().is_ok_and(|m| m.nlink() > 0)
}

/// Whether the open file `f` is the one at `path` now (not replaced or removed).
pub fn is_at(f: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

/// Open an entry file and parse its header; `None` when there is no such file.
pub fn read_entry(path: &Path) -> std::io::Result<Option<(EntryHead, File)>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let head = parse_entry(&f)?;
    Ok(Some((head, f)))
}

/// The fixed header of an open entry file, parsed and checked against the file's length.
/// Always read from the descriptor being served: the file may have been replaced by a newer
/// fill since the index learnt about it.
fn parse_entry(f: &File) -> std::io::Result<EntryHead> {
    let len = f.metadata()?.len();
    let mut head = [0u8; FIXED];
    if len < FIXED as u64 || f.read_exact_at(&mut head, 0).is_err() || &head[0..8] != MAGIC {
        return Err(std::io::Error::new(ErrorKind::InvalidData, "bad header"));
    }
    let u64_at = |o: usize| u64::from_le_bytes(head[o..o + 8].try_into().unwrap_or([0; 8]));
    let u32_at = |o: usize| u32::from_le_bytes(head[o..o + 4].try_into().unwrap_or([0; 4]));
    let body_len = u64_at(BODY_LEN_AT);
    let m0 = u32_at(16);
    let m1 = u32_at(20);
    let mut primary = [0u8; 16];
    primary.copy_from_slice(&head[24..40]);
    let variance = if head[40] == 1 {
        let mut v = [0u8; 16];
        v.copy_from_slice(&head[41..57]);
        Some(Box::new(v))
    } else {
        None
    };
    let tag_len = u16::from_le_bytes([head[57], head[58]]);
    let layout = Layout {
        tag_len,
        meta_lens: (m0, m1),
        body_len,
    };
    if layout.body_offset().checked_add(body_len) != Some(len) {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            "truncated entry",
        ));
    }
    let mut tag = vec![0u8; tag_len as usize];
    f.read_exact_at(&mut tag, FIXED as u64)?;
    let user_tag = String::from_utf8(tag)
        .map_err(|_| std::io::Error::new(ErrorKind::InvalidData, "bad user tag"))?;
    let key = CompactCacheKey {
        primary,
        variance,
        user_tag: user_tag.into_boxed_str(),
    };
    Ok(EntryHead { key, layout })
}

pub fn read_meta(f: &File, layout: &Layout) -> std::io::Result<CacheMeta> {
    let (m0, m1) = layout.meta_lens;
    let mut buf = vec![0u8; m0 as usize + m1 as usize];
    f.read_exact_at(&mut buf, layout.meta_offset())?;
    let (a, b) = buf.split_at(m0 as usize);
    CacheMeta::deserialize(a, b)
        .map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e.to_string()))
}

/// The fixed header, user tag and meta blobs of an entry file (the body follows them).
pub fn encode_head(
    key: &CompactCacheKey,
    meta: &(Vec<u8>, Vec<u8>),
    body_len: u64,
    extra_capacity: usize,
) -> std::io::Result<Vec<u8>> {
    let tag = key.user_tag.as_bytes();
    let tag_len = u16::try_from(tag.len())
        .map_err(|_| std::io::Error::new(ErrorKind::InvalidInput, "user tag too long"))?;
    let m0 = u32::try_from(meta.0.len())
        .map_err(|_| std::io::Error::new(ErrorKind::InvalidInput, "meta too long"))?;
    let m1 = u32::try_from(meta.1.len())
        .map_err(|_| std::io::Error::new(ErrorKind::InvalidInput, "meta too long"))?;
    let mut head =
        Vec::with_capacity(FIXED + tag.len() + meta.0.len() + meta.1.len() + extra_capacity);
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&body_len.to_le_bytes());
    head.extend_from_slice(&m0.to_le_bytes());
    head.extend_from_slice(&m1.to_le_bytes());
    head.extend_from_slice(&key.primary);
    match &key.variance {
        Some(v) => {
            head.push(1);
            head.extend_from_slice(v.as_ref());
        }
        None => {
            head.push(0);
            head.extend_from_slice(&[0u8; 16]);
        }
    }
    head.extend_from_slice(&tag_len.to_le_bytes());
    head.extend_from_slice(tag);
    head.extend_from_slice(&meta.0);
    head.extend_from_slice(&meta.1);
    Ok(head)
}

/// Set the body length in a head from [`encode_head`] (at least the fixed header long).
pub fn set_body_len(head: &mut [u8], body_len: u64) {
    head[BODY_LEN_AT..BODY_LEN_AT + 8].copy_from_slice(&body_len.to_le_bytes());
}

/// Set the body length in the fixed header of an entry file written with a head from
/// [`encode_head`].
pub fn write_body_len(f: &File, body_len: u64) -> std::io::Result<()> {
    f.write_all_at(&body_len.to_le_bytes(), BODY_LEN_AT as u64)
}

/// Write `a` then `b` to `f`, with as few system calls as the kernel allows.
pub fn write_both(f: &mut File, a: &[u8], b: &[u8]) -> std::io::Result<()> {
    let n = f.write_vectored(&[std::io::IoSlice::new(a), std::io::IoSlice::new(b)])?;
    if n < a.len() {
        f.write_all(&a[n..])?;
        f.write_all(b)
    } else {
        f.write_all(&b[n - a.len()..])
    }
}

/// Rewrite the entry file `old` (laid out as `layout`) with new meta blobs: its body is copied
/// under a new head into `tmp`, which then replaces `dest`. On failure `tmp` is removed.
pub fn rewrite_meta(
    old: &mut File,
    layout: &Layout,
    key: &CompactCacheKey,
    meta: &(Vec<u8>, Vec<u8>),
    tmp: &Path,
    dest: &Path,
) -> std::io::Result<()> {
    let res = (|| -> std::io::Result<()> {
        let mut f = OpenOptions::new().write(true).create_new(true).open(tmp)?;
        let head = encode_head(key, meta, layout.body_len, 0)?;
        f.write_all(&head)?;
        std::io::Seek::seek(old, std::io::SeekFrom::Start(layout.body_offset()))?;
        let copied = std::io::copy(&mut old.take(layout.body_len), &mut f)?;
        if copied != layout.body_len {
            return Err(std::io::Error::new(
                ErrorKind::UnexpectedEof,
                "entry shrank",
            ));
        }
        replace_file(tmp, dest)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    res
}

/// Moves the finished temp file `tmp` to `dest`, atomically replacing any entry there.
///
/// An existing entry is swapped out with `renameat2(RENAME_EXCHANGE)` and then unlinked,
/// rather than renamed over: ext4 (`auto_da_alloc`, the default) forces a synchronous
/// writeback of the new file on every rename that replaces one. A file replaced again within
/// seconds is then usually never written to the disk at all. Readers see the old entry or the
/// new one, never neither. The level directories are created only when the move says they are
/// missing.
pub fn replace_file(tmp: &Path, dest: &Path) -> std::io::Result<()> {
    match exchange(tmp, dest) {
        // `tmp` now names the old entry
        Ok(()) => return std::fs::remove_file(tmp),
        // no entry yet (or no exchange on this filesystem): a plain rename
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT | libc::EINVAL | libc::ENOSYS)
            ) => {}
        Err(e) => return Err(e),
    }
    match std::fs::rename(tmp, dest) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let Some(parent) = dest.parent() else {
                return Err(e);
            };
            std::fs::create_dir_all(parent)?;
            std::fs::rename(tmp, dest)
        }
        other => other,
    }
}

#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let a = std::ffi::CString::new(a.as_os_str().as_bytes())?;
    let b = std::ffi::CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_a: &Path, _b: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from_raw_os_error(libc::ENOSYS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_cache::key::CacheHashKey;

    /// A head encoded, given its body and read back gives the key and layout it was made of.
    #[test]
    fn head_round_trips() {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = CompactCacheKey {
            primary: [7; 16],
            variance: Some(Box::new([9; 16])),
            user_tag: "/api/".into(),
        };
        let meta = (vec![1u8; 10], vec![2u8; 20]);
        let mut head = encode_head(&key, &meta, 0, 0).expect("head");
        set_body_len(&mut head, 3);
        let path = dir.path().join("e");
        let mut f = File::create(&path).expect("create");
        write_both(&mut f, &head, b"abc").expect("write");
        let (parsed, f) = read_entry(&path).expect("read").expect("present");
        assert_eq!(parsed.key.combined_bin(), key.combined_bin());
        assert_eq!(&*parsed.key.user_tag, "/api/");
        assert_eq!(parsed.layout.meta_offset(), FIXED as u64 + 5);
        assert_eq!(parsed.layout.file_len(), FIXED as u64 + 5 + 30 + 3);
        assert!(still_linked(&f) && is_at(&f, &path));
        // a body shorter than the header says is not an entry
        std::fs::write(&path, [&head[..], &b"ab"[..]].concat()).expect("write");
        assert!(read_entry(&path).is_err());
        assert!(read_entry(&dir.path().join("none"))
            .expect("absent")
            .is_none());
    }
}
