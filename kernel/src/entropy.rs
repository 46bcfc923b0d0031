//! Randomness for the kernel (TCP sequence numbers via smoltcp's seed).
//!
//! Sources, best first: RDSEED (the CPU's conditioned entropy source),
//! RDRAND (its DRBG), and, on CPUs with neither (QEMU's default TCG CPU
//! model has neither), a fallback: sha256 over the low bits of many TSC
//! readings taken around port I/O and timer interrupts (whose timing
//! under an emulator depends on the host's scheduling), the RTC and the
//! tick count. That pool seeds a hash DRBG: output block `i` is
//! sha256(seed, i). The fallback is not a certified source; it is good
//! enough for sequence numbers and documented as such.

use core::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use spin::{Mutex, Once};

/// Where the bytes come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The RDSEED instruction.
    Rdseed,
    /// The RDRAND instruction.
    Rdrand,
    /// The TSC-jitter pool (see the module comment).
    Jitter,
}

impl Source {
    /// The word the boot proof and the console use.
    pub fn name(self) -> &'static str {
        match self {
            Source::Rdseed => "rdseed",
            Source::Rdrand => "rdrand",
            Source::Jitter => "jitter",
        }
    }
}

static SOURCE: Once<Source> = Once::new();
static SEED: Mutex<[u8; 32]> = Mutex::new([0; 32]);
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Choose the source (after the timer is running, which the fallback
/// needs) and, for the fallback, gather its pool.
pub fn init(cpu: &crate::cpu::Cpu) -> Source {
    *SOURCE.call_once(|| {
        if cpu.rdseed && hw(Source::Rdseed).is_some() {
            Source::Rdseed
        } else if cpu.rdrand && hw(Source::Rdrand).is_some() {
            Source::Rdrand
        } else {
            *SEED.lock() = jitter_pool();
            Source::Jitter
        }
    })
}

/// One 64-bit word from RDSEED or RDRAND, retrying a few times as Intel
/// advises; `None` if the instruction keeps failing.
fn hw(source: Source) -> Option<u64> {
    for _ in 0..32 {
        let value: u64;
        let ok: u8;
        // SAFETY: the instruction was checked present by CPUID; it writes
        // only the named registers and the carry flag.
        unsafe {
            match source {
                Source::Rdseed => core::arch::asm!(
                    "rdseed {v}", "setc {ok}", v = out(reg) value, ok = out(reg_byte) ok,
                    options(nomem, nostack)
                ),
                _ => core::arch::asm!(
                    "rdrand {v}", "setc {ok}", v = out(reg) value, ok = out(reg_byte) ok,
                    options(nomem, nostack)
                ),
            }
        }
        if ok == 1 {
            return Some(value);
        }
        core::hint::spin_loop();
    }
    None
}

fn jitter_pool() -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(crate::rtc::unix_seconds().to_le_bytes());
    // Samples across several timer ticks: the TSC at each tick edge and
    // the cost of slow port reads vary with the host.
    for _ in 0..8 {
        let t = crate::timer::ticks();
        let mut spins = 0u64;
        while crate::timer::ticks() == t {
            spins += 1;
            // SAFETY: reading the RTC index port's neighbour (status A)
            // has no effect; it is only here for its variable latency.
            let _ = unsafe { x86_64::instructions::port::Port::<u8>::new(0x71).read() };
        }
        // SAFETY: rdtsc reads a counter.
        let tsc = unsafe { core::arch::x86_64::_rdtsc() };
        h.update(tsc.to_le_bytes());
        h.update(spins.to_le_bytes());
    }
    for _ in 0..1024 {
        // SAFETY: as above.
        let a = unsafe { core::arch::x86_64::_rdtsc() };
        // SAFETY: a read of the PIT's channel 0 counter: no memory.
        let _ = unsafe { x86_64::instructions::port::Port::<u8>::new(0x40).read() };
        // SAFETY: as above.
        let b = unsafe { core::arch::x86_64::_rdtsc() };
        h.update([(b.wrapping_sub(a)) as u8, a as u8]);
    }
    h.finalize().into()
}

/// Fill `buf` with random bytes from the chosen source.
pub fn fill(buf: &mut [u8]) {
    let source = SOURCE.get().copied().unwrap_or(Source::Jitter);
    for chunk in buf.chunks_mut(32) {
        let block: [u8; 32] = match source {
            Source::Rdseed | Source::Rdrand => {
                let mut b = [0u8; 32];
                for w in b.chunks_mut(8) {
                    let v = hw(source).or_else(|| hw(Source::Rdrand)).unwrap_or(0);
                    w.copy_from_slice(&v.to_le_bytes());
                }
                b
            }
            Source::Jitter => {
                let i = COUNTER.fetch_add(1, Ordering::Relaxed);
                let mut h = Sha256::new();
                h.update(*SEED.lock());
                h.update(i.to_le_bytes());
                // Fresh TSC bits too, so the stream is not a pure
                // function of the boot-time pool.
                // SAFETY: rdtsc reads a counter.
                h.update(unsafe { core::arch::x86_64::_rdtsc() }.to_le_bytes());
                h.finalize().into()
            }
        };
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
}

/// A random 64-bit number.
pub fn u64() -> u64 {
    let mut b = [0u8; 8];
    fill(&mut b);
    u64::from_le_bytes(b)
}
