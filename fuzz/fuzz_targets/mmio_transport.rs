//! The virtio-mmio transport: register reads and writes in any order and of any size,
//! as a hostile driver would make them, on a virtio-net device over a fake TAP (so an
//! activation reaches a real device, and queue notifications are served).
//!
//! Input: 2 bytes of guest memory image length, the image (at guest address 0), then
//! operations until the input ends: 1 byte kind (bit 0 write, bits 1-2 size 1/2/4/8),
//! 2 bytes offset in the 0x200-byte window, 4 bytes value for a write (most offsets are
//! drawn from the real registers, so the state machine is reached often).
//! Oracle: no panic; the identification registers never change; the status the driver
//! reads holds only bits it wrote (or DEVICE_NEEDS_RESET); QueueNumMax is never above
//! the device's maximum.

#![no_main]

use std::sync::{Arc, Mutex};

use libfuzzer_sys::fuzz_target;
use minnow_fuzz::{memory, FakeTap, Input};
use minnow_vmm::devices::bus::BusDevice;
use minnow_vmm::devices::virtio::mmio::{reg, status, MmioTransport};
use minnow_vmm::devices::virtio::net::{Mac, Net, QUEUE_SIZE};
use minnow_vmm::devices::virtio::{Interrupt, SharedVirtioDevice};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const MEM_SIZE: usize = 1 << 20;

/// The registers, so most operations hit one.
const REGS: [u64; 24] = [
    reg::MAGIC_VALUE,
    reg::VERSION,
    reg::DEVICE_ID,
    reg::VENDOR_ID,
    reg::DEVICE_FEATURES,
    reg::DEVICE_FEATURES_SEL,
    reg::DRIVER_FEATURES,
    reg::DRIVER_FEATURES_SEL,
    reg::QUEUE_SEL,
    reg::QUEUE_NUM_MAX,
    reg::QUEUE_NUM,
    reg::QUEUE_READY,
    reg::QUEUE_NOTIFY,
    reg::INTERRUPT_STATUS,
    reg::INTERRUPT_ACK,
    reg::STATUS,
    reg::QUEUE_DESC_LOW,
    reg::QUEUE_DESC_HIGH,
    reg::QUEUE_AVAIL_LOW,
    reg::QUEUE_AVAIL_HIGH,
    reg::QUEUE_USED_LOW,
    reg::QUEUE_USED_HIGH,
    reg::CONFIG_GENERATION,
    reg::CONFIG,
];

fn read32(t: &mut MmioTransport, offset: u64) -> u32 {
    let mut b = [0u8; 4];
    t.read(offset, &mut b);
    u32::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mem = memory(MEM_SIZE);
    let image_len = usize::from(input.u16());
    mem.write_slice(input.bytes(image_len), GuestAddress(0))
        .unwrap();
    let (tap, wire) = FakeTap::new();
    let net: SharedVirtioDevice =
        Arc::new(Mutex::new(Net::new(Box::new(tap), Mac([2, 0, 0, 0, 0, 2]))));
    let interrupt = Arc::new(Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));
    let evts: Vec<EventFd> = (0..2)
        .map(|_| EventFd::new(EFD_NONBLOCK).unwrap())
        .collect();
    let watch: Vec<EventFd> = evts.iter().map(|e| e.try_clone().unwrap()).collect();
    let mut t = MmioTransport::new(net.clone(), mem, interrupt, evts);

    let mut written_status = 0u32;
    let mut steps = 0;
    while !input.is_empty() && steps < 512 {
        steps += 1;
        let kind = input.u8();
        let raw = input.u16();
        let offset = if raw & 0x8000 == 0 {
            // A register; in the config space, some byte of it.
            match REGS[usize::from(raw & 0xff) % REGS.len()] {
                reg::CONFIG => reg::CONFIG + u64::from((raw >> 8) & 0x1f),
                r => r,
            }
        } else {
            u64::from(raw & 0x1ff)
        };
        let size = 1usize << ((kind >> 1) & 3);
        if kind & 1 == 1 {
            let value = input.u32();
            let bytes = u64::from(value).to_le_bytes();
            t.write(offset, &bytes[..size]);
            if offset == reg::STATUS && size == 4 {
                written_status = if value == 0 {
                    0
                } else {
                    written_status | value
                };
            }
        } else {
            let mut buf = [0u8; 8];
            t.read(offset, &mut buf[..size]);
        }
        // A frame waits on the "TAP" now and then, so RX has something to deliver.
        if kind & 0x80 != 0 {
            wire.lock().unwrap().to_guest.push_back(vec![0x11; 60]);
        }
        // Notifications the transport signalled reach the device, as on the event loop.
        for (i, e) in watch.iter().enumerate() {
            if e.read().is_ok() {
                net.lock().unwrap().process_queue(i);
            }
        }
        if kind & 0x40 != 0 {
            net.lock()
                .unwrap()
                .process_extra(0, vmm_sys_util::epoll::EventSet::IN);
        }
    }
    assert_eq!(read32(&mut t, reg::MAGIC_VALUE), 0x7472_6976);
    assert_eq!(read32(&mut t, reg::VERSION), 2);
    assert_eq!(read32(&mut t, reg::DEVICE_ID), 1);
    let st = read32(&mut t, reg::STATUS);
    assert_eq!(
        st & !(written_status | status::DEVICE_NEEDS_RESET),
        0,
        "status {st:#x}, driver wrote {written_status:#x}"
    );
    for sel in 0..3u32 {
        t.write(reg::QUEUE_SEL, &sel.to_le_bytes());
        assert!(read32(&mut t, reg::QUEUE_NUM_MAX) <= u32::from(QUEUE_SIZE));
    }
});
