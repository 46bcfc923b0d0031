//! Numbering a sender's messages (`nth` in their stamps) before they are
//! signed.
//!
//! A message must carry a number above every earlier one of its sender
//! that the same node accepted into the channel: each node numbers its
//! own stream of each sender, so nodes never compete for a number. It is
//! signed before the log orders it, so the node numbers it from the
//! committed state plus what it has itself numbered and not yet seen
//! applied. A message the log refuses as overtaken (proposed again after
//! a later one when the leader changed) is numbered again by the server.

use alloc::collections::BTreeMap;
use alloc::string::String;

use super::msg::Stamp;
use super::state::Chans;
use crate::cap::PublicKey;

/// The numbers this node gave that the committed state may not show yet,
/// by channel and sender.
#[derive(Debug, Default)]
pub struct Numbering {
    given: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Numbering {
    /// Give `stamp` (for channel `chan`, accepted by this node,
    /// `stamp.node`) its sender's next number.
    pub fn number(&mut self, chans: &Chans, chan: &str, stamp: &mut Stamp) {
        let applied = chans
            .id(chan)
            .and_then(|id| chans.get(id))
            .map_or(0, |c| c.last_nth(&stamp.sender, &stamp.node));
        let senders = match self.given.get_mut(chan) {
            Some(s) => s,
            None => self.given.entry(String::from(chan)).or_default(),
        };
        let given = match senders.get_mut(&stamp.sender) {
            Some(g) => g,
            None => senders.entry(stamp.sender.clone()).or_default(),
        };
        *given = applied.max(*given) + 1;
        stamp.nth = *given;
    }

    /// Forget the numbers the committed state has caught up with (or
    /// everything, when nothing of this node's is in flight: a number
    /// given to a proposal that failed leaves a gap, never a repeat).
    pub fn forget_applied(&mut self, chans: &Chans, me: &PublicKey, nothing_in_flight: bool) {
        if nothing_in_flight {
            self.given.clear();
            return;
        }
        self.given.retain(|chan, senders| {
            let c = chans.id(chan).and_then(|id| chans.get(id));
            senders.retain(|sender, given| c.is_some_and(|c| c.last_nth(sender, me) < *given));
            !senders.is_empty()
        });
    }

    /// How many (channel, sender) numbers are held.
    pub fn len(&self) -> usize {
        self.given.values().map(BTreeMap::len).sum()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.given.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cap::NodeKey;
    use crate::chan::ChanCmd;
    use crate::chan::msg::Unsigned;
    use alloc::boxed::Box;
    use alloc::string::ToString;

    fn stamp(sender: &str) -> Stamp {
        Unsigned {
            chan: "c",
            time_ms: 1,
            sender,
            cap: 1,
            intent: String::from("w@/"),
        }
        .stamp(NodeKey::from_seed(&[3; 32]).public())
    }

    #[test]
    fn numbers_follow_the_log_and_what_is_in_flight() {
        let mut chans = Chans::default();
        chans
            .apply(&ChanCmd::Create {
                name: String::from("c"),
                at: 1,
            })
            .unwrap();
        let mut n = Numbering::default();
        let (mut a1, mut a2, mut b1) = (stamp("a"), stamp("a"), stamp("b"));
        n.number(&chans, "c", &mut a1);
        n.number(&chans, "c", &mut a2);
        n.number(&chans, "c", &mut b1);
        assert_eq!((a1.nth, a2.nth, b1.nth), (1, 2, 1));
        assert_eq!(n.len(), 2);
        // a1 applies; a2 and b1 are still in flight.
        chans
            .apply(&ChanCmd::Send {
                name: String::from("c"),
                stamp: Box::new(a1.clone()),
                data: alloc::vec![1],
            })
            .unwrap();
        let me = NodeKey::from_seed(&[3; 32]).public();
        n.forget_applied(&chans, &me, false);
        assert_eq!(n.len(), 2);
        // A repeated number is refused and changes nothing.
        let e = chans
            .apply(&ChanCmd::Send {
                name: String::from("c"),
                stamp: Box::new(a1),
                data: alloc::vec![1],
            })
            .unwrap_err();
        assert!(e.to_string().contains("does not follow"), "{e}");
        assert_eq!(chans.get(chans.id("c").unwrap()).unwrap().msgs.len(), 1);
        // Nothing in flight: forgotten, and numbering goes on from the log.
        n.forget_applied(&chans, &me, true);
        assert!(n.is_empty());
        let mut a3 = stamp("a");
        n.number(&chans, "c", &mut a3);
        assert_eq!(a3.nth, 2);
    }
}
