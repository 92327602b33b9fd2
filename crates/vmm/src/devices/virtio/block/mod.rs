//! virtio-blk on a raw image file: one request queue, read, write, flush, get-id,
//! discard and write-zeroes, read-only disks. Requests are processed on the event loop
//! when the driver notifies the queue.

pub mod disk;
pub mod request;

use std::num::Wrapping;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX,
    VIRTIO_BLK_F_WRITE_ZEROES,
};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

use super::{
    needs_interrupt, ActivateError, Interrupt, VirtioDevice, INT_CONFIG, INT_VRING,
    VIRTIO_RING_F_EVENT_IDX,
};
use disk::{Disk, SECTOR_SIZE};

/// virtio device ID of a block device.
pub const DEVICE_TYPE: u32 = 2;
/// Descriptors per queue.
pub const QUEUE_SIZE: u16 = 256;
const QUEUE_SIZES: [u16; 1] = [QUEUE_SIZE];
/// Size of the configuration space minnow fills in (`struct virtio_blk_config` up to
/// `write_zeroes_may_unmap`).
const CONFIG_SIZE: usize = 60;

struct Active {
    mem: GuestMemoryMmap,
    queue: Queue,
    interrupt: Arc<Interrupt>,
}

/// A virtio-blk device.
pub struct Block {
    disk: Disk,
    config: [u8; CONFIG_SIZE],
    active: Option<Active>,
    broken: bool,
}

impl Block {
    /// A device for an open disk.
    pub fn new(disk: Disk) -> Self {
        let config = Self::config_space(&disk);
        Block {
            disk,
            config,
            active: None,
            broken: false,
        }
    }

    fn config_space(disk: &Disk) -> [u8; CONFIG_SIZE] {
        let mut c = [0u8; CONFIG_SIZE];
        let mut put = |off: usize, bytes: &[u8]| c[off..off + bytes.len()].copy_from_slice(bytes);
        put(0, &(disk.size() / SECTOR_SIZE).to_le_bytes()); // capacity
        put(12, &u32::from(QUEUE_SIZE - 2).to_le_bytes()); // seg_max
        put(36, &(u32::MAX >> 9).to_le_bytes()); // max_discard_sectors
        put(40, &1u32.to_le_bytes()); // max_discard_seg
        put(44, &8u32.to_le_bytes()); // discard_sector_alignment (4 KiB)
        put(48, &(u32::MAX >> 9).to_le_bytes()); // max_write_zeroes_sectors
        put(52, &1u32.to_le_bytes()); // max_write_zeroes_seg
        put(56, &[1]); // write_zeroes_may_unmap
        c
    }

    /// Serves every available request; stops early and asks for a reset if the driver
    /// corrupted the ring.
    fn serve(&mut self) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let mem = &active.mem;
        let q = &mut active.queue;
        // An avail index more than a queue's worth ahead can only be corruption.
        match q.avail_idx(mem, Ordering::Acquire) {
            Ok(avail) if (avail - Wrapping(q.next_avail())).0 <= q.size() => {}
            _ => {
                log::warn!("virtio-blk: corrupt avail ring; device needs reset");
                self.broken = true;
                active.interrupt.raise(INT_CONFIG);
                return;
            }
        }
        let mut served = 0usize;
        loop {
            while let Some(chain) = q.pop_descriptor_chain(mem) {
                let head = chain.head_index();
                let out = request::process(mem, &self.disk, chain);
                if q.add_used(mem, head, out.used_len).is_err() {
                    log::warn!("virtio-blk: cannot update the used ring; device needs reset");
                    self.broken = true;
                    active.interrupt.raise(INT_CONFIG);
                    return;
                }
                served += 1;
            }
            // Re-enable notifications; if more requests slipped in meanwhile, serve them
            // too (bounded: a driver cannot keep us here forever).
            match q.enable_notification(mem) {
                Ok(true) if served < 4 * usize::from(QUEUE_SIZE) => continue,
                _ => break,
            }
        }
        if served > 0 && needs_interrupt(q, mem) {
            active.interrupt.raise(INT_VRING);
        }
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        DEVICE_TYPE
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn features(&self) -> u64 {
        let mut f = (1 << VIRTIO_BLK_F_FLUSH)
            | (1 << VIRTIO_BLK_F_SEG_MAX)
            | (1 << VIRTIO_RING_F_EVENT_IDX);
        if self.disk.read_only() {
            f |= 1 << VIRTIO_BLK_F_RO;
        } else {
            f |= (1 << VIRTIO_BLK_F_DISCARD) | (1 << VIRTIO_BLK_F_WRITE_ZEROES);
        }
        f
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let start = offset as usize;
        if let Some(src) = self.config.get(start..start + data.len()) {
            data.copy_from_slice(src);
        }
    }

    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        mut queues: Vec<Queue>,
        acked_features: u64,
        interrupt: Arc<Interrupt>,
    ) -> Result<(), ActivateError> {
        let mut queue = queues.pop().ok_or(ActivateError::BadQueue(0))?;
        if !queue.ready() {
            return Err(ActivateError::BadQueue(0));
        }
        queue.set_event_idx(acked_features & (1 << VIRTIO_RING_F_EVENT_IDX) != 0);
        self.active = Some(Active {
            mem,
            queue,
            interrupt,
        });
        self.broken = false;
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
        self.broken = false;
    }

    fn process_queue(&mut self, index: usize) {
        if index == 0 && !self.broken {
            self.serve();
        }
    }

    fn needs_reset(&self) -> bool {
        self.broken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_queue::desc::split::Descriptor;
    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    fn block(read_only: bool) -> (Block, tempfile::TempDir) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("d.img");
        std::fs::write(&p, vec![7u8; 4096]).unwrap();
        (Block::new(Disk::open(&p, read_only).unwrap()), d)
    }

    #[test]
    fn config_and_features() {
        let (b, _d) = block(false);
        let mut cap = [0u8; 8];
        b.read_config(0, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), 8);
        let mut beyond = [9u8; 4];
        b.read_config(100, &mut beyond);
        assert_eq!(beyond, [9; 4], "reads past the config space are ignored");
        assert_eq!(b.features() & (1 << VIRTIO_BLK_F_RO), 0);
        let (ro, _d2) = block(true);
        assert_ne!(ro.features() & (1 << VIRTIO_BLK_F_RO), 0);
        assert_eq!(ro.features() & (1 << VIRTIO_BLK_F_DISCARD), 0);
    }

    #[test]
    fn serves_a_read_and_interrupts() {
        let (mut b, _d) = block(false);
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let mq = MockSplitQueue::new(&mem, 16);
        mem.write_obj(0u32, GuestAddress(0x8000)).unwrap(); // IN
        mem.write_obj(0u64, GuestAddress(0x8008)).unwrap();
        let descs = [
            RawDescriptor::from(Descriptor::new(0x8000, 16, 1, 0)),
            RawDescriptor::from(Descriptor::new(0x9000, 512, 3, 0)),
            RawDescriptor::from(Descriptor::new(0xa000, 1, 2, 0)),
        ];
        mq.build_desc_chain(&descs).unwrap();
        let q: Queue = mq.create_queue().unwrap();
        let irq = EventFd::new(EFD_NONBLOCK).unwrap();
        let interrupt = Arc::new(Interrupt::new(irq.try_clone().unwrap()));
        b.activate(mem.clone(), vec![q], 0, interrupt.clone())
            .unwrap();
        b.process_queue(0);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0xa000)).unwrap(), 0);
        let mut data = [0u8; 512];
        mem.read_slice(&mut data, GuestAddress(0x9000)).unwrap();
        assert!(data.iter().all(|&x| x == 7));
        assert_eq!(mq.used().idx().load(), 1);
        assert_eq!(interrupt.status() & INT_VRING, INT_VRING);
        assert_eq!(irq.read().unwrap(), 1);
    }

    #[test]
    fn corrupt_avail_index_needs_reset_without_hanging() {
        let (mut b, _d) = block(false);
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let mq = MockSplitQueue::new(&mem, 16);
        mq.avail().idx().store(1000);
        let q: Queue = mq.create_queue().unwrap();
        let interrupt = Arc::new(Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));
        b.activate(mem, vec![q], 0, interrupt.clone()).unwrap();
        b.process_queue(0);
        assert!(b.needs_reset());
        assert_eq!(interrupt.status() & INT_CONFIG, INT_CONFIG);
        b.reset();
        assert!(!b.needs_reset());
    }
}
