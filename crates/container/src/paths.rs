//! Mounts that take things away from the container, as runc does them: masked paths,
//! read-only paths and the read-only root (in the init, after pivot_root), and the mount
//! attributes they use.

use std::ffi::CString;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};

use crate::error::{step, Failure};
use crate::security::Security;

/// `AT_RECURSIVE` for mount_setattr (linux/fcntl.h; not in the libc crate for Linux).
const AT_RECURSIVE: libc::c_uint = 0x8000;

/// Sets the `MOUNT_ATTR_*` bits `attr` on the mount at `target` (and, with `recursive`,
/// every mount under it) with `mount_setattr` (Linux 5.12): only those bits change, where
/// a remount would reset the flags it is not given, and a remount changes one mount only.
pub fn set_attr(target: &Path, attr: u64, recursive: bool) -> std::io::Result<()> {
    let path = CString::new(target.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::other("mount point path holds a NUL byte"))?;
    let attr = libc::mount_attr {
        attr_set: attr,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: mount_setattr reads a NUL-terminated path and `size` bytes of `attr`, both
    // valid for the call; it writes no user memory. nix and rustix have no wrapper.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// runc's `maskPath`: /dev/null bound over a file, a read-only empty tmpfs over a
/// directory; a path this kernel does not have is skipped.
fn mask(path: &Path) -> Result<(), Failure> {
    let bound = mount(
        Some("/dev/null"),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    );
    let result = match bound {
        Err(Errno::ENOTDIR) => mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        ),
        other => other,
    };
    match result {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(step(format!("cannot mask {}", path.display()))(e)),
    }
}

/// runc's `readonlyPath`: the path bound onto itself (with what is mounted under it),
/// then made read-only; a path this kernel does not have is skipped.
fn read_only(path: &Path) -> Result<(), Failure> {
    let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
    match mount(Some(path), path, None::<&str>, flags, None::<&str>) {
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(step(format!("cannot bind {} read-only", path.display()))(e)),
        Ok(()) => {}
    }
    set_attr(path, libc::MOUNT_ATTR_RDONLY, true)
        .map_err(step(format!("cannot make {} read-only", path.display())))
}

/// The read-only and masked paths, then the read-only root (after pivot_root; the
/// working directory must exist already).
pub fn apply(s: &Security) -> Result<(), Failure> {
    for p in &s.readonly_paths {
        read_only(p)?;
    }
    for p in &s.masked_paths {
        mask(p)?;
    }
    if s.readonly_root {
        set_attr(Path::new("/"), libc::MOUNT_ATTR_RDONLY, false)
            .map_err(step("cannot make the root read-only (--read-only)"))?;
    }
    Ok(())
}
