//! Boot parameters: the Linux zero page (`boot_params`) or the PVH `hvm_start_info`, each
//! with the e820 memory map, the command line and the initrd.

use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::initrd::Initrd;
use super::Error;
use crate::arch::x86_64::layout::{
    e820_map, CMDLINE_START, PVH_INFO_START, PVH_MEMMAP_START, PVH_MODLIST_START, ZERO_PAGE_START,
};

const BOOT_FLAG_MAGIC: u16 = 0xaa55;
const HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
const LOADER_TYPE_UNDEFINED: u8 = 0xff;
const KERNEL_ALIGNMENT: u32 = 0x100_0000;
const PVH_MAGIC: u32 = 0x336e_c578;

/// What the boot parameters describe.
pub struct BootInfo {
    pub mem_size: u64,
    pub cmdline_len: usize,
    pub initrd: Option<Initrd>,
    pub rsdp: Option<u64>,
}

fn mem_err(what: &'static str) -> impl Fn(String) -> Error {
    move |reason| Error::Memory { what, reason }
}

/// Builds the zero page: the kernel's own setup header (or a minimal one for an ELF),
/// the loader fields and the e820 map.
pub fn zero_page(info: &BootInfo, header: Option<setup_header>) -> boot_params {
    let mut params = boot_params {
        hdr: header.unwrap_or(setup_header {
            boot_flag: BOOT_FLAG_MAGIC,
            header: HDR_MAGIC,
            kernel_alignment: KERNEL_ALIGNMENT,
            ..Default::default()
        }),
        ..Default::default()
    };
    params.hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    params.hdr.cmd_line_ptr = CMDLINE_START as u32;
    params.hdr.cmdline_size = info.cmdline_len as u32;
    if let Some(initrd) = info.initrd {
        params.hdr.ramdisk_image = initrd.addr as u32;
        params.hdr.ramdisk_size = initrd.size as u32;
    }
    let map = e820_map(info.mem_size);
    for (slot, (addr, size, kind)) in params.e820_table.iter_mut().zip(&map) {
        *slot = boot_e820_entry {
            addr: *addr,
            size: *size,
            r#type: *kind as u32,
        };
    }
    params.e820_entries = map.len() as u8;
    params.acpi_rsdp_addr = info.rsdp.unwrap_or(0);
    params
}

/// Writes the zero page at [`ZERO_PAGE_START`].
pub fn write_zero_page(
    mem: &GuestMemoryMmap,
    info: &BootInfo,
    header: Option<setup_header>,
) -> Result<(), Error> {
    let params = zero_page(info, header);
    LinuxBootConfigurator::write_bootparams::<GuestMemoryMmap>(
        &BootParams::new(&params, GuestAddress(ZERO_PAGE_START)),
        mem,
    )
    .map_err(|e| mem_err("the zero page")(e.to_string()))
}

/// Serialises the PVH start info, module list and memory map (little endian, as in
/// xen/include/public/arch-x86/hvm/start_info.h).
pub fn pvh_structures(info: &BootInfo) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let map = e820_map(info.mem_size);
    let mut memmap = Vec::new();
    for (addr, size, kind) in &map {
        memmap.extend_from_slice(&addr.to_le_bytes());
        memmap.extend_from_slice(&size.to_le_bytes());
        memmap.extend_from_slice(&(*kind as u32).to_le_bytes());
        memmap.extend_from_slice(&0u32.to_le_bytes());
    }
    let mut modlist = Vec::new();
    if let Some(initrd) = info.initrd {
        modlist.extend_from_slice(&initrd.addr.to_le_bytes());
        modlist.extend_from_slice(&initrd.size.to_le_bytes());
        modlist.extend_from_slice(&0u64.to_le_bytes()); // module command line
        modlist.extend_from_slice(&0u64.to_le_bytes());
    }
    let nr_modules = u32::from(info.initrd.is_some());
    let mut start = Vec::with_capacity(56);
    start.extend_from_slice(&PVH_MAGIC.to_le_bytes());
    start.extend_from_slice(&1u32.to_le_bytes()); // version
    start.extend_from_slice(&0u32.to_le_bytes()); // flags
    start.extend_from_slice(&nr_modules.to_le_bytes());
    start.extend_from_slice(&PVH_MODLIST_START.to_le_bytes());
    start.extend_from_slice(&CMDLINE_START.to_le_bytes());
    start.extend_from_slice(&info.rsdp.unwrap_or(0).to_le_bytes());
    start.extend_from_slice(&PVH_MEMMAP_START.to_le_bytes());
    start.extend_from_slice(&(map.len() as u32).to_le_bytes());
    start.extend_from_slice(&0u32.to_le_bytes());
    (start, modlist, memmap)
}

/// Writes the PVH structures at their fixed addresses.
pub fn write_pvh(mem: &GuestMemoryMmap, info: &BootInfo) -> Result<(), Error> {
    let (start, modlist, memmap) = pvh_structures(info);
    let err = |e: vm_memory::GuestMemoryError| mem_err("the PVH start info")(e.to_string());
    mem.write_slice(&start, GuestAddress(PVH_INFO_START))
        .map_err(err)?;
    mem.write_slice(&modlist, GuestAddress(PVH_MODLIST_START))
        .map_err(err)?;
    mem.write_slice(&memmap, GuestAddress(PVH_MEMMAP_START))
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::ByteValued;

    fn info() -> BootInfo {
        BootInfo {
            mem_size: 128 << 20,
            cmdline_len: 42,
            initrd: Some(Initrd {
                addr: 0x700_0000,
                size: 0x1234,
            }),
            rsdp: Some(0xe0000),
        }
    }

    #[test]
    fn zero_page_fields() {
        let p = zero_page(&info(), None);
        let hdr = p.hdr;
        assert_eq!({ hdr.boot_flag }, BOOT_FLAG_MAGIC);
        assert_eq!({ hdr.header }, HDR_MAGIC);
        assert_eq!({ hdr.type_of_loader }, 0xff);
        assert_eq!({ hdr.cmd_line_ptr }, CMDLINE_START as u32);
        assert_eq!({ hdr.cmdline_size }, 42);
        assert_eq!({ hdr.ramdisk_image }, 0x700_0000);
        assert_eq!({ hdr.ramdisk_size }, 0x1234);
        assert_eq!(p.e820_entries, 3);
        assert_eq!({ p.acpi_rsdp_addr }, 0xe0000);
        let e2 = p.e820_table[2];
        assert_eq!(
            (e2.addr, e2.size, e2.r#type),
            (0x10_0000, (128 << 20) - 0x10_0000, 1)
        );
    }

    #[test]
    fn zero_page_keeps_the_kernels_header() {
        let h = setup_header {
            version: 0x20f,
            loadflags: 1,
            setup_sects: 27,
            header: HDR_MAGIC,
            ..Default::default()
        };
        let p = zero_page(&info(), Some(h));
        let hdr = p.hdr;
        assert_eq!(
            ({ hdr.version }, hdr.setup_sects, hdr.loadflags),
            (0x20f, 27, 1)
        );
        // Offsets from Documentation/arch/x86/boot.rst.
        let bytes = p.as_slice();
        assert_eq!(&bytes[0x202..0x206], b"HdrS");
        assert_eq!(bytes[0x1e8], 3, "e820_entries");
        assert_eq!(bytes[0x210], 0xff, "type_of_loader");
    }

    #[test]
    fn pvh_layout() {
        let (start, modlist, memmap) = pvh_structures(&info());
        assert_eq!(start.len(), 56);
        assert_eq!(
            u32::from_le_bytes(start[0..4].try_into().unwrap()),
            PVH_MAGIC
        );
        assert_eq!(u32::from_le_bytes(start[12..16].try_into().unwrap()), 1);
        assert_eq!(
            u64::from_le_bytes(start[24..32].try_into().unwrap()),
            CMDLINE_START
        );
        assert_eq!(
            u64::from_le_bytes(start[32..40].try_into().unwrap()),
            0xe0000
        );
        assert_eq!(u32::from_le_bytes(start[48..52].try_into().unwrap()), 3);
        assert_eq!(modlist.len(), 32);
        assert_eq!(
            u64::from_le_bytes(modlist[0..8].try_into().unwrap()),
            0x700_0000
        );
        assert_eq!(memmap.len(), 3 * 24);
        assert!(PVH_MODLIST_START + modlist.len() as u64 <= PVH_MEMMAP_START);
        let no_initrd = BootInfo {
            initrd: None,
            ..info()
        };
        let (s, m, _) = pvh_structures(&no_initrd);
        assert!(m.is_empty());
        assert_eq!(u32::from_le_bytes(s[12..16].try_into().unwrap()), 0);
    }
}
