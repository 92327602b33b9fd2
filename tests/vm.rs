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
    let mut child = minnow()
        .args(["run", "--mem-mib", "32", "--kernel"])
        .arg(guest("halt.elf"))
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
