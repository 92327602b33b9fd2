//! The host side of the serial console: stdin goes to the guest's UART (raw mode on a
//! tty), Ctrl-A x quits as in QEMU, and SIGTERM/SIGINT stop the VM cleanly.

use std::collections::VecDeque;
use std::io::{BufRead, Read};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use crate::devices::legacy::serial::Serial;
use crate::devices::{ExitEvent, ExitReason};

const CTRL_A: u8 = 0x01;
const STDIN_DATA: u32 = 1;
const RX_READY_DATA: u32 = 2;
const SIGNAL_DATA: u32 = 3;
const EXIT_DATA: u32 = 4;

/// Splits console input into bytes for the guest and a quit request (Ctrl-A x).
/// Ctrl-A Ctrl-A sends one Ctrl-A; Ctrl-A and anything else sends both.
#[derive(Default)]
pub struct Escape {
    pending_ctrl_a: bool,
}

impl Escape {
    /// Filters `input` into `out`; returns true when the user asked to quit.
    pub fn filter(&mut self, input: &[u8], out: &mut VecDeque<u8>) -> bool {
        for &b in input {
            if self.pending_ctrl_a {
                self.pending_ctrl_a = false;
                match b {
                    b'x' | b'X' => return true,
                    CTRL_A => out.push_back(CTRL_A),
                    other => {
                        out.push_back(CTRL_A);
                        out.push_back(other);
                    }
                }
            } else if b == CTRL_A {
                self.pending_ctrl_a = true;
            } else {
                out.push_back(b);
            }
        }
        false
    }
}

/// The event-loop subscriber for stdin, the UART's "input drained" event, stop signals
/// and the VM exit event.
pub struct Console {
    serial: Arc<Mutex<Serial>>,
    rx_ready: EventFd,
    signals: UnixStream,
    exit: Arc<ExitEvent>,
    escape: Escape,
    pending: VecDeque<u8>,
    stdin_open: bool,
    stdin_watched: bool,
}

impl Console {
    /// A console feeding `serial`.
    pub fn new(
        serial: Arc<Mutex<Serial>>,
        rx_ready: EventFd,
        exit: Arc<ExitEvent>,
    ) -> std::io::Result<Self> {
        let (signals, writer) = UnixStream::pair()?;
        signals.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::low_level::pipe::register(sig, writer.try_clone()?)?;
        }
        Ok(Console {
            serial,
            rx_ready,
            signals,
            exit,
            escape: Escape::default(),
            pending: VecDeque::new(),
            stdin_open: true,
            stdin_watched: false,
        })
    }

    fn stdin_events() -> Events {
        Events::with_data_raw(std::io::stdin().as_raw_fd(), STDIN_DATA, EventSet::IN)
    }

    fn watch_stdin(&mut self, ops: &mut EventOps, on: bool) {
        if !self.stdin_open || on == self.stdin_watched {
            return;
        }
        let result = if on {
            ops.add(Self::stdin_events())
        } else {
            ops.remove(Self::stdin_events())
        };
        match result {
            Ok(()) => self.stdin_watched = on,
            Err(e) => {
                // E.g. stdin is /dev/null or a regular file, which epoll refuses.
                log::debug!("console: stdin not watched: {e:?}");
                self.stdin_open = false;
            }
        }
    }

    /// Moves pending input into the UART as far as its FIFO allows; stdin is watched only
    /// while nothing is pending, so a guest that does not read cannot make us buffer
    /// without bound.
    fn flush_pending(&mut self, ops: &mut EventOps) {
        if !self.pending.is_empty() {
            let (a, _) = self.pending.as_slices();
            let n = self
                .serial
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .enqueue(a);
            self.pending.drain(..n);
        }
        let idle = self.pending.is_empty();
        self.watch_stdin(ops, idle);
    }

    /// Takes everything stdin has: std's `Stdin` is buffered, and bytes left in its
    /// buffer would wait, unseen by epoll (which watches the fd), until more input came.
    /// At most one buffer (8 KiB) joins `pending`; stdin is then not watched until the
    /// UART has taken it.
    fn read_stdin(&mut self, ops: &mut EventOps) {
        let mut stdin = std::io::stdin().lock();
        match stdin.fill_buf() {
            Ok([]) => {
                self.watch_stdin(ops, false);
                self.stdin_open = false;
            }
            Ok(buf) => {
                let n = buf.len();
                let quit = self.escape.filter(buf, &mut self.pending);
                stdin.consume(n);
                drop(stdin);
                if quit {
                    self.exit.trigger(ExitReason::UserQuit);
                    return;
                }
                self.flush_pending(ops);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                drop(stdin);
                log::warn!("console: stdin read failed: {e}");
                self.watch_stdin(ops, false);
                self.stdin_open = false;
            }
        }
    }
}

impl MutEventSubscriber for Console {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        match events.data() {
            STDIN_DATA => self.read_stdin(ops),
            RX_READY_DATA => {
                let _ = self.rx_ready.read();
                self.flush_pending(ops);
            }
            SIGNAL_DATA => {
                let mut b = [0u8; 16];
                let _ = (&self.signals).read(&mut b);
                log::info!("stopping the VM on a signal");
                self.exit.trigger(ExitReason::UserQuit);
            }
            EXIT_DATA => {
                let _ = self.exit.eventfd().read();
            }
            _ => {}
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        let registrations = [
            Events::with_data(&self.rx_ready, RX_READY_DATA, EventSet::IN),
            Events::with_data(&self.signals, SIGNAL_DATA, EventSet::IN),
            Events::with_data(self.exit.eventfd(), EXIT_DATA, EventSet::IN),
        ];
        for ev in registrations {
            if let Err(e) = ops.add(ev) {
                log::error!("console: cannot watch an event: {e:?}");
            }
        }
        self.watch_stdin(ops, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (Vec<u8>, bool) {
        let mut e = Escape::default();
        let mut out = VecDeque::new();
        let quit = e.filter(input, &mut out);
        (out.into_iter().collect(), quit)
    }

    #[test]
    fn plain_bytes_pass_through() {
        assert_eq!(run(b"ls\r"), (b"ls\r".to_vec(), false));
    }

    #[test]
    fn ctrl_a_x_quits() {
        let (out, quit) = run(b"ab\x01x");
        assert!(quit);
        assert_eq!(out, b"ab");
    }

    #[test]
    fn ctrl_a_twice_sends_one() {
        assert_eq!(run(b"\x01\x01z"), (b"\x01z".to_vec(), false));
        assert_eq!(run(b"\x01c"), (b"\x01c".to_vec(), false));
    }

    #[test]
    fn escape_spans_reads() {
        let mut e = Escape::default();
        let mut out = VecDeque::new();
        assert!(!e.filter(b"\x01", &mut out));
        assert!(e.filter(b"x", &mut out));
        assert!(out.is_empty());
    }
}
