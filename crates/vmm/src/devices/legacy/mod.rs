//! Legacy PC devices: the 8250 UART, the i8042 (for reset), the ACPI sleep register, and
//! minnow's boot timer and workload-exit registers.

pub mod acpi_sleep;
pub mod boot_timer;
pub mod i8042;
pub mod serial;
pub mod workload_exit;

use vmm_sys_util::eventfd::EventFd;

/// A vm-superio trigger that signals an eventfd (an interrupt line through irqfd).
pub struct EventFdTrigger(pub EventFd);

impl vm_superio::Trigger for EventFdTrigger {
    type E = std::io::Error;

    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}
