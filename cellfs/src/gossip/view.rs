//! What a node observes of the swarm: each member's liveness, and counters.

use alloc::collections::BTreeMap;
use core::fmt;

/// A member's liveness as this node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Liveness {
    /// Answering (or admitted and not yet found silent).
    Alive,
    /// A probe failed; dead unless it refutes in time.
    Suspect,
    /// Declared dead by the swarm.
    Dead,
    /// Said goodbye.
    Left,
}

impl fmt::Display for Liveness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Liveness::Alive => "alive",
            Liveness::Suspect => "suspect",
            Liveness::Dead => "dead",
            Liveness::Left => "left",
        })
    }
}

/// What this node knows of one member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observed {
    /// Its liveness.
    pub state: Liveness,
    /// Its incarnation (raised each time it refutes a suspicion).
    pub incarnation: u64,
    /// When an authenticated datagram of it last arrived (None: never).
    pub last_seen_ms: Option<u64>,
    /// The last round trip of a direct ping to it, in microseconds (at the
    /// caller's clock's millisecond resolution).
    pub rtt_us: Option<u64>,
    /// When `state` last changed.
    pub since_ms: u64,
}

impl Observed {
    /// A member just admitted: optimistically alive, as SWIM joins are;
    /// probing finds it dead within the normal detection time if it never
    /// answers.
    pub fn admitted(now_ms: u64) -> Observed {
        Observed {
            state: Liveness::Alive,
            incarnation: 0,
            last_seen_ms: None,
            rtt_us: None,
            since_ms: now_ms,
        }
    }
}

/// Datagrams and bytes in and out, and the drops by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams handed to the caller to send.
    pub sent: u64,
    /// Datagrams accepted (authenticated, not replayed).
    pub received: u64,
    /// Bytes of `sent`.
    pub sent_bytes: u64,
    /// Bytes of `received`.
    pub received_bytes: u64,
    /// Dropped: the signature failed.
    pub dropped_bad_signature: u64,
    /// Dropped: another swarm's.
    pub dropped_foreign: u64,
    /// Dropped: seen before or too old.
    pub dropped_replay: u64,
    /// Dropped: the sender is not admitted.
    pub dropped_unknown: u64,
    /// Dropped: not a gossip datagram, or a payload foca refused.
    pub dropped_malformed: u64,
}

/// This node's observed view of the swarm.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// Every admitted member but this node.
    pub members: BTreeMap<u64, Observed>,
    /// This node's incarnation.
    pub incarnation: u64,
    /// Lifeguard's local health multiplier (0 = healthy, up to 8): the
    /// probe and suspicion timers run (1 + health) times slower.
    pub health: u32,
    /// Traffic and drops.
    pub counters: Counters,
}

/// A change in a member's liveness, in the order this node saw them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GossipEvent {
    /// First heard from alive, or back after dead or left.
    Alive(u64),
    /// Suspected (a probe failed).
    Suspect(u64),
    /// Suspect, then alive again (it refuted the suspicion).
    Refuted(u64),
    /// Declared dead.
    Dead(u64),
    /// Said goodbye.
    Left(u64),
}
