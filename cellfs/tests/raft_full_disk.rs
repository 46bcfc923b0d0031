//! A replica whose storage runs out of space (`Storage::no_space`) goes
//! on: the proposal whose entry could not be written is answered with
//! `LogError::NoSpace` and never applied, later ones are refused at once,
//! reads are served, a follower takes no entries (and acknowledges none),
//! and everything resumes once space returns.

use std::cell::Cell;
use std::rc::Rc;

use cellfs::raft::{
    Body, HardState, Loaded, MemStorage, Member, Options, Replica, Rpc, SnapshotMeta, Storage,
    StorageError, Stored,
};
use cellfs::{Commit, Index, LogError, ReadGate};

/// A disk that can be made full: appends of commands then fail (the
/// node's own entries still fit, as the hosted store's reserve lets them),
/// leaving nothing written, and the storage is short of space until the
/// disk is no longer full.
struct Disk {
    mem: MemStorage,
    full: Rc<Cell<bool>>,
    short: Cell<bool>,
}

impl Storage for Disk {
    fn load(&mut self) -> Result<Loaded, StorageError> {
        self.mem.load()
    }
    fn save_hard_state(&mut self, hard: &HardState) -> Result<(), StorageError> {
        self.mem.save_hard_state(hard)
    }
    fn append(&mut self, after: Index, entries: &[Stored]) -> Result<(), StorageError> {
        let commands = entries
            .iter()
            .any(|e| matches!(e.body, Body::Command { .. }));
        if self.full.get() && commands {
            self.short.set(true);
            return Err(StorageError("log: writing: No space left on device".into()));
        }
        self.mem.append(after, entries)
    }
    fn sync(&mut self) -> Result<(), StorageError> {
        self.mem.sync()
    }
    fn save_snapshot(&mut self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        self.mem.save_snapshot(meta, data)
    }
    fn no_space(&self) -> Option<String> {
        if self.short.get() && !self.full.get() {
            self.short.set(false);
        }
        self.short.get().then(|| "log: no space".to_string())
    }
}

fn member(id: u64) -> Member {
    Member {
        id,
        addr: format!("sim:{id}"),
        key: [id as u8; 32],
    }
}

struct Net {
    now: u64,
    nodes: Vec<Replica<Disk>>,
    full: Vec<Rc<Cell<bool>>>,
    commits: Vec<Vec<Commit>>,
}

impl Net {
    fn new(n: u64) -> Net {
        let members: Vec<Member> = (1..=n).map(member).collect();
        let full: Vec<Rc<Cell<bool>>> = (1..=n).map(|_| Rc::default()).collect();
        let nodes = (1..=n)
            .map(|id| {
                let disk = Disk {
                    mem: MemStorage::default(),
                    full: full[id as usize - 1].clone(),
                    short: Cell::new(false),
                };
                Replica::open(Options::new(id), &members, disk, 0, true).unwrap()
            })
            .collect();
        Net {
            now: 0,
            nodes,
            full,
            commits: (0..n).map(|_| Vec::new()).collect(),
        }
    }

    fn node(&mut self, id: u64) -> &mut Replica<Disk> {
        &mut self.nodes[id as usize - 1]
    }

    fn run(&mut self, ms: u64) {
        for _ in 0..ms {
            self.now += 1;
            let mut moved = true;
            while moved {
                moved = false;
                let mut msgs = Vec::new();
                for (i, n) in self.nodes.iter_mut().enumerate() {
                    n.tick(self.now);
                    let mut out = Vec::new();
                    n.take_messages(&mut out);
                    n.take_committed(&mut self.commits[i]);
                    msgs.extend(out.into_iter().map(|(to, m)| (i as u64 + 1, to, m)));
                }
                for (from, to, m) in msgs {
                    moved = true;
                    let m = Rpc::decode(&m.encode()).unwrap();
                    self.nodes[to as usize - 1].receive(from, m);
                }
            }
        }
    }

    fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .find(|n| n.status().role == "leader")
            .map(|n| n.status().id)
    }

    /// The commands applied on node `id`, in order.
    fn applied(&self, id: u64) -> Vec<Vec<u8>> {
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

    /// How proposal `p` of node `id` was answered, if it was.
    fn answer(&self, id: u64, p: u64) -> Option<Result<(), LogError>> {
        self.commits[id as usize - 1].iter().find_map(|c| match c {
            Commit::Entry {
                proposal: Some(q), ..
            } if *q == p => Some(Ok(())),
            Commit::Done { proposal, result } if *proposal == p => Some(result.clone()),
            _ => None,
        })
    }
}

fn no_space(r: Option<Result<(), LogError>>) -> bool {
    matches!(r, Some(Err(LogError::NoSpace(why))) if why.contains("No space") || why.contains("no space"))
}

#[test]
fn a_node_alone_refuses_writes_on_a_full_disk_serves_reads_and_resumes() {
    let mut net = Net::new(1);
    net.run(5);
    assert_eq!(net.leader(), Some(1));
    let a = net.node(1).propose(b"cmd a".to_vec()).unwrap();
    net.run(1);
    assert_eq!(net.answer(1, a), Some(Ok(())));

    net.full[0].set(true);
    let b = net.node(1).propose(b"cmd b".to_vec()).unwrap();
    net.run(1);
    assert!(no_space(net.answer(1, b)), "{:?}", net.answer(1, b));
    assert!(net.node(1).failed().is_none(), "the replica stopped");
    // Refused at once from now on.
    let c = net.node(1).propose(b"cmd c".to_vec()).unwrap();
    net.run(1);
    assert!(no_space(net.answer(1, c)), "{:?}", net.answer(1, c));
    // It leads again (its own entries fit) and serves reads.
    net.run(1000);
    assert_eq!(net.leader(), Some(1));
    assert!(matches!(net.node(1).read(), Ok(ReadGate::Now)));

    net.full[0].set(false);
    let d = net.node(1).propose(b"cmd d".to_vec()).unwrap();
    net.run(1);
    assert_eq!(net.answer(1, d), Some(Ok(())));
    assert_eq!(net.applied(1), vec![b"cmd a".to_vec(), b"cmd d".to_vec()]);

    // What storage holds is what was acknowledged.
    let disk = net.nodes.remove(0).into_storage();
    let mut r = Replica::open(Options::new(1), &[member(1)], disk, net.now, true).unwrap();
    let mut got = Vec::new();
    for t in net.now..net.now + 5 {
        r.tick(t);
        r.take_committed(&mut got);
    }
    let replayed: Vec<Vec<u8>> = got
        .iter()
        .filter_map(|c| match c {
            Commit::Entry { entry, .. } => Some(entry.data.clone()),
            _ => None,
        })
        .filter(|d| d.starts_with(b"cmd"))
        .collect();
    assert_eq!(replayed, vec![b"cmd a".to_vec(), b"cmd d".to_vec()]);
}

#[test]
fn a_follower_with_a_full_disk_takes_no_entries_until_space_returns() {
    let mut net = Net::new(3);
    net.run(2000);
    let leader = net.leader().expect("a leader within 2 s");
    let full = (1..=3).find(|&i| i != leader).unwrap();
    net.full[full as usize - 1].set(true);
    let x = net.node(leader).propose(b"cmd x".to_vec()).unwrap();
    net.run(300);
    // The two others commit it; the full one neither stops nor takes it.
    assert_eq!(net.answer(leader, x), Some(Ok(())));
    assert!(net.node(full).failed().is_none());
    assert_eq!(net.applied(full), Vec::<Vec<u8>>::new());
    // Its own writes are refused at once.
    let y = net.node(full).propose(b"cmd y".to_vec()).unwrap();
    net.run(1);
    assert!(no_space(net.answer(full, y)), "{:?}", net.answer(full, y));
    assert_eq!(
        net.leader(),
        Some(leader),
        "the full follower deposed the leader"
    );
    // It acknowledged nothing it could not write.
    let st = net.node(leader).status();
    let seen = st.peers.iter().find(|p| p.id == full).unwrap().match_index;
    assert!(
        seen < st.last_index,
        "the leader counts {seen} as on node {full}"
    );

    net.full[full as usize - 1].set(false);
    net.run(300);
    assert_eq!(net.applied(full), vec![b"cmd x".to_vec()]);
    let z = net.node(full).propose(b"cmd z".to_vec()).unwrap();
    net.run(300);
    assert_eq!(net.answer(full, z), Some(Ok(())));
    for id in 1..=3 {
        assert_eq!(
            net.applied(id),
            vec![b"cmd x".to_vec(), b"cmd z".to_vec()],
            "node {id}"
        );
    }
}

#[test]
fn a_leader_with_a_full_disk_refuses_writes_and_loses_nothing() {
    let mut net = Net::new(3);
    net.run(2000);
    let full = net.leader().expect("a leader within 2 s");
    let other = (1..=3).find(|&i| i != full).unwrap();
    let a = net.node(full).propose(b"cmd a".to_vec()).unwrap();
    net.run(100);
    assert_eq!(net.answer(full, a), Some(Ok(())));

    net.full[full as usize - 1].set(true);
    let b = net.node(full).propose(b"cmd b".to_vec()).unwrap();
    net.run(1);
    assert!(no_space(net.answer(full, b)), "{:?}", net.answer(full, b));
    assert!(net.node(full).failed().is_none(), "the replica stopped");
    // The cluster goes on: a write through another node is either taken
    // (a node with room leads now) or refused, never lost.
    net.run(2000);
    assert!(net.leader().is_some(), "no leader with one full disk");
    let c = net.node(other).propose(b"cmd c".to_vec()).unwrap();
    net.run(300);
    let c_taken = match net.answer(other, c) {
        Some(Ok(())) => true,
        Some(Err(e)) => {
            assert!(e.to_string().contains("no space"), "{e}");
            false
        }
        None => panic!("cmd c was not answered"),
    };

    net.full[full as usize - 1].set(false);
    let d = net.node(other).propose(b"cmd d".to_vec()).unwrap();
    net.run(2000);
    assert_eq!(net.answer(other, d), Some(Ok(())));
    let mut want = vec![b"cmd a".to_vec()];
    if c_taken {
        want.push(b"cmd c".to_vec());
    }
    want.push(b"cmd d".to_vec());
    for id in 1..=3 {
        assert_eq!(net.applied(id), want, "node {id}");
    }
}
