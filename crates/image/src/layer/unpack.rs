//! A layer tar into a directory, safely: the one place minnow extracts layers.
//!
//! Every file, directory, link, device node, whiteout, owner, mode, time and xattr is
//! made through a descriptor of a directory inside the destination ([`Root`]) and an
//! `*at` call on the last component that never follows it, so no entry (absolute, `..`,
//! beneath a symlink out of the root, a hard link to a file outside, `/proc/self/root`)
//! reaches anything outside. OCI whiteouts become overlayfs ones: `.wh.NAME` a 0:0
//! character device `NAME`, `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on its
//! directory. Size and entry count are limited ([`Limits`]).
//!
//! [`unpack`] is a plain function (a reader in, a scratch directory out) so that a fuzz
//! target can drive it with [`super::escape_check`] as the oracle.

use std::cell::Cell;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

use rustix::fs::{
    chmodat, chownat, fchmod, fchown, fsetxattr, futimens, linkat, makedev, mknodat, openat,
    symlinkat, utimensat, AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid,
    XattrFlags,
};
use tar::EntryType;

use super::root::{components, remove_at, replace_with_dir, Components, PathError, Root};
use crate::printable;

/// Default limit of a layer's file contents (decompressed), 16 GiB.
pub const MAX_LAYER_BYTES: u64 = 16 << 30;
/// Default limit of a layer's entries.
pub const MAX_LAYER_ENTRIES: u64 = 1_000_000;
/// Default limit of one entry's tar metadata (headers, long names, PAX records), 1 MiB.
pub const MAX_ENTRY_METADATA: u64 = 1 << 20;

/// What one layer may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// File content bytes, summed over the layer (as declared, so a sparse file counts
    /// with its full size).
    pub max_bytes: u64,
    /// Tar entries (files, directories, links, whiteouts, ...).
    pub max_entries: u64,
    /// Metadata bytes in front of one entry (its headers, GNU long names, PAX records).
    pub max_metadata: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: MAX_LAYER_BYTES,
            max_entries: MAX_LAYER_ENTRIES,
            max_metadata: MAX_ENTRY_METADATA,
        }
    }
}

/// What an extraction did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub entries: u64,
    pub bytes: u64,
}

/// Why a layer could not be extracted. Names from the layer are shown escaped.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("cannot open the extraction directory {}: {source}", path.display())]
    Root {
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the layer is not a valid tar archive ({})",
        crate::tar_message(source)
    )]
    Tar {
        #[source]
        source: io::Error,
    },
    #[error("entry {path:?} is refused: {source}")]
    BadPath {
        path: String,
        #[source]
        source: PathError,
    },
    #[error("hard link {path:?} is refused: its target {target:?} {source}")]
    BadLinkTarget {
        path: String,
        target: String,
        #[source]
        source: PathError,
    },
    #[error("entry {path:?} is refused: {why}")]
    Refused { path: String, why: &'static str },
    #[error("entry {path:?}: cannot {op}: {source}")]
    Io {
        path: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("the layer has more than {limit} entries")]
    TooManyEntries { limit: u64 },
    #[error("the layer holds more than {limit} bytes of files")]
    TooLarge { limit: u64 },
    #[error("an entry's tar metadata is larger than {limit} bytes")]
    MetadataTooLarge { limit: u64 },
}

impl UnpackError {
    /// Whether a limit stopped the extraction (rather than a bad or unsafe layer).
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            UnpackError::TooManyEntries { .. }
                | UnpackError::TooLarge { .. }
                | UnpackError::MetadataTooLarge { .. }
        )
    }
}

/// A reader that lets through at most `left` more bytes, then fails and says so in
/// `tripped` (so the error is reported as the limit, whatever tar makes of it).
struct Budgeted<R> {
    inner: R,
    left: Rc<Cell<u64>>,
    tripped: Rc<Cell<bool>>,
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.left.get();
        if left == 0 && !buf.is_empty() {
            self.tripped.set(true);
            return Err(io::Error::other("layer limit reached"));
        }
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let got = self.inner.read(&mut buf[..n])?;
        self.left.set(left - got as u64);
        Ok(got)
    }
}

/// Extracts the layer tar `r` into the existing directory `root`. See the module docs.
pub fn unpack(r: impl Read, root: &Path, limits: &Limits) -> Result<Summary, UnpackError> {
    let root = Root::open(root).map_err(|source| UnpackError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    let left = Rc::new(Cell::new(limits.max_metadata));
    let tripped = Rc::new(Cell::new(false));
    let mut ar = tar::Archive::new(Budgeted {
        inner: r,
        left: left.clone(),
        tripped: tripped.clone(),
    });
    let tar_err = |source: io::Error| {
        if tripped.get() {
            UnpackError::MetadataTooLarge {
                limit: limits.max_metadata,
            }
        } else {
            UnpackError::Tar { source }
        }
    };
    let mut sum = Summary::default();
    let mut dirs: Vec<(Components, Timestamps)> = Vec::new();
    let mut entries = ar.entries().map_err(tar_err)?;
    loop {
        left.set(limits.max_metadata);
        let Some(entry) = entries.next() else { break };
        let mut entry = entry.map_err(tar_err)?;
        sum.entries += 1;
        if sum.entries > limits.max_entries {
            return Err(UnpackError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        let size = entry.size();
        sum.bytes = sum.bytes.saturating_add(size);
        if sum.bytes > limits.max_bytes {
            return Err(UnpackError::TooLarge {
                limit: limits.max_bytes,
            });
        }
        // The entry's data may be read, and no more.
        left.set(size);
        if let Some(dir) = apply(&root, &mut entry)? {
            dirs.push(dir);
        }
        // Data an entry should not have (a symlink with a size) is read past here.
        io::copy(&mut entry, &mut io::sink()).map_err(tar_err)?;
    }
    // Directory times last: making entries inside a directory changes its mtime.
    for (comps, ts) in dirs.iter().rev() {
        if let Ok(fd) = root.dir_beneath(comps) {
            let _ = futimens(&fd, ts);
        }
    }
    Ok(sum)
}

/// The metadata of one entry, PAX records over the header's fields.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    times: Timestamps,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

fn meta<R: Read>(entry: &mut tar::Entry<'_, R>, path: &str) -> Result<Meta, UnpackError> {
    let h = entry.header();
    let bad = |e: io::Error| UnpackError::Tar { source: e };
    let mode = h.mode().map_err(bad)? & 0o7777;
    let (mut uid, mut gid, mut mtime) = (
        h.uid().map_err(bad)?,
        h.gid().map_err(bad)?,
        h.mtime().map_err(bad)?,
    );
    let mut xattrs = Vec::new();
    if let Some(pax) = entry.pax_extensions().map_err(bad)? {
        for ext in pax {
            let ext = ext.map_err(bad)?;
            let Ok(key) = ext.key() else { continue };
            let num = || {
                ext.value()
                    .ok()
                    .and_then(|v| v.split('.').next()?.parse::<u64>().ok())
            };
            match key {
                "uid" => uid = num().unwrap_or(uid),
                "gid" => gid = num().unwrap_or(gid),
                "mtime" => mtime = num().unwrap_or(mtime),
                _ => {
                    if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                        // overlayfs's own xattrs (opaque, redirect, metacopy, origin)
                        // come only from whiteout entries, never from a layer's files.
                        if name.starts_with("trusted.overlay.") {
                            log::debug!("layer entry {path}: dropping xattr {name}");
                        } else {
                            xattrs.push((OsString::from(name), ext.value_bytes().to_vec()));
                        }
                    }
                }
            }
        }
    }
    let id = |v: u64, what: &'static str| {
        u32::try_from(v).map_err(|_| UnpackError::Refused {
            path: path.to_string(),
            why: what,
        })
    };
    let t = Timespec {
        tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    Ok(Meta {
        mode,
        uid: id(uid, "its uid does not fit in 32 bits")?,
        gid: id(gid, "its gid does not fit in 32 bits")?,
        times: Timestamps {
            last_access: t,
            last_modification: t,
        },
        xattrs,
    })
}

/// Applies one entry; returns a directory whose times are to be set at the end.
fn apply<R: Read>(
    root: &Root,
    entry: &mut tar::Entry<'_, R>,
) -> Result<Option<(Components, Timestamps)>, UnpackError> {
    let raw = entry.path_bytes().into_owned();
    let path = printable(&String::from_utf8_lossy(&raw));
    let comps = components(&raw).map_err(|source| UnpackError::BadPath {
        path: path.clone(),
        source,
    })?;
    let kind = entry.header().entry_type();
    let io = |op: &'static str| {
        let path = path.clone();
        move |source: io::Error| UnpackError::Io { path, op, source }
    };
    let refuse = |why: &'static str| UnpackError::Refused {
        path: path.clone(),
        why,
    };
    // A directory on the path that cannot be reached or made inside the root.
    let reach = |op: &'static str| {
        let path = path.clone();
        move |source: io::Error| {
            if source.kind() == io::ErrorKind::NotFound {
                UnpackError::Refused {
                    path,
                    why: "a symlink on its path leads out of the layer or to nothing",
                }
            } else {
                UnpackError::Io { path, op, source }
            }
        }
    };
    if matches!(
        kind,
        EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink
    ) {
        return Ok(None);
    }
    let Some((name, parent_comps)) = comps.split_last() else {
        // The root itself ("./"): only its own metadata.
        if kind != EntryType::Directory {
            return Err(refuse("it names the layer's root but is not a directory"));
        }
        let m = meta(entry, &path)?;
        let fd = root.dir_beneath(&[]).map_err(io("open the root"))?;
        set_fd_meta(fd.as_fd(), &m).map_err(io("set attributes of the root"))?;
        return Ok(Some((Vec::new(), m.times)));
    };
    // Whiteouts (OCI image spec, "Whiteouts").
    if let Some(hidden) = name.as_bytes().strip_prefix(b".wh.") {
        let parent = root
            .dir_in_root(parent_comps, true)
            .map_err(reach("make the whiteout's directory"))?;
        if hidden == b".wh..opq" {
            fsetxattr(&parent, "trusted.overlay.opaque", b"y", XattrFlags::empty())
                .map_err(|e| io("mark the directory opaque")(e.into()))?;
        } else if hidden.starts_with(b".wh.") {
            log::debug!("layer entry {path}: ignoring whiteout metadata");
        } else if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(refuse("it is a whiteout of no file"));
        } else {
            let hidden = OsStr::from_bytes(hidden);
            remove_at(parent.as_fd(), hidden).map_err(io("replace the whited-out file"))?;
            mknodat(
                &parent,
                hidden,
                FileType::CharacterDevice,
                Mode::empty(),
                makedev(0, 0),
            )
            .map_err(|e| io("make the whiteout device")(e.into()))?;
        }
        return Ok(None);
    }
    let parent = root
        .dir_in_root(parent_comps, true)
        .map_err(reach("make the entry's directory"))?;
    let parent = parent.as_fd();
    let m = meta(entry, &path)?;
    match kind {
        EntryType::Directory => {
            let fd = replace_with_dir(parent, name, 0o700).map_err(io("make the directory"))?;
            set_fd_meta(fd.as_fd(), &m).map_err(io("set the directory's attributes"))?;
            return Ok(Some((comps.clone(), m.times)));
        }
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
            remove_at(parent, name).map_err(io("replace the existing file"))?;
            let fd = openat(
                parent,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(|e| io("create the file")(e.into()))?;
            let mut file = File::from(fd);
            io::copy(entry, &mut file).map_err(io("write the file"))?;
            set_fd_meta(file.as_fd(), &m).map_err(io("set the file's attributes"))?;
        }
        EntryType::Symlink => {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| refuse("it is a symlink without a target"))?
                .into_owned();
            if target.is_empty() || target.contains(&0) {
                return Err(refuse("its symlink target is empty or holds a NUL byte"));
            }
            remove_at(parent, name).map_err(io("replace the existing file"))?;
            symlinkat(OsStr::from_bytes(&target), parent, name)
                .map_err(|e| io("make the symlink")(e.into()))?;
            set_at_meta(parent, name, &m).map_err(io("set the symlink's attributes"))?;
        }
        EntryType::Link => {
            let target_raw = entry
                .link_name_bytes()
                .ok_or_else(|| refuse("it is a hard link without a target"))?
                .into_owned();
            let target_path = printable(&String::from_utf8_lossy(&target_raw));
            let target = components(&target_raw).map_err(|source| UnpackError::BadLinkTarget {
                path: path.clone(),
                target: target_path.clone(),
                source,
            })?;
            let Some((tname, tparent)) = target.split_last() else {
                return Err(UnpackError::BadLinkTarget {
                    path: path.clone(),
                    target: target_path,
                    source: PathError::Empty,
                });
            };
            // The target is found inside the root too; linkat does not follow a
            // symlink as the last component (it links the symlink itself).
            let missing = || UnpackError::Refused {
                path: path.clone(),
                why: "its hard link target is not in the layer",
            };
            let tdir = root.dir_in_root(tparent, false).map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    missing()
                } else {
                    io("find the hard link's target")(e)
                }
            })?;
            if target == comps {
                return Ok(None);
            }
            remove_at(parent, name).map_err(io("replace the existing file"))?;
            linkat(&tdir, tname, parent, name, AtFlags::empty()).map_err(|e| {
                if e == rustix::io::Errno::NOENT {
                    missing()
                } else {
                    io("make the hard link")(e.into())
                }
            })?;
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            let (ft, dev) = match kind {
                EntryType::Fifo => (FileType::Fifo, makedev(0, 0)),
                _ => {
                    let h = entry.header();
                    let major = h.device_major().ok().flatten().unwrap_or(0);
                    let minor = h.device_minor().ok().flatten().unwrap_or(0);
                    let ft = if kind == EntryType::Char {
                        FileType::CharacterDevice
                    } else {
                        FileType::BlockDevice
                    };
                    (ft, makedev(major, minor))
                }
            };
            remove_at(parent, name).map_err(io("replace the existing file"))?;
            mknodat(parent, name, ft, Mode::empty(), dev)
                .map_err(|e| io("make the device node")(e.into()))?;
            set_at_meta(parent, name, &m).map_err(io("set the node's attributes"))?;
            // The node was just made here by this process, so `name` is no symlink
            // (Linux has no fchmodat that refuses one before 6.6).
            chmodat(parent, name, Mode::from_raw_mode(m.mode), AtFlags::empty())
                .map_err(|e| io("set the node's mode")(e.into()))?;
        }
        other => {
            log::debug!("layer entry {path}: skipping tar entry type {other:?}");
        }
    }
    Ok(None)
}

/// Owner, then mode (chown clears set-id bits), xattrs, times, through an open fd.
fn set_fd_meta(fd: BorrowedFd<'_>, m: &Meta) -> io::Result<()> {
    fchown(fd, Some(Uid::from_raw(m.uid)), Some(Gid::from_raw(m.gid)))?;
    fchmod(fd, Mode::from_raw_mode(m.mode))?;
    for (name, value) in &m.xattrs {
        fsetxattr(fd, name, value, XattrFlags::empty())?;
    }
    futimens(fd, &m.times)?;
    Ok(())
}

/// Owner and times of `name` in `parent`, not following it (symlinks, device nodes;
/// their xattrs are not set: the kernel allows few on them, and only by path).
fn set_at_meta(parent: BorrowedFd<'_>, name: &OsStr, m: &Meta) -> io::Result<()> {
    chownat(
        parent,
        name,
        Some(Uid::from_raw(m.uid)),
        Some(Gid::from_raw(m.gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    utimensat(parent, name, &m.times, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    /// A tar from (name, type, data or link target, mode).
    fn tar(entries: &[(&str, EntryType, &str, u32)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for &(name, kind, data, mode) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_000_000_000);
            match kind {
                EntryType::Symlink | EntryType::Link => {
                    h.set_size(0);
                    b.append_link(&mut h, name, data).unwrap();
                }
                _ => {
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, name, data.as_bytes()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn pax_then_file(records: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(EntryType::XHeader);
        h.set_size(records.len() as u64);
        b.append_data(&mut h, "PaxHeader", records).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(EntryType::Directory);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        b.append_data(&mut h, "d", &b""[..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn whiteouts_become_overlayfs_whiteouts() {
        let t = tempfile::tempdir().unwrap();
        let data = tar(&[
            ("a", EntryType::Directory, "", 0o755),
            ("a/x", EntryType::Regular, "x", 0o644),
            (".wh.gone", EntryType::Regular, "", 0o644),
            ("a/.wh..wh..opq", EntryType::Regular, "", 0o644),
            ("a/.wh..wh.plnk", EntryType::Regular, "", 0o644),
        ]);
        let s = unpack(&data[..], t.path(), &Limits::default()).unwrap();
        assert_eq!(s.entries, 5);
        let gone = fs::symlink_metadata(t.path().join("gone")).unwrap();
        assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
        assert_eq!(
            xattr::get(t.path().join("a"), "trusted.overlay.opaque").unwrap(),
            Some(b"y".to_vec())
        );
        let names: Vec<_> = fs::read_dir(t.path().join("a"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["x"]);
    }

    #[test]
    fn files_links_modes_and_times() {
        let t = tempfile::tempdir().unwrap();
        let data = tar(&[
            ("bin/tool", EntryType::Regular, "#!/bin/sh\n", 0o4755),
            ("bin/again", EntryType::Link, "bin/tool", 0o644),
            ("bin/sh", EntryType::Symlink, "/bin/busybox", 0o777),
            ("bin/tool2", EntryType::Regular, "old", 0o644),
            ("bin/tool2", EntryType::Regular, "new", 0o600),
        ]);
        unpack(&data[..], t.path(), &Limits::default()).unwrap();
        let tool = fs::metadata(t.path().join("bin/tool")).unwrap();
        assert_eq!(tool.mode() & 0o7777, 0o4755);
        assert_eq!(tool.mtime(), 1_000_000_000);
        let again = fs::metadata(t.path().join("bin/again")).unwrap();
        assert_eq!((again.ino(), tool.nlink()), (tool.ino(), 2));
        assert_eq!(
            fs::read_link(t.path().join("bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
        assert_eq!(fs::read(t.path().join("bin/tool2")).unwrap(), b"new");
        // The parent directory was made on the way.
        assert!(t.path().join("bin").is_dir());
    }

    #[test]
    fn limits_stop_extraction_with_their_error() {
        let t = tempfile::tempdir().unwrap();
        let small = Limits {
            max_bytes: 1000,
            max_entries: 3,
            max_metadata: 4096,
        };
        let many: Vec<(String, EntryType, &str, u32)> = (0..5)
            .map(|i| (format!("f{i}"), EntryType::Regular, "x", 0o644))
            .collect();
        let many: Vec<_> = many
            .iter()
            .map(|(n, k, d, m)| (n.as_str(), *k, *d, *m))
            .collect();
        let e = unpack(&tar(&many)[..], t.path(), &small).unwrap_err();
        assert!(matches!(e, UnpackError::TooManyEntries { limit: 3 }), "{e}");
        let big = "y".repeat(1001);
        let e = unpack(
            &tar(&[("big", EntryType::Regular, &big, 0o644)])[..],
            t.path(),
            &small,
        )
        .unwrap_err();
        assert!(matches!(e, UnpackError::TooLarge { limit: 1000 }), "{e}");
        assert!(e.is_limit());
        // A PAX record larger than the metadata limit is not read into memory.
        let mut rec = format!("10010 path={}\n", "p".repeat(9999)).into_bytes();
        rec.truncate(10010);
        let e = unpack(&pax_then_file(&rec)[..], t.path(), &small).unwrap_err();
        assert!(matches!(e, UnpackError::MetadataTooLarge { .. }), "{e}");
    }

    #[test]
    fn overlayfs_xattrs_from_a_layer_are_dropped() {
        let t = tempfile::tempdir().unwrap();
        let rec = b"46 SCHILY.xattr.trusted.overlay.redirect=/etc\n28 SCHILY.xattr.user.keep=1\n";
        unpack(&pax_then_file(rec)[..], t.path(), &Limits::default()).unwrap();
        let d = t.path().join("d");
        assert_eq!(xattr::get(&d, "trusted.overlay.redirect").unwrap(), None);
        assert_eq!(xattr::get(&d, "user.keep").unwrap(), Some(b"1".to_vec()));
    }

    #[test]
    fn junk_is_a_tar_error_without_its_bytes() {
        let t = tempfile::tempdir().unwrap();
        let mut junk = b"\x1b[31mnot a tar\n".to_vec();
        junk.resize(1024, 0xff);
        let e = unpack(&junk[..], t.path(), &Limits::default()).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, UnpackError::Tar { .. }), "{msg}");
        assert!(
            msg.chars().all(|c| !c.is_control() && c != '\u{fffd}'),
            "{msg:?}"
        );
    }

    /// The oracle a fuzz target would use: a canary beside the root stays as it was.
    #[test]
    fn escape_check_oracle_over_unpack() {
        let t = tempfile::tempdir().unwrap();
        let (root, canary) = (t.path().join("root"), t.path().join("canary"));
        fs::create_dir(&root).unwrap();
        super::super::escape_check::make_canary(&canary).unwrap();
        let out = canary.join("dir");
        let out = out.to_str().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_link(&mut h, "evil", out).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, "evil/.wh.victim", &b""[..]).unwrap();
        let data = b.into_inner().unwrap();
        let (r, changes) = super::super::escape_check::check(t.path(), &root, || {
            unpack(&data[..], &root, &Limits::default())
        })
        .unwrap();
        assert!(changes.is_empty(), "{changes:?}");
        assert!(r.is_err());
    }
}
