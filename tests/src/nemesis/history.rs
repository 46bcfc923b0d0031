//! The history: every operation a client made, with when it was invoked,
//! when it returned and what it returned, recorded as it happens.

use std::fmt;
use std::sync::Mutex;
use std::time::Instant;

/// What an operation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `mkdir /chan/KEY`: true if it created the channel, false if it
    /// existed.
    Create,
    /// Remove `/chan/KEY`: true if it removed the channel, false if there
    /// was none.
    Remove,
    /// Walk to `/chan/KEY`: true if it exists.
    Exists,
    /// Write one message (KEY is its payload) to the append channel.
    Append,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Create => "create",
            Kind::Remove => "remove",
            Kind::Exists => "exists",
            Kind::Append => "append",
        })
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It returned this (for an append: `true`, acknowledged).
    Ok(bool),
    /// It failed in a way that says it changed nothing (it was never sent,
    /// or the node said so); the reason.
    Failed(String),
    /// Nobody knows whether it took effect (a timeout, a broken
    /// connection, a node saying it may or may not have applied); why.
    Indeterminate(String),
}

/// One operation of the history.
#[derive(Clone, Debug)]
pub struct Op {
    /// The client that made it (each makes one at a time).
    pub client: usize,
    /// The node (0-based) the client sent it to.
    pub node: usize,
    /// What it did.
    pub kind: Kind,
    /// The channel it named (the payload, for an append).
    pub key: String,
    /// When it was invoked, in nanoseconds since the run started.
    pub call: u64,
    /// When its outcome was known, in nanoseconds since the run started.
    pub ret: u64,
    /// How it ended.
    pub outcome: Outcome,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |ns: u64| ns as f64 / 1e6;
        write!(
            f,
            "[{:>10.3} ms .. {:>10.3} ms] client {:>2} via n{} {} {} -> ",
            ms(self.call),
            ms(self.ret),
            self.client,
            self.node + 1,
            self.kind,
            self.key
        )?;
        match &self.outcome {
            Outcome::Ok(v) => write!(f, "{v}"),
            Outcome::Failed(why) => write!(f, "failed ({why})"),
            Outcome::Indeterminate(why) => write!(f, "indeterminate ({why})"),
        }
    }
}

/// The history of one run, shared by the clients that record into it.
pub struct History {
    start: Instant,
    ops: Mutex<Vec<Op>>,
}

impl History {
    /// An empty history whose clock starts at `start`.
    pub fn new(start: Instant) -> History {
        History {
            start,
            ops: Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since the run started.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Record a finished operation.
    pub fn record(&self, op: Op) {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).push(op);
    }

    /// Every operation recorded so far, by invocation time.
    pub fn ops(&self) -> Vec<Op> {
        let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner()).clone();
        ops.sort_by_key(|o| o.call);
        ops
    }
}

/// Counts of operations by how they ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Returned a result.
    pub ok: usize,
    /// Failed, changing nothing.
    pub failed: usize,
    /// May or may not have taken effect.
    pub indeterminate: usize,
}

impl Tally {
    /// Count `ops` (of every kind for which `keep` holds).
    pub fn of(ops: &[Op], keep: impl Fn(&Op) -> bool) -> Tally {
        let mut t = Tally::default();
        for o in ops.iter().filter(|o| keep(o)) {
            match o.outcome {
                Outcome::Ok(_) => t.ok += 1,
                Outcome::Failed(_) => t.failed += 1,
                Outcome::Indeterminate(_) => t.indeterminate += 1,
            }
        }
        t
    }

    /// All of them.
    pub fn total(&self) -> usize {
        self.ok + self.failed + self.indeterminate
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} ok, {} failed, {} indeterminate)",
            self.total(),
            self.ok,
            self.failed,
            self.indeterminate
        )
    }
}
