//! The kernel command line: minnow's defaults, then the user's arguments (later ones win).

use linux_loader::cmdline::Cmdline;
use linux_loader::loader::load_cmdline;
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::Error;
use crate::arch::x86_64::layout::CMDLINE_START;

/// What every guest gets: the console on the first UART, reboot through the i8042 (which
/// makes minnow exit), reboot one second after a panic, no PCI probing, and an i8042
/// driver that does not look for a mouse or multiplexer.
pub const DEFAULT: &str =
    "console=ttyS0 reboot=k panic=1 pci=off i8042.noaux i8042.nomux i8042.dumbkbd";

/// The whole command line: defaults, device announcements, the root device (read-only
/// if its disk is), then the user's arguments, which come last so they win and so that
/// anything after ` -- ` reaches init.
pub fn compose(devices: &str, root: Option<&str>, root_ro: bool, user: Option<&str>) -> String {
    let mut parts = vec![DEFAULT.to_string()];
    if !devices.is_empty() {
        parts.push(devices.to_string());
    }
    if let Some(root) = root {
        parts.push(format!("root={root} {}", if root_ro { "ro" } else { "rw" }));
    }
    if let Some(extra) = user.map(str::trim).filter(|s| !s.is_empty()) {
        parts.push(extra.to_string());
    }
    parts.join(" ")
}

/// Writes `line` (at most `limit` bytes with its NUL) at [`CMDLINE_START`]; returns its
/// length without the NUL.
pub fn write(mem: &GuestMemoryMmap, line: &str, limit: usize) -> Result<usize, Error> {
    if line.len() >= limit {
        return Err(Error::Cmdline(format!(
            "{} bytes, the kernel takes at most {}; shorten --cmdline",
            line.len(),
            limit - 1
        )));
    }
    let cmdline = Cmdline::try_from(line, limit).map_err(|e| Error::Cmdline(e.to_string()))?;
    load_cmdline(mem, GuestAddress(CMDLINE_START), &cmdline).map_err(|e| Error::Memory {
        what: "the command line",
        reason: e.to_string(),
    })?;
    Ok(line.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    #[test]
    fn user_arguments_follow_defaults() {
        assert_eq!(compose("", None, false, None), DEFAULT);
        assert_eq!(compose("", None, false, Some("  ")), DEFAULT);
        assert_eq!(
            compose("", None, false, Some("quiet")),
            format!("{DEFAULT} quiet")
        );
        assert_eq!(
            compose(
                "virtio_mmio.device=4K@0xd0001000:5",
                Some("/dev/vda"),
                true,
                Some("-- /bin/true")
            ),
            format!("{DEFAULT} virtio_mmio.device=4K@0xd0001000:5 root=/dev/vda ro -- /bin/true")
        );
        assert!(DEFAULT.contains("console=ttyS0") && DEFAULT.contains("reboot=k"));
    }

    #[test]
    fn writes_nul_terminated_and_checks_length() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        assert_eq!(write(&mem, "a=b c", 64).unwrap(), 5);
        let mut buf = [0u8; 6];
        mem.read_slice(&mut buf, GuestAddress(CMDLINE_START))
            .unwrap();
        assert_eq!(&buf, b"a=b c\0");
        let long = "x".repeat(64);
        let err = write(&mem, &long, 64).unwrap_err().to_string();
        assert!(err.contains("shorten --cmdline"), "{err}");
    }
}
