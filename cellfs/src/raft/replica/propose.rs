//! Where a proposal goes: appended here when this node leads, else
//! forwarded to the leader; a leader drops a forward already in its log
//! (by origin and sequence number), and proposals whose route is lost
//! are answered at once. Membership changes themselves are `members`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use noraft::LogPosition;

use crate::log::{Commit, Index, LogError, ProposalId};
use crate::raft::storage::{Body, Storage};
use crate::raft::wire::Rpc;

use super::{LeaderRead, Pending, Replica, Stage};

/// How many recent entries' proposals a replica remembers to drop
/// duplicated forwards.
const SEEN_KEPT: usize = 65_536;

impl<S: Storage> Replica<S> {
    /// Append a proposal here if leading, else hand it to the leader.
    /// `None` when it already failed (reported as [`Commit::Done`]).
    pub(super) fn route(&mut self, seq: u64, pending: Pending) -> Option<Stage> {
        if let Some(e) = self.refused_for_space(&pending) {
            // This node's disk is full: it could not take the entry in
            // even if another node led.
            self.commits.push(Commit::Done {
                proposal: seq,
                result: Err(e),
            });
            return None;
        }
        if self.is_leader() && matches!(pending, Pending::Read) {
            self.reads.push(LeaderRead {
                who: None,
                seq,
                at: None,
            });
            return Some(Stage::Reading);
        }
        if self.is_leader() {
            let me = self.me();
            return match self.lead(me, seq, pending) {
                Ok(Some(at)) => Some(Stage::Local { at }),
                Ok(None) => Some(Stage::Running),
                Err(e) => {
                    self.commits.push(Commit::Done {
                        proposal: seq,
                        result: Err(e),
                    });
                    None
                }
            };
        }
        Some(match self.leader {
            Some(to) if to != self.me() => {
                self.outbox.push((to, forward(seq, &pending)));
                Stage::Sent { to, pending }
            }
            _ => Stage::Queued(pending),
        })
    }

    /// As leader, append what `origin` proposed. `Ok(None)` for a change
    /// that has no entry (a transfer).
    fn lead(
        &mut self,
        origin: u64,
        seq: u64,
        pending: Pending,
    ) -> Result<Option<LogPosition>, LogError> {
        if self.transfer.is_some() {
            return Err(LogError::NoLeader);
        }
        if let Some(e) = self.refused_for_space(&pending) {
            return Err(e);
        }
        if !self.heard_majority(self.opts.election_ms.1) {
            // Check-quorum: a leader cut off from most voters would only
            // hold the proposal until it timed out; say at once that there
            // is no leader to take it (nothing was appended).
            return Err(LogError::NoLeader);
        }
        match pending {
            Pending::Data(data) => {
                let at = self.node.propose_command();
                if at == LogPosition::INVALID {
                    return Err(LogError::NoLeader);
                }
                let body = Body::Command { origin, seq, data };
                self.note_seen(at.index.get(), &body);
                self.bodies.insert(at.index.get(), (at.term.get(), body));
                Ok(Some(at))
            }
            Pending::Change(change) => self.lead_change(origin, seq, change),
            // Reads never reach here: `route` and `read_asked` take them.
            Pending::Read => Ok(None),
        }
    }

    pub(super) fn forwarded(&mut self, from: u64, seq: u64, pending: Pending) {
        if self.seen.contains_key(&(from, seq)) {
            // A copy of a forward already in the log: it answers itself
            // when that entry commits.
            return;
        }
        if self.sent_elsewhere(from, seq) {
            return;
        }
        match self.lead(from, seq, pending) {
            Ok(_) => {}
            Err(e) => {
                let why = match e {
                    LogError::NoLeader => None,
                    e => Some(format!("{e}")),
                };
                self.outbox.push((
                    from,
                    Rpc::Refuse {
                        seq,
                        leader: None,
                        why,
                    },
                ));
            }
        }
    }

    /// When this node cannot take `from`'s request `seq` (it does not
    /// lead, or is handing over), refuse it, naming the leader it knows.
    pub(super) fn sent_elsewhere(&mut self, from: u64, seq: u64) -> bool {
        if self.is_leader() && self.transfer.is_none() {
            return false;
        }
        let leader = self.leader.filter(|&l| l != from);
        self.outbox.push((
            from,
            Rpc::Refuse {
                seq,
                leader,
                why: None,
            },
        ));
        true
    }

    pub(super) fn refused(
        &mut self,
        from: u64,
        seq: u64,
        leader: Option<u64>,
        why: Option<String>,
    ) {
        let Some(w) = self.waiting.get_mut(&seq) else {
            return;
        };
        if let Some(why) = why {
            self.waiting.remove(&seq);
            self.commits.push(Commit::Done {
                proposal: seq,
                result: Err(LogError::Refused(why)),
            });
            return;
        }
        let Stage::Sent { to, pending } = &w.stage else {
            return;
        };
        if *to != from {
            return;
        }
        let pending = pending.clone();
        if self.leader == Some(from) {
            self.leader = leader;
        }
        // Nothing was appended: it is safe to send again elsewhere.
        self.reroute(seq, pending);
    }

    /// Route a waiting proposal again: update where it stands, or forget
    /// it when routing already reported it failed.
    pub(super) fn reroute(&mut self, seq: ProposalId, pending: Pending) {
        match self.route(seq, pending) {
            Some(stage) => {
                if let Some(w) = self.waiting.get_mut(&seq) {
                    w.stage = stage;
                }
            }
            None => {
                self.waiting.remove(&seq);
            }
        }
    }

    /// Proposals handed to a node that no longer leads for us may or may
    /// not be in the log: answer them now rather than at their deadline,
    /// so a client retries as soon as a new leader is known. Sending them
    /// again could append them twice.
    pub(super) fn abandon_sent(&mut self) {
        let leader = self.leader;
        let lost: Vec<(ProposalId, bool)> = self
            .waiting
            .iter()
            .filter_map(|(&s, w)| match &w.stage {
                Stage::Sent { to, pending } if Some(*to) != leader => {
                    Some((s, matches!(pending, Pending::Read)))
                }
                _ => None,
            })
            .collect();
        for (seq, read) in lost {
            if read {
                // A read changes nothing: ask again, wherever leads now.
                self.reroute(seq, Pending::Read);
                continue;
            }
            self.answer_failed(seq, LogError::Unknown);
        }
    }

    /// Answer waiting proposal `seq` with `error`, now.
    fn answer_failed(&mut self, seq: ProposalId, error: LogError) {
        self.waiting.remove(&seq);
        self.commits.push(Commit::Done {
            proposal: seq,
            result: Err(error),
        });
    }

    /// Fail the proposals that still wait for a leader (they are never
    /// sent): the node lost its lease, and what was asked before may not
    /// land after its agents run elsewhere.
    pub(super) fn fail_queued(&mut self) {
        let queued: Vec<ProposalId> = self
            .waiting
            .iter()
            .filter(|(_, w)| matches!(w.stage, Stage::Queued(Pending::Data(_))))
            .map(|(&s, _)| s)
            .collect();
        for seq in queued {
            self.answer_failed(seq, LogError::NoLeader);
        }
    }

    /// Send what waited for a leader.
    pub(super) fn flush_queued(&mut self) {
        let queued: Vec<ProposalId> = self
            .waiting
            .iter()
            .filter(|(_, w)| matches!(w.stage, Stage::Queued(_)))
            .map(|(&s, _)| s)
            .collect();
        for seq in queued {
            let Some(w) = self.waiting.get_mut(&seq) else {
                continue;
            };
            let Stage::Queued(pending) = core::mem::replace(&mut w.stage, Stage::Running) else {
                continue;
            };
            self.reroute(seq, pending);
        }
    }

    /// A proposal this node appended as leader whose slot went to another
    /// entry will never commit: say so now rather than at its deadline.
    pub(super) fn check_local_proposals(&mut self) {
        let lost: Vec<ProposalId> = self
            .waiting
            .iter()
            .filter(|(_, w)| match w.stage {
                Stage::Local { at } => {
                    self.node.get_commit_status(at) == noraft::CommitStatus::Rejected
                }
                _ => false,
            })
            .map(|(&s, _)| s)
            .collect();
        for seq in lost {
            self.answer_failed(seq, LogError::NoLeader);
        }
    }

    /// Remember which proposal `body` carries, so a copy of its forward
    /// that arrives later (a network duplicate) is not appended again.
    pub(super) fn note_seen(&mut self, index: Index, body: &Body) {
        let (Body::Command { origin, seq, .. } | Body::Config { origin, seq, .. }) = body else {
            return;
        };
        if *origin == 0 {
            return;
        }
        self.seen.insert((*origin, *seq), index);
        if self.seen.len() > 2 * SEEN_KEPT {
            let keep_from = index.saturating_sub(SEEN_KEPT as u64);
            self.seen.retain(|_, &mut i| i >= keep_from);
        }
    }
}

fn forward(seq: u64, pending: &Pending) -> Rpc {
    match pending {
        Pending::Data(data) => Rpc::Forward {
            seq,
            data: data.clone(),
        },
        Pending::Change(change) => Rpc::ForwardChange {
            seq,
            change: change.clone(),
        },
        Pending::Read => Rpc::Read { seq },
    }
}
