//! Leases, so that what a node runs can be fenced: a node runs its agents
//! only while [`Replica::lease_ms`] is above 0, and the leader starts them
//! elsewhere only once [`Replica::lease_over`] says that node's lease is
//! surely over. Two copies then never run at once.
//!
//! The leases ride on the appends and their replies, measured only by the
//! clock of the node that keeps them (no two clocks are ever compared):
//!
//! - Every append carries `stamp`, the leader's `now`; every reply carries
//!   the follower's own `stamp` and echoes the latest leader stamp it got
//!   in this term. Appends echo back the follower's latest stamp.
//! - A follower that gets an append with its own stamp `e` echoed (in a
//!   term not older than its own) holds a lease until
//!   `e + min(L, lease)`, `lease` being what remained of the leader's
//!   lease when it sent the append. The leader got the reply stamped `e`
//!   after the follower's clock read `e`, and sent the append later still,
//!   holding `lease` ms more then: so the follower's lease ends before the
//!   leader's, however long the messages took.
//! - The leader's lease is `q + L`, `q` being the latest send time (its
//!   own clock) of appends a majority of the voters answered in this term
//!   (of each side of a joint configuration, the leader counting itself
//!   with `now`). A leader cut off from a majority loses it `L` after the
//!   last round a majority answered. A voter alone holds `now + L`.
//!
//! Why [`Replica::lease_over`] is safe (up to clock drift, which the margin
//! `M` covers): take a node that took office at `office_since`.
//!
//! - Its own grants: a peer's lease from this leader ends before `e + L`
//!   in the peer's time, with `e` read before this leader first sent the
//!   latest echo `e` to it, at `echo_sent`; so it ends before
//!   `echo_sent + L`.
//! - Grants of earlier leaders: each was bounded by that leader's own
//!   lease, which needs a majority to have answered one of its rounds in
//!   its term. A majority also voted for this node, in a later term; one
//!   voter is in both (perhaps the earlier leader itself, which counts
//!   itself only while it leads), and it answered the earlier leader's
//!   round before it voted (once it votes it has the new term, and
//!   answers of the older term are no longer sent or counted). So the
//!   round was sent before `office_since`, and every lease of that leader
//!   and its followers ends before `office_since + L`.
//!
//! Hence `now > max(office_since, echo_sent) + L + M` means the peer holds
//! nothing from this leader or an earlier one. One thing more is asked:
//! the leader must hold a lease of its own. What this cannot cover is a
//! *later* leader: a leader cut off from the majority may have been
//! replaced without knowing it, and the new one may already be granting
//! that peer a lease. Holding its own lease bounds that to `L` after its
//! last majority round (ruling it out would make every new leader, or its
//! voters, wait out the old leases first). Such a leader can commit
//! nothing, so act on `lease_over` only through a committed entry: what a
//! replaced leader decides from it never takes effect.
//!
//! Acting on it through a committed entry leaves one window: the entry
//! is proposed when the peer's lease is over, and commits a little later;
//! a peer back in between would hold a lease again while its agents are
//! being placed elsewhere. So once this leader finds a peer's lease over,
//! it *revokes* it: it grants that peer no lease (no echo) until told,
//! by [`Change::Restore`](crate::log::Change::Restore), that what the peer
//! ran has been placed elsewhere in a committed entry (or that it ran
//! nothing). [`Replica::lease_over`] is true only for revoked peers. And
//! a leader grants no lease before it has committed an entry of its own
//! term: by then whatever an earlier leader decided about the peers and
//! left in the log is committed too, and a peer's runner, reading its
//! agents linearizably before it runs them again, sees it.
//!
//! Clocks: all of a node's times are its own `now`, which must not go back
//! across restarts of the node; a stamp from the future (another life of
//! the clock) is ignored.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use noraft::NodeId;

use crate::log::Term;
use crate::raft::storage::Storage;
use crate::raft::wire::Rpc;

use super::Replica;

/// A replica's lease state.
#[derive(Debug, Default)]
pub(super) struct Leases {
    /// This node's lease ends then (its own clock).
    until: u64,
    /// As follower: the latest leader stamp heard, and its term.
    echo: (Term, u64),
    /// As leader: the term and time this node took office.
    office: (Term, u64),
    /// As leader, per follower, this term: its latest own stamp (its
    /// clock), sent back to it as the echo.
    stamps: BTreeMap<u64, u64>,
    /// As leader, per follower, this term: the latest send time (this
    /// node's clock) of an append it answered.
    acked: BTreeMap<u64, u64>,
    /// As leader, per follower, this term: the latest echo sent to it and
    /// when it was first sent.
    echo_sent: BTreeMap<u64, (u64, u64)>,
    /// As leader, this term: peers whose lease it found over, granted
    /// none until restored.
    revoked: BTreeSet<u64>,
    /// Whether this node held a lease at the last tick.
    held: bool,
}

impl<S: Storage> Replica<S> {
    /// What remains of this node's lease, in ms (0: none), whatever its
    /// role. Its agents may run only while this is above 0.
    pub fn lease_ms(&self) -> u64 {
        if self.solo_voter() {
            return self.opts.lease_ms;
        }
        self.lease.until.saturating_sub(self.now)
    }

    /// Leader only: whether `peer`'s lease, from this leader or any
    /// earlier one, is surely over, so what it ran may be started
    /// elsewhere. False on other nodes, for this node itself, and while
    /// this leader holds no lease of its own (see the module comment).
    pub fn lease_over(&self, peer: u64) -> bool {
        self.in_office() && self.lease_ms() > 0 && self.lease.revoked.contains(&peer)
    }

    /// Whether `peer`'s lease from this leader or an earlier one is
    /// surely over by the clock (see the module comment).
    fn lease_ran_out(&self, peer: u64) -> bool {
        if !self.in_office() || peer == self.me() || self.lease_ms() == 0 {
            return false;
        }
        let sent = self.lease.echo_sent.get(&peer).map_or(0, |&(_, at)| at);
        let since = self.lease.office.1.max(sent);
        self.now
            > since
                .saturating_add(self.opts.lease_ms)
                .saturating_add(self.opts.fence_margin_ms)
    }

    /// Leader only: grant `peer` leases again (see the module comment).
    pub fn restore_lease(&mut self, peer: u64) {
        if self.lease.revoked.remove(&peer) {
            // Its old leases ran out; what it gets from now on is timed
            // from here (and from the echoes sent from here).
            self.lease.echo_sent.insert(peer, (0, self.now));
        }
    }

    /// Revoke the leases of the peers whose lease ran out.
    fn lease_revoke(&mut self) {
        if !self.in_office() {
            return;
        }
        let out: Vec<u64> = self
            .node
            .config()
            .unique_nodes()
            .map(|n| n.get())
            .filter(|&p| !self.lease.revoked.contains(&p) && self.lease_ran_out(p))
            .collect();
        self.lease.revoked.extend(out);
    }

    /// Whether this leader has committed an entry of its own term (before
    /// that it grants no lease).
    fn committed_own_term(&self) -> bool {
        let term = self.node.current_term();
        self.node.log().entries().get_term(self.node.commit_index()) == Some(term)
    }

    /// Whether this node leads and has taken office in its current term.
    fn in_office(&self) -> bool {
        self.is_leader() && self.lease.office.0 == self.node.current_term().get()
    }

    /// This node has just taken office: what it knew of the followers was
    /// another term's.
    pub(super) fn lease_take_office(&mut self) {
        let l = &mut self.lease;
        l.office = (self.node.current_term().get(), self.now);
        l.stamps.clear();
        l.acked.clear();
        l.echo_sent.clear();
        l.revoked.clear();
    }

    /// A voter alone keeps its lease renewed (nobody else could lead); a
    /// leader revokes the leases that ran out; a node that loses its
    /// lease fails the writes still waiting for a leader.
    pub(super) fn lease_tick(&mut self) {
        if self.solo_voter() {
            self.lease.until = self.lease.until.max(self.now + self.opts.lease_ms);
        }
        self.lease_revoke();
        let held = self.lease_ms() > 0;
        if self.lease.held && !held {
            // What its agents asked for before they were stopped must not
            // be sent once the node is back, when they may run elsewhere.
            self.fail_queued();
        }
        self.lease.held = held;
    }

    /// An append of `term` came (before the engine sees it): note its
    /// stamp, and extend this node's lease from its echo.
    pub(super) fn lease_heard_append(&mut self, term: Term, stamp: u64, echo: u64, lease: u64) {
        if term < self.node.current_term().get() {
            // An older leader's word: its lease may be over already.
            return;
        }
        let (t, s) = self.lease.echo;
        self.lease.echo = (term, if t == term { s.max(stamp) } else { stamp });
        // A stamp above `now` is from another life of this node's clock.
        if echo > 0 && echo <= self.now {
            let until = echo.saturating_add(self.opts.lease_ms.min(lease));
            self.lease.until = self.lease.until.max(until);
        }
    }

    /// A reply of `term` from `from` came to this node: as leader of that
    /// term, note what it answered and renew this node's lease.
    pub(super) fn lease_heard_reply(&mut self, from: u64, term: Term, stamp: u64, echo: u64) {
        if !self.in_office() || term != self.node.current_term().get() {
            return;
        }
        let s = self.lease.stamps.entry(from).or_default();
        *s = (*s).max(stamp);
        let a = self.lease.acked.entry(from).or_default();
        *a = (*a).max(echo);
        let q = self.quorum_stamp();
        if q > 0 {
            self.lease.until = self.lease.until.max(q + self.opts.lease_ms);
        }
    }

    /// The latest send time a majority (of each side of a joint
    /// configuration) answered, this node counting with `now`; 0: none.
    fn quorum_stamp(&self) -> u64 {
        let me = self.me();
        let side = |set: &BTreeSet<NodeId>| {
            let mut times: Vec<u64> = set
                .iter()
                .map(|n| match n.get() {
                    id if id == me => self.now,
                    id => self.lease.acked.get(&id).copied().unwrap_or(0),
                })
                .collect();
            if times.is_empty() {
                return 0;
            }
            times.sort_unstable_by(|a, b| b.cmp(a));
            times[times.len() / 2]
        };
        let config = self.node.config();
        let mut q = side(&config.voters);
        if !config.new_voters.is_empty() {
            q = q.min(side(&config.new_voters));
        }
        q
    }

    /// Fill in the lease fields of a message this node sends to `to`.
    pub(super) fn lease_stamp(&mut self, to: u64, msg: &mut Rpc) {
        let now = self.now;
        match msg {
            Rpc::Append {
                term,
                stamp,
                echo,
                lease,
                ..
            } => {
                *stamp = now;
                let back = if self.in_office()
                    && *term == self.lease.office.0
                    && !self.lease.revoked.contains(&to)
                    && self.committed_own_term()
                {
                    self.lease.stamps.get(&to).copied().unwrap_or(0)
                } else {
                    0
                };
                *echo = back;
                *lease = self.lease_ms();
                if back > 0 {
                    // Only a newer echo can extend `to`'s lease; it can
                    // last no longer than `L` after this first sending.
                    let sent = self.lease.echo_sent.entry(to).or_default();
                    if sent.0 < back {
                        *sent = (back, now);
                    }
                }
            }
            Rpc::AppendReply {
                term, stamp, echo, ..
            } => {
                *stamp = now;
                let (t, s) = self.lease.echo;
                *echo = if t == *term { s } else { 0 };
            }
            _ => {}
        }
    }
}
