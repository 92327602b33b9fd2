//! Docker's defaults as an OCI spec, and the `docker run` flags that change security
//! settings, each as Docker 20.10 turns them into config.json (research: the configs
//! Docker passed to runc on the build machine, `testdata/docker/`).
//!
//! [`docker_spec`] is a default `docker run`'s config.json minus what is Docker's own
//! business: the prestart hook (libnetwork), `linux.cgroupsPath` (`/docker/<id>`), the
//! root path (its overlay), the `/etc/resolv.conf`, `/etc/hostname` and `/etc/hosts`
//! binds, the hostname and `HOSTNAME=` (the container id) and the zero-valued resources
//! Docker writes (`memory.disableOOMKiller: false`, `cpu.shares: 0`, `blockIO.weight: 0`:
//! "not set"). `root.path` is `rootfs` (relative to the bundle) and `process.args` is the
//! caller's.
//!
//! The flag helpers change a spec in place. Their order matters as in Docker, where the
//! seccomp profile is computed from the final bounding set: [`apply_flags`] applies a
//! whole [`Flags`] in Docker's order (user, capabilities, privileged, seccomp,
//! no-new-privileges, read-only).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilities, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType,
    LinuxNamespace, LinuxNamespaceType, LinuxResources, LinuxSeccomp, Mount, Spec,
};

use crate::{caps, seccomp};

/// Docker's masked paths (`oci/defaults.go`), in its order.
pub const MASKED_PATHS: [&str; 10] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

/// Docker's read-only paths, in its order.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The sysctls Docker sets for a container with its own network namespace.
pub const SYSCTLS: [(&str, &str); 2] = [
    ("net.ipv4.ip_unprivileged_port_start", "0"),
    ("net.ipv4.ping_group_range", "0 2147483647"),
];

/// A device cgroup rule: (allow, type, major, minor), access `rwm`; type None with no
/// numbers is "all devices".
pub type DeviceRule = (bool, Option<LinuxDeviceType>, Option<i64>, Option<i64>);

/// Docker's device cgroup rules, in its order.
pub const DEVICE_RULES: [DeviceRule; 8] = [
    (false, None, None, None),
    (true, Some(LinuxDeviceType::C), Some(1), Some(5)), // /dev/zero
    (true, Some(LinuxDeviceType::C), Some(1), Some(3)), // /dev/null
    (true, Some(LinuxDeviceType::C), Some(1), Some(9)), // /dev/urandom
    (true, Some(LinuxDeviceType::C), Some(1), Some(8)), // /dev/random
    (true, Some(LinuxDeviceType::C), Some(5), Some(0)), // /dev/tty
    (true, Some(LinuxDeviceType::C), Some(5), Some(1)), // /dev/console
    (false, Some(LinuxDeviceType::C), Some(10), Some(229)), // /dev/fuse
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Caps(#[from] caps::Error),
    #[error(transparent)]
    Seccomp(#[from] seccomp::Error),
    #[error("--security-opt seccomp={path}: cannot read the profile; give a readable Docker or OCI seccomp JSON file, or unconfined")]
    ReadProfile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--security-opt {value:?}: unknown option; use seccomp=unconfined, seccomp=FILE or no-new-privileges")]
    SecurityOpt { value: String },
    #[error("--user {value:?}: not UID[:GID] or a user of the image; use numbers or a name in the image's /etc/passwd")]
    User { value: String },
    #[error("--user {name:?}: no such user in {passwd}; use a numeric UID, or add the user to the image")]
    NoSuchUser { name: String, passwd: PathBuf },
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(dest.into())
        .set_typ(Some(typ.into()))
        .set_source(Some(source.into()))
        .set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

/// Docker's mounts without its resolv.conf/hostname/hosts binds, in its order.
pub fn docker_mounts() -> Vec<Mount> {
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["ro", "nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"],
        ),
    ]
}

/// Docker's device cgroup rules as OCI objects.
pub fn docker_device_rules() -> Vec<LinuxDeviceCgroup> {
    DEVICE_RULES
        .iter()
        .map(|&(allow, typ, major, minor)| device_rule(allow, typ, major, minor))
        .collect()
}

fn device_rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
) -> LinuxDeviceCgroup {
    let mut d = LinuxDeviceCgroup::default();
    d.set_allow(allow)
        .set_typ(typ)
        .set_major(major)
        .set_minor(minor)
        .set_access(Some("rwm".into()));
    d
}

/// The config.json of a default Docker 20.10 `docker run` (see the module documentation
/// for what is left out).
pub fn docker_spec() -> Spec {
    let mut spec = Spec::default();
    spec.set_version("1.0.2-dev".into())
        .set_hostname(None)
        .set_annotations(None)
        .set_mounts(Some(docker_mounts()))
        .set_hooks(None);

    let mut process = spec.process().clone().unwrap_or_default();
    let mut user = process.user().clone();
    user.set_uid(0)
        .set_gid(0)
        .set_additional_gids(Some(vec![0]));
    process
        .set_user(user)
        .set_env(Some(vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ]))
        .set_cwd("/".into())
        .set_capabilities(Some(caps::docker_default()))
        .set_no_new_privileges(None)
        .set_rlimits(None)
        .set_oom_score_adj(Some(0))
        .set_terminal(None)
        .set_console_size(None);
    spec.set_process(Some(process));

    let mut root = spec.root().clone().unwrap_or_default();
    root.set_path("rootfs".into()).set_readonly(None);
    spec.set_root(Some(root));

    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut resources = LinuxResources::default();
    resources.set_devices(Some(docker_device_rules()));
    let namespaces = [
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
    ]
    .into_iter()
    .map(|t| {
        let mut ns = LinuxNamespace::default();
        ns.set_typ(t);
        ns
    })
    .collect();
    linux
        .set_sysctl(Some(
            SYSCTLS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ))
        .set_resources(Some(resources))
        .set_cgroups_path(None)
        .set_namespaces(Some(namespaces))
        .set_masked_paths(Some(MASKED_PATHS.iter().map(|p| p.to_string()).collect()))
        .set_readonly_paths(Some(READONLY_PATHS.iter().map(|p| p.to_string()).collect()))
        .set_seccomp(Some(seccomp::docker_default(&caps::DOCKER_DEFAULT)));
    spec.set_linux(Some(linux));
    spec
}

fn bounding(spec: &Spec) -> Vec<Capability> {
    let mut v: Vec<Capability> = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.bounding().clone())
        .into_iter()
        .flatten()
        .collect();
    v.sort_by_key(|c| caps::mask([c]));
    v
}

fn uid(spec: &Spec) -> u32 {
    spec.process().as_ref().map_or(0, |p| p.user().uid())
}

/// Writes a capability list the way Docker does (`oci.SetCapabilities`): bounding,
/// effective and permitted for root; only bounding for another user (execve gives a
/// non-root process no capabilities anyway); empty sets left out.
fn set_caps(spec: &mut Spec, list: &[Capability]) {
    let set: Option<Capabilities> = (!list.is_empty()).then(|| list.iter().copied().collect());
    let mut c = LinuxCapabilities::default();
    c.set_bounding(set.clone())
        .set_inheritable(None)
        .set_ambient(None);
    if uid(spec) == 0 {
        c.set_effective(set.clone()).set_permitted(set);
    } else {
        c.set_effective(None).set_permitted(None);
    }
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_capabilities(Some(c));
    spec.set_process(Some(process));
}

/// Whether the spec's seccomp is Docker's default for its bounding set (so a change of
/// capabilities must recompute it, as Docker computes it from the final set).
fn has_docker_default_seccomp(spec: &Spec) -> bool {
    let current = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    current.is_some_and(|s| *s == seccomp::docker_default(&bounding(spec)))
}

fn set_seccomp(spec: &mut Spec, s: Option<LinuxSeccomp>) {
    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_seccomp(s);
    spec.set_linux(Some(linux));
}

/// `--cap-add` / `--cap-drop` (names with or without `CAP_`, any case, or `ALL`), as
/// Docker's `TweakCapabilities`: add ALL = every capability (of this host: a capability
/// the host lacks cannot be granted) but the dropped ones; drop ALL = only the added
/// ones; else the spec's bounding set minus the dropped plus the added. A Docker-default
/// seccomp profile is recomputed for the new set (`--cap-add SYS_ADMIN` allows mount,
/// unshare, setns... as in Docker).
pub fn cap_add_drop(spec: &mut Spec, add: &[&str], drop: &[&str]) -> Result<(), Error> {
    if add.is_empty() && drop.is_empty() {
        return Ok(());
    }
    let is_all =
        |n: &&str| n.trim().eq_ignore_ascii_case("ALL") || n.trim().eq_ignore_ascii_case("CAP_ALL");
    let parse_list = |l: &[&str]| -> Result<Vec<Capability>, Error> {
        Ok(l.iter()
            .filter(|n| !is_all(n))
            .map(|n| caps::parse(n))
            .collect::<Result<_, _>>()?)
    };
    let adds = parse_list(add)?;
    let drops = parse_list(drop)?;
    let recompute = has_docker_default_seccomp(spec);
    let mut list: Vec<Capability> = if add.iter().any(is_all) {
        caps::host_bounding()?
            .into_iter()
            .filter(|c| !drops.contains(c))
            .collect()
    } else if drop.iter().any(is_all) {
        adds.clone()
    } else {
        let mut l: Vec<Capability> = bounding(spec)
            .into_iter()
            .filter(|c| !drops.contains(c))
            .collect();
        l.extend(adds.iter().copied());
        l
    };
    list.sort_by_key(|c| caps::mask([c]));
    list.dedup();
    set_caps(spec, &list);
    if recompute {
        set_seccomp(spec, Some(seccomp::docker_default(&list)));
    }
    Ok(())
}

/// `--privileged`: every capability this host's bounding set has (Docker 20.10 asks for
/// its fixed list of 38, which fails here for CAP_SYS_RESOURCE; Podman asks for the
/// host's, as this does), no seccomp, no masked or read-only paths, `/sys` and
/// `/sys/fs/cgroup` read-write, every device allowed and the host's devices created.
pub fn privileged(spec: &mut Spec) {
    let host = caps::host_bounding().unwrap_or_else(|e| {
        log::warn!("--privileged: {e}; keeping Docker's default capabilities");
        caps::DOCKER_DEFAULT.to_vec()
    });
    let devices = host_devices(Path::new("/dev")).unwrap_or_else(|e| {
        log::warn!("--privileged: cannot list /dev ({e}); no host devices added");
        Vec::new()
    });
    privileged_with(spec, &host, devices);
}

/// [`privileged`] with the host's capabilities and devices given.
pub fn privileged_with(spec: &mut Spec, host_caps: &[Capability], devices: Vec<LinuxDevice>) {
    set_caps(spec, host_caps);
    let mut linux = spec.linux().clone().unwrap_or_default();
    linux
        .set_seccomp(None)
        .set_masked_paths(None)
        .set_readonly_paths(None)
        .set_devices((!devices.is_empty()).then_some(devices));
    let mut resources = linux.resources().clone().unwrap_or_default();
    resources.set_devices(Some(vec![device_rule(true, None, None, None)]));
    linux.set_resources(Some(resources));
    spec.set_linux(Some(linux));
    if let Some(mounts) = spec.mounts().clone() {
        let mounts = mounts
            .into_iter()
            .map(|mut m| {
                let d = m.destination().clone();
                if d == Path::new("/sys") || d == Path::new("/sys/fs/cgroup") {
                    let opts = m
                        .options()
                        .clone()
                        .map(|o| o.into_iter().filter(|o| o != "ro").collect());
                    m.set_options(opts);
                }
                m
            })
            .collect();
        spec.set_mounts(Some(mounts));
    }
}

/// The character and block devices under `dir`, as runc's `HostDevices` lists them for
/// Docker's `--privileged` (skips pts, shm, fd, mqueue, .lxc, .lxd-mounts, .udev,
/// `console`, symbolic links and FIFOs), sorted by path.
pub fn host_devices(dir: &Path) -> std::io::Result<Vec<LinuxDevice>> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    let mut out = Vec::new();
    for e in entries {
        let path = e.path();
        let name = e.file_name();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue; // gone meanwhile
        };
        let ft = meta.file_type();
        if ft.is_dir() {
            if matches!(
                name.to_str(),
                Some("pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev")
            ) {
                continue;
            }
            out.extend(host_devices(&path)?);
            continue;
        }
        if name == "console" {
            continue;
        }
        let typ = if ft.is_char_device() {
            LinuxDeviceType::C
        } else if ft.is_block_device() {
            LinuxDeviceType::B
        } else {
            continue;
        };
        let rdev = meta.rdev();
        let mut d = LinuxDevice::default();
        d.set_path(path)
            .set_typ(typ)
            .set_major(nix::sys::stat::major(rdev) as i64)
            .set_minor(nix::sys::stat::minor(rdev) as i64)
            .set_file_mode(Some(meta.mode() & 0o7777))
            .set_uid(Some(meta.uid()))
            .set_gid(Some(meta.gid()));
        out.push(d);
    }
    Ok(out)
}

/// `--security-opt seccomp=unconfined` (no filter) or `seccomp=FILE` (a Docker or OCI
/// profile, converted as Docker converts it for the spec's bounding set). Docker ignores
/// a profile for a privileged container; so does [`apply_flags`].
pub fn seccomp_opt(spec: &mut Spec, value: &str) -> Result<(), Error> {
    if value == "unconfined" {
        set_seccomp(spec, None);
        return Ok(());
    }
    let path = PathBuf::from(value);
    let json = fs::read_to_string(&path).map_err(|source| Error::ReadProfile {
        path: path.clone(),
        source,
    })?;
    let s = seccomp::from_docker_profile(&json, &bounding(spec), &seccomp::Host::current())?;
    set_seccomp(spec, s);
    Ok(())
}

/// `--security-opt no-new-privileges`.
pub fn no_new_privileges(spec: &mut Spec) {
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_no_new_privileges(Some(true));
    spec.set_process(Some(process));
}

/// `--read-only`: a read-only root, and Docker's resolv.conf/hostname/hosts binds (if the
/// caller added them) read-only too.
pub fn read_only(spec: &mut Spec) {
    let mut root = spec.root().clone().unwrap_or_default();
    root.set_readonly(Some(true));
    spec.set_root(Some(root));
    if let Some(mounts) = spec.mounts().clone() {
        let mounts = mounts
            .into_iter()
            .map(|mut m| {
                let etc = ["/etc/resolv.conf", "/etc/hostname", "/etc/hosts"];
                if etc.iter().any(|e| m.destination() == Path::new(e))
                    && m.typ().as_deref() == Some("bind")
                {
                    let mut opts = m.options().clone().unwrap_or_default();
                    if !opts.iter().any(|o| o == "ro") {
                        // Where Docker puts it: after the bind type, before propagation.
                        let at = opts
                            .iter()
                            .position(|o| o == "rbind" || o == "bind")
                            .map_or(opts.len(), |i| i + 1);
                        opts.insert(at, "ro".into());
                    }
                    m.set_options(Some(opts));
                }
                m
            })
            .collect();
        spec.set_mounts(Some(mounts));
    }
}

/// `--user UID[:GID]` or `NAME[:GID]`. Without a GID, the user's primary group from the
/// image's `/etc/passwd` (when `rootfs` is given and lists the user), else 0, as Docker.
/// `additionalGids` is the primary group (Docker adds the user's groups from
/// `/etc/group`; minnow does not read that file). For a non-root user the effective and
/// permitted sets are removed (Docker: execve gives such a process none).
pub fn user(spec: &mut Spec, value: &str, rootfs: Option<&Path>) -> Result<(), Error> {
    let bad = || Error::User {
        value: value.to_string(),
    };
    let (u, g) = match value.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (value, None),
    };
    if u.is_empty() || g.is_some_and(|g| g.is_empty()) {
        return Err(bad());
    }
    let passwd = rootfs.map(|r| r.join("etc/passwd"));
    let entry = passwd
        .as_ref()
        .and_then(|p| fs::read_to_string(p).ok())
        .and_then(|text| {
            text.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 4 && (f[0] == u || f[2] == u))
                    .then(|| Some((f[2].parse::<u32>().ok()?, f[3].parse::<u32>().ok()?)))
                    .flatten()
            })
        });
    let uid = match u.parse::<u32>() {
        Ok(n) => n,
        Err(_) => match entry {
            Some((n, _)) => n,
            None if passwd.is_some() => {
                return Err(Error::NoSuchUser {
                    name: u.to_string(),
                    passwd: passwd.unwrap_or_default(),
                })
            }
            None => return Err(bad()),
        },
    };
    let gid = match g {
        Some(g) => g.parse::<u32>().map_err(|_| bad())?,
        None => entry.map_or(0, |(_, g)| g),
    };
    let mut process = spec.process().clone().unwrap_or_default();
    let mut usr = process.user().clone();
    usr.set_uid(uid)
        .set_gid(gid)
        .set_additional_gids(Some(vec![gid]));
    process.set_user(usr);
    if uid != 0 {
        if let Some(mut c) = process.capabilities().clone() {
            c.set_effective(None).set_permitted(None);
            process.set_capabilities(Some(c));
        }
    }
    spec.set_process(Some(process));
    Ok(())
}

/// The security flags of one `docker run`.
#[derive(Clone, Debug, Default)]
pub struct Flags {
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    /// `--security-opt` values: `seccomp=unconfined`, `seccomp=FILE`, `no-new-privileges`
    /// (also `no-new-privileges=true|false`).
    pub security_opt: Vec<String>,
    pub read_only: bool,
    pub user: Option<String>,
}

/// [`docker_spec`] changed by `flags` in Docker's order; `rootfs` is for `--user NAME`.
pub fn apply_flags(spec: &mut Spec, flags: &Flags, rootfs: Option<&Path>) -> Result<(), Error> {
    if let Some(u) = &flags.user {
        user(spec, u, rootfs)?;
    }
    let add: Vec<&str> = flags.cap_add.iter().map(String::as_str).collect();
    let drop: Vec<&str> = flags.cap_drop.iter().map(String::as_str).collect();
    if flags.privileged {
        privileged(spec);
    } else {
        cap_add_drop(spec, &add, &drop)?;
    }
    for opt in &flags.security_opt {
        // Docker accepts `key=value` and the older `key:value`.
        let (k, v) = opt
            .split_once('=')
            .or_else(|| opt.split_once(':'))
            .unwrap_or((opt.as_str(), ""));
        match (k, v) {
            ("seccomp", v) if !v.is_empty() => {
                if !flags.privileged {
                    seccomp_opt(spec, v)?;
                }
            }
            ("no-new-privileges", "" | "true") => no_new_privileges(spec),
            ("no-new-privileges", "false") => {}
            _ => return Err(Error::SecurityOpt { value: opt.clone() }),
        }
    }
    if flags.read_only {
        read_only(spec);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
