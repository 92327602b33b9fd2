//! The Intel MultiProcessor Specification (1.4) table: how a kernel without ACPI finds the
//! vCPUs, the IO-APIC and the ISA interrupt wiring. Written at the start of the EBDA,
//! where Linux scans for it.

use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use super::layout::{APIC_START_32, EBDA_START, IOAPIC_START_32, LOW_MEM_END};

/// Most vCPUs minnow describes: their entries, with the IO-APIC and interrupt entries,
/// must fit in the 1 KiB EBDA (as in Firecracker, 32).
pub const MAX_CPUS: u8 = 32;
/// IO-APIC inputs wired to ISA IRQs 0..24.
const IOAPIC_PINS: u8 = 24;
const SPEC_REV: u8 = 4;
const LAPIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const CPU_ENABLED: u8 = 1;
const CPU_BSP: u8 = 2;
/// Family 6 stepping 0; features: FPU and APIC.
const CPU_SIGNATURE: u32 = 0x600;
const CPU_FEATURES: u32 = (1 << 0) | (1 << 9);
const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;
const FLOATING_POINTER_SIZE: usize = 16;
const HEADER_SIZE: usize = 44;

/// Error building the MP table.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// More vCPUs than the table can hold.
    #[error("{0} vCPUs do not fit in an MP table (at most {MAX_CPUS})")]
    TooManyCpus(u8),
    /// The table does not fit in the EBDA.
    #[error("the MP table does not fit in the EBDA")]
    TooBig,
    /// Writing guest memory failed.
    #[error("cannot write the MP table to guest memory: {0}")]
    Memory(#[from] GuestMemoryError),
}

fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |a, b| a.wrapping_add(*b))
        .wrapping_neg()
}

/// Builds the floating pointer and the configuration table for `cpus` vCPUs, for
/// placement at `base`. Returns the bytes to write there.
pub fn build(base: u64, cpus: u8) -> Result<Vec<u8>, Error> {
    if cpus == 0 || cpus > MAX_CPUS {
        return Err(Error::TooManyCpus(cpus));
    }
    let ioapic_id = cpus;
    let mut entries: Vec<u8> = Vec::new();
    let mut count: u16 = 0;
    for id in 0..cpus {
        let flags = CPU_ENABLED | if id == 0 { CPU_BSP } else { 0 };
        entries.extend_from_slice(&[ENTRY_PROCESSOR, id, LAPIC_VERSION, flags]);
        entries.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        entries.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[ENTRY_BUS, 0]);
    entries.extend_from_slice(b"ISA   ");
    count += 1;
    entries.extend_from_slice(&[ENTRY_IOAPIC, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&IOAPIC_START_32.to_le_bytes());
    count += 1;
    for irq in 0..IOAPIC_PINS {
        // Type, polarity/trigger "conforms to bus", source bus 0 IRQ, IO-APIC pin.
        entries.extend_from_slice(&[
            ENTRY_IO_INTERRUPT,
            INT_TYPE_INT,
            0,
            0,
            0,
            irq,
            ioapic_id,
            irq,
        ]);
        count += 1;
    }
    for (kind, lint) in [(INT_TYPE_EXTINT, 0), (INT_TYPE_NMI, 1)] {
        // Destination 0xff: every local APIC.
        entries.extend_from_slice(&[ENTRY_LOCAL_INTERRUPT, kind, 0, 0, 0, 0, 0xff, lint]);
        count += 1;
    }

    let table_len = HEADER_SIZE + entries.len();
    let mut header = Vec::with_capacity(table_len);
    header.extend_from_slice(b"PCMP");
    header.extend_from_slice(
        &u16::try_from(table_len)
            .map_err(|_| Error::TooBig)?
            .to_le_bytes(),
    );
    header.extend_from_slice(&[SPEC_REV, 0]);
    header.extend_from_slice(b"MINNOW  ");
    header.extend_from_slice(b"MICROVM     ");
    header.extend_from_slice(&[0; 4]); // OEM table pointer
    header.extend_from_slice(&[0; 2]); // OEM table size
    header.extend_from_slice(&count.to_le_bytes());
    header.extend_from_slice(&APIC_START_32.to_le_bytes());
    header.extend_from_slice(&[0; 4]); // extended table length, checksum, reserved
    debug_assert_eq!(header.len(), HEADER_SIZE);
    header.extend_from_slice(&entries);
    header[7] = checksum(&header);

    let table_addr = base + FLOATING_POINTER_SIZE as u64;
    let mut out = Vec::with_capacity(FLOATING_POINTER_SIZE + table_len);
    out.extend_from_slice(b"_MP_");
    out.extend_from_slice(
        &u32::try_from(table_addr)
            .map_err(|_| Error::TooBig)?
            .to_le_bytes(),
    );
    out.extend_from_slice(&[1, SPEC_REV, 0, 0, 0, 0, 0, 0]);
    out[10] = checksum(&out);
    out.extend_from_slice(&header);
    Ok(out)
}

/// Writes the MP table for `cpus` vCPUs at the start of the EBDA.
pub fn write(mem: &GuestMemoryMmap, cpus: u8) -> Result<(), Error> {
    let bytes = build(EBDA_START, cpus)?;
    if EBDA_START + bytes.len() as u64 > LOW_MEM_END {
        return Err(Error::TooBig);
    }
    mem.write_slice(&bytes, GuestAddress(EBDA_START))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    #[test]
    fn checksums_are_valid() {
        for cpus in [1, 2, 16, MAX_CPUS] {
            let t = build(EBDA_START, cpus).unwrap();
            assert_eq!(&t[0..4], b"_MP_");
            assert_eq!(sum(&t[..16]), 0, "floating pointer checksum, {cpus} cpus");
            let len = u16::from_le_bytes([t[20], t[21]]) as usize;
            assert_eq!(&t[16..20], b"PCMP");
            assert_eq!(16 + len, t.len());
            assert_eq!(sum(&t[16..]), 0, "config table checksum, {cpus} cpus");
        }
    }

    #[test]
    fn floating_pointer_points_at_table() {
        let t = build(EBDA_START, 2).unwrap();
        let ptr = u32::from_le_bytes([t[4], t[5], t[6], t[7]]) as u64;
        assert_eq!(ptr, EBDA_START + 16);
    }

    #[test]
    fn one_processor_entry_per_cpu_and_one_bsp() {
        let t = build(EBDA_START, 3).unwrap();
        let count = u16::from_le_bytes([t[16 + 34], t[16 + 35]]);
        assert_eq!(count, 3 + 1 + 1 + 24 + 2);
        let first = 16 + HEADER_SIZE;
        let cpus: Vec<(u8, u8)> = (0..3)
            .map(|i| (t[first + 20 * i + 1], t[first + 20 * i + 3]))
            .collect();
        assert_eq!(cpus, vec![(0, 3), (1, 1), (2, 1)]);
    }

    #[test]
    fn rejects_bad_cpu_counts() {
        assert!(build(EBDA_START, 0).is_err());
        assert!(build(EBDA_START, MAX_CPUS + 1).is_err());
    }

    #[test]
    fn largest_table_fits_in_ebda() {
        let t = build(EBDA_START, MAX_CPUS).unwrap();
        assert!(EBDA_START + t.len() as u64 <= LOW_MEM_END);
    }
}
