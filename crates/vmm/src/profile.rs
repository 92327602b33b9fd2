//! The VM-exit profile (`minnow run --profile`, `--profile-json FILE`): every exit by kind
//! with its count and the time the VMM spent handling it, the time each vCPU spent in
//! KVM_RUN, and a timeline of boot milestones, so a boot explains where it waits.
//!
//! Each vCPU thread counts into its own [`VcpuProfile`] (no sharing while the guest runs)
//! and hands it over when it stops; milestones are [`Mark`]s, set once, at the first time
//! they happen. Without `--profile` the vCPU loop does not count at all.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kvm_ioctls::VcpuExit;
use serde::Serialize;

use crate::arch::x86_64::layout::{BOOT_TIMER_START, MMIO_DEVICE_SIZE};
use crate::devices::virtio::mmio::{reg, status};

/// A kind of exit, as the profile groups them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    PortIn(u16),
    PortOut(u16),
    /// MMIO by device window (its base address).
    MmioRead(u64),
    MmioWrite(u64),
    Hlt,
    Shutdown,
    SystemEvent,
    /// Interrupt-window and signal (`EINTR`) exits.
    Interrupt,
    Other,
}

impl Kind {
    fn of(exit: &VcpuExit) -> Kind {
        match exit {
            VcpuExit::IoIn(port, _) => Kind::PortIn(*port),
            VcpuExit::IoOut(port, _) => Kind::PortOut(*port),
            VcpuExit::MmioRead(addr, _) => Kind::MmioRead(window(*addr)),
            VcpuExit::MmioWrite(addr, _) => Kind::MmioWrite(window(*addr)),
            VcpuExit::Hlt => Kind::Hlt,
            VcpuExit::Shutdown => Kind::Shutdown,
            VcpuExit::SystemEvent(..) => Kind::SystemEvent,
            VcpuExit::Intr | VcpuExit::IrqWindowOpen => Kind::Interrupt,
            _ => Kind::Other,
        }
    }
}

/// The base of the device window `addr` falls in (virtio-mmio windows and the boot
/// timer are one page each); other addresses are grouped by page.
fn window(addr: u64) -> u64 {
    addr & !(MMIO_DEVICE_SIZE - 1)
}

/// Count and handling time of one kind of exit.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Stat {
    pub count: u64,
    /// Time in the VMM between KVM_RUN returning and the next KVM_RUN.
    pub handling_ns: u64,
}

/// What one vCPU thread counted.
#[derive(Debug, Default)]
pub struct VcpuProfile {
    pub index: u8,
    /// Time inside KVM_RUN.
    pub in_kvm: Duration,
    pub runs: u64,
    pub exits: BTreeMap<Kind, Stat>,
}

/// A milestone: the first time something happened, from the VMM's start.
#[derive(Debug)]
pub struct Mark {
    pub label: String,
    start: Instant,
    at: OnceLock<Duration>,
}

impl Mark {
    /// Records now, unless an earlier time is recorded (one atomic load after that).
    pub fn hit(&self) {
        if self.at.get().is_none() {
            let _ = self.at.set(self.start.elapsed());
        }
    }

    /// When it happened, if it did.
    pub fn at(&self) -> Option<Duration> {
        self.at.get().copied()
    }
}

/// The profile of one run: filled by the vCPU threads, reported when the VM stops.
#[derive(Debug)]
pub struct Profile {
    start: Instant,
    /// Virtio device names by window base.
    devices: BTreeMap<u64, String>,
    marks: Vec<Arc<Mark>>,
    first_run: Arc<Mark>,
    /// Per virtio window: the driver set DRIVER_OK.
    driver_ok: BTreeMap<u64, Arc<Mark>>,
    /// Per virtio window: the first queue notification that reached the VMM as an exit.
    notify: BTreeMap<u64, Arc<Mark>>,
    vcpus: Mutex<Vec<VcpuProfile>>,
}

impl Profile {
    /// A profile of a VM whose VMM started at `start`.
    pub fn new(start: Instant) -> Profile {
        let mut p = Profile {
            start,
            devices: BTreeMap::new(),
            marks: Vec::new(),
            first_run: Arc::new(Mark {
                label: String::new(),
                start,
                at: OnceLock::new(),
            }),
            driver_ok: BTreeMap::new(),
            notify: BTreeMap::new(),
            vcpus: Mutex::new(Vec::new()),
        };
        p.first_run = p.mark("first KVM_RUN (the kernel's entry point)");
        p
    }

    /// A new milestone (in the order the timeline lists them when times tie).
    pub fn mark(&mut self, label: &str) -> Arc<Mark> {
        let m = Arc::new(Mark {
            label: label.into(),
            start: self.start,
            at: OnceLock::new(),
        });
        self.marks.push(m.clone());
        m
    }

    /// Names the virtio device in the window at `base`.
    pub fn device(&mut self, base: u64, name: &str) {
        let ok = self.mark(&format!("{name}: driver ready (DRIVER_OK)"));
        let n = self.mark(&format!("{name}: first queue notification seen as an exit"));
        self.devices.insert(base, name.into());
        self.driver_ok.insert(base, ok);
        self.notify.insert(base, n);
    }

    /// Counts one exit of vCPU `vcpu` (whose KVM_RUN took `in_kvm`, handled in `handling`).
    pub fn count(&self, vcpu: &mut VcpuProfile, kind: Kind, in_kvm: Duration, handling: Duration) {
        vcpu.runs += 1;
        vcpu.in_kvm += in_kvm;
        let s = vcpu.exits.entry(kind).or_default();
        s.count += 1;
        s.handling_ns += u64::try_from(handling.as_nanos()).unwrap_or(u64::MAX);
    }

    /// Looks at an exit before it is handled, for the milestones it may be.
    pub fn observe(&self, exit: &VcpuExit) -> Kind {
        self.first_run.hit();
        let kind = Kind::of(exit);
        if let VcpuExit::MmioWrite(addr, data) = exit {
            let base = window(*addr);
            match addr - base {
                reg::STATUS
                    if data
                        .first()
                        .is_some_and(|b| u32::from(*b) & status::DRIVER_OK != 0) =>
                {
                    if let Some(m) = self.driver_ok.get(&base) {
                        m.hit();
                    }
                }
                reg::QUEUE_NOTIFY => {
                    if let Some(m) = self.notify.get(&base) {
                        m.hit();
                    }
                }
                _ => {}
            }
        }
        kind
    }

    /// The first KVM_RUN (set by [`Profile::observe`]; a vCPU that never exits sets it here).
    pub fn started(&self) {
        self.first_run.hit();
    }

    /// Takes a stopped vCPU's counts.
    pub fn add(&self, vcpu: VcpuProfile) {
        self.vcpus
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(vcpu);
    }

    /// The report: counts and times summed over the vCPUs, and the timeline.
    pub fn report(&self, booted: Option<Duration>, total: Duration) -> Report {
        let vcpus = self.vcpus.lock().unwrap_or_else(|p| p.into_inner());
        let mut kinds: BTreeMap<Kind, Stat> = BTreeMap::new();
        for v in vcpus.iter() {
            for (k, s) in &v.exits {
                let t = kinds.entry(*k).or_default();
                t.count += s.count;
                t.handling_ns = t.handling_ns.saturating_add(s.handling_ns);
            }
        }
        let mut exits: Vec<ExitRow> = kinds
            .into_iter()
            .map(|(k, s)| ExitRow {
                kind: self.label(k),
                count: s.count,
                handling_ns: s.handling_ns,
            })
            .collect();
        exits.sort_by(|a, b| {
            b.handling_ns
                .cmp(&a.handling_ns)
                .then(b.count.cmp(&a.count))
        });
        let mut timeline: Vec<Milestone> = self
            .marks
            .iter()
            .filter_map(|m| {
                m.at().map(|at| Milestone {
                    label: m.label.clone(),
                    at_ns: nanos(at),
                })
            })
            .collect();
        if let Some(b) = booted {
            timeline.push(Milestone {
                label: "boot timer (the guest's write)".into(),
                at_ns: nanos(b),
            });
        }
        timeline.push(Milestone {
            label: "VM stopped".into(),
            at_ns: nanos(total),
        });
        timeline.sort_by_key(|m| m.at_ns);
        let mut per_vcpu: Vec<VcpuRow> = vcpus
            .iter()
            .map(|v| VcpuRow {
                vcpu: v.index,
                runs: v.runs,
                in_kvm_ns: nanos(v.in_kvm),
                handling_ns: v.exits.values().map(|s| s.handling_ns).sum(),
            })
            .collect();
        per_vcpu.sort_by_key(|v| v.vcpu);
        Report {
            total_ns: nanos(total),
            vcpus: per_vcpu,
            exits,
            timeline,
        }
    }

    fn label(&self, k: Kind) -> String {
        let dev = |base: u64| match self.devices.get(&base) {
            Some(name) => format!("{base:#x} ({name})"),
            None if base == BOOT_TIMER_START => format!("{base:#x} (boot timer)"),
            None => format!("{base:#x}"),
        };
        match k {
            Kind::PortIn(p) => format!("port in {p:#x}{}", port_name(p)),
            Kind::PortOut(p) => format!("port out {p:#x}{}", port_name(p)),
            Kind::MmioRead(b) => format!("mmio read {}", dev(b)),
            Kind::MmioWrite(b) => format!("mmio write {}", dev(b)),
            Kind::Hlt => "hlt".into(),
            Kind::Shutdown => "shutdown".into(),
            Kind::SystemEvent => "system event".into(),
            Kind::Interrupt => "interrupt window / signal".into(),
            Kind::Other => "other".into(),
        }
    }
}

/// What well-known ports are, for the report.
fn port_name(p: u16) -> &'static str {
    match p {
        0x3f8..=0x3ff => " (COM1)",
        0x2f8..=0x2ff | 0x3e8..=0x3ef | 0x2e8..=0x2ef => " (COM2-4, absent)",
        0x60 | 0x64 => " (i8042)",
        0x40..=0x43 | 0x61 => " (PIT)",
        0x70 | 0x71 => " (CMOS/RTC, absent)",
        0x80 => " (POST delay)",
        0x20 | 0x21 | 0xa0 | 0xa1 => " (PIC)",
        0xcf8..=0xcff => " (PCI config, absent)",
        _ => "",
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The profile as printed and as `--profile-json` writes it.
#[derive(Debug, Serialize)]
pub struct Report {
    pub total_ns: u64,
    pub vcpus: Vec<VcpuRow>,
    /// Most handling time first.
    pub exits: Vec<ExitRow>,
    pub timeline: Vec<Milestone>,
}

#[derive(Debug, Serialize)]
pub struct VcpuRow {
    pub vcpu: u8,
    pub runs: u64,
    pub in_kvm_ns: u64,
    pub handling_ns: u64,
}

#[derive(Debug, Serialize)]
pub struct ExitRow {
    pub kind: String,
    pub count: u64,
    pub handling_ns: u64,
}

#[derive(Debug, Serialize)]
pub struct Milestone {
    pub label: String,
    pub at_ns: u64,
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

impl Report {
    /// The table `--profile` prints on stderr.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "minnow: profile of the run ({:.3} ms):",
            ms(self.total_ns)
        );
        for v in &self.vcpus {
            let _ = writeln!(
                s,
                "  vCPU {}: {} KVM_RUN calls, {:.3} ms in the guest (KVM_RUN), {:.3} ms handling exits",
                v.vcpu,
                v.runs,
                ms(v.in_kvm_ns),
                ms(v.handling_ns)
            );
        }
        let _ = writeln!(s, "  {:>10} {:>12}  exit", "count", "handling ms");
        for e in &self.exits {
            let _ = writeln!(
                s,
                "  {:>10} {:>12.3}  {}",
                e.count,
                ms(e.handling_ns),
                e.kind
            );
        }
        let _ = writeln!(s, "  timeline (ms from minnow's start):");
        for m in &self.timeline {
            let _ = writeln!(s, "  {:>10.3}  {}", ms(m.at_ns), m.label);
        }
        s
    }
}
