//! Helpers for the integration tests: the minnow binary and the tiny guests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The minnow binary under test.
pub fn minnow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_minnow"))
}

/// Builds the guests in tests/guests once per test process; returns the directory.
pub fn guests() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("guests-{}", std::process::id()));
        let status = Command::new("sh")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/guests/build.sh"
            ))
            .arg(&out)
            .status()
            .expect("run tests/guests/build.sh");
        assert!(status.success(), "building the test guests failed");
        out
    })
}

/// A guest binary's path.
pub fn guest(name: &str) -> PathBuf {
    guests().join(name)
}

/// Runs `minnow run --kernel GUEST --mem-mib 32 ARGS...` with no stdin, under a timeout.
pub fn run_guest(name: &str, args: &[&str]) -> Output {
    let mut cmd = minnow();
    cmd.arg("run")
        .arg("--kernel")
        .arg(guest(name))
        .args(["--mem-mib", "32"])
        .args(args)
        .stdin(Stdio::null());
    run_with_timeout(cmd, 30)
}

/// Runs a command, killing it after `secs` seconds (the test then fails on its output).
pub fn run_with_timeout(cmd: Command, secs: u64) -> Output {
    let mut wrapped = Command::new("timeout");
    wrapped.arg("-s").arg("KILL").arg(secs.to_string());
    wrapped.arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    wrapped.stdin(Stdio::null());
    wrapped.output().expect("spawn minnow")
}

/// Stdout and stderr as text.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
