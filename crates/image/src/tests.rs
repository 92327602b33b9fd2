//! Store tests: names, image indexes, extraction and corruption.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::digest::Digest;
use crate::oci::{self, Descriptor};
use crate::*;

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
        matches!(&err, crate::Error::NoPlatform { have, .. } if have == "linux/arm64"),
        "{err}"
    );
    assert!(err.to_string().contains("no linux/amd64 manifest"), "{err}");
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
    let err = store.resolve("nope").unwrap_err();
    assert!(matches!(err, crate::Error::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("minnow image ls"), "{err}");
    // Corrupt the layer blob: extraction must refuse it.
    let layer = Digest::parse(&img.manifest.layers[0].digest).unwrap();
    let blob = store.blob_path(&layer);
    let mut data = fs::read(&blob).unwrap();
    let i = data.iter().position(|&b| b == b'h').unwrap();
    data[i] = b'H';
    fs::set_permissions(&blob, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&blob, &data).unwrap();
    let err = store.layer_dirs(&img).unwrap_err();
    assert!(
        matches!(
            err,
            crate::Error::Extract(crate::layer::ExtractError::Corrupt { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("digest mismatch"), "{err}");
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
