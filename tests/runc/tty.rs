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
