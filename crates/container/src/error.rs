//! The container runtime's errors. Each message is one line, `<what>; <fix>` where there is
//! a fix (the CLI prints it after `minnow: error:`, minnow-runc after `minnow-runc:
//! error:`); the cause stays reachable as the source.
//!
//! A failure inside the container's own process before its exec (the engine's init, for
//! minnow-runc and `container run`, or an `exec`'d process) is a [`Failure`]; it crosses
//! a pipe to the runtime as its one line of text, which arrives there as [`Error::Init`]
//! (for `container run`, [`Error::Setup`]) or [`Error::Exec`] (and a detached
//! supervisor's as [`Error::Startup`]).

use std::fmt::Display;
use std::io;
use std::path::PathBuf;

use nix::errno::Errno;
use oci_spec::runtime::LinuxNamespaceType;

use crate::{defaults, seccomp};

/// Why a container operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- rights, the store, the state file ---
    #[error(
        "containers need root (namespaces, mounts and cgroups); run minnow as root, e.g. with sudo"
    )]
    NotRoot,
    /// A file or directory could not be read, written or created.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A container's `state.json` is not the JSON it should be.
    #[error("corrupt {}: {source}", path.display())]
    StateCorrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// minnow's own state could not be serialized (not expected to happen).
    #[error("{0}")]
    Serialize(#[source] serde_json::Error),
    #[error(transparent)]
    Image(#[from] minnow_image::Error),

    // --- which container ---
    #[error("no container {0:?}; see `minnow container ls`")]
    NoContainer(String),
    #[error("{0:?} matches several containers; give more of the id")]
    Ambiguous(String),
    #[error("a container named {0} already exists; remove it (minnow container rm {0}) or pick another --name")]
    NameTaken(String),
    #[error(
        "container {0} is running; stop it first (minnow container stop {0}) or use rm --force"
    )]
    IsRunning(String),
    #[error("container {0} has no running process")]
    NoRunningProcess(String),
    #[error("container {0} did not stop; check `minnow container ls`")]
    DidNotStop(String),

    // --- the image and its overlay root ---
    /// `image` has no entrypoint or cmd, and none was given.
    #[error("image {0} has no command; give one after the image: minnow container run {0} -- CMD")]
    NoCommand(String),
    #[error("image has no layers")]
    NoLayers,
    #[error("path {} is not UTF-8", .0.display())]
    NotUtf8(PathBuf),
    #[error("overlay path {0} contains ':' or ','; use a store path without them (--store)")]
    OverlayPath(String),
    #[error("overlay options are {len} bytes, over the 4095-byte limit ({layers} layers); use a shorter --store path or fewer layers")]
    OverlayTooLong { len: usize, layers: usize },

    // --- the security flags and settings ---
    /// A Docker security flag the helpers refused, named (`--cap-add "X"`,
    /// `--security-opt seccomp=FILE`).
    #[error("{flag}: {source}")]
    Flag {
        flag: String,
        #[source]
        source: Box<Error>,
    },
    #[error(transparent)]
    Defaults(#[from] defaults::Error),
    #[error(transparent)]
    Seccomp(#[from] seccomp::Error),

    // --- config.json (the engine's spec) ---
    /// A field minnow does not support; never ignored silently.
    #[error("config.json: {field} is not supported by minnow ({why}); remove it from the bundle's config.json")]
    Unsupported { field: String, why: &'static str },
    #[error("config.json has no process; add process.args")]
    NoProcess,
    #[error("config.json: process.args is empty; give the command to run")]
    NoArgs,
    #[error("config.json: process.cwd {0:?} is not absolute; give an absolute path")]
    CwdNotAbsolute(String),
    #[error("config.json has no root; add root.path (e.g. \"rootfs\")")]
    NoRoot,
    #[error("root.path {}: {source}; create it or fix root.path", path.display())]
    RootPath {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("root.path {} is not a directory; point root.path at the root file system", .0.display())]
    RootNotADirectory(PathBuf),
    #[error("config.json: linux.namespaces lists {0:?} twice; keep one")]
    NamespaceTwice(LinuxNamespaceType),
    /// linux.uidMappings/gidMappings that the kernel would refuse or that do not fit
    /// the user namespace asked for.
    #[error("config.json: {field}: {why}")]
    IdMapping { field: &'static str, why: String },
    #[error("config.json: linux.rootfsPropagation {0:?} is unknown; use private, rprivate, slave, rslave, shared or rshared")]
    Propagation(String),
    #[error("config.json: mount destination {} is not absolute; give an absolute path", .0.display())]
    MountNotAbsolute(PathBuf),
    #[error("config.json: mount {}: uidMappings/gidMappings (idmapped mounts) are not supported by minnow; remove them", .0.display())]
    MountIdMappings(PathBuf),
    #[error("config.json: mount {}: option {option} (idmapped mounts) is not supported by minnow; remove it", destination.display())]
    MountIdmapOption {
        destination: PathBuf,
        option: String,
    },
    #[error("config.json: bind mount {} has no source; give one", .0.display())]
    BindWithoutSource(PathBuf),
    #[error("config.json: linux.cgroupsPath {} is a systemd slice:prefix:name; minnow-runc drives cgroupfs only, give a path such as /minnow/{id}", path.display())]
    CgroupsPathSystemd { path: PathBuf, id: String },
    #[error("config.json: linux.cgroupsPath {} has '..'; give a plain path", .0.display())]
    CgroupsPathDots(PathBuf),
    #[error("config.json: linux.cgroupsPath {} names the root cgroup; give a path such as /minnow/{id}", path.display())]
    CgroupsPathRoot { path: PathBuf, id: String },
    /// config.json is not a runtime spec (serde's message: what and where).
    #[error("{0}")]
    SpecJson(#[source] serde_json::Error),

    // --- cgroups ---
    /// `minnow container run`'s cgroup (minnow-cgroup).
    #[error(transparent)]
    Cgroup(#[from] minnow_cgroup::Error),
    /// The engine's cgroup directory (or an ancestor); `fix` is empty or "; <fix>".
    #[error("cannot create cgroup {}: {source}{fix}", path.display())]
    CgroupCreate {
        path: PathBuf,
        fix: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cgroup {} already exists; give the container another id or cgroupsPath, or remove it", .0.display())]
    CgroupExists(PathBuf),
    #[error("cannot write {value:?} to {}: {source}; check the resource value in config.json", path.display())]
    CgroupWrite {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("this host has no {0} cgroup controller; remove the {0} resources from config.json")]
    NoController(String),
    #[error("this host has no devices cgroup; remove linux.resources.devices")]
    NoDevicesCgroup,
    #[error("linux.resources.memory.swap: this kernel has no swap accounting (memory.memsw); remove memory.swap")]
    NoSwapAccounting,
    #[error("this host has no cgroup file system mounted; mount cgroup2 on /sys/fs/cgroup")]
    NoCgroupFs,
    /// A device rule the eBPF program cannot express (the rules come from the spec).
    #[error("linux.resources.devices: cannot use the rule {0:?}; give type a, b or c, MAJOR:MINOR (numbers or *) and access of r, w, m")]
    DeviceRule(String),
    #[error("cannot {what} the cgroup v2 device program: {source}; check that the kernel has CONFIG_CGROUP_BPF")]
    DeviceProgram {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("update cannot change device rules (as runc's); remove devices from the resources")]
    UpdateDevices,
    #[error(
        "{0} has no cgroup v2 equivalent in minnow-runc; remove that resource from config.json"
    )]
    NoV2Equivalent(&'static str),
    #[error("this host has no freezer cgroup; pause needs the v1 freezer or cgroup v2")]
    NoFreezer,
    #[error("{} did not become {state}; try again", path.display())]
    FreezeTimeout { path: PathBuf, state: &'static str },

    // --- namespaces, processes, the init ---
    #[error("cannot connect to the console socket {}: {source}; check --console-socket", path.display())]
    ConsoleSocket {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A system call with no more to say (`pipe`, `fork`, `waitpid`).
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: Errno,
    },
    #[error("pipe: {0}; check the open-file limit")]
    Pipe(#[source] Errno),
    #[error("fork: {0}; check the process limit")]
    Fork(#[source] Errno),
    #[error("cannot open PID namespace {}: {source}; check linux.namespaces", path.display())]
    PidNamespaceOpen {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot join PID namespace {}: {source}; check linux.namespaces", path.display())]
    PidNamespaceJoin {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("cannot open the container's {name} namespace: {source}; is it running?")]
    ContainerNamespaceOpen {
        name: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot join the container's PID namespace: {0}")]
    ContainerPidJoin(#[source] Errno),
    #[error("cannot create the container's init: {0}")]
    CloneInit(#[source] Errno),
    #[error("cannot open user namespace {}: {source}; check linux.namespaces", path.display())]
    UserNamespaceOpen {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot join user namespace {}: {source}; check linux.namespaces", path.display())]
    UserNamespaceJoin {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("cannot write the init's {file}: {source}; check linux.uidMappings/gidMappings")]
    WriteIdMap {
        file: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot signal the container's init: {0}")]
    SignalInit(#[source] io::Error),
    /// The init's own one-line message.
    #[error("container init: {0}")]
    Init(String),
    #[error("the container's init died during set-up; run with --debug")]
    InitDied,
    #[error("the container's init died before the commit")]
    InitDiedBeforeCommit,
    /// The one-line message of an `exec`'d process that failed before its exec.
    #[error("{0}")]
    Exec(String),
    /// The one-line message of `container run`'s child that failed during set-up.
    #[error("container set-up failed: {0}")]
    Setup(String),
    /// The one-line message a detached supervisor reported during start-up.
    #[error("{0}")]
    Startup(String),
    #[error("the container supervisor died during start-up")]
    SupervisorDied,
    #[error("container exited during start-up")]
    ExitedDuringStartup,

    // --- the container's set-up, in its own process ---
    /// A step (a namespace, mount, device node, sysctl, rlimit, the user, capabilities,
    /// seccomp, ...) that failed: what it did, and why.
    #[error("{what}: {source}")]
    Step {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("linux.devices {}: type \"a\" is not a node type; use c, b, u or p", .0.display())]
    DeviceTypeA(PathBuf),
    /// The engine's init found no `process.args[0]`.
    #[error("exec: {0:?}: executable file not found in $PATH; check process.args and the root file system")]
    InitNoProgram(String),
    /// `exec` found no program to run.
    #[error("exec: {0:?}: executable file not found in $PATH; check the command")]
    ExecNoProgram(String),
    /// `container run` found no program to run.
    #[error("{0}: command not found in the container; check the command and the image's PATH")]
    CommandNotFound(String),
    #[error("{0:?} contains a NUL byte; remove it from config.json")]
    SpecNul(String),
    #[error("cannot execute {}: {source}", program.display())]
    Execve {
        program: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("cannot execute {command} in the container: {source}")]
    ExecveCommand {
        command: String,
        #[source]
        source: Errno,
    },
    #[error("cannot chdir to {cwd}: {source}; give an existing cwd")]
    ExecCwd {
        cwd: String,
        #[source]
        source: Errno,
    },

    // --- --net veth ---
    #[error("--net veth needs {program} ({source}); install {package} (apt-get install {package}), or use --net none or --net host")]
    VethTool {
        program: &'static str,
        package: &'static str,
        #[source]
        source: io::Error,
    },
    /// `ip` or `nsenter` failed; `stderr` is the first line it printed.
    #[error("{program} {args} failed: {stderr}")]
    VethCommand {
        program: &'static str,
        args: String,
        stderr: String,
    },
    #[error("no free /30 left in 169.254.200.0/21 for --net veth")]
    VethNoSubnet,
}

impl Error {
    /// An I/O error on `path` while doing `what` ("cannot read", "cannot create", ...).
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// A system call that failed with `source`.
    pub(crate) fn sys(what: &'static str) -> impl FnOnce(Errno) -> Error {
        move |source| Error::Sys { what, source }
    }
}

/// A set-up failure in the container's own process: the exit code it ends with (1; 126
/// or 127 when the program cannot be run or is not found) and why.
pub type Failure = (i32, Error);

/// The [`Failure`] (exit code 1) of the set-up step `what`.
pub(crate) fn step<E>(what: impl Display) -> impl FnOnce(E) -> Failure
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| {
        (
            1,
            Error::Step {
                what: what.to_string(),
                source: Box::new(e),
            },
        )
    }
}

/// For callers whose errors are still one-line strings (the CLI prints them as they are).
impl From<Error> for String {
    fn from(e: Error) -> String {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line_and_keep_their_source() {
        let e = Error::CgroupCreate {
            path: "/sys/fs/cgroup/x".into(),
            fix: "; run as root",
            source: io::Error::from_raw_os_error(libc::EACCES),
        };
        let text = e.to_string();
        assert!(
            text.starts_with("cannot create cgroup /sys/fs/cgroup/x: ")
                && text.ends_with("; run as root"),
            "{text}"
        );
        assert!(std::error::Error::source(&e).is_some());
        let (code, e) = step("cannot mount proc on /proc")(Errno::EPERM);
        assert_eq!(code, 1);
        assert_eq!(
            e.to_string(),
            format!("cannot mount proc on /proc: {}", Errno::EPERM)
        );
        assert!(std::error::Error::source(&e).is_some());
        let flag = Error::Flag {
            flag: "--cap-add \"FLY\"".into(),
            source: Box::new(Error::NoLayers),
        };
        assert_eq!(flag.to_string(), "--cap-add \"FLY\": image has no layers");
    }
}
