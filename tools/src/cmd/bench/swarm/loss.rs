//! False deaths under packet loss: a swarm whose every node drops a share
//! of its gossip, left alone for a while, and watched for members that
//! any view calls suspect or dead although none is.

use std::time::{Duration, Instant};

use super::view::{Views, field};

/// Pause between two polls of every node: suspicions last around a
/// second, so a poll every quarter second sees most of them without
/// loading the cores the nodes need.
const POLL: Duration = Duration::from_millis(250);

/// What the watch saw.
#[derive(Default)]
pub struct Loss {
    /// Polls of every node made.
    pub polls: usize,
    /// Nodes whose view called some member dead at least once.
    pub saw_dead: usize,
    /// The most members one view called dead at once.
    pub max_dead: u64,
    /// Nodes whose view called some member suspect at least once.
    pub saw_suspect: usize,
    /// The most members one view called suspect at once.
    pub max_suspect: u64,
    /// Suspicions refuted over the watch: the sum of every node's rise in
    /// incarnation (a node raises it to answer a suspicion of itself), so
    /// suspicions that came and went between two polls count too.
    pub refuted: u64,
}

/// Poll every node's `/swarm/status` for `span`.
pub fn watch(views: &mut Views, span: Duration) -> Loss {
    let ids = views.ids();
    let incarnations = |v: &mut Views| -> Vec<u64> {
        ids.iter()
            .map(|&id| v.number(id, "/swarm/status", "incarnation").unwrap_or(0))
            .collect()
    };
    let first = incarnations(views);
    let mut dead = vec![false; ids.len()];
    let mut suspect = vec![false; ids.len()];
    let mut out = Loss::default();
    let start = Instant::now();
    while start.elapsed() < span {
        for (i, &id) in ids.iter().enumerate() {
            let status = views.read(id, "/swarm/status").unwrap_or_default();
            let n = |k: &str| field(&status, k).and_then(|v| v.parse().ok()).unwrap_or(0);
            let (d, s): (u64, u64) = (n("dead"), n("suspect"));
            dead[i] |= d > 0;
            suspect[i] |= s > 0;
            out.max_dead = out.max_dead.max(d);
            out.max_suspect = out.max_suspect.max(s);
        }
        out.polls += 1;
        std::thread::sleep(POLL);
    }
    let last = incarnations(views);
    out.refuted = last
        .iter()
        .zip(&first)
        .map(|(l, f)| l.saturating_sub(*f))
        .sum();
    out.saw_dead = dead.iter().filter(|d| **d).count();
    out.saw_suspect = suspect.iter().filter(|s| **s).count();
    out
}
