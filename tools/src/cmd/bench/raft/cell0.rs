//! The system measured: a Cell0 cluster of local nodes, each commit a
//! `note` written to the leader's `/ctl`.
//!
//! A `note` is a replicated command like any other mutation of the tree:
//! the write returns once it is in the log of a majority (fsynced there)
//! and applied, and it changes nothing but the log and `/events`, so
//! thousands of them leave no state behind that would slow later ones.

use std::path::PathBuf;

use super::load::Writer;
use crate::cmd::bench::conn::Conn;
use crate::cmd::bench::servers::scratch_dir;
use crate::cmd::cluster::{Layout, LocalCluster};

/// What each commit writes.
const NOTE: &[u8] = b"note bench\n";

/// The fid the writer's `/ctl` is open on.
const CTL: u32 = 1;

/// A cluster started for the benchmark in a scratch directory, stopped
/// and removed when dropped.
pub struct Cluster {
    cluster: LocalCluster,
    dir: PathBuf,
}

impl Cluster {
    /// Start `n` nodes on free loopback ports.
    pub fn start(n: usize) -> anyhow::Result<Cluster> {
        let dir = scratch_dir(&std::env::temp_dir(), &format!("raft{n}"))?;
        let layout = Layout::free_ports(n, &dir)?;
        // Every node a voter, as etcd's are in the same run.
        match LocalCluster::start(&layout, None) {
            Ok(cluster) => Ok(Cluster { cluster, dir }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    /// The leader's 9P address.
    pub fn leader(&self) -> anyhow::Result<String> {
        Ok(self.cluster.leader()?.addr.clone())
    }

    /// A follower's 9P address (a node of two or more that is not the
    /// leader), if there is one.
    pub fn follower(&self) -> anyhow::Result<Option<String>> {
        let leader = self.cluster.leader()?.addr.clone();
        Ok(self
            .cluster
            .nodes()
            .iter()
            .map(|n| n.addr.clone())
            .find(|a| *a != leader))
    }

    /// The aname that attaches with node 1's owner token (every member
    /// accepts it).
    pub fn aname(&self) -> anyhow::Result<String> {
        let token = crate::identity::read_token(self.cluster.token())?;
        Ok(format!("token={}", token.to_text()))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.cluster.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A client with its own 9P connection and `/ctl` open for writing.
pub struct Cell0Writer {
    conn: Conn,
}

impl Cell0Writer {
    /// Connect to `addr`, attach `aname`, and open `/ctl`.
    pub fn open(addr: &str, aname: &str) -> anyhow::Result<Cell0Writer> {
        let mut conn = Conn::open(addr, aname)?;
        conn.walk(CTL, &["ctl"])?;
        conn.lopen(CTL, libc::O_WRONLY as u32)?;
        Ok(Cell0Writer { conn })
    }
}

impl Writer for Cell0Writer {
    fn commit(&mut self) -> anyhow::Result<()> {
        self.conn.write(CTL, NOTE)
    }
}

/// The fid a reader walks to `/raft/status` and clunks.
const STATUS: u32 = 2;

/// A client with its own 9P connection that walks to `/raft/status` and
/// clunks the fid: one linearizable read of the tree's shape (the walk
/// waits for the log to confirm the node is current; raft(3) READS).
pub struct Cell0Reader {
    conn: Conn,
}

impl Cell0Reader {
    /// Connect to `addr` and attach `aname`.
    pub fn open(addr: &str, aname: &str) -> anyhow::Result<Cell0Reader> {
        Ok(Cell0Reader {
            conn: Conn::open(addr, aname)?,
        })
    }
}

impl Writer for Cell0Reader {
    fn commit(&mut self) -> anyhow::Result<()> {
        self.conn.walk(STATUS, &["raft", "status"])?;
        self.conn.clunk(STATUS)
    }
}
