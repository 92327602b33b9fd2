//! Boot loading: puts the kernel, the initrd, the command line and the boot parameters
//! (Linux zero page or PVH start info) into guest memory, and says where to enter.

pub mod cmdline;
pub mod initrd;
pub mod kernel;
pub mod params;

use std::path::{Path, PathBuf};

use vm_memory::GuestMemoryMmap;

use crate::arch::x86_64::regs::EntryMode;

/// A boot loading failure, phrased for the user.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel file cannot be opened.
    #[error("cannot open kernel {path}: {source}; check the --kernel path")]
    KernelOpen {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The kernel file is empty.
    #[error("kernel {0} is empty; give a bzImage or an ELF vmlinux")]
    KernelEmpty(PathBuf),
    /// The kernel file is neither a bzImage nor an x86_64 ELF.
    #[error("{0} is not a kernel (neither a bzImage nor an x86_64 ELF vmlinux); check the --kernel path")]
    NotAKernel(PathBuf),
    /// linux-loader refused the image.
    #[error("cannot load kernel {path}: {reason}; is it an x86_64 bzImage or vmlinux that fits in --mem-mib?")]
    KernelLoad { path: PathBuf, reason: String },
    /// The initrd file cannot be read.
    #[error("cannot open initrd {path}: {source}; check the --initrd path")]
    InitrdOpen {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The initrd does not fit.
    #[error("initrd {path} is {size_mib} MiB but only {free_mib} MiB of guest memory is free above the kernel; raise --mem-mib")]
    InitrdTooBig {
        path: PathBuf,
        size_mib: u64,
        free_mib: u64,
    },
    /// The command line is too long or malformed.
    #[error("bad kernel command line: {0}")]
    Cmdline(String),
    /// The workload does not fit on the kernel command line.
    #[error("the command is too long for the kernel command line ({len} bytes encoded, at most {max}); shorten it or put it in a script in the image")]
    CommandTooLong { len: usize, max: usize },
    /// Writing boot structures to guest memory failed.
    #[error("cannot write {what} to guest memory: {reason}")]
    Memory { what: &'static str, reason: String },
}

/// What the boot loader needs to know.
pub struct BootInput<'a> {
    pub kernel: &'a Path,
    pub initrd: Option<&'a Path>,
    pub cmdline: &'a str,
    pub mem_size: u64,
    /// Address of the ACPI RSDP, if the VM has ACPI tables.
    pub rsdp: Option<u64>,
}

/// Where and how the first vCPU starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootEntry {
    pub mode: EntryMode,
    pub entry: u64,
    /// What the kernel is, for the devices it needs (crate::pit).
    pub guest: crate::pit::Guest,
}

/// Loads everything and writes the boot parameters.
pub fn load(mem: &GuestMemoryMmap, input: &BootInput) -> Result<BootEntry, Error> {
    let kernel = kernel::load(mem, input.kernel)?;
    let cmdline = cmdline::write(mem, input.cmdline, kernel.cmdline_limit())?;
    let max_addr = kernel.initrd_addr_max();
    let initrd = match input.initrd {
        Some(path) => Some(initrd::load(
            mem,
            path,
            kernel.end,
            max_addr,
            input.mem_size,
        )?),
        None => None,
    };
    let boot = params::BootInfo {
        mem_size: input.mem_size,
        cmdline_len: cmdline,
        initrd,
        rsdp: input.rsdp,
    };
    match kernel.pvh_entry {
        Some(entry) => {
            params::write_pvh(mem, &boot)?;
            Ok(BootEntry {
                mode: EntryMode::Pvh,
                entry,
                guest: kernel.guest,
            })
        }
        None => {
            params::write_zero_page(mem, &boot, kernel.setup_header)?;
            Ok(BootEntry {
                mode: EntryMode::Linux64,
                entry: kernel.entry,
                guest: kernel.guest,
            })
        }
    }
}
