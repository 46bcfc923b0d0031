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

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use noraft::{
    Action, ClusterConfig, LogEntries, LogEntry, LogIndex, LogPosition, Message, Node, NodeId, Role,
};

use crate::command::Command;
use crate::log::{
    Change, Commit, Entry, Index, Log, LogError, LogStatus, PeerStatus, ProposalId, ReadGate,
    Snapshot, Term,
};
use crate::raft::storage::{
    Body, HardState, Member, Membership, SnapshotMeta, Storage, StorageError, Stored,
};
use crate::raft::wire::Msg;

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
    /// Most proposals waiting for commit before `propose` says Full.
    pub max_pending: usize,
    /// How long a proposal may wait for its commit before it is reported
    /// failed, in milliseconds.
    pub proposal_timeout_ms: u64,
}

impl Options {
    /// The defaults for node `id`: heartbeats every 50 ms, elections after
    /// 300–600 ms of silence, a snapshot every 10,000 entries once they
    /// outweigh the last one.
    pub fn new(id: u64) -> Options {
        Options {
            id,
            heartbeat_ms: 50,
            election_ms: (300, 600),
            seed: id,
            snapshot_every: 10_000,
            snapshot_by_size: true,
            max_pending: 65_536,
            proposal_timeout_ms: 5_000,
        }
    }
}

/// Largest total of command bytes put in one append message; the rest
/// follows in later ones.
const MAX_APPEND_BYTES: usize = 1 << 20;

/// Proposal ids are the boot count (high bits) and a counter (low bits).
const SEQ_BITS: u32 = 40;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

/// How many recent entries' proposals a replica remembers to drop
/// duplicated forwards.
const SEEN_KEPT: usize = 65_536;

/// A snapshot is sent to a lagging follower at most this often.
const SNAPSHOT_RESEND_MS: u64 = 1_000;

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
    /// Term and body of every entry in the engine's log, by index.
    bodies: BTreeMap<Index, (Term, Body)>,
    /// Bodies that came in appends since the last flush, for the entries
    /// the engine takes from them, by (index, term): appends from two
    /// leaders may carry different entries at one index.
    incoming: BTreeMap<(Index, Term), Body>,
    /// Address and key of every node this replica has heard of.
    directory: BTreeMap<u64, Member>,
    /// The latest snapshot, for followers that fell behind.
    snapshot: Option<(SnapshotMeta, Vec<u8>)>,
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
    /// Per follower, the highest round it echoed in this term.
    read_acks: BTreeMap<u64, u64>,
    /// As follower: the latest round heard from the leader, and its term.
    read_echo: (Term, u64),
    commits: Vec<Commit>,
    outbox: Vec<(u64, Msg)>,
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
            bodies,
            incoming: BTreeMap::new(),
            directory,
            snapshot: loaded.snapshot,
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
            read_acks: BTreeMap::new(),
            read_echo: (0, 0),
            commits,
            outbox: Vec::new(),
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

    fn solo_voter(&self) -> bool {
        let c = self.node.config();
        c.voters.len() == 1 && c.new_voters.is_empty() && c.voters.contains(&self.node.id())
    }

    fn reset_timer(&mut self) {
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
        if let Change::Add { id, .. } | Change::Remove { id } | Change::Transfer { id } = &change
            && *id == 0
        {
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

    /// Append a proposal here if leading, else hand it to the leader.
    /// `None` when it already failed (reported as [`Commit::Done`]).
    fn route(&mut self, seq: u64, pending: Pending) -> Option<Stage> {
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

    fn lead_change(
        &mut self,
        origin: u64,
        seq: u64,
        change: Change,
    ) -> Result<Option<LogPosition>, LogError> {
        let refused = |s: String| Err(LogError::Refused(s));
        let config = self.node.config().clone();
        if config.is_joint_consensus() && !matches!(change, Change::Transfer { .. }) {
            return refused(String::from(
                "raft: a membership change is still under way; try again when it commits",
            ));
        }
        let new = match &change {
            Change::Add { id, addr, key } => {
                if config.contains(NodeId::new(*id)) {
                    return refused(format!("raft: node {id} is already a member"));
                }
                if let Some(m) = self
                    .directory
                    .values()
                    .find(|m| m.key == *key && m.id != *id)
                {
                    return refused(format!(
                        "raft: that key is already node {}'s; each node has its own key",
                        m.id
                    ));
                }
                self.directory.insert(
                    *id,
                    Member {
                        id: *id,
                        addr: addr.clone(),
                        key: *key,
                    },
                );
                config.to_joint_consensus(&[NodeId::new(*id)], &[])
            }
            Change::Remove { id } => {
                if !config.contains(NodeId::new(*id)) {
                    return refused(format!("raft: node {id} is not a member"));
                }
                let new = config.to_joint_consensus(&[], &[NodeId::new(*id)]);
                if new.new_voters.is_empty() {
                    return refused(format!(
                        "raft: removing node {id} would leave no voter; add another node first"
                    ));
                }
                new
            }
            Change::Transfer { id } => {
                if *id == self.me() {
                    return refused(format!("raft: node {id} already leads"));
                }
                if !config.voters.contains(&NodeId::new(*id)) {
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
            Change::Snapshot => return Ok(None),
        };
        let at = self.node.propose_config(new.clone());
        if at == LogPosition::INVALID {
            return refused(String::from(
                "raft: the engine refused the change now; try again",
            ));
        }
        let body = Body::Config {
            membership: self.membership(&new),
            origin,
            seq,
        };
        self.note_seen(at.index.get(), &body);
        self.bodies.insert(at.index.get(), (at.term.get(), body));
        Ok(Some(at))
    }

    fn membership(&self, c: &ClusterConfig) -> Membership {
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

    /// Handle a message from node `from` (authenticated by the transport).
    pub fn receive(&mut self, from: u64, msg: Msg) {
        if self.failed.is_some() || from == self.me() || from == 0 {
            return;
        }
        self.last_contact.insert(from, self.now);
        match msg {
            Msg::Vote {
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
            Msg::PreVote {
                term,
                last_term,
                last_index,
            } => {
                let granted = self.would_vote(term, last_term, last_index);
                self.outbox
                    .push((from, Msg::PreVoteReply { term, granted }));
            }
            Msg::PreVoteReply { term, granted } => {
                if granted
                    && let Some((t, yes)) = &mut self.prevote
                    && *t == term
                {
                    yes.insert(from);
                    self.check_prevote();
                }
            }
            Msg::VoteReply { term, granted } => self.engine(Message::RequestVoteReply {
                from: NodeId::new(from),
                term: noraft::Term::new(term),
                vote_granted: granted,
            }),
            Msg::Append {
                term,
                commit,
                prev_term,
                prev_index,
                entries,
                read,
            } => {
                if term >= self.node.current_term().get() {
                    let (t, r) = self.read_echo;
                    self.read_echo = (term, if t == term { r.max(read) } else { read });
                }
                self.receive_append(from, term, commit, pos(prev_term, prev_index), entries)
            }
            Msg::AppendReply {
                term,
                last_term,
                last_index,
                read,
            } => {
                if self.is_leader() && term == self.node.current_term().get() {
                    let acked = self.read_acks.entry(from).or_default();
                    *acked = (*acked).max(read);
                }
                self.engine(Message::AppendEntriesReply {
                    from: NodeId::new(from),
                    term: noraft::Term::new(term),
                    last_position: pos(last_term, last_index),
                })
            }
            Msg::Read { seq } => self.read_asked(from, seq),
            Msg::ReadIndex { seq, index } => {
                if let Some(w) = self.waiting.get_mut(&seq)
                    && matches!(w.stage, Stage::Sent { to, pending: Pending::Read } if to == from)
                {
                    w.stage = Stage::ReadAt { index };
                }
            }
            Msg::Snapshot { term, meta, data } => self.receive_snapshot(from, term, meta, data),
            Msg::TimeoutNow { term } => {
                if term == self.node.current_term().get() && !self.is_leader() {
                    self.campaign_transfer = true;
                    self.node.handle_election_timeout();
                }
            }
            Msg::Forward { seq, data } => self.forwarded(from, seq, Pending::Data(data)),
            Msg::ForwardChange { seq, change } => {
                self.forwarded(from, seq, Pending::Change(change))
            }
            Msg::Refuse { seq, leader, why } => self.refused(from, seq, leader, why),
            Msg::ChangeDone { seq, error } => {
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

    fn leader_is_alive(&self) -> bool {
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
    fn heard_majority(&self, ms: u64) -> bool {
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

    fn receive_snapshot(&mut self, from: u64, term: Term, meta: SnapshotMeta, data: Vec<u8>) {
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
        let result = self.storage.save_snapshot(&meta, &data).and_then(|()| {
            if keeps_tail {
                Ok(())
            } else {
                self.storage.append(meta.index, &[])
            }
        });
        if let Err(e) = result {
            self.fail(e);
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
            data: data.clone(),
        }));
        self.delivered = meta.index;
        self.since_snapshot = 0;
        self.since_snapshot_bytes = 0;
        self.snapshot = Some((meta, data));
    }

    fn forwarded(&mut self, from: u64, seq: u64, pending: Pending) {
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
                    Msg::Refuse {
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
    fn sent_elsewhere(&mut self, from: u64, seq: u64) -> bool {
        if self.is_leader() && self.transfer.is_none() {
            return false;
        }
        let leader = self.leader.filter(|&l| l != from);
        self.outbox.push((
            from,
            Msg::Refuse {
                seq,
                leader,
                why: None,
            },
        ));
        true
    }

    /// A follower's read: confirm it like this node's own, or point the
    /// follower elsewhere.
    fn read_asked(&mut self, from: u64, seq: u64) {
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
    fn start_reads(&mut self) {
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
    fn finish_reads(&mut self) {
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
                Some((origin, seq)) => self.outbox.push((origin, Msg::ReadIndex { seq, index })),
                None => {
                    if let Some(w) = self.waiting.get_mut(&r.seq) {
                        w.stage = Stage::ReadAt { index };
                    }
                }
            }
        }
    }

    fn refused(&mut self, from: u64, seq: u64, leader: Option<u64>, why: Option<String>) {
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
    fn reroute(&mut self, seq: ProposalId, pending: Pending) {
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
        if self.now >= self.deadline {
            self.campaign_transfer = false;
            if self.is_leader() || self.solo_voter() {
                self.node.handle_election_timeout();
            } else {
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

    /// Proposals handed to a node that no longer leads for us may or may
    /// not be in the log: answer them now rather than at their deadline,
    /// so a client retries as soon as a new leader is known. Sending them
    /// again could append them twice.
    fn abandon_sent(&mut self) {
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
            self.waiting.remove(&seq);
            self.commits.push(Commit::Done {
                proposal: seq,
                result: Err(LogError::Unknown),
            });
        }
    }

    /// Ask the voters whether they would elect this node in the next
    /// term; the election itself starts only when a majority would.
    fn start_prevote(&mut self) {
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
                Msg::PreVote {
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
    fn check_prevote(&mut self) {
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
    fn would_vote(&self, term: Term, last_term: Term, last_index: Index) -> bool {
        let mine = self.node.log().last_position();
        term > self.node.current_term().get()
            && !self.leader_is_alive()
            && (last_term, last_index) >= (mine.term.get(), mine.index.get())
    }

    fn finish_transfer(&mut self, result: Result<(), String>) {
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
                Msg::ChangeDone {
                    seq: t.seq,
                    error: result.err(),
                },
            ));
        }
    }

    fn fail(&mut self, e: StorageError) {
        if self.failed.is_none() {
            self.failed = Some(e);
        }
    }

    /// Carry out the engine's actions: storage first (one sync), then the
    /// messages, then the entries that are now committed.
    fn flush(&mut self) {
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
                    if hard != self.hard {
                        self.hard = hard;
                        if let Err(e) = self.storage.save_hard_state(&hard) {
                            self.fail(e);
                        }
                        wrote = true;
                    }
                }
                Action::AppendLogEntries(entries) => {
                    if let Err(e) = self.append(&entries) {
                        self.fail(e);
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
        if wrote && let Err(e) = self.storage.sync() {
            self.fail(e);
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

    /// Send what waited for a leader.
    fn flush_queued(&mut self) {
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
    fn check_local_proposals(&mut self) {
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
            self.waiting.remove(&seq);
            self.commits.push(Commit::Done {
                proposal: seq,
                result: Err(LogError::NoLeader),
            });
        }
    }

    fn drive_transfer(&mut self) {
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
            self.outbox.push((to, Msg::TimeoutNow { term }));
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

    /// Remember which proposal `body` carries, so a copy of its forward
    /// that arrives later (a network duplicate) is not appended again.
    fn note_seen(&mut self, index: Index, body: &Body) {
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
            } => Msg::Vote {
                term: term.get(),
                last_term: last_position.term.get(),
                last_index: last_position.index.get(),
                transfer: self.campaign_transfer,
            },
            Message::RequestVoteReply {
                term, vote_granted, ..
            } => Msg::VoteReply {
                term: term.get(),
                granted: vote_granted,
            },
            Message::AppendEntriesReply {
                term,
                last_position,
                ..
            } => Msg::AppendReply {
                term: term.get(),
                last_term: last_position.term.get(),
                last_index: last_position.index.get(),
                read: self.read_echo.1,
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
                Msg::Append {
                    term: term.get(),
                    commit: commit_index.get(),
                    prev_term: prev.term.get(),
                    prev_index: prev.index.get(),
                    entries: out,
                    read: self.read_sent,
                }
            }
        };
        match to {
            Some(to) => self.outbox.push((to, msg)),
            None => {
                let me = self.node.id();
                let peers: Vec<u64> = self
                    .node
                    .peers()
                    .filter(|&n| n != me)
                    .map(|n| n.get())
                    .collect();
                for p in peers {
                    self.outbox.push((p, msg.clone()));
                }
            }
        }
    }

    fn send_snapshot(&mut self, to: u64) {
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
        let msg = Msg::Snapshot {
            term: self.node.current_term().get(),
            meta: meta.clone(),
            data: data.clone(),
        };
        self.outbox.push((to, msg));
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
                } => (*origin, *seq, Command::Members(membership.clone()).encode()),
                Body::Command { origin, seq, data } => (*origin, *seq, data.clone()),
            };
            let data_len = data.len();
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

    /// Messages to send, after flushing (see the module comment).
    pub fn take_messages(&mut self, out: &mut Vec<(u64, Msg)>) {
        self.flush();
        out.append(&mut self.outbox);
    }

    /// Everything committed, after flushing; see [`Log::take_committed`].
    pub fn take_committed(&mut self, out: &mut Vec<Commit>) {
        self.flush();
        out.append(&mut self.commits);
    }

    /// Whether a snapshot is due (see [`Log::wants_snapshot`]): asked for,
    /// or `snapshot_every` entries applied since the last one whose
    /// commands add up to at least that snapshot's size. The second rule
    /// keeps the cost of snapshots below the cost of the log itself however
    /// large the state grows; snapshotting a large state every few
    /// thousand small entries would spend most of the node's time there.
    pub fn wants_snapshot(&self) -> bool {
        let last = self.snapshot.as_ref().map_or(0, |(_, data)| data.len());
        !self.snapshot_asked.is_empty()
            || (self.since_snapshot >= self.opts.snapshot_every
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

    fn install_own(&mut self, snap: Snapshot) -> Result<(), LogError> {
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
        if let Err(e) = self.storage.save_snapshot(&meta, &snap.data) {
            let why = e.0.clone();
            self.fail(e);
            return Err(LogError::Storage(why));
        }
        if !self.node.handle_snapshot_installed(at, config) {
            return Err(LogError::Refused(String::from(
                "raft: the engine refused the snapshot",
            )));
        }
        self.bodies.retain(|&i, _| i > snap.index);
        self.since_snapshot = 0;
        self.since_snapshot_bytes = 0;
        self.snapshot = Some((meta, snap.data));
        Ok(())
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
                    role: if config.new_voters.contains(&n) && !config.voters.contains(&n) {
                        "joining"
                    } else if config.is_joint_consensus() && !config.new_voters.contains(&n) {
                        "leaving"
                    } else if config.non_voters.contains(&n) {
                        "non-voter"
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

fn forward(seq: u64, pending: &Pending) -> Msg {
    match pending {
        Pending::Data(data) => Msg::Forward {
            seq,
            data: data.clone(),
        },
        Pending::Change(change) => Msg::ForwardChange {
            seq,
            change: change.clone(),
        },
        Pending::Read => Msg::Read { seq },
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
