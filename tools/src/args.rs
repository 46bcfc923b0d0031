//! The command line: what `cell0` and each subcommand accept (clap's
//! types); `main` dispatches on them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Cell0: every kernel object of an agent fleet is a file.
#[derive(Parser, Debug)]
#[command(name = "cell0", version, about, long_about = None)]
pub struct Cli {
    // The command to run (a plain comment: clap would print a doc comment).
    #[command(subcommand)]
    pub cmd: Cmd,
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
        crate::config::client_addr(self.addr.as_deref())
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

// The commands of `cell0`, one per subcommand (a plain comment: clap would
// take a doc comment here for the program's about text).
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run a hosted node serving the tree over 9P on TCP.
    Serve(crate::node::serve::ServeArgs),
    /// Mount a node's tree with FUSE (returns once the mount is usable).
    Mount(crate::mount::MountArgs),
    /// Unmount a tree mounted with `cell0 mount`.
    Umount {
        /// The mount point.
        dir: PathBuf,
    },
    /// Start a node with default settings and mount it (default ./cell).
    Up(crate::cmd::up::UpArgs),
    /// Run a Raft cluster of nodes on this machine (see raft(3)).
    #[command(subcommand)]
    Cluster(crate::cmd::cluster::ClusterCmd),
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
    Boot(crate::cmd::boot::BootArgs),
    /// Mint, attenuate, inspect and revoke capabilities (see cap(3)).
    #[command(subcommand)]
    Cap(crate::cmd::cap::CapCmd),
    /// Check proofs offline.
    #[command(subcommand)]
    Proof(crate::cmd::proof::ProofCmd),
    /// Check channel messages offline (see chan(3)).
    #[command(subcommand)]
    Chan(crate::cmd::chan::ChanCmd),
    /// Measure ops/s and latency over 9P on loopback, against diod too;
    /// `bench raft`: replicated commits on clusters, against etcd.
    Bench(crate::cmd::bench::BenchArgs),
    /// Run the agents placed on this host (see agent(3)): `cell0 serve`
    /// runs one itself; this is for other hosts.
    Runner(crate::node::runner::RunnerArgs),
    /// Set up one agent process inside its sandbox (the runner starts it;
    /// see agent(3)): mount the tree at $CELL0_MOUNT with the agent's
    /// capability, then run the agent's program.
    #[command(hide = true)]
    AgentShim(crate::node::shim::ShimArgs),
}
