//! `minnow run --jail DIR --uid U --gid G ...`: the VM's files and devices into a
//! [`minnow_jail::Jail`], and the same `minnow` binary exec'd inside it as
//! `minnow run --config /vm.json` with the paths rewritten. The jail itself is
//! minnow-jail (docs/design.md, "The jail").

use std::path::{Path, PathBuf};

use clap::Args;

use minnow_jail::{Device, Jail, JailFile, Limits, Net};
use minnow_vmm::config::VmConfig;

/// The VM config inside the jail.
const CONFIG_IN_JAIL: &str = "/vm.json";

#[derive(Args, Debug, Default)]
#[command(next_help_heading = "Jail (needs root)")]
pub struct JailArgs {
    /// Run the VMM jailed, with DIR as its root (created if missing, never written to):
    /// own mount and PID namespaces and cgroup, as --uid:--gid without capabilities,
    /// seeing only the VM's files and /dev/{kvm,null,urandom,net/tun}.
    #[arg(long, value_name = "DIR")]
    pub jail: Option<PathBuf>,
    /// The jailed VMM's user id (a number, not 0).
    #[arg(long, value_name = "UID")]
    pub uid: Option<String>,
    /// The jailed VMM's group id (a number, not 0).
    #[arg(long, value_name = "GID")]
    pub gid: Option<String>,
    /// Join this network namespace (e.g. /var/run/netns/NAME), where the --net TAPs are
    /// [default: the host's].
    #[arg(long, value_name = "PATH")]
    pub jail_netns: Option<PathBuf>,
    /// Give the VMM a new, empty network namespace.
    #[arg(long)]
    pub jail_new_netns: bool,
    /// Names the jail's cgroup minnow-jail-ID [default: minnow's PID].
    #[arg(long, value_name = "ID")]
    pub jail_id: Option<String>,
    /// Memory limit of the jail's cgroup in MiB (guest memory plus the VMM's own).
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..))]
    pub jail_mem_mib: Option<u64>,
    /// CPU limit of the jail's cgroup in CPUs (CFS quota), e.g. 0.5 or 2.
    #[arg(long, value_name = "CPUS")]
    pub jail_cpus: Option<f64>,
    /// Most processes and threads in the jail's cgroup.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub jail_pids: Option<u64>,
    /// RLIMIT_NOFILE of the jailed VMM [default: 2048].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(16..))]
    pub jail_nofile: Option<u64>,
    /// RLIMIT_FSIZE of the jailed VMM in bytes (writes beyond it fail) [default: none].
    #[arg(long, value_name = "BYTES")]
    pub jail_fsize: Option<u64>,
}

impl JailArgs {
    /// Whether any jail flag was given.
    fn any(&self) -> bool {
        self.uid.is_some()
            || self.gid.is_some()
            || self.jail_netns.is_some()
            || self.jail_new_netns
            || self.jail_id.is_some()
            || self.jail_mem_mib.is_some()
            || self.jail_cpus.is_some()
            || self.jail_pids.is_some()
            || self.jail_nofile.is_some()
            || self.jail_fsize.is_some()
    }

    /// The jail's directory, if `--jail` was given; checks the flags that go with it.
    pub fn dir(&self) -> Result<Option<&Path>, String> {
        let Some(dir) = &self.jail else {
            if self.any() {
                return Err(
                    "the --uid, --gid and --jail-* flags need --jail DIR; add --jail DIR or drop them"
                        .into(),
                );
            }
            return Ok(None);
        };
        if self.uid.is_none() || self.gid.is_none() {
            return Err("--jail needs --uid UID and --gid GID, the unprivileged user and group the VMM runs as; add both".into());
        }
        if self.jail_netns.is_some() && self.jail_new_netns {
            return Err(
                "--jail-netns and --jail-new-netns exclude each other; give one of them".into(),
            );
        }
        if let Some(c) = self.jail_cpus {
            if !(c.is_finite() && c > 0.0 && c <= 4096.0) {
                return Err(format!(
                    "invalid --jail-cpus {c}; give a positive number of CPUs, e.g. --jail-cpus 0.5"
                ));
            }
        }
        Ok(Some(dir))
    }
}

/// The jail for `config`: its files under fixed names, the devices it needs, the
/// rewritten config as /vm.json, and `argv` to exec.
pub fn build(
    args: &JailArgs,
    dir: &Path,
    config: &VmConfig,
    kvm_device: &Path,
    log_level: &str,
    seccomp: minnow_vmm::seccomp::Mode,
    mountinfo: PathBuf,
) -> Result<Jail, String> {
    if config.image.is_some() {
        return Err("--jail does not take --image yet (the image disk is built outside the VMM); boot the image's disk with --kernel and --disk, or drop --jail".into());
    }
    if let Some(n) = config.nets.iter().find(|n| n.create) {
        return Err(format!(
            "--net tap={},create cannot work in the jail: the jailed VMM has no CAP_NET_ADMIN; create the TAP first (minnow net setup {}) and drop ,create",
            n.tap, n.tap
        ));
    }
    config.validate().map_err(|e| e.to_string())?;
    let uid = minnow_jail::parse_id("--uid", args.uid.as_deref().unwrap_or(""))
        .map_err(|e| e.to_string())?;
    let gid = minnow_jail::parse_id("--gid", args.gid.as_deref().unwrap_or(""))
        .map_err(|e| e.to_string())?;
    let id = args
        .jail_id
        .clone()
        .unwrap_or_else(|| std::process::id().to_string());
    minnow_jail::check_id(&id).map_err(|e| e.to_string())?;

    let mut inner = config.clone();
    let mut files = Vec::new();
    let mut add = |host: &Path, name: String, writable: bool, what: &str, flag: &str| {
        files.push(JailFile {
            host: host.to_path_buf(),
            name: name.clone(),
            writable,
            exec: false,
            what: what.into(),
            flag: flag.into(),
        });
        PathBuf::from(name)
    };
    inner.kernel = add(
        &config.kernel,
        "/kernel".into(),
        false,
        "kernel",
        "--kernel",
    );
    if let Some(initrd) = &config.initrd {
        inner.initrd = Some(add(initrd, "/initrd".into(), false, "initrd", "--initrd"));
    }
    for (i, (d, outer)) in inner.disks.iter_mut().zip(&config.disks).enumerate() {
        d.path = add(
            &outer.path,
            format!("/disk{i}"),
            !outer.read_only,
            "disk",
            "--disk",
        );
    }
    inner.store = None;
    let exe = PathBuf::from("/proc/self/exe");
    files.extend(minnow_jail::loader_files(&exe).map_err(|e| e.to_string())?);
    let json = serde_json::to_vec_pretty(&inner)
        .map_err(|e| format!("cannot write the jail's VM config: {e}; this is a bug in minnow"))?;

    let dev = |host: &str, name: &str, mode, owned| Device {
        host: PathBuf::from(host),
        name: name.into(),
        mode,
        owned,
    };
    let mut devices = vec![
        Device {
            host: kvm_device.to_path_buf(),
            ..dev("", "/dev/kvm", 0o600, true)
        },
        dev("/dev/null", "/dev/null", 0o666, false),
        dev("/dev/urandom", "/dev/urandom", 0o666, false),
    ];
    if !config.nets.is_empty() {
        devices.push(dev("/dev/net/tun", "/dev/net/tun", 0o600, true));
    }
    let net = match (&args.jail_netns, args.jail_new_netns) {
        (Some(p), _) => Net::Join(p.clone()),
        (None, true) => Net::New,
        (None, false) => Net::Host,
    };
    let memory_bytes = match args.jail_mem_mib {
        Some(m) => Some(m.checked_mul(1 << 20).ok_or_else(|| {
            format!(
                "invalid --jail-mem-mib {m}; give MiB, at most {}",
                u64::MAX >> 20
            )
        })?),
        None => None,
    };
    Ok(Jail {
        dir: dir.to_path_buf(),
        uid,
        gid,
        id,
        files,
        contents: vec![(CONFIG_IN_JAIL.into(), json)],
        devices,
        net,
        taps: config.nets.iter().map(|n| n.tap.clone()).collect(),
        limits: Limits {
            memory_bytes,
            cpus: args.jail_cpus,
            pids: args.jail_pids,
        },
        nofile: args.jail_nofile.unwrap_or(minnow_jail::DEFAULT_NOFILE),
        fsize: args.jail_fsize,
        exe,
        argv: [
            "minnow",
            "--log-level",
            log_level,
            "run",
            "--seccomp",
            seccomp.as_str(),
            "--config",
            CONFIG_IN_JAIL,
        ]
        .map(String::from)
        .to_vec(),
        mountinfo,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(uid: &str) -> JailArgs {
        JailArgs {
            jail: Some("/j".into()),
            uid: Some(uid.into()),
            gid: Some("10001".into()),
            ..Default::default()
        }
    }

    #[test]
    fn files_get_fixed_names_and_the_config_follows() {
        let mut cfg = VmConfig::new("/boot/k");
        cfg.initrd = Some("/boot/i".into());
        cfg.disks = vec!["/d/a.img".parse().unwrap(), "/d/b.img,ro".parse().unwrap()];
        cfg.command = vec!["echo".into(), "hi".into()];
        let a = args("10000");
        let j = build(
            &a,
            Path::new("/j"),
            &cfg,
            Path::new("/dev/kvm"),
            "debug",
            minnow_vmm::seccomp::Mode::Log,
            "/proc/self/mountinfo".into(),
        )
        .unwrap();
        let names: Vec<(&str, &str, bool)> = j
            .files
            .iter()
            .filter(|f| !f.exec)
            .map(|f| (f.host.to_str().unwrap(), f.name.as_str(), f.writable))
            .collect();
        assert_eq!(
            names,
            [
                ("/boot/k", "/kernel", false),
                ("/boot/i", "/initrd", false),
                ("/d/a.img", "/disk0", true),
                ("/d/b.img", "/disk1", false)
            ]
        );
        let inner: VmConfig = serde_json::from_slice(&j.contents[0].1).unwrap();
        assert_eq!(inner.kernel, PathBuf::from("/kernel"));
        assert_eq!(inner.disks[1].path, PathBuf::from("/disk1"));
        assert!(inner.disks[1].read_only);
        assert_eq!(inner.command, cfg.command);
        assert_eq!((j.uid, j.gid), (10000, 10001));
        assert_eq!(j.argv[1..3], ["--log-level", "debug"]);
        assert_eq!(j.argv[4..6], ["--seccomp", "log"]);
        assert!(j.devices.iter().all(|d| d.name != "/dev/net/tun"));
        // The dynamic loader and libraries of this (dynamically linked) test binary.
        assert!(j.files.iter().any(|f| f.exec && f.name.contains("libc.so")));
    }

    #[test]
    fn bad_flags_are_one_line_errors() {
        let cfg = VmConfig::new("/k");
        let b = |a: &JailArgs| {
            build(
                a,
                Path::new("/j"),
                &cfg,
                Path::new("/dev/kvm"),
                "info",
                minnow_vmm::seccomp::Mode::On,
                PathBuf::new(),
            )
        };
        assert!(b(&args("root")).unwrap_err().contains("not a number"));
        assert!(b(&args("0")).unwrap_err().contains("as root"));
        let lonely = JailArgs {
            uid: Some("1".into()),
            ..Default::default()
        };
        assert!(lonely.dir().unwrap_err().contains("need --jail DIR"));
        let half = JailArgs {
            gid: None,
            ..args("1")
        };
        assert!(half.dir().unwrap_err().contains("--gid GID"));
        let both = JailArgs {
            jail_netns: Some("/n".into()),
            jail_new_netns: true,
            ..args("1")
        };
        assert!(both.dir().unwrap_err().contains("exclude each other"));
        let mut img = VmConfig::new("/k");
        img.image = Some("busybox".into());
        let e = build(
            &args("1"),
            Path::new("/j"),
            &img,
            Path::new("/dev/kvm"),
            "info",
            minnow_vmm::seccomp::Mode::On,
            PathBuf::new(),
        )
        .unwrap_err();
        assert!(e.contains("--image"), "{e}");
    }
}
