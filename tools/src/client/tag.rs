//! The table of requests waiting for answers, by tag.
//!
//! A tag is free again once its request is answered, with one exception
//! that flush(5) demands: a tag named by an outstanding Tflush stays
//! reserved until the Rflush arrives, even if the original answer came
//! first, because until then the server may still be holding it. Each
//! request also gets a generation number, so that cancelling a request that
//! has already finished can never cancel a later one that reuses its tag.

use std::collections::HashMap;

use ninep::NOTAG;

/// One request in flight, as the caller can name it later (to flush it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestId {
    /// The tag on the wire.
    pub tag: u16,
    /// Distinguishes requests that reused the same tag.
    pub(crate) generation: u64,
}

impl RequestId {
    /// The id of the `generation`th request under `tag`: what a client
    /// hands out, made by hand for tables of ids tested without one.
    pub fn new(tag: u16, generation: u64) -> RequestId {
        RequestId { tag, generation }
    }
}

struct Slot<W> {
    generation: u64,
    /// The message type that answers the request (T + 1).
    expect: u8,
    /// Who gets the answer; `None` once it was delivered while a flush is
    /// still out.
    waiter: Option<W>,
    flushing: bool,
}

/// What the reader does with an answer to `tag`.
pub(crate) struct Answer<W> {
    /// Who waits for it.
    pub waiter: W,
    /// The reply type the request expects.
    pub expect: u8,
}

/// Tags in use, with whoever waits on each.
pub(crate) struct Tags<W> {
    slots: HashMap<u16, Slot<W>>,
    next_tag: u16,
    next_generation: u64,
    limit: usize,
}

impl<W> Tags<W> {
    /// A table allowing at most `limit` requests in flight (at most 65535).
    pub fn new(limit: usize) -> Tags<W> {
        Tags {
            slots: HashMap::new(),
            next_tag: 0,
            next_generation: 0,
            limit: limit.min(usize::from(NOTAG)),
        }
    }

    /// Requests (and reserved flushed tags) in flight.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether another request fits.
    pub fn has_room(&self) -> bool {
        self.slots.len() < self.limit
    }

    /// Take a free tag for a request answered by `expect`; the waiter
    /// comes back if the table is full (the caller waits and retries).
    pub fn alloc(&mut self, expect: u8, waiter: W) -> Result<RequestId, W> {
        if !self.has_room() {
            return Err(waiter);
        }
        // The table is not full and holds fewer than 65535 tags, so a free
        // one exists and this loop ends.
        let mut tag = self.next_tag;
        while tag == NOTAG || self.slots.contains_key(&tag) {
            tag = tag.wrapping_add(1);
        }
        self.next_tag = tag.wrapping_add(1);
        Ok(self.insert(tag, expect, waiter))
    }

    /// Reserve [`NOTAG`] (for Tversion); the waiter comes back if it is in
    /// use.
    pub fn alloc_notag(&mut self, expect: u8, waiter: W) -> Result<RequestId, W> {
        if self.slots.contains_key(&NOTAG) {
            return Err(waiter);
        }
        Ok(self.insert(NOTAG, expect, waiter))
    }

    fn insert(&mut self, tag: u16, expect: u8, waiter: W) -> RequestId {
        let generation = self.next_generation;
        self.next_generation += 1;
        self.slots.insert(
            tag,
            Slot {
                generation,
                expect,
                waiter: Some(waiter),
                flushing: false,
            },
        );
        RequestId { tag, generation }
    }

    /// Give up a request that never reached the wire.
    pub fn cancel(&mut self, id: RequestId) -> Option<W> {
        match self.slots.get(&id.tag) {
            Some(s) if s.generation == id.generation => {
                self.slots.remove(&id.tag).and_then(|s| s.waiter)
            }
            _ => None,
        }
    }

    /// An answer to `tag` arrived: who gets it. The tag is freed unless a
    /// flush of it is outstanding.
    pub fn complete(&mut self, tag: u16) -> Option<Answer<W>> {
        let slot = self.slots.get_mut(&tag)?;
        if slot.flushing {
            let expect = slot.expect;
            return slot.waiter.take().map(|waiter| Answer { waiter, expect });
        }
        let slot = self.slots.remove(&tag)?;
        let expect = slot.expect;
        slot.waiter.map(|waiter| Answer { waiter, expect })
    }

    /// Mark `id` as being flushed. False if it already finished (or is
    /// already being flushed): then there is nothing to cancel.
    pub fn begin_flush(&mut self, id: RequestId) -> bool {
        match self.slots.get_mut(&id.tag) {
            Some(s) if s.generation == id.generation && !s.flushing && s.waiter.is_some() => {
                s.flushing = true;
                true
            }
            _ => false,
        }
    }

    /// The flush of `id` was answered (or could not be sent): free its tag.
    /// Returns the waiter if the original answer never came.
    pub fn end_flush(&mut self, id: RequestId) -> Option<W> {
        match self.slots.get(&id.tag) {
            Some(s) if s.generation == id.generation && s.flushing => {
                self.slots.remove(&id.tag).and_then(|s| s.waiter)
            }
            _ => None,
        }
    }

    /// The connection is gone: everyone still waiting.
    pub fn drain(&mut self) -> Vec<W> {
        self.slots.drain().filter_map(|(_, s)| s.waiter).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_unique_never_notag_and_freed_by_the_answer() {
        let mut t = Tags::new(100);
        let a = t.alloc(101, "a").unwrap();
        let b = t.alloc(101, "b").unwrap();
        assert_ne!(a.tag, b.tag);
        assert_eq!(t.complete(a.tag).map(|x| x.waiter), Some("a"));
        assert!(t.complete(a.tag).is_none(), "a tag answers once");
        assert_eq!(t.len(), 1);
        let mut t = Tags::new(usize::MAX);
        for _ in 0..65535 {
            let id = t.alloc(1, ()).unwrap();
            assert_ne!(id.tag, NOTAG);
        }
        assert!(t.alloc(1, ()).is_err(), "all 65535 tags are in use");
    }

    #[test]
    fn a_full_table_refuses_until_a_tag_frees() {
        let mut t = Tags::new(2);
        let a = t.alloc(1, 1).unwrap();
        t.alloc(1, 2).unwrap();
        assert_eq!(t.alloc(1, 3), Err(3));
        t.complete(a.tag);
        assert!(t.alloc(1, 3).is_ok());
    }

    #[test]
    fn an_answer_before_rflush_is_delivered_but_the_tag_stays_reserved() {
        let mut t = Tags::new(10);
        let a = t.alloc(117, "read").unwrap();
        assert!(t.begin_flush(a));
        let got = t.complete(a.tag).unwrap();
        assert_eq!((got.waiter, got.expect), ("read", 117));
        // Until Rflush the tag is not handed out again.
        for _ in 0..9 {
            assert_ne!(t.alloc(1, "other").unwrap().tag, a.tag);
        }
        assert_eq!(t.end_flush(a), None, "the answer was already delivered");
        assert_eq!(t.len(), 9);
    }

    #[test]
    fn rflush_without_an_answer_returns_the_waiter() {
        let mut t = Tags::new(10);
        let a = t.alloc(117, "read").unwrap();
        assert!(t.begin_flush(a));
        assert!(!t.begin_flush(a), "one flush at a time");
        assert_eq!(t.end_flush(a), Some("read"));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn flushing_a_finished_request_cannot_cancel_the_one_that_reused_its_tag() {
        let mut t = Tags::new(1);
        let old = t.alloc(117, "old").unwrap();
        t.complete(old.tag);
        // Tags cycle; make the next one the old one again.
        t.next_tag = old.tag;
        let new = t.alloc(117, "new").unwrap();
        assert_eq!(old.tag, new.tag);
        assert!(!t.begin_flush(old));
        assert_eq!(t.end_flush(old), None);
        assert_eq!(t.complete(new.tag).map(|x| x.waiter), Some("new"));
    }

    #[test]
    fn notag_is_reserved_separately_and_drain_returns_all_waiters() {
        let mut t = Tags::new(10);
        t.alloc_notag(101, 0).unwrap();
        assert_eq!(t.alloc_notag(101, 1), Err(1));
        t.alloc(1, 2).unwrap();
        let mut w = t.drain();
        w.sort();
        assert_eq!(w, [0, 2]);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn a_request_that_never_went_out_can_be_cancelled() {
        let mut t = Tags::new(10);
        let a = t.alloc(1, "a").unwrap();
        assert_eq!(t.cancel(a), Some("a"));
        assert_eq!(t.cancel(a), None);
    }
}
