//! Elections and leadership: timers, pre-vote, check-quorum and the
//! protection against disruptive candidates, and leadership transfer.

use alloc::string::String;
use alloc::vec::Vec;

use noraft::NodeId;

use crate::log::{Commit, Index, LogError, Term};
use crate::raft::storage::Storage;
use crate::raft::wire::Rpc;

use super::Replica;

impl<S: Storage> Replica<S> {
    fn random_election(&mut self) -> u64 {
        // splitmix64: cheap, seeded, good enough for timeouts.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let (lo, hi) = self.opts.election_ms;
        lo + z % (hi.saturating_sub(lo).max(1))
    }

    pub(super) fn reset_timer(&mut self) {
        self.deadline = if self.is_leader() {
            self.now + self.opts.heartbeat_ms
        } else if self.solo_voter() {
            // Nobody else could lead: elect at once (a restart of a node
            // alone replays straight away).
            self.now
        } else {
            self.now + self.random_election()
        };
    }

    pub(super) fn leader_is_alive(&self) -> bool {
        let min = self.opts.election_ms.0;
        if self.is_leader() {
            // A leader that hears from a majority keeps its office.
            return self.heard_majority(min);
        }
        self.leader_contact
            .is_some_and(|t| self.now.saturating_sub(t) < min)
    }

    /// Whether this node heard from a majority of the voters (itself
    /// included) within the last `ms`.
    pub(super) fn heard_majority(&self, ms: u64) -> bool {
        let voters = &self.node.config().voters;
        let heard = voters
            .iter()
            .filter(|n| {
                n.get() == self.me()
                    || self
                        .last_contact
                        .get(&n.get())
                        .is_some_and(|&t| self.now.saturating_sub(t) < ms)
            })
            .count();
        heard > voters.len() / 2
    }

    /// Ask the voters whether they would elect this node in the next
    /// term; the election itself starts only when a majority would.
    pub(super) fn start_prevote(&mut self) {
        let term = self.node.current_term().get() + 1;
        let last = self.node.log().last_position();
        let mut granted = alloc::collections::BTreeSet::new();
        granted.insert(self.me());
        self.prevote = Some((term, granted));
        let config = self.node.config();
        let voters: Vec<u64> = config
            .voters
            .iter()
            .chain(config.new_voters.iter())
            .map(|n| n.get())
            .filter(|&n| n != self.me())
            .collect();
        for to in voters {
            self.outbox.push((
                to,
                Rpc::PreVote {
                    term,
                    last_term: last.term.get(),
                    last_index: last.index.get(),
                },
            ));
        }
        self.check_prevote();
    }

    /// Start the election if a majority (of each side of a joint
    /// configuration) granted the pre-vote.
    pub(super) fn check_prevote(&mut self) {
        let Some((term, granted)) = &self.prevote else {
            return;
        };
        if *term != self.node.current_term().get() + 1 || self.is_leader() {
            self.prevote = None;
            return;
        }
        let config = self.node.config();
        let majority = |set: &alloc::collections::BTreeSet<NodeId>| {
            set.iter().filter(|n| granted.contains(&n.get())).count() > set.len() / 2
        };
        if majority(&config.voters)
            && (config.new_voters.is_empty() || majority(&config.new_voters))
        {
            self.prevote = None;
            self.node.handle_election_timeout();
        }
    }

    /// Whether this node would vote for a candidate in `term` whose log
    /// ends at (`last_term`, `last_index`); asking changes nothing here.
    pub(super) fn would_vote(&self, term: Term, last_term: Term, last_index: Index) -> bool {
        let mine = self.node.log().last_position();
        term > self.node.current_term().get()
            && !self.leader_is_alive()
            && (last_term, last_index) >= (mine.term.get(), mine.index.get())
    }

    pub(super) fn drive_transfer(&mut self) {
        let Some(t) = &self.transfer else {
            return;
        };
        if t.sent {
            return;
        }
        let target = NodeId::new(t.target);
        let last = self.node.log().last_position().index;
        if self.node.follower_match_index(target) == Some(last) {
            let term = t.term;
            let to = t.target;
            if let Some(t) = &mut self.transfer {
                t.sent = true;
            }
            self.outbox.push((to, Rpc::TimeoutNow { term }));
        }
    }

    pub(super) fn finish_transfer(&mut self, result: Result<(), String>) {
        let Some(t) = self.transfer.take() else {
            return;
        };
        if t.origin == self.me() {
            if self.waiting.remove(&t.seq).is_some() {
                self.commits.push(Commit::Done {
                    proposal: t.seq,
                    result: result.map_err(LogError::Refused),
                });
            }
        } else {
            self.outbox.push((
                t.origin,
                Rpc::ChangeDone {
                    seq: t.seq,
                    error: result.err(),
                },
            ));
        }
    }
}
