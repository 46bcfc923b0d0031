//! TEMPORARY: the gossip view's types, until the engine lands.

use alloc::collections::BTreeMap;

/// A member's liveness in this node's view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Liveness {
    /// Answering.
    #[default]
    Alive,
    /// Suspected.
    Suspect,
    /// Declared dead.
    Dead,
    /// Said goodbye.
    Left,
}

impl core::fmt::Display for Liveness {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Liveness::Alive => "alive",
            Liveness::Suspect => "suspect",
            Liveness::Dead => "dead",
            Liveness::Left => "left",
        })
    }
}

/// One member as observed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Its liveness.
    pub state: Liveness,
    /// Its incarnation.
    pub incarnation: u64,
    /// When last heard.
    pub last_seen_ms: Option<u64>,
    /// Round trip.
    pub rtt_us: Option<u64>,
    /// When its state last changed.
    pub since_ms: u64,
}

/// Gossip counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams received.
    pub received: u64,
    /// Bytes sent.
    pub sent_bytes: u64,
    /// Bytes received.
    pub received_bytes: u64,
    /// Bad signatures.
    pub dropped_bad_signature: u64,
    /// Other swarms.
    pub dropped_foreign: u64,
    /// Replays.
    pub dropped_replay: u64,
    /// Not admitted.
    pub dropped_unknown: u64,
    /// Not a packet.
    pub dropped_malformed: u64,
}

/// This node's view.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// Every admitted member but this node.
    pub members: BTreeMap<u64, Observed>,
    /// This node's incarnation.
    pub incarnation: u64,
    /// Local health multiplier.
    pub health: u32,
    /// Counters.
    pub counters: Counters,
}
