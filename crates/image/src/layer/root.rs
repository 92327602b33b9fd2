//! A directory that layer contents go into, and the only ways minnow touches it: through
//! the directory's file descriptor, with every path resolved inside it by `openat2`, and
//! `*at` calls on a parent descriptor for the last component (never following it).
//!
//! - [`Root::dir_in_root`]: `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`: symlinks are followed
//!   as if the root were `/` (an absolute target or `..` stays inside), as the container
//!   will see them; `/proc/self/root` and other magic links are refused.
//! - [`Root::dir_beneath`]: `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`: any symlink in the path
//!   is an error (for merging layers, where a lower layer's symlink must never be entered).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{
    mkdirat, openat, openat2, statat, unlinkat, AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags,
};
use rustix::io::Errno;

/// Path components inside a root: each one a plain name (no `/`, `.`, `..` or NUL).
pub type Components = Vec<OsString>;

/// How a path was wrong (the entry names came from an untrusted layer).
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("it has a `..` component")]
    DotDot,
    #[error("it holds a NUL byte")]
    Nul,
    #[error("it names no file")]
    Empty,
}

/// Splits a path from a layer into plain components: a leading `/` and `.` components
/// are dropped (tar entries are relative to the root either way); `..` is refused.
pub fn components(raw: &[u8]) -> Result<Components, PathError> {
    use std::os::unix::ffi::OsStrExt;
    if raw.contains(&0) {
        return Err(PathError::Nul);
    }
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(PathError::DotDot),
            name => out.push(OsStr::from_bytes(name).to_os_string()),
        }
    }
    Ok(out)
}

fn join(comps: &[OsString]) -> PathBuf {
    if comps.is_empty() {
        return PathBuf::from(".");
    }
    comps.iter().collect()
}

/// An open directory that everything is resolved inside.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

const DIR_FLAGS: OFlags = OFlags::DIRECTORY
    .union(OFlags::RDONLY)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOFOLLOW);

impl Root {
    /// Opens `path` (minnow's own directory, trusted) as a root.
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = openat(rustix::fs::CWD, path, DIR_FLAGS, Mode::empty())?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open2(&self, comps: &[OsString], resolve: ResolveFlags) -> io::Result<OwnedFd> {
        let path = join(comps);
        // openat2 may return EAGAIN with RESOLVE_IN_ROOT when a rename raced the walk.
        for _ in 0..16 {
            // No O_NOFOLLOW: `resolve` governs every component, the last one too.
            let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
            match openat2(&self.fd, &path, flags, Mode::empty(), resolve) {
                Err(Errno::AGAIN) => continue,
                r => return r.map_err(io::Error::from),
            }
        }
        Err(io::Error::from(Errno::AGAIN))
    }

    /// The directory `comps` inside the root, symlinks resolved inside it. With `create`,
    /// missing directories are made (mode 0755); a component that is a symlink to
    /// something missing is an error, never a directory made somewhere else.
    pub fn dir_in_root(&self, comps: &[OsString], create: bool) -> io::Result<OwnedFd> {
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        if !create {
            return self.open2(comps, resolve);
        }
        match self.open2(comps, resolve) {
            Err(e) if e.raw_os_error() == Some(libc_enoent()) => {}
            r => return r,
        }
        let mut cur = self.open2(&[], resolve)?;
        for i in 0..comps.len() {
            match self.open2(&comps[..=i], resolve) {
                Ok(fd) => cur = fd,
                Err(e) if e.raw_os_error() == Some(libc_enoent()) => {
                    match mkdirat(&cur, &comps[i], Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    cur = self.open2(&comps[..=i], resolve)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(cur)
    }

    /// The directory `comps` inside the root; any symlink on the way is an error.
    pub fn dir_beneath(&self, comps: &[OsString]) -> io::Result<OwnedFd> {
        self.open2(comps, ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS)
    }
}

fn libc_enoent() -> i32 {
    Errno::NOENT.raw_os_error()
}

/// What `name` in `dir` is, without following it; `None` if there is nothing.
pub fn kind_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<FileType>> {
    match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Removes `name` in `dir` whatever it is (a directory with everything in it), never
/// following a symlink. Nothing there is fine.
pub fn remove_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    match kind_at(dir, name)? {
        None => Ok(()),
        Some(FileType::Directory) => {
            let sub = openat(dir, name, DIR_FLAGS, Mode::empty())?;
            remove_children(sub.as_fd())?;
            unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(Into::into)
        }
        Some(_) => match unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        },
    }
}

/// The names in directory `dir` (without `.` and `..`).
pub fn names(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::new();
    for e in Dir::read_from(dir)? {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    out.sort();
    Ok(out)
}

/// Empties directory `dir`, never following a symlink.
pub fn remove_children(dir: BorrowedFd<'_>) -> io::Result<()> {
    for n in names(dir)? {
        remove_at(dir, &n)?;
    }
    Ok(())
}

/// Opens directory `name` in `dir`, refusing a symlink.
pub fn open_dir_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    openat(dir, name, DIR_FLAGS, Mode::empty()).map_err(Into::into)
}

/// Makes `name` in `dir` a directory: kept if it is one, else whatever is there is
/// removed first. Returns the open directory.
pub fn replace_with_dir(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<OwnedFd> {
    match kind_at(dir, name)? {
        Some(FileType::Directory) => {}
        other => {
            if other.is_some() {
                remove_at(dir, name)?;
            }
            mkdirat(dir, name, Mode::from_raw_mode(mode))?;
        }
    }
    open_dir_at(dir, name)
}

/// Makes directory `name` in `dir` (then sets `mode`) unless something is there already;
/// never follows what is there.
pub fn ensure_dir_at(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
    if kind_at(dir, name)?.is_some() {
        return Ok(());
    }
    mkdirat(dir, name, Mode::from_raw_mode(mode))?;
    let fd = open_dir_at(dir, name)?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn components_refuse_dotdot_and_drop_root() {
        let c = components(b"/a/./b//c/").unwrap();
        assert_eq!(c, ["a", "b", "c"]);
        assert!(components(b"./").unwrap().is_empty());
        assert!(matches!(components(b"a/../b"), Err(PathError::DotDot)));
        assert!(matches!(components(b".."), Err(PathError::DotDot)));
        assert!(matches!(components(b"a\0b"), Err(PathError::Nul)));
    }

    #[test]
    fn resolution_stays_inside() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let out = t.path().join("out");
        fs::create_dir_all(root.join("real")).unwrap();
        fs::create_dir(&out).unwrap();
        std::os::unix::fs::symlink(&out, root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../out", root.join("rel")).unwrap();
        std::os::unix::fs::symlink("/real", root.join("inside")).unwrap();
        std::os::unix::fs::symlink("/proc/self/root", root.join("magic")).unwrap();
        let r = Root::open(&root).unwrap();
        let c = |s: &str| components(s.as_bytes()).unwrap();
        // Absolute and relative links out resolve inside the root, where nothing is.
        assert!(r.dir_in_root(&c("abs"), true).is_err());
        assert!(r.dir_in_root(&c("rel/x"), true).is_err());
        // A link inside is followed inside.
        r.dir_in_root(&c("inside/new"), true).unwrap();
        assert!(root.join("real/new").is_dir());
        // A magic link is refused (or resolves inside), never to the host's root.
        assert!(r.dir_in_root(&c("magic/tmp"), true).is_err());
        assert!(r.dir_beneath(&c("inside")).is_err());
        assert!(r.dir_beneath(&c("real/new")).is_ok());
        // Removal never follows.
        fs::write(out.join("keep"), "x").unwrap();
        remove_at(r.fd(), OsStr::new("abs")).unwrap();
        assert!(out.join("keep").exists());
        assert_eq!(fs::read_dir(&out).unwrap().count(), 1);
    }
}
