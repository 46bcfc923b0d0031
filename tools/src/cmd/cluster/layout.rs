//! Where the nodes of a local cluster live: their 9P and Raft addresses,
//! data directories and logs, decided before anything starts so that a
//! restart on the same directory finds every node where it was.

use std::path::{Path, PathBuf};

/// Most nodes `cell0 cluster up` starts: a swarm of a hundred (a few
/// voters, the rest learners), the default 9P and Raft ports side by side.
pub const MAX_NODES: usize = 100;

/// 9P port of node 1 by default; node I listens on this + I - 1. Clear of
/// `cell0 up` (5640) and `cell0 boot` (5641).
pub const DEFAULT_PORT: u16 = 5651;

/// Raft port of node 1 by default; node I listens on this + I - 1.
pub const DEFAULT_RAFT_PORT: u16 = 5751;

/// One node of a local cluster.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Its Raft id (1 for the node that starts the cluster).
    pub id: u64,
    /// Where it serves 9P.
    pub addr: String,
    /// Where its Raft transport listens; kept in the cluster's membership,
    /// so it must stay the same across restarts. In a swarm it gossips on
    /// the same port, over UDP.
    pub raft: String,
    /// Its data directory.
    pub data: PathBuf,
    /// Where its standard error goes.
    pub log: PathBuf,
}

/// The nodes of a cluster under one directory: node I keeps its data in
/// `DIR/nodeI` and its messages in `DIR/nodeI.log`.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The directory holding every node's data.
    pub dir: PathBuf,
    /// The nodes, node 1 first.
    pub nodes: Vec<NodeSpec>,
}

impl Layout {
    /// `n` nodes on `host`, node I serving 9P on `port + I - 1` and Raft
    /// on `raft_port + I - 1`.
    pub fn consecutive(
        n: usize,
        dir: &Path,
        host: &str,
        port: u16,
        raft_port: u16,
    ) -> anyhow::Result<Layout> {
        check_count(n)?;
        let last = |base: u16, what: &str| {
            base.checked_add(n as u16 - 1)
                .filter(|_| base > 0)
                .ok_or_else(|| anyhow::anyhow!("{what} {base}: {n} ports from there do not fit"))
        };
        last(port, "--port")?;
        last(raft_port, "--raft-port")?;
        let (lo, hi) = (port.min(raft_port), port.max(raft_port));
        anyhow::ensure!(
            hi - lo >= n as u16,
            "--port {port} and --raft-port {raft_port}: the 9P and Raft ports of {n} nodes overlap"
        );
        let addrs = (0..n as u16)
            .map(|i| {
                (
                    format!("{host}:{}", port + i),
                    format!("{host}:{}", raft_port + i),
                )
            })
            .collect();
        Ok(Layout::with_addrs(dir, addrs))
    }

    /// `n` nodes on loopback ports that were free a moment ago (for
    /// benchmarks and tests, which must not collide with anything).
    pub fn free_ports(n: usize, dir: &Path) -> anyhow::Result<Layout> {
        check_count(n)?;
        let mut free = crate::config::free_loopback_addrs(2 * n)?.into_iter();
        let addrs = (0..n)
            .map_while(|_| Some((free.next()?, free.next()?)))
            .collect();
        Ok(Layout::with_addrs(dir, addrs))
    }

    fn with_addrs(dir: &Path, addrs: Vec<(String, String)>) -> Layout {
        let nodes = addrs
            .into_iter()
            .enumerate()
            .map(|(i, (addr, raft))| NodeSpec {
                id: i as u64 + 1,
                addr,
                raft,
                data: dir.join(format!("node{}", i + 1)),
                log: dir.join(format!("node{}.log", i + 1)),
            })
            .collect();
        Layout {
            dir: dir.to_path_buf(),
            nodes,
        }
    }
}

fn check_count(n: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=MAX_NODES).contains(&n),
        "a local cluster has 1 to {MAX_NODES} nodes, not {n}"
    );
    Ok(())
}

/// Where `cell0 cluster up` keeps its nodes unless told otherwise:
/// `$XDG_DATA_HOME/cell0/cluster`, beside the single node's data.
pub fn default_dir() -> PathBuf {
    crate::config::default_data_dir().join("cluster")
}

/// Whether a node's data directory holds a Raft log: such a node is a
/// member already and restarts without joining.
pub fn holds_log(data: &Path) -> bool {
    std::fs::read_dir(data.join("raft").join("log")).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.path().extension().is_some_and(|x| x == "seg")
                && e.metadata().is_ok_and(|m| m.len() > 0)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_ports_number_the_nodes() {
        let l = Layout::consecutive(3, Path::new("/d"), "127.0.0.1", 5651, 5751).unwrap();
        let n3 = &l.nodes[2];
        assert_eq!(n3.id, 3);
        assert_eq!(n3.addr, "127.0.0.1:5653");
        assert_eq!(n3.raft, "127.0.0.1:5753");
        assert_eq!(n3.data, Path::new("/d/node3"));
        assert_eq!(n3.log, Path::new("/d/node3.log"));
    }

    #[test]
    fn bad_counts_and_overlapping_ports_are_refused() {
        let d = Path::new("/d");
        assert!(Layout::consecutive(0, d, "h", 5651, 5751).is_err());
        assert!(Layout::consecutive(101, d, "h", 5651, 5851).is_err());
        assert!(Layout::consecutive(100, d, "h", 5651, 5751).is_ok());
        assert!(Layout::consecutive(3, d, "h", 5651, 5652).is_err());
        assert!(Layout::consecutive(3, d, "h", 65535, 5751).is_err());
        assert!(Layout::consecutive(3, d, "h", 5651, 5654).is_ok());
    }

    #[test]
    fn free_ports_are_distinct() {
        let l = Layout::free_ports(3, Path::new("/d")).unwrap();
        let mut all: Vec<&String> = l.nodes.iter().flat_map(|n| [&n.addr, &n.raft]).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 6);
    }
}
