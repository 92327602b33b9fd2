//! An OCI bundle's `config.json`, as `minnow-runc create` reads it: parsed
//! (`engine::spec::parse`) and checked and converted into the engine's plan
//! (`engine::spec::plan`: refusals, namespaces, rlimits, mounts, propagation,
//! capabilities, the seccomp filter compiled with libseccomp, the cgroup's path, files
//! and device rules) against a scratch bundle, without creating anything. For a plan, the
//! mount destinations are also resolved in the bundle's root the way the container's init
//! does (`mounts::secure_join`; the root holds symlinks that point up, out and at
//! themselves), and the hooks take the round trip through JSON that state.json gives them.
//!
//! Input: the file's bytes.
//! Oracle: no panic; a plan has a command, an absolute cwd, one new mount namespace and
//! no namespace twice, a cgroup path that is a non-empty plain relative path, mounts whose
//! destinations resolve inside the root and whose binds have a source, ambient
//! capabilities within permitted and inheritable; the hooks survive the round trip.

#![no_main]

use std::path::{Component, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use minnow_container::engine::{mounts, spec};
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use oci_spec::runtime::Hooks;

/// The bundle: `rootfs/` with a directory and symlinks a mount destination may go through.
fn bundle() -> &'static PathBuf {
    static BUNDLE: OnceLock<PathBuf> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        // Compile every filter: the seccomp cache would write under /run.
        std::env::set_var("MINNOW_SECCOMP_CACHE", "off");
        let b = minnow_fuzz::scratch().join("bundle");
        let root = b.join("rootfs");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        for (name, target) in [
            ("up", "../../.."),
            ("abs", "/etc"),
            ("loop", "loop"),
            ("dir", "etc"),
        ] {
            std::os::unix::fs::symlink(target, root.join(name)).unwrap();
        }
        b
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = spec::parse(data) else {
        return;
    };
    // state.json keeps the hooks; start and delete run poststart and poststop from it.
    let saved = serde_json::to_vec(spec.hooks()).expect("hooks serialize");
    let back: Option<Hooks> = serde_json::from_slice(&saved).expect("hooks parse back");
    assert_eq!(&back, spec.hooks(), "hooks round-trip");

    let bundle = bundle();
    let Ok(plan) = spec::plan(&spec, bundle, "fuzz") else {
        return;
    };
    assert!(plan.rootfs.is_absolute() && plan.rootfs.is_dir());
    assert!(!plan.process.args.is_empty());
    assert!(plan.process.cwd.starts_with('/'));
    let flags: Vec<CloneFlags> = plan.namespaces.iter().map(|(f, _)| *f).collect();
    for (i, f) in flags.iter().enumerate() {
        assert!(!flags[..i].contains(f), "namespace {f:?} twice");
    }
    assert!(plan
        .namespaces
        .iter()
        .any(|(f, p)| *f == CloneFlags::CLONE_NEWNS && p.is_none()));

    let cg = &plan.cgroup.path;
    assert!(
        !cg.as_os_str().is_empty() && cg.components().all(|c| matches!(c, Component::Normal(_))),
        "cgroup path {cg:?}"
    );

    let ours = plan.rootfs == bundle.join("rootfs");
    for m in &plan.mounts {
        assert!(m.destination.is_absolute());
        if m.flags.contains(MsFlags::MS_BIND) {
            assert!(m.source.is_some(), "bind without a source");
        }
        if ours {
            let at = mounts::secure_join(&plan.rootfs, &m.destination);
            assert!(
                at.starts_with(&plan.rootfs) && !at.components().any(|c| c == Component::ParentDir),
                "{} resolves to {}",
                m.destination.display(),
                at.display()
            );
        }
    }

    let caps = &plan.security.capabilities;
    let within = |c| {
        caps.permitted().as_ref().is_some_and(|p| p.contains(c))
            && caps.inheritable().as_ref().is_some_and(|i| i.contains(c))
    };
    assert!(caps.ambient().iter().flatten().all(within));
});
