//! Why an image could not become a microVM's disk. Each message is one line, `<what>;
//! <fix>` where there is a fix; the cause stays reachable as the source.

use std::io;
use std::path::PathBuf;

use minnow_image::layer::merge::MergeError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Image(#[from] minnow_image::Error),
    #[error(transparent)]
    Digest(#[from] minnow_image::digest::DigestError),
    #[error(transparent)]
    Config(#[from] minnow_vmm::config::Error),
    #[error(transparent)]
    Command(#[from] minnow_vmm::boot::Error),
    #[error("no minnow guest kernel at {}; build it with `bash resources/guest/kernel/build.sh` (or pass --kernel PATH)", .0.display())]
    NoKernel(PathBuf),
    #[error("image {0} has no command; give one: minnow run --image {0} -- CMD")]
    NoCommand(String),
    #[error("no statically linked busybox on this host; install it with `apt-get install busybox-static`")]
    NoBusybox,
    #[error(
        "mkfs.ext4 not found; install e2fsprogs (apt-get install e2fsprogs) to run images in VMs"
    )]
    NoMkfs,
    #[error("cannot find minnow's own binary: {0}")]
    OwnBinary(#[source] io::Error),
    #[error("cannot run {what}: {source}")]
    Tool {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{what} failed ({status}): {stderr}")]
    ToolFailed {
        what: &'static str,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("cannot {what}: {source}; remove the image and import it again")]
    Merge {
        what: &'static str,
        #[source]
        source: MergeError,
    },
    #[error("cannot copy library {lib} into the VM disk ({source}); or build a static minnow: RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release --target x86_64-unknown-linux-gnu")]
    Library {
        lib: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot serialize the guest store's index: {0}")]
    Serialize(#[source] serde_json::Error),
}

impl Error {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
