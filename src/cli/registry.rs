//! Registries from `minnow`: `image pull`/`push`, `login`/`logout` and the pull that
//! `container run` and `run --image` do for a missing image all run `minnow-registry`
//! (src/registry/), so that the registry stack is not linked into this binary, whose
//! `run` is the VMM. A run whose image is in the store starts nothing.

use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use minnow_image::Store;
use minnow_registry::names_a_registry;

#[path = "../registry/args.rs"]
mod args;
pub use args::{LoginArgs, LogoutArgs, RegistryFlags};

/// An error `minnow-registry` has already printed (its one line on stderr): the caller
/// exits 1 without another line.
pub const REPORTED: &str = "";

/// `minnow-registry`: beside this program, else on PATH.
fn helper() -> Result<PathBuf, String> {
    std::env::current_exe()
        .ok()
        .map(|e| e.with_file_name("minnow-registry"))
        .filter(|p| p.is_file())
        .or_else(|| minnow_host::which("minnow-registry"))
        .ok_or_else(|| {
            "minnow-registry not found beside minnow or on PATH; install both (make install)"
                .to_string()
        })
}

/// `minnow-registry` with the global flags.
fn command(store: Option<&Path>, log_level: &str) -> Result<Command, String> {
    let mut c = Command::new(helper()?);
    c.args(["--log-level", log_level]);
    if let Some(s) = store {
        c.arg("--store").arg(s);
    }
    Ok(c)
}

/// Runs `minnow-registry ARGS` in this process's place (its terminal, its exit code).
pub fn exec(store: Option<&Path>, log_level: &str, args: &[String]) -> Result<i32, String> {
    let e = command(store, log_level)?.args(args).exec();
    Err(format!("cannot run minnow-registry: {e}"))
}

/// Pulls `name` into the store when it is spelled as a registry reference
/// (`HOST[:PORT]/REPO[:TAG]`) and the store has no image of that name, as `docker run`
/// does. Reads only `index.json` when the image is there.
pub fn ensure_image(store: &Store, name: &str, log_level: &str) -> Result<(), String> {
    if !names_a_registry(name) || store.has_name(name) {
        return Ok(());
    }
    // The pull's summary line goes to stderr: stdout is the workload's.
    let stderr = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("cannot pass stderr to minnow-registry: {e}"))?;
    let status = command(Some(store.root()), log_level)?
        .args(["pull", name])
        .stdout(stderr)
        .status()
        .map_err(|e| format!("cannot run minnow-registry: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(REPORTED.into())
    }
}
