//! The store's errors. Each message is one line, `<what>; <fix>` where there is a fix (the
//! CLI prints it after `minnow: error:`); the cause stays reachable as the source.

use std::io;
use std::path::PathBuf;

use crate::digest::{Digest, DigestError};
use crate::layer::ExtractError;
use crate::{MAX_INDEX_DEPTH, PLATFORM_ARCH, PLATFORM_OS};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file of the store (or one it was given) could not be read, written or locked.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create image store directory {}: {source}; run as root or choose a writable store with --store DIR (or MINNOW_STORE)", path.display())]
    StoreDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The store's `index.json` is not valid JSON.
    #[error("corrupt {}: {source}", path.display())]
    Index {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A manifest, config or image index blob is not the JSON it should be.
    #[error("{what} of image {name} is not valid JSON: {source}")]
    Json {
        what: &'static str,
        name: String,
        #[source]
        source: serde_json::Error,
    },
    /// minnow's own value could not be serialized (not expected to happen).
    #[error("cannot serialize {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error(
        "blob {digest} is missing from the store ({source}); remove the image and import it again"
    )]
    BlobMissing {
        digest: Digest,
        #[source]
        source: io::Error,
    },
    #[error("manifest {digest} of image {name} is missing from the store ({source}); pull or import the image again")]
    ManifestMissing {
        digest: Digest,
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("{source}; the store is corrupt: remove the image and import it again")]
    BlobCorrupt {
        #[source]
        source: DigestError,
    },
    #[error("blob {digest} has size {actual} but its descriptor says {expected}")]
    BlobSize {
        digest: Digest,
        actual: u64,
        expected: u64,
    },
    #[error("image {name} has no {PLATFORM_OS}/{PLATFORM_ARCH} manifest (it has: {have}); copy the {PLATFORM_OS}/{PLATFORM_ARCH} image into the store")]
    NoPlatform { name: String, have: String },
    #[error("image {name} nests image indexes more than {MAX_INDEX_DEPTH} deep; copy a single-platform image into the store")]
    IndexTooDeep { name: String },
    #[error("image {name} has {layers} layers but {diff_ids} diff_ids")]
    DiffIds {
        name: String,
        layers: usize,
        diff_ids: usize,
    },
    /// No image of that name; `hint` is the command that helps.
    #[error("no image {name:?} in store {}; {hint}", store.display())]
    NotFound {
        name: String,
        store: PathBuf,
        hint: String,
    },
    #[error("invalid {kind} name {name:?}; use letters, digits and _ . : - (starting with a letter or digit)")]
    BadName { kind: &'static str, name: String },
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// `image import` of something that is not there (the path shown printable).
    #[error("cannot import {path}: {source}; pass an existing directory, .tar or .tar.gz")]
    ImportSource {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a tar archive of a root filesystem ({why}); pass a directory or a .tar/.tar.gz")]
    NotATar { path: String, why: String },
    /// `image import` of a tar that could not be stored or extracted.
    #[error("cannot import {path}: {message}")]
    Import {
        path: String,
        message: String,
        #[source]
        source: Box<Error>,
    },
    #[error(transparent)]
    Extract(#[from] ExtractError),
    #[error("no statically linked busybox on this host; install it with `apt-get install busybox-static`")]
    NoBusybox,
    #[error("cannot run {} --list-full: {source}", path.display())]
    BusyboxList {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
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
}

/// For callers whose errors are still one-line strings (the CLI prints them as they are).
impl From<Error> for String {
    fn from(e: Error) -> String {
        e.to_string()
    }
}
