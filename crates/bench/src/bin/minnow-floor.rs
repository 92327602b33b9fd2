//! `minnow-floor [--irqchip] [--pit] [--mem-mib N] GUEST.elf`: the bench's floor VMM.
//!
//! The least a VMM must do to run the tiny 64-bit test guests (tests/guests, e.g.
//! hello64.elf): open /dev/kvm, create the VM, one anonymous memory slot, the ELF's
//! PT_LOAD segments (linux-loader, as minnow), one vCPU in 64-bit long mode (minnow's own
//! GDT, identity page tables and registers from minnow-vmm's arch helpers), then
//! KVM_RUN on the main thread: COM1 writes (port 0x3f8) go to stdout a line at a time,
//! the line-status register always says "transmitter empty", the i8042 reset (0xfe to
//! port 0x64), HLT or a shutdown end the run with exit 0. No CPUID, MSRs, LAPIC set-up,
//! devices, threads, seccomp or event loop. `--irqchip` adds KVM_CREATE_IRQCHIP,
//! `--pit` KVM_CREATE_PIT2 as well (it needs the irqchip), both before the vCPU as minnow
//! does, so `minnow-bench host` measures what each costs beside minnow's own start-up.
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::Write;
use std::process::ExitCode;

use kvm_bindings::{kvm_pit_config, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VcpuExit};
use linux_loader::loader::{Elf, KernelLoader};
use minnow_vmm::arch::x86_64::layout::{COM1_PORT, HIMEM_START, I8042_RESET_COMMAND};
use minnow_vmm::arch::x86_64::regs::{boot_regs, boot_sregs, EntryMode};
use vm_memory::{GuestAddress, GuestMemoryMmap};

const USAGE: &str = "usage: minnow-floor [--irqchip] [--pit] [--mem-mib N] GUEST.elf";
const LSR: u16 = COM1_PORT as u16 + 5;
const LSR_THRE_TEMT: u8 = 0x60;
const I8042_CMD: u16 = 0x64;

struct Args {
    irqchip: bool,
    pit: bool,
    mem_mib: u64,
    guest: String,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        irqchip: false,
        pit: false,
        mem_mib: 32,
        guest: String::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(s) = it.next() {
        match s.as_str() {
            "--irqchip" => a.irqchip = true,
            "--pit" => a.pit = true,
            "--mem-mib" => {
                a.mem_mib = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| (2..=2048).contains(&n))
                    .ok_or("--mem-mib takes a number of MiB from 2 to 2048")?
            }
            _ if s.starts_with('-') || !a.guest.is_empty() => return Err(USAGE.into()),
            _ => a.guest = s,
        }
    }
    if a.guest.is_empty() {
        return Err(USAGE.into());
    }
    if a.pit && !a.irqchip {
        return Err("--pit needs --irqchip (KVM_CREATE_PIT2 wants the in-kernel irqchip)".into());
    }
    Ok(a)
}

fn kvm(what: &'static str) -> impl Fn(kvm_ioctls::Error) -> String {
    move |e| format!("{what}: {e}")
}

fn run(a: &Args) -> Result<(), String> {
    let kvm_fd = Kvm::new().map_err(kvm("open /dev/kvm"))?;
    let vm = kvm_fd.create_vm().map_err(kvm("KVM_CREATE_VM"))?;
    if a.irqchip {
        vm.create_irq_chip().map_err(kvm("KVM_CREATE_IRQCHIP"))?;
    }
    if a.pit {
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm.create_pit2(pit).map_err(kvm("KVM_CREATE_PIT2"))?;
    }
    let mem: GuestMemoryMmap =
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), (a.mem_mib << 20) as usize)])
            .map_err(|e| format!("guest memory: {e}"))?;
    minnow_vmm::memory::register(&vm, &mem).map_err(|e| e.to_string())?;
    let mut file = File::open(&a.guest).map_err(|e| format!("{}: {e}", a.guest))?;
    let loaded = Elf::load(&mem, None, &mut file, Some(GuestAddress(HIMEM_START)))
        .map_err(|e| format!("{}: {e}", a.guest))?;
    let vcpu = vm.create_vcpu(0).map_err(kvm("KVM_CREATE_VCPU"))?;
    let sregs = vcpu.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
    let sregs = boot_sregs(&mem, EntryMode::Linux64, sregs).map_err(|e| e.to_string())?;
    vcpu.set_sregs(&sregs).map_err(kvm("KVM_SET_SREGS"))?;
    vcpu.set_regs(&boot_regs(EntryMode::Linux64, loaded.kernel_load.0))
        .map_err(kvm("KVM_SET_REGS"))?;

    let mut out = std::io::stdout().lock();
    let mut line: Vec<u8> = Vec::with_capacity(128);
    let mut flush = |line: &mut Vec<u8>| {
        let _ = out.write_all(line).and_then(|_| out.flush());
        line.clear();
    };
    let mut vcpu = vcpu;
    loop {
        match vcpu.run().map_err(kvm("KVM_RUN"))? {
            VcpuExit::IoOut(port, data) if u64::from(port) == COM1_PORT => {
                line.extend_from_slice(data);
                if data.contains(&b'\n') {
                    flush(&mut line);
                }
            }
            VcpuExit::IoOut(I8042_CMD, [I8042_RESET_COMMAND])
            | VcpuExit::Hlt
            | VcpuExit::Shutdown => {
                flush(&mut line);
                return Ok(());
            }
            VcpuExit::IoIn(port, data) => {
                let v = if port == LSR { LSR_THRE_TEMT } else { 0xff };
                data.fill(v);
            }
            VcpuExit::IoOut(..) | VcpuExit::MmioWrite(..) => {}
            VcpuExit::MmioRead(_, data) => data.fill(0xff),
            other => {
                flush(&mut line);
                return Err(format!("unexpected VM exit {other:?}"));
            }
        }
    }
}

fn main() -> ExitCode {
    let r = args().and_then(|a| run(&a));
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("minnow-floor: {e}");
            ExitCode::FAILURE
        }
    }
}
