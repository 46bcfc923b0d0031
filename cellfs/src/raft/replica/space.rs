//! A full disk: storage that refused a write for lack of space (see
//! [`Storage::no_space`]) left what it holds as it was before the write,
//! so the replica does not stop. It starts again from what storage holds,
//! as if this replica alone had crashed and restarted: nothing of the
//! failed step was sent or reported, so no node has seen anything that
//! storage lost. The proposals whose entries were lost are answered with
//! [`LogError::NoSpace`]; while storage stays short, new commands (and
//! membership changes) are refused at once, and a follower takes no new
//! entries from its leader (it stops acknowledging appends). Reads, and
//! the writes the replica itself needs to lead (its term and vote, a new
//! term's first entry), go on.

use alloc::vec::Vec;

use noraft::{ClusterConfig, LogEntries, LogPosition, Node, NodeId};

use crate::log::{Change, Commit, LogError, ProposalId};
use crate::raft::storage::{Body, Storage, StorageError};

use super::{Pending, Replica, Stage, engine_entry, pos, to_config};

impl<S: Storage> Replica<S> {
    /// Storage failed: for lack of space (the storage says so), start
    /// again from it at the end of this flush; otherwise stop.
    pub(super) fn storage_failed(&mut self, e: StorageError) {
        if self.failed.is_some() || self.short.is_some() {
            return;
        }
        if self.storage.no_space().is_some() {
            self.short = Some(e);
        } else {
            self.fail(e);
        }
    }

    /// The error refusing `pending` while storage has no space, if it
    /// must be refused: commands and membership changes are; reads,
    /// snapshots and leadership transfers (which append nothing) are not.
    pub(super) fn refused_for_space(&self, pending: &Pending) -> Option<LogError> {
        match pending {
            Pending::Read | Pending::Change(Change::Transfer { .. } | Change::Snapshot) => None,
            Pending::Data(_) | Pending::Change(_) => self.storage.no_space().map(LogError::NoSpace),
        }
    }

    /// Start again from what storage holds after a write that found no
    /// space (`e`): the engine is rebuilt from the stored log, term and
    /// vote (everything the state machine was given stays given: it was
    /// durable); this node's proposals whose entries are not in storage
    /// are answered with the error, its reads wait for a leader again.
    pub(super) fn restart_from_storage(&mut self, e: StorageError) {
        let loaded = match self.storage.load() {
            // Make durable whatever earlier writes of this step reached
            // storage before the one that failed: the engine now counts
            // them as its log.
            Ok(l) => self.storage.sync().map(|()| l),
            Err(e) => Err(e),
        };
        let loaded = match loaded {
            Ok(l) if l.snapshot.is_some() || !l.entries.is_empty() => l,
            // A log that holds nothing yet cannot be restarted from (it
            // was being created): stop, as for any failure.
            Ok(_) => return self.fail(e),
            Err(e2) => return self.fail(e2),
        };
        let (prev, config) = match &loaded.snapshot {
            Some((meta, _)) => (pos(meta.term, meta.index), to_config(&meta.membership)),
            None => (LogPosition::ZERO, ClusterConfig::new()),
        };
        let mut entries = LogEntries::new(prev);
        self.bodies.clear();
        for s in &loaded.entries {
            entries.push(engine_entry(s));
            self.bodies.insert(s.index, (s.term, s.body.clone()));
        }
        self.node = Node::restart(
            self.node.id(),
            noraft::Term::new(loaded.hard.term),
            loaded.hard.voted_for.map(NodeId::new),
            noraft::Log::new(config, entries),
        );
        self.hard = loaded.hard;
        self.snapshot = loaded.snapshot.map(|(m, d)| (m, alloc::sync::Arc::new(d)));
        self.incoming.clear();
        self.seen.clear();
        let recent: Vec<(u64, Body)> = self
            .bodies
            .iter()
            .map(|(&i, (_, b))| (i, b.clone()))
            .collect();
        for (i, b) in recent {
            self.note_seen(i, &b);
        }
        let me = self.me();
        if self.leader == Some(me) {
            self.leader = None;
            self.leader_contact = None;
        }
        self.prevote = None;
        self.campaign_transfer = false;
        self.commit_due = false;
        self.read_acks.clear();
        self.snapshot_sent.clear();
        self.finish_transfer(Err(alloc::format!(
            "raft: this node's disk is full ({e}); it no longer leads"
        )));
        // Reads this node was confirming as leader wait for a leader
        // again; those of followers are asked again by them.
        for r in core::mem::take(&mut self.reads) {
            if r.who.is_none()
                && let Some(w) = self.waiting.get_mut(&r.seq)
            {
                w.stage = Stage::Queued(Pending::Read);
            }
        }
        let lost: Vec<ProposalId> = self
            .waiting
            .iter()
            .filter(|(_, w)| match w.stage {
                Stage::Local { at } => self
                    .bodies
                    .get(&at.index.get())
                    .is_none_or(|(t, _)| *t != at.term.get()),
                Stage::Reading => true,
                _ => false,
            })
            .map(|(&s, _)| s)
            .collect();
        for seq in lost {
            let Some(w) = self.waiting.get_mut(&seq) else {
                continue;
            };
            if matches!(w.stage, Stage::Reading) {
                w.stage = Stage::Queued(Pending::Read);
                continue;
            }
            self.waiting.remove(&seq);
            self.commits.push(Commit::Done {
                proposal: seq,
                result: Err(LogError::NoSpace(e.0.clone())),
            });
        }
        self.reset_timer();
    }
}
