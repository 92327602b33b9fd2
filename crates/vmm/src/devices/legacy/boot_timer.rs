//! The boot timer: an MMIO byte the guest writes once its init starts (the same
//! convention as Firecracker: the value 123 at 0xd000_0000, e.g. `devmem 0xd0000000 8 123`
//! from busybox). minnow logs the time since the VMM started and the CPU time it has
//! used so far (all threads, from exec).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::devices::bus::BusDevice;

/// The value that marks "init started".
pub const MAGIC: u8 = 123;

/// The device. The measured time is shared so the VMM can report it again at exit.
pub struct BootTimer {
    start: Instant,
    booted: Arc<OnceLock<Duration>>,
}

impl BootTimer {
    /// A timer counting from `start` (the VMM's start).
    pub fn new(start: Instant, booted: Arc<OnceLock<Duration>>) -> Self {
        BootTimer { start, booted }
    }
}

impl BusDevice for BootTimer {
    fn read(&mut self, _offset: u64, _data: &mut [u8]) {}

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset != 0 || data.first() != Some(&MAGIC) {
            return;
        }
        let elapsed = self.start.elapsed();
        if self.booted.set(elapsed).is_ok() {
            log::info!(
                "guest boot time: {:.1} ms from VMM start to guest init (VMM CPU so far {:.1} ms)",
                elapsed.as_secs_f64() * 1000.0,
                process_cpu_ms()
            );
        }
    }
}

/// CPU time (user + system, all threads) the VMM process has used so far, in ms.
fn process_cpu_ms() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let ms = |t: nix::sys::time::TimeVal| {
                t.tv_sec() as f64 * 1000.0 + t.tv_usec() as f64 / 1000.0
            };
            ms(u.user_time()) + ms(u.system_time())
        }
        Err(_) => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_first_magic_write_only() {
        let booted = Arc::new(OnceLock::new());
        let mut t = BootTimer::new(Instant::now(), booted.clone());
        t.write(0, &[1]);
        t.write(4, &[MAGIC]);
        assert!(booted.get().is_none());
        t.write(0, &[MAGIC]);
        let first = *booted.get().unwrap();
        std::thread::sleep(Duration::from_millis(2));
        t.write(0, &[MAGIC]);
        assert_eq!(*booted.get().unwrap(), first);
    }
}
