//! Layer extraction and merging where it needs root: whiteout device nodes, trusted.*
//! xattrs, ownership. `make unit` (no root) leaves these to `make system`.

use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt};
use std::path::Path;

use minnow_image::layer::merge::{merge_layer, MergeMode, OPAQUE_XATTR};
use minnow_image::layer::unpack::unpack;
use minnow_image::layer::{escape_check, Limits, UnpackError};
use rustix::fs::{FileType, Mode};
use tar::EntryType;

/// A tar from (name, type, data or link target, mode).
fn tar(entries: &[(&str, EntryType, &str, u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for &(name, kind, data, mode) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000_000);
        match kind {
            EntryType::Symlink | EntryType::Link => {
                h.set_size(0);
                b.append_link(&mut h, name, data).unwrap();
            }
            _ => {
                h.set_size(data.len() as u64);
                b.append_data(&mut h, name, data.as_bytes()).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn pax_then_file(records: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(EntryType::XHeader);
    h.set_size(records.len() as u64);
    b.append_data(&mut h, "PaxHeader", records).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(EntryType::Directory);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(0);
    b.append_data(&mut h, "d", &b""[..]).unwrap();
    b.into_inner().unwrap()
}

fn whiteout(p: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p,
        FileType::CharacterDevice,
        Mode::empty(),
        0,
    )
    .unwrap();
}

#[test]
fn whiteouts_become_overlayfs_whiteouts() {
    let t = tempfile::tempdir().unwrap();
    let data = tar(&[
        ("a", EntryType::Directory, "", 0o755),
        ("a/x", EntryType::Regular, "x", 0o644),
        (".wh.gone", EntryType::Regular, "", 0o644),
        ("a/.wh..wh..opq", EntryType::Regular, "", 0o644),
        ("a/.wh..wh.plnk", EntryType::Regular, "", 0o644),
    ]);
    let s = unpack(&data[..], t.path(), &Limits::default()).unwrap();
    assert_eq!(s.entries, 5);
    let gone = fs::symlink_metadata(t.path().join("gone")).unwrap();
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
    assert_eq!(
        xattr::get(t.path().join("a"), "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
    let names: Vec<_> = fs::read_dir(t.path().join("a"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["x"]);
}

#[test]
fn files_links_modes_and_times() {
    let t = tempfile::tempdir().unwrap();
    let data = tar(&[
        ("bin/tool", EntryType::Regular, "#!/bin/sh\n", 0o4755),
        ("bin/again", EntryType::Link, "bin/tool", 0o644),
        ("bin/sh", EntryType::Symlink, "/bin/busybox", 0o777),
        ("bin/tool2", EntryType::Regular, "old", 0o644),
        ("bin/tool2", EntryType::Regular, "new", 0o600),
    ]);
    unpack(&data[..], t.path(), &Limits::default()).unwrap();
    let tool = fs::metadata(t.path().join("bin/tool")).unwrap();
    assert_eq!(tool.mode() & 0o7777, 0o4755);
    assert_eq!(tool.mtime(), 1_000_000_000);
    let again = fs::metadata(t.path().join("bin/again")).unwrap();
    assert_eq!((again.ino(), tool.nlink()), (tool.ino(), 2));
    assert_eq!(
        fs::read_link(t.path().join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(fs::read(t.path().join("bin/tool2")).unwrap(), b"new");
    // The parent directory was made on the way.
    assert!(t.path().join("bin").is_dir());
}

#[test]
fn limits_stop_extraction_with_their_error() {
    let t = tempfile::tempdir().unwrap();
    let small = Limits {
        max_bytes: 1000,
        max_entries: 3,
        max_metadata: 4096,
    };
    let many: Vec<(String, EntryType, &str, u32)> = (0..5)
        .map(|i| (format!("f{i}"), EntryType::Regular, "x", 0o644))
        .collect();
    let many: Vec<_> = many
        .iter()
        .map(|(n, k, d, m)| (n.as_str(), *k, *d, *m))
        .collect();
    let e = unpack(&tar(&many)[..], t.path(), &small).unwrap_err();
    assert!(matches!(e, UnpackError::TooManyEntries { limit: 3 }), "{e}");
    let big = "y".repeat(1001);
    let e = unpack(
        &tar(&[("big", EntryType::Regular, &big, 0o644)])[..],
        t.path(),
        &small,
    )
    .unwrap_err();
    assert!(matches!(e, UnpackError::TooLarge { limit: 1000 }), "{e}");
    assert!(e.is_limit());
    // A PAX record larger than the metadata limit is not read into memory.
    let mut rec = format!("10010 path={}\n", "p".repeat(9999)).into_bytes();
    rec.truncate(10010);
    let e = unpack(&pax_then_file(&rec)[..], t.path(), &small).unwrap_err();
    assert!(matches!(e, UnpackError::MetadataTooLarge { .. }), "{e}");
}

#[test]
fn overlayfs_xattrs_from_a_layer_are_dropped() {
    let t = tempfile::tempdir().unwrap();
    let rec = b"46 SCHILY.xattr.trusted.overlay.redirect=/etc\n28 SCHILY.xattr.user.keep=1\n";
    unpack(&pax_then_file(rec)[..], t.path(), &Limits::default()).unwrap();
    let d = t.path().join("d");
    assert_eq!(xattr::get(&d, "trusted.overlay.redirect").unwrap(), None);
    assert_eq!(xattr::get(&d, "user.keep").unwrap(), Some(b"1".to_vec()));
}

#[test]
fn whiteouts_opaque_dirs_and_hard_links() {
    let t = tempfile::tempdir().unwrap();
    let (lower, upper, dst) = (t.path().join("l"), t.path().join("u"), t.path().join("d"));
    for d in [&lower, &upper, &dst] {
        fs::create_dir(d).unwrap();
    }
    fs::create_dir_all(lower.join("etc/old")).unwrap();
    fs::write(lower.join("etc/old/a"), "a").unwrap();
    fs::write(lower.join("etc/keep"), "keep").unwrap();
    fs::write(lower.join("gone"), "gone").unwrap();
    fs::create_dir_all(upper.join("etc/old")).unwrap();
    xattr::set(upper.join("etc/old"), OPAQUE_XATTR, b"y").unwrap();
    fs::write(upper.join("etc/old/b"), "b").unwrap();
    whiteout(&upper.join("gone"));
    fs::write(upper.join("h1"), "linked").unwrap();
    fs::hard_link(upper.join("h1"), upper.join("etc/h2")).unwrap();
    merge_layer(&lower, &dst, MergeMode::Apply).unwrap();
    merge_layer(&upper, &dst, MergeMode::Apply).unwrap();
    assert!(!dst.join("gone").exists());
    assert!(!dst.join("etc/old/a").exists(), "opaque dir not emptied");
    assert_eq!(fs::read(dst.join("etc/old/b")).unwrap(), b"b");
    assert_eq!(fs::read(dst.join("etc/keep")).unwrap(), b"keep");
    assert_eq!(xattr::get(dst.join("etc/old"), OPAQUE_XATTR).unwrap(), None);
    let (a, b) = (
        fs::metadata(dst.join("h1")).unwrap(),
        fs::metadata(dst.join("etc/h2")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino());
    // Verbatim keeps the overlay form.
    let copy = t.path().join("c");
    fs::create_dir(&copy).unwrap();
    merge_layer(&upper, &copy, MergeMode::Verbatim).unwrap();
    let w = fs::symlink_metadata(copy.join("gone")).unwrap();
    assert!(w.file_type().is_char_device() && w.rdev() == 0);
    assert_eq!(
        xattr::get(copy.join("etc/old"), OPAQUE_XATTR).unwrap(),
        Some(b"y".to_vec())
    );
}

/// An upper layer over a lower layer's symlink out: nothing outside changes.
#[test]
fn a_lower_symlink_is_never_entered() {
    let t = tempfile::tempdir().unwrap();
    let canary = t.path().join("canary");
    escape_check::make_canary(&canary).unwrap();
    let (lower, upper, dst) = (t.path().join("l"), t.path().join("u"), t.path().join("d"));
    for d in [&lower, &upper, &dst] {
        fs::create_dir(d).unwrap();
    }
    symlink(canary.join("dir"), lower.join("evil")).unwrap();
    symlink(canary.join("top"), lower.join("file")).unwrap();
    fs::create_dir(upper.join("evil")).unwrap();
    xattr::set(upper.join("evil"), OPAQUE_XATTR, b"y").unwrap();
    whiteout(&upper.join("evil/victim"));
    fs::write(upper.join("evil/planted"), "x").unwrap();
    fs::write(upper.join("file"), "overwritten").unwrap();
    let (r, changes) = escape_check::check(&canary, &dst, || {
        merge_layer(&lower, &dst, MergeMode::Apply)?;
        merge_layer(&upper, &dst, MergeMode::Apply)
    })
    .unwrap();
    r.unwrap();
    assert!(changes.is_empty(), "{changes:?}");
    assert!(dst.join("evil").is_dir() && !dst.join("evil").is_symlink());
    assert_eq!(fs::read(dst.join("evil/planted")).unwrap(), b"x");
    assert_eq!(fs::read(dst.join("file")).unwrap(), b"overwritten");
}
