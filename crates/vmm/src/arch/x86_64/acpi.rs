//! ACPI tables, for kernels that find CPUs and devices only through ACPI (Debian's cloud
//! kernel has no MP-table support): RSDP, XSDT, a hardware-reduced FADT, the MADT and a
//! DSDT with the `_S5_` sleep state and one `LNRO0005` device per virtio-mmio window.
//!
//! Built with the `acpi_tables` crate; placed in the BIOS area at 0xe0000, which is not
//! RAM in the e820 map.

use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::{aml, Aml};
use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use super::layout::{
    APIC_START_32, I8042_PORT, I8042_RESET_COMMAND, IOAPIC_START_32, S5_SLEEP_TYPE,
    SLEEP_CONTROL_PORT,
};

/// Where the RSDP goes (Linux scans 0xe0000-0xfffff for it).
pub const RSDP_START: u64 = 0xe0000;
/// End of the area the tables may use.
const TABLES_END: u64 = 0x10_0000;
const OEM_ID: [u8; 6] = *b"MINNOW";
const OEM_TABLE_ID: [u8; 8] = *b"MICROVM ";
const OEM_REVISION: u32 = 1;
/// IAPC_BOOT_ARCH: no VGA, no MSI, no CMOS RTC.
const IAPC_BOOT_ARCH: u16 = (1 << 2) | (1 << 3) | (1 << 5);

/// A virtio-mmio window to describe in the DSDT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioDevice {
    pub addr: u64,
    pub len: u64,
    pub irq: u32,
}

/// Error writing the tables.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The tables do not fit below 1 MiB.
    #[error("the ACPI tables do not fit in the BIOS area")]
    TooBig,
    /// Writing guest memory failed.
    #[error("cannot write ACPI tables: {0}")]
    Memory(#[from] GuestMemoryError),
    /// A device window the DSDT describes in 32 bits lies above 4 GiB.
    #[error("device window {0:#x} does not fit a 32-bit ACPI descriptor")]
    Window(u64),
}

fn bytes(table: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    table.to_aml_bytes(&mut v);
    v
}

/// The DSDT: `\_S5_` (so that poweroff works) and the virtio-mmio devices under `\_SB_`.
pub fn dsdt(devices: &[MmioDevice]) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    let s5 = aml::Package::new(vec![&S5_SLEEP_TYPE, &S5_SLEEP_TYPE, &0u8, &0u8]);
    aml::Name::new("_S5_".into(), &s5).to_aml_bytes(&mut body);

    let names: Vec<String> = (0..devices.len()).map(|i| format!("V{i:03X}")).collect();
    let hid = aml::Name::new("_HID".into(), &"LNRO0005");
    let uids: Vec<u32> = (0u32..).take(devices.len()).collect();
    let uid_names: Vec<aml::Name> = uids
        .iter()
        .map(|u| aml::Name::new("_UID".into(), u))
        .collect();
    let mems: Vec<aml::Memory32Fixed> = devices
        .iter()
        .map(|d| {
            let addr = u32::try_from(d.addr).map_err(|_| Error::Window(d.addr))?;
            let len = u32::try_from(d.len).map_err(|_| Error::Window(d.addr))?;
            Ok(aml::Memory32Fixed::new(true, addr, len))
        })
        .collect::<Result<_, Error>>()?;
    let irqs: Vec<aml::Interrupt> = devices
        .iter()
        .map(|d| aml::Interrupt::new(true, true, false, false, d.irq))
        .collect();
    let templates: Vec<aml::ResourceTemplate> = mems
        .iter()
        .zip(&irqs)
        .map(|(m, i)| aml::ResourceTemplate::new(vec![m, i]))
        .collect();
    let crs: Vec<aml::Name> = templates
        .iter()
        .map(|t| aml::Name::new("_CRS".into(), t))
        .collect();
    let devs: Vec<aml::Device> = names
        .iter()
        .zip(uid_names.iter().zip(&crs))
        .map(|(n, (u, c))| aml::Device::new(n.as_str().into(), vec![&hid, u, c]))
        .collect();
    let children: Vec<&dyn Aml> = devs.iter().map(|d| d as &dyn Aml).collect();
    aml::Scope::new("\\_SB_".into(), children).to_aml_bytes(&mut body);

    let mut table = Sdt::new(*b"DSDT", 36, 6, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    table.append_slice(&body);
    Ok(table.as_slice().to_vec())
}

/// A hardware-reduced FADT: sleep control on [`SLEEP_CONTROL_PORT`], reset through the
/// i8042.
pub fn fadt(dsdt_addr: u64) -> Vec<u8> {
    let mut f = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .dsdt_64(dsdt_addr)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::ResetRegSup);
    let port = |p: u64| GAS::new(AddressSpace::SystemIo, 8, 0, AccessSize::ByteAccess, p);
    f.sleep_control_reg = port(SLEEP_CONTROL_PORT);
    f.sleep_status_reg = port(SLEEP_CONTROL_PORT);
    f.reset_reg = port(I8042_PORT + 4);
    f.reset_value = I8042_RESET_COMMAND;
    f.iapc_boot_arch = IAPC_BOOT_ARCH.into();
    bytes(&f.finalize())
}

/// The MADT: one local APIC per vCPU and the IO-APIC.
pub fn madt(cpus: u8) -> Vec<u8> {
    let mut m = MADT::new(
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
        LocalInterruptController::Address(APIC_START_32),
    );
    for id in 0..cpus {
        m.add_structure(ProcessorLocalApic::new(id, id, EnabledStatus::Enabled));
    }
    m.add_structure(IoApic::new(cpus, IOAPIC_START_32, 0));
    bytes(&m)
}

/// Lays the tables out from [`RSDP_START`]: RSDP, DSDT, FADT, MADT, XSDT, each 16-byte
/// aligned. Returns `(address, bytes)` pairs, RSDP first.
pub fn layout(cpus: u8, devices: &[MmioDevice]) -> Result<Vec<(u64, Vec<u8>)>, Error> {
    let align = |a: u64| a.next_multiple_of(16);
    let dsdt_addr = align(RSDP_START + Rsdp::len() as u64);
    let dsdt = dsdt(devices)?;
    let fadt_addr = align(dsdt_addr + dsdt.len() as u64);
    let fadt = fadt(dsdt_addr);
    let madt_addr = align(fadt_addr + fadt.len() as u64);
    let madt = madt(cpus);
    let xsdt_addr = align(madt_addr + madt.len() as u64);
    let mut x = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    x.add_entry(fadt_addr);
    x.add_entry(madt_addr);
    let xsdt = bytes(&x);
    if xsdt_addr + xsdt.len() as u64 > TABLES_END {
        return Err(Error::TooBig);
    }
    let rsdp = bytes(&Rsdp::new(OEM_ID, xsdt_addr));
    Ok(vec![
        (RSDP_START, rsdp),
        (dsdt_addr, dsdt),
        (fadt_addr, fadt),
        (madt_addr, madt),
        (xsdt_addr, xsdt),
    ])
}

/// Writes the tables; returns the RSDP's address.
pub fn write(mem: &GuestMemoryMmap, cpus: u8, devices: &[MmioDevice]) -> Result<u64, Error> {
    for (addr, table) in layout(cpus, devices)? {
        mem.write_slice(&table, GuestAddress(addr))?;
    }
    Ok(RSDP_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    #[test]
    fn tables_are_well_formed_and_linked() {
        let dev = [MmioDevice {
            addr: 0xd000_1000,
            len: 0x1000,
            irq: 5,
        }];
        let t = layout(2, &dev).unwrap();
        let (rsdp_addr, rsdp) = &t[0];
        assert_eq!(*rsdp_addr, RSDP_START);
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert_eq!(sum(&rsdp[..20]), 0);
        assert_eq!(sum(rsdp), 0);
        let xsdt_addr = u64_at(rsdp, 24);
        let find = |a: u64| &t.iter().find(|(addr, _)| *addr == a).unwrap().1;
        let xsdt = find(xsdt_addr);
        assert_eq!(&xsdt[..4], b"XSDT");
        let fadt = find(u64_at(xsdt, 36));
        let madt = find(u64_at(xsdt, 44));
        assert_eq!(&fadt[..4], b"FACP");
        assert_eq!(&madt[..4], b"APIC");
        let dsdt = find(u64_at(fadt, 140));
        assert_eq!(&dsdt[..4], b"DSDT");
        for (_, table) in &t[1..] {
            assert_eq!(
                u32_at(table, 4) as usize,
                table.len(),
                "length of {:?}",
                &table[..4]
            );
            assert_eq!(sum(table), 0, "checksum of {:?}", &table[..4]);
        }
        for w in t.windows(2) {
            assert!(w[0].0 + w[0].1.len() as u64 <= w[1].0, "tables overlap");
        }
        assert!(t.last().map(|(a, b)| a + b.len() as u64).unwrap() <= TABLES_END);
    }

    #[test]
    fn fadt_is_hardware_reduced_with_sleep_and_reset() {
        let f = fadt(0x1234);
        let flags = u32_at(&f, 112);
        assert_ne!(flags & (1 << 20), 0, "HW_REDUCED_ACPI");
        assert_ne!(flags & (1 << 10), 0, "RESET_REG_SUP");
        // Reset register (GAS at 116): system I/O, port 0x64; reset value at 128.
        assert_eq!(f[116], 1);
        assert_eq!(u64_at(&f, 120), 0x64);
        assert_eq!(f[128], 0xfe);
        // Sleep control register GAS at 244.
        assert_eq!(f[244], 1);
        assert_eq!(u64_at(&f, 248), SLEEP_CONTROL_PORT);
    }

    #[test]
    fn madt_lists_every_cpu() {
        let m = madt(3);
        // Header 44 bytes, then 3 local APICs (8 bytes) and the IO-APIC (12 bytes).
        assert_eq!(m.len(), 44 + 3 * 8 + 12);
        let apic_ids: Vec<u8> = (0..3).map(|i| m[44 + 8 * i + 3]).collect();
        assert_eq!(apic_ids, vec![0, 1, 2]);
        assert_eq!(m[44 + 24], 1, "IO-APIC structure type");
        assert_eq!(u32_at(&m, 44 + 24 + 4), IOAPIC_START_32);
    }

    #[test]
    fn dsdt_names_each_virtio_device() {
        let devs: Vec<MmioDevice> = (0..3)
            .map(|i| MmioDevice {
                addr: 0xd000_1000 + i * 0x1000,
                len: 0x1000,
                irq: 5 + u32::try_from(i).unwrap(),
            })
            .collect();
        let d = dsdt(&devs).unwrap();
        let text = String::from_utf8_lossy(&d);
        assert_eq!(text.matches("LNRO0005").count(), 3);
        assert!(text.contains("_S5_"));
        assert!(text.contains("V002"));
        let none = dsdt(&[]).unwrap();
        assert!(!String::from_utf8_lossy(&none).contains("LNRO0005"));
    }
}
