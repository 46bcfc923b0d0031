//! A channel message written on one node of a cluster is verified on
//! another: its stamp names the node that signed it, whose key the other
//! node trusts as a member. See chan(3).

mod common;

use common::cluster::{Cluster, cat, chan_count, wait, write};

#[test]
fn a_message_signed_on_one_node_verifies_on_another() {
    let c = Cluster::start(3);
    let token = c.token.clone();
    assert!(
        c.node(0)
            .cell0(&["mkdir", "/chan/s", "--token", &token], b"")
            .0
    );
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
        std::process::Command::new(common::bin())
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
