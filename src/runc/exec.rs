//! `exec`: a process in a running container, given as `--process FILE` (an OCI process
//! object, as shims pass it) or inline (the container's process with the command, `-e`,
//! `--cwd` and `-u` changed). Checked and converted by the engine like config.json's.

use std::path::PathBuf;

use minnow_container::engine::{self, cgroup, Status};
use nix::sys::signal::{kill, Signal};
use oci_spec::runtime::{Process, Spec};

use super::state;
use super::Global;

/// How `exec` was called.
pub struct ExecArgs {
    pub id: String,
    pub process: Option<PathBuf>,
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub user: Option<String>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    /// `--tty` (inline form): the process gets a terminal from `console_socket`.
    pub tty: bool,
    pub console_socket: Option<PathBuf>,
}

fn process(spec: &Spec, a: &ExecArgs) -> Result<Process, String> {
    if let Some(file) = &a.process {
        let text = std::fs::read(file)
            .map_err(|e| format!("cannot read --process {}: {e}", file.display()))?;
        return serde_json::from_slice(&text).map_err(|e| {
            format!(
                "cannot parse --process {}: {e}; give an OCI process object",
                file.display()
            )
        });
    }
    if a.command.is_empty() {
        return Err("exec needs a command after the container id, or --process FILE".into());
    }
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(a.command.clone()));
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(a.env.iter().cloned());
    p.set_env(Some(env));
    if let Some(c) = &a.cwd {
        p.set_cwd(c.into());
    }
    if let Some(u) = &a.user {
        let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
        let parse = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| format!("--user {u}: give UID[:GID] as numbers"))
        };
        let mut user = p.user().clone();
        user.set_uid(parse(uid)?).set_gid(parse(gid)?);
        p.set_user(user);
    }
    p.set_terminal(Some(a.tty));
    Ok(p)
}

/// `exec`: 0 with --detach, else the process's exit code.
pub fn exec(g: &Global, a: &ExecArgs) -> Result<i32, String> {
    let saved = state::load(&g.root, &a.id)?;
    if saved.status(&g.root) == Status::Stopped {
        return Err(format!(
            "cannot exec in a stopped container {}; start a new one",
            a.id
        ));
    }
    let path = saved.bundle.join("config.json");
    let mut spec = std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|b| engine::spec::parse(&b).map_err(|e| e.to_string()))
        .map_err(|e| {
            format!(
                "cannot read {}: {e}; the bundle must stay until delete",
                path.display()
            )
        })?;
    let p = process(&spec, a)?;
    spec.set_process(Some(p)).set_hooks(None);
    let plan = engine::spec::plan(&spec, &saved.bundle, &a.id)?;
    let cg = cgroup::cgroup(&saved.cgroup);
    let (console, relay) =
        super::create::console(plan.process.terminal, a.console_socket.as_deref(), a.detach)?;
    let pid = engine::exec::spawn(saved.pid, &cg, &plan, console)?;
    if let Some(f) = &a.pid_file {
        std::fs::write(f, pid.as_raw().to_string())
            .map_err(|e| format!("cannot write --pid-file {}: {e}", f.display()))?;
    }
    if a.detach {
        return Ok(0);
    }
    // No thread can be started now (the runtime's children go to another PID
    // namespace): forward signals from a polling loop.
    let mut signals = {
        use signal_hook::consts::*;
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT]).ok()
    };
    let mut exited = || {
        for sig in signals.iter_mut().flat_map(|s| s.pending()) {
            if let Ok(sig) = Signal::try_from(sig) {
                let _ = kill(pid, sig);
            }
        }
        super::create::exited(pid)
    };
    if let Some(relay) = relay {
        let terminal = relay.receive().inspect_err(|_| {
            let _ = kill(pid, Signal::SIGKILL);
        });
        return terminal?.pump(exited);
    }
    loop {
        if let Some(code) = exited()? {
            return Ok(code);
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}
