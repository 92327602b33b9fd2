//! minnow's image store: OCI image layout on disk, content-addressed layer blobs, and a
//! cache of extracted layers used as overlayfs lower directories. See docs/containers.md.
//!
//! ```text
//! STORE/oci-layout                     {"imageLayoutVersion": "1.0.0"}
//! STORE/index.json                     named manifests (org.opencontainers.image.ref.name)
//! STORE/blobs/sha256/<hex>             manifests, configs, uncompressed tar layers
//! STORE/layers/<hex>/rootfs            extracted layer (read-only overlay lower dir)
//! STORE/containers/<id>/               one container: state.json, upper/, work/, rootfs/
//! ```

pub mod cli;
pub mod digest;
pub mod disk;
pub mod oci;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};

use digest::{Digest, HashingReader, HashingWriter};
use oci::{Descriptor, History, ImageConfig, Index, Manifest, RootFs, RunConfig};

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
pub fn check_name(kind: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid {kind} name {name:?}; use letters, digits and _ . : - (starting with a letter or digit)"
        ))
    }
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

/// An open image store.
pub struct Store {
    root: PathBuf,
}

fn io_err(what: &str, path: &Path, e: impl std::fmt::Display) -> String {
    format!("{what} {}: {e}", path.display())
}

impl Store {
    /// Opens the store at `root`, creating the layout if it is not there yet.
    pub fn open(root: &Path) -> Result<Store, String> {
        let store = Store {
            root: root.to_path_buf(),
        };
        for dir in [
            store.root.join("blobs/sha256"),
            store.layers_dir(),
            store.containers_dir(),
            store.tmp_dir(),
        ] {
            fs::create_dir_all(&dir).map_err(|e| {
                format!(
                    "cannot create image store directory {}: {e}; run as root or choose a writable store with --store DIR (or MINNOW_STORE)",
                    dir.display()
                )
            })?;
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

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Takes the store's exclusive lock (held until the returned guard drops).
    pub fn lock(&self) -> Result<Flock<File>, String> {
        let path = self.root.join(".lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io_err("cannot open lock file", &path, e))?;
        Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| io_err("cannot lock", &path, e))
    }

    fn read_index(&self) -> Result<Index, String> {
        let path = self.root.join("index.json");
        let text = fs::read(&path).map_err(|e| io_err("cannot read", &path, e))?;
        serde_json::from_slice(&text).map_err(|e| io_err("corrupt", &path, e))
    }

    fn write_index(&self, index: &Index) -> Result<(), String> {
        let text = serde_json::to_vec_pretty(index).map_err(|e| e.to_string())?;
        write_atomic(&self.root.join("index.json"), &text)
    }

    /// Copies `src` into a new blob, hashing it on the way; returns its digest and size.
    fn put_blob(&self, mut src: impl Read) -> Result<(Digest, u64), String> {
        let tmp = self.tmp_path("blob");
        let file = File::create(&tmp).map_err(|e| io_err("cannot create", &tmp, e))?;
        let mut w = HashingWriter::new(BufWriter::new(file));
        let copied = io::copy(&mut src, &mut w).and_then(|_| w.flush());
        if let Err(e) = copied {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("cannot write blob", &tmp, e));
        }
        let (_, d, n) = w.finish();
        self.commit_blob(&tmp, &d)?;
        Ok((d, n))
    }

    fn put_json<T: serde::Serialize>(&self, v: &T) -> Result<(Digest, u64), String> {
        let bytes = serde_json::to_vec(v).map_err(|e| e.to_string())?;
        self.put_blob(&bytes[..])
    }

    fn commit_blob(&self, tmp: &Path, d: &Digest) -> Result<(), String> {
        let dst = self.blob_path(d);
        let _ = fs::set_permissions(tmp, fs::Permissions::from_mode(0o444));
        fs::rename(tmp, &dst).map_err(|e| {
            let _ = fs::remove_file(tmp);
            io_err("cannot store blob", &dst, e)
        })
    }

    fn tmp_path(&self, what: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.tmp_dir()
            .join(format!("{what}-{}-{n}", std::process::id()))
    }

    /// Reads a small blob (manifest, config) and verifies its digest and size.
    fn read_verified(&self, desc: &Descriptor) -> Result<Vec<u8>, String> {
        let d = Digest::parse(&desc.digest)?;
        let path = self.blob_path(&d);
        let data = fs::read(&path).map_err(|e| {
            format!(
                "blob {d} is missing from the store ({e}); remove the image and import it again"
            )
        })?;
        digest::verify(&d, &data).map_err(|e| {
            format!("{e}; the store is corrupt: remove the image and import it again")
        })?;
        if data.len() as u64 != desc.size {
            return Err(format!(
                "blob {d} has size {} but its descriptor says {}",
                data.len(),
                desc.size
            ));
        }
        Ok(data)
    }

    fn load(&self, name: &str, desc: &Descriptor) -> Result<Image, String> {
        let desc = self.platform_manifest(name, desc)?;
        let manifest: Manifest = serde_json::from_slice(&self.read_verified(&desc)?)
            .map_err(|e| format!("manifest of image {name} is not valid JSON: {e}"))?;
        let config: ImageConfig = serde_json::from_slice(&self.read_verified(&manifest.config)?)
            .map_err(|e| format!("config of image {name} is not valid JSON: {e}"))?;
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
    fn platform_manifest(&self, name: &str, desc: &Descriptor) -> Result<Descriptor, String> {
        let mut desc = desc.clone();
        for _ in 0..MAX_INDEX_DEPTH {
            if !oci::is_index(&desc.media_type) {
                return Ok(desc);
            }
            let index: oci::PlatformIndex = serde_json::from_slice(&self.read_verified(&desc)?)
                .map_err(|e| format!("image index of image {name} is not valid JSON: {e}"))?;
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
                return Err(format!(
                    "image {name} has no {PLATFORM_OS}/{PLATFORM_ARCH} manifest (it has: {}); copy the {PLATFORM_OS}/{PLATFORM_ARCH} image into the store",
                    if have.is_empty() { "none".to_string() } else { have.join(", ") }
                ));
            };
            desc = found.desc.clone();
        }
        Err(format!(
            "image {name} nests image indexes more than {MAX_INDEX_DEPTH} deep; copy a single-platform image into the store"
        ))
    }

    /// Finds an image by name (or `sha256:` manifest digest prefix).
    pub fn resolve(&self, name: &str) -> Result<Image, String> {
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
            None => Err(format!(
                "no image {name:?} in store {}; list images with `minnow image ls`, or import one with `minnow image import DIR --name {name}`",
                self.root.display()
            )),
        }
    }

    /// Like [`Store::resolve`], but builds the default `busybox` image on first use.
    pub fn resolve_or_default(&self, name: &str) -> Result<Image, String> {
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

    /// Writes config and manifest for `layers` and names the result `name`.
    fn commit_image(
        &self,
        name: &str,
        layers: Vec<(Descriptor, Digest)>,
        run: RunConfig,
        mut history: Vec<History>,
        created_by: &str,
        base: Option<&ImageConfig>,
    ) -> Result<Image, String> {
        check_name("image", name)?;
        let created = now_rfc3339();
        history.push(History {
            created: Some(created.clone()),
            created_by: Some(created_by.into()),
            comment: None,
        });
        let mut config = base.cloned().unwrap_or_default();
        config.created = Some(created.clone());
        config.architecture = PLATFORM_ARCH.into();
        config.os = PLATFORM_OS.into();
        config.config = run;
        config.rootfs = RootFs {
            kind: "layers".into(),
            diff_ids: layers.iter().map(|(_, d)| d.to_string()).collect(),
        };
        config.history = history;
        let (cd, cs) = self.put_json(&config)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(oci::MEDIA_MANIFEST.into()),
            config: Descriptor {
                media_type: oci::MEDIA_CONFIG.into(),
                digest: cd.to_string(),
                size: cs,
                annotations: BTreeMap::new(),
            },
            layers: layers.into_iter().map(|(l, _)| l).collect(),
            annotations: BTreeMap::new(),
        };
        let (md, ms) = self.put_json(&manifest)?;
        let mut annotations = BTreeMap::new();
        annotations.insert(oci::REF_NAME.to_string(), name.to_string());
        annotations.insert(oci::CREATED.to_string(), created);
        let desc = Descriptor {
            media_type: oci::MEDIA_MANIFEST.into(),
            digest: md.to_string(),
            size: ms,
            annotations,
        };
        let mut index = self.read_index()?;
        index
            .manifests
            .retain(|m| m.annotations.get(oci::REF_NAME).map(String::as_str) != Some(name));
        index.manifests.push(desc);
        self.write_index(&index)?;
        let _ = self.gc_locked();
        Ok(Image {
            name: name.into(),
            manifest_digest: md,
            manifest,
            config,
        })
    }

    /// Turns a directory into an uncompressed tar layer blob; returns (descriptor, diff id).
    fn layer_from_dir(&self, dir: &Path) -> Result<(Descriptor, Digest), String> {
        if !dir.is_dir() {
            return Err(format!("{} is not a directory", dir.display()));
        }
        let tmp = self.tmp_path("layer");
        let file = File::create(&tmp).map_err(|e| io_err("cannot create", &tmp, e))?;
        let written = (|| -> io::Result<(Digest, u64)> {
            let mut b = tar::Builder::new(HashingWriter::new(BufWriter::new(file)));
            b.follow_symlinks(false);
            b.mode(tar::HeaderMode::Complete);
            append_tree(&mut b, dir, Path::new(""))?;
            let mut w = b.into_inner()?;
            w.flush()?;
            let (_, d, n) = w.finish();
            Ok((d, n))
        })();
        let (d, n) = written.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err("cannot make a layer from", dir, e)
        })?;
        self.commit_blob(&tmp, &d)?;
        Ok((
            Descriptor {
                media_type: oci::MEDIA_LAYER.into(),
                digest: d.to_string(),
                size: n,
                annotations: BTreeMap::new(),
            },
            d,
        ))
    }

    /// Stores a tar (or gzip'd tar) root filesystem as an uncompressed layer blob.
    fn layer_from_tar(&self, path: &Path) -> Result<(Descriptor, Digest), String> {
        let mut f = File::open(path).map_err(|e| io_err("cannot open", path, e))?;
        let mut magic = [0u8; 2];
        let gz = f.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
        drop(f);
        let f = BufReader::new(File::open(path).map_err(|e| io_err("cannot open", path, e))?);
        let (d, n) = if gz {
            self.put_blob(flate2::read::GzDecoder::new(f))
        } else {
            self.put_blob(f)
        }
        .map_err(|e| format!("cannot import {}: {e}", path.display()))?;
        // Check that it really is a tar archive before naming it.
        let check = (|| -> io::Result<usize> {
            let mut ar = tar::Archive::new(BufReader::new(File::open(self.blob_path(&d))?));
            let mut count = 0;
            for e in ar.entries()? {
                e?;
                count += 1;
            }
            Ok(count)
        })();
        match check {
            Ok(c) if c > 0 => {}
            other => {
                let why = other
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "no entries".into());
                let _ = self.gc_locked();
                return Err(format!("{} is not a tar archive of a root filesystem ({why}); pass a directory or a .tar/.tar.gz", path.display()));
            }
        }
        Ok((
            Descriptor {
                media_type: oci::MEDIA_LAYER.into(),
                digest: d.to_string(),
                size: n,
                annotations: BTreeMap::new(),
            },
            d,
        ))
    }

    /// `minnow image import SRC --name NAME`: a one-layer image from a directory or tar.
    pub fn import(&self, src: &Path, name: &str) -> Result<Image, String> {
        check_name("image", name)?;
        let meta = fs::metadata(src).map_err(|e| io_err("cannot import", src, e))?;
        let _lock = self.lock()?;
        let layer = if meta.is_dir() {
            self.layer_from_dir(src)?
        } else {
            self.layer_from_tar(src)?
        };
        let run = RunConfig {
            env: Some(vec![oci::DEFAULT_PATH.into()]),
            cmd: Some(vec!["/bin/sh".into()]),
            working_dir: Some("/".into()),
            ..Default::default()
        };
        self.commit_image(
            name,
            vec![layer],
            run,
            Vec::new(),
            &format!("minnow image import {}", src.display()),
            None,
        )
    }

    /// Builds the default `busybox` image from the host's static busybox.
    pub fn import_default(&self) -> Result<Image, String> {
        let _lock = self.lock()?;
        self.import_default_locked()
    }

    fn import_default_locked(&self) -> Result<Image, String> {
        let tmp = self.tmp_path("busybox-rootfs");
        let result = make_busybox_rootfs(&tmp).and_then(|()| self.layer_from_dir(&tmp));
        let _ = fs::remove_dir_all(&tmp);
        let layer = result?;
        let run = RunConfig {
            env: Some(vec![oci::DEFAULT_PATH.into(), "HOME=/root".into()]),
            cmd: Some(vec!["/bin/sh".into()]),
            working_dir: Some("/".into()),
            ..Default::default()
        };
        self.commit_image(
            DEFAULT_IMAGE,
            vec![layer],
            run,
            Vec::new(),
            "minnow image import --default (busybox-static)",
            None,
        )
    }

    /// `minnow image build --from BASE --add DIR --tag NAME`: BASE's layers plus DIR's.
    pub fn build(&self, from: &str, add: &Path, tag: &str) -> Result<Image, String> {
        check_name("image", tag)?;
        let base = self.resolve_or_default(from)?;
        let _lock = self.lock()?;
        let (desc, diff) = self.layer_from_dir(add)?;
        let mut layers = Vec::new();
        for (l, diff_id) in base
            .manifest
            .layers
            .iter()
            .zip(base.config.rootfs.diff_ids.iter())
        {
            layers.push((l.clone(), Digest::parse(diff_id)?));
        }
        if layers.len() != base.manifest.layers.len() {
            return Err(format!(
                "image {from} has {} layers but {} diff_ids",
                base.manifest.layers.len(),
                base.config.rootfs.diff_ids.len()
            ));
        }
        layers.push((desc, diff));
        self.commit_image(
            tag,
            layers,
            base.config.config.clone(),
            base.config.history.clone(),
            &format!("minnow image build --from {from} --add {}", add.display()),
            Some(&base.config),
        )
    }

    /// `minnow image ls`.
    pub fn list(&self) -> Result<Vec<ImageSummary>, String> {
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

    /// `minnow image rm NAME`: drops the name, then garbage-collects. Returns blobs freed.
    pub fn remove(&self, name: &str) -> Result<usize, String> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let before = index.manifests.len();
        index
            .manifests
            .retain(|m| m.annotations.get(oci::REF_NAME).map(String::as_str) != Some(name));
        if index.manifests.len() == before {
            return Err(format!(
                "no image {name:?} in store {}; see `minnow image ls`",
                self.root.display()
            ));
        }
        self.write_index(&index)?;
        self.gc_locked()
    }

    /// Removes blobs and extracted layers that no image and no container refers to.
    /// The caller holds the lock.
    fn gc_locked(&self) -> Result<usize, String> {
        let index = self.read_index()?;
        let mut keep: BTreeSet<String> = BTreeSet::new();
        for desc in &index.manifests {
            self.keep_referenced(desc, &mut keep, 0)?;
        }
        // Layers under containers that still exist stay (they may be mounted).
        if let Ok(dirs) = fs::read_dir(self.containers_dir()) {
            for d in dirs.flatten() {
                let state = fs::read(d.path().join("state.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
                if let Some(layers) = state
                    .as_ref()
                    .and_then(|s| s.get("layers"))
                    .and_then(|l| l.as_array())
                {
                    for l in layers.iter().filter_map(|l| l.as_str()) {
                        keep.insert(l.trim_start_matches("sha256:").to_string());
                    }
                }
            }
        }
        let mut freed = 0;
        if let Ok(blobs) = fs::read_dir(self.root.join("blobs/sha256")) {
            for b in blobs.flatten() {
                if !keep.contains(&*b.file_name().to_string_lossy())
                    && fs::remove_file(b.path()).is_ok()
                {
                    freed += 1;
                }
            }
        }
        if let Ok(layers) = fs::read_dir(self.layers_dir()) {
            for l in layers.flatten() {
                let n = l.file_name().to_string_lossy().to_string();
                let stale_tmp = n.starts_with(".tmp-")
                    && !pid_alive(
                        n.rsplit('-')
                            .next()
                            .and_then(|p| p.parse().ok())
                            .unwrap_or(0),
                    );
                if stale_tmp || (!n.starts_with('.') && !keep.contains(&n)) {
                    let _ = fs::remove_dir_all(l.path());
                }
            }
        }
        Ok(freed)
    }

    /// Adds `desc`'s blob and every blob it refers to (through nested image indexes, all
    /// platforms) to `keep`. A manifest that cannot be read keeps nothing else alive; log it.
    fn keep_referenced(
        &self,
        desc: &Descriptor,
        keep: &mut BTreeSet<String>,
        depth: usize,
    ) -> Result<(), String> {
        keep.insert(desc.digest.trim_start_matches("sha256:").to_string());
        let blob = fs::read(self.blob_path(&Digest::parse(&desc.digest)?)).ok();
        if oci::is_index(&desc.media_type) {
            match blob.and_then(|b| serde_json::from_slice::<oci::PlatformIndex>(&b).ok()) {
                Some(index) if depth < MAX_INDEX_DEPTH => {
                    for m in &index.manifests {
                        self.keep_referenced(&m.desc, keep, depth + 1)?;
                    }
                }
                _ => log::warn!(
                    "image index {} is unreadable; its blobs may be collected",
                    desc.digest
                ),
            }
            return Ok(());
        }
        match blob.and_then(|b| serde_json::from_slice::<Manifest>(&b).ok()) {
            Some(m) => {
                keep.insert(m.config.digest.trim_start_matches("sha256:").to_string());
                for l in &m.layers {
                    keep.insert(l.digest.trim_start_matches("sha256:").to_string());
                }
            }
            None => log::warn!(
                "manifest {} is unreadable; its blobs may be collected",
                desc.digest
            ),
        }
        Ok(())
    }

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

    fn extract_layer(&self, desc: &Descriptor) -> Result<PathBuf, String> {
        let d = Digest::parse(&desc.digest)?;
        let rootfs = self.layer_rootfs(&d);
        if rootfs.is_dir() {
            return Ok(rootfs);
        }
        if desc.media_type != oci::MEDIA_LAYER
            && desc.media_type != oci::MEDIA_LAYER_GZIP
            && !desc.media_type.contains("docker.image.rootfs.diff.tar")
        {
            return Err(format!(
                "layer {d} has unsupported media type {}; minnow reads uncompressed and gzip layers: copy the image again with them (skopeo copy --dest-compress-format gzip ...)",
                desc.media_type
            ));
        }
        let blob = self.blob_path(&d);
        let file = File::open(&blob).map_err(|e| format!("layer blob {d} is missing from the store ({e}); remove the image and import it again"))?;
        let tmp = self
            .layers_dir()
            .join(format!(".tmp-{}-{}", d.hex(), std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let tmp_root = tmp.join("rootfs");
        fs::create_dir_all(&tmp_root).map_err(|e| io_err("cannot create", &tmp_root, e))?;
        let mut reader = HashingReader::new(BufReader::new(file));
        let unpacked = if desc.media_type.ends_with("gzip") {
            unpack_layer(flate2::read::GzDecoder::new(&mut reader), &tmp_root)
        } else {
            unpack_layer(&mut reader, &tmp_root)
        };
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

/// The image built from the host's busybox-static when first asked for.
pub const DEFAULT_IMAGE: &str = "busybox";

/// The platform minnow runs images for (what it writes into image configs, and what it
/// picks from multi-platform image indexes).
pub const PLATFORM_OS: &str = "linux";
pub const PLATFORM_ARCH: &str = "amd64";

/// How deep image indexes may nest under `index.json`.
const MAX_INDEX_DEPTH: usize = 4;

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    fs::write(&tmp, data)
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err("cannot write", path, e)
        })
}

fn pid_alive(pid: i32) -> bool {
    pid > 0 && Path::new(&format!("/proc/{pid}")).exists()
}

/// Appends `dir`'s contents (not `dir` itself) to `b`, sorted, names relative to the root.
fn append_tree<W: Write>(b: &mut tar::Builder<W>, dir: &Path, rel: &Path) -> io::Result<()> {
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

/// Returns whether the ELF file at `path` is statically linked (has no PT_INTERP).
fn is_static_elf(path: &Path) -> io::Result<bool> {
    let data = fs::read(path)?;
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 {
        return Ok(false);
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(data[0x20..0x28].try_into().unwrap_or_default()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if o + 4 > data.len() {
            return Ok(false);
        }
        if u32::from_le_bytes(data[o..o + 4].try_into().unwrap_or_default()) == 3 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Builds the default busybox root filesystem in `root` from the host's busybox-static.
fn make_busybox_rootfs(root: &Path) -> Result<(), String> {
    let host = ["/bin/busybox", "/usr/bin/busybox"].iter().map(Path::new).find(|p| is_static_elf(p).unwrap_or(false)).ok_or(
        "no statically linked busybox on this host; install it with `apt-get install busybox-static`",
    )?;
    let e = |p: &Path, err: io::Error| io_err("cannot create", p, err);
    for (dir, mode) in [
        ("bin", 0o755),
        ("sbin", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("etc", 0o755),
        ("root", 0o700),
        ("tmp", 0o1777),
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("var/tmp", 0o1777),
        ("home", 0o755),
    ] {
        let p = root.join(dir);
        fs::create_dir_all(&p).map_err(|err| e(&p, err))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(|err| e(&p, err))?;
    }
    let bb = root.join("bin/busybox");
    fs::copy(host, &bb).map_err(|err| e(&bb, err))?;
    let list = std::process::Command::new(host)
        .arg("--list-full")
        .output()
        .map_err(|err| format!("cannot run {} --list-full: {err}", host.display()))?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = root.join(applet.trim_start_matches('/'));
        if applet.is_empty() || link == bb || link.exists() {
            continue;
        }
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent).map_err(|err| e(parent, err))?;
        }
        std::os::unix::fs::symlink("/bin/busybox", &link).map_err(|err| e(&link, err))?;
    }
    for (file, text) in [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n"),
        ("etc/hostname", "minnow\n"),
    ] {
        let p = root.join(file);
        fs::write(&p, text).map_err(|err| e(&p, err))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("image", "busybox").is_ok());
        assert!(check_name("image", "my-img_1.0:v2").is_ok());
        assert!(check_name("image", "").is_err());
        assert!(check_name("image", "../x").is_err());
        assert!(check_name("image", "a b").is_err());
    }

    /// A multi-platform image (an image index under `index.json`, as `skopeo copy --all`
    /// writes) resolves to its linux/amd64 manifest, and garbage collection keeps the
    /// blobs of every platform.
    #[test]
    fn nested_image_index() {
        let store_dir = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join("hello"), "hi\n").unwrap();
        let store = Store::open(store_dir.path()).unwrap();
        let img = store.import(src.path(), "t").unwrap();
        let manifest = store
            .read_index()
            .unwrap()
            .manifests
            .into_iter()
            .next()
            .unwrap();
        let entry = |arch: &str| {
            serde_json::json!({
                "mediaType": oci::MEDIA_MANIFEST,
                "digest": manifest.digest,
                "size": manifest.size,
                "platform": {"architecture": arch, "os": "linux"},
            })
        };
        let name_index = |name: &str, entries: Vec<serde_json::Value>| {
            let (d, n) = store
                .put_json(&serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": oci::MEDIA_INDEX,
                    "manifests": entries,
                }))
                .unwrap();
            let mut index = store.read_index().unwrap();
            index.manifests.push(Descriptor {
                media_type: oci::MEDIA_INDEX.into(),
                digest: d.to_string(),
                size: n,
                annotations: [(oci::REF_NAME.to_string(), name.to_string())].into(),
            });
            store.write_index(&index).unwrap();
        };
        name_index("multi", vec![entry("arm64"), entry("amd64")]);
        name_index("armonly", vec![entry("arm64")]);
        let multi = store.resolve("multi").unwrap();
        assert_eq!(multi.manifest_digest, img.manifest_digest);
        let err = store.resolve("armonly").unwrap_err();
        assert!(
            err.contains("no linux/amd64 manifest") && err.contains("linux/arm64"),
            "{err}"
        );
        // Dropping the directly named image keeps what the index refers to.
        store.remove("t").unwrap();
        let dirs = store.layer_dirs(&store.resolve("multi").unwrap()).unwrap();
        assert_eq!(fs::read_to_string(dirs[0].join("hello")).unwrap(), "hi\n");
    }

    #[test]
    fn import_extract_and_detect_corruption() {
        let store_dir = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        fs::create_dir(src.path().join("etc")).unwrap();
        fs::write(src.path().join("etc/hello"), "hi\n").unwrap();
        std::os::unix::fs::symlink("hello", src.path().join("etc/link")).unwrap();
        let store = Store::open(store_dir.path()).unwrap();
        let img = store.import(src.path(), "t").unwrap();
        assert_eq!(
            store.resolve("t").unwrap().manifest_digest,
            img.manifest_digest
        );
        assert!(store
            .resolve("nope")
            .unwrap_err()
            .contains("minnow image ls"));
        // Corrupt the layer blob: extraction must refuse it.
        let layer = Digest::parse(&img.manifest.layers[0].digest).unwrap();
        let blob = store.blob_path(&layer);
        let mut data = fs::read(&blob).unwrap();
        let i = data.iter().position(|&b| b == b'h').unwrap();
        data[i] = b'H';
        fs::set_permissions(&blob, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&blob, &data).unwrap();
        let err = store.layer_dirs(&img).unwrap_err();
        assert!(err.contains("digest mismatch"), "{err}");
        assert!(!store.layer_rootfs(&layer).exists());
        // Re-import: same content, same digest, extraction works.
        fs::write(&blob, b"").unwrap();
        fs::remove_file(&blob).unwrap();
        let img = store.import(src.path(), "t").unwrap();
        let dirs = store.layer_dirs(&img).unwrap();
        assert_eq!(
            fs::read_to_string(dirs[0].join("etc/hello")).unwrap(),
            "hi\n"
        );
        assert_eq!(
            fs::read_link(dirs[0].join("etc/link")).unwrap(),
            Path::new("hello")
        );
        // rm collects everything.
        store.remove("t").unwrap();
        assert_eq!(
            fs::read_dir(store_dir.path().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(fs::read_dir(store.layers_dir()).unwrap().count(), 0);
    }
}
