//! The latency a client of its own sees while the connections are held:
//! one Tread of a small file (a node's `/status`) on a fid opened once,
//! so each sample is one 9P round trip.

use std::time::Instant;

use anyhow::Context;

use super::super::conn::Conn;
use super::super::servers::Target;
use super::super::workload::percentile_us;

/// The fid the probe reads.
const FILE: u32 = 1;
/// Reads made before the timed ones.
const WARM_UP: usize = 100;

/// p50 and p99 in µs of a Tread at offset 0.
#[derive(Clone, Copy)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// Time `reads` Treads of `t.small` from a fresh connection, after
/// [`WARM_UP`] untimed ones.
pub fn reads(t: &Target, reads: usize) -> anyhow::Result<Latency> {
    let mut c = Conn::open(&t.addr, &t.aname)
        .with_context(|| format!("the /{} client attaching {}", t.small, t.addr))?;
    c.walk(FILE, &[&t.small])?;
    c.lopen(FILE, libc::O_RDONLY as u32)?;
    // The first reads after a quiet spell pay for cold caches and a
    // sleeping core: left out of the figures.
    for _ in 0..WARM_UP {
        c.read(FILE, 8192)?;
    }
    let mut lat = Vec::with_capacity(reads);
    for _ in 0..reads {
        let t0 = Instant::now();
        let n = c.read(FILE, 8192)?;
        lat.push(t0.elapsed().as_nanos() as u64);
        anyhow::ensure!(n > 0, "/{} read empty", t.small);
    }
    c.clunk(FILE)?;
    lat.sort_unstable();
    Ok(Latency {
        p50: percentile_us(&lat, 0.50),
        p99: percentile_us(&lat, 0.99),
    })
}
