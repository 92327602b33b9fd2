//! Removing images and collecting what no image or container refers to.

use std::collections::BTreeSet;
use std::fs;

use crate::digest::Digest;
use crate::oci::{self, Descriptor, Manifest};
use crate::{Error, Store, MAX_INDEX_DEPTH};

impl Store {
    /// `minnow image rm NAME`: drops the name, then garbage-collects. Returns blobs freed.
    pub fn remove(&self, name: &str) -> Result<usize, Error> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let before = index.manifests.len();
        index
            .manifests
            .retain(|m| m.annotations.get(oci::REF_NAME).map(String::as_str) != Some(name));
        if index.manifests.len() == before {
            return Err(Error::NotFound {
                name: name.into(),
                store: self.root().into(),
                hint: "see `minnow image ls`".into(),
            });
        }
        self.write_index(&index)?;
        self.gc_locked()
    }

    /// Removes blobs and extracted layers that no image and no container refers to.
    /// The caller holds the lock.
    pub(crate) fn gc_locked(&self) -> Result<usize, Error> {
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
        if let Ok(blobs) = fs::read_dir(self.root().join("blobs/sha256")) {
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
                    && !minnow_host::pid_alive(
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
        // Verified blobs of pulls that never named them (ingest.rs) wait in incoming/
        // for the next pull; after a day they are collected too.
        if let Ok(waiting) = fs::read_dir(self.root().join("incoming/sha256")) {
            let day = std::time::Duration::from_secs(24 * 3600);
            for b in waiting.flatten() {
                let old = b
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > day);
                let named = self.root().join("blobs/sha256").join(b.file_name());
                if (old || named.is_file()) && fs::remove_file(b.path()).is_ok() {
                    freed += 1;
                }
            }
        }
        Ok(freed)
    }

    /// Adds `desc`'s blob and every blob it refers to (through nested image indexes, all
    /// platforms) to `keep`. A manifest that cannot be read keeps nothing else alive; log it.
    pub(crate) fn keep_referenced(
        &self,
        desc: &Descriptor,
        keep: &mut BTreeSet<String>,
        depth: usize,
    ) -> Result<(), Error> {
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
}
