//! The cgroup v2 device program (engine/bpf.rs) against the kernel: a shell moved into a
//! cgroup with the program for "deny all, allow /dev/null" opens /dev/null and is refused
//! /dev/zero; in a cgroup without it (the control) both open. Needs root and a cgroup2
//! mount (/sys/fs/cgroup on a v2 host, /sys/fs/cgroup/unified on a hybrid one).

use std::path::{Path, PathBuf};
use std::process::Command;

use minnow_container::engine::bpf;

fn cgroup2_root() -> PathBuf {
    for p in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        if Path::new(p).join("cgroup.procs").exists() && !Path::new(p).join("tasks").exists() {
            return PathBuf::from(p);
        }
    }
    panic!("this test needs a cgroup2 mount (/sys/fs/cgroup or /sys/fs/cgroup/unified)");
}

fn run_in(dir: &Path) -> String {
    let script = format!(
        "echo $$ > {}/cgroup.procs; cat /dev/null && echo null-ok; \
         head -c1 /dev/zero >/dev/null 2>&1 && echo zero-ok || echo zero-denied",
        dir.display()
    );
    let o = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(o.status.success(), "{o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_device_program_allows_only_its_rules() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root");
    let root = cgroup2_root();
    let id = std::process::id();
    let with = root.join(format!("minnow-bpf-test-{id}"));
    let without = root.join(format!("minnow-bpf-control-{id}"));
    std::fs::create_dir(&with).unwrap();
    std::fs::create_dir(&without).unwrap();
    let rules = vec![(false, "a".to_string()), (true, "c 1:3 rwm".to_string())];
    let attached = bpf::attach(&with, &rules);
    let (got, control) = (run_in(&with), run_in(&without));
    let _ = std::fs::remove_dir(&with);
    let _ = std::fs::remove_dir(&without);
    attached.unwrap();
    assert_eq!(got, "null-ok\nzero-denied\n");
    assert_eq!(control, "null-ok\nzero-ok\n");
}
