//! `create`, `start` and `run`: the lifecycle's first half. `create` forks a guard that
//! removes the state directory and the cgroup if `create` (or `run`) dies before it is
//! done (SIGKILL included), clones the init through the engine, waits until it is set
//! up, records the state and exits; the init waits on the exec fifo until `start`.

use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use minnow_container::engine::{self, cgroup, Status};
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, mkfifo, pipe2, ForkResult, Pid};
use oci_spec::runtime::Spec;

use super::relay::Relay;
use super::state::{self, Saved};
use super::{debug, hooks, warn, Global};

/// How `create` was called.
pub struct CreateArgs {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub id: String,
    pub console_socket: Option<PathBuf>,
    /// `create`, or `run -d`: the caller does not wait for the process.
    pub detach: bool,
}

/// The console socket for a process with `terminal` (engine/console.rs), with runc's
/// rules: `--console-socket` only for a detached process (`create`, `-d`) with a
/// terminal, and a detached terminal only through one. In the foreground (`run` or
/// `exec` without `-d`) minnow-runc relays the terminal itself, as runc does: the socket
/// is one end of a pair whose other end is the [`Relay`].
pub fn console(
    terminal: bool,
    socket: Option<&Path>,
    detach: bool,
) -> Result<(Option<OwnedFd>, Option<Relay>), String> {
    match (terminal, socket) {
        (true, Some(s)) if detach => Ok((Some(engine::console::connect(s)?), None)),
        (false, None) => Ok((None, None)),
        (true, None) if !detach => {
            let (theirs, relay) = Relay::pair()?;
            Ok((Some(theirs), Some(relay)))
        }
        (_, Some(_)) => Err("cannot use --console-socket unless the process is detached (create, -d) and has a terminal; drop --console-socket or set process.terminal".into()),
        (true, None) => Err("cannot give a detached process a terminal without --console-socket; pass --console-socket SOCKET or set process.terminal to false".into()),
    }
}

/// The guard's pipe: "c" means done (nothing to clean); EOF without it means the runtime
/// died and the guard removes `dir` (and the cgroup recorded in it).
pub struct Guard(Option<fs::File>);

impl Guard {
    fn fork(dir: &Path) -> Result<Guard, String> {
        let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
        // SAFETY: minnow-runc is single-threaded here; the child only reads a pipe,
        // removes files and ends with _exit.
        match unsafe { fork() } {
            Err(e) => Err(format!("fork: {e}; check the process limit")),
            Ok(ForkResult::Child) => {
                drop(w);
                guard_main(r, dir)
            }
            Ok(ForkResult::Parent { .. }) => {
                drop(r);
                Ok(Guard(Some(fs::File::from(w))))
            }
        }
    }

    /// Tells the guard the container is complete (or cleaned up): it exits.
    pub fn done(&mut self) {
        if let Some(mut f) = self.0.take() {
            let _ = std::io::Write::write_all(&mut f, b"c");
        }
    }
}

fn guard_main(r: OwnedFd, dir: &Path) -> ! {
    // Off the caller's pipes (a shim or a test waits for them to close).
    if let Ok(null) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
    let _ = nix::unistd::setsid();
    let mut b = [0u8; 1];
    let committed = matches!(fs::File::from(r).read(&mut b), Ok(1) if b[0] == b'c');
    if !committed {
        state::destroy(dir);
    }
    // SAFETY: _exit has no preconditions; it never returns.
    unsafe { libc::_exit(0) }
}

fn load_spec(bundle: &Path) -> Result<Spec, String> {
    let path = bundle.join("config.json");
    if !path.exists() {
        return Err(format!(
            "{} does not exist; give the bundle directory with --bundle (minnow-runc spec writes a config.json)",
            path.display()
        ));
    }
    let bytes = fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    engine::spec::parse(&bytes)
        .map_err(|e| format!("cannot parse {}: {e}; fix the file", path.display()))
}

fn write_pid_file(path: &Path, pid: i32) -> Result<(), String> {
    let tmp = path.with_extension("minnow-tmp");
    fs::write(&tmp, pid.to_string())
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write --pid-file {}: {e}", path.display()))
}

/// A created container: its init is set up and waiting on the exec fifo.
pub struct Created {
    pub saved: Saved,
    pub child: engine::Child,
    pub guard: Guard,
    /// The foreground terminal (`run` of a process with `terminal`).
    pub relay: Option<Relay>,
}

/// `create` (and the first half of `run`).
pub fn create(g: &Global, a: &CreateArgs) -> Result<Created, String> {
    state::check_id(&a.id)?;
    let bundle = a.bundle.canonicalize().map_err(|e| {
        format!(
            "bundle {}: {e}; give an existing directory",
            a.bundle.display()
        )
    })?;
    let spec = load_spec(&bundle)?;
    // Everything checked and the seccomp filter compiled before anything exists.
    let plan = engine::spec::plan(&spec, &bundle, &a.id)?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&g.root)
        .map_err(|e| format!("cannot create --root {}: {e}", g.root.display()))?;
    let dir = state::dir(&g.root, &a.id);
    match fs::DirBuilder::new().mode(0o711).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(format!(
                "container {} already exists; delete it first (minnow-runc delete {})",
                a.id, a.id
            ))
        }
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    let mut guard = match Guard::fork(&dir) {
        Ok(g) => g,
        Err(e) => {
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
    };
    match create_in(&plan, &spec, &bundle, &dir, a) {
        Ok((saved, child, relay)) => Ok(Created {
            saved,
            child,
            guard,
            relay,
        }),
        Err(e) => {
            state::destroy(&dir);
            guard.done();
            Err(e)
        }
    }
}

fn create_in(
    plan: &engine::Plan,
    spec: &Spec,
    bundle: &Path,
    dir: &Path,
    a: &CreateArgs,
) -> Result<(Saved, engine::Child, Option<Relay>), String> {
    let fifo = dir.join(engine::EXEC_FIFO);
    mkfifo(&fifo, Mode::from_bits_truncate(0o622))
        .map_err(|e| format!("cannot create {}: {e}", fifo.display()))?;
    let placed = cgroup::create(&plan.cgroup)?;
    state::write_json(&dir.join("cgroup.json"), &placed)?;
    debug(&format!("cgroup: {:?}", placed.dirs));
    let fifo_dir = open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
    let cg = cgroup::cgroup(&placed);
    let (console, relay) = console(plan.process.terminal, a.console_socket.as_deref(), a.detach)?;
    let mut child = engine::spawn(plan, &cg, Some(fifo_dir), console)?;
    let pid = child.pid;
    let abort = |e: String| {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
        e
    };
    let mut saved = Saved {
        id: a.id.clone(),
        pid: pid.as_raw(),
        start_time: 0,
        bundle: bundle.to_path_buf(),
        rootfs: plan.rootfs.clone(),
        created: minnow_image::now_rfc3339(),
        annotations: spec.annotations().clone().unwrap_or_default(),
        cgroup: placed,
        hooks: spec.hooks().clone(),
    };
    loop {
        match child.stage().map_err(|e| abort(e.into()))? {
            engine::Stage::Ready => break,
            engine::Stage::Hooks => {
                saved.start_time = state::start_time(pid.as_raw()).unwrap_or(0);
                let st = saved.oci_as(Status::Creating);
                #[allow(deprecated)]
                let h = spec.hooks().clone().unwrap_or_default();
                #[allow(deprecated)]
                hooks::run("prestart", h.prestart().as_deref().unwrap_or(&[]), &st)
                    .and_then(|()| {
                        hooks::run(
                            "createRuntime",
                            h.create_runtime().as_deref().unwrap_or(&[]),
                            &st,
                        )
                    })
                    .map_err(abort)?;
                child.resume().map_err(|e| abort(e.into()))?;
            }
        }
    }
    if plan
        .namespaces
        .iter()
        .any(|(f, _)| *f == nix::sched::CloneFlags::CLONE_NEWUSER)
    {
        user_ns_done(plan, pid, &fifo).map_err(abort)?;
    }
    saved.start_time = state::start_time(pid.as_raw()).unwrap_or(0);
    state::write_json(&dir.join("state.json"), &saved).map_err(abort)?;
    if let Some(p) = &a.pid_file {
        write_pid_file(p, pid.as_raw()).map_err(abort)?;
    }
    child.commit().map_err(|e| abort(e.into()))?;
    Ok((saved, child, relay))
}

/// Once the init is set up in its user namespace: the spec's mappings must be those of
/// a namespace joined by path (runc 1.2's check), and the exec fifo goes to the
/// container's root (as runc chowns it), for the init to open it as that root.
fn user_ns_done(plan: &engine::Plan, pid: Pid, fifo: &Path) -> Result<(), String> {
    let maps = engine::id_maps_of(pid);
    let sorted = |m: &[(u32, u32, u32)]| {
        let mut m = m.to_vec();
        m.sort();
        m
    };
    let given = (sorted(&plan.uid_map), sorted(&plan.gid_map));
    if !plan.uid_map.is_empty() && given != (sorted(&maps.0), sorted(&maps.1)) {
        return Err(format!(
            "config.json: linux.uidMappings/gidMappings {:?} {:?} are not those of the user namespace joined ({:?} {:?}); fix them or remove them",
            given.0, given.1, maps.0, maps.1
        ));
    }
    let Some((uid, gid)) = engine::host_root(&maps) else {
        return Err(
            "the container's root (id 0) is not mapped in its user namespace; map containerID 0"
                .into(),
        );
    };
    std::os::unix::fs::chown(fifo, Some(uid), Some(gid))
        .map_err(|e| format!("cannot chown {}: {e}", fifo.display()))
}

/// Opens the exec fifo, so the init goes on to exec; returns once it did (or died).
pub fn release(root: &Path, saved: &Saved) -> Result<(), String> {
    let fifo = state::dir(root, &saved.id).join(engine::EXEC_FIFO);
    let fd = open(
        &fifo,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        format!(
            "cannot open {}: {e}; is the container created?",
            fifo.display()
        )
    })?;
    let mut f = fs::File::from(fd);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut b = [0u8; 1];
        match f.read(&mut b) {
            Ok(1) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(Errno::EAGAIN as i32) => {}
            Err(e) => return Err(format!("cannot read {}: {e}", fifo.display())),
        }
        if !saved.alive() {
            let _ = fs::remove_file(&fifo);
            return Err(format!(
                "container {} exited before it started; see its output",
                saved.id
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "container {} did not take the go-ahead in 30 s; delete it and try again",
                saved.id
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = fs::remove_file(&fifo);
    Ok(())
}

/// `start ID`.
pub fn start(g: &Global, id: &str) -> Result<(), String> {
    let saved = state::load(&g.root, id)?;
    match saved.status(&g.root) {
        Status::Created => {
            release(&g.root, &saved)?;
            poststart(&g.root, &saved);
            Ok(())
        }
        Status::Stopped => Err(format!(
            "cannot start a container that has stopped; delete it (minnow-runc delete {id})"
        )),
        s => Err(format!(
            "cannot start an already {s} container; it was started before"
        )),
    }
}

/// `run`: create, start, wait; the exit code of the process (128+N for signal N).
pub fn run(g: &Global, a: &CreateArgs, detach: bool) -> Result<i32, String> {
    let mut c = create(g, a)?;
    let started = release(&g.root, &c.saved);
    let terminal = match (c.relay.take(), &started) {
        (Some(r), Ok(())) => Some(r.receive()),
        _ => None,
    };
    if started.is_ok() {
        poststart(&g.root, &c.saved);
    }
    if detach {
        c.guard.done();
        return started.map(|()| 0);
    }
    let pid = c.child.pid;
    let forwarder = forward_signals(pid);
    let code = match terminal {
        Some(Ok(t)) => t.pump(|| exited(pid)),
        Some(Err(e)) => {
            let _ = kill(pid, Signal::SIGKILL);
            wait(pid).and(Err(e))
        }
        None if started.is_ok() => wait(pid),
        None => Ok(1),
    };
    drop(forwarder);
    state::destroy(&state::dir(&g.root, &a.id));
    poststop(&c.saved);
    c.guard.done();
    started?;
    code
}

/// The poststart hooks; a failure is a warning (the process runs already).
fn poststart(root: &Path, saved: &Saved) {
    if let Some(list) = saved.hooks.as_ref().and_then(|h| h.poststart().clone()) {
        if let Err(e) = hooks::run("poststart", &list, &saved.oci(root)) {
            warn(&e);
        }
    }
}

/// The poststop hooks (in `delete` and at the end of `run`); failures are warnings.
pub fn poststop(saved: &Saved) {
    if let Some(list) = saved.hooks.as_ref().and_then(|h| h.poststop().clone()) {
        if let Err(e) = hooks::run("poststop", &list, &saved.oci_as(Status::Stopped)) {
            warn(&e);
        }
    }
}

/// The exit code of `pid` if it has exited (reaped), else None.
pub fn exited(pid: Pid) -> Result<Option<i32>, String> {
    match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Ok(Some(code)),
        Ok(WaitStatus::Signaled(_, sig, _)) => Ok(Some(128 + sig as i32)),
        Ok(_) | Err(Errno::EINTR) => Ok(None),
        Err(e) => Err(format!("waitpid: {e}")),
    }
}

fn wait(pid: Pid) -> Result<i32, String> {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(format!("waitpid: {e}")),
        }
    }
}

/// Forwards the signals a terminal or a shim sends to the container's init.
fn forward_signals(pid: Pid) -> Option<signal_hook::iterator::Handle> {
    use signal_hook::consts::*;
    let mut signals = signal_hook::iterator::Signals::new([
        SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH,
    ])
    .ok()?;
    let handle = signals.handle();
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if let Ok(s) = Signal::try_from(sig) {
                let _ = kill(pid, s);
            }
        }
    });
    Some(handle)
}
