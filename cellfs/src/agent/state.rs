//! The committed state of agents and how commands change it.
//!
//! Everything here is what the log says: identity (the key seed the
//! proposing node derived), intent, program, environment, limits,
//! restart policy, the state the agent is wanted in, and what is known
//! of it: what its runner reported (`report` lines: running, exits,
//! crash loops, failures), its output (`log` lines), drifts outside its
//! intent the server caught, and the trace of each exit and drift.
//!
//! The bounds on what agents cost are kept here too, and checked against
//! the committed state both when a write is proposed and when it is
//! applied (so two writes proposed at once never pass one together): an
//! agent's limits within those of the agents above it and of the agent
//! whose capability wrote them, a quota of agents per agent tree, a part
//! of the node's agents kept for capabilities that are not agents', and
//! a rate of output per agent (see agent(3) LIMITS AND QUOTAS, OUTPUT).

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

use crate::cap::{NodeKey, PublicKey};
use crate::command::Applied;
use crate::error::Error;
use crate::events::Kind;
use crate::node::MAX_OBJ;

use super::ctl::{quote, size_word};
use super::dir_node;
use super::intent::{self, Intent};

/// Most agents one node holds.
pub const MAX_AGENTS: usize = 4096;
/// The last of the node's [`MAX_AGENTS`] that only capabilities that
/// are not agents' may make: however many agents make agents, the
/// owner's `mkdir` still works.
pub const AGENT_RESERVE: usize = 64;
/// Most agents one agent tree holds unless `limit agents=` on its root
/// says otherwise.
pub const DEFAULT_QUOTA: u32 = 64;
/// The limits every agent runs under until `limit` says otherwise: one
/// CPU, 512 MiB, 256 processes and threads.
pub const DEFAULT_LIMITS: Limits = Limits {
    cpu: Some(100),
    mem: Some(512 << 20),
    pids: Some(256),
};
/// Bytes of `log` lines (a newline each) one agent may commit per
/// second, on average: twice what a runner sends (see agent(3)), so
/// only a client that ignores the runner's bound meets it.
pub const LOG_RATE: u64 = 8 * 1024;
/// Bytes of `log` lines one agent may commit at once, after a quiet
/// spell.
pub const LOG_BURST: u64 = 64 * 1024;
/// Most environment variables one agent holds.
pub const MAX_ENV: usize = 128;

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
fn limit_word<T: fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| String::from("max"), |n| format!("{n}"))
}

fn mem_word(v: Option<u64>) -> String {
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
fn above(v: Option<u64>, ceiling: Option<u64>) -> bool {
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

/// Most lines an agent's `log` keeps (the oldest go first).
pub const MAX_LOG_LINES: usize = 1000;
/// Most bytes an agent's `log` keeps, newlines included.
pub const MAX_LOG_BYTES: usize = 64 * 1024;
/// Most blocks an agent's `trace` keeps (the oldest go first).
pub const MAX_TRACE: usize = 64;
/// Most stderr lines kept with one exit (its last ones).
pub const MAX_STDERR: usize = 16;
/// Most recent operations kept with one trace block.
pub const MAX_RECENT: usize = 16;

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
    fn describe(&self) -> String {
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

/// An agent mutation, as logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentCmd {
    /// `mkdir /agent/NAME`, with the new agent's key seed, at a Unix time
    /// in seconds.
    Create { name: String, seed: Seed, at: u64 },
    /// Removing `/agent/NAME`.
    Remove { name: String },
    /// The lines of one `ctl` write, applied together, at a Unix time in
    /// seconds (the proposer's clock: `since` comes from it).
    Ctl {
        name: String,
        ops: Vec<AgentOp>,
        at: u64,
    },
    /// The server caught agent `name` doing `op` on `path` outside its
    /// intent, at Unix second `at`, in its `starts`-th run (a drift seen
    /// before a later `start` is stale and changes nothing), after `ops`
    /// and `before` (from the proposing node's ring). Halts it.
    Drift {
        name: String,
        op: String,
        path: String,
        at: u64,
        starts: u64,
        ops: Vec<Recent>,
        before: Option<Recent>,
    },
}

/// One line of an agent's ctl write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentOp {
    /// The program to run.
    Exec(Exec),
    /// Set an environment variable, or remove it (`None`).
    Env { key: String, value: Option<String> },
    /// Replace the declared intent.
    Intent(Intent),
    /// Change some limits.
    Limit(LimitChange),
    /// Change some of the restart policy.
    Restart {
        restart: Option<Restart>,
        max: Option<u32>,
        window: Option<u64>,
    },
    /// Want it running.
    Start,
    /// Want it stopped (TERM, then KILL).
    Stop,
    /// Want it killed (KILL now).
    Kill,
    /// Make a sub-agent with its own key seed and an intent within this
    /// agent's (the parent's, when none was named, resolved by the
    /// proposer so the log holds what was checked).
    Spawn {
        child: String,
        seed: Seed,
        intent: Intent,
    },
    /// What the runner reports (needs the admin right).
    Report(Report),
    /// One line of the agent's output (needs the admin right).
    Log(String),
    /// `limit agents=N|max`: the most agents this agent's tree may hold
    /// (`None`: no quota but the node's). Only on a tree's root, and
    /// never written with an agent's capability.
    Quota(Option<u32>),
    /// The ops after it were written with agent NAME's capability (the
    /// device puts it first; no ctl line makes it): what that agent may
    /// set bounds them, and the agents they make are made by it.
    By(String),
}

impl AgentOp {
    /// How the op reads on `/events` and in `/raft/log`. Environment
    /// values are left out (they may hold credentials), and so is the seed.
    pub fn describe(&self) -> String {
        match self {
            AgentOp::Exec(e) => format!("exec {e}"),
            AgentOp::Env {
                key,
                value: Some(_),
            } => format!("env {key}=…"),
            AgentOp::Env { key, value: None } => format!("env {key}="),
            AgentOp::Intent(i) => format!("intent {}", intent::words(i)),
            AgentOp::Limit(c) => {
                let mut s = String::from("limit");
                if let Some(v) = c.cpu {
                    s.push_str(&format!(" cpu={}", limit_word(v)));
                }
                if let Some(v) = c.mem {
                    s.push_str(&format!(" mem={}", mem_word(v)));
                }
                if let Some(v) = c.pids {
                    s.push_str(&format!(" pids={}", limit_word(v)));
                }
                s
            }
            AgentOp::Restart {
                restart,
                max,
                window,
            } => {
                let mut s = String::from("restart");
                if let Some(r) = restart {
                    s.push_str(&format!(" policy={}", r.word()));
                }
                if let Some(m) = max {
                    s.push_str(&format!(" max={m}"));
                }
                if let Some(w) = window {
                    s.push_str(&format!(" window={w}s"));
                }
                s
            }
            AgentOp::Start => String::from("start"),
            AgentOp::Stop => String::from("stop"),
            AgentOp::Kill => String::from("kill"),
            AgentOp::Spawn { child, intent, .. } => {
                format!("spawn {child} {}", intent::words(intent))
            }
            AgentOp::Report(r) => r.describe(),
            AgentOp::Log(line) => format!("log {} bytes", line.len()),
            AgentOp::Quota(q) => format!("limit agents={}", limit_word(*q)),
            AgentOp::By(name) => format!("by {}{name}", super::HOLDER),
        }
    }

    /// Whether it is the runner's (`report`, `log`): those need the admin
    /// right, and are not what a trace calls a ctl write to the agent.
    pub fn is_runners(&self) -> bool {
        matches!(self, AgentOp::Report(_) | AgentOp::Log(_))
    }
}

/// One agent.
#[derive(Serialize, Deserialize)]
pub struct Agent {
    /// Its name under `/agent`.
    pub name: String,
    /// The agent that spawned it, if one did.
    pub parent: Option<String>,
    /// The sub-agents it spawned that still exist.
    pub children: BTreeSet<String>,
    /// Its key's secret seed (for the runner; never rendered).
    pub seed: Seed,
    /// Its public key.
    pub key: PublicKey,
    /// The program it runs, once set.
    pub exec: Option<Exec>,
    /// Its environment.
    pub env: BTreeMap<String, String>,
    /// What it means to touch.
    pub intent: Intent,
    /// Its resource limits.
    pub limits: Limits,
    /// Its restart policy.
    pub policy: Policy,
    /// What it was last asked to be.
    pub want: Want,
    /// What is known of it.
    pub phase: Phase,
    /// When `phase` last changed (Unix seconds).
    pub since: u64,
    /// When it was made (Unix seconds).
    pub created: u64,
    /// When anything of it last changed (Unix seconds; its files' mtime).
    pub changed: u64,
    /// Bumped on every change (the qid version of its files).
    pub version: u32,
    /// How many times `start` was written (a drift proposed in an
    /// earlier run is stale).
    pub starts: u64,
    /// Its process, while one runs.
    pub pid: Option<u32>,
    /// The node that runs (or last ran) it.
    pub node: Option<String>,
    /// Exits reported with `restarting=yes`.
    pub restarts: u32,
    /// How its last process ended.
    pub last_exit: Option<ExitHow>,
    /// The drift that halted it, until `start`.
    pub drift: Option<DriftAt>,
    /// Why the runner could not run it (`report failed`), until `start`.
    pub reason: Option<String>,
    /// One block per exit and drift, oldest first.
    pub trace: VecDeque<Trace>,
    /// Its output, oldest line first.
    pub log: VecDeque<String>,
    /// Bytes in `log`, a newline for each line included.
    pub log_bytes: usize,
    /// The runner that claimed it (`report claim`), until released.
    pub runner: Option<String>,
    /// How many times its runner resumed it (`report resumed`).
    pub resumes: u32,
    /// The agent whose capability made it (by `spawn` or `mkdir`), if
    /// one did.
    pub made_by: Option<String>,
    /// The most agents its tree may hold (`None`: no quota but the
    /// node's); what counts is its tree's root's.
    pub quota: Option<u32>,
    /// What its runner last said of its process's sandbox (`report
    /// running … sandbox=WORDS`), if it said.
    pub sandbox: Option<String>,
    /// Bytes of `log` lines it may commit now (see [`LOG_RATE`]).
    pub log_tokens: u64,
    /// When `log_tokens` was last filled (Unix seconds, by the clocks
    /// of committed commands).
    pub log_filled: u64,
}

impl fmt::Debug for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The seed stays out of debug output, like a token's proof.
        f.debug_struct("Agent")
            .field("name", &self.name)
            .field("parent", &self.parent)
            .field("want", &self.want)
            .field("phase", &self.phase)
            .field("runner", &self.runner)
            .finish_non_exhaustive()
    }
}

impl Agent {
    fn new(name: &str, seed: &Seed, at: u64, parent: Option<&str>, intent: Intent) -> Agent {
        Agent {
            made_by: None,
            quota: Some(DEFAULT_QUOTA),
            sandbox: None,
            log_tokens: LOG_BURST,
            log_filled: at,
            name: String::from(name),
            parent: parent.map(String::from),
            children: BTreeSet::new(),
            key: seed.public(),
            seed: seed.clone(),
            exec: None,
            env: BTreeMap::new(),
            intent,
            limits: DEFAULT_LIMITS,
            policy: Policy::default(),
            want: Want::Stopped,
            phase: Phase::Created,
            since: at,
            created: at,
            changed: at,
            version: 0,
            starts: 0,
            pid: None,
            node: None,
            restarts: 0,
            last_exit: None,
            drift: None,
            reason: None,
            trace: VecDeque::new(),
            log: VecDeque::new(),
            log_bytes: 0,
            runner: None,
            resumes: 0,
        }
    }

    /// Add a trace block, dropping the oldest past [`MAX_TRACE`].
    fn push_trace(&mut self, t: Trace) {
        if self.trace.len() >= MAX_TRACE {
            self.trace.pop_front();
        }
        self.trace.push_back(t);
    }

    /// Add a line of output, dropping the oldest past [`MAX_LOG_LINES`]
    /// or [`MAX_LOG_BYTES`].
    fn push_log(&mut self, line: &str) {
        self.log_bytes += line.len() + 1;
        self.log.push_back(String::from(line));
        while self.log.len() > MAX_LOG_LINES || self.log_bytes > MAX_LOG_BYTES {
            match self.log.pop_front() {
                Some(old) => self.log_bytes -= old.len() + 1,
                None => break,
            }
        }
    }

    /// The bytes of `log` lines it may commit at Unix second `at`.
    fn log_room(&self, at: u64) -> u64 {
        let quiet = at.saturating_sub(self.log_filled);
        self.log_tokens
            .saturating_add(quiet.saturating_mul(LOG_RATE))
            .min(LOG_BURST)
    }

    /// Whether it is halted for drift (everything it asks is refused).
    pub fn halted(&self) -> bool {
        self.phase == Phase::HaltedDrift
    }

    fn set_phase(&mut self, phase: Phase, at: u64) {
        if self.phase != phase {
            self.phase = phase;
            self.since = at;
        }
    }
}

/// Every agent, by name and by number.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Agents {
    by_name: BTreeMap<String, u64>,
    by_id: BTreeMap<u64, Agent>,
    last_id: u64,
}

impl Agents {
    /// How many agents exist.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The agent numbered `id`.
    pub fn get(&self, id: u64) -> Option<&Agent> {
        self.by_id.get(&id)
    }

    /// The number of the agent called `name`.
    pub fn id(&self, name: &str) -> Option<u64> {
        self.by_name.get(name).copied()
    }

    /// The agent called `name`.
    pub fn by_name(&self, name: &str) -> Option<&Agent> {
        self.id(name).and_then(|id| self.get(id))
    }

    /// Agent numbers in name order.
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.by_name.values().copied()
    }

    /// The number the next agent made gets (a proposer mixes it into a
    /// new key's seed, so two agents of one name made one after the
    /// other get different keys).
    pub fn next_id(&self) -> u64 {
        self.last_id + 1
    }

    fn find(&self, name: &str) -> Result<&Agent, Error> {
        self.by_name(name)
            .ok_or_else(|| Error::NotFound(format!("/agent/{name}")))
    }

    /// The sub-agents of `name`, theirs, and so on (parents first).
    fn descendants(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut at = 0;
        let mut next = self.by_name(name).map(|a| &a.children);
        while let Some(children) = next {
            out.extend(children.iter().cloned());
            next = out
                .get(at)
                .and_then(|c| self.by_name(c))
                .map(|a| &a.children);
            at += 1;
        }
        out
    }

    fn find_mut(&mut self, name: &str) -> Result<&mut Agent, Error> {
        let id = self
            .id(name)
            .ok_or_else(|| Error::NotFound(format!("/agent/{name}")))?;
        self.by_id
            .get_mut(&id)
            .ok_or_else(|| Error::NotFound(format!("/agent/{name}")))
    }

    /// Why `n` more agents cannot be made now, if they cannot.
    fn refuse_more(&self, name: &str, n: usize) -> Option<Error> {
        if self.len() + n > MAX_AGENTS || self.last_id + n as u64 > MAX_OBJ {
            return Some(Error::Again(format!(
                "agent {name}: the node holds at most {MAX_AGENTS} agents; remove one first"
            )));
        }
        None
    }

    /// The agents above `agent`: its parent, that one's, and so on up
    /// to the root of its tree.
    pub fn ancestors<'a>(&'a self, agent: &'a Agent) -> impl Iterator<Item = &'a Agent> + 'a {
        let mut next = agent.parent.as_deref();
        let mut steps = 0;
        core::iter::from_fn(move || {
            // A parent is made before its sub-agents and outlives them,
            // so the chain ends; the count makes sure of it.
            steps += 1;
            if steps > MAX_AGENTS {
                return None;
            }
            let p = self.by_name(next?)?;
            next = p.parent.as_deref();
            Some(p)
        })
    }

    /// The limits `agent` runs under: for each key the tightest of its
    /// own and every ancestor's.
    pub fn effective(&self, agent: &Agent) -> Limits {
        self.ancestors(agent)
            .fold(agent.limits, |l, a| l.min(a.limits))
    }

    /// The root of `agent`'s tree: the agent above it (or itself) that
    /// has no parent, which a capability that is not an agent's made.
    pub fn root<'a>(&'a self, agent: &'a Agent) -> &'a Agent {
        self.ancestors(agent).last().unwrap_or(agent)
    }

    /// How many agents the tree whose root is `root` holds, the root
    /// included.
    pub fn tree_size(&self, root: &str) -> usize {
        // Counted, not listed: asked of every spawn.
        let mut count = 0;
        let mut stack: Vec<&BTreeSet<String>> = Vec::new();
        stack.extend(self.by_name(root).map(|a| &a.children));
        while let Some(children) = stack.pop() {
            count += children.len();
            stack.extend(
                children
                    .iter()
                    .filter_map(|c| self.by_name(c))
                    .map(|a| &a.children),
            );
        }
        count + 1
    }

    /// The tightest limit of `key` above `agent` in its tree, and the
    /// ancestor that sets it; `None` when none sets one.
    fn ceiling<'a>(&'a self, agent: &'a Agent, key: LimitKey) -> Option<(u64, &'a str)> {
        let mut best: Option<(u64, &str)> = None;
        for a in self.ancestors(agent) {
            if let Some(v) = a.limits.get(key)
                && best.is_none_or(|(b, _)| v < b)
            {
                best = Some((v, a.name.as_str()));
            }
        }
        best
    }

    /// Check a `limit` line on `agent`: no key above what an ancestor
    /// sets, nor, when agent `by`'s capability wrote it, above what
    /// `by` runs under.
    fn check_limit(&self, agent: &Agent, c: &LimitChange, by: Option<&Agent>) -> Result<(), Error> {
        let name = &agent.name;
        for key in LimitKey::ALL {
            let Some(new) = c.get(key) else {
                continue;
            };
            if let Some((lim, who)) = self.ceiling(agent, key)
                && above(new, Some(lim))
            {
                return Err(Error::Perm(format!(
                    "agent {name}: limit: {} is above the limit of its ancestor {who} ({}); a sub-agent's limits stay within its ancestors'",
                    key.word(new),
                    key.word(Some(lim))
                )));
            }
            if let Some(w) = by {
                let own = self.effective(w).get(key);
                if above(new, own) {
                    return Err(Error::Perm(format!(
                        "agent {name}: limit: {} is above the limit of agent {} ({}), whose capability wrote it; an agent may not set a limit above its own",
                        key.word(new),
                        w.name,
                        key.word(own)
                    )));
                }
            }
        }
        Ok(())
    }

    /// Check that agent `name` may be removed: it has no sub-agents (so
    /// none is orphaned) and is not wanted running.
    pub fn check_remove(&self, name: &str) -> Result<(), Error> {
        let agent = self.find(name)?;
        if !agent.children.is_empty() {
            let names: Vec<&str> = agent.children.iter().map(String::as_str).collect();
            return Err(Error::Perm(format!(
                "agent {name}: it has sub-agents ({}); remove them first",
                names.join(", ")
            )));
        }
        if agent.want == Want::Running {
            return Err(Error::Perm(format!(
                "agent {name}: it is wanted running; write 'stop' or 'kill' to its ctl first"
            )));
        }
        Ok(())
    }

    /// Check every op of a ctl write, proposed at Unix second `at`,
    /// against the state before any is applied, so that a write is
    /// taken whole or not at all.
    pub fn check_ops(&self, name: &str, ops: &[AgentOp], at: u64) -> Result<(), Error> {
        let agent = self.find(name)?;
        let parent = match &agent.parent {
            Some(p) => Some(self.find(p)?),
            None => None,
        };
        // The agent whose capability wrote the ops after a `By`.
        let mut writer: Option<&Agent> = None;
        let root = self.root(agent);
        let mut quota = root.quota;
        // Counted only when a spawn needs it.
        let mut tree: Option<usize> = None;
        let mut has_exec = agent.exec.is_some();
        let mut intent: &Intent = &agent.intent;
        let mut env: BTreeSet<&str> = agent.env.keys().map(String::as_str).collect();
        let mut runner: Option<&str> = agent.runner.as_deref();
        // Sub-agents spawned earlier in this write: with those it has,
        // their intents this one's must keep covering.
        let mut children: Vec<(&str, &Intent)> = Vec::new();
        let mut spawned = 0;
        for op in ops {
            match op {
                AgentOp::Exec(_) => has_exec = true,
                AgentOp::Env {
                    key,
                    value: Some(_),
                } => {
                    env.insert(key.as_str());
                    if env.len() > MAX_ENV {
                        return Err(Error::Again(format!(
                            "agent {name}: env {key}: an agent holds at most {MAX_ENV} variables; remove one with 'env KEY='"
                        )));
                    }
                }
                AgentOp::Env { key, value: None } => {
                    env.remove(key.as_str());
                }
                AgentOp::Intent(new) => {
                    if let Some(p) = parent
                        && let Some(r) = intent::first_outside(new, &p.intent)
                    {
                        return Err(Error::Perm(format!(
                            "agent {name}: intent: \"{r}\" is wider than the intent of its parent {} ({}); a sub-agent's intent must be within its parent's",
                            p.name,
                            intent::words(&p.intent)
                        )));
                    }
                    // Looked up only here: an agent may have thousands.
                    let had = agent
                        .children
                        .iter()
                        .filter_map(|c| self.by_name(c).map(|a| (c.as_str(), &a.intent)));
                    for (child, held) in had.chain(children.iter().copied()) {
                        if let Some(r) = intent::first_outside(held, new) {
                            return Err(Error::Perm(format!(
                                "agent {name}: intent: its sub-agent {child} holds \"{r}\", which the new intent does not cover; narrow {child}'s intent or remove it first"
                            )));
                        }
                    }
                    intent = new;
                }
                AgentOp::Report(Report::Claim { runner: new }) => {
                    if let Some(held) = runner
                        && held != new
                    {
                        return Err(Error::Perm(format!(
                            "agent {name} is run by runner {held}; runner {new} may claim it once {held} releases it (report release, or report stopped, crashloop or failed)"
                        )));
                    }
                    runner = Some(new);
                }
                AgentOp::Report(
                    Report::Release | Report::Stopped | Report::Crashloop | Report::Failed(_),
                ) => runner = None,
                AgentOp::Report(Report::Resumed { .. }) if runner.is_none() => {
                    return Err(Error::Invalid(format!(
                        "agent {name}: report resumed: no runner has claimed it; write 'report claim runner=NAME' before it (in the same write)"
                    )));
                }
                AgentOp::Start if !has_exec => {
                    return Err(Error::Invalid(format!(
                        "agent {name}: start: there is no program to run; write 'exec PATH [ARG…]' first"
                    )));
                }
                AgentOp::Spawn {
                    child,
                    intent: wanted,
                    ..
                } => {
                    if self.id(child).is_some()
                        || children.iter().any(|(c, _)| *c == child.as_str())
                    {
                        return Err(Error::Exists(format!("agent {name}: spawn: agent {child}")));
                    }
                    spawned += 1;
                    if let Some(e) = self.refuse_more(child, spawned) {
                        return Err(e);
                    }
                    if writer.is_some() && self.len() + spawned > MAX_AGENTS - AGENT_RESERVE {
                        return Err(Error::Again(format!(
                            "agent {name}: spawn {child}: the node holds {} agents; the last {AGENT_RESERVE} of its {MAX_AGENTS} are kept for capabilities that are not agents'",
                            self.len()
                        )));
                    }
                    if let Some(q) = quota {
                        let held = *tree.get_or_insert_with(|| self.tree_size(&root.name));
                        if held + spawned > q as usize {
                            return Err(Error::Again(format!(
                                "agent {name}: spawn {child}: the agent tree of {} holds {} agents, its quota ({q}); remove one, or raise the quota with 'limit agents=N' on /agent/{}/ctl (with a capability that is not an agent's)",
                                root.name,
                                held + spawned - 1,
                                root.name
                            )));
                        }
                    }
                    if let Some(r) = intent::first_outside(wanted, intent) {
                        return Err(Error::Perm(format!(
                            "agent {name}: spawn {child}: \"{r}\" is wider than {name}'s intent ({}); a sub-agent's intent must be within its parent's",
                            intent::words(intent)
                        )));
                    }
                    children.push((child, wanted));
                }
                AgentOp::By(by) => {
                    writer = Some(self.by_name(by).ok_or_else(|| {
                        Error::Unauthorized(format!(
                            "agent {name}: the write came with the capability of agent {by}, and there is no agent {by}"
                        ))
                    })?);
                }
                AgentOp::Limit(c) => self.check_limit(agent, c, writer)?,
                AgentOp::Quota(q) => {
                    if let Some(w) = writer {
                        return Err(Error::Perm(format!(
                            "agent {name}: limit: agents= is an administrator's: the capability that wrote it is agent {}'s, and agents may not set the quota of a tree",
                            w.name
                        )));
                    }
                    if agent.parent.is_some() {
                        return Err(Error::Perm(format!(
                            "agent {name}: limit: agents= is set on the root of its agent tree: write it to /agent/{}/ctl",
                            root.name
                        )));
                    }
                    quota = *q;
                }
                _ => {}
            }
        }
        let logged = log_bytes(ops);
        let room = agent.log_room(at);
        if logged > room {
            return Err(Error::Again(format!(
                "agent {name}: log: {logged} bytes of output are over its rate ({} KiB/s, at most {} KiB at once): {room} bytes may be logged now; nothing was logged",
                LOG_RATE / 1024,
                LOG_BURST / 1024
            )));
        }
        Ok(())
    }

    fn insert(&mut self, name: &str, seed: &Seed, at: u64, parent: Option<&str>, i: Intent) -> u64 {
        self.last_id += 1;
        let id = self.last_id;
        self.by_name.insert(String::from(name), id);
        self.by_id.insert(id, Agent::new(name, seed, at, parent, i));
        id
    }

    /// Apply one agent command: all of it or, on error, none.
    pub fn apply(&mut self, cmd: &AgentCmd) -> Result<Applied, Error> {
        let mut done = Applied::default();
        match cmd {
            AgentCmd::Create { name, seed, at } => {
                if self.by_name.contains_key(name) {
                    return Err(Error::Exists(format!("agent {name}")));
                }
                if let Some(e) = self.refuse_more(name, 1) {
                    return Err(e);
                }
                let id = self.insert(name, seed, *at, None, Intent::new());
                done.created = Some(dir_node(id));
                done.events.push((Kind::Create, format!("/agent/{name}")));
            }
            AgentCmd::Remove { name } => {
                self.check_remove(name)?;
                if let Some(id) = self.by_name.remove(name)
                    && let Some(agent) = self.by_id.remove(&id)
                    && let Some(parent) = agent.parent
                    && let Ok(p) = self.find_mut(&parent)
                {
                    p.children.remove(name);
                    p.version = p.version.wrapping_add(1);
                }
                done.events.push((Kind::Remove, format!("/agent/{name}")));
            }
            AgentCmd::Ctl { name, ops, at } => {
                self.check_ops(name, ops, *at)?;
                let mut by: Option<&String> = None;
                for op in ops {
                    if let AgentOp::By(w) = op {
                        by = Some(w);
                    } else if let AgentOp::Spawn {
                        child,
                        seed,
                        intent,
                    } = op
                    {
                        let id = self.insert(child, seed, *at, Some(name), intent.clone());
                        if let Some(c) = self.by_id.get_mut(&id) {
                            c.made_by = by.cloned();
                        }
                        self.find_mut(name)?.children.insert(child.clone());
                        // For a mkdir made as a spawn (an agent's).
                        done.created = Some(dir_node(id));
                        done.events.push((Kind::Create, format!("/agent/{child}")));
                    } else {
                        apply_op(self.find_mut(name)?, op, *at);
                        if matches!(op, AgentOp::Stop | AgentOp::Kill) {
                            // A parent's stop or kill ends its whole tree.
                            for d in self.descendants(name) {
                                let agent = self.find_mut(&d)?;
                                apply_op(agent, op, *at);
                                agent.changed = *at;
                                agent.version = agent.version.wrapping_add(1);
                                done.events.push((
                                    Kind::Ctl,
                                    format!(
                                        "agent {d}: {} (with its parent {name})",
                                        op.describe()
                                    ),
                                ));
                            }
                        }
                    }
                    // Output is the log's, not an event; who wrote it
                    // is the journal's.
                    if !matches!(op, AgentOp::Log(_) | AgentOp::By(_)) {
                        done.events
                            .push((Kind::Ctl, format!("agent {name}: {}", op.describe())));
                    }
                }
                let agent = self.find_mut(name)?;
                let logged = log_bytes(ops);
                if logged > 0 {
                    // check_ops made sure there was room.
                    agent.log_tokens = agent.log_room(*at).saturating_sub(logged);
                    agent.log_filled = agent.log_filled.max(*at);
                }
                agent.changed = *at;
                agent.version = agent.version.wrapping_add(1);
            }
            AgentCmd::Drift {
                name,
                op,
                path,
                at,
                starts,
                ops,
                before,
            } => {
                let agent = self.find_mut(name)?;
                // Caught before a later start, or halted already: that
                // run is over, nothing changes.
                if agent.starts != *starts || agent.halted() {
                    return Ok(done);
                }
                let words = intent::words(&agent.intent);
                agent.want = Want::Stopped;
                agent.set_phase(Phase::HaltedDrift, *at);
                agent.drift = Some(DriftAt {
                    op: op.clone(),
                    path: path.clone(),
                    at: *at,
                });
                agent.push_trace(Trace {
                    at: *at,
                    what: Happened::Drift {
                        op: op.clone(),
                        path: path.clone(),
                        intent: words.clone(),
                    },
                    stderr: Vec::new(),
                    ops: ops.clone(),
                    before: before.clone(),
                });
                agent.changed = *at;
                agent.version = agent.version.wrapping_add(1);
                done.events.push((
                    Kind::Drift,
                    format!(
                        "agent {name}: {op} {path} is outside its intent ({words}); halted until start"
                    ),
                ));
            }
        }
        Ok(done)
    }
}

/// The bytes the `log` lines of a write commit, a newline each.
fn log_bytes(ops: &[AgentOp]) -> u64 {
    ops.iter()
        .map(|op| match op {
            AgentOp::Log(l) => l.len() as u64 + 1,
            _ => 0,
        })
        .sum()
}

/// One ctl op on one agent (checked by [`Agents::check_ops`]); spawns are
/// applied by the caller, since they make another agent.
fn apply_op(agent: &mut Agent, op: &AgentOp, at: u64) {
    match op {
        AgentOp::Exec(e) => agent.exec = Some(e.clone()),
        AgentOp::Env {
            key,
            value: Some(v),
        } => {
            agent.env.insert(key.clone(), v.clone());
        }
        AgentOp::Env { key, value: None } => {
            agent.env.remove(key);
        }
        AgentOp::Intent(i) => agent.intent = i.clone(),
        AgentOp::Limit(c) => agent.limits = agent.limits.with(c),
        AgentOp::Restart {
            restart,
            max,
            window,
        } => {
            let p = &mut agent.policy;
            p.restart = restart.unwrap_or(p.restart);
            p.max = max.unwrap_or(p.max);
            p.window = window.unwrap_or(p.window);
        }
        AgentOp::Start => {
            agent.want = Want::Running;
            agent.starts += 1;
            agent.drift = None;
            agent.reason = None;
            // A running process goes on; anything else is for the runner
            // to start.
            if agent.phase != Phase::Running {
                agent.set_phase(Phase::Pending, at);
            }
        }
        AgentOp::Stop | AgentOp::Kill => {
            agent.want = if *op == AgentOp::Kill {
                Want::Killed
            } else {
                Want::Stopped
            };
            // One never started stays `created`: nothing ran to stop. A
            // running one is stopped when its runner says so; a halted
            // one stays halted until `start`.
            if !matches!(
                agent.phase,
                Phase::Created | Phase::Running | Phase::HaltedDrift
            ) {
                agent.set_phase(Phase::Stopped, at);
            }
        }
        AgentOp::Spawn { .. } | AgentOp::By(_) => {}
        AgentOp::Quota(q) => agent.quota = *q,
        AgentOp::Log(line) => agent.push_log(line),
        AgentOp::Report(r) => apply_report(agent, r, at),
    }
}

/// A runner's report. The facts (pid, node, exits, claims) are always
/// kept; the phase follows them, except that a halted agent stays halted
/// until `start`. A report that the runner let the agent go (stopped,
/// crash loop, failure) releases its claim.
fn apply_report(agent: &mut Agent, r: &Report, at: u64) {
    let phase = match r {
        Report::Claim { runner } => {
            agent.runner = Some(runner.clone());
            return;
        }
        Report::Release => {
            agent.runner = None;
            return;
        }
        Report::Resumed { ops, before } => {
            agent.resumes = agent.resumes.saturating_add(1);
            agent.push_trace(Trace {
                at,
                what: Happened::Resume {
                    runner: agent.runner.clone().unwrap_or_default(),
                    pid: agent.pid,
                    node: agent.node.clone(),
                },
                stderr: Vec::new(),
                ops: ops.clone(),
                before: before.clone(),
            });
            agent.pid = None;
            // Its runner starts it again and says so (report running).
            if agent.phase == Phase::Running {
                Phase::Pending
            } else {
                return;
            }
        }
        Report::Running { pid, node } => {
            agent.pid = Some(*pid);
            agent.node = Some(node.clone());
            // This process's runner said nothing of a sandbox.
            agent.sandbox = None;
            Phase::Running
        }
        Report::RunningSandboxed { pid, node, sandbox } => {
            agent.pid = Some(*pid);
            agent.node = Some(node.clone());
            agent.sandbox = Some(sandbox.clone());
            Phase::Running
        }
        Report::Exit(e) => {
            if e.restarting {
                agent.restarts = agent.restarts.saturating_add(1);
            }
            agent.last_exit = Some(e.how.clone());
            agent.push_trace(Trace {
                at,
                what: Happened::Exit {
                    how: e.how.clone(),
                    restarting: e.restarting,
                    pid: agent.pid,
                    node: agent.node.clone(),
                },
                stderr: e.stderr.clone(),
                ops: e.ops.clone(),
                before: e.before.clone(),
            });
            agent.pid = None;
            // Ended because it was asked to stop: stopped.
            if agent.want == Want::Running {
                Phase::Exited
            } else {
                Phase::Stopped
            }
        }
        Report::Crashloop => {
            agent.pid = None;
            agent.runner = None;
            Phase::Crashloop
        }
        Report::Failed(why) => {
            agent.pid = None;
            agent.runner = None;
            agent.reason = Some(why.clone());
            Phase::Failed
        }
        Report::Stopped => {
            agent.pid = None;
            agent.runner = None;
            Phase::Stopped
        }
    };
    if !agent.halted() {
        agent.set_phase(phase, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::intent::parse;
    use alloc::string::ToString;
    use alloc::vec;

    fn s(x: &str) -> String {
        String::from(x)
    }

    fn intent(words: &str) -> Intent {
        let w: Vec<&str> = words.split_whitespace().collect();
        parse(&w).unwrap()
    }

    fn agents(names: &[&str]) -> Agents {
        let mut a = Agents::default();
        for (i, n) in names.iter().enumerate() {
            a.apply(&AgentCmd::Create {
                name: s(n),
                seed: Seed([i as u8; 32]),
                at: 10,
            })
            .unwrap();
        }
        a
    }

    fn ctl(a: &mut Agents, name: &str, ops: Vec<AgentOp>) -> Result<Applied, Error> {
        a.apply(&AgentCmd::Ctl {
            name: s(name),
            ops,
            at: 20,
        })
    }

    fn spawn(child: &str, i: &str) -> AgentOp {
        AgentOp::Spawn {
            child: s(child),
            seed: Seed([9; 32]),
            intent: intent(i),
        }
    }

    fn exec() -> AgentOp {
        AgentOp::Exec(Exec {
            path: s("/bin/true"),
            args: vec![],
        })
    }

    #[test]
    fn two_replicas_applying_the_same_commands_hold_the_same_keys() {
        let cmds = [
            AgentCmd::Create {
                name: s("a"),
                seed: Seed([3; 32]),
                at: 1,
            },
            AgentCmd::Ctl {
                name: s("a"),
                ops: vec![spawn("b", "none")],
                at: 2,
            },
        ];
        let (mut x, mut y) = (Agents::default(), Agents::default());
        for c in &cmds {
            x.apply(c).unwrap();
            y.apply(c).unwrap();
        }
        for n in ["a", "b"] {
            let (ka, kb) = (x.by_name(n).unwrap().key, y.by_name(n).unwrap().key);
            assert_eq!(ka, kb);
        }
        assert_eq!(x.by_name("a").unwrap().key, Seed([3; 32]).public());
        assert_ne!(x.by_name("a").unwrap().key, x.by_name("b").unwrap().key);
        let dbg = alloc::format!("{:?} {:?}", cmds[0], x.by_name("a").unwrap());
        assert!(!dbg.contains("3, 3"), "the seed is never printed: {dbg}");
    }

    #[test]
    fn start_stop_kill_set_want_and_phase_with_since() {
        let mut a = agents(&["a"]);
        let e = ctl(&mut a, "a", vec![AgentOp::Start]).unwrap_err();
        assert!(e.to_string().contains("no program to run"), "{e}");
        ctl(&mut a, "a", vec![exec(), AgentOp::Start]).unwrap();
        let x = a.by_name("a").unwrap();
        assert_eq!(
            (x.want, x.phase, x.since),
            (Want::Running, Phase::Pending, 20)
        );
        a.apply(&AgentCmd::Ctl {
            name: s("a"),
            ops: vec![AgentOp::Kill],
            at: 30,
        })
        .unwrap();
        let x = a.by_name("a").unwrap();
        assert_eq!(
            (x.want, x.phase, x.since),
            (Want::Killed, Phase::Stopped, 30)
        );
        let mut b = agents(&["b"]);
        ctl(&mut b, "b", vec![AgentOp::Stop]).unwrap();
        let x = b.by_name("b").unwrap();
        assert_eq!((x.phase, x.since), (Phase::Created, 10), "never started");
    }

    #[test]
    fn a_bad_op_anywhere_changes_nothing() {
        let mut a = agents(&["a"]);
        let ops = vec![
            AgentOp::Env {
                key: s("K"),
                value: Some(s("v")),
            },
            exec(),
            spawn("b", "none"),
            spawn("b", "none"),
        ];
        assert!(matches!(ctl(&mut a, "a", ops), Err(Error::Exists(_))));
        let x = a.by_name("a").unwrap();
        assert!(x.env.is_empty() && x.exec.is_none() && x.children.is_empty());
        assert_eq!((a.len(), x.version), (1, 0));
    }

    #[test]
    fn a_sub_agent_is_never_wider_than_its_parent() {
        let mut a = agents(&["p"]);
        ctl(&mut a, "p", vec![AgentOp::Intent(intent("rw /chan"))]).unwrap();
        let e = ctl(&mut a, "p", vec![spawn("c", "rwc /chan/x")]).unwrap_err();
        assert!(e.to_string().contains("wider than p's intent"), "{e}");
        assert!(a.by_name("c").is_none());
        ctl(&mut a, "p", vec![spawn("c", "r /chan/x")]).unwrap();
        let c = a.by_name("c").unwrap();
        assert_eq!(c.parent.as_deref(), Some("p"));
        assert_eq!(intent::words(&c.intent), "r /chan/x");
        assert!(a.by_name("p").unwrap().children.contains("c"));
        // The child may not widen itself, nor the parent narrow below it.
        let e = ctl(&mut a, "c", vec![AgentOp::Intent(intent("r /cap"))]).unwrap_err();
        assert!(e.to_string().contains("parent p"), "{e}");
        let e = ctl(&mut a, "p", vec![AgentOp::Intent(intent("r /cap"))]).unwrap_err();
        assert!(e.to_string().contains("sub-agent c"), "{e}");
        // Nor spawn and narrow in one write.
        let e = ctl(
            &mut a,
            "p",
            vec![spawn("d", "w /chan/y"), AgentOp::Intent(intent("r /chan"))],
        )
        .unwrap_err();
        assert!(e.to_string().contains("sub-agent d"), "{e}");
        assert!(a.by_name("d").is_none());
        ctl(&mut a, "c", vec![AgentOp::Intent(intent("r /chan/x/y"))]).unwrap();
    }

    #[test]
    fn stopping_or_killing_a_parent_stops_its_whole_tree() {
        let mut a = agents(&["p", "other"]);
        ctl(&mut a, "p", vec![spawn("c", "none")]).unwrap();
        ctl(&mut a, "c", vec![spawn("g", "none")]).unwrap();
        for n in ["p", "c", "g", "other"] {
            ctl(&mut a, n, vec![exec(), AgentOp::Start]).unwrap();
        }
        let done = ctl(&mut a, "p", vec![AgentOp::Kill]).unwrap();
        for n in ["p", "c", "g"] {
            assert_eq!(a.by_name(n).unwrap().want, Want::Killed, "{n}");
        }
        assert_eq!(a.by_name("other").unwrap().want, Want::Running);
        let said: Vec<&str> = done.events.iter().map(|(_, t)| t.as_str()).collect();
        assert!(
            said.contains(&"agent g: kill (with its parent p)"),
            "{said:?}"
        );
        // A child stopped alone leaves its parent be.
        ctl(&mut a, "other", vec![spawn("o2", "none")]).unwrap();
        ctl(&mut a, "o2", vec![exec(), AgentOp::Start]).unwrap();
        ctl(&mut a, "o2", vec![AgentOp::Stop]).unwrap();
        assert_eq!(a.by_name("other").unwrap().want, Want::Running);
        assert_eq!(a.by_name("o2").unwrap().want, Want::Stopped);
    }

    #[test]
    fn removal_refuses_parents_and_wanted_agents_and_unlinks_children() {
        let mut a = agents(&["p"]);
        ctl(&mut a, "p", vec![spawn("c", "none")]).unwrap();
        let e = a.apply(&AgentCmd::Remove { name: s("p") }).unwrap_err();
        assert!(e.to_string().contains("sub-agents (c)"), "{e}");
        ctl(&mut a, "c", vec![exec(), AgentOp::Start]).unwrap();
        let e = a.apply(&AgentCmd::Remove { name: s("c") }).unwrap_err();
        assert!(e.to_string().contains("wanted running"), "{e}");
        ctl(&mut a, "c", vec![AgentOp::Stop]).unwrap();
        a.apply(&AgentCmd::Remove { name: s("c") }).unwrap();
        assert!(a.by_name("p").unwrap().children.is_empty());
        a.apply(&AgentCmd::Remove { name: s("p") }).unwrap();
        assert!(a.is_empty());
        let e = a.apply(&AgentCmd::Remove { name: s("p") }).unwrap_err();
        assert!(matches!(e, Error::NotFound(_)));
    }

    #[test]
    fn env_limits_and_policy_change_only_what_is_named() {
        let mut a = agents(&["a"]);
        ctl(
            &mut a,
            "a",
            vec![
                AgentOp::Env {
                    key: s("K"),
                    value: Some(s("v")),
                },
                AgentOp::Limit(LimitChange {
                    cpu: Some(Some(50)),
                    ..LimitChange::default()
                }),
                AgentOp::Restart {
                    restart: Some(Restart::Always),
                    max: None,
                    window: None,
                },
            ],
        )
        .unwrap();
        ctl(
            &mut a,
            "a",
            vec![
                AgentOp::Env {
                    key: s("K"),
                    value: None,
                },
                AgentOp::Limit(LimitChange {
                    mem: Some(Some(1 << 30)),
                    ..LimitChange::default()
                }),
            ],
        )
        .unwrap();
        let x = a.by_name("a").unwrap();
        assert!(x.env.is_empty());
        assert_eq!(
            x.limits.words(),
            "cpu=50 mem=1G pids=256",
            "pids: the default"
        );
        assert_eq!(
            (x.policy.restart, x.policy.max, x.policy.window),
            (Restart::Always, 5, 60)
        );
    }

    fn exit(code: u8, restarting: bool) -> AgentOp {
        AgentOp::Report(Report::Exit(ExitReport {
            how: ExitHow::Code(code),
            restarting,
            stderr: vec![s("boom")],
            ops: vec![Recent {
                at: 19,
                text: s("read /chan/in/data"),
                times: 2,
            }],
            before: None,
        }))
    }

    fn running() -> AgentOp {
        AgentOp::Report(Report::Running {
            pid: 42,
            node: s("n1"),
        })
    }

    fn drift(a: &mut Agents, starts: u64) -> Applied {
        a.apply(&AgentCmd::Drift {
            name: s("a"),
            op: s("write"),
            path: s("/chan/out/data"),
            at: 30,
            starts,
            ops: vec![],
            before: None,
        })
        .unwrap()
    }

    #[test]
    fn reports_move_the_phase_and_exits_are_traced_and_counted() {
        let mut a = agents(&["a"]);
        ctl(&mut a, "a", vec![exec(), AgentOp::Start, running()]).unwrap();
        let x = a.by_name("a").unwrap();
        assert_eq!(
            (x.phase, x.pid, x.node.as_deref()),
            (Phase::Running, Some(42), Some("n1"))
        );
        ctl(&mut a, "a", vec![exit(1, true)]).unwrap();
        ctl(&mut a, "a", vec![running(), exit(2, false)]).unwrap();
        let x = a.by_name("a").unwrap();
        assert_eq!((x.phase, x.pid, x.restarts), (Phase::Exited, None, 1));
        assert_eq!(x.last_exit, Some(ExitHow::Code(2)));
        assert_eq!(x.trace.len(), 2);
        assert_eq!(x.trace[0].stderr, ["boom"]);
        assert!(matches!(
            &x.trace[1].what,
            Happened::Exit {
                pid: Some(42),
                restarting: false,
                ..
            }
        ));
        ctl(&mut a, "a", vec![AgentOp::Report(Report::Crashloop)]).unwrap();
        assert_eq!(a.by_name("a").unwrap().phase, Phase::Crashloop);
        ctl(
            &mut a,
            "a",
            vec![AgentOp::Report(Report::Failed(s("no such program")))],
        )
        .unwrap();
        let x = a.by_name("a").unwrap();
        assert_eq!(
            (x.phase, x.reason.as_deref()),
            (Phase::Failed, Some("no such program"))
        );
        ctl(&mut a, "a", vec![AgentOp::Start]).unwrap();
        let x = a.by_name("a").unwrap();
        assert_eq!((x.phase, x.reason.as_deref()), (Phase::Pending, None));
        // Stopping a running agent waits for its runner; an exit then is
        // a stop.
        ctl(&mut a, "a", vec![running(), AgentOp::Stop]).unwrap();
        assert_eq!(a.by_name("a").unwrap().phase, Phase::Running);
        ctl(&mut a, "a", vec![exit(0, false)]).unwrap();
        assert_eq!(a.by_name("a").unwrap().phase, Phase::Stopped);
    }

    #[test]
    fn a_drift_halts_until_start_and_a_stale_one_changes_nothing() {
        let mut a = agents(&["a"]);
        ctl(&mut a, "a", vec![exec(), AgentOp::Start, running()]).unwrap();
        let starts = a.by_name("a").unwrap().starts;
        let done = drift(&mut a, starts);
        assert_eq!(done.events[0].0, Kind::Drift);
        assert!(
            done.events[0]
                .1
                .contains("write /chan/out/data is outside its intent (none)")
        );
        let x = a.by_name("a").unwrap();
        assert_eq!(
            (x.phase, x.want, x.since),
            (Phase::HaltedDrift, Want::Stopped, 30)
        );
        assert_eq!(x.drift.as_ref().map(|d| d.at), Some(30));
        assert_eq!(x.trace.len(), 1);
        // Reports and stop keep it halted; a second drift adds nothing.
        ctl(
            &mut a,
            "a",
            vec![
                AgentOp::Stop,
                exit(9, false),
                AgentOp::Report(Report::Stopped),
            ],
        )
        .unwrap();
        assert!(drift(&mut a, starts).events.is_empty());
        let x = a.by_name("a").unwrap();
        assert_eq!(
            (x.phase, x.trace.len(), x.pid),
            (Phase::HaltedDrift, 2, None)
        );
        ctl(&mut a, "a", vec![AgentOp::Start]).unwrap();
        let x = a.by_name("a").unwrap();
        assert_eq!(
            (x.phase, x.want, x.drift.is_none()),
            (Phase::Pending, Want::Running, true)
        );
        // Caught in the run before this start: stale.
        assert!(drift(&mut a, starts).events.is_empty());
        assert_eq!(a.by_name("a").unwrap().phase, Phase::Pending);
    }

    fn claim(runner: &str) -> AgentOp {
        AgentOp::Report(Report::Claim { runner: s(runner) })
    }

    fn resumed() -> AgentOp {
        AgentOp::Report(Report::Resumed {
            ops: vec![],
            before: None,
        })
    }

    #[test]
    fn one_runner_holds_a_claim_until_it_lets_the_agent_go() {
        let mut a = agents(&["a"]);
        ctl(&mut a, "a", vec![exec(), AgentOp::Start, claim("h1")]).unwrap();
        // Again by the same runner: fine.
        ctl(&mut a, "a", vec![claim("h1"), running()]).unwrap();
        let version = a.by_name("a").unwrap().version;
        let e = ctl(&mut a, "a", vec![AgentOp::Stop, claim("h2")]).unwrap_err();
        assert!(
            e.to_string().starts_with("agent a is run by runner h1; "),
            "{e}"
        );
        let x = a.by_name("a").unwrap();
        assert_eq!(
            (x.runner.as_deref(), x.want, x.version),
            (Some("h1"), Want::Running, version),
            "nothing changed"
        );
        // Released in the same write, then taken.
        ctl(
            &mut a,
            "a",
            vec![AgentOp::Report(Report::Release), claim("h2")],
        )
        .unwrap();
        assert_eq!(a.by_name("a").unwrap().runner.as_deref(), Some("h2"));
        // Reports that the runner let it go release it too.
        for gone in [Report::Stopped, Report::Crashloop, Report::Failed(s("x"))] {
            ctl(&mut a, "a", vec![claim("h3")]).unwrap_err();
            ctl(&mut a, "a", vec![AgentOp::Report(gone)]).unwrap();
            assert_eq!(a.by_name("a").unwrap().runner, None);
            ctl(&mut a, "a", vec![claim("h2")]).unwrap();
        }
        ctl(&mut a, "a", vec![exit(1, true)]).unwrap();
        assert_eq!(a.by_name("a").unwrap().runner.as_deref(), Some("h2"));
    }

    #[test]
    fn a_resume_needs_a_claim_and_is_traced_and_counted() {
        let mut a = agents(&["a"]);
        ctl(&mut a, "a", vec![exec(), AgentOp::Start, running()]).unwrap();
        let e = ctl(&mut a, "a", vec![resumed()]).unwrap_err();
        assert!(e.to_string().contains("no runner has claimed it"), "{e}");
        ctl(&mut a, "a", vec![claim("h1"), resumed()]).unwrap();
        let x = a.by_name("a").unwrap();
        assert_eq!(
            (x.phase, x.pid, x.resumes, x.runner.as_deref()),
            (Phase::Pending, None, 1, Some("h1"))
        );
        assert_eq!(
            x.trace[0].what,
            Happened::Resume {
                runner: s("h1"),
                pid: Some(42),
                node: Some(s("n1")),
            }
        );
        // Claims and resumes are committed state: a snapshot keeps them.
        let bytes = postcard::to_allocvec(&a).unwrap();
        let back: Agents = postcard::from_bytes(&bytes).unwrap();
        let y = back.by_name("a").unwrap();
        assert_eq!(
            (y.runner.as_deref(), y.resumes, &y.trace),
            (Some("h1"), 1, &x.trace)
        );
    }

    #[test]
    fn log_and_trace_are_bounded() {
        let mut a = agents(&["a"]);
        let lines: Vec<AgentOp> = (0..MAX_LOG_LINES + 10)
            .map(|i| AgentOp::Log(alloc::format!("line {i}")))
            .collect();
        let done = ctl(&mut a, "a", lines).unwrap();
        assert!(done.events.is_empty(), "output is not an event");
        let x = a.by_name("a").unwrap();
        assert_eq!(x.log.len(), MAX_LOG_LINES);
        assert_eq!(x.log[0], "line 10");
        let big = s(&"x".repeat(4000));
        // One line a second: within the rate.
        for t in 0..40 {
            a.apply(&AgentCmd::Ctl {
                name: s("a"),
                ops: vec![AgentOp::Log(big.clone())],
                at: 100 + t,
            })
            .unwrap();
        }
        let x = a.by_name("a").unwrap();
        assert!(x.log_bytes <= MAX_LOG_BYTES);
        assert_eq!(
            x.log_bytes,
            x.log.iter().map(|l| l.len() + 1).sum::<usize>()
        );
        for _ in 0..MAX_TRACE + 5 {
            ctl(&mut a, "a", vec![exit(1, true)]).unwrap();
        }
        let x = a.by_name("a").unwrap();
        assert_eq!(
            (x.trace.len(), x.restarts),
            (MAX_TRACE, MAX_TRACE as u32 + 5)
        );
    }

    #[test]
    fn bounds_hold_when_applied_not_only_when_proposed() {
        // Each command below passed the proposer's check against the
        // same state; applied in order, the later ones are refused.
        let mut a = agents(&["p"]);
        let logs = |n: usize| vec![AgentOp::Log(s(&"x".repeat(999))); n];
        ctl(&mut a, "p", logs(40)).unwrap();
        let e = ctl(&mut a, "p", logs(40)).unwrap_err();
        assert!(e.to_string().contains("over its rate"), "{e}");
        assert_eq!(a.by_name("p").unwrap().log.len(), 40);
        // A tree's quota.
        ctl(&mut a, "p", vec![AgentOp::Quota(Some(2))]).unwrap();
        ctl(&mut a, "p", vec![spawn("c", "none")]).unwrap();
        let e = ctl(&mut a, "p", vec![spawn("d", "none")]).unwrap_err();
        assert!(
            e.to_string()
                .contains("the agent tree of p holds 2 agents, its quota (2)"),
            "{e}"
        );
        // Limits, against ancestors and against the agent that wrote them.
        let lim = |pids| {
            AgentOp::Limit(LimitChange {
                pids: Some(pids),
                ..LimitChange::default()
            })
        };
        ctl(&mut a, "p", vec![lim(Some(10))]).unwrap();
        let e = ctl(&mut a, "c", vec![lim(None)]).unwrap_err();
        assert!(
            e.to_string()
                .contains("pids=max is above the limit of its ancestor p (pids=10)"),
            "{e}"
        );
        let e = ctl(&mut a, "p", vec![AgentOp::By(s("c")), lim(Some(11))]).unwrap_err();
        assert!(
            e.to_string()
                .contains("above the limit of agent c (pids=10)"),
            "{e}"
        );
        let e = ctl(&mut a, "p", vec![AgentOp::By(s("gone")), lim(Some(1))]).unwrap_err();
        assert!(e.to_string().contains("there is no agent gone"), "{e}");
        let e = ctl(&mut a, "p", vec![AgentOp::By(s("p")), AgentOp::Quota(None)]).unwrap_err();
        assert!(
            e.to_string().contains("agents may not set the quota"),
            "{e}"
        );
        let e = ctl(&mut a, "c", vec![AgentOp::Quota(None)]).unwrap_err();
        assert!(e.to_string().contains("the root of its agent tree"), "{e}");
        // A spawn an agent writes records it as the maker.
        ctl(&mut a, "p", vec![AgentOp::Quota(None)]).unwrap();
        ctl(&mut a, "p", vec![AgentOp::By(s("c")), spawn("d", "none")]).unwrap();
        let d = a.by_name("d").unwrap();
        assert_eq!(
            (d.parent.as_deref(), d.made_by.as_deref()),
            (Some("p"), Some("c"))
        );
        assert_eq!(a.effective(d).words(), "cpu=100 mem=512M pids=10");
        assert_eq!(a.tree_size("p"), 3);
    }
}
