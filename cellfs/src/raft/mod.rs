//! The replicated log: Raft, driven over the `noraft` engine. See raft(3).
//!
//! `noraft` decides (elections, what is committed, membership by joint
//! consensus) and does no I/O. [`replica::Replica`] gives it what it leaves
//! to its user: the entries' bodies, storage through [`storage::Storage`],
//! messages as [`wire::Rpc`] bytes for a transport, timers from the
//! caller's clock, proposals forwarded from followers to the leader,
//! leadership transfer, snapshots of the tree, and the protection against
//! disruptive elections (a follower that heard from its leader recently
//! does not vote for a stranger; see raft(3)).

pub mod device;
pub mod journal;
pub mod replica;
pub mod storage;
pub mod wire;

pub use replica::{Options, Replica};
pub use storage::{
    Body, HardState, Loaded, MemStorage, Member, Membership, SnapshotMeta, Storage, StorageError,
    StorageUsage, Stored,
};
pub use wire::Rpc;
