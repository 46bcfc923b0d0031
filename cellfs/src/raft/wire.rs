//! Messages between replicas, as the transport carries them (`postcard`).
//!
//! The sender is not in the message: the transport authenticated the
//! connection by the peer's key and hands each message over with its id.

use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::log::{Change, Index, Term};
use crate::raft::storage::{SnapshotMeta, Stored};

/// One message from one replica to another (Raft's RPCs and their replies).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rpc {
    /// RequestVote.
    Vote {
        /// The candidate's term.
        term: Term,
        /// Its last log entry's term and index.
        last_term: Term,
        /// Ditto.
        last_index: Index,
        /// The election was started by a leadership transfer, so a
        /// follower that hears from a leader votes anyway.
        transfer: bool,
    },
    /// Pre-vote: would the receiver vote for the sender in `term`? Asking
    /// changes nobody's term, so a node that cannot reach a majority never
    /// raises the cluster's term (the thesis' §9.6).
    PreVote {
        /// The term the sender would campaign in.
        term: Term,
        /// Its last log entry's term and index.
        last_term: Term,
        /// Ditto.
        last_index: Index,
    },
    /// The answer to [`Rpc::PreVote`].
    PreVoteReply {
        /// The term asked about.
        term: Term,
        /// Whether the receiver would vote: it has not heard a leader
        /// within the election timeout and the sender's log is as
        /// up to date as its own.
        granted: bool,
    },
    /// The answer to [`Rpc::Vote`].
    VoteReply {
        /// The voter's term.
        term: Term,
        /// Whether it voted for the candidate.
        granted: bool,
    },
    /// AppendEntries (a heartbeat when `entries` is empty).
    Append {
        /// The leader's term.
        term: Term,
        /// The leader's commit index.
        commit: Index,
        /// The entry before `entries`.
        prev_term: Term,
        /// Ditto.
        prev_index: Index,
        /// The entries, with their bodies.
        entries: Vec<Stored>,
        /// The leader's latest read round (see [`Rpc::AppendReply`]).
        read: u64,
        /// The leader's clock when it built this message (ms); the
        /// follower echoes it (see `replica::lease`).
        stamp: u64,
        /// The latest `stamp` of the follower's own that this leader got
        /// back in this term (the follower's clock); 0 if none yet.
        echo: u64,
        /// What remained of the leader's own lease when it sent this, in
        /// ms; 0 if it holds none.
        lease: u64,
    },
    /// The answer to [`Rpc::Append`]: the follower's last entry.
    AppendReply {
        /// The follower's term.
        term: Term,
        /// Its last log entry's term and index.
        last_term: Term,
        /// Ditto.
        last_index: Index,
        /// The highest read round the follower has seen from this leader
        /// in this term: a majority echoing a round proves the leader
        /// still led after the reads of that round were asked.
        read: u64,
        /// The follower's clock when it built this reply (ms).
        stamp: u64,
        /// The `stamp` of the latest append it got from this leader in
        /// this term (the leader's clock); 0 if none.
        echo: u64,
    },
    /// InstallSnapshot, in one message.
    Snapshot {
        /// The leader's term.
        term: Term,
        /// What it covers.
        meta: SnapshotMeta,
        /// The encoded state.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Start an election now (leadership transfer).
    TimeoutNow {
        /// The leader's term.
        term: Term,
    },
    /// A follower's proposal, for the leader to append.
    Forward {
        /// The follower's proposal id.
        seq: u64,
        /// The encoded command.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// A follower's membership or leadership change, for the leader.
    ForwardChange {
        /// The follower's proposal id.
        seq: u64,
        /// The change.
        change: Change,
    },
    /// The leader could not take a forwarded proposal; nothing was
    /// appended, so the follower may send it again elsewhere.
    Refuse {
        /// The follower's proposal id.
        seq: u64,
        /// Who the refusing node thinks leads, if anyone.
        leader: Option<u64>,
        /// Set when the change itself is wrong (not worth retrying).
        why: Option<alloc::string::String>,
    },
    /// A follower asks the leader for a read index (a linearizable read).
    Read {
        /// The follower's request id.
        seq: u64,
    },
    /// The leader's answer to [`Rpc::Read`]: once the follower has applied
    /// through `index`, its state holds every write acknowledged before
    /// the read was asked.
    ReadIndex {
        /// The follower's request id.
        seq: u64,
        /// The leader's commit index when the read was asked.
        index: Index,
    },
    /// A forwarded change that has no entry of its own finished.
    ChangeDone {
        /// The follower's proposal id.
        seq: u64,
        /// The error, if it failed.
        error: Option<alloc::string::String>,
    },
}

impl Rpc {
    /// The bytes the transport sends.
    pub fn encode(&self) -> Vec<u8> {
        // Encoding an in-memory message into a growable buffer cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// A message back from the wire; `None` if the bytes are not one.
    pub fn decode(bytes: &[u8]) -> Option<Rpc> {
        postcard::from_bytes(bytes).ok()
    }
}
