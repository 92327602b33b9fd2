//! Extracted layers onto one directory, safely (microVM disks, `minnow run --image`).
//!
//! Layers are applied bottom to top. The walk goes through the layer and the destination
//! side by side, one component at a time, each opened with `O_NOFOLLOW` from its parent's
//! descriptor, so a lower layer's symlink is never entered: an upper layer's directory
//! replaces it (as overlayfs shows it), whiteouts and opaque directories delete only
//! inside the destination, and files are always made new (`O_EXCL`), never written
//! through an existing name or hard link.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{
    chmodat, chownat, fchmod, fchown, fgetxattr, flistxattr, fsetxattr, fstat, futimens, linkat,
    mknodat, openat, readlinkat, statat, symlinkat, utimensat, AtFlags, FileType, Gid, Mode,
    OFlags, Stat, Timespec, Timestamps, Uid, XattrFlags,
};

use super::root::{names, open_dir_at, remove_at, remove_children, replace_with_dir, Root};

/// The overlayfs opaque-directory xattr.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// How a layer lands on the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeMode {
    /// Flatten: whiteouts delete and opaque directories are emptied; neither is copied
    /// (the destination is a plain root filesystem).
    Apply,
    /// Copy the layer as it is, whiteouts and the opaque xattr included (another store's
    /// overlay lower directory); the destination should be empty.
    Verbatim,
}

/// Why a merge stopped.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {}: {source}", path.display())]
pub struct MergeError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

struct Ctx<'a> {
    mode: MergeMode,
    dst_root: &'a Root,
    /// Hard links: (dev, ino) in the layer → the first copy's path in the destination.
    links: HashMap<(u64, u64), Vec<OsString>>,
}

/// Applies the extracted layer at `layer` onto the directory `dst`.
pub fn merge_layer(layer: &Path, dst: &Path, mode: MergeMode) -> Result<(), MergeError> {
    let err = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| MergeError { op, path, source }
    };
    let src = Root::open(layer).map_err(err("open layer", layer))?;
    let dst_root = Root::open(dst).map_err(err("open", dst))?;
    let mut ctx = Ctx {
        mode,
        dst_root: &dst_root,
        links: HashMap::new(),
    };
    let dfd = dst_root.dir_beneath(&[]).map_err(err("open", dst))?;
    let sfd = src.dir_beneath(&[]).map_err(err("open layer", layer))?;
    let mut rel = Vec::new();
    merge_dir(&mut ctx, sfd.as_fd(), dfd.as_fd(), &mut rel).map_err(|(op, rel, source)| {
        MergeError {
            op,
            path: layer.join(rel.iter().collect::<PathBuf>()),
            source,
        }
    })
}

type Fail = (&'static str, Vec<OsString>, io::Error);

fn at<T>(
    r: Result<T, impl Into<io::Error>>,
    op: &'static str,
    rel: &[OsString],
) -> Result<T, Fail> {
    r.map_err(|e| (op, rel.to_vec(), e.into()))
}

fn is_whiteout(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

fn is_opaque(dir: BorrowedFd<'_>) -> bool {
    let mut v = [0u8; 2];
    matches!(fgetxattr(dir, OPAQUE_XATTR, &mut v[..]), Ok(1) if v[0] == b'y')
}

fn times(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

fn merge_dir(
    ctx: &mut Ctx<'_>,
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    rel: &mut Vec<OsString>,
) -> Result<(), Fail> {
    if ctx.mode == MergeMode::Apply && is_opaque(src) {
        at(remove_children(dst), "empty opaque directory", rel)?;
    }
    for name in at(names(src), "read directory", rel)? {
        rel.push(name.clone());
        merge_entry(ctx, src, dst, &name, rel)?;
        rel.pop();
    }
    let st = at(fstat(src), "stat", rel)?;
    at(
        copy_fd_meta(src, dst, &st, ctx.mode),
        "set attributes of",
        rel,
    )?;
    Ok(())
}

fn merge_entry(
    ctx: &mut Ctx<'_>,
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    name: &OsStr,
    rel: &mut Vec<OsString>,
) -> Result<(), Fail> {
    let st = at(statat(src, name, AtFlags::SYMLINK_NOFOLLOW), "stat", rel)?;
    let ft = FileType::from_raw_mode(st.st_mode);
    if is_whiteout(&st) && ctx.mode == MergeMode::Apply {
        return at(remove_at(dst, name), "apply whiteout", rel);
    }
    if ft == FileType::Directory {
        let d = at(replace_with_dir(dst, name, 0o700), "make directory", rel)?;
        let s = at(open_dir_at(src, name), "open directory", rel)?;
        return merge_dir(ctx, s.as_fd(), d.as_fd(), rel);
    }
    at(remove_at(dst, name), "replace", rel)?;
    match ft {
        FileType::RegularFile => {
            if st.st_nlink > 1 {
                let key = (st.st_dev, st.st_ino);
                if let Some(first) = ctx.links.get(&key).cloned() {
                    if let Some((fname, fparent)) = first.split_last() {
                        let fdir = at(ctx.dst_root.dir_beneath(fparent), "find hard link", rel)?;
                        if linkat(&fdir, fname, dst, name, AtFlags::empty()).is_ok() {
                            return Ok(());
                        }
                    }
                }
                ctx.links.insert(key, rel.clone());
            }
            let s = at(
                openat(
                    src,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ),
                "open",
                rel,
            )?;
            let d: OwnedFd = at(
                openat(
                    dst,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                ),
                "create",
                rel,
            )?;
            let (mut s, mut d) = (File::from(s), File::from(d));
            at(io::copy(&mut s, &mut d), "copy", rel)?;
            at(
                copy_fd_meta(s.as_fd(), d.as_fd(), &st, ctx.mode),
                "set attributes of",
                rel,
            )?;
        }
        FileType::Symlink => {
            let target = at(readlinkat(src, name, Vec::new()), "read symlink", rel)?;
            at(symlinkat(target.as_c_str(), dst, name), "make symlink", rel)?;
            at(copy_at_meta(dst, name, &st), "set attributes of", rel)?;
        }
        FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
            at(
                mknodat(dst, name, ft, Mode::empty(), st.st_rdev),
                "make node",
                rel,
            )?;
            at(copy_at_meta(dst, name, &st), "set attributes of", rel)?;
            // Made just now by this process: `name` is no symlink.
            at(
                chmodat(
                    dst,
                    name,
                    Mode::from_raw_mode(st.st_mode & 0o7777),
                    AtFlags::empty(),
                ),
                "chmod",
                rel,
            )?;
        }
        _ => log::debug!("merging a layer: skipping socket {name:?}"),
    }
    Ok(())
}

/// Owner, mode, xattrs and times from `src` onto `dst` (both open descriptors).
fn copy_fd_meta(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    st: &Stat,
    mode: MergeMode,
) -> io::Result<()> {
    fchown(
        dst,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )?;
    fchmod(dst, Mode::from_raw_mode(st.st_mode & 0o7777))?;
    let mut list = vec![0u8; 64 * 1024];
    let n = flistxattr(src, &mut list[..]).unwrap_or(0);
    for raw in list[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        use std::os::unix::ffi::OsStrExt;
        let name = OsStr::from_bytes(raw);
        let overlay = raw.starts_with(b"trusted.overlay.");
        let keep = match mode {
            MergeMode::Apply => !overlay,
            MergeMode::Verbatim => !overlay || raw == OPAQUE_XATTR.as_bytes(),
        };
        if !keep {
            continue;
        }
        let mut value = vec![0u8; 64 * 1024];
        if let Ok(len) = fgetxattr(src, name, &mut value[..]) {
            fsetxattr(dst, name, &value[..len], XattrFlags::empty())?;
        }
    }
    futimens(dst, &times(st))?;
    Ok(())
}

/// Owner and times of `name` in `dir`, not following it.
fn copy_at_meta(dir: BorrowedFd<'_>, name: &OsStr, st: &Stat) -> io::Result<()> {
    chownat(
        dir,
        name,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    utimensat(dir, name, &times(st), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt};

    fn whiteout(p: &Path) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p,
            FileType::CharacterDevice,
            Mode::empty(),
            0,
        )
        .unwrap();
    }

    #[test]
    fn whiteouts_opaque_dirs_and_hard_links() {
        let t = tempfile::tempdir().unwrap();
        let (lower, upper, dst) = (t.path().join("l"), t.path().join("u"), t.path().join("d"));
        for d in [&lower, &upper, &dst] {
            fs::create_dir(d).unwrap();
        }
        fs::create_dir_all(lower.join("etc/old")).unwrap();
        fs::write(lower.join("etc/old/a"), "a").unwrap();
        fs::write(lower.join("etc/keep"), "keep").unwrap();
        fs::write(lower.join("gone"), "gone").unwrap();
        fs::create_dir_all(upper.join("etc/old")).unwrap();
        xattr::set(upper.join("etc/old"), OPAQUE_XATTR, b"y").unwrap();
        fs::write(upper.join("etc/old/b"), "b").unwrap();
        whiteout(&upper.join("gone"));
        fs::write(upper.join("h1"), "linked").unwrap();
        fs::hard_link(upper.join("h1"), upper.join("etc/h2")).unwrap();
        merge_layer(&lower, &dst, MergeMode::Apply).unwrap();
        merge_layer(&upper, &dst, MergeMode::Apply).unwrap();
        assert!(!dst.join("gone").exists());
        assert!(!dst.join("etc/old/a").exists(), "opaque dir not emptied");
        assert_eq!(fs::read(dst.join("etc/old/b")).unwrap(), b"b");
        assert_eq!(fs::read(dst.join("etc/keep")).unwrap(), b"keep");
        assert_eq!(xattr::get(dst.join("etc/old"), OPAQUE_XATTR).unwrap(), None);
        let (a, b) = (
            fs::metadata(dst.join("h1")).unwrap(),
            fs::metadata(dst.join("etc/h2")).unwrap(),
        );
        assert_eq!(a.ino(), b.ino());
        // Verbatim keeps the overlay form.
        let copy = t.path().join("c");
        fs::create_dir(&copy).unwrap();
        merge_layer(&upper, &copy, MergeMode::Verbatim).unwrap();
        let w = fs::symlink_metadata(copy.join("gone")).unwrap();
        assert!(w.file_type().is_char_device() && w.rdev() == 0);
        assert_eq!(
            xattr::get(copy.join("etc/old"), OPAQUE_XATTR).unwrap(),
            Some(b"y".to_vec())
        );
    }

    /// An upper layer over a lower layer's symlink out: nothing outside changes.
    #[test]
    fn a_lower_symlink_is_never_entered() {
        let t = tempfile::tempdir().unwrap();
        let canary = t.path().join("canary");
        super::super::escape_check::make_canary(&canary).unwrap();
        let (lower, upper, dst) = (t.path().join("l"), t.path().join("u"), t.path().join("d"));
        for d in [&lower, &upper, &dst] {
            fs::create_dir(d).unwrap();
        }
        symlink(canary.join("dir"), lower.join("evil")).unwrap();
        symlink(canary.join("top"), lower.join("file")).unwrap();
        fs::create_dir(upper.join("evil")).unwrap();
        xattr::set(upper.join("evil"), OPAQUE_XATTR, b"y").unwrap();
        whiteout(&upper.join("evil/victim"));
        fs::write(upper.join("evil/planted"), "x").unwrap();
        fs::write(upper.join("file"), "overwritten").unwrap();
        let (r, changes) = super::super::escape_check::check(&canary, &dst, || {
            merge_layer(&lower, &dst, MergeMode::Apply)?;
            merge_layer(&upper, &dst, MergeMode::Apply)
        })
        .unwrap();
        r.unwrap();
        assert!(changes.is_empty(), "{changes:?}");
        assert!(dst.join("evil").is_dir() && !dst.join("evil").is_symlink());
        assert_eq!(fs::read(dst.join("evil/planted")).unwrap(), b"x");
        assert_eq!(fs::read(dst.join("file")).unwrap(), b"overwritten");
    }
}
