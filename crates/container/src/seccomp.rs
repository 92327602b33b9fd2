//! Seccomp for containers: the OCI `linux.seccomp` object compiled to a BPF program with
//! libseccomp, loaded by the container's init just before exec, and Docker's default
//! profile filtered the way moby does at run time.
//!
//! [`compile`] does all the libseccomp work in the runtime (a bad profile fails before the
//! container exists) and keeps only the exported BPF program; [`Filter::load`] in the
//! init is then one `seccomp(2)` (or `prctl(2)`) call: no library code, no allocation,
//! between fork and exec. runc does the same (it exports libseccomp's program, patches it
//! and loads it itself).
//!
//! What runc does and minnow follows (runc 1.1 `libcontainer/seccomp`): `SCMP_ACT_KILL` is
//! kill-thread; `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE` without `errnoRet` return `EPERM`; a
//! rule whose action is the default action is skipped; a syscall name libseccomp does not
//! know (newer than libseccomp 2.5.4, or misspelt) is skipped and listed in
//! [`Filter::skipped`]; several conditions on the same argument are added as separate
//! rules (libseccomp would AND them, which can never match), otherwise one rule ANDs its
//! conditions; no_new_privs is not set by the filter (it is `process.noNewPrivileges`'s
//! business). Not done: runc's `-ENOSYS` stub for syscalls newer than the profile
//! (docs/containers.md, "Security defaults").

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};
use serde::Deserialize;

/// Docker's default profile (profiles/README.md: origin, version, sha256, licence).
pub const DOCKER_DEFAULT_JSON: &str = include_str!("../profiles/docker-default.json");

/// The kernel's limit on a classic BPF program (`BPF_MAXINSNS`).
const BPF_MAXINSNS: usize = 4096;
/// The largest errno the kernel returns (`MAX_ERRNO`); larger values are clamped by it.
const MAX_ERRNO: u32 = 4095;
const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
const SECCOMP_FILTER_FLAG_TSYNC: libc::c_ulong = 1 << 0;
const SECCOMP_FILTER_FLAG_LOG: libc::c_ulong = 1 << 1;
const SECCOMP_FILTER_FLAG_SPEC_ALLOW: libc::c_ulong = 1 << 2;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("linux.seccomp.{field} (a seccomp notify agent) is not supported by minnow; remove it from the config")]
    Listener { field: &'static str },
    #[error("linux.seccomp{at}: action SCMP_ACT_NOTIFY needs a seccomp notify agent, which minnow does not support; use another action")]
    Notify { at: String },
    #[error("linux.seccomp.flags: {flag} needs a seccomp notify agent, which minnow does not support; remove the flag")]
    NotifyFlag { flag: String },
    #[error("linux.seccomp.architectures: {arch} is not known to libseccomp {version}; remove it")]
    Arch {
        arch: String,
        version: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error("linux.seccomp.syscalls[{rule}].args: index {index} is out of range (a syscall has arguments 0 to 5); fix the index")]
    ArgIndex { rule: usize, index: usize },
    #[error("linux.seccomp.{field}: {value} is larger than the largest errno ({MAX_ERRNO}); use a value up to {MAX_ERRNO}")]
    Errno { field: String, value: u32 },
    #[error("linux.seccomp.{field}: trace value {value} does not fit in 16 bits; use a value up to 65535")]
    TraceValue { field: String, value: u32 },
    #[error("linux.seccomp.syscalls[{rule}]: libseccomp refused the rule for {syscall}; check its action and args")]
    Rule {
        rule: usize,
        syscall: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error("seccomp: libseccomp failed to {what}; check that libseccomp2 is installed and works")]
    Libseccomp {
        what: &'static str,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error(
        "seccomp: cannot read back the exported BPF program; check /proc/sys/fs limits and memory"
    )]
    Export(#[source] std::io::Error),
    #[error("linux.seccomp: the compiled filter has {len} BPF instructions, more than the kernel's {BPF_MAXINSNS}; use fewer rules or argument conditions")]
    TooLong { len: usize },
    #[error("seccomp: loading the filter needs CAP_SYS_ADMIN or no_new_privs; load it before capabilities are dropped (runc's order when process.noNewPrivileges is false), or set process.noNewPrivileges")]
    NeedsPrivilege(#[source] std::io::Error),
    #[error("seccomp: the kernel refused the filter (flags {flags:#x}); check that the kernel supports seccomp filters and those flags")]
    Load {
        flags: libc::c_ulong,
        #[source]
        source: std::io::Error,
    },
    #[error("seccomp: could not synchronise the filter to thread {tid} (SECCOMP_FILTER_FLAG_TSYNC); load it while the process has one thread")]
    Tsync { tid: i64 },
    #[error("seccomp profile: not valid JSON for a Docker or OCI profile; fix the file")]
    ProfileJson(#[source] serde_json::Error),
    #[error("seccomp profile: both 'architectures' and 'archMap' are given; use one of them")]
    ArchAndArchMap,
    #[error("seccomp profile: syscalls[{rule}] has both 'name' and 'names'; use one of them")]
    NameAndNames { rule: usize },
    #[error("seccomp profile: syscalls[{rule}].{field}.minKernel {value:?} is not \"<kernel>.<major>\"; write it like \"4.8\"")]
    MinKernel {
        rule: usize,
        field: &'static str,
        value: String,
    },
    #[error(
        "seccomp profile: defaultAction {value:?} is not a seccomp action; use e.g. SCMP_ACT_ERRNO"
    )]
    DefaultAction { value: String },
}

/// A compiled filter: the BPF program and the `seccomp(2)` flags to load it with.
#[derive(Clone, Debug)]
pub struct Filter {
    program: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
    skipped: Vec<String>,
}

/// Compiles an OCI seccomp object (see the module documentation for the rules), reusing
/// the program from the cache directory when this exact object was compiled before
/// ([`default_cache_dir`]; [`compile_cached`] names the directory).
pub fn compile(spec: &LinuxSeccomp) -> Result<Filter, Error> {
    compile_cached(spec, default_cache_dir().as_deref())
}

/// The cache [`compile`] uses: `$MINNOW_SECCOMP_CACHE` (empty or `off`: none), else
/// `/run/minnow/seccomp-cache` for root (a tmpfs: emptied at boot), else none.
pub fn default_cache_dir() -> Option<PathBuf> {
    if cfg!(test) {
        return None; // unit tests never write outside their temporary directories
    }
    match std::env::var_os("MINNOW_SECCOMP_CACHE") {
        Some(v) if v.is_empty() || v == "off" => None,
        Some(v) => Some(PathBuf::from(v)),
        None => nix::unistd::geteuid()
            .is_root()
            .then(|| PathBuf::from("/run/minnow/seccomp-cache")),
    }
}

/// [`compile`] with the cache in `cache` (None: always compile). Compiling Docker's
/// three-architecture profile with libseccomp 2.5.4 takes about 20 ms, reading it back
/// about 0.1 ms (docs/containers.md, "Security defaults"). The cache is keyed by the
/// sha256 of the object's JSON and the libseccomp version; a directory not owned by
/// this user or writable by others is not used, and a cache that cannot be read or
/// written only costs the compile.
pub fn compile_cached(spec: &LinuxSeccomp, cache: Option<&Path>) -> Result<Filter, Error> {
    let flags = check(spec)?;
    let Some(dir) = cache else {
        return compile_uncached(spec, flags);
    };
    let key = cache_key(spec);
    if let Some(program) = cache::read(dir, &key) {
        // Validate exactly as a compile would (actions, errno values, indexes) without
        // building the filter, so a cached object fails the same way.
        validate_rules(spec)?;
        return Ok(Filter {
            program,
            flags,
            skipped: unknown_names(spec),
        });
    }
    let filter = compile_uncached(spec, flags)?;
    if let Err(e) = cache::write(dir, &key, &filter.program) {
        log::debug!("seccomp: not cached in {}: {e}", dir.display());
    }
    Ok(filter)
}

fn cache_key(spec: &LinuxSeccomp) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"minnow seccomp cache 1\0");
    h.update(libseccomp_version().as_bytes());
    h.update(b"\0");
    // serde_json writes the fields in declaration order: one object, one text.
    h.update(serde_json::to_vec(spec).unwrap_or_default());
    hex::encode(h.finalize())
}

/// The checks on the object as a whole; returns the `seccomp(2)` flags.
fn check(spec: &LinuxSeccomp) -> Result<libc::c_ulong, Error> {
    if spec.listener_path().is_some() {
        return Err(Error::Listener {
            field: "listenerPath",
        });
    }
    if spec.listener_metadata().is_some() {
        return Err(Error::Listener {
            field: "listenerMetadata",
        });
    }
    let mut flags = 0;
    for flag in spec.flags().iter().flatten() {
        flags |= match flag {
            // runc: TSYNC is what libseccomp does when it can; it is a no-op for the
            // single-threaded init and keeps a multi-threaded caller consistent.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                return Err(Error::NotifyFlag {
                    flag: flag.to_string(),
                })
            }
        };
    }
    Ok(flags)
}

fn validate_rules(spec: &LinuxSeccomp) -> Result<(), Error> {
    default_action(spec)?;
    for (i, rule) in spec.syscalls().iter().flatten().enumerate() {
        rule_action(i, rule)?;
        for arg in rule.args().iter().flatten() {
            if arg.index() >= 6 {
                return Err(Error::ArgIndex {
                    rule: i,
                    index: arg.index(),
                });
            }
        }
    }
    Ok(())
}

fn unknown_names(spec: &LinuxSeccomp) -> Vec<String> {
    spec.syscalls()
        .iter()
        .flatten()
        .flat_map(|r| r.names())
        .filter(|n| ScmpSyscall::from_name(n).is_err())
        .cloned()
        .collect()
}

fn default_action(spec: &LinuxSeccomp) -> Result<ScmpAction, Error> {
    action(
        spec.default_action(),
        spec.default_errno_ret(),
        "defaultErrnoRet",
        || ".defaultAction".to_string(),
    )
}

fn rule_action(i: usize, rule: &LinuxSyscall) -> Result<ScmpAction, Error> {
    action(
        rule.action(),
        rule.errno_ret(),
        &format!("syscalls[{i}].errnoRet"),
        || format!(".syscalls[{i}] ({})", rule.names().join(" ")),
    )
}

fn compile_uncached(spec: &LinuxSeccomp, flags: libc::c_ulong) -> Result<Filter, Error> {
    let default = default_action(spec)?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|source| Error::Libseccomp {
        what: "create a filter",
        source,
    })?;
    // The filter never sets no_new_privs itself (runc: SetNoNewPrivsBit(false)).
    ctx.set_ctl_nnp(false).map_err(|source| Error::Libseccomp {
        what: "clear the filter's no_new_privs attribute",
        source,
    })?;
    // A binary tree of syscall numbers instead of libseccomp's default linear list: a
    // longer program (1200 instructions for Docker's profile instead of 960) that the
    // kernel checks and emulates for its per-syscall cache in 0.47 ms instead of 1.18 ms
    // at load, and that every syscall of the container runs through in fewer steps.
    ctx.set_ctl_optimize(2)
        .map_err(|source| Error::Libseccomp {
            what: "select the binary-tree optimisation",
            source,
        })?;
    for arch in spec.architectures().iter().flatten() {
        if *arch == Arch::ScmpArchNative {
            continue;
        }
        let name = arch.to_string();
        let scmp = name.parse::<ScmpArch>().map_err(|source| Error::Arch {
            arch: name.clone(),
            version: libseccomp_version(),
            source,
        })?;
        ctx.add_arch(scmp).map_err(|source| Error::Arch {
            arch: name,
            version: libseccomp_version(),
            source,
        })?;
    }

    let mut skipped = Vec::new();
    for (i, rule) in spec.syscalls().iter().flatten().enumerate() {
        add_rule(&mut ctx, i, rule, default, &mut skipped)?;
    }

    let program = export(&ctx)?;
    if program.len() > BPF_MAXINSNS {
        return Err(Error::TooLong { len: program.len() });
    }
    if !skipped.is_empty() {
        log::debug!(
            "seccomp: syscalls unknown to libseccomp {} skipped (as runc does): {}",
            libseccomp_version(),
            skipped.join(" ")
        );
    }
    Ok(Filter {
        program,
        flags,
        skipped,
    })
}

/// The libseccomp action for an OCI action (runc's mapping).
fn action(
    act: LinuxSeccompAction,
    errno_ret: Option<u32>,
    field: &str,
    at: impl Fn() -> String,
) -> Result<ScmpAction, Error> {
    Ok(match act {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => {
            let errno = errno_ret.unwrap_or(libc::EPERM as u32);
            if errno > MAX_ERRNO {
                return Err(Error::Errno {
                    field: field.to_string(),
                    value: errno,
                });
            }
            ScmpAction::Errno(errno as i32)
        }
        LinuxSeccompAction::ScmpActTrace => {
            let value = errno_ret.unwrap_or(libc::EPERM as u32);
            let Ok(v) = u16::try_from(value) else {
                return Err(Error::TraceValue {
                    field: field.to_string(),
                    value,
                });
            };
            ScmpAction::Trace(v)
        }
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => return Err(Error::Notify { at: at() }),
    })
}

fn add_rule(
    ctx: &mut ScmpFilterContext,
    i: usize,
    rule: &LinuxSyscall,
    default: ScmpAction,
    skipped: &mut Vec<String>,
) -> Result<(), Error> {
    let act = rule_action(i, rule)?;
    let mut conditions = Vec::new();
    let mut per_index = [0usize; 6];
    for arg in rule.args().iter().flatten() {
        let index = arg.index();
        if index >= per_index.len() {
            return Err(Error::ArgIndex { rule: i, index });
        }
        per_index[index] += 1;
        conditions.push(condition(arg, index as u32));
    }
    let separate = per_index.iter().any(|&n| n > 1);
    for name in rule.names() {
        let Ok(syscall) = ScmpSyscall::from_name(name) else {
            skipped.push(name.clone());
            continue;
        };
        if act == default {
            // libseccomp refuses a rule that repeats the default action; it is redundant.
            continue;
        }
        let add = |ctx: &mut ScmpFilterContext, conds: &[ScmpArgCompare]| {
            ctx.add_rule_conditional(act, syscall, conds)
                .map(|_| ())
                .map_err(|source| Error::Rule {
                    rule: i,
                    syscall: name.clone(),
                    source,
                })
        };
        if separate {
            for c in &conditions {
                add(ctx, std::slice::from_ref(c))?;
            }
        } else {
            add(ctx, &conditions)?;
        }
    }
    Ok(())
}

/// OCI's `SCMP_CMP_MASKED_EQ` is `(arg & value) == valueTwo`; other operators compare
/// with `value` and ignore `valueTwo` (libseccomp's two-operand form, as runc passes it).
fn condition(arg: &LinuxSeccompArg, index: u32) -> ScmpArgCompare {
    let op = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            return ScmpArgCompare::new(
                index,
                ScmpCompareOp::MaskedEqual(arg.value()),
                arg.value_two().unwrap_or(0),
            )
        }
    };
    ScmpArgCompare::new(index, op, arg.value())
}

/// libseccomp's program, through a memfd (libseccomp 2.5 has no export to memory).
fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>, Error> {
    let fd =
        nix::sys::memfd::memfd_create(c"minnow-seccomp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|e| Error::Export(e.into()))?;
    let mut file = std::fs::File::from(fd);
    ctx.export_bpf(&file).map_err(|source| Error::Libseccomp {
        what: "export the BPF program",
        source,
    })?;
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(Error::Export)?;
    let size = std::mem::size_of::<libc::sock_filter>();
    if bytes.len() % size != 0 {
        return Err(Error::Export(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} bytes is not a whole number of instructions",
                bytes.len()
            ),
        )));
    }
    Ok(bytes.chunks_exact(size).map(insn).collect())
}

fn libseccomp_version() -> String {
    match libseccomp::ScmpVersion::current() {
        Ok(v) => format!("{}.{}.{}", v.major, v.minor, v.micro),
        Err(_) => "(unknown version)".into(),
    }
}

/// The on-disk program cache: `DIR/<key>.bpf` = the instructions, then the sha256 of
/// them; written to a temporary file and renamed, so readers see whole files only.
mod cache {
    use std::fs;
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
    use std::path::Path;

    use sha2::{Digest, Sha256};

    const INSN: usize = std::mem::size_of::<libc::sock_filter>();

    /// Whether `dir` is ours alone: a real directory owned by this user, not writable
    /// by group or others (a program from it goes straight into the kernel).
    fn trusted(dir: &Path) -> bool {
        fs::symlink_metadata(dir).is_ok_and(|m| {
            m.is_dir() && m.uid() == nix::unistd::geteuid().as_raw() && m.mode() & 0o022 == 0
        })
    }

    pub(super) fn read(dir: &Path, key: &str) -> Option<Vec<libc::sock_filter>> {
        if !trusted(dir) {
            return None;
        }
        let bytes = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dir.join(format!("{key}.bpf")))
            .and_then(|mut f| {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut v).map(|_| v)
            })
            .ok()?;
        let (program, sum) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
        if program.is_empty()
            || program.len() % INSN != 0
            || program.len() / INSN > super::BPF_MAXINSNS
            || Sha256::digest(program).as_slice() != sum
        {
            log::debug!("seccomp: ignoring a damaged cache entry {key}");
            return None;
        }
        Some(program.chunks_exact(INSN).map(super::insn).collect())
    }

    pub(super) fn write(
        dir: &Path,
        key: &str,
        program: &[libc::sock_filter],
    ) -> std::io::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        if !trusted(dir) {
            return Err(std::io::Error::other(
                "not a directory of this user's, or writable by others",
            ));
        }
        let mut bytes = Vec::with_capacity(program.len() * INSN + 32);
        for i in program {
            bytes.extend_from_slice(&i.code.to_ne_bytes());
            bytes.extend_from_slice(&[i.jt, i.jf]);
            bytes.extend_from_slice(&i.k.to_ne_bytes());
        }
        let sum = Sha256::digest(&bytes);
        bytes.extend_from_slice(&sum);
        let tmp = dir.join(format!(".{key}.{}.tmp", std::process::id()));
        let result = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&bytes))
            .and_then(|()| fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)))
            .and_then(|()| fs::rename(&tmp, dir.join(format!("{key}.bpf"))));
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

fn insn(b: &[u8]) -> libc::sock_filter {
    libc::sock_filter {
        code: u16::from_ne_bytes([b[0], b[1]]),
        jt: b[2],
        jf: b[3],
        k: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
    }
}

impl Filter {
    /// Loads the filter into the calling thread (and, with `SECCOMP_FILTER_FLAG_TSYNC`,
    /// its other threads). It survives exec and is inherited by children.
    ///
    /// Order in the container's init (runc's `standard_init_linux.go`): with
    /// `process.noNewPrivileges` false the kernel requires CAP_SYS_ADMIN (in the
    /// process's user namespace) to load a filter, so load it *before* `caps::apply`
    /// drops CAP_SYS_ADMIN (Docker's 14 default capabilities do not have it), and the
    /// profile must then allow what the init still does (capset, prctl, setresuid,
    /// execve: Docker's does). With noNewPrivileges true, set no_new_privs and load it
    /// last, just before exec. Without either this returns [`Error::NeedsPrivilege`].
    pub fn load(&self) -> Result<(), Error> {
        let prog = libc::sock_fprog {
            len: self.program.len() as libc::c_ushort,
            filter: self.program.as_ptr().cast_mut(),
        };
        let rc = if self.flags == 0 {
            // SAFETY: PR_SET_SECCOMP reads a sock_fprog that points at `self.program`,
            // which outlives the call; the kernel copies the program.
            unsafe {
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                    &prog as *const libc::sock_fprog,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                ) as libc::c_long
            }
        } else {
            // SAFETY: seccomp(SECCOMP_SET_MODE_FILTER) reads the same sock_fprog, valid
            // for the call; the flags are the kernel's documented filter flags.
            unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    SECCOMP_SET_MODE_FILTER,
                    self.flags,
                    &prog as *const libc::sock_fprog,
                )
            }
        };
        match rc {
            0 => Ok(()),
            tid if tid > 0 => Err(Error::Tsync { tid }),
            _ => {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EACCES) {
                    Err(Error::NeedsPrivilege(err))
                } else {
                    Err(Error::Load {
                        flags: self.flags,
                        source: err,
                    })
                }
            }
        }
    }

    /// Syscall names of the profile that libseccomp does not know (skipped, as runc does).
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// The number of BPF instructions.
    pub fn len(&self) -> usize {
        self.program.len()
    }

    /// Whether the program is empty (never, for a compiled filter).
    pub fn is_empty(&self) -> bool {
        self.program.is_empty()
    }
}

// ---------------------------------------------------------------------------------------
// Docker profiles (the format of Docker's default.json and of `--security-opt seccomp=FILE`)

/// A Docker seccomp profile: an OCI seccomp object plus `archMap` and per-rule `name`,
/// `includes`/`excludes` (caps, arches, minKernel) that moby resolves at run time.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    #[serde(default)]
    default_action: String,
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Vec<Arch>,
    #[serde(default)]
    arch_map: Vec<ArchMap>,
    #[serde(default)]
    syscalls: Vec<ProfileSyscall>,
    flags: Option<Vec<LinuxSeccompFilterFlag>>,
    listener_path: Option<std::path::PathBuf>,
    listener_metadata: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Vec<Arch>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileSyscall {
    #[serde(default)]
    name: String,
    #[serde(default)]
    names: Vec<String>,
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    includes: Condition,
    #[serde(default)]
    excludes: Condition,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Condition {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    min_kernel: Option<String>,
}

/// The host facts a Docker profile is resolved against.
#[derive(Clone, Copy, Debug)]
pub struct Host {
    /// Go's name for the architecture (`runtime.GOARCH` through moby's goToNative).
    pub arch: &'static str,
    /// The architecture whose `archMap` entry is kept.
    pub seccomp_arch: Option<Arch>,
    /// The running kernel's (version, major revision); None if unknown.
    pub kernel: Option<(u64, u64)>,
}

impl Host {
    /// This machine.
    pub fn current() -> Host {
        let (arch, seccomp_arch) = if cfg!(target_arch = "x86_64") {
            ("amd64", Some(Arch::ScmpArchX86_64))
        } else if cfg!(target_arch = "aarch64") {
            ("arm64", Some(Arch::ScmpArchAarch64))
        } else if cfg!(target_arch = "x86") {
            ("x86", Some(Arch::ScmpArchX86))
        } else {
            ("", None)
        };
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .and_then(|r| parse_release(&r));
        Host {
            arch,
            seccomp_arch,
            kernel,
        }
    }
}

/// moby's parseRelease: "6.18.44-amd64" → (6, 18); "3.12-1-amd64" → (3, 12).
fn parse_release(release: &str) -> Option<(u64, u64)> {
    let mut parts = release.trim().splitn(3, '.');
    let kernel = parts.next()?.parse().ok()?;
    let major: String = parts
        .next()?
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    Some((kernel, major.parse().ok()?))
}

fn parse_min_kernel(v: &str) -> Option<(u64, u64)> {
    let (a, b) = v.split_once('.')?;
    let k = (a.parse::<u8>().ok()? as u64, b.parse::<u8>().ok()? as u64);
    (k != (0, 0)).then_some(k)
}

/// Converts a Docker (or OCI) profile to the OCI object moby passes to the runtime for a
/// container with this bounding set (moby `profiles/seccomp/seccomp_linux.go`,
/// `setupSeccomp`). None means no seccomp (a profile without defaultAction and rules).
///
/// Differences from Docker 20.10: `defaultErrnoRet`, `flags`, `listenerPath` and
/// `listenerMetadata` are carried over (20.10 drops them; newer moby, whose profile type
/// embeds the OCI one, keeps them).
pub fn from_docker_profile(
    json: &str,
    bounding: &[Capability],
    host: &Host,
) -> Result<Option<LinuxSeccomp>, Error> {
    let profile: Profile = serde_json::from_str(json).map_err(Error::ProfileJson)?;
    resolve(&profile, bounding, host)
}

fn resolve(
    profile: &Profile,
    bounding: &[Capability],
    host: &Host,
) -> Result<Option<LinuxSeccomp>, Error> {
    if profile.default_action.is_empty() && profile.syscalls.is_empty() {
        return Ok(None);
    }
    if !profile.architectures.is_empty() && !profile.arch_map.is_empty() {
        return Err(Error::ArchAndArchMap);
    }
    let default_action = serde_json::from_value::<LinuxSeccompAction>(serde_json::Value::String(
        profile.default_action.clone(),
    ))
    .map_err(|_| Error::DefaultAction {
        value: profile.default_action.clone(),
    })?;
    let mut architectures = profile.architectures.clone();
    if let Some(native) = host.seccomp_arch {
        if let Some(m) = profile.arch_map.iter().find(|m| m.architecture == native) {
            architectures.push(m.architecture);
            architectures.extend(m.sub_architectures.iter().copied());
        }
    }
    let caps: Vec<String> = bounding.iter().map(|c| crate::caps::name(*c)).collect();
    let has = |c: &String| caps.iter().any(|b| b == c);
    let kernel_at_least = |rule: usize, field: &'static str, v: &str| -> Result<bool, Error> {
        let min = parse_min_kernel(v).ok_or_else(|| Error::MinKernel {
            rule,
            field,
            value: v.to_string(),
        })?;
        // An unknown kernel counts as older than any minKernel: the rule is left out, so
        // the filter only gets stricter.
        Ok(host.kernel.is_some_and(|k| k >= min))
    };

    let mut syscalls = Vec::new();
    for (i, call) in profile.syscalls.iter().enumerate() {
        let ex = &call.excludes;
        if ex.arches.iter().any(|a| a == host.arch) || ex.caps.iter().any(has) {
            continue;
        }
        if let Some(v) = &ex.min_kernel {
            if kernel_at_least(i, "excludes", v)? {
                continue;
            }
        }
        let inc = &call.includes;
        if !inc.arches.is_empty() && !inc.arches.iter().any(|a| a == host.arch) {
            continue;
        }
        if !inc.caps.iter().all(has) {
            continue;
        }
        if let Some(v) = &inc.min_kernel {
            if !kernel_at_least(i, "includes", v)? {
                continue;
            }
        }
        if !call.name.is_empty() && !call.names.is_empty() {
            return Err(Error::NameAndNames { rule: i });
        }
        let names = if call.name.is_empty() {
            call.names.clone()
        } else {
            vec![call.name.clone()]
        };
        let mut rule = LinuxSyscall::default();
        rule.set_names(names)
            .set_action(call.action)
            .set_errno_ret(call.errno_ret)
            .set_args(call.args.clone().filter(|a| !a.is_empty()));
        syscalls.push(rule);
    }

    let mut out = LinuxSeccomp::default();
    out.set_default_action(default_action)
        .set_default_errno_ret(profile.default_errno_ret)
        .set_architectures((!architectures.is_empty()).then_some(architectures))
        .set_flags(profile.flags.clone())
        .set_listener_path(profile.listener_path.clone())
        .set_listener_metadata(profile.listener_metadata.clone())
        .set_syscalls(Some(syscalls));
    Ok(Some(out))
}

/// Docker's default profile, parsed once.
fn docker_profile() -> Option<&'static Profile> {
    static PROFILE: OnceLock<Option<Profile>> = OnceLock::new();
    PROFILE
        .get_or_init(|| match serde_json::from_str(DOCKER_DEFAULT_JSON) {
            Ok(p) => Some(p),
            Err(e) => {
                log::error!("seccomp: the built-in Docker profile does not parse: {e}");
                None
            }
        })
        .as_ref()
}

/// Docker's default profile as moby compiles it for a container with this bounding set
/// on this machine (the `archMap` entry of this architecture, rules whose
/// `includes.caps` are all in `bounding` and none of whose `excludes.caps` is, whose
/// `minKernel` is at most the running kernel's).
pub fn docker_default(bounding: &[Capability]) -> LinuxSeccomp {
    docker_default_for(bounding, &Host::current())
}

/// [`docker_default`] for a given host (tests, and callers that know better).
pub fn docker_default_for(bounding: &[Capability], host: &Host) -> LinuxSeccomp {
    match docker_profile().map(|p| resolve(p, bounding, host)) {
        Some(Ok(Some(s))) => s,
        other => {
            // The built-in profile is tested (unit tests); should it ever fail, fail
            // closed: everything returns EPERM.
            if let Some(Err(e)) = other {
                log::error!("seccomp: the built-in Docker profile: {e}");
            }
            let mut deny = LinuxSeccomp::default();
            deny.set_default_action(LinuxSeccompAction::ScmpActErrno);
            deny
        }
    }
}

#[cfg(test)]
mod tests;
