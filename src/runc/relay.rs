//! runc's foreground terminal: `run` or `exec` (not detached) of a process with
//! `terminal`. minnow-runc makes a socket pair and hands one end to the container as
//! its console socket (engine/console.rs sends the pty master over it); it keeps the
//! other, receives the master, and copies its own stdin to the pty and the pty to its
//! stdout until the process has exited and the pty is drained. When minnow-runc's stdin
//! is a terminal, it is put in raw mode for the while (the container's pty does the line
//! editing and echo) and its size is given to the pty, as runc does.
//!
//! One thread and `poll`: `exec` has joined the container's PID namespace by then and
//! can start no thread.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use nix::unistd::{read, write};

/// Our end of the console socket pair, until the container sends its pty.
pub struct Relay(UnixStream);

impl Relay {
    /// The pair: the end the container gets as its console socket, and ours.
    pub fn pair() -> Result<(OwnedFd, Relay), String> {
        let (ours, theirs) =
            UnixStream::pair().map_err(|e| format!("cannot make a console socket: {e}"))?;
        Ok((OwnedFd::from(theirs), Relay(ours)))
    }

    /// Waits for the pty master the container sends, and takes over this terminal.
    pub fn receive(self) -> Result<Terminal, String> {
        let mut name = [0u8; 256];
        let mut iov = [IoSliceMut::new(&mut name)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<UnixAddr>(
            self.0.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| format!("cannot receive the container's terminal: {e}"))?;
        let mut master = None;
        for c in msg.cmsgs().map_err(|e| e.to_string())? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for fd in fds {
                    // SAFETY: the fd was just received with SCM_RIGHTS; nothing else
                    // owns it.
                    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                    master.get_or_insert(fd);
                }
            }
        }
        let master = master.ok_or("the container sent no terminal; see its output")?;
        Ok(Terminal::attach(master))
    }
}

/// The container's pty, relayed to minnow-runc's stdin and stdout.
pub struct Terminal {
    master: OwnedFd,
    /// Our stdin's settings before raw mode, put back on drop.
    saved: Option<Termios>,
}

fn stdin() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for the life of minnow-runc (nothing here closes it).
    unsafe { BorrowedFd::borrow_raw(0) }
}

impl Terminal {
    fn attach(master: OwnedFd) -> Terminal {
        let saved = tcgetattr(stdin()).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            cfmakeraw(&mut raw);
            let _ = tcsetattr(stdin(), SetArg::TCSANOW, &raw);
            let mut ws = libc::winsize {
                ws_row: 0,
                ws_col: 0,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // SAFETY: TIOCGWINSZ writes one winsize to the pointer and TIOCSWINSZ reads
            // one from it; both fds are open for the calls.
            unsafe {
                if libc::ioctl(stdin().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) == 0 {
                    libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
                }
            }
        }
        Terminal { master, saved }
    }

    /// Copies stdin to the pty and the pty to stdout until `exited` gives the process's
    /// exit code and the pty has nothing more; that code.
    pub fn pump(
        &self,
        mut exited: impl FnMut() -> Result<Option<i32>, String>,
    ) -> Result<i32, String> {
        let mut stdin_open = true;
        let mut code = None;
        let mut buf = [0u8; 8192];
        loop {
            if code.is_none() {
                code = exited()?;
            }
            let mut fds = vec![PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
            if stdin_open {
                fds.push(PollFd::new(stdin(), PollFlags::POLLIN));
            }
            // Once the process is gone, only what the pty still holds is wanted.
            let wait = if code.is_some() { 0u8 } else { 20 };
            match poll(&mut fds, PollTimeout::from(wait)) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(format!("poll: {e}")),
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            let (master_ready, stdin_ready) = (ready(&fds[0]), fds.get(1).is_some_and(ready));
            drop(fds);
            if master_ready {
                match read(&self.master, &mut buf) {
                    Ok(n) if n > 0 => write_all(std::io::stdout().as_fd(), &buf[..n])?,
                    // EIO: every slave has closed; the process and its children are gone.
                    Ok(_) | Err(_) => {
                        if let Some(c) = code {
                            return Ok(c);
                        }
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                }
            } else if let Some(c) = code {
                return Ok(c);
            }
            if stdin_ready {
                match read(stdin(), &mut buf) {
                    Ok(n) if n > 0 => write_all(self.master.as_fd(), &buf[..n])?,
                    _ => stdin_open = false,
                }
            }
        }
    }
}

fn write_all(fd: BorrowedFd, mut b: &[u8]) -> Result<(), String> {
    while !b.is_empty() {
        match write(fd, b) {
            Ok(n) => b = &b[n..],
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(e) => return Err(format!("cannot copy the terminal: {e}")),
        }
    }
    Ok(())
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = tcsetattr(stdin(), SetArg::TCSANOW, t);
        }
    }
}
