//! Time, supplied by the host or the kernel so the core stays deterministic.

/// A source of time.
pub trait Clock {
    /// Nanoseconds since the Unix epoch (for mtimes and event stamps).
    fn unix_nanos(&self) -> u64;
    /// Nanoseconds since some fixed point at or before start (for uptime);
    /// never goes backwards.
    fn monotonic_nanos(&self) -> u64;
}

/// A clock that reads whatever it was last set to: for tests and simulation.
#[derive(Clone, Copy, Debug, Default)]
pub struct FixedClock {
    /// What `unix_nanos` returns.
    pub unix: u64,
    /// What `monotonic_nanos` returns.
    pub mono: u64,
}

impl Clock for FixedClock {
    fn unix_nanos(&self) -> u64 {
        self.unix
    }
    fn monotonic_nanos(&self) -> u64 {
        self.mono
    }
}
