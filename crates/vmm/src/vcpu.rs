//! vCPUs: set-up of the boot state, and the run loop that dispatches exits to the buses.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kvm_bindings::{kvm_msr_entry, CpuId, Msrs};
use kvm_ioctls::{VcpuExit, VcpuFd};
use vm_memory::GuestMemoryMmap;

use super::Error;
use crate::arch::x86_64::{cpuid, interrupts, msr, regs};
use crate::boot::BootEntry;
use crate::devices::bus::Bus;
use crate::devices::{ExitEvent, ExitReason};
use crate::profile::{Kind, Profile, VcpuProfile};

/// KVM system event types (`struct kvm_run.system_event.type`).
const KVM_SYSTEM_EVENT_SHUTDOWN: u32 = 1;
const KVM_SYSTEM_EVENT_RESET: u32 = 2;
const KVM_SYSTEM_EVENT_CRASH: u32 = 3;

/// What a vCPU thread needs besides its fd.
#[derive(Clone)]
pub struct VcpuContext {
    pub io_bus: Arc<Bus>,
    pub mmio_bus: Arc<Bus>,
    pub exit: Arc<ExitEvent>,
    pub stop: Arc<AtomicBool>,
    /// Set with `--profile`: exits are counted and timed.
    pub profile: Option<Arc<Profile>>,
    /// Pause, resume and saving the vCPUs' state (the control API).
    pub control: Arc<Control>,
}

/// What the control API asks of the vCPU threads: park out of KVM_RUN, save their state,
/// run on. The API thread sets `pause` and kicks each thread (the stop's kick signal) until
/// all have parked; a parked thread waits on the condition variable.
pub struct Control {
    pause: AtomicBool,
    state: Mutex<Parked>,
    cv: Condvar,
    /// KVM's MSR index list, for the saved state.
    msr_list: Vec<u32>,
}

#[derive(Default)]
struct Parked {
    /// The kernel thread id of each vCPU thread (0 until it has started).
    tids: Vec<libc::pid_t>,
    parked: usize,
    /// A save in progress: one slot per vCPU, filled by the vCPU's own thread.
    save: Option<Vec<Option<Result<SavedVcpu, String>>>>,
}

type SavedVcpu = crate::snapshot::VcpuState;

/// How long pause, resume and a state save wait for the vCPU threads.
const CONTROL_WAIT: Duration = Duration::from_secs(2);
/// How often a parked thread looks at the stop flag, and the API thread kicks.
const PARK_POLL: Duration = Duration::from_millis(2);

impl Control {
    /// For `count` vCPUs.
    pub fn new(count: u8, msr_list: Vec<u32>) -> Self {
        Control {
            pause: AtomicBool::new(false),
            state: Mutex::new(Parked {
                tids: vec![0; usize::from(count)],
                ..Parked::default()
            }),
            cv: Condvar::new(),
            msr_list,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Parked> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the VM is paused (or pausing).
    pub fn paused(&self) -> bool {
        self.pause.load(Ordering::Acquire)
    }

    /// The number of vCPUs.
    pub fn count(&self) -> usize {
        self.lock().tids.len()
    }

    fn started(&self, index: u8) {
        // SAFETY: gettid has no arguments and cannot fail.
        let tid = unsafe { libc::gettid() };
        let mut g = self.lock();
        if let Some(slot) = g.tids.get_mut(usize::from(index)) {
            *slot = tid;
        }
    }

    /// Waits, up to [`CONTROL_WAIT`], until `done`; kicks the vCPU threads between
    /// looks when `kick`. Gives up early when `gone` says the VM is stopping.
    fn wait_for(
        &self,
        mut done: impl FnMut(&Parked) -> bool,
        kick: bool,
        gone: &dyn Fn() -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + CONTROL_WAIT;
        let mut g = self.lock();
        loop {
            if done(&g) {
                return Ok(());
            }
            if gone() {
                return Err("the VM is stopping".into());
            }
            if Instant::now() >= deadline {
                return Err("the vCPUs did not answer within 2 s".into());
            }
            if kick {
                // SAFETY: getpid has no arguments and cannot fail.
                let pid = unsafe { libc::getpid() };
                for &tid in g.tids.iter().filter(|&&t| t != 0) {
                    // SAFETY: tgkill with this process's id only reaches one of its own
                    // threads (a vCPU thread, or nothing if the id is gone); the kick
                    // signal's handler does nothing.
                    unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, crate::kick_signal()) };
                }
            }
            g = self
                .cv
                .wait_timeout(g, PARK_POLL)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Parks every vCPU out of KVM_RUN (pending port I/O and MMIO completed first).
    pub fn pause(&self, gone: &dyn Fn() -> bool) -> Result<(), String> {
        if self.pause.swap(true, Ordering::AcqRel) {
            return Err("the VM is already paused; resume it first".into());
        }
        let n = self.count();
        let parked = self.wait_for(|g| g.parked == n, true, gone);
        if parked.is_err() {
            self.pause.store(false, Ordering::Release);
            self.cv.notify_all();
        }
        parked
    }

    /// Lets the parked vCPUs run on.
    pub fn resume(&self, gone: &dyn Fn() -> bool) -> Result<(), String> {
        if !self.pause.load(Ordering::Acquire) {
            return Err("the VM is not paused; pause it first".into());
        }
        self.pause.store(false, Ordering::Release);
        self.cv.notify_all();
        self.wait_for(|g| g.parked == 0, false, gone)
    }

    /// Each paused vCPU's state, saved by its own thread.
    pub fn save(&self, gone: &dyn Fn() -> bool) -> Result<Vec<SavedVcpu>, String> {
        if !self.paused() {
            return Err(
                "the VM is running; pause it first (PATCH /vm {\"state\": \"Paused\"})".into(),
            );
        }
        let n = self.count();
        self.lock().save = Some((0..n).map(|_| None).collect());
        self.cv.notify_all();
        let waited = self.wait_for(
            |g| {
                g.save
                    .as_ref()
                    .is_some_and(|s| s.iter().all(Option::is_some))
            },
            false,
            gone,
        );
        let slots = self.lock().save.take();
        waited?;
        slots
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, s)| match s {
                Some(Ok(state)) => Ok(state),
                Some(Err(e)) => Err(format!("vCPU {i}: {e}")),
                None => Err(format!("vCPU {i} did not save its state")),
            })
            .collect()
    }
}

/// Parks this vCPU while the VM is paused; saves its state when asked. Returns true when
/// the exit it completed on the way stops the VM.
fn park(fd: &mut VcpuFd, index: u8, ctx: &VcpuContext) -> bool {
    // A KVM_RUN with immediate_exit completes a pending port read or MMIO read (the
    // value the last exit returned) and comes straight back, so the saved registers
    // hold it and the instruction is not run twice.
    fd.set_kvm_immediate_exit(1);
    for _ in 0..16 {
        match fd.run() {
            Ok(exit) => {
                if let Some(reason) = handle_exit(exit, index, ctx) {
                    fd.set_kvm_immediate_exit(0);
                    stop(fd, index, ctx, reason);
                    return true;
                }
            }
            Err(_) => break,
        }
    }
    fd.set_kvm_immediate_exit(0);
    let control = &ctx.control;
    let mut g = control.lock();
    g.parked += 1;
    control.cv.notify_all();
    while control.paused() && !ctx.stop.load(Ordering::Acquire) {
        let mine = g
            .save
            .as_ref()
            .is_some_and(|s| s.get(usize::from(index)).is_some_and(Option::is_none));
        if mine {
            let saved =
                crate::snapshot::save_vcpu(fd, &control.msr_list).map_err(|e| e.to_string());
            if let Some(slot) = g.save.as_mut().and_then(|s| s.get_mut(usize::from(index))) {
                *slot = Some(saved);
            }
            control.cv.notify_all();
            continue;
        }
        g = control
            .cv
            .wait_timeout(g, PARK_POLL * 10)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    g.parked -= 1;
    control.cv.notify_all();
    false
}

/// Sets CPUID, MSRs and the local APIC of vCPU `index` of `count`.
pub fn configure(fd: &VcpuFd, base_cpuid: &CpuId, index: u8, count: u8) -> Result<(), Error> {
    let mut cpuid = base_cpuid.clone();
    cpuid::normalize(cpuid.as_mut_slice(), index, count);
    fd.set_cpuid2(&cpuid)
        .map_err(|e| Error::Kvm("KVM_SET_CPUID2", e))?;

    let entries: Vec<kvm_msr_entry> = msr::boot_msrs();
    let msrs = Msrs::from_entries(&entries).map_err(Error::MsrList)?;
    let written = fd
        .set_msrs(&msrs)
        .map_err(|e| Error::Kvm("KVM_SET_MSRS", e))?;
    if written != entries.len() {
        log::warn!(
            "vCPU {index}: KVM took {written} of {} boot MSRs (first refused: {:#x})",
            entries.len(),
            entries[written].index
        );
    }

    let mut lapic = fd.get_lapic().map_err(|e| Error::Kvm("KVM_GET_LAPIC", e))?;
    interrupts::set_lint(&mut lapic);
    fd.set_lapic(&lapic)
        .map_err(|e| Error::Kvm("KVM_SET_LAPIC", e))?;
    Ok(())
}

/// Puts the boot vCPU at the kernel's entry point.
pub fn set_boot_state(fd: &VcpuFd, mem: &GuestMemoryMmap, boot: BootEntry) -> Result<(), Error> {
    let sregs = fd.get_sregs().map_err(|e| Error::Kvm("KVM_GET_SREGS", e))?;
    let sregs = regs::boot_sregs(mem, boot.mode, sregs).map_err(Error::PageTables)?;
    fd.set_sregs(&sregs)
        .map_err(|e| Error::Kvm("KVM_SET_SREGS", e))?;
    fd.set_regs(&regs::boot_regs(boot.mode, boot.entry))
        .map_err(|e| Error::Kvm("KVM_SET_REGS", e))?;
    fd.set_fpu(&regs::boot_fpu())
        .map_err(|e| Error::Kvm("KVM_SET_FPU", e))?;
    Ok(())
}

/// Runs vCPU `index` until the VM stops. Every way out records an [`ExitReason`].
pub fn run(fd: VcpuFd, index: u8, ctx: VcpuContext) {
    ctx.control.started(index);
    match ctx.profile.clone() {
        None => run_plain(fd, index, &ctx),
        Some(profile) => run_profiled(fd, index, &ctx, &profile),
    }
}

fn run_plain(mut fd: VcpuFd, index: u8, ctx: &VcpuContext) {
    while !ctx.stop.load(Ordering::Acquire) {
        if ctx.control.paused() {
            if park(&mut fd, index, ctx) {
                return;
            }
            continue;
        }
        let exit = match fd.run() {
            Ok(exit) => exit,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
            Err(e) => {
                ctx.exit.trigger(ExitReason::Crash(format!(
                    "vCPU {index}: KVM_RUN failed: {e}"
                )));
                return;
            }
        };
        if let Some(reason) = handle_exit(exit, index, ctx) {
            stop(&fd, index, ctx, reason);
            return;
        }
    }
}

/// [`run_plain`], counting and timing every exit into `profile`.
fn run_profiled(mut fd: VcpuFd, index: u8, ctx: &VcpuContext, profile: &Profile) {
    let mut counts = VcpuProfile {
        index,
        ..VcpuProfile::default()
    };
    profile.started();
    while !ctx.stop.load(Ordering::Acquire) {
        if ctx.control.paused() {
            if park(&mut fd, index, ctx) {
                break;
            }
            continue;
        }
        let entered = Instant::now();
        let result = fd.run();
        let returned = Instant::now();
        let exit = match result {
            Ok(exit) => exit,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                profile.count(
                    &mut counts,
                    Kind::Interrupt,
                    returned - entered,
                    returned.elapsed(),
                );
                continue;
            }
            Err(e) => {
                ctx.exit.trigger(ExitReason::Crash(format!(
                    "vCPU {index}: KVM_RUN failed: {e}"
                )));
                break;
            }
        };
        let kind = profile.observe(&exit);
        let stopping = handle_exit(exit, index, ctx);
        profile.count(&mut counts, kind, returned - entered, returned.elapsed());
        if let Some(reason) = stopping {
            stop(&fd, index, ctx, reason);
            break;
        }
    }
    profile.add(counts);
}

fn stop(fd: &VcpuFd, index: u8, ctx: &VcpuContext, reason: ExitReason) {
    if reason == ExitReason::TripleFault {
        log_state(fd, index);
    }
    ctx.exit.trigger(reason);
}

/// Logs where a vCPU was when the guest triple-faulted. On AMD hosts KVM re-initialises
/// the vCPU on a shutdown exit, so there this shows the reset state (said in the line).
fn log_state(fd: &VcpuFd, index: u8) {
    match (fd.get_regs(), fd.get_sregs()) {
        (Ok(r), Ok(s)) => log::warn!(
            "vCPU {index} at the triple fault: rip {:#x} rsp {:#x} rflags {:#x} cr0 {:#x} cr2 {:#x} cr3 {:#x} cr4 {:#x} efer {:#x} (on AMD hosts KVM has already reset these)",
            r.rip, r.rsp, r.rflags, s.cr0, s.cr2, s.cr3, s.cr4, s.efer
        ),
        (Err(e), _) | (_, Err(e)) => log::warn!("vCPU {index}: cannot read registers after the triple fault: {e}"),
    }
}

/// Handles one exit; returns a reason when the VM must stop.
fn handle_exit(exit: VcpuExit, index: u8, ctx: &VcpuContext) -> Option<ExitReason> {
    match exit {
        VcpuExit::IoIn(port, data) => {
            if !ctx.io_bus.read(u64::from(port), data) {
                data.fill(0xff);
            }
        }
        VcpuExit::IoOut(port, data) => {
            if !ctx.io_bus.write(u64::from(port), data) {
                log::trace!("unhandled port write {port:#x} {data:x?}");
            }
        }
        VcpuExit::MmioRead(addr, data) => {
            if !ctx.mmio_bus.read(addr, data) {
                log::debug!("unhandled MMIO read at {addr:#x}");
                data.fill(0xff);
            }
        }
        VcpuExit::MmioWrite(addr, data) => {
            if !ctx.mmio_bus.write(addr, data) {
                log::debug!("unhandled MMIO write at {addr:#x}");
            }
        }
        VcpuExit::Shutdown => return Some(ExitReason::TripleFault),
        VcpuExit::SystemEvent(kind, _) => {
            return Some(match kind {
                KVM_SYSTEM_EVENT_RESET => ExitReason::Reset,
                KVM_SYSTEM_EVENT_SHUTDOWN => ExitReason::PowerOff,
                KVM_SYSTEM_EVENT_CRASH => ExitReason::Crash("the guest reported a crash".into()),
                other => ExitReason::Crash(format!("unknown system event {other}")),
            })
        }
        VcpuExit::Hlt => {
            // Only without an in-kernel local APIC: the guest stopped for good.
            return Some(ExitReason::Crash(format!("vCPU {index} halted")));
        }
        VcpuExit::FailEntry(reason, cpu) => {
            return Some(ExitReason::Crash(format!(
                "vCPU {index}: VM entry failed (reason {reason:#x}, host CPU {cpu})"
            )))
        }
        VcpuExit::InternalError => {
            return Some(ExitReason::Crash(format!(
                "vCPU {index}: KVM internal error"
            )))
        }
        VcpuExit::Intr | VcpuExit::IrqWindowOpen => {}
        other => {
            return Some(ExitReason::Crash(format!(
                "vCPU {index}: unexpected exit {other:?}"
            )))
        }
    }
    None
}
