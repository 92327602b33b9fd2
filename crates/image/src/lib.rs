//! minnow's image store: OCI image layout on disk, content-addressed layer blobs, and a
//! cache of extracted layers used as overlayfs lower directories. See docs/containers.md.
//!
//! ```text
//! STORE/oci-layout                     {"imageLayoutVersion": "1.0.0"}
//! STORE/index.json                     named manifests (org.opencontainers.image.ref.name)
//! STORE/blobs/sha256/<hex>             manifests, configs, tar layers (gzip/zstd as pulled)
//! STORE/incoming/sha256/<hex>          verified blobs of a pull not yet named
//! STORE/layers/<hex>/rootfs            extracted layer (read-only overlay lower dir)
//! STORE/containers/<id>/               one container: state.json, upper/, work/, rootfs/
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

//!
//! Modules: [`store`] (the layout, blobs, names), [`import`] (images from directories,
//! tars and the busybox default), [`gc`] (removal and garbage collection), [`layer`]
//! (layer tars: packing and extraction), [`busybox`] (the default image's root),
//! [`compress`] (layer compression: the decoder extraction uses), [`ingest`] (verified
//! content from a registry entering the store; names and tags).

pub mod busybox;
pub mod compress;
pub mod digest;
pub mod error;
pub mod gc;
pub mod import;
pub mod ingest;
pub mod layer;
pub mod oci;
pub mod store;

pub use busybox::is_static_elf;
pub use error::Error;
pub use store::Store;

use digest::Digest;
use oci::{ImageConfig, Manifest};
use std::path::PathBuf;

/// Where the store is when neither `--store` nor `MINNOW_STORE` says.
pub const DEFAULT_STORE: &str = "/var/lib/minnow";

/// The store directory: the `--store` flag, else `$MINNOW_STORE`, else [`DEFAULT_STORE`].
pub fn store_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("MINNOW_STORE").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STORE))
}

/// The time now as RFC 3339 UTC with seconds, as OCI `created` fields use.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Checks an image or container name: `[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}`.
pub fn check_name(kind: &'static str, name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::BadName {
            kind,
            name: name.into(),
        })
    }
}

/// `s` with control characters escaped (`\n`, `\u{1b}`, ...) and bytes that were not
/// UTF-8 (U+FFFD after a lossy conversion) shown as `?`, for text that came from a file
/// (a tar's names, a tool's message) and goes into a one-line error.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else if c == char::REPLACEMENT_CHARACTER {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// A tar reader's error message without the raw field bytes it quotes after `: `
/// ("numeric field was not a number: <bytes> when getting cksum for <bytes>").
pub fn tar_message(e: &std::io::Error) -> String {
    let s = e.to_string();
    printable(s.split(": ").next().unwrap_or(&s))
}

/// A resolved image: its name, manifest and config, both read with verified digests.
#[derive(Clone, Debug)]
pub struct Image {
    pub name: String,
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    pub config: ImageConfig,
}

/// One row of `minnow image ls`.
#[derive(Clone, Debug)]
pub struct ImageSummary {
    pub name: String,
    pub digest: Digest,
    pub size: u64,
    pub created: String,
}

/// The image built from the host's busybox-static when first asked for.
pub const DEFAULT_IMAGE: &str = "busybox";

/// The platform minnow runs images for (what it writes into image configs, and what it
/// picks from multi-platform image indexes).
pub const PLATFORM_OS: &str = "linux";
pub const PLATFORM_ARCH: &str = "amd64";

/// How deep image indexes may nest under `index.json`.
const MAX_INDEX_DEPTH: usize = 4;

#[cfg(test)]
mod tests;
