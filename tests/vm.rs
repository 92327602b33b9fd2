//! Tier 2: tiny guests of our own on the host's /dev/kvm (real KVM or PVM). Each test boots
//! a guest built from tests/guests and checks what minnow did with it.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{guest, minnow, run_guest, text};

#[test]
fn elf_guest_prints_and_resets_cleanly() {
    let out = run_guest("hello64.elf", &[]);
    let (stdout, stderr) = text(&out);
    assert!(
        stdout.contains("minnow-guest: hello from 64-bit"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.contains("VM stopped: Reset"), "{stderr}");
}

#[test]
fn bzimage_guest_boots_through_the_64bit_protocol() {
    let out = run_guest("bzimage.bin", &[]);
    let (stdout, stderr) = text(&out);
    assert!(
        stdout.contains("minnow-guest: hello from bzImage"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
}

#[test]
fn pvh_guest_gets_start_info() {
    let out = run_guest("pvh.elf", &[]);
    let (stdout, stderr) = text(&out);
    // The guest checks the hvm_start_info magic that rbx points at.
    assert!(
        stdout.contains("minnow-guest: hello from PVH"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(!stdout.contains("bad magic"));
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
}

#[test]
fn boot_timer_write_is_logged() {
    // hello64 prints a line first; first.elf's very first instruction is the write.
    for guest in ["hello64.elf", "first.elf"] {
        let out = run_guest(guest, &[]);
        assert!(out.status.success(), "{guest}: {out:?}");
        let (_, stderr) = text(&out);
        let line = stderr
            .lines()
            .find(|l| l.contains("guest boot time:"))
            .unwrap_or_else(|| panic!("{guest}: no boot time logged: {stderr}"));
        let number_after = |marker: &str| -> f64 {
            line.split(marker)
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{guest}: no number after {marker:?}: {line}"))
        };
        let ms = number_after("guest boot time:");
        let cpu_ms = number_after("VMM CPU so far");
        assert!(ms > 0.0, "{line}");
        assert!(cpu_ms > 0.0, "{line}");
    }
}

#[test]
fn boot_timer_is_not_logged_without_the_write() {
    // badmmio writes wrong values and sizes to the boot timer: none of them count.
    let out = run_guest("badmmio.elf", &[]);
    let (_, stderr) = text(&out);
    assert!(!stderr.contains("guest boot time"), "{stderr}");
}

#[test]
fn hostile_guest_does_not_crash_the_vmm() {
    let out = run_guest("badmmio.elf", &[]);
    let (stdout, stderr) = text(&out);
    assert!(
        stdout.contains("minnow-guest: survived"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn triple_fault_is_a_crash_with_a_reason() {
    let out = run_guest("triplefault.elf", &[]);
    let (stdout, stderr) = text(&out);
    assert!(stdout.contains("minnow-guest: faulting"), "{stdout}");
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("TripleFault"), "{stderr}");
    assert!(
        stderr.contains("vCPU 0 at the triple fault: rip 0x"),
        "the vCPU's state is logged: {stderr}"
    );
}

#[test]
fn smp_guest_boots_with_several_vcpus() {
    let out = run_guest("hello64.elf", &["--vcpus", "2"]);
    let (stdout, stderr) = text(&out);
    assert!(
        stdout.contains("hello from 64-bit"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
}

#[test]
fn console_input_reaches_the_guest() {
    let mut child = minnow()
        .args(["run", "--mem-mib", "32", "--kernel"])
        .arg(guest("echo.elf"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("echo ready"), "{line}");
    stdin.write_all(b"hello q").unwrap();
    stdin.flush().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(rest.contains("hello q"), "echoed: {rest:?}");
    assert!(rest.contains("echo done"), "{rest:?}");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn console_input_longer_than_the_uart_fifo_arrives_whole() {
    // One write of more than the UART's 64-byte receive FIFO, with stdin kept open: the
    // part that does not fit must follow when the guest has drained the FIFO, without
    // waiting for more input.
    let mut child = minnow()
        .args(["run", "--mem-mib", "32", "--kernel"])
        .arg(guest("echo.elf"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("echo ready"), "{line}");
    let payload: Vec<u8> = b"0123456789abcdef".repeat(20);
    stdin.write_all(&payload).unwrap();
    stdin.write_all(b"q").unwrap();
    stdin.flush().unwrap();
    let status = wait_with_deadline(&mut child, 20);
    drop(stdin);
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut rest).unwrap();
    let rest = String::from_utf8_lossy(&rest);
    let status = status.unwrap_or_else(|| {
        panic!(
            "the guest did not get all {} bytes within 20 s; it echoed {:?}",
            payload.len() + 1,
            rest
        )
    });
    assert!(
        rest.contains(std::str::from_utf8(&payload).unwrap()),
        "echoed: {rest:?}"
    );
    assert!(rest.contains("echo done"), "{rest:?}");
    assert_eq!(status.code(), Some(0));
}

/// Starts the halting guest and waits until it has halted.
fn start_halted_guest() -> std::process::Child {
    start_halted_guest_with(&[])
}

/// The same, with more `minnow run` flags.
fn start_halted_guest_with(flags: &[&str]) -> std::process::Child {
    let mut child = minnow()
        .args(["run", "--mem-mib", "32", "--kernel"])
        .arg(guest("halt.elf"))
        .args(flags)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("halting"), "{line}");
    child
}

fn wait_with_deadline(
    child: &mut std::process::Child,
    secs: u64,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

/// Whether KVM's PIT worker thread of VMM `pid` (`kvm-pit/PID`) exists.
fn has_pit(pid: u32) -> bool {
    let name = format!("kvm-pit/{pid}");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim_end() == name))
}

#[test]
fn a_guest_that_is_not_linux_gets_no_pit_unless_asked() {
    for (flags, want) in [(&[][..], false), (&["--pit", "on"][..], true)] {
        let mut child = start_halted_guest_with(flags);
        assert_eq!(has_pit(child.id()), want, "minnow run {flags:?}");
        sigterm(child.id());
        let status = wait_with_deadline(&mut child, 10).expect("minnow did not stop");
        assert_eq!(status.code(), Some(0), "{flags:?}");
    }
}

#[test]
fn ctrl_a_x_quits() {
    let mut child = start_halted_guest();
    child.stdin.as_mut().unwrap().write_all(b"\x01x").unwrap();
    let status = wait_with_deadline(&mut child, 10).expect("minnow did not quit on Ctrl-A x");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn halted_guest_does_not_spin_and_sigterm_stops_it() {
    let mut child = start_halted_guest();
    let pid = child.id();
    let cpu = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    let before = cpu(pid);
    std::thread::sleep(Duration::from_millis(500));
    let used = cpu(pid) - before;
    // Clock ticks (normally 10 ms): a spinning vCPU would use ~50 in 500 ms.
    assert!(used < 25, "halted guest used {used} ticks of CPU in 0.5 s");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = wait_with_deadline(&mut child, 10).expect("minnow did not stop on SIGTERM");
    assert_eq!(status.code(), Some(0));
}

/// Writes a 4 KiB image starting with `MINNOW-DISK-TEST`.
fn disk_image(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("vb.img");
    let mut data = b"MINNOW-DISK-TEST".to_vec();
    data.resize(4096, 0x5a);
    std::fs::write(&p, data).unwrap();
    p
}

#[test]
fn guest_reads_and_writes_a_virtio_blk_disk() {
    let dir = tempfile::tempdir().unwrap();
    let img = disk_image(dir.path());
    let out = run_guest("virtioblk.elf", &["--disk", img.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(
        stdout.contains("virtio-blk: capacity 0x8"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stdout.contains("virtio-blk: read MINNOW-DISK-TEST"),
        "{stdout}"
    );
    assert!(stdout.contains("virtio-blk: done"), "{stdout}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let after = std::fs::read(&img).unwrap();
    assert_eq!(&after[..16], b"MINNOW-DISK-DONE");
    assert!(
        after[16..].iter().all(|&b| b == 0x5a),
        "the rest of the disk is untouched"
    );
}

#[test]
fn read_only_disk_refuses_guest_writes() {
    let dir = tempfile::tempdir().unwrap();
    let img = disk_image(dir.path());
    let before = std::fs::read(&img).unwrap();
    let arg = format!("{},ro", img.display());
    let out = run_guest("virtioblk.elf", &["--disk", &arg]);
    let (stdout, stderr) = text(&out);
    assert!(
        stdout.contains("virtio-blk: read-only"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stdout.contains("virtio-blk: write status 1"),
        "IOERR expected: {stdout}"
    );
    assert_eq!(std::fs::read(&img).unwrap(), before);
}

#[test]
fn disk_in_use_by_another_vm_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let img = disk_image(dir.path());
    let mut first = minnow()
        .args(["run", "--mem-mib", "32", "--kernel"])
        .arg(guest("halt.elf"))
        .arg("--disk")
        .arg(&img)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(first.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("halting"), "{line}");
    let out = run_guest("virtioblk.elf", &["--disk", img.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is in use by another process"), "{stderr}");
}

#[test]
fn guest_without_a_disk_sees_no_device() {
    let out = run_guest("virtioblk.elf", &[]);
    let (stdout, _) = text(&out);
    assert!(stdout.contains("virtio-blk: no device"), "{stdout}");
}

#[test]
fn workload_exit_status_becomes_minnows_exit_code() {
    let out = run_guest("exit42.elf", &[]);
    let (stdout, stderr) = text(&out);
    assert!(stdout.contains("workload exits 42"), "{stdout}");
    assert_eq!(out.status.code(), Some(42), "{stderr}");
}

#[test]
fn pvm_host_is_named_at_start_up() {
    // On a PVM host (module kvm_pvm) stock kernels cannot boot; minnow says so once at
    // start-up. On hardware KVM it must not.
    let pvm = std::path::Path::new("/sys/module/kvm_pvm").exists();
    let out = run_guest("first.elf", &[]);
    assert!(out.status.success(), "{out:?}");
    let (_, stderr) = text(&out);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("PVM")).collect();
    if pvm {
        assert_eq!(warnings.len(), 1, "{stderr}");
        assert!(
            warnings[0].contains("guest kernel must be PVM-enabled"),
            "{stderr}"
        );
    } else {
        assert!(warnings.is_empty(), "{stderr}");
    }
}

#[test]
fn guest_is_offered_kvmclock() {
    // CPUID says KVM with KVM_FEATURE_CLOCKSOURCE2, and MSR_KVM_SYSTEM_TIME_NEW makes KVM
    // fill in the guest's pvclock area (what Linux's kvmclock needs).
    let out = run_guest("kvmclock.elf", &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("minnow-guest: kvmclock ok"),
        "{stdout}{stderr}"
    );
}

/// The `Seccomp:` and `Name:` lines of every thread of process `pid`.
fn thread_seccomp(pid: u32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or("?")
                .trim()
                .to_string()
        };
        out.push((field("Name:"), field("Seccomp:")));
    }
    out
}

/// Starts halt.elf with a disk (so there is a disk worker too) and `extra` flags, and
/// waits until the guest has halted.
fn start_halted_guest_with_disk(
    dir: &std::path::Path,
    extra: &[&str],
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut child = minnow()
        .args(["run", "--mem-mib", "32", "--kernel"])
        .arg(guest("halt.elf"))
        .arg("--disk")
        .arg(disk_image(dir))
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("halting"), "{line}");
    (child, reader)
}

fn sigterm(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn every_vmm_thread_runs_under_a_seccomp_filter() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _out) = start_halted_guest_with_disk(dir.path(), &[]);
    let threads = thread_seccomp(child.id());
    sigterm(child.id());
    let status = wait_with_deadline(&mut child, 10).expect("minnow did not stop on SIGTERM");
    assert_eq!(status.code(), Some(0));
    let names: Vec<&str> = threads.iter().map(|(n, _)| n.as_str()).collect();
    for want in ["minnow", "vcpu0", "disk0"] {
        assert!(names.contains(&want), "no {want} thread in {threads:?}");
    }
    for (name, mode) in &threads {
        assert_eq!(mode, "2", "thread {name} is not filtered (Seccomp: {mode})");
    }

    // The control: with --seccomp off no thread is filtered.
    let (mut child, _out) = start_halted_guest_with_disk(dir.path(), &["--seccomp", "off"]);
    let threads = thread_seccomp(child.id());
    sigterm(child.id());
    wait_with_deadline(&mut child, 10).expect("minnow did not stop on SIGTERM");
    assert!(threads.iter().all(|(_, m)| m == "0"), "{threads:?}");
}

#[test]
fn a_call_outside_a_threads_filter_stops_minnow_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let disk = disk_image(dir.path());
    let disk = disk.to_str().unwrap();
    for (kind, thread) in [
        ("main", "the main (event loop) thread"),
        ("vcpu", "the vcpu0 thread"),
        ("disk", "the disk0 worker thread"),
    ] {
        let mut cmd = minnow();
        cmd.args(["run", "--mem-mib", "32", "--disk", disk, "--kernel"])
            .arg(guest("virtioblk.elf"))
            .env("MINNOW_TEST_SECCOMP_TRIP", kind);
        let out = common::run_with_timeout(cmd, 30);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{kind}: {stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(errors.len(), 1, "{kind}: one error line: {stderr}");
        let line = errors[0];
        assert!(
            line.starts_with("minnow: error: seccomp: ")
                && line.contains(thread)
                && line.contains("system call 110 (getppid)"),
            "{kind}: {line}"
        );
        assert!(
            !stdout.contains("virtio-blk: done"),
            "{kind}: the VM went on: {stdout}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }

    // With --seccomp log the same call is logged by the kernel and the VM runs on.
    let mut cmd = minnow();
    cmd.args(["run", "--mem-mib", "32", "--seccomp", "log", "--disk", disk])
        .arg("--kernel")
        .arg(guest("virtioblk.elf"))
        .env("MINNOW_TEST_SECCOMP_TRIP", "vcpu");
    let out = common::run_with_timeout(cmd, 30);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("virtio-blk: done"), "{stdout}");
    assert!(!stderr.contains("seccomp"), "{stderr}");
}

/// Bytes waiting in a pipe (FIONREAD).
fn pipe_bytes(fd: &impl std::os::fd::AsRawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points at `n`.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "FIONREAD");
    usize::try_from(n).unwrap()
}

#[test]
fn a_flooding_guest_with_stdout_unread_cannot_stall_the_vmm() {
    // The disk starts with a pattern the refused discards would have punched out.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flood.img");
    let mut data = b"KEEP".repeat(256);
    data.resize(1 << 20, 0x5a);
    std::fs::write(&path, &data).unwrap();
    let mut child = minnow()
        .args(["run", "--mem-mib", "32", "--kernel"])
        .arg(guest("flood.elf"))
        .arg("--disk")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (log_tx, log_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines() {
            let _ = log_tx.send(line.unwrap());
        }
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut report = String::new();
    while !report.contains("flooding") {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            panic!("minnow ended before the flood: {report}");
        }
        report.push_str(&line);
    }
    for name in ["discard2", "zeroes2", "segs300", "huge"] {
        assert!(
            report.contains(&format!("flood: {name} status 1\n")),
            "{name} not refused with IOERR: {report}"
        );
    }
    // From here on nobody reads stdout: the pipe fills, then minnow's own buffer, and
    // minnow says once that it drops output.
    let fd = stdout.get_ref();
    let flooding = Instant::now();
    let mut logs = String::new();
    while !logs.contains("guest console output is being dropped") {
        let line = log_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("minnow never said it drops the unread output");
        logs.push_str(&line);
        logs.push('\n');
    }
    let filled = flooding.elapsed();
    assert!(
        pipe_bytes(fd) >= 60 * 1024,
        "dropping although the pipe has room"
    );
    let t = Instant::now();
    sigterm(pid);
    // A liveness check: 10 s is a hang, not a slow stop (the 1 s goal is in make bench).
    let status = wait_with_deadline(&mut child, 10);
    let took = t.elapsed();
    println!("output dropped after {filled:?}; minnow stopped {took:?} after SIGTERM");
    let status = status.expect("minnow did not stop on SIGTERM under the flood");
    assert_eq!(status.code(), Some(0));
    while let Ok(line) = log_rx.recv_timeout(Duration::from_secs(5)) {
        logs.push_str(&line);
        logs.push('\n');
    }
    assert!(logs.contains("stopping the VM on a signal"), "{logs}");
    assert!(
        logs.contains("bytes of guest console output were dropped"),
        "{logs}"
    );
    let after = std::fs::read(&path).unwrap();
    assert_eq!(
        after[..1024],
        data[..1024],
        "a refused request changed the disk"
    );
}

#[test]
fn a_terminal_console_works_under_seccomp() {
    // With a terminal (script(1) gives minnow one) the logger asks isatty of stderr on
    // every line, from every thread, and the CLI restores the terminal at the end.
    let dir = tempfile::tempdir().unwrap();
    let disk = disk_image(dir.path());
    let inner = format!(
        "{} run --mem-mib 32 --log-level debug --kernel {} --disk {}",
        env!("CARGO_BIN_EXE_minnow"),
        guest("virtioblk.elf").display(),
        disk.display()
    );
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &inner, "/dev/null"]);
    let out = common::run_with_timeout(cmd, 30);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("virtio-blk: done"), "{stdout}");
    assert!(!stdout.contains("seccomp"), "{stdout}");
}

#[test]
fn profile_counts_the_exits_of_a_guest_whose_exits_are_known() {
    // hello64 writes its 32-byte line to COM1 one byte at a time (each after an LSR
    // read), writes the boot timer once and resets through the i8042 once.
    let line = "minnow-guest: hello from 64-bit\n";
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("profile.json");
    let out = run_guest(
        "hello64.elf",
        &["--profile", "--profile-json", json.to_str().unwrap()],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout, line);
    assert!(stderr.contains("minnow: profile of the run"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let count = |kind: &str| {
        report["exits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == kind)
            .map_or(0, |e| e["count"].as_u64().unwrap())
    };
    assert_eq!(
        count("port out 0x3f8 (COM1)"),
        line.len() as u64,
        "{report}"
    );
    assert!(
        count("port in 0x3fd (COM1)") >= line.len() as u64,
        "{report}"
    );
    assert_eq!(count("mmio write 0xd0000000 (boot timer)"), 1, "{report}");
    assert_eq!(count("port out 0x64 (i8042)"), 1, "{report}");
    let all: u64 = report["exits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["count"].as_u64().unwrap())
        .sum();
    assert_eq!(report["vcpus"][0]["runs"].as_u64(), Some(all), "{report}");
    let at = |label: &str| {
        report["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["label"].as_str().unwrap().starts_with(label))
            .and_then(|m| m["at_ns"].as_u64())
            .unwrap_or_else(|| panic!("no milestone {label}: {report}"))
    };
    let first_run = at("first KVM_RUN");
    let first_byte = at("first byte of guest console output");
    let timer = at("boot timer");
    let stopped = at("VM stopped");
    assert!(
        first_run <= first_byte && first_byte <= timer && timer <= stopped,
        "{report}"
    );
}

#[test]
fn profile_names_the_virtio_device_and_its_driver_ready_time() {
    let dir = tempfile::tempdir().unwrap();
    let disk = disk_image(dir.path());
    let out = run_guest(
        "virtioblk.elf",
        &["--profile", "--disk", disk.to_str().unwrap()],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("virtio-blk: done"), "{stdout}");
    assert!(
        stderr.contains("mmio write 0xd0001000 (virtio-blk0)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("virtio-blk0: driver ready (DRIVER_OK)"),
        "{stderr}"
    );
}

#[test]
fn an_unwritable_profile_file_is_a_one_line_error_before_the_boot() {
    let out = run_guest("hello64.elf", &["--profile-json", "/nonexistent/p.json"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stdout.is_empty(), "the guest ran: {stdout}");
    let line = stderr.lines().last().unwrap_or("");
    assert!(
        line.starts_with("minnow: error: cannot write the profile to /nonexistent/p.json")
            && line.contains("give a writable --profile-json FILE"),
        "{stderr}"
    );
}
