//! Time: the PIT ticks at [`HZ`] through the 8259 PICs, and the TSC,
//! calibrated against those ticks at boot, gives a monotonic clock with
//! sub-microsecond resolution. Wall time is the CMOS RTC read at boot
//! plus the monotonic time since.
//!
//! The PIT and the PICs were chosen over the local APIC timer because
//! every PC (and QEMU machine) has them and they need no MMIO or ACPI
//! tables; the tick only wakes the idle loop, so its cost is small.

use core::sync::atomic::{AtomicU64, Ordering};

use spin::Once;
use x86_64::instructions::port::Port;

/// Timer interrupts per second.
pub const HZ: u32 = 1000;
/// The PIT's input clock.
const PIT_HZ: u32 = 1_193_182;

static TICKS: AtomicU64 = AtomicU64::new(0);

/// What calibration found.
struct Calibration {
    /// TSC counts per second.
    tsc_hz: u64,
    /// The TSC at calibration, the clock's zero.
    tsc0: u64,
    /// Unix seconds from the RTC at calibration.
    unix0: u64,
}

static CAL: Once<Calibration> = Once::new();

/// Called by the timer's interrupt stub on every tick.
pub extern "C" fn interrupt() {
    TICKS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: end of interrupt to the first PIC; a port write, no memory.
    unsafe { Port::<u8>::new(0x20).write(0x20) };
}

/// Timer ticks since [`init`].
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

fn rdtsc() -> u64 {
    // SAFETY: rdtsc reads a counter; it has no other effect.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Remap the PICs to vectors 32..47 with every line but IRQ 0 masked,
/// start the PIT at [`HZ`], enable interrupts, calibrate the TSC over
/// some ticks and read the RTC. The IDT must be loaded.
pub fn init() {
    let writes: [(u16, u8); 10] = [
        (0x20, 0x11), // ICW1: initialise, ICW4 follows
        (0xA0, 0x11),
        (0x21, 0x20), // ICW2: first PIC at vector 32
        (0xA1, 0x28), // second at 40
        (0x21, 0x04), // ICW3: second PIC on IRQ 2
        (0xA1, 0x02),
        (0x21, 0x01), // ICW4: 8086 mode
        (0xA1, 0x01),
        (0x21, 0xFE), // masks: only IRQ 0
        (0xA1, 0xFF),
    ];
    let divisor = (PIT_HZ / HZ) as u16;
    // SAFETY: the PIC and PIT I/O ports; programming them touches no
    // memory, and the vectors they will raise have gates in the IDT.
    unsafe {
        for (port, value) in writes {
            Port::<u8>::new(port).write(value);
        }
        Port::<u8>::new(0x43).write(0x34); // channel 0, lo/hi, rate generator
        Port::<u8>::new(0x40).write(divisor as u8);
        Port::<u8>::new(0x40).write((divisor >> 8) as u8);
    }
    x86_64::instructions::interrupts::enable();
    // Calibrate over 20 ticks (20 ms), starting on a tick edge.
    const SPAN: u64 = 20;
    let t = ticks();
    while ticks() == t {
        x86_64::instructions::hlt();
    }
    let (t0, c0) = (ticks(), rdtsc());
    while ticks() < t0 + SPAN {
        x86_64::instructions::hlt();
    }
    let c1 = rdtsc();
    let tsc_hz = (c1 - c0) * u64::from(HZ) / SPAN;
    let unix0 = crate::rtc::unix_seconds();
    CAL.call_once(|| Calibration {
        tsc_hz: tsc_hz.max(1),
        tsc0: c0,
        unix0,
    });
}

/// TSC counts per second, as calibrated.
pub fn tsc_hz() -> u64 {
    CAL.get().map_or(1, |c| c.tsc_hz)
}

/// Nanoseconds since calibration.
pub fn monotonic_nanos() -> u64 {
    let Some(c) = CAL.get() else { return 0 };
    let d = rdtsc().saturating_sub(c.tsc0);
    (u128::from(d) * 1_000_000_000 / u128::from(c.tsc_hz)) as u64
}

/// The kernel's clock for `cellfs`.
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelClock;

impl cellfs::Clock for KernelClock {
    fn unix_nanos(&self) -> u64 {
        let unix0 = CAL.get().map_or(0, |c| c.unix0);
        unix0 * 1_000_000_000 + monotonic_nanos()
    }
    fn monotonic_nanos(&self) -> u64 {
        monotonic_nanos()
    }
}
