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
    /// Whether clients check existence with a walk (which, through a
    /// follower, may lag the leader; see DESIGN.md and issue 19).
    pub exists: bool,
    /// Pause between two operations of one client.
    pub pace: Duration,
    /// Seed of the clients' choices.
    pub seed: u64,
}

/// The name of key `k`.
pub fn key_name(k: usize) -> String {
    format!("k{k}")
}

/// What a client needs to reach its node.
#[derive(Clone)]
pub struct Target {
    /// The node's index.
    pub node: usize,
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
    /// Start `w.clients` clients, client `c` on `targets[c % len]`.
    pub fn start(w: &Workload, targets: &[Target], history: Arc<History>) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..w.clients)
            .map(|c| {
                let target = targets[c % targets.len()].clone();
                let (w, h, s) = (w.clone(), history.clone(), stop.clone());
                std::thread::Builder::new()
                    .name(format!("nemesis-client-{c}"))
                    .spawn(move || client(c, &w, &target, &h, &s))
                    .expect("client thread starts")
            })
            .collect();
        Clients { stop, threads }
    }

    /// Stop every client after its current operation and wait for them.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("a client thread panicked");
        }
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
        _ if w.exists => (Kind::Exists, key),
        _ if roll % 2 == 0 => (Kind::Create, key),
        _ => (Kind::Remove, key),
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

fn client(id: usize, w: &Workload, t: &Target, h: &History, stop: &AtomicBool) {
    let mut rng = Rng::new(w.seed ^ (id as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut conn: Option<Conn> = None;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let (kind, key) = choose(&mut rng, w, id, seq);
        let call = h.now();
        let deadline = Instant::now() + w.timeout;
        let result = match conn.as_mut() {
            Some(c) => run(c, kind, &key, deadline),
            None => match Conn::connect(&t.addr, &t.aname, w.timeout.min(Duration::from_secs(1))) {
                Ok(mut c) => {
                    let r = run(&mut c, kind, &key, deadline);
                    conn = Some(c);
                    r
                }
                Err(e) => Err(e),
            },
        };
        let outcome = match result {
            Ok(v) => Outcome::Ok(v),
            Err(Failure::Unsent(e)) => Outcome::Failed(e),
            Err(Failure::Refused(e)) => refused(kind, e),
            Err(Failure::Lost(e)) => {
                conn = None;
                Outcome::Indeterminate(e)
            }
        };
        let unsent = matches!(outcome, Outcome::Failed(_)) && conn.is_none();
        h.record(Op {
            client: id,
            node: t.node,
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

fn run(c: &mut Conn, kind: Kind, key: &str, deadline: Instant) -> Result<bool, Failure> {
    match kind {
        Kind::Create => c.create(key, deadline),
        Kind::Remove => c.remove(key, deadline),
        Kind::Exists => c.exists(key, deadline),
        Kind::Append => {
            let path = format!("/chan/{APPEND_CHAN}/data");
            c.write(&path, format!("{key}\n").as_bytes(), deadline)
                .map(|()| true)
        }
    }
}
