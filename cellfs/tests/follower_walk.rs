//! Three whole nodes (servers over Raft replicas) on a small perfect
//! network, step by step: what one node acknowledged, every other node's
//! walks, opens and stats see at once, even a follower that has not yet
//! heard the commit; and requests pipelined behind a held walk keep their
//! order.

use cellfs::cap::NodeKey;
use cellfs::raft::{MemStorage, Member, Options, Replica, Rpc};
use cellfs::{Config, ConnId, FixedClock, Outbox, Server};
use ninep::{Body, Dialect, Msg, NOFID, NOTAG, Names};

type Node = Server<Replica<MemStorage>, FixedClock>;

struct Net {
    now: u64,
    nodes: Vec<Node>,
    /// A node cut off from the others.
    cut: Option<usize>,
    /// Replies seen, per node: (connection, frame).
    replies: Vec<Vec<(ConnId, Vec<u8>)>>,
}

impl Net {
    fn new(n: u64) -> Net {
        let members: Vec<Member> = (1..=n)
            .map(|id| Member {
                id,
                addr: format!("sim:{id}"),
                key: [id as u8; 32],
            })
            .collect();
        let nodes = (1..=n)
            .map(|id| {
                let log = Replica::open(Options::new(id), &members, MemStorage::default(), 0, true)
                    .unwrap();
                let config = Config {
                    insecure: true,
                    ..Config::new(&format!("n{id}"), NodeKey::from_seed(&[id as u8; 32]))
                };
                Server::new(config, log, FixedClock { unix: 1, mono: 1 })
            })
            .collect();
        Net {
            now: 0,
            nodes,
            cut: None,
            replies: (0..n).map(|_| Vec::new()).collect(),
        }
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
                    n.log_mut().tick(self.now);
                    let mut out = Outbox::new();
                    n.poll(&mut out);
                    for (c, f) in out.frames() {
                        self.replies[i].push((c, f.to_vec()));
                    }
                    let mut m = Vec::new();
                    n.log_mut().take_messages(&mut m);
                    msgs.extend(m.into_iter().map(|(to, m)| (i, to as usize - 1, m)));
                }
                for (from, to, m) in msgs {
                    if self.cut == Some(from) || self.cut == Some(to) {
                        continue;
                    }
                    moved = true;
                    let m = Rpc::decode(&m.encode()).unwrap();
                    self.nodes[to].log_mut().receive(from as u64 + 1, m);
                }
            }
        }
    }

    fn leader(&mut self) -> Option<usize> {
        self.nodes
            .iter_mut()
            .position(|n| n.log_mut().status().role == "leader")
    }

    /// Send one request to node `i` (answered now or by a later `run`).
    fn send(&mut self, i: usize, conn: ConnId, tag: u16, body: Body<'_>) {
        let mut frame = Vec::new();
        ninep::encode(&Msg { tag, body }, &mut frame).unwrap();
        let mut out = Outbox::new();
        self.nodes[i].handle(conn, &frame, &mut out);
        self.nodes[i].poll(&mut out);
        for (c, f) in out.frames() {
            self.replies[i].push((c, f.to_vec()));
        }
    }

    /// Take node `i`'s replies to `conn`, in order, as (tag, kind).
    fn answers(&mut self, i: usize, conn: ConnId) -> Vec<(u16, String)> {
        let mut got = Vec::new();
        self.replies[i].retain(|(c, f)| {
            if *c != conn {
                return true;
            }
            let m = ninep::decode(f, Dialect::L).unwrap();
            let kind = match m.body {
                Body::Rlerror { ecode } => format!("Rlerror {ecode}"),
                Body::Rwalk { wqids } => format!("Rwalk {}", wqids.len()),
                b => format!("{:?}", b.msg_type()),
            };
            got.push((m.tag, kind));
            false
        });
        got
    }

    /// A connection to node `i`, negotiated and attached as fid 0.
    fn attach(&mut self, i: usize) -> ConnId {
        let conn = self.nodes[i].connect();
        self.send(
            i,
            conn,
            NOTAG,
            Body::Tversion {
                msize: 8192,
                version: "9P2000.L",
            },
        );
        self.send(
            i,
            conn,
            1,
            Body::Tattach {
                fid: 0,
                afid: NOFID,
                uname: "t",
                aname: "",
                n_uname: Some(0),
            },
        );
        self.run(50);
        let got = self.answers(i, conn);
        assert!(
            got.iter().any(|(t, k)| *t == 1 && k == "Rattach"),
            "attach to n{}: {got:?}",
            i + 1
        );
        conn
    }
}

fn walk<'a>(fid: u32, newfid: u32, names: &[&'a str]) -> Body<'a> {
    Body::Twalk {
        fid,
        newfid,
        wnames: Names::from_slice(names).unwrap(),
    }
}

/// A cluster with a leader, and the index of a follower.
fn cluster() -> (Net, usize, usize) {
    let mut net = Net::new(3);
    net.run(3_000);
    let leader = net.leader().expect("a leader within 3 s");
    let follower = (0..3).find(|&i| i != leader).unwrap();
    (net, leader, follower)
}

/// Cut `follower` off, then make channel `name` through the leader's
/// connection `lc` and see it acknowledged: the follower has not heard of
/// it. The cut stays.
fn mkdir_behind_the_followers_back(
    net: &mut Net,
    leader: usize,
    lc: ConnId,
    follower: usize,
    name: &str,
) {
    net.cut = Some(follower);
    net.send(leader, lc, 2, walk(0, 1, &["chan"]));
    net.send(
        leader,
        lc,
        3,
        Body::Tmkdir {
            dfid: 1,
            name,
            mode: 0o755,
            gid: 0,
        },
    );
    net.run(20);
    let got = net.answers(leader, lc);
    assert!(
        got.iter().any(|(t, k)| *t == 3 && k == "Rmkdir"),
        "mkdir /chan/{name} through the leader: {got:?}"
    );
}

#[test]
fn a_follower_walks_to_what_the_leader_acknowledged() {
    let (mut net, leader, follower) = cluster();
    let lc = net.attach(leader);
    let fc = net.attach(follower);
    // The follower hears nothing while the channel is made and
    // acknowledged: it is one commit behind when it is asked.
    mkdir_behind_the_followers_back(&mut net, leader, lc, follower, "x");
    net.cut = None;
    // Asked at once, before any heartbeat: the walk waits for the leader
    // to confirm what is committed, then sees the channel; the open and
    // getattr pipelined behind it follow it in order.
    net.send(follower, fc, 4, walk(0, 2, &["chan", "x", "data"]));
    net.send(follower, fc, 5, Body::Tlopen { fid: 2, flags: 1 });
    net.send(
        follower,
        fc,
        6,
        Body::Tgetattr {
            fid: 2,
            request_mask: 0x7ff,
        },
    );
    net.run(20);
    let got = net.answers(follower, fc);
    assert_eq!(
        got,
        vec![
            (4, String::from("Rwalk 3")),
            (5, String::from("Rlopen")),
            (6, String::from("Rgetattr"))
        ],
        "walk, open and getattr of /chan/x/data through the follower"
    );
}

#[test]
fn a_held_walk_can_be_flushed_and_a_cut_off_node_serves_no_stale_walk() {
    let (mut net, leader, follower) = cluster();
    let fc = net.attach(follower);
    let lc = net.attach(leader);
    mkdir_behind_the_followers_back(&mut net, leader, lc, follower, "y");
    // Cut off, the follower cannot confirm it is current: the walk
    // waits rather than answer "'y' does not exist".
    net.send(follower, fc, 4, walk(0, 2, &["chan", "y"]));
    net.run(100);
    assert_eq!(
        net.answers(follower, fc),
        vec![],
        "no stale answer while cut off"
    );
    // A flush takes it back; nothing else is answered for it.
    net.send(follower, fc, 5, Body::Tflush { oldtag: 4 });
    assert_eq!(net.answers(follower, fc), vec![(5, String::from("Rflush"))]);
    // Asked again once the cut heals, it sees the channel.
    net.cut = None;
    net.send(follower, fc, 4, walk(0, 2, &["chan", "y"]));
    net.run(50);
    assert_eq!(
        net.answers(follower, fc),
        vec![(4, String::from("Rwalk 2"))]
    );
}
