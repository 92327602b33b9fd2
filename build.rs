//! Link the `minnow` binary with resources/link/minnow.order (scripts/order-symbols.sh): the
//! functions `minnow run` executes are laid out together, so the VMM faults in and maps
//! fewer pages of its own text (docs/design.md, "Start-up"). A stale or missing name in the
//! file only costs packing; lld skips it.

fn main() {
    let order = concat!(env!("CARGO_MANIFEST_DIR"), "/resources/link/minnow.order");
    println!("cargo:rerun-if-changed=resources/link/minnow.order");
    println!("cargo:rerun-if-changed=build.rs");
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    let target = std::env::var("TARGET").unwrap_or_default();
    // Rust links x86_64-unknown-linux-gnu with its own lld, which takes the ordering file.
    if release && target == "x86_64-unknown-linux-gnu" && std::path::Path::new(order).exists() {
        println!("cargo:rustc-link-arg-bin=minnow=-Wl,--symbol-ordering-file={order}");
        println!("cargo:rustc-link-arg-bin=minnow=-Wl,--no-warn-symbol-ordering");
    }
}
