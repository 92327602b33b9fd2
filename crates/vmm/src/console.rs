//! The host side of the serial console: stdin goes to the guest's UART (raw mode on a
//! tty), Ctrl-A x quits as in QEMU, and SIGTERM/SIGINT stop the VM cleanly. Guest output
//! goes through a bounded buffer that the event loop drains with non-blocking writes, so
//! a stdout nobody reads costs the guest bytes, never the VMM its event loop.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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
const OUTPUT_DATA: u32 = 5;
const STDOUT_DATA: u32 = 6;

/// Guest output the console holds while stdout cannot take it; beyond this the UART
/// drops bytes (and tells a polling guest its transmitter is busy).
pub const OUTPUT_CAPACITY: usize = 64 * 1024;

#[derive(Default)]
struct Pending {
    bytes: VecDeque<u8>,
    dropped: u64,
}

/// The line logged when output starts being dropped (once a run).
pub const DROPPING: &str = "guest console output is being dropped: stdout is not being read";

/// Guest console output on its way out: the UART (a vCPU thread) appends, the event loop
/// drains into `out`, which is non-blocking wherever a write could block.
pub struct Output {
    pending: Mutex<Pending>,
    /// Signalled when bytes arrive in an empty buffer.
    pub(crate) ready: EventFd,
    out: File,
    broken: AtomicBool,
    /// With `--profile`: the guest's first console byte.
    first_byte: std::sync::OnceLock<Arc<crate::profile::Mark>>,
}

/// How a drain ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// Everything was written.
    Empty,
    /// The output would block; bytes remain.
    Blocked,
}

impl Output {
    /// Output written to `out` (see [`open_stdout`]).
    pub fn new(out: File) -> io::Result<Arc<Output>> {
        Ok(Arc::new(Output {
            pending: Mutex::new(Pending::default()),
            ready: EventFd::new(vmm_sys_util::eventfd::EFD_NONBLOCK)?,
            out,
            broken: AtomicBool::new(false),
            first_byte: std::sync::OnceLock::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes what fits of `data`; the rest is dropped and counted. Never blocks on I/O.
    pub fn push(&self, data: &[u8]) {
        if let Some(m) = self.first_byte.get() {
            m.hit();
        }
        let mut p = self.lock();
        let was_empty = p.bytes.is_empty();
        let room = OUTPUT_CAPACITY.saturating_sub(p.bytes.len());
        let n = data.len().min(room);
        p.bytes.extend(&data[..n]);
        let first_drop = p.dropped == 0 && n < data.len();
        p.dropped += (data.len() - n) as u64;
        drop(p);
        if first_drop {
            log::warn!("{DROPPING} (the UART reports its transmitter busy meanwhile)");
        }
        if was_empty && n > 0 {
            if let Err(e) = self.ready.write(1) {
                log::debug!("console: cannot signal output: {e}");
            }
        }
    }

    /// Marks `m` at the guest's first console byte (`--profile`).
    pub fn mark_first_byte(&self, m: Arc<crate::profile::Mark>) {
        let _ = self.first_byte.set(m);
    }

    /// Whether the buffer is full (the UART then reports its transmitter busy).
    pub fn is_full(&self) -> bool {
        self.lock().bytes.len() >= OUTPUT_CAPACITY
    }

    /// Bytes dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Writes pending bytes until the buffer is empty or the output would block; at most
    /// one buffer's worth per call, so a guest writing as fast as stdout drains cannot
    /// keep the event loop here.
    pub fn drain(&self) -> Drained {
        let mut chunk = [0u8; 8192];
        let mut budget = OUTPUT_CAPACITY;
        loop {
            let n = {
                let p = self.lock();
                if p.bytes.is_empty() {
                    return Drained::Empty;
                }
                let (a, b) = p.bytes.as_slices();
                let n = a.len().min(chunk.len());
                chunk[..n].copy_from_slice(&a[..n]);
                let m = b.len().min(chunk.len() - n);
                chunk[n..n + m].copy_from_slice(&b[..m]);
                n + m
            };
            if self.broken.load(Ordering::Relaxed) {
                self.lock().bytes.clear();
                return Drained::Empty;
            }
            match (&self.out).write(&chunk[..n]) {
                Ok(0) => return Drained::Blocked,
                Ok(w) => {
                    self.lock().bytes.drain(..w);
                    budget = budget.saturating_sub(w);
                    if budget == 0 {
                        return Drained::Blocked;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drained::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("console: guest output cannot be written ({e}); dropping it");
                    self.broken.store(true, Ordering::Relaxed);
                }
            }
        }
    }

    /// Drains for at most `limit`, waiting for the output to take more (at the end of a
    /// run, so the guest's last lines get out unless nobody is reading).
    pub fn flush_for(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.drain() == Drained::Blocked {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [nix::poll::PollFd::new(
                self.out.as_fd(),
                nix::poll::PollFlags::POLLOUT,
            )];
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)) {
                Ok(0) => break,
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(_) => break,
            }
        }
        let left = self.lock().bytes.len();
        if left > 0 {
            log::debug!("console: {left} bytes of guest output not written at exit");
        }
    }
}

/// The writer the UART gets: appends to [`Output`].
pub struct OutputWriter(pub Arc<Output>);

impl Write for OutputWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.push(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// This process's stdout for guest output, as a descriptor whose writes never block:
/// regular files and block devices as they are (a write there does not wait for a
/// reader); pipes, FIFOs and terminals reopened through /proc/self/fd/1 with O_NONBLOCK,
/// a file description of minnow's own, so the shell's stays as it was; anything else
/// (a socket) gets O_NONBLOCK on a duplicate.
pub fn open_stdout() -> io::Result<File> {
    let stdout = io::stdout();
    let dup = File::from(stdout.as_fd().try_clone_to_owned()?);
    let kind = dup.metadata()?.file_type();
    if kind.is_file() || kind.is_block_device() {
        return Ok(dup);
    }
    let reopened = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open("/proc/self/fd/1");
    match reopened {
        Ok(f) => Ok(f),
        Err(e) => {
            log::debug!("console: cannot reopen stdout ({e}); making it non-blocking");
            let fd = dup.as_raw_fd();
            // SAFETY: fcntl on a descriptor we own; F_GETFL/F_SETFL take and return ints.
            let ok = unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFL);
                flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
            };
            if ok {
                Ok(dup)
            } else {
                Err(io::Error::last_os_error())
            }
        }
    }
}

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
    output: Arc<Output>,
    stdout_watched: bool,
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
        output: Arc<Output>,
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
            output,
            stdout_watched: false,
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

    /// Writes guest output; while stdout would block it is watched for room.
    fn drain_output(&mut self, ops: &mut EventOps) {
        let want = self.output.drain() == Drained::Blocked;
        if want == self.stdout_watched {
            return;
        }
        let ev = Events::with_data_raw(self.output.out.as_raw_fd(), STDOUT_DATA, EventSet::OUT);
        let result = if want { ops.add(ev) } else { ops.remove(ev) };
        match result {
            Ok(()) => self.stdout_watched = want,
            Err(e) => log::debug!("console: cannot watch stdout: {e:?}"),
        }
    }

    /// Takes everything stdin has: std's `Stdin` is buffered, and bytes left in its
    /// buffer would wait, unseen by epoll (which watches the fd), until more input came.
    /// At most one buffer (8 KiB) joins `pending`; stdin is then not watched until the
    /// UART has taken it.
    fn read_stdin(&mut self, ops: &mut EventOps) {
        let mut stdin = std::io::stdin().lock();
        match stdin.fill_buf() {
            Ok([]) => {
                drop(stdin);
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
            OUTPUT_DATA => {
                let _ = self.output.ready.read();
                self.drain_output(ops);
            }
            STDOUT_DATA => self.drain_output(ops),
            _ => {}
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        let registrations = [
            Events::with_data(&self.rx_ready, RX_READY_DATA, EventSet::IN),
            Events::with_data(&self.signals, SIGNAL_DATA, EventSet::IN),
            Events::with_data(self.exit.eventfd(), EXIT_DATA, EventSet::IN),
            Events::with_data(&self.output.ready, OUTPUT_DATA, EventSet::IN),
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

    #[test]
    fn output_is_bounded_and_drains_to_a_pipe_without_blocking() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let w = File::from(w);
        // SAFETY: fcntl on the write end this test owns, setting O_NONBLOCK.
        unsafe {
            let fd = w.as_raw_fd();
            libc::fcntl(
                fd,
                libc::F_SETFL,
                libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK,
            );
        }
        let out = Output::new(w).unwrap();
        out.push(b"hello");
        assert_eq!(out.ready.read().unwrap(), 1, "first bytes wake the loop");
        assert_eq!(out.drain(), Drained::Empty);
        let mut buf = [0u8; 5];
        File::from(r.try_clone().unwrap())
            .read_exact(&mut buf)
            .unwrap();
        assert_eq!(&buf, b"hello");
        // Nobody reads: the pipe fills, the buffer fills, then bytes are dropped.
        let big = vec![b'x'; 4 * OUTPUT_CAPACITY];
        for _ in 0..8 {
            out.push(&big);
            let _ = out.drain();
        }
        assert_eq!(out.drain(), Drained::Blocked);
        assert!(out.is_full());
        assert!(out.dropped() > 0);
        let t = Instant::now();
        out.flush_for(Duration::from_millis(50));
        assert!(t.elapsed() < Duration::from_secs(5));
        drop(r);
    }
}
