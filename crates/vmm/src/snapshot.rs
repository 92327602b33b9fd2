//! Snapshots: the saved state of a paused VM (`DIR/state`) and its memory
//! (`DIR/memory`), and putting them back into a new VM.
//!
//! `DIR/state` is `MAGIC`, the format version (u32 LE), the body's length (u64 LE), the
//! body's SHA-256 and the body: a [`Snapshot`] in postcard (serde). The digest makes an
//! edited or truncated file a clear error instead of a VM in a state nobody saved.
//! `DIR/memory` is guest RAM, region after region, as the state's [`MemoryRegion`]s say;
//! a restore maps it privately (copy-on-write), so clones share the pages they have not
//! written. See docs/design.md, "Snapshots".

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use kvm_bindings::{
    kvm_clock_data, kvm_cpuid_entry2, kvm_debugregs, kvm_fpu, kvm_irqchip, kvm_lapic_state,
    kvm_mp_state, kvm_msr_entry, kvm_pit_state2, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs,
    kvm_xsave, CpuId, Msrs, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
};
use kvm_ioctls::{VcpuFd, VmFd};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::config::{DiskConfig, Mac, NetConfig, VmConfig};
use crate::devices::virtio::block::disk::{Disk, Identity};
use crate::devices::virtio::mmio::TransportState;

/// The first bytes of `DIR/state`.
pub const MAGIC: [u8; 8] = *b"MINNOWSS";
/// The format version this minnow writes and reads.
/// (1: no virtio devices; 2: virtio-blk transports, queues and disks, and the PIT's
/// state only when the VM has a PIT; 3: virtio-net transports, queues and MACs.)
pub const VERSION: u32 = 3;
/// The state file's name in a snapshot directory.
pub const STATE_FILE: &str = "state";
/// The memory file's name in a snapshot directory.
pub const MEMORY_FILE: &str = "memory";

/// magic + version + body length + SHA-256.
const HEADER_LEN: usize = 8 + 4 + 8 + 32;
/// A state file is small (a few KiB per vCPU); anything larger is not one of ours.
const MAX_BODY: u64 = 64 << 20;

/// A snapshot could not be taken or used. Each text is one line, `<what>; <fix>`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot {what} {path}: {source}; {fix}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
        fix: &'static str,
    },
    #[error("{path} is not a minnow snapshot (bad magic); give the directory `minnow vm snapshot` wrote")]
    Magic { path: PathBuf },
    #[error("{path} is snapshot format version {found}, this minnow reads version {VERSION}; take the snapshot again with this minnow")]
    Version { path: PathBuf, found: u32 },
    #[error("{path} is damaged ({why}); take the snapshot again")]
    Damaged { path: PathBuf, why: String },
    #[error("{path} is {found} bytes, the snapshot's memory is {expected}; the memory file is truncated or not this snapshot's: take the snapshot again")]
    MemorySize {
        path: PathBuf,
        found: u64,
        expected: u64,
    },
    #[error("the snapshot was taken on {saved}, this host is {here}; restore it on a host with the same CPU and KVM")]
    Host { saved: String, here: String },
    #[error("KVM call {0} failed: {1}; {2}")]
    Kvm(&'static str, #[source] kvm_ioctls::Error, &'static str),
    #[error("cannot save the guest memory: {0}; check the disk")]
    Memory(String),
    #[error("cannot encode the snapshot: {0}")]
    Encode(#[source] postcard::Error),
    #[error("{0}")]
    Refused(String),
}

fn kvm(what: &'static str) -> impl Fn(kvm_ioctls::Error) -> Error {
    move |e| Error::Kvm(what, e, "this host's KVM cannot save or restore that state")
}

/// The host facts a snapshot depends on: a restore elsewhere is refused.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Host {
    /// CPUID leaf 0's vendor string ("GenuineIntel", "AuthenticAMD").
    pub vendor: String,
    /// CPUID leaf 1's family, model and stepping (display values).
    pub family: u32,
    pub model: u32,
    /// KVM's API version.
    pub kvm_api: i32,
    /// Whether /dev/kvm is PVM.
    pub pvm: bool,
}

impl Host {
    /// This host.
    pub fn current(kvm_api: i32) -> Host {
        let leaf0 = std::arch::x86_64::__cpuid(0);
        let mut vendor = Vec::with_capacity(12);
        for r in [leaf0.ebx, leaf0.edx, leaf0.ecx] {
            vendor.extend_from_slice(&r.to_le_bytes());
        }
        let leaf1 = std::arch::x86_64::__cpuid(1);
        let base_family = (leaf1.eax >> 8) & 0xf;
        let family = if base_family == 0xf {
            base_family + ((leaf1.eax >> 20) & 0xff)
        } else {
            base_family
        };
        let base_model = (leaf1.eax >> 4) & 0xf;
        let model = if base_family == 0x6 || base_family == 0xf {
            base_model | (((leaf1.eax >> 16) & 0xf) << 4)
        } else {
            base_model
        };
        Host {
            vendor: String::from_utf8_lossy(&vendor).into_owned(),
            family,
            model,
            kvm_api,
            pvm: minnow_host::is_pvm(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} family {:#x} model {:#x}, KVM API {}{}",
            self.vendor,
            self.family,
            self.model,
            self.kvm_api,
            if self.pvm { " (PVM)" } else { "" }
        )
    }

    /// Refuses a snapshot from another kind of host.
    pub fn check(&self, saved: &Host) -> Result<(), Error> {
        if self == saved {
            return Ok(());
        }
        Err(Error::Host {
            saved: saved.describe(),
            here: self.describe(),
        })
    }
}

/// `struct kvm_fpu` (kvm-bindings has no serde for it).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Fpu {
    pub fpr: [[u8; 16]; 8],
    pub fcw: u16,
    pub fsw: u16,
    pub ftwx: u8,
    pub last_opcode: u16,
    pub last_ip: u64,
    pub last_dp: u64,
    pub xmm: [[u8; 16]; 16],
    pub mxcsr: u32,
}

impl From<&kvm_fpu> for Fpu {
    fn from(f: &kvm_fpu) -> Self {
        Fpu {
            fpr: f.fpr,
            fcw: f.fcw,
            fsw: f.fsw,
            ftwx: f.ftwx,
            last_opcode: f.last_opcode,
            last_ip: f.last_ip,
            last_dp: f.last_dp,
            xmm: f.xmm,
            mxcsr: f.mxcsr,
        }
    }
}

impl From<&Fpu> for kvm_fpu {
    fn from(f: &Fpu) -> Self {
        kvm_fpu {
            fpr: f.fpr,
            fcw: f.fcw,
            fsw: f.fsw,
            ftwx: f.ftwx,
            last_opcode: f.last_opcode,
            last_ip: f.last_ip,
            last_dp: f.last_dp,
            xmm: f.xmm,
            mxcsr: f.mxcsr,
            ..Default::default()
        }
    }
}

/// One vCPU.
#[derive(Debug, Serialize, Deserialize)]
pub struct VcpuState {
    pub cpuid: Vec<kvm_cpuid_entry2>,
    pub mp_state: kvm_mp_state,
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub fpu: Fpu,
    pub xsave: kvm_xsave,
    pub xcrs: kvm_xcrs,
    pub debugregs: kvm_debugregs,
    pub lapic: kvm_lapic_state,
    /// Every MSR of KVM's index list that KVM_GET_MSRS read.
    pub msrs: Vec<kvm_msr_entry>,
    pub events: kvm_vcpu_events,
    /// The vCPU's TSC frequency, if KVM told it.
    pub tsc_khz: Option<u32>,
}

/// MSRs per KVM_GET_MSRS/KVM_SET_MSRS call (KVM takes at most 256 at a time).
const MSR_CHUNK: usize = 64;

/// Saves vCPU `fd` (called on its own thread, while it is out of KVM_RUN); `msr_list`
/// is KVM's MSR index list. MSRs KVM_GET_MSRS refuses are left out (KVM lists some the
/// vCPU does not have, e.g. for features its CPUID hides).
pub fn save_vcpu(fd: &VcpuFd, msr_list: &[u32]) -> Result<VcpuState, Error> {
    let cpuid = fd
        .get_cpuid2(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm("KVM_GET_CPUID2"))?;
    let mut msrs = Vec::with_capacity(msr_list.len());
    let mut rest: &[u32] = msr_list;
    while !rest.is_empty() {
        let n = rest.len().min(MSR_CHUNK);
        let entries: Vec<kvm_msr_entry> = rest[..n]
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut batch = Msrs::from_entries(&entries)
            .map_err(|e| Error::Refused(format!("cannot build the MSR list: {e:?}")))?;
        let read = fd.get_msrs(&mut batch).map_err(kvm("KVM_GET_MSRS"))?;
        msrs.extend_from_slice(&batch.as_slice()[..read.min(n)]);
        // KVM stops at the first MSR it cannot read: skip that one.
        rest = &rest[(read + 1).min(rest.len())..];
        if read >= n {
            continue;
        }
        log::debug!(
            "snapshot: MSR {:#x} is not readable; left out",
            entries[read].index
        );
    }
    log::debug!(
        "snapshot: {} of the {} MSRs KVM lists were saved",
        msrs.len(),
        msr_list.len()
    );
    Ok(VcpuState {
        cpuid: cpuid.as_slice().to_vec(),
        mp_state: fd.get_mp_state().map_err(kvm("KVM_GET_MP_STATE"))?,
        regs: fd.get_regs().map_err(kvm("KVM_GET_REGS"))?,
        sregs: fd.get_sregs().map_err(kvm("KVM_GET_SREGS"))?,
        fpu: Fpu::from(&fd.get_fpu().map_err(kvm("KVM_GET_FPU"))?),
        xsave: fd.get_xsave().map_err(kvm("KVM_GET_XSAVE"))?,
        xcrs: fd.get_xcrs().map_err(kvm("KVM_GET_XCRS"))?,
        debugregs: fd.get_debug_regs().map_err(kvm("KVM_GET_DEBUGREGS"))?,
        lapic: fd.get_lapic().map_err(kvm("KVM_GET_LAPIC"))?,
        msrs,
        events: fd.get_vcpu_events().map_err(kvm("KVM_GET_VCPU_EVENTS"))?,
        tsc_khz: fd.get_tsc_khz().ok(),
    })
}

/// Puts a saved vCPU state into a new vCPU (Firecracker's order: CPUID first, the
/// LAPIC before the MSRs that depend on it, the events last).
pub fn restore_vcpu(fd: &VcpuFd, s: &VcpuState) -> Result<(), Error> {
    let cpuid = CpuId::from_entries(&s.cpuid)
        .map_err(|e| Error::Refused(format!("the saved CPUID does not fit KVM's: {e:?}")))?;
    fd.set_cpuid2(&cpuid).map_err(kvm("KVM_SET_CPUID2"))?;
    fd.set_mp_state(s.mp_state)
        .map_err(kvm("KVM_SET_MP_STATE"))?;
    fd.set_regs(&s.regs).map_err(kvm("KVM_SET_REGS"))?;
    fd.set_sregs(&s.sregs).map_err(kvm("KVM_SET_SREGS"))?;
    fd.set_fpu(&kvm_fpu::from(&s.fpu))
        .map_err(kvm("KVM_SET_FPU"))?;
    // SAFETY: `s.xsave` is a whole `kvm_xsave` (the legacy 4 KiB area KVM_GET_XSAVE
    // filled); KVM_SET_XSAVE reads exactly that many bytes from it.
    unsafe { fd.set_xsave(&s.xsave) }.map_err(kvm("KVM_SET_XSAVE"))?;
    fd.set_xcrs(&s.xcrs).map_err(kvm("KVM_SET_XCRS"))?;
    fd.set_debug_regs(&s.debugregs)
        .map_err(kvm("KVM_SET_DEBUGREGS"))?;
    fd.set_lapic(&s.lapic).map_err(kvm("KVM_SET_LAPIC"))?;
    for chunk in s.msrs.chunks(MSR_CHUNK) {
        let msrs = Msrs::from_entries(chunk)
            .map_err(|e| Error::Refused(format!("cannot build the MSR list: {e:?}")))?;
        let written = fd.set_msrs(&msrs).map_err(kvm("KVM_SET_MSRS"))?;
        if written < chunk.len() {
            return Err(Error::Refused(format!(
                "KVM refused to restore MSR {:#x}; restore on the host the snapshot was taken on",
                chunk[written].index
            )));
        }
    }
    fd.set_vcpu_events(&s.events)
        .map_err(kvm("KVM_SET_VCPU_EVENTS"))?;
    Ok(())
}

/// The VM's in-kernel devices and clock.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VmState {
    pub pic_master: kvm_irqchip,
    pub pic_slave: kvm_irqchip,
    pub ioapic: kvm_irqchip,
    /// None for a VM built without a PIT (crate::pit).
    pub pit: Option<kvm_pit_state2>,
    pub clock: kvm_clock_data,
}

fn irqchip(vm: &VmFd, chip_id: u32) -> Result<kvm_irqchip, Error> {
    let mut chip = kvm_irqchip {
        chip_id,
        ..Default::default()
    };
    vm.get_irqchip(&mut chip).map_err(kvm("KVM_GET_IRQCHIP"))?;
    Ok(chip)
}

/// Saves the VM's irqchip, PIT (if `pit`: the VM has one) and clock (its vCPUs are paused).
pub fn save_vm(vm: &VmFd, pit: bool) -> Result<VmState, Error> {
    Ok(VmState {
        pic_master: irqchip(vm, KVM_IRQCHIP_PIC_MASTER)?,
        pic_slave: irqchip(vm, KVM_IRQCHIP_PIC_SLAVE)?,
        ioapic: irqchip(vm, KVM_IRQCHIP_IOAPIC)?,
        pit: if pit {
            Some(vm.get_pit2().map_err(kvm("KVM_GET_PIT2"))?)
        } else {
            None
        },
        clock: vm.get_clock().map_err(kvm("KVM_GET_CLOCK"))?,
    })
}

/// Puts the saved irqchip, PIT and clock into a new VM (created with an irqchip; the PIT
/// is created here when the snapshot has one).
pub fn restore_vm(vm: &VmFd, s: &VmState) -> Result<(), Error> {
    if let Some(pit) = &s.pit {
        crate::create_pit(vm).map_err(kvm("KVM_CREATE_PIT2"))?;
        vm.set_pit2(pit).map_err(kvm("KVM_SET_PIT2"))?;
    }
    // KVM_SET_CLOCK takes no flags but KVM_CLOCK_REALTIME; the saved ones describe the
    // old host's clock (TSC_STABLE), not a request.
    let clock = kvm_clock_data {
        clock: s.clock.clock,
        ..Default::default()
    };
    vm.set_clock(&clock).map_err(kvm("KVM_SET_CLOCK"))?;
    for chip in [&s.pic_master, &s.pic_slave, &s.ioapic] {
        vm.set_irqchip(chip).map_err(kvm("KVM_SET_IRQCHIP"))?;
    }
    Ok(())
}

/// The 8250 UART (vm-superio's `SerialState`, which has no serde).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SerialState {
    pub baud_divisor_low: u8,
    pub baud_divisor_high: u8,
    pub interrupt_enable: u8,
    pub interrupt_identification: u8,
    pub line_control: u8,
    pub line_status: u8,
    pub modem_control: u8,
    pub modem_status: u8,
    pub scratch: u8,
    pub in_buffer: Vec<u8>,
}

impl From<&vm_superio::serial::SerialState> for SerialState {
    fn from(s: &vm_superio::serial::SerialState) -> Self {
        SerialState {
            baud_divisor_low: s.baud_divisor_low,
            baud_divisor_high: s.baud_divisor_high,
            interrupt_enable: s.interrupt_enable,
            interrupt_identification: s.interrupt_identification,
            line_control: s.line_control,
            line_status: s.line_status,
            modem_control: s.modem_control,
            modem_status: s.modem_status,
            scratch: s.scratch,
            in_buffer: s.in_buffer.clone(),
        }
    }
}

impl From<&SerialState> for vm_superio::serial::SerialState {
    fn from(s: &SerialState) -> Self {
        vm_superio::serial::SerialState {
            baud_divisor_low: s.baud_divisor_low,
            baud_divisor_high: s.baud_divisor_high,
            interrupt_enable: s.interrupt_enable,
            interrupt_identification: s.interrupt_identification,
            line_control: s.line_control,
            line_status: s.line_status,
            modem_control: s.modem_control,
            modem_status: s.modem_status,
            scratch: s.scratch,
            in_buffer: s.in_buffer.clone(),
        }
    }
}

/// Where one guest RAM region lives in `DIR/memory`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemoryRegion {
    pub guest_addr: u64,
    pub len: u64,
    pub file_offset: u64,
}

/// A virtio device in a snapshot, in the order of the VM's windows (disks first,
/// then network devices).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum DeviceState {
    /// virtio-blk: its transport and queue, and the disk file as it was at the
    /// snapshot (every request completed, the disk flushed).
    Block {
        transport: TransportState,
        disk: Identity,
    },
    /// virtio-net: its transport and queues (the device frozen since the pause: no
    /// chain half-processed) and its config space, the MAC.
    Net {
        transport: TransportState,
        mac: [u8; 6],
    },
}

impl DeviceState {
    /// The device's transport state.
    pub fn transport(&self) -> &TransportState {
        match self {
            DeviceState::Block { transport, .. } | DeviceState::Net { transport, .. } => transport,
        }
    }
}

/// Everything `DIR/state` holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    pub host: Host,
    /// The VM's description (memory size, vCPU count; kernel and command line for the
    /// record: a restore does not load them).
    pub config: VmConfig,
    pub memory: Vec<MemoryRegion>,
    pub vm: VmState,
    pub vcpus: Vec<VcpuState>,
    pub serial: SerialState,
    /// The virtio devices: one per `config.disks` entry, then one per `config.nets`
    /// entry, in order.
    pub devices: Vec<DeviceState>,
}

impl Snapshot {
    /// The devices match the config: one virtio-blk state per disk, then one
    /// virtio-net state per network interface.
    fn check_devices(&self) -> Result<(), String> {
        let (disks, nets) = (self.config.disks.len(), self.config.nets.len());
        let blocks = self
            .devices
            .iter()
            .take_while(|d| matches!(d, DeviceState::Block { .. }))
            .count();
        let rest_are_nets = self.devices[blocks..]
            .iter()
            .all(|d| matches!(d, DeviceState::Net { .. }));
        if blocks != disks || !rest_are_nets || self.devices.len() != disks + nets {
            return Err(format!(
                "it has {} device states for {disks} disks and {nets} network devices",
                self.devices.len(),
            ));
        }
        Ok(())
    }

    /// The saved virtio-net states, in `config.nets` order.
    pub fn nets(&self) -> impl Iterator<Item = (&TransportState, Mac)> {
        self.devices.iter().filter_map(|d| match d {
            DeviceState::Net { transport, mac } => Some((transport, Mac(*mac))),
            DeviceState::Block { .. } => None,
        })
    }

    /// The memory file's expected size (the layout is checked by [`decode`]).
    pub fn memory_len(&self) -> u64 {
        self.memory
            .iter()
            .fold(0u64, |n, r| n.saturating_add(r.len))
    }

    /// The memory layout as [`memory_layout`] writes it: regions of guest RAM in
    /// ascending, non-overlapping order, laid end to end in the memory file from offset
    /// 0, as large in total as the config's memory. A state edited otherwise could map
    /// past the end of the file (SIGBUS when the guest touches it) or overlap itself.
    fn check_layout(&self) -> Result<(), String> {
        let mut offset = 0u64;
        let mut guest_end = 0u64;
        for (i, r) in self.memory.iter().enumerate() {
            let end = r.guest_addr.checked_add(r.len);
            if r.len == 0 || end.is_none() || (i > 0 && r.guest_addr < guest_end) {
                return Err(format!("memory region {i} is empty, overlaps or overflows"));
            }
            if r.file_offset != offset {
                return Err(format!("memory region {i} is not where the file has it"));
            }
            offset = offset
                .checked_add(r.len)
                .ok_or_else(|| format!("memory region {i} overflows the file"))?;
            guest_end = end.unwrap_or(u64::MAX);
        }
        if self.memory.is_empty() || offset != self.config.mem_bytes() {
            return Err(format!(
                "its memory regions hold {offset} bytes for a VM of {} MiB",
                self.config.mem_mib
            ));
        }
        Ok(())
    }
}

/// A restore takes `flag` once per `device` of the snapshot, in its order, or not at all.
fn one_each_or_none(device: &str, flag: &str, recorded: usize, given: usize) -> Result<(), Error> {
    if given == 0 || given == recorded {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "the snapshot has {recorded} {device}s and {flag} was given {given} times; give one {flag} per {device} of the snapshot, in its order, or none"
    )))
}

/// Opens a restore's disks: each at its recorded path, or the `--disk` given in its
/// place (`given`: none, or one per disk), and refuses one that changed since the
/// snapshot (see [`Identity`]) or is given with another read-only mode.
pub fn open_disks(snap: &Snapshot, given: &[DiskConfig]) -> Result<Vec<(DiskConfig, Disk)>, Error> {
    let recorded = &snap.config.disks;
    one_each_or_none("disk", "--disk", recorded.len(), given.len())?;
    let mode = |ro: bool| if ro { "read-only" } else { "read-write" };
    let mut out = Vec::with_capacity(recorded.len());
    let ids = snap.devices.iter().filter_map(|d| match d {
        DeviceState::Block { disk, .. } => Some(disk),
        DeviceState::Net { .. } => None,
    });
    for (i, (saved, id)) in recorded.iter().zip(ids).enumerate() {
        let chosen = given.get(i).unwrap_or(saved);
        if chosen.read_only != saved.read_only {
            return Err(Error::Refused(format!(
                "disk {} is given {}, the snapshot's disk {i} was {}; give it as the snapshot had it (with or without ,ro)",
                chosen.path.display(),
                mode(chosen.read_only),
                mode(saved.read_only)
            )));
        }
        let disk = Disk::open(&chosen.path, chosen.read_only)
            .map_err(|e| Error::Refused(e.to_string()))?;
        let now = disk.identity().map_err(io(
            "read the status of",
            &chosen.path,
            "check the --disk path",
        ))?;
        if let Some(why) = id.differs(&now, given.is_empty()) {
            return Err(Error::Refused(format!(
                "disk {} is not the snapshot's disk {i}: {why}; give the disk as it was at the snapshot (a copy made with cp -p while the VM was paused) with --disk, or take the snapshot again",
                chosen.path.display()
            )));
        }
        out.push((chosen.clone(), disk));
    }
    Ok(out)
}

/// A restore's network interfaces and their MACs: each at its recorded TAP with the
/// snapshot's MAC, or the `--net` given in its place (`given`: none, or one per
/// interface), whose `mac=` (if any) replaces the snapshot's: a clone's own.
pub fn choose_nets(snap: &Snapshot, given: &[NetConfig]) -> Result<Vec<(NetConfig, Mac)>, Error> {
    let recorded = &snap.config.nets;
    one_each_or_none("network device", "--net", recorded.len(), given.len())?;
    Ok(recorded
        .iter()
        .zip(snap.nets())
        .enumerate()
        .map(|(i, (saved, (_, saved_mac)))| {
            let mut chosen = given.get(i).unwrap_or(saved).clone();
            // A given mac= was checked when parsed; else the guest's MAC stays.
            let mac = chosen
                .mac
                .as_deref()
                .filter(|_| !given.is_empty())
                .and_then(|m| m.parse().ok())
                .unwrap_or(saved_mac);
            chosen.mac = Some(mac.to_string());
            (chosen, mac)
        })
        .collect())
}

/// The regions of `mem`, laid end to end in the memory file.
pub fn memory_layout(mem: &GuestMemoryMmap) -> Vec<MemoryRegion> {
    let mut offset = 0;
    mem.iter()
        .map(|r| {
            let region = MemoryRegion {
                guest_addr: r.start_addr().0,
                len: r.len(),
                file_offset: offset,
            };
            offset += r.len();
            region
        })
        .collect()
}

fn io<'a>(
    what: &'static str,
    path: &'a Path,
    fix: &'static str,
) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        what,
        path: path.to_path_buf(),
        source,
        fix,
    }
}

/// `DIR/state`'s bytes for an encoded body: magic, version, length, SHA-256, body.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(body));
    out.extend_from_slice(body);
    out
}

/// Writes `snap` and `mem` into `dir` (created if missing).
///
/// Both files are written and synced under temporary names, then renamed into place:
/// VMs restored from `dir` map its old memory file privately, and that file (the pages
/// they have not copied yet) must not change under them; it lives on, unnamed, until
/// they stop. A failure before the renames leaves the old snapshot as it was.
pub fn write(dir: &Path, snap: &Snapshot, mem: &GuestMemoryMmap) -> Result<(), Error> {
    const FIX: &str = "give a writable snapshot directory";
    std::fs::create_dir_all(dir).map_err(io("create", dir, FIX))?;
    let mem_path = dir.join(MEMORY_FILE);
    let mem_tmp = dir.join(".memory.new");
    let file = File::create(&mem_tmp).map_err(io("create", &mem_tmp, FIX))?;
    write_memory(&file, snap, mem)?;

    let body = postcard::to_allocvec(snap).map_err(Error::Encode)?;
    let out = frame(&body);
    let state_path = dir.join(STATE_FILE);
    let state_tmp = dir.join(".state.new");
    let mut file = File::create(&state_tmp).map_err(io("create", &state_tmp, FIX))?;
    file.write_all(&out)
        .and_then(|()| file.sync_data())
        .map_err(io("write", &state_tmp, FIX))?;
    std::fs::rename(&mem_tmp, &mem_path).map_err(io("replace", &mem_path, FIX))?;
    std::fs::rename(&state_tmp, &state_path).map_err(io("replace", &state_path, FIX))?;
    Ok(())
}

/// Writes guest RAM into the (new, empty) memory file: chunks that are all zeros are
/// left as holes, so the file takes the space of the pages the guest has written (a
/// private mapping reads a hole as zeros, as the guest had them).
fn write_memory(file: &File, snap: &Snapshot, mem: &GuestMemoryMmap) -> Result<(), Error> {
    use std::os::unix::fs::FileExt;
    const CHUNK: usize = 64 << 10;
    static ZEROS: [u8; CHUNK] = [0; CHUNK];
    let mut buf = vec![0u8; CHUNK];
    let err = |e: &dyn std::fmt::Display| Error::Memory(e.to_string());
    for region in &snap.memory {
        let slice = mem
            .get_slice(GuestAddress(region.guest_addr), usize_len(region.len)?)
            .map_err(|e| err(&e))?;
        let mut off = 0;
        while off < slice.len() {
            let n = CHUNK.min(slice.len() - off);
            let part = slice.subslice(off, n).map_err(|e| err(&e))?;
            part.copy_to(&mut buf[..n]);
            // A slice comparison is a memcmp: fast even in a debug build.
            if buf[..n] != ZEROS[..n] {
                file.write_all_at(&buf[..n], region.file_offset + off as u64)
                    .map_err(|e| err(&e))?;
            }
            off += n;
        }
    }
    file.set_len(snap.memory_len()).map_err(|e| err(&e))?;
    file.sync_data().map_err(|e| err(&e))
}

fn usize_len(len: u64) -> Result<usize, Error> {
    usize::try_from(len)
        .map_err(|_| Error::Memory("a region is larger than this host's address space".into()))
}

/// Reads and checks `dir/state`; checks `dir/memory`'s size and returns it opened.
pub fn read(dir: &Path) -> Result<(Snapshot, File), Error> {
    const FIX: &str = "give the directory `minnow vm snapshot` wrote";
    let state_path = dir.join(STATE_FILE);
    let file = File::open(&state_path).map_err(io("open", &state_path, FIX))?;
    let mut bytes = Vec::new();
    file.take(MAX_BODY + HEADER_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io("read", &state_path, FIX))?;
    let snap = decode(&bytes).map_err(|e| match e {
        Decode::Magic => Error::Magic {
            path: state_path.clone(),
        },
        Decode::Version(found) => Error::Version {
            path: state_path.clone(),
            found,
        },
        Decode::Damaged(why) => Error::Damaged {
            path: state_path.clone(),
            why,
        },
    })?;
    let mem_path = dir.join(MEMORY_FILE);
    let mem = File::open(&mem_path).map_err(io("open", &mem_path, FIX))?;
    let found = mem.metadata().map_err(io("read", &mem_path, FIX))?.len();
    if found != snap.memory_len() {
        return Err(Error::MemorySize {
            path: mem_path,
            found,
            expected: snap.memory_len(),
        });
    }
    Ok((snap, mem))
}

/// Why a state file's bytes are not a snapshot.
#[derive(Debug, PartialEq, Eq)]
pub enum Decode {
    Magic,
    Version(u32),
    Damaged(String),
}

/// Decodes a state file's bytes (no I/O: the fuzzable part).
pub fn decode(bytes: &[u8]) -> Result<Snapshot, Decode> {
    if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
        return Err(Decode::Magic);
    }
    if bytes.len() < HEADER_LEN {
        return Err(Decode::Damaged("the header is truncated".into()));
    }
    let mut version = [0u8; 4];
    version.copy_from_slice(&bytes[8..12]);
    let version = u32::from_le_bytes(version);
    if version != VERSION {
        return Err(Decode::Version(version));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[12..20]);
    let len = u64::from_le_bytes(len);
    let body = &bytes[HEADER_LEN..];
    if len > MAX_BODY || body.len() as u64 != len {
        return Err(Decode::Damaged(format!(
            "the header says {len} bytes of state, the file has {}",
            body.len()
        )));
    }
    if Sha256::digest(body).as_slice() != &bytes[20..HEADER_LEN] {
        return Err(Decode::Damaged("its checksum does not match".into()));
    }
    let snap: Snapshot = postcard::from_bytes(body)
        .map_err(|e| Decode::Damaged(format!("cannot decode it: {e}")))?;
    snap.check_layout().map_err(Decode::Damaged)?;
    snap.check_devices().map_err(Decode::Damaged)?;
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            host: Host::current(12),
            config: VmConfig::new(PathBuf::from("/k")),
            memory: vec![MemoryRegion {
                guest_addr: 0,
                len: VmConfig::new(PathBuf::from("/k")).mem_bytes(),
                file_offset: 0,
            }],
            vm: VmState {
                pic_master: kvm_irqchip::default(),
                pic_slave: kvm_irqchip::default(),
                ioapic: kvm_irqchip::default(),
                pit: Some(kvm_pit_state2::default()),
                clock: kvm_clock_data::default(),
            },
            vcpus: Vec::new(),
            serial: SerialState::default(),
            devices: Vec::new(),
        }
    }

    fn encode(s: &Snapshot) -> Vec<u8> {
        frame(&postcard::to_allocvec(s).unwrap())
    }

    #[test]
    fn an_edited_memory_layout_is_refused() {
        let half = sample().config.mem_bytes() / 2;
        let region = |guest_addr, len, file_offset| MemoryRegion {
            guest_addr,
            len,
            file_offset,
        };
        let bad: [Vec<MemoryRegion>; 6] = [
            vec![],
            // past the end of the file the config implies
            vec![region(0, half, 0), region(half, half, half + 4096)],
            // overlapping guest ranges
            vec![region(0, half, 0), region(4096, half, half)],
            // a sum that overflows
            vec![region(0, u64::MAX, 0), region(0, 2, u64::MAX)],
            vec![region(u64::MAX - 1, half * 2, 0)],
            vec![region(0, half, 0)],
        ];
        for layout in bad {
            let mut s = sample();
            s.memory = layout.clone();
            assert!(
                matches!(decode(&encode(&s)), Err(Decode::Damaged(_))),
                "{layout:?}"
            );
        }
        let mut s = sample();
        s.memory = vec![region(0, half, 0), region(1 << 32, half, half)];
        assert!(decode(&encode(&s)).is_ok());
    }

    fn with_disk() -> Snapshot {
        use crate::devices::virtio::mmio::QueueSnap;
        let mut s = sample();
        s.config.disks.push("/d.img".parse().unwrap());
        s.devices.push(DeviceState::Block {
            transport: TransportState {
                device_type: 2,
                status: 15,
                acked_features: 1 << 32,
                active: true,
                queues: vec![QueueSnap {
                    max_size: 256,
                    next_avail: 7,
                    next_used: 7,
                    size: 8,
                    ready: true,
                    desc_table: 0x20_0000,
                    avail_ring: 0x20_1000,
                    used_ring: 0x20_2000,
                    ..Default::default()
                }],
                ..Default::default()
            },
            disk: Identity {
                dev: 1,
                ino: 2,
                size: 4096,
                mtime_sec: 3,
                mtime_nsec: 4,
            },
        });
        s
    }

    #[test]
    fn devices_round_trip_and_must_match_the_disks() {
        let s = with_disk();
        let back = decode(&encode(&s)).unwrap();
        assert_eq!(back.devices, s.devices);
        let mut no_state = with_disk();
        no_state.devices.clear();
        assert!(matches!(
            decode(&encode(&no_state)),
            Err(Decode::Damaged(_))
        ));
        let mut extra = with_disk();
        extra.config.disks.clear();
        assert!(matches!(decode(&encode(&extra)), Err(Decode::Damaged(_))));
    }

    #[test]
    fn round_trips() {
        let bytes = encode(&sample());
        let back = decode(&bytes).unwrap();
        assert_eq!(back.memory, sample().memory);
        assert_eq!(back.host, sample().host);
    }

    #[test]
    fn refuses_bad_files() {
        let good = encode(&sample());
        assert_eq!(decode(b"nope").err(), Some(Decode::Magic));
        let mut v = good.clone();
        v[8] = 9;
        assert_eq!(decode(&v).err(), Some(Decode::Version(9)));
        let mut edited = good.clone();
        let last = edited.len() - 1;
        edited[last] ^= 1;
        assert!(matches!(decode(&edited), Err(Decode::Damaged(_))));
        assert!(matches!(
            decode(&good[..good.len() - 3]),
            Err(Decode::Damaged(_))
        ));
        assert!(matches!(decode(&good[..15]), Err(Decode::Damaged(_))));
    }

    /// Bodies with a valid header and checksum but edited content (what a hand-edited
    /// file with a recomputed digest would be): decoding never panics or allocates
    /// without bound; it decodes or says the state is damaged.
    #[test]
    fn edited_bodies_with_a_valid_checksum_never_panic() {
        let mut s = with_disk();
        s.vcpus.push(VcpuState {
            cpuid: vec![kvm_cpuid_entry2::default(); 3],
            mp_state: kvm_mp_state::default(),
            regs: kvm_regs::default(),
            sregs: kvm_sregs::default(),
            fpu: Fpu::default(),
            xsave: kvm_xsave::default(),
            xcrs: kvm_xcrs::default(),
            debugregs: kvm_debugregs::default(),
            lapic: kvm_lapic_state::default(),
            msrs: vec![kvm_msr_entry::default(); 5],
            events: kvm_vcpu_events::default(),
            tsc_khz: Some(2_000_000),
        });
        let body = postcard::to_allocvec(&s).unwrap();
        let frame = |body: &[u8]| {
            let mut out = MAGIC.to_vec();
            out.extend_from_slice(&VERSION.to_le_bytes());
            out.extend_from_slice(&(body.len() as u64).to_le_bytes());
            out.extend_from_slice(&Sha256::digest(body));
            out.extend_from_slice(body);
            out
        };
        assert!(decode(&frame(&body)).is_ok());
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut decoded = 0;
        for _ in 0..1000 {
            let mut b = body.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % b.len();
                b[at] = next() as u8;
            }
            if next() % 4 == 0 {
                b.truncate((next() as usize) % b.len());
            }
            match decode(&frame(&b)) {
                Ok(_) => decoded += 1,
                Err(Decode::Damaged(_)) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(decoded < 1000, "no edit was ever noticed");
    }

    #[test]
    fn other_hosts_are_refused() {
        let here = Host::current(12);
        let mut other = here.clone();
        other.vendor = "OtherVendor!".into();
        assert!(here
            .check(&other)
            .unwrap_err()
            .to_string()
            .contains("OtherVendor!"));
    }
}
