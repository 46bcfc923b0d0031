//! Linearizable reads (ReadIndex): the leader confirms its commit index
//! with a heartbeat round before a read is served.

use noraft::NodeId;

use crate::raft::storage::Storage;
use crate::raft::wire::Rpc;

use super::{LeaderRead, Pending, Replica, Stage};

impl<S: Storage> Replica<S> {
    /// A follower's read: confirm it like this node's own, or point the
    /// follower elsewhere.
    pub(super) fn read_asked(&mut self, from: u64, seq: u64) {
        if self.sent_elsewhere(from, seq) {
            return;
        }
        self.reads.push(LeaderRead {
            who: Some((from, seq)),
            seq,
            at: None,
        });
    }

    /// Give reads that lack one a round, once this leader has committed an
    /// entry of its own term (before that its commit index may be behind
    /// what an earlier leader acknowledged), and ask for a heartbeat.
    pub(super) fn start_reads(&mut self) {
        if self.reads.is_empty() || !self.is_leader() {
            return;
        }
        let commit = self.node.commit_index();
        let term = self.node.current_term();
        if self.node.log().entries().get_term(commit) != Some(term) {
            return;
        }
        let round = self.read_round;
        for r in self.reads.iter_mut().filter(|r| r.at.is_none()) {
            r.at = Some((round, commit.get()));
            self.read_due = true;
        }
        if self.read_due {
            self.read_due = false;
            self.read_sent = round;
            self.read_round += 1;
            self.node.heartbeat();
        }
    }

    /// Whether a majority (of each side of a joint configuration) has
    /// echoed `round` or a later one.
    fn round_confirmed(&self, round: u64) -> bool {
        let me = self.me();
        let config = self.node.config();
        let majority = |set: &alloc::collections::BTreeSet<NodeId>| {
            let yes = set
                .iter()
                .filter(|n| {
                    n.get() == me || self.read_acks.get(&n.get()).is_some_and(|&r| r >= round)
                })
                .count();
            yes > set.len() / 2
        };
        majority(&config.voters) && (config.new_voters.is_empty() || majority(&config.new_voters))
    }

    /// Answer the reads whose round a majority confirmed; hand the reads
    /// of a leader that lost office to the new one.
    pub(super) fn finish_reads(&mut self) {
        if self.reads.is_empty() {
            return;
        }
        if !self.is_leader() {
            for r in core::mem::take(&mut self.reads) {
                // A follower's read goes unanswered: it asks again when
                // it sees the leader change.
                if r.who.is_none() {
                    self.reroute(r.seq, Pending::Read);
                }
            }
            return;
        }
        let mut i = 0;
        while i < self.reads.len() {
            let Some((round, index)) = self.reads[i].at else {
                i += 1;
                continue;
            };
            if !self.round_confirmed(round) {
                i += 1;
                continue;
            }
            let r = self.reads.swap_remove(i);
            match r.who {
                Some((origin, seq)) => self.outbox.push((origin, Rpc::ReadIndex { seq, index })),
                None => {
                    if let Some(w) = self.waiting.get_mut(&r.seq) {
                        w.stage = Stage::ReadAt { index };
                    }
                }
            }
        }
    }
}
