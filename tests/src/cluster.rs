//! A Raft cluster of real `cell0 serve` nodes on loopback, and the few
//! reads and writes the cluster tests make through `cell0`.

use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{Node, free_addr};

/// The value of `key` in a `key value` status text.
pub fn field(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
        .map(|v| v.trim().to_string())
}

/// `cat PATH` on `node` with `token`.
pub fn cat(node: &Node, token: &str, path: &str) -> Option<String> {
    let (ok, out, _) = node.cell0(&["cat", path, "--token", token]);
    ok.then_some(out)
}

/// `cell0 write PATH TEXT` on `node` with `token`; the error text if it
/// failed.
pub fn write(node: &Node, token: &str, path: &str, text: &str) -> Result<(), String> {
    let (ok, _, err) = node.cell0(&["write", path, text, "--token", token]);
    if ok { Ok(()) } else { Err(err) }
}

/// Wait until `cond` holds, failing with `what` after `secs`; how long
/// it took.
pub fn wait(what: &str, secs: u64, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// The index of `/proof/head` on `node`.
pub fn head(node: &Node, token: &str) -> Option<u64> {
    cat(node, token, "/proof/head").and_then(|t| field(&t, "index")?.parse().ok())
}

/// A number from `node`'s `/chan/NAME/status`.
pub fn chan_count(node: &Node, token: &str, chan: &str, key: &str) -> Option<u64> {
    let s = cat(node, token, &format!("/chan/{chan}/status"))?;
    field(&s, key)?.parse().ok()
}

/// Nodes 1..=N of one cluster; a slot is empty while its node is down.
pub struct Cluster {
    /// The nodes, by raft id - 1.
    pub nodes: Vec<Option<Node>>,
    /// Each node's raft transport address.
    pub raft: Vec<String>,
    /// The owner token of node 1 (admin over every node), kept outside
    /// any node's data directory so that nodes may be killed or wiped.
    pub token: String,
    /// In a swarm (each node gossiping on its Raft port, over UDP): the
    /// voters wanted.
    pub swarm: Option<u8>,
    _keep: TempDir,
}

/// The file whose existence cuts node `i` off (see [`Cluster::cut`]).
fn cut_file(keep: &std::path::Path, i: usize) -> String {
    keep.join(format!("cut-{}", i + 1))
        .to_string_lossy()
        .into_owned()
}

impl Cluster {
    /// Start node 1 alone, then join `n - 1` more through it, and wait
    /// until node 1 lists all `n` members.
    pub fn start(n: usize) -> Cluster {
        Cluster::start_as(n, None)
    }

    /// [`Cluster::start`] as a swarm that wants `voters` voters (swarm(3)):
    /// node 1 founds it, the others join as learners, and the leader
    /// promotes them until there are that many voters.
    pub fn start_swarm(n: usize, voters: u8) -> Cluster {
        Cluster::start_as(n, Some(voters))
    }

    fn start_as(n: usize, swarm: Option<u8>) -> Cluster {
        let raft: Vec<String> = (0..n).map(|_| free_addr()).collect();
        let mut flags = vec!["--id", "1", "--raft", &raft[0]];
        let voters = swarm.map(|v| v.to_string()).unwrap_or_default();
        if swarm.is_some() {
            flags.extend(["--swarm", &raft[0], "--voters", &voters]);
        }
        let keep = tempfile::tempdir().unwrap();
        let cut = cut_file(keep.path(), 0);
        let n1 = Node::start_with_env(
            tempfile::tempdir().unwrap(),
            None,
            &flags,
            &[("CELL0_PARTITION_FILE", &cut)],
        );
        let token = keep.path().join("cluster.token");
        std::fs::copy(n1.data().join("owner.token"), &token).unwrap();
        let mut c = Cluster {
            nodes: vec![Some(n1)],
            raft,
            token: token.to_str().unwrap().to_string(),
            swarm,
            _keep: keep,
        };
        for i in 1..n {
            let s = c.join(i, tempfile::tempdir().unwrap());
            c.nodes.push(Some(s));
        }
        let want = n.to_string();
        wait(&format!("{n} members"), 10, || {
            cat(c.node(0), &c.token, "/raft/status")
                .is_some_and(|s| field(&s, "members").as_deref() == Some(want.as_str()))
        });
        c
    }

    /// Start node `i` (raft id `i + 1`) in `dir` with `--join` through
    /// the first node that is up.
    pub fn join(&self, i: usize, dir: TempDir) -> Node {
        let id = (i + 1).to_string();
        let sponsor = self.nodes.iter().flatten().next().unwrap().addr.clone();
        let mut flags = vec![
            "--id",
            &id,
            "--raft",
            &self.raft[i],
            "--join",
            &sponsor,
            "--join-token",
            &self.token,
        ];
        if self.swarm.is_some() {
            flags.extend(["--swarm", &self.raft[i]]);
        }
        let cut = cut_file(self._keep.path(), i);
        Node::start_with_env(dir, None, &flags, &[("CELL0_PARTITION_FILE", &cut)])
    }

    /// Cut node `i` off from the others (its Raft frames and gossip are
    /// dropped both ways; its own clients still reach it), through the
    /// node's test hook (`CELL0_PARTITION_FILE`).
    pub fn cut(&self, i: usize) {
        std::fs::write(cut_file(self._keep.path(), i), b"cut\n").unwrap();
    }

    /// Join node `i` to the others again after [`Cluster::cut`].
    pub fn mend(&self, i: usize) {
        let _ = std::fs::remove_file(cut_file(self._keep.path(), i));
    }

    /// Node `i` (raft id `i + 1`), which must be up.
    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().unwrap()
    }

    /// The index of the node that `node(i)` names as leader.
    pub fn leader_seen_by(&self, i: usize) -> Option<usize> {
        let s = cat(self.node(i), &self.token, "/raft/status")?;
        Some(field(&s, "leader")?.parse::<usize>().ok()? - 1)
    }
}
