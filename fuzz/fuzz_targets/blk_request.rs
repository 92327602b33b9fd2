//! virtio-blk: a request queue in guest memory, built from the fuzz input, served by the
//! device's own code (`block::serve_queue`: what the disk worker does when notified) on a
//! raw disk image, read-write or read-only.
//!
//! Input: 1 byte of flags (bit 0 EVENT_IDX, bit 1 read-only disk), 1 byte picking the
//! queue size, 2 bytes of `next_avail`, then guest memory from address 0: the descriptor
//! table at 0, the avail ring at 0x400, the used ring at 0x800 (a large queue's table
//! overlaps them, as a driver may make it), request headers and data wherever the
//! descriptors point.
//! Oracle: no panic; the used index moved by exactly the requests answered. (Not what is
//! in guest memory: a driver may point a request's buffers at its own rings.)

#![no_main]

use std::num::Wrapping;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use minnow_fuzz::{memory, queue, queue_size, scratch, Input, Layout};
use minnow_vmm::devices::virtio::block::disk::Disk;
use minnow_vmm::devices::virtio::block::{serve_queue, Served, QUEUE_SIZE};
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress};

const MEM_SIZE: usize = 1 << 20;
const LAYOUT: Layout = Layout {
    desc: 0,
    avail: 0x400,
    used: 0x800,
};
/// 64 sectors: enough for requests in range and out of it.
const DISK_SIZE: usize = 64 * 512;

fn disks() -> &'static (Disk, Disk) {
    static DISKS: OnceLock<(Disk, Disk)> = OnceLock::new();
    DISKS.get_or_init(|| {
        let open = |name: &str, ro: bool| {
            let p: PathBuf = scratch().join(name);
            std::fs::write(&p, vec![0x5a; DISK_SIZE]).unwrap();
            Disk::open(&p, ro).unwrap()
        };
        (open("rw.img", false), open("ro.img", true))
    })
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.u8();
    let size = queue_size(input.u8(), QUEUE_SIZE);
    let next_avail = input.u16();
    let mem = memory(MEM_SIZE);
    let image = input.rest();
    mem.write_slice(image, GuestAddress(0)).unwrap();

    let (rw, ro) = disks();
    let disk = if flags & 2 != 0 { ro } else { rw };
    let mut q = queue(QUEUE_SIZE, size, LAYOUT, flags & 1 != 0);
    if !q.is_valid(&mem) {
        // The transport refuses to activate with such a queue.
        return;
    }
    q.set_next_avail(next_avail);
    let used_before = q.next_used();
    let abort = AtomicBool::new(false);
    match serve_queue(&mem, &mut q, disk, &abort) {
        Served::Done(n) => {
            assert!(n <= 4 * usize::from(QUEUE_SIZE) + usize::from(q.size()));
            let moved = (Wrapping(q.next_used()) - Wrapping(used_before)).0;
            assert_eq!(
                usize::from(moved),
                n % 65536,
                "used index moved by the answers"
            );
        }
        Served::Broken(_) => {}
        Served::Aborted => panic!("aborted without an abort request"),
    }
    // A second pass finds nothing new (or the same corruption), and does not panic.
    let _ = serve_queue(&mem, &mut q, disk, &abort);
});
