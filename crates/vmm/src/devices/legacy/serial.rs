//! The 8250 UART at 0x3f8 (COM1, IRQ 4), on vm-superio. Guest output goes into the
//! console's bounded buffer (never a blocking write on the vCPU thread); while that is
//! full the line status register says the transmitter is busy, so a guest that polls it
//! waits, and bytes written anyway are dropped. Host input is queued into the receive
//! FIFO by the console.

use std::sync::Arc;

use vm_superio::serial::SerialEvents;
use vmm_sys_util::eventfd::EventFd;

use super::EventFdTrigger;
use crate::arch::x86_64::layout::COM1_LEN;
use crate::console::{Output, OutputWriter};
use crate::devices::bus::BusDevice;

/// Line status register offset and its transmitter-empty bits (THRE, TEMT).
const LSR: u8 = 5;
const LSR_TX_EMPTY: u8 = 0x20 | 0x40;

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
    inner: vm_superio::Serial<EventFdTrigger, RxEvents, OutputWriter>,
    output: Arc<Output>,
}

impl Serial {
    /// A UART raising `irq` and writing guest output to `output`; `rx_ready` fires when
    /// the receive FIFO has emptied.
    pub fn new(irq: EventFd, rx_ready: EventFd, output: Arc<Output>) -> Self {
        Serial {
            inner: vm_superio::Serial::with_events(
                EventFdTrigger(irq),
                RxEvents { rx_ready },
                OutputWriter(output.clone()),
            ),
            output,
        }
    }

    /// The UART's registers and receive FIFO, for a snapshot.
    pub fn state(&self) -> vm_superio::serial::SerialState {
        self.inner.state()
    }

    /// Puts saved registers and FIFO back (a restored VM, before it runs).
    pub fn restore(&mut self, state: &vm_superio::serial::SerialState) -> Result<(), String> {
        let irq = EventFdTrigger(
            self.inner
                .interrupt_evt()
                .0
                .try_clone()
                .map_err(|e| e.to_string())?,
        );
        let events = RxEvents {
            rx_ready: self
                .inner
                .events()
                .rx_ready
                .try_clone()
                .map_err(|e| e.to_string())?,
        };
        self.inner =
            vm_superio::Serial::from_state(state, irq, events, OutputWriter(self.output.clone()))
                .map_err(|e| format!("{e:?}"))?;
        Ok(())
    }

    /// A register offset the UART has (0..8), as vm-superio takes it.
    fn register(offset: u64, len: usize) -> Option<u8> {
        if len != 1 || offset >= COM1_LEN {
            return None;
        }
        u8::try_from(offset).ok()
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
        if let Some(reg) = Self::register(offset, data.len()) {
            let mut value = self.inner.read(reg);
            if reg == LSR && self.output.is_full() {
                value &= !LSR_TX_EMPTY;
            }
            data[0] = value;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Some(reg) = Self::register(offset, data.len()) {
            if let Err(e) = self.inner.write(reg, data[0]) {
                log::debug!("serial: write failed: {e:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    fn serial() -> (Serial, Arc<Output>, EventFd, EventFd, std::fs::File) {
        let (r, w) = nix::unistd::pipe().unwrap();
        let out = Output::new(std::fs::File::from(w)).unwrap();
        let irq = EventFd::new(EFD_NONBLOCK).unwrap();
        let rx = EventFd::new(EFD_NONBLOCK).unwrap();
        let s = Serial::new(
            irq.try_clone().unwrap(),
            rx.try_clone().unwrap(),
            out.clone(),
        );
        (s, out, irq, rx, std::fs::File::from(r))
    }

    #[test]
    fn output_reaches_the_writer() {
        use std::io::Read;
        let (mut s, out, _, _, mut r) = serial();
        for b in b"hi\n" {
            s.write(0, &[*b]);
        }
        assert_eq!(out.drain(), crate::console::Drained::Empty);
        let mut got = [0u8; 3];
        r.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hi\n");
        let mut lsr = [0u8];
        s.read(5, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0, "THR empty");
    }

    #[test]
    fn full_output_buffer_makes_the_transmitter_busy_and_drops_bytes() {
        let (mut s, out, _, _, _r) = serial();
        for _ in 0..crate::console::OUTPUT_CAPACITY + 10 {
            s.write(0, b"z");
        }
        assert!(out.is_full());
        assert_eq!(out.dropped(), 10);
        let mut lsr = [0u8];
        s.read(5, &mut lsr);
        assert_eq!(
            lsr[0] & LSR_TX_EMPTY,
            0,
            "THR busy while the buffer is full"
        );
    }

    #[test]
    fn input_is_readable_and_drain_is_signalled() {
        let (mut s, _, irq, rx, _r) = serial();
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
        let (mut s, _, _, _, _r) = serial();
        let big = [b'x'; 1000];
        let n = s.enqueue(&big);
        assert!(n > 0 && n < 1000);
        assert_eq!(s.enqueue(b"y"), 0);
    }

    #[test]
    fn odd_sized_accesses_are_ignored() {
        let (mut s, out, _, _, _r) = serial();
        s.write(0, &[1, 2, 3, 4]);
        let mut d = [0u8; 4];
        s.read(0, &mut d);
        assert!(out.ready.read().is_err(), "nothing was written");
        assert_eq!(d, [0; 4]);
    }
}
