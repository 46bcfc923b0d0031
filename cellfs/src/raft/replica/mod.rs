//! One Raft replica: the `noraft` engine plus everything it leaves to us.
//!
//! Inputs ([`Replica::propose`], [`Replica::change`], [`Replica::receive`],
//! [`Replica::tick`]) only feed the engine. Outputs
//! ([`Replica::take_messages`], [`Replica::take_committed`]) first *flush*:
//! they carry out the engine's pending actions, writing to storage and
//! syncing once, and only then release messages and committed entries. So
//! whatever a message or a client reply depends on is durable before
//! anyone can see it, and every input that arrived between two flushes
//! shares one sync (group commit).
//!
//! This file holds the replica, its public API and the driver (`receive`,
//! `tick`); the rest is split by job: `propose` (where a proposal goes,
//! forwards and their duplicates), `members` (membership changes,
//! non-voters), `read` (ReadIndex), `election`
//! (pre-vote, check-quorum, leadership transfer), `lease` (leases that
//! fence what a cut-off node runs), `flush` (storage, group commit,
//! sending and delivering) and `snapshot`.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use noraft::{
    ClusterConfig, LogEntries, LogEntry, LogIndex, LogPosition, Message, Node, NodeId, Role,
};

use crate::log::{
    Change, Commit, Index, Log, LogError, LogStatus, PeerStatus, ProposalId, ReadGate, Snapshot,
    Term,
};
use crate::raft::storage::{
    Body, HardState, Member, Membership, SnapshotMeta, Storage, StorageError, Stored,
};
use crate::raft::wire::Rpc;

mod election;
mod flush;
mod lease;
mod members;
mod propose;
mod read;
mod snapshot;
mod space;

/// Settings of a replica.
#[derive(Clone, Debug)]
pub struct Options {
    /// This node's Raft id (not 0).
    pub id: u64,
    /// How often a leader sends heartbeats, in milliseconds.
    pub heartbeat_ms: u64,
    /// Followers start an election after a random wait in this range.
    pub election_ms: (u64, u64),
    /// Seed of the election-timeout randomness (deterministic runs).
    pub seed: u64,
    /// Ask for a snapshot after at least this many entries since the last
    /// one, and (with `snapshot_by_size`) at least its size in command
    /// bytes.
    pub snapshot_every: u64,
    /// Wait for the log since the last snapshot to outgrow it before
    /// taking the next (off only in tests that want snapshots often).
    pub snapshot_by_size: bool,
    /// Ask for a snapshot once the commands since the last one add up to
    /// this many bytes, however few they are: the log since a snapshot is
    /// held in memory, and a few large writes must not hold gigabytes.
    pub snapshot_bytes: usize,
    /// Most proposals waiting for commit before `propose` says Full.
    pub max_pending: usize,
    /// How long a proposal may wait for its commit before it is reported
    /// failed, in milliseconds.
    pub proposal_timeout_ms: u64,
    /// How long a lease lasts (`L`, see [`Replica::lease_ms`]), in
    /// milliseconds after the round that granted it.
    pub lease_ms: u64,
    /// How much longer a leader waits past a peer's lease before it calls
    /// it over ([`Replica::lease_over`]): covers the drift between clocks.
    pub fence_margin_ms: u64,
}

impl Options {
    /// The defaults for node `id`: heartbeats every 50 ms, elections after
    /// 300–600 ms of silence, a snapshot every 10,000 entries or 64 MiB of
    /// commands, once they outweigh the last one; leases of 1.5 s, called
    /// over 0.6 s after they surely ended.
    pub fn new(id: u64) -> Options {
        Options {
            id,
            heartbeat_ms: 50,
            election_ms: (300, 600),
            seed: id,
            snapshot_every: 10_000,
            snapshot_by_size: true,
            snapshot_bytes: 64 << 20,
            max_pending: 65_536,
            proposal_timeout_ms: 5_000,
            lease_ms: 1_500,
            fence_margin_ms: 600,
        }
    }
}

/// Proposal ids are the boot count (high bits) and a counter (low bits).
const SEQ_BITS: u32 = 40;

const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

/// Where a proposal of this node stands.
#[derive(Debug)]
enum Stage {
    /// Waiting for a leader to be known.
    Queued(Pending),
    /// Handed to the leader `to`.
    Sent { to: u64, pending: Pending },
    /// Appended to this node's log as leader, at `at`.
    Local { at: LogPosition },
    /// A change this node is carrying out itself (a snapshot, a transfer).
    Running,
    /// A read this node, leading, is confirming (see [`LeaderRead`]).
    Reading,
    /// A read that may be served once everything through `index` is
    /// delivered.
    ReadAt { index: Index },
}

#[derive(Clone, Debug)]
enum Pending {
    Data(Vec<u8>),
    Change(Change),
    Read,
}

/// A read the leader confirms with a heartbeat round (the thesis' §6.4
/// ReadIndex): the commit index when it was asked, valid once a majority
/// has answered an append of a round sent after that.
#[derive(Debug)]
struct LeaderRead {
    /// This node's read, or a follower's (origin, request id).
    who: Option<(u64, u64)>,
    seq: u64,
    /// (round, index) once the leader has committed an entry of its term.
    at: Option<(u64, Index)>,
}

#[derive(Debug)]
struct Waiting {
    deadline: u64,
    stage: Stage,
}

/// A leadership transfer this leader is carrying out.
#[derive(Debug)]
struct Transfer {
    target: u64,
    term: Term,
    deadline: u64,
    sent: bool,
    /// Who asked: this node's proposal, or a follower's.
    origin: u64,
    seq: u64,
}

/// A Raft replica over storage `S`.
pub struct Replica<S: Storage> {
    opts: Options,
    node: Node,
    storage: S,
    failed: Option<StorageError>,
    /// A write of this step found no space: the replica starts again from
    /// storage at the end of the step (see `space`).
    short: Option<StorageError>,
    /// Term and body of every entry in the engine's log, by index.
    bodies: BTreeMap<Index, (Term, Body)>,
    /// Bodies that came in appends since the last flush, for the entries
    /// the engine takes from them, by (index, term): appends from two
    /// leaders may carry different entries at one index.
    incoming: BTreeMap<(Index, Term), Body>,
    /// Address and key of every node this replica has heard of.
    directory: BTreeMap<u64, Member>,
    /// The latest snapshot, for followers that fell behind.
    /// The latest snapshot, shared with storage while it writes it.
    snapshot: Option<(SnapshotMeta, Arc<Vec<u8>>)>,
    hard: HardState,
    now: u64,
    deadline: u64,
    rng: u64,
    leader: Option<u64>,
    leader_contact: Option<u64>,
    last_contact: BTreeMap<u64, u64>,
    campaign_transfer: bool,
    next_seq: u64,
    waiting: BTreeMap<ProposalId, Waiting>,
    delivered: Index,
    since_snapshot: u64,
    /// The bytes of the commands delivered since the last snapshot.
    since_snapshot_bytes: usize,
    snapshot_asked: Vec<ProposalId>,
    snapshot_sent: BTreeMap<u64, u64>,
    transfer: Option<Transfer>,
    /// Proposals (origin, id) in recent entries, and where.
    seen: BTreeMap<(u64, u64), Index>,
    /// A pre-vote under way: the term asked about and who granted it.
    prevote: Option<(Term, alloc::collections::BTreeSet<u64>)>,
    /// Reads this leader is confirming.
    reads: Vec<LeaderRead>,
    /// The round the next heartbeat for reads carries; the last one sent;
    /// whether one is due.
    read_round: u64,
    read_sent: u64,
    read_due: bool,
    /// This leader delivered entries since its last flush: the followers
    /// may need the new commit index before the next heartbeat (a follower
    /// answers a write it forwarded only once it knows it committed).
    commit_due: bool,
    /// Per follower, the highest round it echoed in this term.
    read_acks: BTreeMap<u64, u64>,
    /// As follower: the latest round heard from the leader, and its term.
    read_echo: (Term, u64),
    /// Leases (see `lease`).
    lease: lease::Leases,
    commits: Vec<Commit>,
    outbox: Vec<(u64, Rpc)>,
    /// Voters this leader demoted: added back as non-voters once their
    /// joint change is done (see `members`).
    demoted: alloc::collections::BTreeSet<u64>,
    /// A configuration was delivered or this node took office: see
    /// whether a voter taken out must be added back as a non-voter.
    rejoin_due: bool,
}

fn to_config(m: &Membership) -> ClusterConfig {
    let mut c = ClusterConfig::new();
    c.voters.extend(m.voters.iter().map(|&i| NodeId::new(i)));
    c.new_voters
        .extend(m.new_voters.iter().map(|&i| NodeId::new(i)));
    c.non_voters
        .extend(m.non_voters.iter().map(|&i| NodeId::new(i)));
    c
}

fn ids(set: &alloc::collections::BTreeSet<NodeId>) -> Vec<u64> {
    set.iter().map(|n| n.get()).collect()
}

fn pos(term: Term, index: Index) -> LogPosition {
    LogPosition {
        term: noraft::Term::new(term),
        index: LogIndex::new(index),
    }
}

impl<S: Storage> Replica<S> {
    /// Open a replica over `storage`. With storage that holds nothing and
    /// `bootstrap` set, `members` form a new cluster: the member with the
    /// lowest id creates it and the others wait for it to reach them; with
    /// `bootstrap` unset, an empty replica waits to be added by a cluster
    /// (`/raft/ctl add`). Storage that holds a log is restarted from it.
    pub fn open(
        opts: Options,
        members: &[Member],
        mut storage: S,
        now_ms: u64,
        bootstrap: bool,
    ) -> Result<Replica<S>, StorageError> {
        let mut loaded = storage.load()?;
        // A new boot, durable before any proposal id of it is handed out.
        loaded.hard.boot += 1;
        storage.save_hard_state(&loaded.hard)?;
        storage.sync()?;
        let id = NodeId::new(opts.id);
        let mut directory: BTreeMap<u64, Member> =
            members.iter().map(|m| (m.id, m.clone())).collect();
        let mut bodies = BTreeMap::new();
        let fresh = loaded.snapshot.is_none() && loaded.entries.is_empty();
        let mut commits = Vec::new();
        let mut delivered = 0;
        let node = if fresh {
            let mut node = Node::start(id);
            let creator = members.iter().map(|m| m.id).min();
            if bootstrap && creator == Some(opts.id) {
                let voters: Vec<NodeId> = members.iter().map(|m| NodeId::new(m.id)).collect();
                node.create_cluster(&voters);
            }
            node
        } else {
            let (prev, snap_config) = match &loaded.snapshot {
                Some((meta, data)) => {
                    for m in &meta.membership.members {
                        directory.insert(m.id, m.clone());
                    }
                    commits.push(Commit::Snapshot(Snapshot {
                        index: meta.index,
                        term: meta.term,
                        data: data.clone(),
                    }));
                    delivered = meta.index;
                    (pos(meta.term, meta.index), to_config(&meta.membership))
                }
                None => (LogPosition::ZERO, ClusterConfig::new()),
            };
            let mut entries = LogEntries::new(prev);
            for s in &loaded.entries {
                if let Body::Config { membership, .. } = &s.body {
                    for m in &membership.members {
                        directory.insert(m.id, m.clone());
                    }
                }
                entries.push(engine_entry(s));
                bodies.insert(s.index, (s.term, s.body.clone()));
            }
            let log = noraft::Log::new(snap_config, entries);
            Node::restart(
                id,
                noraft::Term::new(loaded.hard.term),
                loaded.hard.voted_for.map(NodeId::new),
                log,
            )
        };
        let mut r = Replica {
            rng: opts.seed ^ 0x9e37_79b9_7f4a_7c15,
            opts,
            node,
            storage,
            failed: None,
            short: None,
            bodies,
            incoming: BTreeMap::new(),
            directory,
            snapshot: loaded.snapshot.map(|(m, d)| (m, Arc::new(d))),
            hard: loaded.hard,
            now: now_ms,
            deadline: now_ms,
            leader: None,
            leader_contact: None,
            last_contact: BTreeMap::new(),
            campaign_transfer: false,
            next_seq: loaded.hard.boot << SEQ_BITS,
            waiting: BTreeMap::new(),
            delivered,
            since_snapshot: 0,
            since_snapshot_bytes: 0,
            snapshot_asked: Vec::new(),
            snapshot_sent: BTreeMap::new(),
            transfer: None,
            seen: BTreeMap::new(),
            prevote: None,
            reads: Vec::new(),
            read_round: 1,
            read_sent: 0,
            read_due: false,
            commit_due: false,
            read_acks: BTreeMap::new(),
            read_echo: (0, 0),
            lease: lease::Leases::default(),
            commits,
            outbox: Vec::new(),
            demoted: alloc::collections::BTreeSet::new(),
            rejoin_due: false,
        };
        let recent: Vec<(Index, Body)> =
            r.bodies.iter().map(|(&i, (_, b))| (i, b.clone())).collect();
        for (i, b) in recent {
            r.note_seen(i, &b);
        }
        r.reset_timer();
        Ok(r)
    }

    /// The settings it runs with.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// The storage (for checks and statistics).
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The storage, mutably (the simulation crashes it).
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// Give the storage back (a restart opens a new replica over it).
    pub fn into_storage(self) -> S {
        self.storage
    }

    /// Storage failed: the replica stopped (fail-stop) and this says why.
    pub fn failed(&self) -> Option<&StorageError> {
        self.failed.as_ref()
    }

    /// Every node this replica knows how to reach (the transport's
    /// directory).
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.directory.values()
    }

    /// When [`Replica::tick`] next has something to do, in the caller's
    /// milliseconds.
    pub fn next_deadline(&self) -> u64 {
        let mut d = self.deadline;
        for w in self.waiting.values() {
            d = d.min(w.deadline);
        }
        if let Some(t) = &self.transfer {
            d = d.min(t.deadline);
        }
        d
    }

    /// The known leader, if any.
    pub fn leader(&self) -> Option<u64> {
        self.leader
    }

    fn me(&self) -> u64 {
        self.opts.id
    }

    fn is_leader(&self) -> bool {
        self.node.role().is_leader()
    }

    /// Whether this node votes in its latest configuration: only a voter
    /// may campaign (a non-voter, or a node not or no longer a member,
    /// never asks for votes).
    fn is_voter(&self) -> bool {
        let c = self.node.config();
        let me = self.node.id();
        c.voters.contains(&me) || c.new_voters.contains(&me)
    }

    fn solo_voter(&self) -> bool {
        let c = self.node.config();
        c.voters.len() == 1 && c.new_voters.is_empty() && c.voters.contains(&self.node.id())
    }

    fn new_seq(&mut self) -> Result<ProposalId, LogError> {
        if let Some(e) = &self.failed {
            return Err(LogError::Storage(e.0.clone()));
        }
        if self.waiting.len() >= self.opts.max_pending {
            return Err(LogError::Full);
        }
        if (self.next_seq + 1) & SEQ_MASK == 0 {
            // This boot's ids are used up: start another boot.
            self.hard.boot += 1;
            let saved = self.storage.save_hard_state(&self.hard);
            if let Err(e) = saved.and_then(|()| self.storage.sync()) {
                let why = e.0.clone();
                self.fail(e);
                return Err(LogError::Storage(why));
            }
            self.next_seq = self.hard.boot << SEQ_BITS;
        }
        self.next_seq += 1;
        Ok(self.next_seq)
    }

    /// Propose a command; see [`Log::propose`].
    pub fn propose(&mut self, data: Vec<u8>) -> Result<ProposalId, LogError> {
        let seq = self.new_seq()?;
        let deadline = self.now + self.opts.proposal_timeout_ms;
        if let Some(stage) = self.route(seq, Pending::Data(data)) {
            self.waiting.insert(seq, Waiting { deadline, stage });
        }
        Ok(seq)
    }

    /// Ask for a membership or leadership change; see [`Log::change`].
    pub fn change(&mut self, change: Change) -> Result<ProposalId, LogError> {
        let seq = self.new_seq()?;
        let deadline = self.now + self.opts.proposal_timeout_ms;
        if let Change::Restore { id } = change {
            // This leader's own business (see `lease`): done at once.
            self.restore_lease(id);
            self.commits.push(Commit::Done {
                proposal: seq,
                result: Ok(()),
            });
            return Ok(seq);
        }
        if change == Change::Snapshot {
            // A snapshot is this node's own business: never forwarded.
            self.snapshot_asked.push(seq);
            self.waiting.insert(
                seq,
                Waiting {
                    deadline: u64::MAX,
                    stage: Stage::Running,
                },
            );
            return Ok(seq);
        }
        let zero = match &change {
            Change::Add { id, .. }
            | Change::Learner { id, .. }
            | Change::Remove { id }
            | Change::Transfer { id }
            | Change::Promote { id }
            | Change::Demote { id } => *id == 0,
            Change::Replace { out, with } => *out == 0 || *with == 0,
            Change::Snapshot | Change::Restore { .. } => false,
        };
        if zero {
            return Err(LogError::Refused(String::from(
                "raft: id 0 is not a node id; ids start at 1",
            )));
        }
        if let Some(stage) = self.route(seq, Pending::Change(change)) {
            self.waiting.insert(seq, Waiting { deadline, stage });
        }
        Ok(seq)
    }

    /// Ask for a linearizable read; see [`Log::read`].
    pub fn read(&mut self) -> Result<ReadGate, LogError> {
        if self.reads_locally() {
            return Ok(ReadGate::Now);
        }
        let seq = self.new_seq()?;
        let deadline = self.now + self.opts.proposal_timeout_ms;
        if let Some(stage) = self.route(seq, Pending::Read) {
            self.waiting.insert(seq, Waiting { deadline, stage });
        }
        Ok(ReadGate::Wait(seq))
    }

    /// Whether reads may be served from what was applied without asking
    /// anyone: this node leads and is the only voter, so no write can be
    /// acknowledged anywhere before this node has applied it.
    pub fn reads_locally(&self) -> bool {
        self.is_leader() && self.solo_voter()
    }

    /// Handle a message from node `from` (authenticated by the transport).
    pub fn receive(&mut self, from: u64, msg: Rpc) {
        if self.failed.is_some() || from == self.me() || from == 0 {
            return;
        }
        self.last_contact.insert(from, self.now);
        match msg {
            Rpc::Vote {
                term,
                last_term,
                last_index,
                transfer,
            } => {
                if !transfer && term > self.node.current_term().get() && self.leader_is_alive() {
                    // A node that cannot see the leader we can see would
                    // only disrupt it (the thesis' §4.2.3).
                    return;
                }
                self.engine(Message::RequestVoteCall {
                    from: NodeId::new(from),
                    term: noraft::Term::new(term),
                    last_position: pos(last_term, last_index),
                });
            }
            Rpc::PreVote {
                term,
                last_term,
                last_index,
            } => {
                let granted = self.would_vote(term, last_term, last_index);
                self.outbox
                    .push((from, Rpc::PreVoteReply { term, granted }));
            }
            Rpc::PreVoteReply { term, granted } => {
                if granted
                    && let Some((t, yes)) = &mut self.prevote
                    && *t == term
                {
                    yes.insert(from);
                    self.check_prevote();
                }
            }
            Rpc::VoteReply { term, granted } => self.engine(Message::RequestVoteReply {
                from: NodeId::new(from),
                term: noraft::Term::new(term),
                vote_granted: granted,
            }),
            Rpc::Append {
                term,
                commit,
                prev_term,
                prev_index,
                entries,
                read,
                stamp,
                echo,
                lease,
            } => {
                if term >= self.node.current_term().get() {
                    let (t, r) = self.read_echo;
                    self.read_echo = (term, if t == term { r.max(read) } else { read });
                }
                self.lease_heard_append(term, stamp, echo, lease);
                self.receive_append(from, term, commit, pos(prev_term, prev_index), entries)
            }
            Rpc::AppendReply {
                term,
                last_term,
                last_index,
                read,
                stamp,
                echo,
            } => {
                if self.is_leader() && term == self.node.current_term().get() {
                    let acked = self.read_acks.entry(from).or_default();
                    *acked = (*acked).max(read);
                }
                self.lease_heard_reply(from, term, stamp, echo);
                self.engine(Message::AppendEntriesReply {
                    from: NodeId::new(from),
                    term: noraft::Term::new(term),
                    last_position: pos(last_term, last_index),
                })
            }
            Rpc::Read { seq } => self.read_asked(from, seq),
            Rpc::ReadIndex { seq, index } => {
                if let Some(w) = self.waiting.get_mut(&seq)
                    && matches!(w.stage, Stage::Sent { to, pending: Pending::Read } if to == from)
                {
                    w.stage = Stage::ReadAt { index };
                }
            }
            Rpc::Snapshot { term, meta, data } => self.receive_snapshot(from, term, meta, data),
            Rpc::TimeoutNow { term } => {
                if term == self.node.current_term().get() && !self.is_leader() {
                    self.campaign_transfer = true;
                    self.node.handle_election_timeout();
                }
            }
            Rpc::Forward { seq, data } => self.forwarded(from, seq, Pending::Data(data)),
            Rpc::ForwardChange { seq, change } => {
                self.forwarded(from, seq, Pending::Change(change))
            }
            Rpc::Refuse { seq, leader, why } => self.refused(from, seq, leader, why),
            Rpc::ChangeDone { seq, error } => {
                if self.waiting.remove(&seq).is_some() {
                    let result = match error {
                        None => Ok(()),
                        Some(e) => Err(LogError::Refused(e)),
                    };
                    self.commits.push(Commit::Done {
                        proposal: seq,
                        result,
                    });
                }
            }
        }
    }

    fn receive_append(
        &mut self,
        from: u64,
        term: Term,
        commit: Index,
        prev: LogPosition,
        entries: Vec<Stored>,
    ) {
        // Refuse what would make the engine's index arithmetic overflow
        // or whose indices are not the run after `prev`.
        let prev_index = prev.index.get();
        if prev_index > u64::MAX / 2
            || entries
                .iter()
                .enumerate()
                .any(|(i, s)| s.index != prev_index + 1 + i as u64)
        {
            return;
        }
        // A disk that is full takes no entries: an append that carries
        // some goes unanswered (the leader sends them again after a later
        // heartbeat), so nothing new is acknowledged until space returns.
        // Heartbeats are still heard: this node stays a quiet follower.
        if !entries.is_empty() && self.storage.no_space().is_some() {
            return;
        }
        let mut engine_entries = LogEntries::new(prev);
        for s in &entries {
            engine_entries.push(engine_entry(s));
        }
        // The engine merges the entries it appends until the next flush,
        // and cannot merge an append that cuts its log before the start
        // of what it holds pending: write the pending ones out first.
        if self
            .node
            .actions()
            .append_log_entries
            .as_ref()
            .is_some_and(|p| prev_index < p.prev_position().index.get())
        {
            self.flush();
        }
        for s in entries {
            if let Body::Config { membership, .. } = &s.body {
                for m in &membership.members {
                    self.directory.entry(m.id).or_insert_with(|| m.clone());
                }
            }
            self.incoming.insert((s.index, s.term), s.body);
        }
        let current = self.node.current_term().get();
        if term >= current {
            self.prevote = None;
            let changed = self.leader != Some(from);
            self.leader = Some(from);
            self.leader_contact = Some(self.now);
            if changed {
                self.abandon_sent();
            }
        }
        self.engine(Message::AppendEntriesCall {
            from: NodeId::new(from),
            term: noraft::Term::new(term),
            commit_index: LogIndex::new(commit),
            entries: engine_entries,
        });
    }

    fn engine(&mut self, msg: Message) {
        let before = self.node.current_term();
        if let Err(e) = self.node.handle_message(&msg) {
            self.fail(StorageError(format!(
                "raft: the engine found an impossible state ({e:?}); stopping rather than risk the log"
            )));
            return;
        }
        if self.node.current_term() != before && !matches!(msg, Message::AppendEntriesCall { .. }) {
            self.leader = None;
            self.leader_contact = None;
            self.abandon_sent();
        }
    }

    /// Let time pass to `now_ms` (the caller's monotonic milliseconds).
    pub fn tick(&mut self, now_ms: u64) {
        if self.failed.is_some() {
            return;
        }
        self.now = self.now.max(now_ms);
        self.lease_tick();
        if self.now >= self.deadline {
            self.campaign_transfer = false;
            if self.is_leader() || self.solo_voter() {
                self.node.handle_election_timeout();
            } else if self.is_voter() {
                self.start_prevote();
            }
            if !self.is_leader() {
                self.leader = None;
                self.leader_contact = None;
                self.abandon_sent();
            }
            self.reset_timer();
        }
        let now = self.now;
        let expired: Vec<ProposalId> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(&s, _)| s)
            .collect();
        for seq in expired {
            if let Some(w) = self.waiting.remove(&seq) {
                let error = match w.stage {
                    Stage::Queued(_)
                    | Stage::Reading
                    | Stage::ReadAt { .. }
                    | Stage::Sent {
                        pending: Pending::Read,
                        ..
                    } => LogError::NoLeader,
                    _ => LogError::Unknown,
                };
                self.commits.push(Commit::Done {
                    proposal: seq,
                    result: Err(error),
                });
            }
        }
        if let Some(t) = &self.transfer
            && t.deadline <= now
        {
            let target = t.target;
            self.finish_transfer(Err(format!(
                "raft: node {target} did not take over in time; this node still leads"
            )));
        }
    }

    fn fail(&mut self, e: StorageError) {
        if self.failed.is_none() {
            self.failed = Some(e);
        }
    }

    /// Messages to send, after flushing (see the module comment).
    pub fn take_messages(&mut self, out: &mut Vec<(u64, Rpc)>) {
        self.flush();
        out.append(&mut self.outbox);
    }

    /// Everything committed, after flushing; see [`Log::take_committed`].
    pub fn take_committed(&mut self, out: &mut Vec<Commit>) {
        self.flush();
        out.append(&mut self.commits);
    }

    /// Whether a snapshot is due (see [`Log::wants_snapshot`]): asked for,
    /// or `snapshot_every` entries (or `snapshot_bytes` bytes of commands)
    /// applied since the last one whose commands add up to at least that
    /// snapshot's size. The last rule
    /// keeps the cost of snapshots below the cost of the log itself however
    /// large the state grows; snapshotting a large state every few
    /// thousand small entries would spend most of the node's time there.
    pub fn wants_snapshot(&self) -> bool {
        let last = self.snapshot.as_ref().map_or(0, |(_, data)| data.len());
        !self.snapshot_asked.is_empty()
            || ((self.since_snapshot >= self.opts.snapshot_every
                || self.since_snapshot_bytes >= self.opts.snapshot_bytes)
                && (!self.opts.snapshot_by_size || self.since_snapshot_bytes >= last))
    }

    /// Keep a snapshot of the state and drop the log it covers.
    pub fn save_snapshot(&mut self, snap: Snapshot) {
        let asked = core::mem::take(&mut self.snapshot_asked);
        let result = self.install_own(snap);
        for seq in asked {
            self.waiting.remove(&seq);
            self.commits.push(Commit::Done {
                proposal: seq,
                result: result.clone(),
            });
        }
    }

    /// The replica's view of the cluster.
    pub fn status(&self) -> LogStatus {
        let role = match self.node.role() {
            Role::Leader => "leader",
            Role::Candidate => "candidate",
            Role::Follower if self.node.config().unique_nodes().next().is_none() => "joining",
            Role::Follower => "follower",
        };
        let config = self.node.config();
        let election = self.opts.election_ms.1;
        let peers = config
            .unique_nodes()
            .map(|n| {
                let id = n.get();
                let member = self.directory.get(&id);
                let contact = if id == self.me() {
                    Some(0)
                } else {
                    self.last_contact
                        .get(&id)
                        .map(|&t| self.now.saturating_sub(t))
                };
                PeerStatus {
                    id,
                    addr: member.map(|m| m.addr.clone()).unwrap_or_default(),
                    key: member.map_or([0; 32], |m| m.key),
                    role: if config.non_voters.contains(&n) {
                        "non-voter"
                    } else if config.new_voters.contains(&n) && !config.voters.contains(&n) {
                        "joining"
                    } else if config.is_joint_consensus() && !config.new_voters.contains(&n) {
                        "leaving"
                    } else {
                        "voter"
                    },
                    match_index: if id == self.me() {
                        self.node.log().last_position().index.get()
                    } else {
                        self.node.follower_match_index(n).map_or(0, |i| i.get())
                    },
                    last_contact_ms: contact,
                    state: if contact.is_some_and(|c| c < election) {
                        "up"
                    } else {
                        "down"
                    },
                    lease_over: self.lease_over(id),
                }
            })
            .collect();
        LogStatus {
            id: self.me(),
            role,
            term: self.node.current_term().get(),
            leader: self.leader,
            commit: self.node.commit_index().get(),
            last_index: self.node.log().last_position().index.get(),
            snapshot_index: self.node.log().snapshot_position().index.get(),
            peers,
            storage: self.storage.usage(),
            voters: ids(&config.voters.union(&config.new_voters).copied().collect()),
            non_voters: ids(&config.non_voters),
            joint: config.is_joint_consensus(),
            lease_ms: Some(self.lease_ms()),
        }
    }
}

/// The engine's view of a stored entry.
fn engine_entry(s: &Stored) -> LogEntry {
    match &s.body {
        Body::Term => LogEntry::Term(noraft::Term::new(s.term)),
        Body::Config { membership, .. } => LogEntry::ClusterConfig(to_config(membership)),
        Body::Command { .. } => LogEntry::Command,
    }
}

impl<S: Storage> Log for Replica<S> {
    fn propose(&mut self, data: Vec<u8>) -> Result<ProposalId, LogError> {
        Replica::propose(self, data)
    }

    fn change(&mut self, change: Change) -> Result<ProposalId, LogError> {
        Replica::change(self, change)
    }

    fn read(&mut self) -> Result<ReadGate, LogError> {
        Replica::read(self)
    }

    fn take_committed(&mut self, out: &mut Vec<Commit>) {
        Replica::take_committed(self, out);
    }

    fn wants_snapshot(&self) -> bool {
        Replica::wants_snapshot(self)
    }

    fn save_snapshot(&mut self, snapshot: Snapshot) {
        Replica::save_snapshot(self, snapshot);
    }

    fn status(&self) -> LogStatus {
        Replica::status(self)
    }
}
