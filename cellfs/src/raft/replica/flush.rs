//! Flushing the engine's actions: entries (with their bodies) and hard
//! state written and synced once (group commit), then messages sent, then
//! committed entries delivered.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use noraft::{Action, LogEntries, LogEntry, Message};

use crate::command::Command;
use crate::log::{Commit, Entry, Index, LogError, ProposalId, Term};
use crate::raft::storage::{Body, HardState, Storage, StorageError, Stored};
use crate::raft::wire::Rpc;

use super::{Replica, Stage};

/// Largest total of command bytes put in one append message; the rest
/// follows in later ones.
const MAX_APPEND_BYTES: usize = 1 << 20;

impl<S: Storage> Replica<S> {
    /// Carry out the engine's actions: storage first (one sync), then the
    /// messages, then the entries that are now committed.
    pub(super) fn flush(&mut self) {
        if self.failed.is_some() {
            self.fail_waiting();
            return;
        }
        self.start_reads();
        let mut wrote = false;
        let mut sends: Vec<(Option<u64>, Message)> = Vec::new();
        let mut snapshots: Vec<u64> = Vec::new();
        let mut timer = false;
        while let Some(action) = self.node.actions_mut().next() {
            match action {
                Action::SetElectionTimeout => timer = true,
                Action::SaveCurrentTerm | Action::SaveVotedFor => {
                    let hard = HardState {
                        term: self.node.current_term().get(),
                        voted_for: self.node.voted_for().map(|n| n.get()),
                        boot: self.hard.boot,
                    };
                    // After a write that found no space the step is
                    // dropped (see `space`): nothing more is written.
                    if hard != self.hard && self.short.is_none() {
                        self.hard = hard;
                        if let Err(e) = self.storage.save_hard_state(&hard) {
                            self.storage_failed(e);
                        }
                        wrote = true;
                    }
                }
                Action::AppendLogEntries(entries) => {
                    if self.short.is_none()
                        && let Err(e) = self.append(&entries)
                    {
                        self.storage_failed(e);
                    }
                    wrote = true;
                }
                Action::BroadcastMessage(m) => sends.push((None, m)),
                Action::SendMessage(to, m) => sends.push((Some(to.get()), m)),
                Action::InstallSnapshot(to) => snapshots.push(to.get()),
            }
        }
        // Bodies that arrived are in storage now, or were not taken.
        self.incoming.clear();
        if wrote
            && self.short.is_none()
            && let Err(e) = self.storage.sync()
        {
            self.storage_failed(e);
        }
        if let Some(e) = self.short.take() {
            // Nothing of this step is sent or reported: its messages
            // (an acknowledgement of entries not written, say) go with
            // the engine that made them.
            self.restart_from_storage(e);
            if self.failed.is_some() {
                self.fail_waiting();
            }
            return;
        }
        if self.failed.is_some() {
            self.fail_waiting();
            return;
        }
        if timer {
            self.reset_timer();
        }
        if self.is_leader() {
            if self.leader != Some(self.me()) {
                self.leader = Some(self.me());
                self.lease_take_office();
                self.rejoin_due = true;
                self.abandon_sent();
            }
        } else if self.transfer.is_some() {
            let target = self.transfer.as_ref().map(|t| t.target);
            let result = if self.leader == target || self.leader.is_none() {
                Ok(())
            } else {
                Err(String::from("raft: another node took over instead"))
            };
            self.finish_transfer(result);
        }
        if self.leader.is_some() {
            self.flush_queued();
        }
        for (to, m) in sends {
            self.send_engine(to, m);
        }
        for to in snapshots {
            self.send_snapshot(to);
        }
        self.drive_transfer();
        self.check_local_proposals();
        self.finish_reads();
        self.deliver();
        if self.rejoin() {
            // Its entry goes out in this step, not at the next input.
            self.flush();
            return;
        }
        // When nothing later is on its way to the followers (an append
        // would carry the new commit index), tell them now: a follower
        // then answers the write it forwarded, and shows what was
        // acknowledged here, within a round trip rather than a heartbeat.
        if core::mem::take(&mut self.commit_due)
            && self.is_leader()
            && self.node.commit_index() == self.node.log().last_position().index
        {
            // Once: the heartbeat's own flush delivers nothing new.
            self.node.heartbeat();
            self.flush();
        }
    }

    fn fail_waiting(&mut self) {
        let why = self
            .failed
            .as_ref()
            .map(|e| e.0.clone())
            .unwrap_or_default();
        for (seq, _) in core::mem::take(&mut self.waiting) {
            self.commits.push(Commit::Done {
                proposal: seq,
                result: Err(LogError::Storage(why.clone())),
            });
        }
    }

    /// Write the engine's appended entries with their bodies.
    fn append(&mut self, entries: &LogEntries) -> Result<(), StorageError> {
        let mut stored = Vec::with_capacity(entries.len());
        for (at, e) in entries.iter_with_positions() {
            let (index, term) = (at.index.get(), at.term.get());
            let body = match e {
                LogEntry::Term(_) => Body::Term,
                LogEntry::ClusterConfig(c) => match self.body_at(index, term) {
                    Some(b @ Body::Config { .. }) => b,
                    // The engine's own step out of a joint configuration.
                    _ => Body::Config {
                        membership: self.membership(&c),
                        origin: 0,
                        seq: 0,
                    },
                },
                LogEntry::Command => match self.body_at(index, term) {
                    Some(b @ Body::Command { .. }) => b,
                    _ => {
                        return Err(StorageError(format!(
                            "raft: no command body for entry {index} (term {term})"
                        )));
                    }
                },
            };
            stored.push(Stored { index, term, body });
        }
        let after = entries.prev_position().index.get();
        self.storage.append(after, &stored)?;
        drop(self.bodies.split_off(&(after + 1)));
        for s in stored {
            self.note_seen(s.index, &s.body);
            self.bodies.insert(s.index, (s.term, s.body));
        }
        Ok(())
    }

    fn body_at(&self, index: Index, term: Term) -> Option<Body> {
        self.incoming
            .get(&(index, term))
            .or_else(|| {
                self.bodies
                    .get(&index)
                    .filter(|(t, _)| *t == term)
                    .map(|(_, b)| b)
            })
            .cloned()
    }

    fn send_engine(&mut self, to: Option<u64>, m: Message) {
        let msg = match m {
            Message::RequestVoteCall {
                term,
                last_position,
                ..
            } => Rpc::Vote {
                term: term.get(),
                last_term: last_position.term.get(),
                last_index: last_position.index.get(),
                transfer: self.campaign_transfer,
            },
            Message::RequestVoteReply {
                term, vote_granted, ..
            } => Rpc::VoteReply {
                term: term.get(),
                granted: vote_granted,
            },
            Message::AppendEntriesReply {
                term,
                last_position,
                ..
            } => Rpc::AppendReply {
                term: term.get(),
                last_term: last_position.term.get(),
                last_index: last_position.index.get(),
                read: self.read_echo.1,
                stamp: 0,
                echo: 0,
            },
            Message::AppendEntriesCall {
                term,
                commit_index,
                entries,
                ..
            } => {
                let prev = entries.prev_position();
                let mut out = Vec::new();
                let mut bytes = 0;
                for (at, _) in entries.iter_with_positions() {
                    let Some((t, body)) = self.bodies.get(&at.index.get()) else {
                        // Compacted away meanwhile: the engine will ask
                        // for a snapshot after the follower's reply.
                        break;
                    };
                    if let Body::Command { data, .. } = body {
                        bytes += data.len();
                    }
                    out.push(Stored {
                        index: at.index.get(),
                        term: *t,
                        body: body.clone(),
                    });
                    if bytes >= MAX_APPEND_BYTES {
                        break;
                    }
                }
                Rpc::Append {
                    term: term.get(),
                    commit: commit_index.get(),
                    prev_term: prev.term.get(),
                    prev_index: prev.index.get(),
                    entries: out,
                    read: self.read_sent,
                    stamp: 0,
                    echo: 0,
                    lease: 0,
                }
            }
        };
        match to {
            Some(to) => {
                let mut msg = msg;
                self.lease_stamp(to, &mut msg);
                self.outbox.push((to, msg));
            }
            None => {
                let me = self.node.id();
                let peers: Vec<u64> = self
                    .node
                    .peers()
                    .filter(|&n| n != me)
                    .map(|n| n.get())
                    .collect();
                for p in peers {
                    let mut m = msg.clone();
                    self.lease_stamp(p, &mut m);
                    self.outbox.push((p, m));
                }
            }
        }
    }

    /// Report every entry committed (and durable here) since last time.
    fn deliver(&mut self) {
        let commit = self.node.commit_index().get();
        while self.delivered < commit {
            let index = self.delivered + 1;
            let Some((term, body)) = self.bodies.get(&index) else {
                break;
            };
            let term = *term;
            let (origin, seq, data) = match body {
                Body::Term => {
                    self.delivered = index;
                    continue;
                }
                Body::Config {
                    membership,
                    origin,
                    seq,
                } => {
                    self.rejoin_due = true;
                    (*origin, *seq, Command::Members(membership.clone()).encode())
                }
                Body::Command { origin, seq, data } => (*origin, *seq, data.clone()),
            };
            let data_len = data.len();
            self.commit_due = true;
            let proposal =
                (origin == self.me() && self.waiting.remove(&seq).is_some()).then_some(seq);
            self.commits.push(Commit::Entry {
                entry: Entry {
                    index,
                    term,
                    origin,
                    data,
                },
                proposal,
            });
            self.delivered = index;
            self.since_snapshot += 1;
            self.since_snapshot_bytes += data_len;
        }
        let delivered = self.delivered;
        let ready: Vec<ProposalId> = self
            .waiting
            .iter()
            .filter(|(_, w)| matches!(w.stage, Stage::ReadAt { index } if index <= delivered))
            .map(|(&s, _)| s)
            .collect();
        for seq in ready {
            self.waiting.remove(&seq);
            self.commits.push(Commit::Done {
                proposal: seq,
                result: Ok(()),
            });
        }
    }
}
