//! The container's cgroup as the spec asks for it: `linux.cgroupsPath` (default
//! `/minnow-runc-<id>`) in every hierarchy minnow uses (memory, cpu, pids, devices and
//! freezer on v1; the one cgroup2 tree on a v2-only host), the resources written, the
//! devices cgroup's rules (v1), joined by the init itself (`minnow_cgroup::Cgroup`).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use minnow_cgroup::{Cgroup, CPU_PERIOD_US};
use oci_spec::runtime::{Linux, LinuxDeviceCgroup, LinuxResources};
use serde::{Deserialize, Serialize};

use crate::Error;

/// The hierarchies (v1 controller names) the container gets a directory in.
const V1: [&str; 5] = ["memory", "cpu", "pids", "devices", "freezer"];

/// runc's rules after the spec's (libcontainer/specconv `AllowedDevices`): the standard
/// nodes, /dev/pts, /dev/ptmx, /dev/net/tun, and mknod of any node.
const RUNC_ALLOWED: [&str; 11] = [
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:8 rwm",
    "c 1:7 rwm",
    "c 5:0 rwm",
    "c 1:5 rwm",
    "c 1:9 rwm",
    "c 136:* rwm",
    "c 5:2 rwm",
    "c 10:200 rwm",
];

/// What to create (built from the spec, before anything exists).
#[derive(Clone, Debug, Default)]
pub struct CgroupPlan {
    /// Relative to each hierarchy's root.
    pub path: PathBuf,
    /// (file, value, v1?) in order.
    pub files: Vec<(&'static str, String)>,
    /// Device rules "allow|deny TYPE MAJOR:MINOR ACCESS".
    pub devices: Vec<(bool, String)>,
}

fn rule(d: &LinuxDeviceCgroup) -> (bool, String) {
    let n = |v: Option<i64>| v.map_or("*".to_string(), |v| v.to_string());
    let typ = d.typ().map_or("a".to_string(), |t| t.as_str().to_string());
    let access = d.access().clone().unwrap_or_else(|| "rwm".into());
    let line = if typ == "a" {
        "a".to_string()
    } else {
        format!("{typ} {}:{} {access}", n(d.major()), n(d.minor()))
    };
    (d.allow(), line)
}

/// Limit files: (v1 file name, value), in the order they are written.
type Files = Vec<(&'static str, String)>;
/// Device rules: (allow?, "TYPE MAJOR:MINOR ACCESS").
type Rules = Vec<(bool, String)>;

/// The limit files (v1 names, in order) and device rules of `linux.resources`.
fn files(r: &LinuxResources) -> (Files, Rules) {
    let mut files = Vec::new();
    let mut devices = Vec::new();
    if let Some(m) = r.memory() {
        if let Some(l) = m.limit().filter(|l| *l != 0) {
            files.push(("memory.limit_in_bytes", l.to_string()));
        }
        if let Some(s) = m.swap().filter(|s| *s != 0) {
            files.push(("memory.memsw.limit_in_bytes", s.to_string()));
        }
        if let Some(r) = m.reservation().filter(|r| *r != 0) {
            files.push(("memory.soft_limit_in_bytes", r.to_string()));
        }
        if let Some(s) = m.swappiness().filter(|s| *s <= 100) {
            files.push(("memory.swappiness", s.to_string()));
        }
        if m.disable_oom_killer() == Some(true) {
            files.push(("memory.oom_control", "1".into()));
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares().filter(|s| *s != 0) {
            files.push(("cpu.shares", s.to_string()));
        }
        let period = c.period().filter(|p| *p != 0);
        if let Some(q) = c.quota().filter(|q| *q != 0) {
            let p = period.unwrap_or(CPU_PERIOD_US);
            files.push(("cpu.cfs_period_us", p.to_string()));
            files.push(("cpu.cfs_quota_us", q.to_string()));
        } else if let Some(p) = period {
            files.push(("cpu.cfs_period_us", p.to_string()));
        }
    }
    if let Some(p) = r.pids() {
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".into()
        };
        files.push(("pids.max", v));
    }
    if let Some(d) = r.devices() {
        devices = d.iter().map(rule).collect();
    }
    (files, devices)
}

impl CgroupPlan {
    pub fn from_spec(linux: &Linux, id: &str) -> Result<CgroupPlan, Error> {
        let path = match linux.cgroups_path() {
            Some(p) if p.as_os_str().is_empty() => PathBuf::from(format!("minnow-runc-{id}")),
            Some(p) => {
                if p.to_string_lossy().contains(':') {
                    return Err(Error::CgroupsPathSystemd {
                        path: p.clone(),
                        id: id.to_string(),
                    });
                }
                p.strip_prefix("/").unwrap_or(p).to_path_buf()
            }
            None => PathBuf::from(format!("minnow-runc-{id}")),
        };
        // "/" (or "//", "/."): the hierarchy's root, which the container would share with
        // the host, its limits written there and `delete` trying to remove it (found by
        // the config_json fuzz target's oracle).
        if path.as_os_str().is_empty() || path == Path::new(".") {
            return Err(Error::CgroupsPathRoot {
                path: linux.cgroups_path().clone().unwrap_or_default(),
                id: id.to_string(),
            });
        }
        if path
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(Error::CgroupsPathDots(path));
        }
        let (files, mut devices) = linux.resources().as_ref().map(files).unwrap_or_default();
        if !devices.is_empty() {
            devices.extend(RUNC_ALLOWED.iter().map(|r| (true, r.to_string())));
        }
        Ok(CgroupPlan {
            path,
            files,
            devices,
        })
    }
}

/// The container's cgroup as recorded in its state: the directories, and the ancestors
/// this runtime created (removed again with it when empty).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Placed {
    pub dirs: Vec<PathBuf>,
    pub created_parents: Vec<PathBuf>,
}

/// (controller, mount point) of each v1 hierarchy minnow uses, and the cgroup2 mount.
fn hierarchies() -> (Vec<(String, PathBuf)>, Option<PathBuf>) {
    let text = fs::read_to_string(minnow_cgroup::MOUNTINFO).unwrap_or_default();
    let mut v1: Vec<(String, PathBuf)> = Vec::new();
    let mut v2 = None;
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let (l, r): (Vec<&str>, Vec<&str>) =
            (left.split(' ').collect(), right.split(' ').collect());
        if l.len() < 5 || r.len() < 3 {
            continue;
        }
        let point = PathBuf::from(l[4]);
        match r[0] {
            "cgroup2" if v2.is_none() => v2 = Some(point),
            "cgroup" => {
                for c in r[2].split(',').filter(|c| V1.contains(c)) {
                    if !v1.iter().any(|(_, p)| *p == point) {
                        v1.push((c.to_string(), point.clone()));
                    }
                }
            }
            _ => {}
        }
    }
    (v1, v2)
}

fn write(path: &Path, value: &str) -> Result<(), Error> {
    fs::write(path, value).map_err(|source| Error::CgroupWrite {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

/// The v2 name of a v1 limit file and its value (None where v2 has no such file).
fn v2_file(file: &str, value: &str) -> Option<(&'static str, String)> {
    Some(match file {
        "memory.limit_in_bytes" => ("memory.max", value.to_string()),
        "memory.soft_limit_in_bytes" => ("memory.low", value.to_string()),
        "pids.max" => ("pids.max", value.to_string()),
        "cpu.cfs_quota_us" => ("cpu.max", value.to_string()),
        _ => return None,
    })
}

fn create_dir(dir: &Path, placed: &mut Placed) -> Result<(), Error> {
    let mut missing = Vec::new();
    let mut d = dir.to_path_buf();
    while !d.exists() {
        missing.push(d.clone());
        if !d.pop() {
            break;
        }
    }
    for m in missing.iter().rev() {
        fs::create_dir(m).map_err(|source| Error::CgroupCreate {
            path: m.clone(),
            fix: "; run as root",
            source,
        })?;
        if m != dir {
            placed.created_parents.push(m.clone());
        }
    }
    if missing.first().map(|m| m.as_path()) != Some(dir) {
        return Err(Error::CgroupExists(dir.to_path_buf()));
    }
    placed.dirs.push(dir.to_path_buf());
    Ok(())
}

/// Creates the cgroup and writes the plan; on error, removes what it made.
pub fn create(plan: &CgroupPlan) -> Result<Placed, Error> {
    let mut placed = Placed::default();
    let r = populate(plan, &mut placed);
    if let Err(e) = r {
        remove(&placed);
        return Err(e);
    }
    Ok(placed)
}

fn populate(plan: &CgroupPlan, placed: &mut Placed) -> Result<(), Error> {
    let (v1, v2) = hierarchies();
    if v1.iter().any(|(c, _)| c == "memory") {
        for (file, _) in &plan.files {
            let w = file.split('.').next().unwrap_or("");
            if !v1.iter().any(|(c, _)| c == w) {
                return Err(Error::NoController(w.to_string()));
            }
        }
        if !plan.devices.is_empty() && !v1.iter().any(|(c, _)| c == "devices") {
            return Err(Error::NoDevicesCgroup);
        }
        for (ctrl, mount) in &v1 {
            let dir = mount.join(&plan.path);
            create_dir(&dir, placed)?;
            if ctrl == "devices" {
                for (allow, line) in &plan.devices {
                    let f = if *allow {
                        "devices.allow"
                    } else {
                        "devices.deny"
                    };
                    write(&dir.join(f), line)?;
                }
            }
            for (file, value) in &plan.files {
                if file.split('.').next() != Some(ctrl.as_str()) {
                    continue;
                }
                let path = dir.join(file);
                if *file == "memory.memsw.limit_in_bytes" && !path.exists() {
                    return Err(Error::NoSwapAccounting);
                }
                write(&path, value)?;
            }
        }
        return Ok(());
    }
    let Some(v2) = v2 else {
        return Err(Error::NoCgroupFs);
    };
    let dir = v2.join(&plan.path);
    // Enable the controllers down to the parent.
    let mut parent = v2.clone();
    for c in plan.path.parent().into_iter().flat_map(|p| p.components()) {
        let _ = fs::write(parent.join("cgroup.subtree_control"), "+memory +cpu +pids");
        parent.push(c);
        if !parent.exists() {
            fs::create_dir(&parent).map_err(|source| Error::CgroupCreate {
                path: parent.clone(),
                fix: "",
                source,
            })?;
            placed.created_parents.push(parent.clone());
        }
    }
    let _ = fs::write(parent.join("cgroup.subtree_control"), "+memory +cpu +pids");
    create_dir(&dir, placed)?;
    if !plan.devices.is_empty() {
        super::bpf::attach(&dir, &plan.devices)?;
    }
    write_v2(&dir, &plan.files)
}

/// The limit files (v1 names) written into a cgroup2 directory under their v2 names.
fn write_v2(dir: &Path, files: &[(&'static str, String)]) -> Result<(), Error> {
    let period = files
        .iter()
        .find(|(f, _)| *f == "cpu.cfs_period_us")
        .map(|(_, v)| v.clone());
    for (file, value) in files {
        if let Some((f, mut v)) = v2_file(file, value) {
            if f == "cpu.max" {
                v = format!(
                    "{v} {}",
                    period.clone().unwrap_or_else(|| CPU_PERIOD_US.to_string())
                );
            }
            write(&dir.join(f), &v)?;
        } else if *file != "cpu.cfs_period_us" {
            return Err(Error::NoV2Equivalent(file));
        }
    }
    Ok(())
}

/// `update`: writes `r`'s limits into the container's existing cgroup. On v1 each file
/// goes to the directory that has it (its controller's); a memory limit above the
/// current memory+swap limit is written after the new memory+swap limit, as runc does.
/// Device rules cannot be changed here (as in runc's `update`).
pub fn update(placed: &Placed, r: &LinuxResources) -> Result<(), Error> {
    let (files, devices) = files(r);
    if !devices.is_empty() {
        return Err(Error::UpdateDevices);
    }
    let v2 = placed
        .dirs
        .first()
        .filter(|d| placed.dirs.len() == 1 && d.join("cgroup.controllers").exists());
    if let Some(dir) = v2 {
        return write_v2(dir, &files);
    }
    let find = |file: &str| {
        placed
            .dirs
            .iter()
            .map(|d| d.join(file))
            .find(|p| p.exists())
    };
    let mut pending: Vec<&(&'static str, String)> = files.iter().collect();
    // memory.limit_in_bytes may not exceed memory.memsw.limit_in_bytes: raise memsw first.
    if let Some(i) = pending
        .iter()
        .position(|(f, _)| *f == "memory.memsw.limit_in_bytes")
    {
        let swap = pending.remove(i);
        let grow = find("memory.memsw.limit_in_bytes")
            .and_then(|p| fs::read_to_string(p).ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
            .zip(swap.1.parse::<i64>().ok())
            .is_some_and(|(now, new)| new > now);
        pending.insert(if grow { 0 } else { pending.len() }, swap);
    }
    for (file, value) in pending {
        let path = find(file).ok_or_else(|| {
            if *file == "memory.memsw.limit_in_bytes" {
                Error::NoSwapAccounting
            } else {
                Error::NoController(file.split('.').next().unwrap_or("").to_string())
            }
        })?;
        write(&path, value)?;
    }
    Ok(())
}

/// Kills what is in it and removes the directories and the ancestors this runtime made.
pub fn remove(placed: &Placed) {
    Cgroup {
        dirs: placed.dirs.clone(),
    }
    .remove();
    for p in placed.created_parents.iter().rev() {
        let _ = fs::remove_dir(p);
    }
}

pub fn cgroup(placed: &Placed) -> Cgroup {
    Cgroup {
        dirs: placed.dirs.clone(),
    }
}

/// Freezes (`true`) or thaws the container: the v1 freezer's `freezer.state`, or v2's
/// `cgroup.freeze`; waits until the kernel reports it done.
pub fn freeze(placed: &Placed, frozen: bool) -> Result<(), Error> {
    for dir in &placed.dirs {
        let (file, value, done) = if dir.join("freezer.state").exists() {
            let v = if frozen { "FROZEN" } else { "THAWED" };
            ("freezer.state", v, v)
        } else if dir.join("cgroup.freeze").exists() {
            let v = if frozen { "1" } else { "0" };
            ("cgroup.freeze", v, v)
        } else {
            continue;
        };
        write(&dir.join(file), value)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while fs::read_to_string(dir.join(file))
            .unwrap_or_default()
            .trim()
            != done
        {
            if Instant::now() > deadline {
                return Err(Error::FreezeTimeout {
                    path: dir.join(file),
                    state: done,
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        return Ok(());
    }
    Err(Error::NoFreezer)
}

/// Whether the container's cgroup is frozen.
pub fn frozen(placed: &Placed) -> bool {
    placed.dirs.iter().any(|d| {
        let s = fs::read_to_string(d.join("freezer.state")).unwrap_or_default();
        let f = fs::read_to_string(d.join("cgroup.freeze")).unwrap_or_default();
        s.trim() == "FROZEN" || f.trim() == "1"
    })
}
