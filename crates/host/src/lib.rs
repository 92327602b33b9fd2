//! Small facts about the host that several parts of minnow ask: where a program is,
//! whether a process is alive, whether /dev/kvm is PVM. No policy lives here.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::path::{Path, PathBuf};

/// Directories searched after `$PATH`, where root's tools live on Debian.
const SYSTEM_DIRS: [&str; 4] = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// The first `name` that is a file in `$PATH`, then in the system directories.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SYSTEM_DIRS.map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Whether process `pid` exists (a zombie counts; pid 0 and below never do).
pub fn pid_alive(pid: i32) -> bool {
    pid > 0 && Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether this host's KVM is PVM (the `kvm_pvm` module): guests run at CPL 3 in the
/// lower half, so only PVM-enabled guest kernels boot.
pub fn is_pvm() -> bool {
    Path::new("/sys/module/kvm_pvm").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sh_and_this_process() {
        assert!(which("sh").is_some());
        assert!(which("no-such-program-minnow").is_none());
        assert!(pid_alive(std::process::id() as i32));
        assert!(!pid_alive(0) && !pid_alive(-1));
    }
}
