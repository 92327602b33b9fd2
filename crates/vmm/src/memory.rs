//! Guest memory: anonymous (optionally huge-page) mappings laid out by the arch address
//! map, registered with KVM.

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{
    GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, GuestRegionMmap,
};

use super::Error;
use crate::arch::x86_64::layout::ram_regions;

/// Maps `size` bytes of guest RAM.
pub fn create(size: u64, hugepages: bool) -> Result<GuestMemoryMmap, Error> {
    let mut regions = Vec::new();
    for (start, len) in ram_regions(size) {
        // Huge pages are reserved up front (no MAP_NORESERVE): without enough of them the
        // mmap fails here, instead of the guest's first touch raising SIGBUS.
        let flags = if hugepages {
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB
        } else {
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE
        };
        let len_bytes = usize::try_from(len).map_err(|_| Error::Memory {
            mib: size >> 20,
            reason: "the size does not fit this host's address space",
        })?;
        let mut builder = MmapRegionBuilder::new(len_bytes)
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(flags)
            .with_hugetlbfs(hugepages);
        // (hugetlbfs mappings are aligned to their page size by the kernel already.)
        if !hugepages {
            let at = aligned_anon(len_bytes).map_err(|source| Error::MemoryMap {
                mib: size >> 20,
                source: vm_memory::mmap::MmapRegionError::Mmap(source),
                fix: "lower --mem-mib",
            })?;
            // SAFETY: `at` is a fresh private anonymous read-write mapping of `len_bytes`
            // that nothing else uses; it stays mapped for the rest of the process.
            builder = unsafe { builder.with_raw_mmap_pointer(at) };
        }
        let mapping = builder.build().map_err(|source| Error::MemoryMap {
            mib: size >> 20,
            source,
            fix: if hugepages {
                "reserve huge pages (/proc/sys/vm/nr_hugepages) or drop --hugepages"
            } else {
                "lower --mem-mib"
            },
        })?;
        let region = GuestRegionMmap::new(mapping, GuestAddress(start)).ok_or(Error::Memory {
            mib: size >> 20,
            reason: "region overflows the address space",
        })?;
        regions.push(region);
    }
    GuestMemoryMmap::from_regions(regions).map_err(|source| Error::MemoryRegions {
        mib: size >> 20,
        source,
    })
}

/// Guest RAM's host address must be 2 MiB-aligned like its guest address, or KVM can only
/// map it with 4 KiB pages (a huge page needs both addresses aligned alike): every first
/// touch of a page is then a fault of its own, which under nested virtualisation cost a
/// Debian 6.12 guest 3 s of boot in the lab (bench/README.md, "Where minnow's guest
/// waits"). So reserve 2 MiB more, keep the aligned part and unmap the slack. Whether
/// the host backs it with transparent huge pages is the host's THP setting, as for QEMU
/// (which aligns its RAM alike). The mapping is never unmapped: guest memory lives as
/// long as the VMM process (vm-memory does not own a mapping given by pointer).
fn aligned_anon(len: usize) -> std::io::Result<*mut u8> {
    const ALIGN: usize = 2 << 20;
    let span = len
        .checked_add(ALIGN)
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::ENOMEM))?;
    // SAFETY: a new anonymous mapping at an address the kernel picks; no existing memory
    // is touched.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            span,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    let start = p as usize;
    let aligned = start.next_multiple_of(ALIGN);
    let head = aligned - start;
    let tail = span - head - len;
    // SAFETY: both ranges lie inside the mapping made above and outside [aligned,
    // aligned + len), which is what is kept.
    unsafe {
        if head > 0 {
            libc::munmap(p, head);
        }
        if tail > 0 {
            libc::munmap((aligned + len) as *mut libc::c_void, tail);
        }
    }
    Ok(aligned as *mut u8)
}

/// Maps a snapshot's memory file: each region privately (copy-on-write: pages load on
/// first touch and a guest's writes stay in this process), so VMs restored from one
/// snapshot share the pages they have not written.
pub fn restore(
    file: &std::fs::File,
    layout: &[crate::snapshot::MemoryRegion],
) -> Result<GuestMemoryMmap, Error> {
    let size: u64 = layout.iter().map(|r| r.len).sum();
    let mut regions = Vec::new();
    for r in layout {
        let len = usize::try_from(r.len).map_err(|_| Error::Memory {
            mib: size >> 20,
            reason: "the size does not fit this host's address space",
        })?;
        let clone = file.try_clone().map_err(|_| Error::Memory {
            mib: size >> 20,
            reason: "the memory file cannot be opened again",
        })?;
        let mapping = MmapRegionBuilder::new(len)
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_NORESERVE)
            .with_file_offset(vm_memory::FileOffset::new(clone, r.file_offset))
            .build()
            .map_err(|source| Error::MemoryMap {
                mib: size >> 20,
                source,
                fix: "check the snapshot's memory file",
            })?;
        let region =
            GuestRegionMmap::new(mapping, GuestAddress(r.guest_addr)).ok_or(Error::Memory {
                mib: size >> 20,
                reason: "region overflows the address space",
            })?;
        regions.push(region);
    }
    GuestMemoryMmap::from_regions(regions).map_err(|source| Error::MemoryRegions {
        mib: size >> 20,
        source,
    })
}

/// Tells KVM about every region, one slot each.
pub fn register(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<(), Error> {
    for (slot, region) in mem.iter().enumerate() {
        let host = mem
            .get_host_address(region.start_addr())
            .map_err(Error::HostAddress)?;
        let entry = kvm_userspace_memory_region {
            slot: u32::try_from(slot).map_err(|_| Error::Memory {
                mib: mem.iter().map(|r| r.len()).sum::<u64>() >> 20,
                reason: "more regions than KVM has memory slots",
            })?,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
            flags: 0,
        };
        // SAFETY: the mapping behind `host` is owned by `mem`, which outlives the VM (the
        // Vmm keeps both and drops the VM's vCPUs first), and slots do not overlap.
        unsafe { vm.set_user_memory_region(entry) }
            .map_err(|e| Error::Kvm("KVM_SET_USER_MEMORY_REGION", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Address, Bytes};

    #[test]
    fn maps_the_requested_size() {
        let m = create(64 << 20, false).unwrap();
        assert_eq!(m.num_regions(), 1);
        assert_eq!(m.last_addr(), GuestAddress((64 << 20) - 1));
    }

    #[test]
    fn guest_ram_is_2mib_aligned_in_the_host() {
        for mib in [64u64, 130, 4100] {
            let m = create(mib << 20, false).unwrap();
            for r in m.iter() {
                let host = m.get_host_address(r.start_addr()).unwrap() as usize;
                assert_eq!(
                    host % (2 << 20),
                    0,
                    "{mib} MiB: region at {:#x}",
                    r.start_addr().0
                );
                // The whole region is usable: its last byte can be written and read.
                let last = r.start_addr().checked_add(r.len() - 1).unwrap();
                m.write_obj(0x5au8, last).unwrap();
                assert_eq!(m.read_obj::<u8>(last).unwrap(), 0x5a);
            }
        }
    }
}
