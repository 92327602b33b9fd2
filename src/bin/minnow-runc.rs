//! `minnow-runc`: minnow's OCI runtime, with runc's command line, so Docker, Podman and
//! containerd can run containers through minnow's engine. src/runc/mod.rs.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

#[path = "../runc/mod.rs"]
mod runc;

fn main() -> std::process::ExitCode {
    runc::main()
}
