//! The container runtime's errors. Each message is one line, `<what>; <fix>` where there is
//! a fix (the CLI prints it after `minnow: error:`, minnow-runc after `minnow-runc:
//! error:`); the cause stays reachable as the source.
//!
//! A failure inside the container's init (or an `exec`'d process, or the detached
//! supervisor) crosses a pipe as its one line of text: those arrive here as the text
//! ([`Error::Init`], [`Error::Exec`], [`Error::Startup`], [`Error::Setup`]).

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
    #[error("linux.resources.devices on cgroup v2 needs an eBPF device program, which minnow-runc does not load yet; remove linux.resources.devices")]
    DevicesOnV2,
    #[error(
        "{0} has no cgroup v2 equivalent in minnow-runc; remove that resource from config.json"
    )]
    NoV2Equivalent(&'static str),
    #[error("this host has no freezer cgroup; pause needs the v1 freezer or cgroup v2")]
    NoFreezer,
    #[error("{} did not become {state}; try again", path.display())]
    FreezeTimeout { path: PathBuf, state: &'static str },

    // --- namespaces, processes, the init ---
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
    #[error("cannot create the container's PID namespace: {0}")]
    ClonePidNamespace(#[source] Errno),
    #[error("cannot create the container's init: {0}")]
    CloneInit(#[source] Errno),
    #[error("cannot signal the container's init: {0}")]
    SignalInit(#[source] io::Error),
    #[error("cannot start the container: {0}")]
    Start(#[source] io::Error),
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

/// For callers whose errors are still one-line strings (the CLI prints them as they are).
impl From<Error> for String {
    fn from(e: Error) -> String {
        e.to_string()
    }
}
