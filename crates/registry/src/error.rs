//! What can go wrong talking to a registry, each as one line `<what>; <fix>`.
//! Credentials never appear in these messages.

use std::path::PathBuf;

/// A registry operation's failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid image reference {reference:?}: {source}; use REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:DIGEST")]
    BadReference {
        reference: String,
        #[source]
        source: crate::reference::ReferenceError,
    },
    #[error("cannot resolve registry host {registry}; check the name (DNS, /etc/hosts) and the reference")]
    UnknownHost {
        registry: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot connect to registry {registry}: {detail}; check that it runs and listens on that address and port")]
    Unreachable {
        registry: String,
        detail: String,
        #[source]
        source: Option<reqwest::Error>,
    },
    #[error("TLS with registry {registry} failed: {detail}; pass --ca-file CA.pem if it uses a private CA, or --insecure if it has no valid TLS")]
    Tls { registry: String, detail: String },
    #[error("registry {registry} does not speak TLS; pass --insecure to use plain HTTP with it (allowed by default only on loopback)")]
    PlainHttp { registry: String },
    #[error("registry {registry} refused access to {reference} (401 unauthorized); log in with `minnow login {registry}`")]
    Unauthorized { registry: String, reference: String },
    #[error("registry {registry} refused the stored credentials for {reference} (401 unauthorized); log in again with `minnow login {registry}`")]
    BadCredentials { registry: String, reference: String },
    #[error("registry {registry} denied {reference} (403 forbidden); log in as a user with access (`minnow login {registry}`)")]
    Denied { registry: String, reference: String },
    #[error("{reference} not found in registry {registry} (404: {what}); check the repository, tag or digest")]
    NotFound {
        registry: String,
        reference: String,
        what: String,
    },
    #[error("registry {registry} sent {what} {expected} whose content hashes to {actual} (digest mismatch); nothing was stored: the registry's copy is corrupt or was changed")]
    DigestMismatch {
        registry: String,
        what: &'static str,
        expected: String,
        actual: String,
    },
    #[error("registry {registry} sent {what} {digest} of {got} bytes where the manifest says {want}; nothing was stored: the registry's copy is corrupt")]
    SizeMismatch {
        registry: String,
        what: &'static str,
        digest: String,
        got: u64,
        want: u64,
    },
    #[error("image {reference} has no {want} manifest (it has: {have}); pass --platform with one of them")]
    NoPlatform {
        reference: String,
        want: String,
        have: String,
    },
    #[error("invalid --platform {0:?}; use OS/ARCH[/VARIANT], e.g. linux/amd64")]
    BadPlatform(String),
    #[error("{reference} is a {media_type:?}, which minnow cannot run; pull an image (OCI or Docker v2 schema 2 manifest)")]
    UnsupportedManifest {
        reference: String,
        media_type: String,
    },
    #[error(
        "image {reference} has an unsupported layer: {source}; push it with gzip or zstd layers"
    )]
    UnsupportedLayer {
        reference: String,
        #[source]
        source: minnow_image::compress::UnsupportedMediaType,
    },
    #[error("{reference} sent a malformed {what}: {detail}; the registry's copy is not an image minnow can read")]
    Malformed {
        reference: String,
        what: &'static str,
        detail: String,
    },
    #[error("no space left on the device of {path} while storing {what}; free space there (or use another store with --store DIR) and pull again: verified blobs are kept")]
    DiskFull { path: PathBuf, what: String },
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the CA file {path}: {detail}; pass a PEM file of CA certificates with --ca-file")]
    CaFile { path: PathBuf, detail: String },
    #[error("registry {registry}: {detail}")]
    Registry { registry: String, detail: String },
    #[error("{0}")]
    Store(String),
    #[error(transparent)]
    Ingest(#[from] minnow_image::ingest::IngestError),
    #[error(transparent)]
    Image(#[from] minnow_image::Error),
    #[error(transparent)]
    Digest(#[from] minnow_image::digest::DigestError),
    #[error(transparent)]
    Credentials(#[from] crate::auth::CredentialError),
    #[error("cannot start the transfer runtime: {source}; check the process limits (threads, open files)")]
    Runtime {
        #[source]
        source: std::io::Error,
    },
}

impl From<String> for Error {
    fn from(s: String) -> Self {
        Error::Store(s)
    }
}

impl Error {
    /// An I/O error while writing into the store: "disk full" gets its own message.
    pub(crate) fn write(path: &std::path::Path, what: &str, e: std::io::Error) -> Error {
        if e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT) {
            Error::DiskFull {
                path: path.to_path_buf(),
                what: what.to_string(),
            }
        } else {
            Error::Io {
                what: "write",
                path: path.to_path_buf(),
                source: e,
            }
        }
    }
}
