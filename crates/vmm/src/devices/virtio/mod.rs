//! virtio devices: the device model shared by every device, the MMIO transport, and
//! the devices themselves. Device request processing works on guest memory through
//! vm-memory and virtio-queue only, so it is tested without KVM.

pub mod block;
pub mod mmio;
pub mod net;

use std::os::unix::io::RawFd;
use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, Events, MutEventSubscriber};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

/// VIRTIO_F_VERSION_1: the modern (1.x) interface, the only one minnow offers.
pub const VIRTIO_F_VERSION_1: u32 = 32;
/// VIRTIO_RING_F_EVENT_IDX: notification suppression with used/avail event indexes.
pub const VIRTIO_RING_F_EVENT_IDX: u32 = 29;
/// Interrupt status bit: a used ring was updated.
pub const INT_VRING: u32 = 1;
/// Interrupt status bit: the configuration changed.
pub const INT_CONFIG: u32 = 2;

/// A device's interrupt line: the status bits the driver reads and acknowledges, and the
/// irqfd that raises the line in KVM's interrupt controller.
pub struct Interrupt {
    status: AtomicU32,
    irqfd: EventFd,
}

impl Interrupt {
    /// An interrupt raised through `irqfd`.
    pub fn new(irqfd: EventFd) -> Self {
        Interrupt {
            status: AtomicU32::new(0),
            irqfd,
        }
    }

    /// Sets `bits` in the status and raises the line.
    pub fn raise(&self, bits: u32) {
        self.status.fetch_or(bits, Ordering::SeqCst);
        if let Err(e) = self.irqfd.write(1) {
            log::warn!("virtio: cannot raise interrupt: {e}");
        }
    }

    /// The pending status bits.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    /// Sets status bits without raising the line (a restore: the line's state is in
    /// the restored interrupt controllers).
    pub fn set(&self, bits: u32) {
        self.status.fetch_or(bits, Ordering::SeqCst);
    }

    /// Clears acknowledged bits.
    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }
}

/// Why a device refused to start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActivateError {
    /// The driver set up a queue the device cannot use.
    #[error("queue {0} is not valid")]
    BadQueue(usize),
    /// The device could not start its backend.
    #[error("{0}")]
    Backend(String),
}

/// What a virtio device implements; the transport does the rest.
pub trait VirtioDevice: Send {
    /// The virtio device ID (2 = block, 1 = network).
    fn device_type(&self) -> u32;
    /// The largest size of each queue.
    fn queue_max_sizes(&self) -> &[u16];
    /// The feature bits the device offers.
    fn features(&self) -> u64;
    /// Reads the device's configuration space.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the device's configuration space (most devices ignore it).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// Starts the device with the driver's queues and negotiated features.
    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        queues: Vec<Queue>,
        acked_features: u64,
        interrupt: Arc<Interrupt>,
    ) -> Result<(), ActivateError>;
    /// Stops the device and forgets the queues (driver reset).
    fn reset(&mut self);
    /// Processes queue `index` after the driver notified it.
    fn process_queue(&mut self, index: usize);
    /// Extra file descriptors the device wants watched (e.g. a TAP), with their events.
    fn extra_fds(&self) -> Vec<(RawFd, EventSet)> {
        Vec::new()
    }
    /// Handles readiness of extra fd number `index`.
    fn process_extra(&mut self, _index: usize, _events: EventSet) {}
    /// Whether extra fd number `index` should be watched now (a device stops watching
    /// its input while it has nowhere to put it: back-pressure instead of buffering).
    fn watch_extra(&self, _index: usize) -> bool {
        true
    }
    /// Whether the device hit a fatal error and wants the driver to reset it.
    fn needs_reset(&self) -> bool {
        false
    }
    /// For a snapshot of an active device (the vCPUs are paused): completes every
    /// request the driver has made available, so no chain is half-processed, and
    /// returns the queues' state. Devices that cannot be snapshotted yet say why.
    fn save_queues(&mut self) -> Result<Vec<virtio_queue::QueueState>, String> {
        Err("this virtio device cannot be snapshotted yet".into())
    }
}

/// Puts `used` (head index, length written) on the used ring and then moves the used
/// index once, so the driver sees all of them or none (a frame spread over mergeable RX
/// buffers must arrive whole: Linux drops a frame whose buffers are not all there yet and
/// then reads the rest as frames of their own). virtio-queue's `add_used` publishes
/// each element on its own, so all but the last are written here first.
/// Not for EVENT_IDX queues: virtio-queue's `num_added` then counts one element per call,
/// and `needs_notification` could miss a `used_event` inside the batch.
pub fn add_used_all(
    q: &mut Queue,
    mem: &GuestMemoryMmap,
    used: &[(u16, u32)],
) -> Result<(), virtio_queue::Error> {
    let Some((&(last_head, last_len), rest)) = used.split_last() else {
        return Ok(());
    };
    // Every head is checked before anything is written, so a bad one leaves the ring as it was.
    if used.iter().any(|&(head, _)| head >= q.size()) {
        return Err(virtio_queue::Error::InvalidDescriptorIndex);
    }
    // More elements than the ring holds cannot be one batch (and the count fits u16).
    let rest_len = u16::try_from(rest.len())
        .ok()
        .filter(|&n| n < q.size())
        .ok_or(virtio_queue::Error::InvalidDescriptorIndex)?;
    let start = q.next_used();
    for (i, &(head, len)) in (0u16..).zip(rest) {
        let slot = start.wrapping_add(i) % q.size();
        // struct virtq_used_elem { le32 id; le32 len; } after the 4-byte ring header.
        let at = vm_memory::GuestAddress(q.used_ring())
            .checked_add(4 + u64::from(slot) * 8)
            .ok_or(virtio_queue::Error::AddressOverflow)?;
        mem.write_obj([u32::from(head).to_le(), len.to_le()], at)
            .map_err(virtio_queue::Error::GuestMemory)?;
    }
    q.set_next_used(start.wrapping_add(rest_len));
    q.add_used(mem, last_head, last_len)
}

/// VRING_AVAIL_F_NO_INTERRUPT: the driver asks for no interrupts (it is polling).
pub const VRING_AVAIL_F_NO_INTERRUPT: u16 = 1;

/// Whether the driver wants an interrupt for what was just put on `q`'s used ring.
/// With EVENT_IDX that is virtio-queue's `used_event` check. Without it the driver says so
/// with VRING_AVAIL_F_NO_INTERRUPT in the available ring's flags (virtio 1.2, 2.7.10),
/// which virtio-queue 0.18 does not read: its answer is always "yes". Linux's drivers
/// set the flag while they poll (NAPI); ignoring it costs one interrupt per batch.
pub fn needs_interrupt(q: &mut Queue, mem: &GuestMemoryMmap) -> bool {
    if q.event_idx_enabled() {
        return q.needs_notification(mem).unwrap_or(true);
    }
    // The used index is published; order that before reading the flags. The driver clears
    // the flag and then re-reads the used index, so one of the two sides sees the other.
    fence(Ordering::SeqCst);
    match mem.load::<u16>(vm_memory::GuestAddress(q.avail_ring()), Ordering::Acquire) {
        Ok(flags) => u16::from_le(flags) & VRING_AVAIL_F_NO_INTERRUPT == 0,
        Err(_) => true,
    }
}

/// A device shared between its transport (vCPU threads) and its event handler.
pub type SharedVirtioDevice = Arc<Mutex<dyn VirtioDevice>>;

/// The event-loop side of a device: queue notifications (ioeventfds) and extra fds.
pub struct QueueHandler {
    device: SharedVirtioDevice,
    queue_evts: Vec<EventFd>,
    extra: Vec<(RawFd, EventSet, bool)>,
}

const EXTRA_BASE: u32 = 1 << 16;

impl QueueHandler {
    /// A handler for `device`, whose queue `i` is notified through `queue_evts[i]`.
    pub fn new(device: SharedVirtioDevice, queue_evts: Vec<EventFd>) -> Self {
        QueueHandler {
            device,
            queue_evts,
            extra: Vec::new(),
        }
    }

    /// Adds or removes extra fds from the loop as the device asks.
    fn update_extra(&mut self, device: &dyn VirtioDevice, ops: &mut EventOps) {
        for (i, (fd, set, watched)) in (0u32..).zip(self.extra.iter_mut()) {
            let want = device.watch_extra(i as usize);
            if want == *watched {
                continue;
            }
            let ev = Events::with_data_raw(*fd, EXTRA_BASE + i, *set);
            let result = if want { ops.add(ev) } else { ops.remove(ev) };
            match result {
                Ok(()) => *watched = want,
                Err(e) => log::error!("virtio: cannot change watch on fd {fd}: {e:?}"),
            }
        }
    }
}

impl MutEventSubscriber for QueueHandler {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let data = events.data();
        let device = self.device.clone();
        let mut device = device.lock().unwrap_or_else(|p| p.into_inner());
        if data >= EXTRA_BASE {
            device.process_extra((data - EXTRA_BASE) as usize, events.event_set());
        } else if let Some(evt) = self.queue_evts.get(data as usize) {
            let _ = evt.read();
            device.process_queue(data as usize);
        }
        self.update_extra(&*device, ops);
    }

    fn init(&mut self, ops: &mut EventOps) {
        for (i, evt) in (0u32..).zip(&self.queue_evts) {
            if let Err(e) = ops.add(Events::with_data(evt, i, EventSet::IN)) {
                log::error!("virtio: cannot watch queue {i}: {e:?}");
            }
        }
        let device = self.device.clone();
        let device = device.lock().unwrap_or_else(|p| p.into_inner());
        self.extra = device
            .extra_fds()
            .into_iter()
            .map(|(fd, set)| (fd, set, false))
            .collect();
        self.update_extra(&*device, ops);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    #[test]
    fn interrupt_status_and_ack() {
        let fd = EventFd::new(EFD_NONBLOCK).unwrap();
        let i = Interrupt::new(fd.try_clone().unwrap());
        i.raise(INT_VRING);
        i.raise(INT_CONFIG);
        assert_eq!(i.status(), INT_VRING | INT_CONFIG);
        assert_eq!(fd.read().unwrap(), 2);
        i.ack(INT_VRING);
        assert_eq!(i.status(), INT_CONFIG);
    }

    #[test]
    fn used_elements_land_in_order_across_the_ring_end_and_idx_moves_once() {
        use virtio_queue::mock::MockSplitQueue;
        let m = GuestMemoryMmap::from_ranges(&[(vm_memory::GuestAddress(0), 0x10_0000)]).unwrap();
        let mq = MockSplitQueue::new(&m, 4);
        let mut q: Queue = mq.create_queue().unwrap();
        q.set_next_used(3);
        add_used_all(&mut q, &m, &[(0, 10), (1, 20), (2, 30)]).unwrap();
        let ring: Vec<(u32, u32)> = [3u16, 0, 1]
            .iter()
            .map(|&i| {
                let e = mq.used().ring().ref_at(i.into()).unwrap().load();
                (e.id(), e.len())
            })
            .collect();
        assert_eq!(ring, vec![(0, 10), (1, 20), (2, 30)]);
        assert_eq!(mq.used().idx().load(), 6);
        assert_eq!(q.next_used(), 6);
        // A head outside the ring is refused before anything is published.
        assert!(add_used_all(&mut q, &m, &[(9, 1), (0, 1)]).is_err());
        assert!(add_used_all(&mut q, &m, &[(0, 1), (9, 1)]).is_err());
        assert_eq!(mq.used().idx().load(), 6);
        assert_eq!(q.next_used(), 6, "nothing half-done either");
        assert!(add_used_all(&mut q, &m, &[]).is_ok());
    }

    #[test]
    fn no_interrupt_flag_is_honoured_without_event_idx() {
        use virtio_queue::mock::MockSplitQueue;
        let m = GuestMemoryMmap::from_ranges(&[(vm_memory::GuestAddress(0), 0x10_0000)]).unwrap();
        let mq = MockSplitQueue::new(&m, 4);
        let mut q: Queue = mq.create_queue().unwrap();
        add_used_all(&mut q, &m, &[(0, 10)]).unwrap();
        assert!(needs_interrupt(&mut q, &m), "flags 0: interrupt");
        m.write_obj(VRING_AVAIL_F_NO_INTERRUPT.to_le(), mq.avail_addr())
            .unwrap();
        assert!(!needs_interrupt(&mut q, &m), "the driver is polling");
        // With EVENT_IDX the flag (still set) is ignored and used_event decides.
        // (add_used, not add_used_all, which is not for EVENT_IDX queues.)
        q.set_event_idx(true);
        q.add_used(&m, 1, 10).unwrap();
        let used_event = mq.avail_addr().unchecked_add(4 + 2 * 4);
        m.write_obj(5u16.to_le(), used_event).unwrap();
        assert!(!needs_interrupt(&mut q, &m), "used_event 5 not reached");
        for head in [2, 3, 0, 1] {
            q.add_used(&m, head, 10).unwrap();
        }
        // (virtio-queue 0.18.0's mock puts the used ring over used_event: write it again.)
        m.write_obj(5u16.to_le(), used_event).unwrap();
        assert!(needs_interrupt(&mut q, &m), "used_event 5 passed");
    }
}
