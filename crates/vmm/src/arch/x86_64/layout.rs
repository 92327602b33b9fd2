//! The guest-physical address map, in one place.
//!
//! ```text
//! 0x0000_0500  GDT                     0x0000_9000  PML4 (identity page tables)
//! 0x0000_0540  IDT (empty)             0x0000_a000  PDPT
//! 0x0000_6000  PVH start info          0x0000_b000  PD (2 MiB pages, first 1 GiB)
//! 0x0000_6040  PVH module list         0x0002_0000  kernel command line
//! 0x0000_7000  zero page / PVH memmap  0x0009_fc00  EBDA: MP table
//! 0x0000_8ff0  boot stack pointer      0x0010_0000  kernel (1 MiB)
//! 0xc000_0000 - 0xffff_ffff  32-bit MMIO gap (RAM above it moves past 4 GiB)
//! 0xd000_0000  boot timer, +4 workload exit status
//! 0xd000_1000  virtio-mmio devices (0x1000 each)
//! 0xfec0_0000  IO-APIC                 0xfee0_0000  local APIC
//! ```

/// Global descriptor table.
pub const GDT_START: u64 = 0x500;
/// Interrupt descriptor table (empty: the kernel installs its own).
pub const IDT_START: u64 = 0x540;
/// PVH `hvm_start_info`.
pub const PVH_INFO_START: u64 = 0x6000;
/// PVH module list (the initrd).
pub const PVH_MODLIST_START: u64 = 0x6040;
/// PVH memory map.
pub const PVH_MEMMAP_START: u64 = 0x7000;
/// Linux `boot_params` ("zero page").
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack pointer.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Page map level 4 of the identity page tables.
pub const PML4_START: u64 = 0x9000;
/// Page directory pointer table.
pub const PDPTE_START: u64 = 0xa000;
/// Page directory with 512 2 MiB pages: the first 1 GiB is identity mapped.
pub const PDE_START: u64 = 0xb000;
/// Kernel command line.
pub const CMDLINE_START: u64 = 0x20000;
/// Largest command line minnow passes (the kernel's own limit is in its setup header).
pub const CMDLINE_MAX_SIZE: usize = 4096;
/// Extended BIOS data area: the MP table lives here.
pub const EBDA_START: u64 = 0x9fc00;
/// End of low memory; 0xa0000-0xfffff is the legacy VGA/BIOS hole.
pub const LOW_MEM_END: u64 = 0xa0000;
/// Where the kernel is loaded and high memory starts.
pub const HIMEM_START: u64 = 0x10_0000;

/// Start of the 32-bit MMIO gap.
pub const MMIO_GAP_START: u64 = 0xc000_0000;
/// End of the 32-bit MMIO gap (4 GiB).
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// The boot-timer device (a guest writes [`crate::devices::legacy::boot_timer::MAGIC`] here).
pub const BOOT_TIMER_START: u64 = 0xd000_0000;
/// The workload-exit register (a guest writes its command's exit status here).
pub const WORKLOAD_EXIT_START: u64 = 0xd000_0004;
/// First virtio-mmio device.
pub const VIRTIO_MMIO_START: u64 = 0xd000_1000;
/// Size of one MMIO device window.
pub const MMIO_DEVICE_SIZE: u64 = 0x1000;
/// The legacy I/O ports and the values that the ACPI tables announce and the devices act
/// on: both sides read them here, so neither depends on the other.
/// COM1's port base.
pub const COM1_PORT: u64 = 0x3f8;
/// COM1's register window.
pub const COM1_LEN: u64 = 8;
/// COM1's interrupt line.
pub const COM1_IRQ: u32 = 4;
/// The i8042's port base (ports 0x60..=0x64).
pub const I8042_PORT: u64 = 0x60;
/// The i8042's port window.
pub const I8042_LEN: u64 = 5;
/// The i8042 command (on port 0x64) that resets the machine; the FADT's reset value.
pub const I8042_RESET_COMMAND: u8 = 0xfe;
/// I/O port of the ACPI sleep control and status registers.
pub const SLEEP_CONTROL_PORT: u64 = 0x3c0;
/// The sleep type the DSDT gives for S5 (soft off).
pub const S5_SLEEP_TYPE: u8 = 5;

/// IO-APIC MMIO base.
pub const IOAPIC_START: u64 = 0xfec0_0000;
/// Local APIC MMIO base.
pub const APIC_START: u64 = 0xfee0_0000;

/// `x` as a u32, for addresses the tables hold in 32 bits. Used in constants, so a value
/// above 4 GiB fails the build at the assert instead of being cut.
#[allow(clippy::cast_possible_truncation)]
pub const fn u32_addr(x: u64) -> u32 {
    assert!(x <= u32::MAX as u64);
    x as u32
}
/// The IO-APIC and local APIC bases as the MP table and MADT write them.
pub const IOAPIC_START_32: u32 = u32_addr(IOAPIC_START);
pub const APIC_START_32: u32 = u32_addr(APIC_START);
/// Where KVM (Intel) puts its TSS: three pages just below the BIOS area at the top of 4 GiB.
pub const KVM_TSS_ADDRESS: u64 = 0xfffb_d000;
/// KVM (Intel) identity-map page, just below the TSS.
pub const KVM_IDENTITY_MAP_ADDRESS: u64 = 0xfffb_c000;

// The fixed regions must not overlap: checked when compiling.
const _: () = {
    assert!(GDT_START + 5 * 8 <= IDT_START);
    assert!(PVH_INFO_START + 56 <= PVH_MODLIST_START);
    assert!(PVH_MODLIST_START + 32 <= PVH_MEMMAP_START);
    assert!(BOOT_STACK_POINTER < PML4_START);
    assert!(PDE_START + 0x1000 <= CMDLINE_START);
    assert!(CMDLINE_START + CMDLINE_MAX_SIZE as u64 <= EBDA_START);
    assert!(BOOT_TIMER_START >= MMIO_GAP_START && VIRTIO_MMIO_START < IOAPIC_START);
};

/// Smallest guest memory minnow accepts.
pub const MIN_MEM_MIB: u64 = 16;

/// The guest RAM regions for `mem_size` bytes: everything below the MMIO gap, the rest
/// above 4 GiB.
pub fn ram_regions(mem_size: u64) -> Vec<(u64, u64)> {
    if mem_size <= MMIO_GAP_START {
        vec![(0, mem_size)]
    } else {
        vec![
            (0, MMIO_GAP_START),
            (MMIO_GAP_END, mem_size - MMIO_GAP_START),
        ]
    }
}

/// One e820 entry type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum E820Kind {
    /// Usable RAM.
    Ram = 1,
    /// Reserved.
    Reserved = 2,
}

/// The e820 map for `mem_size` bytes of RAM: low memory up to the EBDA, the EBDA
/// reserved, then RAM from 1 MiB (split around the MMIO gap).
pub fn e820_map(mem_size: u64) -> Vec<(u64, u64, E820Kind)> {
    let mut map = vec![
        (0, EBDA_START, E820Kind::Ram),
        (EBDA_START, LOW_MEM_END - EBDA_START, E820Kind::Reserved),
    ];
    for (start, size) in ram_regions(mem_size) {
        let start_hi = start.max(HIMEM_START);
        let end = start + size;
        if end > start_hi {
            map.push((start_hi, end - start_hi, E820Kind::Ram));
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_memory_is_one_region() {
        assert_eq!(ram_regions(128 << 20), vec![(0, 128 << 20)]);
    }

    #[test]
    fn large_memory_skips_the_mmio_gap() {
        let r = ram_regions(4 << 30);
        assert_eq!(
            r,
            vec![
                (0, MMIO_GAP_START),
                (MMIO_GAP_END, (4 << 30) - MMIO_GAP_START)
            ]
        );
        let total: u64 = r.iter().map(|(_, s)| s).sum();
        assert_eq!(total, 4 << 30);
    }

    #[test]
    fn e820_covers_ram_without_overlap() {
        let map = e820_map(4 << 30);
        assert_eq!(map[0], (0, EBDA_START, E820Kind::Ram));
        assert_eq!(map[1].2, E820Kind::Reserved);
        assert_eq!(
            map[2],
            (HIMEM_START, MMIO_GAP_START - HIMEM_START, E820Kind::Ram)
        );
        assert_eq!(
            map[3],
            (MMIO_GAP_END, (4 << 30) - MMIO_GAP_START, E820Kind::Ram)
        );
        for w in map.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "overlap in {map:?}");
        }
    }
}
