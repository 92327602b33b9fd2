//! ACPI tables, for kernels that find CPUs and devices only through ACPI (Debian's cloud
//! kernel has no MP-table support): RSDP, XSDT, a hardware-reduced FADT, the MADT and a
//! DSDT with the `_S5_` sleep state, the COM1 UART (`PNP0501`) and one `LNRO0005` device
//! per virtio-mmio window.
//!
//! The UART must be in the DSDT. With a hardware-reduced FADT Linux has no legacy PIC
//! (`acpi_generic_reduced_hw_init` installs `null_legacy_pic`), so it preallocates no
//! IRQs 0-15 and maps no ISA IRQ to an IO-APIC pin: the built-in 8250 port's "IRQ 4"
//! names no interrupt, the port cannot start, and every userspace write to the console
//! fails with EIO (kernel messages still print, by polling). Described in the DSDT, the
//! port is claimed by the 8250 PNP driver with an interrupt mapped from GSI 4, as under
//! QEMU's `-M microvm` and Cloud Hypervisor (docs/design.md, "ACPI and the console").
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
use acpi_tables::{aml, Aml, AmlSink};
use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use super::layout::{
    APIC_START_32, COM1_IRQ, COM1_LEN, COM1_PORT, I8042_PORT, I8042_RESET_COMMAND, IOAPIC_START_32,
    S5_SLEEP_TYPE, SLEEP_CONTROL_PORT,
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

/// `_STA` of a device that is present, enabled, shown in the UI and working.
const STA_PRESENT: u8 = 0x0f;

/// `\_SB_.COM1`: the 16550 UART at [`COM1_PORT`] on GSI [`COM1_IRQ`] (edge, active high,
/// as its irqfd raises it), so that Linux's 8250 PNP driver binds it with a mapped
/// interrupt.
struct Com1;

/// COM1's ports as the I/O descriptor holds them (16-bit base, 8-bit length).
const COM1_IO: u16 = u16_port(COM1_PORT);
const COM1_IO_LEN: u8 = u8_len(COM1_LEN);

/// `x` as a u16 port number; in constants, so a value that does not fit fails the build.
#[allow(clippy::cast_possible_truncation)]
const fn u16_port(x: u64) -> u16 {
    assert!(x <= u16::MAX as u64);
    x as u16
}

/// `x` as a u8 length; in constants, so a value that does not fit fails the build.
#[allow(clippy::cast_possible_truncation)]
const fn u8_len(x: u64) -> u8 {
    assert!(x <= u8::MAX as u64);
    x as u8
}

impl Aml for Com1 {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        let hid = aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0501"));
        let uid = aml::Name::new("_UID".into(), &0u8);
        let sta = aml::Name::new("_STA".into(), &STA_PRESENT);
        let io = aml::IO::new(COM1_IO, COM1_IO, 1, COM1_IO_LEN);
        let irq = aml::Interrupt::new(true, true, false, false, COM1_IRQ);
        let crs = aml::Name::new("_CRS".into(), &aml::ResourceTemplate::new(vec![&io, &irq]));
        aml::Device::new("COM1".into(), vec![&hid, &uid, &sta, &crs]).to_aml_bytes(sink);
    }
}

/// The DSDT: `\_S5_` (so that poweroff works), and under `\_SB_` the UART and the
/// virtio-mmio devices.
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
    let children: Vec<&dyn Aml> = std::iter::once(&Com1 as &dyn Aml)
        .chain(devs.iter().map(|d| d as &dyn Aml))
        .collect();
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

    /// `Device (COM1)` as iasl assembles it (the bytes are written out here, not taken
    /// from the crate, so a change in the crate's encoding shows):
    ///
    /// ```text
    /// Device (COM1) {
    ///     Name (_HID, EisaId ("PNP0501"))
    ///     Name (_UID, Zero)
    ///     Name (_STA, 0x0F)
    ///     Name (_CRS, ResourceTemplate () {
    ///         IO (Decode16, 0x03F8, 0x03F8, 0x01, 0x08)
    ///         Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { 4 }
    ///     })
    /// }
    /// ```
    const COM1_AML: &[u8] = &[
        0x5b, 0x82, 0x38, b'C', b'O', b'M', b'1', // DeviceOp, PkgLength 56, name
        0x08, b'_', b'H', b'I', b'D', 0x0c, 0x41, 0xd0, 0x05, 0x01, // EISA ID 0x0105d041
        0x08, b'_', b'U', b'I', b'D', 0x00, // Zero
        0x08, b'_', b'S', b'T', b'A', 0x0a, 0x0f, // BytePrefix 0x0f
        0x08, b'_', b'C', b'R', b'S', 0x11, 0x16, 0x0a, 0x13, // Buffer of 19 bytes
        0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08, // I/O port descriptor
        0x89, 0x06, 0x00, 0x03, 0x01, 0x04, 0x00, 0x00, 0x00, // extended IRQ, GSI 4
        0x79, 0x00, // end tag
    ];

    /// Decodes an AML PkgLength: (value, bytes it takes).
    fn pkg_length(b: &[u8]) -> (usize, usize) {
        let follow = usize::from(b[0] >> 6);
        if follow == 0 {
            return (usize::from(b[0] & 0x3f), 1);
        }
        let mut v = usize::from(b[0] & 0x0f);
        for i in 0..follow {
            v |= usize::from(b[1 + i]) << (4 + 8 * i);
        }
        (v, 1 + follow)
    }

    fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).position(|w| w == needle)
    }

    #[test]
    fn dsdt_describes_the_uart_where_the_device_is() {
        // The AML above spells out these values; the device must be where it says.
        assert_eq!(COM1_PORT, 0x3f8);
        assert_eq!(COM1_LEN, 8);
        assert_eq!(COM1_IRQ, 4);
        for devs in [
            vec![],
            vec![MmioDevice {
                addr: 0xd000_1000,
                len: 0x1000,
                irq: 5,
            }],
        ] {
            let d = dsdt(&devs).unwrap();
            assert_eq!(sum(&d), 0, "DSDT checksum");
            assert_eq!(u32_at(&d, 4) as usize, d.len(), "DSDT length");
            let at = find(&d, COM1_AML).expect("Device (COM1) in the DSDT");
            assert_eq!(find(&d[at + 1..], COM1_AML), None, "one COM1");
            // It sits in \_SB_, whose scope runs from before it to the table's end.
            let name = find(&d, b"\\_SB_").expect("Scope (\\_SB_)");
            let (start, len) = (1..=4)
                .filter(|n| name > *n && d[name - n - 1] == 0x10)
                .map(|n| (name - n, pkg_length(&d[name - n..])))
                .find(|(start, (_, used))| start + used == name)
                .map(|(start, (len, _))| (start, len))
                .expect("ScopeOp and PkgLength before \\_SB_");
            assert!(start < at, "COM1 after the scope opens");
            assert_eq!(start + len, d.len(), "scope ends with the table");
        }
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
