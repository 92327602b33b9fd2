//! Terminals through `--console-socket`, runc as the control: the caller listens on a
//! Unix socket, the runtime sends the pty master there, the caller reads the process's
//! output from it. Then Docker's `-t`, which goes the same way through containerd's shim.

use std::io::{IoSliceMut, Read};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::thread::JoinHandle;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};

use super::*;

/// Listens on `dir/console.sock`; the thread returns the first fd sent there.
fn console_socket(dir: &Path) -> (PathBuf, JoinHandle<OwnedFd>) {
    let path = dir.join("console.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let t = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut name = [0u8; 256];
        let mut iov = [IoSliceMut::new(&mut name)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<UnixAddr>(
            std::os::fd::AsRawFd::as_raw_fd(&conn),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .unwrap();
        for c in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(fds) = c {
                // SAFETY: the fd was just received with SCM_RIGHTS and is owned here.
                return unsafe { OwnedFd::from_raw_fd(fds[0]) };
            }
        }
        panic!("no fd came over the console socket");
    });
    (path, t)
}

/// Everything the pty's master gives until the last slave closes (EIO).
fn read_all(master: OwnedFd) -> String {
    let mut f = fs::File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match f.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    text(&out)
}

#[test]
fn create_with_a_console_socket_gives_the_process_a_terminal() {
    let script = "tty; stty size; echo out; echo err >&2; test -t 0 && echo stdin-tty";
    let b = bundle(&["sh", "-c", script], |v| {
        v["process"]["terminal"] = json!(true);
        v["process"]["consoleSize"] = json!({"height": 30, "width": 100});
    });
    let mut outs = Vec::new();
    for rt in Runtime::both() {
        let tmp = tempfile::tempdir().unwrap();
        let (sock, got) = console_socket(tmp.path());
        let o = rt.out(&[
            "create",
            "--console-socket",
            sock.to_str().unwrap(),
            "--bundle",
            b.path().to_str().unwrap(),
            "tty1",
        ]);
        assert!(o.status.success(), "{}: create: {o:?}", rt.name);
        let master = got.join().unwrap();
        assert!(rt.out(&["start", "tty1"]).status.success(), "{}", rt.name);
        let out = read_all(master);
        rt.wait_status("tty1", "stopped");
        assert!(rt.out(&["delete", "tty1"]).status.success(), "{}", rt.name);
        outs.push(out);
    }
    assert_eq!(
        outs[0], "/dev/pts/0\r\n30 100\r\nout\r\nerr\r\nstdin-tty\r\n",
        "runc"
    );
    assert_eq!(outs[1], outs[0], "minnow-runc against runc");
}

#[test]
fn exec_tty_detached_and_the_console_rules() {
    let b = bundle(&["sleep", "30"], |_| {});
    for rt in Runtime::both() {
        rt.run_detached(b.path(), "tty2");
        let tmp = tempfile::tempdir().unwrap();
        let (sock, got) = console_socket(tmp.path());
        let o = rt.out(&[
            "exec",
            "-d",
            "-t",
            "--console-socket",
            sock.to_str().unwrap(),
            "tty2",
            "sh",
            "-c",
            "tty; echo exec-tty",
        ]);
        assert!(o.status.success(), "{}: exec -t: {o:?}", rt.name);
        let out = read_all(got.join().unwrap());
        assert_eq!(out, "/dev/pts/0\r\nexec-tty\r\n", "{}", rt.name);
        // A socket without a terminal, and a detached terminal without a socket: both
        // refused, by both runtimes.
        let o = rt.out(&[
            "exec",
            "-d",
            "--console-socket",
            sock.to_str().unwrap(),
            "tty2",
            "true",
        ]);
        assert!(!o.status.success(), "{}: socket, no tty: {o:?}", rt.name);
        let o = rt.out(&["exec", "-d", "-t", "tty2", "true"]);
        assert!(!o.status.success(), "{}: tty, no socket: {o:?}", rt.name);
        assert!(rt.out(&["delete", "--force", "tty2"]).status.success());
    }
}

/// Runs `cmd` with a new pty (in raw mode) as its stdin, stdout and stderr, as a user's
/// terminal, typing `input` into it; everything written to that terminal and the exit code.
fn on_a_terminal(mut cmd: Command, input: &[u8]) -> (String, Option<i32>) {
    use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut raw = tcgetattr(&pty.slave).unwrap();
    cfmakeraw(&mut raw);
    tcsetattr(&pty.slave, SetArg::TCSANOW, &raw).unwrap();
    cmd.stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::from(pty.slave));
    let mut child = cmd.spawn().unwrap();
    drop(cmd); // its copies of the slave: the master reads EIO once the runtime is gone
    let mut master = fs::File::from(pty.master);
    std::io::Write::write_all(&mut master, input).unwrap();
    let out = read_all(OwnedFd::from(master));
    (out, child.wait().unwrap().code())
}

#[test]
fn run_and_exec_in_the_foreground_relay_the_terminal() {
    let script = "read line; echo got $line; tty; echo err >&2; exit 3";
    let b = bundle(&["sh", "-c", script], |v| {
        v["process"]["terminal"] = json!(true);
    });
    let mut results = Vec::new();
    for rt in Runtime::both() {
        let run = on_a_terminal(
            rt.cmd(&["run", "--bundle", b.path().to_str().unwrap(), "fg1"]),
            b"hello\n",
        );
        assert!(rt.status("fg1").is_none(), "{}: run left fg1", rt.name);
        // exec -t in the foreground, into a container that runs detached.
        let plain = bundle(&["sleep", "30"], |_| {});
        rt.run_detached(plain.path(), "fg2");
        let exec = on_a_terminal(
            rt.cmd(&[
                "exec",
                "-t",
                "fg2",
                "sh",
                "-c",
                "read l; echo exec $l; tty; exit 4",
            ]),
            b"there\n",
        );
        assert!(rt.out(&["delete", "--force", "fg2"]).status.success());
        results.push((run, exec));
    }
    assert_eq!(
        results[0].0,
        (
            "hello\r\ngot hello\r\n/dev/pts/0\r\nerr\r\n".to_string(),
            Some(3)
        ),
        "runc run"
    );
    assert_eq!(
        results[0].1,
        ("there\r\nexec there\r\n/dev/pts/0\r\n".to_string(), Some(4)),
        "runc exec -t"
    );
    assert_eq!(results[1], results[0], "minnow-runc against runc");
}

#[test]
fn docker_run_and_exec_with_a_tty() {
    let b = bundle(&["true"], |_| {});
    let d = Dockerd::start();
    d.import(b.path(), "bb:1");
    let mut results = Vec::new();
    for rt in ["runc", "minnow"] {
        let run = d.docker(&[
            "run",
            "-t",
            "--runtime",
            rt,
            "--rm",
            "--network",
            "none",
            "bb:1",
            "sh",
            "-c",
            "tty; echo run-tty; exit 6",
        ]);
        let o = d.docker(&[
            "run",
            "-d",
            "-t",
            "--runtime",
            rt,
            "--network",
            "none",
            "bb:1",
            "sleep",
            "100",
        ]);
        assert!(o.status.success(), "{rt}: {o:?}");
        let id = text(&o.stdout).trim().to_string();
        let exec = d.docker(&["exec", "-t", &id, "sh", "-c", "tty; exit 2"]);
        assert!(d.docker(&["rm", "-f", &id]).status.success(), "{rt}");
        results.push((
            run.status.code(),
            text(&run.stdout),
            exec.status.code(),
            text(&exec.stdout),
        ));
    }
    assert_eq!(
        results[0],
        (
            Some(6),
            "/dev/pts/0\r\nrun-tty\r\n".to_string(),
            Some(2),
            "/dev/pts/1\r\n".to_string()
        ),
        "runc"
    );
    assert_eq!(results[1], results[0], "minnow-runc against runc");
}
