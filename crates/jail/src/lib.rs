//! A jail for minnow's VMM, in the spirit of Firecracker's jailer: the VMM runs as an
//! unprivileged uid:gid, without capabilities, as PID 1 of its own PID namespace, in its
//! own mount namespace (and optionally network namespace) and cgroup, with a root that
//! holds only the files of its VM and the device nodes it needs. It knows nothing about
//! VMs: the caller (minnow's `run --jail`) says which files go in, under which names, and
//! what to exec.
//!
//! The jail's root is a small tmpfs mounted on DIR inside the VMM's mount namespace;
//! the files are bind-mounted into it (read-only where the VM only reads them), the
//! device nodes made with mknod. Nothing is written to DIR on the host, and every mount
//! lives in a namespace that dies with the VMM, so what is left to clean up is the cgroup
//! and DIR itself when the jailer created it.
//!
//! Steps in the jailer (this process, as root, on the host), [`run`]:
//! 1. check the inputs: root, the ids, the files and devices, the network namespace; open
//!    the VMM binary (it is executed from that fd, so no copy goes into the jail);
//! 2. create DIR if it is missing;
//! 3. create the cgroup `minnow-jail-<id>` (cgroup v1, v2 or hybrid: minnow-cgroup);
//! 4. block termination signals, clone the child into new PID and mount namespaces (and a
//!    new network namespace with [`Net::New`]);
//! 5. forward SIGINT/SIGTERM/SIGHUP/SIGQUIT to the VMM (a second one kills it), read the
//!    child's set-up report, wait for it, remove the cgroup and DIR (if created), and
//!    return the VMM's exit status.
//!
//! The child's steps, up to the exec, are in [`child`].

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod child;

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{pipe2, Pid};

pub use minnow_cgroup::Limits;
use minnow_cgroup::{Cgroup, Flags};

/// The flags of `minnow run` that set the jail's cgroup limits, named in messages.
pub const LIMIT_FLAGS: Flags = Flags {
    memory: "--jail-mem-mib",
    cpus: "--jail-cpus",
    pids: "--jail-pids",
};

/// RLIMIT_NOFILE in the jail unless told otherwise (Firecracker's jailer uses the same).
pub const DEFAULT_NOFILE: u64 = 2048;

/// Termination signals the jailer passes on to the VMM.
const FORWARDED: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// A jail problem, phrased for the user: `<what>; <fix>`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--jail needs root (namespaces, mounts, cgroups and device nodes); run minnow as root, e.g. with sudo")]
    NotRoot,
    #[error("{flag} {value:?} is not a number; give a numeric id, e.g. {flag} 10000")]
    NotANumber { flag: &'static str, value: String },
    #[error("{flag} 0 would run the VMM as root inside the jail; give an unprivileged id, e.g. {flag} 10000")]
    RootId { flag: &'static str },
    #[error("jail id {0:?} is not usable; use 1 to 64 letters, digits, '-' or '_' (--jail-id)")]
    BadId(String),
    #[error("jail directory {0} is not a directory; give a directory for --jail (it is created if missing)")]
    NotADirectory(PathBuf),
    #[error("cannot create jail directory {path}: {source}; create its parent directory first, or give another --jail")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot open {what} {path}: {source}; check {flag}")]
    Open {
        what: String,
        path: PathBuf,
        flag: String,
        #[source]
        source: io::Error,
    },
    #[error("{what} {path} is not a file; check {flag}")]
    NotAFile {
        what: String,
        path: PathBuf,
        flag: String,
    },
    #[error(
        "device {path} for the jail's {name} is not a character device; check the host's {path}"
    )]
    NotADevice { path: PathBuf, name: String },
    #[error("cannot open network namespace {path}: {source}; give a namespace file such as /var/run/netns/NAME (ip netns add NAME)")]
    Netns {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot open the VMM binary {path}: {source}; check that it exists and is executable")]
    Exe {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("jail name {0:?} is not a plain path inside the jail; this is a bug in minnow")]
    BadName(String),
    #[error(transparent)]
    Cgroup(minnow_cgroup::Error),
    #[error("cannot start the jail: {what}: {source}; check that this kernel has PID and mount namespaces")]
    Start {
        what: &'static str,
        #[source]
        source: Errno,
    },
    /// A set-up step inside the jail failed; the child's own one-line message.
    #[error("{0}")]
    InJail(String),
    #[error("cannot wait for the jailed VMM: {0}; this is a bug in minnow")]
    Wait(#[source] Errno),
}

/// A host file that appears in the jail.
#[derive(Clone, Debug)]
pub struct JailFile {
    /// The file on the host (a regular file, or a block device for a disk).
    pub host: PathBuf,
    /// Its absolute path inside the jail, e.g. `/kernel`.
    pub name: String,
    /// Whether the VMM writes it (else the bind mount is read-only).
    pub writable: bool,
    /// Whether it is executed or mapped executable (the dynamic loader and libraries);
    /// else the bind mount is noexec.
    pub exec: bool,
    /// What it is, for messages: "kernel", "disk".
    pub what: String,
    /// The flag that named it, for messages: "--kernel".
    pub flag: String,
}

/// A device node the jailer makes in the jail with the host device's numbers.
#[derive(Clone, Debug)]
pub struct Device {
    /// The host's device node, e.g. `/dev/kvm` (its major and minor are used).
    pub host: PathBuf,
    /// Its absolute path inside the jail, e.g. `/dev/kvm`.
    pub name: String,
    /// Permission bits.
    pub mode: u32,
    /// Owned by the jail's uid:gid (else by root).
    pub owned: bool,
}

/// The jail's network namespace.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Net {
    /// The host's (the jailer's).
    #[default]
    Host,
    /// A new, empty one (only a loopback that is down).
    New,
    /// An existing one, e.g. `/var/run/netns/NAME`.
    Join(PathBuf),
}

/// Everything a jail is made of. The caller builds it; [`run`] checks it.
#[derive(Clone, Debug, Default)]
pub struct Jail {
    /// The jail's root directory on the host (the mount point of its tmpfs).
    pub dir: PathBuf,
    pub uid: u32,
    pub gid: u32,
    /// Names the cgroup, `minnow-jail-<id>`.
    pub id: String,
    pub files: Vec<JailFile>,
    /// Small files written into the jail, read-only: (absolute path, contents).
    pub contents: Vec<(String, Vec<u8>)>,
    pub devices: Vec<Device>,
    pub net: Net,
    /// TAP devices that must exist in the jail's network namespace (the VMM cannot make them).
    pub taps: Vec<String>,
    /// cgroup limits; the cgroup is made even with none (accounting, and clean-up by kill).
    pub limits: Limits,
    /// RLIMIT_NOFILE.
    pub nofile: u64,
    /// RLIMIT_FSIZE, if any.
    pub fsize: Option<u64>,
    /// The binary to exec (opened before the jail is entered).
    pub exe: PathBuf,
    /// Its argv, argv[0] included; the environment is empty.
    pub argv: Vec<String>,
    /// Where the cgroup mounts are found ([`minnow_cgroup::MOUNTINFO`]).
    pub mountinfo: PathBuf,
}

/// The files the dynamic loader needs to start the binary this process runs (the jail
/// execs a copy of its own binary, `exe`): the ELF interpreter (PT_INTERP, at the path
/// the kernel looks it up by) and the shared objects this process has mapped (those the
/// loader found for the same binary), each at its own path, read-only. Empty for a
/// static binary.
pub fn loader_files(exe: &Path) -> Result<Vec<JailFile>, Error> {
    let exe_err = |source| Error::Exe {
        path: exe.to_path_buf(),
        source,
    };
    let interp = elf_interpreter(&File::open(exe).map_err(exe_err)?).map_err(exe_err)?;
    let Some(interp) = interp else {
        return Ok(Vec::new());
    };
    let me = fs::canonicalize(exe).unwrap_or_else(|_| exe.to_path_buf());
    let maps = fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut paths = vec![interp];
    for path in maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.starts_with('/'))
    {
        let p = PathBuf::from(path);
        let shared = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".so") || n.contains(".so."));
        if shared && p != me && !paths.contains(&p) {
            paths.push(p);
        }
    }
    Ok(paths
        .into_iter()
        .filter_map(|p| {
            Some(JailFile {
                name: p.to_str()?.to_string(),
                host: p,
                writable: false,
                exec: true,
                what: "shared library".into(),
                flag: "the minnow binary's dynamic libraries".into(),
            })
        })
        .collect())
}

/// The PT_INTERP path of a 64-bit little-endian ELF, if it has one.
fn elf_interpreter(file: &File) -> io::Result<Option<PathBuf>> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::FileExt;
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "not a 64-bit ELF executable");
    let mut eh = [0u8; 64];
    file.read_exact_at(&mut eh, 0)?;
    if &eh[..4] != b"\x7fELF" || eh[4] != 2 || eh[5] != 1 {
        return Err(bad());
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u64_at = |b: &[u8], o: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(w)
    };
    let (phoff, phentsize, phnum) = (u64_at(&eh, 0x20), u16_at(&eh, 0x36), u16_at(&eh, 0x38));
    if phentsize < 56 {
        return Err(bad());
    }
    let mut ph = [0u8; 56];
    for i in 0..u64::from(phnum) {
        file.read_exact_at(&mut ph, phoff + i * u64::from(phentsize))?;
        const PT_INTERP: u32 = 3;
        if u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]) != PT_INTERP {
            continue;
        }
        let (off, size) = (u64_at(&ph, 8), u64_at(&ph, 32));
        if size == 0 || size > 4096 {
            return Err(bad());
        }
        let mut path = vec![0u8; size as usize];
        file.read_exact_at(&mut path, off)?;
        let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
        return Ok(Some(PathBuf::from(std::ffi::OsStr::from_bytes(
            &path[..end],
        ))));
    }
    Ok(None)
}

/// Parses a `--uid`/`--gid` value: a number, and not 0.
pub fn parse_id(flag: &'static str, value: &str) -> Result<u32, Error> {
    let id: u32 = value.parse().map_err(|_| Error::NotANumber {
        flag,
        value: value.to_string(),
    })?;
    if id == 0 {
        return Err(Error::RootId { flag });
    }
    Ok(id)
}

/// Checks a jail id: 1 to 64 of `[A-Za-z0-9_-]`.
pub fn check_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::BadId(id.to_string()))
    }
}

/// Checks an in-jail path: absolute, with plain components only (no `.`, `..` or empty
/// ones), not the root itself.
fn check_name(name: &str) -> Result<(), Error> {
    let plain = name.strip_prefix('/').is_some_and(|rest| {
        rest.split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
    });
    if plain {
        Ok(())
    } else {
        Err(Error::BadName(name.to_string()))
    }
}

/// What the jailer checked and opened for the child.
pub(crate) struct Checked {
    /// The host device numbers of `jail.devices`, in order.
    pub rdevs: Vec<u64>,
    /// Whether each of `jail.files` is a block device (its bind mount keeps dev nodes).
    pub block: Vec<bool>,
    /// The VMM binary.
    pub exe: File,
    /// The network namespace to join.
    pub netns: Option<File>,
}

/// What the child needs.
pub(crate) struct Plan<'a> {
    pub jail: &'a Jail,
    pub checked: Checked,
    pub cgroup: Cgroup,
}

/// Checks `jail` and opens what the child needs, touching nothing on the host.
fn check(jail: &Jail) -> Result<Checked, Error> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::NotRoot);
    }
    for (flag, id) in [("--uid", jail.uid), ("--gid", jail.gid)] {
        if id == 0 {
            return Err(Error::RootId { flag });
        }
    }
    check_id(&jail.id)?;
    match fs::metadata(&jail.dir) {
        Ok(m) if !m.is_dir() => return Err(Error::NotADirectory(jail.dir.clone())),
        _ => {}
    }
    let mut block = Vec::new();
    for f in &jail.files {
        check_name(&f.name)?;
        let m = fs::metadata(&f.host).map_err(|source| Error::Open {
            what: f.what.clone(),
            path: f.host.clone(),
            flag: f.flag.clone(),
            source,
        })?;
        let is_block = m.file_type().is_block_device();
        if !m.is_file() && !is_block {
            return Err(Error::NotAFile {
                what: f.what.clone(),
                path: f.host.clone(),
                flag: f.flag.clone(),
            });
        }
        block.push(is_block);
    }
    for (name, _) in &jail.contents {
        check_name(name)?;
    }
    let mut rdevs = Vec::new();
    for d in &jail.devices {
        check_name(&d.name)?;
        let m = fs::metadata(&d.host).map_err(|source| Error::Open {
            what: "device".into(),
            path: d.host.clone(),
            flag: format!("that the host has {}", d.host.display()),
            source,
        })?;
        if !m.file_type().is_char_device() {
            return Err(Error::NotADevice {
                path: d.host.clone(),
                name: d.name.clone(),
            });
        }
        rdevs.push(m.rdev());
    }
    let netns = match &jail.net {
        Net::Join(path) => Some(
            fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(path)
                .map_err(|source| Error::Netns {
                    path: path.clone(),
                    source,
                })?,
        ),
        _ => None,
    };
    let exe = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(&jail.exe)
        .map_err(|source| Error::Exe {
            path: jail.exe.clone(),
            source,
        })?;
    Ok(Checked {
        rdevs,
        block,
        exe,
        netns,
    })
}

/// Builds the jail, runs the VMM in it and waits for it; returns its exit status
/// (128 + N if signal N killed it). Leaves nothing behind on any path: the cgroup and a
/// DIR it created are removed, and its mounts die with the VMM's mount namespace.
///
/// Must be called while this process is single-threaded (it clones).
pub fn run(jail: &Jail) -> Result<i32, Error> {
    let checked = check(jail)?;
    let created = if jail.dir.exists() {
        false
    } else {
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&jail.dir)
            .map_err(|source| Error::CreateDir {
                path: jail.dir.clone(),
                source,
            })?;
        true
    };
    let result = with_dir(jail, checked);
    if created {
        remove_dir(&jail.dir);
    }
    result
}

/// Removes the DIR the jailer created; it is empty, since the jail never writes to it.
fn remove_dir(dir: &Path) {
    if let Err(e) = fs::remove_dir(dir) {
        log::warn!(
            "cannot remove jail directory {}: {e}; something else wrote into it",
            dir.display()
        );
    }
}

fn with_dir(jail: &Jail, checked: Checked) -> Result<i32, Error> {
    let layout = minnow_cgroup::detect(&jail.mountinfo);
    let cgroup = Cgroup::create_with(
        &format!("jail-{}", jail.id),
        &jail.limits,
        &layout,
        &LIMIT_FLAGS,
    )
    .map_err(Error::Cgroup)?;
    let plan = Plan {
        jail,
        checked,
        cgroup,
    };
    let result = start_and_wait(&plan);
    plan.cgroup.remove();
    result
}

fn start_and_wait(plan: &Plan) -> Result<i32, Error> {
    let start = |what| move |source| Error::Start { what, source };
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).map_err(start("pipe"))?;
    let mut flags = CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS;
    if plan.jail.net == Net::New {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    // Termination signals wait until the forwarder is in place; the child unblocks them.
    let mut forwarded = SigSet::empty();
    for s in FORWARDED {
        forwarded.add(s);
    }
    let mut old_mask = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), Some(&mut old_mask))
        .map_err(start("sigprocmask"))?;
    let mut stack = vec![0u8; 256 << 10];
    let mut err_w: Option<OwnedFd> = Some(err_w);
    let cb: nix::sched::CloneCb = Box::new(|| match err_w.take() {
        Some(w) => child::main(plan, &old_mask, w),
        None => 1,
    });
    // SAFETY: without CLONE_VM the child gets a copy of this address space, as with
    // fork; the caller is single-threaded (see `run`), so the child cannot inherit a lock
    // held by another thread. The stack outlives the call and only the child uses it.
    let cloned = unsafe { nix::sched::clone(cb, &mut stack, flags, Some(libc::SIGCHLD)) };
    drop(err_w);
    let forwarder = cloned.ok().and_then(forward_signals);
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
    let child = cloned.map_err(start("clone"))?;
    log::debug!(
        "jail: VMM is PID {child} (PID 1 of its PID namespace), root {}",
        plan.jail.dir.display()
    );
    // The pipe closes on exec (CLOEXEC) or carries the failed step's message.
    let mut msg = String::new();
    let _ = File::from(err_r).read_to_string(&mut msg);
    let status = wait_for(child);
    drop(forwarder);
    if !msg.is_empty() {
        return Err(Error::InJail(msg.trim().to_string()));
    }
    status
}

fn wait_for(child: Pid) -> Result<i32, Error> {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::Wait(e)),
        }
    }
}

/// Passes termination signals on to the VMM; the second one is a SIGKILL.
fn forward_signals(child: Pid) -> Option<signal_hook::iterator::Handle> {
    let mut signals =
        signal_hook::iterator::Signals::new(FORWARDED.map(|s| s as libc::c_int)).ok()?;
    let handle = signals.handle();
    std::thread::spawn(move || {
        for (n, sig) in signals.forever().enumerate() {
            let sig = match n {
                0 => Signal::try_from(sig).unwrap_or(Signal::SIGTERM),
                _ => Signal::SIGKILL,
            };
            let _ = kill(child, sig);
        }
    });
    Some(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_files_of_this_binary() {
        let exe = Path::new("/proc/self/exe");
        let files = loader_files(exe).unwrap();
        let interp = elf_interpreter(&File::open(exe).unwrap()).unwrap();
        match interp {
            // A dynamic test binary: the interpreter first, then libc among the libraries.
            Some(i) => {
                assert_eq!(files[0].host, i);
                assert!(
                    files.iter().any(|f| f.name.contains("libc.so")),
                    "{files:?}"
                );
                assert!(files.iter().all(|f| f.exec && !f.writable));
            }
            None => assert!(files.is_empty()),
        }
        assert!(elf_interpreter(&File::open("/proc/self/maps").unwrap()).is_err());
    }

    #[test]
    fn ids_are_numbers_and_not_root() {
        assert_eq!(parse_id("--uid", "10000").unwrap(), 10000);
        let e = parse_id("--uid", "nobody").unwrap_err().to_string();
        assert!(
            e.contains("--uid \"nobody\" is not a number") && e.contains("; give"),
            "{e}"
        );
        assert!(parse_id("--gid", "-1").is_err());
        let e = parse_id("--gid", "0").unwrap_err().to_string();
        assert!(e.contains("as root inside the jail"), "{e}");
    }

    #[test]
    fn jail_ids_and_names() {
        assert!(check_id("test-1_a").is_ok());
        for bad in ["", "a/b", "..", "a b", &"x".repeat(65)] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("/kernel").is_ok());
        assert!(check_name("/dev/net/tun").is_ok());
        for bad in ["/", "kernel", "/a/../b", "/./x", "", "/a//b", "/a/"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_error_is_one_line() {
        let io = || io::Error::from_raw_os_error(libc::ENOENT);
        let errors = [
            Error::NotRoot,
            Error::NotADirectory("/x".into()),
            Error::CreateDir {
                path: "/x".into(),
                source: io(),
            },
            Error::Open {
                what: "kernel".into(),
                path: "/k".into(),
                flag: "--kernel".into(),
                source: io(),
            },
            Error::Netns {
                path: "/n".into(),
                source: io(),
            },
            Error::Start {
                what: "clone",
                source: Errno::EPERM,
            },
        ];
        for e in errors {
            let s = e.to_string();
            assert!(!s.contains('\n') && s.contains("; "), "{s}");
        }
    }
}
