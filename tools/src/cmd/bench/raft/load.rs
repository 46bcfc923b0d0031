//! Timing writers that each commit one write at a time, on threads of
//! their own, for a fixed span: the same driver for Cell0 and etcd, so
//! the two are timed alike.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use super::super::workload::percentile_us;

/// One client with its own connection that makes one commit at a time.
pub trait Writer: Send + 'static {
    /// Make one write and return once the system says it committed.
    fn commit(&mut self) -> anyhow::Result<()>;
}

/// What a case measured.
pub struct Commits {
    elapsed: Duration,
    /// Sorted nanoseconds of every commit, over all writers.
    latencies: Vec<u64>,
}

impl Commits {
    /// Commits per second over all writers.
    pub fn per_sec(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The `p` quantile of a commit's latency, in microseconds.
    pub fn latency_us(&self, p: f64) -> f64 {
        percentile_us(&self.latencies, p)
    }

    /// How many commits were made.
    pub fn count(&self) -> usize {
        self.latencies.len()
    }
}

/// Run every writer for `span`, all starting together.
pub fn measure<W: Writer>(writers: Vec<W>, span: Duration) -> anyhow::Result<Commits> {
    let stop = Arc::new(AtomicBool::new(false));
    // The main thread waits too, so the clock starts when all are ready.
    let start = Arc::new(Barrier::new(writers.len() + 1));
    let threads: Vec<_> = writers
        .into_iter()
        .map(|mut w| {
            let (stop, start) = (stop.clone(), start.clone());
            std::thread::spawn(move || -> anyhow::Result<Vec<u64>> {
                // One untimed commit, so a first request's setup (a
                // connection's first use, a lazily opened file) is not
                // counted as commit latency.
                let warm = w.commit();
                start.wait();
                warm?;
                let mut lat = Vec::with_capacity(1 << 14);
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    w.commit()?;
                    lat.push(t0.elapsed().as_nanos() as u64);
                }
                Ok(lat)
            })
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    std::thread::sleep(span);
    stop.store(true, Ordering::Relaxed);
    let elapsed = t0.elapsed();
    let mut latencies = Vec::new();
    for t in threads {
        latencies.extend(
            t.join()
                .map_err(|_| anyhow::anyhow!("a writer thread panicked"))??,
        );
    }
    latencies.sort_unstable();
    Ok(Commits { elapsed, latencies })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sleepy;

    impl Writer for Sleepy {
        fn commit(&mut self) -> anyhow::Result<()> {
            std::thread::sleep(Duration::from_millis(1));
            Ok(())
        }
    }

    #[test]
    fn every_writer_commits_and_is_counted() {
        let c = measure(vec![Sleepy, Sleepy], Duration::from_millis(100)).unwrap();
        assert!(c.count() >= 2);
        assert!(c.per_sec() > 0.0);
        assert!(c.latency_us(0.99) >= c.latency_us(0.5));
        assert!(c.latency_us(0.5) >= 1000.0);
    }
}
