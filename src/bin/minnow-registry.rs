//! `minnow-registry`: minnow's registry client (pull, push, login, logout), run by
//! `minnow` so the VMM binary does not link the registry stack. src/registry/mod.rs.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

#[path = "../logging.rs"]
mod logging;
#[path = "../registry/mod.rs"]
mod registry;

fn main() -> std::process::ExitCode {
    registry::main()
}
