//! The i8254 PIT, only for guests that use it (issue 13, part 4). KVM's in-kernel PIT
//! costs about 1.7 ms when it is created and 17 ms when the VM is torn down (its worker
//! thread), so minnow creates it only when the guest needs one:
//!
//! - Linux since 5.3 does not touch the PIT when the LAPIC timer has TSC-deadline mode,
//!   the CPU has ARAT and the TSC frequency is known (`apic_needs_pit()`): minnow's CPUID
//!   gives all three (TSC-deadline and ARAT, and kvmclock, which tells the TSC rate). Unless
//!   the command line turns one of them off, such a kernel gets no PIT.
//! - An older Linux, one whose version cannot be read, or one told to avoid those timers
//!   gets the PIT.
//! - A kernel that is not Linux (no Linux banner in an ELF) gets none: minnow's own tiny
//!   guests use only the serial port and the boot timer. `--pit on` gives it one.

use std::fmt;
use std::io::Read;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `--pit`: whether the VM gets the in-kernel PIT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Only when the guest needs one (the rules above).
    #[default]
    Auto,
    On,
    Off,
}

/// `--pit` took a value it does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown --pit value {0:?}; use auto, on or off")]
pub struct ParseModeError(String);

impl FromStr for Mode {
    type Err = ParseModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Mode::Auto),
            "on" => Ok(Mode::On),
            "off" => Ok(Mode::Off),
            other => Err(ParseModeError(other.to_owned())),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Auto => "auto",
            Mode::On => "on",
            Mode::Off => "off",
        })
    }
}

/// What a kernel image says it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guest {
    /// Linux, with its version (major, minor) when the image tells it.
    Linux(Option<(u32, u32)>),
    /// Anything else.
    Other,
}

/// The first Linux version whose timer set-up skips the PIT when the LAPIC timer is enough.
const FIRST_WITHOUT_PIT: (u32, u32) = (5, 3);

/// Command-line words that make Linux fall back to timers that need the PIT.
const NEEDS_PIT: [&str; 6] = [
    "no-kvmclock",
    "lapic=notscdeadline",
    "noapictimer",
    "nolapic",
    "disableapic",
    "noapic",
];

/// Whether a VM of `guest`, booted with `cmdline`, gets the PIT under `mode`.
pub fn wanted(mode: Mode, guest: &Guest, cmdline: &str) -> bool {
    match mode {
        Mode::On => true,
        Mode::Off => false,
        Mode::Auto => match guest {
            Guest::Other => false,
            Guest::Linux(Some(v)) if *v >= FIRST_WITHOUT_PIT => cmdline
                .split_ascii_whitespace()
                .any(|w| NEEDS_PIT.contains(&w)),
            Guest::Linux(_) => true,
        },
    }
}

/// The version in a Linux version string ("6.1.0-28-cloud-amd64 (debian-kernel@...").
pub fn parse_version(s: &str) -> Option<(u32, u32)> {
    let mut parts = s.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The banner every Linux image carries in its read-only data.
const BANNER: &[u8] = b"Linux version ";

/// Looks for Linux's banner in an uncompressed image (an ELF vmlinux), reading it in
/// chunks; the version after the first one found.
pub fn scan_banner(mut image: impl Read) -> std::io::Result<Option<Guest>> {
    const CHUNK: usize = 1 << 20;
    let finder = memchr::memmem::Finder::new(BANNER);
    let mut buf = vec![0u8; CHUNK + 64];
    // Bytes carried over from the previous chunk, so a banner across two is found.
    let mut kept = 0;
    loop {
        let n = image.read(&mut buf[kept..kept + CHUNK])?;
        if n == 0 {
            return Ok(None);
        }
        let have = kept + n;
        if let Some(at) = finder.find(&buf[..have]) {
            let rest = &buf[at + BANNER.len()..have];
            let text = String::from_utf8_lossy(&rest[..rest.len().min(32)]);
            return Ok(Some(Guest::Linux(parse_version(&text))));
        }
        kept = 64.min(have);
        buf.copy_within(have - kept..have, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!("auto".parse::<Mode>().unwrap(), Mode::Auto);
        assert_eq!("off".parse::<Mode>().unwrap(), Mode::Off);
        assert!("maybe".parse::<Mode>().is_err());
        assert_eq!(Mode::On.to_string(), "on");
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("6.1.0-28-cloud-amd64 (x)"), Some((6, 1)));
        assert_eq!(parse_version("5.10.226"), Some((5, 10)));
        assert_eq!(parse_version("4.14"), Some((4, 14)));
        assert_eq!(parse_version("x"), None);
    }

    #[test]
    fn auto_gives_a_pit_only_where_linux_may_use_it() {
        let new = Guest::Linux(Some((6, 12)));
        assert!(!wanted(Mode::Auto, &new, "console=ttyS0 quiet"));
        assert!(wanted(Mode::Auto, &new, "console=ttyS0 no-kvmclock"));
        assert!(wanted(Mode::Auto, &Guest::Linux(Some((5, 2))), ""));
        assert!(wanted(Mode::Auto, &Guest::Linux(None), ""));
        assert!(!wanted(Mode::Auto, &Guest::Other, ""));
        assert!(wanted(Mode::On, &Guest::Other, ""));
        assert!(!wanted(Mode::Off, &Guest::Linux(Some((4, 14))), ""));
    }

    #[test]
    fn finds_the_banner_across_chunks() {
        let mut image = vec![0u8; (1 << 20) - 5];
        image.extend_from_slice(b"Linux version 6.1.0-28 (gcc)\0");
        image.extend(vec![0u8; 100]);
        assert_eq!(
            scan_banner(&image[..]).unwrap(),
            Some(Guest::Linux(Some((6, 1))))
        );
        assert_eq!(scan_banner(&[0u8; 4096][..]).unwrap(), None);
    }
}
