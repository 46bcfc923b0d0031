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
//!
//! This module keeps the peers' queues and connections; `wire` holds the
//! frame format and the handshake.

// The Raft driver (tools/src/node/raft/mod.rs) will use these; until it does,
// the binary does not.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use cellfs::cap::{NodeKey, PublicKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{Notify, watch};

mod wire;

use wire::{Role, handshake, read_frame, write_frame};

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

#[cfg(test)]
mod tests;
