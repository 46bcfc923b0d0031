//! The command log that every mutation goes through.
//!
//! The server proposes a command's bytes and applies it only when the log
//! reports it committed. A single node commits by making the entry durable
//! (the hosted node's write-ahead log, `cell0::wal`); a cluster commits by
//! Raft. Entries that were committed before a restart are reported again,
//! in order, at start: that is replay.

use alloc::vec::Vec;
use core::fmt;

/// The position of an entry in the log, from 1.
pub type Index = u64;

/// A committed entry: its index and the command bytes that were proposed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Where it sits in the log.
    pub index: Index,
    /// The encoded command.
    pub data: Vec<u8>,
}

/// Why the log refused a proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogError {
    /// Storage failed; the message says which file and why.
    Storage(alloc::string::String),
    /// The log is shutting down or its writer has died.
    Closed,
    /// Too many proposals are waiting to be made durable; try again.
    Full,
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::Storage(why) => write!(f, "log storage failed: {why}"),
            LogError::Closed => f.write_str("log is closed"),
            LogError::Full => f.write_str("log is full; try again"),
        }
    }
}

/// A replicated or write-ahead log of commands.
pub trait Log {
    /// Hand a command to the log and return the index it will have. It is not
    /// committed yet: [`Log::take_committed`] reports it once it is.
    fn propose(&mut self, data: Vec<u8>) -> Result<Index, LogError>;

    /// Move every entry committed since the last call into `out`, in index
    /// order (including, after a restart, the entries found in storage).
    fn take_committed(&mut self, out: &mut Vec<Entry>);
}

/// A log that commits at once and keeps nothing: for tests, and for nodes
/// whose durability is documented as "none" (the kernel's RAM log).
#[derive(Debug, Default)]
pub struct MemLog {
    next: Index,
    ready: Vec<Entry>,
}

impl Log for MemLog {
    fn propose(&mut self, data: Vec<u8>) -> Result<Index, LogError> {
        self.next += 1;
        self.ready.push(Entry {
            index: self.next,
            data,
        });
        Ok(self.next)
    }

    fn take_committed(&mut self, out: &mut Vec<Entry>) {
        out.append(&mut self.ready);
    }
}
