//! What a quiet swarm costs each node: gossip messages and bytes (from
//! the node's own `/swarm/status` counters), resident memory and CPU
//! (from /proc), over one window in which nothing else happens.

use std::time::{Duration, Instant};

use anyhow::Context;

use super::view::{Views, field};
use crate::cmd::cluster::LocalCluster;

/// Per-node rates over the window, one entry per node.
pub struct Cost {
    /// Gossip datagrams sent and received, per second.
    pub messages: Vec<f64>,
    /// Gossip bytes sent and received, per second.
    pub bytes: Vec<f64>,
    /// Resident memory at the end of the window, KiB.
    pub rss_kib: Vec<f64>,
    /// CPU time (user and system) over the window, percent of one core.
    pub cpu: Vec<f64>,
}

/// One node's counters at one moment.
struct Sample {
    messages: u64,
    bytes: u64,
    /// utime + stime, clock ticks.
    ticks: u64,
}

/// Measure every node of `cluster` over `window`, reading nothing during it.
pub fn measure(
    cluster: &mut LocalCluster,
    views: &mut Views,
    window: Duration,
) -> anyhow::Result<Cost> {
    let ids = views.ids();
    let pids = ids
        .iter()
        .map(|&id| {
            cluster
                .pid(id)
                .with_context(|| format!("node {id} is not running"))
        })
        .collect::<anyhow::Result<Vec<u32>>>()?;
    let take = |views: &mut Views| -> anyhow::Result<Vec<Sample>> {
        ids.iter()
            .zip(&pids)
            .map(|(&id, &pid)| sample(views, id, pid))
            .collect()
    };
    let before = take(views)?;
    let start = Instant::now();
    std::thread::sleep(window);
    let after = take(views)?;
    let secs = start.elapsed().as_secs_f64();
    let ticks_per_sec = clock_ticks_per_sec();
    let rate = |f: fn(&Sample) -> u64| -> Vec<f64> {
        before
            .iter()
            .zip(&after)
            .map(|(b, a)| f(a).saturating_sub(f(b)) as f64 / secs)
            .collect()
    };
    Ok(Cost {
        messages: rate(|s| s.messages),
        bytes: rate(|s| s.bytes),
        rss_kib: pids
            .iter()
            .map(|&p| rss_kib(p).unwrap_or(0) as f64)
            .collect(),
        cpu: rate(|s| s.ticks)
            .into_iter()
            .map(|t| 100.0 * t / ticks_per_sec)
            .collect(),
    })
}

fn sample(views: &mut Views, id: u64, pid: u32) -> anyhow::Result<Sample> {
    let s = views
        .read(id, "/swarm/status")
        .with_context(|| format!("reading node {id}'s /swarm/status"))?;
    let n = |k: &str| {
        field(&s, k)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(Sample {
        messages: n("sent") + n("received"),
        bytes: n("sent-bytes") + n("received-bytes"),
        ticks: cpu_ticks(pid).with_context(|| format!("reading /proc/{pid}/stat (node {id})"))?,
    })
}

/// utime + stime of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: count fields
    // after its closing one (state is field 3; utime, stime are 14, 15).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// VmRSS of process `pid`, KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf(3) reads a configuration value; it takes no
    // pointers and has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Mean and maximum of `v` (zeros when empty).
pub fn mean_max(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    (mean, v.iter().copied().fold(f64::MIN, f64::max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_ticks_and_rss_are_read() {
        let me = std::process::id();
        assert!(cpu_ticks(me).is_some());
        assert!(rss_kib(me).is_some_and(|k| k > 0));
        assert_eq!(mean_max(&[1.0, 3.0]), (2.0, 3.0));
    }
}
