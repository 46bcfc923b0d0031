//! Snapshots: taking this node's own, sending one to a lagging follower,
//! and installing one from the leader.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use noraft::LogIndex;

use crate::log::{Commit, LogError, Snapshot, Term};
use crate::raft::storage::{SnapshotMeta, Storage, StorageError};
use crate::raft::wire::Rpc;

use super::{Replica, pos, to_config};

/// A snapshot is sent to a lagging follower at most this often.
const SNAPSHOT_RESEND_MS: u64 = 1_000;

impl<S: Storage> Replica<S> {
    pub(super) fn receive_snapshot(
        &mut self,
        from: u64,
        term: Term,
        meta: SnapshotMeta,
        data: Vec<u8>,
    ) {
        let at = pos(meta.term, meta.index);
        if term > self.node.current_term().get() {
            // Learn the leader's term first, as the engine requires.
            self.receive_append(from, term, 0, at, Vec::new());
        }
        if term < self.node.current_term().get()
            || self.is_leader()
            || meta.index <= self.node.commit_index().get()
            || meta.term > self.node.current_term().get()
        {
            return;
        }
        self.leader = Some(from);
        self.leader_contact = Some(self.now);
        let keeps_tail = self.node.log().entries().contains(at);
        let data = Arc::new(data);
        let result = self
            .storage
            .save_shared_snapshot(&meta, &data)
            .and_then(|()| {
                if keeps_tail {
                    Ok(())
                } else {
                    self.storage.append(meta.index, &[])
                }
            });
        if let Err(e) = result {
            self.storage_failed(e);
            return;
        }
        if !self
            .node
            .handle_snapshot_installed(at, to_config(&meta.membership))
        {
            self.fail(StorageError(format!(
                "raft: the engine refused a snapshot through {} that storage now holds",
                meta.index
            )));
            return;
        }
        if keeps_tail {
            self.bodies.retain(|&i, _| i > meta.index);
        } else {
            self.bodies.clear();
        }
        for m in &meta.membership.members {
            self.directory.insert(m.id, m.clone());
        }
        self.commits.push(Commit::Snapshot(Snapshot {
            index: meta.index,
            term: meta.term,
            data: Vec::clone(&data),
        }));
        self.delivered = meta.index;
        self.since_snapshot = 0;
        self.since_snapshot_bytes = 0;
        self.snapshot = Some((meta, data));
    }

    pub(super) fn send_snapshot(&mut self, to: u64) {
        let Some((meta, data)) = &self.snapshot else {
            return;
        };
        if self
            .snapshot_sent
            .get(&to)
            .is_some_and(|&t| self.now.saturating_sub(t) < SNAPSHOT_RESEND_MS)
        {
            return;
        }
        self.snapshot_sent.insert(to, self.now);
        let msg = Rpc::Snapshot {
            term: self.node.current_term().get(),
            meta: meta.clone(),
            data: Vec::clone(data),
        };
        self.outbox.push((to, msg));
    }

    pub(super) fn install_own(&mut self, snap: Snapshot) -> Result<(), LogError> {
        if snap.index == 0
            || self
                .snapshot
                .as_ref()
                .is_some_and(|(m, _)| m.index >= snap.index)
        {
            self.since_snapshot = 0;
            self.since_snapshot_bytes = 0;
            return Ok(());
        }
        if snap.index > self.delivered {
            return Err(LogError::Refused(String::from(
                "raft: snapshot past what was applied",
            )));
        }
        let Some((at, config)) = self
            .node
            .log()
            .get_position_and_config(LogIndex::new(snap.index))
            .map(|(p, c)| (p, c.clone()))
        else {
            return Err(LogError::Refused(format!(
                "raft: entry {} is no longer in the log",
                snap.index
            )));
        };
        let meta = SnapshotMeta {
            index: snap.index,
            term: at.term.get(),
            membership: self.membership(&config),
        };
        let data = Arc::new(snap.data);
        if let Err(e) = self.storage.save_shared_snapshot(&meta, &data) {
            let why = e.0.clone();
            self.storage_failed(e);
            return Err(match self.storage.no_space() {
                Some(_) => LogError::NoSpace(why),
                None => LogError::Storage(why),
            });
        }
        if !self.node.handle_snapshot_installed(at, config) {
            return Err(LogError::Refused(String::from(
                "raft: the engine refused the snapshot",
            )));
        }
        self.bodies.retain(|&i, _| i > snap.index);
        self.since_snapshot = 0;
        self.since_snapshot_bytes = 0;
        self.snapshot = Some((meta, data));
        Ok(())
    }
}
