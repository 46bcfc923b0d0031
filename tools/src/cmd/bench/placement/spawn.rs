//! Making agents and starting them, in batches, through the 9P client,
//! and waiting until each batch runs (by the members' `/events`).

use std::time::{Duration, Instant};

use anyhow::Context;
use ninep::Dialect;

use super::lines::{Ledger, Line};
use crate::client::{Client, Options};
use crate::cmd::bench::agents::{ctl, mkdir_agent};
use crate::cmd::bench::swarm::events::Followers;
use crate::cmd::cluster::LocalCluster;
use crate::identity::ClientToken;

/// What each agent runs, with limits small enough that a node's capacity
/// (its CPUs and four times its memory, agent(3)) admits hundreds; one
/// write, so `start` and its placement are one log entry.
pub const PROGRAM: &str = "exec /bin/sleep 1000000\nlimit cpu=10 mem=32M pids=16\nstart\n";

/// How the figures name [`PROGRAM`].
pub const PROGRAM_LABEL: &str = "/bin/sleep 1000000, limit cpu=10 mem=32M pids=16";

/// A client of node `id` of `cluster`, with the cluster's token.
pub fn client(cluster: &LocalCluster, id: u64) -> anyhow::Result<Client> {
    let token = ClientToken::resolve(Some(cluster.token()), None)?;
    let n = cluster
        .nodes()
        .iter()
        .find(|n| n.id == id)
        .with_context(|| format!("no node {id}"))?;
    Client::connect_with(&n.addr, &Options::new(Dialect::U).with_token(&token))
        .with_context(|| format!("connecting to node {id} at {}", n.addr))
}

/// How a run of [`start_all`] went.
pub struct Started {
    /// Agents made and started.
    pub asked: usize,
    /// Of those, how many never said they ran within the wait.
    pub not_running: usize,
    /// How long each `start` write took, as this client saw it (sent
    /// until answered: committed), in the order made.
    pub writes: Vec<Option<Duration>>,
}

/// Make and start `names` through `c`: the first `alone` one at a time
/// (each waited for before the next), the rest `batch` at a time (all
/// made, then all started, then waited for together); each batch may
/// take `wait` to run. Lines from `f` go into `ledger`. A batch that does
/// not run in time is said, given `wait` more, and ends the run: the
/// runners have fallen behind, and more agents would only pile up (the
/// figures are of those started).
pub fn start_all(
    c: &Client,
    f: &Followers<Line>,
    ledger: &mut Ledger,
    names: &[String],
    alone: usize,
    batch: usize,
    wait: Duration,
) -> anyhow::Result<Started> {
    let alone = alone.min(names.len());
    let batches = names[..alone]
        .chunks(1)
        .chain(names[alone..].chunks(batch.max(1)));
    let mut asked = 0;
    let mut writes = Vec::with_capacity(names.len());
    for b in batches {
        for n in b {
            mkdir_agent(c, n)?;
        }
        for n in b {
            let t0 = Instant::now();
            ctl(c, n, PROGRAM)?;
            writes.push(Some(t0.elapsed()));
        }
        asked += b.len();
        let started = &names[..asked];
        let running = |l: &Ledger| {
            started
                .iter()
                .all(|n| l.get(n).is_some_and(|t| t.first_run().is_some()))
        };
        if ledger.pump(f, Instant::now() + wait, running) {
            continue;
        }
        let late = |l: &Ledger| -> Vec<String> {
            started
                .iter()
                .filter(|n| l.get(n).is_none_or(|t| t.first_run().is_none()))
                .cloned()
                .collect()
        };
        let first = late(ledger);
        println!(
            "note: {} of the {asked} agents started did not report running within {wait:?} of their batch's start; one of them:\n  {}",
            first.len(),
            c.read_file(&format!("/agent/{}/status", first[0]))
                .map(|s| String::from_utf8_lossy(&s).trim_end().replace('\n', "; "))
                .unwrap_or_default()
        );
        ledger.pump(f, Instant::now() + wait, running);
        let not_running = late(ledger).len();
        if asked < names.len() {
            println!(
                "note: the runners fell behind: {not_running} still not running {wait:?} later; starting no more than these {asked} of {}",
                names.len()
            );
        }
        return Ok(Started {
            asked,
            not_running,
            writes,
        });
    }
    Ok(Started {
        asked,
        not_running: 0,
        writes,
    })
}
