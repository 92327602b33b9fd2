//! virtio-net: the device's TX and RX paths (`Net` over a fake TAP), with RX and TX
//! queues in guest memory built from the fuzz input and frames arriving from the "TAP" in
//! an order the input chooses.
//!
//! Input: 1 byte of acked features (bit 0 MRG_RXBUF, bit 1 EVENT_IDX, bit 2 GUEST_CSUM,
//! bit 3 GUEST_TSO4), 2 bytes picking the queue sizes, 2 bytes of guest memory image
//! length, the image (RX queue at 0/0x400/0x800, TX queue at 0x1000/0x1400/0x1800),
//! then operations until the input ends: 0 TX notify, 1 RX notify, 2 a frame arrives on
//! the TAP (2 bytes of length, then its bytes), 3 the TAP is readable, 4 reset and
//! activate again, 5 a guest memory write (2 bytes address, 1 byte length, bytes).
//! Oracle: no panic; every frame sent to the TAP is a whole frame with its vnet header
//! and no larger than the device's maximum; counters add up.

#![no_main]

use std::sync::Arc;

use features::*;
use libfuzzer_sys::fuzz_target;
use minnow_fuzz::{memory, queue, queue_size, FakeTap, Input, Layout};
use minnow_vmm::devices::virtio::net::{Mac, Net, MAX_FRAME, QUEUE_SIZE};
use minnow_vmm::devices::virtio::{Interrupt, VirtioDevice};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// The feature bits used here (virtio 1.2, 5.1.3).
mod features {
    pub const MRG_RXBUF: u32 = 15;
    pub const GUEST_CSUM: u32 = 1;
    pub const GUEST_TSO4: u32 = 7;
    pub const EVENT_IDX: u32 = 29;
}

const MEM_SIZE: usize = 1 << 20;
const RX: Layout = Layout {
    desc: 0,
    avail: 0x400,
    used: 0x800,
};
const TX: Layout = Layout {
    desc: 0x1000,
    avail: 0x1400,
    used: 0x1800,
};
const VNET_HDR_LEN: usize = 12;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let f = input.u8();
    let (rx_size, tx_size) = (
        queue_size(input.u8(), QUEUE_SIZE),
        queue_size(input.u8(), QUEUE_SIZE),
    );
    let mut acked = 0u64;
    for (bit, feature) in [
        (0, MRG_RXBUF),
        (1, EVENT_IDX),
        (2, GUEST_CSUM),
        (3, GUEST_TSO4),
    ] {
        if f & (1 << bit) != 0 {
            acked |= 1 << feature;
        }
    }
    let mem = memory(MEM_SIZE);
    let image_len = usize::from(input.u16());
    mem.write_slice(input.bytes(image_len), GuestAddress(0))
        .unwrap();

    let (tap, wire) = FakeTap::new();
    let mut net = Net::new(Box::new(tap), Mac([2, 0, 0, 0, 0, 1]));
    let interrupt = Arc::new(Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));
    let event_idx = acked & (1 << EVENT_IDX) != 0;
    let activate = |net: &mut Net| {
        let queues = vec![
            queue(QUEUE_SIZE, rx_size, RX, event_idx),
            queue(QUEUE_SIZE, tx_size, TX, event_idx),
        ];
        if queues
            .iter()
            .all(|q| virtio_queue::QueueT::is_valid(q, &mem))
        {
            net.activate(mem.clone(), queues, acked, interrupt.clone())
                .is_ok()
        } else {
            false
        }
    };
    activate(&mut net);
    let mut offered = 0u64;
    let mut steps = 0;
    while !input.is_empty() && steps < 256 {
        steps += 1;
        match input.u8() % 6 {
            0 => net.process_queue(1),
            1 => net.process_queue(0),
            2 => {
                let len = usize::from(input.u16());
                wire.lock()
                    .unwrap()
                    .to_guest
                    .push_back(input.bytes(len).to_vec());
                offered += 1;
            }
            3 => net.process_extra(0, EventSet::IN),
            4 => {
                net.reset();
                activate(&mut net);
            }
            _ => {
                let addr = u64::from(input.u16());
                let len = usize::from(input.u8());
                let _ = mem.write_slice(input.bytes(len), GuestAddress(addr));
            }
        }
        let _ = net.watch_extra(0);
    }
    let w = wire.lock().unwrap();
    for frame in &w.from_guest {
        assert!(frame.len() > VNET_HDR_LEN && frame.len() <= MAX_FRAME);
    }
    let s = net.stats();
    assert_eq!(s.tx_frames, w.from_guest.len() as u64);
    assert!(
        s.rx_frames + s.rx_dropped <= offered,
        "{s:?}, {offered} offered"
    );
});
