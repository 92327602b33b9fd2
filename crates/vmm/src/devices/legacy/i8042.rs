//! The i8042 keyboard controller at 0x60-0x64, on vm-superio: only what a guest needs to
//! reset the machine (command 0xfe on port 0x64), which stops the VM cleanly.

use std::sync::Arc;

use crate::devices::bus::BusDevice;
use crate::devices::{ExitEvent, ExitReason};

/// Turns the controller's reset line into a VM exit.
pub struct ResetTrigger(pub Arc<ExitEvent>);

impl vm_superio::Trigger for ResetTrigger {
    type E = std::convert::Infallible;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.trigger(ExitReason::Reset);
        Ok(())
    }
}

/// The controller.
pub struct I8042 {
    inner: vm_superio::I8042Device<ResetTrigger>,
}

impl I8042 {
    /// A controller whose reset stops the VM through `exit`.
    pub fn new(exit: Arc<ExitEvent>) -> Self {
        I8042 {
            inner: vm_superio::I8042Device::new(ResetTrigger(exit)),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        // The bus gives offsets inside the device's 5 ports; anything else is ignored.
        if let (1, Ok(offset)) = (data.len(), u8::try_from(offset)) {
            data[0] = self.inner.read(offset);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (1, Ok(offset)) = (data.len(), u8::try_from(offset)) {
            let Ok(()) = self.inner.write(offset, data[0]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_stops_the_vm() {
        let exit = Arc::new(ExitEvent::new().unwrap());
        let mut dev = I8042::new(exit.clone());
        dev.write(0, &[0xfe]);
        assert!(!exit.fired(), "0xfe on the data port is not a reset");
        dev.write(4, &[0x20]);
        assert!(!exit.fired());
        dev.write(4, &[0xfe]);
        assert_eq!(exit.reason(), Some(ExitReason::Reset));
    }
}
