//! Layer tars: packing a directory into one, and extracting one into the store's cache of
//! extracted layers (overlayfs lower directories), with OCI whiteouts turned into
//! overlayfs ones.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{makedev, mknod, Mode, SFlag};

use crate::compress::Compression;
use crate::digest::{self, Digest, HashingReader};
use crate::oci::Descriptor;
use crate::store::io_err;
use crate::{Image, Store};

impl Store {
    /// Makes sure every layer of `image` is extracted (verifying each blob's digest while
    /// extracting) and returns the extracted roots, bottom layer first.
    pub fn layer_dirs(&self, image: &Image) -> Result<Vec<PathBuf>, String> {
        image
            .manifest
            .layers
            .iter()
            .map(|l| self.extract_layer(l))
            .collect()
    }

    pub(crate) fn extract_layer(&self, desc: &Descriptor) -> Result<PathBuf, String> {
        let d = Digest::parse(&desc.digest)?;
        let rootfs = self.layer_rootfs(&d);
        if rootfs.is_dir() {
            return Ok(rootfs);
        }
        let compression = Compression::of(&desc.media_type).map_err(|e| {
            format!("layer {d}: {e}; copy the image again with gzip layers (skopeo copy --dest-compress-format gzip ...)")
        })?;
        let blob = self.blob_path(&d);
        let file = File::open(&blob).map_err(|e| format!("layer blob {d} is missing from the store ({e}); remove the image and import it again"))?;
        let tmp = self
            .layers_dir()
            .join(format!(".tmp-{}-{}", d.hex(), std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let tmp_root = tmp.join("rootfs");
        fs::create_dir_all(&tmp_root).map_err(|e| io_err("cannot create", &tmp_root, e))?;
        let mut reader = HashingReader::new(BufReader::new(file));
        let unpacked = compression
            .decoder(BufReader::new(&mut reader))
            .and_then(|r| unpack_layer(r, &tmp_root));
        let hashed = reader.finish();
        let fail = |msg: String| {
            let _ = fs::remove_dir_all(&tmp);
            Err(msg)
        };
        match hashed {
            Err(e) => return fail(io_err("cannot read layer blob", &blob, e)),
            Ok((actual, n)) => {
                if let Err(e) = digest::check(&d, &actual) {
                    return fail(format!("refusing corrupt layer: {e}; remove the image (minnow image rm NAME) and import it again"));
                }
                if n != desc.size {
                    return fail(format!(
                        "refusing layer {d}: {n} bytes on disk, manifest says {}",
                        desc.size
                    ));
                }
            }
        }
        if let Err(e) = unpacked {
            return fail(format!("cannot extract layer {d}: {e}"));
        }
        let final_dir = self.layers_dir().join(d.hex());
        if let Err(e) = fs::rename(&tmp, &final_dir) {
            let _ = fs::remove_dir_all(&tmp);
            if !rootfs.is_dir() {
                return Err(io_err("cannot store extracted layer", &final_dir, e));
            }
        }
        Ok(rootfs)
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

/// Unpacks one layer tar into `root`, turning OCI whiteouts into overlayfs whiteouts
/// (`.wh.NAME` → a 0:0 character device, `.wh..wh..opq` → the opaque xattr).
fn unpack_layer(r: impl Read, root: &Path) -> io::Result<()> {
    let mut ar = tar::Archive::new(r);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(true);
    ar.set_preserve_mtime(true);
    ar.set_unpack_xattrs(true);
    ar.set_overwrite(true);
    for entry in ar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let rel: PathBuf = path
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(io::Error::other(format!(
                "entry {} escapes the layer",
                path.display()
            )));
        }
        let fname = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(hidden) = fname.strip_prefix(".wh.") {
            let parent = root.join(rel.parent().unwrap_or(Path::new("")));
            fs::create_dir_all(&parent)?;
            if hidden == ".wh..opq" {
                xattr::set(&parent, "trusted.overlay.opaque", b"y")?;
            } else {
                let target = parent.join(hidden);
                let _ = fs::remove_file(&target);
                mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
                    .map_err(io::Error::from)?;
            }
            continue;
        }
        entry.unpack_in(root)?;
    }
    Ok(())
}
