//! The escape check: a snapshot of a directory tree outside the extraction root, taken
//! before and after, must be the same. It is the oracle of the hostile-layer tests
//! (tests/layers.rs) and of a fuzz target over [`super::unpack::unpack`].
//!
//! A snapshot records, without following symlinks, every entry's type, mode, owner,
//! link count, size, mtime and ctime (so a chmod, chown, hard link or xattr change shows),
//! device number, xattrs, and the sha256 of a file's content or a symlink's target.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// One entry of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u64,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    pub rdev: u64,
    pub content: String,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// Every entry under a directory (the directory itself is `""`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub nodes: BTreeMap<PathBuf, Node>,
}

fn hash_file(p: &Path) -> io::Result<String> {
    let mut f = fs::File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn node(p: &Path) -> io::Result<Node> {
    let m = fs::symlink_metadata(p)?;
    let ft = m.file_type();
    let (kind, content) = if ft.is_symlink() {
        let t = fs::read_link(p)?;
        (
            "symlink",
            hex::encode(Sha256::digest(t.as_os_str().as_encoded_bytes())),
        )
    } else if ft.is_dir() {
        ("dir", String::new())
    } else if ft.is_file() {
        ("file", hash_file(p)?)
    } else if ft.is_char_device() {
        ("char", String::new())
    } else if ft.is_block_device() {
        ("block", String::new())
    } else if ft.is_fifo() {
        ("fifo", String::new())
    } else {
        ("socket", String::new())
    };
    let mut xattrs = BTreeMap::new();
    if !ft.is_symlink() {
        if let Ok(names) = xattr::list(p) {
            for n in names {
                let v = xattr::get(p, &n).ok().flatten().unwrap_or_default();
                xattrs.insert(n.to_string_lossy().into_owned(), v);
            }
        }
    }
    Ok(Node {
        kind,
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        nlink: m.nlink(),
        size: m.size(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
        rdev: m.rdev(),
        content,
        xattrs,
    })
}

impl Snapshot {
    /// Snapshots `dir` and everything under it, leaving out the subtrees in `skip`
    /// (absolute paths, e.g. the extraction root when it lies inside `dir`).
    pub fn take(dir: &Path, skip: &[&Path]) -> io::Result<Snapshot> {
        fn walk(
            base: &Path,
            p: &Path,
            skip: &[&Path],
            out: &mut BTreeMap<PathBuf, Node>,
        ) -> io::Result<()> {
            let n = node(p)?;
            let is_dir = n.kind == "dir";
            out.insert(p.strip_prefix(base).unwrap_or(p).to_path_buf(), n);
            if is_dir {
                let mut entries: Vec<_> = fs::read_dir(p)?.collect::<Result<_, _>>()?;
                entries.sort_by_key(|e| e.file_name());
                for e in entries {
                    let q = e.path();
                    if !skip.iter().any(|s| q == *s) {
                        walk(base, &q, skip, out)?;
                    }
                }
            }
            Ok(())
        }
        let mut nodes = BTreeMap::new();
        walk(dir, dir, skip, &mut nodes)?;
        Ok(Snapshot { nodes })
    }

    /// What differs from `after`, one line each (empty: nothing changed).
    pub fn changes(&self, after: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        for (p, a) in &self.nodes {
            match after.nodes.get(p) {
                None => out.push(format!("{} was removed", p.display())),
                Some(b) if a != b => out.push(format!("{} changed: {a:?} -> {b:?}", p.display())),
                Some(_) => {}
            }
        }
        for (p, b) in &after.nodes {
            if !self.nodes.contains_key(p) {
                out.push(format!("{} appeared: {b:?}", p.display()));
            }
        }
        out
    }
}

/// A small canary tree for the check: files, a subdirectory, a symlink, a file with
/// two links, all with known content.
pub fn make_canary(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir.join("dir/sub"))?;
    fs::write(dir.join("top"), b"top canary\n")?;
    fs::write(dir.join("dir/victim"), b"victim canary\n")?;
    fs::write(dir.join("dir/sub/deep"), b"deep canary\n")?;
    fs::hard_link(dir.join("top"), dir.join("dir/top-link"))?;
    std::os::unix::fs::symlink("victim", dir.join("dir/link"))?;
    Ok(())
}

/// Runs `f` (an extraction or merge into `root`) and returns its result together with
/// every change to `watch` (with `root` left out when it lies inside it).
pub fn check<T>(watch: &Path, root: &Path, f: impl FnOnce() -> T) -> io::Result<(T, Vec<String>)> {
    let skip = [root];
    let before = Snapshot::take(watch, &skip)?;
    let r = f();
    let after = Snapshot::take(watch, &skip)?;
    Ok((r, before.changes(&after)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_every_kind_of_change() {
        let t = tempfile::tempdir().unwrap();
        make_canary(t.path()).unwrap();
        let p = t.path();
        let changed = |f: &dyn Fn()| {
            let (_, c) = check(p, Path::new("/nonexistent"), f).unwrap();
            c
        };
        assert!(changed(&|| {}).is_empty());
        assert!(!changed(&|| fs::write(p.join("top"), "x").unwrap()).is_empty());
        assert!(!changed(&|| fs::remove_file(p.join("dir/victim")).unwrap()).is_empty());
        assert!(!changed(&|| fs::write(p.join("dir/new"), "").unwrap()).is_empty());
        let link = || fs::hard_link(p.join("dir/sub/deep"), p.join("h")).unwrap();
        assert!(!changed(&link).is_empty());
        let chmod = || {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(p.join("dir/sub"), fs::Permissions::from_mode(0o700)).unwrap()
        };
        assert!(!changed(&chmod).is_empty());
        let opaque = || xattr::set(p.join("dir"), "trusted.overlay.opaque", b"y").unwrap();
        if xattr::set(p.join("top"), "trusted.minnow-probe", b"1").is_ok() {
            xattr::remove(p.join("top"), "trusted.minnow-probe").unwrap();
            assert!(!changed(&opaque).is_empty());
        }
    }
}
