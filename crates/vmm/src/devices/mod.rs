//! Emulated devices and the buses the vCPUs dispatch port I/O and MMIO exits to.

#![deny(clippy::cast_possible_truncation)]

pub mod bus;
pub mod legacy;
pub mod virtio;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Why the VM stops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// The guest reset the machine (i8042 or a KVM system event): a clean stop.
    Reset,
    /// The guest powered off (KVM system event): a clean stop.
    PowerOff,
    /// The user quit from the console (Ctrl-A x) or minnow got SIGTERM/SIGINT.
    UserQuit,
    /// The guest triple-faulted.
    TripleFault,
    /// A vCPU failed; the text says why.
    Crash(String),
}

impl ExitReason {
    /// The process exit code: 0 for a clean stop, 2 for a guest crash.
    pub fn exit_code(&self) -> i32 {
        match self {
            ExitReason::Reset | ExitReason::PowerOff | ExitReason::UserQuit => 0,
            ExitReason::TripleFault | ExitReason::Crash(_) => 2,
        }
    }
}

/// The one place that records why the VM stops and wakes the event loop. The first
/// reason wins.
pub struct ExitEvent {
    reason: Mutex<Option<ExitReason>>,
    fired: AtomicBool,
    evt: EventFd,
}

impl ExitEvent {
    /// A new, unfired exit event.
    pub fn new() -> std::io::Result<Self> {
        Ok(ExitEvent {
            reason: Mutex::new(None),
            fired: AtomicBool::new(false),
            evt: EventFd::new(EFD_NONBLOCK)?,
        })
    }

    /// Records `reason` (unless one is already recorded) and wakes the event loop.
    pub fn trigger(&self, reason: ExitReason) {
        let mut slot = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(reason);
        }
        self.fired.store(true, Ordering::SeqCst);
        if let Err(e) = self.evt.write(1) {
            log::error!("cannot signal VM exit: {e}");
        }
    }

    /// Whether an exit was requested.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// The recorded reason.
    pub fn reason(&self) -> Option<ExitReason> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The eventfd the event loop watches.
    pub fn eventfd(&self) -> &EventFd {
        &self.evt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_reason_wins() {
        let e = ExitEvent::new().unwrap();
        assert!(!e.fired());
        e.trigger(ExitReason::Reset);
        e.trigger(ExitReason::TripleFault);
        assert!(e.fired());
        assert_eq!(e.reason(), Some(ExitReason::Reset));
        assert_eq!(e.eventfd().read().unwrap(), 2);
    }

    #[test]
    fn exit_codes() {
        assert_eq!(ExitReason::Reset.exit_code(), 0);
        assert_eq!(ExitReason::TripleFault.exit_code(), 2);
        assert_eq!(ExitReason::Crash("x".into()).exit_code(), 2);
    }
}
