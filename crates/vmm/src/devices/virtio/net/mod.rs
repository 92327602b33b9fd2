//! virtio-net with one RX/TX queue pair over a TAP: MAC in config space, checksum and
//! TSO offloads passed through to the TAP (the ones it accepts), mergeable RX buffers. The TAP is watched on
//! the event loop; while a received frame has no guest buffer to go to, minnow stops
//! reading the TAP (the kernel queues or drops), so nothing buffers without bound.
//!
//! While the VM is paused the device is frozen ([`Net::freeze`]): it neither reads the
//! TAP nor touches guest memory or the rings, so a snapshot sees the rings as the
//! vCPUs left them. Every step runs under the device's lock, so no chain is ever
//! half-processed when the freeze takes it; notifications that come in meanwhile are
//! made good by [`Net::thaw`]'s caller notifying both queues again. A frame read from
//! the TAP that no RX buffer took yet stays with a paused VM and is delivered on
//! resume; it is not in a snapshot (as if the network had dropped it).

pub mod tap;

use std::io;
use std::os::unix::io::RawFd;
use std::sync::Arc;

use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6,
    VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MRG_RXBUF,
};
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Address, Bytes, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;

use super::{add_used_all, needs_interrupt, ActivateError, Interrupt, VirtioDevice, INT_VRING};
use tap::{NetBackend, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, VNET_HDR_LEN};

/// virtio device ID of a network device.
pub const DEVICE_TYPE: u32 = 1;
/// Descriptors per queue.
pub const QUEUE_SIZE: u16 = 256;
const QUEUE_SIZES: [u16; 2] = [QUEUE_SIZE, QUEUE_SIZE];
const RX: usize = 0;
const TX: usize = 1;
/// Largest frame with its header: 64 KiB of TSO payload plus Ethernet and vnet headers.
pub const MAX_FRAME: usize = 65536 + 14 + VNET_HDR_LEN;
/// Frames handled per event before yielding to the loop.
const BATCH: usize = 64;
/// Offset of `num_buffers` in the vnet header.
const NUM_BUFFERS_OFFSET: u64 = 10;
/// Offload sets tried on the TAP at creation, most first.
const OFFLOAD_PROBES: [u32; 2] = [TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6, TUN_F_CSUM];

pub use crate::config::Mac;

struct Active {
    mem: GuestMemoryMmap,
    rx: Queue,
    tx: Queue,
    interrupt: Arc<Interrupt>,
    mergeable: bool,
}

/// Counters, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub rx_frames: u64,
    pub tx_frames: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

/// A virtio-net device.
pub struct Net {
    backend: Box<dyn NetBackend>,
    mac: Mac,
    active: Option<Active>,
    /// A frame read from the backend that no guest buffer took yet.
    pending: Vec<u8>,
    pending_len: usize,
    tx_buf: Vec<u8>,
    stats: Stats,
    /// TUN_F_* offloads the backend accepted when probed: the guest is offered only these.
    offloads: u32,
    /// The VM is paused: no TAP reads, no guest memory (see the module's text).
    frozen: bool,
}

/// Finds the largest offload set in [`OFFLOAD_PROBES`] the backend accepts, then turns
/// offloads off again until a driver asks for them.
fn probe_offloads(backend: &mut dyn NetBackend) -> u32 {
    let mut accepted = 0;
    for flags in OFFLOAD_PROBES {
        match backend.set_offload(flags) {
            Ok(()) => {
                accepted = flags;
                break;
            }
            Err(e) => log::debug!("virtio-net: the TAP refuses offloads {flags:#x}: {e}"),
        }
    }
    if accepted != OFFLOAD_PROBES[0] {
        log::info!(
            "virtio-net: the TAP accepts offloads {accepted:#x} of {:#x}; not offering the others to the guest",
            OFFLOAD_PROBES[0]
        );
    }
    if let Err(e) = backend.set_offload(0) {
        log::warn!("virtio-net: cannot turn the TAP's offloads off after probing: {e}");
    }
    accepted
}

impl Net {
    /// A device sending and receiving through `backend`.
    /// Offloads are offered to the guest only where the backend accepts them too.
    pub fn new(mut backend: Box<dyn NetBackend>, mac: Mac) -> Self {
        let offloads = probe_offloads(backend.as_mut());
        Net {
            backend,
            mac,
            active: None,
            pending: vec![0; MAX_FRAME],
            pending_len: 0,
            tx_buf: Vec::with_capacity(MAX_FRAME),
            stats: Stats::default(),
            offloads,
            frozen: false,
        }
    }

    /// The MAC address in the device's config space.
    pub fn mac(&self) -> Mac {
        self.mac
    }

    /// Stops all work for a pause (waits for the step in progress: it holds the lock).
    pub fn freeze(&mut self) {
        self.frozen = true;
    }

    /// Lets the device work again; its transport then notifies both queues (see
    /// [`super::mmio::MmioTransport::notify_all`]), so the event loop catches up with
    /// what the driver queued and watches the TAP again.
    pub fn thaw(&mut self) {
        self.frozen = false;
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Moves frames from the backend into RX buffers until either runs out.
    fn receive(&mut self) {
        let Some(a) = self.active.as_mut().filter(|_| !self.frozen) else {
            return;
        };
        let mut delivered = false;
        for _ in 0..BATCH {
            if self.pending_len == 0 {
                match self.backend.recv(&mut self.pending) {
                    Ok(n) if n > VNET_HDR_LEN => self.pending_len = n,
                    Ok(_) => {
                        self.stats.rx_dropped += 1;
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        log::warn!("virtio-net: reading the TAP failed: {e}");
                        break;
                    }
                }
            }
            match deliver(
                &a.mem,
                &mut a.rx,
                &self.pending[..self.pending_len],
                a.mergeable,
            ) {
                Delivery::Done => {
                    self.stats.rx_frames += 1;
                    delivered = true;
                    self.pending_len = 0;
                }
                Delivery::Dropped => {
                    self.stats.rx_dropped += 1;
                    delivered = true;
                    self.pending_len = 0;
                }
                Delivery::NoBuffers => {
                    // Ask the driver to tell us when it adds buffers.
                    let _ = a.rx.enable_notification(&a.mem);
                    break;
                }
            }
        }
        if delivered && needs_interrupt(&mut a.rx, &a.mem) {
            a.interrupt.raise(INT_VRING);
        }
    }

    /// Sends every frame the guest queued.
    fn transmit(&mut self) {
        let Some(a) = self.active.as_mut().filter(|_| !self.frozen) else {
            return;
        };
        let mut sent = false;
        for _ in 0..usize::from(QUEUE_SIZE) {
            let Some(chain) = a.tx.pop_descriptor_chain(&a.mem) else {
                break;
            };
            let head = chain.head_index();
            self.tx_buf.clear();
            let mut ok = true;
            for desc in chain {
                let len = desc.len() as usize;
                if desc.is_write_only() || self.tx_buf.len() + len > MAX_FRAME {
                    ok = false;
                    break;
                }
                let start = self.tx_buf.len();
                self.tx_buf.resize(start + len, 0);
                if a.mem
                    .read_slice(&mut self.tx_buf[start..], desc.addr())
                    .is_err()
                {
                    ok = false;
                    break;
                }
            }
            if ok && self.tx_buf.len() > VNET_HDR_LEN && self.backend.send(&self.tx_buf).is_ok() {
                self.stats.tx_frames += 1;
            } else {
                self.stats.tx_dropped += 1;
            }
            if a.tx.add_used(&a.mem, head, 0).is_err() {
                log::warn!("virtio-net: cannot update the TX used ring");
                break;
            }
            sent = true;
        }
        if sent && needs_interrupt(&mut a.tx, &a.mem) {
            a.interrupt.raise(INT_VRING);
        }
    }
}

/// What happened to one received frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Copied into one or more RX chains.
    Done,
    /// The guest's buffers could not hold it (or were unusable): dropped.
    Dropped,
    /// No RX buffers: try again when the driver adds some.
    NoBuffers,
}

/// Copies `frame` (vnet header first) into RX chains. With mergeable buffers a frame may
/// span several chains, and `num_buffers` in the header says how many.
pub fn deliver(mem: &GuestMemoryMmap, q: &mut Queue, frame: &[u8], mergeable: bool) -> Delivery {
    let mut written = 0usize;
    let mut used: Vec<(u16, u32)> = Vec::new();
    let mut header_at = None;
    let mut broken = false;
    while written < frame.len() {
        let Some(chain) = q.pop_descriptor_chain(mem) else {
            // Give back the chains taken for this frame and wait for more.
            for _ in 0..used.len() {
                q.go_to_previous_position();
            }
            return Delivery::NoBuffers;
        };
        let head = chain.head_index();
        let mut in_chain = 0usize;
        for desc in chain {
            if !desc.is_write_only() {
                broken = true;
                break;
            }
            let n = (desc.len() as usize).min(frame.len() - written);
            if header_at.is_none() {
                if n < VNET_HDR_LEN {
                    broken = true;
                    break;
                }
                header_at = Some(desc.addr());
            }
            if mem
                .write_slice(&frame[written..written + n], desc.addr())
                .is_err()
            {
                broken = true;
                break;
            }
            written += n;
            in_chain += n;
            if written == frame.len() {
                break;
            }
        }
        // in_chain is at most the frame's length, far below 4 GiB.
        used.push((head, u32::try_from(in_chain).unwrap_or(u32::MAX)));
        if broken || !mergeable {
            break;
        }
    }
    let complete = !broken && written == frame.len();
    if let Some(addr) = header_at.filter(|_| complete) {
        // One buffer per descriptor chain: at most the queue size, a u16.
        let count = u16::try_from(used.len()).unwrap_or(u16::MAX);
        if let Some(at) = addr.checked_add(NUM_BUFFERS_OFFSET) {
            let _ = mem.write_obj(count.to_le(), at);
        }
    }
    if !complete {
        // A frame that did not fit is returned with length 0: the driver drops it.
        used.iter_mut().for_each(|u| u.1 = 0);
    }
    if add_used_all(q, mem, &used).is_err() {
        return Delivery::Dropped;
    }
    if complete {
        Delivery::Done
    } else {
        Delivery::Dropped
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        DEVICE_TYPE
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn features(&self) -> u64 {
        // Frames from the guest (CSUM, HOST_TSO*) reach the TAP with their vnet header,
        // which any IFF_VNET_HDR TAP takes. Frames to the guest carry partial checksums
        // or GSO only when TUNSETOFFLOAD enabled that, so GUEST_* follow the probe.
        let mut bits = vec![
            VIRTIO_NET_F_MAC,
            VIRTIO_NET_F_MRG_RXBUF,
            VIRTIO_NET_F_CSUM,
            VIRTIO_NET_F_HOST_TSO4,
            VIRTIO_NET_F_HOST_TSO6,
        ];
        for (tun, bit) in [
            (TUN_F_CSUM, VIRTIO_NET_F_GUEST_CSUM),
            (TUN_F_TSO4, VIRTIO_NET_F_GUEST_TSO4),
            (TUN_F_TSO6, VIRTIO_NET_F_GUEST_TSO6),
        ] {
            if self.offloads & tun != 0 {
                bits.push(bit);
            }
        }
        bits.iter().fold(0, |f, bit| f | (1u64 << bit))
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let Ok(start) = usize::try_from(offset) else {
            return;
        };
        if let Some(src) = start
            .checked_add(data.len())
            .and_then(|end| self.mac.0.get(start..end))
        {
            data.copy_from_slice(src);
        }
    }

    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        queues: Vec<Queue>,
        acked: u64,
        interrupt: Arc<Interrupt>,
    ) -> Result<(), ActivateError> {
        let [rx, tx]: [Queue; 2] = queues.try_into().map_err(|_| ActivateError::BadQueue(2))?;
        if !rx.ready() || !tx.ready() {
            return Err(ActivateError::BadQueue(if rx.ready() { TX } else { RX }));
        }
        let has = |bit: u32| acked & (1u64 << bit) != 0;
        let mut offload = 0;
        if has(VIRTIO_NET_F_GUEST_CSUM) {
            offload |= TUN_F_CSUM;
            if has(VIRTIO_NET_F_GUEST_TSO4) {
                offload |= TUN_F_TSO4;
            }
            if has(VIRTIO_NET_F_GUEST_TSO6) {
                offload |= TUN_F_TSO6;
            }
        }
        let offload = offload & self.offloads;
        if let Err(e) = self.backend.set_offload(offload) {
            // Without offloads the TAP sends complete frames, which any driver takes.
            log::warn!(
                "virtio-net: the TAP refuses offloads {offload:#x} ({e}); continuing without"
            );
            if let Err(e) = self.backend.set_offload(0) {
                log::warn!("virtio-net: cannot turn the TAP's offloads off: {e}");
            }
        }
        self.active = Some(Active {
            mem,
            rx,
            tx,
            interrupt,
            mergeable: has(VIRTIO_NET_F_MRG_RXBUF),
        });
        // No receive here: this runs on a vCPU thread, whose seccomp filter has no
        // `read`. Frames waiting on the TAP keep it readable (epoll is level-triggered),
        // and the driver notifies RX once it has posted buffers; both reach `receive` on
        // the event loop.
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
        self.pending_len = 0;
    }

    fn process_queue(&mut self, index: usize) {
        match index {
            RX => self.receive(),
            TX => self.transmit(),
            _ => {}
        }
    }

    fn extra_fds(&self) -> Vec<(RawFd, EventSet)> {
        vec![(self.backend.fd(), EventSet::IN)]
    }

    fn process_extra(&mut self, _index: usize, _events: EventSet) {
        if self.frozen {
            // The loop stops watching the TAP after this (watch_extra).
        } else if self.active.is_some() {
            self.receive();
        } else {
            // No driver yet: drain (a batch at a time) so the TAP does not stay readable.
            for _ in 0..BATCH {
                if self.backend.recv(&mut self.pending).is_err() {
                    break;
                }
                self.stats.rx_dropped += 1;
            }
        }
    }

    fn watch_extra(&self, _index: usize) -> bool {
        self.pending_len == 0 && !self.frozen
    }

    /// The rings as they are: a frozen device has no work in progress (see the module's
    /// text); chains the driver made available and the device has not taken stay in the
    /// available ring, for the restored device (notified at restore) to take.
    fn save_queues(&mut self) -> Result<Vec<virtio_queue::QueueState>, String> {
        if !self.frozen {
            return Err("the network device is running; pause the VM first".into());
        }
        let a = self
            .active
            .as_ref()
            .ok_or("the network device is not active")?;
        Ok(vec![a.rx.state(), a.tx.state()])
    }
}

#[cfg(test)]
mod tests;
