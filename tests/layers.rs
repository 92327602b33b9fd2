//! Hostile layers (issue 10): tars built here with raw headers (absolute and `..` names,
//! symlinks out of the root with whiteouts, opaque markers, files, hard links and device
//! nodes beneath them, hard links out, `/proc/self/root`), each taken through
//! `minnow image import`, `minnow container run` and the `minnow run --image` disk
//! build. The layer is also put into the store directly, on top of busybox, as another
//! tool (skopeo) would write it, so that `container run` and the disk build extract it
//! even when `import` refuses it. Afterwards a canary directory outside the store must
//! be unchanged (`escape_check::Snapshot`: content, type, mode, owner, links, times,
//! xattrs; nothing removed or added), every failing step must be one error line, and
//! nothing may be left in the store's scratch directories. Needs root.
//!
//! `MINNOW_TEST_BIN=/path/to/minnow` runs another minnow binary (used to show that these
//! tests fail on the code before the fix).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use minnow_image::layer::escape_check::{make_canary, Snapshot};
use sha2::{Digest as _, Sha256};
use tar::EntryType;

fn minnow_path() -> PathBuf {
    std::env::var_os("MINNOW_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_minnow")))
}

fn minnow(store: &Path, group: &str, args: &[&str]) -> Command {
    let mut c = Command::new("timeout");
    c.args(["-s", "KILL", "120"]).arg(minnow_path()).arg(group);
    c.arg("--store").arg(store).args(args).stdin(Stdio::null());
    c
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        .unwrap_or(false)
}

/// One tar entry, written with raw header fields (so names a tar tool refuses work).
#[derive(Clone)]
struct E {
    name: Vec<u8>,
    kind: EntryType,
    link: Vec<u8>,
    data: Vec<u8>,
    mode: u32,
    owner: (u64, u64),
    dev: (u32, u32),
    pax: Vec<(String, Vec<u8>)>,
    /// A size in the header other than the data's (a size bomb).
    size: Option<u64>,
}

impl E {
    fn new(name: impl AsRef<[u8]>, kind: EntryType) -> E {
        E {
            name: name.as_ref().to_vec(),
            kind,
            link: Vec::new(),
            data: Vec::new(),
            mode: if kind == EntryType::Directory {
                0o755
            } else {
                0o644
            },
            owner: (0, 0),
            dev: (0, 0),
            pax: Vec::new(),
            size: None,
        }
    }
    fn file(name: impl AsRef<[u8]>, data: &str) -> E {
        let mut e = E::new(name, EntryType::Regular);
        e.data = data.as_bytes().to_vec();
        e
    }
    fn dir(name: impl AsRef<[u8]>) -> E {
        E::new(name, EntryType::Directory)
    }
    fn symlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> E {
        let mut e = E::new(name, EntryType::Symlink);
        e.link = target.as_ref().to_vec();
        e.mode = 0o777;
        e
    }
    fn hardlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> E {
        let mut e = E::new(name, EntryType::Link);
        e.link = target.as_ref().to_vec();
        e
    }
    fn node(name: impl AsRef<[u8]>, kind: EntryType, major: u32, minor: u32) -> E {
        let mut e = E::new(name, kind);
        e.dev = (major, minor);
        e
    }
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + body.to_string().len();
    if len.to_string().len() != body.to_string().len() {
        len += 1;
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

fn tar_of(entries: &[E]) -> Vec<u8> {
    fn put(out: &mut Vec<u8>, h: &tar::Header, data: &[u8]) {
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    let mut out = Vec::new();
    for e in entries {
        if !e.pax.is_empty() {
            let data: Vec<u8> = e.pax.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
            let mut h = tar::Header::new_ustar();
            h.as_old_mut().name[..9].copy_from_slice(b"PaxHeader");
            h.set_entry_type(EntryType::XHeader);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            h.set_cksum();
            put(&mut out, &h, &data);
        }
        let mut h = tar::Header::new_gnu();
        assert!(e.name.len() <= 100 && e.link.len() <= 100, "name too long");
        h.as_old_mut().name[..e.name.len()].copy_from_slice(&e.name);
        h.as_old_mut().linkname[..e.link.len()].copy_from_slice(&e.link);
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_uid(e.owner.0);
        h.set_gid(e.owner.1);
        h.set_mtime(1_600_000_000);
        // A size bomb's header claims data that is not there.
        h.set_size(e.size.unwrap_or(e.data.len() as u64));
        if matches!(e.kind, EntryType::Char | EntryType::Block) {
            h.set_device_major(e.dev.0).unwrap();
            h.set_device_minor(e.dev.1).unwrap();
        }
        h.set_cksum();
        put(&mut out, &h, &e.data);
    }
    out.extend_from_slice(&[0; 1024]);
    out
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

fn put_blob(store: &Path, data: &[u8]) -> (String, u64) {
    let hex = hex::encode(Sha256::digest(data));
    let p = store.join("blobs/sha256").join(&hex);
    if !p.exists() {
        fs::write(p, data).unwrap();
    }
    (format!("sha256:{hex}"), data.len() as u64)
}

fn blob(store: &Path, digest: &serde_json::Value) -> serde_json::Value {
    let hex = digest.as_str().unwrap().trim_start_matches("sha256:");
    json(&store.join("blobs/sha256").join(hex))
}

/// Names an image of busybox's layer plus `layers` in the store, as another tool writing
/// the OCI layout would (no minnow checks on the way).
fn inject(store: &Path, name: &str, layers: &[Vec<u8>]) {
    let index_path = store.join("index.json");
    let mut index = json(&index_path);
    let bb = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "busybox")
        .unwrap()
        .clone();
    let mut manifest = blob(store, &bb["digest"]);
    let mut config = blob(store, &manifest["config"]["digest"]);
    for layer in layers {
        let (ld, ls) = put_blob(store, layer);
        config["rootfs"]["diff_ids"]
            .as_array_mut()
            .unwrap()
            .push(ld.clone().into());
        manifest["layers"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": ls,
            }));
    }
    let (cd, cs) = put_blob(store, &serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = cd.into();
    manifest["config"]["size"] = cs.into();
    let (md, ms) = put_blob(store, &serde_json::to_vec(&manifest).unwrap());
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
            "annotations": {"org.opencontainers.image.ref.name": name},
        }));
    fs::write(index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// A step's result: `ok`, or its one error line (checked to be one line, no panic).
fn outcome(what: &str, out: std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    if out.status.success() {
        return "ok".into();
    }
    assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("minnow: error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{what}: expected one error line: {stderr}");
    assert!(
        errors[0].chars().all(|c| !c.is_control()),
        "{what}: control characters in {:?}",
        errors[0]
    );
    errors[0].to_string()
}

/// Paths under `dir` whose names start with `prefix` (scratch left behind).
fn leftovers(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// What the three steps did with one hostile layer.
struct Report {
    import: String,
    run: String,
    disk: String,
    /// The disk was built (the run failed only at the kernel, /bin/true).
    disk_built: bool,
}

/// Takes a layer made by `entries(out, rel_out)` through import, container run and
/// the disk build. `out` is a directory outside the store (the canary's, absolute);
/// `rel_out` reaches it from anywhere with `..`.
fn hostile(case: &str, entries: impl Fn(&str, &str) -> Vec<E>) -> Report {
    hostile_stack(case, |out, rel| vec![entries(out, rel)])
}

/// Like [`hostile`] with several layers (bottom first): each is imported on its own,
/// and the image run and made into a disk has them all, on top of busybox.
fn hostile_stack(case: &str, stack: impl Fn(&str, &str) -> Vec<Vec<E>>) -> Report {
    assert!(
        is_root(),
        "the layer tests need root (container run, mknod)"
    );
    let canary = tempfile::tempdir().unwrap();
    make_canary(canary.path()).unwrap();
    let out = canary.path().join("dir");
    let out = out.to_str().unwrap();
    let rel_out = format!("{}{}", "../".repeat(16), &out[1..]);
    let store = tempfile::tempdir().unwrap();
    let s = store.path();
    let work = tempfile::tempdir().unwrap();
    let layers: Vec<Vec<u8>> = stack(out, &rel_out).iter().map(|l| tar_of(l)).collect();
    let before = Snapshot::take(canary.path(), &[]).unwrap();

    let base = minnow(s, "image", &["import", "--default"])
        .output()
        .unwrap();
    assert!(base.status.success(), "{base:?}");
    let mut imports = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let tar_path = work.path().join(format!("layer{i}.tar"));
        fs::write(&tar_path, layer).unwrap();
        let name = format!("hostile{i}");
        let cmd = ["import", tar_path.to_str().unwrap(), "--name", &name];
        imports.push(outcome(
            "import",
            minnow(s, "image", &cmd).output().unwrap(),
        ));
    }
    let import = imports.join(" | ");
    inject(s, "injected", &layers);
    let run = outcome(
        "container run",
        minnow(s, "container", &["run", "injected", "--", "true"])
            .output()
            .unwrap(),
    );
    let disk = outcome(
        "run --image",
        minnow(
            s,
            "run",
            &["--image", "injected", "--kernel", "/bin/true", "--", "true"],
        )
        .output()
        .unwrap(),
    );
    let disk_built = disk.contains("/bin/true is not a kernel");

    let after = Snapshot::take(canary.path(), &[]).unwrap();
    let changes = before.changes(&after);
    eprintln!(
        "layer case {case}:\n  import: {import}\n  container run: {run}\n  run --image: {disk}\n  canary changes: {changes:?}"
    );
    assert!(
        changes.is_empty(),
        "{case}: the layer reached outside the store: {changes:#?}"
    );
    // Nothing left behind: no extraction or disk staging, no container.
    for (dir, prefix) in [
        (s.join("layers"), ".tmp-"),
        (s.join("tmp"), ""),
        (s.join("containers"), ""),
    ] {
        let left = leftovers(&dir, prefix);
        assert!(left.is_empty(), "{case}: left behind: {left:?}");
    }
    // A layer that was extracted carries its marker (another binary may predate them).
    for layer in layers
        .iter()
        .filter(|_| std::env::var_os("MINNOW_TEST_BIN").is_none())
    {
        let hex = hex::encode(Sha256::digest(layer));
        let dir = s.join("layers").join(&hex);
        if dir.exists() {
            assert!(
                dir.join("complete").is_file(),
                "{case}: extracted without a marker"
            );
        }
    }
    if !disk.contains("not a kernel") {
        assert_ne!(disk, "ok", "{case}");
    }
    Report {
        import,
        run,
        disk,
        disk_built,
    }
}

/// The case from the issue: a symlink out of the root and a whiteout beneath it.
#[test]
fn symlink_out_then_whiteout_beneath() {
    let r = hostile("abs symlink + whiteout", |out, _| {
        vec![E::symlink("evil", out), E::file("evil/.wh.victim", "")]
    });
    // The whiteout's directory would be outside the root: refused with one line.
    assert!(r.import.contains("evil/.wh.victim"), "{}", r.import);
}

#[test]
fn relative_symlink_out_then_whiteout_beneath() {
    hostile("rel symlink + whiteout", |_, rel| {
        vec![E::symlink("evil", rel), E::file("evil/.wh.victim", "")]
    });
}

#[test]
fn symlink_out_then_opaque_marker_beneath() {
    hostile("symlink + opaque", |out, _| {
        vec![E::symlink("evil", out), E::file("evil/.wh..wh..opq", "")]
    });
}

#[test]
fn symlink_out_then_file_beneath() {
    hostile("symlink + file", |out, _| {
        vec![
            E::symlink("evil", out),
            E::file("evil/planted", "planted\n"),
        ]
    });
}

#[test]
fn symlink_out_then_hard_link_and_devices_beneath() {
    hostile("symlink + hard link/devices", |out, _| {
        vec![
            E::file("inside", "inside\n"),
            E::symlink("evil", out),
            E::hardlink("evil/hl", "inside"),
            E::node("evil/null", EntryType::Char, 1, 3),
            E::node("evil/wh", EntryType::Char, 0, 0),
            E::node("evil/fifo", EntryType::Fifo, 0, 0),
        ]
    });
}

/// A directory entry with the name of a symlink out: its mode, owner, times and xattrs
/// must land on a directory inside the root, not on the symlink's target.
#[test]
fn directory_entry_over_a_symlink_out() {
    let r = hostile("dir entry over symlink", |out, _| {
        let mut d = E::dir("evil");
        d.mode = 0o777;
        d.owner = (4242, 4242);
        d.pax = vec![("SCHILY.xattr.user.minnow".into(), b"1".to_vec())];
        let mut f = E::file("evil2", "x");
        f.mode = 0o4777;
        f.owner = (4242, 4242);
        vec![
            E::symlink("evil", out),
            d,
            E::symlink("evil2", format!("{out}/victim")),
            f,
        ]
    });
    assert_eq!(r.import, "ok");
}

#[test]
fn hard_links_out_of_the_root() {
    hostile("hard links out", |out, rel| {
        vec![
            E::hardlink("abs", format!("{out}/victim")),
            E::hardlink("rel", format!("{rel}/victim")),
        ]
    });
    hostile("hard link through a symlink out", |out, _| {
        vec![E::symlink("evil", out), E::hardlink("hl", "evil/victim")]
    });
}

#[test]
fn dotdot_names() {
    let r = hostile("dotdot file", |_, rel| {
        vec![E::file(format!("{rel}/dotdot"), "x")]
    });
    assert!(r.import.contains("`..`"), "{}", r.import);
    hostile("dotdot whiteout", |_, rel| {
        vec![E::file(format!("{rel}/.wh.victim"), "")]
    });
    hostile("whiteout of ..", |_, _| {
        vec![E::dir("a"), E::file("a/.wh...", "")]
    });
}

/// Absolute names are relative to the layer's root.
#[test]
fn absolute_names_stay_inside() {
    let r = hostile("absolute names", |out, _| {
        vec![
            E::file(format!("{out}/planted"), "x"),
            E::file(format!("{out}/.wh.victim"), ""),
            E::file(format!("{out}/sub/.wh..wh..opq"), ""),
        ]
    });
    assert_eq!(r.import, "ok");
    assert!(r.disk_built, "{}", r.disk);
}

/// Device nodes inside the root are the image's own (as /dev/console in real images).
#[test]
fn device_nodes_stay_inside() {
    let r = hostile("device nodes", |_, _| {
        vec![
            E::dir("dev"),
            E::node("dev/mem", EntryType::Char, 1, 1),
            E::node("dev/sda", EntryType::Block, 8, 0),
            E::node("fifo", EntryType::Fifo, 0, 0),
        ]
    });
    assert_eq!((r.import.as_str(), r.run.as_str()), ("ok", "ok"));
    assert!(r.disk_built, "{}", r.disk);
}

#[test]
fn proc_self_root_links() {
    hostile("symlink to /proc/self/root + whiteout", |out, _| {
        vec![
            E::symlink("p", "/proc/self/root"),
            E::file(format!("p{out}/.wh.victim"), ""),
            E::file(format!("p{out}/planted"), "x"),
        ]
    });
    hostile("hard link into /proc/self/root", |out, _| {
        vec![E::hardlink("hl", format!("/proc/self/root{out}/victim"))]
    });
}

/// A file entry with the name of a symlink out replaces the symlink.
#[test]
fn file_over_a_symlink_out() {
    let r = hostile("file over symlink", |out, _| {
        vec![
            E::symlink("evil", format!("{out}/victim")),
            E::file("evil", "overwritten\n"),
        ]
    });
    assert_eq!(r.import, "ok");
}

/// A header claiming 17 GiB (the data is not there): refused by the size limit.
#[test]
fn size_bomb_is_refused() {
    let r = hostile("size bomb", |_, _| {
        let mut e = E::file("big", "");
        e.size = Some(17 << 30);
        vec![e]
    });
    assert!(r.import.contains("bytes of files"), "{}", r.import);
}

/// An extraction without its marker (interrupted, or by an older minnow) is done again.
#[test]
fn unmarked_extraction_is_redone() {
    assert!(is_root());
    let store = tempfile::tempdir().unwrap();
    let s = store.path();
    assert!(minnow(s, "image", &["import", "--default"])
        .output()
        .unwrap()
        .status
        .success());
    let layer = tar_of(&[E::dir("etc"), E::file("etc/motd", "the real motd\n")]);
    inject(s, "motd", std::slice::from_ref(&layer));
    let hex = hex::encode(Sha256::digest(&layer));
    let dir = s.join("layers").join(&hex);
    // As if an extraction had stopped half-way: files there, no marker.
    fs::create_dir_all(dir.join("rootfs/etc")).unwrap();
    fs::write(dir.join("rootfs/etc/motd"), "half-extracted\n").unwrap();
    fs::write(dir.join("rootfs/etc/stray"), "x").unwrap();
    let out = minnow(
        s,
        "container",
        &["run", "motd", "--", "sh", "-c", "cat /etc/motd; ls /etc"],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.starts_with("the real motd\n"), "{stdout}");
    assert!(!stdout.contains("stray"), "{stdout}");
    assert!(dir.join("complete").is_file());
}

// Layers merged for a microVM disk (no overlayfs there): an upper layer's whiteout,
// opaque directory, directory or file where a lower layer has a symlink out must act on
// the merged root only (overlayfs shows the upper entry in place of the symlink).

fn over_lower_symlink(case: &str, target: &str, upper: Vec<E>) {
    let r = hostile_stack(case, |out, _| {
        vec![
            vec![E::symlink("evil", format!("{out}{target}"))],
            upper.clone(),
        ]
    });
    assert!(r.disk_built, "{}", r.disk);
}

#[test]
fn merge_whiteout_under_a_lower_symlink_out() {
    over_lower_symlink("merge: whiteout", "", vec![E::file("evil/.wh.victim", "")]);
}

#[test]
fn merge_opaque_dir_over_a_lower_symlink_out() {
    over_lower_symlink("merge: opaque", "", vec![E::file("evil/.wh..wh..opq", "")]);
}

#[test]
fn merge_directory_over_a_lower_symlink_out() {
    let upper = vec![E::dir("evil"), E::file("evil/planted", "planted\n")];
    over_lower_symlink("merge: directory", "", upper);
}

#[test]
fn merge_file_over_a_lower_symlink_out() {
    let upper = vec![E::file("evil", "overwritten\n")];
    over_lower_symlink("merge: file", "/victim", upper);
}

/// An image's own /.minnow (minnow's directory in a VM disk) that is a symlink out: the
/// disk build replaces it, and writes nothing through it.
#[test]
fn image_minnow_dir_symlink_out() {
    let r = hostile("/.minnow symlink out", |out, _| {
        vec![E::symlink(".minnow", out)]
    });
    assert!(r.disk_built, "{}", r.disk);
}
