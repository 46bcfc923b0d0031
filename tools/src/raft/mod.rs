//! The hosted node's replicated log: a `cellfs::raft::Replica` on its own
//! thread, over segment-file storage and a TCP transport between nodes.

pub mod store;
pub mod transport;
