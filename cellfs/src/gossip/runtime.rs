//! The runtime foca runs in: a timer queue on the caller's clock, and
//! buffers for what foca sends and notifies, drained by [`super::Gossip`].

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::time::Duration;

use foca::{Notification, OwnedNotification, Runtime, Timer};

use super::identity::Ident;
use super::lifeguard::Health;

/// A timer in the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Due {
    /// One of foca's.
    Foca(Timer<Ident>),
    /// The engine's own: announce to members never heard from, expire
    /// silent ones, forget stale pings.
    Housekeeping,
    /// Check whether a suspicion this node heard of is still open: (the
    /// suspect, its incarnation when suspected, whether this is the last
    /// check before declaring it dead).
    Recheck(Ident, u16, bool),
}

/// foca's runtime: the clock it was called at, the timers, and the
/// datagrams and notifications it left.
#[derive(Debug, Default)]
pub struct Io {
    /// The caller's clock at the current call.
    pub now_ms: u64,
    /// Lifeguard's score, which stretches the probe and suspicion timers.
    pub health: Health,
    /// (due, order of submission) → timer: `tick` fires them in order.
    pub timers: BTreeMap<(u64, u64), Due>,
    submitted: u64,
    /// Payloads to seal and send.
    pub sent: Vec<(Ident, Vec<u8>)>,
    /// Notifications, in order.
    pub notes: Vec<OwnedNotification<Ident>>,
}

impl Io {
    /// Queue `due` at `at_ms`.
    pub fn schedule(&mut self, at_ms: u64, due: Due) {
        self.submitted += 1;
        self.timers.insert((at_ms, self.submitted), due);
    }

    /// Take the earliest timer due at or before `now_ms`.
    pub fn pop_due(&mut self, now_ms: u64) -> Option<Due> {
        let (&key, _) = self.timers.first_key_value()?;
        if key.0 > now_ms {
            return None;
        }
        self.timers.remove(&key)
    }
}

impl Runtime<Ident> for Io {
    fn notify(&mut self, notification: Notification<'_, Ident>) {
        self.notes.push(notification.to_owned());
    }

    fn send_to(&mut self, to: Ident, data: &[u8]) {
        self.sent.push((to, data.to_vec()));
    }

    fn submit_after(&mut self, event: Timer<Ident>, after: Duration) {
        let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        // Lifeguard: an unhealthy node probes and condemns more slowly.
        let ms = match event {
            Timer::ProbeRandomMember(_)
            | Timer::SendIndirectProbe { .. }
            | Timer::ChangeSuspectToDown { .. } => self.health.scale(ms),
            _ => ms,
        };
        self.schedule(self.now_ms.saturating_add(ms), Due::Foca(event));
    }
}
