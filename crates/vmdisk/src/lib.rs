//! VM root disks made from images (`minnow run --image`): an image's layers (or, with
//! `--container`, a minimal busybox root holding a store with the image and a `minnow`
//! binary) plus minnow's guest init, packed once with `mkfs.ext4 -d` and cached by the
//! image's manifest digest; each run boots a private copy.
//!
//! ```text
//! STORE/vm-disks/<manifest hex>-<plain|container>-<recipe>.ext4   cached, read-only
//! STORE/vm-disks/.lock                                            serialises builds
//! STORE/vm-disks/run-<pid>-<n>.ext4                               one run's copy
//! ```
//!
//! Inside the disk, minnow's own files live under `/.minnow`: `init` (the kernel's
//! `init=`), `bin/` (static busybox and its applets), `env` (the image's environment and
//! working directory, sourced by the init for the workload), and with `--container`
//! `minnow` and `store/`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest as _, Sha256};

use minnow_image::digest::Digest;
use minnow_image::layer::merge::{self, MergeMode};
use minnow_image::layer::root::Root;
use minnow_image::oci::{self, Descriptor, Index};
use minnow_image::{Image, Store};
use minnow_vmm::boot::cmdline::{self, shell_quote, Workload};
use minnow_vmm::config::{DiskConfig, VmConfig};

mod error;
pub use error::Error;

/// minnow's guest init: the same script `resources/guest/mkrootfs.sh` installs.
pub const INIT: &str = include_str!("../../../resources/guest/init.sh");

/// Where the init goes in an image disk (passed as `init=`).
pub const INIT_PATH: &str = "/.minnow/init";

/// The store inside a `--container` disk.
pub const GUEST_STORE: &str = "/.minnow/store";

/// The `minnow` binary inside a `--container` disk.
pub const GUEST_MINNOW: &str = "/.minnow/minnow";

/// Bump when the disk layout changes, so old cached disks are not reused.
const FORMAT: &str = "minnow-vm-disk-1";

/// What the disk is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The image is the root filesystem; the workload runs directly under the init.
    Plain,
    /// A busybox root with the image in a store; the workload runs in a container.
    Container,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Plain => "plain",
            Kind::Container => "container",
        }
    }
}

/// The cached disk's file name: the manifest digest, the kind, and a hash of everything
/// else that goes into the disk (the init, the layout version, and for `--container` the
/// guest `minnow` binary's digest).
pub fn cache_key(manifest: &Digest, kind: Kind, extra: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(FORMAT.as_bytes());
    h.update([0]);
    h.update(INIT.as_bytes());
    h.update([0]);
    h.update(kind.as_str().as_bytes());
    h.update([0]);
    h.update(extra);
    let recipe = hex::encode(h.finalize());
    format!(
        "{}-{}-{}.ext4",
        manifest.hex(),
        kind.as_str(),
        &recipe[..12]
    )
}

/// The argv an image runs: its entrypoint, then `cmd` or else the image's Cmd.
pub fn image_argv(image: &Image, cmd: &[String]) -> Vec<String> {
    let cfg = &image.config.config;
    let mut argv = cfg.entrypoint.clone().unwrap_or_default();
    if cmd.is_empty() {
        argv.extend(cfg.cmd.clone().unwrap_or_default());
    } else {
        argv.extend(cmd.iter().cloned());
    }
    argv
}

/// `/.minnow/env`: exports of the image's Env and a `cd` to its WorkingDir.
pub fn env_script(image: &Image) -> String {
    let cfg = &image.config.config;
    let mut s = String::new();
    for kv in cfg.env.iter().flatten() {
        if kv.split_once('=').is_some_and(|(k, _)| {
            !k.is_empty()
                && !k.starts_with(|c: char| c.is_ascii_digit())
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        }) {
            s.push_str(&format!("export {}\n", shell_quote(kv)));
        }
    }
    if let Some(wd) = cfg.working_dir.as_deref().filter(|w| !w.is_empty()) {
        s.push_str(&format!("cd {}\n", shell_quote(wd)));
    }
    s
}

/// A run's private copy of a cached disk; removed on drop.
pub struct RunDisk {
    pub path: PathBuf,
}

impl Drop for RunDisk {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn sha256_file(path: &Path) -> Result<String, Error> {
    let mut f = File::open(path).map_err(|e| Error::io("cannot read", path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io("cannot read", path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn host_busybox() -> Result<PathBuf, Error> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| minnow_image::is_static_elf(p).unwrap_or(false))
        .ok_or(Error::NoBusybox)
}

fn run_tool(cmd: &mut Command, what: &'static str) -> Result<(), Error> {
    let out = cmd.output().map_err(|source| Error::Tool {
        what: what.into(),
        source,
    })?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(Error::ToolFailed {
            what,
            status: out.status,
            stderr: err.lines().last().unwrap_or("").trim().into(),
        })
    }
}

/// The disk for `image`, building it on first use. Returns its path and whether it was
/// built now.
pub fn cached_disk(store: &Store, image: &Image, kind: Kind) -> Result<(PathBuf, bool), Error> {
    let mkfs = minnow_host::which("mkfs.ext4").ok_or(Error::NoMkfs)?;
    let busybox = host_busybox()?;
    let minnow_bin = match kind {
        Kind::Plain => None,
        Kind::Container => Some(std::env::current_exe().map_err(Error::OwnBinary)?),
    };
    let extra = match &minnow_bin {
        Some(bin) => sha256_file(bin)?,
        None => String::new(),
    };
    let dir = store.root().join("vm-disks");
    fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create", &dir, e))?;
    let path = dir.join(cache_key(&image.manifest_digest, kind, extra.as_bytes()));
    if path.is_file() {
        return Ok((path, false));
    }
    let lock_path = dir.join(".lock");
    let lock_file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io("cannot open", &lock_path, e))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::io("cannot lock", &lock_path, e.into()))?;
    if path.is_file() {
        return Ok((path, false));
    }
    let staging =
        store
            .root()
            .join("tmp")
            .join(format!("vm-disk-{}-{}", std::process::id(), kind.as_str()));
    let _ = fs::remove_dir_all(&staging);
    let result = (|| {
        let root = staging.join("root");
        fs::create_dir_all(&root).map_err(|e| Error::io("cannot create", &root, e))?;
        match kind {
            Kind::Plain => {
                for layer in store.layer_dirs(image)? {
                    merge::merge_layer(&layer, &root, MergeMode::Apply).map_err(|source| {
                        Error::Merge {
                            what: "merge the image's layers into the VM disk",
                            source,
                        }
                    })?;
                }
                // /.minnow is minnow's: whatever the image has there goes.
                fresh_minnow_dir(&root)?;
                let env = root.join(".minnow/env");
                fs::write(&env, env_script(image))
                    .map_err(|e| Error::io("cannot write", &env, e))?;
            }
            Kind::Container => {
                fresh_minnow_dir(&root)?;
                let bin = minnow_bin.as_deref().unwrap_or(Path::new("minnow"));
                guest_store(store, image, &root)?;
                install_minnow(bin, &root)?;
            }
        }
        install_base(&busybox, &root)?;
        let content = tree_size(&root);
        // Room for the workload's writes (and, with --container, the overlay upper dir);
        // the file is sparse, so unused space costs nothing.
        let mib = content.div_ceil(1 << 20) * 2 + 128;
        let tmp = staging.join("disk.ext4");
        run_tool(
            Command::new(&mkfs)
                .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-m", "0"])
                .args(["-L", "minnow-root", "-E", "root_owner=0:0", "-d"])
                .arg(&root)
                .arg(&tmp)
                .arg(format!("{mib}M")),
            "mkfs.ext4",
        )?;
        let _ = fs::set_permissions(&tmp, fs::Permissions::from_mode(0o444));
        fs::rename(&tmp, &path).map_err(|e| Error::io("cannot store", &path, e))?;
        log::info!(
            "built VM disk for image {} ({} MiB ext4, {} MiB of files): {}",
            image.name,
            mib,
            content >> 20,
            path.display()
        );
        Ok(())
    })();
    let _ = fs::remove_dir_all(&staging);
    result.map(|()| (path, true))
}

/// A private copy of `cached` for one run (reflink where the filesystem can, else a
/// sparse copy), removed when the returned value drops. Also removes copies left by
/// runs that died.
pub fn private_copy(cached: &Path) -> Result<RunDisk, Error> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = cached.parent().unwrap_or(Path::new("."));
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let pid = name
                .strip_prefix("run-")
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("run-{}-{n}.ext4", std::process::id()));
    let disk = RunDisk { path };
    run_tool(
        Command::new("cp")
            .args(["--reflink=auto", "--sparse=always"])
            .arg(cached)
            .arg(&disk.path),
        "cp (private copy of the VM disk)",
    )?;
    fs::set_permissions(&disk.path, fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("cannot chmod", &disk.path, e))?;
    Ok(disk)
}

/// A VM config whose workload is resolved: the image disk first among the disks, the
/// kernel defaulted, and what the guest init is told. Holds the run's private disk copy
/// (removed when this drops, so keep it until the VM has stopped).
pub struct Prepared {
    pub config: VmConfig,
    pub workload: Workload,
    pub disk: Option<RunDisk>,
}

/// The kernel `minnow run --image` boots unless `--kernel` says otherwise.
pub fn default_kernel() -> PathBuf {
    std::env::var_os("MINNOW_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/minnow"))
        .join("kernel/current/bzImage")
}

/// Turns the config's workload (`command`, `image`, `container`) into disks and what the
/// guest init is told. Without an image the command goes to the init as it is. With one:
/// resolves it in the store, checks the command fits the kernel command line, gets (or
/// builds) the cached disk and makes this run's copy.
pub fn prepare(config: &VmConfig) -> Result<Prepared, Error> {
    let Some(name) = config.image.as_deref() else {
        config.validate()?;
        return Ok(Prepared {
            config: config.clone(),
            workload: Workload {
                argv: config.command.clone(),
                ..Workload::default()
            },
            disk: None,
        });
    };
    let mut config = config.clone();
    if config.kernel.as_os_str().is_empty() {
        let k = default_kernel();
        if !k.is_file() {
            return Err(Error::NoKernel(k));
        }
        config.kernel = k;
    }
    config.validate()?;
    let kind = if config.container {
        Kind::Container
    } else {
        Kind::Plain
    };
    let store = Store::open(&minnow_image::store_path(config.store.clone()))?;
    let image = store.resolve_or_default(name)?;
    let cmd = &config.command;
    let argv = match kind {
        Kind::Plain => image_argv(&image, cmd),
        Kind::Container => {
            let mut v: Vec<String> = [
                GUEST_MINNOW,
                "--log-level",
                "warn",
                "container",
                "run",
                "--store",
                GUEST_STORE,
            ]
            .map(String::from)
            .to_vec();
            v.push(guest_image_name(&image));
            if !cmd.is_empty() {
                v.push("--".into());
                v.extend(cmd.iter().cloned());
            }
            v
        }
    };
    if argv.is_empty() {
        return Err(Error::NoCommand(name.into()));
    }
    cmdline::check_command(&argv)?;
    let (cached, built) = cached_disk(&store, &image, kind)?;
    if !built {
        log::info!("using cached VM disk {}", cached.display());
    }
    let disk = private_copy(&cached)?;
    config.disks.insert(
        0,
        DiskConfig {
            path: disk.path.clone(),
            read_only: false,
        },
    );
    config.validate()?;
    Ok(Prepared {
        config,
        workload: Workload {
            init: Some(INIT_PATH.into()),
            quiet: true,
            argv,
            raw: false,
        },
        disk: Some(disk),
    })
}

/// Makes `root/.minnow` a new empty directory (removing what an image had there,
/// without following it).
fn fresh_minnow_dir(root: &Path) -> Result<(), Error> {
    let r = Root::open(root).map_err(|e| Error::io("cannot open", root, e))?;
    let name = std::ffi::OsStr::new(".minnow");
    minnow_image::layer::root::remove_at(r.fd(), name)
        .and_then(|()| minnow_image::layer::root::ensure_dir_at(r.fd(), name, 0o755))
        .map_err(|e| Error::io("cannot make", root.join(".minnow"), e))
}

fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            match fs::symlink_metadata(e.path()) {
                Ok(m) if m.is_dir() => total += 4096 + tree_size(&e.path()),
                Ok(m) => total += m.len().max(512),
                Err(_) => {}
            }
        }
    }
    total
}

/// Directories the init needs, busybox in /.minnow/bin, and the init itself.
fn install_base(busybox: &Path, root: &Path) -> Result<(), Error> {
    // Made where the image has nothing of that name; never through the image's symlinks.
    let r = Root::open(root).map_err(|e| Error::io("cannot open", root, e))?;
    let mk = |rel: &str, mode: u32| -> Result<(), Error> {
        let p = root.join(rel);
        let (parent, name) = match rel.split_once('/') {
            Some((dir, name)) => (
                minnow_image::layer::root::open_dir_at(r.fd(), std::ffi::OsStr::new(dir))
                    .map_err(|e| Error::io("cannot open", root.join(dir), e))?,
                name,
            ),
            None => (
                r.dir_beneath(&[])
                    .map_err(|e| Error::io("cannot open", root, e))?,
                rel,
            ),
        };
        minnow_image::layer::root::ensure_dir_at(
            std::os::fd::AsFd::as_fd(&parent),
            std::ffi::OsStr::new(name),
            mode,
        )
        .map_err(|e| Error::io("cannot create", &p, e))
    };
    for (d, m) in [
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("run", 0o755),
        ("root", 0o700),
        ("etc", 0o755),
        (".minnow/bin", 0o755),
    ] {
        mk(d, m)?;
    }
    let bin = root.join(".minnow/bin");
    let bb = bin.join("busybox");
    fs::copy(busybox, &bb).map_err(|e| Error::io("cannot copy busybox to", &bb, e))?;
    let list = Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|source| Error::Tool {
            what: format!("{} --list", busybox.display()),
            source,
        })?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet.is_empty() || applet.contains('/') || applet == "busybox" {
            continue;
        }
        let link = bin.join(applet);
        let _ = std::os::unix::fs::symlink("busybox", &link);
    }
    let init = root.join(INIT_PATH.trim_start_matches('/'));
    let text = match INIT.strip_prefix("#!/bin/sh\n") {
        Some(rest) => format!("#!/.minnow/bin/sh\n{rest}"),
        None => INIT.to_string(),
    };
    fs::write(&init, text).map_err(|e| Error::io("cannot write", &init, e))?;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io("cannot chmod", &init, e))?;
    Ok(())
}

/// A store at `root/.minnow/store` holding only `image`: the OCI layout, its manifest and
/// config blobs, and its extracted layers (layer blobs are left out: extracted layers are
/// what containers use).
fn guest_store(store: &Store, image: &Image, root: &Path) -> Result<(), Error> {
    let gs = root.join(GUEST_STORE.trim_start_matches('/'));
    let layers = store.layer_dirs(image)?;
    let blobs = gs.join("blobs/sha256");
    for d in [&blobs, &gs.join("layers")] {
        fs::create_dir_all(d).map_err(|e| Error::io("cannot create", d, e))?;
    }
    fs::write(gs.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .map_err(|e| Error::io("cannot write", &gs, e))?;
    let config = Digest::parse(&image.manifest.config.digest)?;
    for d in [&image.manifest_digest, &config] {
        let dst = blobs.join(d.hex());
        fs::copy(store.blob_path(d), &dst)
            .map_err(|e| Error::io("cannot copy blob to", &dst, e))?;
    }
    for (desc, dir) in image.manifest.layers.iter().zip(&layers) {
        let d = Digest::parse(&desc.digest)?;
        let dst = gs.join("layers").join(d.hex());
        let dst_root = dst.join("rootfs");
        fs::create_dir_all(&dst_root).map_err(|e| Error::io("cannot create", &dst_root, e))?;
        merge::merge_layer(dir, &dst_root, MergeMode::Verbatim).map_err(|source| Error::Merge {
            what: "copy a layer into the guest store",
            source,
        })?;
        // The guest's minnow uses an extracted layer only with its marker.
        let marker = dst.join("complete");
        fs::copy(store.layers_dir().join(d.hex()).join("complete"), &marker)
            .map_err(|e| Error::io("cannot copy layer marker to", &marker, e))?;
    }
    let size = fs::metadata(blobs.join(image.manifest_digest.hex()))
        .map_err(|e| Error::io("cannot stat", &blobs, e))?
        .len();
    let mut annotations = std::collections::BTreeMap::new();
    annotations.insert(oci::REF_NAME.to_string(), guest_image_name(image));
    let index = Index {
        manifests: vec![Descriptor {
            media_type: oci::MEDIA_MANIFEST.into(),
            digest: image.manifest_digest.to_string(),
            size,
            annotations,
        }],
        ..Default::default()
    };
    let text = serde_json::to_vec_pretty(&index).map_err(Error::Serialize)?;
    fs::write(gs.join("index.json"), text).map_err(|e| Error::io("cannot write", &gs, e))?;
    Ok(())
}

/// The image's name in the guest store (a digest reference becomes `image`).
pub fn guest_image_name(image: &Image) -> String {
    if minnow_image::check_name("image", &image.name).is_ok() {
        image.name.clone()
    } else {
        "image".into()
    }
}

/// Copies the minnow binary to /.minnow/minnow. A dynamically linked one also gets its
/// ELF interpreter (PT_INTERP) and the shared libraries this very process has mapped
/// (`/proc/self/maps`: it is the same binary), at their host paths; the container disk's
/// root is minnow's own, so nothing of the image is overwritten.
fn install_minnow(bin: &Path, root: &Path) -> Result<(), Error> {
    let dst = root.join(GUEST_MINNOW.trim_start_matches('/'));
    if let Some(p) = dst.parent() {
        fs::create_dir_all(p).map_err(|e| Error::io("cannot create", p, e))?;
    }
    fs::copy(bin, &dst).map_err(|e| Error::io("cannot copy minnow to", &dst, e))?;
    let data = fs::read(bin).map_err(|e| Error::io("cannot read", bin, e))?;
    let Some(interp) = elf_interp(&data) else {
        return Ok(());
    };
    let maps = fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut libs = mapped_libraries(&maps);
    libs.push(interp);
    for lib in libs {
        let to = root.join(lib.trim_start_matches('/'));
        if let Some(p) = to.parent() {
            fs::create_dir_all(p).map_err(|e| Error::io("cannot create", p, e))?;
        }
        // Follows symlinks: the guest gets the real file under this name.
        if let Err(source) = fs::copy(&lib, &to) {
            return Err(Error::Library { lib, source });
        }
        // The loader looks a library up by its soname (libseccomp.so.2), which on the
        // host is a symlink to the mapped file (libseccomp.so.2.5.4): the same links go in.
        for alias in soname_links(Path::new(&lib)) {
            let name = alias.file_name().unwrap_or_default();
            let link = to.with_file_name(name);
            let target = to.file_name().unwrap_or_default();
            if !link.exists() {
                std::os::unix::fs::symlink(target, &link)
                    .map_err(|e| Error::io("cannot link", &link, e))?;
            }
        }
    }
    Ok(())
}

/// The shorter names of `lib` in its directory that are symlinks to it on the host
/// (`libseccomp.so.2` for `libseccomp.so.2.5.4`): each version suffix dropped in turn.
fn soname_links(lib: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (lib.parent(), lib.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let Ok(real) = fs::canonicalize(lib) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut shorter = name;
    while let Some((head, _)) = shorter.rsplit_once('.') {
        if !head.contains(".so") {
            break;
        }
        let candidate = dir.join(head);
        let is_link = fs::symlink_metadata(&candidate).is_ok_and(|m| m.file_type().is_symlink());
        if is_link && fs::canonicalize(&candidate).is_ok_and(|c| c == real) {
            out.push(candidate);
        }
        shorter = head;
    }
    out
}

/// The ELF interpreter (PT_INTERP) of a 64-bit little-endian ELF, if it has one.
pub fn elf_interp(data: &[u8]) -> Option<String> {
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(data.get(o..o + 2)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(data.get(o..o + 8)?.try_into().ok()?));
    let phoff = u64_at(0x20)? as usize;
    let (phentsize, phnum) = (u16_at(0x36)? as usize, u16_at(0x38)? as usize);
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if data.get(o..o + 4)? == 3u32.to_le_bytes() {
            let (off, size) = (u64_at(o + 8)? as usize, u64_at(o + 32)? as usize);
            let raw = data.get(off..off + size)?;
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            return Some(String::from_utf8_lossy(&raw[..end]).into_owned());
        }
    }
    None
}

/// Shared libraries (`*.so`, `*.so.N`) in a `/proc/PID/maps` text, each once.
pub fn mapped_libraries(maps: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in maps.lines() {
        let Some(path) = line.split_whitespace().nth(5) else {
            continue;
        };
        let name = path.rsplit('/').next().unwrap_or("");
        if path.starts_with('/')
            && (name.ends_with(".so") || name.contains(".so."))
            && !out.iter().any(|p| p == path)
        {
            out.push(path.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soname_links_are_the_hosts_symlinks_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("libx.so.2.5.4");
        fs::write(&lib, b"elf").unwrap();
        std::os::unix::fs::symlink("libx.so.2.5.4", dir.path().join("libx.so.2")).unwrap();
        fs::write(dir.path().join("libx.so.2.5"), b"another file").unwrap();
        assert_eq!(soname_links(&lib), vec![dir.path().join("libx.so.2")]);
        assert!(soname_links(&dir.path().join("libc.so.6")).is_empty());
    }

    #[test]
    fn cache_key_depends_on_digest_kind_and_recipe() {
        let a = Digest::of(b"manifest a");
        let b = Digest::of(b"manifest b");
        let k = cache_key(&a, Kind::Plain, b"");
        assert_eq!(k, cache_key(&a, Kind::Plain, b""), "stable");
        assert!(k.starts_with(a.hex()) && k.ends_with(".ext4"));
        assert_ne!(k, cache_key(&b, Kind::Plain, b""));
        assert_ne!(k, cache_key(&a, Kind::Container, b""));
        assert_ne!(
            cache_key(&a, Kind::Container, b"bin1"),
            cache_key(&a, Kind::Container, b"bin2")
        );
        assert!(!k.contains('/'));
    }

    #[test]
    fn libraries_from_maps_and_interpreter() {
        let maps = "55d0-55d1 r--p 00000000 08:01 1 /work/minnow\n\
            7f00-7f01 r-xp 00000000 08:01 2 /usr/lib/x86_64-linux-gnu/libc.so.6\n\
            7f01-7f02 r--p 00001000 08:01 2 /usr/lib/x86_64-linux-gnu/libc.so.6\n\
            7f02-7f03 r-xp 00000000 08:01 3 /usr/lib/x86_64-linux-gnu/libgcc_s.so.1\n\
            7f03-7f04 rw-p 00000000 00:00 0 \n\
            7f04-7f05 r-xp 00000000 00:00 0 [vdso]\n";
        assert_eq!(
            mapped_libraries(maps),
            [
                "/usr/lib/x86_64-linux-gnu/libc.so.6",
                "/usr/lib/x86_64-linux-gnu/libgcc_s.so.1"
            ]
        );
        let me = fs::read(std::env::current_exe().unwrap()).unwrap();
        if let Some(interp) = elf_interp(&me) {
            assert!(interp.starts_with('/') && interp.contains("ld"), "{interp}");
        }
        assert_eq!(elf_interp(b"not an elf"), None);
    }

    #[test]
    fn env_script_quotes_values_and_skips_bad_names() {
        let mut img = Image {
            name: "t".into(),
            manifest_digest: Digest::of(b"m"),
            manifest: oci::Manifest {
                schema_version: 2,
                media_type: None,
                config: Descriptor {
                    media_type: oci::MEDIA_CONFIG.into(),
                    digest: Digest::of(b"c").to_string(),
                    size: 1,
                    annotations: Default::default(),
                },
                layers: Vec::new(),
                annotations: Default::default(),
            },
            config: Default::default(),
        };
        img.config.config.env = Some(vec![
            "PATH=/bin:/usr/bin".into(),
            "MSG=it's here".into(),
            "1BAD=x".into(),
            "noequals".into(),
        ]);
        img.config.config.working_dir = Some("/srv/my app".into());
        assert_eq!(
            env_script(&img),
            "export PATH=/bin:/usr/bin\nexport 'MSG=it'\\''s here'\ncd '/srv/my app'\n"
        );
    }

    #[test]
    fn init_is_the_shared_script() {
        assert!(INIT.starts_with("#!/bin/sh\n"));
        assert!(INIT.contains("minnow.cmd="));
        assert!(INIT.contains("devmem 0xd0000004 8"));
    }
}
