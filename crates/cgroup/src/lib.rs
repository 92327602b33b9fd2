//! Cgroups for containers and jailed VMMs: finds the memory, cpu and pids controllers
//! (cgroup v2, v1, or the hybrid layout where v1 hierarchies sit next to an unused cgroup2
//! mount), creates one cgroup per container or jail in each, writes the limits, and removes
//! them afterwards. Used by minnow-container and minnow-jail.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The controllers minnow uses.
pub const CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

/// CFS period used for `--cpus`, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;

/// Resource limits of one container.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    pub cpus: Option<f64>,
    pub pids: Option<u64>,
}

/// A limit file to write: (controller, file name, value, required?). Files that are not
/// required (swap) are written where the kernel has them, and skipped elsewhere.
pub type LimitFile = (&'static str, &'static str, String, bool);

fn cpu_quota(cpus: f64) -> u64 {
    ((cpus * CPU_PERIOD_US as f64).round() as u64).max(1000)
}

/// The files and values that set `limits` on cgroup v1.
pub fn v1_files(limits: &Limits) -> Vec<LimitFile> {
    let mut out = Vec::new();
    if let Some(m) = limits.memory_bytes {
        out.push(("memory", "memory.limit_in_bytes", m.to_string(), true));
        // memory+swap = memory: no swap (needs swap accounting; not every kernel has it).
        out.push((
            "memory",
            "memory.memsw.limit_in_bytes",
            m.to_string(),
            false,
        ));
        out.push(("memory", "memory.swappiness", "0".into(), false));
    }
    if let Some(c) = limits.cpus {
        out.push(("cpu", "cpu.cfs_period_us", CPU_PERIOD_US.to_string(), true));
        out.push(("cpu", "cpu.cfs_quota_us", cpu_quota(c).to_string(), true));
    }
    if let Some(p) = limits.pids {
        out.push(("pids", "pids.max", p.to_string(), true));
    }
    out
}

/// The files and values that set `limits` on cgroup v2.
pub fn v2_files(limits: &Limits) -> Vec<LimitFile> {
    let mut out = Vec::new();
    if let Some(m) = limits.memory_bytes {
        out.push(("memory", "memory.max", m.to_string(), true));
        out.push(("memory", "memory.swap.max", "0".into(), false));
    }
    if let Some(c) = limits.cpus {
        out.push((
            "cpu",
            "cpu.max",
            format!("{} {CPU_PERIOD_US}", cpu_quota(c)),
            true,
        ));
    }
    if let Some(p) = limits.pids {
        out.push(("pids", "pids.max", p.to_string(), true));
    }
    out
}

/// The command-line flags that set each limit, named in messages.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Flags {
    pub memory: &'static str,
    pub cpus: &'static str,
    pub pids: &'static str,
}

/// `minnow container run`'s flags.
pub const CONTAINER_FLAGS: Flags = Flags {
    memory: "--mem-mib",
    cpus: "--cpus",
    pids: "--pids",
};

/// The controllers `limits` needs, with the container flags that ask for them.
pub fn needed(limits: &Limits) -> Vec<(&'static str, &'static str)> {
    needed_with(limits, &CONTAINER_FLAGS)
}

/// The controllers `limits` needs, with the flags (`flags`) that ask for them.
pub fn needed_with(limits: &Limits, flags: &Flags) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    if limits.memory_bytes.is_some() {
        out.push(("memory", flags.memory));
    }
    if limits.cpus.is_some() {
        out.push(("cpu", flags.cpus));
    }
    if limits.pids.is_some() {
        out.push(("pids", flags.pids));
    }
    out
}

/// Where the cgroup filesystems are mounted, from /proc/self/mountinfo.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mounts {
    /// The cgroup2 mount, if any.
    pub v2: Option<PathBuf>,
    /// v1 hierarchies: controller name → mount point.
    pub v1: BTreeMap<String, PathBuf>,
}

/// Parses mountinfo text for cgroup mounts.
pub fn parse_mountinfo(text: &str) -> Mounts {
    let mut m = Mounts::default();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let rfields: Vec<&str> = right.split(' ').collect();
        if fields.len() < 5 || rfields.len() < 3 {
            continue;
        }
        let mount_point = PathBuf::from(fields[4].replace("\\040", " "));
        match rfields[0] {
            "cgroup2" if m.v2.is_none() => m.v2 = Some(mount_point),
            "cgroup" => {
                for opt in rfields[2].split(',') {
                    if CONTROLLERS.contains(&opt) {
                        m.v1.entry(opt.to_string())
                            .or_insert_with(|| mount_point.clone());
                    }
                }
            }
            _ => {}
        }
    }
    m
}

/// Which hierarchy serves each controller on this host.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Layout {
    /// controller → (cgroup version, mount point).
    pub controllers: BTreeMap<String, (u8, PathBuf)>,
    /// A short description for messages and docs: "v2", "v1" or "hybrid".
    pub kind: &'static str,
}

/// Combines the mounts with the controllers the cgroup2 root offers (`v2_controllers`).
/// A controller bound to a v1 hierarchy is not available in v2, so v1 wins.
pub fn layout(mounts: &Mounts, v2_controllers: &str) -> Layout {
    let mut controllers = BTreeMap::new();
    for c in CONTROLLERS {
        if let Some(p) = mounts.v1.get(c) {
            controllers.insert(c.to_string(), (1, p.clone()));
        } else if let Some(p) = &mounts.v2 {
            if v2_controllers.split_whitespace().any(|x| x == c) {
                controllers.insert(c.to_string(), (2, p.clone()));
            }
        }
    }
    let kind = match (mounts.v1.is_empty(), mounts.v2.is_some()) {
        (true, true) => "v2",
        (false, true) => "hybrid",
        (false, false) => "v1",
        (true, false) => "none",
    };
    Layout { controllers, kind }
}

/// Where the kernel lists this process's mounts.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";

/// Detects this host's layout from `mountinfo` (normally [`MOUNTINFO`]).
pub fn detect(mountinfo: &Path) -> Layout {
    let mounts = parse_mountinfo(&fs::read_to_string(mountinfo).unwrap_or_default());
    let v2c = mounts
        .v2
        .as_ref()
        .and_then(|p| fs::read_to_string(p.join("cgroup.controllers")).ok())
        .unwrap_or_default();
    layout(&mounts, &v2c)
}

/// This process's cgroup path in the v1 hierarchy of `controller` (from /proc/self/cgroup).
fn own_v1_path(controller: &str) -> Option<String> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        ctrls
            .split(',')
            .any(|c| c == controller)
            .then(|| path.to_string())
    })
}

/// One container's cgroup directories (one per hierarchy it uses).
#[derive(Clone, Debug, Default)]
pub struct Cgroup {
    pub dirs: Vec<PathBuf>,
}

impl Cgroup {
    /// Creates `minnow-<id>` in every hierarchy that has one of the controllers, and
    /// writes `limits`. v1 cgroups go under this process's own cgroup (so any limit the
    /// caller is under still holds); v2 ones under the root. On error, nothing is left.
    pub fn create(id: &str, limits: &Limits, layout: &Layout) -> Result<Cgroup, Error> {
        Cgroup::create_with(id, limits, layout, &CONTAINER_FLAGS)
    }

    /// [`Cgroup::create`], naming `flags` in messages about the limits.
    pub fn create_with(
        id: &str,
        limits: &Limits,
        layout: &Layout,
        flags: &Flags,
    ) -> Result<Cgroup, Error> {
        for (ctrl, flag) in needed_with(limits, flags) {
            if !layout.controllers.contains_key(ctrl) {
                return Err(Error::NoController {
                    flag,
                    ctrl,
                    layout: layout.kind,
                });
            }
        }
        let mut cg = Cgroup::default();
        let result = cg.populate(id, limits, layout, flags);
        if let Err(e) = result {
            cg.remove();
            return Err(e);
        }
        Ok(cg)
    }

    fn populate(
        &mut self,
        id: &str,
        limits: &Limits,
        layout: &Layout,
        flags: &Flags,
    ) -> Result<(), Error> {
        let name = format!("minnow-{id}");
        let mut by_dir: BTreeMap<PathBuf, (u8, Vec<&str>)> = BTreeMap::new();
        for (ctrl, (version, mount)) in &layout.controllers {
            let dir = if *version == 1 {
                let parent = own_v1_path(ctrl)
                    .map(|p| mount.join(p.trim_start_matches('/')))
                    .filter(|p| p.is_dir())
                    .unwrap_or_else(|| mount.clone());
                parent.join(&name)
            } else {
                mount.join(&name)
            };
            by_dir
                .entry(dir)
                .or_insert((*version, Vec::new()))
                .1
                .push(ctrl);
        }
        let files = |v: u8| {
            if v == 1 {
                v1_files(limits)
            } else {
                v2_files(limits)
            }
        };
        for (dir, (version, ctrls)) in by_dir {
            if version == 2 {
                let parent = dir.parent().unwrap_or(Path::new("/"));
                let enable: Vec<String> = ctrls.iter().map(|c| format!("+{c}")).collect();
                write(&parent.join("cgroup.subtree_control"), &enable.join(" "))?;
            }
            fs::create_dir(&dir).map_err(|source| match source.kind() {
                std::io::ErrorKind::AlreadyExists => Error::Exists {
                    dir: dir.clone(),
                    id: id.into(),
                },
                _ => Error::Create {
                    dir: dir.clone(),
                    source,
                },
            })?;
            self.dirs.push(dir.clone());
            for (ctrl, file, value, required) in files(version) {
                if !ctrls.contains(&ctrl) {
                    continue;
                }
                let path = dir.join(file);
                if !required && !path.exists() {
                    continue;
                }
                match write(&path, &value) {
                    Err(e) if required => {
                        let flag = needed_with(limits, flags)
                            .into_iter()
                            .find(|(c, _)| *c == ctrl)
                            .map_or(ctrl, |(_, f)| f);
                        return Err(Error::Limit {
                            flag,
                            source: Box::new(e),
                        });
                    }
                    Err(e) => log::debug!("optional cgroup setting skipped: {e}"),
                    Ok(()) => {}
                }
            }
        }
        Ok(())
    }

    /// Moves the calling process, which must be single-threaded, into every directory of
    /// this cgroup. In a v1 hierarchy it writes "0" to `tasks`: the kernel moves the
    /// caller alone without taking the global threadgroup lock for writing, which costs an
    /// RCU grace period (5-15 ms here) on `cgroup.procs` (docs/containers.md). A v2 domain
    /// cgroup has no such file, so `cgroup.procs` it is.
    pub fn join_self(&self) -> Result<(), Error> {
        for dir in &self.dirs {
            let tasks = dir.join("tasks");
            let file = if tasks.exists() {
                tasks
            } else {
                dir.join("cgroup.procs")
            };
            write(&file, "0")?;
        }
        Ok(())
    }

    /// Processes still in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        let mut out: Vec<i32> = self
            .dirs
            .iter()
            .filter_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|t| {
                t.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// SIGKILLs everything in the cgroup.
    pub fn kill_all(&self) {
        for dir in &self.dirs {
            let _ = fs::write(dir.join("cgroup.kill"), "1");
        }
        for pid in self.pids() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }

    /// Kills what is left and removes the directories (retrying while they drain).
    pub fn remove(&self) {
        for dir in &self.dirs {
            for attempt in 0..200 {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) => {
                        if attempt == 199 {
                            log::warn!("cannot remove cgroup {}: {e}", dir.display());
                        }
                        self.kill_all();
                        sleep(Duration::from_millis(10));
                    }
                }
            }
        }
    }
}

fn write(path: &Path, value: &str) -> Result<(), Error> {
    fs::write(path, value).map_err(|source| Error::Write {
        value: value.into(),
        path: path.into(),
        source,
    })
}

/// Why a cgroup could not be made, limited or joined; each message is `<what>; <fix>`
/// where there is a fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("this host cannot enforce {flag}: no {ctrl} cgroup controller is available (cgroup layout: {layout}); drop {flag} or enable the {ctrl} controller")]
    NoController {
        flag: &'static str,
        ctrl: &'static str,
        layout: &'static str,
    },
    #[error("cgroup {} already exists: another container or jail has id {id}; give another id, or remove it (rmdir) if nothing runs in it", dir.display())]
    Exists { dir: PathBuf, id: String },
    #[error("cannot create cgroup {}: {source}; run as root", dir.display())]
    Create {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {value:?} to {}: {source}", path.display())]
    Write {
        value: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("this host cannot enforce {flag}: {source}; give {flag} a value the kernel accepts, or drop it")]
    Limit {
        flag: &'static str,
        #[source]
        source: Box<Error>,
    },
}

/// For callers whose errors are still one-line strings.
impl From<Error> for String {
    fn from(e: Error) -> String {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
35 25 0:30 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755
36 35 0:31 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw
37 35 0:32 / /sys/fs/cgroup/cpu rw,relatime shared:11 - cgroup cgroup rw,cpu
38 35 0:33 / /sys/fs/cgroup/memory rw,relatime shared:12 - cgroup cgroup rw,memory
39 35 0:34 / /sys/fs/cgroup/pids rw,relatime shared:13 - cgroup cgroup rw,pids
40 35 0:35 / /sys/fs/cgroup/cpu,cpuacct rw shared:14 - cgroup cgroup rw,cpu,cpuacct
";
    const V2: &str =
        "30 25 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";

    #[test]
    fn hybrid_uses_v1() {
        let m = parse_mountinfo(HYBRID);
        assert_eq!(m.v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(m.v1["cpu"], PathBuf::from("/sys/fs/cgroup/cpu"));
        let l = layout(&m, "hugetlb\n");
        assert_eq!(l.kind, "hybrid");
        assert_eq!(
            l.controllers["memory"],
            (1, PathBuf::from("/sys/fs/cgroup/memory"))
        );
        assert_eq!(l.controllers.len(), 3);
    }

    #[test]
    fn pure_v2() {
        let l = layout(&parse_mountinfo(V2), "cpuset cpu io memory pids\n");
        assert_eq!(l.kind, "v2");
        assert_eq!(l.controllers["pids"], (2, PathBuf::from("/sys/fs/cgroup")));
        let l = layout(&parse_mountinfo(V2), "cpu io\n");
        assert!(!l.controllers.contains_key("memory"));
        let e = Cgroup::create(
            "x",
            &Limits {
                memory_bytes: Some(1 << 20),
                ..Default::default()
            },
            &l,
        )
        .unwrap_err();
        assert!(
            matches!(e, Error::NoController { ctrl: "memory", .. }),
            "{e}"
        );
        let e = e.to_string();
        assert!(
            e.contains("cannot enforce --mem-mib") && e.contains("drop --mem-mib"),
            "{e}"
        );
    }

    #[test]
    fn limit_values() {
        let l = Limits {
            memory_bytes: Some(32 << 20),
            cpus: Some(0.5),
            pids: Some(64),
        };
        let v2 = v2_files(&l);
        assert!(v2.contains(&("memory", "memory.max", "33554432".into(), true)));
        assert!(v2.contains(&("memory", "memory.swap.max", "0".into(), false)));
        assert!(v2.contains(&("cpu", "cpu.max", "50000 100000".into(), true)));
        assert!(v2.contains(&("pids", "pids.max", "64".into(), true)));
        let v1 = v1_files(&l);
        assert!(v1.contains(&("memory", "memory.limit_in_bytes", "33554432".into(), true)));
        assert!(v1.contains(&(
            "memory",
            "memory.memsw.limit_in_bytes",
            "33554432".into(),
            false
        )));
        assert!(v1.contains(&("cpu", "cpu.cfs_quota_us", "50000".into(), true)));
        assert!(v1.contains(&("cpu", "cpu.cfs_period_us", "100000".into(), true)));
        assert!(v1.contains(&("pids", "pids.max", "64".into(), true)));
        assert!(v1_files(&Limits::default()).is_empty());
        assert_eq!(cpu_quota(2.0), 200_000);
        assert_eq!(cpu_quota(0.0001), 1000);
    }
}
