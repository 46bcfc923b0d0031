//! Commands: every mutation of the tree, as it is written to the log.
//!
//! A command carries everything its effect depends on (names, payloads,
//! timestamps taken by the proposer), so applying the same log gives the
//! same state on every node and after every restart.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::agent::AgentCmd;
use crate::cap::CapCmd;
use crate::chan::ChanCmd;
use crate::events::Kind;
use crate::file::File;
use crate::log::Change;
use crate::raft::Membership;
use crate::root::RootCmd;
use crate::swarm::SwarmCmd;

/// One mutation, as logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// File-wide: `/ctl` verbs.
    Root(RootCmd),
    /// Channels.
    Chan(ChanCmd),
    /// Capabilities: mints and revocations.
    Cap(CapCmd),
    /// A committed cluster configuration (the replicated log's own
    /// entries, so that every node's state knows its members).
    Members(Membership),
    /// A membership or leadership change for the log itself (`/raft/ctl`);
    /// handed to [`crate::Log::change`], never applied.
    Raft(Change),
    /// Agents. Last, so that logs written before agents existed still
    /// decode (postcard numbers variants in order).
    Agent(AgentCmd),
    /// The swarm: joins, leaves, removals, the voters wanted, drains.
    Swarm(SwarmCmd),
    /// Channel messages one node accepted in one turn and signed together,
    /// as one log entry (one frame, one fsync share, one link of the proof
    /// chain and one `/raft/log` line for all of them); each is applied
    /// on its own, in order, and its writer gets its own answer. Only
    /// [`ChanCmd::Send`]s: anything else in a batch is refused when it
    /// applies.
    Batch(Vec<Command>),
}

impl Command {
    /// The bytes that go into the log.
    pub fn encode(&self) -> Vec<u8> {
        // Sized once: growing from empty reallocates several times per
        // message on the write path.
        let size = postcard::experimental::serialized_size(self).unwrap_or(0);
        // Serialising an in-memory enum of strings and byte vectors to a
        // growable buffer cannot fail.
        postcard::to_extend(self, Vec::with_capacity(size)).unwrap_or_default()
    }

    /// A command back from the log; `None` if the bytes are not one.
    pub fn decode(bytes: &[u8]) -> Option<Command> {
        postcard::from_bytes(bytes).ok()
    }
}

/// What applying a command did, for the request that proposed it and for
/// the node's readers.
#[derive(Debug, Default)]
pub struct Applied {
    /// Bytes handed to the proposer (a received channel message).
    pub data: Option<Vec<u8>>,
    /// The channel message a consumer group's read took (to give it back
    /// if its reader is gone before it is delivered).
    pub taken: Option<u64>,
    /// The node an applied create made.
    pub created: Option<File>,
    /// Nodes whose blocked readers should try again.
    pub wake: Vec<File>,
    /// Lines for `/events`.
    pub events: Vec<(Kind, String)>,
    /// Capabilities were revoked: requests waiting with one must be
    /// checked again.
    pub revoked: bool,
}

/// As `/raft/log` shows it: each kind of command renders itself, in the
/// syntax of the write that made it.
impl core::fmt::Display for Command {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Command::Root(c) => c.fmt(f),
            Command::Chan(c) => c.fmt(f),
            Command::Cap(c) => c.fmt(f),
            Command::Members(m) => m.fmt(f),
            Command::Raft(c) => c.fmt(f),
            Command::Agent(c) => c.fmt(f),
            Command::Swarm(c) => c.fmt(f),
            Command::Batch(cmds) => batch_fmt(cmds, f),
        }
    }
}

/// A batch as `/raft/log` shows it: the writes it holds, those to one
/// channel in a row run together (`write /chan/a/data 3 messages 192
/// bytes`), separated by `; `.
fn batch_fmt(cmds: &[Command], f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
    let mut i = 0;
    while i < cmds.len() {
        if i > 0 {
            f.write_str("; ")?;
        }
        let Command::Chan(ChanCmd::Send { name, .. }) = &cmds[i] else {
            write!(f, "{}", cmds[i])?;
            i += 1;
            continue;
        };
        let run = cmds[i..]
            .iter()
            .take_while(|c| matches!(c, Command::Chan(ChanCmd::Send { name: n, .. }) if n == name))
            .count();
        if run == 1 {
            write!(f, "{}", cmds[i])?;
        } else {
            let mut bytes = 0;
            let mut senders: Vec<&str> = Vec::new();
            for c in &cmds[i..i + run] {
                if let Command::Chan(ChanCmd::Send { stamp, data, .. }) = c {
                    bytes += data.len();
                    if !senders.contains(&stamp.sender.as_str()) {
                        senders.push(&stamp.sender);
                    }
                }
            }
            write!(f, "write /chan/{name}/data {run} messages {bytes} bytes")?;
            if senders.len() <= 4 {
                write!(f, " sender={}", senders.join(","))?;
            } else {
                write!(f, " senders={}", senders.len())?;
            }
        }
        i += run;
    }
    Ok(())
}
