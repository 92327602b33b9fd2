//! Global descriptor table for the boot CPU state.
//!
//! The Linux boot protocol wants a flat code segment at selector 0x10 (`__BOOT_CS`) and a
//! flat data segment at 0x18 (`__BOOT_DS`); the PVH protocol leaves the selectors open.
//! Both use the same slots, with 64-bit or 32-bit code descriptors.

use kvm_bindings::kvm_segment;

/// Code segment selector.
pub const CODE_SELECTOR: u16 = 0x10;
/// Data segment selector.
pub const DATA_SELECTOR: u16 = 0x18;
/// Task state segment selector.
pub const TSS_SELECTOR: u16 = 0x20;

/// Flags of a 64-bit code segment (L=1, present, DPL 0, execute/read, accessed).
const CODE64_FLAGS: u16 = 0xa09b;
/// Flags of a 32-bit code segment (D=1, G=1, present, execute/read, accessed).
const CODE32_FLAGS: u16 = 0xc09b;
/// Flags of a flat data segment (D/B=1, G=1, present, read/write, accessed).
const DATA_FLAGS: u16 = 0xc093;
/// Flags of a busy 64-bit TSS.
const TSS_FLAGS: u16 = 0x808b;

/// Packs a segment descriptor from its flags (type/S/DPL/P and AVL/L/D/G bits as in bits
/// 8..15 and 20..23 of the high word), base and 20-bit limit.
pub fn descriptor(flags: u16, base: u32, limit: u32) -> u64 {
    let base = base as u64;
    let limit = limit as u64;
    let flags = flags as u64;
    ((base & 0xff00_0000) << (56 - 24))
        | ((flags & 0xf0ff) << 40)
        | ((limit & 0x000f_0000) << (48 - 16))
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0x0000_ffff)
}

/// The GDT: null, null, code, data, TSS.
pub fn table(long_mode: bool) -> [u64; 5] {
    let code = if long_mode {
        CODE64_FLAGS
    } else {
        CODE32_FLAGS
    };
    [
        0,
        0,
        descriptor(code, 0, 0xfffff),
        descriptor(DATA_FLAGS, 0, 0xfffff),
        descriptor(TSS_FLAGS, 0, 0xfffff),
    ]
}

/// The `kvm_segment` KVM wants for a descriptor at `selector`.
pub fn segment(entry: u64, selector: u16) -> kvm_segment {
    let base = ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000);
    let raw_limit = (entry & 0xffff) | ((entry >> 32) & 0x000f_0000);
    let g = ((entry >> 55) & 1) as u8;
    // With G set the limit counts 4 KiB pages.
    let limit = if g == 1 {
        (raw_limit << 12) | 0xfff
    } else {
        raw_limit
    };
    kvm_segment {
        base,
        // raw_limit has 20 bits, so even with G set (<< 12 | 0xfff) the limit fits.
        limit: u32::try_from(limit).unwrap_or(u32::MAX),
        selector,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        unusable: if (entry >> 47) & 1 == 1 { 0 } else { 1 },
        padding: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code64_descriptor_matches_the_known_encoding() {
        // The same value Linux's boot GDT uses for __KERNEL_CS in long mode.
        assert_eq!(descriptor(CODE64_FLAGS, 0, 0xfffff), 0x00af_9b00_0000_ffff);
        assert_eq!(descriptor(DATA_FLAGS, 0, 0xfffff), 0x00cf_9300_0000_ffff);
    }

    #[test]
    fn segment_decodes_fields() {
        let gdt = table(true);
        let cs = segment(gdt[2], CODE_SELECTOR);
        assert_eq!((cs.l, cs.db, cs.g, cs.present, cs.s), (1, 0, 1, 1, 1));
        assert_eq!(cs.type_, 0xb);
        assert_eq!(cs.limit, 0xffff_ffff);
        let cs32 = segment(table(false)[2], CODE_SELECTOR);
        assert_eq!((cs32.l, cs32.db), (0, 1));
        let tss = segment(gdt[4], TSS_SELECTOR);
        assert_eq!((tss.s, tss.type_), (0, 0xb));
    }

    #[test]
    fn base_round_trips() {
        let d = descriptor(DATA_FLAGS, 0x1234_5678, 0xabcde);
        let s = segment(d, DATA_SELECTOR);
        assert_eq!(s.base, 0x1234_5678);
    }
}
