//! TAP devices: the host end of a virtio-net device. Frames carry a 12-byte virtio-net
//! header (IFF_VNET_HDR) so checksum and segmentation offloads pass through untouched.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::Path;

/// Length of the header on every frame (`struct virtio_net_hdr_v1`).
pub const VNET_HDR_LEN: usize = 12;
/// The same, as TUNSETVNETHDRSZ takes it.
const VNET_HDR_LEN_INT: libc::c_int = 12;
const _: () = assert!(VNET_HDR_LEN_INT as usize == VNET_HDR_LEN);

const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;

/// Offload flags for TUNSETOFFLOAD.
pub const TUN_F_CSUM: u32 = 0x01;
pub const TUN_F_TSO4: u32 = 0x02;
pub const TUN_F_TSO6: u32 = 0x04;

/// A TAP problem, phrased for the user.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Name(#[from] crate::config::TapNameError),
    #[error("TAP device {0} does not exist; create it (minnow net setup {0} --host-ip ADDR/PREFIX) or add ,create")]
    Missing(String),
    #[error("no permission to use TAP device {name}, which belongs to another user; run as root (CAP_NET_ADMIN) or have root recreate it for your user (ip link del {name}; ip tuntap add dev {name} mode tap vnet_hdr user {user})")]
    Permission { name: String, user: String },
    #[error("creating TAP device {name} needs CAP_NET_ADMIN, which this user lacks; run as root, or have root create it for your user (ip tuntap add dev {name} mode tap vnet_hdr user {user}) and drop ,create")]
    CreatePermission { name: String, user: String },
    #[error("no permission to open /dev/net/tun (for TAP device {0}); run as root, or make it usable by all users as distributions do (chmod 0666 /dev/net/tun)")]
    TunPermission(String),
    #[error("cannot open /dev/net/tun: {0}; load the tun module (modprobe tun)")]
    Tun(io::Error),
    #[error("cannot attach to TAP device {name}: {source}; check that it is a TAP (not a TUN) device and that no other VM uses it")]
    Attach { name: String, source: io::Error },
}

#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// An open TAP queue.
pub struct Tap {
    file: File,
    name: String,
}

/// This process's user for `ip tuntap ... user`: the effective uid.
fn user_hint() -> String {
    nix::unistd::geteuid().to_string()
}

/// Whether interface `name` exists, or cannot be known because there is no sysfs (in
/// minnow's jail, whose jailer checked the TAP in the VMM's network namespace).
fn exists_or_unknown(name: &str) -> bool {
    let net = Path::new("/sys/class/net");
    !net.is_dir() || net.join(name).exists()
}

fn is_permission(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
}

impl Tap {
    /// Attaches to TAP `name`; creates it (non-persistent) only when `create` is set.
    pub fn open(name: &str, create: bool) -> Result<Tap, Error> {
        crate::config::check_tap_name(name)?;
        if !create && !exists_or_unknown(name) {
            return Err(Error::Missing(name.to_string()));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| {
                if is_permission(&e) {
                    Error::TunPermission(name.to_string())
                } else {
                    Error::Tun(e)
                }
            })?;
        let mut req = IfReq {
            name: [0; 16],
            flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `IfReq` lays out
        // (16-byte name, flags, padding to 40 bytes); `file` is an open tun fd.
        let ret = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReq) };
        if ret < 0 {
            let e = io::Error::last_os_error();
            let (name, user) = (name.to_string(), user_hint());
            // Attaching to a TAP that exists needs ownership or CAP_NET_ADMIN; creating
            // one always needs CAP_NET_ADMIN.
            return Err(if !is_permission(&e) {
                Error::Attach { name, source: e }
            } else if exists_or_unknown(&name) {
                Error::Permission { name, user }
            } else {
                Error::CreatePermission { name, user }
            });
        }
        let tap = Tap {
            file,
            name: name.to_string(),
        };
        tap.ioctl_int(TUNSETVNETHDRSZ, VNET_HDR_LEN_INT)
            .map_err(|source| Error::Attach {
                name: name.to_string(),
                source,
            })?;
        Ok(tap)
    }

    fn ioctl_int(&self, request: libc::c_ulong, value: libc::c_int) -> io::Result<()> {
        let mut v = value;
        // SAFETY: TUNSETVNETHDRSZ reads an int through the pointer, which points at a
        // live local; the fd is an open tun fd.
        let ret =
            unsafe { libc::ioctl(self.file.as_raw_fd(), request, &mut v as *mut libc::c_int) };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Tells the TAP which offloads the guest accepts (TUN_F_* flags).
    pub fn set_offload(&self, flags: u32) -> io::Result<()> {
        // SAFETY: TUNSETOFFLOAD takes its flags by value; the fd is an open tun fd.
        let ret =
            unsafe { libc::ioctl(self.file.as_raw_fd(), TUNSETOFFLOAD, flags as libc::c_ulong) };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// What virtio-net needs from its host end (a TAP, or a fake in tests).
pub trait NetBackend: Send {
    /// Reads one frame (with its virtio-net header); `WouldBlock` when none is waiting.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Sends one frame (with its virtio-net header).
    fn send(&mut self, frame: &[u8]) -> io::Result<()>;
    /// Applies the offloads the guest negotiated.
    fn set_offload(&mut self, flags: u32) -> io::Result<()>;
    /// The fd to watch for incoming frames.
    fn fd(&self) -> RawFd;
}

impl NetBackend for Tap {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        self.file.write(frame).map(|_| ())
    }

    fn set_offload(&mut self, flags: u32) -> io::Result<()> {
        Tap::set_offload(self, flags)
    }

    fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        use crate::config::{check_tap_name, TapNameError};
        assert!(check_tap_name("tap0").is_ok());
        assert!(check_tap_name("a-fifteen-chars").is_ok());
        let e = check_tap_name("sixteen-chars-xx").unwrap_err().to_string();
        assert!(e.contains("longer than 15"), "{e}");
        assert_eq!(check_tap_name(""), Err(TapNameError::Empty));
        assert!(check_tap_name("a/b").is_err());
        assert!(matches!(Tap::open("", false), Err(Error::Name(_))));
    }

    #[test]
    fn missing_tap_is_a_clear_error() {
        let e = Tap::open("minnow-nope0", false).err().unwrap().to_string();
        assert!(e.contains("does not exist") && e.contains(",create"), "{e}");
    }

    #[test]
    fn ifreq_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
    }
}
