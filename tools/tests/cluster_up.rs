//! `cell0 cluster up 3` as a user runs it: the nodes it prints form one
//! cluster, a write on node 3 is seen on node 1, SIGTERM stops every node,
//! and a second `cluster up` on the same directory brings the same
//! cluster back. See cell0(1).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use cell0_tests::{cell0_bin, children_of, free_port_run, proc_state, run_cell0, wait_for};

/// A running `cell0 cluster up`, with what it printed.
struct Up {
    child: Child,
    /// node id → 9P address.
    addrs: Vec<String>,
    token: String,
}

impl Up {
    fn start(n: usize, dir: &std::path::Path, port: u16) -> Up {
        let raft_port = port + n as u16;
        let mut child = Command::new(cell0_bin())
            .args(["cluster", "up", &n.to_string(), "--data"])
            .arg(dir)
            .args(["--port", &port.to_string()])
            .args(["--raft-port", &raft_port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("up.stderr"))
                    .unwrap(),
            )
            .spawn()
            .expect("cell0 cluster up starts");
        // Read its lines on a thread, so a hung start fails the test
        // instead of blocking it.
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut addrs = Vec::new();
        let token = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| {
                    panic!(
                        "cluster up printed no token line; it said:\n{}",
                        std::fs::read_to_string(dir.join("up.stderr")).unwrap_or_default()
                    )
                });
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [
                    "node",
                    id,
                    "addr",
                    addr,
                    "raft",
                    _,
                    "gossip",
                    _,
                    "data",
                    data,
                    "log",
                    _,
                ] => {
                    assert_eq!(id.parse::<usize>().unwrap(), addrs.len() + 1);
                    assert!(data.ends_with(&format!("node{id}")), "{line}");
                    addrs.push(addr.to_string());
                }
                ["token", path] => break path.to_string(),
                _ => panic!("unexpected line from cluster up: {line}"),
            }
        };
        assert_eq!(addrs.len(), n);
        Up {
            child,
            addrs,
            token,
        }
    }

    /// `cell0 ARGS --addr (node ID) --token TOKEN`.
    fn cell0(&self, id: usize, args: &[&str]) -> (bool, String, String) {
        let mut all = args.to_vec();
        all.extend(["--addr", &self.addrs[id - 1], "--token", &self.token]);
        run_cell0(&all)
    }

    fn field(&self, id: usize, path: &str, key: &str) -> Option<String> {
        let (ok, out, _) = self.cell0(id, &["cat", path]);
        ok.then(|| {
            out.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
                .map(|v| v.trim().to_string())
        })
        .flatten()
    }

    /// SIGTERM, then check that it exits cleanly and leaves no node.
    fn stop(mut self) {
        let nodes = children_of(self.child.id());
        assert_eq!(nodes.len(), self.addrs.len(), "one process per node");
        cell0_tests::kill(self.child.id(), libc::SIGTERM);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "cluster up exited with {status}");
        for pid in nodes {
            assert_eq!(proc_state(pid), None, "node process {pid} is left over");
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        // Only reached on a failure: the nodes die with it (they were
        // started with PR_SET_PDEATHSIG).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn three_nodes_come_up_share_writes_stop_and_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port_run(6);
    let up = Up::start(3, dir.path(), port);
    assert_eq!(up.field(1, "/raft/status", "members").as_deref(), Some("3"));
    assert!(
        up.field(1, "/raft/status", "leader")
            .is_some_and(|l| l != "0")
    );

    // A write through node 3 (a follower, or the leader) is seen on node 1.
    let (ok, _, err) = up.cell0(3, &["mkdir", "/chan/seen"]);
    assert!(ok, "mkdir on node 3: {err}");
    let (ok, _, err) = up.cell0(3, &["write", "/chan/seen/data", "from node 3"]);
    assert!(ok, "write on node 3: {err}");
    wait_for("node 1 to apply node 3's write", || {
        up.field(1, "/chan/seen/status", "sent").as_deref() == Some("1")
    });
    up.stop();

    // A member restarted by hand with a --join left on its command line
    // restarts from its log; its sponsor (node 1) is down and not asked.
    let log = dir.path().join("node2-again.log");
    let mut node2 = Command::new(cell0_bin())
        .args([
            "serve",
            "--id",
            "2",
            "--raft",
            &format!("127.0.0.1:{}", port + 4),
        ])
        .args(["--listen", &format!("127.0.0.1:{}", port + 1), "--data"])
        .arg(dir.path().join("node2"))
        .args(["--join", &format!("127.0.0.1:{port}"), "--join-token"])
        .arg(dir.path().join("node1/owner.token"))
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for("node 2 to say it ignores --join", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("--join ignored"))
    });
    assert!(node2.try_wait().unwrap().is_none(), "node 2 keeps running");
    cell0_tests::kill(node2.id(), libc::SIGTERM);
    node2.wait().unwrap();

    // The same directory again: the same three members, the same state.
    let up = Up::start(3, dir.path(), port);
    assert_eq!(up.field(2, "/raft/status", "members").as_deref(), Some("3"));
    wait_for("the channel to be back on node 2", || {
        up.field(2, "/chan/seen/status", "retained").as_deref() == Some("1")
    });
    up.stop();
}
