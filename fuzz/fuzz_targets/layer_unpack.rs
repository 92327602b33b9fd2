//! Layer extraction: random tar streams, plain or compressed, extracted by crates/image's
//! layer code (the decoder hook, then `layer::unpack::unpack`) into a scratch root, and
//! sometimes merged onto a second root as `run --image` does for a microVM disk.
//!
//! Input: 1 byte of mode (bits 0-1: 0 a plain tar, 1 a tar the target gzips, 2 raw bytes
//! through the gzip decoder, 3 raw bytes through the zstd decoder; bit 4: merge the
//! extracted layer afterwards; bit 5: merge verbatim rather than flattened); the rest is
//! the stream.
//! Oracle (issue 10, part 1): a canary tree beside the root is byte-identical after (type,
//! mode, owner, links, size, times, xattrs, content: `layer::escape_check`), nothing was
//! made outside the root, and a merge changes neither the layer nor anything but its
//! destination. Errors are fine; an escape or a panic is not.

#![no_main]

use std::io::{BufReader, Write};

use flate2::write::GzEncoder;
use libfuzzer_sys::fuzz_target;
use minnow_fuzz::scratch;
use minnow_image::compress::Compression;
use minnow_image::layer::escape_check::{check, make_canary};
use minnow_image::layer::merge::{merge_layer, MergeMode};
use minnow_image::layer::unpack::{unpack, Limits};

/// Small limits, so a stream cannot fill /dev/shm and the limit paths are reached.
const LIMITS: Limits = Limits {
    max_bytes: 4 << 20,
    max_entries: 4096,
    max_metadata: 64 << 10,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, stream)) = data.split_first() else {
        return;
    };
    let watch = scratch().join("w");
    let (root, merged) = (watch.join("root"), watch.join("merged"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&merged).unwrap();
    make_canary(&watch.join("canary")).unwrap();

    let gz;
    let (compression, bytes) = match mode & 3 {
        0 => (Compression::None, stream),
        1 => {
            let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(stream).unwrap();
            gz = e.finish().unwrap();
            (Compression::Gzip, &gz[..])
        }
        2 => (Compression::Gzip, stream),
        _ => (Compression::Zstd, stream),
    };
    let (unpacked, changes) = check(&watch, &root, || {
        let r = compression.decoder(BufReader::new(bytes))?;
        unpack(r, &root, &LIMITS).map_err(std::io::Error::other)
    })
    .unwrap();
    assert!(
        changes.is_empty(),
        "extraction escaped its root: {changes:#?}"
    );

    if unpacked.is_ok() && mode & 0x10 != 0 {
        let how = if mode & 0x20 != 0 {
            MergeMode::Verbatim
        } else {
            MergeMode::Apply
        };
        let (_, changes) = check(&watch, &merged, || merge_layer(&root, &merged, how)).unwrap();
        assert!(changes.is_empty(), "merge escaped its root: {changes:#?}");
    }
    std::fs::remove_dir_all(&watch).unwrap();
});
