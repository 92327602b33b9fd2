//! Creating the VM's devices and wiring them to KVM: buses, interrupt lines (irqfd),
//! queue notifications (ioeventfd) and event-loop handlers.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use event_manager::MutEventSubscriber;
use kvm_ioctls::{IoEventAddress, VmFd};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::Error;
use crate::arch::x86_64::acpi::MmioDevice;
use crate::arch::x86_64::layout::{
    BOOT_TIMER_START, COM1_IRQ, COM1_LEN, COM1_PORT, I8042_LEN, I8042_PORT, MMIO_DEVICE_SIZE,
    SLEEP_CONTROL_PORT, VIRTIO_MMIO_START, WORKLOAD_EXIT_START,
};
use crate::config::{DiskConfig, NetConfig};
use crate::console::Output;
use crate::devices::bus::{Bus, SharedDevice};
use crate::devices::legacy::acpi_sleep::AcpiSleep;
use crate::devices::legacy::boot_timer::BootTimer;
use crate::devices::legacy::i8042::I8042;
use crate::devices::legacy::serial::Serial;
use crate::devices::legacy::workload_exit::WorkloadExit;
use crate::devices::virtio::block::{disk::Disk, Block};
use crate::devices::virtio::mmio::{reg, MmioTransport};
use crate::devices::virtio::net::{tap::Tap, Net};
use crate::devices::virtio::{Interrupt, QueueHandler, SharedVirtioDevice, VirtioDevice};
use crate::devices::ExitEvent;
use crate::seccomp;

/// First interrupt line for virtio devices (4 is the UART).
pub const VIRTIO_IRQ_BASE: u32 = 5;

/// Every device of a VM, before it runs.
pub struct Devices {
    pub io_bus: Bus,
    pub mmio_bus: Bus,
    pub serial: Arc<Mutex<Serial>>,
    pub serial_rx_ready: EventFd,
    /// Event-loop handlers of the virtio devices.
    pub handlers: Vec<Box<dyn MutEventSubscriber + Send>>,
    /// The virtio-mmio windows, for ACPI and the kernel command line.
    pub virtio: Vec<MmioDevice>,
    /// What each window holds ("virtio-blk", "virtio-net"), for the profile.
    pub virtio_kinds: Vec<&'static str>,
    /// The virtio-blk devices, in `--disk` order: what a snapshot saves and restores.
    pub blocks: Vec<BlockHandle>,
    /// The virtio-net devices, in `--net` order (after the disks' windows).
    pub nets: Vec<NetHandle>,
}

/// A virtio-blk device and its transport.
#[derive(Clone)]
pub struct BlockHandle {
    pub transport: Arc<Mutex<MmioTransport>>,
    pub block: Arc<Mutex<Block>>,
}

/// A virtio-net device and its transport.
#[derive(Clone)]
pub struct NetHandle {
    pub transport: Arc<Mutex<MmioTransport>>,
    pub net: Arc<Mutex<Net>>,
}

fn io_err(what: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |e| Error::device(what, e)
}

fn bus_err(what: &'static str) -> impl Fn(crate::devices::bus::Error) -> Error {
    move |e| Error::device(what, e)
}

/// `n` queue-notification eventfds.
fn queue_events(n: usize) -> Result<Vec<EventFd>, Error> {
    (0..n)
        .map(|_| EventFd::new(EFD_NONBLOCK).map_err(io_err("virtio queue")))
        .collect()
}

fn clone_events(evts: &[EventFd]) -> Result<Vec<EventFd>, Error> {
    evts.iter()
        .map(|e| e.try_clone().map_err(io_err("virtio queue")))
        .collect()
}

impl Devices {
    /// The legacy devices: UART, i8042, ACPI sleep register, boot timer.
    pub fn legacy(
        vm: &VmFd,
        exit: &Arc<ExitEvent>,
        start: Instant,
        booted: &Arc<OnceLock<Duration>>,
        workload_status: &Arc<OnceLock<u8>>,
        out: Arc<Output>,
    ) -> Result<Devices, Error> {
        let irq = EventFd::new(EFD_NONBLOCK).map_err(io_err("serial"))?;
        vm.register_irqfd(&irq, COM1_IRQ)
            .map_err(|e| Error::Kvm("KVM_IRQFD", e))?;
        let rx_ready = EventFd::new(EFD_NONBLOCK).map_err(io_err("serial"))?;
        let serial = Arc::new(Mutex::new(Serial::new(
            irq,
            rx_ready.try_clone().map_err(io_err("serial"))?,
            out,
        )));

        let mut io_bus = Bus::new();
        let ports: [(u64, u64, SharedDevice, &'static str); 3] = [
            (COM1_PORT, COM1_LEN, serial.clone(), "serial"),
            (
                I8042_PORT,
                I8042_LEN,
                Arc::new(Mutex::new(I8042::new(exit.clone()))),
                "i8042",
            ),
            (
                SLEEP_CONTROL_PORT,
                1,
                Arc::new(Mutex::new(AcpiSleep::new(exit.clone()))),
                "ACPI sleep control",
            ),
        ];
        for (base, len, dev, name) in ports {
            io_bus.insert(base, len, dev).map_err(bus_err(name))?;
        }
        let mut mmio_bus = Bus::new();
        mmio_bus
            .insert(
                BOOT_TIMER_START,
                WORKLOAD_EXIT_START - BOOT_TIMER_START,
                Arc::new(Mutex::new(BootTimer::new(start, booted.clone()))),
            )
            .map_err(bus_err("boot timer"))?;
        mmio_bus
            .insert(
                WORKLOAD_EXIT_START,
                4,
                Arc::new(Mutex::new(WorkloadExit::new(workload_status.clone()))),
            )
            .map_err(bus_err("workload exit"))?;
        Ok(Devices {
            io_bus,
            mmio_bus,
            serial,
            serial_rx_ready: rx_ready,
            handlers: Vec::new(),
            virtio: Vec::new(),
            virtio_kinds: Vec::new(),
            blocks: Vec::new(),
            nets: Vec::new(),
        })
    }

    /// Adds one virtio-blk device per disk, each with its worker thread (which waits on
    /// the queue's eventfd itself: the event loop has no part in disk I/O).
    pub fn add_disks(
        &mut self,
        vm: &VmFd,
        mem: &GuestMemoryMmap,
        disks: &[DiskConfig],
        filters: &seccomp::Filters,
    ) -> Result<(), Error> {
        let opened = disks
            .iter()
            .map(|d| Disk::open(&d.path, d.read_only))
            .collect::<Result<Vec<_>, _>>()?;
        self.add_opened_disks(vm, mem, opened, filters)
    }

    /// [`Devices::add_disks`] for disks already opened (a restore checks them first).
    pub fn add_opened_disks(
        &mut self,
        vm: &VmFd,
        mem: &GuestMemoryMmap,
        disks: Vec<Disk>,
        filters: &seccomp::Filters,
    ) -> Result<(), Error> {
        for (i, opened) in disks.into_iter().enumerate() {
            let evts = queue_events(1)?;
            let index = u8::try_from(i).map_err(|_| Error::TooManyDevices)?;
            let block = Block::new(opened, clone_events(&evts)?.remove(0), index, filters)
                .map_err(|e| Error::DiskWorker(i, e))?;
            let block = Arc::new(Mutex::new(block));
            let transport = self.add_virtio(vm, mem, block.clone(), evts, false)?;
            self.blocks.push(BlockHandle { transport, block });
        }
        Ok(())
    }

    /// Adds one virtio-net device per TAP, with the config's MAC (or `macs[i]`, a
    /// restore's: the snapshot's or the one `--net ...,mac=` gave in its place).
    pub fn add_nets(
        &mut self,
        vm: &VmFd,
        mem: &GuestMemoryMmap,
        nets: &[NetConfig],
        macs: &[crate::config::Mac],
    ) -> Result<(), Error> {
        for (i, net) in nets.iter().enumerate() {
            let tap = Tap::open(&net.tap, net.create)?;
            let mac = macs.get(i).copied().unwrap_or_else(|| net.mac());
            log::debug!("net: {} with MAC {mac}", tap.name());
            let net = Arc::new(Mutex::new(Net::new(Box::new(tap), mac)));
            let queues = net
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .queue_max_sizes()
                .len();
            let transport = self.add_virtio(vm, mem, net.clone(), queue_events(queues)?, true)?;
            self.nets.push(NetHandle { transport, net });
        }
        Ok(())
    }

    /// Puts a virtio device on the next MMIO window with the next interrupt line; queue
    /// `i` is notified through `queue_evts[i]` (a KVM ioeventfd), which the event loop
    /// watches when `on_event_loop` (else the device has a thread of its own for them).
    pub fn add_virtio(
        &mut self,
        vm: &VmFd,
        mem: &GuestMemoryMmap,
        device: SharedVirtioDevice,
        queue_evts: Vec<EventFd>,
        on_event_loop: bool,
    ) -> Result<Arc<Mutex<MmioTransport>>, Error> {
        let index = u32::try_from(self.virtio.len()).map_err(|_| Error::TooManyDevices)?;
        let kind = device
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .device_type();
        self.virtio_kinds.push(match kind {
            1 => "virtio-net",
            2 => "virtio-blk",
            _ => "virtio",
        });
        let addr = VIRTIO_MMIO_START + u64::from(index) * MMIO_DEVICE_SIZE;
        let irq = VIRTIO_IRQ_BASE + index;
        let irqfd = EventFd::new(EFD_NONBLOCK).map_err(io_err("virtio interrupt"))?;
        vm.register_irqfd(&irqfd, irq)
            .map_err(|e| Error::Kvm("KVM_IRQFD", e))?;
        for (q, evt) in (0u32..).zip(&queue_evts) {
            let notify = IoEventAddress::Mmio(addr + reg::QUEUE_NOTIFY);
            if let Err(e) = vm.register_ioevent(evt, &notify, q) {
                // The transport signals the same eventfd on a notify exit.
                log::debug!("virtio: no ioeventfd for queue {q} ({e}); using MMIO exits");
            }
        }
        let transport = Arc::new(Mutex::new(MmioTransport::new(
            device.clone(),
            mem.clone(),
            Arc::new(Interrupt::new(irqfd)),
            clone_events(&queue_evts)?,
        )));
        self.mmio_bus
            .insert(addr, MMIO_DEVICE_SIZE, transport.clone())
            .map_err(bus_err("virtio-mmio"))?;
        if on_event_loop {
            self.handlers
                .push(Box::new(QueueHandler::new(device, queue_evts)));
        }
        self.virtio.push(MmioDevice {
            addr,
            len: MMIO_DEVICE_SIZE,
            irq,
        });

        Ok(transport)
    }

    /// Kernel parameters that announce the virtio devices to kernels built with
    /// `CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES` (others read the ACPI DSDT).
    pub fn cmdline_args(&self) -> Vec<String> {
        self.virtio
            .iter()
            .map(|d| {
                format!(
                    "virtio_mmio.device={}K@{:#x}:{}",
                    d.len >> 10,
                    d.addr,
                    d.irq
                )
            })
            .collect()
    }
}
