//! The ACPI hardware-reduced sleep control register: writing SLP_EN with the `_S5_`
//! sleep type powers the VM off (`poweroff -f` in a guest with ACPI).

use std::sync::Arc;

use crate::devices::bus::BusDevice;
use crate::devices::{ExitEvent, ExitReason};

use crate::arch::x86_64::layout::S5_SLEEP_TYPE;
const SLP_EN: u8 = 1 << 5;

/// The register.
pub struct AcpiSleep {
    exit: Arc<ExitEvent>,
}

impl AcpiSleep {
    /// A register that stops the VM through `exit`.
    pub fn new(exit: Arc<ExitEvent>) -> Self {
        AcpiSleep { exit }
    }
}

impl BusDevice for AcpiSleep {
    fn read(&mut self, _offset: u64, _data: &mut [u8]) {}

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else { return };
        let sleep_type = (value >> 2) & 0x7;
        if offset == 0 && value & SLP_EN != 0 && sleep_type == S5_SLEEP_TYPE {
            self.exit.trigger(ExitReason::PowerOff);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s5_with_slp_en_powers_off() {
        let exit = Arc::new(ExitEvent::new().unwrap());
        let mut d = AcpiSleep::new(exit.clone());
        d.write(0, &[S5_SLEEP_TYPE << 2]);
        assert!(!exit.fired(), "no SLP_EN");
        d.write(0, &[(3 << 2) | SLP_EN]);
        assert!(!exit.fired(), "S3 is not off");
        d.write(0, &[(S5_SLEEP_TYPE << 2) | SLP_EN]);
        assert_eq!(exit.reason(), Some(ExitReason::PowerOff));
    }
}
