//! `cell0 serve`: the hosted node.
//!
//! One `cellfs::Server` behind a mutex that is held only for CPU work:
//! decoding, applying and encoding. Disk I/O happens on the log's writer
//! thread and network I/O in per-connection tasks, so no lock is held
//! across I/O. Each connection is one task: it reads frames, handles a
//! batch of them under the lock, takes the replies queued for it, and
//! writes them after letting go. A request on one connection can answer a
//! read parked on another; those replies are queued for their connection
//! (bounded) and its task is woken to write them, so each socket has one
//! writer and replies leave in the order the server made them.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::BytesMut;
use cellfs::raft::{Member, Options, Replica};
use cellfs::{Clock, Config, ConnId, Outbox, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::node::fds::Acceptor;
use crate::node::raft::join::Sponsor;
use crate::node::raft::store::SegmentStore;
use crate::node::raft::transport::{Directory, Transport};
use crate::node::raft::{Alone, CutWire, RaftLog};

/// Flags of `cell0 serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = crate::config::DEFAULT_ADDR)]
    pub listen: String,
    /// Data directory [default: $XDG_DATA_HOME/cell0]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Let attaches without a capability in, with every right (loudly;
    /// for experiments only).
    #[arg(long)]
    pub insecure: bool,
    /// Run no agents on this host (by default the node runs a runner for
    /// the agents placed on it; see agent(3)).
    #[arg(long)]
    pub no_runner: bool,
    /// Run agents even where this host cannot sandbox them (no user
    /// namespaces, no seccomp): unconfined, as this node's user, with the
    /// host's files and network. Without it such a host runs none (each
    /// is reported failed with the reason); see agent(3).
    #[arg(long)]
    pub unconfined_agents: bool,
    /// Cluster membership.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// How a node finds its cluster. See raft(3).
#[derive(clap::Args, Debug, Clone)]
pub struct ClusterArgs {
    /// This node's Raft id; each node of a cluster has its own.
    #[arg(long, default_value_t = 1)]
    pub id: u64,
    /// Listen for the other nodes of a cluster on HOST:PORT; without it
    /// the node is a cluster of one.
    #[arg(long, value_name = "HOST:PORT")]
    pub raft: Option<String>,
    /// Join the cluster of the node that serves 9P on HOST:PORT instead
    /// of starting a new one (needs --raft).
    #[arg(long, value_name = "HOST:PORT", requires = "raft")]
    pub join: Option<String>,
    /// Capability for --join (admin over /raft there; with --swarm, a
    /// join token: read, write and create over /swarm): a file, or - for
    /// standard input.
    #[arg(long, value_name = "FILE")]
    pub join_token: Option<PathBuf>,
    /// Gossip with the swarm on UDP HOST:PORT: this node becomes a swarm
    /// member (swarm(3)); with --join it joins as a learner of the log.
    #[arg(long, value_name = "HOST:PORT", requires = "raft")]
    pub swarm: Option<String>,
    /// How many voters a swarm this node founds wants (odd, 1 to 9; later
    /// `voters N` on /swarm/ctl).
    #[arg(long, default_value_t = cellfs::swarm::state::DEFAULT_VOTERS,
          value_parser = parse_voters)]
    pub voters: u8,
}

/// `--voters N`: odd, from 1 to 9.
pub fn parse_voters(s: &str) -> Result<u8, String> {
    let n: u8 = s
        .parse()
        .map_err(|_| format!("\"{s}\" is not a number of voters"))?;
    cellfs::swarm::state::check_voters(n).map_err(|e| e.to_string())?;
    Ok(n)
}

impl Default for ClusterArgs {
    fn default() -> ClusterArgs {
        ClusterArgs {
            id: 1,
            raft: None,
            join: None,
            join_token: None,
            swarm: None,
            voters: cellfs::swarm::state::DEFAULT_VOTERS,
        }
    }
}

/// Reply bytes that may wait for a connection before it is judged not to
/// be reading its replies and is disconnected.
const MAX_QUEUED: usize = 16 << 20;

/// Reply bytes that may wait across every connection at once: past it, a
/// connection that would queue more is judged not to be keeping up and
/// is disconnected (with a line on stderr), so that many slow readers
/// together cannot hold more than this (cellfs(4) LIMITS).
const MAX_QUEUED_TOTAL: usize = 256 << 20;

/// Wall and monotonic time from the host.
pub struct SysClock {
    start: Instant,
}

impl Clock for SysClock {
    fn unix_nanos(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    }
    fn monotonic_nanos(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

/// How the core reaches a connection's task.
struct Peer {
    /// Replies for it, not yet taken by its task.
    queued: Vec<u8>,
    /// Wakes its task: replies are queued, or (with `hangup`) it must stop.
    wake: Arc<Notify>,
    /// Set when the server wants the connection closed.
    hangup: bool,
}

/// Everything behind the one lock.
struct Core {
    server: Server<RaftLog, SysClock>,
    out: Outbox,
    peers: HashMap<ConnId, Peer>,
    /// The bytes queued in every peer's `queued`.
    queued_total: usize,
    /// When a connection was last closed for the total budget (for
    /// logging at most once every 10 s), and how many since.
    over_budget: (Option<Instant>, u64),
}

type Shared = Arc<Mutex<Core>>;

fn lock(core: &Shared) -> MutexGuard<'_, Core> {
    // A panic while holding the lock would be a bug; keep serving with the
    // state as it is rather than take every connection down with it.
    core.lock().unwrap_or_else(|e| e.into_inner())
}

impl Core {
    /// Queue every frame in the outbox for its connection, mark the ones
    /// the server gave up on, and wake their tasks; `me` is the
    /// connection whose task is calling, which needs no waking.
    fn deliver(&mut self, me: Option<ConnId>) {
        let mut woken: Option<ConnId> = None;
        for (conn, frame) in self.out.frames() {
            let Some(peer) = self.peers.get_mut(&conn) else {
                continue;
            };
            if peer.queued.len() + frame.len() > MAX_QUEUED {
                // The client is not reading its replies.
                peer.hangup = true;
            } else if self.queued_total + frame.len() > MAX_QUEUED_TOTAL {
                peer.hangup = true;
                let (last, count) = &mut self.over_budget;
                *count += 1;
                if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    eprintln!(
                        "cell0: {} MiB of replies wait for slow clients, the most the node holds; \
                         closed {count} connection(s) that could not take theirs",
                        MAX_QUEUED_TOTAL >> 20
                    );
                    *last = Some(Instant::now());
                    *count = 0;
                }
            } else {
                peer.queued.extend_from_slice(frame);
                self.queued_total += frame.len();
            }
            // Frames come in runs per connection; wake each run once.
            if Some(conn) != me && woken != Some(conn) {
                peer.wake.notify_one();
                woken = Some(conn);
            }
        }
        for conn in self.out.closes() {
            if let Some(peer) = self.peers.get_mut(conn) {
                peer.hangup = true;
                peer.wake.notify_one();
            }
        }
        self.out.clear();
    }

    fn poll(&mut self, me: Option<ConnId>) {
        self.server.poll(&mut self.out);
        self.deliver(me);
    }

    /// Swap `conn`'s queued replies into `into` (which must be empty);
    /// whether the connection should close once they are written.
    fn take(&mut self, conn: ConnId, into: &mut Vec<u8>) -> bool {
        match self.peers.get_mut(&conn) {
            Some(peer) => {
                std::mem::swap(&mut peer.queued, into);
                self.queued_total -= into.len();
                peer.hangup
            }
            None => true,
        }
    }
}

/// Run the node until SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let data = args.data.unwrap_or_else(crate::config::default_data_dir);
    // Every connection and every agent's mount takes descriptors: take
    // all the host allows (the soft limit is often a tenth of it).
    if let Err(e) = crate::node::fds::raise_limit() {
        eprintln!("cell0: could not raise the limit on open files: {e}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(
        &args.listen,
        &data,
        args.insecure,
        (!args.no_runner).then_some(crate::node::runner::Confine {
            unconfined: args.unconfined_agents,
        }),
        &args.cluster,
        None,
    ))
}

/// Serve on `listen` with data in `data` until a signal (or `stop`);
/// `insecure` lets attaches without a capability in; `runner` (how it
/// confines them) runs the agents placed on this node's runner (named
/// after the node).
pub async fn serve(
    listen: &str,
    data: &Path,
    insecure: bool,
    runner: Option<crate::node::runner::Confine>,
    cluster: &ClusterArgs,
    stop: Option<Arc<Notify>>,
) -> anyhow::Result<()> {
    create_data_dir(data)?;
    // Held until this function returns: two nodes appending to one log
    // would interleave their records.
    let _lock = lock_data_dir(data)?;
    let node_id = node_id(data)?;
    // After each durable batch the log's thread answers the requests it
    // made durable itself, sparing a hop through another thread; if the
    // lock is busy (or the core is not built yet) the commit task below
    // does it instead, so no commit waits for the next request.
    let committed = Arc::new(Notify::new());
    let n = committed.clone();
    let slot: Arc<OnceLock<Weak<Mutex<Core>>>> = Arc::default();
    let s = slot.clone();
    let on_commit = move || {
        if let Some(core) = s.get().and_then(Weak::upgrade)
            && let Ok(mut c) = core.try_lock()
        {
            c.poll(None);
            return;
        }
        n.notify_one();
    };
    let key = crate::identity::load_or_create_key(data)?;
    let key_pub = key.clone();
    let (log, replayed, sponsor) = open_log(data, &key, cluster, Box::new(on_commit))?;
    let owner = owner_token(data, &key)?;
    if insecure {
        eprintln!(
            "cell0: WARNING: --insecure: this node lets in ANY client without a capability, \
             with every right over the whole tree. Never use it on a network you do not control."
        );
    }
    let config = Config {
        insecure,
        ..Config::new(&node_id, key)
    };
    let mut server = Server::new(
        config,
        log,
        SysClock {
            start: Instant::now(),
        },
    );
    let mut out = Outbox::new();
    // Serve nobody until what storage held is applied (a node alone
    // re-elects itself at once; a cluster node waits for its leader, but
    // not forever: a cluster that is down must not keep it from starting).
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    loop {
        server.poll(&mut out);
        let status = cellfs::Log::status(server.log_mut());
        if status.commit >= replayed || Instant::now() > deadline {
            server.poll(&mut out);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let core: Shared = Arc::new(Mutex::new(Core {
        server,
        out,
        peers: HashMap::new(),
        queued_total: 0,
        over_budget: (None, 0),
    }));
    let _ = slot.set(Arc::downgrade(&core));

    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    eprintln!(
        "cell0: node {node_id} serving 9P on {addr}, data {} ({replayed} log entries replayed); owner token {}",
        data.display(),
        owner.display()
    );
    let (swarm_me, gossip_task) = match &cluster.swarm {
        Some(gossip) => {
            let (record, task) =
                start_swarm(&core, gossip, addr, cluster, &node_id, &key_pub).await?;
            (Some(record), Some(task))
        }
        None => (None, None),
    };
    if let Some((sponsor, me)) = sponsor {
        // The add commits only once this node's transport and replica are
        // running (they are): the leader reaches it while the write waits.
        match &swarm_me {
            Some(record) => {
                tokio::task::block_in_place(|| sponsor.join_swarm(record))?;
                eprintln!(
                    "cell0: node {node_id} joined the swarm as node {}; the leader makes it a learner of the log",
                    me.id
                );
            }
            None => {
                tokio::task::block_in_place(|| sponsor.add(&me))?;
                eprintln!(
                    "cell0: node {node_id} joined the cluster as raft id {}",
                    me.id
                );
            }
        }
    }
    let _ = std::io::stderr().flush();

    // Commits finish on the log's thread; answer their requests here.
    // Once a second too, with nothing committed: the core has no timer,
    // and a request parked with a capability that expires meanwhile is
    // answered on a poll (cap(3)).
    let c = core.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut trim = Trim::default();
        loop {
            let ticked = tokio::select! {
                _ = committed.notified() => false,
                _ = tick.tick() => true,
            };
            let conns = {
                let mut core = lock(&c);
                core.poll(None);
                core.peers.len()
            };
            if ticked {
                trim.after(conns);
            }
        }
    });

    // The runner speaks 9P to this node like any client: it needs the
    // listener to be up, and the commit task to answer it.
    let runner = if let Some(confine) = runner {
        let local = loopback(addr);
        let token = crate::identity::read_token(&owner)?;
        // It connects on its own thread, once the loop below accepts.
        // Agents must not read the node's key or the owner's token.
        let hide = vec![std::fs::canonicalize(data)?];
        match crate::node::runner::spawn(&node_id, &local, &local, &token, hide, confine) {
            Ok(h) => Some(h),
            Err(e) => {
                eprintln!("cell0: node {node_id} runs no agents: {e:#}");
                None
            }
        }
    } else {
        None
    };

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stop = stop.unwrap_or_default();
    let mut acceptor = Acceptor::new(crate::node::fds::limit());
    loop {
        tokio::select! {
            stream = acceptor.accept(&listener) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(core.clone(), stream));
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            _ = stop.notified() => break,
        }
    }
    drop(listener);
    // The gossip stops first: its task must not outlive the runtime's
    // timers (a stop is not a leave: the others see the node dead, and
    // alive again when it comes back).
    if let Some(task) = gossip_task {
        task.abort();
        let _ = task.await;
    }
    // Its agents' processes end with the node (they are not reported
    // stopped: the node's next start runs them again).
    tokio::task::block_in_place(|| drop(runner));
    // Make every proposed command durable before exiting; the log writer
    // finishes its queue, so nothing a client was told is lost.
    let mut core = lock(&core);
    core.server.log_mut().close();
    core.poll(None);
    eprintln!("cell0: node {node_id} stopped");
    Ok(())
}

/// Start gossiping on `gossip` (the `--swarm` address) for the node that
/// serves 9P on `addr`; returns the record it joins the swarm with, and
/// the gossip task.
async fn start_swarm(
    core: &Shared,
    gossip: &str,
    addr: std::net::SocketAddr,
    cluster: &ClusterArgs,
    node_id: &str,
    key: &cellfs::cap::NodeKey,
) -> anyhow::Result<(cellfs::swarm::NodeRecord, tokio::task::JoinHandle<()>)> {
    let sock = tokio::net::UdpSocket::bind(gossip)
        .await
        .with_context(|| format!("--swarm {gossip}: binding the gossip socket"))?;
    let me = cellfs::vantage::Me {
        id: cluster.id,
        addr: loopback(addr),
        gossip: loopback(sock.local_addr()?),
        raft: cluster.raft.clone().unwrap_or_default(),
        swarm: crate::identity::random("a swarm id")?,
        voters: cluster.voters,
        capacity: host_capacity(),
    };
    let record = cellfs::swarm::NodeRecord {
        id: me.id,
        key: key.public(),
        addr: me.addr.clone(),
        gossip: me.gossip.clone(),
        raft: me.raft.clone(),
        name: node_id.to_string(),
    };
    let seed = u64::from_le_bytes(key.public()[..8].try_into().unwrap_or_default());
    let loss = crate::node::swarm::Loss::from_env(seed)?;
    // The server knows it runs a swarm before the first gossip: it joins
    // itself (a member of the log already) on its next turn.
    {
        let mut c = lock(core);
        c.server.observe(
            cellfs::vantage::Vantage {
                me: Some(me.clone()),
                ..Default::default()
            },
            &[],
        );
        c.poll(None);
    }
    eprintln!("cell0: node {node_id} gossips on {} (swarm(3))", me.gossip);
    let task = tokio::spawn(crate::node::swarm::run(
        sock,
        me,
        key.clone(),
        SwarmExchange(core.clone()),
        loss,
        crate::node::cut::Cut::from_env(),
    ));
    Ok((record, task))
}

/// The gossip task's way to the server.
struct SwarmExchange(Shared);

impl crate::node::swarm::Exchange for SwarmExchange {
    fn exchange(
        &mut self,
        vantage: cellfs::vantage::Vantage,
        lines: Vec<String>,
    ) -> crate::node::swarm::Committed {
        let me = vantage.me.as_ref().map(|m| m.id);
        let mut c = lock(&self.0);
        c.server.observe(vantage, &lines);
        c.poll(None);
        let s = &c.server.state().swarm;
        crate::node::swarm::Committed {
            swarm: s.id,
            members: s
                .members()
                .map(|n| (n.record.id, n.record.key, n.record.gossip.clone()))
                .collect(),
            left: me
                .and_then(|id| s.node(id))
                .is_some_and(|n| n.standing == cellfs::swarm::state::Standing::Left),
        }
    }
}

/// The address a process on this host dials to reach a listener bound
/// to `addr` (an unspecified address is reached on loopback).
fn loopback(addr: std::net::SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    std::net::SocketAddr::new(ip, addr.port()).to_string()
}

/// A node to ask for membership, and who to ask it for.
type Joining = (Sponsor, Member);

/// Open the replicated log under `data/raft`: a new cluster of one, a
/// restart from what storage holds, or (with `--join`) an empty replica
/// that the sponsor's cluster is then asked to add. Returns the log, how
/// many entries storage held, and the sponsor to ask.
fn open_log(
    data: &Path,
    key: &cellfs::cap::NodeKey,
    cluster: &ClusterArgs,
    notify: crate::node::raft::Notify,
) -> anyhow::Result<(RaftLog, u64, Option<Joining>)> {
    let legacy = data.join("wal").join("log");
    if std::fs::metadata(&legacy).is_ok_and(|m| m.len() > 0) && !data.join("raft").exists() {
        anyhow::bail!(
            "{} holds the log of a cell0 from before raft; this version keeps its log in {} \
             and does not read the old one: move the data directory aside to start afresh",
            legacy.display(),
            data.join("raft").display()
        );
    }
    if cluster.id == 0 {
        anyhow::bail!("--id 0: raft ids start at 1");
    }
    let storage = SegmentStore::open(&data.join("raft")).map_err(|e| anyhow::anyhow!("{e}"))?;
    // A node whose storage holds a log was a member already: it restarts
    // from that log, which names its cluster, so a --join left on its
    // command line (a script that always passes one) asks nothing of the
    // sponsor, which may well be down at the same time.
    let holds_log = storage.stats().last_index > 0;
    let me = Member {
        id: cluster.id,
        addr: cluster.raft.clone().unwrap_or_default(),
        key: key.public(),
    };
    let mut opts = Options::new(cluster.id);
    opts.seed = u64::from_le_bytes(key.public()[..8].try_into().unwrap_or_default())
        ^ crate::identity::now();
    let (members, bootstrap, sponsor) = match &cluster.join {
        Some(_) if holds_log => {
            eprintln!(
                "cell0: --join ignored: {} holds this node's raft log; it restarts as the member it is",
                data.join("raft").display()
            );
            (vec![me.clone()], false, None)
        }
        Some(addr) => {
            let token = crate::identity::ClientToken::resolve(cluster.join_token.as_deref(), None)
                .context("--join needs --join-token FILE: a capability with admin over /raft on that node")?;
            let sponsor = Sponsor::connect(addr, &token)?;
            let mut members = sponsor.members(cluster.swarm.is_some())?;
            match members.iter().find(|m| m.id == me.id) {
                // Added before, but stopped before the leader sent it
                // anything: it is a member, and waits for the log.
                Some(m) if m.key == me.key && m.addr == me.addr => (members, false, None),
                Some(_) => anyhow::bail!(
                    "--join {addr}: raft id {} is taken there; pick another --id",
                    me.id
                ),
                None => {
                    members.push(me.clone());
                    (members, false, Some(sponsor))
                }
            }
        }
        None => (vec![me.clone()], true, None),
    };
    let replica =
        Replica::open(opts, &members, storage, 0, bootstrap).map_err(|e| anyhow::anyhow!("{e}"))?;
    let status = replica.status();
    let held = status.last_index;
    // A node that already holds a log is a member already: no joining.
    let sponsor = sponsor.filter(|_| held == 0 && status.snapshot_index == 0);
    let inbox = RaftLog::inbox();
    let log = match &cluster.raft {
        Some(listen) => {
            let i = inbox.clone();
            let cut = crate::node::cut::Cut::from_env();
            let inbound = cut.clone();
            let transport = Transport::start(
                &tokio::runtime::Handle::current(),
                listen.as_str(),
                cluster.id,
                key.clone(),
                Directory::default(),
                Arc::new(move |from, frame| {
                    if !inbound.is_cut() {
                        i.deliver(from, frame)
                    }
                }),
            )
            .with_context(|| format!("--raft {listen}"))?;
            RaftLog::start(replica, CutWire(transport, cut), inbox, notify)?
        }
        None => RaftLog::start(replica, Alone, inbox, notify)?,
    };
    Ok((log, held, sponsor.map(|s| (s, me))))
}

/// Gives the allocator's free memory back to the system once many
/// connections have gone: the C allocator keeps what it freed for reuse,
/// so a node that once held thousands of clients would hold their buffers
/// for ever.
#[derive(Debug, Default)]
struct Trim {
    /// The most connections seen since the last trim.
    high: usize,
}

impl Trim {
    /// How many connections must have gone since the high mark.
    const GONE: usize = 64;

    /// `conns` connections are open now (checked once a second, outside
    /// the core's lock).
    fn after(&mut self, conns: usize) {
        self.high = self.high.max(conns);
        if conns + Self::GONE <= self.high {
            // SAFETY: malloc_trim only walks the allocator's own free
            // lists, under the allocator's locks; it touches no memory of
            // ours.
            unsafe { libc::malloc_trim(0) };
            self.high = conns;
        }
    }
}

/// How long a connection may stay a stranger (not attached) before it is
/// closed: a client attaches at once, and one that does not holds a
/// descriptor and a buffer for nothing (cellfs(4) LIMITS).
const STRANGER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serve one client until it hangs up or the server closes it.
async fn connection(core: Shared, mut stream: TcpStream) {
    let wake = Arc::new(Notify::new());
    let conn = {
        let mut c = lock(&core);
        let id = c.server.connect();
        c.peers.insert(
            id,
            Peer {
                queued: Vec::new(),
                wake: wake.clone(),
                hangup: false,
            },
        );
        id
    };
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // Replies being written; swapped with the peer's queue so both
    // buffers are reused and the request path allocates nothing.
    let mut replies: Vec<u8> = Vec::with_capacity(64 * 1024);
    // A stranger (no attach yet) has this long to become a client.
    let stranger = tokio::time::sleep(STRANGER_TIMEOUT);
    tokio::pin!(stranger);
    let mut attached = false;
    loop {
        tokio::select! {
            // Cancel-safe: bytes read are in `buf` or still in the socket.
            n = stream.read_buf(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
            _ = wake.notified() => {}
            _ = &mut stranger, if !attached => break,
        }
        let closing = {
            let mut c = lock(&core);
            let c = &mut *c;
            let mut bad = false;
            loop {
                let limit = c.server.frame_limit(conn);
                match ninep::frame::frame_len(&buf, limit) {
                    Ok(Some(n)) => {
                        let frame = buf.split_to(n);
                        c.server.handle(conn, &frame, &mut c.out);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        eprintln!("cell0: closing connection {}: {e}", conn.0);
                        bad = true;
                        break;
                    }
                }
            }
            c.poll(Some(conn));
            let now = c.server.attached(conn);
            if attached && !now {
                // A new Tversion: a stranger again, with a fresh allowance.
                stranger
                    .as_mut()
                    .reset(tokio::time::Instant::now() + STRANGER_TIMEOUT);
            }
            attached = now;
            c.take(conn, &mut replies) || bad
        };
        if !replies.is_empty() {
            if stream.write_all(&replies).await.is_err() {
                break;
            }
            replies.clear();
        }
        if closing {
            break;
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
    }
    {
        let mut c = lock(&core);
        let c = &mut *c;
        c.server.disconnect(conn, &mut c.out);
        c.deliver(Some(conn));
        if let Some(peer) = c.peers.remove(&conn) {
            c.queued_total -= peer.queued.len();
        }
    }
    let _ = stream.shutdown().await;
}

/// Write the owner token afresh, or, when the disk has no room for it,
/// keep the one already there (a node on a full disk still starts and
/// serves reads; see cellfs(4)).
fn owner_token(data: &Path, key: &cellfs::cap::NodeKey) -> anyhow::Result<std::path::PathBuf> {
    match crate::identity::write_owner_token(data, key, crate::identity::now()) {
        Ok(path) => Ok(path),
        Err(e) => {
            let path = crate::identity::owner_token_path(data);
            let no_space = e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .and_then(std::io::Error::raw_os_error)
                    .is_some_and(|n| n == libc::ENOSPC || n == libc::EDQUOT)
            });
            if !no_space || !path.exists() {
                return Err(e);
            }
            eprintln!(
                "cell0: renewing the owner token: {e:#}; keeping {} as it is",
                path.display()
            );
            Ok(path)
        }
    }
}

/// Create the data directory, readable by its owner only.
fn create_data_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating data directory {}", dir.display()))?;
    }
    let meta = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    anyhow::ensure!(
        meta.is_dir(),
        "data directory {} is not a directory",
        dir.display()
    );
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Take `DATA/lock` with flock(2), so that a second node on the same data
/// directory stops with a clear message; the kernel drops the lock when
/// the file is closed or the process dies, so a crash leaves none behind.
fn lock_data_dir(data: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::fd::AsRawFd as _;
    let path = data.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock(2) on a descriptor this function owns; it touches no
    // memory of ours.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            anyhow::bail!(
                "data directory {} is in use by another node; stop it, or give this one its own --data",
                data.display()
            );
        }
        return Err(err).with_context(|| format!("locking {}", path.display()));
    }
    Ok(file)
}

/// This node's id: made at first start from the system's entropy and kept
/// in `DATA/node-id`.
fn node_id(data: &Path) -> anyhow::Result<String> {
    let path = data.join("node-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        anyhow::ensure!(
            !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "{} is damaged: expected one word of letters and digits",
            path.display()
        );
        return Ok(id.to_string());
    }
    let mut raw = [0u8; 6];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut raw))
        .context("reading /dev/urandom")?;
    let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = data.join("node-id.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{id}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

/// What this host offers agents: its CPUs and its memory (`MemTotal` of
/// /proc/meminfo); `None` if either cannot be read.
fn host_capacity() -> Option<cellfs::swarm::state::Capacity> {
    let cpus = std::thread::available_parallelism().ok()?.get() as u32;
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(cellfs::swarm::state::Capacity {
        cpus,
        mem: kib * 1024,
    })
}
