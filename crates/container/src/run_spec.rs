//! `minnow container run`'s OCI spec and engine plan: Docker's defaults (`defaults.rs`)
//! changed by Docker's flags, with the image's command, environment and working
//! directory, the container's name as hostname and `--net`; planned by the engine as any
//! config.json is, with the union root (`rootfs::overlay_options`) and the rest of
//! [`Front`].
//!
//! What stays as `container run` always had it: only /proc, /dev (with /dev/pts and
//! /dev/shm) and a read-only /sys are mounted (not Docker's /dev/mqueue and
//! /sys/fs/cgroup), no sysctls are written, `/` is rprivate, the cgroup is
//! `minnow_cgroup`'s (limits, not the spec's resources) and devices are refused by
//! nodev mounts rather than a devices cgroup.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Mount, Spec};

use crate::defaults::Flags;
use crate::engine::{self, Front, Plan};
use crate::security::{self, Security};
use crate::Error;

/// The mounts of Docker's defaults that `container run` keeps.
const MOUNTS: [&str; 5] = ["/proc", "/dev", "/dev/pts", "/dev/shm", "/sys"];

/// Docker's defaults changed by `flags`, and the security settings of that spec: before
/// anything exists, so a bad flag or profile leaves nothing behind. `lowers` are the
/// image's layers, bottom first (for `--user NAME`).
pub fn spec(flags: &Flags, lowers: &[PathBuf]) -> Result<(Spec, Security), Error> {
    let passwd = security::passwd_root(lowers);
    let spec = security::flags_spec(flags, passwd.as_deref())?;
    let security = Security::from_flags_spec(&spec, flags)?;
    Ok((spec, security))
}

/// The workload, as the image and the command line give it.
pub struct Workload {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub hostname: String,
    /// The host's network namespace (`--net host`).
    pub host_net: bool,
    /// Stop before pivot_root for the supervisor to make the veth pair (`--net veth`).
    pub veth: bool,
    /// Bind the host's /sys rather than mount a new sysfs.
    pub bind_sys: bool,
}

/// The /sys mount: a new sysfs or the host's bound, read-only all the way down (`rro`),
/// privileged or not.
fn sys_mount(bind: bool) -> Result<Mount, Error> {
    let (typ, opts): (&str, &[&str]) = match bind {
        true => ("bind", &["rbind", "rro", "nosuid", "nodev", "noexec"]),
        false => ("sysfs", &["rro", "nosuid", "nodev", "noexec"]),
    };
    let m = serde_json::json!({
        "destination": "/sys", "type": typ, "source": if bind { "/sys" } else { "sysfs" },
        "options": opts,
    });
    serde_json::from_value(m).map_err(Error::SpecJson)
}

/// Plans container `id` in `dir` (which holds `rootfs/`): `spec` (from [`spec`], its
/// seccomp already compiled into `security`) with `w`, on an overlay with `overlay`'s
/// options.
pub fn plan(
    mut spec: Spec,
    security: Security,
    w: &Workload,
    dir: &Path,
    id: &str,
    overlay: String,
) -> Result<Plan, Error> {
    let mut process = spec.process().clone().unwrap_or_default();
    let cwd = match w.cwd.starts_with('/') {
        true => w.cwd.clone(),
        false => format!("/{}", w.cwd),
    };
    process
        .set_args(Some(w.argv.clone()))
        .set_env(Some(w.env.clone()))
        .set_cwd(cwd.into());
    spec.set_process(Some(process));
    spec.set_hostname(Some(w.hostname.clone()));
    let mut mounts: Vec<Mount> = spec
        .mounts()
        .iter()
        .flatten()
        .filter(|m| MOUNTS.iter().any(|d| m.destination() == Path::new(d)))
        .filter(|m| m.destination() != Path::new("/sys"))
        .cloned()
        .collect();
    mounts.push(sys_mount(w.bind_sys)?);
    spec.set_mounts(Some(mounts));
    let mut linux = spec.linux().clone().unwrap_or_default();
    let namespaces = linux
        .namespaces()
        .iter()
        .flatten()
        .filter(|n| !(w.host_net && n.typ() == LinuxNamespaceType::Network))
        .cloned()
        .collect();
    linux
        .set_namespaces(Some(namespaces))
        .set_seccomp(None)
        .set_sysctl(None)
        .set_devices(None)
        .set_resources(None)
        .set_rootfs_propagation(Some("rprivate".into()));
    spec.set_linux(Some(linux));
    let mut plan = engine::spec::plan(&spec, dir, id)?;
    plan.front = Front {
        overlay: Some(overlay),
        nodev: !security.privileged,
        loopback: !w.host_net,
        cli: true,
    };
    plan.security = security;
    plan.hooks_pause = w.veth;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload() -> Workload {
        Workload {
            argv: vec!["sh".into()],
            env: vec!["A=1".into()],
            cwd: "srv".into(),
            hostname: "box".into(),
            host_net: false,
            veth: false,
            bind_sys: false,
        }
    }

    #[test]
    fn dockers_defaults_planned_on_an_overlay() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        let (spec, security) = spec(&Flags::default(), &[]).unwrap();
        assert!(security.filter.is_some());
        let p = plan(spec, security, &workload(), dir.path(), "i", "o".into()).unwrap();
        assert_eq!(p.front.overlay.as_deref(), Some("o"));
        assert!(p.front.nodev && p.front.loopback && p.front.cli && !p.hooks_pause);
        assert_eq!(p.process.cwd, "/srv");
        assert_eq!(p.hostname.as_deref(), Some("box"));
        assert!(p.sysctl.is_empty() && p.devices.is_empty());
        let dests: Vec<&Path> = p.mounts.iter().map(|m| m.destination.as_path()).collect();
        assert_eq!(dests.len(), MOUNTS.len(), "{dests:?}");
        let sys = p.mounts.iter().find(|m| m.typ == "sysfs").unwrap();
        assert!(sys.recursive_ro);
        assert!(p
            .namespaces
            .iter()
            .any(|(f, _)| *f == nix::sched::CloneFlags::CLONE_NEWNET));
        assert_eq!(
            crate::caps::mask(p.security.capabilities.effective().as_ref().unwrap()),
            0xa80425fb
        );
    }

    #[test]
    fn host_net_and_privileged() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        let flags = Flags {
            privileged: true,
            ..Flags::default()
        };
        let (spec, security) = spec(&flags, &[]).unwrap();
        let w = Workload {
            host_net: true,
            bind_sys: true,
            ..workload()
        };
        let p = plan(spec, security, &w, dir.path(), "i", "o".into()).unwrap();
        assert!(!p.front.nodev && !p.front.loopback && p.security.filter.is_none());
        assert!(!p
            .namespaces
            .iter()
            .any(|(f, _)| *f == nix::sched::CloneFlags::CLONE_NEWNET));
        let sys = p.mounts.iter().find(|m| m.destination == Path::new("/sys"));
        assert!(sys.is_some_and(|m| m.typ == "bind" && m.recursive_ro));
    }
}
