//! The clients: threads, each bound to one node, each making one
//! operation at a time and recording its invocation and outcome in the
//! [`History`]: creates, removes and existence checks of a few channels
//! (checked for linearizability), and appends of unique messages to one
//! channel (checked for loss).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::client::{Conn, Failure};
use super::history::{History, Kind, Op, Outcome};
use super::rng::Rng;

/// The channel appends go to.
pub const APPEND_CHAN: &str = "log";

/// What the clients do.
#[derive(Clone, Debug)]
pub struct Workload {
    /// How many client threads (spread over the nodes in turn).
    pub clients: usize,
    /// How many channel names the membership operations use.
    pub keys: usize,
    /// How long an operation may take before it is indeterminate.
    pub timeout: Duration,
    /// How clients learn whether a channel exists.
    pub reads: Reads,
    /// Which node a client sends to.
    pub route: Route,
    /// Pause between two operations of one client.
    pub pace: Duration,
    /// Seed of the clients' choices.
    pub seed: u64,
}

/// How a client learns whether a channel exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// A walk to it, for `exists`, and before a remove (a walk that finds
    /// nothing answers the remove): what a program does, and what may lag
    /// the leader on a follower today (issue 19).
    Walk,
    /// A read of the `/chan` directory from its start (linearizable) for
    /// `exists`; a remove whose walk finds nothing is not counted as an
    /// answer.
    List,
}

/// Which node a client sends its operations to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Always the same one (client `c` to node `c % n`): followers too.
    Bound,
    /// The leader, as its node names it (asked before each operation).
    Leader,
}

/// The name of key `k`.
pub fn key_name(k: usize) -> String {
    format!("k{k}")
}

/// What a client needs to reach a node.
#[derive(Clone)]
pub struct Target {
    /// Its 9P address.
    pub addr: String,
    /// The attach aname (with the token).
    pub aname: String,
}

/// The running clients; [`Clients::stop`] ends them.
pub struct Clients {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Clients {
    /// Start `w.clients` clients, client `c` first on node `c % len`.
    pub fn start(w: &Workload, targets: &[Target], history: Arc<History>) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..w.clients)
            .map(|c| {
                let targets = targets.to_vec();
                let (w, h, s) = (w.clone(), history.clone(), stop.clone());
                std::thread::Builder::new()
                    .name(format!("nemesis-client-{c}"))
                    .spawn(move || client(c, &w, &targets, &h, &s))
                    .expect("client thread starts")
            })
            .collect();
        Clients { stop, threads }
    }

    /// Stop every client after its current operation and wait for them.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.threads) {
            t.join().expect("a client thread panicked");
        }
    }
}

impl Drop for Clients {
    /// A run that panics stops its clients too.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Pick the next operation: (kind, key or payload).
fn choose(rng: &mut Rng, w: &Workload, client: usize, seq: u64) -> (Kind, String) {
    let roll = rng.below(100);
    let key = key_name(rng.index(w.keys));
    match roll {
        0..=24 => (Kind::Append, format!("c{client}-{seq}")),
        25..=49 => (Kind::Create, key),
        50..=74 => (Kind::Remove, key),
        _ => (Kind::Exists, key),
    }
}

/// How a node's refusal counts: a read changed nothing either way; a
/// write the node says may have applied, or refused for a reason that
/// does not say nothing changed, is indeterminate.
fn refused(kind: Kind, text: String) -> Outcome {
    let unchanged = text.contains("nothing changed") || text.contains("try again");
    if kind == Kind::Exists || (unchanged && !text.contains("may or may not")) {
        Outcome::Failed(text)
    } else {
        Outcome::Indeterminate(text)
    }
}

/// A client's connection to the node it sends to.
struct Session {
    node: usize,
    conn: Option<Conn>,
}

impl Session {
    /// Attached to `node`, connecting if need be.
    fn conn(&mut self, targets: &[Target], limit: Duration) -> Result<&mut Conn, Failure> {
        if self.conn.is_none() {
            let t = &targets[self.node];
            self.conn = Some(Conn::connect(&t.addr, &t.aname, limit)?);
        }
        Ok(self.conn.as_mut().expect("connected"))
    }

    /// With [`Route::Leader`]: move to the node this one names as
    /// leader (a read of its `/raft/status`), if that is another.
    fn follow_leader(&mut self, targets: &[Target], limit: Duration) {
        let Ok(c) = self.conn(targets, limit) else {
            // This node is down: try the next one.
            self.node = (self.node + 1) % targets.len();
            return;
        };
        let status = c.cat("/raft/status", Instant::now() + limit);
        let leader = match status {
            Ok(s) => crate::cluster::field(&s, "leader").and_then(|v| v.parse::<usize>().ok()),
            Err(_) => None,
        };
        if c.broken() {
            self.conn = None;
        }
        if let Some(id) = leader.filter(|&id| (1..=targets.len()).contains(&id))
            && id - 1 != self.node
        {
            self.node = id - 1;
            self.conn = None;
        }
    }
}

fn client(id: usize, w: &Workload, targets: &[Target], h: &History, stop: &AtomicBool) {
    let mut rng = Rng::new(w.seed ^ (id as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let limit = w.timeout.min(Duration::from_secs(1));
    let mut s = Session {
        node: id % targets.len(),
        conn: None,
    };
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        if w.route == Route::Leader {
            s.follow_leader(targets, limit);
        }
        let (kind, key) = choose(&mut rng, w, id, seq);
        let call = h.now();
        let deadline = Instant::now() + w.timeout;
        let result = s
            .conn(targets, limit)
            .and_then(|c| run(c, w.reads, kind, &key, deadline));
        let outcome = match result {
            Ok(v) => Outcome::Ok(v),
            Err(Failure::Unsent(e)) => Outcome::Failed(e),
            Err(Failure::Refused(e)) => refused(kind, e),
            Err(Failure::Lost(e)) => Outcome::Indeterminate(e),
        };
        if s.conn.as_ref().is_some_and(Conn::broken) {
            s.conn = None;
        }
        let unsent = matches!(outcome, Outcome::Failed(_)) && s.conn.is_none();
        h.record(Op {
            client: id,
            node: s.node,
            kind,
            key,
            call,
            ret: h.now(),
            outcome,
        });
        // A node that cannot be reached is not hammered.
        let pause = if unsent {
            Duration::from_millis(200)
        } else {
            w.pace
        };
        std::thread::sleep(pause);
    }
}

fn run(
    c: &mut Conn,
    reads: Reads,
    kind: Kind,
    key: &str,
    deadline: Instant,
) -> Result<bool, Failure> {
    match (kind, reads) {
        (Kind::Create, _) => c.create(key, deadline),
        (Kind::Remove, _) => c.remove(key, reads == Reads::Walk, deadline),
        (Kind::Exists, Reads::Walk) => c.exists(key, deadline),
        (Kind::Exists, Reads::List) => c
            .list_chan(deadline)
            .map(|names| names.iter().any(|n| n == key)),
        (Kind::Append, _) => {
            let path = format!("/chan/{APPEND_CHAN}/data");
            c.write(&path, format!("{key}\n").as_bytes(), deadline)
                .map(|()| true)
        }
    }
}
