//! The cluster under test: `cell0 serve` nodes, each in its own network
//! namespace (see [`super::netns`]), each with a wall clock that a test
//! can move (libfaketime, with the offset re-read from a file on every
//! reading), and the signals the nemesis sends them.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::client::Conn;
use super::disk::Disk;
use super::netns::Net;
use crate::cell0_bin;

/// The port nodes serve 9P on, and the one their Raft transport uses.
const NINEP_PORT: u16 = 5640;
const RAFT_PORT: u16 = 7000;

/// Where Debian's `faketime` package puts the library (the thread-safe
/// build, for a multi-threaded node).
const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// Fail the test, saying what to install, unless libfaketime is here.
pub fn require_faketime() {
    assert!(
        Path::new(FAKETIME_LIB).exists(),
        "the nemesis tests move a node's clock with libfaketime ({FAKETIME_LIB}): apt-get install faketime (tests/run installs it)"
    );
}

/// One node: its process (while it runs), data and log.
pub struct NemNode {
    /// Its 9P address (`IP:5640` on the bridge).
    pub addr: String,
    /// Its namespace.
    ns: String,
    /// `serve` arguments after `--listen` and `--data`.
    args: Vec<String>,
    /// Scratch directory: `data/`, `node.log`, `clock`.
    dir: TempDir,
    child: Option<Child>,
    /// Whether it is stopped with SIGSTOP.
    pub paused: bool,
}

impl NemNode {
    /// The data directory.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file libfaketime reads the clock offset from.
    fn clock_file(&self) -> PathBuf {
        self.dir.path().join("clock")
    }

    /// What the node printed (every start of it).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("node.log")).unwrap_or_default()
    }

    /// Whether its process runs (possibly paused).
    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }

    /// Start the process and wait (up to 30 s) until it listens.
    pub fn start(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "node already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("node.log"))
            .unwrap();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(cell0_bin())
            .args(["serve", "--no-runner", "--listen", &self.addr, "--data"])
            .arg(self.data())
            .args(&self.args)
            .env("LD_PRELOAD", FAKETIME_LIB)
            .env("FAKETIME_TIMESTAMP_FILE", self.clock_file())
            .env("FAKETIME_NO_CACHE", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cell0 serve: {e}"))?;
        let sa: SocketAddr = self.addr.parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&sa, Duration::from_millis(500)).is_err() {
            if let Some(st) = child.try_wait().unwrap() {
                return Err(format!("node exited at start with {st}"));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("nothing listens on {} after 30 s", self.addr));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
        self.paused = false;
        Ok(())
    }

    /// SIGKILL the process and reap it (a paused one too).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.paused = false;
    }

    /// Send `sig` to the process, if it runs.
    fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child's pid; no memory involved.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// Stop it with SIGSTOP.
    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
        self.paused = self.child.is_some();
    }

    /// Let it go on with SIGCONT.
    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
        self.paused = false;
    }

    /// Whether the process ended by itself; its status if so (it is then
    /// no longer up).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let st = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(st)
    }

    /// Move the node's wall clock `secs` seconds from the real time
    /// (libfaketime's relative offset; 0 puts it back).
    pub fn set_clock(&self, secs: i64) {
        std::fs::write(self.clock_file(), format!("{secs:+}s\n")).unwrap();
    }
}

impl Drop for NemNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `n` nodes in one Raft cluster, each in its namespace of one [`Net`].
pub struct NemCluster {
    /// The nodes, by Raft id - 1. (Declared before `net`: the processes
    /// go before their namespaces.)
    pub nodes: Vec<NemNode>,
    /// The small disk of one node, if the run has one (unmounted after
    /// the nodes stop).
    pub disk: Option<Disk>,
    /// The attach aname with node 1's owner token (admin everywhere).
    pub aname: String,
    /// The network.
    pub net: Net,
    _keep: TempDir,
}

impl NemCluster {
    /// Make the net, start node 1 alone, join the others through it, and
    /// wait until node 1 counts `n` members. With `small_disk`, the last
    /// node's data directory is a small tmpfs.
    pub fn start(n: usize, small_disk: bool) -> NemCluster {
        let net = Net::new(n);
        let keep = tempfile::tempdir().unwrap();
        let token = keep.path().join("cluster.token");
        let mut nodes: Vec<NemNode> = Vec::new();
        let mut aname = String::new();
        let mut disk = None;
        for i in 0..n {
            let raft = format!("{}:{RAFT_PORT}", net.ip(i));
            let mut args = vec![
                "--id".to_string(),
                (i + 1).to_string(),
                "--raft".into(),
                raft,
            ];
            if i > 0 {
                args.extend([
                    "--join".to_string(),
                    nodes[0].addr.clone(),
                    "--join-token".into(),
                    token.to_str().unwrap().into(),
                ]);
            }
            let mut node = NemNode {
                addr: format!("{}:{NINEP_PORT}", net.ip(i)),
                ns: net.ns(i).to_string(),
                args,
                dir: tempfile::tempdir().unwrap(),
                child: None,
                paused: false,
            };
            node.set_clock(0);
            if small_disk && i == n - 1 {
                std::fs::create_dir(node.data()).unwrap();
                disk = Some(Disk::mount(i, &node.data()));
            }
            if let Err(e) = node.start() {
                panic!("node {} did not start: {e}\n{}", i + 1, node.log());
            }
            if i == 0 {
                std::fs::copy(node.data().join("owner.token"), &token).unwrap();
                let text = std::fs::read_to_string(&token).unwrap();
                aname = format!("token={}", text.trim());
            }
            nodes.push(node);
        }
        let c = NemCluster {
            nodes,
            disk,
            aname,
            net,
            _keep: keep,
        };
        let want = n.to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let members = c
                .status(0)
                .and_then(|s| crate::cluster::field(&s, "members"));
            if members.as_deref() == Some(want.as_str()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node 1 never counted {n} members (last: {members:?})\n{}",
                c.nodes[0].log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// A fresh attached connection to node `i`.
    pub fn conn(&self, i: usize, limit: Duration) -> Option<Conn> {
        Conn::connect(&self.nodes[i].addr, &self.aname, limit).ok()
    }

    /// Node `i`'s `/raft/status`, if it answers within 2 s.
    pub fn status(&self, i: usize) -> Option<String> {
        let limit = Duration::from_secs(2);
        let mut c = self.conn(i, limit)?;
        c.cat("/raft/status", Instant::now() + limit).ok()
    }

    /// The node (0-based) that node `i` names as leader.
    pub fn leader_seen_by(&self, i: usize) -> Option<usize> {
        let s = self.status(i)?;
        let id: usize = crate::cluster::field(&s, "leader")?.parse().ok()?;
        (1..=self.len()).contains(&id).then(|| id - 1)
    }

    /// The leader named by the first running, unpaused node that names
    /// one.
    pub fn leader(&self) -> Option<usize> {
        (0..self.len())
            .filter(|&i| self.nodes[i].is_up() && !self.nodes[i].paused)
            .find_map(|i| self.leader_seen_by(i))
    }
}
