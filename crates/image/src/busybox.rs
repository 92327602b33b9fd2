//! The default image's root filesystem, from the host's busybox-static.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::Error;

/// Returns whether the ELF file at `path` is statically linked (has no PT_INTERP).
pub fn is_static_elf(path: &Path) -> io::Result<bool> {
    let data = fs::read(path)?;
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 {
        return Ok(false);
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(data[0x20..0x28].try_into().unwrap_or_default()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if o + 4 > data.len() {
            return Ok(false);
        }
        if u32::from_le_bytes(data[o..o + 4].try_into().unwrap_or_default()) == 3 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Builds the default busybox root filesystem in `root` from the host's busybox-static.
pub(crate) fn make_busybox_rootfs(root: &Path) -> Result<(), Error> {
    let host = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(Path::new)
        .find(|p| is_static_elf(p).unwrap_or(false))
        .ok_or(Error::NoBusybox)?;
    let e = |p: &Path, err: io::Error| Error::io("cannot create", p, err);
    for (dir, mode) in [
        ("bin", 0o755),
        ("sbin", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("etc", 0o755),
        ("root", 0o700),
        ("tmp", 0o1777),
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("var/tmp", 0o1777),
        ("home", 0o755),
    ] {
        let p = root.join(dir);
        fs::create_dir_all(&p).map_err(|err| e(&p, err))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(|err| e(&p, err))?;
    }
    let bb = root.join("bin/busybox");
    fs::copy(host, &bb).map_err(|err| e(&bb, err))?;
    let list = std::process::Command::new(host)
        .arg("--list-full")
        .output()
        .map_err(|source| Error::BusyboxList {
            path: host.into(),
            source,
        })?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = root.join(applet.trim_start_matches('/'));
        if applet.is_empty() || link == bb || link.exists() {
            continue;
        }
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent).map_err(|err| e(parent, err))?;
        }
        std::os::unix::fs::symlink("/bin/busybox", &link).map_err(|err| e(&link, err))?;
    }
    for (file, text) in [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n"),
        ("etc/hostname", "minnow\n"),
    ] {
        let p = root.join(file);
        fs::write(&p, text).map_err(|err| e(&p, err))?;
    }
    Ok(())
}
