//! The replica on its own: a small perfect network, step by step. The
//! seeded fault-injecting simulation of whole nodes is `raft_sim`.

use cellfs::raft::{MemStorage, Member, Options, Replica, Rpc};
use cellfs::{Change, Commit, LogError, ReadGate};

fn member(id: u64) -> Member {
    Member {
        id,
        addr: format!("sim:{id}"),
        key: [id as u8; 32],
    }
}

struct Net {
    now: u64,
    nodes: Vec<Option<Replica<MemStorage>>>,
    commits: Vec<Vec<Commit>>,
    /// A node cut off from the others: what it sends and what is sent to
    /// it is lost.
    cut: Option<u64>,
    /// A partition: these nodes hear only each other.
    apart: Vec<u64>,
}

impl Net {
    fn new(n: u64) -> Net {
        let members: Vec<Member> = (1..=n).map(member).collect();
        let nodes = (1..=n)
            .map(|id| {
                Some(
                    Replica::open(Options::new(id), &members, MemStorage::default(), 0, true)
                        .unwrap(),
                )
            })
            .collect();
        Net {
            now: 0,
            nodes,
            commits: (0..n).map(|_| Vec::new()).collect(),
            cut: None,
            apart: Vec::new(),
        }
    }

    fn node(&mut self, id: u64) -> &mut Replica<MemStorage> {
        self.nodes[id as usize - 1].as_mut().unwrap()
    }

    /// Advance time by `ms`, delivering every message at once.
    fn run(&mut self, ms: u64) {
        for _ in 0..ms {
            self.now += 1;
            let mut moved = true;
            while moved {
                moved = false;
                let mut msgs = Vec::new();
                for (i, n) in self.nodes.iter_mut().enumerate() {
                    let Some(n) = n else { continue };
                    n.tick(self.now);
                    let mut out = Vec::new();
                    n.take_messages(&mut out);
                    n.take_committed(&mut self.commits[i]);
                    msgs.extend(out.into_iter().map(|(to, m)| (i as u64 + 1, to, m)));
                }
                for (from, to, m) in msgs {
                    if self.cut == Some(from)
                        || self.cut == Some(to)
                        || self.apart.contains(&from) != self.apart.contains(&to)
                    {
                        continue;
                    }
                    moved = true;
                    let bytes = m.encode();
                    if let Some(Some(n)) = self.nodes.get_mut(to as usize - 1) {
                        n.receive(from, Rpc::decode(&bytes).unwrap());
                    }
                }
            }
        }
    }

    fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .flatten()
            .find(|n| n.status().role == "leader")
            .map(|n| n.status().id)
    }

    fn entries(&self, id: u64) -> Vec<Vec<u8>> {
        self.commits[id as usize - 1]
            .iter()
            .filter_map(|c| match c {
                Commit::Entry { entry, .. } if entry.data.starts_with(b"cmd") => {
                    Some(entry.data.clone())
                }
                _ => None,
            })
            .collect()
    }
}

#[test]
fn a_node_alone_commits_and_replays() {
    let mut net = Net::new(1);
    net.run(5);
    assert_eq!(net.leader(), Some(1));
    let p = net.node(1).propose(b"cmd one".to_vec()).unwrap();
    net.run(1);
    let mine = net.commits[0].iter().any(
        |c| matches!(c, Commit::Entry { proposal: Some(q), entry } if *q == p && entry.data == b"cmd one"),
    );
    assert!(mine, "{:?}", net.commits[0]);
    // Restart from storage: the entry is reported again, unasked.
    let storage = net.nodes[0].take().unwrap().into_storage();
    net.nodes[0] =
        Some(Replica::open(Options::new(1), &[member(1)], storage, net.now, true).unwrap());
    net.commits[0].clear();
    net.run(5);
    assert_eq!(net.entries(1), vec![b"cmd one".to_vec()]);
}

#[test]
fn three_nodes_elect_commit_and_forward() {
    let mut net = Net::new(3);
    net.run(2000);
    let leader = net.leader().expect("a leader within 2 s");
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    net.node(leader).propose(b"cmd a".to_vec()).unwrap();
    let p = net.node(follower).propose(b"cmd b".to_vec()).unwrap();
    // Followers learn the commit index from the next heartbeat.
    net.run(200);
    for id in 1..=3 {
        assert_eq!(
            net.entries(id),
            vec![b"cmd a".to_vec(), b"cmd b".to_vec()],
            "node {id}"
        );
    }
    let answered = net.commits[follower as usize - 1]
        .iter()
        .any(|c| matches!(c, Commit::Entry { proposal: Some(q), .. } if *q == p));
    assert!(
        answered,
        "the forwarded proposal is answered on the node that made it"
    );
}

#[test]
fn a_leader_that_dies_is_replaced_and_nothing_committed_is_lost() {
    let mut net = Net::new(3);
    net.run(2000);
    let old = net.leader().unwrap();
    for i in 0..10 {
        net.node(old)
            .propose(format!("cmd {i}").into_bytes())
            .unwrap();
    }
    net.run(20);
    net.nodes[old as usize - 1] = None;
    net.run(2000);
    let new = net.leader().expect("a new leader");
    assert_ne!(new, old);
    net.node(new).propose(b"cmd after".to_vec()).unwrap();
    net.run(50);
    let want: Vec<Vec<u8>> = (0..10)
        .map(|i| format!("cmd {i}").into_bytes())
        .chain([b"cmd after".to_vec()])
        .collect();
    assert_eq!(net.entries(new), want);
}

#[test]
fn a_node_cut_off_and_let_back_in_does_not_depose_the_leader() {
    let mut net = Net::new(3);
    net.run(2000);
    let leader = net.leader().unwrap();
    let term = net.node(leader).status().term;
    let away = (1..=3).find(|&i| i != leader).unwrap();
    net.cut = Some(away);
    // Many election timeouts: it asks for pre-votes nobody hears, and
    // never campaigns, so its term stays.
    net.run(5000);
    assert_eq!(net.node(away).status().term, term);
    net.node(leader)
        .propose(b"cmd while away".to_vec())
        .unwrap();
    net.run(50);
    net.cut = None;
    net.run(2000);
    assert_eq!(net.leader(), Some(leader), "the leader kept its office");
    assert_eq!(net.node(leader).status().term, term);
    assert_eq!(net.entries(away), vec![b"cmd while away".to_vec()]);
}

#[test]
fn transfer_snapshot_and_catch_up_by_snapshot() {
    let mut net = Net::new(3);
    net.run(2000);
    let leader = net.leader().unwrap();
    let target = (1..=3).find(|&i| i != leader).unwrap();
    let p = net
        .node(leader)
        .change(Change::Transfer { id: target })
        .unwrap();
    net.run(1000);
    assert_eq!(net.leader(), Some(target));
    let done = net.commits[leader as usize - 1]
        .iter()
        .any(|c| matches!(c, Commit::Done { proposal, result: Ok(()) } if *proposal == p));
    assert!(done);
    // Take node 3 (or another follower) away, commit, snapshot, bring it back.
    let lagger = (1..=3).find(|&i| i != target).unwrap();
    let storage = net.nodes[lagger as usize - 1]
        .take()
        .unwrap()
        .into_storage();
    for i in 0..5 {
        net.node(target)
            .propose(format!("cmd {i}").into_bytes())
            .unwrap();
    }
    net.run(50);
    let snap = net.node(target).change(Change::Snapshot).unwrap();
    assert!(net.node(target).wants_snapshot());
    let applied = net.commits[target as usize - 1]
        .iter()
        .rev()
        .find_map(|c| match c {
            Commit::Entry { entry, .. } => Some((entry.index, entry.term)),
            _ => None,
        })
        .unwrap();
    net.node(target).save_snapshot(cellfs::Snapshot {
        index: applied.0,
        term: applied.1,
        data: b"the state".to_vec(),
    });
    net.run(1);
    assert!(
        net.commits[target as usize - 1]
            .iter()
            .any(|c| matches!(c, Commit::Done { proposal, result: Ok(()) } if *proposal == snap))
    );
    assert_eq!(net.node(target).status().snapshot_index, applied.0);
    let members: Vec<Member> = (1..=3).map(member).collect();
    net.nodes[lagger as usize - 1] =
        Some(Replica::open(Options::new(lagger), &members, storage, net.now, true).unwrap());
    net.run(3000);
    let got_snapshot = net.commits[lagger as usize - 1]
        .iter()
        .any(|c| matches!(c, Commit::Snapshot(s) if s.data == b"the state"));
    assert!(got_snapshot, "the lagging node catches up by snapshot");
}

#[test]
fn bad_changes_are_refused() {
    let mut net = Net::new(1);
    net.run(5);
    assert!(matches!(
        net.node(1).change(Change::Remove { id: 0 }),
        Err(LogError::Refused(_))
    ));
    let p = net.node(1).change(Change::Remove { id: 1 }).unwrap();
    net.run(1);
    let refused = net.commits[0]
        .iter()
        .any(|c| matches!(c, Commit::Done { proposal, result: Err(LogError::Refused(_)) } if *proposal == p));
    assert!(refused, "{:?}", net.commits[0]);
}

#[test]
fn reads_are_confirmed_by_a_majority_and_see_every_acknowledged_write() {
    let mut net = Net::new(3);
    net.run(2000);
    let leader = net.leader().unwrap();
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    // Not alone, so not at once: the leader asks a majority first.
    let ReadGate::Wait(r) = net.node(leader).read().unwrap() else {
        panic!("a leader of three reads at once");
    };
    net.run(1);
    let done =
        |c: &Commit, r| matches!(c, Commit::Done { proposal, result: Ok(()) } if *proposal == r);
    assert!(net.commits[leader as usize - 1].iter().any(|c| done(c, r)));
    // A write committed on the leader while the follower was cut off, so
    // it has not heard of it (a leader tells its followers a new commit
    // index at once), but a read there must see the write: the read is
    // answered only after it.
    net.cut = Some(follower);
    net.node(leader).propose(b"cmd w".to_vec()).unwrap();
    net.run(1);
    net.cut = None;
    let fc = follower as usize - 1;
    net.commits[fc].clear();
    let ReadGate::Wait(r) = net.node(follower).read().unwrap() else {
        panic!("a follower reads at once");
    };
    net.run(2);
    let at = |pred: &dyn Fn(&Commit) -> bool| net.commits[fc].iter().position(pred);
    let write = at(&|c| matches!(c, Commit::Entry { entry, .. } if entry.data == b"cmd w"));
    let read = at(&|c| done(c, r));
    assert!(
        write.is_some() && read.is_some() && write < read,
        "the write comes before the read: {:?}",
        net.commits[fc]
    );
    // A leader cut off from the others cannot confirm a read, so it
    // never answers one from stale state.
    let mut old = net.nodes[leader as usize - 1].take().unwrap();
    let ReadGate::Wait(r) = old.read().unwrap() else {
        panic!("a cut-off leader reads at once");
    };
    let mut got = Vec::new();
    for ms in 1..=6000 {
        old.tick(net.now + ms);
        old.take_messages(&mut Vec::new());
        old.take_committed(&mut got);
    }
    let answers: Vec<&Commit> = got
        .iter()
        .filter(|c| matches!(c, Commit::Done { proposal, .. } if *proposal == r))
        .collect();
    assert!(
        matches!(
            answers[..],
            [Commit::Done {
                result: Err(LogError::NoLeader),
                ..
            }]
        ),
        "{answers:?}"
    );
    // Check-quorum: it takes no write either, and says so at once.
    assert_eq!(old.status().role, "leader");
    let p = old.propose(b"cmd late".to_vec()).unwrap();
    let mut got = Vec::new();
    old.take_committed(&mut got);
    assert!(
        matches!(got[..], [Commit::Done { proposal, result: Err(LogError::NoLeader) }] if proposal == p),
        "{got:?}"
    );
}

#[test]
fn a_node_alone_reads_at_once() {
    let mut net = Net::new(1);
    net.run(5);
    assert_eq!(net.node(1).read(), Ok(ReadGate::Now));
}

// Non-voting members (learners), promotion, demotion and replacement.

impl Net {
    /// Start node `id` (the next one) empty, waiting to be added.
    fn spare(&mut self, id: u64) {
        assert_eq!(id as usize, self.nodes.len() + 1);
        let members: Vec<Member> = (1..id).map(member).collect();
        let r = Replica::open(
            Options::new(id),
            &members,
            MemStorage::default(),
            self.now,
            false,
        )
        .unwrap();
        self.nodes.push(Some(r));
        self.commits.push(Vec::new());
    }

    /// Ask `change` of node `on`, let `ms` pass, and say how it went.
    fn ask(&mut self, on: u64, change: Change, ms: u64) -> Result<(), String> {
        let p = self.node(on).change(change).map_err(|e| e.to_string())?;
        self.run(ms);
        self.answer(on, p)
    }

    /// How node `on`'s proposal `p` was answered.
    fn answer(&self, on: u64, p: u64) -> Result<(), String> {
        for c in &self.commits[on as usize - 1] {
            match c {
                Commit::Entry {
                    proposal: Some(q), ..
                } if *q == p => return Ok(()),
                Commit::Done { proposal, result } if *proposal == p => {
                    return result.clone().map_err(|e| e.to_string());
                }
                _ => {}
            }
        }
        Err(String::from("no answer"))
    }

    /// Voters and non-voters as node `id` sees them.
    fn sets(&self, id: u64) -> (Vec<u64>, Vec<u64>, bool) {
        let s = self.nodes[id as usize - 1].as_ref().unwrap().status();
        (s.voters, s.non_voters, s.joint)
    }

    /// Three voters and node 4 added as a learner; the leader.
    fn with_learner() -> (Net, u64) {
        let mut net = Net::new(3);
        net.run(2000);
        let leader = net.leader().unwrap();
        net.spare(4);
        let m = member(4);
        let learner = Change::Learner {
            id: 4,
            addr: m.addr,
            key: m.key,
        };
        assert_eq!(net.ask(leader, learner, 500), Ok(()));
        (net, leader)
    }
}

#[test]
fn a_learner_gets_the_log_and_reads_but_is_no_quorum() {
    let (mut net, leader) = Net::with_learner();
    assert_eq!(net.sets(leader), (vec![1, 2, 3], vec![4], false));
    let s = net.node(leader).status();
    assert!(s.leads());
    let role = s.peers.iter().find(|p| p.id == 4).map(|p| p.role);
    assert_eq!(role, Some("non-voter"));
    net.node(leader).propose(b"cmd a".to_vec()).unwrap();
    net.run(200);
    assert_eq!(net.entries(4), vec![b"cmd a".to_vec()]);
    assert_eq!(net.sets(4), (vec![1, 2, 3], vec![4], false));
    assert!(!net.node(4).status().leads());
    // A read on the learner is confirmed by the leader.
    let ReadGate::Wait(r) = net.node(4).read().unwrap() else {
        panic!("a learner reads at once");
    };
    net.run(5);
    assert_eq!(net.answer(4, r), Ok(()));
    // With two of the three voters gone, nothing commits, learner or not.
    let term = net.node(4).status().term;
    for id in (1..=3).filter(|&i| i != leader) {
        net.nodes[id as usize - 1] = None;
    }
    net.node(leader).propose(b"cmd b".to_vec()).unwrap();
    net.run(3000);
    assert_eq!(net.entries(leader), vec![b"cmd a".to_vec()]);
    assert_eq!(net.entries(4), vec![b"cmd a".to_vec()]);
    // And the learner never campaigned.
    let s = net.node(4).status();
    assert_eq!((s.role, s.term), ("follower", term));
}

#[test]
fn a_learner_is_promoted_a_voter_demoted_and_a_learner_removed() {
    let (mut net, leader) = Net::with_learner();
    assert_eq!(net.ask(leader, Change::Promote { id: 4 }, 500), Ok(()));
    net.run(200);
    assert_eq!(net.sets(leader), (vec![1, 2, 3, 4], vec![], false));
    // Demoted, from a follower's ctl: it keeps replicating.
    let other = (1..=3).find(|&i| i != leader).unwrap();
    assert_eq!(net.ask(other, Change::Demote { id: other }, 500), Ok(()));
    net.run(200);
    let voters: Vec<u64> = (1..=4).filter(|&i| i != other).collect();
    assert_eq!(net.sets(leader), (voters.clone(), vec![other], false));
    assert_eq!(net.sets(other), (voters.clone(), vec![other], false));
    net.node(leader).propose(b"cmd c".to_vec()).unwrap();
    net.run(200);
    assert_eq!(net.entries(other), vec![b"cmd c".to_vec()]);
    // A non-voter is removed at once.
    assert_eq!(net.ask(leader, Change::Remove { id: other }, 500), Ok(()));
    assert_eq!(net.sets(leader), (voters, vec![], false));
    net.node(leader).propose(b"cmd d".to_vec()).unwrap();
    net.run(200);
    assert_eq!(
        net.entries(leader),
        vec![b"cmd c".to_vec(), b"cmd d".to_vec()]
    );
    assert_eq!(net.entries(other), vec![b"cmd c".to_vec()]);
}

#[test]
fn a_dead_voter_is_replaced_by_a_learner_and_stays_a_non_voter() {
    let (mut net, leader) = Net::with_learner();
    let dead = (1..=3).find(|&i| i != leader).unwrap();
    let storage = net.nodes[dead as usize - 1].take().unwrap().into_storage();
    let change = Change::Replace { out: dead, with: 4 };
    assert_eq!(net.ask(leader, change, 1000), Ok(()));
    let voters: Vec<u64> = (1..=4).filter(|&i| i != dead).collect();
    assert_eq!(net.sets(leader), (voters.clone(), vec![dead], false));
    assert_eq!(net.sets(4), (voters.clone(), vec![dead], false));
    // The new voter counts: with the third voter gone too, the leader
    // and node 4 commit on their own.
    let third = (1..=3).find(|&i| i != leader && i != dead).unwrap();
    net.nodes[third as usize - 1] = None;
    net.node(leader).propose(b"cmd e".to_vec()).unwrap();
    net.run(200);
    assert_eq!(net.entries(leader), vec![b"cmd e".to_vec()]);
    assert_eq!(net.entries(4), vec![b"cmd e".to_vec()]);
    // The replaced node comes back as a non-voter, catches up, and can
    // be promoted again.
    let members: Vec<Member> = (1..=4).map(member).collect();
    net.nodes[dead as usize - 1] =
        Some(Replica::open(Options::new(dead), &members, storage, net.now, true).unwrap());
    net.run(500);
    assert_eq!(net.entries(dead), vec![b"cmd e".to_vec()]);
    assert_eq!(net.ask(leader, Change::Promote { id: dead }, 1000), Ok(()));
    let mut voters = voters;
    voters.push(dead);
    voters.sort();
    assert_eq!(net.sets(leader), (voters, vec![], false));
}

#[test]
fn membership_changes_that_cannot_be_made_say_why() {
    let (mut net, leader) = Net::with_learner();
    let [a, b] = {
        let f: Vec<u64> = (1..=3).filter(|&i| i != leader).collect();
        [f[0], f[1]]
    };
    let m4 = member(4);
    let cases = [
        (
            Change::Learner {
                id: 4,
                addr: m4.addr.clone(),
                key: m4.key,
            },
            "raft: node 4 is already a member (a non-voter; promote id=4 makes it a voter)"
                .to_string(),
        ),
        (
            Change::Learner {
                id: 5,
                addr: "sim:5".into(),
                key: m4.key,
            },
            "raft: that key is already node 4's; each node has its own key".to_string(),
        ),
        (
            Change::Add {
                id: a,
                addr: "sim:x".into(),
                key: [99; 32],
            },
            format!("raft: node {a} is already a member"),
        ),
        (
            Change::Promote { id: a },
            format!("raft: node {a} is already a voter"),
        ),
        (
            Change::Promote { id: 9 },
            "raft: node 9 is not a non-voter: add it first (learner id=9 addr=HOST:PORT key=HEX)"
                .to_string(),
        ),
        (
            Change::Demote { id: 4 },
            "raft: node 4 is not a voter: only a voter can be demoted".to_string(),
        ),
        (
            Change::Demote { id: leader },
            format!(
                "raft: node {leader} leads: it cannot demote itself; hand leadership to another voter first (transfer id={a})"
            ),
        ),
        (
            Change::Replace { out: 4, with: a },
            "raft: node 4 is not a voter: replace out= names the voter that leaves".to_string(),
        ),
        (
            Change::Replace { out: a, with: b },
            format!("raft: node {b} is already a voter"),
        ),
        (
            Change::Replace {
                out: leader,
                with: 4,
            },
            format!(
                "raft: node {leader} leads: it cannot replace itself; hand leadership to another voter first (transfer id={a})"
            ),
        ),
        (
            Change::Remove { id: 9 },
            "raft: node 9 is not a member".to_string(),
        ),
        (
            Change::Replace { out: a, with: 0 },
            "raft: id 0 is not a node id; ids start at 1".to_string(),
        ),
    ];
    for (change, why) in cases {
        // Asked of the leader and of a follower (forwarded): one answer.
        for on in [leader, a] {
            assert_eq!(
                net.ask(on, change.clone(), 100),
                Err(why.clone()),
                "{change}"
            );
        }
    }
    // One change at a time.
    let p = net.node(leader).change(Change::Promote { id: 4 }).unwrap();
    let q = net
        .node(leader)
        .change(Change::Replace { out: a, with: 4 })
        .unwrap();
    net.run(500);
    assert_eq!(net.answer(leader, p), Ok(()));
    assert_eq!(
        net.answer(leader, q),
        Err("raft: a membership change is still under way; try again when it commits".into())
    );
    // Demoting the last voter but the leader's own self is refused above;
    // a single voter cannot demote itself either.
    let mut alone = Net::new(1);
    alone.run(5);
    assert_eq!(
        alone.ask(1, Change::Demote { id: 1 }, 5),
        Err("raft: node 1 leads: it cannot demote itself; hand leadership to another voter first (transfer id=ID)".into())
    );
}

#[test]
fn a_replace_whose_leader_dies_midway_is_finished_by_the_next() {
    let (mut net, leader) = Net::with_learner();
    let out = (1..=3).find(|&i| i != leader).unwrap();
    let stays = (1..=3).find(|&i| i != leader && i != out).unwrap();
    let p = net
        .node(leader)
        .change(Change::Replace { out, with: 4 })
        .unwrap();
    // The leader dies as soon as the joint configuration commits, before
    // it can add `out` back as a non-voter.
    let mut ms = 0;
    while net.answer(leader, p).is_err() {
        net.run(1);
        ms += 1;
        assert!(ms < 1000, "the joint change commits");
    }
    net.nodes[leader as usize - 1] = None;
    net.run(5000);
    let new = net.leader().expect("a new leader");
    assert!(new == stays || new == 4, "{new}");
    let mut voters = vec![leader, stays, 4];
    voters.sort();
    assert_eq!(net.sets(new), (voters, vec![out], false));
    net.node(new).propose(b"cmd f".to_vec()).unwrap();
    net.run(200);
    assert_eq!(net.entries(out), vec![b"cmd f".to_vec()]);
}

/// `L`, `M` and the heartbeat, as every node of these tests has them.
fn lease_settings() -> (u64, u64, u64) {
    let o = Options::new(1);
    (o.lease_ms, o.fence_margin_ms, o.heartbeat_ms)
}

#[test]
fn a_node_alone_always_holds_its_lease() {
    let (l, _, _) = lease_settings();
    let mut net = Net::new(1);
    for _ in 0..3 * l {
        net.run(1);
        assert_eq!(net.node(1).lease_ms(), l);
        assert_eq!(net.node(1).status().lease_ms, Some(l));
    }
}

#[test]
fn a_cut_off_leader_loses_its_lease_before_the_new_one_calls_its_own_over() {
    let (l, m, heartbeat) = lease_settings();
    let mut net = Net::new(3);
    net.run(2000);
    let old = net.leader().unwrap();
    // Connected, everyone holds a lease, all the time.
    for _ in 0..3 * l {
        net.run(1);
        for id in 1..=3 {
            assert!(net.node(id).lease_ms() > 0, "node {id} at {}", net.now);
        }
        for id in (1..=3).filter(|&i| i != old) {
            assert!(!net.node(old).lease_over(id));
            assert!(!net.node(id).lease_over(old), "only a leader calls it");
        }
    }
    net.cut = Some(old);
    let cut_at = net.now;
    let mut office: Option<(u64, u64)> = None;
    let mut over_at = None;
    while net.now < cut_at + 3 * (l + m) {
        net.run(1);
        let now = net.now;
        if now >= cut_at + l + heartbeat {
            assert_eq!(net.node(old).lease_ms(), 0, "old leader at {now}");
        }
        if office.is_none() {
            office = (1..=3)
                .filter(|&i| i != old)
                .find(|&i| net.node(i).status().leads())
                .map(|i| (i, now));
        }
        let Some((new, since)) = office else {
            continue;
        };
        let over = net.node(new).lease_over(old);
        if over {
            assert!(now > since + l + m, "over at {now}, in office at {since}");
            assert_eq!(net.node(old).lease_ms(), 0, "over at {now}");
            over_at.get_or_insert(now);
        }
        // It keeps its own followers, whose leases go on.
        let other = (1..=3).find(|&i| i != old && i != new).unwrap();
        assert!(!net.node(new).lease_over(other));
    }
    let (_, since) = office.expect("a new leader");
    assert_eq!(
        over_at,
        Some(since + l + m + 1),
        "called over as soon as it surely is"
    );
    // The old leader still thinks it leads, but holds no lease, so it
    // calls nobody's over.
    assert_eq!(net.node(old).status().role, "leader");
    for id in (1..=3).filter(|&i| i != old) {
        assert!(!net.node(old).lease_over(id));
    }
    let status = net.node(old).status();
    assert_eq!(status.lease_ms, Some(0));
}

#[test]
fn a_cut_off_follower_loses_its_lease_before_the_leader_calls_it_over() {
    let (l, m, heartbeat) = lease_settings();
    let mut net = Net::new(3);
    net.run(2000);
    let leader = net.leader().unwrap();
    let away = (1..=3).find(|&i| i != leader).unwrap();
    net.run(500);
    assert!(net.node(away).lease_ms() > 0);
    net.cut = Some(away);
    let cut_at = net.now;
    let mut over_at = None;
    while net.now < cut_at + 3 * (l + m) {
        net.run(1);
        let now = net.now;
        if now >= cut_at + l {
            assert_eq!(net.node(away).lease_ms(), 0, "cut-off follower at {now}");
        }
        // The leader keeps a majority, and so its lease.
        assert!(net.node(leader).lease_ms() > 0);
        if net.node(leader).lease_over(away) {
            assert!(now > cut_at + l + m, "over at {now}, cut at {cut_at}");
            assert_eq!(net.node(away).lease_ms(), 0);
            over_at.get_or_insert(now);
        }
    }
    let over_at = over_at.expect("the leader calls the lease over");
    assert!(
        over_at <= cut_at + l + m + heartbeat + 1,
        "over at {over_at}, cut at {cut_at}"
    );
    let peer = net
        .node(leader)
        .status()
        .peers
        .into_iter()
        .find(|p| p.id == away)
        .unwrap();
    assert!(peer.lease_over);
    // Back in touch, it gets no lease until the leader is told that what
    // it ran went elsewhere (a committed fence): the lease stays revoked.
    net.cut = None;
    net.run(3 * heartbeat + 1);
    assert_eq!(net.node(away).lease_ms(), 0);
    assert!(net.node(leader).lease_over(away));
    // Restored: it holds a lease again and is no longer called over.
    let restore = net
        .node(leader)
        .change(cellfs::Change::Restore { id: away });
    assert!(restore.is_ok());
    net.run(2 * heartbeat + 1);
    assert!(net.node(away).lease_ms() > 0);
    assert!(!net.node(leader).lease_over(away));
}

#[test]
fn a_leader_with_a_minority_loses_its_lease_and_so_does_its_follower() {
    let (l, m, heartbeat) = lease_settings();
    let mut net = Net::new(5);
    net.run(2000);
    let old = net.leader().unwrap();
    let with = (1..=5).find(|&i| i != old).unwrap();
    net.run(500);
    net.apart = vec![old, with];
    let cut_at = net.now;
    let mut office: Option<(u64, u64)> = None;
    while net.now < cut_at + 3 * (l + m) {
        net.run(1);
        let now = net.now;
        // Still in touch with each other, but no majority answers: the
        // leader's lease runs out, and the follower's, never longer.
        if now >= cut_at + l + heartbeat {
            assert_eq!(net.node(old).lease_ms(), 0, "old leader at {now}");
            assert_eq!(net.node(with).lease_ms(), 0, "its follower at {now}");
        }
        assert!(net.node(with).lease_ms() <= net.node(old).lease_ms());
        if office.is_none() {
            office = (1..=5)
                .filter(|&i| i != old && i != with)
                .find(|&i| net.node(i).status().leads())
                .map(|i| (i, now));
        }
        let Some((new, since)) = office else {
            continue;
        };
        for x in [old, with] {
            if net.node(new).lease_over(x) {
                assert!(now > since + l + m, "n{x} over at {now}, office at {since}");
                assert_eq!(net.node(x).lease_ms(), 0, "n{x} over at {now}");
            }
        }
    }
    let (new, _) = office.expect("the majority elects a leader");
    assert!(net.node(new).lease_over(old) && net.node(new).lease_over(with));
    assert_eq!(net.node(old).status().role, "leader", "it still thinks so");
    assert!(!net.node(old).lease_over(with));
}

#[test]
fn writes_waiting_for_a_leader_fail_when_the_lease_is_lost_and_never_land() {
    let (l, _, heartbeat) = lease_settings();
    let mut net = Net::new(3);
    net.run(2000);
    let leader = net.leader().unwrap();
    let away = (1..=3).find(|&i| i != leader).unwrap();
    net.run(500);
    assert!(net.node(away).lease_ms() > 0);
    net.cut = Some(away);
    // Once it no longer knows a leader, a write waits for one.
    let cut_at = net.now;
    while net.node(away).status().leader.is_some() {
        net.run(1);
        assert!(
            net.now < cut_at + 2000,
            "the cut-off node still names a leader"
        );
    }
    let seq = net.node(away).propose(b"cmd-late".to_vec()).unwrap();
    let failed = |net: &Net| {
        net.commits[away as usize - 1].iter().any(|c| {
            matches!(c, Commit::Done { proposal, result: Err(LogError::NoLeader) } if *proposal == seq)
        })
    };
    while net.node(away).lease_ms() > 0 {
        assert!(!failed(&net), "failed while the node held its lease");
        net.run(1);
    }
    net.run(1);
    assert!(
        failed(&net),
        "the waiting write is failed as the lease ends"
    );
    assert!(net.now <= cut_at + l + heartbeat + 2);
    // Back in touch: it is never sent, so it never lands anywhere.
    net.cut = None;
    net.run(2000);
    for id in 1..=3 {
        assert!(
            !net.entries(id).iter().any(|e| e == b"cmd-late"),
            "node {id} applied a write failed at the lease's end"
        );
    }
}
