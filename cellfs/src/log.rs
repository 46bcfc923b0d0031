//! The command log that every mutation goes through.
//!
//! The server proposes a command's bytes and applies it only when the log
//! reports it committed. Every node runs the log as Raft ([`crate::raft`]):
//! a node alone is a cluster of one, whose commit is its own fsync. A
//! proposal is named by a [`ProposalId`] that the proposing node chose, not
//! by its index: a follower forwards its proposals to the leader, which
//! alone decides where they land. Entries committed before a restart (or
//! held by a snapshot) are reported again, in order, at start: that is
//! replay.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// The position of an entry in the log, from 1.
pub type Index = u64;

/// A Raft term.
pub type Term = u64;

/// Names one proposal of this node until it commits or fails.
pub type ProposalId = u64;

/// A committed entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Where it sits in the log.
    pub index: Index,
    /// The term of the leader that appended it.
    pub term: Term,
    /// The Raft id of the node it was proposed on (0 for the node itself
    /// in logs that have no ids).
    pub origin: u64,
    /// The encoded command.
    pub data: Vec<u8>,
}

/// The whole state as of one index, replacing the log up to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The last entry it includes.
    pub index: Index,
    /// That entry's term.
    pub term: Term,
    /// The encoded state ([`crate::state::State::encode`]).
    pub data: Vec<u8>,
}

/// What the log reports to the server, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Commit {
    /// An entry committed; `proposal` is set when this node proposed it.
    Entry {
        /// The entry.
        entry: Entry,
        /// This node's name for it, if it proposed it.
        proposal: Option<ProposalId>,
    },
    /// The state was replaced by a snapshot (a follower that fell behind
    /// the leader's log, or a restart from a snapshot).
    Snapshot(Snapshot),
    /// A proposal or change finished without an entry of its own (a
    /// leadership transfer, a snapshot), or failed.
    Done {
        /// Which.
        proposal: ProposalId,
        /// How it went.
        result: Result<(), LogError>,
    },
}

/// Why the log refused or failed a proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogError {
    /// Storage failed; the message says which file and why.
    Storage(String),
    /// The log is shutting down or its writer has died.
    Closed,
    /// Too many proposals are waiting to be made durable; try again.
    Full,
    /// No leader is known (an election is under way, or this node cannot
    /// reach a majority); nothing was changed; try again.
    NoLeader,
    /// The proposal was handed to a leader that then lost its office: it
    /// may or may not have been applied. Read before retrying.
    Unknown,
    /// A membership or leadership change that cannot be made now; the
    /// message says why.
    Refused(String),
    /// The node's disk is full: nothing was appended, and writes are
    /// refused until space is freed there (reads go on). The message names
    /// the file that found no room.
    NoSpace(String),
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::Storage(why) => write!(f, "log storage failed: {why}"),
            LogError::Closed => f.write_str("log is closed"),
            LogError::Full => f.write_str("log is full; try again"),
            LogError::NoLeader => f.write_str(
                "no raft leader is reachable (election under way or no majority); nothing changed; try again",
            ),
            LogError::Unknown => f.write_str(
                "the raft leader changed before this write committed: it may or may not have been applied; read before retrying",
            ),
            LogError::Refused(why) => f.write_str(why),
            LogError::NoSpace(why) => write!(
                f,
                "no space left on the node's disk ({why}); writes are refused until space is \
                 freed there, and taken again by themselves once it is (reads go on)"
            ),
        }
    }
}

/// A membership or leadership change asked of the log (`/raft/ctl`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Change {
    /// Add a voting member.
    Add {
        /// Its Raft id.
        id: u64,
        /// Where its Raft transport listens (`HOST:PORT`).
        addr: String,
        /// Its ed25519 public key: the transport talks only to it.
        key: [u8; 32],
    },
    /// Remove a member: a voter by a joint change, a non-voter at once.
    Remove {
        /// Its Raft id.
        id: u64,
    },
    /// Hand leadership to a member.
    Transfer {
        /// Its Raft id.
        id: u64,
    },
    /// Take a snapshot now and drop the log it covers.
    Snapshot,
    /// Add a non-voting member (a learner): it receives the log and
    /// applies it, but counts toward no quorum and never campaigns. No
    /// joint configuration is needed.
    Learner {
        /// Its Raft id.
        id: u64,
        /// Where its Raft transport listens (`HOST:PORT`).
        addr: String,
        /// Its ed25519 public key: the transport talks only to it.
        key: [u8; 32],
    },
    /// Make a non-voter a voter (a joint change).
    Promote {
        /// Its Raft id.
        id: u64,
    },
    /// Make a voter a non-voter that goes on replicating (a joint change,
    /// then the replica adds it back as a non-voter).
    Demote {
        /// Its Raft id.
        id: u64,
    },
    /// In one joint change, voter `out` leaves the voters and non-voter
    /// `with` becomes one; once that is done `out` stays as a non-voter,
    /// so it can be promoted again when it comes back.
    Replace {
        /// The voter that leaves the voters.
        out: u64,
        /// The non-voter that takes its place.
        with: u64,
    },
    /// The leader may grant node `id` a lease again: what it ran while
    /// its lease was over has been placed elsewhere (committed), or it
    /// ran nothing. The leader's own business: never forwarded, never
    /// in the log.
    Restore {
        /// Its Raft id.
        id: u64,
    },
}

/// One member as `/raft/peers/ID` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerStatus {
    /// Raft id.
    pub id: u64,
    /// Transport address.
    pub addr: String,
    /// Public key.
    pub key: [u8; 32],
    /// `voter`, `joining` (new voter in a joint configuration), `leaving`
    /// (a voter leaving the voters in one), `non-voter`.
    pub role: &'static str,
    /// Highest index known replicated on it (leader only; else 0).
    pub match_index: Index,
    /// Milliseconds since this node last heard from it (`None`: never).
    pub last_contact_ms: Option<u64>,
    /// `up` if heard from within an election timeout, else `down`.
    pub state: &'static str,
    /// Leader only: this peer's lease is surely over, so what it ran may
    /// be started elsewhere.
    pub lease_over: bool,
}

/// What `/raft/status` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogStatus {
    /// This node's Raft id.
    pub id: u64,
    /// `leader`, `follower`, `candidate`, or `joining` (no configuration yet).
    pub role: &'static str,
    /// Current term.
    pub term: Term,
    /// The leader's id, if known.
    pub leader: Option<u64>,
    /// Highest index known committed.
    pub commit: Index,
    /// Last index in this node's log.
    pub last_index: Index,
    /// Index the latest snapshot covers.
    pub snapshot_index: Index,
    /// Every member, this node included.
    pub peers: Vec<PeerStatus>,
    /// The log's files and syncs (zeroes for a log kept in memory).
    pub storage: StorageUsage,
    /// The voters of this node's latest configuration, ascending (during
    /// a joint change, the old and new voters together).
    pub voters: Vec<u64>,
    /// The non-voters (learners) of that configuration, ascending.
    pub non_voters: Vec<u64>,
    /// A membership change is under way (a joint configuration): another
    /// is refused until it is done.
    pub joint: bool,
    /// This node's remaining lease in ms: it may run its agents while
    /// this is above 0. `None` for a log with no leases (the in-memory
    /// single-node log, whose node always holds its agents).
    pub lease_ms: Option<u64>,
}

impl LogStatus {
    /// Whether this node leads (and so may propose membership changes
    /// without forwarding them).
    pub fn leads(&self) -> bool {
        self.role == "leader" && self.leader == Some(self.id)
    }
}

/// When a linearizable read may be served; see [`Log::read`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadGate {
    /// At once, from the state applied so far.
    Now,
    /// When this proposal is reported done.
    Wait(ProposalId),
}

/// A replicated or write-ahead log of commands.
pub trait Log {
    /// Hand a command to the log and return the name of the proposal. It
    /// is not committed yet: [`Log::take_committed`] reports it once it is.
    fn propose(&mut self, data: Vec<u8>) -> Result<ProposalId, LogError>;

    /// Ask for a membership or leadership change; reported like a
    /// proposal (a [`Commit::Entry`] for membership, else [`Commit::Done`]).
    fn change(&mut self, change: Change) -> Result<ProposalId, LogError> {
        let _ = change;
        Err(LogError::Refused(String::from(
            "this node's log is not replicated: raft changes are not available",
        )))
    }

    /// Ask to serve a read linearizably: [`ReadGate::Now`] when the state
    /// already applied holds every write acknowledged so far (a node
    /// alone); otherwise a name that a [`Commit::Done`] reports, in the
    /// commit stream after every entry the read must see.
    fn read(&mut self) -> Result<ReadGate, LogError> {
        Ok(ReadGate::Now)
    }

    /// Move everything committed since the last call into `out`, in order
    /// (including, after a restart, what storage held).
    fn take_committed(&mut self, out: &mut Vec<Commit>);

    /// Whether the log would like a snapshot of the state (see
    /// [`Log::save_snapshot`]).
    fn wants_snapshot(&self) -> bool {
        false
    }

    /// A snapshot of the state as of the last applied entry, given when
    /// [`Log::wants_snapshot`] says so.
    fn save_snapshot(&mut self, snapshot: Snapshot) {
        let _ = snapshot;
    }

    /// The log's view of the cluster, for `/raft`.
    fn status(&self) -> LogStatus {
        LogStatus::default()
    }
}

/// A log that commits at once and keeps nothing: for tests, and for nodes
/// whose durability is documented as "none" (the kernel's RAM log).
#[derive(Debug, Default)]
pub struct MemLog {
    next: Index,
    ready: Vec<Commit>,
}

impl Log for MemLog {
    fn propose(&mut self, data: Vec<u8>) -> Result<ProposalId, LogError> {
        self.next += 1;
        self.ready.push(Commit::Entry {
            entry: Entry {
                index: self.next,
                term: 1,
                origin: 0,
                data,
            },
            proposal: Some(self.next),
        });
        Ok(self.next)
    }

    fn take_committed(&mut self, out: &mut Vec<Commit>) {
        out.append(&mut self.ready);
    }

    fn status(&self) -> LogStatus {
        LogStatus {
            id: 1,
            role: "leader",
            term: 1,
            leader: Some(1),
            commit: self.next,
            last_index: self.next,
            voters: alloc::vec![1],
            lease_ms: None,
            ..LogStatus::default()
        }
    }
}

/// As `/raft/log` shows it: `/raft/ctl add id=… addr=… key=HEX`, …
impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("/raft/ctl ")?;
        match self {
            Change::Add { id, addr, key } => {
                write!(f, "add id={id} addr={addr} key={}", crate::hex::encode(key))
            }
            Change::Remove { id } => write!(f, "remove id={id}"),
            Change::Transfer { id } => write!(f, "transfer id={id}"),
            Change::Snapshot => f.write_str("snapshot"),
            Change::Restore { id } => write!(f, "restore-lease {id}"),
            Change::Learner { id, addr, key } => {
                write!(
                    f,
                    "learner id={id} addr={addr} key={}",
                    crate::hex::encode(key)
                )
            }
            Change::Promote { id } => write!(f, "promote id={id}"),
            Change::Demote { id } => write!(f, "demote id={id}"),
            Change::Replace { out, with } => write!(f, "replace out={out} with={with}"),
        }
    }
}

/// What `/raft/status` tells of a replica's storage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageUsage {
    /// Files holding log entries.
    pub files: u64,
    /// Bytes in them.
    pub bytes: u64,
    /// Syncs (fsyncs of the log) since the node started: writes per sync
    /// is the batching that group commit achieved.
    pub syncs: u64,
}
