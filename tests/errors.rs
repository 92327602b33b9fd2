//! Bad input: one-line errors that name the problem and the fix, a non-zero exit, no
//! panic.

mod common;

use common::{guest, minnow, run_with_timeout, text};

/// Runs minnow with `args` and returns (exit code, stderr), checking the error shape.
fn fails(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = minnow();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run_with_timeout(cmd, 30);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "args {args:?}: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "expected one error line: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{stderr}"
    );
    errors[0].to_string()
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn missing_kvm_device() {
    let k = guest("hello64.elf");
    let e = fails(
        &["run", "--kernel", k.to_str().unwrap()],
        &[("MINNOW_KVM_DEVICE", "/nonexistent/kvm")],
    );
    assert!(
        e.contains("/nonexistent/kvm does not exist") && e.contains("load kvm_intel or kvm_amd"),
        "{e}"
    );
}

#[test]
fn kvm_device_that_is_not_kvm() {
    let k = guest("hello64.elf");
    let e = fails(
        &["run", "--kernel", k.to_str().unwrap()],
        &[("MINNOW_KVM_DEVICE", "/dev/null")],
    );
    assert!(e.contains("cannot use KVM device /dev/null"), "{e}");
}

#[test]
fn missing_kernel() {
    let e = fails(&["run", "--kernel", "/nonexistent/vmlinux"], &[]);
    assert!(
        e.contains("cannot open kernel /nonexistent/vmlinux") && e.contains("--kernel"),
        "{e}"
    );
}

#[test]
fn no_kernel_given() {
    let e = fails(&["run"], &[]);
    assert!(e.contains("no kernel given"), "{e}");
}

#[test]
fn empty_kernel() {
    let d = tmp();
    let p = d.path().join("empty");
    std::fs::write(&p, b"").unwrap();
    let e = fails(&["run", "--kernel", p.to_str().unwrap()], &[]);
    assert!(e.contains("is empty"), "{e}");
}

#[test]
fn kernel_that_is_not_a_kernel() {
    let e = fails(&["run", "--kernel", "/bin/true"], &[]);
    assert!(e.contains("/bin/true is not a kernel"), "{e}");
    let d = tmp();
    let e = fails(&["run", "--kernel", d.path().to_str().unwrap()], &[]);
    assert!(e.contains("is not a kernel"), "{e}");
}

#[test]
fn initrd_too_big_for_memory() {
    let d = tmp();
    let p = d.path().join("initrd");
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(40 << 20).unwrap();
    let k = guest("hello64.elf");
    let e = fails(
        &[
            "run",
            "--kernel",
            k.to_str().unwrap(),
            "--initrd",
            p.to_str().unwrap(),
            "--mem-mib",
            "32",
        ],
        &[],
    );
    assert!(e.contains("initrd") && e.contains("raise --mem-mib"), "{e}");
}

#[test]
fn missing_initrd() {
    let k = guest("hello64.elf");
    let e = fails(
        &[
            "run",
            "--kernel",
            k.to_str().unwrap(),
            "--initrd",
            "/nonexistent/initrd",
        ],
        &[],
    );
    assert!(e.contains("cannot open initrd /nonexistent/initrd"), "{e}");
}

#[test]
fn memory_out_of_range() {
    let k = guest("hello64.elf");
    let e = fails(
        &["run", "--kernel", k.to_str().unwrap(), "--mem-mib", "4"],
        &[],
    );
    assert!(e.contains("--mem-mib 4 is out of range"), "{e}");
}

#[test]
fn vcpus_out_of_range() {
    let k = guest("hello64.elf");
    let e = fails(
        &["run", "--kernel", k.to_str().unwrap(), "--vcpus", "0"],
        &[],
    );
    assert!(e.contains("--vcpus 0 is out of range"), "{e}");
    let e = fails(
        &["run", "--kernel", k.to_str().unwrap(), "--vcpus", "500"],
        &[],
    );
    assert!(e.contains("--vcpus 500"), "{e}");
}

#[test]
fn config_file_errors() {
    let e = fails(&["run", "--config", "/nonexistent/vm.json"], &[]);
    assert!(
        e.contains("cannot read config file /nonexistent/vm.json"),
        "{e}"
    );
    let d = tmp();
    let p = d.path().join("vm.json");
    std::fs::write(&p, r#"{"kernel": "/k", "memory": 64}"#).unwrap();
    let e = fails(&["run", "--config", p.to_str().unwrap()], &[]);
    assert!(e.contains("unknown field `memory`"), "{e}");
}

#[test]
fn config_file_boots_a_guest() {
    let d = tmp();
    let p = d.path().join("vm.json");
    let k = guest("hello64.elf");
    std::fs::write(
        &p,
        format!(
            r#"{{"kernel": "{}", "mem-mib": 32, "vcpus": 1}}"#,
            k.display()
        ),
    )
    .unwrap();
    let mut cmd = minnow();
    cmd.args(["run", "--config", p.to_str().unwrap()]);
    let out = run_with_timeout(cmd, 30);
    let (stdout, stderr) = text(&out);
    assert!(stdout.contains("hello from 64-bit"), "{stdout} {stderr}");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn hugepages_need_reserved_pages() {
    let reserved: u64 = std::fs::read_to_string("/proc/sys/vm/nr_hugepages")
        .map(|s| s.trim().parse().unwrap_or(0))
        .unwrap_or(0);
    let k = guest("hello64.elf");
    let args = [
        "run",
        "--kernel",
        k.to_str().unwrap(),
        "--mem-mib",
        "32",
        "--hugepages",
    ];
    if reserved == 0 {
        let e = fails(&args, &[]);
        assert!(
            e.contains("reserve huge pages") && e.contains("--hugepages"),
            "{e}"
        );
    } else {
        let mut cmd = minnow();
        cmd.args(args);
        let out = run_with_timeout(cmd, 30);
        let (stdout, stderr) = text(&out);
        assert!(stdout.contains("hello from 64-bit"), "{stdout} {stderr}");
    }
}

#[test]
fn disk_errors() {
    let k = guest("hello64.elf");
    let k = k.to_str().unwrap();
    let e = fails(
        &["run", "--kernel", k, "--disk", "/nonexistent/disk.img"],
        &[],
    );
    assert!(e.contains("cannot open disk /nonexistent/disk.img"), "{e}");
    let d = tmp();
    let e = fails(
        &["run", "--kernel", k, "--disk", d.path().to_str().unwrap()],
        &[],
    );
    assert!(e.contains("is a directory"), "{e}");
    let odd = d.path().join("odd.img");
    std::fs::write(&odd, b"abc").unwrap();
    let e = fails(
        &["run", "--kernel", k, "--disk", odd.to_str().unwrap()],
        &[],
    );
    assert!(e.contains("512-byte sectors"), "{e}");
    // Flag syntax errors come from clap: exit 2, one error line.
    let mut cmd = minnow();
    cmd.args(["run", "--kernel", k, "--disk", "x.img,bogus"]);
    let out = run_with_timeout(cmd, 30);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown disk option `bogus`"), "{stderr}");
}
