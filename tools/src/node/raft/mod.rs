//! The hosted node's replicated log: a `cellfs::raft::Replica` on its own
//! thread, over segment-file storage and a TCP transport between nodes.
//!
//! The 9P server holds a [`RaftLog`]: proposing only queues the command
//! and wakes the Raft thread; the thread feeds everything that queued to
//! the replica, lets it write and fsync once, sends its messages, and
//! hands back what committed, then wakes the server through `notify`.
//! Disk and network I/O therefore never happen under the server's lock,
//! and every proposal that arrived during one fsync shares the next one
//! (group commit).

pub mod join;
pub mod store;
pub mod transport;

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cellfs::raft::{Member, Replica, Rpc, Storage, StorageError};
use cellfs::{Change, Commit, Log, LogError, LogStatus, ProposalId, ReadGate, Snapshot};

/// Called after each batch the Raft thread hands back.
pub type Notify = Box<dyn Fn() + Send + Sync>;

/// Where the Raft thread sends messages to other nodes.
pub trait Wire: Send + 'static {
    /// Send `frame` to node `to`; never blocks (a full queue drops).
    fn send(&self, to: u64, frame: Vec<u8>);
    /// The nodes it may talk to changed.
    fn set_members(&self, members: &[Member]);
}

/// A wire that drops what it would send while the node is cut off (the
/// test hook of [`crate::node::cut`]).
pub struct CutWire<W: Wire>(pub W, pub crate::node::cut::Cut);

impl<W: Wire> Wire for CutWire<W> {
    fn send(&self, to: u64, frame: Vec<u8>) {
        if !self.1.is_cut() {
            self.0.send(to, frame);
        }
    }

    fn set_members(&self, members: &[Member]) {
        self.0.set_members(members);
    }
}

/// A node alone has nobody to send to.
pub struct Alone;

impl Wire for Alone {
    fn send(&self, _to: u64, _frame: Vec<u8>) {}
    fn set_members(&self, _members: &[Member]) {}
}

impl Wire for transport::Transport {
    fn send(&self, to: u64, frame: Vec<u8>) {
        transport::Transport::send(self, to, frame);
    }

    fn set_members(&self, members: &[Member]) {
        self.directory().set(
            members
                .iter()
                .filter(|m| m.id != self.id())
                .map(|m| {
                    let peer = transport::Peer {
                        addr: m.addr.clone(),
                        key: m.key,
                    };
                    (m.id, peer)
                })
                .collect(),
        );
    }
}

/// Storage that can record a clean stop, so that its next open can tell
/// damage to the last record from a write a crash tore.
pub trait CleanStop: Storage {
    /// Make everything written durable and record that the node stopped
    /// cleanly (see [`store::SegmentStore::close`]).
    fn stop_cleanly(&mut self) -> Result<(), StorageError>;
    /// While the storage is short of space, see whether space has
    /// returned (cheaply, and at most as often as the storage allows), so
    /// that writes are taken again without a restart.
    fn retry_space(&mut self) {}
}

impl CleanStop for store::SegmentStore {
    fn stop_cleanly(&mut self) -> Result<(), StorageError> {
        self.close()
    }

    fn retry_space(&mut self) {
        store::SegmentStore::retry_space(self);
    }
}

/// Most inputs waiting for the Raft thread before proposals say Full.
const MAX_INPUTS: usize = 65_536;

enum Input {
    Propose(ProposalId, Vec<u8>),
    Change(ProposalId, Change),
    Read(ProposalId),
    Receive(u64, Vec<u8>),
    Snapshot(Snapshot),
}

#[derive(Default)]
struct Queues {
    inputs: Vec<Input>,
    commits: Vec<Commit>,
    status: LogStatus,
    /// When `status` was taken.
    status_at: Option<Instant>,
    wants_snapshot: bool,
    /// The replica may serve reads from what was applied (it leads
    /// alone): set by the thread after each batch. It can only turn false
    /// through a change this same thread appends and publishes before it
    /// could grant any vote, so reads served on a stale `true` are still
    /// linearizable.
    reads_locally: bool,
    closing: bool,
    stopped: bool,
}

struct Shared {
    q: Mutex<Queues>,
    work: Condvar,
}

fn lock(s: &Shared) -> MutexGuard<'_, Queues> {
    s.q.lock().unwrap_or_else(|e| e.into_inner())
}

/// The server's handle on the Raft thread.
pub struct RaftLog {
    shared: Arc<Shared>,
    next: ProposalId,
    thread: Option<JoinHandle<()>>,
}

/// Something that delivers frames from other nodes to the Raft thread.
#[derive(Clone)]
pub struct Inbox {
    shared: Arc<Shared>,
}

impl Inbox {
    /// A frame from node `from` (already authenticated).
    pub fn deliver(&self, from: u64, frame: Vec<u8>) {
        let mut q = lock(&self.shared);
        if q.inputs.len() < MAX_INPUTS {
            // See `RaftLog::push`: only an empty queue needs a wake-up.
            let idle = q.inputs.is_empty();
            q.inputs.push(Input::Receive(from, frame));
            if idle {
                self.shared.work.notify_one();
            }
        }
    }
}

impl RaftLog {
    /// The inbox the transport delivers to, made before the log starts so
    /// the transport can be started first.
    pub fn inbox() -> Inbox {
        Inbox {
            shared: Arc::new(Shared {
                q: Mutex::new(Queues::default()),
                work: Condvar::new(),
            }),
        }
    }

    /// Start the Raft thread over `replica`, sending through `wire`,
    /// reading what `inbox` receives, and calling `notify` after each
    /// batch of commits.
    pub fn start<S: CleanStop + Send + 'static, W: Wire>(
        replica: Replica<S>,
        wire: W,
        inbox: Inbox,
        notify: Notify,
    ) -> anyhow::Result<RaftLog> {
        let shared = inbox.shared;
        wire.set_members(&replica.members().cloned().collect::<Vec<_>>());
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("cell0-raft".into())
            .spawn(move || run(replica, wire, s, notify))?;
        Ok(RaftLog {
            shared,
            next: 0,
            thread: Some(thread),
        })
    }

    /// Make what is queued durable, then stop the thread.
    pub fn close(&mut self) {
        {
            let mut q = lock(&self.shared);
            q.closing = true;
            self.shared.work.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    fn push(&mut self, make: impl FnOnce(ProposalId) -> Input) -> Result<ProposalId, LogError> {
        let mut q = lock(&self.shared);
        if q.closing || q.stopped {
            return Err(LogError::Closed);
        }
        if q.inputs.len() >= MAX_INPUTS {
            return Err(LogError::Full);
        }
        self.next += 1;
        // The thread takes every input at once, and waits only when there
        // are none: a queue that held some already has its wake-up coming
        // (a notify is a syscall, once per message otherwise).
        let idle = q.inputs.is_empty();
        q.inputs.push(make(self.next));
        if idle {
            self.shared.work.notify_one();
        }
        Ok(self.next)
    }
}

impl Drop for RaftLog {
    fn drop(&mut self) {
        self.close();
    }
}

impl Log for RaftLog {
    fn propose(&mut self, data: Vec<u8>) -> Result<ProposalId, LogError> {
        self.push(|id| Input::Propose(id, data))
    }

    fn change(&mut self, change: Change) -> Result<ProposalId, LogError> {
        self.push(|id| Input::Change(id, change))
    }

    fn read(&mut self) -> Result<ReadGate, LogError> {
        if lock(&self.shared).reads_locally {
            return Ok(ReadGate::Now);
        }
        self.push(Input::Read).map(ReadGate::Wait)
    }

    fn take_committed(&mut self, out: &mut Vec<Commit>) {
        out.append(&mut lock(&self.shared).commits);
    }

    fn wants_snapshot(&self) -> bool {
        lock(&self.shared).wants_snapshot
    }

    fn save_snapshot(&mut self, snapshot: Snapshot) {
        let mut q = lock(&self.shared);
        q.wants_snapshot = false;
        q.inputs.push(Input::Snapshot(snapshot));
        self.shared.work.notify_one();
    }

    fn status(&self) -> LogStatus {
        let q = lock(&self.shared);
        let mut s = q.status.clone();
        // Counted down to now: the thread may have slept since (a node
        // cut off hears nothing that would wake it).
        let age = q.status_at.map_or(0, |t| t.elapsed().as_millis() as u64);
        s.lease_ms = s.lease_ms.map(|ms| ms.saturating_sub(age));
        s
    }
}

/// Remember the replica's name for the server's proposal `id`, or report
/// at once that the replica refused it.
fn proposed(
    id: ProposalId,
    result: Result<ProposalId, LogError>,
    ids: &mut HashMap<ProposalId, ProposalId>,
    commits: &mut Vec<Commit>,
) {
    match result {
        Ok(seq) => {
            ids.insert(seq, id);
        }
        Err(e) => commits.push(Commit::Done {
            proposal: id,
            result: Err(e),
        }),
    }
}

/// The Raft thread.
fn run<S: CleanStop, W: Wire>(mut r: Replica<S>, wire: W, shared: Arc<Shared>, notify: Notify) {
    let start = Instant::now();
    let now_ms = |start: &Instant| start.elapsed().as_millis() as u64;
    // The server's proposal ids, by the replica's.
    let mut ids: HashMap<ProposalId, ProposalId> = HashMap::new();
    let mut msgs = Vec::new();
    let mut commits = Vec::new();
    let mut members: Vec<Member> = r.members().cloned().collect();
    let base = now_ms(&start);
    r.tick(base);
    loop {
        let (inputs, closing) = {
            let mut q = lock(&shared);
            let wait = r.next_deadline().saturating_sub(now_ms(&start));
            if q.inputs.is_empty() && !q.closing && wait > 0 {
                q = shared
                    .work
                    .wait_timeout(q, Duration::from_millis(wait.min(1_000)))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            (std::mem::take(&mut q.inputs), q.closing)
        };
        for input in inputs {
            match input {
                Input::Propose(id, data) => proposed(id, r.propose(data), &mut ids, &mut commits),
                Input::Change(id, change) => proposed(id, r.change(change), &mut ids, &mut commits),
                Input::Read(id) => match r.read() {
                    Ok(ReadGate::Wait(seq)) => proposed(id, Ok(seq), &mut ids, &mut commits),
                    Ok(ReadGate::Now) => commits.push(Commit::Done {
                        proposal: id,
                        result: Ok(()),
                    }),
                    Err(e) => proposed(id, Err(e), &mut ids, &mut commits),
                },
                Input::Receive(from, frame) => match Rpc::decode(&frame) {
                    Some(m) => r.receive(from, m),
                    None => eprintln!(
                        "cell0: raft: node {from} sent a frame that is not a message; ignored"
                    ),
                },
                Input::Snapshot(s) => r.save_snapshot(s),
            }
        }
        // A full disk is tried again (at most once a second: the thread
        // wakes at least that often).
        r.storage_mut().retry_space();
        r.tick(now_ms(&start));
        r.take_messages(&mut msgs);
        for (to, m) in msgs.drain(..) {
            wire.send(to, m.encode());
        }
        let mut got = Vec::new();
        r.take_committed(&mut got);
        for c in got {
            commits.push(match c {
                Commit::Entry { entry, proposal } => Commit::Entry {
                    entry,
                    proposal: proposal.and_then(|p| ids.remove(&p)),
                },
                Commit::Done { proposal, result } => match ids.remove(&proposal) {
                    Some(id) => Commit::Done {
                        proposal: id,
                        result,
                    },
                    None => continue,
                },
                c @ Commit::Snapshot(_) => c,
            });
        }
        let now: Vec<Member> = r.members().cloned().collect();
        if now != members {
            wire.set_members(&now);
            members = now;
        }
        let failed = r.failed().map(|e| e.0.clone());
        let mut had = !commits.is_empty();
        {
            let mut q = lock(&shared);
            q.commits.append(&mut commits);
            q.status = r.status();
            q.status_at = Some(Instant::now());
            // A `snapshot` asked for commits nothing: the server must be
            // woken to take it, or the write waits for the next commit.
            had |= r.wants_snapshot() && !q.wants_snapshot;
            q.wants_snapshot = q.wants_snapshot || r.wants_snapshot();
            q.reads_locally = r.reads_locally();
            if failed.is_some() || closing {
                q.stopped = true;
            }
        }
        if had {
            notify();
        }
        if let Some(why) = failed {
            // Fail-stop: what was acknowledged is on disk; nothing after
            // the failure was. (A write that found no space is not a
            // failure: the replica refuses writes and goes on, see
            // cellfs(4).)
            eprintln!("cell0: raft storage failed: {why}; stopping the node");
            std::process::exit(70);
        }
        if closing {
            // Everything written is made durable and the stop recorded
            // as clean, so that the next start refuses a damaged last
            // record instead of cutting it as torn.
            if let Err(e) = r.storage_mut().stop_cleanly() {
                eprintln!(
                    "cell0: raft storage: recording the clean stop failed: {e}; \
                     the next start treats this stop as a crash"
                );
            }
            return;
        }
    }
}
