//! A node SIGKILLed with its agents: how long until every one of them
//! runs on another node, by the `report running` lines of the members
//! left (agent(3) PLACEMENT, Failover).
//!
//! Nothing waits past the bound: an agent not running elsewhere by then
//! is counted as not back, and a run where none came back says so.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::lines::{Ledger, Line};
use crate::cmd::bench::swarm::events::{Followers, unix_ms};
use crate::cmd::bench::swarm::view::Views;
use crate::cmd::cluster::LocalCluster;

/// What one kill showed.
pub struct Failover {
    /// The node killed.
    pub node: u64,
    /// The node that led when it was killed.
    pub leader: u64,
    /// For each of its agents: from the kill until it ran elsewhere, or
    /// `None` if it did not within `bound`.
    pub back: Vec<Option<Duration>>,
    /// How many of them the members' `/events` said were moved.
    pub moved: usize,
    /// How long the run waited.
    pub bound: Duration,
}

/// Agents per node, by the ledger, for every node of `ids`.
pub fn per_node(ledger: &Ledger, names: &[String], ids: &[u64]) -> BTreeMap<u64, usize> {
    let mut counts: BTreeMap<u64, usize> = ids.iter().map(|&id| (id, 0)).collect();
    for n in names {
        if let Some(node) = ledger.get(n).and_then(|t| t.node()) {
            *counts.entry(node).or_default() += 1;
        }
    }
    counts
}

/// SIGKILL the node (not the leader) that runs the most of `names`, and
/// wait at most `bound` for each of its agents to run on another node.
/// `None` when no node but the leader runs any.
pub fn kill_busiest(
    cluster: &mut LocalCluster,
    views: &mut Views,
    f: &Followers<Line>,
    ledger: &mut Ledger,
    names: &[String],
    bound: Duration,
) -> anyhow::Result<Option<Failover>> {
    let leader = cluster.leader().context("finding the leader")?.id;
    let counts = per_node(ledger, names, &views.ids());
    let Some((&node, _)) = counts
        .iter()
        .filter(|(id, n)| **id != leader && **n > 0)
        .max_by_key(|(id, n)| (**n, std::cmp::Reverse(**id)))
    else {
        return Ok(None);
    };
    let here: Vec<String> = names
        .iter()
        .filter(|n| ledger.get(n).and_then(|t| t.node()) == Some(node))
        .cloned()
        .collect();
    // Its runner's name, as its reports gave it.
    let runner = here
        .iter()
        .find_map(|n| ledger.get(n)?.runs.first().map(|r| r.1.clone()));
    let killed_ms = unix_ms();
    let killed = Instant::now();
    cluster
        .kill(node)
        .with_context(|| format!("killing node {node}"))?;
    views.forget(node);
    let back_all = |l: &Ledger| {
        here.iter().all(|n| {
            l.get(n)
                .is_some_and(|t| t.run_since(killed_ms, runner.as_deref()).is_some())
        })
    };
    ledger.pump(f, killed + bound, back_all);
    let back = here
        .iter()
        .map(|n| {
            ledger
                .get(n)
                .and_then(|t| t.run_since(killed_ms, runner.as_deref()))
                .map(|t| Duration::from_millis(t.saturating_sub(killed_ms)))
        })
        .collect();
    let moved = here
        .iter()
        .filter(|n| {
            ledger
                .get(n)
                .and_then(|t| t.moved)
                .is_some_and(|(at, to)| at >= killed_ms && to != node)
        })
        .count();
    Ok(Some(Failover {
        node,
        leader,
        back,
        moved,
        bound,
    }))
}
