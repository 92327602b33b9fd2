//! The engine: an OCI runtime spec (`oci_spec::runtime::Spec`) and a bundle in, a
//! container's init out, set up and waiting for the go-ahead (runc's lifecycle: create,
//! then start). `minnow-runc` drives it (src/runc/), and so does `minnow container run`
//! (`run_spec.rs` builds its spec from Docker's defaults, the flags and the image; the
//! few things it asks beyond a spec are the plan's [`Front`]).
//!
//! - [`spec::plan`] checks and converts the spec (refusing what minnow does not support)
//!   and compiles the seccomp filter, before anything exists;
//! - [`cgroup::create`] makes the cgroup (`linux.cgroupsPath`, resources, devices);
//! - [`spawn`] clones the init (`init.rs`) into its PID namespace; [`Child::ready`]
//!   waits until it is set up, [`Child::commit`] lets it outlive the runtime;
//! - the init waits on the exec fifo in the state directory until `start` opens it.

pub mod bpf;
pub mod cgroup;
pub mod console;
pub mod exec;
pub mod init;
pub mod mounts;
pub mod net;
pub mod spec;

use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::fcntl::OFlag;
use nix::sched::{setns, CloneFlags};
use nix::sys::resource::Resource;
use nix::unistd::{pipe2, Pid};
use oci_spec::runtime::LinuxDevice;

use crate::security::Security;
use crate::{Cgroup, Error};
pub use cgroup::{CgroupPlan, Placed};
pub use init::InitFds;
pub use mounts::MountPlan;

/// The fifo in the state directory the init blocks on until `start` reads it.
pub const EXEC_FIFO: &str = "exec.fifo";

/// A container's status, as the runtime spec's state (state.md) names it, with runc's
/// `paused`; serialized as those names ("creating", "created", ...). (oci-spec's
/// `ContainerState` has no `paused`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// `create` is under way (what the prestart and createRuntime hooks see).
    Creating,
    /// Created, waiting on the exec fifo for `start`.
    Created,
    /// The user's program runs.
    Running,
    /// Its cgroup is frozen (`pause`).
    Paused,
    /// The init has exited.
    Stopped,
}

impl Status {
    /// The state's name: "creating", "created", "running", "paused" or "stopped".
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`: the `list` table gives it a width.
        f.pad(self.as_str())
    }
}

/// The process the init becomes.
#[derive(Clone, Debug)]
pub struct ProcessPlan {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub umask: Option<u32>,
    pub rlimits: Vec<(Resource, u64, u64)>,
    pub oom_score_adj: Option<i32>,
    /// `process.terminal`: a pty from the console socket is its stdio.
    pub terminal: bool,
    /// `process.consoleSize` (rows, columns).
    pub console_size: Option<(u16, u16)>,
}

/// Everything the init does, decided before the clone.
#[derive(Clone, Debug)]
pub struct Plan {
    pub id: String,
    /// The root file system, absolute.
    pub rootfs: PathBuf,
    pub hostname: Option<String>,
    /// (namespace, path to join) — no path: a new one.
    pub namespaces: Vec<(CloneFlags, Option<PathBuf>)>,
    /// For a new user namespace: the uid_map and gid_map lines (container id, host id,
    /// size), written by the runtime once the init is cloned into it. Empty otherwise.
    pub uid_map: Vec<(u32, u32, u32)>,
    pub gid_map: Vec<(u32, u32, u32)>,
    pub mounts: Vec<MountPlan>,
    pub devices: Vec<LinuxDevice>,
    pub sysctl: Vec<(String, String)>,
    /// The propagation of `/` in the new mount namespace (default rslave, as runc).
    pub propagation: nix::mount::MsFlags,
    pub process: ProcessPlan,
    pub security: Security,
    pub cgroup: CgroupPlan,
    /// Stop after the mounts (before pivot_root) for the runtime to run the prestart and
    /// createRuntime hooks ([`Child::stage`] says [`Stage::Hooks`]).
    pub hooks_pause: bool,
    /// What `minnow container run` asks beyond the spec (the default: minnow-runc's).
    pub front: Front,
}

/// What `minnow container run` asks of the init beyond an OCI spec.
#[derive(Clone, Debug, Default)]
pub struct Front {
    /// overlayfs options: the root is an overlay mounted on `rootfs` in the new mount
    /// namespace (so nothing is mounted on the host), not a bind of it.
    pub overlay: Option<String>,
    /// The root is nodev, and so is /dev once its standard nodes are bound onto
    /// themselves: a node made later with mknod cannot be opened.
    pub nodev: bool,
    /// Bring `lo` up (a new network namespace).
    pub loopback: bool,
    /// `minnow container run`: the init keeps its parent-death signal after the commit
    /// (it dies with its supervisor), reports a failure up to its exec on the report
    /// pipe (closed by the exec), and words errors as `minnow` does.
    pub cli: bool,
}

/// Where the init is, as [`Child::stage`] reports it.
#[derive(Debug, PartialEq)]
pub enum Stage {
    /// Namespaces and mounts are done: run the prestart and createRuntime hooks, then
    /// [`Child::resume`].
    Hooks,
    /// Set up, waiting for [`Child::commit`].
    Ready,
}

/// The cloned init, seen from the runtime.
pub struct Child {
    pub pid: Pid,
    /// The exit code the init gave with its last failure (1 when it gave none).
    pub code: i32,
    report: fs::File,
    go: Option<fs::File>,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    pipe2(OFlag::O_CLOEXEC).map_err(Error::Pipe)
}

/// Clones the init into its namespaces (joining the PID namespace by path here, as only
/// children can be moved into one). It joins `cg` itself. A new user namespace is
/// cloned together with the PID namespace (which it then owns, as the namespaces the
/// init creates later); the runtime writes its uid_map and gid_map from outside, as
/// runc does, while the init waits for the go-ahead ("u" on its go pipe). `console`: the connected
/// console socket, for a plan with a terminal ([`console`]).
pub fn spawn(
    plan: &Plan,
    cg: &Cgroup,
    fifo_dir: Option<OwnedFd>,
    console: Option<OwnedFd>,
) -> Result<Child, Error> {
    let mut flags = CloneFlags::empty();
    for (f, path) in &plan.namespaces {
        if *f != CloneFlags::CLONE_NEWPID {
            continue;
        }
        match path {
            None => flags |= CloneFlags::CLONE_NEWPID,
            Some(p) => {
                let fd = fs::File::open(p).map_err(|source| Error::PidNamespaceOpen {
                    path: p.clone(),
                    source,
                })?;
                setns(&fd, CloneFlags::CLONE_NEWPID).map_err(|source| Error::PidNamespaceJoin {
                    path: p.clone(),
                    source,
                })?;
            }
        }
    }
    if plan.new_user_ns() {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    let (report_r, report_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    let mut fds = Some(InitFds {
        report: report_w,
        go: go_r,
        fifo_dir,
        console,
    });
    let mut stack = vec![0u8; 1 << 20];
    let cb: nix::sched::CloneCb = Box::new(|| match fds.take() {
        Some(f) => init::main(plan, cg, f),
        None => 1,
    });
    let cloned = match plan.joined_user_ns() {
        Some(path) if flags.contains(CloneFlags::CLONE_NEWPID) => {
            clone_in_user_ns(path, cb, &mut stack, flags)
        }
        // SAFETY: without CLONE_VM the child gets a copy of this address space, as with
        // fork; the runtime is single-threaded, so the child cannot inherit a lock held
        // by another thread. The stack outlives the call and is only used by the child.
        _ => unsafe { nix::sched::clone(cb, &mut stack, flags, Some(libc::SIGCHLD)) }
            .map_err(Error::CloneInit),
    };
    drop(fds);
    let pid = cloned?;
    let mut child = Child {
        pid,
        code: 1,
        report: fs::File::from(report_r),
        go: Some(fs::File::from(go_w)),
    };
    if plan.new_user_ns() {
        if let Err(e) = child.map_ids(plan) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
            return Err(e);
        }
    }
    Ok(child)
}

/// Clones the init from a helper that has joined the user namespace at `path`, so the
/// new PID namespace belongs to that user namespace (as runc's, made inside it) and the
/// init can mount its `proc`. With CLONE_PARENT the init is the runtime's child still;
/// the helper reports its PID (or the errno) and exits.
fn clone_in_user_ns(
    path: &std::path::Path,
    cb: nix::sched::CloneCb<'_>,
    stack: &mut [u8],
    flags: CloneFlags,
) -> Result<Pid, Error> {
    let ns = fs::File::open(path).map_err(|source| Error::UserNamespaceOpen {
        path: path.to_path_buf(),
        source,
    })?;
    let (r, w) = pipe()?;
    // SAFETY: the runtime is single-threaded here (see `spawn`); the helper only
    // calls setns and clone, writes a pipe and ends with _exit.
    match unsafe { nix::unistd::fork() }.map_err(Error::CloneInit)? {
        nix::unistd::ForkResult::Child => {
            drop(r);
            let cloned = setns(&ns, CloneFlags::CLONE_NEWUSER).and_then(|()| {
                // SAFETY: as the clone in `spawn`; the stack is this process's copy.
                unsafe {
                    nix::sched::clone(
                        cb,
                        stack,
                        flags | CloneFlags::CLONE_PARENT,
                        Some(libc::SIGCHLD),
                    )
                }
            });
            // A fixed size, read exactly: the init holds a copy of `w` until its exec.
            let msg = match cloned {
                Ok(pid) => pid.as_raw(),
                Err(e) => -(e as i32),
            };
            let _ = fs::File::from(w).write_all(&msg.to_ne_bytes());
            // SAFETY: _exit has no preconditions; it never returns.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(w);
            let mut msg = [0u8; 4];
            let got = fs::File::from(r).read_exact(&mut msg);
            let _ = nix::sys::wait::waitpid(child, None);
            match (got, i32::from_ne_bytes(msg)) {
                (Ok(()), pid) if pid > 0 => Ok(Pid::from_raw(pid)),
                (Ok(()), errno) => Err(Error::UserNamespaceJoin {
                    path: path.to_path_buf(),
                    source: nix::errno::Errno::from_raw(-errno),
                }),
                (Err(_), _) => Err(Error::CloneInit(nix::errno::Errno::ECHILD)),
            }
        }
    }
}

/// A uid map and a gid map: (container id, host id, size) lines.
pub type IdMaps = (Vec<(u32, u32, u32)>, Vec<(u32, u32, u32)>);

/// The uid and gid maps of process `pid`'s user namespace, as /proc shows them.
pub fn id_maps_of(pid: Pid) -> IdMaps {
    let read =
        |f: &str| parse_map(&fs::read_to_string(format!("/proc/{pid}/{f}")).unwrap_or_default());
    (read("uid_map"), read("gid_map"))
}

/// The host uid and gid of the container's root (id 0), from its maps; None if unmapped.
pub fn host_root(maps: &IdMaps) -> Option<(u32, u32)> {
    let host0 = |map: &[(u32, u32, u32)]| {
        map.iter()
            .find(|(c, _, n)| *c == 0 && *n > 0)
            .map(|(_, h, _)| *h)
    };
    Some((host0(&maps.0)?, host0(&maps.1)?))
}

impl Plan {
    /// The plan asks for a new user namespace (not one joined by path).
    pub fn new_user_ns(&self) -> bool {
        self.namespaces
            .iter()
            .any(|(f, p)| *f == CloneFlags::CLONE_NEWUSER && p.is_none())
    }

    /// The user namespace joined by path, if any.
    fn joined_user_ns(&self) -> Option<&PathBuf> {
        self.namespaces
            .iter()
            .find(|(f, _)| *f == CloneFlags::CLONE_NEWUSER)
            .and_then(|(_, p)| p.as_ref())
    }
}

/// The lines of a uid_map or gid_map as /proc shows them.
fn parse_map(text: &str) -> Vec<(u32, u32, u32)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().map(|n| n.parse::<u32>().ok());
            Some((f.next()??, f.next()??, f.next()??))
        })
        .collect()
}

/// A uid_map or gid_map's text: one "container host size" line each.
fn map_text(map: &[(u32, u32, u32)]) -> String {
    map.iter()
        .map(|(c, h, n)| format!("{c} {h} {n}\n"))
        .collect()
}

impl Child {
    /// Writes the init's uid_map and gid_map (in one write each, as the kernel wants)
    /// and lets it go on. The runtime is root in the parent namespace: any host ids may
    /// be mapped and setgroups stays allowed (no "deny").
    fn map_ids(&mut self, plan: &Plan) -> Result<(), Error> {
        for (file, map) in [("uid_map", &plan.uid_map), ("gid_map", &plan.gid_map)] {
            let path = format!("/proc/{}/{file}", self.pid);
            fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|mut f| f.write_all(map_text(map).as_bytes()))
                .map_err(|source| Error::WriteIdMap { file, source })?;
        }
        match self.go.as_mut() {
            Some(go) => go.write_all(b"u").map_err(Error::SignalInit),
            None => Ok(()),
        }
    }

    /// Waits until the init is set up, or stops for the hooks (or failed: its message).
    pub fn stage(&mut self) -> Result<Stage, Error> {
        let mut b = [0u8; 1];
        match self.report.read(&mut b) {
            Ok(1) if b[0] == b'r' => Ok(Stage::Ready),
            Ok(1) if b[0] == b'h' => Ok(Stage::Hooks),
            Ok(1) if b[0] == b'E' => Err(Error::Init(self.failure())),
            _ => Err(Error::InitDied),
        }
    }

    /// The rest of an "E<code> <message>" report: the message (the code in `self.code`).
    fn failure(&mut self) -> String {
        let mut msg = String::new();
        let _ = self.report.read_to_string(&mut msg);
        let (code, text) = msg.split_once(' ').unwrap_or(("1", msg.as_str()));
        self.code = code.parse().unwrap_or(1);
        text.trim().to_string()
    }

    /// After the commit of a [`Front::cli`] plan: waits until the init has exec'd (the
    /// report pipe closes), or failed before (its message; the code in `self.code`).
    pub fn exec_result(&mut self) -> Result<(), Error> {
        let mut b = [0u8; 1];
        match self.report.read(&mut b) {
            Ok(1) if b[0] == b'E' => Err(Error::Init(self.failure())),
            _ => Ok(()),
        }
    }

    /// Lets the init go on after the hooks.
    pub fn resume(&mut self) -> Result<(), Error> {
        match self.go.as_mut() {
            Some(go) => go.write_all(b"g").map_err(Error::SignalInit),
            None => Ok(()),
        }
    }

    /// Lets the init outlive the runtime (it clears its parent-death signal).
    pub fn commit(&mut self) -> Result<(), Error> {
        if let Some(mut go) = self.go.take() {
            go.write_all(b"c").map_err(Error::SignalInit)?;
        }
        let mut b = [0u8; 1];
        match self.report.read(&mut b) {
            Ok(1) if b[0] == b'k' => Ok(()),
            _ => Err(Error::InitDiedBeforeCommit),
        }
    }
}
