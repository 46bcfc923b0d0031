//! `cell0 cluster up N`: a swarm of N hosted nodes on this machine, until
//! Ctrl-C: a few voters of the log, the rest learners. See cell0(1),
//! swarm(3) and raft(3).
//!
//! The nodes are ordinary `cell0 serve` processes in process groups of
//! their own, so the terminal's Ctrl-C reaches only this process, which
//! then stops them all together. A node that dies by itself is reported
//! and the others keep running: losing a node is something one starts a
//! local cluster to try.

mod layout;
mod local;
mod status;

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::Subcommand;

pub use layout::{Layout, MAX_NODES};
pub use local::LocalCluster;

use crate::cmd::child::Signals;
use layout::{DEFAULT_PORT, DEFAULT_RAFT_PORT};

/// `cell0 cluster …`.
#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Start N nodes on this machine as one swarm, until Ctrl-C.
    Up(UpArgs),
}

/// Flags of `cell0 cluster up`.
#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// How many nodes (1 to 100).
    #[arg(value_parser = clap::value_parser!(u8).range(1..=MAX_NODES as i64))]
    pub n: u8,
    /// How many of them vote in the log (odd, 1 to 9); the others are
    /// learners, and the leader promotes one when a voter dies.
    #[arg(long, default_value_t = cellfs::swarm::state::DEFAULT_VOTERS,
          value_parser = crate::node::serve::parse_voters)]
    pub voters: u8,
    /// Directory of the nodes' data (DIR/nodeI) and logs (DIR/nodeI.log)
    /// [default: $XDG_DATA_HOME/cell0/cluster]
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Address the nodes listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// 9P port of node 1; node I serves 9P on PORT+I-1.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Raft port of node 1; node I listens for its peers on RAFT_PORT+I-1
    /// (TCP) and gossips there (UDP). Keep it across restarts: the
    /// membership records these addresses.
    #[arg(long, default_value_t = DEFAULT_RAFT_PORT)]
    pub raft_port: u16,
}

/// Run a `cell0 cluster` subcommand.
pub fn run(cmd: ClusterCmd) -> anyhow::Result<()> {
    match cmd {
        ClusterCmd::Up(a) => up(a),
    }
}

fn up(args: UpArgs) -> anyhow::Result<()> {
    let dir = args.data.unwrap_or_else(layout::default_dir);
    let layout = Layout::consecutive(
        usize::from(args.n),
        &dir,
        &args.host,
        args.port,
        args.raft_port,
    )?;
    // Caught from before the first node starts, so a Ctrl-C while the
    // cluster forms still stops every node that started.
    let mut signals = Signals::catch()?;
    let mut cluster = LocalCluster::start(&layout, Some(args.voters))?;
    print_nodes(&cluster)?;
    let all_exited = loop {
        if signals.caught_within(Duration::from_millis(200)) {
            break false;
        }
        for (id, status) in cluster.exits() {
            eprintln!(
                "cell0: node {id} exited ({status}); the others keep running (its log: {})",
                layout.nodes[id as usize - 1].log.display()
            );
        }
        if !cluster.any_running() {
            break true;
        }
    };
    cluster.stop();
    eprintln!("cell0: stopped the cluster's {} nodes", layout.nodes.len());
    if all_exited {
        bail!(
            "every node exited by itself; see their logs in {}",
            dir.display()
        );
    }
    Ok(())
}

/// One `key value …` line per node and one for the token on standard
/// output (for scripts); how to use them on standard error.
fn print_nodes(cluster: &LocalCluster) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for n in cluster.nodes() {
        writeln!(
            out,
            "node {} addr {} raft {} gossip {} data {} log {}",
            n.id,
            n.addr,
            n.raft,
            n.raft,
            n.data.display(),
            n.log.display()
        )?;
    }
    let token = cluster.token().display();
    writeln!(out, "token {token}")?;
    out.flush()?;
    let first = &cluster.nodes()[0].addr;
    let last = &cluster.nodes()[cluster.nodes().len() - 1].addr;
    eprintln!(
        "\ncell0: a swarm of {} nodes is up; every node accepts the token {token} (node 1's owner token)\n\
         \n\
         Try, from another terminal:\n\
         \x20   cell0 cat /raft/status --addr {first} --token {token}\n\
         \x20   cell0 cat /swarm/status --addr {first} --token {token}\n\
         \x20   cell0 write /ctl 'note hello' --addr {last} --token {token}\n\
         \x20   cell0 mount --addr {last} --token {token} ./cell\n\
         \n\
         Manual: man -l man/man1/cell0.1, man -l man/man3/swarm.3, man -l man/man3/raft.3\n\
         Press Ctrl-C to stop every node; `cell0 cluster up` on the same --data starts them again.\n",
        cluster.nodes().len()
    );
    Ok(())
}
