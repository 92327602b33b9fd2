//! A snapshot's `DIR/state` (`minnow run --restore DIR`): the header checks, then the
//! postcard body and the memory-layout check, as `snapshot::read` runs them before
//! anything of the VM exists.
//!
//! Input: a first byte choosing the mode, then bytes. Even: the bytes are the whole file
//! (magic, version, length, checksum: what a damaged or foreign file meets). Odd: the
//! bytes are a body, framed with a valid header and checksum, so the fuzzer reaches the
//! decoder (an edited state whose checksum was fixed up).
//! Oracle: no panic; a state that decodes has a layout a restore can map: regions in
//! ascending guest order, end to end in the file from offset 0, as large as the config's
//! memory, so no mapping reaches past the memory file.

#![no_main]

use libfuzzer_sys::fuzz_target;
use minnow_vmm::snapshot;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode & 1 == 1 {
        snapshot::frame(rest)
    } else {
        rest.to_vec()
    };
    let Ok(snap) = snapshot::decode(&bytes) else {
        return;
    };
    let mut offset = 0u64;
    let mut guest_end = 0u64;
    for r in &snap.memory {
        assert_eq!(r.file_offset, offset, "regions end to end in the file");
        assert!(r.len > 0 && r.guest_addr >= guest_end, "ascending regions");
        guest_end = r.guest_addr.checked_add(r.len).expect("no overflow");
        offset = offset.checked_add(r.len).expect("no overflow");
    }
    assert_eq!(offset, snap.memory_len());
    assert_eq!(
        offset,
        snap.config.mem_bytes(),
        "as large as the config says"
    );
});
