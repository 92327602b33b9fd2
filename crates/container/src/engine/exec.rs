//! `exec`: a further process in a running container. The runtime joins the init's PID
//! namespace (for its children), forks; the child joins the container's cgroup and its
//! other namespaces (mount last), takes the working directory and rlimits, applies the
//! plan's security settings (the container's seccomp, the process's capabilities and
//! user) and execs.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sched::{setns, CloneFlags};
use nix::sys::stat::{umask, Mode};
use nix::sys::wait::waitpid;
use nix::unistd::{chdir, fork, pipe2, ForkResult, Pid};

use super::Plan;
use crate::error::{step as fail, Failure};
use crate::rootfs::find_program;
use crate::{Cgroup, Error};

/// The namespaces to join, in order (user first: it owns the others; cgroup after the
/// cgroup is joined, mount last).
const ORDER: [(&str, CloneFlags); 6] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

fn differs(pid: i32, name: &str) -> bool {
    let ino = |p: String| fs::metadata(p).map(|m| m.ino()).ok();
    ino(format!("/proc/{pid}/ns/{name}")) != ino(format!("/proc/self/ns/{name}"))
}

/// Starts `plan.process` in the container whose init is `init`; returns its PID once it
/// has exec'd (or the one-line reason it could not). `console`: the connected console
/// socket, for a process with a terminal.
pub fn spawn(
    init: i32,
    cg: &Cgroup,
    plan: &Plan,
    console: Option<std::os::fd::OwnedFd>,
) -> Result<Pid, Error> {
    let open = |name: &'static str| {
        fs::File::open(format!("/proc/{init}/ns/{name}"))
            .map_err(|source| Error::ContainerNamespaceOpen { name, source })
    };
    if differs(init, "pid") {
        setns(open("pid")?, CloneFlags::CLONE_NEWPID).map_err(Error::ContainerPidJoin)?;
    }
    let mut joins = Vec::new();
    for (name, flag) in ORDER {
        if differs(init, name) {
            joins.push((open(name)?, flag));
        }
    }
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).map_err(Error::sys("pipe"))?;
    // SAFETY: the runtime is single-threaded here, so the child cannot inherit a lock
    // held by another thread; it runs ordinary code and ends in execve or _exit.
    match unsafe { fork() } {
        Err(e) => Err(Error::Fork(e)),
        Ok(ForkResult::Child) => {
            drop(err_r);
            let (code, msg) = match child(cg, &joins, plan, console) {
                Ok(never) => match never {},
                Err(f) => f,
            };
            let _ = write!(fs::File::from(err_w), "{msg}");
            // SAFETY: _exit has no preconditions; it never returns.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(err_w);
            let mut msg = String::new();
            let _ = fs::File::from(err_r).read_to_string(&mut msg);
            if msg.is_empty() {
                return Ok(child);
            }
            let _ = waitpid(child, None);
            Err(Error::Exec(msg))
        }
    }
}

fn child(
    cg: &Cgroup,
    joins: &[(fs::File, CloneFlags)],
    plan: &Plan,
    console: Option<std::os::fd::OwnedFd>,
) -> Result<std::convert::Infallible, Failure> {
    cg.join_self().map_err(|e| (1, Error::Cgroup(e)))?;
    for (f, flag) in joins {
        setns(f, *flag).map_err(fail("cannot join the container's namespaces"))?;
        if *flag == CloneFlags::CLONE_NEWUSER {
            super::init::become_root()?;
        }
    }
    // In the container's mount namespace now: /dev/ptmx is its devpts's.
    if let Some(socket) = console {
        super::console::attach(socket, plan.process.console_size)?;
    }
    let cwd = plan.process.cwd.as_str();
    chdir(cwd).map_err(|source| {
        (
            1,
            Error::ExecCwd {
                cwd: cwd.to_string(),
                source,
            },
        )
    })?;
    for (res, soft, hard) in &plan.process.rlimits {
        nix::sys::resource::setrlimit(*res, *soft, *hard).map_err(fail("cannot set an rlimit"))?;
    }
    let cmd = &plan.process.args[0];
    let is_exec = |p: &Path| {
        fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    let program = find_program(cmd, &plan.process.env, is_exec)
        .filter(|p| is_exec(p))
        .ok_or_else(|| (127, Error::ExecNoProgram(cmd.clone())))?;
    plan.security.apply()?;
    umask(Mode::from_bits_truncate(
        plan.process.umask.unwrap_or(0o022) as libc::mode_t,
    ));
    super::init::exec(plan, &program)
}
