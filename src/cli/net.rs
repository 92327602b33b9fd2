//! Host-side network set-up for microVMs: a persistent TAP with an address, brought up
//! (`minnow net setup`), and its removal (`minnow net teardown`). Uses iproute2's `ip`,
//! which every host that runs VMs has, rather than hand-written netlink.

use std::process::Command;

use minnow_vmm::config::{check_tap_name as check_name, parse_cidr};

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}; install iproute2"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let hint = if err.contains("Operation not permitted") {
        "; run as root (CAP_NET_ADMIN)"
    } else {
        ""
    };
    Err(format!(
        "`ip {}` failed: {}{hint}",
        args.join(" "),
        err.trim()
    ))
}

/// Whether a network interface exists.
pub fn exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// Creates TAP `name` (if missing), gives it `host_ip` (A.B.C.D/P) and brings it up.
pub fn setup(name: &str, host_ip: Option<&str>) -> Result<(), String> {
    check_name(name).map_err(|e| e.to_string())?;
    if let Some(addr) = host_ip {
        parse_cidr(addr).ok_or_else(|| format!("address `{addr}` is not A.B.C.D/PREFIX"))?;
    }
    if !exists(name) {
        ip(&["tuntap", "add", "dev", name, "mode", "tap", "vnet_hdr"])?;
    }
    if let Some(addr) = host_ip {
        ip(&["addr", "replace", addr, "dev", name])?;
    }
    ip(&["link", "set", "dev", name, "up"])
}

/// Removes TAP `name`.
pub fn teardown(name: &str) -> Result<(), String> {
    check_name(name).map_err(|e| e.to_string())?;
    if !exists(name) {
        return Err(format!("no interface {name}"));
    }
    ip(&["link", "del", "dev", name])
}
