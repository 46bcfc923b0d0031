//! The transport's test hook for a partition: with
//! `CELL0_PARTITION_FILE=PATH`, the node is cut off from its peers while
//! PATH exists (every Raft frame and gossip datagram it would send or
//! receive is dropped), and joined again when PATH is removed. So a test
//! can cut one node off the swarm without touching the host's network,
//! while the node's own clients (its runner, a FUSE mount) still reach
//! it, as on a host whose uplink failed.

use std::path::PathBuf;
use std::sync::Arc;

/// Whether the node is cut off now.
#[derive(Clone, Debug, Default)]
pub struct Cut {
    path: Option<Arc<PathBuf>>,
}

impl Cut {
    /// The hook `CELL0_PARTITION_FILE` asks for (none when unset).
    pub fn from_env() -> Cut {
        Cut {
            path: std::env::var_os("CELL0_PARTITION_FILE").map(|p| Arc::new(PathBuf::from(p))),
        }
    }

    /// Whether frames are dropped now (one `stat` when the hook is set,
    /// nothing otherwise).
    pub fn is_cut(&self) -> bool {
        self.path.as_ref().is_some_and(|p| p.exists())
    }
}
