//! minnow's VMM: builds a VM from a validated [`VmConfig`] (KVM, memory, kernel,
//! devices, vCPUs) and runs it: one thread per vCPU and an event loop on the main
//! thread, until the guest stops.
//!
//! Data flows one way: [`config::VmConfig`] → [`Vmm::build`] → [`Vmm::run`] →
//! [`RunSummary`]. See docs/design.md.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod arch;
pub mod boot;
pub mod config;
pub mod console;
pub mod device_manager;
pub mod devices;
pub mod kvm;
pub mod memory;
pub mod vcpu;

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
use kvm_bindings::{kvm_pit_config, CpuId, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

use crate::arch::x86_64::layout::{KVM_IDENTITY_MAP_ADDRESS, KVM_TSS_ADDRESS};
use crate::arch::x86_64::{acpi, mptable};
use crate::boot::cmdline::Workload;
use crate::boot::BootInput;
use crate::config::VmConfig;
use crate::devices::{ExitEvent, ExitReason};

/// A VMM failure, phrased for the user.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// /dev/kvm cannot be used.
    #[error("cannot use KVM device {path}: {hint}")]
    KvmOpen { path: String, hint: String },
    /// A KVM call failed.
    #[error("KVM call {0} failed: {1}")]
    Kvm(&'static str, String),
    /// Guest memory cannot be set up.
    #[error("cannot set up {mib} MiB of guest memory: {reason}")]
    Memory { mib: u64, reason: String },
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::Error),
    /// The kernel, initrd or command line cannot be loaded.
    #[error(transparent)]
    Boot(#[from] boot::Error),
    /// Too many vCPUs for this host.
    #[error("--vcpus {asked} is more than KVM allows here ({max}); lower --vcpus")]
    TooManyVcpus { asked: u64, max: usize },
    /// A disk cannot be used.
    #[error("{0}")]
    Disk(String),
    /// A network interface cannot be set up.
    #[error("{0}")]
    Net(String),
    /// A device cannot be created.
    #[error("cannot set up device {0}: {1}")]
    Device(&'static str, String),
    /// The event loop failed.
    #[error("event loop failed: {0}")]
    EventLoop(String),
}

/// How a run ended.
#[derive(Debug)]
pub struct RunSummary {
    pub reason: ExitReason,
    /// Time from VMM start to the guest's boot-timer write, if it wrote one.
    pub boot_time: Option<Duration>,
    /// The exit status the guest's workload reported, if it did.
    pub workload_status: Option<u8>,
}

impl RunSummary {
    /// minnow's exit code: the workload's status after a clean stop, else the stop's.
    pub fn exit_code(&self) -> i32 {
        match (self.reason.exit_code(), self.workload_status) {
            (0, Some(status)) => i32::from(status),
            (code, _) => code,
        }
    }
}

/// How the VMM process runs a VM: what is not part of the VM's description.
pub struct Options {
    /// When the VMM started, for the boot timer.
    pub start: Instant,
    /// The KVM device.
    pub kvm_device: PathBuf,
    /// Where the guest's console output goes.
    pub console_out: Box<dyn Write + Send>,
}

impl Options {
    /// `/dev/kvm`, output to stdout, started now.
    pub fn new(start: Instant) -> Self {
        Options {
            start,
            kvm_device: PathBuf::from(kvm::DEFAULT_DEVICE),
            console_out: Box::new(std::io::stdout()),
        }
    }
}

/// A built VM, ready to run.
pub struct Vmm {
    // Field order is drop order: vCPUs and the VM go before the memory they map.
    vcpus: Vec<VcpuFd>,
    _vm: VmFd,
    _mem: GuestMemoryMmap,
    console: Option<console::Console>,
    handlers: Vec<Box<dyn MutEventSubscriber + Send>>,
    ctx: vcpu::VcpuContext,
    booted: Arc<OnceLock<Duration>>,
    workload_status: Arc<OnceLock<u8>>,
}

fn kvm_err(what: &'static str) -> impl Fn(kvm_ioctls::Error) -> Error {
    move |e| Error::Kvm(what, e.to_string())
}

impl Vmm {
    /// Builds the VM described by `config`, whose guest init runs `workload` (from
    /// `minnow_vmdisk::prepare`, which resolves the config's `image`).
    pub fn build(config: &VmConfig, workload: &Workload, opts: Options) -> Result<Vmm, Error> {
        config.validate()?;
        let Options {
            start,
            kvm_device,
            console_out: out,
        } = opts;
        let kvm = kvm::open(&kvm_device)?;
        if minnow_host::is_pvm() {
            log::warn!(
                "this host's /dev/kvm is PVM (kvm_pvm): the guest kernel must be PVM-enabled; stock kernels boot only in the lab (make lab-test)"
            );
        }
        let max = kvm.get_max_vcpus().min(usize::from(mptable::MAX_CPUS));
        if config.vcpus as usize > max {
            return Err(Error::TooManyVcpus {
                asked: config.vcpus,
                max,
            });
        }
        let count = config.vcpus as u8;
        let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
        setup_irqchip(&vm)?;

        let mem = memory::create(config.mem_bytes(), config.hugepages)?;
        memory::register(&vm, &mem)?;

        let exit =
            Arc::new(ExitEvent::new().map_err(|e| Error::Device("exit event", e.to_string()))?);
        let booted = Arc::new(OnceLock::new());
        let workload_status = Arc::new(OnceLock::new());
        let mut devs =
            device_manager::Devices::legacy(&vm, &exit, start, &booted, &workload_status, out)?;
        devs.add_disks(&vm, &mem, &config.disks)?;
        devs.add_nets(&vm, &mem, &config.nets)?;

        // Both descriptions of the machine: ACPI for kernels built without MP-table
        // support (Debian's cloud kernel), the MP table for kernels without ACPI.
        mptable::write(&mem, count).map_err(|e| Error::Device("MP table", e.to_string()))?;
        let rsdp = acpi::write(&mem, count, &devs.virtio)
            .map_err(|e| Error::Device("ACPI tables", e.to_string()))?;
        let mut device_args = devs.cmdline_args();
        device_args.extend(
            config
                .nets
                .iter()
                .enumerate()
                .find_map(|(i, n)| n.kernel_ip_arg(i)),
        );
        let root = config.root_device();
        let cmdline = boot::cmdline::compose(&boot::cmdline::Parts {
            devices: &device_args,
            root: root
                .as_deref()
                .map(|r| (r, config.disks.first().is_some_and(|d| d.read_only))),
            workload,
            user: config.cmdline.as_deref(),
        })?;
        let entry = boot::load(
            &mem,
            &BootInput {
                kernel: &config.kernel,
                initrd: config.initrd.as_deref(),
                cmdline: &cmdline,
                mem_size: config.mem_bytes(),
                rsdp: Some(rsdp),
            },
        )?;
        let console =
            console::Console::new(devs.serial.clone(), devs.serial_rx_ready, exit.clone())
                .map_err(|e| Error::Device("console", e.to_string()))?;

        let vcpus = create_vcpus(&kvm, &vm, &mem, count, entry)?;
        log::debug!("VM built in {:?}", start.elapsed());
        Ok(Vmm {
            vcpus,
            _vm: vm,
            _mem: mem,
            console: Some(console),
            handlers: devs.handlers,
            ctx: vcpu::VcpuContext {
                io_bus: Arc::new(devs.io_bus),
                mmio_bus: Arc::new(devs.mmio_bus),
                exit,
                stop: Arc::new(AtomicBool::new(false)),
            },
            booted,
            workload_status,
        })
    }

    /// Runs the VM until the guest stops or the user quits.
    pub fn run(mut self) -> Result<RunSummary, Error> {
        install_kick_handler()?;
        let mut manager: EventManager<Box<dyn MutEventSubscriber + Send>> =
            EventManager::new().map_err(|e| Error::EventLoop(format!("{e:?}")))?;
        if let Some(console) = self.console.take() {
            manager.add_subscriber(Box::new(console));
        }
        for handler in self.handlers.drain(..) {
            manager.add_subscriber(handler);
        }

        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        for (index, fd) in self.vcpus.drain(..).enumerate() {
            let ctx = self.ctx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("vcpu{index}"))
                .spawn(move || vcpu::run(fd, index as u8, ctx))
                .map_err(|e| Error::Device("vCPU thread", e.to_string()))?;
            threads.push(handle);
        }

        let mut loop_error = None;
        while !self.ctx.exit.fired() {
            if let Err(e) = manager.run() {
                loop_error = Some(Error::EventLoop(format!("{e:?}")));
                break;
            }
        }
        self.ctx.stop.store(true, Ordering::Release);
        stop_threads(threads);
        if let Some(e) = loop_error {
            return Err(e);
        }
        Ok(RunSummary {
            reason: self.ctx.exit.reason().unwrap_or(ExitReason::UserQuit),
            boot_time: self.booted.get().copied(),
            workload_status: self.workload_status.get().copied(),
        })
    }
}

/// In-kernel interrupt controllers and timer; the TSS and identity-map pages Intel's VMX
/// needs out of the guest's way.
fn setup_irqchip(vm: &VmFd) -> Result<(), Error> {
    vm.set_tss_address(KVM_TSS_ADDRESS as usize)
        .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
    vm.set_identity_map_address(KVM_IDENTITY_MAP_ADDRESS)
        .map_err(kvm_err("KVM_SET_IDENTITY_MAP_ADDR"))?;
    vm.create_irq_chip()
        .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit).map_err(kvm_err("KVM_CREATE_PIT2"))?;
    Ok(())
}

/// Creates and configures the vCPUs; the first one starts at the kernel entry.
fn create_vcpus(
    kvm: &Kvm,
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    count: u8,
    entry: boot::BootEntry,
) -> Result<Vec<VcpuFd>, Error> {
    let base_cpuid: CpuId = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
    let mut vcpus = Vec::with_capacity(count as usize);
    for index in 0..count {
        let fd = vm
            .create_vcpu(u64::from(index))
            .map_err(kvm_err("KVM_CREATE_VCPU"))?;
        vcpu::configure(&fd, &base_cpuid, index, count)?;
        if index == 0 {
            vcpu::set_boot_state(&fd, mem, entry)?;
        }
        vcpus.push(fd);
    }
    Ok(vcpus)
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// The signal that kicks a vCPU thread out of KVM_RUN.
fn kick_signal() -> libc::c_int {
    SIGRTMIN()
}

fn install_kick_handler() -> Result<(), Error> {
    register_signal_handler(kick_signal(), kick_handler)
        .map_err(|e| Error::Device("vCPU kick signal", e.to_string()))
}

/// Kicks every vCPU thread until it has left KVM_RUN and ended. A kick can land just
/// before a thread enters KVM_RUN, so kicks repeat (every 2 ms) until the thread is gone;
/// in between, the thread is polled often, so a thread that was already on its way out
/// (the usual case: it saw the stop itself) costs no wait.
fn stop_threads(threads: Vec<JoinHandle<()>>) {
    const KICK_EVERY: Duration = Duration::from_millis(2);
    for handle in threads {
        let mut last_kick: Option<Instant> = None;
        while !handle.is_finished() {
            if last_kick.is_none_or(|t| t.elapsed() >= KICK_EVERY) {
                if let Err(e) = handle.kill(kick_signal()) {
                    log::debug!("kick failed: {e}");
                }
                last_kick = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        if handle.join().is_err() {
            log::error!("a vCPU thread panicked");
        }
    }
}
