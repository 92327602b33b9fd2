//! Small helpers every benchmark uses: running a set-up command, private work
//! directories, the repository's scripts.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// The last `n` non-empty lines, joined with " | " (at most 400 characters).
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    let t = lines[lines.len().saturating_sub(n)..].join(" | ");
    t.chars().take(400).collect()
}

/// Runs a set-up command to completion; its stdout, or an error with the end of its
/// stderr.
pub fn sh(cmd: &mut Command, what: &str) -> Result<String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(Error::spawn(program))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let text = if err.trim().is_empty() {
            String::from_utf8_lossy(&out.stdout).into_owned()
        } else {
            err.into_owned()
        };
        Err(Error::Command {
            what: what.to_string(),
            status: out.status.to_string(),
            output: tail(&text, 2),
        })
    }
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A private directory, removed when dropped unless `keep` is set.
pub struct WorkDir {
    pub path: PathBuf,
    pub keep: bool,
}

impl WorkDir {
    /// A fresh directory `PARENT/PREFIX.PID.NANOS` (mode 755: the lab's root sees it).
    pub fn new(parent: &Path, prefix: &str) -> Result<WorkDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = parent.join(format!("{prefix}.{}.{nanos:x}", std::process::id()));
        fs::create_dir_all(&path).map_err(Error::create_dir(&path))?;
        Ok(WorkDir { path, keep: false })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Fails unless the current directory is the top of the minnow repository (the benches
/// run its scripts: lab/run.sh, tests/guests/build.sh, resources/guest/mkrootfs.sh).
pub fn require_repo(script: &'static str) -> Result<()> {
    if Path::new(script).is_file() {
        Ok(())
    } else {
        Err(Error::NotInRepo { what: script })
    }
}

/// The minnow binary under test: `--minnow`, else `minnow` beside this program.
pub fn minnow_path(flag: Option<&Path>) -> Result<PathBuf> {
    match flag {
        Some(p) => Ok(p.to_path_buf()),
        None => Ok(std::env::current_exe()
            .map_err(Error::spawn("minnow-bench (current_exe)"))?
            .with_file_name("minnow")),
    }
}

/// Copies the minnow binary under test (and this program) into `work`, so a rebuild
/// during the run does not change them. Returns the copies.
pub fn private_binaries(work: &Path, minnow: &Path) -> Result<(PathBuf, PathBuf)> {
    let fix = "build minnow first (cargo build --release --workspace) or pass --minnow PATH";
    let m = work.join("minnow");
    crate::error::copy(minnow, &m, fix)?;
    let me = std::env::current_exe().map_err(Error::spawn("minnow-bench (current_exe)"))?;
    let b = work.join("minnow-bench");
    crate::error::copy(me, &b, fix)?;
    // minnow-runc, for the parity rows of `startup` (they say so when it is missing).
    let runc = minnow.with_file_name("minnow-runc");
    if runc.is_file() {
        crate::error::copy(&runc, work.join("minnow-runc"), fix)?;
    }
    Ok((m, b))
}

/// Builds the tiny test guests (tests/guests/build.sh) into `dir`.
pub fn build_guests(dir: &Path) -> Result<()> {
    require_repo("tests/guests/build.sh")?;
    sh(
        Command::new("timeout")
            .args(["120", "sh", "tests/guests/build.sh"])
            .arg(dir),
        "tests/guests/build.sh",
    )
    .map(drop)
}

/// `minnow run --help`, to see which flags this minnow has.
pub fn minnow_run_help(minnow: &Path) -> String {
    Command::new(minnow)
        .args(["run", "--help"])
        .stdin(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The guest-kernel cache ($MINNOW_CACHE, default /var/cache/minnow).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("MINNOW_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/minnow"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_and_sh() {
        assert_eq!(tail("a\n\nb\nc\n", 2), "b | c");
        assert_eq!(sh(Command::new("echo").arg("hi"), "echo").unwrap(), "hi\n");
        let e = sh(
            Command::new("sh").args(["-c", "echo bad >&2; exit 3"]),
            "step",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e, "step failed (exit status: 3): bad");
    }
}
