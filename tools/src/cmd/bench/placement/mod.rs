//! `cell0 bench placement`: agents placed on the nodes of a swarm
//! (agent(3) PLACEMENT): how long placing and starting them takes, how
//! evenly they spread, and how long a dead node's agents take to run
//! elsewhere; beside the same spawns on a 1-node cell0 and bubblewrap.
//!
//! The swarm is the one `cell0 cluster up N --voters V` starts. Every
//! time comes from the stamps of the members' own `/events` lines (see
//! [`lines`]): `start` and its placement are one log entry, the runner's
//! `report running` says the program runs. Figures are printed beside
//! their targets, marked met or missed; nothing is asserted.

mod failover;
mod host;
mod lines;
mod single;
mod spawn;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::servers::scratch_dir;
use super::swarm::cost::rss_kib;
use super::swarm::events::Followers;
use super::swarm::view::Views;
use super::swarm::{Figure, percentile, print_table};
use crate::cmd::cluster::{Layout, LocalCluster};
use lines::Ledger;

/// Scheduling (start committed to placed committed), p95, at most.
const SCHED_P95_TARGET_MS: f64 = 20.0;
/// A spawn on the chosen node against one on a 1-node cell0, p50, at
/// most (as fast, within a tenth).
const SPAWN_RATIO_TARGET: f64 = 1.1;
/// Every agent of a dead node running elsewhere, at most (the goal: 2 s).
const FAILOVER_TARGET: f64 = 5.0;
const FAILOVER_GOAL: f64 = 2.0;
/// Agents started one at a time first (and on the 1-node peer), for the
/// spawn comparison.
const ALONE: usize = 20;
/// Agents started together after those.
const BATCH: usize = 50;

/// What `cell0 bench placement` runs.
pub struct Plan {
    /// Swarm size.
    pub nodes: usize,
    /// Voters the swarm wants.
    pub voters: u8,
    /// Agents to run.
    pub agents: usize,
    /// Whether to SIGKILL a node and time its agents' failover.
    pub kill: bool,
    /// How long the failover may take before its agents count as not back.
    pub failover: Duration,
    /// Keep the nodes' data and logs after a successful run.
    pub keep: bool,
}

/// Run the benchmark and print its figures.
pub fn run(plan: &Plan) -> anyhow::Result<()> {
    anyhow::ensure!(
        (2..=crate::cmd::cluster::MAX_NODES).contains(&plan.nodes),
        "--nodes takes one swarm size from 2 to {}",
        crate::cmd::cluster::MAX_NODES
    );
    anyhow::ensure!(
        usize::from(plan.voters) <= plan.nodes,
        "--voters {} is more than --nodes {}",
        plan.voters,
        plan.nodes
    );
    anyhow::ensure!(plan.agents > 0, "--agents must be at least 1");
    let exe = std::env::current_exe()?;
    println!(
        "cell0 bench placement: {} agents ({}) on a swarm of {} `cell0 serve` processes on loopback ({}), {} voters",
        plan.agents,
        spawn::PROGRAM_LABEL,
        plan.nodes,
        exe.display(),
        plan.voters
    );
    if exe.components().any(|c| c.as_os_str() == "debug") {
        println!("note: a debug build; the figures are for `cargo build --release`'s binary");
    }
    let nofile = host::raise_nofile();
    let (agents, notes) = host::admit(plan.agents, plan.nodes, nofile);
    for n in &notes {
        println!("note: {n}");
    }
    if agents == 0 {
        anyhow::bail!("this host has room for no agent: {}", notes.join("; "));
    }
    let dir = scratch_dir(&std::env::temp_dir(), &format!("placement{}", plan.nodes))?;
    println!("data and logs in {}", dir.display());
    let r = measure(plan, agents, &dir);
    match &r {
        Ok(()) if !plan.keep => {
            let _ = std::fs::remove_dir_all(&dir);
        }
        _ => println!("the nodes' data and logs stay in {}", dir.display()),
    }
    r.with_context(|| format!("the nodes' logs are in {}", dir.display()))
}

/// From agent `name`'s `start` committed to its first `report running`.
fn start_to_run(ledger: &Ledger, name: &str) -> Option<Duration> {
    let t = ledger.get(name)?;
    Some(Duration::from_millis(t.first_run()?.checked_sub(t.start?)?))
}

/// From agent `name`'s `start` committed to its placement committed.
fn start_to_placed(ledger: &Ledger, name: &str) -> Option<Duration> {
    let t = ledger.get(name)?;
    Some(Duration::from_millis(t.placed?.0.checked_sub(t.start?)?))
}

/// From agent `name`'s `start` committed until the node it was placed
/// on applied it (the runner there can see it from then on).
fn start_to_there(ledger: &Ledger, name: &str) -> Option<Duration> {
    let t = ledger.get(name)?;
    Some(Duration::from_millis(
        t.placed_there()?.checked_sub(t.start?)?,
    ))
}

/// From agent `name`'s `start` committed to a runner's claim committed.
fn start_to_claim(ledger: &Ledger, name: &str) -> Option<Duration> {
    let t = ledger.get(name)?;
    Some(Duration::from_millis(t.claimed?.checked_sub(t.start?)?))
}

/// Milliseconds, or `never`.
fn ms(t: Option<Duration>) -> String {
    t.map_or("never".into(), |t| {
        format!("{:.1}", t.as_secs_f64() * 1000.0)
    })
}

/// `p50 A  p95 B  p99 C ms` of `times`.
fn quantiles(times: &[Option<Duration>]) -> String {
    format!(
        "p50 {}  p95 {}  p99 {}  max {} ms",
        ms(percentile(times, 0.5)),
        ms(percentile(times, 0.95)),
        ms(percentile(times, 0.99)),
        ms(percentile(times, 1.0)),
    )
}

/// Resident memory of every running node, MiB: min, mean, max.
fn node_rss(cluster: &mut LocalCluster, ids: &[u64]) -> (f64, f64, f64) {
    let v: Vec<f64> = ids
        .iter()
        .filter_map(|&id| cluster.pid(id))
        .filter_map(rss_kib)
        .map(|k| k as f64 / 1024.0)
        .collect();
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let min = v.iter().copied().fold(f64::MAX, f64::min);
    let max = v.iter().copied().fold(f64::MIN, f64::max);
    (min, v.iter().sum::<f64>() / v.len() as f64, max)
}

fn measure(plan: &Plan, agents: usize, dir: &Path) -> anyhow::Result<()> {
    let n = plan.nodes;
    let wait = Duration::from_secs(30) + Duration::from_millis(300) * n as u32;
    let layout = Layout::free_ports(n, &dir.join("swarm"))?;
    let began = Instant::now();
    let mut cluster = LocalCluster::start(&layout, Some(plan.voters))?;
    let mut views = Views::new(&cluster)?;
    let ids = views.ids();
    let mut whole =
        |v: &mut Views, id: u64| v.number(id, "/swarm/status", "alive") == Some(n as u64);
    let seen = views.watch(Instant::now(), wait, &ids, &mut [&mut whole]);
    anyhow::ensure!(
        seen.iter().flatten().all(Option::is_some),
        "not every member saw {n} alive within {wait:?}"
    );
    println!(
        "{n} nodes formed, every member seeing all alive, in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    let (_, idle_mean, idle_max) = node_rss(&mut cluster, &ids);

    // The agents, through the leader.
    let f = Followers::with_parser(&cluster, lines::parse)?;
    let leader = cluster.leader()?.id;
    let c = spawn::client(&cluster, leader)?;
    let names: Vec<String> = (0..agents).map(|i| format!("a{i}")).collect();
    let names = names.as_slice();
    let alone = ALONE.min(agents);
    let mut ledger = Ledger::default();
    let made = Instant::now();
    let started = spawn::start_all(&c, &f, &mut ledger, names, alone, BATCH, wait)?;
    // The figures are of the agents started.
    let names = &names[..started.asked];
    let agents = names.len();
    let alone = alone.min(agents);
    println!(
        "{} agents made and started through node {leader} (the leader) in {:.1} s: the first {alone} one at a time, the rest {BATCH} at a time, each batch waited for; {} did not run",
        started.asked,
        made.elapsed().as_secs_f64(),
        started.not_running
    );
    // The other members' lines of the last batch.
    std::thread::sleep(Duration::from_millis(300));
    for l in f.drain() {
        ledger.take(l);
    }

    let sched: Vec<Option<Duration>> = names.iter().map(|a| start_to_placed(&ledger, a)).collect();
    let spawned: Vec<Option<Duration>> = names.iter().map(|a| start_to_run(&ledger, a)).collect();
    let same_ms = names
        .iter()
        .filter(|a| start_to_placed(&ledger, a) == Some(Duration::ZERO))
        .count();
    println!();
    println!(
        "scheduling, start committed -> placed committed ({agents} agents; one log entry, so one apply: {same_ms} of {agents} with the same stamp): {}",
        quantiles(&sched)
    );
    println!(
        "spawn, start committed -> report running on the chosen node ({agents} agents): {}",
        quantiles(&spawned)
    );
    println!(
        "  of which the first {alone}, started one at a time: {}",
        quantiles(&spawned[..alone])
    );
    println!(
        "  the start writes themselves, sent until answered (committed), as the client saw them: {}",
        quantiles(&started.writes)
    );
    let there: Vec<Option<Duration>> = names.iter().map(|a| start_to_there(&ledger, a)).collect();
    println!(
        "  start committed -> the chosen node applied it (its runner may start it): {}",
        quantiles(&there)
    );
    let claim: Vec<Option<Duration>> = names.iter().map(|a| start_to_claim(&ledger, a)).collect();
    println!(
        "  start committed -> the runner's `report claim` committed (sent with its first reports; the program starts without waiting for it): {}",
        quantiles(&claim)
    );
    let on_leader = |want: bool| -> Vec<Option<Duration>> {
        names
            .iter()
            .filter(|a| {
                ledger
                    .get(a)
                    .and_then(|t| t.placed)
                    .is_some_and(|(_, node)| (node == leader) == want)
            })
            .map(|a| start_to_run(&ledger, a))
            .collect()
    };
    let (led, other) = (on_leader(true), on_leader(false));
    println!(
        "  spawn on the leader's node ({} agents): {}; on the others ({}): {}",
        led.len(),
        quantiles(&led),
        other.len(),
        quantiles(&other)
    );
    let counts = failover::per_node(&ledger, names, &ids);
    let per: Vec<usize> = counts.values().copied().collect();
    let (min, max) = (
        per.iter().copied().min().unwrap_or(0),
        per.iter().copied().max().unwrap_or(0),
    );
    let mean = per.iter().sum::<usize>() as f64 / per.len().max(1) as f64;
    let evenness = if mean > 0.0 { max as f64 / mean } else { 0.0 };
    println!(
        "evenness, agents per node: min {min}  max {max}  mean {mean:.1}  max/mean {evenness:.2}  ({})",
        counts
            .iter()
            .map(|(id, k)| format!("node {id}: {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let (rss_min, rss_mean, rss_max) = node_rss(&mut cluster, &ids);
    println!(
        "resident memory of nodes (runner included, not the agents): idle mean {idle_mean:.1} max {idle_max:.1} MiB; with {agents} agents min {rss_min:.1} mean {rss_mean:.1} max {rss_max:.1} MiB"
    );
    if ledger.lost > 0 {
        println!(
            "note: the followers fell behind and lost {} /events lines: some times may be missing",
            ledger.lost
        );
    }

    let fo = if plan.kill {
        let fo = failover::kill_busiest(
            &mut cluster,
            &mut views,
            &f,
            &mut ledger,
            names,
            plan.failover,
        )?;
        println!();
        match &fo {
            Some(fo) => {
                let not_back = fo.back.iter().filter(|b| b.is_none()).count();
                let k = fo.back.len();
                if not_back == k {
                    println!(
                        "failover: node {} (not the leader, node {} is) SIGKILLed with {k} agents: not moved within {} s (none ran elsewhere; {} moved lines)",
                        fo.node,
                        fo.leader,
                        fo.bound.as_secs(),
                        fo.moved
                    );
                } else {
                    println!(
                        "failover: node {} (not the leader, node {} is) SIGKILLed with {k} agents: from the kill until each ran on another node p50 {}  max {} s; {not_back} not back within {} s; {} moved lines",
                        fo.node,
                        fo.leader,
                        secs3(percentile(&fo.back, 0.5)),
                        secs3(percentile(&fo.back, 1.0)),
                        fo.bound.as_secs(),
                        fo.moved
                    );
                }
            }
            None => println!("failover: no node but the leader runs an agent: not measured"),
        }
        fo
    } else {
        None
    };
    drop(views);
    drop(f);
    cluster.stop();
    drop(cluster);

    // The peers, with the swarm gone.
    println!();
    let one_node = single::one_node(&dir.join("one"), alone, wait)?;
    let one = one_node.spawns;
    println!(
        "peer: 1-node cell0 (no swarm), {alone} agents one at a time, start committed -> report running: {}",
        quantiles(&one)
    );
    println!(
        "  its start writes, sent until answered: {}",
        quantiles(&one_node.writes)
    );
    let bw = single::bwrap(alone)?;
    match &bw {
        Some(b) => println!(
            "peer: {}, {alone} runs, until it ran and ended: {}",
            super::agents::BWRAP_LABEL,
            quantiles(b)
        ),
        None => {
            println!("peer: bwrap is not installed (apt-get install bubblewrap): no bwrap figures")
        }
    }
    let p50 = |v: &[Option<Duration>]| percentile(v, 0.5).map(|d| d.as_secs_f64());
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let swarm_alone = p50(&spawned[..alone]);
    let vs_one = ratio(swarm_alone, p50(&one));
    let vs_bwrap = ratio(swarm_alone, bw.as_deref().and_then(p50));
    let r2 = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.2}"));
    println!(
        "spawn p50, one at a time: swarm/1-node cell0 {}  swarm/bwrap {}",
        r2(vs_one),
        r2(vs_bwrap)
    );

    // The closing table.
    let sched95 = percentile(&sched, 0.95);
    let mut figures = vec![
        Figure {
            label: "scheduling p95, start -> placed committed, ms".into(),
            measured: ms(sched95),
            target: format!("< {SCHED_P95_TARGET_MS:.0}"),
            met: Some(sched95.is_some_and(|t| t.as_secs_f64() * 1000.0 < SCHED_P95_TARGET_MS)),
        },
        Figure {
            label: "spawn p95, start -> running on its node, ms".into(),
            measured: ms(percentile(&spawned, 0.95)),
            target: "-".into(),
            met: None,
        },
        Figure {
            label: "spawn p50 one at a time, swarm/1-node cell0".into(),
            measured: r2(vs_one),
            target: format!("<= {SPAWN_RATIO_TARGET:.2}"),
            met: Some(vs_one.is_some_and(|r| r <= SPAWN_RATIO_TARGET)),
        },
        Figure {
            label: "spawn p50 one at a time, swarm/bwrap".into(),
            measured: r2(vs_bwrap),
            target: "-".into(),
            met: None,
        },
        Figure {
            label: "evenness, agents per node max/mean".into(),
            measured: format!("{evenness:.2}"),
            target: "-".into(),
            met: None,
        },
        Figure {
            label: "resident memory per node MiB, max (mean)".into(),
            measured: format!("{rss_max:.1} ({rss_mean:.1})"),
            target: "-".into(),
            met: None,
        },
    ];
    if plan.kill {
        let (max, p50, not_back, bound) = match &fo {
            Some(fo) => (
                percentile(&fo.back, 1.0),
                percentile(&fo.back, 0.5),
                Some(fo.back.iter().filter(|b| b.is_none()).count()),
                fo.bound,
            ),
            None => (None, None, None, plan.failover),
        };
        let not_moved = format!("not moved within {} s", bound.as_secs());
        let shown = |t: Option<Duration>| match (&fo, t) {
            (_, Some(t)) => format!("{:.3}", t.as_secs_f64()),
            (Some(_), None) => not_moved.clone(),
            (None, None) => "not measured".into(),
        };
        figures.push(Figure {
            label: "failover, all agents running elsewhere, max s".into(),
            measured: shown(max),
            target: format!("< {FAILOVER_TARGET:.0} (goal {FAILOVER_GOAL:.0})"),
            met: Some(max.is_some_and(|t| t.as_secs_f64() < FAILOVER_TARGET)),
        });
        figures.push(Figure {
            label: "failover, agents running elsewhere, p50 s".into(),
            measured: shown(p50),
            target: "-".into(),
            met: None,
        });
        figures.push(Figure {
            label: format!("failover, agents not back within {} s", bound.as_secs()),
            measured: not_back.map_or("not measured".into(), |k| k.to_string()),
            target: "0".into(),
            met: Some(not_back == Some(0)),
        });
    }
    print_table(&figures);
    Ok(())
}

/// Seconds to three places, or `never`.
fn secs3(t: Option<Duration>) -> String {
    t.map_or("never".into(), |t| format!("{:.3}", t.as_secs_f64()))
}
