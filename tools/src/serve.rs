//! `cell0 serve`: the hosted node.
//!
//! One `cellfs::Server` behind a mutex that is held only for CPU work:
//! decoding, applying and encoding. Disk I/O happens on the log's writer
//! thread and network I/O in per-connection tasks, so no lock is held
//! across I/O. Each connection has a reader task (frames in, a batch per
//! lock) and a writer task (frames out, fed by a bounded queue, because a
//! request on one connection can answer a read parked on another).

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::BytesMut;
use cellfs::{Clock, Config, ConnId, Outbox, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};

use crate::wal::Wal;

/// Flags of `cell0 serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = crate::config::DEFAULT_ADDR)]
    pub listen: String,
    /// Data directory [default: $XDG_DATA_HOME/cell0]
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// Batches of reply frames a slow client may have queued before it is
/// disconnected.
const WRITE_QUEUE: usize = 4096;

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

/// Where a connection's replies go.
struct Peer {
    tx: mpsc::Sender<Vec<u8>>,
    /// Tells the reader to stop (the server asked for a close).
    hangup: Arc<Notify>,
}

/// Everything behind the one lock.
struct Core {
    server: Server<Wal, SysClock>,
    out: Outbox,
    peers: HashMap<ConnId, Peer>,
    /// Per-destination batches, reused between rounds.
    batches: HashMap<ConnId, Vec<u8>>,
}

type Shared = Arc<Mutex<Core>>;

fn lock(core: &Shared) -> MutexGuard<'_, Core> {
    // A panic while holding the lock would be a bug; keep serving with the
    // state as it is rather than take every connection down with it.
    core.lock().unwrap_or_else(|e| e.into_inner())
}

impl Core {
    /// Hand every frame in the outbox to its connection's writer, and close
    /// the connections the server gave up on.
    fn deliver(&mut self) {
        for (conn, frame) in self.out.frames() {
            self.batches
                .entry(conn)
                .or_default()
                .extend_from_slice(frame);
        }
        let closes: Vec<ConnId> = self.out.closes().to_vec();
        self.out.clear();
        for (conn, batch) in self.batches.iter_mut().filter(|(_, b)| !b.is_empty()) {
            let Some(peer) = self.peers.get(conn) else {
                batch.clear();
                continue;
            };
            if peer.tx.try_send(std::mem::take(batch)).is_err() {
                // Its queue is full: the client is not reading its replies.
                peer.hangup.notify_one();
            }
        }
        for conn in closes {
            if let Some(peer) = self.peers.get(&conn) {
                peer.hangup.notify_one();
            }
        }
    }

    fn poll(&mut self) {
        self.server.poll(&mut self.out);
        self.deliver();
    }
}

/// Run the node until SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let data = args.data.unwrap_or_else(crate::config::default_data_dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(&args.listen, &data, None))
}

/// Serve on `listen` with data in `data` until a signal (or `stop`).
pub async fn serve(listen: &str, data: &Path, stop: Option<Arc<Notify>>) -> anyhow::Result<()> {
    create_data_dir(data)?;
    // Held until this function returns: two nodes appending to one log
    // would interleave their records.
    let _lock = lock_data_dir(data)?;
    let node_id = node_id(data)?;
    let committed = Arc::new(Notify::new());
    let n = committed.clone();
    let (wal, replay) = Wal::open(&data.join("wal"), Box::new(move || n.notify_one()))?;
    let config = Config {
        node_id: node_id.clone(),
        ..Config::default()
    };
    let mut server = Server::new(
        config,
        wal,
        SysClock {
            start: Instant::now(),
        },
    );
    let mut out = Outbox::new();
    server.poll(&mut out);
    let core: Shared = Arc::new(Mutex::new(Core {
        server,
        out,
        peers: HashMap::new(),
        batches: HashMap::new(),
    }));

    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    eprintln!(
        "cell0: node {node_id} serving 9P on {addr}, data {} ({} log entries replayed)",
        data.display(),
        replay.entries
    );
    let _ = std::io::stderr().flush();

    // Commits finish on the log's thread; answer their requests here.
    let c = core.clone();
    tokio::spawn(async move {
        loop {
            committed.notified().await;
            lock(&c).poll();
        }
    });

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stop = stop.unwrap_or_default();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(connection(core.clone(), stream));
                }
                Err(e) => eprintln!("cell0: accept failed: {e}"),
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            _ = stop.notified() => break,
        }
    }
    drop(listener);
    // Make every proposed command durable before exiting; the log writer
    // finishes its queue, so nothing a client was told is lost.
    let mut core = lock(&core);
    core.server.log_mut().close();
    core.poll();
    eprintln!("cell0: node {node_id} stopped");
    Ok(())
}

/// Serve one client until it hangs up or the server closes it.
async fn connection(core: Shared, stream: TcpStream) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    let hangup = Arc::new(Notify::new());
    let conn = {
        let mut c = lock(&core);
        let id = c.server.connect();
        c.peers.insert(
            id,
            Peer {
                tx,
                hangup: hangup.clone(),
            },
        );
        id
    };
    let writer = tokio::spawn(async move {
        while let Some(batch) = rx.recv().await {
            if wr.write_all(&batch).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });

    let mut buf = BytesMut::with_capacity(64 * 1024);
    'serve: loop {
        tokio::select! {
            n = rd.read_buf(&mut buf) => match n {
                Ok(0) | Err(_) => break 'serve,
                Ok(_) => {}
            },
            _ = hangup.notified() => break 'serve,
        }
        let mut c = lock(&core);
        let c = &mut *c;
        loop {
            let msize = c.server.msize(conn);
            match ninep::frame::frame_len(&buf, msize) {
                Ok(Some(n)) => {
                    let frame = buf.split_to(n);
                    c.server.handle(conn, &frame, &mut c.out);
                }
                Ok(None) => break,
                Err(e) => {
                    eprintln!("cell0: closing connection {}: {e}", conn.0);
                    c.deliver();
                    break 'serve;
                }
            }
        }
        c.poll();
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
    }
    {
        let mut c = lock(&core);
        let c = &mut *c;
        c.server.disconnect(conn, &mut c.out);
        c.deliver();
        c.peers.remove(&conn);
        c.batches.remove(&conn);
    }
    let _ = writer.await;
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
