//! The kernel command line, composed in one place ([`compose`]): minnow's defaults, the
//! devices, the root device, what minnow's guest init needs to run the workload, then the
//! user's arguments (later ones win).

use base64::Engine as _;
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

/// Largest kernel command line of minnow's kernel, with its NUL.
pub const CMDLINE_LIMIT: usize = 2048;

/// Room kept for everything else on the command line (defaults, devices, root, init).
pub const CMDLINE_RESERVE: usize = 320;

/// What minnow's guest init is told to do (docs/design.md, "Guest workload protocol").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Workload {
    /// `init=`: the init to run, when it is not the root filesystem's `/init`.
    pub init: Option<String>,
    /// Boot with `quiet`, so the console carries the workload's output.
    pub quiet: bool,
    /// The command the init runs (`minnow.cmd=`); empty: the init's own default.
    pub argv: Vec<String>,
    /// The console is not a terminal: the init turns off `\n` → `\r\n` (`minnow.raw`).
    pub raw: bool,
}

/// The pieces of a command line, each from where it is known.
#[derive(Clone, Debug)]
pub struct Parts<'a> {
    /// Device announcements and addresses (`virtio_mmio.device=`, `ip=`).
    pub devices: &'a [String],
    /// The root device, and whether its disk is read-only.
    pub root: Option<(&'a str, bool)>,
    /// The guest init's workload.
    pub workload: &'a Workload,
    /// The user's `--cmdline`.
    pub user: Option<&'a str>,
}

/// The whole command line: defaults, device announcements, the root device (read-only
/// if its disk is), the workload's arguments, then the user's arguments, which come last
/// so they win and so that anything after ` -- ` reaches init.
pub fn compose(parts: &Parts) -> Result<String, Error> {
    let mut out = vec![DEFAULT.to_string()];
    out.extend(parts.devices.iter().filter(|d| !d.is_empty()).cloned());
    if let Some((root, ro)) = parts.root {
        out.push(format!("root={root} {}", if ro { "ro" } else { "rw" }));
    }
    let w = parts.workload;
    if w.quiet {
        out.push("quiet".into());
    }
    if let Some(init) = &w.init {
        out.push(format!("init={init}"));
    }
    if !w.argv.is_empty() {
        out.push(cmd_arg(&w.argv)?);
    }
    if w.raw && (!w.argv.is_empty() || w.init.is_some()) {
        out.push("minnow.raw".into());
    }
    if let Some(extra) = parts.user.map(str::trim).filter(|s| !s.is_empty()) {
        out.push(extra.to_string());
    }
    Ok(out.join(" "))
}

/// Quotes `s` for a POSIX shell: `'...'`, with `'` written as `'\''`.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Checks that `argv` fits on the kernel command line as a workload, before the work of
/// preparing a VM for it.
pub fn check_command(argv: &[String]) -> Result<(), Error> {
    cmd_arg(argv).map(drop)
}

/// The argument that carries `argv` to the guest init: `minnow.cmd=<base64 of the
/// shell-quoted command line>`. The kernel splits its command line on spaces and only
/// understands double quotes; base64 (standard, padded: what busybox `base64 -d` reads)
/// has neither.
fn cmd_arg(argv: &[String]) -> Result<String, Error> {
    let line = argv
        .iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    let arg = format!(
        "minnow.cmd={}",
        base64::engine::general_purpose::STANDARD.encode(line.as_bytes())
    );
    let max = CMDLINE_LIMIT - 1 - CMDLINE_RESERVE;
    if arg.len() > max {
        return Err(Error::CommandTooLong {
            len: arg.len(),
            max,
        });
    }
    Ok(arg)
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

    fn line(
        devices: &[&str],
        root: Option<(&str, bool)>,
        w: &Workload,
        user: Option<&str>,
    ) -> String {
        let devices: Vec<String> = devices.iter().map(|d| d.to_string()).collect();
        compose(&Parts {
            devices: &devices,
            root,
            workload: w,
            user,
        })
        .unwrap()
    }

    #[test]
    fn user_arguments_follow_defaults() {
        let none = Workload::default();
        assert_eq!(line(&[], None, &none, None), DEFAULT);
        assert_eq!(line(&[], None, &none, Some("  ")), DEFAULT);
        assert_eq!(
            line(&[], None, &none, Some("quiet")),
            format!("{DEFAULT} quiet")
        );
        assert_eq!(
            line(
                &["virtio_mmio.device=4K@0xd0001000:5"],
                Some(("/dev/vda", true)),
                &none,
                Some("-- /bin/true")
            ),
            format!("{DEFAULT} virtio_mmio.device=4K@0xd0001000:5 root=/dev/vda ro -- /bin/true")
        );
        assert!(DEFAULT.contains("console=ttyS0") && DEFAULT.contains("reboot=k"));
    }

    #[test]
    fn workload_goes_before_the_user_arguments() {
        let w = Workload {
            init: Some("/.minnow/init".into()),
            quiet: true,
            argv: vec!["true".into()],
            raw: true,
        };
        assert_eq!(
            line(&[], Some(("/dev/vda", false)), &w, Some("loglevel=8")),
            format!("{DEFAULT} root=/dev/vda rw quiet init=/.minnow/init minnow.cmd=dHJ1ZQ== minnow.raw loglevel=8")
        );
        // minnow.raw only matters to minnow's init, so it goes only with a workload.
        let raw_only = Workload {
            raw: true,
            ..Workload::default()
        };
        assert_eq!(line(&[], None, &raw_only, None), DEFAULT);
    }

    /// Decodes what `cmd_arg` encodes, the way the guest's shell would see the words
    /// of a line of single-quoted and bare words.
    fn unquote(line: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut cur = String::new();
        let mut in_word = false;
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\'' => {
                    in_word = true;
                    for q in chars.by_ref() {
                        if q == '\'' {
                            break;
                        }
                        cur.push(q);
                    }
                }
                '\\' => {
                    in_word = true;
                    cur.extend(chars.next());
                }
                ' ' => {
                    if in_word {
                        words.push(std::mem::take(&mut cur));
                    }
                    in_word = false;
                }
                c => {
                    in_word = true;
                    cur.push(c);
                }
            }
        }
        if in_word {
            words.push(cur);
        }
        words
    }

    #[test]
    fn command_round_trips_through_quoting_and_base64() {
        let argv: Vec<String> = [
            "echo",
            "a  b",
            "it's",
            "",
            "$HOME `x` \"q\" \\ * ?",
            "line\nbreak",
            "--",
            "ünï",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let arg = cmd_arg(&argv).unwrap();
        let b64 = arg.strip_prefix("minnow.cmd=").unwrap();
        assert!(b64
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)));
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(unquote(&String::from_utf8(decoded).unwrap()), argv);
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("plain-word"), "plain-word");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn too_long_command_is_refused() {
        let ok = vec!["x".repeat(1000)];
        assert!(cmd_arg(&ok).is_ok());
        let long = vec!["x".repeat(1500)];
        let e = cmd_arg(&long).unwrap_err().to_string();
        assert!(e.contains("too long") && !e.contains('\n'), "{e}");
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
