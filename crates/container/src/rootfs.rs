//! The container side of start-up, run in the forked child (PID 1 of the new PID
//! namespace): new mount/UTS/IPC/net namespaces, the overlay root, /proc, /dev, /sys,
//! pivot_root, hostname, loopback, then execve of the workload.

use std::convert::Infallible;
use std::ffi::CString;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::unistd::{chdir, execve, pivot_root, sethostname};

use crate::error::step as fail;
pub use crate::error::Failure;
use crate::paths;
use crate::security::Security;
use crate::Error;

/// The overlayfs mount options for `lowers` (bottom layer first), `upper` and `work`.
/// overlayfs lists lower dirs top first, separated by ':'; paths with ':' or ',' would be
/// misparsed, and the whole string must fit in one page.
pub fn overlay_options(lowers: &[PathBuf], upper: &Path, work: &Path) -> Result<String, Error> {
    if lowers.is_empty() {
        return Err(Error::NoLayers);
    }
    let mut check = Vec::new();
    for p in lowers
        .iter()
        .rev()
        .chain([&upper.to_path_buf(), &work.to_path_buf()])
    {
        let s = p.to_str().ok_or_else(|| Error::NotUtf8(p.clone()))?;
        if s.contains([':', ',', '\n']) {
            return Err(Error::OverlayPath(s.to_string()));
        }
        check.push(s.to_string());
    }
    let (work, upper) = (
        check.pop().unwrap_or_default(),
        check.pop().unwrap_or_default(),
    );
    let opts = format!(
        "lowerdir={},upperdir={upper},workdir={work}",
        check.join(":")
    );
    if opts.len() >= 4096 {
        return Err(Error::OverlayTooLong {
            len: opts.len(),
            layers: lowers.len(),
        });
    }
    Ok(opts)
}

/// What the child needs to set itself up; built by the parent before fork.
pub struct ChildPlan {
    pub rootfs: PathBuf,
    pub overlay_options: String,
    pub hostname: String,
    pub new_net: bool,
    /// The network namespace was made by clone (for the veth pair); do not unshare one.
    pub veth: bool,
    /// Bind the host's /sys rather than mount a new sysfs.
    pub bind_sys: bool,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub workdir: String,
    /// Capabilities, seccomp, user, masked and read-only paths.
    pub security: Security,
}

fn mnt(
    src: &str,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), Failure> {
    fs::create_dir_all(target).map_err(fail(format!(
        "cannot create mount point {}",
        target.display()
    )))?;
    mount(Some(src), target, Some(fstype), flags, data).map_err(fail(format!(
        "cannot mount {fstype} on {}",
        target.display()
    )))
}

/// Sets up the container's namespaces and root (in the cloned child, before `exec`).
pub fn setup(plan: &ChildPlan) -> Result<(), Failure> {
    let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if plan.new_net && !plan.veth {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    unshare(flags).map_err(fail("cannot create namespaces"))?;
    // Nothing mounted from here on may propagate back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(fail("cannot make / private"))?;
    let root = &plan.rootfs;
    // Not privileged: a device node works only where /dev's standard nodes are (setup_dev).
    let root_flags = if plan.security.privileged {
        MsFlags::empty()
    } else {
        MsFlags::MS_NODEV
    };
    mount(
        Some("overlay"),
        root,
        Some("overlay"),
        root_flags,
        Some(plan.overlay_options.as_str()),
    )
    .map_err(fail(format!(
        "cannot mount overlay on {} ({})",
        root.display(),
        plan.overlay_options
    )))?;
    let nosuid_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mnt(
        "proc",
        &root.join("proc"),
        "proc",
        nosuid_nodev | MsFlags::MS_NOEXEC,
        None,
    )?;
    let sys = root.join("sys");
    let fresh = !plan.bind_sys
        && mnt(
            "sysfs",
            &sys,
            "sysfs",
            nosuid_nodev | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY,
            None,
        )
        .is_ok();
    if !fresh {
        // sysfs cannot be mounted in a shared net namespace everywhere; bind the host's,
        // with the mounts under it (cgroups, debugfs, ...), made read-only below.
        fs::create_dir_all(&sys)
            .map_err(fail(format!("cannot create mount point {}", sys.display())))?;
        mount(
            Some("/sys"),
            &sys,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(fail("cannot bind /sys"))?;
    }
    // Read-only all the way down: every mount under /sys, not only the top one.
    let locked = libc::MOUNT_ATTR_RDONLY
        | libc::MOUNT_ATTR_NOSUID
        | libc::MOUNT_ATTR_NODEV
        | libc::MOUNT_ATTR_NOEXEC;
    paths::set_attr(&sys, locked, true).map_err(fail("cannot make /sys read-only"))?;
    setup_dev(&root.join("dev"), !plan.security.privileged)?;
    sethostname(&plan.hostname).map_err(fail("cannot set hostname"))?;
    if plan.new_net {
        loopback_up().map_err(fail("cannot bring up lo"))?;
    }
    chdir(root).map_err(fail(format!("cannot enter {}", root.display())))?;
    pivot_root(".", ".").map_err(fail("pivot_root failed"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(fail("cannot detach the old root"))?;
    chdir("/").map_err(fail("cannot chdir to /"))?;
    let _ = fs::create_dir_all(&plan.workdir);
    paths::apply(&plan.security)?;
    chdir(plan.workdir.as_str()).map_err(fail(format!(
        "cannot chdir to working directory {}",
        plan.workdir
    )))?;
    Ok(())
}

/// /dev: a tmpfs with the standard nodes, symlinks, /dev/pts and /dev/shm. With `nodev`
/// (not privileged) each node is bound onto itself and the tmpfs then made nodev, so the
/// standard nodes work but a node made later with mknod (CAP_MKNOD is one of Docker's)
/// cannot be opened (EACCES; under Docker its devices cgroup refuses it with EPERM). The
/// overlay root is nodev too.
fn setup_dev(dev: &Path, nodev: bool) -> Result<(), Failure> {
    mnt(
        "tmpfs",
        dev,
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let p = dev.join(name);
        mknod(
            &p,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        )
        .map_err(fail(format!("cannot create {}", p.display())))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o666))
            .map_err(fail(format!("cannot chmod {}", p.display())))?;
        if nodev {
            let flags = MsFlags::MS_BIND;
            mount(Some(&p), &p, None::<&str>, flags, None::<&str>)
                .map_err(fail(format!("cannot bind {}", p.display())))?;
        }
    }
    if nodev {
        paths::set_attr(dev, libc::MOUNT_ATTR_NODEV, false)
            .map_err(fail("cannot make /dev nodev"))?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(link))
            .map_err(fail(format!("cannot create /dev/{link}")))?;
    }
    mnt(
        "devpts",
        &dev.join("pts"),
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    let shm = dev.join("shm");
    mnt(
        "shm",
        &shm,
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777,size=65536k"),
    )?;
    Ok(())
}

/// `ip link set lo up` in the new network namespace.
fn loopback_up() -> std::io::Result<()> {
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain old data for which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads one ifreq through the pointer, which is valid for the
    // call; the socket fd is open. nix has no wrapper for it.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Finds `cmd` on the container's PATH (not minnow's, which execvp would use).
pub fn find_program(cmd: &str, env: &[String], exists: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    if cmd.contains('/') {
        return Some(PathBuf::from(cmd));
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/bin:/usr/bin:/bin");
    path.split(':')
        .map(|d| Path::new(d).join(cmd))
        .find(|p| exists(p))
}

/// Execs the workload (after `setup`); returns only on failure.
pub fn exec(plan: &ChildPlan) -> Result<Infallible, Failure> {
    let cmd = &plan.argv[0];
    let is_exec = |p: &Path| {
        fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    let program = find_program(cmd, &plan.env, is_exec)
        .ok_or_else(|| (127, Error::CommandNotFound(cmd.clone())))?;
    let cstr = |s: &str| CString::new(s).map_err(|_| (1, Error::ArgumentNul(s.to_string())));
    let argv = plan
        .argv
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<Vec<_>, _>>()?;
    let env = plan
        .env
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<Vec<_>, _>>()?;
    let path = cstr(program.to_str().unwrap_or(cmd))?;
    let err = match execve(&path, &argv, &env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    let code = if err == nix::errno::Errno::ENOENT {
        127
    } else {
        126
    };
    Err((
        code,
        Error::ExecveCommand {
            command: cmd.clone(),
            source: err,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_option_string() {
        let lowers = vec![
            PathBuf::from("/s/layers/a/rootfs"),
            PathBuf::from("/s/layers/b/rootfs"),
        ];
        let o =
            overlay_options(&lowers, Path::new("/s/c/1/upper"), Path::new("/s/c/1/work")).unwrap();
        // Top layer first.
        assert_eq!(o, "lowerdir=/s/layers/b/rootfs:/s/layers/a/rootfs,upperdir=/s/c/1/upper,workdir=/s/c/1/work");
        assert!(overlay_options(&[], Path::new("/u"), Path::new("/w")).is_err());
        let e = overlay_options(&[PathBuf::from("/a:b")], Path::new("/u"), Path::new("/w"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("':'"), "{e}");
        assert!(
            overlay_options(&[PathBuf::from("/a")], Path::new("/u,x"), Path::new("/w")).is_err()
        );
        let many: Vec<PathBuf> = (0..200)
            .map(|i| PathBuf::from(format!("/store/layers/{i:064}/rootfs")))
            .collect();
        assert!(overlay_options(&many, Path::new("/u"), Path::new("/w"))
            .unwrap_err()
            .to_string()
            .contains("4095"));
    }

    #[test]
    fn program_lookup_uses_container_path() {
        let env = vec!["PATH=/sbin:/bin".to_string()];
        let found = find_program("ls", &env, |p| p == Path::new("/bin/ls"));
        assert_eq!(found, Some(PathBuf::from("/bin/ls")));
        assert_eq!(
            find_program("./x", &env, |_| false),
            Some(PathBuf::from("./x"))
        );
        assert_eq!(find_program("nope", &env, |_| false), None);
    }
}
