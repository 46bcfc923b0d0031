//! Agents on the swarm, and the check that no agent runs twice.
//!
//! Every node runs a swarm (its `Vantage` has `me` set, with the same
//! swarm id and as many voters as the cluster has nodes), so each joins
//! it by itself through the log. Their gossip views stay empty: every
//! other member's liveness is unknown, so the leader's healing changes
//! nothing in the log's membership (it replaces only voters it sees dead,
//! promotes only learners it sees alive, and the voter count already is
//! what the swarm wants), and fences are all `lease-lost`.
//!
//! Before the faults begin, a client makes [`AGENTS`] agents through 9P
//! (`mkdir /agent/aN`, then `exec /bin/true` and `start` on its ctl), one
//! at a time on a connection of its own, once every node joined.
//!
//! A model runner on each node, evaluated after every step: node X runs
//! agent A iff X is up, X's lease (`lease_ms`) is above 0, X's applied
//! state has A wanted running and placed on X, and that state is at least
//! as fresh as a linearizable read begun when X last gained its lease
//! (the real runner reads its agents' specs afresh, linearizably, when
//! its lease comes back, and the lease design counts on it: see the
//! Raft replica's `lease` module). That is otherwise the worst case for
//! overlap: it starts at once, where a real runner needs a committed
//! claim first (for an agent it did not run before), and kills a little
//! before its lease ends. Checked after every step: no agent is run by
//! two nodes at once (see [`Sim::check_copies`], also for the allowance
//! made for clock leaps). Checked at the end, once the faults stopped
//! and the cluster settled: every agent is run by exactly one node,
//! within 30 simulated seconds.

use std::collections::BTreeSet;

use cellfs::ConnId;
use cellfs::agent::Want;
use cellfs::vantage::{Me, Vantage};
use ninep::{Body, Names};

use super::{Sim, kind, tag_of};
use crate::SimLog;

/// How many agents the client makes.
pub const AGENTS: usize = 4;

/// The tag of the mkdir of an agent.
const MKDIR_TAG: u16 = 21;
/// The tag of the write of `exec` and `start` to its ctl.
const START_TAG: u16 = 22;

/// The agents, as the client made them and the nodes ran them.
#[derive(Default)]
pub struct Fleet {
    /// The client's connection (node index, life, connection).
    pub conn: Option<(usize, u64, ConnId)>,
    /// Agents made and started so far (a0, a1, ...).
    pub made: usize,
    /// The client's mkdir of the current agent was answered.
    mkdir_done: bool,
    /// Per agent: the node ids that ran it after the last step.
    runs: Vec<Vec<u64>>,
    /// Per agent: the highest epoch any node applied.
    epochs: Vec<u64>,
    /// Per node (index), its runner's read (see [`Sim::check_copies`]).
    read: Vec<Read>,
    /// The nodes (ids) whose lease a leader whose clock leapt in office
    /// called over while they still held it (see `Sim::check_leases`),
    /// and that have held a lease ever since.
    pub leapt: BTreeSet<u64>,
}

/// A runner's read of its agents when its node gains its lease.
#[derive(Clone, Copy, Debug, Default)]
struct Read {
    /// The node held a lease after the last step.
    held: bool,
    /// The read waits for this commit index and this index of the last
    /// command applied (the highest on any node when it began).
    commit: u64,
    applied: u64,
    /// The node has applied that much since: the read is done.
    done: bool,
}

/// Per agent, the nodes that run it: (node id, epoch).
type Runs = Vec<Vec<(u64, u64)>>;

/// An agent's name.
fn name(k: usize) -> String {
    format!("a{k}")
}

impl<R: SimLog> Sim<R> {
    /// Node `i`'s vantage: it runs a swarm, sees nobody else.
    pub(super) fn vantage(&self, i: usize) -> Vantage {
        let id = self.nodes[i].id;
        Vantage {
            me: Some(Me {
                id,
                addr: format!("n{id}:564"),
                gossip: format!("n{id}:7946"),
                raft: format!("n{id}:7000"),
                swarm: [1; 16],
                voters: self.nodes.len() as u8,
                capacity: None,
            }),
            ..Vantage::default()
        }
    }

    /// Every node joined the swarm, as some node up has applied.
    fn swarm_full(&self) -> bool {
        self.nodes.iter().any(|n| {
            n.server
                .as_ref()
                .is_some_and(|s| s.state().swarm.nodes.len() == self.nodes.len())
        })
    }

    /// Whether every agent is made and started.
    pub(super) fn agents_made(&self) -> bool {
        !self.swarm || self.fleet.made == AGENTS
    }

    /// Make the next agent, pipelined on a connection of its own: walk to
    /// /agent and make it (its answer under MKDIR_TAG: made, or there
    /// already); then [`Sim::start_agent`].
    pub(super) fn make_agents(&mut self) {
        if self.agents_made()
            || self.fleet.conn.is_some()
            || self.now % 50 > 5
            || !self.swarm_full()
        {
            return;
        }
        let Some((i, conn)) = self.attach_anywhere() else {
            return;
        };
        self.fleet.conn = Some((i, self.nodes[i].life, conn));
        self.fleet.mkdir_done = false;
        let a = name(self.fleet.made);
        self.send(
            i,
            conn,
            2,
            Body::Twalk {
                fid: 0,
                newfid: 1,
                wnames: Names::from_slice(&["agent"]).expect("names"),
            },
        );
        self.send(
            i,
            conn,
            MKDIR_TAG,
            Body::Tcreate {
                fid: 1,
                name: &a,
                perm: ninep::stat::DMDIR | 0o755,
                mode: 0,
                extension: Some(""),
            },
        );
    }

    /// The agent is made: walk to its ctl, open it and write `exec` and
    /// `start` (the answer under START_TAG decides).
    fn start_agent(&mut self) {
        let Some((i, _, conn)) = self.fleet.conn else {
            return;
        };
        let a = name(self.fleet.made);
        self.send(
            i,
            conn,
            3,
            Body::Twalk {
                fid: 0,
                newfid: 2,
                wnames: Names::from_slice(&["agent", a.as_str(), "ctl"]).expect("names"),
            },
        );
        self.send(i, conn, 4, Body::Topen { fid: 2, mode: 1 });
        self.send(
            i,
            conn,
            START_TAG,
            Body::Twrite {
                fid: 2,
                offset: 0,
                data: b"exec /bin/true\nstart\n",
            },
        );
    }

    /// A reply on the agent client's connection.
    pub(super) fn agent_reply(&mut self, f: &[u8]) {
        let k = kind(f);
        let a = name(self.fleet.made);
        match tag_of(f) {
            MKDIR_TAG => {
                self.say(|| format!("agents: mkdir /agent/{a}: {k}"));
                self.fleet.mkdir_done = k == "Rcreate" || k.contains("already exists");
                if self.fleet.mkdir_done {
                    self.start_agent();
                } else {
                    self.end_agent_conn();
                }
            }
            START_TAG => {
                self.say(|| format!("agents: exec and start {a}: {k}"));
                if k == "Rwrite" && self.fleet.mkdir_done {
                    self.fleet.made += 1;
                }
                self.end_agent_conn();
            }
            _ => {}
        }
    }

    /// The agent client is done with its connection (it makes a new one
    /// for the next agent, or to try again).
    fn end_agent_conn(&mut self) {
        if let Some((i, life, conn)) = self.fleet.conn.take()
            && self.nodes[i].life == life
            && let Some(s) = self.nodes[i].server.as_mut()
        {
            let mut out = cellfs::Outbox::new();
            s.disconnect(conn, &mut out);
        }
    }

    /// The runners' reads: a node that holds a lease and did not at the
    /// last step (or is new in its life) reads its agents now, so it runs
    /// nothing until it applied what was committed anywhere now.
    fn runners_read(&mut self) {
        self.fleet.read.resize(self.nodes.len(), Read::default());
        let mut gained = Vec::new();
        for (i, (n, read)) in self.nodes.iter().zip(&mut self.fleet.read).enumerate() {
            let held = n
                .server
                .as_ref()
                .is_some_and(|s| s.log().sim_lease_ms() > 0);
            if held && !read.held {
                gained.push(i);
            }
            if !held {
                self.fleet.leapt.remove(&n.id);
            }
            read.held = held;
        }
        if !gained.is_empty() {
            let up = || self.nodes.iter().filter_map(|n| n.server.as_ref());
            let commit = up().map(|s| s.log().status().commit).max().unwrap_or(0);
            let applied = up().map(|s| s.state().applied).max().unwrap_or(0);
            for i in gained {
                self.fleet.read[i] = Read {
                    held: true,
                    commit,
                    applied,
                    done: false,
                };
            }
        }
        for (n, read) in self.nodes.iter().zip(&mut self.fleet.read) {
            if let Some(s) = n.server.as_ref()
                && read.held
                && !read.done
            {
                read.done =
                    s.log().status().commit >= read.commit && s.state().applied >= read.applied;
            }
        }
    }

    /// Which nodes run each agent now, by the model runner, as (node id,
    /// epoch): those whose runner read its agents since it last gained
    /// its lease; then the same for the instant runner that acts on
    /// whatever its node applied; and the highest epoch each agent has on
    /// any node up.
    fn runners(&self) -> (Runs, Runs, Vec<u64>) {
        let mut runs = vec![Vec::new(); AGENTS];
        let mut instant = vec![Vec::new(); AGENTS];
        let mut epochs = vec![0; AGENTS];
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(s) = n.server.as_ref() else {
                continue;
            };
            let lease = s.log().sim_lease_ms() > 0;
            let read = self.fleet.read.get(i).is_some_and(|r| r.done);
            for k in 0..AGENTS {
                let Some(a) = s.state().agents.by_name(&name(k)) else {
                    continue;
                };
                epochs[k] = epochs[k].max(a.epoch);
                if lease
                    && a.want == Want::Running
                    && let Some(p) = a.placed
                    && p.node == n.id
                {
                    instant[k].push((n.id, p.epoch));
                    if read {
                        runs[k].push((n.id, p.epoch));
                    }
                }
            }
        }
        (runs, instant, epochs)
    }

    /// No agent is run by two nodes at once.
    ///
    /// The read: a node may get its lease back (after a partition, or a
    /// restart) before it has applied the fence that moved its agents
    /// away: the lease rides on the leader's appends, which may reach it
    /// before the entries it lacks (or a snapshot) do. A runner that
    /// acted on its node's applied state then would run the old
    /// placement again while the new node runs the agent. The real
    /// runner reads its agents again when its lease comes back, and
    /// reads are linearizable: they wait until the node applied every
    /// entry committed when they began, which includes the fence (the
    /// leader grants the fenced node a lease again only once it has
    /// applied the fence, and a new leader only once it has committed an
    /// entry of its own term, after the fence). So the model runner runs
    /// nothing until its node applied what any node had committed when
    /// the lease came back. How often the instant runner would have run
    /// two copies is counted in `Stats::copies_unread`, not checked.
    ///
    /// Clock leaps: a leader whose clock leapt ahead while in office may
    /// call a peer's lease over up to that leap early (see
    /// `Sim::check_leases`, which allows for exactly that and notes such
    /// a peer in `Fleet::leapt`). The fence that follows may then place
    /// the peer's agents elsewhere while it still runs them; and once the
    /// fence is applied the leader grants the peer leases again, so if
    /// they come before its old lease ran out, the peer never lost its
    /// lease, never read its agents again, and runs the old placement
    /// until it applies the fence itself (which, lagging, it may do only
    /// much later). So two copies are allowed, and counted in
    /// `Stats::copies_leapt`, when every runner but the one of the newest
    /// epoch is such a peer that has held a lease ever since its early
    /// call; in a run without leaps the check is exact.
    pub(super) fn check_copies(&mut self) -> Result<(), String> {
        if !self.swarm {
            return Ok(());
        }
        if self.fleet.runs.is_empty() {
            self.fleet.runs = vec![Vec::new(); AGENTS];
            self.fleet.epochs = vec![0; AGENTS];
        }
        self.runners_read();
        let (runs, instant, epochs) = self.runners();
        if instant
            .iter()
            .zip(&runs)
            .any(|(i, r)| i.len() > 1 && r.len() < 2)
        {
            self.stats.copies_unread += 1;
            if self.trace {
                let i = &instant;
                self.say(|| format!("an instant runner would run agents on {i:?}"));
            }
        }
        for k in 0..AGENTS {
            let e = epochs[k];
            let seen = &mut self.fleet.epochs[k];
            if e > *seen {
                if *seen > 0 {
                    self.stats.failovers += e - *seen;
                }
                *seen = e;
            }
            let ids: Vec<u64> = runs[k].iter().map(|r| r.0).collect();
            if ids != self.fleet.runs[k] {
                if self.trace {
                    let a = name(k);
                    let r = &runs[k];
                    self.say(|| format!("agent {a} runs on {r:?} (node, epoch)"));
                }
                self.fleet.runs[k] = ids;
            }
            if runs[k].len() < 2 {
                continue;
            }
            self.stats.copies_seen += 1;
            let newest = runs[k].iter().map(|r| r.1).max().unwrap_or(0);
            let one_newest = runs[k].iter().filter(|r| r.1 == newest).count() == 1;
            let leapt = |id: u64| self.fleet.leapt.contains(&id);
            let excused = runs[k]
                .iter()
                .all(|&(id, epoch)| (epoch == newest && one_newest) || leapt(id));
            if excused {
                self.stats.copies_leapt += 1;
                if self.trace {
                    let (a, r) = (name(k), &runs[k]);
                    self.say(|| format!("agent {a} runs on {r:?}: allowed for a clock leap"));
                }
                continue;
            }
            let leases: Vec<(u64, u64)> = runs[k]
                .iter()
                .map(|&(id, _)| {
                    let s = self.nodes[(id - 1) as usize].server.as_ref();
                    (id, s.map_or(0, |s| s.log().sim_lease_ms()))
                })
                .collect();
            return Err(format!(
                "two copies: agent {} runs on {:?} (node, epoch) at once; leases left {:?} (node, ms)",
                name(k),
                runs[k],
                leases
            ));
        }
        Ok(())
    }

    /// After the faults stopped and the cluster settled: every agent is
    /// run by exactly one node, within 30 simulated seconds.
    pub(super) fn agents_settle(&mut self) -> Result<(), String> {
        if !self.swarm {
            return Ok(());
        }
        let deadline = self.now + 30_000;
        loop {
            let (runs, ..) = self.runners();
            if runs.iter().all(|r| r.len() == 1) {
                return Ok(());
            }
            if self.now > deadline {
                let mut s = String::from(
                    "liveness: agents not each run by exactly one node 30 s after the cluster settled:",
                );
                for (k, r) in runs.iter().enumerate() {
                    s.push_str(&format!(" {} on {r:?}", name(k)));
                }
                let applied: Vec<u64> = self
                    .nodes
                    .iter()
                    .map(|n| n.server.as_ref().map_or(0, |s| s.state().applied))
                    .collect();
                s.push_str(&format!(
                    "; runners' reads {:?}, applied {applied:?}",
                    self.fleet.read
                ));
                return Err(self.stuck(&s));
            }
            self.step()?;
        }
    }
}
