//! What one node sees of its agents, kept only there: each agent's
//! recent operations on the tree and the last ctl write to it or message
//! it read (copied into the committed command when the node proposes an
//! exit record or a drift), and the drifts caught but not yet proposed.
//!
//! Requests are handled one at a time, so a `RefCell` lets the request
//! paths, which see the node only through shared references, record.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use super::ctl::clean;
use super::state::{MAX_RECENT, Recent};

/// Longest text of one recent operation, in bytes.
pub const MAX_TEXT: usize = 256;

/// A drift caught on this node, to propose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caught {
    /// The agent's number.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// The run it was caught in (its `starts`).
    pub starts: u64,
    /// The operation (`read`, `write`, `walk`, …).
    pub op: String,
    /// The path it was tried on.
    pub path: String,
    /// When (Unix seconds).
    pub at: u64,
}

#[derive(Debug, Default)]
struct Seen {
    ops: VecDeque<Recent>,
    before: Option<Recent>,
    /// The run in which a drift was caught here: the agent is refused
    /// from then on, before the halt commits.
    halting: Option<u64>,
}

/// Every agent's node-local record, by agent number.
#[derive(Debug, Default)]
pub struct Record {
    agents: RefCell<BTreeMap<u64, Seen>>,
    caught: RefCell<Vec<Caught>>,
}

/// Add `text` at `at` to a ring, counting a repeat of the last entry.
fn push(ring: &mut VecDeque<Recent>, at: u64, text: &str) {
    if let Some(last) = ring.back_mut()
        && last.text == text
    {
        last.times = last.times.saturating_add(1);
        last.at = at;
        return;
    }
    if ring.len() >= MAX_RECENT {
        ring.pop_front();
    }
    ring.push_back(Recent {
        at,
        text: clean(text, MAX_TEXT),
        times: 1,
    });
}

impl Record {
    /// Agent `id` did `text` (`read /chan/in/data`) at `at`.
    pub fn op(&self, id: u64, at: u64, text: &str) {
        push(
            &mut self.agents.borrow_mut().entry(id).or_default().ops,
            at,
            text,
        );
    }

    /// A ctl write to agent `id`, or a message it read: what a trace shows
    /// as `before`.
    pub fn before(&self, id: u64, at: u64, text: &str) {
        let mut agents = self.agents.borrow_mut();
        let seen = agents.entry(id).or_default();
        match &mut seen.before {
            Some(b) if b.text == text => {
                b.times = b.times.saturating_add(1);
                b.at = at;
            }
            b => {
                *b = Some(Recent {
                    at,
                    text: clean(text, MAX_TEXT),
                    times: 1,
                })
            }
        }
    }

    /// Agent `id`'s recent operations, oldest first, and its `before`.
    pub fn recent(&self, id: u64) -> (Vec<Recent>, Option<Recent>) {
        match self.agents.borrow().get(&id) {
            Some(s) => (s.ops.iter().cloned().collect(), s.before.clone()),
            None => (Vec::new(), None),
        }
    }

    /// An exit or drift of agent `id` was recorded: the operations before
    /// it are in its trace now, and the next block starts afresh.
    pub fn recorded(&self, id: u64) {
        if let Some(s) = self.agents.borrow_mut().get_mut(&id) {
            s.ops.clear();
        }
    }

    /// Whether a drift of agent `id` in run `starts` was caught here.
    pub fn halting(&self, id: u64, starts: u64) -> bool {
        self.agents
            .borrow()
            .get(&id)
            .is_some_and(|s| s.halting == Some(starts))
    }

    /// Keep a caught drift to propose; false (and nothing kept) if one of
    /// that run was caught already.
    pub fn catch(&self, c: Caught) -> bool {
        let mut agents = self.agents.borrow_mut();
        let seen = agents.entry(c.id).or_default();
        if seen.halting == Some(c.starts) {
            return false;
        }
        seen.halting = Some(c.starts);
        self.caught.borrow_mut().push(c);
        true
    }

    /// The drifts caught since the last call, to propose.
    pub fn take_caught(&self) -> Vec<Caught> {
        core::mem::take(&mut *self.caught.borrow_mut())
    }

    /// Keep a drift whose proposal failed, to try again.
    pub fn retry(&self, c: Caught) {
        self.caught.borrow_mut().push(c);
    }

    /// Forget the agents that no longer exist.
    pub fn forget_removed(&self, exists: impl Fn(u64) -> bool) {
        self.agents.borrow_mut().retain(|&id, _| exists(id));
        self.caught.borrow_mut().retain(|c| exists(c.id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caught(id: u64, starts: u64) -> Caught {
        Caught {
            id,
            name: String::from("a"),
            starts,
            op: String::from("write"),
            path: String::from("/chan/out/data"),
            at: 5,
        }
    }

    #[test]
    fn repeats_are_counted_and_the_ring_is_bounded() {
        let l = Record::default();
        l.op(1, 10, "read /chan/in/data");
        l.op(1, 11, "read /chan/in/data");
        l.op(1, 12, "write /chan/out/data");
        let (ops, before) = l.recent(1);
        assert_eq!(ops.len(), 2);
        assert_eq!((ops[0].times, ops[0].at), (2, 11));
        assert_eq!(before, None);
        for i in 0..40 {
            l.op(1, 20, &alloc::format!("read /x/{i}"));
        }
        let (ops, _) = l.recent(1);
        assert_eq!(ops.len(), MAX_RECENT);
        assert_eq!(ops[MAX_RECENT - 1].text, "read /x/39");
        l.recorded(1);
        assert!(l.recent(1).0.is_empty());
        assert!(l.recent(2).0.is_empty(), "another agent has its own");
    }

    #[test]
    fn one_drift_per_run_is_kept_to_propose() {
        let l = Record::default();
        assert!(!l.halting(1, 0));
        assert!(l.catch(caught(1, 0)));
        assert!(!l.catch(caught(1, 0)), "the same run again");
        assert!(l.halting(1, 0));
        assert!(!l.halting(1, 1), "a later run is not halted");
        assert_eq!(l.take_caught().len(), 1);
        assert!(l.take_caught().is_empty());
        assert!(l.catch(caught(1, 1)));
        l.forget_removed(|_| false);
        assert!(l.take_caught().is_empty());
        assert!(!l.halting(1, 1));
    }
}
