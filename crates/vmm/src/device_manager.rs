//! Creating the VM's devices and wiring them to KVM: buses, interrupt lines (irqfd),
//! queue notifications (ioeventfd) and event-loop handlers.

use std::io::Write;
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
use crate::devices::bus::{Bus, SharedDevice};
use crate::devices::legacy::acpi_sleep::AcpiSleep;
use crate::devices::legacy::boot_timer::BootTimer;
use crate::devices::legacy::i8042::I8042;
use crate::devices::legacy::serial::Serial;
use crate::devices::legacy::workload_exit::WorkloadExit;
use crate::devices::virtio::block::{disk::Disk, Block};
use crate::devices::virtio::mmio::{reg, MmioTransport};
use crate::devices::virtio::net::{tap::Tap, Net};
use crate::devices::virtio::{Interrupt, QueueHandler, SharedVirtioDevice};
use crate::devices::ExitEvent;

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
}

fn io_err(what: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |e| Error::Device(what, e.to_string())
}

fn bus_err(what: &'static str) -> impl Fn(crate::devices::bus::Error) -> Error {
    move |e| Error::Device(what, e.to_string())
}

impl Devices {
    /// The legacy devices: UART, i8042, ACPI sleep register, boot timer.
    pub fn legacy(
        vm: &VmFd,
        exit: &Arc<ExitEvent>,
        start: Instant,
        booted: &Arc<OnceLock<Duration>>,
        workload_status: &Arc<OnceLock<u8>>,
        out: Box<dyn Write + Send>,
    ) -> Result<Devices, Error> {
        let irq = EventFd::new(EFD_NONBLOCK).map_err(io_err("serial"))?;
        vm.register_irqfd(&irq, COM1_IRQ)
            .map_err(|e| Error::Kvm("KVM_IRQFD", e.to_string()))?;
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
        })
    }

    /// Adds one virtio-blk device per disk.
    pub fn add_disks(
        &mut self,
        vm: &VmFd,
        mem: &GuestMemoryMmap,
        disks: &[DiskConfig],
    ) -> Result<(), Error> {
        for disk in disks {
            let opened =
                Disk::open(&disk.path, disk.read_only).map_err(|e| Error::Disk(e.to_string()))?;
            self.add_virtio(vm, mem, Arc::new(Mutex::new(Block::new(opened))))?;
        }
        Ok(())
    }

    /// Adds one virtio-net device per TAP.
    pub fn add_nets(
        &mut self,
        vm: &VmFd,
        mem: &GuestMemoryMmap,
        nets: &[NetConfig],
    ) -> Result<(), Error> {
        for net in nets {
            let tap = Tap::open(&net.tap, net.create).map_err(|e| Error::Net(e.to_string()))?;
            log::debug!("net: {} with MAC {}", tap.name(), net.mac());
            self.add_virtio(
                vm,
                mem,
                Arc::new(Mutex::new(Net::new(Box::new(tap), net.mac()))),
            )?;
        }
        Ok(())
    }

    /// Puts a virtio device on the next MMIO window with the next interrupt line.
    pub fn add_virtio(
        &mut self,
        vm: &VmFd,
        mem: &GuestMemoryMmap,
        device: SharedVirtioDevice,
    ) -> Result<(), Error> {
        let index = self.virtio.len() as u64;
        let addr = VIRTIO_MMIO_START + index * MMIO_DEVICE_SIZE;
        let irq = VIRTIO_IRQ_BASE + index as u32;
        let irqfd = EventFd::new(EFD_NONBLOCK).map_err(io_err("virtio interrupt"))?;
        vm.register_irqfd(&irqfd, irq)
            .map_err(|e| Error::Kvm("KVM_IRQFD", e.to_string()))?;
        let queues = device
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .queue_max_sizes()
            .len();
        let mut queue_evts = Vec::with_capacity(queues);
        for q in 0..queues {
            let evt = EventFd::new(EFD_NONBLOCK).map_err(io_err("virtio queue"))?;
            let notify = IoEventAddress::Mmio(addr + reg::QUEUE_NOTIFY);
            if let Err(e) = vm.register_ioevent(&evt, &notify, q as u32) {
                // The transport signals the same eventfd on a notify exit.
                log::debug!("virtio: no ioeventfd for queue {q} ({e}); using MMIO exits");
            }
            queue_evts.push(evt);
        }
        let clones = queue_evts
            .iter()
            .map(|e| e.try_clone())
            .collect::<Result<Vec<_>, _>>()
            .map_err(io_err("virtio queue"))?;
        let transport = MmioTransport::new(
            device.clone(),
            mem.clone(),
            Arc::new(Interrupt::new(irqfd)),
            clones,
        );
        self.mmio_bus
            .insert(addr, MMIO_DEVICE_SIZE, Arc::new(Mutex::new(transport)))
            .map_err(bus_err("virtio-mmio"))?;
        self.handlers
            .push(Box::new(QueueHandler::new(device, queue_evts)));
        self.virtio.push(MmioDevice {
            addr,
            len: MMIO_DEVICE_SIZE,
            irq,
        });
        Ok(())
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
