//! vCPUs: set-up of the boot state, and the run loop that dispatches exits to the buses.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

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
    match ctx.profile.clone() {
        None => run_plain(fd, index, &ctx),
        Some(profile) => run_profiled(fd, index, &ctx, &profile),
    }
}

fn run_plain(mut fd: VcpuFd, index: u8, ctx: &VcpuContext) {
    while !ctx.stop.load(Ordering::Acquire) {
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
