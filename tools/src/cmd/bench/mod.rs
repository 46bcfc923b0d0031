//! `cell0 bench`: operations per second and latency over 9P on loopback.
//!
//! It starts its own node (a fresh data directory, so the figures include
//! the write-ahead log's fsync) and, as a yardstick, diod serving a small
//! file from tmpfs; the same client runs the same workload against both,
//! with 1 and with many connections, each connection on its own thread
//! issuing one request at a time. Figures are printed, never asserted.
//!
//! With `--addr` it starts nothing and measures the 9P server it is
//! pointed at (the kernel under `cell0 boot`, say) alone.
//!
//! `cell0 bench raft` measures something else: replicated commits on
//! Cell0 clusters against an etcd cluster (see [`raft`]); `cell0 bench
//! chan`, messages through one channel to many readers against Redis
//! pub/sub, a durable Redis stream and NATS JetStream (see [`chan`]);
//! `cell0 bench agents`, agent spawns, creation and memory (see
//! [`agents`]); `cell0 bench swarm`, a swarm's failure
//! detection, healing and gossip cost against etcd's leader failover (see
//! [`swarm`]); `cell0 bench placement`, agents placed on a swarm's nodes:
//! scheduling, spawn, evenness and failover (see [`placement`]); `cell0
//! bench conns`, 10,000 connections (or `--connections N`) held at once,
//! with slowloris ones besides, against diod (see [`conns`]).

mod agents;
mod chan;
mod conn;
mod conns;
mod enforce;
mod execs;
mod floor;
mod placement;
mod raft;
mod servers;
mod swarm;
mod workload;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use servers::Process;
use workload::{Figures, Workload};

/// What `cell0 bench` measures besides its 9P cases.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// Commit latency and throughput of Cell0 clusters, and of etcd.
    Raft,
    /// Messages through one channel, 1→1, 16→16 and 1→16, and through
    /// Redis pub/sub, a Redis stream fsynced per answer, and NATS
    /// JetStream on file storage.
    Chan,
    /// Agents: spawn latency, creating many, memory per agent.
    Agents,
    /// A swarm of N processes: deaths noticed, voters and leader restored,
    /// gossip cost, false deaths under loss; etcd's leader failover.
    Swarm,
    /// Agents placed on a swarm's nodes: scheduling and spawn latency,
    /// evenness, a dead node's agents running elsewhere.
    Placement,
    /// Many connections held at once, each attached: memory per
    /// connection, `/status` latency meanwhile, slowloris connections;
    /// against diod.
    Conns,
}

/// Flags of `cell0 bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Without it: 9P operations against a node and diod. `raft`: commits
    /// on Cell0 clusters against an etcd cluster. `chan`: messages through
    /// a channel, fanned out to every reader, against Redis pub/sub, a
    /// durable Redis stream and NATS JetStream.
    #[arg(value_enum)]
    pub case: Option<Case>,
    /// Seconds each case runs.
    #[arg(long, default_value_t = 3)]
    pub secs: u64,
    /// Connection counts to run each case with (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    pub conns: Vec<usize>,
    /// Measure this 9P server instead of starting a node and diod.
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// With --addr: the tree to attach.
    #[arg(long, default_value = "", requires = "addr")]
    pub aname: String,
    /// With --addr: present this capability (as the aname word `token=`).
    #[arg(long, value_name = "FILE", requires = "addr")]
    pub token: Option<std::path::PathBuf>,
    /// With --addr: the small file the read case reads.
    #[arg(long, default_value = "status", requires = "addr")]
    pub file: String,
    /// With raft: writer counts to run each case with (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,64", requires = "case")]
    pub writers: Vec<usize>,
    /// With raft: Cell0 cluster sizes to measure (comma-separated)
    /// [default: 1,3]. With swarm: swarm sizes, 2 to 100, each measured
    /// in a run of its own [default: 7]. With placement: the swarm's size,
    /// one [default: 7].
    #[arg(long, value_delimiter = ',', requires = "case")]
    pub nodes: Vec<usize>,
    /// With raft or swarm: leave etcd out (it is needed otherwise).
    #[arg(long, requires = "case")]
    pub no_etcd: bool,
    /// With swarm or placement: how many voters the swarm wants (odd, 1
    /// to 9).
    #[arg(long, default_value_t = 3, requires = "case")]
    pub voters: u8,
    /// With swarm: members to SIGKILL, one at a time and restarted after
    /// each (a voter, a learner, the leader, in turn).
    #[arg(long, default_value_t = 3, requires = "case")]
    pub kills: usize,
    /// With swarm: percent of gossip each node drops (each way) in the
    /// false-death run.
    #[arg(long, default_value_t = 10, requires = "case")]
    pub loss: u8,
    /// With swarm: seconds the false-death run lasts (the issue asks for
    /// 300; the default is shorter to keep the bench short).
    #[arg(long, default_value_t = 60, requires = "case")]
    pub loss_secs: u64,
    /// With swarm: seconds of the quiet window gossip, memory and CPU are
    /// measured over.
    #[arg(long, default_value_t = 10, requires = "case")]
    pub window_secs: u64,
    /// With swarm or placement: keep the nodes' data and logs (they stay
    /// anyway after a failure).
    #[arg(long, requires = "case")]
    pub keep: bool,
    /// With agents: how many agents to make. With placement: how many to
    /// run on the swarm (fewer, with a note, if the host has no room).
    #[arg(long, default_value_t = 1000, requires = "case")]
    pub agents: usize,
    /// With agents: how many of them to start (each spawn timed) and
    /// leave running.
    #[arg(long, default_value_t = 200, requires = "case")]
    pub running: usize,
    /// With agents: start them with `limit cpu=max mem=max pids=max`, so
    /// that a spawn joins no cgroup v1 controller (which, on a host whose
    /// controllers are v1, costs a cgroup migration): the sandbox's own
    /// cost, apart from the limits'.
    #[arg(long, requires = "case")]
    pub unlimited: bool,
    /// With placement: kill no node (no failover figures).
    #[arg(long, requires = "case")]
    pub no_kill: bool,
    /// With placement: seconds a killed node's agents may take to run
    /// elsewhere before they count as not back.
    #[arg(long, default_value_t = 30, requires = "case")]
    pub failover_secs: u64,
    /// With conns: how many connections to hold at once (50000 needs
    /// root, or a descriptor limit above 51500).
    #[arg(long, default_value_t = 10_000, requires = "case")]
    pub connections: usize,
    /// With conns: how many slowloris connections (half a frame, then
    /// nothing) to add while they are held.
    #[arg(long, default_value_t = 500, requires = "case")]
    pub slowloris: usize,
    /// With conns: `/status` reads timed for each latency figure.
    #[arg(long, default_value_t = 2_000, requires = "case")]
    pub reads: usize,
    /// With conns: leave diod out.
    #[arg(long, requires = "case")]
    pub no_diod: bool,
}

/// Run the benchmarks and print the figures.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.secs > 0, "--secs must be at least 1");
    if args.case == Some(Case::Raft) {
        anyhow::ensure!(
            args.addr.is_none(),
            "bench raft starts its own clusters; --addr is for the 9P cases"
        );
        return raft::run(&raft::Plan {
            span: Duration::from_secs(args.secs),
            writers: args.writers,
            nodes: if args.nodes.is_empty() {
                vec![1, 3]
            } else {
                args.nodes
            },
            etcd: !args.no_etcd,
        });
    }
    if args.case == Some(Case::Swarm) {
        swarm_args(&args, "swarm")?;
        anyhow::ensure!(
            args.loss_secs > 0 && args.window_secs > 0,
            "--loss-secs and --window-secs must be at least 1"
        );
        return swarm::run(&swarm::Plan {
            nodes: if args.nodes.is_empty() {
                vec![7]
            } else {
                args.nodes
            },
            voters: args.voters,
            kills: args.kills,
            loss: args.loss,
            loss_span: Duration::from_secs(args.loss_secs),
            window: Duration::from_secs(args.window_secs),
            etcd: !args.no_etcd,
            keep: args.keep,
        });
    }
    if args.case == Some(Case::Placement) {
        swarm_args(&args, "placement")?;
        anyhow::ensure!(
            args.nodes.len() <= 1,
            "bench placement measures one swarm size: --nodes N"
        );
        anyhow::ensure!(args.failover_secs > 0, "--failover-secs must be at least 1");
        return placement::run(&placement::Plan {
            nodes: args.nodes.first().copied().unwrap_or(7),
            voters: args.voters,
            agents: args.agents,
            kill: !args.no_kill,
            failover: Duration::from_secs(args.failover_secs),
            keep: args.keep,
        });
    }
    if args.case == Some(Case::Chan) {
        anyhow::ensure!(
            args.addr.is_none(),
            "bench chan starts its own node; --addr is for the 9P cases"
        );
        return chan::run(Duration::from_secs(args.secs));
    }
    if args.case == Some(Case::Agents) {
        anyhow::ensure!(
            args.addr.is_none(),
            "bench agents starts its own node; --addr is for the 9P cases"
        );
        return agents::run(&agents::Plan {
            agents: args.agents,
            running: args.running,
            unlimited: args.unlimited,
        });
    }
    if args.case == Some(Case::Conns) {
        anyhow::ensure!(
            args.addr.is_none(),
            "bench conns starts its own node and diod; --addr is for the 9P cases"
        );
        return conns::run(&conns::Plan {
            connections: args.connections,
            slowloris: args.slowloris,
            reads: args.reads,
            diod: !args.no_diod,
        });
    }
    anyhow::ensure!(
        !args.conns.is_empty() && args.conns.iter().all(|&n| (1..=256).contains(&n)),
        "--conns takes connection counts from 1 to 256, such as 1,16"
    );
    if let Some(addr) = &args.addr {
        return run_against(&args, addr);
    }
    let (node, owner) = servers::start_node()?;
    let targets = [node, servers::start_diod()?];
    println!(
        "cell0 bench: {} s per case; 9P2000.L over loopback TCP; one client thread per connection, one request at a time",
        args.secs
    );
    println!(
        "cell0: a fresh node, its log in {} (each message fsynced before it is answered)",
        targets[0]
            .process
            .as_ref()
            .map_or(Path::new(""), |p| &p.dir)
            .display()
    );
    println!(
        "diod:  {} on tmpfs (writes are not fsynced)",
        targets[1]
            .process
            .as_ref()
            .map_or(Path::new(""), |p| &p.dir)
            .display()
    );
    print_floor_and_header()?;
    let mut ratios = Vec::new();
    for workload in [Workload::ReadSmall, Workload::Message] {
        for &conns in &args.conns {
            let mut rates = Vec::new();
            for t in &targets {
                let f = workload::measure(t, workload, conns, Duration::from_secs(args.secs))
                    .with_context(|| format!("{} against {}", workload.label(), t.name))?;
                print_row(workload, t.name, conns, &f);
                rates.push(f.ops_per_sec());
            }
            ratios.push((workload, conns, rates[0] / rates[1]));
        }
    }
    println!();
    for (workload, conns, ratio) in ratios {
        println!(
            "cell0/diod ops/s, {}, {conns} conn{}: {ratio:.2}",
            workload.label(),
            if conns == 1 { "" } else { "s" }
        );
    }
    enforce::run(
        &targets[0],
        &owner,
        &args.conns,
        Duration::from_secs(args.secs),
    )?;
    println!();
    for t in &targets {
        if let Some(kib) = t.process.as_ref().and_then(Process::peak_rss_kib) {
            println!(
                "{} peak resident memory: {:.1} MiB",
                t.name,
                kib as f64 / 1024.0
            );
        }
    }
    Ok(())
}

/// The flags `bench swarm` and `bench placement` check alike.
fn swarm_args(args: &BenchArgs, case: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.addr.is_none(),
        "bench {case} starts its own swarm; --addr is for the 9P cases"
    );
    anyhow::ensure!(
        args.voters % 2 == 1 && args.voters <= 9,
        "--voters {}: an odd number from 1 to 9, as swarm(3) takes",
        args.voters
    );
    Ok(())
}

/// The same cases against a server that is already running.
fn run_against(args: &BenchArgs, addr: &str) -> anyhow::Result<()> {
    let aname = match &args.token {
        Some(p) => {
            let t = crate::identity::read_token(p)?.to_text();
            format!("{} token={t}", args.aname).trim().to_string()
        }
        None => args.aname.clone(),
    };
    let t = servers::existing(addr, &aname, &args.file)?;
    println!(
        "cell0 bench: {} s per case; 9P2000.L to {addr}; one client thread per connection, one request at a time",
        args.secs
    );
    if !t.channels {
        println!("{addr} has no /chan: only the read case runs");
    }
    print_floor_and_header()?;
    let workloads: &[Workload] = if t.channels {
        &[Workload::ReadSmall, Workload::Message]
    } else {
        &[Workload::ReadSmall]
    };
    for &workload in workloads {
        for &conns in &args.conns {
            let f = workload::measure(&t, workload, conns, Duration::from_secs(args.secs))
                .with_context(|| format!("{} against {addr}", workload.label()))?;
            print_row(workload, t.name, conns, &f);
        }
    }
    Ok(())
}

fn print_floor_and_header() -> anyhow::Result<()> {
    let (floor50, floor99) = floor::echo_round_trip().context("timing a TCP echo")?;
    println!(
        "floor: a bare TCP echo between two threads on loopback takes p50 {floor50:.1} µs, p99 {floor99:.1} µs"
    );
    println!("op = one pass of the case; rt = one 9P request and its reply");
    println!();
    println!(
        "{:<32} {:<6} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "case", "server", "conns", "ops/s", "op p50µs", "op p99µs", "rt/s", "rt p50µs"
    );
    Ok(())
}

pub(crate) fn print_row(workload: Workload, server: &str, conns: usize, f: &Figures) {
    println!(
        "{:<32} {:<6} {:>5} {:>9.0} {:>9.1} {:>9.1} {:>9.0} {:>9.1}",
        workload.label(),
        server,
        conns,
        f.ops_per_sec(),
        workload::percentile_us(&f.ops, 0.50),
        workload::percentile_us(&f.ops, 0.99),
        f.round_trips_per_sec(),
        workload::percentile_us(&f.round_trips, 0.50),
    );
}
