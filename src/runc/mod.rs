//! `minnow-runc`: an OCI runtime with runc's command line over minnow's container engine
//! (`minnow_container::engine`). Errors are one line, `minnow-runc: error: <what>;
//! <fix>`, on stderr and in `--log` (text or JSON lines, which containerd's shim reads).

mod create;
mod exec;
mod hooks;
mod info;
mod ops;
mod relay;
mod state;
mod update;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;

use clap::{Parser, Subcommand};

use create::CreateArgs;

#[derive(Parser)]
#[command(
    name = "minnow-runc",
    version,
    about = "minnow's OCI runtime (runc's command line)"
)]
struct Cli {
    /// Where container state is kept.
    #[arg(long, global = true, default_value = "/run/minnow-runc")]
    root: PathBuf,
    /// Also write errors (and with --debug, debug lines) to this file.
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// text or json.
    #[arg(long, global = true, default_value = "text")]
    log_format: String,
    #[arg(long, global = true)]
    debug: bool,
    /// Not supported: minnow-runc drives cgroupfs.
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct CreateFlags {
    /// The bundle directory (config.json and the root file system).
    #[arg(long, short = 'b', default_value = ".")]
    bundle: PathBuf,
    /// Write the init's PID here.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// A Unix socket that receives the pty master when process.terminal is true.
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Accepted for compatibility: minnow-runc always pivot_roots.
    #[arg(long)]
    no_pivot: bool,
    /// Accepted: minnow-runc does not create a session keyring.
    #[arg(long)]
    no_new_keyring: bool,
    /// Not supported beyond 0.
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    id: String,
}

#[derive(clap::Args)]
struct UpdateFlags {
    /// A file holding linux.resources as JSON (`-`: standard input), as shims pass it.
    #[arg(long, short)]
    resources: Option<PathBuf>,
    /// Memory limit, in bytes or with a unit (64m, 1g).
    #[arg(long)]
    memory: Option<String>,
    /// Memory soft limit (bytes or with a unit).
    #[arg(long)]
    memory_reservation: Option<String>,
    /// Memory plus swap limit (bytes or with a unit; -1: unlimited).
    #[arg(long, allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// CPU shares (relative weight).
    #[arg(long)]
    cpu_share: Option<u64>,
    /// CPU CFS period (µs).
    #[arg(long)]
    cpu_period: Option<u64>,
    /// CPU CFS quota (µs per period).
    #[arg(long, allow_hyphen_values = true)]
    cpu_quota: Option<i64>,
    /// Most processes (0 or less: no limit).
    #[arg(long, allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    id: String,
}

#[derive(Subcommand)]
enum Command {
    /// Create a container: set up, waiting for `start`.
    Create(CreateFlags),
    /// Let a created container run its process.
    Start { id: String },
    /// Print a container's state JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to the container's init, or with --all to all.
    Kill {
        #[arg(long, short)]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Remove a stopped or created container (any with --force).
    Delete {
        #[arg(long, short)]
        force: bool,
        id: String,
    },
    /// Create and start a container and wait for it; exits with its exit code.
    Run {
        #[command(flatten)]
        create: CreateFlags,
        #[arg(long, short)]
        detach: bool,
    },
    /// List containers.
    List {
        #[arg(long, short)]
        quiet: bool,
        #[arg(long, short, default_value = "table")]
        format: String,
    },
    /// The container's processes.
    Ps {
        #[arg(long, short, default_value = "table")]
        format: String,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Run a further process in a running container.
    Exec {
        /// An OCI process object (JSON), instead of the command line.
        #[arg(long, short)]
        process: Option<PathBuf>,
        #[arg(long, short)]
        detach: bool,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// KEY=VALUE, added to the container's environment (inline form).
        #[arg(long, short)]
        env: Vec<String>,
        #[arg(long)]
        cwd: Option<String>,
        /// UID[:GID] (inline form).
        #[arg(long, short)]
        user: Option<String>,
        /// Give the process a terminal (inline form; needs --console-socket).
        #[arg(long, short)]
        tty: bool,
        /// A Unix socket that receives the pty master when the process has a terminal.
        #[arg(long)]
        console_socket: Option<PathBuf>,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// What this runtime supports (JSON).
    Features,
    /// Write a starting config.json.
    Spec {
        #[arg(long, short, default_value = ".")]
        bundle: PathBuf,
        /// Not supported (no user namespaces).
        #[arg(long)]
        rootless: bool,
    },
    /// Change a running container's resources (runc's flags, or the resources JSON).
    Update(UpdateFlags),
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
}

/// The global options every command sees.
pub struct Global {
    pub root: PathBuf,
}

struct Log {
    file: Option<std::fs::File>,
    json: bool,
    debug: bool,
}

static LOG: OnceLock<Log> = OnceLock::new();

fn log_line(level: &str, msg: &str) {
    let Some(log) = LOG.get() else { return };
    if level == "debug" && !log.debug {
        return;
    }
    let time = minnow_image::now_rfc3339();
    if let Some(mut f) = log.file.as_ref() {
        let line = if log.json {
            serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
        } else {
            format!("time={time:?} level={level} msg={msg:?}")
        };
        let _ = writeln!(f, "{line}");
    } else if level == "debug" {
        eprintln!("minnow-runc: debug: {msg}");
    }
}

/// A warning, to --log or stderr.
pub fn warn(msg: &str) {
    if LOG.get().is_some_and(|l| l.file.is_some()) {
        log_line("warning", msg);
    } else {
        eprintln!("minnow-runc: warning: {msg}");
    }
}

/// A debug line (with --debug), to --log or stderr.
pub fn debug(msg: &str) {
    log_line("debug", msg);
}

fn check(cli: &Cli) -> Result<(), String> {
    if cli.systemd_cgroup {
        return Err("--systemd-cgroup is not supported: minnow-runc drives cgroupfs itself; drop --systemd-cgroup (Docker: native.cgroupdriver=cgroupfs)".into());
    }
    if !["text", "json"].contains(&cli.log_format.as_str()) {
        return Err(format!(
            "unknown --log-format {}; use text or json",
            cli.log_format
        ));
    }
    if !nix::unistd::geteuid().is_root() {
        return Err("minnow-runc needs root (namespaces, mounts, cgroups); run it as root".into());
    }
    Ok(())
}

fn create_args(f: &CreateFlags, detach: bool) -> Result<CreateArgs, String> {
    if f.preserve_fds != 0 {
        return Err("--preserve-fds is not supported; drop it".into());
    }
    Ok(CreateArgs {
        bundle: f.bundle.clone(),
        pid_file: f.pid_file.clone(),
        id: f.id.clone(),
        console_socket: f.console_socket.clone(),
        detach,
    })
}

fn dispatch(cli: &Cli) -> Result<i32, String> {
    match &cli.command {
        Command::Features => return info::features().map(|()| 0),
        Command::Spec { rootless: true, .. } => {
            return Err(
                "spec --rootless is not supported (no user namespaces); drop --rootless".into(),
            )
        }
        Command::Spec { bundle, .. } => return info::spec(bundle).map(|()| 0),
        _ => {}
    }
    check(cli)?;
    let g = Global {
        root: cli.root.clone(),
    };
    match &cli.command {
        Command::Create(f) => {
            let mut c = create::create(&g, &create_args(f, true)?)?;
            c.guard.done();
        }
        Command::Start { id } => create::start(&g, id)?,
        Command::State { id } => ops::show_state(&g, id)?,
        Command::Kill { all, id, signal } => ops::kill_cmd(&g, id, signal.as_deref(), *all)?,
        Command::Delete { force, id } => ops::delete(&g, id, *force)?,
        Command::Run { create, detach } => {
            return create::run(&g, &create_args(create, *detach)?, *detach);
        }
        Command::List { quiet, format } => ops::list(&g, *quiet, format)?,
        Command::Ps {
            format,
            id,
            ps_args,
        } => ops::ps(&g, id, format, ps_args)?,
        Command::Exec {
            process,
            detach,
            pid_file,
            env,
            cwd,
            user,
            tty,
            console_socket,
            id,
            command,
        } => {
            let a = exec::ExecArgs {
                id: id.clone(),
                process: process.clone(),
                command: command.clone(),
                env: env.clone(),
                cwd: cwd.clone(),
                user: user.clone(),
                detach: *detach,
                pid_file: pid_file.clone(),
                tty: *tty,
                console_socket: console_socket.clone(),
            };
            return exec::exec(&g, &a);
        }
        Command::Features | Command::Spec { .. } => {}
        Command::Update(f) => update::update(&g, &f.id, &update::resources(f)?)?,
        Command::Pause { id } => ops::pause(&g, id, true)?,
        Command::Resume { id } => ops::pause(&g, id, false)?,
    }
    Ok(0)
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let file = cli.log.as_ref().and_then(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok()
    });
    let _ = LOG.set(Log {
        file,
        json: cli.log_format == "json",
        debug: cli.debug,
    });
    debug(&format!("{:?}", std::env::args().collect::<Vec<_>>()));
    match dispatch(&cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            let e = e.replace('\n', " ");
            log_line("error", &e);
            eprintln!("minnow-runc: error: {e}");
            ExitCode::FAILURE
        }
    }
}
