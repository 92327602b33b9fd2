//! `features` (what this runtime supports, as the runtime spec's features document) and
//! `spec` (a starting config.json).

use std::path::Path;

use oci_spec::runtime::Spec;

/// `features`: JSON on stdout.
pub fn features() -> Result<(), String> {
    let v = serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.0.2",
        "hooks": ["prestart", "createRuntime", "poststart", "poststop"],
        "mountOptions": [
            "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "sync", "async",
            "dirsync", "remount", "mand", "nomand", "atime", "noatime", "diratime",
            "nodiratime", "relatime", "norelatime", "strictatime", "nostrictatime", "bind",
            "rbind", "private", "rprivate", "shared", "rshared", "slave", "rslave",
            "unbindable", "runbindable"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {"enabled": true},
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false}
        },
        "annotations": {"org.opencontainers.runc.version": "minnow-runc"}
    });
    let text = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

/// `spec [--bundle DIR]`: writes DIR/config.json (oci-spec's default, root "rootfs",
/// no terminal), refusing to overwrite one.
pub fn spec(bundle: &Path) -> Result<(), String> {
    let path = bundle.join("config.json");
    if path.exists() {
        return Err(format!(
            "{} exists; remove it first or give another --bundle",
            path.display()
        ));
    }
    let mut spec = Spec::default();
    let mut root = spec.root().clone().unwrap_or_default();
    root.set_path("rootfs".into()).set_readonly(Some(true));
    spec.set_root(Some(root))
        .set_hostname(Some("minnow".into()));
    if let Some(p) = spec.process().clone() {
        let mut p = p;
        p.set_terminal(Some(false));
        spec.set_process(Some(p));
    }
    spec.save(&path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
