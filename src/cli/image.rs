//! `minnow image ...`: the image store's command line.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use minnow_image::oci;
use minnow_image::{printable, store_path, Store};

use super::registry::RegistryFlags;

#[derive(Args, Debug)]
pub struct ImageArgs {
    /// Image store directory [default: $MINNOW_STORE or /var/lib/minnow].
    #[arg(long, global = true)]
    pub store: Option<PathBuf>,
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Import a root filesystem (directory, .tar or .tar.gz) as a one-layer image.
    Import {
        /// Directory or tar archive holding the root filesystem.
        #[arg(required_unless_present = "default", conflicts_with = "default")]
        source: Option<PathBuf>,
        /// Image name [default: the source's file name].
        #[arg(long)]
        name: Option<String>,
        /// Build the default `busybox` image from the host's busybox-static.
        #[arg(long)]
        default: bool,
    },
    /// List images: name, digest, size, created.
    Ls,
    /// Remove an image and garbage-collect blobs nothing refers to any more.
    Rm { name: String },
    /// Make a new image: BASE's layers plus one layer made from DIR's contents.
    Build {
        #[arg(long)]
        from: String,
        #[arg(long)]
        add: PathBuf,
        #[arg(long)]
        tag: String,
    },
    /// Pull an image from a registry: REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:DIGEST.
    Pull {
        reference: String,
        /// The platform to pick from a multi-platform image: OS/ARCH[/VARIANT].
        #[arg(long, default_value = "linux/amd64")]
        platform: String,
        /// Name in the store [default: the reference as given].
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        flags: RegistryFlags,
    },
    /// Push an image to a registry as REGISTRY/REPO:TAG.
    Push {
        name: String,
        reference: String,
        #[command(flatten)]
        flags: RegistryFlags,
    },
    /// Give an image another name.
    Tag { name: String, new_name: String },
    /// Show an image's manifest, config, layers and sizes as JSON.
    Inspect { name: String },
}

fn default_name(src: &std::path::Path) -> Result<String, String> {
    let file = src
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
        .ok_or_else(|| {
            format!(
                "cannot name an image after {}; pass --name NAME",
                printable(&src.display().to_string())
            )
        })?;
    let name = [".tar.gz", ".tgz", ".tar"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))
        .unwrap_or(&file);
    Ok(name.to_string())
}

/// Formats a byte count as `ls` shows it.
pub fn human_size(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1}GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1}MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1}KiB", n as f64 / 1024.0),
        n => format!("{n}B"),
    }
}

/// Runs an `image` subcommand; returns the exit code.
pub fn run(args: ImageArgs, log_level: &str) -> Result<i32, String> {
    let store = Store::open(&store_path(args.store))?;
    match args.command {
        ImageCommand::Import { default: true, .. } => {
            let img = store.import_default()?;
            println!("{} {}", img.name, img.manifest_digest);
        }
        ImageCommand::Import { source, name, .. } => {
            let source = source.ok_or("missing SOURCE; pass a directory or tar, or --default")?;
            // Before naming: a missing source is the problem, not its name.
            if let Err(e) = std::fs::metadata(&source) {
                return Err(format!(
                    "cannot import {}: {e}; pass an existing directory, .tar or .tar.gz",
                    printable(&source.display().to_string())
                ));
            }
            let name = match name {
                Some(n) => n,
                None => default_name(&source)?,
            };
            let img = store.import(&source, &name)?;
            println!("{} {}", img.name, img.manifest_digest);
        }
        ImageCommand::Ls => {
            println!("{:<24} {:<14} {:>10}  CREATED", "NAME", "DIGEST", "SIZE");
            for i in store.list()? {
                println!(
                    "{:<24} {:<14} {:>10}  {}",
                    i.name,
                    i.digest.short(),
                    human_size(i.size),
                    i.created
                );
            }
        }
        ImageCommand::Rm { name } => {
            let freed = store.remove(&name)?;
            println!("removed {name} ({freed} blobs freed)");
        }
        ImageCommand::Build { from, add, tag } => {
            let img = store.build(&from, &add, &tag)?;
            println!("{} {}", img.name, img.manifest_digest);
        }
        ImageCommand::Pull {
            reference,
            platform,
            name,
            flags,
        } => {
            let mut a = vec!["pull".to_string(), reference, "--platform".into(), platform];
            if let Some(n) = name {
                a.extend(["--name".to_string(), n]);
            }
            a.extend(flags.to_args());
            return super::registry::exec(Some(store.root()), log_level, &a);
        }
        ImageCommand::Push {
            name,
            reference,
            flags,
        } => {
            let mut a = vec!["push".to_string(), name, reference];
            a.extend(flags.to_args());
            return super::registry::exec(Some(store.root()), log_level, &a);
        }
        ImageCommand::Tag { name, new_name } => {
            let desc = store.tag(&name, &new_name).map_err(|e| e.to_string())?;
            println!("{new_name} {}", desc.digest);
        }
        ImageCommand::Inspect { name } => {
            let v = inspect(&store, &name)?;
            let text = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
            println!("{text}");
        }
    }
    Ok(0)
}

/// `image inspect`: the index entry, the manifest and config as stored, and per layer its
/// digest, media type, size and diff id.
fn inspect(store: &Store, name: &str) -> Result<serde_json::Value, String> {
    use serde_json::{json, Value};
    let img = store.resolve(name)?;
    let manifest: Value = serde_json::from_slice(&store.manifest_bytes(&img)?)
        .map_err(|e| format!("manifest of {name} is not valid JSON: {e}"))?;
    let config = serde_json::to_value(&img.config).map_err(|e| e.to_string())?;
    let entry = store.entry(name).ok();
    let layers: Vec<Value> = img
        .manifest
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            json!({
                "digest": l.digest,
                "mediaType": l.media_type,
                "size": l.size,
                "diffId": img.config.rootfs.diff_ids.get(i),
            })
        })
        .collect();
    let size = img.manifest.config.size + img.manifest.layers.iter().map(|l| l.size).sum::<u64>();
    let ann = |k: &str| entry.as_ref().and_then(|e| e.annotations.get(k).cloned());
    Ok(json!({
        "name": name,
        "digest": img.manifest_digest.to_string(),
        "mediaType": img.manifest.media_type.clone().unwrap_or_else(|| oci::MEDIA_MANIFEST.into()),
        "source": ann(oci::SOURCE),
        "indexDigest": ann(oci::INDEX_DIGEST),
        "os": img.config.os,
        "architecture": img.config.architecture,
        "size": size,
        "layers": layers,
        "manifest": manifest,
        "config": config,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(2048), "2.0KiB");
        assert_eq!(human_size(3 << 20), "3.0MiB");
    }
}
