//! Content verified elsewhere (a registry pull) entering the store, and names for it.
//!
//! A pull downloads each blob to a temporary file, hashing it on the way, and hands the
//! verified file to [`Store::put_verified`], which moves it to `STORE/incoming/sha256/`:
//! verified but not yet named. Garbage collection does not look there, so an `image rm`
//! or `import` running meanwhile cannot collect it, and a pull that was interrupted
//! leaves its verified blobs for the next one. [`Store::name_manifest`] then, under the
//! store lock, moves the image's blobs into `blobs/` and names the manifest in
//! `index.json`; it refuses (naming nothing) while any blob is missing.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::oci::{self, Descriptor};
use crate::{Image, Store};

/// Why content could not be put into the store or named.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The store itself failed (its messages are already one line with a fix).
    #[error(transparent)]
    Store(#[from] crate::Error),
    #[error("cannot store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Blobs the manifest needs are in neither `blobs/` nor `incoming/` (collected
    /// while the pull ran, or never fetched): nothing was named.
    #[error("{} blob(s) of the image are missing from the store (first: {}); pull again", .0.len(), .0.first().map(|d| d.to_string()).unwrap_or_default())]
    Missing(Vec<Digest>),
    #[error("invalid image name {0:?}; use a reference such as registry.example:5000/team/app:1.0 (letters, digits, / and . _ - : @ +)")]
    BadName(String),
}

/// Checks a name as the OCI `org.opencontainers.image.ref.name` annotation allows it
/// (and as a registry reference is spelled): `/`-separated components of letters and
/// digits joined by one of `- . _ : @ +` (or `--`), at most 255 bytes.
pub fn check_reference_name(name: &str) -> Result<(), IngestError> {
    let component_ok = |c: &str| {
        let b = c.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|&x| x.is_ascii_alphanumeric() || b"-._:@+".contains(&x))
    };
    if name.len() <= 255 && name.split('/').all(component_ok) {
        Ok(())
    } else {
        Err(IngestError::BadName(name.to_string()))
    }
}

impl Store {
    /// Where verified, not yet named blobs wait.
    pub fn incoming_path(&self, d: &Digest) -> PathBuf {
        self.root().join("incoming/sha256").join(d.hex())
    }

    /// Whether the store has this blob, named (`blobs/`) or verified and waiting
    /// (`incoming/`).
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file() || self.incoming_path(d).is_file()
    }

    /// The path of a blob, wherever it is (`blobs/` first).
    pub fn find_blob(&self, d: &Digest) -> Option<PathBuf> {
        [self.blob_path(d), self.incoming_path(d)]
            .into_iter()
            .find(|p| p.is_file())
    }

    /// A fresh path under `STORE/tmp/` named `<what>-<pid>-<n>`, for a download.
    pub fn scratch_path(&self, what: &str) -> PathBuf {
        self.tmp_path(what)
    }

    /// Moves `tmp`, a file whose content the caller has hashed to `d` (and checked
    /// against what it expected), to `incoming/`. Never names anything.
    pub fn put_verified(&self, tmp: &Path, d: &Digest) -> Result<(), IngestError> {
        let dst = self.incoming_path(d);
        let io = |path: &Path, source| IngestError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = dst.parent() {
            fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        }
        let _ = fs::set_permissions(tmp, fs::Permissions::from_mode(0o444));
        fs::rename(tmp, &dst).map_err(|e| {
            let _ = fs::remove_file(tmp);
            io(&dst, e)
        })
    }

    /// Names a manifest (or image index) `name` in `index.json`, replacing an entry of
    /// that name. `blobs` must list every blob it needs, the manifest itself included:
    /// under the store lock each moves from `incoming/` to `blobs/`, and if any is in
    /// neither, nothing is named ([`IngestError::Missing`] lists them). `annotations`
    /// go on the `index.json` entry beside the name.
    pub fn name_manifest(
        &self,
        name: &str,
        manifest: &Descriptor,
        blobs: &[Digest],
        annotations: BTreeMap<String, String>,
    ) -> Result<(), IngestError> {
        check_reference_name(name)?;
        let _lock = self.lock()?;
        let missing: Vec<Digest> = blobs
            .iter()
            .filter(|d| !self.has_blob(d))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(IngestError::Missing(missing));
        }
        for d in blobs {
            let named = self.blob_path(d);
            let waiting = self.incoming_path(d);
            if named.is_file() {
                let _ = fs::remove_file(&waiting);
            } else {
                fs::rename(&waiting, &named).map_err(|source| IngestError::Io {
                    path: named,
                    source,
                })?;
            }
        }
        let mut desc = manifest.clone();
        desc.annotations = annotations;
        desc.annotations
            .insert(oci::REF_NAME.to_string(), name.to_string());
        let mut index = self.read_index()?;
        index
            .manifests
            .retain(|m| m.annotations.get(oci::REF_NAME).map(String::as_str) != Some(name));
        index.manifests.push(desc);
        self.write_index(&index)?;
        Ok(())
    }

    /// The `index.json` entry named `name` (its descriptor and annotations).
    pub fn entry(&self, name: &str) -> Result<Descriptor, crate::Error> {
        self.read_index()?
            .manifests
            .into_iter()
            .find(|m| m.annotations.get(oci::REF_NAME).map(String::as_str) == Some(name))
            .ok_or_else(|| crate::Error::NotFound {
                name: name.into(),
                store: self.root().into(),
                hint: "list images with `minnow image ls`".into(),
            })
    }

    /// Whether `index.json` names an image `name` (reads nothing else).
    pub fn has_name(&self, name: &str) -> bool {
        self.entry(name).is_ok()
    }

    /// The raw bytes of an image's manifest blob, verified (for a push, which must send
    /// them as they are so the digest stays the same).
    pub fn manifest_bytes(&self, image: &Image) -> Result<Vec<u8>, crate::Error> {
        let path = self.blob_path(&image.manifest_digest);
        let data = fs::read(&path).map_err(|source| crate::Error::ManifestMissing {
            digest: image.manifest_digest.clone(),
            name: image.name.clone(),
            source,
        })?;
        crate::digest::verify(&image.manifest_digest, &data)
            .map_err(|source| crate::Error::BlobCorrupt { source })?;
        Ok(data)
    }

    /// `minnow image tag NAME NEWNAME`: a second name for the same image (`index.json`
    /// entry copied, annotations and all).
    pub fn tag(&self, name: &str, new: &str) -> Result<Descriptor, IngestError> {
        check_reference_name(new)?;
        let image = self.resolve(name)?;
        let _lock = self.lock()?;
        let mut desc = match self.entry(name) {
            Ok(d) => d,
            // A digest-prefix name: the entry is the resolved manifest.
            Err(_) => Descriptor {
                media_type: image
                    .manifest
                    .media_type
                    .clone()
                    .unwrap_or_else(|| oci::MEDIA_MANIFEST.into()),
                digest: image.manifest_digest.to_string(),
                size: self.manifest_bytes(&image)?.len() as u64,
                annotations: BTreeMap::new(),
            },
        };
        desc.annotations
            .insert(oci::REF_NAME.to_string(), new.to_string());
        let mut index = self.read_index()?;
        index
            .manifests
            .retain(|m| m.annotations.get(oci::REF_NAME).map(String::as_str) != Some(new));
        index.manifests.push(desc.clone());
        self.write_index(&index)?;
        Ok(desc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reference_names() {
        for ok in [
            "busybox",
            "127.0.0.1:5000/team/app:1.0",
            "example.com/a/b@sha256:0123abcd",
            "docker.io/library/alpine:3.20",
            "a--b",
        ] {
            assert!(check_reference_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/x", "x/", "a//b", "../x", "a b", "x:", ":x", "a/.b"] {
            assert!(check_reference_name(bad).is_err(), "{bad:?}");
        }
    }

    /// A manifest is named only once all its blobs are there; blobs wait in incoming/
    /// (where gc does not look) and move to blobs/ when named.
    #[test]
    fn name_only_when_complete() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let put = |data: &[u8]| {
            let tmp = store.scratch_path("t");
            fs::File::create(&tmp).unwrap().write_all(data).unwrap();
            let d = Digest::of(data);
            store.put_verified(&tmp, &d).unwrap();
            d
        };
        let layer = put(b"layer");
        let config = Digest::of(b"config");
        let desc = Descriptor {
            media_type: oci::MEDIA_MANIFEST.into(),
            digest: Digest::of(b"manifest").to_string(),
            size: 8,
            annotations: BTreeMap::new(),
        };
        let err = store
            .name_manifest(
                "r.example/x:1",
                &desc,
                &[layer.clone(), config.clone()],
                BTreeMap::new(),
            )
            .unwrap_err();
        assert!(
            matches!(&err, IngestError::Missing(m) if m == &vec![config.clone()]),
            "{err}"
        );
        assert!(!store.has_name("r.example/x:1"));
        // The verified blob survives garbage collection while it waits.
        store.gc_locked().unwrap();
        assert!(store.has_blob(&layer));
        assert!(store.incoming_path(&layer).is_file());
        let config = put(b"config");
        store
            .name_manifest(
                "r.example/x:1",
                &desc,
                &[layer.clone(), config],
                BTreeMap::new(),
            )
            .unwrap();
        assert!(store.has_name("r.example/x:1"));
        assert!(store.blob_path(&layer).is_file());
        assert!(!store.incoming_path(&layer).exists());
        assert!(matches!(
            store.name_manifest("bad name", &desc, &[], BTreeMap::new()),
            Err(IngestError::BadName(_))
        ));
    }
}
