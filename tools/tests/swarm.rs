//! A swarm of real `cell0 serve` processes on loopback (swarm(3)): seven
//! nodes, three voters; a voter and then the leader killed with SIGKILL
//! while a client writes; every member sees each death, a learner is
//! promoted in the dead voter's place, no acknowledged write is lost, and
//! a killed node that comes back rejoins under its key. Admission: a node
//! without a join token never becomes a member, and forged, foreign and
//! malformed gossip is dropped and counted. And the tree through FUSE,
//! with shell tools.

use std::collections::HashSet;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cell0_tests::cluster::{Cluster, cat, field, wait};
use cell0_tests::{Mount, Node};

/// The 16 bytes of a swarm id in hex.
fn hex16(text: &str) -> [u8; 16] {
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap();
    }
    id
}

/// Notes a client acknowledged.
type Acked = Arc<Mutex<Vec<String>>>;

/// A client writing `/ctl note sN` to the nodes in turn until `stop`.
fn writer(addrs: Vec<String>, token: String, stop: Arc<AtomicBool>, acked: Acked) {
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let text = format!("note s{n}");
        let addr = &addrs[n % addrs.len()];
        let (ok, _, _) =
            cell0_tests::run_cell0(&["write", "/ctl", &text, "--addr", addr, "--token", &token]);
        if ok {
            acked.lock().unwrap().push(text);
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
        n += 1;
    }
}

/// The ids a `voters` or `learners` line of `/swarm/status` lists.
fn ids(status: &str, key: &str) -> Vec<usize> {
    field(status, key)
        .unwrap_or_default()
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// `/swarm/status` of node `i` (index), if it answers.
fn swarm_status(c: &Cluster, i: usize) -> Option<String> {
    cat(c.nodes[i].as_ref()?, &c.token, "/swarm/status")
}

/// Node `i`'s view of member `id`'s state.
fn state_of(c: &Cluster, i: usize, id: usize) -> Option<String> {
    let s = cat(
        c.nodes[i].as_ref()?,
        &c.token,
        &format!("/swarm/nodes/{id}/status"),
    )?;
    field(&s, "state")
}

/// Indexes of the nodes that are up.
fn up(c: &Cluster) -> Vec<usize> {
    (0..c.nodes.len())
        .filter(|&i| c.nodes[i].is_some())
        .collect()
}

/// Wait until every node that is up sees member `id` in `state`.
fn everyone_sees(c: &Cluster, id: usize, state: &str, secs: u64) -> Duration {
    wait(
        &format!("every node to see node {id} {state}"),
        secs,
        || {
            up(c)
                .into_iter()
                .all(|i| state_of(c, i, id).as_deref() == Some(state))
        },
    )
}

/// Wait until some node that is up says there are `n` voters, none of
/// them `not`; the voters.
fn voters_restored(c: &Cluster, n: usize, not: usize) -> Vec<usize> {
    let mut got = Vec::new();
    wait(&format!("{n} voters without node {not}"), 20, || {
        up(c).into_iter().any(|i| {
            let Some(s) = swarm_status(c, i) else {
                return false;
            };
            got = ids(&s, "voters");
            got.len() == n && !got.contains(&not)
        })
    });
    got
}

#[test]
fn seven_nodes_heal_after_a_voter_and_the_leader_die() {
    let mut c = Cluster::start_swarm(7, 3);
    let token = c.token.clone();
    // Every node sees all seven alive; three voters, four learners.
    wait("every node to see seven members alive", 20, || {
        (0..7).all(|i| {
            swarm_status(&c, i).is_some_and(|s| {
                field(&s, "alive").as_deref() == Some("7")
                    && ids(&s, "voters").len() == 3
                    && ids(&s, "learners").len() == 4
            })
        })
    });
    let s = swarm_status(&c, 0).unwrap();
    assert_eq!(field(&s, "members").as_deref(), Some("7"), "{s}");
    assert_eq!(field(&s, "dropped-bad-signature").as_deref(), Some("0"));
    let voters = ids(&s, "voters");

    let stop = Arc::new(AtomicBool::new(false));
    let acked: Acked = Arc::default();
    let client = {
        let addrs = (0..7).map(|i| c.node(i).addr.clone()).collect();
        let (t, s, a) = (token.clone(), stop.clone(), acked.clone());
        std::thread::spawn(move || writer(addrs, t, s, a))
    };
    wait("the client's first writes", 10, || {
        acked.lock().unwrap().len() >= 10
    });

    // A learner's /events, followed from before the first kill.
    let watcher = ids(&s, "learners")[0];
    let scratch = tempfile::tempdir().unwrap();
    let events = scratch.path().join("events.txt");
    let mut follower = std::process::Command::new(cell0_tests::cell0_bin())
        .args(["cat", "/events", "--addr", &c.node(watcher - 1).addr])
        .args(["--token", &token])
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&events).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    // SIGKILL a voter that does not lead.
    let leader = c.leader_seen_by(0).expect("node 1 names a leader") + 1;
    let victim = *voters.iter().find(|&&v| v != leader).unwrap();
    let (dir, addr) = c.nodes[victim - 1].take().unwrap().kill_keep();
    let killed = Instant::now();
    everyone_sees(&c, victim, "dead", 20);
    let seen_dead = killed.elapsed();
    let now_voters = voters_restored(&c, 3, victim);
    let restored = killed.elapsed();
    eprintln!(
        "voter {victim} killed: dead everywhere after {seen_dead:?}, voters {now_voters:?} after {restored:?}"
    );
    let count = acked.lock().unwrap().len();
    wait("writes after the voter died", 10, || {
        acked.lock().unwrap().len() >= count + 10
    });

    // SIGKILL the leader: another is elected, and it replaces the old one.
    let leader = c.leader_seen_by(up(&c)[0]).expect("a leader") + 1;
    let (ldir, laddr) = c.nodes[leader - 1].take().unwrap().kill_keep();
    let killed = Instant::now();
    wait("another leader", 10, || {
        up(&c)
            .into_iter()
            .all(|i| c.leader_seen_by(i).is_some_and(|l| l + 1 != leader))
    });
    let elected = killed.elapsed();
    everyone_sees(&c, leader, "dead", 20);
    let now_voters = voters_restored(&c, 3, leader);
    eprintln!(
        "leader {leader} killed: a new leader after {elected:?}, voters {now_voters:?} after {:?}",
        killed.elapsed()
    );
    let count = acked.lock().unwrap().len();
    wait("writes after the leader died", 10, || {
        acked.lock().unwrap().len() >= count + 10
    });

    // Both come back under their keys: alive again everywhere, learners.
    for (id, dir, addr) in [(victim, dir, addr), (leader, ldir, laddr)] {
        let sid = id.to_string();
        c.nodes[id - 1] = Some(Node::start_in(
            dir,
            Some(addr),
            &[
                "--id",
                &sid,
                "--raft",
                &c.raft[id - 1],
                "--swarm",
                &c.raft[id - 1],
            ],
        ));
    }
    for id in [victim, leader] {
        everyone_sees(&c, id, "alive", 20);
        let s = swarm_status(&c, 0).unwrap();
        assert!(ids(&s, "learners").contains(&id), "node {id}: {s}");
    }
    let status = cat(
        c.node(victim - 1),
        &token,
        &format!("/swarm/nodes/{victim}/status"),
    )
    .unwrap();
    assert_eq!(
        field(&status, "role").as_deref(),
        Some("learner"),
        "{status}"
    );

    // The watcher's /events told the story: suspicion, death, promotion
    // and the return of each.
    let _ = follower.kill();
    let _ = follower.wait();
    let told = std::fs::read_to_string(&events).unwrap();
    for want in [
        format!("swarm suspect node={victim}"),
        format!("swarm dead node={victim}"),
        format!("swarm dead node={leader}"),
        String::from("swarm promote node="),
        format!("swarm alive node={victim}"),
    ] {
        assert!(told.contains(&want), "/events lacks {want:?}:\n{told}");
    }

    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    eprintln!("{} writes acknowledged", acked.len());
    // No acknowledged write is lost, on any node (the returned ones too).
    let last = acked.last().unwrap().clone();
    wait("every node to hold the last write", 20, || {
        (0..7)
            .all(|i| cat(c.node(i), &token, "/raft/log").is_some_and(|l| l.contains(last.as_str())))
    });
    for i in 0..7 {
        let log = cat(c.node(i), &token, "/raft/log").unwrap();
        let notes: HashSet<&str> = log
            .lines()
            .filter_map(|l| l.split_once(" /ctl ").map(|(_, cmd)| cmd))
            .collect();
        for a in &acked {
            assert!(notes.contains(a.as_str()), "node {} lacks \"{a}\"", i + 1);
        }
    }
}

#[test]
fn no_token_no_membership_and_bad_gossip_is_dropped_and_counted() {
    let c = Cluster::start_swarm(3, 3);
    let token = c.token.clone();
    wait("three members alive on node 1", 20, || {
        swarm_status(&c, 0).is_some_and(|s| field(&s, "alive").as_deref() == Some("3"))
    });

    // A node whose token does not reach /swarm is refused, and never
    // appears as a member.
    let scratch = tempfile::tempdir().unwrap();
    let narrow = scratch.path().join("narrow.token");
    let narrow_s = narrow.to_str().unwrap();
    let (ok, _, err) = cell0_tests::run_cell0(&[
        "cap",
        "attenuate",
        "--scope",
        "/chan",
        "--rights",
        "rwc",
        "--holder",
        "stranger",
        "-o",
        narrow_s,
        &token,
    ]);
    assert!(ok, "attenuating a token: {err}");
    let raft = cell0_tests::ports::free_addr();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(cell0_tests::cell0_bin())
        .args(["serve", "--id", "9", "--raft", &raft, "--swarm", &raft])
        .args(["--listen", &cell0_tests::ports::free_addr(), "--data"])
        .arg(dir.path().join("data"))
        .args(["--join", &c.node(0).addr, "--join-token"])
        .arg(&narrow)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "a node without a join token started");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("cannot be reached with the join token"),
        "{said}"
    );
    let nodes = cat(c.node(0), &token, "/swarm/status").unwrap();
    assert_eq!(field(&nodes, "members").as_deref(), Some("3"), "{nodes}");
    assert!(cat(c.node(0), &token, "/swarm/nodes/9/status").is_none());

    // Datagrams at node 1's gossip port: garbage, another swarm's, and
    // one naming this swarm and a member but signed with another key.
    let before = swarm_status(&c, 0).unwrap();
    let count = |s: &str, k: &str| field(s, k).and_then(|v| v.parse::<u64>().ok()).unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let swarm = hex16(&field(&before, "swarm").unwrap());
    // Signed by a key that is no member's, in the name of member 2.
    let stranger = cellfs::gossip::envelope::Signing::Ed25519(Box::new(
        cellfs::cap::NodeKey::from_seed(&[7; 32]),
    ));
    let packet = |swarm: [u8; 16]| {
        cellfs::gossip::envelope::Seal {
            kind: cellfs::gossip::envelope::Kind::Swim,
            swarm,
            sender: 2,
            boot: u64::MAX / 2,
            seq: 1,
            payload: b"",
        }
        .seal(&stranger)
    };
    let forged = packet(swarm);
    let foreign = packet([0xab; 16]);
    for pkt in [b"not a packet".to_vec(), foreign, forged] {
        sock.send_to(&pkt, &c.raft[0]).unwrap();
    }
    wait("the three datagrams counted", 10, || {
        let s = swarm_status(&c, 0).unwrap();
        count(&s, "dropped-malformed") > count(&before, "dropped-malformed")
            && count(&s, "dropped-foreign") > count(&before, "dropped-foreign")
            && count(&s, "dropped-bad-signature") > count(&before, "dropped-bad-signature")
    });
    // Still three members, all alive.
    let s = swarm_status(&c, 0).unwrap();
    assert_eq!(field(&s, "alive").as_deref(), Some("3"), "{s}");
}

#[test]
fn the_swarm_through_fuse_and_shell_tools() {
    let mut c = Cluster::start_swarm(5, 3);
    wait("five members alive on node 1", 20, || {
        swarm_status(&c, 0).is_some_and(|s| {
            field(&s, "alive").as_deref() == Some("5") && ids(&s, "voters").len() == 3
        })
    });
    let token = std::path::PathBuf::from(&c.token);
    let m = Mount::with_token(&c.node(0).addr, Some(&token));
    assert_eq!(
        m.sh_ok("ls swarm").split_whitespace().collect::<Vec<_>>(),
        ["ctl", "nodes", "status"]
    );
    assert_eq!(
        m.sh_ok("ls swarm/nodes")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1", "2", "3", "4", "5"]
    );
    assert_eq!(
        m.sh_ok("ls swarm/nodes/3")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["ctl", "key", "status"]
    );
    let status = m.sh_ok("cat swarm/status");
    assert!(status.contains("members 5\n"), "{status}");
    assert_eq!(
        m.sh_ok("awk '$1==\"state\"{print $2}' swarm/nodes/*/status")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["alive"; 5]
    );
    let key = m.sh_ok("cat swarm/nodes/2/key");
    assert_eq!(key.trim().len(), 64, "{key}");

    // A bad verb is refused, and the message (on /events) names it.
    let scratch = tempfile::tempdir().unwrap();
    let events = scratch.path().join("events.txt");
    let mut follower = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("exec cat events > {}", events.display()))
        .current_dir(m.path())
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let out = m.sh("echo 'votrs 5' > swarm/ctl");
    assert!(!out.status.success());
    wait("the refusal on /events", 10, || {
        std::fs::read_to_string(&events)
            .is_ok_and(|t| t.contains("/swarm/ctl: unknown verb \"votrs\""))
    });
    let _ = follower.kill();
    let _ = follower.wait();

    // More voters on request.
    m.sh_ok("echo 'voters 5' > swarm/ctl");
    wait("five voters", 20, || {
        swarm_status(&c, 0).is_some_and(|s| ids(&s, "voters").len() == 5)
    });

    // Node 5 leaves: left (not dead) everywhere, and out of the log.
    m.sh_ok("echo leave > swarm/nodes/5/ctl");
    wait("node 5 left, and out of the log", 20, || {
        (0..4).all(|i| state_of(&c, i, 5).as_deref() == Some("left"))
            && swarm_status(&c, 0).is_some_and(|s| {
                !ids(&s, "voters").contains(&5) && !ids(&s, "learners").contains(&5)
            })
    });
    assert!(m.sh_ok("cat swarm/nodes/5/status").contains("role none\n"));

    // A killed node shows as dead to grep.
    let (_dir, _addr) = c.nodes[3].take().unwrap().kill_keep();
    wait("node 4 dead on node 1", 20, || {
        state_of(&c, 0, 4).as_deref() == Some("dead")
    });
    let dead = m.sh_ok("grep -l 'state dead' swarm/nodes/*/status");
    assert_eq!(dead.trim(), "swarm/nodes/4/status");
    let left = m.sh_ok("grep -l 'state left' swarm/nodes/*/status");
    assert_eq!(left.trim(), "swarm/nodes/5/status");
    assert!(!m.sh("cat swarm/ctl").status.success(), "ctl is write-only");
}
