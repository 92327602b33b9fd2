//! Kernel loading: random bytes as the kernel file (bzImage or ELF vmlinux, told apart
//! the way minnow does), loaded into guest memory by `boot::load` with the command line
//! and an initrd, and the zero page or PVH start info written, as for a real boot.
//!
//! Input: 1 byte of flags (bit 0: with an initrd; bits 1-2: memory size 32/64/128/256
//! MiB, as the loader is told; guest memory is 256 MiB); the rest is the kernel file. The
//! seeds are a minimal bzImage and a minimal ELF with a PVH note, so both loaders are
//! reached at once.
//! Oracle: no panic; an entry point it returns lies inside guest memory.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use minnow_fuzz::{memory, scratch};
use minnow_vmm::boot::{self, BootInput};
use vm_memory::GuestMemoryMmap;

const MEM_SIZE: usize = 256 << 20;

fn mem() -> &'static GuestMemoryMmap {
    // One guest memory for the whole run: the loaders only write to it.
    static MEM: OnceLock<GuestMemoryMmap> = OnceLock::new();
    MEM.get_or_init(|| memory(MEM_SIZE))
}

fn initrd() -> &'static PathBuf {
    static INITRD: OnceLock<PathBuf> = OnceLock::new();
    INITRD.get_or_init(|| {
        let p = scratch().join("initrd");
        std::fs::write(&p, vec![0x42u8; 8192]).unwrap();
        p
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, kernel)) = data.split_first() else {
        return;
    };
    let path = scratch().join("kernel");
    std::fs::write(&path, kernel).unwrap();
    let mem_size = (32u64 << 20) << ((flags >> 1) & 3);
    let input = BootInput {
        kernel: &path,
        initrd: (flags & 1 != 0).then(|| initrd().as_path()),
        cmdline: "console=ttyS0 reboot=k panic=1",
        mem_size,
        rsdp: Some(0xe_0000),
    };
    if let Ok(entry) = boot::load(mem(), &input) {
        assert!(entry.entry < MEM_SIZE as u64, "entry {:#x}", entry.entry);
    }
});
