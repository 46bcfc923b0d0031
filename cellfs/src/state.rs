//! The committed state: what the log's commands add up to.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::agent::{AgentCmd, AgentOp, Agents, Report, Scope};
use crate::cap::Caps;
use crate::chan::{ChanCmd, Chans};
use crate::command::{Applied, Command};
use crate::error::Error;
use crate::log::{Index, Term};
use crate::proof::chain::Chain;
use crate::raft::Membership;
use crate::raft::journal::Journal;
use crate::root::cmd as root;
use crate::swarm::{Swarm, SwarmCmd};

/// Everything the log has built. Only [`State::apply`] changes it (and
/// [`Chain::push`], as each entry commits).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// Index of the last entry applied.
    pub applied: Index,
    /// The term of that entry.
    pub applied_term: Term,
    /// The channels.
    pub chans: Chans,
    /// Minted capabilities and revoked ids.
    pub caps: Caps,
    /// The hash chain over every committed entry.
    pub chain: Chain,
    /// The cluster's latest committed configuration (empty on a node whose
    /// log is not replicated).
    pub membership: Membership,
    /// The committed entries, for `/raft/log`.
    pub journal: Journal,
    /// The agents.
    pub agents: Agents,
    /// The swarm: its members and what it wants of the log.
    pub swarm: Swarm,
    /// The latest time a committed command carried (Unix seconds): the
    /// time of what a command without one changes (placements after a
    /// drain), the same on every node.
    pub clock: u64,
}

impl State {
    /// Apply the command at `index`. An error leaves the state as it was
    /// (apart from `applied`), and is what the proposer is told.
    pub fn apply(&mut self, index: Index, cmd: &Command) -> Result<Applied, Error> {
        self.applied = index;
        match cmd {
            Command::Root(c) => root::apply(c),
            Command::Chan(c) => self.chans.apply(c),
            Command::Cap(c) => self.caps.apply(c),
            Command::Agent(c) => {
                let mut applied = self.agents.apply(c)?;
                let (scope, at) = match c {
                    AgentCmd::Create { name, at, .. } => (Scope::One(name), *at),
                    AgentCmd::Ctl { name, ops, at } => {
                        // Only a write that may free room retries the
                        // agents waiting for a node: not output, nor a
                        // report that it runs (most of what is written).
                        let busy = ops.iter().all(|o| {
                            matches!(
                                o,
                                AgentOp::Log(_)
                                    | AgentOp::Epoch(_)
                                    | AgentOp::By(_)
                                    | AgentOp::Report(
                                        Report::Running { .. }
                                            | Report::RunningSandboxed { .. }
                                            | Report::Claim { .. }
                                    )
                            )
                        });
                        let scope = if busy {
                            Scope::One(name)
                        } else {
                            Scope::Waiting(name)
                        };
                        (scope, *at)
                    }
                    AgentCmd::Drift { name, at, .. } => (Scope::Waiting(name), *at),
                    // A removal frees room: every agent waiting is tried.
                    AgentCmd::Remove { .. } => (Scope::Waiting(""), self.clock),
                };
                self.clock = self.clock.max(at);
                applied
                    .events
                    .extend(self.agents.settle(&self.swarm, scope, self.clock));
                Ok(applied)
            }
            Command::Raft(_) => Err(Error::Invalid(String::from(
                "a raft change is made by the log, not applied as a command",
            ))),
            Command::Members(m) => {
                let applied = voter_events(&self.membership, m);
                self.membership = m.clone();
                Ok(applied)
            }
            Command::Swarm(c) => {
                let mut applied = self.swarm.apply(c)?;
                if let SwarmCmd::Join { at_ms, .. } = c {
                    self.clock = self.clock.max(at_ms / 1000);
                }
                applied
                    .events
                    .extend(self.agents.settle(&self.swarm, Scope::All, self.clock));
                Ok(applied)
            }
            // The server applies a batch's messages one by one, to answer
            // each writer; applied here, what they did is merged, and a
            // message refused (each refusal leaves the state as it was)
            // is left out.
            Command::Batch(cmds) => {
                let mut all = Applied::default();
                for c in cmds {
                    if let Command::Chan(c @ ChanCmd::Send { .. }) = c
                        && let Ok(a) = self.chans.apply(c)
                    {
                        all.wake.extend(a.wake);
                        all.events.extend(a.events);
                    }
                }
                Ok(all)
            }
        }
    }

    /// The bytes of a snapshot of this state.
    pub fn encode(&self) -> Vec<u8> {
        // Sized first: a buffer grown by doubling holds up to twice the
        // state, and the old and new buffers at once while it grows (the
        // node's peak memory was there). Serialising in-memory maps of
        // strings and bytes cannot fail.
        let size = postcard::experimental::serialized_size(self).unwrap_or(0);
        postcard::to_extend(self, Vec::with_capacity(size)).unwrap_or_default()
    }

    /// A state back from a snapshot; `None` if the bytes are not one.
    pub fn decode(bytes: &[u8]) -> Option<State> {
        postcard::from_bytes(bytes).ok()
    }
}

/// `/events` lines for the voters a configuration change promotes or
/// demotes (seen when the joint configuration commits) and the learners
/// it adds or removes.
fn voter_events(old: &Membership, new: &Membership) -> Applied {
    let mut applied = Applied::default();
    let mut line = |text: String| applied.events.push((crate::events::Kind::Swarm, text));
    if !new.new_voters.is_empty() {
        for id in new.new_voters.iter().filter(|i| !new.voters.contains(i)) {
            line(alloc::format!("promote node={id}"));
        }
        for id in new.voters.iter().filter(|i| !new.new_voters.contains(i)) {
            line(alloc::format!("demote node={id}"));
        }
    }
    for id in new.non_voters.iter().filter(|i| {
        !old.non_voters.contains(i) && !old.voters.contains(i) && !old.new_voters.contains(i)
    }) {
        line(alloc::format!("learner node={id}"));
    }
    applied
}
