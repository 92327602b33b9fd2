//! A snapshot's `DIR/state` (`minnow run --restore DIR`): the header checks, then the
//! postcard body and the memory-layout check, as `snapshot::read` runs them before
//! anything of the VM exists.
//!
//! Input: a first byte choosing the mode, then bytes. Even: the bytes are the whole file
//! (magic, version, length, checksum: what a damaged or foreign file meets). Odd: the
//! bytes are a body, framed with a valid header and checksum, so the fuzzer reaches the
//! decoder (an edited state whose checksum was fixed up).
//! Oracle: no panic; a state that decodes has a layout a restore can map: regions in
//! ascending guest order, end to end in the file from offset 0, as large as the config's
//! memory, so no mapping reaches past the memory file; it has one device state per disk
//! and then one per network device. Each transport state is then put into a fresh
//! transport (over a stand-in device with virtio-blk's or virtio-net's type, queues and
//! features, in guest memory of the state's size, 1 to 64 MiB), as a restore does: it is
//! refused, or taken whole (saving the transport again gives the state back, features
//! cut to those offered).

#![no_main]

use std::sync::{Arc, Mutex};

use libfuzzer_sys::fuzz_target;
use minnow_fuzz::memory;
use minnow_vmm::devices::virtio::mmio::{MmioTransport, TransportState};
use minnow_vmm::devices::virtio::{ActivateError, Interrupt, VirtioDevice};
use minnow_vmm::snapshot::{self, DeviceState};
use virtio_queue::{Queue, QueueState};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// virtio-blk or virtio-net as the transport sees it, without a disk, a TAP or a worker.
struct StandIn {
    kind: Kind,
    queues: Vec<QueueState>,
}

/// The device's type, queue sizes and features.
struct Kind(u32, &'static [u16], u64);

/// virtio-blk: FLUSH, SEG_MAX, DISCARD, WRITE_ZEROES, EVENT_IDX (a read-write disk).
const BLOCK: Kind = Kind(
    2,
    &[256],
    (1 << 9) | (1 << 2) | (1 << 13) | (1 << 14) | (1 << 29),
);
/// virtio-net: MAC, MRG_RXBUF, CSUM, HOST_TSO4/6, GUEST_CSUM, GUEST_TSO4/6.
const NET: Kind = Kind(
    1,
    &[256, 256],
    (1 << 5) | (1 << 15) | (1 << 0) | (1 << 11) | (1 << 12) | (1 << 1) | (1 << 7) | (1 << 8),
);

impl VirtioDevice for StandIn {
    fn device_type(&self) -> u32 {
        self.kind.0
    }
    fn queue_max_sizes(&self) -> &[u16] {
        self.kind.1
    }
    fn features(&self) -> u64 {
        self.kind.2
    }
    fn read_config(&self, _offset: u64, _data: &mut [u8]) {}
    fn activate(
        &mut self,
        _mem: GuestMemoryMmap,
        queues: Vec<Queue>,
        _acked: u64,
        _interrupt: Arc<Interrupt>,
    ) -> Result<(), ActivateError> {
        self.queues = queues.iter().map(|q| q.state()).collect();
        Ok(())
    }
    fn reset(&mut self) {}
    fn process_queue(&mut self, _index: usize) {}
    fn save_queues(&mut self) -> Result<Vec<QueueState>, String> {
        Ok(self.queues.clone())
    }
}

fn restore_transport(s: &TransportState, kind: Kind, mem_size: usize) {
    let features = kind.2;
    let evts = kind
        .1
        .iter()
        .map(|_| EventFd::new(EFD_NONBLOCK).unwrap())
        .collect();
    let dev = Arc::new(Mutex::new(StandIn {
        kind,
        queues: Vec::new(),
    }));
    let interrupt = Arc::new(Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));
    let mut t = MmioTransport::new(dev, memory(mem_size), interrupt, evts);
    if t.restore(s).is_err() {
        return;
    }
    let mut want = s.clone();
    want.acked_features &= features | (1 << 32);
    assert_eq!(
        t.save().unwrap(),
        want,
        "a restored transport saves what it was given"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode & 1 == 1 {
        snapshot::frame(rest)
    } else {
        rest.to_vec()
    };
    let Ok(snap) = snapshot::decode(&bytes) else {
        return;
    };
    let mut offset = 0u64;
    let mut guest_end = 0u64;
    for r in &snap.memory {
        assert_eq!(r.file_offset, offset, "regions end to end in the file");
        assert!(r.len > 0 && r.guest_addr >= guest_end, "ascending regions");
        guest_end = r.guest_addr.checked_add(r.len).expect("no overflow");
        offset = offset.checked_add(r.len).expect("no overflow");
    }
    assert_eq!(offset, snap.memory_len());
    assert_eq!(
        offset,
        snap.config.mem_bytes(),
        "as large as the config says"
    );
    assert_eq!(
        snap.devices.len(),
        snap.config.disks.len() + snap.config.nets.len(),
        "a state per disk and network device"
    );
    let disks = snap.config.disks.len();
    assert!(
        snap.devices[..disks]
            .iter()
            .all(|d| matches!(d, DeviceState::Block { .. })),
        "the disks first"
    );
    assert_eq!(snap.nets().count(), snap.config.nets.len(), "then the nets");
    // Guest memory as large as the state's (a mapping nothing touches), within bounds.
    let mem_size = usize::try_from(snap.config.mem_bytes())
        .unwrap_or(usize::MAX)
        .clamp(1 << 20, 64 << 20);
    for d in &snap.devices {
        let kind = match d {
            DeviceState::Block { .. } => BLOCK,
            DeviceState::Net { .. } => NET,
        };
        restore_transport(d.transport(), kind, mem_size);
    }
});
