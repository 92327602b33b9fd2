//! minnow's VMM: builds a VM from a validated [`VmConfig`] (KVM, memory, kernel,
//! devices, vCPUs) and runs it: one thread per vCPU and an event loop on the main
//! thread, until the guest stops.
//!
//! Data flows one way: [`config::VmConfig`] → [`Vmm::build`] → [`Vmm::run`] →
//! [`RunSummary`]. See docs/design.md.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod arch;
pub mod boot;
pub mod config;
pub mod console;
pub mod device_manager;
pub mod devices;
pub mod kvm;
pub mod memory;
pub mod pit;
pub mod profile;
pub mod seccomp;
pub mod snapshot;
pub mod vcpu;

use std::fs::File;
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
use crate::profile::Profile;

/// A VMM failure, phrased for the user. The text is one line; the failure underneath
/// stays reachable through `source()`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// /dev/kvm cannot be used.
    #[error("cannot use KVM device {path}: {hint}")]
    KvmOpen {
        path: String,
        hint: String,
        #[source]
        source: Option<kvm_ioctls::Error>,
    },
    /// A KVM call failed.
    #[error("KVM call {0} failed: {1}")]
    Kvm(&'static str, #[source] kvm_ioctls::Error),
    /// The MSR list for KVM_SET_MSRS cannot be built.
    #[error("KVM call build MSR list failed: {0:?}")]
    MsrList(#[source] vmm_sys_util::fam::Error),
    /// A guest memory region has no host address.
    #[error("KVM call get host address failed: {0}")]
    HostAddress(#[source] vm_memory::GuestMemoryError),
    /// Guest memory cannot be mapped; `fix` says what to change.
    #[error("cannot set up {mib} MiB of guest memory: {source}; {fix}")]
    MemoryMap {
        mib: u64,
        #[source]
        source: vm_memory::mmap::MmapRegionError,
        fix: &'static str,
    },
    /// The guest memory regions cannot be put together.
    #[error("cannot set up {mib} MiB of guest memory: {reason}")]
    Memory { mib: u64, reason: &'static str },
    /// The mapped regions do not form a guest memory.
    #[error("cannot set up {mib} MiB of guest memory: {source}")]
    MemoryRegions {
        mib: u64,
        #[source]
        source: vm_memory::GuestRegionCollectionError,
    },
    /// The boot page tables cannot be written.
    #[error("cannot write the boot page tables: {0}")]
    PageTables(#[source] vm_memory::GuestMemoryError),
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
    #[error(transparent)]
    Disk(#[from] devices::virtio::block::disk::Error),
    /// A disk's worker thread cannot start.
    #[error("cannot set up disk {0}: {1}")]
    DiskWorker(usize, #[source] devices::virtio::block::WorkerError),
    /// A network interface cannot be set up.
    #[error(transparent)]
    Net(#[from] devices::virtio::net::tap::Error),
    /// A device cannot be created.
    #[error("cannot set up device {0}: {1}")]
    Device(
        &'static str,
        #[source] Box<dyn std::error::Error + Send + Sync>,
    ),
    /// More virtio devices than minnow numbers.
    #[error("too many virtio devices; give fewer --disk and --net")]
    TooManyDevices,
    /// A seccomp filter cannot be built or installed.
    #[error("{0}; run with --seccomp off to go without")]
    Seccomp(#[from] seccomp::Error),
    /// The control API socket cannot be set up.
    #[error(transparent)]
    Api(#[from] api::BindError),
    /// A snapshot cannot be restored.
    #[error(transparent)]
    Snapshot(#[from] snapshot::Error),
    /// The event loop failed.
    #[error("event loop failed: {0:?}")]
    EventLoop(#[source] event_manager::Error),
}

impl Error {
    /// A device set-up failure with its cause.
    pub fn device(what: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Device(what, Box::new(e))
    }
}

/// How a run ended.
#[derive(Debug)]
pub struct RunSummary {
    pub reason: ExitReason,
    /// Time from VMM start to the guest's boot-timer write, if it wrote one.
    pub boot_time: Option<Duration>,
    /// The exit status the guest's workload reported, if it did.
    pub workload_status: Option<u8>,
    /// With `--profile`: exits, times and the boot timeline.
    pub profile: Option<profile::Report>,
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
    /// Where the guest's console output goes (written by the event loop; it should not
    /// block, see [`console::open_stdout`]); `None`: this process's stdout.
    pub console_out: Option<File>,
    /// The seccomp filters of the VMM's threads (`--seccomp`).
    pub seccomp: seccomp::Mode,
    /// Test aid, set by the CLI from `MINNOW_TEST_SECCOMP_TRIP` (`main`, `vcpu` or
    /// `disk`): that thread makes one call outside its filter once it is installed.
    pub seccomp_trip: Option<&'static str>,
    /// Count exits and record boot milestones (`--profile`): [`RunSummary::profile`].
    pub profile: bool,
    /// Serve the control API on this Unix socket (`--api-sock`).
    pub api_sock: Option<PathBuf>,
    /// A restore's disks in place of the snapshot's recorded ones (`--disk` with
    /// `--restore`): none, or one per disk of the snapshot, in order.
    pub restore_disks: Vec<config::DiskConfig>,
    /// A restore's network interfaces in place of the recorded ones (`--net` with
    /// `--restore`; its `mac=` replaces the snapshot's): none, or one per interface.
    pub restore_nets: Vec<config::NetConfig>,
}

impl Options {
    /// `/dev/kvm`, output to stdout, seccomp on, started now.
    pub fn new(start: Instant) -> Self {
        Options {
            start,
            kvm_device: PathBuf::from(kvm::DEFAULT_DEVICE),
            console_out: None,
            seccomp: seccomp::Mode::On,
            seccomp_trip: None,
            profile: false,
            api_sock: None,
            restore_disks: Vec::new(),
            restore_nets: Vec::new(),
        }
    }
}

/// A built VM, ready to run.
pub struct Vmm {
    // Field order is drop order: vCPUs and the VM go before the memory they map.
    vcpus: Vec<VcpuFd>,
    _vm: Arc<VmFd>,
    _mem: GuestMemoryMmap,
    /// The control API and what it works on (`--api-sock`).
    api: Option<(api::Api, api::ApiContext)>,
    console: Option<console::Console>,
    handlers: Vec<Box<dyn MutEventSubscriber + Send>>,
    ctx: vcpu::VcpuContext,
    booted: Arc<OnceLock<Duration>>,
    workload_status: Arc<OnceLock<u8>>,
    output: Arc<console::Output>,
    filters: seccomp::Filters,
    start: Instant,
}

fn kvm_err(what: &'static str) -> impl Fn(kvm_ioctls::Error) -> Error {
    move |e| Error::Kvm(what, e)
}

impl Vmm {
    /// Builds the VM described by `config`, whose guest init runs `workload` (from
    /// `minnow_vmdisk::prepare`, which resolves the config's `image`).
    pub fn build(config: &VmConfig, workload: &Workload, opts: Options) -> Result<Vmm, Error> {
        config.validate()?;
        let (kvm, vm, count) = open_vm(config, &opts.kvm_device)?;
        let mem = memory::create(config.mem_bytes(), config.hugepages)?;
        memory::register(&vm, &mem)?;
        let parts = Parts::new(&vm, &opts)?;
        let filters = seccomp::Filters::new(opts.seccomp, opts.seccomp_trip)?;
        let mut devs = parts.legacy(&vm, &opts)?;
        devs.add_disks(&vm, &mem, &config.disks, &filters)?;
        devs.add_nets(&vm, &mem, &config.nets, &[])?;

        // Both descriptions of the machine: ACPI for kernels built without MP-table
        // support (Debian's cloud kernel), the MP table for kernels without ACPI.
        mptable::write(&mem, count).map_err(|e| Error::device("MP table", e))?;
        let rsdp =
            acpi::write(&mem, count, &devs.virtio).map_err(|e| Error::device("ACPI tables", e))?;
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
        // The PIT once the kernel is known; the config (and a snapshot's) says which.
        let mut config = config.clone();
        let pit = pit::wanted(config.pit, &entry.guest, &cmdline);
        if pit {
            create_pit(&vm).map_err(kvm_err("KVM_CREATE_PIT2"))?;
        }
        log::debug!(
            "PIT {} for {:?} (--pit {})",
            if pit { "on" } else { "off" },
            entry.guest,
            config.pit
        );
        config.pit = if pit { pit::Mode::On } else { pit::Mode::Off };
        let vcpus = create_vcpus(&kvm, &vm, &mem, count, entry)?;
        finish(kvm, vm, mem, devs, vcpus, parts, filters, opts, &config)
    }

    /// Builds a VM from the snapshot in `dir` (`minnow run --restore DIR`): memory mapped
    /// copy-on-write from `DIR/memory`, every saved vCPU, VM and device state put back;
    /// the guest runs on from where it was paused.
    pub fn restore(dir: &std::path::Path, opts: Options) -> Result<Vmm, Error> {
        let (snap, mem_file) = snapshot::read(dir)?;
        // The disks before KVM: a changed disk is refused in one line, as a bad state is.
        let mut config = snap.config.clone();
        let disks = snapshot::open_disks(&snap, &opts.restore_disks)?;
        config.disks = disks.iter().map(|(c, _)| c.clone()).collect();
        let nets = snapshot::choose_nets(&snap, &opts.restore_nets)?;
        config.nets = nets.iter().map(|(c, _)| c.clone()).collect();
        let (kvm, vm, count) = open_vm(&snap.config, &opts.kvm_device)?;
        snapshot::Host::current(kvm.get_api_version()).check(&snap.host)?;
        if usize::from(count) != snap.vcpus.len() {
            return Err(snapshot::Error::Damaged {
                path: dir.join(snapshot::STATE_FILE),
                why: format!("{} vCPUs saved for a VM of {count}", snap.vcpus.len()),
            }
            .into());
        }
        let mem = memory::restore(&mem_file, &snap.memory)?;
        memory::register(&vm, &mem)?;
        let parts = Parts::new(&vm, &opts)?;
        let filters = seccomp::Filters::new(opts.seccomp, opts.seccomp_trip)?;
        let mut devs = parts.legacy(&vm, &opts)?;
        devs.add_opened_disks(
            &vm,
            &mem,
            disks.into_iter().map(|(_, d)| d).collect(),
            &filters,
        )?;
        let macs: Vec<config::Mac> = nets.iter().map(|(_, m)| *m).collect();
        devs.add_nets(&vm, &mem, &config.nets, &macs)?;
        let (blocks, nets) = snap
            .devices
            .split_at(devs.blocks.len().min(snap.devices.len()));
        for (i, (handle, state)) in devs.blocks.iter().zip(blocks).enumerate() {
            restore_transport(&handle.transport, state, &format!("disk {i}'s virtio-blk"))?;
        }
        for (i, (handle, state)) in devs.nets.iter().zip(nets).enumerate() {
            restore_transport(
                &handle.transport,
                state,
                &format!("network device {i}'s virtio-net"),
            )?;
            // It takes up what its driver queued before the snapshot.
            lock(&handle.transport).notify_all();
        }
        devs.serial
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .restore(&(&snap.serial).into())
            .map_err(|e| {
                Error::Snapshot(snapshot::Error::Refused(format!(
                    "cannot restore the serial port: {e}; take the snapshot again"
                )))
            })?;
        let mut vcpus = Vec::with_capacity(usize::from(count));
        for (index, state) in (0u8..).zip(&snap.vcpus) {
            let fd = vm
                .create_vcpu(u64::from(index))
                .map_err(kvm_err("KVM_CREATE_VCPU"))?;
            snapshot::restore_vcpu(&fd, state)?;
            vcpus.push(fd);
        }
        snapshot::restore_vm(&vm, &snap.vm)?;
        log::debug!("restored from {}", dir.display());
        finish(kvm, vm, mem, devs, vcpus, parts, filters, opts, &config)
    }

    /// Runs the VM until the guest stops or the user quits. Each vCPU thread installs
    /// its seccomp filter before its first KVM_RUN, the main thread its own before the
    /// event loop (the disk workers did at their start, in `build`).
    pub fn run(mut self) -> Result<RunSummary, Error> {
        install_kick_handler()?;
        let mut manager: EventManager<Box<dyn MutEventSubscriber + Send>> =
            EventManager::new().map_err(Error::EventLoop)?;
        if let Some(console) = self.console.take() {
            manager.add_subscriber(Box::new(console));
        }
        for handler in self.handlers.drain(..) {
            manager.add_subscriber(handler);
        }

        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let mut started = Ok(());
        for (index, fd) in (0u8..).zip(self.vcpus.drain(..)) {
            let ctx = self.ctx.clone();
            let filters = self.filters.clone();
            let ready = ready_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("vcpu{index}"))
                .spawn(move || {
                    block_stop_signals();
                    let installed = filters.install(seccomp::Thread::Vcpu(index));
                    let ok = installed.is_ok();
                    let _ = ready.send(installed);
                    if ok {
                        vcpu::run(fd, index, ctx);
                    }
                });
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(e) => {
                    started = Err(Error::device("vCPU thread", e));
                    break;
                }
            }
        }
        drop(ready_tx);
        for _ in 0..threads.len() {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => started = started.and(Err(e.into())),
                Err(_) => {}
            }
        }
        let mut api_thread = None;
        if let (true, Some((api, ctx))) = (started.is_ok(), self.api.take()) {
            let stop = ctx.stop.clone();
            let filters = self.filters.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            let spawned = std::thread::Builder::new()
                .name("api".into())
                .spawn(move || {
                    block_stop_signals();
                    let installed = filters.install(seccomp::Thread::Api);
                    let ok = installed.is_ok();
                    let _ = tx.send(installed);
                    if ok {
                        api.serve(&ctx);
                    }
                });
            match spawned {
                Ok(handle) => {
                    api_thread = Some((handle, stop));
                    if let Ok(Err(e)) = rx.recv() {
                        started = Err(e.into());
                    }
                }
                Err(e) => started = Err(Error::device("control API thread", e)),
            }
        }
        if started.is_ok() {
            started = self
                .filters
                .install(seccomp::Thread::Main)
                .map_err(Error::from);
        }

        let mut loop_error = started.err();
        while loop_error.is_none() && !self.ctx.exit.fired() {
            if let Err(e) = manager.run() {
                loop_error = Some(Error::EventLoop(e));
            }
        }
        self.ctx.stop.store(true, Ordering::Release);
        if let Some((handle, stop)) = api_thread {
            stop.store(true, Ordering::Release);
            if handle.join().is_err() {
                log::error!("the control API thread panicked");
            }
        }
        stop_threads(threads);
        // The guest's last output goes out before anything is said about the stop: on a
        // terminal, stdout and stderr share one screen.
        self.output.flush_for(FINAL_FLUSH);
        if let Some(reason) = self.ctx.exit.reason() {
            log::debug!("exit requested: {reason:?}");
        }
        let dropped = self.output.dropped();
        if dropped > 0 {
            log::warn!(
                "{dropped} bytes of guest console output were dropped: stdout was not being read"
            );
        }
        if let Some(e) = loop_error {
            return Err(e);
        }
        let boot_time = self.booted.get().copied();
        Ok(RunSummary {
            reason: self.ctx.exit.reason().unwrap_or(ExitReason::UserQuit),
            boot_time,
            workload_status: self.workload_status.get().copied(),
            profile: self
                .ctx
                .profile
                .as_ref()
                .map(|p| p.report(boot_time, self.start.elapsed())),
        })
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Puts a saved transport state (of `what`, for the error) back.
fn restore_transport(
    transport: &std::sync::Mutex<devices::virtio::mmio::MmioTransport>,
    state: &snapshot::DeviceState,
    what: &str,
) -> Result<(), Error> {
    lock(transport).restore(state.transport()).map_err(|e| {
        snapshot::Error::Refused(format!(
            "cannot restore {what} device: {e}; take the snapshot again"
        ))
        .into()
    })
}

/// How long the end of a run waits for stdout to take the guest's last output.
const FINAL_FLUSH: Duration = Duration::from_millis(250);

/// Blocks SIGTERM and SIGINT in the calling thread (every thread but the main one), so
/// they reach the event loop's thread, whose filter allows the signal pipe.
pub(crate) fn block_stop_signals() {
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    if let Err(e) = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None) {
        log::warn!("cannot block SIGTERM/SIGINT in a VMM thread: {e}");
    }
}

/// In-kernel interrupt controllers; the TSS and identity-map pages Intel's VMX
/// needs out of the guest's way.
fn setup_irqchip(vm: &VmFd) -> Result<(), Error> {
    // A 32-bit address: fits usize on the 64-bit hosts minnow runs on.
    let tss = usize::try_from(KVM_TSS_ADDRESS).map_err(|_| Error::Memory {
        mib: 0,
        reason: "the TSS address does not fit this host",
    })?;
    vm.set_tss_address(tss)
        .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
    vm.set_identity_map_address(KVM_IDENTITY_MAP_ADDRESS)
        .map_err(kvm_err("KVM_SET_IDENTITY_MAP_ADDR"))?;
    vm.create_irq_chip()
        .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
    Ok(())
}

/// KVM's in-kernel PIT, with a dummy speaker port; only for guests that use it (crate::pit).
pub(crate) fn create_pit(vm: &VmFd) -> Result<(), kvm_ioctls::Error> {
    vm.create_pit2(kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    })
}

/// Opens KVM and creates the VM with its in-kernel irqchip; checks the vCPU count.
fn open_vm(config: &VmConfig, kvm_device: &std::path::Path) -> Result<(Kvm, VmFd, u8), Error> {
    let kvm = kvm::open(kvm_device)?;
    if minnow_host::is_pvm() {
        log::warn!(
            "this host's /dev/kvm is PVM (kvm_pvm): the guest kernel must be PVM-enabled; stock kernels boot only in the lab (make lab-test)"
        );
    }
    let max = kvm.get_max_vcpus().min(usize::from(mptable::MAX_CPUS));
    let too_many = Error::TooManyVcpus {
        asked: config.vcpus,
        max,
    };
    // At most mptable::MAX_CPUS (a u8) after this check.
    let count = match usize::try_from(config.vcpus) {
        Ok(n) if n <= max => u8::try_from(n).map_err(|_| too_many)?,
        _ => return Err(too_many),
    };
    let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
    setup_irqchip(&vm)?;
    Ok((kvm, vm, count))
}

/// What a built and a restored VM share: the exit event, the guest-output buffer, the
/// boot timer's and workload's results.
struct Parts {
    exit: Arc<ExitEvent>,
    booted: Arc<OnceLock<Duration>>,
    workload_status: Arc<OnceLock<u8>>,
    output: Arc<console::Output>,
}

impl Parts {
    fn new(_vm: &VmFd, opts: &Options) -> Result<Parts, Error> {
        let exit = Arc::new(ExitEvent::new().map_err(|e| Error::device("exit event", e))?);
        let out = match &opts.console_out {
            Some(f) => f
                .try_clone()
                .map_err(|e| Error::device("console output", e))?,
            None => console::open_stdout().map_err(|e| Error::device("console output", e))?,
        };
        let output = console::Output::new(out).map_err(|e| Error::device("console output", e))?;
        Ok(Parts {
            exit,
            booted: Arc::new(OnceLock::new()),
            workload_status: Arc::new(OnceLock::new()),
            output,
        })
    }

    fn legacy(&self, vm: &VmFd, opts: &Options) -> Result<device_manager::Devices, Error> {
        device_manager::Devices::legacy(
            vm,
            &self.exit,
            opts.start,
            &self.booted,
            &self.workload_status,
            self.output.clone(),
        )
    }
}

/// The last steps of [`Vmm::build`] and [`Vmm::restore`]: the console, the profile, the
/// control API.
#[allow(clippy::too_many_arguments)]
fn finish(
    kvm: Kvm,
    vm: VmFd,
    mem: GuestMemoryMmap,
    devs: device_manager::Devices,
    vcpus: Vec<VcpuFd>,
    parts: Parts,
    filters: seccomp::Filters,
    opts: Options,
    config: &VmConfig,
) -> Result<Vmm, Error> {
    let Parts {
        exit,
        booted,
        workload_status,
        output,
    } = parts;
    let start = opts.start;
    let console = console::Console::new(
        devs.serial.clone(),
        output.clone(),
        devs.serial_rx_ready,
        exit.clone(),
    )
    .map_err(|e| Error::device("console", e))?;
    let profile = opts.profile.then(|| {
        let mut p = Profile::new(start);
        for (i, (d, kind)) in devs.virtio.iter().zip(&devs.virtio_kinds).enumerate() {
            p.device(d.addr, &format!("{kind}{i}"));
        }
        output.mark_first_byte(p.mark("first byte of guest console output"));
        Arc::new(p)
    });
    let count = u8::try_from(vcpus.len()).map_err(|_| Error::TooManyVcpus {
        asked: config.vcpus,
        max: usize::from(mptable::MAX_CPUS),
    })?;
    // The MSRs a snapshot saves: only asked of KVM when a snapshot can be taken.
    let msr_list = match &opts.api_sock {
        Some(_) => kvm
            .get_msr_index_list()
            .map_err(kvm_err("KVM_GET_MSR_INDEX_LIST"))?
            .as_slice()
            .to_vec(),
        None => Vec::new(),
    };
    let control = Arc::new(vcpu::Control::new(count, msr_list));
    let vm = Arc::new(vm);
    let api = match &opts.api_sock {
        Some(path) => Some((
            api::Api::bind(path)?,
            api::ApiContext {
                control: control.clone(),
                vm: vm.clone(),
                mem: mem.clone(),
                serial: devs.serial.clone(),
                blocks: devs.blocks.clone(),
                nets: devs.nets.clone(),
                config: config.clone(),
                host: snapshot::Host::current(kvm.get_api_version()),
                exit: exit.clone(),
                stop: Arc::new(AtomicBool::new(false)),
                paused_clock: std::sync::Mutex::new(None),
            },
        )),
        None => None,
    };
    log::debug!("VM built in {:?}", start.elapsed());
    Ok(Vmm {
        vcpus,
        _vm: vm,
        _mem: mem,
        api,
        console: Some(console),
        handlers: devs.handlers,
        ctx: vcpu::VcpuContext {
            io_bus: Arc::new(devs.io_bus),
            mmio_bus: Arc::new(devs.mmio_bus),
            exit,
            stop: Arc::new(AtomicBool::new(false)),
            profile,
            control,
        },
        start,
        booted,
        workload_status,
        output,
        filters,
    })
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
    let mut vcpus = Vec::with_capacity(usize::from(count));
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
pub(crate) fn kick_signal() -> libc::c_int {
    SIGRTMIN()
}

fn install_kick_handler() -> Result<(), Error> {
    register_signal_handler(kick_signal(), kick_handler)
        .map_err(|e| Error::device("vCPU kick signal", e))
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
