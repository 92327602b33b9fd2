//! Snapshots and the control API on the host's /dev/kvm, with tests/guests/count.S: a
//! guest that prints `minnow-guest: count <hex>` for 0, 1, 2, ... with only %rbx as its
//! counter. A snapshot taken mid-count and restored must go on from where it was: the
//! original's output up to the pause followed by a restored copy's output is one
//! unbroken count (a restore that lost the registers, the memory or the serial port
//! starts again, stops or garbles a line).

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{guest, minnow};

/// A running minnow whose stdout is collected in the background.
struct Vm {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    err_reader: Option<std::thread::JoinHandle<()>>,
}

fn collect(
    mut r: impl Read + Send + 'static,
) -> (Arc<Mutex<Vec<u8>>>, std::thread::JoinHandle<()>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let b = buf.clone();
    let h = std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            b.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    (buf, h)
}

impl Vm {
    fn spawn(args: &[&std::ffi::OsStr]) -> Vm {
        let mut cmd = minnow();
        cmd.args(args);
        Vm::spawn_cmd(cmd)
    }

    fn spawn_cmd(mut cmd: std::process::Command) -> Vm {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (out, reader) = collect(child.stdout.take().unwrap());
        let (stderr, err_reader) = collect(child.stderr.take().unwrap());
        Vm {
            child,
            out,
            reader: Some(reader),
            stderr,
            err_reader: Some(err_reader),
        }
    }

    /// count.elf with a control socket.
    fn count(sock: &Path) -> Vm {
        Vm::spawn(&[
            "run".as_ref(),
            "--mem-mib".as_ref(),
            "32".as_ref(),
            "--kernel".as_ref(),
            guest("count.elf").as_os_str(),
            "--api-sock".as_ref(),
            sock.as_os_str(),
        ])
    }

    fn restore(dir: &Path, extra: &[&str]) -> Vm {
        let mut args: Vec<&std::ffi::OsStr> =
            vec!["run".as_ref(), "--restore".as_ref(), dir.as_os_str()];
        args.extend(extra.iter().map(|a| std::ffi::OsStr::new(*a)));
        Vm::spawn(&args)
    }

    fn output(&self) -> Vec<u8> {
        self.out.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits until the guest has printed `lines` complete lines.
    fn wait_lines(&self, lines: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.output().iter().filter(|&&b| b == b'\n').count() < lines {
            assert!(
                Instant::now() < deadline,
                "the guest printed {:?}; stderr: {}",
                String::from_utf8_lossy(&self.output()),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops minnow with SIGTERM; returns its exit code, stdout and stderr.
    fn stop(mut self) -> (Option<i32>, Vec<u8>, String) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("minnow did not stop on SIGTERM; stderr: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.reader.take().unwrap().join().unwrap();
        self.err_reader.take().unwrap().join().unwrap();
        (status.code(), self.output(), self.stderr())
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The counts printed in `out`, which must be whole `minnow-guest: count <hex>` lines
/// (the last may be cut short) counting up by one from `first`.
fn check_count(out: &[u8], first: u64) -> u64 {
    check_seq(out, "minnow-guest: count ", first)
}

/// Lines `<prefix><hex>` for `first`, `first + 1`, ... (the last one may be cut short).
fn check_seq(out: &[u8], prefix: &str, first: u64) -> u64 {
    let text = String::from_utf8_lossy(out);
    let mut lines: Vec<&str> = text.split('\n').collect();
    let partial = lines.pop().unwrap_or("");
    let full = format!("{prefix}ffffffffffffffff");
    assert!(
        full.starts_with(&partial[..partial.len().min(prefix.len())]),
        "a garbled last line {partial:?} in {text}"
    );
    let mut want = first;
    for line in &lines {
        let n = line
            .strip_prefix(prefix)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .unwrap_or_else(|| panic!("not a count line: {line:?} in {text}"));
        assert_eq!(
            n,
            want,
            "the count jumped: {line:?} after {}; output: {text}",
            want.wrapping_sub(1)
        );
        want += 1;
    }
    want
}

/// One request to the control API; the status and the body.
fn api(sock: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = UnixStream::connect(sock).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split(' ').nth(1).unwrap().parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn wait_socket(sock: &Path, vm: &Vm) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(sock).is_err() {
        assert!(
            Instant::now() < deadline,
            "no API socket; stderr: {}",
            vm.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn fault(body: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    v["fault_message"]
        .as_str()
        .unwrap_or_else(|| panic!("no fault_message: {body}"))
        .to_string()
}

/// Whether the guest printed anything in `ms` milliseconds.
fn grows(vm: &Vm, ms: u64) -> bool {
    let before = vm.output().len();
    std::thread::sleep(Duration::from_millis(ms));
    vm.output().len() > before
}

/// Boots count.elf, lets it count, pauses it, snapshots it into DIR and stops it;
/// returns its output (the count up to the pause) and DIR.
fn snapshot_mid_count(tmp: &Path) -> (Vec<u8>, PathBuf) {
    let sock = tmp.join("vm.sock");
    let dir = tmp.join("snap");
    let vm = Vm::count(&sock);
    vm.wait_lines(20);
    wait_socket(&sock, &vm);
    assert_eq!(api(&sock, "PATCH", "/vm", r#"{"state":"Paused"}"#).0, 204);
    // Paused: what the guest printed has drained, and nothing more comes.
    std::thread::sleep(Duration::from_millis(100));
    assert!(!grows(&vm, 300), "the guest ran on while paused");
    let body = format!(r#"{{"snapshot_path":"{}"}}"#, dir.display());
    let (code, resp) = api(&sock, "PUT", "/snapshot/create", &body);
    assert_eq!(code, 204, "{resp}; stderr: {}", vm.stderr());
    assert!(!grows(&vm, 200), "the VM ran on after the snapshot");
    let (code, out, stderr) = vm.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out, dir)
}

/// Restores DIR and checks that the count goes on from `before` (the original's output
/// up to the pause) for at least 20 more lines.
fn check_restored(vm: Vm, before: &[u8]) {
    let lines_before = before.iter().filter(|&&b| b == b'\n').count();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut all = before.to_vec();
        all.extend_from_slice(&vm.output());
        if all.iter().filter(|&&b| b == b'\n').count() >= lines_before + 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restored guest printed {:?}; stderr: {}",
            String::from_utf8_lossy(&vm.output()),
            vm.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (code, out, stderr) = vm.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
    let mut all = before.to_vec();
    all.extend_from_slice(&out);
    let next = check_count(&all, 0);
    assert!(next as usize >= lines_before + 20, "{next}");
    // Not from zero: the restored VM's first complete line is past the original's count.
    let first = String::from_utf8_lossy(&out)
        .lines()
        .nth(1)
        .map(str::to_owned)
        .unwrap_or_default();
    assert_ne!(first, "minnow-guest: count 0", "{first}");
}

#[test]
fn a_restored_guest_counts_on_from_where_it_was_paused() {
    let tmp = tempfile::tempdir().unwrap();
    let (before, dir) = snapshot_mid_count(tmp.path());
    assert!(check_count(&before, 0) >= 20);
    assert_eq!(
        std::fs::metadata(dir.join("memory")).unwrap().len(),
        32 << 20
    );
    // Twice from the same DIR, one after the other.
    for _ in 0..2 {
        check_restored(Vm::restore(&dir, &[]), &before);
    }
}

#[test]
fn two_clones_of_one_snapshot_run_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (before, dir) = snapshot_mid_count(tmp.path());
    let a = Vm::restore(&dir, &[]);
    let b = Vm::restore(&dir, &[]);
    a.wait_lines(20);
    b.wait_lines(20);
    check_restored(a, &before);
    check_restored(b, &before);
}

#[test]
fn a_restored_vm_can_be_snapshotted_again_into_the_dir_it_runs_from() {
    let tmp = tempfile::tempdir().unwrap();
    let (before, dir) = snapshot_mid_count(tmp.path());
    let sock = tmp.path().join("restored.sock");
    // A clone that keeps running from the first snapshot's memory throughout.
    let bystander = Vm::restore(&dir, &[]);
    let vm = Vm::restore(&dir, &["--api-sock", sock.to_str().unwrap()]);
    wait_socket(&sock, &vm);
    vm.wait_lines(10);
    // Into the directory whose memory file both VMs map: it must not change under them.
    let status = minnow()
        .args(["vm", "snapshot", "--api-sock"])
        .arg(&sock)
        .arg(&dir)
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    std::thread::sleep(Duration::from_millis(100));
    let at_snapshot = vm.output();
    assert_eq!(api(&sock, "PATCH", "/vm", r#"{"state":"Resumed"}"#).0, 204);
    std::thread::sleep(Duration::from_millis(300));
    let (code, out, stderr) = vm.stop();
    assert_eq!(code, Some(0), "{stderr}");
    let mut all = before.clone();
    all.extend_from_slice(&out);
    check_count(&all, 0);
    assert!(
        out.len() > at_snapshot.len(),
        "the VM did not run on after the snapshot"
    );
    check_restored(bystander, &before);
    let mut second = before.clone();
    second.extend_from_slice(&at_snapshot);
    check_restored(Vm::restore(&dir, &[]), &second);
}

#[test]
fn every_endpoint_answers_and_bad_requests_leave_the_vm_unharmed() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("vm.sock");
    let vm = Vm::count(&sock);
    wait_socket(&sock, &vm);
    vm.wait_lines(5);

    let (code, body) = api(&sock, "GET", "/vm", "");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["state"], "Running", "{body}");
    assert_eq!(v["vcpus"], 1, "{body}");
    assert_eq!(v["mem_mib"], 32, "{body}");
    assert!(
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == "serial"),
        "{body}"
    );

    // Wrong states and bad requests: 4xx with a fault message; the VM counts on.
    let snap = tmp.path().join("snap");
    let create = format!(r#"{{"snapshot_path":"{}"}}"#, snap.display());
    let cases: [(&str, &str, &str, u16, &str); 10] = [
        ("PATCH", "/vm", r#"{"state":"Resumed"}"#, 400, "not paused"),
        (
            "PUT",
            "/snapshot/create",
            &create,
            400,
            "running; pause it first",
        ),
        ("PATCH", "/vm", r#"{"state":"#, 400, "bad JSON"),
        (
            "PATCH",
            "/vm",
            r#"{"state":"Sleeping"}"#,
            400,
            "unknown variant",
        ),
        (
            "PATCH",
            "/vm",
            r#"{"state":"Paused","x":1}"#,
            400,
            "unknown field",
        ),
        ("PATCH", "/vm", "", 400, "bad JSON"),
        (
            "PUT",
            "/snapshot/create",
            r#"{"path":"/tmp"}"#,
            400,
            "unknown field",
        ),
        ("DELETE", "/vm", "", 405, "not served"),
        ("GET", "/snapshot/load", "", 404, "no such resource"),
        ("POST", "/vm", "{}", 405, "not served"),
    ];
    for (method, path, body, want, says) in cases {
        let (code, resp) = api(&sock, method, path, body);
        assert_eq!(code, want, "{method} {path} {body}: {resp}");
        let msg = fault(&resp);
        assert!(msg.contains(says), "{method} {path} {body}: {msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }
    assert!(
        !snap.exists(),
        "a refused snapshot wrote {}",
        snap.display()
    );
    // Garbage that is not HTTP at all.
    {
        let mut s = UnixStream::connect(&sock).unwrap();
        s.write_all(b"\x00\x01garbage\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    }
    assert!(
        grows(&vm, 300),
        "the VM stopped counting after bad requests"
    );
    assert_eq!(fault_free_state(&sock), "Running");

    // Pause, pause again (refused), resume.
    assert_eq!(api(&sock, "PATCH", "/vm", r#"{"state":"Paused"}"#).0, 204);
    assert_eq!(fault_free_state(&sock), "Paused");
    std::thread::sleep(Duration::from_millis(100));
    assert!(!grows(&vm, 300), "the guest ran on while paused");
    let (code, resp) = api(&sock, "PATCH", "/vm", r#"{"state":"Paused"}"#);
    assert_eq!(code, 400);
    assert!(fault(&resp).contains("already paused"), "{resp}");
    let relative = api(
        &sock,
        "PUT",
        "/snapshot/create",
        r#"{"snapshot_path":"rel/dir"}"#,
    );
    assert_eq!(relative.0, 400);
    assert!(fault(&relative.1).contains("relative"), "{}", relative.1);
    assert_eq!(api(&sock, "PATCH", "/vm", r#"{"state":"Resumed"}"#).0, 204);
    assert_eq!(fault_free_state(&sock), "Running");
    assert!(grows(&vm, 300), "the guest did not run on after resume");

    let (code, out, stderr) = vm.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    check_count(&out, 0);
    assert!(!sock.exists(), "the socket was left behind");
}

fn fault_free_state(sock: &Path) -> String {
    let (code, body) = api(sock, "GET", "/vm", "");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["state"].as_str().unwrap().to_string()
}

/// Runs `minnow vm ARGS`; exit code, stdout, stderr.
fn vm_cli(args: &[&str], sock: &Path) -> (Option<i32>, String, String) {
    let out = minnow()
        .arg("vm")
        .args(args)
        .arg("--api-sock")
        .arg(sock)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_vm_subcommands_drive_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("vm.sock");
    let vm = Vm::count(&sock);
    wait_socket(&sock, &vm);

    let (code, out, err) = vm_cli(&["status"], &sock);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(r#""state":"Running""#), "{out}");
    let (code, _, err) = vm_cli(&["resume"], &sock);
    assert_eq!(code, Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("minnow: error: ") && err.contains("not paused"),
        "{err}"
    );
    let (code, _, err) = vm_cli(&["pause"], &sock);
    assert_eq!(code, Some(0), "{err}");
    assert!(vm_cli(&["status"], &sock).1.contains(r#""state":"Paused""#));
    let (code, _, err) = vm_cli(&["resume"], &sock);
    assert_eq!(code, Some(0), "{err}");
    // `vm snapshot` pauses a running VM itself, and leaves it paused.
    let dir = tmp.path().join("snap");
    let (code, _, err) = vm_cli(&["snapshot", dir.to_str().unwrap()], &sock);
    assert_eq!(code, Some(0), "{err}");
    assert!(dir.join("state").is_file() && dir.join("memory").is_file());
    assert!(vm_cli(&["status"], &sock).1.contains(r#""state":"Paused""#));
    drop(vm.stop());

    // No VM behind the socket any more: one line saying so.
    let (code, _, err) = vm_cli(&["status"], &sock);
    assert_eq!(code, Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("minnow: error: cannot connect"), "{err}");
}

#[test]
fn an_api_socket_that_exists_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("taken.sock");
    std::fs::write(&sock, "").unwrap();
    let mut cmd = minnow();
    cmd.args(["run", "--mem-mib", "32", "--kernel"])
        .arg(guest("count.elf"))
        .arg("--api-sock")
        .arg(&sock);
    let out = common::run_with_timeout(cmd, 30);
    let (_, stderr) = common::text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("give another --api-sock"), "{stderr}");
}

/// Runs `minnow run --restore DIR`; asserts one error line containing `says`, exit 1.
fn refused(dir: &Path, says: &str) {
    refused_with(dir, &[], says)
}

/// [`refused`] with more arguments.
fn refused_with(dir: &Path, extra: &[&str], says: &str) {
    let mut cmd = minnow();
    cmd.args(["run", "--restore"]).arg(dir).args(extra);
    let out = common::run_with_timeout(cmd, 30);
    let (stdout, stderr) = common::text(&out);
    assert_eq!(out.status.code(), Some(1), "{says}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{says}: one line: {stderr}");
    assert!(
        stderr.starts_with("minnow: error: ") && stderr.contains(says),
        "{says}: {stderr}"
    );
    assert!(stdout.is_empty(), "{says}: the guest ran: {stdout}");
}

#[test]
fn bad_snapshots_are_refused_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, dir) = snapshot_mid_count(tmp.path());
    let bad = tmp.path().join("bad");
    let reset = || {
        std::fs::create_dir_all(&bad).unwrap();
        for f in ["state", "memory"] {
            std::fs::copy(dir.join(f), bad.join(f)).unwrap();
        }
    };
    let poke = |offset: u64, byte: u8| {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(bad.join("state"))
            .unwrap();
        f.write_all_at(&[byte], offset).unwrap();
    };

    reset();
    std::fs::OpenOptions::new()
        .write(true)
        .open(bad.join("memory"))
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    refused(&bad, "the memory file is truncated");

    // A state from before the virtio devices (version 1), and one from a later minnow.
    reset();
    poke(8, 1);
    refused(
        &bad,
        "is snapshot format version 1, this minnow reads version 3; take the snapshot again",
    );
    reset();
    poke(8, 4);
    refused(&bad, "format version 4");

    reset();
    poke(0, b'X');
    refused(&bad, "not a minnow snapshot");

    reset();
    let len = std::fs::metadata(bad.join("state")).unwrap().len();
    poke(len / 2, 0x5a);
    poke(len / 2 + 1, 0xa5);
    refused(&bad, "checksum does not match");

    reset();
    std::fs::OpenOptions::new()
        .write(true)
        .open(bad.join("state"))
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    refused(&bad, "damaged");

    reset();
    std::fs::remove_file(bad.join("memory")).unwrap();
    refused(&bad, "memory");

    refused(&tmp.path().join("missing"), "cannot open");

    // The control: the unedited copy restores.
    reset();
    let vm = Vm::restore(&bad, &[]);
    vm.wait_lines(3);
    let (code, _, stderr) = vm.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn the_api_thread_runs_under_its_seccomp_filter() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("vm.sock");
    let vm = Vm::count(&sock);
    wait_socket(&sock, &vm);
    // Output reaches stdout through the event loop, which runs only once every thread
    // has installed its filter (the socket is bound before any).
    vm.wait_lines(2);
    let mut names = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{}/task", vm.child.id())).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or("?")
                .trim()
                .to_string()
        };
        assert_eq!(field("Seccomp:"), "2", "{} is not filtered", field("Name:"));
        names.push(field("Name:"));
    }
    assert!(names.iter().any(|n| n == "api"), "{names:?}");
    drop(vm.stop());

    // A call outside its list stops minnow with the one-line report naming it.
    let mut cmd = minnow();
    cmd.args(["run", "--mem-mib", "32", "--kernel"])
        .arg(guest("count.elf"))
        .arg("--api-sock")
        .arg(tmp.path().join("trip.sock"))
        .env("MINNOW_TEST_SECCOMP_TRIP", "api");
    let out = common::run_with_timeout(cmd, 30);
    let (_, stderr) = common::text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the api (control API) thread made system call 110 (getppid)"),
        "{stderr}"
    );
}

#[test]
fn a_silent_client_neither_blocks_the_api_nor_the_stop_for_long() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("vm.sock");
    let vm = Vm::count(&sock);
    wait_socket(&sock, &vm);
    // Connected, sends nothing: the API thread waits for it (up to 5 s) ...
    let _silent = UnixStream::connect(&sock).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // ... but SIGTERM stops the VM at once all the same.
    let asked = Instant::now();
    let (code, _, stderr) = vm.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "the stop took {:?}",
        asked.elapsed()
    );
}

/// The `minnow-guest: blk <hex>` rounds of blkloop.elf in `out`: whole lines from
/// `first` on, one after the other; returns the next one. A "blk mismatch" line (the
/// guest read back something else than it wrote) fails here too.
fn check_blk(out: &[u8], first: u64) -> u64 {
    check_seq(out, "minnow-guest: blk ", first)
}

/// blkloop.elf on DISK with a control socket.
fn blkloop(disk: &Path, sock: &Path) -> Vm {
    Vm::spawn(&[
        "run".as_ref(),
        "--mem-mib".as_ref(),
        "32".as_ref(),
        "--kernel".as_ref(),
        guest("blkloop.elf").as_os_str(),
        "--disk".as_ref(),
        disk.as_os_str(),
        "--api-sock".as_ref(),
        sock.as_os_str(),
    ])
}

/// `cp -p FROM TO`: a copy with the same mtime, the way a snapshot's disk is copied.
fn cp_p(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp")
        .arg("-p")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// The first 8 bytes of each of the 64 sectors blkloop.elf writes.
fn sectors(disk: &Path) -> Vec<u64> {
    let bytes = std::fs::read(disk).unwrap();
    (0..64)
        .map(|i| u64::from_le_bytes(bytes[i * 512..i * 512 + 8].try_into().unwrap()))
        .collect()
}

/// tests/guests/blkloop.S reads back, every round, the sector the round before wrote,
/// and writes the next. Snapshotted mid-work (its disk copied with `cp -p` while it is
/// paused) and restored onto the copy, it goes on from where it was: the first rounds
/// after the restore read what the original wrote before the snapshot. The original's
/// disk, written since, is refused; so is a copy that is not the disk as it was.
#[test]
fn a_guest_using_a_disk_goes_on_using_it_after_a_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("d.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(64 * 512)
        .unwrap();
    let sock = tmp.path().join("vm.sock");
    let vm = blkloop(&disk, &sock);
    wait_socket(&sock, &vm);
    vm.wait_lines(100); // more than 64 rounds: every sector written, some twice
    assert_eq!(api(&sock, "PATCH", "/vm", r#"{"state":"Paused"}"#).0, 204);
    std::thread::sleep(Duration::from_millis(100));
    let dir = tmp.path().join("snap");
    let body = format!(r#"{{"snapshot_path":"{}"}}"#, dir.display());
    let (code, resp) = api(&sock, "PUT", "/snapshot/create", &body);
    assert_eq!(code, 204, "{resp}; stderr: {}", vm.stderr());
    let before = vm.output();
    let next = check_blk(&before, 0);
    // The disk as it was at the snapshot, for two clones, and as the test sees it.
    let (a, b) = (tmp.path().join("a.img"), tmp.path().join("b.img"));
    cp_p(&disk, &a);
    cp_p(&disk, &b);
    let at_snapshot = sectors(&disk);
    for (i, &v) in at_snapshot.iter().enumerate() {
        assert_eq!(v % 64, i as u64, "sector {i}: {at_snapshot:?}");
        // (Round `next` may be on the disk already, its line not printed yet.)
        assert!(v <= next, "sector {i} holds {v:#x}, after {next:#x}");
    }
    // The original runs on and writes its disk: no longer the snapshot's.
    assert_eq!(api(&sock, "PATCH", "/vm", r#"{"state":"Resumed"}"#).0, 204);
    vm.wait_lines(before.iter().filter(|&&b| b == b'\n').count() + 70);
    let (code, out, stderr) = vm.stop();
    assert_eq!(code, Some(0), "{stderr}");
    check_blk(&out, 0);
    refused(
        &dir,
        "d.img is not the snapshot's disk 0: it was modified since the snapshot",
    );

    // A copy with its own mtime (plain cp), or another size, is not the disk either.
    let other = tmp.path().join("other.img");
    std::fs::copy(&a, &other).unwrap();
    let t = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&other)
        .unwrap()
        .set_modified(t)
        .unwrap();
    refused_with(
        &dir,
        &["--disk", other.to_str().unwrap()],
        "was modified since the snapshot",
    );
    let bigger = tmp.path().join("bigger.img");
    std::fs::File::create(&bigger)
        .unwrap()
        .set_len(128 * 512)
        .unwrap();
    refused_with(
        &dir,
        &["--disk", bigger.to_str().unwrap()],
        "it was 32768 bytes at the snapshot, it is 65536 now",
    );
    refused_with(
        &dir,
        &["--disk", a.to_str().unwrap(), "--disk", b.to_str().unwrap()],
        "the snapshot has 1 disks and --disk was given 2 times",
    );
    refused_with(
        &dir,
        &["--disk", &format!("{},ro", a.display())],
        "is given read-only, the snapshot's disk 0 was read-write",
    );

    // Two clones at once, each on its own copy: both go on from the snapshot.
    let sock_a = tmp.path().join("a.sock");
    let clones = [
        Vm::restore(
            &dir,
            &[
                "--disk",
                a.to_str().unwrap(),
                "--api-sock",
                sock_a.to_str().unwrap(),
            ],
        ),
        Vm::restore(&dir, &["--disk", b.to_str().unwrap()]),
    ];
    for c in &clones {
        c.wait_lines(80);
    }
    // Clone a is snapshotted in turn, and stopped while paused: a.img stays as it was.
    let dir_a = tmp.path().join("snap-a");
    let (code, _, err) = vm_cli(&["snapshot", dir_a.to_str().unwrap()], &sock_a);
    assert_eq!(code, Some(0), "{err}");
    std::thread::sleep(Duration::from_millis(100));
    let mut outputs = Vec::new();
    for (vm, img) in clones.into_iter().zip([&a, &b]) {
        let (code, out, stderr) = vm.stop();
        assert_eq!(code, Some(0), "{stderr}");
        assert!(!stderr.contains("error"), "{stderr}");
        let mut all = before.clone();
        all.extend_from_slice(&out);
        let last = check_blk(&all, 0) - 1;
        assert!(last >= next + 64, "{last:#x} after {next:#x}");
        // Every sector holds a round of its own number, the last printed one's at least
        // that round: the restored guest wrote on.
        let now = sectors(img);
        for (i, &v) in now.iter().enumerate() {
            assert_eq!(v % 64, i as u64, "sector {i}: {now:?}");
            assert!(v >= next.saturating_sub(64), "sector {i} is stale: {now:?}");
        }
        assert!(now[(last % 64) as usize] >= last, "{now:?}, last {last:#x}");
        outputs.push(all);
    }
    // The clones wrote their copies: a restore onto one of them is refused now.
    refused_with(
        &dir,
        &["--disk", a.to_str().unwrap()],
        "was modified since the snapshot",
    );
    // Clone a's snapshot recorded a.img, unchanged since: restored from its recorded
    // path (no --disk), the guest goes on from clone a's last round.
    let again = Vm::restore(&dir_a, &[]);
    let before_a = outputs.swap_remove(0);
    again.wait_lines(40);
    let (code, out, stderr) = again.stop();
    assert_eq!(code, Some(0), "{stderr}");
    let mut all = before_a.clone();
    all.extend_from_slice(&out);
    assert!(check_blk(&all, 0) > check_blk(&before_a, 0) + 30);
}

/// A disk the guest never started (count.elf does not drive it): its transport is saved
/// as the driver left it (untouched), the disk re-opened at its recorded path, and the
/// guest counts on.
#[test]
fn a_disk_the_guest_never_started_is_restored_too() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("d.img");
    std::fs::write(&disk, vec![0u8; 4096]).unwrap();
    let sock = tmp.path().join("vm.sock");
    let vm = Vm::spawn(&[
        "run".as_ref(),
        "--mem-mib".as_ref(),
        "32".as_ref(),
        "--kernel".as_ref(),
        guest("count.elf").as_os_str(),
        "--disk".as_ref(),
        disk.as_os_str(),
        "--api-sock".as_ref(),
        sock.as_os_str(),
    ]);
    wait_socket(&sock, &vm);
    vm.wait_lines(20);
    assert_eq!(api(&sock, "PATCH", "/vm", r#"{"state":"Paused"}"#).0, 204);
    std::thread::sleep(Duration::from_millis(100));
    let dir = tmp.path().join("snap");
    let body = format!(r#"{{"snapshot_path":"{}"}}"#, dir.display());
    let (code, resp) = api(&sock, "PUT", "/snapshot/create", &body);
    assert_eq!(code, 204, "{resp}");
    let (code, before, stderr) = vm.stop();
    assert_eq!(code, Some(0), "{stderr}");
    let saved = minnow_vmm::snapshot::decode(&std::fs::read(dir.join("state")).unwrap()).unwrap();
    assert_eq!(saved.devices.len(), 1);
    check_restored(Vm::restore(&dir, &[]), &before);
}

/// The host end netloop.elf pings, in a network namespace of its own (deleted on drop):
/// a persistent TAP with 169.254.1.1/24 at 02:00:00:00:00:fe and a permanent neighbour
/// entry for the guest, 169.254.1.2 at `guest_mac`, so the kernel's echo replies go
/// to that MAC (which netloop.S checks against its device's).
struct NetNs {
    name: String,
    tap: String,
}

impl NetNs {
    fn new(tap: &str, guest_mac: &str) -> NetNs {
        let name = format!("minnow-snap-{tap}-{}", std::process::id());
        let ip = |args: &[&str]| {
            let ok = std::process::Command::new("ip")
                .args(args)
                .status()
                .unwrap()
                .success();
            assert!(ok, "ip {args:?} failed (needs root and iproute2)");
        };
        ip(&["netns", "add", &name]);
        let ns = NetNs {
            name: name.clone(),
            tap: tap.into(),
        };
        for args in [
            &["tuntap", "add", "dev", tap, "mode", "tap", "vnet_hdr"][..],
            &["link", "set", tap, "address", "02:00:00:00:00:fe"],
            &["addr", "add", "169.254.1.1/24", "dev", tap],
            &["link", "set", tap, "up"],
            &[
                "neigh",
                "replace",
                "169.254.1.2",
                "lladdr",
                guest_mac,
                "dev",
                tap,
                "nud",
                "permanent",
            ],
        ] {
            let mut all = vec!["-n", &name];
            all.extend_from_slice(args);
            ip(&all);
        }
        ns
    }

    /// `PROGRAM ARGS` in this namespace.
    fn exec(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    /// `minnow ARGS` in this namespace.
    fn minnow(&self, args: &[&str]) -> std::process::Command {
        let mut c = self.exec(&[env!("CARGO_BIN_EXE_minnow")]);
        c.args(args);
        c
    }

    fn spawn(&self, args: &[&str]) -> Vm {
        Vm::spawn_cmd(self.minnow(args))
    }

    /// Sends `n` UDP datagrams to the guest and `n` to the subnet's broadcast address,
    /// from a thread that enters the namespace (the TAP takes them to the guest).
    fn send_to_guest(&self, n: usize) {
        use std::os::fd::AsRawFd;
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap();
            // SAFETY: setns(2) on this thread only, with a namespace fd open for the call.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            let s = std::net::UdpSocket::bind("169.254.1.1:0").unwrap();
            s.set_broadcast(true).unwrap();
            for _ in 0..n {
                for to in ["169.254.1.2:9", "169.254.1.255:9"] {
                    s.send_to(b"a frame for a paused guest", to).unwrap();
                }
            }
        })
        .join()
        .unwrap();
    }

    /// The frames the TAP has sent towards the guest.
    fn tap_tx_packets(&self) -> u64 {
        let out = self
            .exec(&["ip", "-s", "-j", "link", "show", "dev", &self.tap])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0]["stats64"]["tx"]["packets"].as_u64().unwrap()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// The `minnow-guest: net <hex>` rounds of netloop.elf in `out`, each an echo reply
/// the guest received.
fn check_net(out: &[u8], first: u64) -> u64 {
    check_seq(out, "minnow-guest: net ", first)
}

/// Waits until `before` followed by `vm`'s output holds `more` rounds past `before`'s,
/// all one unbroken sequence from 0.
fn wait_net_rounds(vm: &Vm, before: &[u8], more: u64) {
    let from = check_net(before, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut all = before.to_vec();
        all.extend_from_slice(&vm.output());
        if check_net(&all, 0) >= from + more {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the guest received no more echo replies: {:?}; stderr: {}",
            String::from_utf8_lossy(&vm.output()),
            vm.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// tests/guests/netloop.S pings the host through virtio-net and prints a line per echo
/// reply. Paused mid-work, its device is frozen: frames sent to the TAP meanwhile reach
/// neither guest memory nor the rings (two snapshots taken around them have the same
/// memory); resumed, it pings on. Restored on the recorded TAP once the original has
/// gone, and as two clones at once, each in a namespace of its own with its own TAP and
/// MAC (`--net tap=...,mac=...`; the host answers only that MAC and the guest takes
/// only frames to the MAC its device has now), the replies keep coming, the count going
/// on from the pause.
#[test]
fn a_guest_using_the_network_goes_on_after_a_restore_and_in_two_clones() {
    let tmp = tempfile::tempdir().unwrap();
    let (mac_a, mac_b, mac_c) = (
        "02:00:00:00:0a:02",
        "02:00:00:00:0b:02",
        "02:00:00:00:0c:02",
    );
    let ns_a = NetNs::new("snapa", mac_a);
    let sock = tmp.path().join("vm.sock");
    let net_a = format!("tap={},mac={mac_a}", ns_a.tap);
    let netloop = guest("netloop.elf");
    let vm = ns_a.spawn(&[
        "run",
        "--mem-mib",
        "32",
        "--kernel",
        netloop.to_str().unwrap(),
        "--net",
        &net_a,
        "--api-sock",
        sock.to_str().unwrap(),
    ]);
    wait_socket(&sock, &vm);
    wait_net_rounds(&vm, b"", 20);
    assert_eq!(api(&sock, "PATCH", "/vm", r#"{"state":"Paused"}"#).0, 204);
    std::thread::sleep(Duration::from_millis(100));
    assert!(!grows(&vm, 300), "the guest ran on while paused");
    let before = vm.output();
    let snap = |dir: &Path| {
        let body = format!(r#"{{"snapshot_path":"{}"}}"#, dir.display());
        let (code, resp) = api(&sock, "PUT", "/snapshot/create", &body);
        assert_eq!(code, 204, "{resp}; stderr: {}", vm.stderr());
    };
    let (dir, dir2) = (tmp.path().join("snap"), tmp.path().join("snap2"));
    snap(&dir);
    // Frames for the guest while it is paused: pings to it (unanswered) and broadcasts.
    // (tun counts a frame as sent when minnow reads it from the TAP.)
    let sent = ns_a.tap_tx_packets();
    ns_a.send_to_guest(8);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        ns_a.tap_tx_packets(),
        sent,
        "minnow read the TAP while paused"
    );
    snap(&dir2);
    assert!(
        std::fs::read(dir.join("memory")).unwrap() == std::fs::read(dir2.join("memory")).unwrap(),
        "guest memory changed while the VM was paused: the network device was not frozen"
    );
    // Resumed, it pings on.
    assert_eq!(api(&sock, "PATCH", "/vm", r#"{"state":"Resumed"}"#).0, 204);
    wait_net_rounds(&vm, b"", check_net(&before, 0) + 10);
    assert!(
        ns_a.tap_tx_packets() >= sent + 16,
        "the frames queued while paused were not taken after the resume"
    );
    let (code, _, stderr) = vm.stop();
    assert_eq!(code, Some(0), "{stderr}");

    // On the recorded TAP, now free.
    let vm = ns_a.spawn(&["run", "--restore", dir.to_str().unwrap()]);
    wait_net_rounds(&vm, &before, 20);
    let (code, _, stderr) = vm.stop();
    assert_eq!(code, Some(0), "{stderr}");

    // Two clones at once, each on its own TAP with its own MAC.
    let ns_b = NetNs::new("snapb", mac_b);
    let ns_c = NetNs::new("snapc", mac_c);
    let clone = |ns: &NetNs, mac: &str| {
        let net = format!("tap={},mac={mac}", ns.tap);
        ns.spawn(&["run", "--restore", dir.to_str().unwrap(), "--net", &net])
    };
    let (b, c) = (clone(&ns_b, mac_b), clone(&ns_c, mac_c));
    wait_net_rounds(&b, &before, 20);
    wait_net_rounds(&c, &before, 20);
    for vm in [b, c] {
        let (code, _, stderr) = vm.stop();
        assert_eq!(code, Some(0), "{stderr}");
    }
    // One --net per network device of the snapshot, or none.
    let net_b = format!("tap={}", ns_b.tap);
    let out = ns_b
        .minnow(&[
            "run",
            "--restore",
            dir.to_str().unwrap(),
            "--net",
            &net_b,
            "--net",
            &net_b,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("one --net per network device"), "{err}");
}

/// The KVM clock saved in DIR/state, in ns.
fn saved_clock(dir: &Path) -> u64 {
    let bytes = std::fs::read(dir.join("state")).unwrap();
    minnow_vmm::snapshot::decode(&bytes).unwrap().vm.clock.clock
}

#[test]
fn guest_time_stands_still_while_the_vm_is_paused() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("vm.sock");
    let vm = Vm::count(&sock);
    wait_socket(&sock, &vm);
    vm.wait_lines(3);
    let create = |dir: &Path| {
        let body = format!(r#"{{"snapshot_path":"{}"}}"#, dir.display());
        let (code, resp) = api(&sock, "PUT", "/snapshot/create", &body);
        assert_eq!(code, 204, "{resp}");
    };
    assert_eq!(api(&sock, "PATCH", "/vm", r#"{"state":"Paused"}"#).0, 204);
    create(&tmp.path().join("a"));
    let paused_at = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    // The same pause, later: the same guest time.
    create(&tmp.path().join("b"));
    assert_eq!(api(&sock, "PATCH", "/vm", r#"{"state":"Resumed"}"#).0, 204);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(api(&sock, "PATCH", "/vm", r#"{"state":"Paused"}"#).0, 204);
    create(&tmp.path().join("c"));
    let wall = paused_at.elapsed();
    let (a, b, c) = (
        saved_clock(&tmp.path().join("a")),
        saved_clock(&tmp.path().join("b")),
        saved_clock(&tmp.path().join("c")),
    );
    assert_eq!(a, b, "guest time moved on during the pause");
    // Between a and c the guest ran ~200 ms of the >1.7 s of wall time.
    let ran = Duration::from_nanos(c - a);
    assert!(
        ran > Duration::from_millis(150) && ran < Duration::from_millis(1000),
        "guest time moved {ran:?} over {wall:?} of wall time, 200 ms of it running"
    );
    drop(vm.stop());
}
