//! `minnow container ...`: the container runtime's command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use minnow_container::cgroup::Limits;
use minnow_container::defaults::Flags;
use minnow_container::{LiveStatus, RunOptions};
use minnow_image::{store_path, Store};

/// Replaces /proc/self/mountinfo for cgroup detection (the tests simulate hosts with it).
pub const MOUNTINFO_ENV: &str = "MINNOW_MOUNTINFO";

/// `bind`: the container's /sys is the host's bound (with its mounts), as where a new
/// sysfs cannot be mounted (the tests check that all of it is read-only).
const SYSFS_ENV: &str = "MINNOW_SYSFS";

#[derive(Args, Debug)]
pub struct ContainerArgs {
    /// Image store directory [default: $MINNOW_STORE or /var/lib/minnow].
    #[arg(long, global = true)]
    pub store: Option<PathBuf>,
    #[command(subcommand)]
    pub command: ContainerCommand,
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
pub enum Net {
    /// A new network namespace with only the loopback interface, up.
    None,
    /// The host's network namespace.
    Host,
    /// A new network namespace with lo and eth0, a veth pair to the host end mv<id>
    /// (169.254.200.0/21 link-local /30; MINNOW_HOST_IP and MINNOW_IP in the environment).
    Veth,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Container name (also its hostname) [default: the id].
    #[arg(long)]
    pub name: Option<String>,
    /// Memory limit in MiB (no swap).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub mem_mib: Option<u64>,
    /// CPU limit in CPUs (CFS quota), e.g. 0.5 or 2.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Maximum number of processes.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub pids: Option<u64>,
    /// Network: none (own namespace, lo only), host, or veth (own namespace, eth0 to the host).
    #[arg(long, value_enum, default_value = "none")]
    pub net: Net,
    /// Set an environment variable (KEY=VALUE); may repeat.
    #[arg(long = "env", short = 'e')]
    pub env: Vec<String>,
    /// Keep the container directory (upper layer, state) after it exits.
    #[arg(long)]
    pub keep: bool,
    /// Run in the background and print the id.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Lift Docker's defaults: every capability of the host, no seccomp, no masked or
    /// read-only paths, any device node usable.
    #[arg(long)]
    pub privileged: bool,
    /// Add a capability to Docker's 14 (NAME, CAP_NAME or ALL); may repeat.
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability (NAME, CAP_NAME or ALL); may repeat.
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// seccomp=unconfined, seccomp=FILE (a Docker or OCI profile) or no-new-privileges;
    /// may repeat.
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Mount the container's root file system read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Run the command as UID[:GID] (or a user in the image's /etc/passwd).
    #[arg(short = 'u', long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// Image name.
    pub image: String,
    /// Command and arguments [default: the image's].
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum ContainerCommand {
    /// Run a command in a new container.
    Run(Box<RunArgs>),
    /// List containers: id, name, image, status, pid.
    Ls,
    /// Stop a container: SIGTERM, then SIGKILL after the grace period.
    Stop {
        /// Container id, id prefix or name.
        container: String,
        /// Grace period in seconds before SIGKILL.
        #[arg(short = 't', long, default_value_t = 10.0)]
        time: f64,
    },
    /// Remove a stopped container and everything it left.
    Rm {
        /// Container id, id prefix or name.
        container: String,
        /// Stop it first if it runs.
        #[arg(short, long)]
        force: bool,
    },
}

/// Checks flag values clap cannot; returns the limits.
pub fn limits(args: &RunArgs) -> Result<Limits, String> {
    if let Some(c) = args.cpus {
        if !(c.is_finite() && c > 0.0 && c <= 4096.0) {
            return Err(format!(
                "invalid --cpus {c}; give a positive number of CPUs, e.g. --cpus 0.5"
            ));
        }
    }
    if let Some(e) = args
        .env
        .iter()
        .find(|e| !e.contains('=') || e.starts_with('='))
    {
        return Err(format!("invalid --env {e:?}; use KEY=VALUE"));
    }
    let memory_bytes = match args.mem_mib {
        Some(m) => Some(m.checked_mul(1 << 20).ok_or_else(|| {
            format!(
                "invalid --mem-mib {m}; give MiB, at most {}",
                u64::MAX >> 20
            )
        })?),
        None => None,
    };
    Ok(Limits {
        memory_bytes,
        cpus: args.cpus,
        pids: args.pids,
    })
}

/// The security flags, as the runtime takes them (Docker's names and meaning).
fn security_flags(args: &RunArgs) -> Flags {
    Flags {
        cap_add: args.cap_add.clone(),
        cap_drop: args.cap_drop.clone(),
        privileged: args.privileged,
        security_opt: args.security_opt.clone(),
        read_only: args.read_only,
        user: args.user.clone(),
    }
}

/// Runs a `container` subcommand; returns the exit code.
pub fn run(args: ContainerArgs, log_level: &str) -> Result<i32, String> {
    let path = store_path(args.store);
    if let ContainerCommand::Run(r) = &args.command {
        // Check arguments and rights before touching the store.
        limits(r)?;
        minnow_container::security::check_flags(&security_flags(r))?;
        minnow_container::require_root()?;
    }
    let store = Store::open(&path)?;
    match args.command {
        ContainerCommand::Run(r) => {
            let r = *r;
            super::registry::ensure_image(&store, &r.image, log_level)?;
            let opts = RunOptions {
                limits: limits(&r)?,
                security: security_flags(&r),
                name: r.name,
                image: r.image,
                command: r.command,
                env: r.env,
                host_net: r.net == Net::Host,
                veth: r.net == Net::Veth,
                keep: r.keep,
                detach: r.detach,
                mountinfo: std::env::var_os(MOUNTINFO_ENV)
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from(minnow_container::cgroup::MOUNTINFO)),
                bind_sys: std::env::var_os(SYSFS_ENV).is_some_and(|v| v == "bind"),
            };
            Ok(minnow_container::run(&store, &opts)?)
        }
        ContainerCommand::Ls => {
            println!(
                "{:<14} {:<20} {:<16} {:<12} PID",
                "ID", "NAME", "IMAGE", "STATUS"
            );
            for s in minnow_container::list(&store) {
                let status = s.live_status();
                let pid = match (status, s.pid) {
                    (LiveStatus::Running, Some(p)) => p.to_string(),
                    _ => "-".into(),
                };
                println!(
                    "{:<14} {:<20} {:<16} {:<12} {pid}",
                    s.id, s.name, s.image, status
                );
            }
            Ok(0)
        }
        ContainerCommand::Stop { container, time } => {
            if !(time.is_finite() && time >= 0.0) {
                return Err(format!("invalid --time {time}; give seconds, e.g. -t 10"));
            }
            println!(
                "{}",
                minnow_container::stop(&store, &container, Duration::from_secs_f64(time))?
            );
            Ok(0)
        }
        ContainerCommand::Rm { container, force } => {
            println!("{}", minnow_container::remove(&store, &container, force)?);
            Ok(0)
        }
    }
}
