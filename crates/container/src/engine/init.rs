//! The container's init, in the cloned child (PID 1 of its PID namespace when it has a
//! new one): joins the cgroup, joins or creates the namespaces, mounts the root and the
//! spec's mounts, makes the device nodes, pivot_roots, applies sysctls, read-only and
//! masked paths, hostname, oom_score_adj, rlimits and the working directory; finds the
//! program; reports ready, waits for the commit, waits on the exec fifo (start's
//! go-ahead), then applies the security plan (seccomp, user, capabilities, no_new_privs:
//! `security.rs`) and execs.

use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{openat, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::Signal;
use nix::sys::stat::{makedev, mknod, umask, Mode, SFlag};
use nix::unistd::{chdir, chown, execve, pivot_root, sethostname, Gid, Uid};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::{mounts, Plan, EXEC_FIFO};
use crate::error::{step as fail, Failure};
use crate::rootfs::find_program;
use crate::{paths, Cgroup, Error};

fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions; it never returns.
    unsafe { libc::_exit(code) }
}

/// The file descriptors the init gets from the runtime.
pub struct InitFds {
    /// Where the init reports "r" (ready), "k" (committed) or "E<code> <message>".
    pub report: OwnedFd,
    /// Where the runtime sends "c" (commit: the state is saved).
    pub go: OwnedFd,
    /// The state directory (O_PATH), holding the exec fifo; None: exec at once.
    pub fifo_dir: Option<OwnedFd>,
    /// The console socket, for a terminal (`console.rs`).
    pub console: Option<OwnedFd>,
}

/// The child's whole life; never returns.
pub fn main(plan: &Plan, cg: &Cgroup, fds: InitFds) -> ! {
    let InitFds {
        report,
        go,
        fifo_dir,
        console,
    } = fds;
    let mut report = fs::File::from(report);
    let report = &mut report;
    let committed = std::cell::Cell::new(false);
    let mut go = fs::File::from(go);
    let result = set_up(plan, cg, report, &mut go).and_then(|program| {
        // Set up in the container's root, before `create` returns: the caller reads
        // the pty's master from the console socket during create.
        if let Some(socket) = console {
            super::console::attach(socket, plan.process.console_size)?;
        }
        report
            .write_all(b"r")
            .map_err(fail("cannot report to the runtime"))?;
        let mut b = [0u8; 1];
        match go.read(&mut b) {
            Ok(1) if b[0] == b'c' => {}
            // The runtime failed after set-up and is killing us.
            _ => exit_now(1),
        }
        // The runtime is alive (it waits for "k"): from here the container outlives it
        // (but for `container run`, whose supervisor stays to the end).
        if !plan.front.cli {
            nix::sys::prctl::set_pdeathsig(None)
                .map_err(fail("cannot clear the parent-death signal"))?;
        }
        report
            .write_all(b"k")
            .map_err(fail("cannot report to the runtime"))?;
        committed.set(true);
        if let Some(dir) = fifo_dir {
            // Blocks until `start` opens the fifo for reading.
            let fifo = openat(
                &dir,
                EXEC_FIFO,
                OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(fail("cannot open the exec fifo"))?;
            fs::File::from(fifo)
                .write_all(b"0")
                .map_err(fail("cannot write the exec fifo"))?;
        }
        plan.security.apply()?;
        let mask = plan.process.umask.unwrap_or(0o022);
        umask(Mode::from_bits_truncate(mask as libc::mode_t));
        exec(plan, &program)
    });
    let (code, msg) = match result {
        Ok(never) => match never {},
        Err(f) => f,
    };
    // Before the commit the runtime reads this; after, the container's stderr does
    // (`container run`'s supervisor reads it until the exec).
    if committed.get() && !plan.front.cli {
        let _ = writeln!(std::io::stderr(), "minnow-runc: error: {msg}");
    } else {
        let _ = write!(report, "E{code} {msg}");
    }
    exit_now(code)
}

fn set_up(
    plan: &Plan,
    cg: &Cgroup,
    report: &mut fs::File,
    go: &mut fs::File,
) -> Result<PathBuf, Failure> {
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    cg.join_self().map_err(|e| (1, Error::Cgroup(e)))?;
    let own = mounts::own_cgroups();
    user_ns(plan, go)?;
    let mut new = CloneFlags::empty();
    for (flag, path) in &plan.namespaces {
        match path {
            _ if *flag == CloneFlags::CLONE_NEWUSER => {}
            Some(p) if *flag != CloneFlags::CLONE_NEWPID => {
                let f = fs::File::open(p)
                    .map_err(fail(format!("cannot open namespace {}", p.display())))?;
                setns(&f, *flag).map_err(fail(format!("cannot join namespace {}", p.display())))?;
            }
            Some(_) => {}
            None if *flag == CloneFlags::CLONE_NEWPID => {}
            None => new |= *flag,
        }
    }
    unshare(new).map_err(fail("cannot create namespaces"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        plan.propagation,
        None::<&str>,
    )
    .map_err(fail("cannot set the propagation of /"))?;
    if plan.front.loopback {
        super::net::loopback_up().map_err(fail("cannot bring up lo"))?;
    }
    let root = &plan.rootfs;
    root_mount(plan)?;
    for m in &plan.mounts {
        mounts::apply(m, root, &own)?;
    }
    let dev_is_tmpfs = plan.mounts.iter().any(|m| {
        m.destination == Path::new("/dev") && m.typ != "bind" && !m.flags.contains(MsFlags::MS_BIND)
    });
    // In a user namespace mknod is refused: the host's nodes are bound, as runc does.
    let bind_nodes = plan
        .namespaces
        .iter()
        .any(|(f, _)| *f == CloneFlags::CLONE_NEWUSER);
    if dev_is_tmpfs {
        default_devices(root, &plan.front, bind_nodes)?;
    }
    for d in &plan.devices {
        device(root, d, bind_nodes)?;
    }
    if plan.hooks_pause {
        report
            .write_all(b"h")
            .map_err(fail("cannot report to the runtime"))?;
        let mut b = [0u8; 1];
        match go.read(&mut b) {
            Ok(1) if b[0] == b'g' => {}
            _ => exit_now(1),
        }
    }
    chdir(root).map_err(fail(format!("cannot enter {}", root.display())))?;
    pivot_root(".", ".").map_err(fail("pivot_root failed"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(fail("cannot detach the old root"))?;
    chdir("/").map_err(fail("cannot chdir to /"))?;
    for (key, value) in &plan.sysctl {
        let p = Path::new("/proc/sys").join(key.replace('.', "/"));
        fs::write(&p, value).map_err(fail(format!("linux.sysctl {key}={value}")))?;
    }
    let cwd = &plan.process.cwd;
    let _ = fs::create_dir_all(cwd);
    paths::apply(&plan.security)?;
    if let Some(h) = &plan.hostname {
        sethostname(h).map_err(fail("cannot set the hostname"))?;
    }
    if let Some(adj) = plan.process.oom_score_adj {
        fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(fail("cannot set process.oomScoreAdj"))?;
    }
    for (res, soft, hard) in &plan.process.rlimits {
        nix::sys::resource::setrlimit(*res, *soft, *hard)
            .map_err(fail(format!("cannot set rlimit {res:?} to {soft}:{hard}")))?;
    }
    chdir(cwd.as_str()).map_err(fail(format!("cannot chdir to process.cwd {cwd}")))?;
    let cmd = &plan.process.args[0];
    let is_exec = |p: &Path| {
        fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    let missing = || match plan.front.cli {
        true => Error::CommandNotFound(cmd.clone()),
        false => Error::InitNoProgram(cmd.clone()),
    };
    // `container run` leaves a path that cannot be run to execve (126, as a shell).
    find_program(cmd, &plan.process.env, is_exec)
        .filter(|p| plan.front.cli || is_exec(p))
        .ok_or_else(|| (127, missing()))
}

/// The user namespace, first (it owns the namespaces created after it): a new one was
/// cloned with the init, whose maps the runtime writes before sending "u"; one with a
/// path is joined. Either way the init then becomes root in it, as runc's does, before
/// it mounts anything (the cgroup was joined before, as the host's root).
fn user_ns(plan: &Plan, go: &mut fs::File) -> Result<(), Failure> {
    let Some((_, path)) = plan
        .namespaces
        .iter()
        .find(|(f, _)| *f == CloneFlags::CLONE_NEWUSER)
    else {
        return Ok(());
    };
    match path {
        None => {
            let mut b = [0u8; 1];
            match go.read(&mut b) {
                Ok(1) if b[0] == b'u' => {}
                // The runtime could not write the maps and is killing us.
                _ => exit_now(1),
            }
        }
        Some(p) => {
            let f = fs::File::open(p)
                .map_err(fail(format!("cannot open namespace {}", p.display())))?;
            // Cloned in it already when the PID namespace is new (`spawn`).
            let id = |m: fs::Metadata| (m.dev(), m.ino());
            let here = fs::metadata("/proc/self/ns/user").map(id).ok();
            if f.metadata().map(id).ok() != here {
                setns(&f, CloneFlags::CLONE_NEWUSER)
                    .map_err(fail(format!("cannot join namespace {}", p.display())))?;
            }
        }
    }
    become_root()
}

/// Becomes root (uid, gid 0, no supplementary groups) in the user namespace just
/// created or joined; the capabilities stay (root of that namespace).
pub(crate) fn become_root() -> Result<(), Failure> {
    let root = (Uid::from_raw(0), Gid::from_raw(0));
    nix::unistd::setgroups(&[]).map_err(fail(
        "cannot clear the supplementary groups in the user namespace",
    ))?;
    nix::unistd::setresgid(root.1, root.1, root.1).map_err(fail(
        "cannot become group 0 in the user namespace; map gid 0",
    ))?;
    nix::unistd::setresuid(root.0, root.0, root.0)
        .map_err(fail("cannot become root in the user namespace; map uid 0"))?;
    Ok(())
}

/// A device node at `path`: made with mknod, or (`bind`, in a user namespace) the
/// host's node at `host` bound onto an empty file there.
fn device_node(
    path: &Path,
    host: &Path,
    bind: bool,
    (kind, major, minor, perm): (SFlag, u64, u64, u32),
) -> Result<(), Failure> {
    if !bind {
        return node(path, kind, major, minor, perm);
    }
    if !path.exists() {
        fs::File::create(path).map_err(fail(format!("cannot create {}", path.display())))?;
    }
    mount(
        Some(host),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(fail(format!(
        "cannot bind {} on {}",
        host.display(),
        path.display()
    )))
}

/// The root: the spec's bound onto itself, or `container run`'s overlay.
fn root_mount(plan: &Plan) -> Result<(), Failure> {
    let root = &plan.rootfs;
    let Some(options) = &plan.front.overlay else {
        return mount(
            Some(root),
            root,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(fail(format!("cannot bind the root {}", root.display())));
    };
    let flags = match plan.front.nodev {
        true => MsFlags::MS_NODEV,
        false => MsFlags::empty(),
    };
    mount(
        Some("overlay"),
        root,
        Some("overlay"),
        flags,
        Some(options.as_str()),
    )
    .map_err(fail(format!(
        "cannot mount overlay on {} ({options})",
        root.display()
    )))
}

/// The nodes runc makes in a /dev of its own, and the links (but `core` for `container
/// run`). With `nodev` each node is bound onto itself and /dev then made nodev: the
/// standard nodes work, a node made later with mknod (CAP_MKNOD is one of Docker's)
/// cannot be opened (EACCES).
fn default_devices(root: &Path, front: &super::Front, bind: bool) -> Result<(), Failure> {
    let nodev = front.nodev;
    let dev = root.join("dev");
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let p = dev.join(name);
        let host = Path::new("/dev").join(name);
        device_node(&p, &host, bind, (SFlag::S_IFCHR, major, minor, 0o666))?;
        if nodev && !bind {
            mount(Some(&p), &p, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .map_err(fail(format!("cannot bind {}", p.display())))?;
        }
    }
    if nodev {
        paths::set_attr(&dev, libc::MOUNT_ATTR_NODEV, false)
            .map_err(fail("cannot make /dev nodev"))?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ] {
        if front.cli && link == "core" {
            continue;
        }
        let _ = std::os::unix::fs::symlink(target, dev.join(link));
    }
    if dev.join("pts/ptmx").exists() && !dev.join("ptmx").exists() {
        let _ = std::os::unix::fs::symlink("pts/ptmx", dev.join("ptmx"));
    }
    Ok(())
}

fn node(path: &Path, kind: SFlag, major: u64, minor: u64, perm: u32) -> Result<(), Failure> {
    let _ = fs::remove_file(path);
    mknod(
        path,
        kind,
        Mode::from_bits_truncate(perm as libc::mode_t),
        makedev(major, minor),
    )
    .map_err(fail(format!("cannot create {}", path.display())))?;
    fs::set_permissions(path, fs::Permissions::from_mode(perm))
        .map_err(fail(format!("cannot chmod {}", path.display())))
}

/// One of `linux.devices`.
fn device(root: &Path, d: &LinuxDevice, bind: bool) -> Result<(), Failure> {
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => return Err((1, Error::DeviceTypeA(d.path().clone()))),
    };
    let path = mounts::secure_join(root, d.path());
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(fail(format!("cannot create {}", parent.display())))?;
    }
    let mode = d.file_mode().unwrap_or(0o666) & 0o7777;
    let node = (kind, d.major() as u64, d.minor() as u64, mode);
    device_node(&path, d.path(), bind, node)?;
    if bind {
        return Ok(());
    }
    chown(
        &path,
        d.uid().map(Uid::from_raw),
        d.gid().map(Gid::from_raw),
    )
    .map_err(fail(format!("cannot chown {}", path.display())))
}

pub(crate) fn exec(plan: &Plan, program: &Path) -> Result<std::convert::Infallible, Failure> {
    let cstr = |s: &str| CString::new(s).map_err(|_| (1, Error::SpecNul(s.to_string())));
    let argv = plan
        .process
        .args
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<Vec<_>, _>>()?;
    let env = plan
        .process
        .env
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<Vec<_>, _>>()?;
    let path = cstr(&program.to_string_lossy())?;
    let err = match execve(&path, &argv, &env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    let code = if err == nix::errno::Errno::ENOENT {
        127
    } else {
        126
    };
    let e = match plan.front.cli {
        true => Error::ExecveCommand {
            command: plan.process.args[0].clone(),
            source: err,
        },
        false => Error::Execve {
            program: program.to_path_buf(),
            source: err,
        },
    };
    Err((code, e))
}
