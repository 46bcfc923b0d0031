//! Membership changes as leader: voters join and leave through a joint
//! configuration (the engine steps out of it by itself once it commits);
//! non-voters (learners) come and go at once, since they count toward no
//! quorum. A voter that a `replace` or `demote` takes out of the voters
//! is added back as a non-voter once the joint change is done: the
//! engine's step out of it can only drop it.

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;

use noraft::{ClusterConfig, LogPosition, NodeId};

use crate::log::{Change, LogError};
use crate::raft::storage::{Body, Member, Membership, Storage};

use super::{Replica, Transfer, ids, to_config};

fn refused<T>(why: String) -> Result<T, LogError> {
    Err(LogError::Refused(why))
}

impl<S: Storage> Replica<S> {
    /// As leader, carry out `change` asked by `origin` as its proposal
    /// `seq`. `Ok(None)` for a change that has no entry (a transfer).
    pub(super) fn lead_change(
        &mut self,
        origin: u64,
        seq: u64,
        change: Change,
    ) -> Result<Option<LogPosition>, LogError> {
        let config = self.node.config().clone();
        if config.is_joint_consensus() && !matches!(change, Change::Transfer { .. }) {
            return refused(String::from(
                "raft: a membership change is still under way; try again when it commits",
            ));
        }
        let node = NodeId::new;
        let new = match &change {
            Change::Add { id, addr, key } | Change::Learner { id, addr, key } => {
                self.check_newcomer(&config, *id, key)?;
                self.directory.insert(
                    *id,
                    Member {
                        id: *id,
                        addr: addr.clone(),
                        key: *key,
                    },
                );
                if matches!(change, Change::Add { .. }) {
                    config.to_joint_consensus(&[node(*id)], &[])
                } else {
                    let mut new = config.clone();
                    new.non_voters.insert(node(*id));
                    new
                }
            }
            Change::Remove { id } => {
                if config.non_voters.contains(&node(*id)) {
                    let mut new = config.clone();
                    new.non_voters.remove(&node(*id));
                    new
                } else {
                    if !config.contains(node(*id)) {
                        return refused(format!("raft: node {id} is not a member"));
                    }
                    let new = config.to_joint_consensus(&[], &[node(*id)]);
                    if new.new_voters.is_empty() {
                        return refused(format!(
                            "raft: removing node {id} would leave no voter; add another node first"
                        ));
                    }
                    new
                }
            }
            Change::Promote { id } => {
                if !config.non_voters.contains(&node(*id)) {
                    return refused(self.not_non_voter(&config, *id));
                }
                config.to_joint_consensus(&[node(*id)], &[])
            }
            Change::Demote { id } => {
                if !config.voters.contains(&node(*id)) {
                    return refused(format!(
                        "raft: node {id} is not a voter: only a voter can be demoted"
                    ));
                }
                self.not_self(&config, *id, "demote")?;
                let new = config.to_joint_consensus(&[], &[node(*id)]);
                if new.new_voters.is_empty() {
                    return refused(format!(
                        "raft: demoting node {id} would leave no voter; promote or add another node first"
                    ));
                }
                new
            }
            Change::Replace { out, with } => {
                if !config.voters.contains(&node(*out)) {
                    return refused(format!(
                        "raft: node {out} is not a voter: replace out= names the voter that leaves"
                    ));
                }
                if !config.non_voters.contains(&node(*with)) {
                    return refused(self.not_non_voter(&config, *with));
                }
                self.not_self(&config, *out, "replace")?;
                config.to_joint_consensus(&[node(*with)], &[node(*out)])
            }
            Change::Transfer { id } => {
                if *id == self.me() {
                    return refused(format!("raft: node {id} already leads"));
                }
                if !config.voters.contains(&node(*id)) {
                    return refused(format!("raft: node {id} is not a voter"));
                }
                self.transfer = Some(Transfer {
                    target: *id,
                    term: self.node.current_term().get(),
                    deadline: self.now + 2 * self.opts.election_ms.1,
                    sent: false,
                    origin,
                    seq,
                });
                return Ok(None);
            }
            Change::Snapshot | Change::Restore { .. } => return Ok(None),
        };
        let at = self.propose_membership(new, origin, seq).ok_or_else(|| {
            LogError::Refused(String::from(
                "raft: the engine refused the change now; try again",
            ))
        })?;
        if let Change::Demote { id } = change {
            self.demoted.insert(id);
        }
        Ok(Some(at))
    }

    /// Append configuration `new` with the body that names who asked.
    fn propose_membership(
        &mut self,
        new: ClusterConfig,
        origin: u64,
        seq: u64,
    ) -> Option<LogPosition> {
        let at = self.node.propose_config(new.clone());
        if at == LogPosition::INVALID {
            return None;
        }
        let body = Body::Config {
            membership: self.membership(&new),
            origin,
            seq,
        };
        self.note_seen(at.index.get(), &body);
        self.bodies.insert(at.index.get(), (at.term.get(), body));
        Some(at)
    }

    /// Refuse a newcomer (`add`, `learner`) that is a member already or
    /// that carries another node's key.
    fn check_newcomer(
        &self,
        config: &ClusterConfig,
        id: u64,
        key: &[u8; 32],
    ) -> Result<(), LogError> {
        if config.non_voters.contains(&NodeId::new(id)) {
            return refused(format!(
                "raft: node {id} is already a member (a non-voter; promote id={id} makes it a voter)"
            ));
        }
        if config.contains(NodeId::new(id)) {
            return refused(format!("raft: node {id} is already a member"));
        }
        if let Some(m) = self
            .directory
            .values()
            .find(|m| m.key == *key && m.id != id)
        {
            return refused(format!(
                "raft: that key is already node {}'s; each node has its own key",
                m.id
            ));
        }
        Ok(())
    }

    /// Why `id`, which is not a non-voter, cannot be made a voter.
    fn not_non_voter(&self, config: &ClusterConfig, id: u64) -> String {
        if config.contains(NodeId::new(id)) {
            format!("raft: node {id} is already a voter")
        } else {
            format!(
                "raft: node {id} is not a non-voter: add it first (learner id={id} addr=HOST:PORT key=HEX)"
            )
        }
    }

    /// This leader would step down at the end of its own `verb`, and could
    /// then not add itself back as a non-voter: hand leadership over first.
    fn not_self(&self, config: &ClusterConfig, id: u64, verb: &str) -> Result<(), LogError> {
        if id != self.me() {
            return Ok(());
        }
        let other = config
            .voters
            .iter()
            .map(|n| n.get())
            .find(|&n| n != id)
            .map_or(String::from("ID"), |n| format!("{n}"));
        refused(format!(
            "raft: node {id} leads: it cannot {verb} itself; hand leadership to another voter first (transfer id={other})"
        ))
    }

    /// The stored form of configuration `c`.
    pub(super) fn membership(&self, c: &ClusterConfig) -> Membership {
        Membership {
            voters: ids(&c.voters),
            new_voters: ids(&c.new_voters),
            non_voters: ids(&c.non_voters),
            members: c
                .unique_nodes()
                .filter_map(|n| self.directory.get(&n.get()).cloned())
                .collect(),
        }
    }

    /// As leader, once the engine's step out of a joint configuration has
    /// committed, add back as non-voters the voters it took out that are
    /// to stay: the one a `replace` took out (a joint change that both
    /// adds and removes voters is a replace: this is read from the log, so
    /// a leader elected meanwhile finishes it too) and the ones this leader
    /// demoted. Whether something was proposed.
    pub(super) fn rejoin(&mut self) -> bool {
        if !core::mem::take(&mut self.rejoin_due) {
            return false;
        }
        if !self.is_leader() {
            // A demotion this node asked for as leader is the next
            // leader's no longer: it ends as a removal.
            self.demoted.clear();
            return false;
        }
        let config = self.node.config().clone();
        if config.is_joint_consensus() {
            return false;
        }
        let commit = self.node.commit_index().get();
        let mut configs = self
            .bodies
            .range(..=commit)
            .rev()
            .filter_map(|(_, (_, b))| match b {
                Body::Config {
                    membership, origin, ..
                } => Some((membership, *origin)),
                _ => None,
            });
        // The latest configuration, committed, and the engine's own step
        // out of a joint one.
        let Some((last, 0)) = configs.next() else {
            return false;
        };
        if !last.new_voters.is_empty() || to_config(last) != config {
            return false;
        }
        let joint = match configs.next() {
            Some((m, _)) => m.clone(),
            // The joint entry is in the snapshot: the snapshot's
            // configuration is it.
            None => match &self.snapshot {
                Some((meta, _)) => meta.membership.clone(),
                None => return false,
            },
        };
        if joint.new_voters.is_empty() {
            return false;
        }
        let replace = joint.new_voters.iter().any(|v| !joint.voters.contains(v));
        let back: BTreeSet<u64> = joint
            .voters
            .iter()
            .copied()
            .filter(|v| !joint.new_voters.contains(v))
            .filter(|v| replace || self.demoted.contains(v))
            .filter(|v| !config.contains(NodeId::new(*v)) && self.directory.contains_key(v))
            .collect();
        self.demoted.retain(|v| !back.contains(v));
        if back.is_empty() {
            return false;
        }
        let mut new = config;
        new.non_voters.extend(back.iter().map(|&v| NodeId::new(v)));
        // Origin 0: the replica's own step, like the engine's.
        self.propose_membership(new, 0, 0).is_some()
    }
}
