//! A channel message written on one node of a cluster is verified on
//! another: its stamp names the node that signed it, whose key the other
//! node trusts as a member. See chan(3).

use cell0_tests::cell0_bin;
use cell0_tests::cluster::{Cluster, cat, chan_count, wait, write};

#[test]
fn a_message_signed_on_one_node_verifies_on_another() {
    let c = Cluster::start(3);
    let token = c.token.clone();
    assert!(c.node(0).cell0(&["mkdir", "/chan/s", "--token", &token]).0);
    write(c.node(0), &token, "/chan/s/data", "signed on node 1").unwrap();
    // Closed, so reading msgs ends once it has given everything.
    write(c.node(0), &token, "/chan/s/ctl", "close").unwrap();
    wait("node 3 to apply the message", 20, || {
        chan_count(c.node(2), &token, "s", "sent") == Some(1)
            && cat(c.node(2), &token, "/chan/s/status").is_some_and(|s| s.contains("state closed"))
    });
    let key1 = cat(c.node(0), &token, "/cap/key")
        .unwrap()
        .trim()
        .to_string();
    let key3 = cat(c.node(2), &token, "/cap/key")
        .unwrap()
        .trim()
        .to_string();
    assert_ne!(key1, key3);
    let line = cat(c.node(2), &token, "/chan/s/msgs").unwrap();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.contains(&format!(" node={key1} ")), "{line}");
    assert!(line.contains(" verified=yes "), "{line}");
    assert!(line.contains(" sender=owner "), "{line}");

    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("msgs");
    std::fs::write(&saved, &line).unwrap();
    let verify = |key: &str| {
        std::process::Command::new(cell0_bin())
            .args(["chan", "verify", "--key", key])
            .arg(&saved)
            .output()
            .unwrap()
    };
    assert!(
        verify(&key1).status.success(),
        "verifies under node 1's key"
    );
    let other = verify(&key3);
    assert!(!other.status.success(), "node 3 did not sign it");
    assert!(String::from_utf8_lossy(&other.stderr).contains("seq 1: signed by"));
}

#[test]
fn one_sender_writing_through_two_nodes_at_once_gets_increasing_numbers() {
    let c = Cluster::start(3);
    let token = c.token.clone();
    assert!(
        c.node(0)
            .cell0(&["mkdir", "/chan/two", "--token", &token])
            .0
    );
    wait("node 3 to have the channel", 20, || {
        cat(c.node(2), &token, "/chan/two/status").is_some()
    });
    // The same holder writes through node 1 and node 3 at the same time:
    // each node numbers its own stream of the sender's messages, so the
    // two never compete for a number.
    const EACH: usize = 40;
    std::thread::scope(|s| {
        for n in [0, 2] {
            let (c, token) = (&c, &token);
            s.spawn(move || {
                for i in 0..EACH {
                    write(c.node(n), token, "/chan/two/data", &format!("n{n} {i}")).unwrap();
                }
            });
        }
    });
    write(c.node(0), &token, "/chan/two/ctl", "close").unwrap();
    wait("node 2 to apply every message", 20, || {
        cat(c.node(1), &token, "/chan/two/status").is_some_and(|s| s.contains("state closed"))
    });
    let msgs = cat(c.node(1), &token, "/chan/two/msgs").unwrap();
    let mut streams: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for l in msgs.lines() {
        assert!(l.contains(" verified=yes "), "{l}");
        let field = |key: &str| {
            l.split(' ')
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("no {key} in {l}"))
        };
        let nth: u64 = field("nth").parse().unwrap();
        streams
            .entry(field("node").to_string())
            .or_default()
            .push(nth);
    }
    assert_eq!(streams.len(), 2, "{msgs}");
    let every: Vec<u64> = (1..=EACH as u64).collect();
    for (node, nths) in &streams {
        assert_eq!(nths, &every, "node {node}");
    }
}

#[test]
fn a_sender_writing_through_two_nodes_gets_its_rate_once() {
    let c = Cluster::start(3);
    let token = c.token.clone();
    assert!(c.node(0).cell0(&["mkdir", "/chan/q", "--token", &token]).0);
    write(c.node(0), &token, "/chan/q/ctl", "qos rate=1 burst=5").unwrap();
    wait("node 3 to have the limit", 20, || {
        cat(c.node(2), &token, "/chan/q/status").is_some_and(|s| s.contains("qos rate=1 burst=5"))
    });
    // Ten writes, five through each node: each node's own bucket lets its
    // five through; the log holds the sender to five, plus one for each
    // second the writes take (well under one here; three allowed for a
    // loaded machine).
    let mut accepted = 0;
    for i in 0..10 {
        let node = c.node(if i % 2 == 0 { 0 } else { 2 });
        if write(node, &token, "/chan/q/data", &format!("m{i}")).is_ok() {
            accepted += 1;
        }
    }
    assert!((5..=8).contains(&accepted), "{accepted} of 10 accepted");
    let status = cat(c.node(0), &token, "/chan/q/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("sender owner "))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(line.contains(&format!(" sent={accepted} ")), "{status}");
    assert!(
        line.ends_with(&format!(" limited={}", 10 - accepted)),
        "{status}"
    );
}
