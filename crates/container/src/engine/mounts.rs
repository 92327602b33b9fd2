//! The spec's `mounts`, done in the container's init inside the new mount namespace and
//! before pivot_root: fstab-style options turned into mount flags, propagation and data;
//! destinations resolved inside the root (a symlink in the image cannot point a mount
//! at the host), bind mounts remounted for their flags as runc does.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Mount;

use crate::error::{step, Failure};
use crate::paths;
use crate::Error;

/// One mount of the spec, parsed (by the runtime, before the clone).
#[derive(Clone, Debug, PartialEq)]
pub struct MountPlan {
    pub destination: PathBuf,
    pub typ: String,
    pub source: Option<PathBuf>,
    /// MS_* flags (MS_BIND, MS_REC for bind mounts).
    pub flags: MsFlags,
    /// MS_SHARED, MS_PRIVATE, ... (each with MS_REC when the option starts with "r").
    pub propagation: Vec<MsFlags>,
    /// Options the file system takes (mode=755, size=..., newinstance, ...).
    pub data: String,
    /// runc's `tmpcopyup` (Podman sends it): a tmpfs gets a copy of what was beneath it.
    pub copy_up: bool,
    /// runc's `rro`: read-only (with the flags' nosuid, nodev, noexec) all the way down,
    /// every mount under it too.
    pub recursive_ro: bool,
}

/// A propagation option's flags, or None.
pub fn propagation(opt: &str) -> Option<MsFlags> {
    let (rec, name) = match opt.strip_prefix('r') {
        Some(n) if ["private", "shared", "slave", "unbindable"].contains(&n) => {
            (MsFlags::MS_REC, n)
        }
        _ => (MsFlags::empty(), opt),
    };
    let f = match name {
        "private" => MsFlags::MS_PRIVATE,
        "shared" => MsFlags::MS_SHARED,
        "slave" => MsFlags::MS_SLAVE,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        _ => return None,
    };
    Some(f | rec)
}

/// A flag option: (flag, set?) — "ro" sets MS_RDONLY, "rw" clears it.
fn flag(opt: &str) -> Option<(MsFlags, bool)> {
    Some(match opt {
        "ro" => (MsFlags::MS_RDONLY, true),
        "rw" => (MsFlags::MS_RDONLY, false),
        "nosuid" => (MsFlags::MS_NOSUID, true),
        "suid" => (MsFlags::MS_NOSUID, false),
        "nodev" => (MsFlags::MS_NODEV, true),
        "dev" => (MsFlags::MS_NODEV, false),
        "noexec" => (MsFlags::MS_NOEXEC, true),
        "exec" => (MsFlags::MS_NOEXEC, false),
        "sync" => (MsFlags::MS_SYNCHRONOUS, true),
        "async" => (MsFlags::MS_SYNCHRONOUS, false),
        "dirsync" => (MsFlags::MS_DIRSYNC, true),
        "remount" => (MsFlags::MS_REMOUNT, true),
        "mand" => (MsFlags::MS_MANDLOCK, true),
        "nomand" => (MsFlags::MS_MANDLOCK, false),
        "atime" => (MsFlags::MS_NOATIME, false),
        "noatime" => (MsFlags::MS_NOATIME, true),
        "diratime" => (MsFlags::MS_NODIRATIME, false),
        "nodiratime" => (MsFlags::MS_NODIRATIME, true),
        "relatime" => (MsFlags::MS_RELATIME, true),
        "norelatime" => (MsFlags::MS_RELATIME, false),
        "strictatime" => (MsFlags::MS_STRICTATIME, true),
        "nostrictatime" => (MsFlags::MS_STRICTATIME, false),
        "bind" => (MsFlags::MS_BIND, true),
        "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, true),
        _ => return None,
    })
}

impl MountPlan {
    /// Parses one spec mount; a relative bind source is relative to the bundle.
    pub fn from_oci(m: &Mount, bundle: &Path) -> Result<MountPlan, Error> {
        let dest = m.destination();
        if !dest.is_absolute() {
            return Err(Error::MountNotAbsolute(dest.clone()));
        }
        if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
            return Err(Error::MountIdMappings(dest.clone()));
        }
        let mut flags = MsFlags::empty();
        let mut prop = Vec::new();
        let mut data = Vec::new();
        let mut copy_up = false;
        let mut recursive_ro = false;
        for o in m.options().iter().flatten() {
            if o == "rro" {
                recursive_ro = true;
                flags |= MsFlags::MS_RDONLY;
            } else if o == "tmpcopyup" {
                copy_up = true;
            } else if o == "notmpcopyup" {
                copy_up = false;
            } else if let Some((f, on)) = flag(o) {
                if on {
                    flags |= f
                } else {
                    flags &= !f
                }
            } else if let Some(p) = propagation(o) {
                prop.push(p);
            } else if matches!(o.as_str(), "idmap" | "ridmap") {
                return Err(Error::MountIdmapOption {
                    destination: dest.clone(),
                    option: o.clone(),
                });
            } else {
                data.push(o.clone());
            }
        }
        let typ = m.typ().clone().unwrap_or_default();
        if typ == "bind" {
            flags |= MsFlags::MS_BIND;
        }
        let source = m.source().clone().map(|s| {
            if flags.contains(MsFlags::MS_BIND) && s.is_relative() {
                bundle.join(s)
            } else {
                s
            }
        });
        if flags.contains(MsFlags::MS_BIND) && source.is_none() {
            return Err(Error::BindWithoutSource(dest.clone()));
        }
        Ok(MountPlan {
            destination: dest.clone(),
            typ,
            source,
            flags,
            propagation: prop,
            data: data.join(","),
            copy_up,
            recursive_ro,
        })
    }

    fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }
}

fn parts(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// `root` joined with `path`, following symlinks as if `root` were `/` (as runc's
/// securejoin): the result is always under `root`.
pub fn secure_join(root: &Path, path: &Path) -> PathBuf {
    let mut todo: VecDeque<OsString> = parts(path).into();
    let mut cur = PathBuf::new();
    let mut links = 0;
    while let Some(p) = todo.pop_front() {
        if p == ".." {
            cur.pop();
            continue;
        }
        let next = cur.join(&p);
        match fs::read_link(root.join(&next)) {
            Ok(target) if links < 255 => {
                links += 1;
                if target.is_absolute() {
                    cur = PathBuf::new();
                }
                for t in parts(&target).into_iter().rev() {
                    todo.push_front(t);
                }
            }
            _ => cur = next,
        }
    }
    root.join(cur)
}

fn fail<E: std::error::Error + Send + Sync + 'static>(what: String) -> impl FnOnce(E) -> Failure {
    step(what)
}

/// Creates the mount point: a file when a bind mount's source is one, else a directory.
fn mount_point(target: &Path, file: bool) -> Result<(), Failure> {
    if file {
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)
                .map_err(fail(format!("cannot create {}", parent.display())))?;
        }
        if !target.exists() {
            fs::File::create(target).map_err(fail(format!(
                "cannot create mount point {}",
                target.display()
            )))?;
        }
        return Ok(());
    }
    fs::create_dir_all(target).map_err(fail(format!(
        "cannot create mount point {}",
        target.display()
    )))
}

/// Binds `src` (recursively with `rec`) on `target`, then remounts it for `flags`.
fn bind(src: &Path, target: &Path, flags: MsFlags) -> Result<(), Failure> {
    let what = format!("cannot bind {} on {}", src.display(), target.display());
    let rec = flags & MsFlags::MS_REC;
    mount(
        Some(src),
        target,
        None::<&str>,
        MsFlags::MS_BIND | rec,
        None::<&str>,
    )
    .map_err(fail(what.clone()))?;
    let extra = flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    if !extra.is_empty() {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra,
            None::<&str>,
        )
        .map_err(fail(format!("{what} (remount for its options)")))?;
    }
    Ok(())
}

/// Does one mount under `root` (the container's root, before pivot_root).
pub fn apply(m: &MountPlan, root: &Path, own: &[(String, String)]) -> Result<(), Failure> {
    let target = secure_join(root, &m.destination);
    if m.is_bind() {
        let src = m.source.clone().unwrap_or_default();
        let is_file = fs::metadata(&src)
            .map_err(fail(format!("mount source {}", src.display())))?
            .is_file();
        mount_point(&target, is_file)?;
        bind(&src, &target, m.flags)?;
    } else {
        mount_point(&target, false)?;
        let data = (!m.data.is_empty()).then_some(m.data.as_str());
        let source = m
            .source
            .clone()
            .unwrap_or_else(|| PathBuf::from(m.typ.as_str()));
        match m.typ.as_str() {
            "cgroup" | "cgroup2" => cgroup(&target, m.flags, own)?,
            "tmpfs" if m.copy_up => {
                // Mounted aside, filled with what the image has there, moved in place.
                let aside = root.join(format!(".minnow-copyup-{}", std::process::id()));
                fs::create_dir_all(&aside)
                    .map_err(fail(format!("cannot create {}", aside.display())))?;
                mount(Some("tmpfs"), &aside, Some("tmpfs"), m.flags, data).map_err(fail(
                    format!("cannot mount tmpfs on {}", m.destination.display()),
                ))?;
                copy_tree(&target, &aside)
                    .map_err(fail(format!("tmpcopyup of {}", m.destination.display())))?;
                mount(
                    Some(&aside),
                    &target,
                    None::<&str>,
                    MsFlags::MS_MOVE,
                    None::<&str>,
                )
                .map_err(fail(format!(
                    "cannot move the tmpfs to {}",
                    m.destination.display()
                )))?;
                let _ = fs::remove_dir(&aside);
            }
            typ => {
                let r = mount(Some(&source), &target, Some(typ), m.flags, data);
                match (r, typ) {
                    // Without a new net (sysfs) or IPC (mqueue) namespace the kernel
                    // refuses a new instance: bind the host's, as runc does.
                    (Err(Errno::EPERM), "sysfs" | "mqueue") => {
                        let host = if typ == "sysfs" {
                            "/sys"
                        } else {
                            "/dev/mqueue"
                        };
                        bind(Path::new(host), &target, m.flags | MsFlags::MS_REC)?;
                    }
                    (r, _) => r.map_err(fail(format!(
                        "cannot mount {typ} on {}",
                        m.destination.display()
                    )))?,
                }
            }
        }
    }
    if m.recursive_ro {
        let mut attr = libc::MOUNT_ATTR_RDONLY;
        for (f, a) in [
            (MsFlags::MS_NOSUID, libc::MOUNT_ATTR_NOSUID),
            (MsFlags::MS_NODEV, libc::MOUNT_ATTR_NODEV),
            (MsFlags::MS_NOEXEC, libc::MOUNT_ATTR_NOEXEC),
        ] {
            if m.flags.contains(f) {
                attr |= a;
            }
        }
        paths::set_attr(&target, attr, true).map_err(fail(format!(
            "cannot make {} read-only (rro)",
            m.destination.display()
        )))?;
    }
    for p in &m.propagation {
        mount(None::<&str>, &target, None::<&str>, *p, None::<&str>).map_err(fail(format!(
            "cannot set the propagation of {}",
            m.destination.display()
        )))?;
    }
    Ok(())
}

/// Copies `from`'s entries (files, directories, symlinks; modes and owners) into `to`.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for e in fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let meta = fs::symlink_metadata(&src)?;
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else if meta.is_dir() {
            fs::create_dir(&dst)?;
            copy_tree(&src, &dst)?;
        } else if meta.is_file() {
            fs::copy(&src, &dst)?;
        } else {
            continue;
        }
        if !meta.file_type().is_symlink() {
            fs::set_permissions(&dst, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        }
        std::os::unix::fs::lchown(&dst, Some(meta.uid()), Some(meta.gid()))?;
    }
    let meta = fs::metadata(from)?;
    fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    std::os::unix::fs::chown(to, Some(meta.uid()), Some(meta.gid()))
}

/// This process's cgroups as /proc/self/cgroup lists them: (controllers, path). Read by
/// the init after it joined its cgroup and before a new cgroup namespace hides the paths.
pub fn own_cgroups() -> Vec<(String, String)> {
    fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, ctrls, path) = (p.next()?, p.next()?, p.next()?);
            Some((ctrls.to_string(), path.to_string()))
        })
        .collect()
}

/// The host's cgroup mounts under /sys/fs/cgroup: (mount point, controllers; "" for cgroup2).
fn host_cgroup_mounts() -> Vec<(PathBuf, String)> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            let point = PathBuf::from(*l.get(4)?);
            let ctrls = match *r.first()? {
                "cgroup2" => String::new(),
                "cgroup" => r
                    .get(2)?
                    .split(',')
                    .filter(|o| {
                        !matches!(*o, "rw" | "ro" | "nosuid" | "nodev" | "noexec" | "relatime")
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                _ => return None,
            };
            point
                .starts_with("/sys/fs/cgroup")
                .then_some((point, ctrls))
        })
        .collect()
}

fn cgroup_attr(flags: MsFlags) -> u64 {
    let mut attr = 0;
    for (f, a) in [
        (MsFlags::MS_RDONLY, libc::MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, libc::MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, libc::MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, libc::MOUNT_ATTR_NOEXEC),
    ] {
        if flags.contains(f) {
            attr |= a;
        }
    }
    attr
}

/// A `cgroup` mount: cgroup2 where the host is v2 only; else, as runc does on v1, a
/// tmpfs with each host hierarchy's directory of this container bound in it (the
/// container sees its own cgroups at /sys/fs/cgroup/<hierarchy>), locked with the
/// mount's flags.
fn cgroup(target: &Path, flags: MsFlags, own: &[(String, String)]) -> Result<(), Failure> {
    let data_flags = flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
    let hosts = host_cgroup_mounts();
    if hosts.iter().all(|(_, c)| c.is_empty()) {
        return mount(
            Some("cgroup2"),
            target,
            Some("cgroup2"),
            data_flags,
            None::<&str>,
        )
        .map_err(fail("cannot mount cgroup2".into()));
    }
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("tmpfs"), target, Some("tmpfs"), base, Some("mode=755"))
        .map_err(fail("cannot mount a tmpfs on /sys/fs/cgroup".into()))?;
    for (point, ctrls) in &hosts {
        let Ok(rel) = point.strip_prefix("/sys/fs/cgroup") else {
            continue;
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        let path = own
            .iter()
            .find(|(c, _)| *c == *ctrls)
            .map_or("/", |(_, p)| p.as_str());
        let src = point.join(path.trim_start_matches('/'));
        let dst = target.join(rel);
        fs::create_dir_all(&dst).map_err(fail(format!("cannot create {}", dst.display())))?;
        mount(
            Some(&src),
            &dst,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(fail(format!("cannot bind {}", src.display())))?;
        let attr = cgroup_attr(flags | base);
        paths::set_attr(&dst, attr, true)
            .map_err(fail(format!("cannot lock {}", dst.display())))?;
    }
    let attr = cgroup_attr(flags);
    if attr != 0 {
        paths::set_attr(target, attr, false).map_err(fail("cannot lock /sys/fs/cgroup".into()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::MountBuilder;

    fn m(typ: &str, src: &str, opts: &[&str]) -> MountPlan {
        let mount = MountBuilder::default()
            .destination("/x")
            .typ(typ)
            .source(src)
            .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .build()
            .unwrap();
        MountPlan::from_oci(&mount, Path::new("/bundle")).unwrap()
    }

    #[test]
    fn options_become_flags_and_data() {
        let t = m(
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        );
        assert_eq!(t.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(t.data, "mode=755,size=65536k");
        let b = m("none", "data", &["rbind", "ro", "rw", "nodev", "rprivate"]);
        assert_eq!(
            b.flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_NODEV
        );
        assert_eq!(b.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        assert_eq!(b.source, Some(PathBuf::from("/bundle/data")));
        let up = m("tmpfs", "tmpfs", &["tmpcopyup", "mode=755"]);
        assert!(up.copy_up && up.data == "mode=755", "{up:?}");
        let typed = m("bind", "/abs", &["ro"]);
        assert!(typed.flags.contains(MsFlags::MS_BIND | MsFlags::MS_RDONLY));
        assert_eq!(typed.source, Some(PathBuf::from("/abs")));
        let rro = m("bind", "/sys", &["rbind", "rro", "nosuid"]);
        assert!(rro.recursive_ro && rro.flags.contains(MsFlags::MS_RDONLY));
        assert!(!m("sysfs", "sysfs", &["ro"]).recursive_ro);
    }

    #[test]
    fn joins_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("a")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("a/link")).unwrap();
        std::os::unix::fs::symlink("../../../..", root.join("up")).unwrap();
        assert_eq!(
            secure_join(root, Path::new("/a/link/x")),
            root.join("etc/x")
        );
        assert_eq!(secure_join(root, Path::new("/up/etc")), root.join("etc"));
        assert_eq!(secure_join(root, Path::new("/../../b")), root.join("b"));
    }
}
