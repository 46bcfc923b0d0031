//! Three real `cell0 serve` processes on loopback forming a Raft cluster:
//! joining, writes on any node, the leader killed with SIGKILL while a
//! client writes continuously, and the old leader catching up when it
//! returns. See raft(3).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cell0_tests::Node;
use cell0_tests::cluster::{Cluster, cat, chan_count, field, head, wait, write};

/// Notes a client acknowledged, each with when its write returned.
type Acked = Arc<Mutex<Vec<(Instant, String)>>>;

/// A client writing `/ctl note cN` to the nodes in turn until `stop`,
/// keeping the notes whose write succeeded.
fn writer(addrs: Vec<String>, token: String, stop: Arc<AtomicBool>, acked: Acked) {
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let text = format!("note c{n}");
        let addr = &addrs[n % addrs.len()];
        let (ok, _, _) =
            cell0_tests::run_cell0(&["write", "/ctl", &text, "--addr", addr, "--token", &token]);
        if ok {
            acked.lock().unwrap().push((Instant::now(), text));
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
        n += 1;
    }
}

#[test]
fn three_nodes_survive_the_loss_of_their_leader() {
    let mut c = Cluster::start(3);
    let token = c.token.clone();
    // A write on each node (followers forward to the leader).
    write(c.node(0), &token, "/ctl", "note hello").unwrap();
    assert!(c.node(1).cell0(&["mkdir", "/chan/t", "--token", &token]).0);
    let mut sent = 0u64;
    for i in 0..3 {
        write(c.node(i), &token, "/chan/t/data", &format!("m{i}")).unwrap();
        sent += 1;
    }
    // Reads are linearizable: a write acknowledged by one node is seen
    // by a read on any other that begins after it, without waiting.
    for i in 0..3 {
        write(c.node(i), &token, "/chan/t/data", &format!("r{i}")).unwrap();
        sent += 1;
        let other = (i + 1) % 3;
        assert_eq!(
            chan_count(c.node(other), &token, "t", "sent"),
            Some(sent),
            "node {} reads what node {} wrote",
            other + 1,
            i + 1
        );
    }
    let leader = c.leader_seen_by(2).expect("node 3 names a leader");

    // A client writes continuously, to every node in turn.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Acked = Arc::default();
    let client = {
        let addrs = (0..3).map(|i| c.node(i).addr.clone()).collect();
        let (t, s, a) = (token.clone(), stop.clone(), acked.clone());
        std::thread::spawn(move || writer(addrs, t, s, a))
    };
    wait("the client's first writes", 10, || {
        acked.lock().unwrap().len() >= 10
    });

    // Kill the leader; the others elect a new one and take writes.
    let (old_dir, old_addr) = c.nodes[leader].take().unwrap().kill_keep();
    let killed = Instant::now();
    let before = acked.lock().unwrap().len();
    wait("a write acknowledged after the leader died", 10, || {
        acked.lock().unwrap().iter().any(|(t, _)| *t > killed)
    });
    let first = acked
        .lock()
        .unwrap()
        .iter()
        .find(|(t, _)| *t > killed)
        .map(|(t, _)| *t - killed)
        .unwrap();
    eprintln!("first write after killing the leader: {first:?}");
    let count = acked.lock().unwrap().len();
    wait("more writes on the new leader", 10, || {
        acked.lock().unwrap().len() >= count + 10
    });
    let survivor = (0..3).find(|&i| i != leader).unwrap();
    write(c.node(survivor), &token, "/chan/t/data", "after").unwrap();
    sent += 1;

    // The old leader comes back and catches up while the client writes.
    let id = (leader + 1).to_string();
    c.nodes[leader] = Some(Node::start_in(
        old_dir,
        Some(old_addr),
        &["--id", &id, "--raft", &c.raft[leader]],
    ));
    let count = acked.lock().unwrap().len();
    wait("writes after the old leader returned", 10, || {
        acked.lock().unwrap().len() >= count + 10
    });
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    let acked: Vec<String> = acked
        .lock()
        .unwrap()
        .iter()
        .map(|(_, n)| n.clone())
        .collect();
    eprintln!(
        "{} writes acknowledged ({before} before the kill)",
        acked.len()
    );

    let want = head(c.node(survivor), &token).unwrap();
    wait("every node to hold the whole log", 10, || {
        (0..3).all(|i| head(c.node(i), &token).is_some_and(|h| h >= want))
    });
    for i in 0..3 {
        let n = chan_count(c.node(i), &token, "t", "sent").unwrap();
        assert!(n >= sent, "node {}: {n} sent, {sent} acknowledged", i + 1);
        // No acknowledged write is missing on any node.
        let log = cat(c.node(i), &token, "/raft/log").unwrap();
        let notes: std::collections::HashSet<&str> = log
            .lines()
            .filter_map(|l| l.split_once(" /ctl ").map(|(_, cmd)| cmd))
            .collect();
        for a in &acked {
            assert!(
                notes.contains(a.as_str()),
                "node {} lacks the acknowledged write \"{a}\"",
                i + 1
            );
        }
    }
    let status = cat(c.node(leader), &token, "/raft/status").unwrap();
    assert_eq!(field(&status, "members").as_deref(), Some("3"));
    let chains: Vec<String> = (0..3)
        .map(|i| cat(c.node(i), &token, "/proof/chain").unwrap())
        .collect();
    let shortest = chains.iter().map(|c| c.lines().count()).min().unwrap();
    for ch in &chains[1..] {
        let a: Vec<&str> = chains[0].lines().take(shortest).collect();
        let b: Vec<&str> = ch.lines().take(shortest).collect();
        assert_eq!(a, b, "every node holds the same chain");
    }
}
