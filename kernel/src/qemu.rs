//! Leaving QEMU with an exit status, through its isa-debug-exit device
//! (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`). QEMU exits with
//! `(code << 1) | 1`; on a machine without the device the write does
//! nothing and the kernel halts instead.

use x86_64::instructions::port::Port;

/// Why the kernel stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Exit {
    /// Asked to stop after booting: QEMU exits with 33.
    Success = 0x10,
    /// A panic or an exception: QEMU exits with 35.
    Failure = 0x11,
}

/// Stop the machine.
pub fn exit(how: Exit) -> ! {
    // SAFETY: port 0xf4 is the debug-exit device, or nothing; writing it
    // touches no memory.
    unsafe { Port::<u32>::new(0xf4).write(how as u32) };
    halt()
}

/// Stop this CPU for good.
pub fn halt() -> ! {
    x86_64::instructions::interrupts::disable();
    loop {
        x86_64::instructions::hlt();
    }
}
