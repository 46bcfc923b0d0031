//! Three real `cell0 serve` processes on loopback forming a Raft cluster:
//! joining, writes on any node, the leader killed with SIGKILL, and the
//! old leader catching up when it returns. See raft(3).

mod common;

use std::time::{Duration, Instant};

use common::Server;

fn field(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
        .map(|v| v.trim().to_string())
}

/// `cat PATH` on `node`, with the cluster's owner token.
fn cat(node: &Server, token: &str, path: &str) -> Option<String> {
    let (ok, out, _) = node.cell0(&["cat", path, "--token", token], b"");
    ok.then_some(out)
}

fn write(node: &Server, token: &str, path: &str, text: &str) -> Result<(), String> {
    let (ok, _, err) = node.cell0(&["write", path, text, "--token", token], b"");
    if ok { Ok(()) } else { Err(err) }
}

fn wait(what: &str, secs: u64, mut cond: impl FnMut() -> bool) -> Duration {
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

fn node(nodes: &[Option<Server>], i: usize) -> &Server {
    nodes[i].as_ref().unwrap()
}

fn head(node: &Server, token: &str) -> Option<u64> {
    cat(node, token, "/proof/head").and_then(|t| field(&t, "index")?.parse().ok())
}

#[test]
fn three_nodes_survive_the_loss_of_their_leader() {
    let raft: Vec<String> = (0..3).map(|_| Server::free_addr()).collect();
    let n1 = Server::node_with(
        tempfile::tempdir().unwrap(),
        None,
        &["--id", "1", "--raft", &raft[0]],
    );
    let token_path = n1.data().join("owner.token");
    // Keep the cluster's token outside node 1's data directory: node 1 is
    // killed and its file rewritten at restart.
    let keep = tempfile::tempdir().unwrap();
    let token = keep.path().join("cluster.token");
    std::fs::copy(&token_path, &token).unwrap();
    let token = token.to_str().unwrap().to_string();
    let mut nodes = vec![Some(n1)];
    for (i, r) in raft.iter().enumerate().skip(1) {
        let id = (i + 1).to_string();
        let sponsor = nodes[0].as_ref().unwrap().addr.clone();
        nodes.push(Some(Server::node_with(
            tempfile::tempdir().unwrap(),
            None,
            &[
                "--id",
                &id,
                "--raft",
                r,
                "--join",
                &sponsor,
                "--join-token",
                &token,
            ],
        )));
    }
    wait("three members", 10, || {
        cat(node(&nodes, 0), &token, "/raft/status")
            .is_some_and(|s| field(&s, "members").as_deref() == Some("3"))
    });
    // A write on each node (followers forward to the leader).
    write(node(&nodes, 0), &token, "/ctl", "note hello").unwrap();
    assert!(
        node(&nodes, 1)
            .cell0(&["mkdir", "/chan/t", "--token", &token], b"")
            .0
    );
    let mut acked = 0u64;
    for i in 0..3 {
        write(node(&nodes, i), &token, "/chan/t/data", &format!("m{i}")).unwrap();
        acked += 1;
    }
    // Reads are linearizable: a write acknowledged by one node is seen
    // by a read on any other that begins after it, without waiting.
    for i in 0..3 {
        write(node(&nodes, i), &token, "/chan/t/data", &format!("r{i}")).unwrap();
        acked += 1;
        let other = node(&nodes, (i + 1) % 3);
        let s = cat(other, &token, "/chan/t/status").unwrap();
        let sent: u64 = field(&s, "sent").unwrap().parse().unwrap();
        assert_eq!(
            sent,
            acked,
            "node {} reads what node {} wrote",
            (i + 1) % 3 + 1,
            i + 1
        );
    }
    let status = cat(node(&nodes, 2), &token, "/raft/status").unwrap();
    let leader: usize = field(&status, "leader").unwrap().parse::<usize>().unwrap() - 1;
    // Kill the leader; the others elect a new one and take writes.
    let (old_dir, old_addr) = nodes[leader].take().unwrap().kill_keep();
    let killed = Instant::now();
    let survivor = (0..3).find(|&i| i != leader).unwrap();
    let mut first_write = None;
    while killed.elapsed() < Duration::from_secs(10) {
        if write(node(&nodes, survivor), &token, "/chan/t/data", "after").is_ok() {
            acked += 1;
            first_write = Some(killed.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let first_write = first_write.expect("a write succeeds after the leader died");
    eprintln!("first write after killing the leader: {first_write:?}");
    for _ in 0..5 {
        write(node(&nodes, survivor), &token, "/chan/t/data", "more").unwrap();
        acked += 1;
    }
    // The old leader comes back and catches up.
    let id = (leader + 1).to_string();
    nodes[leader] = Some(Server::node_with(
        old_dir,
        Some(old_addr),
        &["--id", &id, "--raft", &raft[leader]],
    ));
    let want = head(node(&nodes, survivor), &token).unwrap();
    wait("the old leader to catch up", 10, || {
        head(node(&nodes, leader), &token).is_some_and(|h| h >= want)
    });
    for i in 0..3 {
        let s = cat(node(&nodes, i), &token, "/chan/t/status").unwrap();
        let sent: u64 = field(&s, "sent").unwrap().parse().unwrap();
        assert!(
            sent >= acked,
            "node {}: {sent} sent, {acked} acknowledged",
            i + 1
        );
    }
    let chains: Vec<String> = (0..3)
        .map(|i| cat(node(&nodes, i), &token, "/proof/chain").unwrap())
        .collect();
    let shortest = chains.iter().map(|c| c.lines().count()).min().unwrap();
    for c in &chains[1..] {
        let a: Vec<&str> = chains[0].lines().take(shortest).collect();
        let b: Vec<&str> = c.lines().take(shortest).collect();
        assert_eq!(a, b, "every node holds the same chain");
    }
}
