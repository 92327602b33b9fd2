//! The virtio-mmio transport, version 2 (virtio 1.x, section 4.2.2): the register
//! window a driver uses to discover a device, negotiate features, set up queues and
//! drive the status state machine. Queue notifications arrive through ioeventfds where
//! KVM has them registered; a write that still exits to us signals the same eventfd.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use virtio_queue::{Queue, QueueState, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::{Interrupt, SharedVirtioDevice, VIRTIO_F_VERSION_1};
use crate::devices::bus::BusDevice;

const MAGIC: u32 = 0x7472_6976; // "virt"
const VERSION: u32 = 2;
const VENDOR_ID: u32 = 0x4d4e_4e57; // "MNNW"

/// Register offsets.
pub mod reg {
    pub const MAGIC_VALUE: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_AVAIL_LOW: u64 = 0x090;
    pub const QUEUE_AVAIL_HIGH: u64 = 0x094;
    pub const QUEUE_USED_LOW: u64 = 0x0a0;
    pub const QUEUE_USED_HIGH: u64 = 0x0a4;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    pub const CONFIG: u64 = 0x100;
}

/// Device status bits.
pub mod status {
    pub const ACKNOWLEDGE: u32 = 1;
    pub const DRIVER: u32 = 2;
    pub const DRIVER_OK: u32 = 4;
    pub const FEATURES_OK: u32 = 8;
    pub const DEVICE_NEEDS_RESET: u32 = 64;
    pub const FAILED: u32 = 128;
}

/// One queue in a snapshot (virtio-queue's `QueueState`, which has no serde).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSnap {
    pub max_size: u16,
    pub next_avail: u16,
    pub next_used: u16,
    pub event_idx: bool,
    pub size: u16,
    pub ready: bool,
    pub desc_table: u64,
    pub avail_ring: u64,
    pub used_ring: u64,
}

impl From<QueueState> for QueueSnap {
    fn from(q: QueueState) -> Self {
        QueueSnap {
            max_size: q.max_size,
            next_avail: q.next_avail,
            next_used: q.next_used,
            event_idx: q.event_idx_enabled,
            size: q.size,
            ready: q.ready,
            desc_table: q.desc_table,
            avail_ring: q.avail_ring,
            used_ring: q.used_ring,
        }
    }
}

impl From<&QueueSnap> for QueueState {
    fn from(q: &QueueSnap) -> Self {
        QueueState {
            max_size: q.max_size,
            next_avail: q.next_avail,
            next_used: q.next_used,
            event_idx_enabled: q.event_idx,
            size: q.size,
            ready: q.ready,
            desc_table: q.desc_table,
            avail_ring: q.avail_ring,
            used_ring: q.used_ring,
        }
    }
}

/// A transport's registers and queues in a snapshot. The queues are the driver's
/// (being configured) before `DRIVER_OK`, the device's (with its next avail and used
/// indexes) once it is active.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportState {
    pub device_type: u32,
    pub status: u32,
    pub acked_features: u64,
    pub queue_sel: u32,
    pub device_features_sel: u32,
    pub driver_features_sel: u32,
    pub config_generation: u32,
    pub interrupt_status: u32,
    pub active: bool,
    pub queues: Vec<QueueSnap>,
}

/// One device's register window.
pub struct MmioTransport {
    device: SharedVirtioDevice,
    mem: GuestMemoryMmap,
    interrupt: Arc<Interrupt>,
    queue_evts: Vec<EventFd>,
    queues: Vec<Queue>,
    queue_sel: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    acked_features: u64,
    status: u32,
    config_generation: u32,
    active: bool,
}

impl MmioTransport {
    /// A transport for `device`; `queue_evts[i]` is signalled when queue `i` is notified.
    pub fn new(
        device: SharedVirtioDevice,
        mem: GuestMemoryMmap,
        interrupt: Arc<Interrupt>,
        queue_evts: Vec<EventFd>,
    ) -> Self {
        let queues = Self::fresh_queues(&device);
        MmioTransport {
            device,
            mem,
            interrupt,
            queue_evts,
            queues,
            queue_sel: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            acked_features: 0,
            status: 0,
            config_generation: 0,
            active: false,
        }
    }

    /// The transport's state for a snapshot (the vCPUs are paused). An active device
    /// first completes the requests it has (see [`super::VirtioDevice::save_queues`]).
    pub fn save(&mut self) -> Result<TransportState, String> {
        let queues = if self.active {
            self.device
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .save_queues()?
        } else {
            self.queues.iter().map(|q| q.state()).collect()
        };
        Ok(TransportState {
            device_type: self
                .device
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .device_type(),
            status: self.status,
            acked_features: self.acked_features,
            queue_sel: self.queue_sel,
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            config_generation: self.config_generation,
            interrupt_status: self.interrupt.status(),
            active: self.active,
            queues: queues.into_iter().map(QueueSnap::from).collect(),
        })
    }

    /// Puts a saved state back into this (new, never driven) transport; an active one
    /// starts its device with the saved queues. Refuses a state that does not fit the
    /// device (another kind, other queues, queues outside guest memory).
    pub fn restore(&mut self, s: &TransportState) -> Result<(), String> {
        let (kind, max_sizes) = {
            let dev = self.device.lock().unwrap_or_else(|p| p.into_inner());
            (dev.device_type(), dev.queue_max_sizes().to_vec())
        };
        if s.device_type != kind {
            return Err(format!(
                "a device of type {} was saved where this VM has type {kind}",
                s.device_type
            ));
        }
        let saved_max: Vec<u16> = s.queues.iter().map(|q| q.max_size).collect();
        if saved_max != max_sizes {
            return Err(format!(
                "its queues were {saved_max:?} entries at most, the device's are {max_sizes:?}"
            ));
        }
        let mut queues = Vec::with_capacity(s.queues.len());
        for (i, q) in s.queues.iter().enumerate() {
            let queue = Queue::try_from(QueueState::from(q))
                .map_err(|e| format!("its queue {i} is not valid ({e})"))?;
            if s.active && queue.ready() && !queue.is_valid(&self.mem) {
                return Err(format!("its queue {i} is outside guest memory"));
            }
            queues.push(queue);
        }
        self.status = s.status;
        self.acked_features = s.acked_features & self.device_features();
        self.queue_sel = s.queue_sel;
        self.device_features_sel = s.device_features_sel;
        self.driver_features_sel = s.driver_features_sel;
        self.config_generation = s.config_generation;
        // The line itself is in the restored irqchips: only the status bits come back.
        self.interrupt.ack(u32::MAX);
        self.interrupt.set(s.interrupt_status);
        if s.active {
            self.start_device(queues)
                .map_err(|e| format!("the device cannot start again: {e}"))?;
        } else {
            self.queues = queues;
        }
        Ok(())
    }

    /// Signals every queue's eventfd, as a driver's notify would: after a restore or a
    /// resume, a device that was frozen takes up what the driver queued meanwhile
    /// (a spurious notification is harmless in virtio).
    pub fn notify_all(&self) {
        for (i, evt) in self.queue_evts.iter().enumerate() {
            if let Err(e) = evt.write(1) {
                log::warn!("virtio-mmio: cannot notify queue {i}: {e}");
            }
        }
    }

    fn fresh_queues(device: &SharedVirtioDevice) -> Vec<Queue> {
        let dev = device.lock().unwrap_or_else(|p| p.into_inner());
        dev.queue_max_sizes()
            .iter()
            .filter_map(|&max| Queue::new(max).ok())
            .collect()
    }

    fn device_features(&self) -> u64 {
        let dev = self.device.lock().unwrap_or_else(|p| p.into_inner());
        dev.features() | (1 << VIRTIO_F_VERSION_1)
    }

    /// The selected queue, while the driver may still configure it.
    fn selected_queue(&mut self) -> Option<&mut Queue> {
        if self.status & status::FEATURES_OK == 0 || self.status & status::DRIVER_OK != 0 {
            return None;
        }
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn read_reg(&self, offset: u64) -> u32 {
        let q = self.queues.get(self.queue_sel as usize);
        match offset {
            reg::MAGIC_VALUE => MAGIC,
            reg::VERSION => VERSION,
            reg::DEVICE_ID => self
                .device
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .device_type(),
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => low_half(self.device_features()),
                1 => low_half(self.device_features() >> 32),
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => q.map_or(0, |q| u32::from(q.max_size())),
            reg::QUEUE_READY => q.map_or(0, |q| u32::from(q.ready())),
            reg::INTERRUPT_STATUS => self.interrupt.status(),
            reg::STATUS => {
                let needs_reset = self.active
                    && self
                        .device
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .needs_reset();
                self.status
                    | if needs_reset {
                        status::DEVICE_NEEDS_RESET
                    } else {
                        0
                    }
            }
            reg::CONFIG_GENERATION => self.config_generation,
            _ => 0,
        }
    }

    fn write_reg(&mut self, offset: u64, value: u32) {
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = value,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            reg::DRIVER_FEATURES => {
                if self.status & status::DRIVER == 0 || self.status & status::FEATURES_OK != 0 {
                    log::debug!("virtio-mmio: features written in status {:#x}", self.status);
                    return;
                }
                let shift = match self.driver_features_sel {
                    0 => 0,
                    1 => 32,
                    _ => return,
                };
                let mask = 0xffff_ffffu64 << shift;
                // A driver cannot take a feature the device does not offer.
                let value = (u64::from(value) << shift) & self.device_features();
                self.acked_features = (self.acked_features & !mask) | value;
            }
            reg::QUEUE_SEL => self.queue_sel = value,
            reg::QUEUE_NUM => {
                if let Some(q) = self.selected_queue() {
                    // A size that does not fit 16 bits is out of range like any size above
                    // QueueNumMax: refused (the queue keeps its size and activation checks
                    // it). Cutting it to 16 bits made 0x1_0008 a valid size of 8.
                    match u16::try_from(value) {
                        Ok(size) => q.set_size(size),
                        Err(_) => log::debug!("virtio-mmio: queue size {value:#x} refused"),
                    }
                }
            }
            reg::QUEUE_READY => {
                if let Some(q) = self.selected_queue() {
                    q.set_ready(value == 1);
                }
            }
            reg::QUEUE_NOTIFY => {
                if let Some(evt) = self.queue_evts.get(value as usize) {
                    let _ = evt.write(1);
                }
            }
            reg::INTERRUPT_ACK => self.interrupt.ack(value),
            reg::STATUS => self.set_status(value),
            reg::QUEUE_DESC_LOW => self.with_queue(|q| q.set_desc_table_address(Some(value), None)),
            reg::QUEUE_DESC_HIGH => {
                self.with_queue(|q| q.set_desc_table_address(None, Some(value)))
            }
            reg::QUEUE_AVAIL_LOW => {
                self.with_queue(|q| q.set_avail_ring_address(Some(value), None))
            }
            reg::QUEUE_AVAIL_HIGH => {
                self.with_queue(|q| q.set_avail_ring_address(None, Some(value)))
            }
            reg::QUEUE_USED_LOW => self.with_queue(|q| q.set_used_ring_address(Some(value), None)),
            reg::QUEUE_USED_HIGH => self.with_queue(|q| q.set_used_ring_address(None, Some(value))),
            _ => log::debug!("virtio-mmio: write to read-only or unknown register {offset:#x}"),
        }
    }

    fn with_queue(&mut self, f: impl FnOnce(&mut Queue)) {
        if let Some(q) = self.selected_queue() {
            f(q);
        }
    }

    /// The status state machine (virtio 1.x, 3.1.1): 0 resets; otherwise bits may only be
    /// added, in order.
    fn set_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let added = value & !self.status;
        if value & self.status != self.status {
            log::debug!(
                "virtio-mmio: status bits cleared without reset ({:#x} -> {value:#x})",
                self.status
            );
            return;
        }
        if added & status::FEATURES_OK != 0 && self.acked_features & (1 << VIRTIO_F_VERSION_1) == 0
        {
            // A legacy driver: refuse FEATURES_OK so it gives up.
            log::warn!("virtio-mmio: driver did not accept VIRTIO_F_VERSION_1");
            self.status = value & !status::FEATURES_OK;
            return;
        }
        self.status = value;
        if added & status::DRIVER_OK != 0 && !self.active {
            self.activate();
        }
    }

    /// Hands `queues` to the device with the negotiated features; on success the
    /// transport is active (DRIVER_OK, or a restore of a started device).
    fn start_device(&mut self, queues: Vec<Queue>) -> Result<(), super::ActivateError> {
        self.device
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .activate(
                self.mem.clone(),
                queues,
                self.acked_features,
                self.interrupt.clone(),
            )?;
        self.active = true;
        Ok(())
    }

    fn activate(&mut self) {
        if let Some(i) = self
            .queues
            .iter()
            .position(|q| q.ready() && !q.is_valid(&self.mem))
        {
            log::warn!("virtio-mmio: queue {i} is not valid; failing the device");
            self.status |= status::DEVICE_NEEDS_RESET;
            return;
        }
        let queues = std::mem::take(&mut self.queues);
        if let Err(e) = self.start_device(queues) {
            log::warn!("virtio-mmio: device failed to start: {e}");
            self.status |= status::DEVICE_NEEDS_RESET;
        }
        self.queues = Self::fresh_queues(&self.device);
    }

    fn reset(&mut self) {
        if self.active {
            self.device
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .reset();
        }
        self.active = false;
        self.queues = Self::fresh_queues(&self.device);
        self.status = 0;
        self.acked_features = 0;
        self.queue_sel = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.interrupt.ack(u32::MAX);
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= reg::CONFIG {
            self.device
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .read_config(offset - reg::CONFIG, data);
            return;
        }
        if data.len() != 4 || !offset.is_multiple_of(4) {
            log::debug!(
                "virtio-mmio: {}-byte read at {offset:#x} ignored",
                data.len()
            );
            return;
        }
        data.copy_from_slice(&self.read_reg(offset).to_le_bytes());
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= reg::CONFIG {
            self.device
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .write_config(offset - reg::CONFIG, data);
            self.config_generation = self.config_generation.wrapping_add(1);
            return;
        }
        if data.len() != 4 || !offset.is_multiple_of(4) {
            log::debug!(
                "virtio-mmio: {}-byte write at {offset:#x} ignored",
                data.len()
            );
            return;
        }
        let value = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        self.write_reg(offset, value);
    }
}

/// The low 32 bits of a 64-bit register value (the masked value always fits).
fn low_half(value: u64) -> u32 {
    u32::try_from(value & 0xffff_ffff).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::{ActivateError, VirtioDevice};
    use std::sync::Mutex;
    use vm_memory::GuestAddress;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    #[derive(Default)]
    struct Dummy {
        activated: Option<(usize, u64)>,
        resets: usize,
        processed: Vec<usize>,
        queues: Vec<QueueState>,
    }

    impl VirtioDevice for Dummy {
        fn device_type(&self) -> u32 {
            2
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[16, 8]
        }
        fn features(&self) -> u64 {
            1 << 9
        }
        fn read_config(&self, offset: u64, data: &mut [u8]) {
            for (i, b) in data.iter_mut().enumerate() {
                *b = offset.to_le_bytes()[0].wrapping_add(i.to_le_bytes()[0]);
            }
        }
        fn activate(
            &mut self,
            _mem: GuestMemoryMmap,
            queues: Vec<Queue>,
            acked: u64,
            _interrupt: Arc<Interrupt>,
        ) -> Result<(), ActivateError> {
            self.activated = Some((queues.len(), acked));
            self.queues = queues.iter().map(|q| q.state()).collect();
            Ok(())
        }
        fn save_queues(&mut self) -> Result<Vec<QueueState>, String> {
            Ok(self.queues.clone())
        }
        fn reset(&mut self) {
            self.resets += 1;
            self.activated = None;
        }
        fn process_queue(&mut self, index: usize) {
            self.processed.push(index);
        }
    }

    struct Fixture {
        t: MmioTransport,
        dev: Arc<Mutex<Dummy>>,
        evts: Vec<EventFd>,
    }

    fn fixture() -> Fixture {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let dev = Arc::new(Mutex::new(Dummy::default()));
        let evts: Vec<EventFd> = (0..2)
            .map(|_| EventFd::new(EFD_NONBLOCK).unwrap())
            .collect();
        let irq = Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap());
        let t = MmioTransport::new(
            dev.clone(),
            mem,
            Arc::new(irq),
            evts.iter().map(|e| e.try_clone().unwrap()).collect(),
        );
        Fixture { t, dev, evts }
    }

    fn r(t: &mut MmioTransport, off: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    fn w(t: &mut MmioTransport, off: u64, v: u32) {
        t.write(off, &v.to_le_bytes());
    }

    /// Drives a driver's initialisation with valid queues at fixed addresses.
    fn init_driver(t: &mut MmioTransport) {
        w(t, reg::STATUS, status::ACKNOWLEDGE);
        w(t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        w(t, reg::DRIVER_FEATURES_SEL, 1);
        w(t, reg::DRIVER_FEATURES, 1); // VERSION_1
        w(t, reg::DRIVER_FEATURES_SEL, 0);
        w(t, reg::DRIVER_FEATURES, (1 << 9) | (1 << 3)); // bit 3 is not offered
        w(
            t,
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
        );
        for (q, base) in [(0u32, 0x10000u32), (1, 0x20000)] {
            w(t, reg::QUEUE_SEL, q);
            w(t, reg::QUEUE_NUM, 8);
            w(t, reg::QUEUE_DESC_LOW, base);
            w(t, reg::QUEUE_AVAIL_LOW, base + 0x1000);
            w(t, reg::QUEUE_USED_LOW, base + 0x2000);
            w(t, reg::QUEUE_READY, 1);
        }
    }

    #[test]
    fn state_is_saved_and_put_back_before_and_after_driver_ok() {
        let mut f = fixture();
        init_driver(&mut f.t);
        w(&mut f.t, reg::QUEUE_SEL, 1);
        let configuring = f.t.save().unwrap();
        assert!(!configuring.active);
        assert_eq!(configuring.queues[1].size, 8);
        assert_eq!(configuring.queue_sel, 1);
        let mut g = fixture();
        g.t.restore(&configuring).unwrap();
        assert_eq!(g.t.save().unwrap(), configuring);
        // The restored driver finishes its set-up: the device starts.
        w(
            &mut g.t,
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
        );
        assert_eq!(
            g.dev.lock().unwrap().activated,
            Some((2, (1 << 32) | (1 << 9)))
        );

        w(
            &mut f.t,
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
        );
        f.t.interrupt.raise(crate::devices::virtio::INT_VRING);
        let active = f.t.save().unwrap();
        assert!(active.active);
        assert_eq!(active.interrupt_status, 1);
        assert_eq!(active.queues[0].desc_table, 0x10000);
        let mut h = fixture();
        h.t.restore(&active).unwrap();
        assert_eq!(
            h.dev.lock().unwrap().activated,
            Some((2, (1 << 32) | (1 << 9)))
        );
        assert_eq!(r(&mut h.t, reg::INTERRUPT_STATUS), 1);
        assert_eq!(h.t.save().unwrap(), active);
        assert!(h.evts[0].read().is_err(), "a restore notifies nothing");
    }

    #[test]
    fn a_state_that_does_not_fit_is_refused() {
        let mut f = fixture();
        init_driver(&mut f.t);
        w(
            &mut f.t,
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
        );
        let good = f.t.save().unwrap();
        let mut other_kind = good.clone();
        other_kind.device_type = 1;
        let mut fewer = good.clone();
        fewer.queues.pop();
        let mut outside = good.clone();
        outside.queues[0].used_ring = 1 << 40;
        let mut odd_size = good.clone();
        odd_size.queues[0].size = 7;
        for bad in [other_kind, fewer, outside, odd_size] {
            let mut g = fixture();
            assert!(g.t.restore(&bad).is_err(), "{bad:?}");
            assert_eq!(g.dev.lock().unwrap().activated, None);
        }
    }

    #[test]
    fn identification_registers() {
        let mut f = fixture();
        assert_eq!(r(&mut f.t, reg::MAGIC_VALUE), MAGIC);
        assert_eq!(r(&mut f.t, reg::VERSION), 2);
        assert_eq!(r(&mut f.t, reg::DEVICE_ID), 2);
        assert_eq!(r(&mut f.t, reg::DEVICE_FEATURES), 1 << 9);
        w(&mut f.t, reg::DEVICE_FEATURES_SEL, 1);
        assert_eq!(
            r(&mut f.t, reg::DEVICE_FEATURES),
            1,
            "VERSION_1 in the high word"
        );
        w(&mut f.t, reg::QUEUE_SEL, 1);
        assert_eq!(r(&mut f.t, reg::QUEUE_NUM_MAX), 8);
        w(&mut f.t, reg::QUEUE_SEL, 7);
        assert_eq!(r(&mut f.t, reg::QUEUE_NUM_MAX), 0, "no such queue");
    }

    #[test]
    fn full_initialisation_activates_with_negotiated_features() {
        let mut f = fixture();
        init_driver(&mut f.t);
        assert!(f.dev.lock().unwrap().activated.is_none());
        w(&mut f.t, reg::STATUS, 0xf);
        let (queues, acked) = f.dev.lock().unwrap().activated.unwrap();
        assert_eq!(queues, 2);
        assert_eq!(acked, (1 << 32) | (1 << 9), "unoffered bit 3 dropped");
        assert_eq!(r(&mut f.t, reg::STATUS), 0xf);
    }

    #[test]
    fn queue_config_is_refused_outside_its_window() {
        let mut f = fixture();
        // Before FEATURES_OK.
        w(&mut f.t, reg::QUEUE_NUM, 4);
        w(&mut f.t, reg::QUEUE_READY, 1);
        assert_eq!(r(&mut f.t, reg::QUEUE_READY), 0);
        init_driver(&mut f.t);
        w(&mut f.t, reg::STATUS, 0xf);
        // After DRIVER_OK.
        w(&mut f.t, reg::QUEUE_SEL, 0);
        w(&mut f.t, reg::QUEUE_DESC_LOW, 0xdead_0000);
        assert_eq!(f.dev.lock().unwrap().resets, 0);
    }

    #[test]
    fn driver_without_version_1_cannot_set_features_ok() {
        let mut f = fixture();
        w(&mut f.t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        w(&mut f.t, reg::DRIVER_FEATURES, 1 << 9);
        w(
            &mut f.t,
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
        );
        assert_eq!(r(&mut f.t, reg::STATUS) & status::FEATURES_OK, 0);
    }

    #[test]
    fn invalid_queue_addresses_need_reset_instead_of_activation() {
        let mut f = fixture();
        let t = &mut f.t;
        w(t, reg::STATUS, status::ACKNOWLEDGE);
        w(t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        w(t, reg::DRIVER_FEATURES_SEL, 1);
        w(t, reg::DRIVER_FEATURES, 1);
        w(t, reg::STATUS, 0xb);
        w(t, reg::QUEUE_SEL, 0);
        w(t, reg::QUEUE_NUM, 8);
        // The descriptor table lies outside guest memory: this must fail the device.
        w(t, reg::QUEUE_DESC_LOW, 0xfff0_0000);
        w(t, reg::QUEUE_READY, 1);
        w(t, reg::STATUS, 0xf);
        assert!(f.dev.lock().unwrap().activated.is_none());
        assert_ne!(r(&mut f.t, reg::STATUS) & status::DEVICE_NEEDS_RESET, 0);
    }

    #[test]
    fn reset_returns_to_initial_state() {
        let mut f = fixture();
        init_driver(&mut f.t);
        w(&mut f.t, reg::STATUS, 0xf);
        w(&mut f.t, reg::STATUS, 0);
        assert_eq!(f.dev.lock().unwrap().resets, 1);
        assert_eq!(r(&mut f.t, reg::STATUS), 0);
        w(&mut f.t, reg::QUEUE_SEL, 0);
        assert_eq!(r(&mut f.t, reg::QUEUE_READY), 0);
        // And it can be initialised again.
        init_driver(&mut f.t);
        w(&mut f.t, reg::STATUS, 0xf);
        assert!(f.dev.lock().unwrap().activated.is_some());
    }

    #[test]
    fn notify_signals_the_queue_eventfd() {
        let mut f = fixture();
        w(&mut f.t, reg::QUEUE_NOTIFY, 1);
        assert_eq!(f.evts[1].read().unwrap(), 1);
        assert!(f.evts[0].read().is_err(), "queue 0 not notified");
        w(&mut f.t, reg::QUEUE_NOTIFY, 99); // no such queue: ignored
    }

    #[test]
    fn odd_accesses_are_ignored_and_config_is_forwarded() {
        let mut f = fixture();
        let mut b = [0xaau8; 2];
        f.t.read(reg::MAGIC_VALUE, &mut b);
        assert_eq!(b, [0xaa, 0xaa]);
        f.t.write(reg::STATUS + 1, &[1, 2, 3, 4]);
        assert_eq!(r(&mut f.t, reg::STATUS), 0);
        let mut c = [0u8; 2];
        f.t.read(reg::CONFIG + 8, &mut c);
        assert_eq!(c, [8, 9]);
        let gen = r(&mut f.t, reg::CONFIG_GENERATION);
        f.t.write(reg::CONFIG, &[1]);
        assert_eq!(r(&mut f.t, reg::CONFIG_GENERATION), gen + 1);
    }

    #[test]
    fn clearing_status_bits_without_reset_is_ignored() {
        let mut f = fixture();
        w(&mut f.t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        w(&mut f.t, reg::STATUS, status::ACKNOWLEDGE);
        assert_eq!(
            r(&mut f.t, reg::STATUS),
            status::ACKNOWLEDGE | status::DRIVER
        );
    }

    #[test]
    fn random_register_traffic_never_panics() {
        let mut f = fixture();
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let offset = ((x >> 8) % 0x140) & !3;
            let value = (x >> 32) as u32;
            if x & 1 == 0 {
                // Bias towards the status and queue registers so activation happens.
                let offset = [
                    reg::STATUS,
                    reg::QUEUE_NUM,
                    reg::QUEUE_READY,
                    reg::QUEUE_SEL,
                ][(x >> 40) as usize % 4];
                w(&mut f.t, offset, value % 16);
            } else {
                w(&mut f.t, offset, value);
            }
            let _ = r(&mut f.t, offset);
        }
    }
}
