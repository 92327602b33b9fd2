//! The registry commands' arguments, shared by `minnow` (which parses them, so its help
//! and errors are complete) and `minnow-registry` (which does the transfers).

use std::path::PathBuf;

use clap::Args;

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
    /// The same flags as `minnow-registry` arguments.
    pub fn to_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if self.insecure {
            a.push("--insecure".into());
        }
        if let Some(ca) = &self.ca_file {
            a.push("--ca-file".into());
            a.push(ca.display().to_string());
        }
        if self.no_progress {
            a.push("--no-progress".into());
        }
        a.push("--jobs".into());
        a.push(self.jobs.to_string());
        a
    }
}

#[derive(Args, Debug, Clone)]
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

#[derive(Args, Debug, Clone)]
pub struct LogoutArgs {
    /// Registry host[:port].
    pub registry: String,
}

impl LoginArgs {
    /// `login ...` as `minnow-registry` arguments.
    pub fn to_args(&self) -> Vec<String> {
        let mut a = vec!["login".to_string(), self.registry.clone()];
        if let Some(u) = &self.username {
            a.push("--username".into());
            a.push(u.clone());
        }
        if self.password_stdin {
            a.push("--password-stdin".into());
        }
        a.extend(self.flags.to_args());
        a
    }
}
