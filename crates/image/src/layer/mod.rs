//! Layer tars: packing a directory into one, and extracting one into the store's cache of
//! extracted layers (overlayfs lower directories), with OCI whiteouts turned into
//! overlayfs ones.
//!
//! - [`unpack`]: a layer tar into a directory, safely (every path resolved inside it).
//! - [`merge`]: extracted layers onto one directory, safely (microVM disks).
//! - [`root`]: the descriptor-based operations both use.
//! - [`escape_check`]: the oracle the hostile-layer tests (and a fuzz target) use.
//!
//! ```text
//! STORE/layers/<hex>/rootfs     the extracted layer
//! STORE/layers/<hex>/complete   the marker: written after extraction and digest check
//! STORE/layers/.tmp-<hex>-<pid> an extraction in progress (renamed to <hex> when done)
//! ```

pub mod escape_check;
pub mod merge;
pub mod root;
pub mod unpack;

use std::fs::{self, File};
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::compress::Compression;
use crate::digest::{Digest, HashingReader};
use crate::oci::Descriptor;
use crate::{Image, Store};

pub use unpack::{Limits, Summary, UnpackError};

/// The first word of a layer's `complete` marker (bump to have every layer extracted
/// again, e.g. when extraction itself changes).
const MARKER_FORMAT: &str = "minnow-layer-1";

/// Why a layer could not be extracted; each message is `<what>; <fix>`.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("{0}")]
    BadDigest(crate::digest::DigestError),
    #[error("layer {digest} has unsupported media type {media_type}; minnow reads uncompressed, gzip and zstd tar layers: copy the image again with gzip (skopeo copy --dest-compress-format gzip ...)")]
    MediaType { digest: Digest, media_type: String },
    #[error("layer blob {digest} is missing from the store ({source}); remove the image and import it again")]
    Missing {
        digest: Digest,
        #[source]
        source: io::Error,
    },
    #[error("cannot read layer blob {}: {source}; check the store's disk", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("refusing corrupt layer: digest mismatch for blob {expected}: its content hashes to {actual}; remove the image (minnow image rm NAME) and import it again")]
    Corrupt { expected: Digest, actual: Digest },
    #[error("refusing layer {digest}: {actual} bytes on disk, manifest says {expected}; remove the image and import it again")]
    Size {
        digest: Digest,
        actual: u64,
        expected: u64,
    },
    #[error("cannot extract layer {digest}: {source}; {}", unpack_hint(source))]
    Unpack {
        digest: Digest,
        #[source]
        source: UnpackError,
    },
    #[error("cannot {op} {}: {source}; check that the store is writable", path.display())]
    Store {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn unpack_hint(e: &UnpackError) -> String {
    if e.is_limit() {
        let l = Limits::default();
        format!(
            "minnow extracts layers of up to {} GiB of files and {} entries; use a smaller image",
            l.max_bytes >> 30,
            l.max_entries
        )
    } else {
        "the layer is damaged or unsafe: remove the image (minnow image rm NAME) and use one whose entries stay inside the layer".into()
    }
}

impl Store {
    /// Makes sure every layer of `image` is extracted (verifying each blob's digest while
    /// extracting) and returns the extracted roots, bottom layer first.
    pub fn layer_dirs(&self, image: &Image) -> Result<Vec<PathBuf>, crate::Error> {
        image
            .manifest
            .layers
            .iter()
            .map(|l| Ok(self.extract_layer(l)?.0))
            .collect()
    }

    fn marker_path(&self, d: &Digest) -> PathBuf {
        self.layers_dir().join(d.hex()).join("complete")
    }

    /// Whether layer `d` was extracted completely (its marker names it).
    pub fn layer_complete(&self, d: &Digest) -> bool {
        fs::read_to_string(self.marker_path(d)).is_ok_and(|m| {
            let mut w = m.split_whitespace();
            w.next() == Some(MARKER_FORMAT) && w.next() == Some(&d.to_string())
        }) && self.layer_rootfs(d).is_dir()
    }

    /// Extracts one layer (unless it already is, marker and all) and returns its root,
    /// with what extraction did if it ran now. An extraction without its marker
    /// (interrupted, or by an older minnow) is removed and done again.
    pub(crate) fn extract_layer(
        &self,
        desc: &Descriptor,
    ) -> Result<(PathBuf, Option<Summary>), ExtractError> {
        let d = Digest::parse(&desc.digest).map_err(ExtractError::BadDigest)?;
        let rootfs = self.layer_rootfs(&d);
        if self.layer_complete(&d) {
            return Ok((rootfs, None));
        }
        let final_dir = self.layers_dir().join(d.hex());
        if fs::symlink_metadata(&final_dir).is_ok() {
            log::warn!("layer {d} was not completely extracted; extracting it again");
            remove_any(&final_dir).map_err(|source| ExtractError::Store {
                op: "remove the incomplete layer",
                path: final_dir.clone(),
                source,
            })?;
        }
        if Compression::of(&desc.media_type).is_err() {
            return Err(ExtractError::MediaType {
                digest: d,
                media_type: desc.media_type.clone(),
            });
        }
        let blob = self.blob_path(&d);
        let file = File::open(&blob).map_err(|source| ExtractError::Missing {
            digest: d.clone(),
            source,
        })?;
        let tmp = self
            .layers_dir()
            .join(format!(".tmp-{}-{}", d.hex(), std::process::id()));
        let _ = remove_any(&tmp);
        let result = self.extract_into(desc, &d, file, &blob, &tmp);
        let summary = match result {
            Ok(s) => s,
            Err(e) => {
                let _ = remove_any(&tmp);
                return Err(e);
            }
        };
        if let Err(source) = fs::rename(&tmp, &final_dir) {
            let _ = remove_any(&tmp);
            // Another minnow may have finished the same layer first.
            if !self.layer_complete(&d) {
                return Err(ExtractError::Store {
                    op: "store extracted layer",
                    path: final_dir,
                    source,
                });
            }
        }
        Ok((rootfs, Some(summary)))
    }

    /// Extracts the blob into `tmp/rootfs`, checks digest and size, writes the marker.
    fn extract_into(
        &self,
        desc: &Descriptor,
        d: &Digest,
        file: File,
        blob: &Path,
        tmp: &Path,
    ) -> Result<Summary, ExtractError> {
        let store_err = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| ExtractError::Store { op, path, source }
        };
        let tmp_root = tmp.join("rootfs");
        fs::create_dir_all(&tmp_root).map_err(store_err("create", &tmp_root))?;
        let mut reader = HashingReader::new(BufReader::new(file));
        // The decoder hook (compress.rs): uncompressed, gzip or zstd, by media type.
        let unpacked = Compression::of(&desc.media_type)
            .map_err(|e| unpack::UnpackError::Tar {
                source: io::Error::other(e),
            })
            .and_then(|c| {
                c.decoder(BufReader::new(&mut reader))
                    .map_err(|source| unpack::UnpackError::Tar { source })
            })
            .and_then(|r| unpack::unpack(r, &tmp_root, &self.limits));
        let (actual, n) = reader.finish().map_err(|source| ExtractError::Read {
            path: blob.to_path_buf(),
            source,
        })?;
        if &actual != d {
            return Err(ExtractError::Corrupt {
                expected: d.clone(),
                actual,
            });
        }
        if n != desc.size {
            return Err(ExtractError::Size {
                digest: d.clone(),
                actual: n,
                expected: desc.size,
            });
        }
        let summary = unpacked.map_err(|source| ExtractError::Unpack {
            digest: d.clone(),
            source,
        })?;
        let marker = tmp.join("complete");
        let mut f = File::create(&marker).map_err(store_err("write", &marker))?;
        writeln!(
            f,
            "{MARKER_FORMAT} {d} entries={} bytes={}",
            summary.entries, summary.bytes
        )
        .and_then(|()| f.sync_all())
        .map_err(store_err("write", &marker))?;
        Ok(summary)
    }
}

/// Removes a directory tree (never following symlinks in it) or a file.
fn remove_any(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Appends `dir`'s contents (not `dir` itself) to `b`, sorted, names relative to the root.
pub(crate) fn append_tree<W: Write>(
    b: &mut tar::Builder<W>,
    dir: &Path,
    rel: &Path,
) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = rel.join(e.file_name());
        b.append_path_with_name(&path, &name)?;
        if e.file_type()?.is_dir() {
            append_tree(b, &path, &name)?;
        }
    }
    Ok(())
}
