//! `cell0 bench raft`: how fast a replicated write commits, on Cell0
//! clusters and, as a yardstick, on a three-member etcd cluster.
//!
//! A commit is one write that returns only once the system has made it
//! durable on a majority: a `note` to Cell0's `/ctl`, a PUT to etcd. Each
//! writer is a thread with its own connection to the leader, making one
//! write at a time, so with one writer the figure is the latency of a
//! commit and with many it is how well the system batches them. Both
//! systems keep their defaults: every commit is fsynced. Figures are
//! printed, never asserted.

mod cell0;
pub(super) mod etcd;
mod http;
mod load;

use std::time::Duration;

use anyhow::Context;

use load::{Commits, Writer};

/// Nodes in the etcd cluster the figures are compared with.
pub(super) const ETCD_NODES: usize = 3;

/// What `cell0 bench raft` runs.
pub struct Plan {
    /// How long each case runs.
    pub span: Duration,
    /// Writer counts.
    pub writers: Vec<usize>,
    /// Cell0 cluster sizes.
    pub nodes: Vec<usize>,
    /// Whether to measure etcd too.
    pub etcd: bool,
}

/// One row of the table.
struct Row {
    system: &'static str,
    nodes: usize,
    writers: usize,
    commits: Commits,
}

/// Run every case of `plan` and print the table and the ratios.
pub fn run(plan: &Plan) -> anyhow::Result<()> {
    anyhow::ensure!(
        !plan.writers.is_empty() && plan.writers.iter().all(|&w| (1..=256).contains(&w)),
        "--writers takes writer counts from 1 to 256, such as 1,64"
    );
    anyhow::ensure!(
        !plan.nodes.is_empty() && plan.nodes.iter().all(|&n| (1..=9).contains(&n)),
        "--nodes takes Cell0 cluster sizes from 1 to 9, such as 1,3"
    );
    // Before anything starts: a missing etcd is a setup error, not a
    // result to find out after the Cell0 cases ran.
    let etcd_version = if plan.etcd {
        Some(etcd::version()?)
    } else {
        None
    };
    println!(
        "cell0 bench raft: {} s per case; a commit is one write answered once it is fsynced on a majority",
        plan.span.as_secs()
    );
    println!("each writer is a thread with its own connection to the leader, one write at a time");
    println!(
        "cell0-follower: the same writes sent to a follower, which forwards them to the leader and answers once it has applied them"
    );
    println!("cell0: `note bench` written to /ctl over 9P2000.L");
    println!(
        "*-read: each writer reads instead, one linearizable read at a time: cell0 walks to /raft/status and clunks the fid (on the leader, or -read-f on a follower); etcd reads a key (POST {}, its default linearizable range)",
        etcd::RANGE
    );
    if let Some(v) = &etcd_version {
        println!(
            "etcd {v}: a PUT of a 10-byte value through the HTTP/JSON gateway (POST {}), keep-alive",
            etcd::PUT
        );
    }
    println!();
    println!(
        "{:<14} {:>5} {:>7} {:>8} {:>10} {:>10} {:>10}",
        "system", "nodes", "writers", "commits", "commits/s", "p50 µs", "p99 µs"
    );
    let mut rows = Vec::new();
    for &n in &plan.nodes {
        let cluster =
            cell0::Cluster::start(n).with_context(|| format!("starting a Cell0 cluster of {n}"))?;
        let (leader, aname) = (cluster.leader()?, cluster.aname()?);
        for &w in &plan.writers {
            let writers = (0..w)
                .map(|_| cell0::Cell0Writer::open(&leader, &aname))
                .collect::<anyhow::Result<Vec<_>>>()?;
            rows.push(case("cell0", n, w, writers, plan.span)?);
        }
        if let Some(follower) = cluster.follower()? {
            for &w in &plan.writers {
                let writers = (0..w)
                    .map(|_| cell0::Cell0Writer::open(&follower, &aname))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                rows.push(case("cell0-follower", n, w, writers, plan.span)?);
            }
        }
        for &w in &plan.writers {
            let readers = (0..w)
                .map(|_| cell0::Cell0Reader::open(&leader, &aname))
                .collect::<anyhow::Result<Vec<_>>>()?;
            rows.push(case("cell0-read", n, w, readers, plan.span)?);
        }
        if let Some(follower) = cluster.follower()? {
            for &w in &plan.writers {
                let readers = (0..w)
                    .map(|_| cell0::Cell0Reader::open(&follower, &aname))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                rows.push(case("cell0-read-f", n, w, readers, plan.span)?);
            }
        }
    }
    if etcd_version.is_some() {
        let cluster = etcd::Etcd::start(ETCD_NODES)?;
        let leader = cluster.leader()?;
        for &w in &plan.writers {
            let writers = (0..w)
                .map(|i| etcd::EtcdWriter::open(&leader, i))
                .collect::<anyhow::Result<Vec<_>>>()?;
            rows.push(case("etcd", ETCD_NODES, w, writers, plan.span)?);
        }
        for &w in &plan.writers {
            let readers = (0..w)
                .map(|_| etcd::EtcdReader::open(&leader))
                .collect::<anyhow::Result<Vec<_>>>()?;
            rows.push(case("etcd-read", ETCD_NODES, w, readers, plan.span)?);
        }
    }
    print_ratios(&rows);
    Ok(())
}

/// Measure one case and print its row.
fn case<W: Writer>(
    system: &'static str,
    nodes: usize,
    writers: usize,
    clients: Vec<W>,
    span: Duration,
) -> anyhow::Result<Row> {
    let commits = load::measure(clients, span)
        .with_context(|| format!("{system}, {nodes} nodes, {writers} writers"))?;
    println!(
        "{:<14} {:>5} {:>7} {:>8} {:>10.0} {:>10.0} {:>10.0}",
        system,
        nodes,
        writers,
        commits.count(),
        commits.per_sec(),
        commits.latency_us(0.50),
        commits.latency_us(0.99)
    );
    Ok(Row {
        system,
        nodes,
        writers,
        commits,
    })
}

/// Cell0 against etcd at the same cluster size and writer count.
fn print_ratios(rows: &[Row]) {
    let mut header = false;
    let pairs = [("cell0", "etcd"), ("cell0-read", "etcd-read")];
    for (c, peer) in rows.iter().filter_map(|r| {
        pairs
            .iter()
            .find(|(mine, _)| *mine == r.system)
            .map(|(_, peer)| (r, *peer))
    }) {
        let Some(e) = rows
            .iter()
            .find(|e| e.system == peer && e.nodes == c.nodes && e.writers == c.writers)
        else {
            continue;
        };
        if !header {
            println!();
            header = true;
        }
        println!(
            "{}/{}, {} nodes, {} writer{}: throughput {:.2}, p99 latency {:.2}",
            c.system,
            e.system,
            c.nodes,
            c.writers,
            if c.writers == 1 { "" } else { "s" },
            c.commits.per_sec() / e.commits.per_sec(),
            c.commits.latency_us(0.99) / e.commits.latency_us(0.99),
        );
    }
}
