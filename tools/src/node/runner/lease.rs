//! The node's lease, watched for the runner (see agent(3) PLACEMENT).
//!
//! In a swarm, a runner may run the agents placed on its node only while
//! its node holds a lease from the log's leader; the leader places them
//! elsewhere only once that lease is surely over. So the runner must
//! stop them before the lease ends, whatever its own loop is doing (a
//! read of the tree can wait seconds when the node is cut off).
//!
//! One thread reads `/swarm/status` a few times a second; another keeps
//! the deadline (the time the read was *sent*, plus the lease left,
//! less a slack) and, when it passes without a new reading, kills every
//! agent through the supervisor's [`Killer`] and tells the loop. The
//! loop starts a placed agent only under the [`Gate`]'s lock and while
//! the lease is held, so no start slips in after the kill.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cell0_agents::Killer;

use super::Notice;
use super::agentfs::Sessions;
use super::tree::Tree;
use crate::client::ClientError;

/// How often the lease is read.
const READ_EVERY: Duration = Duration::from_millis(150);
/// Taken off the lease the node reports: the loop's wake-up and the
/// kill must fall within the leader's margin, not after it.
const SLACK: Duration = Duration::from_millis(100);

/// What the runner knows of its node's lease.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Standing {
    /// Whether the node has been read yet: until then the runner does
    /// not know whether agents are placed or claimed, and starts none.
    pub known: bool,
    /// The node's id in its swarm (`None`: it runs no swarm, and agents
    /// are claimed, not placed).
    pub me: Option<u64>,
    /// Whether agents placed on it may run now.
    pub held: bool,
}

/// The lease as the loop and the watchdog share it.
#[derive(Clone, Default)]
pub struct Gate(Arc<Mutex<Standing>>);

impl Gate {
    /// Hold the gate (briefly: the watchdog waits for it to kill).
    pub fn lock(&self) -> MutexGuard<'_, Standing> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One reading of `/swarm/status`.
struct Reading {
    /// The node refused the read: no swarm as far as this runner can
    /// tell, unless it has seen one (then it is only a read that failed:
    /// a node cut off cannot serve it).
    refused: bool,
    sent: Instant,
    me: Option<u64>,
    /// The lease left (`None`: the log has no leases).
    lease: Option<Duration>,
}

/// `node` and `lease` of a `/swarm/status` text.
fn parse(text: &str, sent: Instant) -> Reading {
    let mut r = Reading {
        refused: false,
        sent,
        me: None,
        lease: None,
    };
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("node", v)) => r.me = v.parse().ok(),
            Some(("lease", v)) => {
                r.lease = v
                    .strip_suffix("ms")
                    .and_then(|ms| ms.parse().ok())
                    .map(Duration::from_millis)
            }
            _ => {}
        }
    }
    r
}

/// Watch the lease of the node behind `tree`; kill through `killer` and
/// tell the loop (`tx`) when it is lost or held again.
pub fn watch(
    tree: Tree,
    gate: Gate,
    killer: Killer,
    sessions: Sessions,
    tx: Sender<Notice>,
) -> std::io::Result<()> {
    let (rtx, rrx) = mpsc::channel::<Reading>();
    std::thread::Builder::new()
        .name("cell0-runner-lease-read".into())
        .spawn(move || {
            loop {
                let sent = Instant::now();
                let reading = match tree.client().read_file("/swarm/status") {
                    Ok(bytes) => Some(parse(&String::from_utf8_lossy(&bytes), sent)),
                    // Refused (a capability that does not reach /swarm,
                    // a node without it): as far as this runner can tell
                    // the node is in no swarm, and it claims agents.
                    Err(
                        ClientError::Server(_)
                        | ClientError::Errno(_)
                        | ClientError::Refused { .. }
                        | ClientError::NotFound(_),
                    ) => Some(Reading {
                        refused: true,
                        sent,
                        me: None,
                        lease: None,
                    }),
                    // Not answered: no reading, and the deadline nears.
                    Err(_) => None,
                };
                if let Some(r) = reading
                    && rtx.send(r).is_err()
                {
                    return;
                }
                std::thread::sleep(READ_EVERY);
            }
        })?;
    std::thread::Builder::new()
        .name("cell0-runner-lease".into())
        .spawn(move || {
            let mut deadline: Option<Instant> = None;
            loop {
                let wait = deadline.map_or(Duration::from_secs(1), |d| {
                    d.saturating_duration_since(Instant::now())
                });
                let change = match rrx.recv_timeout(wait) {
                    Ok(r) if r.refused && gate.lock().me.is_some() => None,
                    Ok(r) => {
                        let mut st = gate.lock();
                        let before = *st;
                        st.known = true;
                        st.me = r.me;
                        match (r.me, r.lease) {
                            // No swarm, or no leases: nothing is placed.
                            (None, _) | (_, None) => {
                                deadline = None;
                                st.held = true;
                            }
                            (Some(_), Some(left)) => {
                                let until = (r.sent + left).checked_sub(SLACK);
                                if until.is_some_and(|u| u > Instant::now()) {
                                    deadline = until;
                                    st.held = true;
                                }
                            }
                        }
                        (*st != before).then_some(*st)
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        let due = deadline.is_some_and(|d| Instant::now() >= d);
                        let mut st = gate.lock();
                        if due && st.held {
                            st.held = false;
                            deadline = None;
                            let killed = killer.kill_all();
                            // A program blocked in a request on its mount
                            // dies only once the request is answered.
                            sessions.shut_all();
                            if !killed.is_empty() {
                                eprintln!(
                                    "cell0 runner: node {} lost its lease; killed its agents ({})",
                                    st.me.map_or_else(|| "-".to_string(), |m| m.to_string()),
                                    killed.join(", ")
                                );
                            }
                            Some(*st)
                        } else {
                            None
                        }
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                };
                if let Some(st) = change
                    && tx.send(Notice::Lease(st)).is_err()
                {
                    return;
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_give_the_node_and_its_lease() {
        let now = Instant::now();
        let r = parse(
            "swarm ab\nnode 3\nincarnation 0\nlease 1450ms\nvoters 1\n",
            now,
        );
        assert_eq!(r.me, Some(3));
        assert_eq!(r.lease, Some(Duration::from_millis(1450)));
        let r = parse("swarm none\nnode none\nlease -\n", now);
        assert_eq!((r.me, r.lease), (None, None));
    }
}
