//! The spec's hooks that run in the runtime's namespaces: prestart and createRuntime
//! (during `create`, after the container's namespaces and mounts exist, before
//! pivot_root: a failure fails `create`), poststart (after `start`) and poststop (in
//! `delete`), whose failures are warnings. Each gets the state JSON on stdin and is
//! killed after its `timeout` seconds.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

/// Runs `hooks` (named `kind` in messages) with `state` on stdin; the first failure.
pub fn run(kind: &str, hooks: &[Hook], state: &serde_json::Value) -> Result<(), String> {
    for (i, h) in hooks.iter().enumerate() {
        let what = format!("hooks.{kind}[{i}] {}", h.path().display());
        let args = h.args().clone().unwrap_or_default();
        let mut cmd = Command::new(h.path());
        if let Some((first, rest)) = args.split_first() {
            cmd.arg0(first).args(rest);
        }
        if let Some(env) = h.env() {
            cmd.env_clear();
            for e in env {
                let (k, v) = e.split_once('=').unwrap_or((e, ""));
                cmd.env(k, v);
            }
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("{what}: cannot run it: {e}; fix the hook's path"))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(state.to_string().as_bytes());
        }
        let deadline = h
            .timeout()
            .filter(|t| *t > 0)
            .map(|t| Instant::now() + Duration::from_secs(t as u64));
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) => {}
                Err(e) => return Err(format!("{what}: {e}")),
            }
            if deadline.is_some_and(|d| Instant::now() > d) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{what} timed out after {} s; make it faster or raise its timeout",
                    h.timeout().unwrap_or(0)
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        if !status.success() {
            return Err(format!("{what} failed ({status}); fix the hook"));
        }
    }
    Ok(())
}
