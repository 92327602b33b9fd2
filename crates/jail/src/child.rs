//! The jail's child: PID 1 of a new PID namespace, in a new mount namespace (and a new
//! network namespace with `Net::New`), still root. It builds the jail and execs the VMM;
//! a failed step writes its one-line message to the jailer and exits 1.
//!
//! Steps, in order:
//! 1. restore the signal mask, set umask 0 (modes below are exact);
//! 2. join the cgroup (first, so all that follows is accounted to it);
//! 3. join the network namespace (`Net::Join`), check that the TAPs exist in it;
//! 4. make every mount private (nothing below reaches the host);
//! 5. mount a tmpfs on DIR (nosuid, noexec) and fill it: directories, device nodes
//!    (mknod, chown to uid:gid where the VMM opens them read-write), files bind-mounted
//!    onto empty placeholders (read-only unless the VMM writes them; nosuid, noexec,
//!    nodev unless a block device), the small files; then make the tmpfs read-only;
//! 6. pivot_root into DIR and detach the old root;
//! 7. a new session (so the terminal is no longer its controlling terminal: no TIOCSTI),
//!    rlimits (RLIMIT_NOFILE, RLIMIT_FSIZE);
//! 8. drop every capability from the bounding set, clear the supplementary groups,
//!    setresgid/setresuid to gid/uid (which empties the permitted and effective sets),
//!    clear the inheritable and ambient sets and check that nothing is left;
//! 9. no_new_privs; parent-death signal SIGKILL (after the uid change, which clears it);
//! 10. check, as uid:gid, that the VMM can open each file as it needs to;
//! 11. mark every fd above 2 close-on-exec, umask 077, and exec the VMM binary from the
//!     fd opened on the host, with an empty environment.

use std::convert::Infallible;
use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use caps::CapSet;
use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, CloneFlags};
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::stat::{mknod, umask, Mode, SFlag};
use nix::unistd::{
    access, chdir, chown, pivot_root, setgroups, setresgid, setresuid, setsid, AccessFlags, Gid,
    Uid,
};

use crate::Plan;

/// A failed step inside the jail, phrased for the user.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StepError {
    #[error("cannot put the jailed VMM in its cgroup: {0}")]
    Cgroup(#[source] minnow_cgroup::Error),
    #[error("cannot join network namespace {path}: {source}; give a network namespace file such as /var/run/netns/NAME")]
    SetNs {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("TAP device {0} does not exist in the jail's network namespace, and the jailed VMM cannot create it; create it there first (minnow net setup {0}, run in that namespace) or give --jail-netns the namespace that has it")]
    TapMissing(String),
    #[error("jail set-up failed: cannot {what}: {source}; {fix}")]
    Sys {
        what: String,
        #[source]
        source: Errno,
        fix: &'static str,
    },
    #[error("the jail's user {uid}:{gid} cannot {mode} {what} {path} (owner {owner}, mode {perm:04o}); chown {uid}:{gid} {path}, or give {uid}:{gid} {mode} access")]
    Access {
        uid: u32,
        gid: u32,
        mode: &'static str,
        what: String,
        path: PathBuf,
        owner: String,
        perm: u32,
    },
    #[error(
        "cannot execute the VMM in the jail: {0}; check that the minnow binary is an executable"
    )]
    Exec(#[source] Errno),
}

const FIX_NS: &str = "check that this kernel allows mount namespaces and tmpfs";

fn sys(what: impl Into<String>, fix: &'static str) -> impl FnOnce(Errno) -> StepError {
    let what = what.into();
    move |source| StepError::Sys { what, source, fix }
}

/// Runs the steps; on failure reports to the jailer through `report` and exits.
pub(crate) fn main(plan: &Plan, mask: &SigSet, report: OwnedFd) -> ! {
    let err = match steps(plan, mask) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = write!(fs::File::from(report), "{err}");
    // SAFETY: _exit has no preconditions; the child must not run the jailer's exit code.
    unsafe { libc::_exit(1) }
}

fn steps(plan: &Plan, mask: &SigSet) -> Result<Infallible, StepError> {
    let jail = plan.jail;
    // 1.
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(mask), None);
    umask(Mode::empty());
    // 2.
    plan.cgroup.join_self().map_err(StepError::Cgroup)?;
    // 3.
    if let (Some(fd), crate::Net::Join(path)) = (&plan.checked.netns, &jail.net) {
        setns(fd, CloneFlags::CLONE_NEWNET).map_err(|source| StepError::SetNs {
            path: path.clone(),
            source,
        })?;
    }
    for tap in &jail.taps {
        if nix::net::if_::if_nametoindex(tap.as_str()).is_err() {
            return Err(StepError::TapMissing(tap.clone()));
        }
    }
    // 4.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(sys("make the mounts private", FIX_NS))?;
    // 5.
    let root = &jail.dir;
    build_root(plan, root)?;
    // 6.
    chdir(root).map_err(sys(format!("enter {}", root.display()), FIX_NS))?;
    pivot_root(".", ".").map_err(sys(format!("pivot_root into {}", root.display()), FIX_NS))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(sys("detach the host's root", FIX_NS))?;
    chdir("/").map_err(sys("enter the jail's root", FIX_NS))?;
    // 7.
    setsid().map_err(sys("start a new session", FIX_NS))?;
    let nofile = jail.nofile;
    setrlimit(Resource::RLIMIT_NOFILE, nofile, nofile).map_err(sys(
        format!("set RLIMIT_NOFILE to {nofile}"),
        "give --jail-nofile a value this host allows (fs.nr_open)",
    ))?;
    if let Some(fsize) = jail.fsize {
        setrlimit(Resource::RLIMIT_FSIZE, fsize, fsize).map_err(sys(
            format!("set RLIMIT_FSIZE to {fsize}"),
            "give --jail-fsize a smaller value",
        ))?;
    }
    // 8.
    drop_privileges(jail.uid, jail.gid)?;
    // 9.
    nix::sys::prctl::set_no_new_privs().map_err(sys("set no_new_privs", FIX_NS))?;
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(sys("set the parent-death signal", FIX_NS))?;
    // 10.
    for f in &jail.files {
        check_access(jail, f)?;
    }
    // 11.
    // SAFETY: close_range only changes fd flags; no pointers are involved.
    let r = unsafe { libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int) };
    if r != 0 {
        return Err(sys("mark inherited fds close-on-exec", FIX_NS)(
            Errno::last(),
        ));
    }
    umask(Mode::from_bits_truncate(0o077));
    let argv = jail
        .argv
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| StepError::Exec(Errno::EINVAL))?;
    let env: [CString; 0] = [];
    let e = match nix::unistd::execveat(&plan.checked.exe, c"", &argv, &env, AtFlags::AT_EMPTY_PATH)
    {
        Ok(never) => match never {},
        Err(e) => e,
    };
    Err(StepError::Exec(e))
}

/// Step 5: the tmpfs root and everything in it.
fn build_root(plan: &Plan, root: &Path) -> Result<(), StepError> {
    let jail = plan.jail;
    let fix = "check that DIR is a local directory";
    mount(
        Some("tmpfs"),
        root,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=0755,size=64k"),
    )
    .map_err(sys(format!("mount a tmpfs on {}", root.display()), fix))?;
    let inside = |name: &str| root.join(name.trim_start_matches('/'));
    let mkdirs = |path: &Path| -> Result<(), StepError> {
        match path.parent() {
            Some(dir) if dir != root => fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(|e| io_err(format!("create {}", dir.display()), e)),
            _ => Ok(()),
        }
    };
    for (dev, rdev) in jail.devices.iter().zip(&plan.checked.rdevs) {
        let path = inside(&dev.name);
        mkdirs(&path)?;
        mknod(
            &path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(dev.mode),
            *rdev,
        )
        .map_err(sys(format!("create device node {}", dev.name), fix))?;
        if dev.owned {
            chown(
                &path,
                Some(Uid::from_raw(jail.uid)),
                Some(Gid::from_raw(jail.gid)),
            )
            .map_err(sys(format!("chown {}", dev.name), fix))?;
        }
    }
    for (f, block) in jail.files.iter().zip(&plan.checked.block) {
        let path = inside(&f.name);
        mkdirs(&path)?;
        fs::File::create(&path).map_err(|e| io_err(format!("create {}", f.name), e))?;
        let bind_fix = "check that the file is on a filesystem this kernel can bind-mount";
        mount(
            Some(&f.host),
            &path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys(
            format!("bind-mount {} onto {}", f.host.display(), f.name),
            bind_fix,
        ))?;
        let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID;
        if !f.exec {
            flags |= MsFlags::MS_NOEXEC;
        }
        if !block {
            flags |= MsFlags::MS_NODEV;
        }
        if !f.writable {
            flags |= MsFlags::MS_RDONLY;
        }
        mount(None::<&str>, &path, None::<&str>, flags, None::<&str>)
            .map_err(sys(format!("restrict the bind mount {}", f.name), bind_fix))?;
    }
    for (name, data) in &jail.contents {
        let path = inside(name);
        mkdirs(&path)?;
        fs::write(&path, data)
            .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(0o444)))
            .map_err(|e| io_err(format!("write {name}"), e))?;
    }
    let ro = MsFlags::MS_REMOUNT
        | MsFlags::MS_BIND
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NOEXEC;
    mount(None::<&str>, root, None::<&str>, ro, None::<&str>)
        .map_err(sys("make the jail's root read-only", fix))
}

fn io_err(what: String, e: std::io::Error) -> StepError {
    StepError::Sys {
        what,
        source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        fix: "check that DIR is a local directory",
    }
}

/// Step 8: uid:gid, no groups, no capabilities.
fn drop_privileges(uid: u32, gid: u32) -> Result<(), StepError> {
    let fix = "check that this kernel allows dropping capabilities";
    let caps_err = |what: &'static str| {
        move |e: caps::errors::CapsError| StepError::Sys {
            what: format!("{what} ({e})"),
            source: Errno::EPERM,
            fix,
        }
    };
    caps::clear(None, CapSet::Bounding).map_err(caps_err("drop the bounding capabilities"))?;
    setgroups(&[]).map_err(sys("clear the supplementary groups", fix))?;
    let g = Gid::from_raw(gid);
    setresgid(g, g, g).map_err(sys(format!("switch to gid {gid}"), fix))?;
    let u = Uid::from_raw(uid);
    setresuid(u, u, u).map_err(sys(format!("switch to uid {uid}"), fix))?;
    caps::clear(None, CapSet::Ambient).map_err(caps_err("clear the ambient capabilities"))?;
    caps::clear(None, CapSet::Inheritable)
        .map_err(caps_err("clear the inheritable capabilities"))?;
    for set in [CapSet::Effective, CapSet::Permitted] {
        let left = caps::read(None, set).map_err(caps_err("read the capabilities"))?;
        if !left.is_empty() {
            return Err(StepError::Sys {
                what: format!("drop every capability ({} left in {set:?})", left.len()),
                source: Errno::EPERM,
                fix,
            });
        }
    }
    Ok(())
}

/// Step 10: can uid:gid open `f` as the VMM will (read, and write unless read-only)?
fn check_access(jail: &crate::Jail, f: &crate::JailFile) -> Result<(), StepError> {
    let (flags, mode) = if f.writable {
        (AccessFlags::R_OK | AccessFlags::W_OK, "write")
    } else {
        (AccessFlags::R_OK, "read")
    };
    if access(f.name.as_str(), flags).is_ok() {
        return Ok(());
    }
    let meta = fs::metadata(&f.name).ok();
    Err(StepError::Access {
        uid: jail.uid,
        gid: jail.gid,
        mode,
        what: f.what.clone(),
        path: f.host.clone(),
        owner: meta
            .as_ref()
            .map_or("?".into(), |m| format!("{}:{}", m.uid(), m.gid())),
        perm: meta.map_or(0, |m| m.mode() & 0o7777),
    })
}
