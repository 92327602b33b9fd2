//! From an OCI `config.json` ([`Spec`]) to the engine's [`Plan`]: what minnow supports is
//! converted, what it does not is refused with a one-line error naming the field (never
//! silently ignored).

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::resource::Resource;
use oci_spec::runtime::{LinuxNamespaceType, LinuxResources, Spec};

use super::cgroup::CgroupPlan;
use super::mounts::{self, MountPlan};
use super::{IdMaps, Plan, ProcessPlan};
use crate::security::Security;
use crate::Error;

fn refuse(field: &str, why: &'static str) -> Error {
    Error::Unsupported {
        field: field.to_string(),
        why,
    }
}

/// A console dimension, as the kernel's winsize holds it.
fn clamp16(v: u64) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

fn set<T>(o: &Option<Vec<T>>) -> bool {
    o.as_ref().is_some_and(|v| !v.is_empty())
}

/// The clone flag of a namespace type, or the refusal.
fn ns_flag(t: LinuxNamespaceType) -> Result<CloneFlags, Error> {
    Ok(match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Time => {
            return Err(refuse(
                "linux.namespaces type \"time\"",
                "no time namespaces",
            ))
        }
    })
}

fn rlimit(name: &str) -> Option<Resource> {
    Some(match name {
        "RLIMIT_AS" => Resource::RLIMIT_AS,
        "RLIMIT_CORE" => Resource::RLIMIT_CORE,
        "RLIMIT_CPU" => Resource::RLIMIT_CPU,
        "RLIMIT_DATA" => Resource::RLIMIT_DATA,
        "RLIMIT_FSIZE" => Resource::RLIMIT_FSIZE,
        "RLIMIT_NOFILE" => Resource::RLIMIT_NOFILE,
        "RLIMIT_STACK" => Resource::RLIMIT_STACK,
        "RLIMIT_LOCKS" => Resource::RLIMIT_LOCKS,
        "RLIMIT_MEMLOCK" => Resource::RLIMIT_MEMLOCK,
        "RLIMIT_MSGQUEUE" => Resource::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => Resource::RLIMIT_NICE,
        "RLIMIT_NPROC" => Resource::RLIMIT_NPROC,
        "RLIMIT_RSS" => Resource::RLIMIT_RSS,
        "RLIMIT_RTPRIO" => Resource::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => Resource::RLIMIT_RTTIME,
        "RLIMIT_SIGPENDING" => Resource::RLIMIT_SIGPENDING,
        _ => return None,
    })
}

/// The kernel's limit on the lines of a uid_map or gid_map.
const MAX_MAP_LINES: usize = 340;

/// One of linux.uidMappings / gidMappings as the kernel takes it: (container, host,
/// size) lines, none empty, none past 2^32, no two overlapping on either side, the
/// container's root among them (the init becomes root in the new user namespace, as
/// runc's does).
fn id_map(
    field: &'static str,
    list: &[oci_spec::runtime::LinuxIdMapping],
) -> Result<Vec<(u32, u32, u32)>, Error> {
    let bad = |why: String| Error::IdMapping { field, why };
    if list.is_empty() {
        return Err(bad(
            "a new user namespace needs one; map the container's root, e.g. {\"containerID\": 0, \"hostID\": 100000, \"size\": 65536}".into(),
        ));
    }
    if list.len() > MAX_MAP_LINES {
        return Err(bad(format!(
            "{} entries; the kernel takes at most {MAX_MAP_LINES}",
            list.len()
        )));
    }
    let mut out = Vec::new();
    for m in list {
        let (c, h, n) = (m.container_id(), m.host_id(), m.size());
        let end = |start: u32| u64::from(start) + u64::from(n);
        if n == 0 {
            return Err(bad(format!(
                "containerID {c} hostID {h} has size 0; give the number of ids to map"
            )));
        }
        if end(c) >= 1 << 32 || end(h) >= 1 << 32 {
            return Err(bad(format!(
                "containerID {c} hostID {h} size {n} reaches 4294967295 (no id); make size smaller"
            )));
        }
        for &(c2, h2, n2) in &out {
            let meets = |a: u32, la: u32, b: u32, lb: u32| {
                u64::from(a) < u64::from(b) + u64::from(lb)
                    && u64::from(b) < u64::from(a) + u64::from(la)
            };
            if meets(c, n, c2, n2) || meets(h, n, h2, n2) {
                return Err(bad(format!(
                    "containerID {c} hostID {h} size {n} overlaps containerID {c2} hostID {h2} size {n2}; ranges must not overlap"
                )));
            }
        }
        out.push((c, h, n));
    }
    if !out.iter().any(|&(c, _, _)| c == 0) {
        return Err(bad(
            "the container's root (id 0) is not mapped; the init becomes root in the new user namespace, map containerID 0".into(),
        ));
    }
    Ok(out)
}

/// The uid and gid maps of the plan: for a new user namespace, the spec's (checked,
/// both needed); for one joined by path, the spec's if given (runc 1.1 asks for them;
/// they must be the namespace's own, checked once the init has joined it); none
/// otherwise (mappings without a user namespace are refused).
fn id_maps(l: &oci_spec::runtime::Linux, user: Option<&Option<PathBuf>>) -> Result<IdMaps, Error> {
    let given = set(l.uid_mappings()) || set(l.gid_mappings());
    let both = || -> Result<IdMaps, Error> {
        Ok((
            id_map(
                "linux.uidMappings",
                l.uid_mappings().as_deref().unwrap_or(&[]),
            )?,
            id_map(
                "linux.gidMappings",
                l.gid_mappings().as_deref().unwrap_or(&[]),
            )?,
        ))
    };
    match user {
        Some(None) => both(),
        Some(Some(_)) if given => both(),
        None if given => Err(Error::IdMapping {
            field: "linux.uidMappings/gidMappings",
            why: "given without a user namespace; add {\"type\": \"user\"} to linux.namespaces or remove the mappings".into(),
        }),
        _ => Ok((Vec::new(), Vec::new())),
    }
}

/// The fields minnow refuses, checked before anything is created.
fn check_unsupported(spec: &Spec) -> Result<(), Error> {
    if let Some(h) = spec.hooks() {
        #[allow(deprecated)]
        let lists = [
            ("createContainer", h.create_container()),
            ("startContainer", h.start_container()),
        ];
        for (name, list) in lists {
            if set(list) {
                return Err(refuse(
                    &format!("hooks.{name}"),
                    "hooks in the container's namespaces are not run; prestart, createRuntime, poststart and poststop are",
                ));
            }
        }
    }
    if spec.domainname().as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(refuse("domainname", "only hostname is set"));
    }
    let p = spec.process().as_ref().ok_or(Error::NoProcess)?;
    if p.apparmor_profile().as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(refuse("process.apparmorProfile", "no AppArmor"));
    }
    if p.selinux_label().as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(refuse("process.selinuxLabel", "no SELinux"));
    }
    if p.io_priority().is_some() {
        return Err(refuse("process.ioPriority", "not implemented"));
    }
    if p.scheduler().is_some() {
        return Err(refuse("process.scheduler", "not implemented"));
    }
    if p.exec_cpu_affinity().is_some() {
        return Err(refuse("process.execCPUAffinity", "not implemented"));
    }
    let Some(l) = spec.linux() else {
        return Ok(());
    };
    if l.mount_label().as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(refuse("linux.mountLabel", "no SELinux"));
    }
    if l.intel_rdt().is_some() {
        return Err(refuse("linux.intelRdt", "not implemented"));
    }
    if l.personality().is_some() {
        return Err(refuse("linux.personality", "not implemented"));
    }
    if l.memory_policy().is_some() {
        return Err(refuse("linux.memoryPolicy", "not implemented"));
    }
    if l.time_offsets().as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(refuse("linux.timeOffsets", "no time namespaces"));
    }
    if l.net_devices().as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(refuse("linux.netDevices", "not implemented"));
    }
    Ok(())
}

/// The resources minnow applies (memory, cpu quota/period/shares, pids, the devices
/// cgroup); a non-zero setting of any other is refused.
fn check_resources(r: &LinuxResources) -> Result<(), Error> {
    if let Some(m) = r.memory() {
        let nz = |v: Option<i64>| v.is_some_and(|v| v != 0);
        if nz(m.kernel()) || nz(m.kernel_tcp()) {
            return Err(refuse(
                "linux.resources.memory.kernel/kernelTCP",
                "deprecated kernel memory limits",
            ));
        }
    }
    if let Some(c) = r.cpu() {
        if c.cpus().as_ref().is_some_and(|s| !s.is_empty())
            || c.mems().as_ref().is_some_and(|s| !s.is_empty())
        {
            return Err(refuse("linux.resources.cpu.cpus/mems", "no cpuset cgroup"));
        }
        let nz = |v: Option<i64>| v.is_some_and(|v| v != 0);
        if nz(c.realtime_runtime()) || c.realtime_period().is_some_and(|v| v != 0) {
            return Err(refuse("linux.resources.cpu.realtime*", "no RT scheduling"));
        }
        if nz(c.idle()) {
            return Err(refuse("linux.resources.cpu.idle", "not implemented"));
        }
    }
    if let Some(b) = r.block_io() {
        let weighted = b.weight().is_some_and(|w| w != 0)
            || b.leaf_weight().is_some_and(|w| w != 0)
            || set(b.weight_device())
            || set(b.throttle_read_bps_device())
            || set(b.throttle_write_bps_device())
            || set(b.throttle_read_iops_device())
            || set(b.throttle_write_iops_device());
        if weighted {
            return Err(refuse("linux.resources.blockIO", "no blkio cgroup"));
        }
    }
    if set(r.hugepage_limits()) {
        return Err(refuse(
            "linux.resources.hugepageLimits",
            "no hugetlb cgroup",
        ));
    }
    if r.network().is_some() {
        return Err(refuse(
            "linux.resources.network",
            "no net_cls/net_prio cgroup",
        ));
    }
    if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(refuse("linux.resources.rdma", "no rdma cgroup"));
    }
    if r.unified().as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(refuse("linux.resources.unified", "not implemented"));
    }
    Ok(())
}

/// The root file system's path: `root.path`, relative to the bundle unless absolute.
pub fn rootfs_path(spec: &Spec, bundle: &Path) -> Result<PathBuf, Error> {
    let root = spec.root().as_ref().ok_or(Error::NoRoot)?;
    let path = bundle.join(root.path());
    let path = path
        .canonicalize()
        .map_err(|source| Error::RootPath { path, source })?;
    if !path.is_dir() {
        return Err(Error::RootNotADirectory(path));
    }
    Ok(path)
}

/// Parses a bundle's `config.json` (its bytes), as `minnow-runc create` and `exec` read
/// it; [`plan`] checks and converts the result. The error is serde's, on one line
/// (with where in the file), for the caller to prefix with the path.
pub fn parse(bytes: &[u8]) -> Result<Spec, Error> {
    serde_json::from_slice(bytes).map_err(Error::SpecJson)
}

/// Converts `spec` for container `id` (the bundle is where relative paths start).
pub fn plan(spec: &Spec, bundle: &Path, id: &str) -> Result<Plan, Error> {
    check_unsupported(spec)?;
    let rootfs = rootfs_path(spec, bundle)?;
    let linux = spec.linux().clone().unwrap_or_default();
    let process = spec.process().clone().unwrap_or_default();
    let args = process.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(Error::NoArgs);
    }
    let mut namespaces = Vec::new();
    for ns in linux.namespaces().iter().flatten() {
        let flag = ns_flag(ns.typ())?;
        if namespaces.iter().any(|(f, _)| *f == flag) {
            return Err(Error::NamespaceTwice(ns.typ()));
        }
        namespaces.push((flag, ns.path().clone()));
    }
    let user = namespaces
        .iter()
        .find(|(f, _)| *f == CloneFlags::CLONE_NEWUSER)
        .map(|(_, p)| p);
    let (uid_map, gid_map) = id_maps(&linux, user)?;
    let new_mount_ns = namespaces
        .iter()
        .any(|(f, p)| *f == CloneFlags::CLONE_NEWNS && p.is_none());
    if !new_mount_ns {
        return Err(refuse(
            "a container without a new mount namespace",
            "the root needs one",
        ));
    }
    if let Some(r) = linux.resources() {
        check_resources(r)?;
    }
    let mut rlimits = Vec::new();
    for r in process.rlimits().iter().flatten() {
        let name = serde_json::to_value(r.typ())
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let res = rlimit(&name)
            .ok_or_else(|| refuse(&format!("process.rlimits type {name}"), "unknown here"))?;
        rlimits.push((res, r.soft(), r.hard()));
    }
    let mut mounts_plan = Vec::new();
    for m in spec.mounts().iter().flatten() {
        mounts_plan.push(MountPlan::from_oci(m, bundle)?);
    }
    let propagation = match linux.rootfs_propagation().as_deref() {
        None | Some("") => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        Some(p) => mounts::propagation(p).ok_or_else(|| Error::Propagation(p.to_string()))?,
    };
    let mut security = Security::from_spec(spec, false)?;
    // Exactly the spec's lists (from_spec adds to Docker's for `container run`).
    security.masked_paths = linux
        .masked_paths()
        .iter()
        .flatten()
        .map(PathBuf::from)
        .collect();
    // runc raises an ambient capability only where the kernel allows it (in permitted
    // and inheritable) and goes on without the others; `runc spec` relies on it.
    let caps = &mut security.capabilities;
    if let Some(ambient) = caps.ambient().clone() {
        let keep = |c: &oci_spec::runtime::Capability| {
            caps.permitted().as_ref().is_some_and(|p| p.contains(c))
                && caps.inheritable().as_ref().is_some_and(|i| i.contains(c))
        };
        let kept: oci_spec::runtime::Capabilities =
            ambient.iter().filter(|c| keep(c)).copied().collect();
        caps.set_ambient(Some(kept));
    }
    let mut sysctl: Vec<(String, String)> = linux
        .sysctl()
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    sysctl.sort();
    let cwd = process.cwd().to_string_lossy().to_string();
    if !cwd.starts_with('/') {
        return Err(Error::CwdNotAbsolute(cwd));
    }
    #[allow(deprecated)]
    let hooks_pause = spec
        .hooks()
        .as_ref()
        .is_some_and(|h| set(h.prestart()) || set(h.create_runtime()));
    Ok(Plan {
        id: id.to_string(),
        hooks_pause,
        rootfs,
        hostname: spec.hostname().clone().filter(|h| !h.is_empty()),
        namespaces,
        uid_map,
        gid_map,
        mounts: mounts_plan,
        devices: linux.devices().clone().unwrap_or_default(),
        sysctl,
        propagation,
        process: ProcessPlan {
            args,
            env: process.env().clone().unwrap_or_default(),
            cwd,
            umask: process.user().umask(),
            rlimits,
            oom_score_adj: process.oom_score_adj(),
            terminal: process.terminal() == Some(true),
            console_size: process
                .console_size()
                .as_ref()
                .map(|b| (clamp16(b.height()), clamp16(b.width()))),
        },
        security,
        cgroup: CgroupPlan::from_spec(&linux, id)?,
        front: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{map_text, parse_map};
    use super::*;

    fn bundle() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        dir
    }

    fn spec_with(edit: impl FnOnce(&mut serde_json::Value)) -> Spec {
        let mut v = serde_json::to_value(Spec::default()).unwrap();
        edit(&mut v);
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_default_spec_plans() {
        let b = bundle();
        let p = plan(&Spec::default(), b.path(), "t").unwrap();
        assert_eq!(p.rootfs, b.path().join("rootfs").canonicalize().unwrap());
        assert_eq!(p.process.args, vec!["sh".to_string()]);
        assert!(p
            .namespaces
            .iter()
            .any(|(f, _)| *f == CloneFlags::CLONE_NEWPID));
        assert!(p.mounts.iter().any(|m| m.typ == "proc"));
        assert_eq!(p.cgroup.path, PathBuf::from("minnow-runc-t"));
        assert!(!p.hooks_pause);
        // runc's rule: an ambient capability not in inheritable is left out.
        let s = spec_with(|v| {
            v["process"]["capabilities"] = serde_json::json!({
                "bounding": ["CAP_KILL"], "permitted": ["CAP_KILL"], "effective": ["CAP_KILL"],
                "inheritable": [], "ambient": ["CAP_KILL"]
            })
        });
        let c = plan(&s, b.path(), "t").unwrap().security.capabilities;
        assert!(c.ambient().as_ref().unwrap().is_empty(), "{c:?}");
        assert_eq!(c.permitted().as_ref().unwrap().len(), 1);
    }

    #[test]
    fn a_terminal_and_its_size_are_planned() {
        let b = bundle();
        let p = plan(&Spec::default(), b.path(), "t").unwrap();
        assert!(!p.process.terminal);
        let s = spec_with(|v| {
            v["process"]["terminal"] = true.into();
            v["process"]["consoleSize"] = serde_json::json!({"height": 30, "width": 100000});
        });
        let p = plan(&s, b.path(), "t").unwrap();
        assert!(p.process.terminal);
        assert_eq!(p.process.console_size, Some((30, u16::MAX)));
    }

    #[test]
    fn unsupported_fields_are_named() {
        let b = bundle();
        type Edit = fn(&mut serde_json::Value);
        let cases: [(&str, Edit); 5] = [
            ("\"time\"", |v| {
                v["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(serde_json::json!({"type": "time"}))
            }),
            ("process.selinuxLabel", |v| {
                v["process"]["selinuxLabel"] = "x".into()
            }),
            ("linux.resources.cpu.cpus", |v| {
                v["linux"]["resources"]["cpu"] = serde_json::json!({"cpus": "0"})
            }),
            (
                "hooks.startContainer",
                |v| v["hooks"] = serde_json::json!({"startContainer": [{"path": "/bin/true"}]}),
            ),
            ("cgroupsPath", |v| {
                v["linux"]["cgroupsPath"] = "system.slice:minnow:t".into()
            }),
        ];
        for (field, edit) in cases {
            let e = plan(&spec_with(edit), b.path(), "t")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(field) && e.contains(';') && !e.contains('\n'),
                "{field}: {e}"
            );
        }
    }

    fn with_user_ns(v: &mut serde_json::Value) {
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "user"}));
        let map = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        v["linux"]["uidMappings"] = map.clone();
        v["linux"]["gidMappings"] = map;
    }

    #[test]
    fn a_user_namespace_and_its_mappings_are_planned() {
        let b = bundle();
        let p = plan(&spec_with(with_user_ns), b.path(), "t").unwrap();
        assert!(p.new_user_ns());
        assert_eq!(p.uid_map, vec![(0, 100000, 65536)]);
        assert_eq!(p.gid_map, vec![(0, 100000, 65536)]);
        assert_eq!(parse_map(&map_text(&p.uid_map)), p.uid_map);
        assert_eq!(map_text(&p.uid_map), "0 100000 65536\n");
        // Joined by path: no maps of its own.
        let s = spec_with(|v| {
            v["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"type": "user", "path": "/proc/1/ns/user"}))
        });
        let p = plan(&s, b.path(), "t").unwrap();
        assert!(!p.new_user_ns() && p.uid_map.is_empty());
        // Joined with mappings (runc 1.1 wants them): kept, to be checked, not written.
        let s = spec_with(|v| {
            with_user_ns(v);
            let ns = v["linux"]["namespaces"].as_array_mut().unwrap();
            ns.last_mut().unwrap()["path"] = "/proc/1/ns/user".into();
        });
        let p = plan(&s, b.path(), "t").unwrap();
        assert!(!p.new_user_ns() && p.uid_map == vec![(0, 100000, 65536)]);
        let p = plan(&Spec::default(), b.path(), "t").unwrap();
        assert!(!p.new_user_ns() && p.uid_map.is_empty());
    }

    #[test]
    fn bad_mappings_are_refused_on_one_line() {
        let b = bundle();
        type Edit = fn(&mut serde_json::Value);
        let cases: [(&str, Edit); 7] = [
            ("size 0", |v| {
                with_user_ns(v);
                v["linux"]["uidMappings"][0]["size"] = 0.into();
            }),
            ("overlaps", |v| {
                with_user_ns(v);
                v["linux"]["uidMappings"]
                    .as_array_mut()
                    .unwrap()
                    .push(serde_json::json!({"containerID": 65535, "hostID": 0, "size": 2}));
            }),
            ("overlaps", |v| {
                with_user_ns(v);
                v["linux"]["gidMappings"]
                    .as_array_mut()
                    .unwrap()
                    .push(serde_json::json!({"containerID": 70000, "hostID": 165535, "size": 1}));
            }),
            ("4294967295", |v| {
                with_user_ns(v);
                v["linux"]["uidMappings"][0]["hostID"] = 4294967295u32.into();
            }),
            ("linux.uidMappings: a new user namespace needs one", |v| {
                with_user_ns(v);
                v["linux"]["uidMappings"] = serde_json::json!([]);
            }),
            ("without a user namespace", |v| {
                with_user_ns(v);
                v["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|n| n["type"] != "user");
            }),
            ("size 0", |v| {
                with_user_ns(v);
                let ns = v["linux"]["namespaces"].as_array_mut().unwrap();
                ns.last_mut().unwrap()["path"] = "/proc/1/ns/user".into();
                v["linux"]["gidMappings"][0]["size"] = 0.into();
            }),
        ];
        for (what, edit) in cases {
            let e = plan(&spec_with(edit), b.path(), "t")
                .unwrap_err()
                .to_string();
            assert!(e.contains(what) && !e.contains('\n'), "{what}: {e}");
        }
        let s = spec_with(|v| {
            with_user_ns(v);
            v["linux"]["uidMappings"][0]["containerID"] = 1.into();
        });
        let e = plan(&s, b.path(), "t").unwrap_err().to_string();
        assert!(e.contains("id 0") && e.contains("linux.uidMappings"), "{e}");
    }

    /// fuzz/regressions/config_json/crash-... (cgroupsPath "/"): the plan had an empty
    /// cgroup path, i.e. the hierarchy's root.
    #[test]
    fn a_cgroups_path_naming_the_root_is_refused() {
        let b = bundle();
        for path in ["/", "//", "/.", "/./"] {
            let s = spec_with(|v| v["linux"]["cgroupsPath"] = path.into());
            let e = plan(&s, b.path(), "t").unwrap_err().to_string();
            assert!(
                e.contains("linux.cgroupsPath") && e.contains("root cgroup"),
                "{path}: {e}"
            );
        }
        let s = spec_with(|v| v["linux"]["cgroupsPath"] = "/minnow/t".into());
        assert_eq!(
            plan(&s, b.path(), "t").unwrap().cgroup.path,
            PathBuf::from("minnow/t")
        );
    }

    #[test]
    fn resources_become_cgroup_files_and_rules() {
        let b = bundle();
        let s = spec_with(|v| {
            v["linux"]["cgroupsPath"] = "/a/b".into();
            v["linux"]["resources"] = serde_json::json!({
                "memory": {"limit": 1048576}, "cpu": {"quota": 50000, "period": 100000},
                "pids": {"limit": 5}, "devices": [{"allow": false, "access": "rwm"}]
            });
        });
        let p = plan(&s, b.path(), "t").unwrap();
        assert_eq!(p.cgroup.path, PathBuf::from("a/b"));
        let files: Vec<(&str, &str)> = p
            .cgroup
            .files
            .iter()
            .map(|(f, v)| (*f, v.as_str()))
            .collect();
        assert!(
            files.contains(&("memory.limit_in_bytes", "1048576")),
            "{files:?}"
        );
        assert!(files.contains(&("cpu.cfs_quota_us", "50000")), "{files:?}");
        assert!(files.contains(&("pids.max", "5")), "{files:?}");
        assert_eq!(p.cgroup.devices[0], (false, "a".to_string()));
        assert!(p.cgroup.devices.contains(&(true, "c 1:3 rwm".to_string())));
    }
}
