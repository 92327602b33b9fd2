//! `minnow-registry`: image pulls and pushes, login and logout. A program of its own so
//! that the registry stack (oci-client, reqwest, rustls, tokio) is not linked into
//! `minnow`, whose `run` is the VMM: it cost the VMM 1.5 MiB of PSS at start-up when it
//! was. `minnow image pull|push`, `minnow login|logout` and the pull that `container run`
//! and `run --image` do for a missing image run this program (found beside `minnow`,
//! else on PATH).

// The arguments' `to_args` (turning them back into a command line) is minnow's half.
#[allow(dead_code)]
#[path = "args.rs"]
pub mod args;

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use args::{LoginArgs, LogoutArgs, RegistryFlags};
use minnow_image::{store_path, Store};
use minnow_registry::Options;

#[derive(Parser)]
#[command(
    name = "minnow-registry",
    version,
    about = "minnow's registry client (run by minnow)"
)]
struct Cli {
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    /// Image store directory [default: $MINNOW_STORE or /var/lib/minnow].
    #[arg(long, global = true)]
    store: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pull REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:DIGEST into the store.
    Pull {
        reference: String,
        #[arg(long, default_value = "linux/amd64")]
        platform: String,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        flags: RegistryFlags,
    },
    /// Push image NAME to REGISTRY/REPO:TAG.
    Push {
        name: String,
        reference: String,
        #[command(flatten)]
        flags: RegistryFlags,
    },
    /// Log in to a registry.
    Login(LoginArgs),
    /// Forget the credentials for a registry.
    Logout(LogoutArgs),
}

fn options(f: &RegistryFlags) -> Options {
    Options {
        insecure: f.insecure,
        ca_file: f.ca_file.clone(),
        progress: f.no_progress.then_some(false),
        jobs: f.jobs as usize,
    }
}

/// The registry stack (rustls, its certificate verifier, hyper, reqwest, oci-client)
/// reports what matters through minnow's errors; its own log lines (a TLS failure logged
/// before the error that says it) are shown only at debug and trace.
const REGISTRY_STACK: &[&str] = &[
    "rustls",
    "rustls_platform_verifier",
    "hyper",
    "hyper_util",
    "reqwest",
    "oci_client",
    "h2",
];

fn log_filter(level: &str) -> String {
    let mut f = format!("warn,minnow={level},minnow_registry={level}");
    if !matches!(level, "debug" | "trace") {
        for c in REGISTRY_STACK {
            f += &format!(",{c}=off");
        }
    }
    f
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::logging::init(&log_filter(&cli.log_level));
    let store = || Store::open(&store_path(cli.store.clone())).map_err(String::from);
    let result = match cli.command {
        Command::Pull {
            reference,
            platform,
            name,
            flags,
        } => store().and_then(|s| {
            let pull = minnow_registry::pull::PullOptions {
                name,
                platform: Some(platform),
            };
            minnow_registry::pull(&s, &reference, &pull, &options(&flags))
                .map(|p| println!("{p}"))
                .map_err(|e| e.to_string())
        }),
        Command::Push {
            name,
            reference,
            flags,
        } => store().and_then(|s| {
            minnow_registry::push(&s, &name, &reference, &options(&flags))
                .map(|p| println!("{p}"))
                .map_err(|e| e.to_string())
        }),
        Command::Login(args) => login(args),
        Command::Logout(args) => logout(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("minnow: error: {}", minnow_image::printable(&msg));
            ExitCode::from(1)
        }
    }
}

/// Reads a line from the terminal, without echo when `secret`.
fn prompt(what: &str, secret: bool) -> Result<String, String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(format!(
            "no {what} given and stdin is not a terminal; pass --username USER and --password-stdin"
        ));
    }
    eprint!("{what}: ");
    let _ = std::io::stderr().flush();
    let saved = if secret {
        let t = tcgetattr(&stdin).map_err(|e| {
            format!("cannot read the terminal settings: {e}; pass --password-stdin")
        })?;
        let mut quiet = t.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet)
            .map_err(|e| format!("cannot turn off echo: {e}; pass --password-stdin"))?;
        Some(t)
    } else {
        None
    };
    let mut line = String::new();
    let read = stdin.read_line(&mut line);
    if let Some(t) = saved {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &t);
        eprintln!();
    }
    read.map_err(|e| format!("cannot read the {what}: {e}; pass --password-stdin"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn login(args: LoginArgs) -> Result<(), String> {
    let user = match args.username {
        Some(u) => u,
        None => prompt("Username", false)?,
    };
    let password = if args.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("cannot read the password from stdin: {e}; pipe it in"))?;
        s.trim_end_matches(['\r', '\n']).to_string()
    } else {
        prompt("Password", true)?
    };
    if user.is_empty() || password.is_empty() {
        return Err("empty user name or password; give both".into());
    }
    let path =
        minnow_registry::auth::login(&args.registry, &user, &password, &options(&args.flags))
            .map_err(|e| e.to_string())?;
    println!(
        "logged in to {} (credentials in {})",
        args.registry,
        path.display()
    );
    Ok(())
}

fn logout(args: LogoutArgs) -> Result<(), String> {
    if minnow_registry::auth::logout(&args.registry).map_err(|e| e.to_string())? {
        println!("logged out of {}", args.registry);
    } else {
        println!("not logged in to {}", args.registry);
    }
    Ok(())
}
