//! The agent runner: makes the processes on this host match what the tree
//! wants of its agents (see agent(3)). `cell0 serve` runs one on its own
//! node; `cell0 runner --node HOST:PORT` runs one on another host.
//!
//! The runner claims each agent wanted running that no runner holds
//! (`report claim`, committed, so two runners never both run one), starts
//! it under the supervisor of the `cell0-agents` crate behind
//! `cell0 agent-shim` (which mounts the tree with a capability minted for
//! the agent), and writes back what happens: `report running`, `report
//! exit` with the last lines of stderr, `report crashloop`, `report
//! failed`, `report stopped`, and the output as `log` lines. It learns
//! of changes by following `/events`, and looks at every agent again
//! every few seconds in case it missed one.
//!
//! Modules: `tree` (the 9P side), `follow` (the events), `launch` (an
//! agent's capability and process spec), `reconcile` (the loop).

mod agentfs;
mod follow;
mod launch;
mod lease;
mod reconcile;
mod tree;

use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;

use anyhow::Context;
use cell0_agents::{Event, Options, Supervisor};
use cellfs::cap::Token;
use clap::Args;

use launch::{Confinement, Launcher};
use reconcile::Runner;
use tree::Tree;

/// Arguments of `cell0 runner`.
#[derive(Args, Debug)]
pub struct RunnerArgs {
    /// The node whose agents to run (its 9P address).
    #[arg(long, value_name = "HOST:PORT")]
    pub node: String,
    /// The runner's capability: admin over /agent and every right its
    /// agents' intents name (agents' capabilities are minted from it); a
    /// file, or - for standard input.
    #[arg(long, value_name = "FILE")]
    pub token: PathBuf,
    /// This runner's name, as agents' status shows it (runners with the
    /// same name take over each other's agents) [default: the host name]
    #[arg(long)]
    pub name: Option<String>,
    /// The address agents dial to reach the node [default: --node]
    #[arg(long, value_name = "HOST:PORT")]
    pub agent_addr: Option<String>,
    /// Run agents even where this host cannot sandbox them, unconfined
    /// (see `cell0 serve --unconfined-agents` and agent(3)).
    #[arg(long)]
    pub unconfined_agents: bool,
}

/// What a runner may do where its host cannot sandbox agents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Confine {
    /// Run them unconfined (the node's owner said so); otherwise refuse.
    pub unconfined: bool,
}

/// What the runner's loop is told.
pub enum Notice {
    /// Agent NAME may have changed in the tree.
    Changed(String),
    /// Agent NAME was placed on node ID (`None`: on none).
    Placed(String, Option<u64>),
    /// Look at every agent again.
    Resync,
    /// The supervisor reports this.
    Sup(Event),
    /// The node's lease was lost (its agents were killed) or is held.
    Lease(lease::Standing),
    /// Stop: end every agent's processes (they are not reported stopped:
    /// they run again when a runner of this name comes back).
    Stop,
}

/// A running runner; dropping it ends its agents' processes.
pub struct Handle {
    tx: Sender<Notice>,
    thread: Option<JoinHandle<()>>,
    ready: Option<mpsc::Receiver<anyhow::Result<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.tx.send(Notice::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Start a runner named `name` for the node at `addr` (agents dial
/// `agent_addr`), with capability `token`. It connects on a thread of
/// its own (the node may be this process, not accepting yet); `ready`
/// says how that went.
pub fn spawn(
    name: &str,
    addr: &str,
    agent_addr: &str,
    token: &Token,
    hide: Vec<PathBuf>,
    confine: Confine,
) -> anyhow::Result<Handle> {
    cellfs::chan::check_name(name)
        .map_err(|_| anyhow::anyhow!("runner name {name:?}: 1-64 of A-Z a-z 0-9 . _ -"))?;
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (name, addr, agent_addr, token) = (
        name.to_string(),
        addr.to_string(),
        agent_addr.to_string(),
        token.clone(),
    );
    let t = tx.clone();
    let thread = std::thread::Builder::new()
        .name("cell0-runner".into())
        .spawn(
            move || match setup(&name, &addr, &agent_addr, &token, hide, confine, t) {
                Ok(runner) => {
                    let _ = ready_tx.send(Ok(()));
                    runner.run(rx);
                }
                Err(e) => {
                    eprintln!("cell0 runner {name}: runs no agents: {e:#}");
                    let _ = ready_tx.send(Err(e));
                }
            },
        )?;
    Ok(Handle {
        tx,
        thread: Some(thread),
        ready: Some(ready_rx),
    })
}

impl Handle {
    /// Wait until the runner is connected and its supervisor started, or
    /// say why it could not be.
    pub fn ready(&mut self) -> anyhow::Result<()> {
        match self.ready.take().map(|r| r.recv()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => anyhow::bail!("the runner's thread ended before it was ready"),
            None => Ok(()),
        }
    }
}

/// Connect to the node, start the supervisor and the threads that feed
/// the runner's loop through `tx`.
fn setup(
    name: &str,
    addr: &str,
    agent_addr: &str,
    token: &Token,
    hide: Vec<PathBuf>,
    confine: Confine,
    tx: Sender<Notice>,
) -> anyhow::Result<Runner> {
    let tree = Tree::connect(addr, &token.to_text())?;
    let shim = std::env::current_exe().context("runner: finding the cell0 binary")?;
    let (sup, sup_events) = Supervisor::with_options(supervisor_options())
        .context("runner: starting the supervisor")?;
    let confinement = match (sandbox_lacks(sup.isolation()), confine.unconfined) {
        (None, _) => Confinement::Sandboxed,
        (Some(why), true) => {
            eprintln!(
                "cell0 runner {name}: this host cannot sandbox agents ({why}); running them UNCONFINED, as asked (--unconfined-agents)"
            );
            Confinement::Unconfined(why)
        }
        (Some(why), false) => {
            eprintln!(
                "cell0 runner {name}: this host cannot sandbox agents ({why}); refusing to run them (--unconfined-agents would run them unconfined)"
            );
            Confinement::Refused(why)
        }
    };
    let lease_tx = tx.clone();
    let t = tx.clone();
    std::thread::Builder::new()
        .name("cell0-runner-sup".into())
        .spawn(move || {
            for ev in sup_events {
                if t.send(Notice::Sup(ev)).is_err() {
                    return;
                }
            }
        })?;
    let label = name.to_string();
    let events = tree.clone();
    std::thread::Builder::new()
        .name("cell0-runner-events".into())
        .spawn(move || {
            // Follow again after the node closed the session (it
            // restarted): each new follow starts with a full pass.
            loop {
                let why = follow::follow(events.client(), tx.clone());
                if why.is_empty() || tx.send(Notice::Resync).is_err() {
                    return;
                }
                eprintln!("cell0 runner {label}: {why}; following again in a second");
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        })?;
    let sessions = agentfs::Sessions::default();
    let launcher = Launcher {
        addr: agent_addr.to_string(),
        token: token.clone(),
        shim,
        hide,
        confinement,
        sessions: sessions.clone(),
    };
    let killer = sup.killer();
    let runner = Runner::new(name.to_string(), tree.clone(), launcher, sup)?;
    lease::watch(tree, runner.gate.clone(), killer, sessions, lease_tx)?;
    Ok(runner)
}

/// The variable that makes a runner act as on a host without namespaces
/// (`CELL0_RUNNER_NAMESPACES=off`), to see and test what such a host does.
pub const NAMESPACES_VAR: &str = "CELL0_RUNNER_NAMESPACES";

/// The supervisor's options: everything the host allows, unless
/// [`NAMESPACES_VAR`] turns namespaces off.
fn supervisor_options() -> Options {
    let off = std::env::var(NAMESPACES_VAR).is_ok_and(|v| v == "off");
    Options {
        namespaces: !off,
        ..Options::default()
    }
}

/// What this host lacks to sandbox agents (see `cell0 agent-shim`), if
/// anything: user namespaces with the others, a seccomp filter, FUSE.
fn sandbox_lacks(iso: &cell0_agents::Isolation) -> Option<String> {
    if !iso.confined() {
        let why = iso.notes.first().cloned();
        return Some(why.unwrap_or_else(|| "no user, pid and mount namespaces".to_string()));
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !status.lines().any(|l| l.starts_with("Seccomp:")) {
        return Some("this kernel has no seccomp filters".to_string());
    }
    if !std::path::Path::new("/dev/fuse").exists() {
        return Some(
            "/dev/fuse is missing (agents see the tree through FUSE): modprobe fuse, or install fuse3"
                .to_string(),
        );
    }
    None
}

/// `cell0 runner`: run agents until SIGINT or SIGTERM.
pub fn run(args: RunnerArgs) -> anyhow::Result<()> {
    let token = crate::identity::read_token(&args.token)?;
    let name = match args.name {
        Some(n) => n,
        None => host_name(),
    };
    let agent_addr = args.agent_addr.as_deref().unwrap_or(&args.node);
    // Agents must not read the runner's own token.
    let hide = if args.token.as_os_str() == "-" {
        Vec::new()
    } else {
        vec![std::fs::canonicalize(&args.token)?]
    };
    let confine = Confine {
        unconfined: args.unconfined_agents,
    };
    let mut handle = spawn(&name, &args.node, agent_addr, &token, hide, confine)?;
    handle.ready()?;
    eprintln!(
        "cell0: runner {name} running the agents of node {}",
        args.node
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        anyhow::Ok(())
    })?;
    drop(handle);
    eprintln!("cell0: runner {name} stopped; its agents' processes ended");
    Ok(())
}

/// This host's name as a runner name (characters outside the name rule
/// become `-`).
fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with('.') {
        "runner".to_string()
    } else {
        name
    }
}
