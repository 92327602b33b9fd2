//! The initial ramdisk: placed page-aligned as high in low memory as the kernel allows.

use std::fs::File;
use std::path::Path;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::Error;
use crate::arch::x86_64::layout::MMIO_GAP_START;

const PAGE: u64 = 4096;

/// Where the initrd went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Initrd {
    pub addr: u64,
    pub size: u64,
}

/// Chooses the initrd address: the highest page below `min(mem_size, addr_max, MMIO gap)`
/// that keeps it clear of the kernel, which ends at `kernel_end`.
pub fn place(size: u64, kernel_end: u64, addr_max: u64, mem_size: u64) -> Result<u64, u64> {
    let top = mem_size.min(addr_max).min(MMIO_GAP_START);
    // A kernel that claims to end in the last page of the address space leaves no room
    // (and must not wrap the floor to 0: found by the kernel_load fuzz target).
    let Some(floor) = kernel_end.checked_next_multiple_of(PAGE) else {
        return Err(0);
    };
    let free = top.saturating_sub(floor);
    match top.checked_sub(size) {
        Some(start) if start & !(PAGE - 1) >= floor => Ok(start & !(PAGE - 1)),
        _ => Err(free),
    }
}

/// Loads the initrd at `path`.
pub fn load(
    mem: &GuestMemoryMmap,
    path: &Path,
    kernel_end: u64,
    addr_max: u64,
    mem_size: u64,
) -> Result<Initrd, Error> {
    let open_err = |source| Error::InitrdOpen {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(open_err)?;
    let meta = file.metadata().map_err(open_err)?;
    if !meta.is_file() {
        return Err(open_err(std::io::Error::other("not a regular file")));
    }
    let size = meta.len();
    let addr = place(size, kernel_end, addr_max, mem_size).map_err(|free| Error::InitrdTooBig {
        path: path.to_owned(),
        size_mib: size.div_ceil(1 << 20),
        free_mib: free >> 20,
    })?;
    mem.read_exact_volatile_from(GuestAddress(addr), &mut file, size as usize)
        .map_err(|e| Error::Memory {
            what: "the initrd",
            reason: e.to_string(),
        })?;
    log::debug!("initrd: {size} bytes at {addr:#x}");
    Ok(Initrd { addr, size })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placed_at_top_page_aligned() {
        let a = place(10_000, 0x20_0000, u64::MAX, 64 << 20).unwrap();
        assert_eq!(a % PAGE, 0);
        assert!(a + 10_000 <= 64 << 20);
        assert!(a >= (64 << 20) - 10_000 - PAGE);
    }

    #[test]
    fn respects_addr_max_and_gap() {
        let a = place(PAGE, 0x20_0000, 0x100_0000, 64 << 20).unwrap();
        assert_eq!(a, 0x100_0000 - PAGE);
        let b = place(PAGE, 0x20_0000, u64::MAX, 8 << 30).unwrap();
        assert_eq!(b, MMIO_GAP_START - PAGE);
    }

    #[test]
    fn too_big_reports_free_space() {
        let free = place(64 << 20, 0x20_0000, u64::MAX, 32 << 20).unwrap_err();
        assert_eq!(free, (32 << 20) - 0x20_0000);
        assert!(place(u64::MAX, 0, u64::MAX, 32 << 20).is_err());
        // A kernel "ending" in the last page: no room, and no wrap to address 0.
        assert_eq!(place(PAGE, u64::MAX - 5, u64::MAX, 32 << 20), Err(0));
    }

    #[test]
    fn oversized_initrd_is_a_clear_error() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.img");
        std::fs::write(&p, vec![0u8; 20 << 20]).unwrap();
        let e = load(&mem, &p, 0x20_0000, u64::MAX, 16 << 20).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("raise --mem-mib") && msg.contains("20 MiB"),
            "{msg}"
        );
        let small = dir.path().join("small.img");
        std::fs::write(&small, b"0123456789").unwrap();
        let r = load(&mem, &small, 0x20_0000, u64::MAX, 16 << 20).unwrap();
        assert_eq!(r.size, 10);
    }
}
