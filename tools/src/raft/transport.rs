//! The authenticated TCP transport that carries Raft messages between hosted
//! nodes.
//!
//! The transport moves opaque frames: the caller encodes its messages (the
//! Raft driver uses postcard) and the transport knows nothing of Raft. It
//! runs on an existing tokio runtime, but its API is for a plain thread:
//! [`Transport::send`] never blocks, and inbound frames are handed to a
//! `deliver` callback given to [`Transport::start`].
//!
//! # Connections
//!
//! Each node dials one outgoing connection per peer, lazily on the first
//! frame for it, and only ever writes frames on it; frames from a peer
//! arrive on the connection the peer dialed. So between two nodes there are
//! two TCP connections, one per direction. A failed connection is
//! re-established with backoff (50 ms doubling to 1 s). Each peer has a
//! bounded queue ([`MAX_QUEUE_FRAMES`] frames, [`MAX_QUEUE_BYTES`] bytes);
//! a frame that does not fit is dropped and counted (Raft tolerates loss).
//! On an outgoing connection, the writer and a reader that notices the peer
//! closing run concurrently in one task; a write batch that takes longer
//! than 10 s plus 1 s per MiB fails the connection. An inbound connection
//! only reads; a newer authenticated one from the same peer closes it.
//!
//! # Handshake
//!
//! Both sides first send a fixed-size hello:
//! `"cell0-raft/1"` (12 bytes) ‖ id (u64 LE) ‖ ed25519 public key (32) ‖
//! nonce (32 fresh random bytes from `/dev/urandom`). Each side checks the
//! magic and that the peer's id is in the [`Directory`] with exactly that
//! key (the dialer also checks that the id is the one it dialed). Then each
//! signs
//! `"cell0-raft/1 handshake\0"` ‖ role (`b'D'` dialer, `b'L'` listener) ‖
//! dialer id ‖ dialer key ‖ dialer nonce ‖ listener id ‖ listener key ‖
//! listener nonce, the dialer first; the listener verifies the dialer's
//! signature before it sends its own, so a listener is never an oracle for
//! an unauthenticated caller. Any failure closes the connection and is
//! logged on stderr (rate-limited).
//!
//! # Frames
//!
//! After the handshake, the dialer sends frames as `len (u32 LE) ‖ bytes`.
//! A length above [`MAX_FRAME`] closes the connection.
//!
//! # Limits
//!
//! Only the handshake is authenticated: frames are neither encrypted nor
//! MACed, so an attacker who can hijack an established TCP connection can
//! inject frames. The directory is consulted at handshake time only: a
//! peer removed from it keeps its established connections until they fail.

// The Raft driver (tools/src/raft/mod.rs) will use these; until it does,
// the binary does not.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::Read;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use cellfs::cap::token::verify_signature;
use cellfs::cap::{NodeKey, PublicKey};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{Notify, watch};

/// The largest frame carried (snapshots travel as one frame); a larger
/// length prefix closes the connection, and a larger frame given to
/// [`Transport::send`] is dropped.
pub const MAX_FRAME: usize = 64 << 20;
/// At most this many frames wait for one peer; more are dropped.
pub const MAX_QUEUE_FRAMES: usize = 1024;
/// At most this many bytes wait for one peer; more are dropped (a single
/// frame up to [`MAX_FRAME`] is always accepted into an empty queue).
pub const MAX_QUEUE_BYTES: usize = 64 << 20;

const MAGIC: &[u8; 12] = b"cell0-raft/1";
const DOMAIN: &[u8] = b"cell0-raft/1 handshake\0";
const HELLO_LEN: usize = 12 + 8 + 32 + 32;
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames taken from the queue per write batch.
const BATCH: usize = 64;
/// Log lines allowed per window; the rest are counted and summarised.
const LOG_BURST: u32 = 20;
const LOG_WINDOW: Duration = Duration::from_secs(10);

/// The callback that receives each inbound frame as `(from, bytes)`. It is
/// called on a runtime worker, once per frame, in the order the peer sent
/// them; it should only hand the frame on (e.g. push it on a channel and
/// wake the Raft thread), never block.
pub type Deliver = Arc<dyn Fn(u64, Vec<u8>) + Send + Sync>;

/// A member of the cluster as the transport knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Where it listens (`host:port`).
    pub addr: String,
    /// The ed25519 public key it must prove at the handshake.
    pub key: PublicKey,
}

/// The shared, updatable map of peers by node id. Clones share the map:
/// the Raft layer keeps one and calls [`Directory::set`] when membership
/// changes. A connection in either direction is only established with an
/// id whose key here matches the key the peer proves.
#[derive(Clone, Debug, Default)]
pub struct Directory(Arc<RwLock<BTreeMap<u64, Peer>>>);

impl Directory {
    /// A directory holding `members`.
    pub fn new(members: BTreeMap<u64, Peer>) -> Directory {
        Directory(Arc::new(RwLock::new(members)))
    }

    /// Replace the whole membership.
    pub fn set(&self, members: BTreeMap<u64, Peer>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = members;
    }

    /// Add or replace one member.
    pub fn insert(&self, id: u64, peer: Peer) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, peer);
    }

    /// Remove one member.
    pub fn remove(&self, id: u64) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// The member with `id`, if any.
    pub fn get(&self, id: u64) -> Option<Peer> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    /// A copy of the whole membership.
    pub fn members(&self) -> BTreeMap<u64, Peer> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What the transport knows of one peer, for `/raft/peers`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// The outgoing connection is up (handshake done, no failure since).
    pub connected: bool,
    /// Frames written to the outgoing connection.
    pub sent: u64,
    /// Frames dropped: queue full, too large, peer not in the directory,
    /// or lost with a failed connection.
    pub dropped: u64,
    /// Why the last connection attempt or connection failed, if it did.
    pub last_error: Option<String>,
}

/// The running transport. Dropping it stops its tasks and closes its
/// listener and connections (asynchronously, on the runtime).
pub struct Transport {
    inner: Arc<Inner>,
    local: SocketAddr,
    /// Dropping the sender ends every task (they wait on `changed()`).
    _stop: watch::Sender<()>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Transport(node {} at {})", self.inner.me, self.local)
    }
}

struct Inner {
    me: u64,
    key: NodeKey,
    dir: Directory,
    deliver: Deliver,
    rt: Handle,
    stop: watch::Receiver<()>,
    peers: Mutex<BTreeMap<u64, Arc<PeerQueue>>>,
    /// The latest authenticated inbound connection per peer; a newer one
    /// closes the older.
    inbound: Mutex<BTreeMap<u64, Arc<Notify>>>,
    log: Mutex<Limiter>,
}

struct PeerQueue {
    state: Mutex<PeerState>,
    /// Signalled when a frame is queued.
    wake: Notify,
}

#[derive(Default)]
struct PeerState {
    queue: VecDeque<Vec<u8>>,
    bytes: usize,
    stats: PeerStats,
}

struct Limiter {
    start: Instant,
    count: u32,
    suppressed: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Transport {
    /// Bind `listen` (e.g. `"0.0.0.0:7000"` or `127.0.0.1:0`) and start
    /// accepting on the runtime `rt`, as node `me` proving `key`, talking
    /// only to the peers in `peers`. Each authenticated inbound frame is
    /// passed to `deliver`. May be called from any thread.
    pub fn start(
        rt: &Handle,
        listen: impl ToSocketAddrs,
        me: u64,
        key: NodeKey,
        peers: Directory,
        deliver: Deliver,
    ) -> anyhow::Result<Transport> {
        let std_listener =
            std::net::TcpListener::bind(listen).context("binding the raft listener")?;
        std_listener.set_nonblocking(true)?;
        let local = std_listener.local_addr()?;
        let listener = {
            let _guard = rt.enter();
            TcpListener::from_std(std_listener)?
        };
        let (stop_tx, stop_rx) = watch::channel(());
        let inner = Arc::new(Inner {
            me,
            key,
            dir: peers,
            deliver,
            rt: rt.clone(),
            stop: stop_rx,
            peers: Mutex::new(BTreeMap::new()),
            inbound: Mutex::new(BTreeMap::new()),
            log: Mutex::new(Limiter {
                start: Instant::now(),
                count: 0,
                suppressed: 0,
            }),
        });
        inner.spawn(accept_loop(inner.clone(), listener));
        Ok(Transport {
            inner,
            local,
            _stop: stop_tx,
        })
    }

    /// Queue `frame` for node `to` and return at once, never blocking. The
    /// frame is dropped (and counted in [`PeerStats::dropped`]) if `to`
    /// is this node or not in the directory, if the frame exceeds
    /// [`MAX_FRAME`], or if the peer's queue is full.
    pub fn send(&self, to: u64, frame: Vec<u8>) {
        let q = self.inner.queue(to);
        let refuse = if to == self.inner.me {
            Some("that is this node".to_string())
        } else if frame.len() > MAX_FRAME {
            Some(format!("a frame of {} bytes is too large", frame.len()))
        } else if self.inner.dir.get(to).is_none() {
            Some("not in the directory".to_string())
        } else {
            None
        };
        let mut st = lock(&q.state);
        if let Some(why) = refuse {
            st.stats.dropped += 1;
            st.stats.last_error = Some(why);
            return;
        }
        let full = st.queue.len() >= MAX_QUEUE_FRAMES
            || (!st.queue.is_empty() && st.bytes + frame.len() > MAX_QUEUE_BYTES);
        if full {
            st.stats.dropped += 1;
            return;
        }
        st.bytes += frame.len();
        st.queue.push_back(frame);
        drop(st);
        q.wake.notify_one();
    }

    /// Per-peer statistics: every peer frames were sent to, and every
    /// directory member other than this node.
    pub fn stats(&self) -> BTreeMap<u64, PeerStats> {
        let mut out: BTreeMap<u64, PeerStats> = self
            .inner
            .dir
            .members()
            .into_keys()
            .filter(|&id| id != self.inner.me)
            .map(|id| (id, PeerStats::default()))
            .collect();
        let peers: Vec<(u64, Arc<PeerQueue>)> = lock(&self.inner.peers)
            .iter()
            .map(|(&id, q)| (id, q.clone()))
            .collect();
        for (id, q) in peers {
            out.insert(id, lock(&q.state).stats.clone());
        }
        out
    }

    /// The address the listener is bound to (to learn the port after
    /// binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.inner.me
    }

    /// The peers it talks to (the Raft thread updates it as membership
    /// changes).
    pub fn directory(&self) -> &Directory {
        &self.inner.dir
    }
}

impl Inner {
    /// Spawn `fut` on the runtime, ended when the transport is dropped.
    fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let mut stop = self.stop.clone();
        self.rt.spawn(async move {
            tokio::select! {
                _ = fut => {}
                _ = stop.changed() => {}
            }
        });
    }

    /// The queue for `id`, made (with its connection task) on first use.
    fn queue(self: &Arc<Self>, id: u64) -> Arc<PeerQueue> {
        let mut peers = lock(&self.peers);
        if let Some(q) = peers.get(&id) {
            return q.clone();
        }
        let q = Arc::new(PeerQueue {
            state: Mutex::new(PeerState::default()),
            wake: Notify::new(),
        });
        peers.insert(id, q.clone());
        if id != self.me {
            self.spawn(peer_task(self.clone(), id, q.clone()));
        }
        q
    }

    /// Log on stderr, at most [`LOG_BURST`] lines per [`LOG_WINDOW`].
    fn log(&self, msg: impl fmt::Display) {
        let mut l = lock(&self.log);
        let now = Instant::now();
        if now.duration_since(l.start) >= LOG_WINDOW {
            if l.suppressed > 0 {
                eprintln!(
                    "raft transport (node {}): {} messages suppressed",
                    self.me, l.suppressed
                );
            }
            *l = Limiter {
                start: now,
                count: 0,
                suppressed: 0,
            };
        }
        if l.count < LOG_BURST {
            l.count += 1;
            eprintln!("raft transport (node {}): {msg}", self.me);
        } else {
            l.suppressed += 1;
        }
    }
}

/// Keep one outgoing connection to `id` while frames are queued for it.
async fn peer_task(inner: Arc<Inner>, id: u64, q: Arc<PeerQueue>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        // Connect only when there is something to send.
        loop {
            if !lock(&q.state).queue.is_empty() {
                break;
            }
            q.wake.notified().await;
        }
        let Some(peer) = inner.dir.get(id) else {
            let mut st = lock(&q.state);
            st.stats.dropped += st.queue.len() as u64;
            st.queue.clear();
            st.bytes = 0;
            st.stats.last_error = Some("not in the directory".into());
            continue;
        };
        let attempt = tokio::time::timeout(CONNECT_TIMEOUT + HANDSHAKE_TIMEOUT, async {
            let mut s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&peer.addr))
                .await
                .map_err(|_| "connect timed out".to_string())?
                .map_err(|e| format!("connect: {e}"))?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            handshake(
                inner.me,
                &inner.key,
                &inner.dir,
                &mut s,
                Role::Dialer,
                Some(id),
            )
            .await?;
            Ok::<_, String>(s)
        })
        .await
        .unwrap_or_else(|_| Err("handshake timed out".into()));
        match attempt {
            Ok(stream) => {
                backoff = MIN_BACKOFF;
                {
                    let mut st = lock(&q.state);
                    st.stats.connected = true;
                    st.stats.last_error = None;
                }
                let why = run_outgoing(&q, stream).await;
                {
                    let mut st = lock(&q.state);
                    st.stats.connected = false;
                    st.stats.last_error = Some(why.clone());
                }
                inner.log(format_args!(
                    "connection to {id} at {} lost: {why}",
                    peer.addr
                ));
                tokio::time::sleep(MIN_BACKOFF).await;
            }
            Err(why) => {
                // A peer that stays down is logged once, not per retry.
                let repeated = {
                    let mut st = lock(&q.state);
                    let repeated = st.stats.last_error.as_ref() == Some(&why);
                    st.stats.last_error = Some(why.clone());
                    repeated
                };
                if !repeated {
                    inner.log(format_args!(
                        "cannot connect to {id} at {}: {why}",
                        peer.addr
                    ));
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Write queued frames on an authenticated outgoing connection until it
/// fails; meanwhile read from it to notice the peer closing it. Returns
/// why it ended.
async fn run_outgoing(q: &PeerQueue, stream: TcpStream) -> String {
    let (mut rd, wr) = stream.into_split();
    let reader = async move {
        let mut buf = [0u8; 64];
        match rd.read(&mut buf).await {
            Ok(0) => "closed by the peer".to_string(),
            Ok(_) => "the peer sent data on our outgoing connection".to_string(),
            Err(e) => format!("read: {e}"),
        }
    };
    let writer = async move {
        let mut wr = BufWriter::new(wr);
        loop {
            let batch: Vec<Vec<u8>> = {
                let mut st = lock(&q.state);
                let n = st.queue.len().min(BATCH);
                let batch: Vec<Vec<u8>> = st.queue.drain(..n).collect();
                st.bytes -= batch.iter().map(Vec::len).sum::<usize>();
                batch
            };
            if batch.is_empty() {
                q.wake.notified().await;
                continue;
            }
            let n = batch.len() as u64;
            // A peer that stops reading (a vanished host) fails the
            // connection instead of stalling it: allow 10 s plus 1 s per MiB.
            let bytes: usize = batch.iter().map(Vec::len).sum();
            let limit = WRITE_TIMEOUT + Duration::from_secs((bytes >> 20) as u64);
            let write = async {
                for f in &batch {
                    write_frame(&mut wr, f).await?;
                }
                wr.flush().await
            };
            let result = tokio::time::timeout(limit, write)
                .await
                .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
            let mut st = lock(&q.state);
            match result {
                Ok(()) => st.stats.sent += n,
                Err(e) => {
                    st.stats.dropped += n;
                    return format!("write: {e}");
                }
            }
        }
    };
    tokio::select! {
        why = reader => why,
        why = writer => why,
    }
}

async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &[u8]) -> std::io::Result<()> {
    w.write_all(&(frame.len() as u32).to_le_bytes()).await?;
    w.write_all(frame).await
}

/// Read one frame; an error on EOF, I/O failure or an oversized length.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Vec<u8>, String> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            "closed".to_string()
        } else {
            format!("read: {e}")
        }
    })?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(format!(
            "a frame of {len} bytes exceeds the limit of {MAX_FRAME}"
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)
        .await
        .map_err(|e| format!("read: {e}"))?;
    Ok(buf)
}

async fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((s, addr)) => inner.spawn(inbound(inner.clone(), s, addr)),
            Err(e) => {
                inner.log(format_args!("accept: {e}"));
                tokio::time::sleep(MIN_BACKOFF).await;
            }
        }
    }
}

/// Authenticate an inbound connection, then deliver its frames.
async fn inbound(inner: Arc<Inner>, mut s: TcpStream, addr: SocketAddr) {
    let _ = s.set_nodelay(true);
    let hs = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake(
            inner.me,
            &inner.key,
            &inner.dir,
            &mut s,
            Role::Listener,
            None,
        ),
    )
    .await
    .unwrap_or_else(|_| Err("handshake timed out".into()));
    let from = match hs {
        Ok(id) => id,
        Err(why) => {
            inner.log(format_args!("refused a connection from {addr}: {why}"));
            return;
        }
    };
    let kill = Arc::new(Notify::new());
    if let Some(old) = lock(&inner.inbound).insert(from, kill.clone()) {
        old.notify_one();
    }
    let mut rd = BufReader::new(s);
    let why = loop {
        tokio::select! {
            _ = kill.notified() => break None,
            r = read_frame(&mut rd) => match r {
                Ok(frame) => (inner.deliver)(from, frame),
                Err(why) if why == "closed" => break None,
                Err(why) => break Some(why),
            },
        }
    };
    {
        let mut map = lock(&inner.inbound);
        if map.get(&from).is_some_and(|k| Arc::ptr_eq(k, &kill)) {
            map.remove(&from);
        }
    }
    if let Some(why) = why {
        inner.log(format_args!(
            "closed the connection from {from} at {addr}: {why}"
        ));
    }
}

/// Which end of the connection a handshake runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Dialer,
    Listener,
}

fn fresh_nonce() -> Result<[u8; 32], String> {
    let mut n = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut n))
        .map_err(|e| format!("reading /dev/urandom: {e}"))?;
    Ok(n)
}

/// What each side signs: the whole exchange, in dialer-then-listener
/// order, preceded by the signer's role.
fn transcript(
    signer: Role,
    dialer: (u64, &PublicKey, &[u8; 32]),
    listener: (u64, &PublicKey, &[u8; 32]),
) -> Vec<u8> {
    let mut t = Vec::with_capacity(DOMAIN.len() + 1 + 2 * 72);
    t.extend_from_slice(DOMAIN);
    t.push(match signer {
        Role::Dialer => b'D',
        Role::Listener => b'L',
    });
    for (id, key, nonce) in [dialer, listener] {
        t.extend_from_slice(&id.to_le_bytes());
        t.extend_from_slice(key);
        t.extend_from_slice(nonce);
    }
    t
}

/// Run the handshake on `s` as node `me`; on success, the peer's proven
/// id. `expect` is the id a dialer meant to reach.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    me: u64,
    key: &NodeKey,
    dir: &Directory,
    s: &mut S,
    role: Role,
    expect: Option<u64>,
) -> Result<u64, String> {
    let my_key = key.public();
    let my_nonce = fresh_nonce()?;
    let mut hello = Vec::with_capacity(HELLO_LEN);
    hello.extend_from_slice(MAGIC);
    hello.extend_from_slice(&me.to_le_bytes());
    hello.extend_from_slice(&my_key);
    hello.extend_from_slice(&my_nonce);
    s.write_all(&hello)
        .await
        .map_err(|e| format!("sending hello: {e}"))?;
    s.flush().await.map_err(|e| format!("sending hello: {e}"))?;

    let mut theirs = [0u8; HELLO_LEN];
    s.read_exact(&mut theirs)
        .await
        .map_err(|e| format!("reading hello: {e}"))?;
    if &theirs[..12] != MAGIC {
        return Err("bad magic in hello".into());
    }
    let peer_id = u64::from_le_bytes(theirs[12..20].try_into().unwrap_or_default());
    let peer_key: PublicKey = theirs[20..52].try_into().unwrap_or_default();
    let peer_nonce: [u8; 32] = theirs[52..84].try_into().unwrap_or_default();
    if let Some(want) = expect
        && peer_id != want
    {
        return Err(format!("dialed node {want} but it says it is {peer_id}"));
    }
    if peer_id == me {
        return Err(format!("the peer claims to be this node ({me})"));
    }
    let Some(listed) = dir.get(peer_id) else {
        return Err(format!("node {peer_id} is not in the directory"));
    };
    if listed.key != peer_key {
        return Err(format!(
            "node {peer_id} presented a key other than the directory's"
        ));
    }

    let mine = (me, &my_key, &my_nonce);
    let peer = (peer_id, &peer_key, &peer_nonce);
    let (dialer, listener) = match role {
        Role::Dialer => (mine, peer),
        Role::Listener => (peer, mine),
    };
    let peer_role = match role {
        Role::Dialer => Role::Listener,
        Role::Listener => Role::Dialer,
    };
    let my_sig = key.sign(&transcript(role, dialer, listener));
    let their_transcript = transcript(peer_role, dialer, listener);

    async fn read_sig<S: AsyncRead + Unpin>(s: &mut S) -> Result<[u8; 64], String> {
        let mut sig = [0u8; 64];
        s.read_exact(&mut sig)
            .await
            .map_err(|e| format!("reading the signature (refused by the peer?): {e}"))?;
        Ok(sig)
    }
    let check = |sig: &[u8; 64]| {
        if verify_signature(&peer_key, &their_transcript, sig) {
            Ok(())
        } else {
            Err(format!("node {peer_id}'s handshake signature is bad"))
        }
    };
    match role {
        Role::Dialer => {
            s.write_all(&my_sig)
                .await
                .map_err(|e| format!("sending the signature: {e}"))?;
            s.flush()
                .await
                .map_err(|e| format!("sending the signature: {e}"))?;
            check(&read_sig(s).await?)?;
        }
        Role::Listener => {
            check(&read_sig(s).await?)?;
            s.write_all(&my_sig)
                .await
                .map_err(|e| format!("sending the signature: {e}"))?;
            s.flush()
                .await
                .map_err(|e| format!("sending the signature: {e}"))?;
        }
    }
    Ok(peer_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
    use tokio::runtime::Runtime;

    fn key(id: u64) -> NodeKey {
        NodeKey::from_seed(&[id as u8; 32])
    }

    fn rt() -> Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    type Rx = Receiver<(u64, Vec<u8>)>;

    /// Start node `id` on a fresh port with an empty directory.
    fn node(rt: &Runtime, id: u64, addr: &str) -> (Transport, Directory, Rx) {
        let dir = Directory::default();
        let (tx, rx) = channel();
        let deliver: Deliver = Arc::new(move |from, f| {
            let _ = tx.send((from, f));
        });
        let t = Transport::start(rt.handle(), addr, id, key(id), dir.clone(), deliver).unwrap();
        (t, dir, rx)
    }

    fn peer(t: &Transport) -> Peer {
        Peer {
            addr: t.local_addr().to_string(),
            key: key(t.id()).public(),
        }
    }

    /// Give every node a directory of all of them.
    fn mesh(nodes: &[(&Transport, &Directory)]) {
        let all: BTreeMap<u64, Peer> = nodes.iter().map(|(t, _)| (t.id(), peer(t))).collect();
        for (_, d) in nodes {
            d.set(all.clone());
        }
    }

    fn recv(rx: &Rx) -> (u64, Vec<u8>) {
        rx.recv_timeout(Duration::from_secs(10))
            .expect("a frame in time")
    }

    fn nothing(rx: &Rx, wait: Duration) {
        match rx.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            other => panic!("expected nothing, got {other:?}"),
        }
    }

    fn frame(i: u32) -> Vec<u8> {
        let mut f = i.to_le_bytes().to_vec();
        f.resize(4 + (i as usize % 300), i as u8);
        f
    }

    #[test]
    fn two_nodes_exchange_in_order() {
        let rt = rt();
        let (a, da, ra) = node(&rt, 1, "127.0.0.1:0");
        let (b, db, rb) = node(&rt, 2, "127.0.0.1:0");
        mesh(&[(&a, &da), (&b, &db)]);
        for i in 0..200 {
            a.send(2, frame(i));
            b.send(1, frame(i + 1000));
        }
        for i in 0..200 {
            assert_eq!(recv(&rb), (1, frame(i)));
            assert_eq!(recv(&ra), (2, frame(i + 1000)));
        }
        let s = a.stats();
        assert!(s[&2].connected);
        assert_eq!(s[&2].sent, 200);
        assert_eq!(s[&2].dropped, 0);
        // An empty frame and a large one travel too.
        a.send(2, Vec::new());
        a.send(2, vec![7u8; 3 << 20]);
        assert_eq!(recv(&rb), (1, Vec::new()));
        assert_eq!(recv(&rb), (1, vec![7u8; 3 << 20]));
    }

    #[test]
    fn three_nodes_all_pairs() {
        let rt = rt();
        let nodes: Vec<_> = (1..=3).map(|id| node(&rt, id, "127.0.0.1:0")).collect();
        mesh(&nodes.iter().map(|(t, d, _)| (t, d)).collect::<Vec<_>>());
        // Send from plain threads, as the Raft driver will.
        std::thread::scope(|sc| {
            for (t, _, _) in &nodes {
                sc.spawn(move || {
                    for i in 0..100 {
                        for to in 1..=3 {
                            if to != t.id() {
                                t.send(to, frame(i));
                            }
                        }
                    }
                });
            }
        });
        for (t, _, rx) in &nodes {
            let mut next: BTreeMap<u64, u32> = BTreeMap::new();
            for _ in 0..200 {
                let (from, f) = recv(rx);
                assert_ne!(from, t.id());
                let i = next.entry(from).or_default();
                assert_eq!(f, frame(*i), "node {} from {from}", t.id());
                *i += 1;
            }
            nothing(rx, Duration::from_millis(100));
        }
    }

    #[test]
    fn wrong_key_refused_both_ways() {
        let rt = rt();
        let (a, da, ra) = node(&rt, 1, "127.0.0.1:0");
        let (b, db, rb) = node(&rt, 2, "127.0.0.1:0");
        mesh(&[(&a, &da), (&b, &db)]);
        // A believes node 2 has another key.
        da.insert(
            2,
            Peer {
                addr: b.local_addr().to_string(),
                key: key(99).public(),
            },
        );
        for i in 0..5 {
            a.send(2, frame(i));
            b.send(1, frame(i));
        }
        nothing(&ra, Duration::from_millis(500));
        nothing(&rb, Duration::from_millis(10));
        let sa = a.stats();
        assert!(!sa[&2].connected);
        assert!(
            sa[&2]
                .last_error
                .as_deref()
                .unwrap()
                .contains("key other than"),
            "{sa:?}"
        );
        let sb = b.stats();
        assert!(!sb[&1].connected);
        assert!(sb[&1].last_error.is_some(), "{sb:?}");
        assert_eq!(sa[&2].sent + sb[&1].sent, 0);
    }

    #[test]
    fn unknown_id_refused() {
        let rt = rt();
        let (a, da, ra) = node(&rt, 1, "127.0.0.1:0");
        let (c, dc, _rc) = node(&rt, 3, "127.0.0.1:0");
        // C knows A; A does not know C.
        da.set([(1, peer(&a))].into());
        dc.set([(1, peer(&a)), (3, peer(&c))].into());
        c.send(1, frame(1));
        nothing(&ra, Duration::from_millis(500));
        assert!(!c.stats()[&1].connected);
        // A cannot send to C either.
        a.send(3, frame(1));
        assert_eq!(a.stats()[&3].dropped, 1);
        // Once A learns C, frames flow.
        da.insert(3, peer(&c));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            c.send(1, frame(2));
            if let Ok(got) = ra.recv_timeout(Duration::from_millis(100)) {
                // The frame queued while refused is kept and comes first.
                assert_eq!(got, (3, frame(1)));
                break;
            }
            assert!(Instant::now() < deadline, "never connected");
        }
    }

    #[test]
    fn reconnects_after_restart() {
        let rt = rt();
        let (a, da, ra) = node(&rt, 1, "127.0.0.1:0");
        let (b, db, rb) = node(&rt, 2, "127.0.0.1:0");
        mesh(&[(&a, &da), (&b, &db)]);
        a.send(2, frame(0));
        assert_eq!(recv(&rb), (1, frame(0)));
        let addr = b.local_addr();
        drop(b);
        drop(rb);
        // Frames sent while B is down are lost or queued, never blocking.
        for i in 0..10 {
            a.send(2, frame(i));
        }
        std::thread::sleep(Duration::from_millis(200));
        assert!(!a.stats()[&2].connected);
        // B comes back on the same address (the old listener closes
        // asynchronously, so retry the bind).
        let deadline = Instant::now() + Duration::from_secs(5);
        let (b, db, rb) = loop {
            let dir = Directory::default();
            let (tx, rx) = channel();
            let deliver: Deliver = Arc::new(move |from, f| {
                let _ = tx.send((from, f));
            });
            match Transport::start(rt.handle(), addr, 2, key(2), dir.clone(), deliver) {
                Ok(t) => break (t, dir, rx),
                Err(e) => assert!(Instant::now() < deadline, "rebinding: {e:#}"),
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        mesh(&[(&a, &da), (&b, &db)]);
        // Drain whatever was queued; then later frames arrive in order.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            a.send(2, b"ping".to_vec());
            if let Ok((1, f)) = rb.recv_timeout(Duration::from_millis(100))
                && f == b"ping"
            {
                break;
            }
            assert!(Instant::now() < deadline, "never reconnected");
        }
        for i in 100..120 {
            a.send(2, frame(i));
        }
        let mut got = Vec::new();
        while got.len() < 20 {
            let (from, f) = recv(&rb);
            assert_eq!(from, 1);
            if f != b"ping" {
                got.push(f);
            }
        }
        assert_eq!(got, (100..120).map(frame).collect::<Vec<_>>());
        assert!(a.stats()[&2].connected);
        // And B can reach A.
        b.send(1, frame(5));
        assert_eq!(recv(&ra), (2, frame(5)));
    }

    #[test]
    fn full_queue_drops_without_blocking() {
        let rt = rt();
        let (a, da, _ra) = node(&rt, 1, "127.0.0.1:0");
        // Node 2's address refuses connections.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap().to_string();
        drop(dead);
        da.set(
            [
                (1, peer(&a)),
                (
                    2,
                    Peer {
                        addr: dead_addr,
                        key: key(2).public(),
                    },
                ),
            ]
            .into(),
        );
        let t0 = Instant::now();
        for i in 0..2000 {
            a.send(2, frame(i));
        }
        assert!(t0.elapsed() < Duration::from_secs(1));
        let s = &a.stats()[&2];
        assert_eq!(s.dropped, 2000 - MAX_QUEUE_FRAMES as u64);
        assert_eq!(s.sent, 0);
        // Too-large frames are dropped at once.
        a.send(2, vec![0; MAX_FRAME + 1]);
        assert_eq!(a.stats()[&2].dropped, 2001 - MAX_QUEUE_FRAMES as u64);
        std::thread::sleep(Duration::from_millis(200));
        assert!(a.stats()[&2].last_error.is_some());
    }

    /// Read until the server closes; panics if it does not within 5 s.
    fn closed_by_server(s: &mut std::net::TcpStream) {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
                Err(e) => panic!("connection not closed: {e}"),
            }
        }
    }

    #[test]
    fn garbage_hello_closes_connection() {
        let rt = rt();
        let (a, da, ra) = node(&rt, 1, "127.0.0.1:0");
        da.set([(1, peer(&a)), (2, peer_of(2, "127.0.0.1:1"))].into());
        let mut s = std::net::TcpStream::connect(a.local_addr()).unwrap();
        s.write_all(&[b'x'; HELLO_LEN + 64]).unwrap();
        closed_by_server(&mut s);
        // A short hello then EOF.
        let mut s = std::net::TcpStream::connect(a.local_addr()).unwrap();
        s.write_all(b"cell0").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        closed_by_server(&mut s);
        nothing(&ra, Duration::from_millis(100));
    }

    fn peer_of(id: u64, addr: &str) -> Peer {
        Peer {
            addr: addr.into(),
            key: key(id).public(),
        }
    }

    #[test]
    fn oversized_frame_closes_connection() {
        let rt = rt();
        let (a, da, ra) = node(&rt, 1, "127.0.0.1:0");
        // Node 2 is played by hand; its own directory lists A.
        da.set([(1, peer(&a)), (2, peer_of(2, "127.0.0.1:1"))].into());
        let d2 = Directory::new([(1, peer(&a))].into());
        rt.block_on(async {
            let mut s = TcpStream::connect(a.local_addr()).await.unwrap();
            let id = handshake(2, &key(2), &d2, &mut s, Role::Dialer, Some(1))
                .await
                .unwrap();
            assert_eq!(id, 1);
            write_frame(&mut s, b"ok").await.unwrap();
            s.write_all(&((MAX_FRAME + 1) as u32).to_le_bytes())
                .await
                .unwrap();
            s.write_all(b"more").await.unwrap();
            let mut buf = [0u8; 16];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .expect("closed in time")
                .unwrap_or(0);
            assert_eq!(n, 0);
        });
        assert_eq!(recv(&ra), (2, b"ok".to_vec()));
        nothing(&ra, Duration::from_millis(100));
        // A handshake with a signature from the wrong key is refused too.
        let d9 = Directory::new([(1, peer(&a))].into());
        rt.block_on(async {
            let mut s = TcpStream::connect(a.local_addr()).await.unwrap();
            // Claim id 2 but sign with key 9: A's directory check on the
            // hello (key 9 is not node 2's) fails first.
            let r = handshake(2, &key(9), &d9, &mut s, Role::Dialer, Some(1)).await;
            assert!(r.is_err());
        });
        nothing(&ra, Duration::from_millis(100));
    }

    #[test]
    fn forged_signature_refused() {
        let rt = rt();
        let (a, da, ra) = node(&rt, 1, "127.0.0.1:0");
        da.set([(1, peer(&a)), (2, peer_of(2, "127.0.0.1:1"))].into());
        rt.block_on(async {
            let mut s = TcpStream::connect(a.local_addr()).await.unwrap();
            // A hello with node 2's public key, but a signature it cannot make.
            let mut hello = MAGIC.to_vec();
            hello.extend_from_slice(&2u64.to_le_bytes());
            hello.extend_from_slice(&key(2).public());
            hello.extend_from_slice(&[0; 32]);
            s.write_all(&hello).await.unwrap();
            let mut theirs = [0u8; HELLO_LEN];
            s.read_exact(&mut theirs).await.unwrap();
            // The listener may already have hung up on the bad signature.
            let _ = s.write_all(&key(9).sign(b"whatever")).await;
            let _ = write_frame(&mut s, b"forged").await;
            let mut buf = [0u8; 64];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .expect("closed in time")
                .unwrap_or(0);
            assert_eq!(n, 0, "the listener must not send its signature");
        });
        nothing(&ra, Duration::from_millis(200));
    }
}
