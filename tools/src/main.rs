//! The `cell0` command: the hosted node, the FUSE mount, plain 9P client
//! verbs for scripts, and benchmarks. See cell0(1).
//!
//! The program has two halves: [`node`] runs a node (`cell0 serve`, its
//! Raft runtime, the agent runner and shim) and [`cmd`] holds the commands
//! that start or talk to one; [`mount`] (FUSE) serves both. The 9P client,
//! the configuration and the identity files are the `cell0` library's.

mod args;
mod cmd;
mod mount;
mod node;

use std::process::ExitCode;

// The library's modules, under the names the binary's modules use for
// them (`crate::client`, `crate::config`, `crate::identity`).
use cell0::{client, config, identity};
use clap::Parser;

use args::{Cli, Cmd};
use cmd::{bench, boot, cap, chan, cluster, proof, up, verbs};
use node::{runner, serve, shim};

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
    // The shim, as the runner starts it, without building the parser of
    // every command (0.4 ms of each spawn).
    let result = if let Some(a) = shim::runner_args(std::env::args_os().skip(1)) {
        shim::run(a)
    } else {
        run(Cli::parse())
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cell0: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Run the command `cli` names.
fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
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
    }
}
