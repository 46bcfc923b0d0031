//! What this node knows of itself and sees of the swarm, node-local and
//! never replicated: handed to the server by the transport that runs the
//! gossip ([`crate::Server::observe`]), read by `/swarm`.

use alloc::string::String;

use crate::gossip::View;

/// This node's own addresses, as it joins the swarm with them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Me {
    /// Its Raft id.
    pub id: u64,
    /// Where it serves 9P.
    pub addr: String,
    /// Where it gossips.
    pub gossip: String,
    /// Where its Raft transport listens.
    pub raft: String,
    /// A fresh swarm id, used if this node founds the swarm.
    pub swarm: [u8; 16],
    /// The voters wanted, if this node founds the swarm.
    pub voters: u8,
    /// What its host offers agents (`None`: unknown, so placement does
    /// not weigh it).
    pub capacity: Option<crate::swarm::state::Capacity>,
}

/// This node's vantage point.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vantage {
    /// This node, when it runs in a swarm (`None`: no gossip, as on a
    /// node started without `--swarm`, and on the kernel).
    pub me: Option<Me>,
    /// Its gossip view of the others.
    pub view: View,
    /// When the view was taken (this node's monotonic ms, the clock of
    /// the view's `since_ms` and `last_seen_ms`).
    pub now_ms: u64,
}
