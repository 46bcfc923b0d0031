//! The protocol's settings, and foca's derived from them.

use core::num::{NonZeroU8, NonZeroUsize};
use core::time::Duration;

use foca::{Config, PeriodicParams};

use super::envelope::OVERHEAD;

/// Settings of the protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GossipConfig {
    /// The swarm's id: a datagram naming another is dropped as foreign.
    pub swarm: [u8; 16],
    /// How often this node probes a member.
    pub probe_period_ms: u64,
    /// How long a direct probe waits before asking others to probe.
    pub probe_rtt_ms: u64,
    /// How long a suspect has to refute before it is declared dead (scaled
    /// by Lifeguard's local health).
    pub suspect_ms: u64,
    /// The largest datagram, envelope included.
    pub max_packet: usize,
}

impl GossipConfig {
    /// The defaults, for the swarm `swarm`.
    pub fn new(swarm: [u8; 16]) -> GossipConfig {
        GossipConfig {
            swarm,
            probe_period_ms: 500,
            probe_rtt_ms: 200,
            suspect_ms: 1500,
            max_packet: 1400,
        }
    }

    /// foca's settings: LAN-like, with dissemination quick enough that a
    /// suspect hears of its suspicion (and the swarm of its refutation)
    /// well within `suspect_ms`.
    pub(super) fn foca(&self) -> Config {
        let mut c = Config::simple();
        c.probe_period = Duration::from_millis(self.probe_period_ms.max(1));
        c.probe_rtt = Duration::from_millis(self.probe_rtt_ms.max(1));
        c.num_indirect_probes = NonZeroUsize::new(5).unwrap_or(NonZeroUsize::MIN);
        // Each update rides on this many datagrams: ~4·log10(n) for n ≈ 100
        // (foca's own rule), a little more so a refutation survives loss.
        c.max_transmissions = NonZeroU8::new(10).unwrap_or(NonZeroU8::MIN);
        c.suspect_to_down_after = Duration::from_millis(self.suspect_ms.max(1));
        c.max_packet_size = NonZeroUsize::new(self.max_packet.saturating_sub(OVERHEAD).max(64))
            .unwrap_or(NonZeroUsize::MIN);
        // Tell a member we hold dead so it rejoins as a newer identity.
        c.notify_down_members = true;
        // Pull in members whose join we missed.
        c.periodic_announce = Some(PeriodicParams {
            frequency: Duration::from_secs(10),
            num_members: NonZeroUsize::MIN,
        });
        // After a partition heals, the sides hold each other dead and
        // probe only the living: announcing to the dead reconnects them.
        c.periodic_announce_to_down_members = Some(PeriodicParams {
            frequency: Duration::from_secs(2),
            num_members: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
        });
        c.periodic_gossip = Some(PeriodicParams {
            frequency: Duration::from_millis(100),
            num_members: NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
        });
        c
    }
}
