//! Making images: from a directory or tar (`image import`), the busybox default, and one
//! more layer on a base (`image build`).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use crate::busybox::make_busybox_rootfs;
use crate::digest::{Digest, HashingWriter};
use crate::layer::{append_tree, ExtractError, UnpackError};
use crate::oci::{self, Descriptor, History, ImageConfig, Manifest, RootFs, RunConfig};
use crate::{
    check_name, now_rfc3339, Error, Image, Store, DEFAULT_IMAGE, PLATFORM_ARCH, PLATFORM_OS,
};

impl Store {
    /// Writes config and manifest for `layers` and names the result `name`.
    pub(crate) fn commit_image(
        &self,
        name: &str,
        layers: Vec<(Descriptor, Digest)>,
        run: RunConfig,
        mut history: Vec<History>,
        created_by: &str,
        base: Option<&ImageConfig>,
    ) -> Result<Image, Error> {
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
    pub(crate) fn layer_from_dir(&self, dir: &Path) -> Result<(Descriptor, Digest), Error> {
        if !dir.is_dir() {
            return Err(Error::NotADirectory(dir.into()));
        }
        let tmp = self.tmp_path("layer");
        let file = File::create(&tmp).map_err(|e| Error::io("cannot create", &tmp, e))?;
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
            Error::io("cannot make a layer from", dir, e)
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

    /// Stores a tar (or gzip'd tar) root filesystem as an uncompressed layer blob and
    /// extracts it, so that a tar that is not one, or whose entries minnow refuses, is
    /// refused here (one error line, nothing kept) and not at the first run.
    pub(crate) fn layer_from_tar(&self, path: &Path) -> Result<(Descriptor, Digest), Error> {
        let shown = crate::printable(&path.display().to_string());
        let mut f = File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
        let mut magic = [0u8; 2];
        let gz = f.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
        drop(f);
        let f = BufReader::new(File::open(path).map_err(|e| Error::io("cannot open", path, e))?);
        let (d, n) = if gz {
            self.put_blob(flate2::read::GzDecoder::new(f))
        } else {
            self.put_blob(f)
        }
        .map_err(|e| Error::Import {
            path: shown.clone(),
            message: crate::printable(&e.to_string()),
            source: Box::new(e),
        })?;
        let desc = Descriptor {
            media_type: oci::MEDIA_LAYER.into(),
            digest: d.to_string(),
            size: n,
            annotations: BTreeMap::new(),
        };
        let not_tar = |why: String| Error::NotATar {
            path: shown.clone(),
            why,
        };
        let err = match self.extract_layer(&desc) {
            Ok((_, Some(s))) if s.entries == 0 => not_tar("no entries".into()),
            Ok(_) => return Ok((desc, d)),
            Err(ExtractError::Unpack {
                source: UnpackError::Tar { source },
                ..
            }) => not_tar(crate::tar_message(&source)),
            Err(e) => Error::Import {
                path: shown.clone(),
                message: e.to_string(),
                source: Box::new(e.into()),
            },
        };
        let _ = self.gc_locked();
        Err(err)
    }

    /// `minnow image import SRC --name NAME`: a one-layer image from a directory or tar.
    pub fn import(&self, src: &Path, name: &str) -> Result<Image, Error> {
        check_name("image", name)?;
        let meta = fs::metadata(src).map_err(|source| Error::ImportSource {
            path: crate::printable(&src.display().to_string()),
            source,
        })?;
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
    pub fn import_default(&self) -> Result<Image, Error> {
        let _lock = self.lock()?;
        self.import_default_locked()
    }

    pub(crate) fn import_default_locked(&self) -> Result<Image, Error> {
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
    pub fn build(&self, from: &str, add: &Path, tag: &str) -> Result<Image, Error> {
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
            return Err(Error::DiffIds {
                name: from.into(),
                layers: base.manifest.layers.len(),
                diff_ids: base.config.rootfs.diff_ids.len(),
            });
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
}
