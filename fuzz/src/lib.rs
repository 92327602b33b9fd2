//! What the fuzz targets share: a reader that takes the fuzz input apart, guest memory
//! and queues laid out in it, a fake network backend, and scratch directories.
//!
//! Every target drives minnow's own code (crates/vmm, crates/image) through its public
//! entry points; nothing here re-implements what it tests.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use minnow_vmm::devices::virtio::net::tap::NetBackend;
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Takes values off the front of the fuzz input; past its end every value is 0.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Up to `n` bytes.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// Whatever is left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.data.len())
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        let b = self.bytes(N);
        a[..b.len()].copy_from_slice(b);
        a
    }

    pub fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }
}

/// Guest memory of `size` bytes at guest address 0.
pub fn memory(size: usize) -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size)]).expect("guest memory")
}

/// Where a split queue's three parts are in guest memory.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
}

/// A ready queue of `size` (any u16: virtio-queue refuses what the spec does) at `at`,
/// as a driver would have set it up through the transport.
pub fn queue(max: u16, size: u16, at: Layout, event_idx: bool) -> Queue {
    let mut q = Queue::new(max).expect("queue");
    q.set_size(size);
    q.set_desc_table_address(Some(at.desc as u32), Some((at.desc >> 32) as u32));
    q.set_avail_ring_address(Some(at.avail as u32), Some((at.avail >> 32) as u32));
    q.set_used_ring_address(Some(at.used as u32), Some((at.used >> 32) as u32));
    q.set_event_idx(event_idx);
    q.set_ready(true);
    q
}

/// Queue sizes a fuzz byte picks from: mostly powers of two up to `max`, sometimes not.
pub fn queue_size(b: u8, max: u16) -> u16 {
    match b % 16 {
        15 => u16::from(b),
        n => (1u16 << (n % 9)).min(max),
    }
}

/// The wire of a [`FakeTap`]: frames for the guest, and what the guest sent.
#[derive(Default)]
pub struct Wire {
    pub to_guest: VecDeque<Vec<u8>>,
    pub from_guest: Vec<Vec<u8>>,
    pub offload: u32,
}

/// A network backend without a TAP: frames come from the fuzz input.
pub struct FakeTap {
    pub wire: Arc<Mutex<Wire>>,
    evt: EventFd,
}

impl FakeTap {
    pub fn new() -> (Self, Arc<Mutex<Wire>>) {
        let wire = Arc::new(Mutex::new(Wire::default()));
        let tap = FakeTap {
            wire: wire.clone(),
            evt: EventFd::new(EFD_NONBLOCK).expect("eventfd"),
        };
        (tap, wire)
    }
}

impl NetBackend for FakeTap {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.wire.lock().unwrap().to_guest.pop_front() {
            Some(f) => {
                // A TAP truncates what does not fit the read.
                let n = f.len().min(buf.len());
                buf[..n].copy_from_slice(&f[..n]);
                Ok(n)
            }
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        self.wire.lock().unwrap().from_guest.push(frame.to_vec());
        Ok(())
    }

    fn set_offload(&mut self, flags: u32) -> io::Result<()> {
        self.wire.lock().unwrap().offload = flags;
        Ok(())
    }

    fn fd(&self) -> RawFd {
        self.evt.as_raw_fd()
    }
}

/// A directory for a target's scratch files, made once per process under $TMPDIR, which
/// fuzz/run.sh makes fresh under /dev/shm for each run and removes after it.
pub fn scratch() -> PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("minnow-fuzz-")
            .tempdir()
            .expect("scratch directory")
    })
    .path()
    .to_path_buf()
}
