//! The workload's exit status: a guest init that runs a command writes its exit status
//! (one byte) to 0xd000_0004 before it stops the VM, and minnow exits with that status
//! (`devmem 0xd0000004 8 $rc` from busybox).

use std::sync::{Arc, OnceLock};

use crate::devices::bus::BusDevice;

/// The register.
pub struct WorkloadExit {
    status: Arc<OnceLock<u8>>,
}

impl WorkloadExit {
    /// A register that stores the first status written into `status`.
    pub fn new(status: Arc<OnceLock<u8>>) -> Self {
        WorkloadExit { status }
    }
}

impl BusDevice for WorkloadExit {
    fn read(&mut self, _offset: u64, _data: &mut [u8]) {}

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == 0 && data.len() == 1 && self.status.set(data[0]).is_ok() {
            log::debug!("workload exited with status {}", data[0]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_byte_write_wins() {
        let s = Arc::new(OnceLock::new());
        let mut d = WorkloadExit::new(s.clone());
        d.write(0, &[1, 2]);
        d.write(1, &[3]);
        assert!(s.get().is_none());
        d.write(0, &[7]);
        d.write(0, &[9]);
        assert_eq!(s.get(), Some(&7));
    }
}
