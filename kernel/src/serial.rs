//! The console: COM1, a 16550 UART at I/O port 0x3F8, polled.

use core::fmt;

use spin::Mutex;
use x86_64::instructions::port::Port;

const COM1: u16 = 0x3F8;

/// The UART behind COM1.
pub struct Serial {
    data: Port<u8>,
    line_status: Port<u8>,
}

impl Serial {
    const fn new() -> Serial {
        Serial {
            data: Port::new(COM1),
            line_status: Port::new(COM1 + 5),
        }
    }

    /// 115200 baud, 8 data bits, no parity, one stop bit, FIFO on.
    fn init(&mut self) {
        let regs: [(u16, u8); 6] = [
            (1, 0x00), // interrupts off
            (3, 0x80), // divisor latch on
            (0, 0x01), // divisor 1: 115200 baud
            (1, 0x00),
            (3, 0x03), // 8N1, latch off
            (2, 0xC7), // FIFO on and cleared
        ];
        for (off, val) in regs {
            // SAFETY: COM1's registers; writing them configures the UART
            // and touches no memory.
            unsafe { Port::<u8>::new(COM1 + off).write(val) };
        }
    }

    fn put(&mut self, b: u8) {
        // SAFETY: reading the line status and writing the data register
        // of COM1 have no effect on memory.
        unsafe {
            while self.line_status.read() & 0x20 == 0 {
                core::hint::spin_loop();
            }
            self.data.write(b);
        }
    }
}

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
        Ok(())
    }
}

/// The console, shared by everything that prints.
pub static CONSOLE: Mutex<Serial> = Mutex::new(Serial::new());

/// Set up the UART; call once, first thing.
pub fn init() {
    CONSOLE.lock().init();
}

/// Take the console for a last report: if the code that failed held the
/// console lock, waiting for it would hang instead of reporting.
pub fn seize() {
    if CONSOLE.is_locked() {
        // SAFETY: called only on the way to stopping the machine (an
        // exception or a panic), on the only CPU: whoever held the lock
        // will never run again, so breaking it cannot race with them.
        unsafe { CONSOLE.force_unlock() };
        crate::println!("");
    }
}

#[doc(hidden)]
pub fn print(args: fmt::Arguments<'_>) {
    use fmt::Write as _;
    // Interrupts off while holding the lock, so a handler that prints
    // cannot deadlock against the code it interrupted.
    x86_64::instructions::interrupts::without_interrupts(|| {
        let _ = CONSOLE.lock().write_fmt(args);
    });
}

/// Print a line on the console.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::serial::print(format_args!("{}\n", format_args!($($arg)*))) };
}
