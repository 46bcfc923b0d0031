//! One simulated run: the nodes (each a whole `cellfs::Server` over a
//! replica and in-memory disks), the network between them, the clients, and
//! the faults, all decided by one seeded generator.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::rc::Rc;

use cellfs::cap::NodeKey;
use cellfs::{Clock, Config, ConnId, Outbox, Server};
use ninep::{Body, Msg, NOFID, NOTAG, Names};

use super::check::{self, Op, OpKind, Outcome, Safety};
use super::rng::Rng;
use crate::SimLog;

/// A node's clock: simulated milliseconds, shared with the simulator.
struct SimClock(Rc<Cell<u64>>);

impl Clock for SimClock {
    fn unix_nanos(&self) -> u64 {
        (1_700_000_000_000 + self.0.get()) * 1_000_000
    }
    fn monotonic_nanos(&self) -> u64 {
        self.0.get() * 1_000_000
    }
}

/// The shape of a run, drawn from its seed.
#[derive(Clone, Debug)]
pub struct Params {
    /// Cluster size (3 or 5).
    pub nodes: usize,
    /// Chance that a message is lost.
    pub loss: f64,
    /// Chance that a message is delivered twice.
    pub dup: f64,
    /// Messages take 1..=this many ms (so they overtake each other).
    pub max_delay: u64,
    /// Chance per step that a node crashes between steps.
    pub crash: f64,
    /// Chance per node step that it crashes in the middle of the step,
    /// after taking messages in and before syncing its disk.
    pub crash_mid: f64,
    /// Chance per step of a new random partition.
    pub partition: f64,
    /// Chance per step that partitions heal.
    pub heal: f64,
    /// Chance per step that a node's clock leaps forward.
    pub jump: f64,
    /// The replicas' snapshot interval (in entries).
    pub snapshot_every: u64,
    /// How many clients.
    pub clients: usize,
    /// How long faults go on (simulated ms).
    pub chaos_ms: u64,
}

impl Params {
    fn draw(rng: &mut Rng) -> Params {
        let pick = |rng: &mut Rng, xs: &[f64]| xs[rng.index(xs.len())];
        let nodes = if rng.chance(0.5) { 3 } else { 5 };
        let crash = pick(rng, &[0.0, 0.002, 0.006, 0.015]);
        Params {
            nodes,
            loss: pick(rng, &[0.0, 0.01, 0.05, 0.2]),
            dup: pick(rng, &[0.0, 0.02, 0.1]),
            max_delay: [2, 8, 30][rng.index(3)],
            crash,
            crash_mid: crash / 3.0,
            partition: pick(rng, &[0.0, 0.003, 0.01]),
            heal: 0.02,
            jump: pick(rng, &[0.0, 0.002, 0.008]),
            snapshot_every: [4, 16, 10_000][rng.index(3)],
            clients: rng.range(2, 4) as usize,
            chaos_ms: 3_000,
        }
    }
}

#[path = "agents.rs"]
mod agents;

/// One node: its server when up, its disk when down.
struct Node<R: SimLog> {
    id: u64,
    server: Option<Server<R, SimClock>>,
    disk: Option<R::Disk>,
    clock: Rc<Cell<u64>>,
    /// How far this node's clock has leapt ahead of the simulation's.
    offset: u64,
    /// The latest term it was seen leading, and `offset` then.
    office: (u64, u64),
    restart_at: u64,
    /// Bumped at every restart (connections die with a life).
    life: u64,
    /// The index of the last chain link checked in this life.
    last_link: u64,
    applied: u64,
    /// Partition group.
    group: u8,
}

struct Packet {
    at: u64,
    seq: u64,
    from: u64,
    to: u64,
    bytes: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Busy {
    Idle,
    /// Waiting for the reply to `ops[i]`.
    On(usize),
}

struct Client {
    /// Connected to this node (index), in this life, on this connection.
    at: Option<(usize, u64, ConnId)>,
    busy: Busy,
    /// Its attach, walks and opens are sent (pipelined) but not all answered.
    joining: bool,
    /// The answer to the walk (tag WALK_TAG) a make or remove sends before
    /// it: how many names it walked, or why it failed.
    walked: Option<Result<usize, String>>,
    sent: u64,
    /// Not before this time (after a failed connect).
    retry_at: u64,
}

/// The tag of every client operation (one at a time per connection).
const OP_TAG: u16 = 10;
/// The tag of the walk a make or remove of a channel sends first.
const WALK_TAG: u16 = 11;
/// The tag of the clunk that frees the fid a set operation uses.
const CLUNK_TAG: u16 = 12;
/// The fid of set operations.
const SET_FID: u32 = 8;
/// The channels that set operations make, remove and look for.
const SET_NAMES: [&str; 2] = ["s0", "s1"];
/// The tag of the setup's channel creation.
const SETUP_TAG: u16 = 7;

/// A run.
pub struct Sim<R: SimLog> {
    seed: u64,
    rng: Rng,
    /// The run's shape.
    pub p: Params,
    now: u64,
    ids: Vec<u64>,
    nodes: Vec<Node<R>>,
    net: Vec<Packet>,
    seq: u64,
    clients: Vec<Client>,
    ops: Vec<Op>,
    safety: Safety,
    trace: bool,
    faults: bool,
    out: Outbox,
    frames: Vec<(usize, ConnId, Vec<u8>)>,
    msgs: Vec<(u64, Vec<u8>)>,
    /// The setup's connection and whether the channel exists yet.
    setup: Option<(usize, u64, ConnId)>,
    /// The channel exists; its consumer group may not yet.
    made_chan: bool,
    made: bool,
    /// Every node runs a swarm, and there are agents (see [`agents`]).
    swarm: bool,
    /// The agents and the nodes that run them.
    fleet: agents::Fleet,
    /// Counters for the summary.
    pub stats: Stats,
}

/// What happened in a run.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub steps: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub jumps: u64,
    pub sent: u64,
    pub dropped: u64,
    pub ops_ok: u64,
    pub ops_other: u64,
    pub applied: u64,
    pub terms: u64,
    /// Times a leader called an up peer's lease over (each checked).
    pub fenced: u64,
    /// Times a leader that a later term had replaced called one over
    /// (not checked; see `Sim::check_leases`).
    pub fenced_stale: u64,
    /// Placements of agents after their first (epochs that rose).
    pub failovers: u64,
    /// Steps at which an agent ran on two nodes (each checked).
    pub copies_seen: u64,
    /// Of those, the ones allowed for a leader's clock leap (see
    /// `Sim::check_copies`).
    pub copies_leapt: u64,
    /// Steps at which an instant runner, acting on its node's applied
    /// state without reading it afresh when its lease came back, would
    /// have run an agent that another node ran (see `Sim::check_copies`).
    pub copies_unread: u64,
}

impl<R: SimLog> Sim<R> {
    /// A run for `seed`; `trace` prints every event; `swarm`: every node
    /// runs a swarm, and there are agents (without, a seed replays as it
    /// did before the simulation had them).
    pub fn new(seed: u64, trace: bool, swarm: bool) -> Sim<R> {
        let mut rng = Rng::new(seed);
        let p = Params::draw(&mut rng);
        let ids: Vec<u64> = (1..=p.nodes as u64).collect();
        let clients = (0..p.clients)
            .map(|_| Client {
                at: None,
                joining: false,
                walked: None,
                busy: Busy::Idle,
                sent: 0,
                retry_at: 0,
            })
            .collect();
        let mut sim = Sim {
            seed,
            rng,
            p,
            now: 0,
            ids: ids.clone(),
            nodes: Vec::new(),
            net: Vec::new(),
            seq: 0,
            clients,
            ops: Vec::new(),
            safety: Safety::default(),
            trace,
            faults: false,
            out: Outbox::new(),
            frames: Vec::new(),
            msgs: Vec::new(),
            setup: None,
            made_chan: false,
            made: false,
            swarm,
            fleet: agents::Fleet::default(),
            stats: Stats::default(),
        };
        if trace {
            println!("seed {seed}: {:?}", sim.p);
        }
        for &id in &ids {
            sim.nodes.push(Node {
                id,
                server: None,
                disk: None,
                clock: Rc::new(Cell::new(0)),
                offset: 0,
                office: (0, 0),
                restart_at: 0,
                life: 0,
                last_link: 0,
                applied: 0,
                group: 0,
            });
        }
        for i in 0..sim.nodes.len() {
            sim.start(i);
        }
        sim
    }

    fn say(&self, what: impl FnOnce() -> String) {
        if self.trace {
            println!("{:>6} {}", self.now, what());
        }
    }

    /// Run the whole thing: setup, faults, healing, final checks.
    pub fn run(&mut self) -> Result<(), String> {
        // Setup: a leader, and the channel the clients use.
        let deadline = self.now + 30_000;
        while !self.made || !self.agents_made() {
            if self.now > deadline {
                return Err(
                    self.stuck("liveness: no channel and agents made in 30 s without faults")
                );
            }
            if self.setup.is_none() && !self.made {
                self.begin_setup();
            }
            self.make_agents();
            self.step()?;
        }
        self.say(|| String::from("setup done; faults begin"));
        self.faults = true;
        let end = self.now + self.p.chaos_ms;
        while self.now < end {
            self.step()?;
        }
        self.heal()?;
        self.agents_settle()?;
        self.finish()
    }

    fn local_now(&self, i: usize) -> u64 {
        self.now + self.nodes[i].offset
    }

    fn config(id: u64) -> Config {
        Config {
            insecure: true,
            ..Config::new(&format!("n{id}"), NodeKey::from_seed(&[id as u8; 32]))
        }
    }

    /// Open node `i` from its disk (new when it has none) and replay.
    fn start(&mut self, i: usize) {
        let now = self.local_now(i);
        let n = &mut self.nodes[i];
        n.clock.set(now);
        let fresh = n.disk.is_none();
        let log = R::sim_open(
            n.id,
            &self.ids,
            self.rng.next_u64(),
            self.p.snapshot_every,
            n.disk.take(),
            now,
        );
        let mut server = Server::new(Self::config(n.id), log, SimClock(n.clock.clone()));
        if self.swarm {
            server.observe(self.vantage(i), &[]);
        }
        let n = &mut self.nodes[i];
        n.life += 1;
        n.last_link = 0;
        n.applied = 0;
        self.out.clear();
        server.poll(&mut self.out);
        n.server = Some(server);
        let id = n.id;
        if !fresh {
            self.say(|| format!("n{id} restarts"));
        }
        self.collect(i);
    }

    /// Crash node `i`: its unsynced writes are lost, its connections die.
    fn crash(&mut self, i: usize, why: &str) {
        let Some(mut server) = self.nodes[i].server.take() else {
            return;
        };
        self.stats.crashes += 1;
        let disk = server.log_mut().sim_crash();
        let down = self.rng.range(10, 1_500);
        let n = &mut self.nodes[i];
        n.disk = Some(disk);
        n.restart_at = self.now + down;
        let life = n.life;
        for c in &mut self.clients {
            if c.at.is_some_and(|(node, l, _)| node == i && l == life) {
                c.at = None;
                c.busy = Busy::Idle;
                c.joining = false;
            }
        }
        if self.setup.is_some_and(|(node, _, _)| node == i) {
            self.setup = None;
        }
        if self.fleet.conn.is_some_and(|(node, _, _)| node == i) {
            self.fleet.conn = None;
        }
        let id = self.nodes[i].id;
        self.say(|| format!("n{id} crashes ({why}); down for {down} ms"));
    }

    /// Move the server's replies into `frames`.
    fn collect(&mut self, i: usize) {
        for (c, f) in self.out.frames() {
            self.frames.push((i, c, f.to_vec()));
        }
        self.out.clear();
    }

    fn send_net(&mut self, from: u64) {
        for (to, bytes) in std::mem::take(&mut self.msgs) {
            self.stats.sent += 1;
            if self.faults && self.rng.chance(self.p.loss) {
                self.stats.dropped += 1;
                continue;
            }
            let copies = if self.faults && self.rng.chance(self.p.dup) {
                2
            } else {
                1
            };
            if copies == 2 && self.trace {
                let what = R::sim_describe(&bytes);
                self.say(|| format!("network duplicates n{from} -> n{to}: {what}"));
            }
            for _ in 0..copies {
                self.seq += 1;
                let at = self.now + self.rng.range(1, self.p.max_delay);
                self.net.push(Packet {
                    at,
                    seq: self.seq,
                    from,
                    to,
                    bytes: bytes.clone(),
                });
            }
        }
    }

    /// One step of simulated time.
    fn step(&mut self) -> Result<(), String> {
        self.stats.steps += 1;
        self.now += self.rng.range(1, 5);
        if self.faults {
            self.inject();
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].server.is_none() && self.nodes[i].restart_at <= self.now {
                self.start(i);
            }
        }
        // Deliver what is due, in order of arrival.
        let mut due: Vec<Packet> = Vec::new();
        let mut i = 0;
        while i < self.net.len() {
            if self.net[i].at <= self.now {
                due.push(self.net.swap_remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|p| (p.at, p.seq));
        for p in due {
            let to = (p.to - 1) as usize;
            let from = (p.from - 1) as usize;
            if to >= self.nodes.len() || self.nodes[to].group != self.nodes[from].group {
                self.stats.dropped += 1;
                continue;
            }
            let now = self.local_now(to);
            let n = &mut self.nodes[to];
            let Some(server) = n.server.as_mut() else {
                self.stats.dropped += 1;
                continue;
            };
            n.clock.set(now);
            server.log_mut().sim_receive(p.from, &p.bytes);
        }
        for i in 0..self.nodes.len() {
            let now = self.local_now(i);
            let n = &mut self.nodes[i];
            let Some(server) = n.server.as_mut() else {
                continue;
            };
            n.clock.set(now);
            server.log_mut().sim_tick(now);
            if self.faults && self.rng.chance(self.p.crash_mid) {
                self.crash(i, "mid-step, before its disk is synced");
                continue;
            }
            let id = self.nodes[i].id;
            let server = self.nodes[i].server.as_mut().expect("up");
            server.poll(&mut self.out);
            server.log_mut().sim_take_messages(&mut self.msgs);
            self.collect(i);
            self.send_net(id);
        }
        self.clients_act();
        self.dispatch();
        self.check()
    }

    /// Faults, each with its chance.
    fn inject(&mut self) {
        if self.rng.chance(self.p.crash) {
            let i = self.rng.index(self.nodes.len());
            self.crash(i, "between steps");
        }
        if self.rng.chance(self.p.partition) {
            self.stats.partitions += 1;
            for n in &mut self.nodes {
                n.group = (self.rng.next_u64() & 1) as u8;
            }
            let groups: Vec<(u64, u8)> = self.nodes.iter().map(|n| (n.id, n.group)).collect();
            self.say(|| format!("partition {groups:?}"));
        } else if self.rng.chance(self.p.heal) && self.nodes.iter().any(|n| n.group != 0) {
            for n in &mut self.nodes {
                n.group = 0;
            }
            self.say(|| String::from("partition healed"));
        }
        if self.rng.chance(self.p.jump) {
            self.stats.jumps += 1;
            let i = self.rng.index(self.nodes.len());
            let by = self.rng.range(100, 5_000);
            self.nodes[i].offset += by;
            let id = self.nodes[i].id;
            self.say(|| format!("n{id}'s clock jumps {by} ms ahead"));
        }
    }

    /// Send one request; return its reply if it came at once. Every other
    /// frame goes to `frames`.
    fn call(&mut self, i: usize, conn: ConnId, tag: u16, body: Body<'_>) -> Option<Vec<u8>> {
        let mut frame = Vec::new();
        ninep::encode(&Msg { tag, body }, &mut frame).expect("encode");
        let server = self.nodes[i].server.as_mut()?;
        server.handle(conn, &frame, &mut self.out);
        let mut reply = None;
        for (c, f) in self.out.frames() {
            if c == conn && reply.is_none() && tag_of(f) == tag {
                reply = Some(f.to_vec());
            } else {
                self.frames.push((i, c, f.to_vec()));
            }
        }
        self.out.clear();
        reply
    }

    /// Send a request without waiting: its reply reaches `dispatch` (a
    /// walk or an open may wait for the log to confirm the node is
    /// current, and later requests of the connection wait behind it).
    fn send(&mut self, i: usize, conn: ConnId, tag: u16, body: Body<'_>) {
        let mut frame = Vec::new();
        ninep::encode(&Msg { tag, body }, &mut frame).expect("encode");
        if let Some(server) = self.nodes[i].server.as_mut() {
            server.handle(conn, &frame, &mut self.out);
        }
        self.collect(i);
    }

    /// A connection to node `i` with fid 0 attached to the root.
    /// Attach to a node picked at random among those up.
    fn attach_anywhere(&mut self) -> Option<(usize, ConnId)> {
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].server.is_some())
            .collect();
        if live.is_empty() {
            return None;
        }
        let i = live[self.rng.index(live.len())];
        Some((i, self.attach(i)?))
    }

    /// Negotiate a connection to node `i` and send its attach (tag 1);
    /// the requests sent after it on the connection follow it.
    fn attach(&mut self, i: usize) -> Option<ConnId> {
        let conn = self.nodes[i].server.as_mut()?.connect();
        let v = self.call(
            i,
            conn,
            NOTAG,
            Body::Tversion {
                msize: 8192,
                version: "9P2000.u",
            },
        )?;
        if kind(&v) != "Rversion" {
            return None;
        }
        self.send(
            i,
            conn,
            1,
            Body::Tattach {
                fid: 0,
                afid: NOFID,
                uname: "sim",
                aname: "",
                n_uname: Some(0),
            },
        );
        Some(conn)
    }

    /// Make the channel, pipelined: attach, walk to /chan, create q (its
    /// answer, under SETUP_TAG, decides; an earlier step that failed makes
    /// it fail too).
    fn begin_setup(&mut self) {
        if self.now % 50 > 5 || self.setup.is_some() {
            return;
        }
        let Some((i, conn)) = self.attach_anywhere() else {
            return;
        };
        self.setup = Some((i, self.nodes[i].life, conn));
        if self.made_chan {
            return self.make_group(i, conn);
        }
        self.send(
            i,
            conn,
            2,
            Body::Twalk {
                fid: 0,
                newfid: 1,
                wnames: Names::from_slice(&["chan"]).expect("names"),
            },
        );
        self.send(
            i,
            conn,
            SETUP_TAG,
            Body::Tcreate {
                fid: 1,
                name: "q",
                perm: ninep::stat::DMDIR | 0o755,
                mode: 0,
                extension: Some(""),
            },
        );
    }

    /// The second step of the setup: the consumer group the clients'
    /// takes read (`group g` on /chan/q/ctl), pipelined like the first.
    fn make_group(&mut self, i: usize, conn: ConnId) {
        self.send(
            i,
            conn,
            3,
            Body::Twalk {
                fid: 0,
                newfid: 2,
                wnames: Names::from_slice(&["chan", "q", "ctl"]).expect("names"),
            },
        );
        self.send(i, conn, 4, Body::Topen { fid: 2, mode: 1 });
        self.send(
            i,
            conn,
            SETUP_TAG,
            Body::Twrite {
                fid: 2,
                offset: 0,
                data: b"group g",
            },
        );
    }

    fn setup_reply(&mut self, f: &[u8]) {
        let k = kind(f);
        let ok = k == "Rcreate" || k == "Rwrite" || k.contains("exists");
        if self.made_chan {
            self.say(|| format!("setup: group g: {k}"));
            self.made |= ok;
            self.end_setup();
            return;
        }
        self.say(|| format!("setup: mkdir /chan/q: {k}"));
        self.made_chan = ok;
        match self.setup {
            Some((i, _, conn)) if ok => self.make_group(i, conn),
            _ => self.end_setup(),
        }
    }

    /// The setup's connection is done with.
    fn end_setup(&mut self) {
        if let Some((i, life, conn)) = self.setup.take()
            && self.nodes[i].life == life
            && let Some(s) = self.nodes[i].server.as_mut()
        {
            let mut out = Outbox::new();
            s.disconnect(conn, &mut out);
        }
    }

    /// Clients connect, and send a new operation when idle.
    fn clients_act(&mut self) {
        if !self.made {
            return;
        }
        for ci in 0..self.clients.len() {
            let c = &self.clients[ci];
            if c.at.is_none() {
                if c.retry_at > self.now {
                    continue;
                }
                self.connect(ci);
                continue;
            }
            if c.busy != Busy::Idle || c.joining || !self.faults || !self.rng.chance(0.3) {
                continue;
            }
            let (i, _, conn) = c.at.expect("connected");
            let kind = if self.rng.chance(0.3) {
                let name = String::from(SET_NAMES[self.rng.index(SET_NAMES.len())]);
                match self.rng.index(3) {
                    0 => OpKind::Make(name),
                    1 => OpKind::Remove(name),
                    _ => OpKind::Exists(name),
                }
            } else if self.rng.chance(0.4) {
                OpKind::Take
            } else {
                let v = format!("c{ci}.{}", c.sent).into_bytes();
                OpKind::Send(v)
            };
            self.clients[ci].sent += 1;
            let at = self.ops.len();
            self.ops.push(Op {
                client: ci,
                kind: kind.clone(),
                invoke: self.now,
                response: u64::MAX,
                outcome: Outcome::Pending,
            });
            self.clients[ci].busy = Busy::On(at);
            let id = self.nodes[i].id;
            self.say(|| format!("client {ci} on n{id}: {}", show_kind(&kind)));
            self.clients[ci].walked = None;
            let body = match &kind {
                OpKind::Make(_) | OpKind::Remove(_) | OpKind::Exists(_) => {
                    self.start_set(i, conn, &kind);
                    continue;
                }
                OpKind::Send(v) => Body::Twrite {
                    fid: 1,
                    offset: 0,
                    data: v,
                },
                OpKind::Take => Body::Tread {
                    fid: 2,
                    offset: 0,
                    count: 4096,
                },
            };
            let mut frame = Vec::new();
            ninep::encode(&Msg { tag: OP_TAG, body }, &mut frame).expect("encode");
            let server = self.nodes[i]
                .server
                .as_mut()
                .expect("connected to a live node");
            server.handle(conn, &frame, &mut self.out);
            self.collect(i);
        }
    }

    /// Send a set operation, pipelined: free the fid, then (for a make
    /// or remove) walk it to /chan or to the channel under WALK_TAG, then
    /// the request whose answer decides, under OP_TAG.
    fn start_set<'a>(&mut self, i: usize, conn: ConnId, kind: &'a OpKind) {
        self.send(i, conn, CLUNK_TAG, Body::Tclunk { fid: SET_FID });
        let walk = |names: &[&'a str]| Names::from_slice(names).expect("names");
        let (first, then) = match kind {
            OpKind::Make(n) => (
                Some(walk(&["chan"])),
                Body::Tcreate {
                    fid: SET_FID,
                    name: n,
                    perm: ninep::stat::DMDIR | 0o755,
                    mode: 0,
                    extension: Some(""),
                },
            ),
            OpKind::Remove(n) => (
                Some(walk(&["chan", n.as_str()])),
                Body::Tremove { fid: SET_FID },
            ),
            OpKind::Exists(n) => (
                None,
                Body::Twalk {
                    fid: 0,
                    newfid: SET_FID,
                    wnames: walk(&["chan", n.as_str()]),
                },
            ),
            _ => return,
        };
        if let Some(wnames) = first {
            let body = Body::Twalk {
                fid: 0,
                newfid: SET_FID,
                wnames,
            };
            self.send(i, conn, WALK_TAG, body);
        }
        self.send(i, conn, OP_TAG, then);
    }

    /// How a set operation ended, from the answer under OP_TAG (and the
    /// walk before it). A result is `[1]` or `[0]` (see [`OpKind`]).
    fn set_outcome(
        kind: &OpKind,
        walked: &Option<Result<usize, String>>,
        body: Body<'_>,
    ) -> Outcome {
        let yes = |b: bool| Outcome::Ok(Some(vec![u8::from(b)]));
        let err = |ename: &str| {
            if check::definite_failure(ename) {
                Outcome::Failed(ename.to_string())
            } else {
                Outcome::Unknown(ename.to_string())
            }
        };
        match (kind, walked, body) {
            // The walk before it failed: the fid it needs never was.
            (OpKind::Make(_) | OpKind::Remove(_), Some(Err(e)), _) => {
                Outcome::Failed(format!("walk: {e}"))
            }
            (OpKind::Remove(_), Some(Ok(n)), _) if *n < 2 => yes(false),
            (OpKind::Make(_), _, Body::Rcreate { .. }) => yes(true),
            (OpKind::Make(_), _, Body::Rerror { ename, .. })
                if ename.contains("already exists") =>
            {
                yes(false)
            }
            (OpKind::Remove(_), _, Body::Rremove) => yes(true),
            (OpKind::Remove(_), _, Body::Rerror { ename, .. })
                if ename.contains("does not exist") || ename.contains("was removed") =>
            {
                yes(false)
            }
            (OpKind::Exists(_), _, Body::Rwalk { wqids }) => yes(wqids.len() == 2),
            // A walk that failed changed nothing.
            (OpKind::Exists(_), _, Body::Rerror { ename, .. }) => {
                Outcome::Failed(ename.to_string())
            }
            (_, _, Body::Rerror { ename, .. }) => err(ename),
            (_, _, other) => Outcome::Unknown(format!("unexpected {:?}", other.msg_type())),
        }
    }

    /// Connect client `ci`, pipelined: attach (tag 1), walk to the
    /// channel's data (2) and open it (3), walk to the group (4) and open
    /// it (5). The client is ready when the last open is answered.
    fn connect(&mut self, ci: usize) {
        self.clients[ci].retry_at = self.now + 20;
        let Some((i, conn)) = self.attach_anywhere() else {
            return;
        };
        let life = self.nodes[i].life;
        self.clients[ci].at = Some((i, life, conn));
        self.clients[ci].joining = true;
        self.send(
            i,
            conn,
            2,
            Body::Twalk {
                fid: 0,
                newfid: 1,
                wnames: Names::from_slice(&["chan", "q", "data"]).expect("names"),
            },
        );
        self.send(i, conn, 3, Body::Topen { fid: 1, mode: 1 });
        self.send(
            i,
            conn,
            4,
            Body::Twalk {
                fid: 0,
                newfid: 2,
                wnames: Names::from_slice(&["chan", "q", "groups", "g"]).expect("names"),
            },
        );
        self.send(i, conn, 5, Body::Topen { fid: 2, mode: 0 });
    }

    /// A reply to one of client `ci`'s connecting requests.
    fn joined(&mut self, ci: usize, f: &[u8]) {
        let k = kind(f);
        if k.starts_with("Rerror") {
            // The node has not applied the channel yet, or cannot confirm
            // it is current: try again later.
            if let Some((i, life, conn)) = self.clients[ci].at.take()
                && self.nodes[i].life == life
                && let Some(s) = self.nodes[i].server.as_mut()
            {
                let mut out = Outbox::new();
                s.disconnect(conn, &mut out);
            }
            self.clients[ci].joining = false;
            return;
        }
        if tag_of(f) == 5 {
            self.clients[ci].joining = false;
            let id = self.clients[ci].at.map_or(0, |(i, ..)| self.nodes[i].id);
            self.say(|| format!("client {ci} connects to n{id}"));
        }
    }

    /// Hand every reply to the client or setup waiting for it.
    fn dispatch(&mut self) {
        for (i, conn, f) in std::mem::take(&mut self.frames) {
            let life = self.nodes[i].life;
            let here = Some((i, life, conn));
            if self.fleet.conn == here {
                self.agent_reply(&f);
                continue;
            }
            if self.setup == here && tag_of(&f) == SETUP_TAG {
                self.setup_reply(&f);
                continue;
            }
            if self.setup == here {
                // An earlier step of the setup: its failure shows in the
                // answer under SETUP_TAG.
                continue;
            }
            let Some(ci) = self.clients.iter().position(|c| c.at == here) else {
                continue;
            };
            if self.clients[ci].joining {
                self.joined(ci, &f);
                continue;
            }
            let Busy::On(op) = self.clients[ci].busy else {
                continue;
            };
            if tag_of(&f) == WALK_TAG {
                let msg = ninep::decode(&f, ninep::Dialect::U).expect("replies decode");
                self.clients[ci].walked = Some(match msg.body {
                    Body::Rwalk { wqids } => Ok(wqids.len()),
                    Body::Rerror { ename, .. } => Err(ename.to_string()),
                    other => Err(format!("unexpected {:?}", other.msg_type())),
                });
                continue;
            }
            if tag_of(&f) != OP_TAG {
                continue;
            }
            let msg = ninep::decode(&f, ninep::Dialect::U).expect("replies decode");
            let kind = &self.ops[op].kind;
            let outcome = match msg.body {
                body @ (Body::Rcreate { .. }
                | Body::Rremove
                | Body::Rwalk { .. }
                | Body::Rerror { .. })
                    if matches!(
                        kind,
                        OpKind::Make(_) | OpKind::Remove(_) | OpKind::Exists(_)
                    ) =>
                {
                    Self::set_outcome(kind, &self.clients[ci].walked, body)
                }
                Body::Rwrite { .. } => Outcome::Ok(None),
                // An empty read ends the batch a stream handed over in
                // 9P2000.u (cellfs(4) STREAMS): nothing was taken.
                Body::Rread { data: [] } => {
                    Outcome::Failed(String::from("an empty read: the end of a batch"))
                }
                Body::Rread { data } => Outcome::Ok(Some(data.to_vec())),
                Body::Rerror { ename, .. } if check::definite_failure(ename) => {
                    Outcome::Failed(ename.to_string())
                }
                Body::Rerror { ename, .. } => Outcome::Unknown(ename.to_string()),
                other => Outcome::Unknown(format!("unexpected {:?}", other.msg_type())),
            };
            if matches!(outcome, Outcome::Ok(_)) {
                self.stats.ops_ok += 1;
            } else {
                self.stats.ops_other += 1;
            }
            let o = &mut self.ops[op];
            o.response = self.now;
            o.outcome = outcome;
            self.clients[ci].busy = Busy::Idle;
            if self.trace {
                let o = &self.ops[op];
                let got = match &o.outcome {
                    Outcome::Ok(Some(v)) => format!("got {}", String::from_utf8_lossy(v)),
                    other => format!("{other:?}"),
                };
                self.say(|| format!("client {ci}: {} -> {got}", show_kind(&o.kind)));
            }
        }
    }

    /// The invariants checked after every step.
    fn check(&mut self) -> Result<(), String> {
        let (trace, now) = (self.trace, self.now);
        for n in &mut self.nodes {
            let id = n.id;
            let Some(server) = n.server.as_mut() else {
                continue;
            };
            if let Some(e) = server.log_mut().sim_failed() {
                return Err(format!("node {id}'s replica failed: {e}"));
            }
            let st = server.log_mut().status();
            if st.role == "leader" && n.office.0 != st.term {
                n.office = (st.term, n.offset);
            }
            self.safety.max_term = self.safety.max_term.max(st.term);
            if st.role == "leader" && self.safety.leader(st.term, id)? {
                self.stats.terms += 1;
                if trace {
                    println!("{now:>6} n{id} leads term {}", st.term);
                }
                let (snap, log) = server.log_mut().sim_log();
                let log: Vec<(u64, u64)> = log.iter().map(|e| (e.0, e.1)).collect();
                self.safety.new_leader(id, st.term, snap, &log)?;
            }
            let state = server.state();
            if state.applied < n.applied {
                return Err(format!(
                    "node {id}'s applied index went back from {} to {}",
                    n.applied, state.applied
                ));
            }
            n.applied = state.applied;
            let chain = &state.chain;
            if chain.head().0 < n.last_link {
                return Err(format!("node {id}'s chain got shorter"));
            }
            if let Some(b) = chain.base()
                && b.index > n.last_link
            {
                return Err(format!(
                    "node {id}'s chain dropped links through {} before they were checked (last {})",
                    b.index, n.last_link
                ));
            }
            let mut prev = n.last_link;
            for l in chain.links_after(n.last_link) {
                if l.index <= prev {
                    return Err(format!(
                        "node {id}'s chain goes back: entry {} after {}",
                        l.index, prev
                    ));
                }
                prev = l.index;
                if trace {
                    println!("{now:>6} n{id} applies {} (term {})", l.index, l.term);
                }
                self.safety.applied(id, l.index, l.term, l.hash)?;
            }
            n.last_link = prev;
        }
        self.check_leases()?;
        self.check_copies()
    }

    /// Fencing: whenever the leader of the latest term that had one calls
    /// a peer's lease over, the peer (if up) holds none. A crashed peer runs
    /// nothing, so it is fine.
    ///
    /// Stale leaders: a leader that a later term has replaced without its
    /// knowing may call a peer's lease over while the new leader has
    /// granted that peer one (it still holds its own lease for up to `L`
    /// after its last majority round, and the new one may be elected and
    /// grant within that time). Ruling that out would make every new
    /// leader, or its voters, wait out the old leases first; but such
    /// a leader can commit nothing, so nothing it decides from it takes
    /// effect. Its calls are counted, not checked; the check covers every
    /// leader of the latest term that had one.
    ///
    /// Clock leaps: the simulation's clocks run at one rate but leap
    /// ahead at random, by 100 ms to 5 s, far more than the margin `M`
    /// covers (it is for the slow drift of real clocks). A leap of any
    /// clock but the leader's only ends leases sooner; a leap of the
    /// leader's own clock while in office makes it measure more time than
    /// passed since it took office or last granted, so it may call a lease
    /// over up to that leap early. The check allows exactly that: the
    /// peer may hold no more than the leader's clock leapt since the
    /// leader was first seen in office in that term (0 in a run without
    /// leaps, where the check is exact).
    ///
    /// A peer whose lease was called over while it still held some (by
    /// that allowance) is noted in `Fleet::leapt`: the copies check
    /// allows its agents' old placements to run on (see
    /// `Sim::check_copies`).
    fn check_leases(&mut self) -> Result<(), String> {
        for i in 0..self.nodes.len() {
            let leader = &self.nodes[i];
            let Some(server) = leader.server.as_ref() else {
                continue;
            };
            let st = server.log().status();
            if st.role != "leader" {
                continue;
            }
            let stale = st.term < self.safety.latest_led();
            let leapt = leader.offset - leader.office.1;
            let over: Vec<usize> = (0..self.nodes.len())
                .filter(|&j| j != i && server.log().sim_lease_over(self.nodes[j].id))
                .collect();
            for j in over {
                let Some(peer) = self.nodes[j].server.as_ref() else {
                    continue;
                };
                if stale {
                    self.stats.fenced_stale += 1;
                    continue;
                }
                self.stats.fenced += 1;
                let left = peer.log().sim_lease_ms();
                if left > 0 && left <= leapt && self.fleet.leapt.insert(self.nodes[j].id) {
                    // Called over early by the leap: the peer still holds
                    // its lease (see `check_copies`).
                    let (id, x) = (self.nodes[i].id, self.nodes[j].id);
                    self.say(|| {
                        format!("n{id} calls n{x}'s lease over early (by its clock's leap): {left} ms left")
                    });
                }
                if left > leapt {
                    let (id, x, term) = (self.nodes[i].id, self.nodes[j].id, st.term);
                    return Err(format!(
                        "n{id} (leading term {term}) calls n{x}'s lease over, but n{x} holds \
                         {left} ms more (n{id}'s clock leapt {leapt} ms in office)"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Faults stop; every node comes back; the cluster must settle.
    fn heal(&mut self) -> Result<(), String> {
        self.faults = false;
        for n in &mut self.nodes {
            n.group = 0;
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].server.is_none() {
                self.start(i);
            }
        }
        self.say(|| String::from("faults stop; all nodes up; partitions healed"));
        let deadline = self.now + 30_000;
        let mut calm = 0;
        while calm < 40 {
            if self.now > deadline {
                return Err(self.stuck("liveness: no agreement 30 s after the faults stopped"));
            }
            self.step()?;
            calm = if self.settled() { calm + 1 } else { 0 };
        }
        Ok(())
    }

    /// A leader, every node applied as far as it committed, and no client
    /// write unanswered.
    fn settled(&mut self) -> bool {
        let mut leader = None;
        let mut applied = BTreeSet::new();
        for n in &mut self.nodes {
            let Some(s) = n.server.as_mut() else {
                return false;
            };
            let st = s.log_mut().status();
            if st.role == "leader" {
                leader = Some((st.commit, st.last_index));
            }
            applied.insert(s.state().applied);
        }
        let Some((commit, last)) = leader else {
            return false;
        };
        let writes_done = self.clients.iter().all(|c| match c.busy {
            Busy::On(op) => self.ops[op].kind == OpKind::Take,
            Busy::Idle => true,
        });
        applied.len() == 1 && commit == last && writes_done
    }

    fn stuck(&mut self, what: &str) -> String {
        let mut s = format!("{what}\n");
        for n in &mut self.nodes {
            match n.server.as_mut() {
                Some(server) => {
                    let st = server.log_mut().status();
                    let _ = writeln!(
                        s,
                        "  n{}: {} term {} leader {:?} commit {} last {} applied {}",
                        n.id,
                        st.role,
                        st.term,
                        st.leader,
                        st.commit,
                        st.last_index,
                        server.state().applied
                    );
                }
                None => {
                    let _ = writeln!(s, "  n{}: down", n.id);
                }
            }
        }
        for (ci, c) in self.clients.iter().enumerate() {
            if let Busy::On(op) = c.busy {
                let _ = writeln!(s, "  client {ci} waits on {:?}", self.ops[op]);
            }
        }
        s
    }

    /// The checks at the end: every node holds the same state, logs match,
    /// and the clients' history is linearizable.
    fn finish(&mut self) -> Result<(), String> {
        let mut logs = Vec::new();
        let mut first: Option<(u64, Vec<u8>)> = None;
        for n in &mut self.nodes {
            let server = n.server.as_mut().expect("all up after healing");
            let (_, log) = server.log_mut().sim_log();
            logs.push((n.id, log));
            let bytes = server.state().encode();
            match &first {
                None => first = Some((n.id, bytes)),
                Some((fid, fb)) if *fb != bytes => {
                    return Err(format!(
                        "state-machine safety: nodes {fid} and {} applied the same index but hold different states",
                        n.id
                    ));
                }
                Some(_) => {}
            }
        }
        if self.trace {
            let (id, log) = &logs[0];
            println!("n{id}'s log at the end:");
            for (index, term, body) in log {
                let body: Option<cellfs::raft::Body> = postcard::from_bytes(body).ok();
                let what = match &body {
                    Some(cellfs::raft::Body::Command { origin, seq, data }) => format!(
                        "from n{origin} seq {seq}: {:?}",
                        cellfs::Command::decode(data)
                    ),
                    other => format!("{other:?}"),
                };
                println!("  {index} term {term} {what}");
            }
        }
        check::log_matching(&logs)?;
        let server = self.nodes[0].server.as_ref().expect("up");
        let chans = &server.state().chans;
        let rest: Vec<Vec<u8>> = chans
            .id("q")
            .and_then(|id| chans.get(id))
            .and_then(|c| {
                let g = c.groups.get("g")?;
                let seqs = g
                    .redeliver
                    .iter()
                    .copied()
                    .chain(g.next.max(c.first())..c.next);
                Some(
                    seqs.filter_map(|s| c.get(s).map(|m| m.data.clone()))
                        .collect(),
                )
            })
            .unwrap_or_default();
        self.stats.applied = server.state().applied;
        check::linearizable(&self.ops, &rest, self.now)?;
        super::set::linearizable(&self.ops)?;
        if self.trace {
            println!("seed {}: {:?}", self.seed, self.stats);
        }
        Ok(())
    }
}

fn tag_of(f: &[u8]) -> u16 {
    u16::from_le_bytes([f[5], f[6]])
}

/// The reply's type, or its error text.
fn kind(f: &[u8]) -> String {
    match ninep::decode(f, ninep::Dialect::U) {
        Ok(m) => match m.body {
            Body::Rerror { ename, .. } => format!("Rerror {ename}"),
            b => format!("{:?}", b.msg_type()),
        },
        Err(e) => format!("undecodable: {e:?}"),
    }
}

fn show_kind(k: &OpKind) -> String {
    match k {
        OpKind::Send(v) => format!("send {}", String::from_utf8_lossy(v)),
        OpKind::Take => String::from("take"),
        OpKind::Make(n) => format!("mkdir /chan/{n}"),
        OpKind::Remove(n) => format!("rmdir /chan/{n}"),
        OpKind::Exists(n) => format!("walk /chan/{n}"),
    }
}
