//! Self-healing: the changes the leader makes to the log's membership so
//! that it follows the swarm. A pure function of the committed swarm, the
//! committed configuration and this node's view, so any leader makes the
//! same choice from the same facts; one change at a time (the log makes
//! them one by one), each worked out afresh once the last one committed.
//!
//! In order: a member that joined becomes a learner; a voter that is dead
//! in this node's view, or left, or was removed, is replaced by a live,
//! caught-up learner in one joint change (the old voter stays a learner,
//! so when it comes back it can vote again later); a learner that left or
//! was removed is taken out; then voters are promoted or demoted until
//! there are as many as the swarm wants.

use alloc::vec::Vec;

use crate::gossip::Liveness;
use crate::log::Change;
use crate::raft::Membership;
use crate::swarm::state::{Standing, Swarm};

/// What the leader knows of one member's health.
pub trait Sight {
    /// Its liveness in this node's gossip view (`None`: not in the view).
    fn liveness(&self, id: u64) -> Option<Liveness>;
    /// Whether it holds (nearly) every committed entry, so promoting it
    /// does not stall the log while it catches up.
    fn caught_up(&self, id: u64) -> bool;
}

/// The next change to the log's membership, if any; `me` is the leader
/// (never judged dead, never demoted by itself).
pub fn next(swarm: &Swarm, m: &Membership, me: u64, sight: &dyn Sight) -> Option<Change> {
    if swarm.id.is_none() || !m.new_voters.is_empty() {
        return None;
    }
    let in_config = |id: u64| m.voters.contains(&id) || m.non_voters.contains(&id);
    for n in swarm.members() {
        let r = &n.record;
        if !in_config(r.id) && !r.raft.is_empty() {
            return Some(Change::Learner {
                id: r.id,
                addr: r.raft.clone(),
                key: r.key,
            });
        }
    }
    let gone = |id: u64| {
        swarm.removed.contains(&id) || swarm.node(id).is_some_and(|n| n.standing == Standing::Left)
    };
    let alive = |id: u64| id == me || sight.liveness(id) == Some(Liveness::Alive);
    let dead = |id: u64| id != me && sight.liveness(id) == Some(Liveness::Dead);
    let candidates: Vec<u64> = m
        .non_voters
        .iter()
        .copied()
        .filter(|&id| swarm.node(id).is_some() && !gone(id) && alive(id) && sight.caught_up(id))
        .collect();
    for &v in &m.voters {
        if v == me || !(gone(v) || dead(v)) {
            continue;
        }
        if let Some(&with) = candidates.first() {
            return Some(Change::Replace { out: v, with });
        }
        if gone(v) && m.voters.len() > 1 {
            return Some(Change::Demote { id: v });
        }
    }
    if let Some(&l) = m.non_voters.iter().find(|&&l| gone(l)) {
        return Some(Change::Remove { id: l });
    }
    let want = usize::from(swarm.voters.max(1));
    if m.voters.len() < want {
        return candidates.first().map(|&id| Change::Promote { id });
    }
    if m.voters.len() > want {
        // The least healthy first, then the newest (highest id).
        return m
            .voters
            .iter()
            .copied()
            .filter(|&v| v != me)
            .max_by_key(|&v| (!alive(v), v))
            .map(|id| Change::Demote { id });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::state::{NodeRecord, SwarmCmd};
    use alloc::collections::BTreeMap;
    use alloc::format;
    use alloc::vec;

    struct Seen(BTreeMap<u64, Liveness>);

    impl Sight for Seen {
        fn liveness(&self, id: u64) -> Option<Liveness> {
            self.0.get(&id).copied()
        }
        fn caught_up(&self, _id: u64) -> bool {
            true
        }
    }

    fn swarm(ids: &[u64], voters: u8) -> Swarm {
        let mut s = Swarm::default();
        for &id in ids {
            s.apply(&SwarmCmd::Join {
                node: NodeRecord {
                    id,
                    key: [id as u8; 32],
                    addr: format!("h:{id}"),
                    gossip: format!("h:{id}"),
                    raft: format!("h:{id}"),
                    name: format!("n{id}"),
                },
                swarm: [1; 16],
                voters,
                at_ms: 0,
            })
            .unwrap();
        }
        s
    }

    fn config(voters: &[u64], learners: &[u64]) -> Membership {
        Membership {
            voters: voters.to_vec(),
            non_voters: learners.to_vec(),
            ..Membership::default()
        }
    }

    fn all_alive(ids: &[u64]) -> Seen {
        Seen(ids.iter().map(|&i| (i, Liveness::Alive)).collect())
    }

    #[test]
    fn a_joined_member_becomes_a_learner_then_voters_fill_up() {
        let s = swarm(&[1, 2, 3], 3);
        let seen = all_alive(&[1, 2, 3]);
        assert!(matches!(
            next(&s, &config(&[1], &[]), 1, &seen),
            Some(Change::Learner { id: 2, .. })
        ));
        assert_eq!(
            next(&s, &config(&[1], &[2, 3]), 1, &seen),
            Some(Change::Promote { id: 2 })
        );
        assert_eq!(next(&s, &config(&[1, 2, 3], &[]), 1, &seen), None);
    }

    #[test]
    fn a_dead_voter_is_replaced_by_a_live_learner_and_nothing_moves_while_joint() {
        let s = swarm(&[1, 2, 3, 4, 5], 3);
        let mut seen = all_alive(&[1, 2, 3, 4, 5]);
        seen.0.insert(2, Liveness::Dead);
        seen.0.insert(4, Liveness::Suspect);
        let m = config(&[1, 2, 3], &[4, 5]);
        assert_eq!(
            next(&s, &m, 1, &seen),
            Some(Change::Replace { out: 2, with: 5 })
        );
        let joint = Membership {
            new_voters: vec![1, 3, 5],
            ..m
        };
        assert_eq!(next(&s, &joint, 1, &seen), None);
        // A suspect voter is left alone; no live learner means no change.
        seen.0.insert(2, Liveness::Suspect);
        assert_eq!(next(&s, &config(&[1, 2, 3], &[4, 5]), 1, &seen), None);
    }

    #[test]
    fn left_and_removed_members_leave_the_log_and_extra_voters_are_demoted() {
        let mut s = swarm(&[1, 2, 3, 4], 3);
        let seen = all_alive(&[1, 2, 3, 4]);
        s.apply(&SwarmCmd::Leave { id: 4 }).unwrap();
        assert_eq!(
            next(&s, &config(&[1, 2, 3], &[4]), 1, &seen),
            Some(Change::Remove { id: 4 })
        );
        s.apply(&SwarmCmd::Remove { id: 3 }).unwrap();
        assert_eq!(
            next(&s, &config(&[1, 2, 3], &[]), 1, &seen),
            Some(Change::Demote { id: 3 })
        );
        s.apply(&SwarmCmd::Voters { n: 1 }).unwrap();
        assert_eq!(
            next(&s, &config(&[1, 2], &[]), 1, &seen),
            Some(Change::Demote { id: 2 })
        );
    }
}
