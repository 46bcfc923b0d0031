//! The `cell0` command: the hosted node, the FUSE mount, plain 9P client
//! verbs for scripts, and benchmarks. See cell0(1).

mod bench;
mod boot;
mod cap;
mod chan;
mod child;
mod client;
mod cluster;
mod config;
mod identity;
mod mount;
mod proof;
mod raft;
mod runner;
mod serve;
mod shim;
mod up;
mod verbs;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Cell0: every kernel object of an agent fleet is a file.
#[derive(Parser, Debug)]
#[command(name = "cell0", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// The address flag shared by every client verb.
#[derive(Args, Debug, Clone)]
pub struct AddrArg {
    /// The node to talk to [default: $CELL0_ADDR, else 127.0.0.1:5640]
    #[arg(long)]
    pub addr: Option<String>,
}

impl AddrArg {
    /// The address to dial: the flag, else `$CELL0_ADDR`, else the default.
    pub fn resolve(&self) -> String {
        config::client_addr(self.addr.as_deref())
    }
}

/// The flags every client of a node shares: where it is and which
/// capability to present.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    #[command(flatten)]
    pub addr: AddrArg,
    /// The capability to present (a file holding `c0.…`, or `-` for
    /// standard input) [default: DATA/owner.token if it exists]
    #[arg(long, value_name = "FILE")]
    pub token: Option<PathBuf>,
    /// The data directory whose owner token is the default
    /// [default: $XDG_DATA_HOME/cell0]
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a hosted node serving the tree over 9P on TCP.
    Serve(serve::ServeArgs),
    /// Mount a node's tree with FUSE (returns once the mount is usable).
    Mount(mount::MountArgs),
    /// Unmount a tree mounted with `cell0 mount`.
    Umount {
        /// The mount point.
        dir: PathBuf,
    },
    /// Start a node with default settings and mount it (default ./cell).
    Up(up::UpArgs),
    /// Run a Raft cluster of nodes on this machine (see raft(3)).
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
    /// List a directory.
    Ls {
        /// Path in the tree.
        path: String,
        #[command(flatten)]
        node: ClientArgs,
    },
    /// Print a file (blocking files follow until interrupted).
    Cat {
        /// Path in the tree.
        path: String,
        #[command(flatten)]
        node: ClientArgs,
    },
    /// Print a file's metadata.
    Stat {
        /// Path in the tree.
        path: String,
        #[command(flatten)]
        node: ClientArgs,
    },
    /// Create a directory (an object, for trees where mkdir creates one).
    Mkdir {
        /// Path in the tree.
        path: String,
        #[command(flatten)]
        node: ClientArgs,
    },
    /// Remove a file or an object directory.
    Rm {
        /// Path in the tree.
        path: String,
        #[command(flatten)]
        node: ClientArgs,
    },
    /// Write TEXT (or standard input) to a file in one write.
    Write {
        /// Path in the tree.
        path: String,
        /// What to write; standard input when absent.
        text: Option<String>,
        #[command(flatten)]
        node: ClientArgs,
    },
    /// Boot the bare-metal kernel under QEMU, serving 9P (and mount it).
    Boot(boot::BootArgs),
    /// Mint, attenuate, inspect and revoke capabilities (see cap(3)).
    #[command(subcommand)]
    Cap(cap::CapCmd),
    /// Check proofs offline.
    #[command(subcommand)]
    Proof(proof::ProofCmd),
    /// Check channel messages offline (see chan(3)).
    #[command(subcommand)]
    Chan(chan::ChanCmd),
    /// Measure ops/s and latency over 9P on loopback, against diod too;
    /// `bench raft`: replicated commits on clusters, against etcd.
    Bench(bench::BenchArgs),
    /// Run the agents placed on this host (see agent(3)): `cell0 serve`
    /// runs one itself; this is for other hosts.
    Runner(runner::RunnerArgs),
    /// Set up one agent process inside its sandbox (the runner starts it;
    /// see agent(3)): mount the tree at $CELL0_MOUNT with the agent's
    /// capability, then run the agent's program.
    #[command(hide = true)]
    AgentShim(shim::ShimArgs),
}

/// The size from which the C allocator maps memory of its own (and gives
/// it back when freed): fixed, so that it does not rise to the largest
/// block ever freed. FUSE sessions each hold 16 MiB read buffers, zeroed
/// and mostly untouched; with a risen threshold they came from the heap,
/// where zeroing touches every page (a node running 200 agents held 2 GiB
/// that way), and the runner's forks copied it all.
const MMAP_THRESHOLD: libc::c_int = 256 * 1024;

fn main() -> ExitCode {
    // SAFETY: mallopt only sets an allocator parameter; called first
    // thing, before any other thread exists.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Serve(a) => serve::run(a),
        Cmd::Mount(a) => mount::run(a),
        Cmd::Umount { dir } => mount::umount(&dir),
        Cmd::Up(a) => up::run(a),
        Cmd::Cluster(c) => cluster::run(c),
        Cmd::Ls { path, node } => verbs::Node::from_args(&node).and_then(|n| verbs::ls(&n, &path)),
        Cmd::Cat { path, node } => {
            verbs::Node::from_args(&node).and_then(|n| verbs::cat(&n, &path))
        }
        Cmd::Stat { path, node } => {
            verbs::Node::from_args(&node).and_then(|n| verbs::stat(&n, &path))
        }
        Cmd::Mkdir { path, node } => {
            verbs::Node::from_args(&node).and_then(|n| verbs::mkdir(&n, &path))
        }
        Cmd::Rm { path, node } => verbs::Node::from_args(&node).and_then(|n| verbs::rm(&n, &path)),
        Cmd::Write { path, text, node } => {
            verbs::Node::from_args(&node).and_then(|n| verbs::write(&n, &path, text.as_deref()))
        }
        Cmd::Cap(c) => cap::run(c),
        Cmd::Boot(a) => boot::run(a),
        Cmd::Proof(c) => proof::run(c),
        Cmd::Chan(c) => chan::run(c),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Runner(a) => runner::run(a),
        Cmd::AgentShim(a) => shim::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cell0: {e:#}");
            ExitCode::FAILURE
        }
    }
}
