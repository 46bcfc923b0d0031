//! One Raft replica: the `noraft` engine plus everything it leaves to us.

/// Settings of a replica.
#[derive(Clone, Debug)]
pub struct Options {
    /// This node's Raft id (not 0).
    pub id: u64,
    /// How often a leader sends heartbeats, in milliseconds.
    pub heartbeat_ms: u64,
    /// Followers start an election after a random wait in this range.
    pub election_ms: (u64, u64),
    /// Seed of the election-timeout randomness (deterministic runs).
    pub seed: u64,
    /// Ask for a snapshot after this many entries since the last one.
    pub snapshot_every: u64,
    /// Most proposals waiting for commit before `propose` says Full.
    pub max_pending: usize,
}

/// A Raft replica (being written).
pub struct Replica;
