//! Quality of service: token buckets on a channel's senders, and the
//! counters a node keeps for itself about its channels.
//!
//! The limit (`ctl qos rate=R burst=B`) is committed state. Each sender
//! has two buckets: one kept by the node it writes through, which refuses
//! a write over the limit before it reaches the log, so a flood costs the
//! cluster nothing; and one in the channel's committed state, filled by
//! the times stamped on the messages, which holds the sender to the limit
//! across every node it writes through. Reads by fan-out readers are this
//! node's own business.

use alloc::collections::BTreeMap;
use alloc::string::String;
use core::cell::RefCell;
use serde::{Deserialize, Serialize};

/// Largest `rate` and `burst` accepted.
pub const MAX_RATE: u32 = 1_000_000;

/// A channel's limit on each sender: `rate` messages a second on average,
/// up to `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Qos {
    /// Tokens added per second.
    pub rate: u32,
    /// Most tokens a sender can save up.
    pub burst: u32,
}

/// One sender's bucket, in thousandths of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    milli: u64,
    at_ms: u64,
}

impl Bucket {
    /// A full bucket at time `now_ms`.
    pub fn full(qos: Qos, now_ms: u64) -> Bucket {
        Bucket {
            milli: u64::from(qos.burst) * 1000,
            at_ms: now_ms,
        }
    }

    /// Add what `rate` earned since the last look (a clock that went back
    /// earns nothing and takes nothing away).
    fn refill(&mut self, qos: Qos, now_ms: u64) {
        let earned = now_ms.saturating_sub(self.at_ms) * u64::from(qos.rate);
        self.milli = (self.milli + earned).min(u64::from(qos.burst) * 1000);
        self.at_ms = self.at_ms.max(now_ms);
    }

    /// Take one message's token at `now_ms`; false when there is none.
    pub fn take(&mut self, qos: Qos, now_ms: u64) -> bool {
        self.refill(qos, now_ms);
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }

    /// Tokens in it now, in thousandths.
    pub fn tokens_milli(&self, qos: Qos, now_ms: u64) -> u64 {
        let mut b = *self;
        b.refill(qos, now_ms);
        b.milli
    }
}

/// What a node knows of one sender on one channel.
#[derive(Clone, Debug)]
pub struct SenderCounts {
    /// Its bucket, when the channel has a limit.
    pub bucket: Option<Bucket>,
    /// Writes refused here for going over the limit.
    pub refused: u64,
}

/// What a node counts of one channel by itself.
#[derive(Clone, Debug, Default)]
pub struct ChanCounts {
    /// Messages returned whole to readers of `data` on this node.
    pub delivered: u64,
    /// Messages fan-out readers here skipped because retention had
    /// dropped them before they read them.
    pub missed: u64,
    /// Writes refused here by QoS.
    pub refused: u64,
    /// Per sender, by holder name.
    pub senders: BTreeMap<String, SenderCounts>,
}

/// Every channel's node-local counters and buckets, by channel number.
/// Requests are handled one at a time, so a `RefCell` lets read paths,
/// which only see the state through shared references, count.
#[derive(Debug, Default)]
pub struct Meters {
    chans: RefCell<BTreeMap<u64, ChanCounts>>,
}

impl Meters {
    /// Take a token for `sender` on channel `id` under `qos` at `now_ms`;
    /// false (and counted) when the bucket is empty.
    pub fn admit(&self, id: u64, sender: &str, qos: Option<Qos>, now_ms: u64) -> bool {
        let Some(qos) = qos else {
            return true;
        };
        let mut chans = self.chans.borrow_mut();
        let chan = chans.entry(id).or_default();
        let s = match chan.senders.get_mut(sender) {
            Some(s) => s,
            None => chan
                .senders
                .entry(String::from(sender))
                .or_insert(SenderCounts {
                    bucket: None,
                    refused: 0,
                }),
        };
        let bucket = s.bucket.get_or_insert_with(|| Bucket::full(qos, now_ms));
        if bucket.take(qos, now_ms) {
            true
        } else {
            s.refused += 1;
            chan.refused += 1;
            false
        }
    }

    /// Count `n` whole messages delivered from channel `id`.
    pub fn delivered(&self, id: u64, n: u64) {
        self.chans.borrow_mut().entry(id).or_default().delivered += n;
    }

    /// Count `n` messages a reader of channel `id` skipped.
    pub fn missed(&self, id: u64, n: u64) {
        self.chans.borrow_mut().entry(id).or_default().missed += n;
    }

    /// A copy of channel `id`'s counters (for its status file).
    pub fn get(&self, id: u64) -> ChanCounts {
        self.chans.borrow().get(&id).cloned().unwrap_or_default()
    }

    /// Forget the channels that no longer exist (after a remove).
    pub fn forget_removed(&self, exists: impl Fn(u64) -> bool) {
        self.chans.borrow_mut().retain(|&id, _| exists(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_gets_burst_then_rate_and_others_are_unaffected() {
        let l = Meters::default();
        let q = Some(Qos { rate: 2, burst: 3 });
        let t = 1_000_000;
        for _ in 0..3 {
            assert!(l.admit(1, "a", q, t));
        }
        assert!(!l.admit(1, "a", q, t), "over burst");
        assert!(l.admit(1, "b", q, t), "another sender has its own bucket");
        assert!(
            !l.admit(1, "a", q, t + 499),
            "half a second earns less than 1"
        );
        assert!(l.admit(1, "a", q, t + 500), "2/s earns one in 500 ms");
        assert!(l.admit(1, "a", None, t), "no limit, no refusal");
        let c = l.get(1);
        assert_eq!(
            (c.refused, c.senders["a"].refused, c.senders["b"].refused),
            (2, 2, 0)
        );
        assert!(
            !l.admit(1, "a", q, t),
            "a clock that goes back earns nothing"
        );
    }

    #[test]
    fn removed_channels_are_forgotten() {
        let l = Meters::default();
        l.delivered(1, 2);
        l.delivered(2, 3);
        l.forget_removed(|id| id == 2);
        assert_eq!(l.get(1).delivered, 0);
        assert_eq!(l.get(2).delivered, 3);
    }
}
