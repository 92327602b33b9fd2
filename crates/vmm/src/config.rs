//! The VM configuration: built from command-line flags or a JSON file (the same field
//! names), validated once, then handed to the VMM builder.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::arch::x86_64::layout::MIN_MEM_MIB;
use crate::arch::x86_64::mptable;

/// Default guest memory.
pub const DEFAULT_MEM_MIB: u64 = 128;
/// Largest guest memory accepted (1 TiB).
pub const MAX_MEM_MIB: u64 = 1 << 20;

/// A configuration problem, phrased for the user.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The config file is not valid JSON for a VM config.
    #[error("bad config file {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    /// No kernel was given.
    #[error("no kernel given; pass --kernel PATH (or \"kernel\" in the config file)")]
    NoKernel,
    /// Too little or too much memory.
    #[error("--mem-mib {0} is out of range; give between {MIN_MEM_MIB} and {MAX_MEM_MIB} MiB")]
    Memory(u64),
    /// Huge pages need a whole number of 2 MiB pages.
    #[error("--mem-mib {0} is not a multiple of 2; huge pages are 2 MiB")]
    HugepageSize(u64),
    /// Too many disks.
    #[error("{0} disks given; at most {MAX_DISKS}")]
    TooManyDisks(usize),
    /// A bad network option.
    #[error("{0}")]
    Net(String),
    /// Too many devices.
    #[error("{0} disks and network interfaces given; at most {MAX_DISKS} devices in all")]
    TooManyDevices(usize),
    /// `container` without `image`.
    #[error("--container needs --image IMAGE (\"image\" in the config file)")]
    ContainerWithoutImage,
    /// A bad vCPU count.
    #[error("--vcpus {0} is out of range; give between 1 and {max}", max = mptable::MAX_CPUS)]
    Vcpus(u64),
}

/// Most disks a VM can have (each takes a virtio-mmio window and an interrupt line).
pub const MAX_DISKS: usize = 16;

/// A disk: a raw image file on virtio-blk.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DiskConfig {
    /// The image file.
    pub path: PathBuf,
    /// Refuse the guest's writes.
    #[serde(default)]
    pub read_only: bool,
}

impl std::str::FromStr for DiskConfig {
    type Err = String;

    /// `PATH[,ro|,rw]`, as given to `--disk`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (path, read_only) = match s.rsplit_once(',') {
            Some((p, "ro")) => (p, true),
            Some((p, "rw")) => (p, false),
            Some((_, opt)) => {
                return Err(format!(
                    "unknown disk option `{opt}`; use PATH, PATH,ro or PATH,rw"
                ))
            }
            None => (s, false),
        };
        if path.is_empty() {
            return Err("empty disk path; use --disk PATH[,ro]".into());
        }
        Ok(DiskConfig {
            path: PathBuf::from(path),
            read_only,
        })
    }
}

/// A network interface: a TAP on the host, virtio-net in the guest.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NetConfig {
    /// The TAP device's name.
    pub tap: String,
    /// The guest's MAC address; derived from the TAP name when absent.
    #[serde(default)]
    pub mac: Option<String>,
    /// Create the TAP if it does not exist (needs CAP_NET_ADMIN; it goes away with the VM).
    #[serde(default)]
    pub create: bool,
    /// The guest's address, `A.B.C.D/PREFIX`: minnow passes it on the kernel's `ip=`.
    #[serde(default)]
    pub guest_ip: Option<String>,
    /// The host's address on the TAP, used as the guest's gateway in `ip=`.
    #[serde(default)]
    pub host_ip: Option<String>,
}

impl std::str::FromStr for NetConfig {
    type Err = String;

    /// `tap=NAME[,mac=MAC][,create][,guest-ip=A/P][,host-ip=A/P]`, as given to `--net`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut cfg = NetConfig::default();
        for part in s.split(',') {
            match part.split_once('=') {
                Some(("tap", v)) => cfg.tap = v.to_string(),
                Some(("mac", v)) => cfg.mac = Some(v.to_string()),
                Some(("guest-ip", v)) => cfg.guest_ip = Some(v.to_string()),
                Some(("host-ip", v)) => cfg.host_ip = Some(v.to_string()),
                None if part == "create" => cfg.create = true,
                _ => {
                    return Err(format!(
                        "unknown --net option `{part}`; use tap=NAME[,mac=MAC][,create][,guest-ip=A/P][,host-ip=A/P]"
                    ))
                }
            }
        }
        if cfg.tap.is_empty() {
            return Err("--net needs tap=NAME".into());
        }
        cfg.check().map_err(|e| e.to_string())?;
        Ok(cfg)
    }
}

/// Longest interface name (IFNAMSIZ - 1).
pub const MAX_TAP_NAME_LEN: usize = 15;

/// A TAP name the kernel would refuse.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TapNameError {
    #[error("TAP name `{0}` is longer than {MAX_TAP_NAME_LEN} bytes; choose a shorter name")]
    TooLong(String),
    #[error("TAP name is empty; use --net tap=NAME")]
    Empty,
}

/// Checks an interface name: 1 to 15 bytes, no `/` or white space.
pub fn check_tap_name(name: &str) -> Result<(), TapNameError> {
    if name.is_empty() {
        return Err(TapNameError::Empty);
    }
    if name.len() > MAX_TAP_NAME_LEN || name.contains('/') || name.contains(char::is_whitespace) {
        return Err(TapNameError::TooLong(name.to_string()));
    }
    Ok(())
}

/// A MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl std::str::FromStr for Mac {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("MAC address `{s}` is malformed; write six hex bytes like 02:00:00:00:00:01")
        };
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut mac = [0u8; 6];
        for (b, p) in mac.iter_mut().zip(parts) {
            if p.len() != 2 {
                return Err(bad());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if mac[0] & 1 == 1 {
            return Err(format!(
                "MAC address `{s}` is multicast; use a unicast one (first byte even, e.g. 02:...)"
            ));
        }
        Ok(Mac(mac))
    }
}

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// An IPv4 address with prefix length.
pub fn parse_cidr(s: &str) -> Option<(std::net::Ipv4Addr, u8)> {
    let (addr, prefix) = s.split_once('/')?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
    Some((addr.parse().ok()?, prefix))
}

impl NetConfig {
    /// Checks the name, MAC and addresses.
    pub fn check(&self) -> Result<(), Error> {
        check_tap_name(&self.tap).map_err(|e| Error::Net(e.to_string()))?;
        if let Some(mac) = &self.mac {
            mac.parse::<Mac>().map_err(Error::Net)?;
        }
        for ip in [&self.guest_ip, &self.host_ip].into_iter().flatten() {
            if parse_cidr(ip).is_none() {
                return Err(Error::Net(format!(
                    "address `{ip}` is not A.B.C.D/PREFIX (e.g. 169.254.100.2/30)"
                )));
            }
        }
        Ok(())
    }

    /// The MAC to use: the given one, or 02:<5 bytes of a hash of the TAP name>.
    pub fn mac(&self) -> Mac {
        if let Some(m) = self.mac.as_deref().and_then(|m| m.parse().ok()) {
            return m;
        }
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.tap.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        let b = h.to_le_bytes();
        Mac([0x02, b[0], b[1], b[2], b[3], b[4]])
    }

    /// The kernel's `ip=` argument for this interface (as eth`index`), if it has an address.
    pub fn kernel_ip_arg(&self, index: usize) -> Option<String> {
        let (addr, prefix) = parse_cidr(self.guest_ip.as_deref()?)?;
        let mask =
            std::net::Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0));
        let gw = self
            .host_ip
            .as_deref()
            .and_then(parse_cidr)
            .map(|(a, _)| a.to_string())
            .unwrap_or_default();
        Some(format!("ip={addr}::{gw}:{mask}::eth{index}:off"))
    }
}

/// Everything needed to build a VM.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VmConfig {
    /// Kernel image: bzImage or ELF vmlinux (PVH if it has the note).
    #[serde(default)]
    pub kernel: PathBuf,
    /// Initial ramdisk.
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    /// Extra kernel command-line arguments, after minnow's defaults.
    #[serde(default)]
    pub cmdline: Option<String>,
    /// Guest memory in MiB.
    #[serde(default = "default_mem")]
    pub mem_mib: u64,
    /// Number of vCPUs.
    #[serde(default = "default_vcpus")]
    pub vcpus: u64,
    /// Back guest memory with huge pages.
    #[serde(default)]
    pub hugepages: bool,
    /// Disks, in order: /dev/vda, /dev/vdb, ...
    #[serde(default)]
    pub disks: Vec<DiskConfig>,
    /// The root device (`root=` on the kernel command line); the first disk by default.
    #[serde(default)]
    pub root: Option<String>,
    /// Network interfaces, in order: eth0, eth1, ...
    #[serde(default)]
    pub nets: Vec<NetConfig>,
    /// The workload: the command minnow's guest init runs (`minnow run ... -- CMD`); with
    /// `image`, it replaces the image's own command.
    #[serde(default)]
    pub command: Vec<String>,
    /// An image from the store as the root disk (`--image`); minnow_vmdisk turns it into
    /// a disk and a workload before the VM is built.
    #[serde(default)]
    pub image: Option<String>,
    /// With `image`: run the workload in a container inside the VM (`--container`).
    #[serde(default)]
    pub container: bool,
    /// The image store holding `image` [default: $MINNOW_STORE or /var/lib/minnow].
    #[serde(default)]
    pub store: Option<PathBuf>,
    /// The in-kernel PIT: auto (only for guests that use one, crate::pit), on, off.
    #[serde(default)]
    pub pit: crate::pit::Mode,
}

fn default_mem() -> u64 {
    DEFAULT_MEM_MIB
}

fn default_vcpus() -> u64 {
    1
}

impl VmConfig {
    /// A config for `kernel` with defaults for everything else.
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        VmConfig {
            kernel: kernel.into(),
            mem_mib: DEFAULT_MEM_MIB,
            vcpus: 1,
            ..Default::default()
        }
    }

    /// Parses a JSON config.
    pub fn from_json(text: &str, path: &Path) -> Result<Self, Error> {
        serde_json::from_str(text).map_err(|e| Error::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Reads and parses a JSON config file.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(&text, path)
    }

    /// Checks the values that do not need KVM or the files' contents.
    pub fn validate(&self) -> Result<(), Error> {
        if self.kernel.as_os_str().is_empty() {
            return Err(Error::NoKernel);
        }
        if self.container && self.image.is_none() {
            return Err(Error::ContainerWithoutImage);
        }
        if !(MIN_MEM_MIB..=MAX_MEM_MIB).contains(&self.mem_mib) {
            return Err(Error::Memory(self.mem_mib));
        }
        if self.disks.len() > MAX_DISKS {
            return Err(Error::TooManyDisks(self.disks.len()));
        }
        if self.disks.len() + self.nets.len() > MAX_DISKS {
            return Err(Error::TooManyDevices(self.disks.len() + self.nets.len()));
        }
        for net in &self.nets {
            net.check()?;
        }
        if self.hugepages && !self.mem_mib.is_multiple_of(2) {
            return Err(Error::HugepageSize(self.mem_mib));
        }
        if self.vcpus == 0 || self.vcpus > u64::from(mptable::MAX_CPUS) {
            return Err(Error::Vcpus(self.vcpus));
        }
        Ok(())
    }

    /// The `root=` device, if any: `--root`, else /dev/vda when there is a disk.
    pub fn root_device(&self) -> Option<String> {
        self.root
            .clone()
            .or_else(|| (!self.disks.is_empty()).then(|| "/dev/vda".to_string()))
    }

    /// Guest memory in bytes.
    pub fn mem_bytes(&self) -> u64 {
        self.mem_mib << 20
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<VmConfig, Error> {
        VmConfig::from_json(s, Path::new("vm.json"))
    }

    #[test]
    fn json_uses_flag_names_and_defaults() {
        let c = parse(
            r#"{"kernel": "/k", "initrd": "/i", "mem-mib": 256, "vcpus": 2, "cmdline": "quiet"}"#,
        )
        .unwrap();
        assert_eq!(c.kernel, PathBuf::from("/k"));
        assert_eq!(c.initrd, Some(PathBuf::from("/i")));
        assert_eq!((c.mem_mib, c.vcpus), (256, 2));
        assert_eq!(c.cmdline.as_deref(), Some("quiet"));
        let d = parse(r#"{"kernel": "/k"}"#).unwrap();
        assert_eq!(d, VmConfig::new("/k"));
        d.validate().unwrap();
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let e = parse(r#"{"kernel": "/k", "memory": 5}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `memory`"), "{e}");
        assert!(parse("not json").is_err());
        assert!(parse(r#"{"kernel": "/k", "vcpus": "two"}"#).is_err());
    }

    #[test]
    fn validation_errors() {
        let ok = VmConfig::new("/k");
        let cases = [
            (
                VmConfig {
                    kernel: PathBuf::new(),
                    ..ok.clone()
                },
                "--kernel",
            ),
            (
                VmConfig {
                    mem_mib: 1,
                    ..ok.clone()
                },
                "--mem-mib 1",
            ),
            (
                VmConfig {
                    mem_mib: MAX_MEM_MIB + 1,
                    ..ok.clone()
                },
                "--mem-mib",
            ),
            (
                VmConfig {
                    vcpus: 0,
                    ..ok.clone()
                },
                "--vcpus 0",
            ),
            (
                VmConfig {
                    vcpus: 33,
                    ..ok.clone()
                },
                "--vcpus 33",
            ),
        ];
        for (cfg, needle) in cases {
            let msg = cfg.validate().unwrap_err().to_string();
            assert!(msg.contains(needle), "{msg} should mention {needle}");
            assert!(!msg.contains('\n'));
        }
    }

    #[test]
    fn disk_flags_and_json() {
        let d: DiskConfig = "/img/root.ext4".parse().unwrap();
        assert_eq!(
            (d.path.to_str(), d.read_only),
            (Some("/img/root.ext4"), false)
        );
        let ro: DiskConfig = "/a,b.img,ro".parse().unwrap();
        assert_eq!((ro.path.to_str(), ro.read_only), (Some("/a,b.img"), true));
        assert!("x.img,rx"
            .parse::<DiskConfig>()
            .unwrap_err()
            .contains("unknown disk option `rx`"));
        assert!(",ro".parse::<DiskConfig>().is_err());
        let c = parse(
            r#"{"kernel": "/k", "disks": [{"path": "/r"}, {"path": "/d", "read-only": true}]}"#,
        )
        .unwrap();
        assert_eq!(c.disks.len(), 2);
        assert!(c.disks[1].read_only);
        assert_eq!(c.root_device().as_deref(), Some("/dev/vda"));
        let none = VmConfig::new("/k");
        assert_eq!(none.root_device(), None);
        let many = VmConfig {
            disks: vec![DiskConfig::default(); MAX_DISKS + 1],
            ..none
        };
        assert!(many
            .validate()
            .unwrap_err()
            .to_string()
            .contains("at most 16"));
    }

    #[test]
    fn net_flags() {
        let n: NetConfig = "tap=tap0,mac=02:00:00:00:00:07,create,guest-ip=169.254.100.2/30,host-ip=169.254.100.1/30"
            .parse()
            .unwrap();
        assert_eq!(n.tap, "tap0");
        assert!(n.create);
        assert_eq!(n.mac().0, [2, 0, 0, 0, 0, 7]);
        assert_eq!(
            n.kernel_ip_arg(0).as_deref(),
            Some("ip=169.254.100.2::169.254.100.1:255.255.255.252::eth0:off")
        );
        let plain: NetConfig = "tap=t1".parse().unwrap();
        assert_eq!(plain.kernel_ip_arg(0), None);
        assert_eq!(plain.mac().0[0], 2, "locally administered unicast");
        assert_ne!(plain.mac(), "tap=t2".parse::<NetConfig>().unwrap().mac());
        for (bad, needle) in [
            ("tap=", "tap=NAME"),
            ("mac=02:00:00:00:00:01", "tap=NAME"),
            ("tap=averyveryverylongname", "longer than 15"),
            ("tap=t,mac=zz", "malformed"),
            ("tap=t,guest-ip=10.0.0.1", "A.B.C.D/PREFIX"),
            ("tap=t,speed=fast", "unknown --net option `speed=fast`"),
        ] {
            let e = bad.parse::<NetConfig>().unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn missing_config_file_is_a_clear_error() {
        let e = VmConfig::from_file(Path::new("/nonexistent/vm.json"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot read config file /nonexistent/vm.json"),
            "{e}"
        );
    }
}
