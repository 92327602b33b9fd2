use super::*;
use std::collections::VecDeque;
use std::sync::Mutex;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;

#[derive(Default)]
struct Wire {
    to_guest: VecDeque<Vec<u8>>,
    from_guest: Vec<Vec<u8>>,
    offload: Option<u32>,
    /// Offload flags the fake TAP refuses (TUNSETOFFLOAD fails with EINVAL).
    refuse: u32,
}

struct Fake {
    wire: Arc<Mutex<Wire>>,
    evt: EventFd,
}

impl NetBackend for Fake {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.wire.lock().unwrap().to_guest.pop_front() {
            Some(f) => {
                buf[..f.len()].copy_from_slice(&f);
                Ok(f.len())
            }
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        self.wire.lock().unwrap().from_guest.push(frame.to_vec());
        Ok(())
    }
    fn set_offload(&mut self, flags: u32) -> io::Result<()> {
        let mut w = self.wire.lock().unwrap();
        if flags & w.refuse != 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        w.offload = Some(flags);
        Ok(())
    }
    fn fd(&self) -> RawFd {
        use std::os::unix::io::AsRawFd;
        self.evt.as_raw_fd()
    }
}

fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap()
}

fn frame(len: usize, fill: u8) -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend(std::iter::repeat_n(fill, len));
    f
}

fn wr(addr: u64, len: u32, flags: u16) -> RawDescriptor {
    wrn(addr, len, flags, 0)
}

fn wrn(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
    RawDescriptor::from(Descriptor::new(addr, len, flags, next))
}

#[test]
fn mac_parsing() {
    let m: Mac = "02:00:0a:ff:10:01".parse().unwrap();
    assert_eq!(m.0, [2, 0, 0xa, 0xff, 0x10, 1]);
    assert_eq!(m.to_string(), "02:00:0a:ff:10:01");
    for bad in [
        "02:00:00:00:00",
        "02:00:00:00:00:0g",
        "2:00:00:00:00:01",
        "",
        "02-00-00-00-00-01",
    ] {
        let e = bad.parse::<Mac>().unwrap_err();
        assert!(e.contains("malformed"), "{bad}: {e}");
    }
    assert!("03:00:00:00:00:01"
        .parse::<Mac>()
        .unwrap_err()
        .contains("multicast"));
}

#[test]
fn frame_spans_mergeable_buffers_and_counts_them() {
    let m = mem();
    let mq = MockSplitQueue::new(&m, 16);
    // Two 1 KiB buffers, each its own chain.
    mq.add_desc_chains(
        &[wr(0x10_0000, 1024, F_WRITE), wr(0x20_0000, 1024, F_WRITE)],
        0,
    )
    .unwrap();
    let mut q: Queue = mq.create_queue().unwrap();
    let f = frame(1500, 0xab);
    assert_eq!(deliver(&m, &mut q, &f, true), Delivery::Done);
    assert_eq!(
        m.read_obj::<u16>(GuestAddress(0x10_0000 + 10)).unwrap(),
        2,
        "num_buffers"
    );
    assert_eq!(
        m.read_obj::<u8>(GuestAddress(0x10_0000 + 12)).unwrap(),
        0xab
    );
    assert_eq!(
        m.read_obj::<u8>(GuestAddress(0x20_0000 + 1512 - 1024 - 1))
            .unwrap(),
        0xab
    );
    assert_eq!(mq.used().idx().load(), 2);
    let lens: Vec<u32> = (0..2)
        .map(|i| mq.used().ring().ref_at(i).unwrap().load().len())
        .collect();
    assert_eq!(lens, vec![1024, 1512 - 1024]);
}

#[test]
fn no_buffers_keeps_the_frame_for_later() {
    let m = mem();
    let mq = MockSplitQueue::new(&m, 16);
    mq.add_desc_chains(&[wr(0x10_0000, 1024, F_WRITE)], 0)
        .unwrap();
    let mut q: Queue = mq.create_queue().unwrap();
    // Needs two buffers, only one is there: nothing is consumed.
    assert_eq!(
        deliver(&m, &mut q, &frame(1500, 1), true),
        Delivery::NoBuffers
    );
    assert_eq!(mq.used().idx().load(), 0);
    assert_eq!(q.next_avail(), 0, "the taken chain was given back");
}

#[test]
fn too_big_for_a_single_buffer_is_dropped_without_mergeable() {
    let m = mem();
    let mq = MockSplitQueue::new(&m, 16);
    mq.add_desc_chains(&[wr(0x10_0000, 512, F_WRITE)], 0)
        .unwrap();
    let mut q: Queue = mq.create_queue().unwrap();
    assert_eq!(
        deliver(&m, &mut q, &frame(1500, 1), false),
        Delivery::Dropped
    );
    assert_eq!(mq.used().idx().load(), 1);
    assert_eq!(mq.used().ring().ref_at(0).unwrap().load().len(), 0);
}

#[test]
fn read_only_rx_buffer_is_dropped_not_written() {
    let m = mem();
    let mq = MockSplitQueue::new(&m, 16);
    mq.add_desc_chains(&[wr(0x10_0000, 4096, 0)], 0).unwrap();
    let mut q: Queue = mq.create_queue().unwrap();
    assert_eq!(deliver(&m, &mut q, &frame(100, 7), true), Delivery::Dropped);
    assert_eq!(m.read_obj::<u8>(GuestAddress(0x10_0000 + 12)).unwrap(), 0);
}

struct Dev {
    net: Net,
    wire: Arc<Mutex<Wire>>,
    m: GuestMemoryMmap,
}

/// A device over a fake TAP that refuses the offload flags `refuse`.
fn unactivated(refuse: u32) -> (Net, Arc<Mutex<Wire>>) {
    let wire = Arc::new(Mutex::new(Wire {
        refuse,
        ..Wire::default()
    }));
    let fake = Fake {
        wire: wire.clone(),
        evt: EventFd::new(EFD_NONBLOCK).unwrap(),
    };
    (Net::new(Box::new(fake), Mac([2, 0, 0, 0, 0, 1])), wire)
}

/// An activated device whose queues are mock queues at fixed places.
fn device<'a>(
    m: &'a GuestMemoryMmap,
    acked: u64,
) -> (
    Dev,
    MockSplitQueue<'a, GuestMemoryMmap>,
    MockSplitQueue<'a, GuestMemoryMmap>,
) {
    let (mut net, wire) = unactivated(0);
    let rxq = MockSplitQueue::create(m, GuestAddress(0x30_0000), 16);
    let txq = MockSplitQueue::create(m, GuestAddress(0x38_0000), 16);
    let irq = Arc::new(Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));
    net.activate(
        m.clone(),
        vec![rxq.create_queue().unwrap(), txq.create_queue().unwrap()],
        acked,
        irq,
    )
    .unwrap();
    (
        Dev {
            net,
            wire,
            m: m.clone(),
        },
        rxq,
        txq,
    )
}

#[test]
fn back_pressure_stops_watching_the_tap_until_buffers_come() {
    let m = mem();
    let (mut d, rxq, _txq) = device(&m, 1 << VIRTIO_NET_F_MRG_RXBUF);
    d.wire.lock().unwrap().to_guest.push_back(frame(100, 9));
    d.wire.lock().unwrap().to_guest.push_back(frame(100, 8));
    d.net.process_extra(0, EventSet::IN);
    assert!(
        !d.net.watch_extra(0),
        "a frame is pending with no RX buffer"
    );
    assert_eq!(
        d.wire.lock().unwrap().to_guest.len(),
        1,
        "only one frame read: bounded"
    );
    rxq.add_desc_chains(
        &[wr(0x10_0000, 2048, F_WRITE), wr(0x11_0000, 2048, F_WRITE)],
        0,
    )
    .unwrap();
    d.net.process_queue(RX);
    assert!(d.net.watch_extra(0));
    assert_eq!(d.net.stats().rx_frames, 2);
    assert_eq!(d.m.read_obj::<u8>(GuestAddress(0x11_0000 + 12)).unwrap(), 8);
}

#[test]
fn transmit_sends_header_and_payload() {
    let m = mem();
    let (mut d, _rxq, txq) = device(&m, 0);
    m.write_slice(&frame(0, 0), GuestAddress(0x10_0000))
        .unwrap();
    m.write_slice(&[0x42; 60], GuestAddress(0x11_0000)).unwrap();
    txq.add_desc_chains(&[wrn(0x10_0000, 12, F_NEXT, 1), wr(0x11_0000, 60, 0)], 0)
        .unwrap();
    d.net.process_queue(TX);
    let sent = d.wire.lock().unwrap().from_guest.clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].len(), 72);
    assert!(sent[0][12..].iter().all(|&b| b == 0x42));
    assert_eq!(txq.used().idx().load(), 1);
}

#[test]
fn malformed_tx_chains_are_dropped_and_returned() {
    let m = mem();
    let (mut d, _rxq, txq) = device(&m, 0);
    // A device-writable buffer in a TX chain, then one outside guest memory.
    txq.add_desc_chains(&[wr(0x10_0000, 100, F_WRITE), wr(0xffff_0000, 100, 0)], 0)
        .unwrap();
    d.net.process_queue(TX);
    assert!(d.wire.lock().unwrap().from_guest.is_empty());
    assert_eq!(d.net.stats().tx_dropped, 2);
    assert_eq!(txq.used().idx().load(), 2);
}

#[test]
fn offloads_follow_the_guests_features() {
    let m = mem();
    let acked = (1 << VIRTIO_NET_F_GUEST_CSUM) | (1 << VIRTIO_NET_F_GUEST_TSO4);
    let (d, _, _) = device(&m, acked);
    assert_eq!(
        d.wire.lock().unwrap().offload,
        Some(TUN_F_CSUM | TUN_F_TSO4)
    );
    let (d, _, _) = device(&m, 1 << VIRTIO_NET_F_GUEST_TSO4);
    assert_eq!(
        d.wire.lock().unwrap().offload,
        Some(0),
        "TSO needs checksum offload"
    );
}

#[test]
fn config_space_holds_the_mac() {
    let wire = Arc::new(Mutex::new(Wire::default()));
    let fake = Fake {
        wire,
        evt: EventFd::new(EFD_NONBLOCK).unwrap(),
    };
    let net = Net::new(Box::new(fake), Mac([2, 1, 2, 3, 4, 5]));
    let mut b = [0u8; 6];
    net.read_config(0, &mut b);
    assert_eq!(b, [2, 1, 2, 3, 4, 5]);
    assert_ne!(net.features() & (1 << VIRTIO_NET_F_MAC), 0);
}

fn bit(b: u32) -> u64 {
    1 << b
}

const GUEST_OFFLOADS: [u32; 3] = [
    VIRTIO_NET_F_GUEST_CSUM,
    VIRTIO_NET_F_GUEST_TSO4,
    VIRTIO_NET_F_GUEST_TSO6,
];

#[test]
fn offloads_the_tap_accepts_are_offered_and_left_off_until_activation() {
    let (net, wire) = unactivated(0);
    for b in GUEST_OFFLOADS {
        assert_ne!(net.features() & bit(b), 0, "feature {b}");
    }
    assert_eq!(
        wire.lock().unwrap().offload,
        Some(0),
        "probe turned them off"
    );
}

#[test]
fn a_tap_refusing_offloads_gets_no_offload_features() {
    let (net, wire) = unactivated(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6);
    for b in GUEST_OFFLOADS {
        assert_eq!(net.features() & bit(b), 0, "feature {b} offered");
    }
    // What the guest sends goes through the vnet header, which the TAP still takes.
    assert_ne!(net.features() & bit(VIRTIO_NET_F_CSUM), 0);
    assert_ne!(net.features() & bit(VIRTIO_NET_F_MRG_RXBUF), 0);
    assert_eq!(wire.lock().unwrap().offload, Some(0));
}

#[test]
fn a_tap_refusing_tso_still_gets_checksum_offload() {
    let (net, _) = unactivated(TUN_F_TSO4 | TUN_F_TSO6);
    assert_ne!(net.features() & bit(VIRTIO_NET_F_GUEST_CSUM), 0);
    assert_eq!(net.features() & bit(VIRTIO_NET_F_GUEST_TSO4), 0);
    assert_eq!(net.features() & bit(VIRTIO_NET_F_GUEST_TSO6), 0);
}

#[test]
fn activation_falls_back_to_no_offloads_when_the_tap_refuses() {
    let m = mem();
    let (mut net, wire) = unactivated(0);
    // The TAP accepted the probe but refuses by the time the driver is ready.
    wire.lock().unwrap().refuse = TUN_F_CSUM;
    let rxq = MockSplitQueue::create(&m, GuestAddress(0x30_0000), 16);
    let txq = MockSplitQueue::create(&m, GuestAddress(0x38_0000), 16);
    let irq = Arc::new(Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));
    let acked = bit(VIRTIO_NET_F_GUEST_CSUM) | bit(VIRTIO_NET_F_GUEST_TSO4);
    net.activate(
        m.clone(),
        vec![rxq.create_queue().unwrap(), txq.create_queue().unwrap()],
        acked,
        irq,
    )
    .expect("activation must not fail on TUNSETOFFLOAD");
    assert_eq!(wire.lock().unwrap().offload, Some(0));
}

#[test]
fn a_frozen_device_reads_nothing_writes_nothing_and_saves_its_rings() {
    let m = mem();
    let (mut d, rxq, txq) = device(&m, 0);
    assert!(
        d.net.save_queues().is_err(),
        "a running device is not saved"
    );
    d.net.freeze();
    assert!(
        !d.net.watch_extra(0),
        "a frozen device stops watching the TAP"
    );
    d.wire.lock().unwrap().to_guest.push_back(frame(100, 9));
    rxq.add_desc_chains(&[wr(0x10_0000, 2048, F_WRITE)], 0)
        .unwrap();
    m.write_slice(&frame(60, 0x42), GuestAddress(0x20_0000))
        .unwrap();
    txq.add_desc_chains(&[wr(0x20_0000, 72, 0)], 0).unwrap();
    d.net.process_extra(0, EventSet::IN);
    d.net.process_queue(RX);
    d.net.process_queue(TX);
    assert_eq!(
        d.wire.lock().unwrap().to_guest.len(),
        1,
        "the TAP was not read"
    );
    assert!(d.wire.lock().unwrap().from_guest.is_empty(), "nothing sent");
    assert_eq!(rxq.used().idx().load(), 0, "no RX buffer used");
    assert_eq!(txq.used().idx().load(), 0, "no TX chain used");
    let saved = d.net.save_queues().unwrap();
    assert_eq!((saved[0].next_avail, saved[1].next_avail), (0, 0));
    // Thawed and notified (what the transport does at resume), both directions catch up.
    d.net.thaw();
    assert!(d.net.watch_extra(0));
    d.net.process_queue(RX);
    d.net.process_queue(TX);
    assert_eq!(rxq.used().idx().load(), 1);
    assert_eq!(txq.used().idx().load(), 1);
    assert_eq!(d.wire.lock().unwrap().from_guest.len(), 1);
}
