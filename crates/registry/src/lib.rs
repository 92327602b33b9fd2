//! minnow's registry client: pulls images from OCI distribution registries into the
//! image store and pushes them back, on top of `oci-client` (HTTP, the auth challenges,
//! the distribution API) and `oci-spec` (references). See docs/containers.md,
//! "Registries".
//!
//! The entry points are blocking: each builds its own tokio runtime, so nothing async
//! (and no runtime) exists in a minnow process that never pulls or pushes.
//!
//! Modules: [`reference`] (what the user typed → registry, repository, tag/digest, and
//! whether plain HTTP is allowed), [`auth`] (Docker's `config.json`: reading, `login`,
//! `logout`, credential helpers), [`transport`] (TLS or HTTP, the client, error
//! classification), [`pull`], [`push`], [`progress`].

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod auth;
mod error;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;
pub mod transport;

use std::path::PathBuf;

pub use error::Error;
pub use pull::{pull, Pulled};
pub use push::{push, Pushed};
pub use reference::ImageRef;

/// How to reach a registry: the flags `pull`, `push` and `login` share.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Plain HTTP (or TLS without verification) for a registry that is not on loopback.
    pub insecure: bool,
    /// A PEM file of CA certificates to trust besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Progress bars on a terminal (`None`: when stderr is one).
    pub progress: Option<bool>,
    /// Blobs transferred at once.
    pub jobs: usize,
}

impl Options {
    fn jobs(&self) -> usize {
        if self.jobs == 0 {
            4
        } else {
            self.jobs
        }
    }
}

/// The tokio runtime a command runs its transfers on: two workers (hashing and writing
/// happen on them), made only when a pull or push happens.
fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| Error::Runtime { source })
}

/// Whether `name` is spelled as a registry reference with a registry host
/// (`HOST[:PORT]/REPO...`, the host holding a `.` or `:` or being `localhost`): the
/// names `container run` and `run --image` pull when the store lacks them.
pub fn names_a_registry(name: &str) -> bool {
    match name.split_once('/') {
        Some((host, rest)) => {
            !rest.is_empty() && (host.contains('.') || host.contains(':') || host == "localhost")
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names() {
        assert!(names_a_registry("127.0.0.1:5000/team/app:1.0"));
        assert!(names_a_registry("localhost/app"));
        assert!(names_a_registry("docker.io/library/alpine"));
        assert!(!names_a_registry("busybox"));
        assert!(!names_a_registry("team/app:1.0"));
        assert!(!names_a_registry("example.com/"));
    }
}
