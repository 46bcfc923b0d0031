//! The small value types agent state is made of: key seeds, restart
//! policies, limits, wanted states and phases, exits, runners' reports and
//! trace blocks.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

use crate::cap::{NodeKey, PublicKey};

use crate::agent::ctl::{quote, size_word};

/// The secret seed of an agent's ed25519 key. It travels in the command
/// that makes the agent, so every node derives the same key; it is kept
/// for the runner and never rendered (not even by `Debug`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seed(pub [u8; 32]);

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Seed(secret)")
    }
}

impl Seed {
    /// The public key of the agent this seed makes.
    pub fn public(&self) -> PublicKey {
        NodeKey::from_seed(&self.0).public()
    }
}

/// When an agent's process is started again after it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Restart {
    /// Whatever its exit.
    Always,
    /// Only after a non-zero exit or a signal.
    OnFailure,
    /// Never: it stays exited.
    Never,
}

impl Restart {
    /// The word for it in ctl and status.
    pub fn word(self) -> &'static str {
        match self {
            Restart::Always => "always",
            Restart::OnFailure => "on-failure",
            Restart::Never => "never",
        }
    }

    /// The policy a word names.
    pub fn parse(word: &str) -> Option<Restart> {
        [Restart::Always, Restart::OnFailure, Restart::Never]
            .into_iter()
            .find(|r| r.word() == word)
    }
}

/// The restart policy: `restart`, at most `max` restarts within `window`
/// seconds (past that the runner gives up).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// When to restart.
    pub restart: Restart,
    /// Most restarts within the window.
    pub max: u32,
    /// The window, in seconds.
    pub window: u64,
}

impl Default for Policy {
    /// Nothing restarts unless asked: `never max=5 window=60s`.
    fn default() -> Policy {
        Policy {
            restart: Restart::Never,
            max: 5,
            window: 60,
        }
    }
}

/// Resource limits; `None` is no limit (`max`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// CPU time, in percent of one CPU.
    pub cpu: Option<u32>,
    /// Memory, in bytes.
    pub mem: Option<u64>,
    /// Processes and threads.
    pub pids: Option<u32>,
}

/// A `limit` line: for each key given, the new limit (`None`: `max`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitChange {
    /// `cpu=`, if given.
    pub cpu: Option<Option<u32>>,
    /// `mem=`, if given.
    pub mem: Option<Option<u64>>,
    /// `pids=`, if given.
    pub pids: Option<Option<u32>>,
}

/// How a limit reads: the number, or `max` for none.
pub(super) fn limit_word<T: fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| String::from("max"), |n| format!("{n}"))
}

pub(super) fn mem_word(v: Option<u64>) -> String {
    v.map_or_else(|| String::from("max"), size_word)
}

/// One key of [`Limits`], to ask the same of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKey {
    /// `cpu=`.
    Cpu,
    /// `mem=`.
    Mem,
    /// `pids=`.
    Pids,
}

impl LimitKey {
    /// Every key, in the order status shows them.
    pub const ALL: [LimitKey; 3] = [LimitKey::Cpu, LimitKey::Mem, LimitKey::Pids];

    /// Its name in `limit` and status.
    pub fn name(self) -> &'static str {
        match self {
            LimitKey::Cpu => "cpu",
            LimitKey::Mem => "mem",
            LimitKey::Pids => "pids",
        }
    }

    /// `KEY=VALUE` as `limit` takes it (`max` for none).
    pub fn word(self, v: Option<u64>) -> String {
        match self {
            LimitKey::Mem => format!("mem={}", mem_word(v)),
            k => format!("{}={}", k.name(), limit_word(v)),
        }
    }
}

/// Whether limit `v` lets more through than `ceiling` (`None`, `max`,
/// lets everything through).
pub(super) fn above(v: Option<u64>, ceiling: Option<u64>) -> bool {
    match (v, ceiling) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(v), Some(c)) => v > c,
    }
}

/// The tighter of two limits.
fn tighter(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

impl Limits {
    /// `cpu=… mem=… pids=…`, as status shows them.
    pub fn words(&self) -> String {
        format!(
            "cpu={} mem={} pids={}",
            limit_word(self.cpu),
            mem_word(self.mem),
            limit_word(self.pids)
        )
    }

    /// The limit of `key` (`None`: no limit).
    pub fn get(&self, key: LimitKey) -> Option<u64> {
        match key {
            LimitKey::Cpu => self.cpu.map(u64::from),
            LimitKey::Mem => self.mem,
            LimitKey::Pids => self.pids.map(u64::from),
        }
    }

    /// The tighter of `self` and `other`, key by key.
    pub fn min(self, other: Limits) -> Limits {
        // The bounds of cpu and pids are far below u32::MAX.
        let small = |v: Option<u64>| v.map(|n| n as u32);
        Limits {
            cpu: small(tighter(self.get(LimitKey::Cpu), other.get(LimitKey::Cpu))),
            mem: tighter(self.mem, other.mem),
            pids: small(tighter(self.get(LimitKey::Pids), other.get(LimitKey::Pids))),
        }
    }

    /// These limits with the keys `c` names changed.
    pub fn with(self, c: &LimitChange) -> Limits {
        Limits {
            cpu: c.cpu.unwrap_or(self.cpu),
            mem: c.mem.unwrap_or(self.mem),
            pids: c.pids.unwrap_or(self.pids),
        }
    }
}

impl LimitChange {
    /// The new limit of `key`, if the line names it (`Some(None)`:
    /// `max`).
    pub fn get(&self, key: LimitKey) -> Option<Option<u64>> {
        match key {
            LimitKey::Cpu => self.cpu.map(|v| v.map(u64::from)),
            LimitKey::Mem => self.mem,
            LimitKey::Pids => self.pids.map(|v| v.map(u64::from)),
        }
    }
}

/// The state an agent is wanted in (what `start`, `stop` and `kill`
/// last said).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Want {
    /// Not running (`stop`: TERM, then KILL after a grace period).
    Stopped,
    /// Running (`start`).
    Running,
    /// Not running, ended at once (`kill`).
    Killed,
}

impl Want {
    /// Its word in status.
    pub fn word(self) -> &'static str {
        match self {
            Want::Stopped => "stopped",
            Want::Running => "running",
            Want::Killed => "killed",
        }
    }

    /// The state a word names.
    pub fn parse(word: &str) -> Option<Want> {
        [Want::Stopped, Want::Running, Want::Killed]
            .into_iter()
            .find(|w| w.word() == word)
    }
}

/// What is known of an agent: what was asked of it, what its runner
/// reported, and whether the server halted it for drift.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Made, never started.
    Created,
    /// Wanted running; no runner has started it yet (or it is to be
    /// started again after `start`).
    Pending,
    /// Stopped or killed.
    Stopped,
    /// A runner reported its process running.
    Running,
    /// Its process ended while it was wanted running.
    Exited,
    /// It ended too often within its restart window: the runner gave up.
    Crashloop,
    /// The runner could not run it (the reason is in status).
    Failed,
    /// It tried something outside its intent; refused everything until
    /// `start`.
    HaltedDrift,
}

impl Phase {
    /// Its word in status.
    pub fn word(self) -> &'static str {
        match self {
            Phase::Created => "created",
            Phase::Pending => "pending",
            Phase::Stopped => "stopped",
            Phase::Running => "running",
            Phase::Exited => "exited",
            Phase::Crashloop => "crashloop",
            Phase::Failed => "failed",
            Phase::HaltedDrift => "halted-drift",
        }
    }

    /// The phase a word names.
    pub fn parse(word: &str) -> Option<Phase> {
        [
            Phase::Created,
            Phase::Pending,
            Phase::Stopped,
            Phase::Running,
            Phase::Exited,
            Phase::Crashloop,
            Phase::Failed,
            Phase::HaltedDrift,
        ]
        .into_iter()
        .find(|p| p.word() == word)
    }
}

/// How a process ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitHow {
    /// It exited with this status.
    Code(u8),
    /// A signal ended it (its name as reported: `KILL`, `SEGV`).
    Signal(String),
}

impl fmt::Display for ExitHow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitHow::Code(c) => write!(f, "code={c}"),
            ExitHow::Signal(s) => write!(f, "signal={s}"),
        }
    }
}

/// One recent thing a node saw of an agent: an operation it made on the
/// tree (`read /chan/in/data`), a ctl write to it, a message it read;
/// `times` counts the same text seen again in a row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recent {
    /// When it was last seen (Unix seconds).
    pub at: u64,
    /// What it was.
    pub text: String,
    /// How many times in a row.
    pub times: u32,
}

impl fmt::Display for Recent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.at, self.text)?;
        if self.times > 1 {
            write!(f, " ({} times)", self.times)?;
        }
        Ok(())
    }
}

/// A runner's exit report, with what the proposing node saw before it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitReport {
    /// How it ended.
    pub how: ExitHow,
    /// Whether the runner starts it again.
    pub restarting: bool,
    /// The last lines of its stderr (`stderr` lines after the report).
    pub stderr: Vec<String>,
    /// Its last operations on the tree, seen by the proposing node.
    pub ops: Vec<Recent>,
    /// The last ctl write to it or message it read, on that node.
    pub before: Option<Recent>,
}

/// What a runner reports of an agent's process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Report {
    /// `report running pid=N node=ID`.
    Running { pid: u32, node: String },
    /// `report exit …` and its `stderr` lines.
    Exit(ExitReport),
    /// `report crashloop`: it gave up restarting it.
    Crashloop,
    /// `report failed REASON…`: it could not run it.
    Failed(String),
    /// `report stopped`: it stopped it as asked.
    Stopped,
    /// `report claim runner=NAME`: runner NAME runs the agent; no other
    /// runner may claim it until the claim is released.
    Claim { runner: String },
    /// `report release`: no runner runs it now (another may claim it).
    Release,
    /// `report resumed`: the claiming runner started afresh (its host
    /// restarted) and the process it ran was lost; it starts it again.
    /// With what the proposing node saw before.
    Resumed {
        /// The agent's last operations on the tree, seen by that node.
        ops: Vec<Recent>,
        /// The last ctl write to it or message it read, on that node.
        before: Option<Recent>,
    },
    /// `report running pid=N node=ID sandbox=WORDS`: as `Running`, with
    /// the protections the process runs under (comma-separated words,
    /// or `unconfined`). A variant of its own, so that logs written
    /// before it still decode.
    RunningSandboxed {
        pid: u32,
        node: String,
        sandbox: String,
    },
}

impl Report {
    pub(super) fn describe(&self) -> String {
        match self {
            Report::Running { pid, node } => format!("report running pid={pid} node={node}"),
            Report::RunningSandboxed { pid, node, sandbox } => {
                format!("report running pid={pid} node={node} sandbox={sandbox}")
            }
            Report::Exit(e) => {
                let mut s = format!(
                    "report exit {} restarting={}",
                    e.how,
                    if e.restarting { "yes" } else { "no" }
                );
                if !e.stderr.is_empty() {
                    s.push_str(&format!(" stderr={} lines", e.stderr.len()));
                }
                s
            }
            Report::Crashloop => String::from("report crashloop"),
            Report::Failed(why) => format!("report failed {why}"),
            Report::Stopped => String::from("report stopped"),
            Report::Claim { runner } => format!("report claim runner={runner}"),
            Report::Release => String::from("report release"),
            Report::Resumed { .. } => String::from("report resumed"),
        }
    }
}

/// What one trace block is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Happened {
    /// A process ended.
    Exit {
        how: ExitHow,
        restarting: bool,
        pid: Option<u32>,
        node: Option<String>,
    },
    /// The claiming runner started afresh and its process (`pid` on
    /// `node`, as last reported) was lost with it.
    Resume {
        runner: String,
        pid: Option<u32>,
        node: Option<String>,
    },
    /// An operation outside the intent (then the intent it broke).
    Drift {
        op: String,
        path: String,
        intent: String,
    },
    /// It was placed again, on node `to` at `epoch`, away from node
    /// `from`, for `why`.
    Moved {
        from: u64,
        to: u64,
        epoch: u64,
        why: MoveWhy,
    },
}

/// One block of `trace`: an exit or a drift, and what led to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    /// When (Unix seconds).
    pub at: u64,
    /// What happened.
    pub what: Happened,
    /// The last lines of stderr, for an exit.
    pub stderr: Vec<String>,
    /// The agent's last operations on the tree.
    pub ops: Vec<Recent>,
    /// The last ctl write to it or message it read.
    pub before: Option<Recent>,
}

/// The drift that halted an agent, for `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftAt {
    /// The operation (`write`, `walk`, …).
    pub op: String,
    /// The path it was tried on.
    pub path: String,
    /// When (Unix seconds).
    pub at: u64,
}

/// The program an agent runs: an absolute path and its arguments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exec {
    /// The program, an absolute path on the host that runs it.
    pub path: String,
    /// Its arguments (after the program's own name).
    pub args: Vec<String>,
}

impl fmt::Display for Exec {
    /// The words as `exec` takes them: each quoted when it must be.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&quote(&self.path))?;
        for a in &self.args {
            write!(f, " {}", quote(a))?;
        }
        Ok(())
    }
}

/// Where an agent may run in a swarm (`place` on its ctl; see agent(3)
/// PLACEMENT).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Place {
    /// On the node that runs the fewest agents (the default).
    #[default]
    Spread,
    /// On the node that runs the most agents and still has room.
    Pack,
    /// On this node only.
    Node(u64),
    /// On a node labelled `KEY=VALUE` (`label` on its ctl).
    Label {
        /// The label's key.
        key: String,
        /// Its value.
        value: String,
    },
}

impl fmt::Display for Place {
    /// As `place` takes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Spread => f.write_str("spread"),
            Place::Pack => f.write_str("pack"),
            Place::Node(n) => write!(f, "node={n}"),
            Place::Label { key, value } => write!(f, "label={key}={value}"),
        }
    }
}

/// A committed placement: the node whose runner runs the agent, and the
/// epoch that runner reports under (a report of an older epoch is
/// refused, so a runner cut off from the swarm cannot speak for a copy
/// started elsewhere since).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placed {
    /// The node (its swarm id).
    pub node: u64,
    /// The placement's epoch (1 for the first).
    pub epoch: u64,
    /// When it was placed (Unix seconds, by the committed clocks).
    pub at: u64,
}

/// Why an agent was placed again elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MoveWhy {
    /// Its node is dead in the leader's view and lost its lease.
    NodeDead,
    /// Its node lost its lease (cut off from the log's leader).
    LeaseLost,
    /// Its node was removed from the swarm.
    NodeRemoved,
    /// Its node left the swarm.
    NodeLeft,
    /// Its node was drained.
    Drain,
    /// `move node=ID`.
    Move,
}

impl MoveWhy {
    /// The word for it in `trace` and on `/events`.
    pub fn word(self) -> &'static str {
        match self {
            MoveWhy::NodeDead => "node-dead",
            MoveWhy::LeaseLost => "lease-lost",
            MoveWhy::NodeRemoved => "node-removed",
            MoveWhy::NodeLeft => "node-left",
            MoveWhy::Drain => "drain",
            MoveWhy::Move => "move",
        }
    }
}
