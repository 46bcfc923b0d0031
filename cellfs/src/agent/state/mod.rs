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
//!
//! This file holds the state itself ([`Agent`], [`Agents`]) and those
//! bounds; the small value types it is made of are in `vocab`, the
//! commands in `cmd`, and how a command is checked and applied in `apply`.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

use crate::cap::PublicKey;
use crate::error::Error;

use super::intent::Intent;

mod apply;
mod cmd;
mod placement;
#[cfg(test)]
mod tests;
mod vocab;

pub use cmd::{AgentCmd, AgentOp};
pub use placement::{Scope, must_leave};
pub use vocab::{
    DriftAt, Exec, ExitHow, ExitReport, Happened, LimitChange, LimitKey, Limits, MoveWhy, Phase,
    Place, Placed, Policy, Recent, Report, Restart, Seed, Trace, Want,
};

/// Most agents one node holds.
pub const MAX_AGENTS: usize = 16384;
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
    /// Where it may be placed in a swarm (`place`).
    pub place: Place,
    /// Where it is placed, once a swarm placed it.
    pub placed: Option<Placed>,
    /// Its latest placement's epoch (0 before the first): reports that
    /// name another are refused.
    pub epoch: u64,
    /// The node `move node=ID` asked for, until it is moved there.
    pub move_to: Option<u64>,
    /// Why no node takes it, while it waits for one.
    pub waiting: Option<String>,
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
            place: Place::Spread,
            placed: None,
            epoch: 0,
            move_to: None,
            waiting: None,
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
    /// Agents wanted running that no node could take when last tried:
    /// tried again whenever agents or the swarm change.
    unplaced: BTreeSet<u64>,
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
}
