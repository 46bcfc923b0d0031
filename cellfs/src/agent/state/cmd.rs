//! The agent commands the log carries: [`AgentCmd`] and the ctl ops
//! ([`AgentOp`]) in it.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::agent::intent::{self, Intent};

use super::vocab::{Exec, LimitChange, Place, Recent, Report, Restart, Seed, limit_word, mem_word};

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
    /// `place …`: where it may be placed from its next placement on.
    Place(Place),
    /// `move node=ID`: stop it where it runs and start it on node ID.
    Move(u64),
    /// `epoch E`: the writer (a runner) speaks for placement epoch E;
    /// the write is refused whole if the agent's epoch is another.
    Epoch(u64),
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
            AgentOp::By(name) => format!("by {}{name}", crate::cap::token::AGENT_HOLDER),
            AgentOp::Place(p) => format!("place {p}"),
            AgentOp::Move(node) => format!("move node={node}"),
            AgentOp::Epoch(e) => format!("epoch {e}"),
        }
    }

    /// Whether it is the runner's (`report`, `log`): those need the admin
    /// right, and are not what a trace calls a ctl write to the agent.
    pub fn is_runners(&self) -> bool {
        matches!(
            self,
            AgentOp::Report(_) | AgentOp::Log(_) | AgentOp::Epoch(_)
        )
    }
}
