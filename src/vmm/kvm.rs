//! Opening /dev/kvm, with errors that say what to do, and telling PVM hosts apart.

use std::ffi::CString;
use std::path::Path;

use kvm_ioctls::Kvm;

use super::Error;

/// The KVM device; `MINNOW_KVM_DEVICE` overrides it (tests use this).
pub fn device_path() -> String {
    std::env::var("MINNOW_KVM_DEVICE").unwrap_or_else(|_| "/dev/kvm".to_string())
}

/// Opens the KVM device and checks its API version.
pub fn open() -> Result<Kvm, Error> {
    let path = device_path();
    let cpath = CString::new(path.clone()).map_err(|_| Error::KvmOpen {
        path: path.clone(),
        hint: "the path contains a NUL byte".into(),
    })?;
    let kvm = Kvm::new_with_path(&cpath).map_err(|e| Error::KvmOpen {
        hint: open_hint(&path, e.errno()),
        path: path.clone(),
    })?;
    let version = kvm.get_api_version();
    if version != 12 {
        return Err(Error::KvmOpen {
            path,
            hint: format!("KVM API version {version}, minnow needs 12"),
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

/// Whether this host's KVM is PVM (the `kvm_pvm` module): guests run at CPL 3 in the
/// lower half, so only PVM-enabled guest kernels boot.
pub fn is_pvm() -> bool {
    Path::new("/sys/module/kvm_pvm").exists()
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
