//! Terminals (`process.terminal`), the container's side of runc's console socket: the
//! runtime connects to `--console-socket` ([`connect`]) and hands the connection to the
//! init (or to the exec child), which, inside the container (after pivot_root, or after
//! joining its mount namespace), opens a pty on the container's own devpts (`/dev/ptmx`),
//! sends the master over the socket (SCM_RIGHTS, the pty's name as the data, as runc
//! does) and makes the slave its controlling terminal and stdin, stdout and stderr
//! ([`attach`]). Whoever listens on the socket (containerd's shim, conmon, a test) then
//! owns the terminal.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
use nix::sys::stat::Mode;
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, setsid};

use crate::error::{step, Failure};
use crate::Error;

/// Connects to the console socket a caller (`--console-socket`) listens on.
pub fn connect(path: &Path) -> Result<OwnedFd, Error> {
    UnixStream::connect(path)
        .map(OwnedFd::from)
        .map_err(|source| Error::ConsoleSocket {
            path: path.to_path_buf(),
            source,
        })
}

fn fail(what: &'static str) -> impl FnOnce(nix::errno::Errno) -> Failure {
    step(format!("terminal: {what}"))
}

/// In the container: a new pty, its master sent over `socket`, its slave the controlling
/// terminal and stdio of this process. `size` is `process.consoleSize` (rows, columns).
pub(crate) fn attach(socket: OwnedFd, size: Option<(u16, u16)>) -> Result<(), Failure> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).map_err(fail(
        "cannot open /dev/ptmx (is devpts mounted on /dev/pts?)",
    ))?;
    grantpt(&master).map_err(fail("grantpt"))?;
    unlockpt(&master).map_err(fail("unlockpt"))?;
    let name = ptsname_r(&master).map_err(fail("ptsname"))?;
    if let Some((rows, cols)) = size {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which is valid for
        // the call; the fd is the pty master this function owns.
        let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        if r != 0 {
            return Err(fail("cannot set process.consoleSize")(
                nix::errno::Errno::last(),
            ));
        }
    }
    let slave = open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(fail("cannot open the pty's slave"))?;
    let fds = [master.as_raw_fd()];
    sendmsg::<UnixAddr>(
        socket.as_raw_fd(),
        &[IoSlice::new(name.as_bytes())],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(fail("cannot send the pty to the console socket"))?;
    drop(master);
    drop(socket);
    setsid().map_err(fail("setsid"))?;
    // SAFETY: TIOCSCTTY takes an int argument (0: do not steal); the fd is the slave
    // this function opened.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
        return Err(fail("cannot make the pty the controlling terminal")(
            nix::errno::Errno::last(),
        ));
    }
    dup2_stdin(&slave).map_err(fail("cannot make the pty stdin"))?;
    dup2_stdout(&slave).map_err(fail("cannot make the pty stdout"))?;
    dup2_stderr(&slave).map_err(fail("cannot make the pty stderr"))?;
    Ok(())
}
