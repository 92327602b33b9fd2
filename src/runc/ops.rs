//! The commands on an existing container: `state`, `kill`, `delete`, `list`, `ps`,
//! `pause` and `resume`.

use std::time::{Duration, Instant};

use minnow_container::engine::{cgroup, Status};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::state::{self, Saved};
use super::Global;

/// `state ID`: the runtime spec's state JSON.
pub fn show_state(g: &Global, id: &str) -> Result<(), String> {
    let saved = state::load(&g.root, id)?;
    let text = serde_json::to_string_pretty(&saved.oci(&g.root)).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

/// A signal by name (KILL, SIGKILL, kill) or number.
pub fn parse_signal(s: &str) -> Result<Signal, String> {
    let bad = || format!("unknown signal {s:?}; give a name such as TERM or KILL, or a number");
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>().map_err(|_| bad())
}

/// `kill ID [SIGNAL] [--all]`.
pub fn kill_cmd(g: &Global, id: &str, signal: Option<&str>, all: bool) -> Result<(), String> {
    let sig = parse_signal(signal.unwrap_or("SIGTERM"))?;
    let saved = state::load(&g.root, id)?;
    if saved.status(&g.root) == Status::Stopped {
        return Err(format!("container {id} is not running; nothing to signal"));
    }
    if all {
        for pid in cgroup::cgroup(&saved.cgroup).pids() {
            let _ = kill(Pid::from_raw(pid), sig);
        }
        return Ok(());
    }
    kill(Pid::from_raw(saved.pid), sig)
        .map_err(|e| format!("cannot send {sig} to container {id}: {e}"))
}

/// Kills everything in the container and waits until its init is gone.
fn stop_now(saved: &Saved) {
    let _ = cgroup::freeze(&saved.cgroup, false);
    let cg = cgroup::cgroup(&saved.cgroup);
    if saved.alive() {
        let _ = kill(Pid::from_raw(saved.pid), Signal::SIGKILL);
    }
    cg.kill_all();
    let deadline = Instant::now() + Duration::from_secs(10);
    while saved.alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `delete [--force] ID`: a stopped or created container (any with `--force`).
pub fn delete(g: &Global, id: &str, force: bool) -> Result<(), String> {
    let dir = state::dir(&g.root, id);
    let saved = match state::load(&g.root, id) {
        Ok(s) => s,
        // A half-made container (its create was killed before its guard cleaned up).
        Err(_) if force && dir.is_dir() => {
            state::destroy(&dir);
            return Ok(());
        }
        Err(_) if force => return Ok(()),
        Err(e) => return Err(e),
    };
    match saved.status(&g.root) {
        Status::Stopped | Status::Created => {}
        s if !force => {
            return Err(format!(
                "cannot delete container {id} that is not stopped: {s}; stop it first (minnow-runc kill {id} KILL) or use delete --force"
            ))
        }
        _ => {}
    }
    stop_now(&saved);
    state::destroy(&dir);
    super::create::poststop(&saved);
    Ok(())
}

/// `list [-q] [--format table|json]`.
pub fn list(g: &Global, quiet: bool, format: &str) -> Result<(), String> {
    let all = state::all(&g.root);
    if quiet {
        for s in &all {
            println!("{}", s.id);
        }
        return Ok(());
    }
    match format {
        "json" => {
            let v: Vec<serde_json::Value> = all.iter().map(|s| s.oci(&g.root)).collect();
            println!("{}", serde_json::Value::Array(v));
        }
        "table" => {
            println!(
                "{:<12} {:<10} {:<10} {:<40} {:<30} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            );
            for s in &all {
                let st = s.status(&g.root);
                let pid = if st == Status::Stopped { 0 } else { s.pid };
                println!(
                    "{:<12} {:<10} {:<10} {:<40} {:<30} root",
                    s.id,
                    pid,
                    st,
                    s.bundle.display(),
                    s.created
                );
            }
        }
        f => return Err(format!("unknown --format {f}; use table or json")),
    }
    Ok(())
}

/// `ps [--format table|json] ID [PS_ARGS...]`: the container's processes, `ps -ef`'s
/// lines filtered by the cgroup (as runc does), or the PIDs as JSON.
pub fn ps(g: &Global, id: &str, format: &str, ps_args: &[String]) -> Result<(), String> {
    let saved = state::load(&g.root, id)?;
    let pids = cgroup::cgroup(&saved.cgroup).pids();
    match format {
        "json" => {
            println!("{}", serde_json::json!(pids));
            return Ok(());
        }
        "table" => {}
        f => return Err(format!("unknown --format {f}; use table or json")),
    }
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| format!("cannot run ps: {e}; install procps"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or("ps output has no PID column; give ps options that print one")?;
    println!("{header}");
    for l in lines {
        let pid: Option<i32> = l.split_whitespace().nth(col).and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{l}");
        }
    }
    Ok(())
}

/// `pause ID` / `resume ID`: the freezer cgroup.
pub fn pause(g: &Global, id: &str, frozen: bool) -> Result<(), String> {
    let saved = state::load(&g.root, id)?;
    let st = saved.status(&g.root);
    let want = if frozen {
        Status::Running
    } else {
        Status::Paused
    };
    if st != want {
        return Err(format!("container {id} is {st}, not {want}"));
    }
    Ok(cgroup::freeze(&saved.cgroup, frozen)?)
}
