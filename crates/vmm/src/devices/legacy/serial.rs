//! The 8250 UART at 0x3f8 (COM1, IRQ 4), on vm-superio. Guest output goes to a writer
//! (stdout); host input is queued into its receive FIFO by the console.

use std::io::Write;

use vm_superio::serial::SerialEvents;
use vmm_sys_util::eventfd::EventFd;

use super::EventFdTrigger;
use crate::arch::x86_64::layout::COM1_LEN;
use crate::devices::bus::BusDevice;

/// Signals `rx_ready` when the guest has drained the receive FIFO, so that the console
/// can queue more input.
pub struct RxEvents {
    rx_ready: EventFd,
}

impl SerialEvents for RxEvents {
    fn buffer_read(&self) {}
    fn out_byte(&self) {}
    fn tx_lost_byte(&self) {
        log::debug!("serial: lost an output byte");
    }
    fn in_buffer_empty(&self) {
        if let Err(e) = self.rx_ready.write(1) {
            log::warn!("serial: cannot signal input space: {e}");
        }
    }
}

/// The UART.
pub struct Serial {
    inner: vm_superio::Serial<EventFdTrigger, RxEvents, Box<dyn Write + Send>>,
}

impl Serial {
    /// A UART raising `irq` and writing guest output to `out`; `rx_ready` fires when the
    /// receive FIFO has emptied.
    pub fn new(irq: EventFd, rx_ready: EventFd, out: Box<dyn Write + Send>) -> Self {
        Serial {
            inner: vm_superio::Serial::with_events(EventFdTrigger(irq), RxEvents { rx_ready }, out),
        }
    }

    /// Queues host input for the guest; returns how many bytes fit.
    pub fn enqueue(&mut self, bytes: &[u8]) -> usize {
        if self.inner.fifo_capacity() == 0 {
            return 0;
        }
        self.inner.enqueue_raw_bytes(bytes).unwrap_or(0)
    }
}

impl BusDevice for Serial {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if data.len() == 1 && offset < COM1_LEN {
            data[0] = self.inner.read(offset as u8);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if data.len() == 1 && offset < COM1_LEN {
            if let Err(e) = self.inner.write(offset as u8, data[0]) {
                log::debug!("serial: write failed: {e:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn serial() -> (Serial, Sink, EventFd, EventFd) {
        let sink = Sink::default();
        let irq = EventFd::new(EFD_NONBLOCK).unwrap();
        let rx = EventFd::new(EFD_NONBLOCK).unwrap();
        let s = Serial::new(
            irq.try_clone().unwrap(),
            rx.try_clone().unwrap(),
            Box::new(sink.clone()),
        );
        (s, sink, irq, rx)
    }

    #[test]
    fn output_reaches_the_writer() {
        let (mut s, sink, _, _) = serial();
        for b in b"hi\n" {
            s.write(0, &[*b]);
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"hi\n");
        let mut lsr = [0u8];
        s.read(5, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0, "THR empty");
    }

    #[test]
    fn input_is_readable_and_drain_is_signalled() {
        let (mut s, _, irq, rx) = serial();
        s.write(1, &[0x01]); // IER: receive-data interrupt
        assert_eq!(s.enqueue(b"ab"), 2);
        assert!(irq.read().is_ok(), "input raises the IRQ");
        let mut b = [0u8];
        s.read(0, &mut b);
        assert_eq!(b[0], b'a');
        s.read(0, &mut b);
        assert_eq!(b[0], b'b');
        assert_eq!(rx.read().unwrap(), 1, "emptied FIFO is signalled");
    }

    #[test]
    fn full_fifo_takes_nothing_more() {
        let (mut s, _, _, _) = serial();
        let big = [b'x'; 1000];
        let n = s.enqueue(&big);
        assert!(n > 0 && n < 1000);
        assert_eq!(s.enqueue(b"y"), 0);
    }

    #[test]
    fn odd_sized_accesses_are_ignored() {
        let (mut s, sink, _, _) = serial();
        s.write(0, &[1, 2, 3, 4]);
        let mut d = [0u8; 4];
        s.read(0, &mut d);
        assert!(sink.0.lock().unwrap().is_empty());
        assert_eq!(d, [0; 4]);
    }
}
