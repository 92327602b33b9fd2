//! Kernel images: format detection and loading with linux-loader.
//!
//! * bzImage: the protected-mode part is loaded at 1 MiB and entered at +0x200 through the
//!   64-bit boot protocol.
//! * ELF vmlinux: loaded at its physical addresses; entered through PVH when it carries the
//!   Xen PVH note, else at `e_entry` through the 64-bit boot protocol.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use linux_loader::loader::bootparam::setup_header;
use linux_loader::loader::elf::PvhBootCapability;
use linux_loader::loader::{BzImage, Elf, KernelLoader};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::Error;
use crate::arch::x86_64::layout::{CMDLINE_MAX_SIZE, HIMEM_START, MMIO_GAP_START};
use crate::pit::{self, Guest};

/// Offset of the 64-bit entry point from the start of a bzImage's protected-mode code.
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;
const ELF_MACHINE_X86_64: u16 = 62;
const ELF_TYPE_EXEC: u16 = 2;

/// The kernel image formats minnow loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    BzImage,
    Elf,
}

/// A loaded kernel.
#[derive(Debug)]
pub struct Kernel {
    pub format: Format,
    /// 64-bit boot-protocol entry point.
    pub entry: u64,
    /// PVH entry point, when the ELF has one.
    pub pvh_entry: Option<u64>,
    /// First byte after the loaded image.
    pub end: u64,
    /// The bzImage setup header.
    pub setup_header: Option<setup_header>,
    /// Linux (and which) or another kernel: whether it needs a PIT (crate::pit).
    pub guest: Guest,
}

impl Kernel {
    /// Longest command line the kernel accepts, including the NUL.
    pub fn cmdline_limit(&self) -> usize {
        match self.setup_header {
            Some(h) if h.version >= 0x206 && h.cmdline_size > 0 => {
                (h.cmdline_size as usize + 1).min(CMDLINE_MAX_SIZE)
            }
            Some(_) => 256,
            None => CMDLINE_MAX_SIZE,
        }
    }

    /// Highest address the initrd may end at.
    pub fn initrd_addr_max(&self) -> u64 {
        match self.setup_header {
            Some(h) if h.version >= 0x203 => u64::from(h.initrd_addr_max) + 1,
            Some(_) => 0x3800_0000,
            None => MMIO_GAP_START,
        }
    }
}

/// Tells the format from the first bytes of the image.
pub fn detect(head: &[u8]) -> Option<Format> {
    if head.len() >= 20 && head[..4] == *b"\x7fELF" {
        let e_type = u16::from_le_bytes([head[16], head[17]]);
        let machine = u16::from_le_bytes([head[18], head[19]]);
        return (machine == ELF_MACHINE_X86_64 && e_type == ELF_TYPE_EXEC).then_some(Format::Elf);
    }
    if head.len() >= 0x206 && head[0x202..0x206] == *b"HdrS" {
        return Some(Format::BzImage);
    }
    None
}

/// Loads the kernel at `path` into `mem`.
pub fn load(mem: &GuestMemoryMmap, path: &Path) -> Result<Kernel, Error> {
    let open_err = |source| Error::KernelOpen {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(open_err)?;
    let meta = file.metadata().map_err(open_err)?;
    if !meta.is_file() {
        return Err(Error::NotAKernel(path.to_owned()));
    }
    if meta.len() == 0 {
        return Err(Error::KernelEmpty(path.to_owned()));
    }
    let mut head = Vec::with_capacity(0x400);
    (&mut file)
        .take(0x400)
        .read_to_end(&mut head)
        .map_err(open_err)?;
    let format = detect(&head).ok_or_else(|| Error::NotAKernel(path.to_owned()))?;
    file.seek(SeekFrom::Start(0)).map_err(open_err)?;

    let himem = Some(GuestAddress(HIMEM_START));
    let result = match format {
        Format::BzImage => BzImage::load(mem, None, &mut file, himem),
        Format::Elf => Elf::load(mem, None, &mut file, himem),
    }
    .map_err(|e| Error::KernelLoad {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;

    let load = result.kernel_load.0;
    let pvh_entry = match result.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(addr) => Some(addr.0),
        _ => None,
    };
    let entry = match format {
        Format::BzImage => load + BZIMAGE_64BIT_ENTRY_OFFSET,
        Format::Elf => load,
    };
    // The loaders take the ELF entry points as the file says; one outside guest memory
    // would start the vCPU on nothing (found by the kernel_load fuzz target).
    for addr in std::iter::once(entry).chain(pvh_entry) {
        if !mem.address_in_range(GuestAddress(addr)) {
            return Err(Error::KernelLoad {
                path: path.to_owned(),
                reason: format!("its entry point {addr:#x} is outside guest memory"),
            });
        }
    }
    // The same for the end of the image (an ELF's memory size is as the file says).
    let end = result.kernel_end;
    if end == 0 || !mem.address_in_range(GuestAddress(end - 1)) {
        return Err(Error::KernelLoad {
            path: path.to_owned(),
            reason: if end == 0 {
                "it loads nothing into guest memory".to_string()
            } else {
                format!("it claims to end at {end:#x}, past the end of guest memory")
            },
        });
    }
    let guest = what_guest(&mut file, format, result.setup_header.as_ref()).map_err(open_err)?;
    log::debug!(
        "kernel {format:?} ({guest:?}) loaded at {load:#x}, entry {entry:#x}, pvh {pvh_entry:x?}"
    );
    Ok(Kernel {
        format,
        entry,
        pvh_entry,
        end: result.kernel_end,
        setup_header: result.setup_header,
        guest,
    })
}

/// A bzImage is Linux, its version in the setup header's `kernel_version` string (at
/// 0x200 plus that offset, boot protocol 2.00+); an ELF is Linux if it has Linux's banner.
fn what_guest(
    file: &mut File,
    format: Format,
    header: Option<&setup_header>,
) -> std::io::Result<Guest> {
    match format {
        Format::BzImage => {
            let at = header.map_or(0, |h| h.kernel_version);
            if at == 0 {
                return Ok(Guest::Linux(None));
            }
            file.seek(SeekFrom::Start(0x200 + u64::from(at)))?;
            let mut text = Vec::with_capacity(32);
            file.take(32).read_to_end(&mut text)?;
            Ok(Guest::Linux(pit::parse_version(&String::from_utf8_lossy(
                &text,
            ))))
        }
        Format::Elf => {
            file.seek(SeekFrom::Start(0))?;
            Ok(pit::scan_banner(file)?.unwrap_or(Guest::Other))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf_head(e_type: u16, machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[16..18].copy_from_slice(&e_type.to_le_bytes());
        h[18..20].copy_from_slice(&machine.to_le_bytes());
        h
    }

    #[test]
    fn detects_formats() {
        assert_eq!(detect(&elf_head(2, 62)), Some(Format::Elf));
        // A position-independent executable such as /bin/true is not a kernel.
        assert_eq!(detect(&elf_head(3, 62)), None);
        assert_eq!(detect(&elf_head(2, 183)), None);
        let mut bz = vec![0u8; 0x400];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(detect(&bz), Some(Format::BzImage));
        assert_eq!(detect(b"#!/bin/sh\n"), None);
        assert_eq!(detect(&[]), None);
    }

    fn kernel_with(h: Option<setup_header>) -> Kernel {
        Kernel {
            format: Format::BzImage,
            entry: 0,
            pvh_entry: None,
            end: 0,
            setup_header: h,
            guest: Guest::Linux(None),
        }
    }

    #[test]
    fn limits_follow_the_setup_header() {
        let h = setup_header {
            version: 0x20f,
            cmdline_size: 2047,
            initrd_addr_max: 0x7fff_ffff,
            ..Default::default()
        };
        let k = kernel_with(Some(h));
        assert_eq!(k.cmdline_limit(), 2048);
        assert_eq!(k.initrd_addr_max(), 0x8000_0000);
        let old = kernel_with(Some(setup_header {
            version: 0x202,
            ..Default::default()
        }));
        assert_eq!(old.cmdline_limit(), 256);
        assert_eq!(old.initrd_addr_max(), 0x3800_0000);
        assert_eq!(kernel_with(None).initrd_addr_max(), MMIO_GAP_START);
    }

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap()
    }

    #[test]
    fn errors_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        assert!(matches!(
            load(&mem(), &missing),
            Err(Error::KernelOpen { .. })
        ));
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert!(matches!(load(&mem(), &empty), Err(Error::KernelEmpty(_))));
        let text = dir.path().join("text");
        std::fs::write(&text, b"hello, not a kernel").unwrap();
        assert!(matches!(load(&mem(), &text), Err(Error::NotAKernel(_))));
        assert!(matches!(
            load(&mem(), dir.path()),
            Err(Error::NotAKernel(_))
        ));
        // An ELF whose entry point is outside guest memory (fuzz/regressions/kernel_load).
        let elf = dir.path().join("elf");
        let crash = include_bytes!(
            "../../../../fuzz/regressions/kernel_load/crash-1c32adc759886d606d3b193b1ac29bfa48ae46f4"
        );
        std::fs::write(&elf, &crash[1..]).unwrap();
        let e = load(&mem(), &elf).unwrap_err().to_string();
        assert!(
            e.contains("entry point 0xf7100000 is outside guest memory"),
            "{e}"
        );
        // An ELF whose memory size runs to the end of the address space (its end wrapped
        // the initrd's floor to 0).
        let crash = include_bytes!(
            "../../../../fuzz/regressions/kernel_load/crash-5437e9601e7f07bfa40ef20652c0f05f517f3adf"
        );
        std::fs::write(&elf, &crash[1..]).unwrap();
        let e = load(&mem(), &elf).unwrap_err().to_string();
        assert!(e.contains("past the end of guest memory"), "{e}");
        let msg = load(&mem(), &text).unwrap_err().to_string();
        assert!(msg.contains("not a kernel") && !msg.contains('\n'), "{msg}");
    }
}
