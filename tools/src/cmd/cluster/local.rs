//! A Raft cluster of `cell0 serve` processes on this machine: started in
//! the order a cluster can form in, watched, and stopped together.
//!
//! A fresh cluster forms one node at a time: node 1 starts a cluster of
//! one, and each other node joins through node 1 (`--join`, with node 1's
//! owner token) once the node before it is a member, because the cluster
//! takes one membership change at a time. A swarm's nodes join as
//! learners (the leader adds them, one by one, on its own), so they start
//! in batches side by side. A restart is different: nodes
//! that hold a log are members already and none of them can commit
//! anything until a majority is back, so they all start at once, and only
//! the nodes that never joined (a cluster grown with a larger N) join
//! afterwards.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::layout::{Layout, NodeSpec, holds_log};
use super::status::RaftStatus;
use crate::cmd::child::{Running, WAIT, own_group_dies_with_us, stop_all, wait_until};
use crate::identity::{ClientToken, owner_token_path};

/// How many nodes join a swarm side by side.
const JOIN_BATCH: usize = 10;

/// Running nodes of one cluster, stopped (all together) when dropped.
pub struct LocalCluster {
    layout: Layout,
    /// In a swarm (gossiping on each node's Raft port over UDP), the
    /// voters it wants; `None`: every node a voter, no gossip.
    swarm: Option<u8>,
    /// One per node started so far, in the layout's order.
    children: Vec<Running>,
    /// Which exits [`LocalCluster::exits`] has reported.
    reported: Vec<bool>,
    /// Node 1's owner token, which every member accepts.
    token: PathBuf,
    /// Environment variables every node starts with (a test hook such as
    /// `CELL0_GOSSIP_LOSS`), on top of this process's own.
    env: Vec<(String, String)>,
}

impl LocalCluster {
    /// Start the nodes of `layout` and return once every node is a member
    /// and knows its leader. Nothing is left running on an error. With
    /// `swarm` (the voters wanted), the nodes form a swarm (swarm(3)):
    /// they gossip, and the others join node 1's as learners, of which
    /// the leader makes voters up to that count.
    pub fn start(layout: &Layout, swarm: Option<u8>) -> anyhow::Result<LocalCluster> {
        LocalCluster::start_with_env(layout, swarm, &[])
    }

    /// As [`LocalCluster::start`], with `env` set in every node's
    /// environment (and again in a node's after [`LocalCluster::restart`]).
    pub fn start_with_env(
        layout: &Layout,
        swarm: Option<u8>,
        env: &[(String, String)],
    ) -> anyhow::Result<LocalCluster> {
        std::fs::create_dir_all(&layout.dir)
            .with_context(|| format!("creating {}", layout.dir.display()))?;
        for n in &layout.nodes {
            for (what, addr) in [("9P", &n.addr), ("raft", &n.raft)] {
                if std::net::TcpStream::connect(addr).is_ok() {
                    bail!(
                        "something already listens on {addr}, node {}'s {what} address \
                         (a cluster already up?); stop it, or pick other ports",
                        n.id
                    );
                }
            }
        }
        let members: Vec<bool> = layout.nodes.iter().map(|n| holds_log(&n.data)).collect();
        if !members[0]
            && let Some(n) = layout.nodes.iter().zip(&members).find(|(_, m)| **m)
        {
            bail!(
                "{} holds node {}'s log but {} holds none for node 1, which would start a new \
                 cluster without it; restore node 1's data, or remove {} to start afresh",
                n.0.data.display(),
                n.0.id,
                layout.nodes[0].data.display(),
                layout.dir.display()
            );
        }
        let mut cluster = LocalCluster {
            layout: layout.clone(),
            swarm,
            children: Vec::new(),
            reported: Vec::new(),
            token: owner_token_path(&layout.nodes[0].data),
            env: env.to_vec(),
        };
        // Node 1, and every node that is a member already, side by side.
        let (restarting, joining): (Vec<&NodeSpec>, Vec<&NodeSpec>) = layout
            .nodes
            .iter()
            .partition(|n| n.id == 1 || holds_log(&n.data));
        for n in &restarting {
            cluster.spawn(n, false)?;
        }
        for (i, n) in restarting.iter().enumerate() {
            let data = n.data.clone();
            let addr = n.addr.clone();
            cluster.wait(i, n, || serves(&addr, &data))?;
        }
        if swarm.is_some() {
            // A swarm admits joiners as learners, which takes no joint
            // configuration: they may join side by side, a batch at a
            // time so that a hundred do not start on two cores at once.
            for batch in joining.chunks(JOIN_BATCH) {
                let started: Vec<usize> = batch
                    .iter()
                    .map(|n| cluster.spawn(n, true))
                    .collect::<anyhow::Result<_>>()?;
                for (&i, n) in started.iter().zip(batch) {
                    let (data, addr) = (n.data.clone(), n.addr.clone());
                    cluster.wait(i, n, || serves(&addr, &data))?;
                }
            }
            cluster.wait_formed()?;
            return Ok(cluster);
        }
        for n in joining {
            let i = cluster.spawn(n, true)?;
            let want = n.id;
            cluster.wait(i, n, || {
                // Members are added in id order, so node I joined when
                // the cluster counts I of them (more after a shrink).
                cluster_status_ok(&layout.nodes[0].addr, &cluster_token(layout), |s| {
                    s.number("members") >= want
                })
            })?;
        }
        cluster.wait_formed()?;
        Ok(cluster)
    }

    /// The nodes, node 1 first.
    pub fn nodes(&self) -> &[NodeSpec] {
        &self.layout.nodes
    }

    /// Node 1's owner token: every member accepts it, since the keys that
    /// check tokens come from the committed membership.
    pub fn token(&self) -> &Path {
        &self.token
    }

    /// `/raft/status` of node `id`, read with [`LocalCluster::token`].
    pub fn status(&self, id: u64) -> anyhow::Result<RaftStatus> {
        let n = self.node(id)?;
        RaftStatus::read(&n.addr, &self.client_token()?)
    }

    /// The node that leads now, as node 1 sees it.
    pub fn leader(&self) -> anyhow::Result<&NodeSpec> {
        let id = self.status(1)?.number("leader");
        self.node(id)
            .with_context(|| format!("node 1 names no leader (leader {id})"))
    }

    /// Nodes that exited since the last call, with their exit statuses.
    pub fn exits(&mut self) -> Vec<(u64, ExitStatus)> {
        let mut out = Vec::new();
        for (i, c) in self.children.iter_mut().enumerate() {
            if !self.reported[i]
                && let Some(s) = c.exited()
            {
                self.reported[i] = true;
                out.push((self.layout.nodes[i].id, s));
            }
        }
        out
    }

    /// Whether any node is still running.
    pub fn any_running(&mut self) -> bool {
        self.children.iter_mut().any(|c| c.exited().is_none())
    }

    /// The process id of node `id`, while it runs.
    pub fn pid(&mut self, id: u64) -> Option<u32> {
        let i = self.index(id).ok()?;
        let c = &mut self.children[i];
        c.exited().is_none().then(|| c.child.id())
    }

    /// SIGKILL node `id` and reap it: a crash, with no chance to leave
    /// the swarm. Its exit is not reported by [`LocalCluster::exits`].
    pub fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        let i = self.index(id)?;
        self.children[i].kill();
        self.reported[i] = true;
        Ok(())
    }

    /// Start node `id` again after it exited (or was killed), from the
    /// same data directory with the same flags and environment; it holds
    /// its log, so it rejoins by itself. Returns once it serves 9P.
    pub fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        let i = self.index(id)?;
        anyhow::ensure!(
            self.children[i].exited().is_some(),
            "node {id} is still running; kill it before restarting it"
        );
        let n = self.layout.nodes[i].clone();
        // A node that never got as far as holding a log joins as it did.
        let child = self.command(&n, !holds_log(&n.data))?;
        self.children[i] = child;
        self.reported[i] = false;
        let (addr, data) = (n.addr.clone(), n.data.clone());
        self.wait(i, &n, || serves(&addr, &data))
    }

    /// Start one more node, `n` (not in the layout yet), joining through
    /// node 1; returns once it serves 9P (a member, with a leader).
    pub fn join(&mut self, n: NodeSpec) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.node(n.id).is_err(),
            "node {} is in this cluster already",
            n.id
        );
        self.layout.nodes.push(n.clone());
        let i = self.spawn(&n, true)?;
        let (addr, data) = (n.addr.clone(), n.data.clone());
        self.wait(i, &n, || serves(&addr, &data))
    }

    /// Stop every node (SIGTERM to all, then wait); their exit statuses,
    /// node 1 first.
    pub fn stop(&mut self) -> Vec<Option<ExitStatus>> {
        stop_all(&mut self.children)
    }

    fn node(&self, id: u64) -> anyhow::Result<&NodeSpec> {
        self.layout
            .nodes
            .iter()
            .find(|n| n.id == id)
            .ok_or_else(|| anyhow::anyhow!("no node {id} in this cluster"))
    }

    fn index(&self, id: u64) -> anyhow::Result<usize> {
        self.layout
            .nodes
            .iter()
            .position(|n| n.id == id)
            .filter(|&i| i < self.children.len())
            .ok_or_else(|| anyhow::anyhow!("no node {id} started in this cluster"))
    }

    fn client_token(&self) -> anyhow::Result<ClientToken> {
        ClientToken::resolve(Some(&self.token), None)
    }

    /// Start node `n` (joining through node 1 if `join`); its index.
    fn spawn(&mut self, n: &NodeSpec, join: bool) -> anyhow::Result<usize> {
        let child = self.command(n, join)?;
        self.children.push(child);
        self.reported.push(false);
        Ok(self.children.len() - 1)
    }

    /// Start node `n`'s process (joining through node 1 if `join`).
    fn command(&self, n: &NodeSpec, join: bool) -> anyhow::Result<Running> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)
            .with_context(|| format!("opening {}", n.log.display()))?;
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.args(["serve", "--id", &n.id.to_string(), "--raft", &n.raft])
            .args(["--listen", &n.addr, "--data"])
            .arg(&n.data)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(voters) = self.swarm {
            cmd.args(["--swarm", &n.raft, "--voters", &voters.to_string()]);
        }
        if join {
            cmd.args(["--join", &self.layout.nodes[0].addr, "--join-token"])
                .arg(&self.token);
        }
        let child = own_group_dies_with_us(
            cmd.stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log),
        )
        .spawn()
        .with_context(|| format!("starting node {}", n.id))?;
        Ok(Running {
            what: "node",
            child,
        })
    }

    /// Wait for `ready` while child `i` (node `n`) runs; on failure, say
    /// which node and show the end of its log.
    fn wait(&mut self, i: usize, n: &NodeSpec, ready: impl FnMut() -> bool) -> anyhow::Result<()> {
        wait_until(&mut self.children[i], WAIT, ready).map_err(|e| {
            anyhow::anyhow!(
                "node {}: {e:#}\n{} ends with:\n{}",
                n.id,
                n.log.display(),
                log_tail(&n.log)
            )
        })
    }

    /// Wait until node 1 counts every node of the layout as a member and
    /// every node names a leader, so a write on any node goes through.
    fn wait_formed(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + WAIT;
        let want = self.layout.nodes.len() as u64;
        let token = self.client_token()?;
        loop {
            let formed = cluster_status_ok(&self.layout.nodes[0].addr, &token, |s| {
                s.number("members") >= want
            }) && self
                .layout
                .nodes
                .iter()
                .all(|n| cluster_status_ok(&n.addr, &token, |s| s.number("leader") != 0));
            if formed {
                return Ok(());
            }
            if let Some((id, status)) = self.exits().into_iter().next() {
                let n = self.node(id)?;
                bail!(
                    "node {id} exited ({status}) while the cluster formed\n{} ends with:\n{}",
                    n.log.display(),
                    log_tail(&n.log)
                );
            }
            if Instant::now() > deadline {
                // The likely cause when restarting: a cluster grown
                // larger earlier, whose majority these nodes are not.
                // (A restarted node's /raft/status counts no members
                // until it applies its log again, so the directory tells.)
                let more = (want as usize + 1..=super::layout::MAX_NODES)
                    .filter(|j| holds_log(&self.layout.dir.join(format!("node{j}"))))
                    .count();
                let hint = if more > 0 {
                    let all = want as usize + more;
                    format!(
                        ": {} holds {more} more nodes' logs, so these {want} may be no majority of \
                         their cluster; start them all (cell0 cluster up {all})",
                        self.layout.dir.display()
                    )
                } else {
                    String::new()
                };
                bail!(
                    "the cluster did not form within {WAIT:?} (every node a member, with a leader){hint}; \
                     see the nodes' logs in {}",
                    self.layout.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Node 1's owner token as a client presents it, if it is there yet.
fn cluster_token(layout: &Layout) -> ClientToken {
    ClientToken::resolve(Some(&owner_token_path(&layout.nodes[0].data)), None).unwrap_or_default()
}

/// Whether the node at `addr` answers `/raft/status` and `ok` holds of it.
fn cluster_status_ok(addr: &str, token: &ClientToken, ok: impl Fn(&RaftStatus) -> bool) -> bool {
    RaftStatus::read(addr, token).is_ok_and(|s| ok(&s))
}

/// Whether the node with data in `data` serves 9P at `addr` to its own
/// owner token (which it writes before it listens).
fn serves(addr: &str, data: &Path) -> bool {
    ClientToken::resolve(None, Some(data))
        .is_ok_and(|t| t.text.is_some() && RaftStatus::read(addr, &t).is_ok())
}

/// The last lines of a node's log, for an error message.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}
