//! A member whose disk is lost: removed from the cluster, wiped, and
//! added again with `--join`, it catches up by snapshot, since the log it
//! would need was compacted while it was away. See raft(3).

use cell0_tests::cluster::{Cluster, cat, chan_count, field, head, wait, write};

#[test]
fn a_wiped_node_re_added_catches_up_by_snapshot() {
    let mut c = Cluster::start(3);
    let token = c.token.clone();
    assert!(c.node(0).cell0(&["mkdir", "/chan/t", "--token", &token]).0);
    for i in 0..3 {
        write(c.node(i), &token, "/chan/t/data", &format!("m{i}")).unwrap();
    }
    // Lose a follower's disk: kill it and throw its directory away.
    let leader = c.leader_seen_by(0).expect("node 1 names a leader");
    let lost = (0..3).find(|&i| i != leader).unwrap();
    let lost_key = field(
        &cat(c.node(leader), &token, &format!("/raft/peers/{}", lost + 1)).unwrap(),
        "key",
    )
    .unwrap();
    let (dir, _) = c.nodes[lost].take().unwrap().kill_keep();
    drop(dir);
    let up: Vec<usize> = (0..3).filter(|&i| i != lost).collect();

    // A wiped node cannot come back under its old key; an admin removes it.
    write(
        c.node(up[0]),
        &token,
        "/raft/ctl",
        &format!("remove id={}", lost + 1),
    )
    .unwrap();
    wait("the removal to reach every member", 10, || {
        up.iter().all(|&i| {
            cat(c.node(i), &token, "/raft/status")
                .is_some_and(|s| field(&s, "members").as_deref() == Some("2"))
        })
    });
    // The cluster goes on, and compacts its log into a snapshot.
    for n in 0..20 {
        write(c.node(up[n % 2]), &token, "/chan/t/data", &format!("w{n}")).unwrap();
    }
    for &i in &up {
        write(c.node(i), &token, "/raft/ctl", "snapshot").unwrap();
    }
    let snap = |i: usize| -> u64 {
        let s = cat(c.node(i), &token, "/raft/status").unwrap();
        field(&s, "snapshot_index").unwrap().parse().unwrap()
    };
    let compacted = up.iter().map(|&i| snap(i)).min().unwrap();
    assert!(compacted > 0, "the members took a snapshot");
    write(c.node(up[0]), &token, "/chan/t/data", "last").unwrap();

    // The same id joins again from an empty directory, with a new key.
    let fresh = c.join(lost, tempfile::tempdir().unwrap());
    c.nodes[lost] = Some(fresh);
    let new_key = field(
        &cat(c.node(up[0]), &token, &format!("/raft/peers/{}", lost + 1)).unwrap(),
        "key",
    )
    .unwrap();
    assert_ne!(new_key, lost_key, "the member is back under its new key");
    let want = head(c.node(up[0]), &token).unwrap();
    wait("the new node to catch up", 15, || {
        head(c.node(lost), &token).is_some_and(|h| h >= want)
    });
    // It was sent a snapshot: its log starts where the snapshot ends.
    let status = cat(c.node(lost), &token, "/raft/status").unwrap();
    let its_snap: u64 = field(&status, "snapshot_index").unwrap().parse().unwrap();
    assert!(
        its_snap >= compacted,
        "the new node installed a snapshot (its snapshot index {its_snap}, the cluster's {compacted})"
    );
    assert_eq!(field(&status, "members").as_deref(), Some("3"));
    // Its tree and its proof chain are the cluster's, from the first entry.
    assert_eq!(chan_count(c.node(lost), &token, "t", "sent"), Some(24));
    let mine = cat(c.node(lost), &token, "/proof/chain").unwrap();
    let theirs = cat(c.node(up[0]), &token, "/proof/chain").unwrap();
    let index = |line: Option<&str>| -> u64 {
        line.and_then(|l| l.split(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(
        index(mine.lines().next()),
        1,
        "the chain from the first entry:\n{mine}"
    );
    assert!(
        index(mine.lines().last()) >= want,
        "the chain to the head:\n{mine}"
    );
    let n = mine.lines().count().min(theirs.lines().count());
    assert_eq!(
        mine.lines().take(n).collect::<Vec<_>>(),
        theirs.lines().take(n).collect::<Vec<_>>()
    );
    // And it takes part: a write through it commits everywhere.
    write(c.node(lost), &token, "/chan/t/data", "from the new node").unwrap();
    for i in 0..3 {
        assert_eq!(
            chan_count(c.node(i), &token, "t", "sent"),
            Some(25),
            "node {}",
            i + 1
        );
    }
}
