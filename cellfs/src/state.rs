//! The committed state: what the log's commands add up to.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::agent::Agents;
use crate::cap::Caps;
use crate::chan::Chans;
use crate::command::{Applied, Command};
use crate::error::Error;
use crate::log::{Index, Term};
use crate::proof::chain::Chain;
use crate::raft::Membership;
use crate::raft::journal::Journal;
use crate::root::cmd as root;

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
            Command::Agent(c) => self.agents.apply(c),
            Command::Raft(_) => Err(Error::Invalid(String::from(
                "a raft change is made by the log, not applied as a command",
            ))),
            Command::Members(m) => {
                self.membership = m.clone();
                Ok(Applied::default())
            }
        }
    }

    /// The bytes of a snapshot of this state.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising in-memory maps of strings and bytes cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// A state back from a snapshot; `None` if the bytes are not one.
    pub fn decode(bytes: &[u8]) -> Option<State> {
        postcard::from_bytes(bytes).ok()
    }
}
