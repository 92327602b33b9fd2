//! Memory per instance (one long-running `sleep` per row) and density (instances
//! started until 2 GiB are used).

use std::fs;
use std::process::Child;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::rows::{boot_ms, spawn, Ctx, Row};
use crate::startup::StartupArgs;
use crate::util::tail;

const MIB: f64 = 1024.0 * 1024.0;

pub struct MemRow {
    pub name: String,
    pub process: String,
    pub rss_mib: Option<f64>,
    pub pss_mib: Option<f64>,
    pub guest_mib: Option<f64>,
    pub cgroup_mib: Option<f64>,
    pub note: String,
}

fn f(x: Option<f64>) -> String {
    x.map_or("—".into(), |v| format!("{v:.1}"))
}

impl MemRow {
    pub const COLUMNS: [&'static str; 8] = [
        "row",
        "process",
        "RSS MiB",
        "PSS MiB",
        "guest touched MiB",
        "VMM overhead (RSS - guest) MiB",
        "cgroup memory MiB",
        "note",
    ];

    pub fn cells(&self) -> Vec<Value> {
        vec![
            json!(self.name),
            json!(self.process),
            json!(self.rss_mib),
            json!(self.pss_mib),
            json!(self.guest_mib),
            json!(self.rss_mib.zip(self.guest_mib).map(|(r, g)| r - g)),
            json!(self.cgroup_mib),
            json!(self.note),
        ]
    }
}

pub struct DensityRow {
    pub name: String,
    pub started: usize,
    pub drop_mib: f64,
    pub stopped: String,
}

impl DensityRow {
    fn per(&self) -> Option<f64> {
        (self.started > 0 && self.drop_mib > 0.0).then(|| self.drop_mib / self.started as f64)
    }

    fn fit(&self) -> Option<u64> {
        self.per().map(|p| (2048.0 / p).floor() as u64)
    }

    pub const COLUMNS: [&'static str; 6] = [
        "row",
        "started",
        "MemAvailable drop MiB",
        "MiB / instance",
        "fit in 2 GiB",
        "stopped because",
    ];

    pub fn cells(&self) -> Vec<Value> {
        vec![
            json!(self.name),
            json!(self.started),
            json!(self.drop_mib),
            json!(self.per()),
            json!(self.fit()),
            json!(self.stopped),
        ]
    }
}

/// `(Rss, Pss)` in MiB from /proc/PID/smaps_rollup.
fn rollup(pid: i32) -> Option<(f64, f64)> {
    let t = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let get = |k: &str| {
        t.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kib| kib / 1024.0)
    };
    Some((get("Rss:")?, get("Pss:")?))
}

/// /proc/PID/smaps summed up, and the guest-memory mapping(s): anonymous, rw, of
/// exactly the guest's size.
#[derive(Debug, Default, PartialEq)]
pub struct Smaps {
    pub total_rss_kib: u64,
    pub total_pss_kib: u64,
    /// (Rss, Pss) in KiB of each mapping that looks like guest memory.
    pub guest: Vec<(u64, u64)>,
}

pub fn parse_smaps(text: &str, guest_kib: u64) -> Smaps {
    let mut out = Smaps::default();
    // Index into out.guest of the mapping being read, if it is a guest one.
    let mut cur: Option<usize> = None;
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let first = parts.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                let perms = parts.next().unwrap_or("");
                let path = line.split_whitespace().nth(5);
                cur = if (b - a) / 1024 == guest_kib && perms.starts_with("rw") && path.is_none() {
                    out.guest.push((0, 0));
                    Some(out.guest.len() - 1)
                } else {
                    None
                };
                continue;
            }
        }
        let kib = || {
            parts
                .clone()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match first {
            "Rss:" => {
                let k = kib();
                out.total_rss_kib += k;
                if let Some(i) = cur {
                    out.guest[i].0 += k;
                }
            }
            "Pss:" => {
                let k = kib();
                out.total_pss_kib += k;
                if let Some(i) = cur {
                    out.guest[i].1 += k;
                }
            }
            _ => {}
        }
    }
    out
}

pub fn smaps(pid: i32, guest_kib: u64) -> Option<Smaps> {
    let t = fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    Some(parse_smaps(&t, guest_kib))
}

/// RSS (MiB) of the anonymous rw mapping of exactly the guest's size.
fn guest_rss(pid: i32, guest_mib: u64) -> Option<f64> {
    let s = smaps(pid, guest_mib << 10)?;
    s.guest.first().map(|(rss, _)| *rss as f64 / 1024.0)
}

/// The process whose argv is exactly `sleep TAG` (the workload of a container row).
fn find_sleep(tag: &str) -> Option<i32> {
    for e in fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(c) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = c.split(|&b| b == 0).collect();
        if args.len() >= 2 && args[0].ends_with(b"sleep") && args[1] == tag.as_bytes() {
            return Some(pid);
        }
    }
    None
}

/// Memory charged to the cgroup of `pid` (v1 memory.usage_in_bytes or v2 memory.current).
fn cgroup_mib(pid: i32) -> Option<f64> {
    let t = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for line in t.lines() {
        let mut p = line.splitn(3, ':');
        let (_, ctrl, path) = (p.next()?, p.next()?, p.next()?);
        let file = if ctrl.split(',').any(|c| c == "memory") {
            format!("/sys/fs/cgroup/memory{path}/memory.usage_in_bytes")
        } else if ctrl.is_empty() {
            let f1 = format!("/sys/fs/cgroup{path}/memory.current");
            if fs::metadata(&f1).is_err() {
                continue;
            }
            f1
        } else {
            continue;
        };
        if let Ok(v) = fs::read_to_string(&file) {
            return v.trim().parse::<f64>().ok().map(|b| b / MIB);
        }
    }
    None
}

fn mem_available_mib() -> f64 {
    fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |k| k / 1024.0)
}

/// A running instance of a row with `sleep TAG` as its command.
struct Instance {
    child: Child,
    sleep_pid: Option<i32>,
    vm: bool,
}

fn start(row: &Row, idx: usize, tag: &str, timeout: Duration) -> Result<Instance> {
    let cmd = ["sleep".to_string(), tag.to_string()];
    let argv = row
        .argv_for(100_000 + idx, &cmd)
        .ok_or_else(|| Error::missing("the row has no command", "it cannot be started"))?;
    let (mut child, rx) = spawn(&argv).map_err(Error::spawn(&argv[0]))?;
    let deadline = Instant::now() + timeout;
    let mut out = String::new();
    loop {
        while let Ok(c) = rx.try_recv() {
            out.push_str(&c);
        }
        if row.is_vm {
            if boot_ms(&out).is_some() {
                // Let init finish starting the workload.
                std::thread::sleep(Duration::from_millis(500));
                return Ok(Instance {
                    child,
                    sleep_pid: None,
                    vm: true,
                });
            }
        } else if let Some(pid) = find_sleep(tag) {
            std::thread::sleep(Duration::from_millis(200));
            return Ok(Instance {
                child,
                sleep_pid: Some(pid),
                vm: false,
            });
        }
        if let Ok(Some(st)) = child.try_wait() {
            return Err(Error::Command {
                what: "the instance".into(),
                status: format!("exited early, {st}"),
                output: tail(&out, 2),
            });
        }
        if Instant::now() > deadline {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
            return Err(Error::Command {
                what: "the instance".into(),
                status: format!("not up after {} s", timeout.as_secs()),
                output: tail(&out, 2),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Instance {
    /// Ends the workload the way each runtime expects: SIGKILL to the container's
    /// `sleep` (its runtime then cleans up), SIGTERM to a VMM.
    fn stop(mut self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        match self.sleep_pid {
            Some(s) if !self.vm => {
                let _ = kill(Pid::from_raw(s), Signal::SIGKILL);
            }
            _ => {
                let _ = kill(pid, Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = killpg(pid, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn measurable(rows: &[Row]) -> impl Iterator<Item = (usize, &Row)> {
    rows.iter()
        .enumerate()
        .filter(|(_, r)| r.in_memory && r.available() && !r.samples.is_empty())
}

pub fn per_instance(a: &StartupArgs, _ctx: &Ctx, rows: &[Row]) -> Vec<MemRow> {
    let timeout = Duration::from_secs(a.timeout);
    let mut out = Vec::new();
    for (idx, row) in measurable(rows) {
        let tag = format!("30.{idx:02}");
        let mut m = MemRow {
            name: row.name.clone(),
            process: String::new(),
            rss_mib: None,
            pss_mib: None,
            guest_mib: None,
            cgroup_mib: None,
            note: String::new(),
        };
        match start(row, idx, &tag, timeout) {
            Err(e) => m.note = format!("not measured: {e}"),
            Ok(inst) => {
                let pid = inst.child.id() as i32;
                if row.is_vm {
                    m.process = "VMM (minnow run)".into();
                    m.guest_mib = guest_rss(pid, a.vm_mem_mib);
                    m.note = "n/a (VM)".into();
                } else {
                    m.process = match row.key.as_str() {
                        "host" => "the workload itself".into(),
                        "minnow-container" => "supervisor (minnow container run)".into(),
                        "docker" => "docker CLI (daemon, shim not counted)".into(),
                        k => format!("{k} run (foreground)"),
                    };
                    let s = inst.sleep_pid.unwrap_or(pid);
                    m.cgroup_mib = if row.key == "host" {
                        None
                    } else {
                        cgroup_mib(s)
                    };
                    if m.cgroup_mib.is_none() {
                        m.note = if row.key == "host" {
                            "n/a (the bench's own cgroup)".into()
                        } else {
                            "no memory cgroup found".into()
                        };
                    }
                }
                if let Some((r, p)) = rollup(pid) {
                    m.rss_mib = Some(r);
                    m.pss_mib = Some(p);
                }
                inst.stop();
            }
        }
        eprintln!(
            "bench: memory {}: rss {} pss {} guest {} cgroup {}",
            m.name,
            f(m.rss_mib),
            f(m.pss_mib),
            f(m.guest_mib),
            f(m.cgroup_mib)
        );
        out.push(m);
    }
    out
}

pub fn density(a: &StartupArgs, _ctx: &Ctx, rows: &[Row]) -> Vec<DensityRow> {
    let timeout = Duration::from_secs(a.timeout);
    let mut out = Vec::new();
    for (idx, row) in measurable(rows) {
        let before = mem_available_mib();
        let mut running = Vec::new();
        let mut stopped = format!("cap of {} reached", a.density_max);
        for k in 0..a.density_max {
            let tag = format!("600.{idx:02}{k:03}");
            match start(row, idx * 1000 + k, &tag, timeout) {
                Ok(i) => running.push(i),
                Err(e) => {
                    stopped = format!("start {} failed: {e}", k + 1);
                    break;
                }
            }
            let now = mem_available_mib();
            if before - now >= 2048.0 {
                stopped = "2 GiB used".into();
                break;
            }
            if now < 256.0 {
                stopped = "MemAvailable below 256 MiB".into();
                break;
            }
        }
        // Let lazily-touched memory settle before reading.
        std::thread::sleep(Duration::from_millis(500));
        let d = DensityRow {
            name: row.name.clone(),
            started: running.len(),
            drop_mib: (before - mem_available_mib()).max(0.0),
            stopped,
        };
        eprintln!(
            "bench: density {}: {} started, {:.0} MiB",
            d.name, d.started, d.drop_mib
        );
        for i in running {
            i.stop();
        }
        out.push(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smaps_totals_and_the_guest_mapping() {
        let text = "\
55d0-55e0 r-xp 00000000 08:01 12 /usr/bin/minnow
Size:                 64 kB
Rss:                  40 kB
Pss:                  20 kB
7f0000000000-7f0002000000 rw-p 00000000 00:00 0
Size:              32768 kB
Rss:                 100 kB
Pss:                 100 kB
7f1000000000-7f1002000000 rw-p 00000000 00:00 0 [heap]
Rss:                   8 kB
Pss:                   8 kB
";
        let s = parse_smaps(text, 32768);
        assert_eq!(s.total_rss_kib, 148);
        assert_eq!(s.total_pss_kib, 128);
        assert_eq!(s.guest, vec![(100, 100)]);
        assert!(parse_smaps(text, 1024).guest.is_empty());
    }
}
