//! What a Raft replica keeps on stable storage, and the trait that keeps it.
//!
//! The replica writes through [`Storage`] and calls [`Storage::sync`]
//! before anything it wrote may be seen by another node or by a client:
//! before sending the messages of the same step and before reporting
//! entries committed. A [`Storage`] may therefore buffer writes until
//! `sync`; whatever was written but not synced may be lost in a crash
//! (the simulation does exactly that), never anything synced.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

use crate::log::{Index, Term};

/// The vote and term, which must survive a crash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// Whom it voted for in that term.
    pub voted_for: Option<u64>,
    /// How many times the replica has been opened: its proposal ids carry
    /// it, so an id is never reused after a restart (an entry proposed
    /// before the crash must not answer a proposal made after it).
    pub boot: u64,
}

/// One member of the cluster: how to reach it and how to know it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Member {
    /// Raft id.
    pub id: u64,
    /// Where its Raft transport listens (`HOST:PORT`).
    pub addr: String,
    /// Its ed25519 public key.
    pub key: [u8; 32],
}

/// A cluster configuration as stored: the engine's voter sets plus the
/// address and key of every node in them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// Voters (the old ones, during a joint configuration).
    pub voters: Vec<u64>,
    /// The new voters of a joint configuration; empty otherwise.
    pub new_voters: Vec<u64>,
    /// Replicating non-voters.
    pub non_voters: Vec<u64>,
    /// Address and key of each node named above.
    pub members: Vec<Member>,
}

/// The body of a log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// The marker a new leader appends when its term begins.
    Term,
    /// A configuration change, and the proposal that asked for it.
    Config {
        /// The new configuration.
        membership: Membership,
        /// The node that asked (0 when the engine proposed it itself, as
        /// it does to leave a joint configuration, or the replica did, to
        /// add back as a non-voter a voter that a replace or demote took
        /// out).
        origin: u64,
        /// That node's proposal id.
        seq: u64,
    },
    /// A command of the state machine.
    Command {
        /// The node it was proposed on.
        origin: u64,
        /// That node's proposal id.
        seq: u64,
        /// The encoded [`crate::Command`].
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
}

/// One log entry as stored and sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// Its index.
    pub index: Index,
    /// The term it was appended in.
    pub term: Term,
    /// What it holds.
    pub body: Body,
}

/// What a snapshot covers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// The last entry it includes.
    pub index: Index,
    /// That entry's term.
    pub term: Term,
    /// The configuration as of that entry.
    pub membership: Membership,
}

/// Everything storage held at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Term and vote.
    pub hard: HardState,
    /// The latest snapshot and the encoded state it holds.
    pub snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    /// Entries after the snapshot, in index order, without gaps.
    pub entries: Vec<Stored>,
}

/// Storage failed: the message names the file (and offset) and the cause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageError(pub String);

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Stable storage for one replica.
pub trait Storage {
    /// Read everything kept (a torn tail is cut off; corruption before
    /// the tail is an error that names where it is).
    fn load(&mut self) -> Result<Loaded, StorageError>;
    /// Record the term and vote (durable after the next `sync`).
    fn save_hard_state(&mut self, hard: &HardState) -> Result<(), StorageError>;
    /// Drop every entry after `after`, then append `entries` (whose first
    /// index is `after + 1`; durable after the next `sync`).
    fn append(&mut self, after: Index, entries: &[Stored]) -> Result<(), StorageError>;
    /// Make everything written so far durable.
    fn sync(&mut self) -> Result<(), StorageError>;
    /// Replace the snapshot atomically, and drop the entries it covers
    /// (entries after it stay). A store may finish writing it after
    /// returning, as long as it drops no covered entry before the new
    /// snapshot is durable: a crash then finds the previous snapshot and
    /// every entry after it. Snapshots hold committed entries only, so no
    /// commit rests on one being durable.
    fn save_snapshot(&mut self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError>;
    /// [`Storage::save_snapshot`] of bytes the caller keeps too: a store
    /// that writes the snapshot after returning holds on to them rather
    /// than to a copy (a snapshot is the size of the whole state).
    fn save_shared_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        data: &Arc<Vec<u8>>,
    ) -> Result<(), StorageError> {
        self.save_snapshot(meta, data)
    }
    /// Why this storage refuses to grow, if it does: the file system
    /// has no room. A call that failed for that reason left what storage
    /// holds as it was before the call (nothing half-written), so the
    /// replica goes on (it starts again from what storage holds, and
    /// refuses new commands while this is `Some`) instead of stopping.
    /// Storage clears it once space has returned. Every other error
    /// stops the replica.
    fn no_space(&self) -> Option<String> {
        None
    }
    /// How much the log takes and how often it was synced, for
    /// `/raft/status` (zeroes where the storage does not count).
    fn usage(&self) -> StorageUsage {
        StorageUsage::default()
    }
}

pub use crate::log::StorageUsage;

/// One image of what [`MemStorage`] holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Image {
    hard: HardState,
    snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    entries: Vec<Stored>,
}

/// Storage in memory that forgets unsynced writes on [`MemStorage::crash`]:
/// the kernel's log (durability none) and the simulation's disks.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    durable: Image,
    written: Image,
    /// Writes since the last sync, for a crash that keeps only some.
    unsynced: usize,
}

impl MemStorage {
    /// Lose everything written since the last sync, as a power cut would.
    pub fn crash(&mut self) {
        self.written = self.durable.clone();
        self.unsynced = 0;
    }

    /// Writes not yet synced.
    pub fn unsynced(&self) -> usize {
        self.unsynced
    }

    /// Entries held durably (for checks).
    pub fn durable_entries(&self) -> &[Stored] {
        &self.durable.entries
    }
}

impl Storage for MemStorage {
    fn load(&mut self) -> Result<Loaded, StorageError> {
        Ok(Loaded {
            hard: self.written.hard,
            snapshot: self.written.snapshot.clone(),
            entries: self.written.entries.clone(),
        })
    }

    fn save_hard_state(&mut self, hard: &HardState) -> Result<(), StorageError> {
        self.written.hard = *hard;
        self.unsynced += 1;
        Ok(())
    }

    fn append(&mut self, after: Index, entries: &[Stored]) -> Result<(), StorageError> {
        let e = &mut self.written.entries;
        let first = e.first().map_or(after + 1, |s| s.index);
        if after + 1 < first {
            return Err(StorageError(alloc::format!(
                "append after {after}, before the first kept entry {first}"
            )));
        }
        let keep = usize::try_from(after + 1 - first).unwrap_or(usize::MAX);
        if keep > e.len() {
            return Err(StorageError(alloc::format!(
                "append after {after} leaves a gap (last kept {})",
                first + e.len() as u64 - 1
            )));
        }
        e.truncate(keep);
        e.extend_from_slice(entries);
        self.unsynced += 1;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.durable = self.written.clone();
        self.unsynced = 0;
        Ok(())
    }

    fn save_snapshot(&mut self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        for img in [&mut self.written, &mut self.durable] {
            img.entries.retain(|s| s.index > meta.index);
            img.snapshot = Some((meta.clone(), data.to_vec()));
        }
        Ok(())
    }
}

/// As `/raft/log` shows it: `members voters=1,2,3` (with `new_voters=`
/// during a joint configuration and `non_voters=` when there are any).
impl core::fmt::Display for Membership {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        /// `1,2,3` (or `-` for none).
        fn ids(f: &mut core::fmt::Formatter<'_>, ids: &[u64]) -> core::fmt::Result {
            if ids.is_empty() {
                return f.write_str("-");
            }
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{id}")?;
            }
            Ok(())
        }
        f.write_str("members voters=")?;
        ids(f, &self.voters)?;
        if !self.new_voters.is_empty() {
            f.write_str(" new_voters=")?;
            ids(f, &self.new_voters)?;
        }
        if !self.non_voters.is_empty() {
            f.write_str(" non_voters=")?;
            ids(f, &self.non_voters)?;
        }
        Ok(())
    }
}
