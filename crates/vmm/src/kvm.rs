//! Opening /dev/kvm, with errors that say what to do, and telling PVM hosts apart.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use kvm_ioctls::Kvm;

use super::Error;

/// The KVM device.
pub const DEFAULT_DEVICE: &str = "/dev/kvm";

/// Opens the KVM device and checks its API version.
pub fn open(device: &Path) -> Result<Kvm, Error> {
    let path = device.display().to_string();
    let cpath = CString::new(device.as_os_str().as_bytes()).map_err(|_| Error::KvmOpen {
        path: path.clone(),
        hint: "the path contains a NUL byte".into(),
        source: None,
    })?;
    let kvm = Kvm::new_with_path(&cpath).map_err(|e| Error::KvmOpen {
        hint: open_hint(&path, e.errno()),
        path: path.clone(),
        source: Some(e),
    })?;
    let version = kvm.get_api_version();
    if version != 12 {
        return Err(Error::KvmOpen {
            path,
            hint: format!("KVM API version {version}, minnow needs 12"),
            source: None,
        });
    }
    Ok(kvm)
}

fn open_hint(path: &str, errno: i32) -> String {
    match errno {
        libc::ENOENT => format!(
            "{path} does not exist: this host has no KVM; enable virtualisation and load kvm_intel or kvm_amd"
        ),
        libc::EACCES | libc::EPERM => format!(
            "no permission to open {path}; run as root or add your user to the kvm group"
        ),
        e => format!("{}", std::io::Error::from_raw_os_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_the_fix() {
        assert!(open_hint("/dev/kvm", libc::ENOENT).contains("load kvm_intel or kvm_amd"));
        assert!(open_hint("/dev/kvm", libc::EACCES).contains("kvm group"));
    }
}
