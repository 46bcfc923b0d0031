//! The peers of the swarm's spawns: the same agents on a 1-node cell0
//! (no swarm, its own runner claiming them), timed the same way, and
//! bubblewrap sandboxes as `cell0 bench agents` runs them.

use std::path::Path;
use std::time::Duration;

use super::lines::{self, Ledger};
use super::spawn;
use crate::cmd::bench::agents::bwrap_runs;
use crate::cmd::bench::swarm::events::Followers;
use crate::cmd::cluster::{Layout, LocalCluster};

/// Times of agents on one node: each a time, or `None` if it never came.
pub struct OneNode {
    /// From `start` committed to `report running`, by its `/events`.
    pub spawns: Vec<Option<Duration>>,
    /// The `start` writes, as the client saw them.
    pub writes: Vec<Option<Duration>>,
}

/// `count` agents started one at a time on a fresh 1-node cell0 in
/// `dir`, each waited for at most `wait`.
pub fn one_node(dir: &Path, count: usize, wait: Duration) -> anyhow::Result<OneNode> {
    let layout = Layout::free_ports(1, dir)?;
    let cluster = LocalCluster::start(&layout, None)?;
    let f = Followers::with_parser(&cluster, lines::parse)?;
    let c = spawn::client(&cluster, 1)?;
    let names: Vec<String> = (0..count).map(|i| format!("one{i}")).collect();
    let mut ledger = Ledger::default();
    let started = spawn::start_all(&c, &f, &mut ledger, &names, count, 1, wait)?;
    Ok(OneNode {
        spawns: names
            .iter()
            .map(|n| super::start_to_run(&ledger, n))
            .collect(),
        writes: started.writes,
    })
}

/// `runs` bubblewrap sandboxes one after another, each until its `true`
/// has run and it ended; `None` if bwrap is not installed.
pub fn bwrap(runs: usize) -> anyhow::Result<Option<Vec<Option<Duration>>>> {
    Ok(bwrap_runs(runs)?.map(|ns| {
        ns.into_iter()
            .map(|n| Some(Duration::from_nanos(n)))
            .collect()
    }))
}
