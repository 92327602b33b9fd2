//! minnow's container runtime: a workload in new UTS, IPC, PID, mount and network
//! namespaces, on an overlayfs of the image's extracted layers, inside a cgroup with
//! memory, cpu and pids limits. See docs/containers.md.
//!
//! `run` is the supervisor: it turns the image and the flags into an OCI spec and the
//! engine's plan (`run_spec.rs`), prepares the container directory and cgroup, has the
//! engine clone the container's init into a new PID namespace (which joins the cgroup,
//! sets up and execs, as minnow-runc's does), waits for it, and cleans up on every path.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod caps;
pub mod defaults;
pub mod engine;
pub mod error;
pub mod paths;
pub mod rootfs;
pub mod run_spec;
pub mod seccomp;
pub mod security;
pub mod veth;

pub use error::Error;
/// Cgroups live in their own crate (the jail uses them too); re-exported under the old path.
pub use minnow_cgroup as cgroup;

use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe2, ForkResult, Pid};
use serde::{Deserialize, Serialize};

use cgroup::{Cgroup, Limits};
use minnow_image::{check_name, now_rfc3339, Image, Store};

/// `STORE/containers/<id>/state.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    pub id: String,
    pub name: String,
    pub image: String,
    pub image_digest: String,
    /// Layer digests, bottom first (kept alive by `image rm`'s garbage collection).
    pub layers: Vec<String>,
    pub command: Vec<String>,
    pub status: Status,
    /// The container's PID 1, as the host sees it.
    pub pid: Option<i32>,
    pub supervisor_pid: i32,
    pub exit_code: Option<i32>,
    pub created: String,
    pub finished: Option<String>,
    pub cgroups: Vec<PathBuf>,
    pub detached: bool,
    pub keep: bool,
}

/// A `minnow container` container's status, as `state.json` records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Prepared; the supervisor has not started its process yet.
    Created,
    /// Its process runs (or set-up is under way).
    Running,
    /// Its process is gone and the supervisor recorded the exit.
    Exited,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
        })
    }
}

/// The status `minnow container ls` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiveStatus {
    Created,
    Running,
    /// With its exit code (-1: not recorded).
    Exited(i32),
    /// It claims to run, but its supervisor is gone.
    Dead,
}

impl std::fmt::Display for LiveStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`: the `ls` table gives it a width.
        match self {
            LiveStatus::Created => f.pad("created"),
            LiveStatus::Running => f.pad("running"),
            LiveStatus::Exited(code) => f.pad(&format!("exited ({code})")),
            LiveStatus::Dead => f.pad("dead"),
        }
    }
}

impl State {
    pub fn load(dir: &Path) -> Result<State, Error> {
        let path = dir.join("state.json");
        let text = fs::read(&path).map_err(|e| Error::io("cannot read", &path, e))?;
        serde_json::from_slice(&text).map_err(|source| Error::StateCorrupt { path, source })
    }

    pub fn save(&self, dir: &Path) -> Result<(), Error> {
        let path = dir.join("state.json");
        let tmp = dir.join(".state.json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(Error::Serialize)?;
        fs::write(&tmp, text)
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|e| Error::io("cannot write", &path, e))
    }

    /// Whether the supervisor still runs the container (by its record and its PID).
    pub fn is_running(&self) -> bool {
        self.status != Status::Exited && minnow_host::pid_alive(self.supervisor_pid)
    }

    /// The status `ls` shows: dead when it claims to run but its supervisor is gone.
    pub fn live_status(&self) -> LiveStatus {
        match self.status {
            Status::Exited => LiveStatus::Exited(self.exit_code.unwrap_or(-1)),
            _ if !minnow_host::pid_alive(self.supervisor_pid) => LiveStatus::Dead,
            Status::Created => LiveStatus::Created,
            Status::Running => LiveStatus::Running,
        }
    }
}

/// Ends a forked process at once, without running the parent's atexit handlers or
/// flushing buffers that belong to the parent.
fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions; it never returns.
    unsafe { libc::_exit(code) }
}

/// What `minnow container run` was asked to do.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub name: Option<String>,
    pub image: String,
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub limits: Limits,
    pub host_net: bool,
    /// A veth pair to the host (implies a new network namespace).
    pub veth: bool,
    pub keep: bool,
    pub detach: bool,
    /// The mount table cgroups are found in ([`cgroup::MOUNTINFO`]; tests give another).
    pub mountinfo: PathBuf,
    /// Bind the host's /sys (with the mounts under it) instead of mounting a new sysfs,
    /// as happens where a new one cannot be mounted (tests use it to check that every
    /// mount under /sys is read-only).
    pub bind_sys: bool,
    /// Docker's security flags (`--privileged`, `--cap-add`, ...); the default is
    /// Docker's defaults (docs/containers.md, "Security defaults").
    pub security: defaults::Flags,
}

/// Refuses to go on without root: namespaces, mounts and cgroups need it.
pub fn require_root() -> Result<(), Error> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(Error::NotRoot)
    }
}

fn new_id() -> String {
    let mut b = [0u8; 6];
    if fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        b.copy_from_slice(&(t.as_nanos() as u64 ^ std::process::id() as u64).to_le_bytes()[..6]);
    }
    hex::encode(b)
}

/// All containers in the store, sorted by creation time.
pub fn list(store: &Store) -> Vec<State> {
    let mut out: Vec<State> = fs::read_dir(store.containers_dir())
        .map(|d| {
            d.flatten()
                .filter_map(|e| State::load(&e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
    out
}

/// Finds a container by id, unique id prefix, or name.
pub fn find(store: &Store, key: &str) -> Result<State, Error> {
    let all = list(store);
    if let Some(s) = all.iter().find(|s| s.id == key || s.name == key) {
        return Ok(s.clone());
    }
    let matches: Vec<&State> = all.iter().filter(|s| s.id.starts_with(key)).collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Error::NoContainer(key.to_string())),
        _ => Err(Error::Ambiguous(key.to_string())),
    }
}

/// Everything prepared before forking: resolved image, directories, state.
struct Prepared {
    dir: PathBuf,
    state: State,
    plan: engine::Plan,
    veth: bool,
    limits: Limits,
    mountinfo: PathBuf,
}

fn prepare(store: &Store, opts: &RunOptions) -> Result<Prepared, Error> {
    if let Some(n) = &opts.name {
        check_name("container", n)?;
    }
    let image: Image = store.resolve_or_default(&opts.image)?;
    let lowers = store.layer_dirs(&image)?;
    let cfg = &image.config.config;
    let mut argv: Vec<String> = cfg.entrypoint.clone().unwrap_or_default();
    if opts.command.is_empty() {
        argv.extend(cfg.cmd.clone().unwrap_or_default());
    } else {
        argv.extend(opts.command.iter().cloned());
    }
    if argv.is_empty() {
        return Err(Error::NoCommand(opts.image.clone()));
    }
    // Before anything exists: a bad flag or profile leaves nothing behind.
    let (spec, security) = run_spec::spec(&opts.security, &lowers)?;
    let _lock = store.lock()?;
    let id = new_id();
    let name = opts.name.clone().unwrap_or_else(|| id.clone());
    if list(store).iter().any(|s| s.name == name) {
        return Err(Error::NameTaken(name));
    }
    let dir = store.containers_dir().join(&id);
    let (upper, work, rootfs) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
    let overlay_options = rootfs::overlay_options(&lowers, &upper, &work)?;
    for d in [&upper, &work, &rootfs] {
        fs::create_dir_all(d).map_err(|e| Error::io("cannot create", d, e))?;
    }
    let mut env: Vec<String> = cfg.env.clone().unwrap_or_default();
    env.push(format!("HOSTNAME={name}"));
    for e in &opts.env {
        let key = e.split('=').next().unwrap_or("");
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    let state = State {
        id: id.clone(),
        name: name.clone(),
        image: opts.image.clone(),
        image_digest: image.manifest_digest.to_string(),
        layers: image
            .manifest
            .layers
            .iter()
            .map(|l| l.digest.clone())
            .collect(),
        command: argv.clone(),
        status: Status::Created,
        pid: None,
        supervisor_pid: std::process::id() as i32,
        exit_code: None,
        created: now_rfc3339(),
        finished: None,
        cgroups: Vec::new(),
        detached: opts.detach,
        keep: opts.keep,
    };
    if let Err(e) = state.save(&dir) {
        let _ = fs::remove_dir_all(&dir);
        return Err(e);
    }
    let workload = run_spec::Workload {
        argv,
        env,
        cwd: cfg
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into()),
        hostname: name,
        host_net: opts.host_net,
        veth: opts.veth,
        bind_sys: opts.bind_sys,
    };
    let plan = match run_spec::plan(spec, security, &workload, &dir, &id, overlay_options) {
        Ok(p) => p,
        Err(e) => {
            remove_dir(&dir);
            return Err(e);
        }
    };
    Ok(Prepared {
        dir,
        state,
        plan,
        veth: opts.veth,
        limits: opts.limits,
        mountinfo: opts.mountinfo.clone(),
    })
}

/// Removes a container's directory (its overlay is only mounted in its own, now dead,
/// mount namespace, so there is nothing to unmount on the host).
fn remove_dir(dir: &Path) {
    for _ in 0..50 {
        match fs::remove_dir_all(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    if let Err(e) = fs::remove_dir_all(dir) {
        log::warn!("cannot remove {}: {e}", dir.display());
    }
}

/// `minnow container run`. Returns the workload's exit code (128+N if killed by signal N).
pub fn run(store: &Store, opts: &RunOptions) -> Result<i32, Error> {
    require_root()?;
    let p = prepare(store, opts)?;
    if !opts.detach {
        let dir = p.dir.clone();
        let keep = opts.keep;
        let result = supervise(p, |_| {});
        if !keep {
            remove_dir(&dir);
        }
        return result;
    }
    // Detached: fork a supervisor that outlives this command; wait until it reports the
    // workload started (or failed to).
    let (ready_r, ready_w) = pipe2(OFlag::O_CLOEXEC).map_err(Error::sys("pipe"))?;
    // SAFETY: minnow is single-threaded here, so the child cannot inherit a lock held by
    // another thread; it goes on running ordinary Rust code and ends with _exit.
    match unsafe { fork() } {
        Err(e) => {
            remove_dir(&p.dir);
            Err(Error::Sys {
                what: "fork",
                source: e,
            })
        }
        Ok(ForkResult::Child) => {
            drop(ready_r);
            let code = daemon(p, ready_w);
            exit_now(code)
        }
        Ok(ForkResult::Parent { .. }) => {
            drop(ready_w);
            let mut msg = String::new();
            let _ = fs::File::from(ready_r).read_to_string(&mut msg);
            match msg.strip_prefix("ok ") {
                Some(id) => {
                    println!("{}", id.trim());
                    Ok(0)
                }
                None if msg.is_empty() => Err(Error::SupervisorDied),
                None => Err(Error::Startup(msg.trim().to_string())),
            }
        }
    }
}

/// The detached supervisor: its own session, output to `<dir>/log`.
fn daemon(mut p: Prepared, ready: OwnedFd) -> i32 {
    let _ = nix::unistd::setsid();
    p.state.supervisor_pid = std::process::id() as i32;
    let _ = p.state.save(&p.dir);
    let log = fs::File::create(p.dir.join("log"));
    let null = fs::File::open("/dev/null");
    if let (Ok(log), Ok(null)) = (log, null) {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&log);
        let _ = nix::unistd::dup2_stderr(&log);
    }
    let mut ready = Some(fs::File::from(ready));
    let id = p.state.id.clone();
    let result = supervise(p, |started| {
        if let Some(mut f) = ready.take() {
            let _ = match started {
                Ok(()) => write!(f, "ok {id}"),
                Err(e) => write!(f, "{e}"),
            };
        }
    });
    if let Some(mut f) = ready.take() {
        let _ = write!(
            f,
            "{}",
            match &result {
                Err(e) => e.to_string(),
                Ok(_) => Error::ExitedDuringStartup.to_string(),
            }
        );
    }
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("minnow: error: {e}");
            1
        }
    }
}

/// Creates the cgroup, forks the container, reports start-up through `started`, waits,
/// and cleans up the cgroup. The container directory is left to the caller.
fn supervise(mut p: Prepared, started: impl FnOnce(Result<(), &str>)) -> Result<i32, Error> {
    let layout = cgroup::detect(&p.mountinfo);
    let cg = match Cgroup::create(&p.state.id, &p.limits, &layout) {
        Ok(cg) => cg,
        Err(e) => {
            started(Err(&e.to_string()));
            return Err(e.into());
        }
    };
    p.state.cgroups = cg.dirs.clone();
    let result = start_and_wait(&mut p, &cg, started);
    cg.remove();
    p.state.status = Status::Exited;
    p.state.finished = Some(now_rfc3339());
    p.state.exit_code = Some(*result.as_ref().unwrap_or(&1));
    let _ = p.state.save(&p.dir);
    result
}

/// Reports `e` to `started`, then returns it.
fn fail(e: Error, started: impl FnOnce(Result<(), &str>)) -> Result<i32, Error> {
    started(Err(&e.to_string()));
    Err(e)
}

fn start_and_wait(
    p: &mut Prepared,
    cg: &Cgroup,
    started: impl FnOnce(Result<(), &str>),
) -> Result<i32, Error> {
    let veth = if p.veth {
        match veth::plan(&p.state.id) {
            Ok(v) => {
                p.plan
                    .process
                    .env
                    .push(format!("MINNOW_HOST_IP={}", v.host_ip));
                p.plan.process.env.push(format!("MINNOW_IP={}", v.ip));
                Some(v)
            }
            Err(e) => return fail(e, started),
        }
    } else {
        None
    };
    let result = start(p, cg, veth.as_ref(), started);
    if let Some(v) = &veth {
        v.remove();
    }
    result
}

/// Has the engine clone the init, makes the veth pair while it waits before pivot_root,
/// lets it exec and waits for it.
fn start(
    p: &mut Prepared,
    cg: &Cgroup,
    veth: Option<&veth::Veth>,
    started: impl FnOnce(Result<(), &str>),
) -> Result<i32, Error> {
    let mut child = match engine::spawn(&p.plan, cg, None, None) {
        Ok(c) => c,
        Err(e) => return fail(e, started),
    };
    let pid = child.pid;
    // Forward termination signals; a second one kills the container.
    let forwarder = forward_signals(pid);
    if let Err(e) = set_up(&mut child, veth) {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = wait_for(pid);
        drop(forwarder);
        return failed(e, child.code, started);
    }
    p.state.pid = Some(pid.as_raw());
    p.state.status = Status::Running;
    let _ = p.state.save(&p.dir);
    // The report pipe closes on exec (CLOEXEC) or carries the failure before it.
    match child.exec_result() {
        Ok(()) => {
            started(Ok(()));
            let status = wait_for(pid);
            drop(forwarder);
            status
        }
        Err(e) => {
            let _ = wait_for(pid);
            drop(forwarder);
            failed(e, child.code, started)
        }
    }
}

/// Waits until the init is set up (making the veth pair when it stops before
/// pivot_root), then commits it.
fn set_up(child: &mut engine::Child, veth: Option<&veth::Veth>) -> Result<(), Error> {
    loop {
        match child.stage()? {
            engine::Stage::Ready => break,
            engine::Stage::Hooks => {
                if let Some(v) = veth {
                    v.setup(child.pid.as_raw())?;
                }
                child.resume()?;
            }
        }
    }
    child.commit()
}

/// A failure of the init: a program not found or not executable is its exit code (127,
/// 126) after the message, as a shell has it; any other is a set-up failure.
fn failed(e: Error, code: i32, started: impl FnOnce(Result<(), &str>)) -> Result<i32, Error> {
    let Error::Init(text) = e else {
        return fail(e, started);
    };
    started(Err(&text));
    if code == 126 || code == 127 {
        eprintln!("minnow: error: {text}");
        return Ok(code);
    }
    Err(Error::Setup(text))
}

fn wait_for(child: Pid) -> Result<i32, Error> {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("waitpid")(e)),
        }
    }
}

/// Forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT to the container; the second one is a SIGKILL.
/// (The container's PID 1 ignores signals it has no handler for, as any init does.)
fn forward_signals(child: Pid) -> Option<signal_hook::iterator::Handle> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT]).ok()?;
    let handle = signals.handle();
    std::thread::spawn(move || {
        let mut count = 0;
        for sig in signals.forever() {
            count += 1;
            let sig = if count > 1 {
                Signal::SIGKILL
            } else {
                Signal::try_from(sig).unwrap_or(Signal::SIGTERM)
            };
            let _ = kill(child, sig);
        }
    });
    Some(handle)
}

/// `minnow container stop`: SIGTERM, then SIGKILL after `grace`; waits for the supervisor
/// to record the exit.
pub fn stop(store: &Store, key: &str, grace: Duration) -> Result<String, Error> {
    require_root()?;
    let s = find(store, key)?;
    let dir = store.containers_dir().join(&s.id);
    let running = |st: &State| st.is_running();
    if !running(&s) {
        return Ok(format!("{} is not running", s.name));
    }
    let Some(pid) = s.pid.filter(|p| is_child_of(*p, s.supervisor_pid)) else {
        return Err(Error::NoRunningProcess(s.name));
    };
    let pid = Pid::from_raw(pid);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    let mut killed = false;
    loop {
        let st = State::load(&dir).unwrap_or(s.clone());
        if !running(&st) {
            return Ok(st.name);
        }
        if !killed && Instant::now() >= deadline {
            let _ = kill(pid, Signal::SIGKILL);
            killed = true;
        }
        if killed && Instant::now() >= deadline + Duration::from_secs(10) {
            return Err(Error::DidNotStop(s.name));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_child_of(pid: i32, parent: i32) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ")" that ends the command name: state, ppid, ...
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|p| p.parse::<i32>().ok())
        == Some(parent)
}

/// `minnow container rm`: removes a stopped container (or, with `force`, stops it first).
pub fn remove(store: &Store, key: &str, force: bool) -> Result<String, Error> {
    require_root()?;
    let s = find(store, key)?;
    if s.is_running() {
        if !force {
            return Err(Error::IsRunning(s.name));
        }
        stop(store, &s.id, Duration::ZERO)?;
    }
    // A supervisor that was killed leaves its cgroup behind: clean it up too.
    Cgroup {
        dirs: s.cgroups.clone(),
    }
    .remove();
    remove_dir(&store.containers_dir().join(&s.id));
    Ok(s.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_keep_their_names() {
        for (s, name) in [
            (Status::Created, "created"),
            (Status::Running, "running"),
            (Status::Exited, "exited"),
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), name);
            assert_eq!(serde_json::from_value::<Status>(name.into()).unwrap(), s);
            assert_eq!(s.to_string(), name);
        }
        assert_eq!(LiveStatus::Exited(3).to_string(), "exited (3)");
        assert_eq!(format!("{:<6}|", LiveStatus::Dead), "dead  |");
        for (s, name) in [
            (engine::Status::Creating, "creating"),
            (engine::Status::Created, "created"),
            (engine::Status::Running, "running"),
            (engine::Status::Paused, "paused"),
            (engine::Status::Stopped, "stopped"),
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), name);
            assert_eq!(s.to_string(), name);
        }
        assert_eq!(format!("{:<8}|", engine::Status::Paused), "paused  |");
    }
}
