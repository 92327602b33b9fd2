//! Registries on the command line: `image pull`/`push` flags, `login`/`logout`, and
//! the pull that `container run` and `run --image` do for a missing image. The registry
//! crate (and its tokio runtime) is reached only from here, and only when a transfer
//! happens: a run whose image is in the store never enters it.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use clap::Args;

use minnow_image::Store;
use minnow_registry::{names_a_registry, Options};

/// How to reach the registry (shared by pull, push and login).
#[derive(Args, Debug, Clone, Default)]
pub struct RegistryFlags {
    /// Use plain HTTP, or TLS without certificate checks, with a registry that is not on
    /// loopback (loopback registries may use plain HTTP without it).
    #[arg(long)]
    pub insecure: bool,
    /// PEM file of CA certificates to trust for the registry's TLS certificate.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Never draw progress bars (they are drawn when stderr is a terminal).
    #[arg(long)]
    pub no_progress: bool,
    /// Blobs transferred at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=32))]
    pub jobs: u64,
}

impl RegistryFlags {
    pub fn options(&self) -> Options {
        Options {
            insecure: self.insecure,
            ca_file: self.ca_file.clone(),
            progress: self.no_progress.then_some(false),
            jobs: self.jobs as usize,
        }
    }
}

/// Pulls `name` into the store when it is spelled as a registry reference
/// (`HOST[:PORT]/REPO[:TAG]`) and the store has no image of that name, as `docker run`
/// does. Reads only `index.json` when the image is there.
pub fn ensure_image(store: &Store, name: &str) -> Result<(), String> {
    if !names_a_registry(name) || store.has_name(name) {
        return Ok(());
    }
    let pulled = minnow_registry::pull(store, name, &Default::default(), &Options::default())
        .map_err(|e| e.to_string())?;
    eprintln!("minnow: {pulled}");
    Ok(())
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Registry host[:port] (Docker Hub: docker.io).
    pub registry: String,
    /// User name [default: asked on the terminal].
    #[arg(short, long)]
    pub username: Option<String>,
    /// Read the password from stdin (else it is asked on the terminal, not echoed).
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub flags: RegistryFlags,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// Registry host[:port].
    pub registry: String,
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

pub fn login(args: LoginArgs) -> Result<i32, String> {
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
        minnow_registry::auth::login(&args.registry, &user, &password, &args.flags.options())
            .map_err(|e| e.to_string())?;
    println!(
        "logged in to {} (credentials in {})",
        args.registry,
        path.display()
    );
    Ok(0)
}

pub fn logout(args: LogoutArgs) -> Result<i32, String> {
    if minnow_registry::auth::logout(&args.registry).map_err(|e| e.to_string())? {
        println!("logged out of {}", args.registry);
    } else {
        println!("not logged in to {}", args.registry);
    }
    Ok(0)
}
