//! The store on disk: the OCI layout (`oci-layout`, `index.json`, `blobs/`), minnow's own
//! directories beside it, the store lock, and reading images by name.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::digest::{self, Digest, HashingWriter};
use crate::oci::{self, Descriptor, Index, Manifest};
use crate::{
    Error, Image, ImageConfig, ImageSummary, DEFAULT_IMAGE, MAX_INDEX_DEPTH, PLATFORM_ARCH,
    PLATFORM_OS,
};

/// An open image store (a path: cloning it opens nothing).
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
    pub(crate) limits: crate::layer::Limits,
}

impl Store {
    /// Opens the store at `root`, creating the layout if it is not there yet.
    pub fn open(root: &Path) -> Result<Store, Error> {
        let store = Store {
            root: root.to_path_buf(),
            limits: crate::layer::Limits::default(),
        };
        for dir in [
            store.root.join("blobs/sha256"),
            store.layers_dir(),
            store.containers_dir(),
            store.tmp_dir(),
        ] {
            fs::create_dir_all(&dir).map_err(|source| Error::StoreDir { path: dir, source })?;
        }
        let layout = store.root.join("oci-layout");
        if !layout.exists() {
            write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        if !store.root.join("index.json").exists() {
            store.write_index(&Index::default())?;
        }
        Ok(store)
    }

    /// Sets what one layer may hold when it is extracted (default: [`crate::layer::Limits`]).
    pub fn set_limits(&mut self, limits: crate::layer::Limits) {
        self.limits = limits;
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    pub fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }

    /// The extracted root of a layer (exists only once extraction finished).
    pub fn layer_rootfs(&self, d: &Digest) -> PathBuf {
        self.layers_dir().join(d.hex()).join("rootfs")
    }

    pub fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Takes the store's exclusive lock (held until the returned guard drops).
    pub fn lock(&self) -> Result<Flock<File>, Error> {
        let path = self.root.join(".lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("cannot open lock file", &path, e))?;
        Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::io("cannot lock", path, e.into()))
    }

    pub(crate) fn read_index(&self) -> Result<Index, Error> {
        let path = self.root.join("index.json");
        let text = fs::read(&path).map_err(|e| Error::io("cannot read", &path, e))?;
        serde_json::from_slice(&text).map_err(|source| Error::Index { path, source })
    }

    pub(crate) fn write_index(&self, index: &Index) -> Result<(), Error> {
        let text = serde_json::to_vec_pretty(index).map_err(|source| Error::Serialize {
            what: "index.json",
            source,
        })?;
        write_atomic(&self.root.join("index.json"), &text)
    }

    /// Copies `src` into a new blob, hashing it on the way; returns its digest and size.
    pub(crate) fn put_blob(&self, mut src: impl Read) -> Result<(Digest, u64), Error> {
        let tmp = self.tmp_path("blob");
        let file = File::create(&tmp).map_err(|e| Error::io("cannot create", &tmp, e))?;
        let mut w = HashingWriter::new(BufWriter::new(file));
        let copied = io::copy(&mut src, &mut w).and_then(|_| w.flush());
        if let Err(e) = copied {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io("cannot write blob", tmp, e));
        }
        let (_, d, n) = w.finish();
        self.commit_blob(&tmp, &d)?;
        Ok((d, n))
    }

    pub(crate) fn put_json<T: serde::Serialize>(&self, v: &T) -> Result<(Digest, u64), Error> {
        let bytes = serde_json::to_vec(v).map_err(|source| Error::Serialize {
            what: "an image blob",
            source,
        })?;
        self.put_blob(&bytes[..])
    }

    pub(crate) fn commit_blob(&self, tmp: &Path, d: &Digest) -> Result<(), Error> {
        let dst = self.blob_path(d);
        let _ = fs::set_permissions(tmp, fs::Permissions::from_mode(0o444));
        fs::rename(tmp, &dst).map_err(|e| {
            let _ = fs::remove_file(tmp);
            Error::io("cannot store blob", &dst, e)
        })
    }

    pub(crate) fn tmp_path(&self, what: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.tmp_dir()
            .join(format!("{what}-{}-{n}", std::process::id()))
    }

    /// Reads a small blob (manifest, config) and verifies its digest and size.
    pub(crate) fn read_verified(&self, desc: &Descriptor) -> Result<Vec<u8>, Error> {
        let d = Digest::parse(&desc.digest)?;
        let path = self.blob_path(&d);
        let data = match fs::read(&path) {
            Ok(data) => data,
            Err(source) => return Err(Error::BlobMissing { digest: d, source }),
        };
        digest::verify(&d, &data).map_err(|source| Error::BlobCorrupt { source })?;
        if data.len() as u64 != desc.size {
            return Err(Error::BlobSize {
                digest: d,
                actual: data.len() as u64,
                expected: desc.size,
            });
        }
        Ok(data)
    }

    pub(crate) fn load(&self, name: &str, desc: &Descriptor) -> Result<Image, Error> {
        let desc = self.platform_manifest(name, desc)?;
        let manifest: Manifest = serde_json::from_slice(&self.read_verified(&desc)?)
            .map_err(|source| bad_json("manifest", name, source))?;
        let config: ImageConfig = serde_json::from_slice(&self.read_verified(&manifest.config)?)
            .map_err(|source| bad_json("config", name, source))?;
        Ok(Image {
            name: name.to_string(),
            manifest_digest: Digest::parse(&desc.digest)?,
            manifest,
            config,
        })
    }

    /// Follows image indexes (a multi-platform image, as `skopeo copy --all` leaves in
    /// an OCI layout) down to the manifest for this host's platform (linux/amd64); an
    /// index with a single entry that names no platform is followed too. A descriptor
    /// that points at a manifest is returned as it is.
    pub(crate) fn platform_manifest(
        &self,
        name: &str,
        desc: &Descriptor,
    ) -> Result<Descriptor, Error> {
        let mut desc = desc.clone();
        for _ in 0..MAX_INDEX_DEPTH {
            if !oci::is_index(&desc.media_type) {
                return Ok(desc);
            }
            let index: oci::PlatformIndex = serde_json::from_slice(&self.read_verified(&desc)?)
                .map_err(|source| bad_json("image index", name, source))?;
            let ours = |p: &oci::Platform| p.os == PLATFORM_OS && p.architecture == PLATFORM_ARCH;
            let found = index
                .manifests
                .iter()
                .find(|m| m.platform.as_ref().is_some_and(ours))
                .or(match index.manifests.as_slice() {
                    [only] if only.platform.is_none() => Some(only),
                    _ => None,
                });
            let Some(found) = found else {
                let have: Vec<String> = index
                    .manifests
                    .iter()
                    .map(|m| {
                        m.platform
                            .as_ref()
                            .map(|p| p.label())
                            .unwrap_or_else(|| "unknown".into())
                    })
                    .collect();
                return Err(Error::NoPlatform {
                    name: name.into(),
                    have: if have.is_empty() {
                        "none".to_string()
                    } else {
                        have.join(", ")
                    },
                });
            };
            desc = found.desc.clone();
        }
        Err(Error::IndexTooDeep { name: name.into() })
    }

    /// Finds an image by name (or `sha256:` manifest digest prefix).
    pub fn resolve(&self, name: &str) -> Result<Image, Error> {
        let index = self.read_index()?;
        let found = index
            .manifests
            .iter()
            .find(|m| m.annotations.get(oci::REF_NAME).map(String::as_str) == Some(name))
            .or_else(|| {
                let prefix = name.strip_prefix("sha256:")?;
                (prefix.len() >= 6).then(|| {
                    index
                        .manifests
                        .iter()
                        .find(|m| m.digest.trim_start_matches("sha256:").starts_with(prefix))
                })?
            });
        match found {
            Some(desc) => self.load(name, desc),
            None => Err(Error::NotFound {
                name: name.into(),
                store: self.root.clone(),
                hint: format!("list images with `minnow image ls`, or import one with `minnow image import DIR --name {name}`"),
            }),
        }
    }

    /// Like [`Store::resolve`], but builds the default `busybox` image on first use.
    pub fn resolve_or_default(&self, name: &str) -> Result<Image, Error> {
        if name == DEFAULT_IMAGE {
            let _lock = self.lock()?;
            if self.resolve(name).is_err() {
                log::info!(
                    "building the default image {DEFAULT_IMAGE} from the host's busybox-static"
                );
                self.import_default_locked()?;
            }
        }
        self.resolve(name)
    }

    /// `minnow image ls`.
    pub fn list(&self) -> Result<Vec<ImageSummary>, Error> {
        let index = self.read_index()?;
        let mut out = Vec::new();
        for desc in &index.manifests {
            let name = desc
                .annotations
                .get(oci::REF_NAME)
                .cloned()
                .unwrap_or_else(|| "<none>".into());
            let digest = Digest::parse(&desc.digest)?;
            let (size, created) = match self.load(&name, desc) {
                Ok(img) => (
                    img.manifest.config.size
                        + img.manifest.layers.iter().map(|l| l.size).sum::<u64>(),
                    img.config.created.unwrap_or_default(),
                ),
                Err(_) => (0, "(corrupt)".into()),
            };
            out.push(ImageSummary {
                name,
                digest,
                size,
                created,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

fn bad_json(what: &'static str, name: &str, source: serde_json::Error) -> Error {
    Error::Json {
        what,
        name: name.into(),
        source,
    }
}

pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    fs::write(&tmp, data)
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::io("cannot write", path, e)
        })
}
