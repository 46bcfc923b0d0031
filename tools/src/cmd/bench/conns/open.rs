//! Opening and attaching many connections side by side, holding them, and
//! checking at the end that each still answers.
//!
//! A thread per connection would cost the client more than the server
//! under test; instead a small tokio runtime drives them, with at most
//! [`Dial::in_flight`] being opened at once: more than the server's listen
//! queue holds and SYNs are dropped, to be retried only after 1, 3, 7 s.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ninep::{Body, Dialect, Msg, NOFID, NOTAG, Names};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Connections checked at once.
const CHECKS_IN_FLIGHT: usize = 256;
/// How long one connection may take to connect and attach, or to answer
/// the final check, before it counts as failed.
const PATIENCE: Duration = Duration::from_secs(30);
/// Failed connections after which the rest are not tried: a server that
/// stopped accepting would otherwise cost [`PATIENCE`] per connection.
pub const GIVE_UP: usize = 100;
/// The msize asked for: what the benchmark's other clients ask for.
const MSIZE: u32 = 64 * 1024;
/// The fid of the attached root, and the one the final check walks to.
const ROOT: u32 = 0;
const CHECK: u32 = 1;

/// How many of a batch of connections failed, and why the first did.
#[derive(Default)]
pub struct Failures {
    /// Connections that failed.
    pub count: usize,
    /// The first failure's error.
    pub first: Option<String>,
    /// Connections not tried because [`GIVE_UP`] had failed.
    pub skipped: usize,
}

impl Failures {
    fn add(&mut self, e: &anyhow::Error) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(format!("{e:#}"));
        }
    }
}

/// Connections opened, attached and held.
pub struct Held {
    /// The attached connections.
    pub streams: Vec<TcpStream>,
    /// Those that could not be opened or attached.
    pub failures: Failures,
    /// How long opening them all took.
    pub elapsed: Duration,
}

/// Where connections go and what they attach.
#[derive(Clone)]
pub struct Dial {
    /// The server.
    pub addr: SocketAddr,
    /// The aname of the Tattach (for a node, `token=` and the owner's
    /// capability).
    pub aname: Arc<str>,
    /// The source addresses to spread over, `per` connections on each.
    pub sources: Arc<[Ipv4Addr]>,
    /// Connections per source address.
    pub per: usize,
    /// Connections being opened at once.
    pub in_flight: usize,
}

/// Open `n` connections to `dial.addr`, each negotiating 9P2000.L and
/// attaching `dial.aname`; those that fail are counted, not fatal.
pub async fn open_all(dial: &Dial, n: usize) -> Held {
    let start = Instant::now();
    let gate = Arc::new(Semaphore::new(dial.in_flight.max(1)));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let (dial, gate, failed) = (dial.clone(), gate.clone(), failed.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            if failed.load(Ordering::Relaxed) >= GIVE_UP {
                return Ok(None);
            }
            // One source address when it suffices: the kernel then picks
            // the port as for any client.
            let source = if dial.sources.len() > 1 {
                let ip = dial.sources.get(i / dial.per.max(1)).copied();
                Some(ip.context("more connections than the source addresses hold")?)
            } else {
                None
            };
            let opened = tokio::time::timeout(PATIENCE, open_one(&dial, source))
                .await
                .with_context(|| format!("not attached within {PATIENCE:?}"))
                .and_then(|r| r);
            if opened.is_err() {
                failed.fetch_add(1, Ordering::Relaxed);
            }
            opened.map(Some)
        });
    }
    let mut held = Held {
        streams: Vec::with_capacity(n),
        failures: Failures::default(),
        elapsed: Duration::ZERO,
    };
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(Some(s))) => held.streams.push(s),
            Ok(Ok(None)) => held.failures.skipped += 1,
            Ok(Err(e)) => held.failures.add(&e),
            Err(e) => held.failures.add(&anyhow::anyhow!("the task failed: {e}")),
        }
    }
    held.elapsed = start.elapsed();
    held
}

/// Connect (from `source`, if given) and attach.
async fn open_one(dial: &Dial, source: Option<Ipv4Addr>) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4().context("making a socket")?;
    if let Some(ip) = source {
        no_port_at_bind(&socket)?;
        socket
            .bind(SocketAddr::new(ip.into(), 0))
            .with_context(|| format!("binding to {ip}"))?;
    }
    let mut stream = socket
        .connect(dial.addr)
        .await
        .with_context(|| format!("connecting to {}", dial.addr))?;
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(256);
    let version = Dialect::L.version();
    let reply = rpc(
        &mut stream,
        &mut buf,
        Msg {
            tag: NOTAG,
            body: Body::Tversion {
                msize: MSIZE,
                version,
            },
        },
    )
    .await
    .context("Tversion")?;
    match reply {
        Reply::Version(v) if v == version => {}
        Reply::Version(v) => bail!("the server speaks {v:?}, not {version}"),
        other => bail!("Tversion answered with {other:?}"),
    }
    let reply = rpc(
        &mut stream,
        &mut buf,
        Msg {
            tag: 1,
            body: Body::Tattach {
                fid: ROOT,
                afid: NOFID,
                uname: "bench",
                aname: &dial.aname,
                n_uname: Some(0),
            },
        },
    )
    .await
    .context("Tattach")?;
    match reply {
        Reply::Attach => Ok(stream),
        other => bail!("Tattach answered with {other:?}"),
    }
}

/// Let the kernel choose the source port at connect rather than at bind,
/// so that a port is shared by connections to different servers: bound
/// first, each connection would hold its port for every destination.
fn no_port_at_bind(socket: &TcpSocket) -> anyhow::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: the descriptor is the socket's own, open while `socket`
    // lives; setsockopt reads the int we pass, which lives here.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("setting IP_BIND_ADDRESS_NO_PORT");
    }
    Ok(())
}

/// The replies the connections expect.
#[derive(Debug)]
enum Reply {
    /// Rversion, with the version the server speaks.
    Version(String),
    /// Rattach.
    Attach,
    /// Rwalk, with how many qids it returned.
    Walk(usize),
}

/// Send `msg` and wait for its reply (error replies become errors).
async fn rpc(stream: &mut TcpStream, buf: &mut Vec<u8>, msg: Msg<'_>) -> anyhow::Result<Reply> {
    buf.clear();
    ninep::encode(&msg, buf)?;
    stream.write_all(buf).await?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).await?;
    let n = u32::from_le_bytes(size) as usize;
    if !(7..=MSIZE as usize).contains(&n) {
        bail!("reply of {n} bytes is not a 9P frame");
    }
    buf.resize(n, 0);
    buf[..4].copy_from_slice(&size);
    stream.read_exact(&mut buf[4..]).await?;
    let reply =
        ninep::decode(buf, Dialect::L).map_err(|e| anyhow::anyhow!("undecodable reply: {e}"))?;
    Ok(match reply.body {
        Body::Rlerror { ecode } => bail!("{}", std::io::Error::from_raw_os_error(ecode as i32)),
        Body::Rversion { version, .. } => Reply::Version(version.to_string()),
        Body::Rattach { .. } => Reply::Attach,
        Body::Rwalk { wqids } => Reply::Walk(wqids.len()),
        other => bail!("unexpected reply {other:?}"),
    })
}

/// Ask every held connection for one more answer (a Twalk of the root to
/// a new fid, with no names: any 9P server answers it); the connections
/// come back with the count of those that did not answer. Run after the
/// rest of the measurement, it shows that none was dropped meanwhile.
pub async fn check_all(streams: Vec<TcpStream>) -> (Vec<TcpStream>, Failures) {
    let gate = Arc::new(Semaphore::new(CHECKS_IN_FLIGHT));
    let mut tasks = JoinSet::new();
    for mut stream in streams {
        let gate = gate.clone();
        tasks.spawn(async move {
            let Ok(_permit) = gate.acquire_owned().await else {
                return (stream, Err(anyhow::anyhow!("the gate closed")));
            };
            let answered = tokio::time::timeout(PATIENCE, check_one(&mut stream)).await;
            let answered = answered
                .with_context(|| format!("no answer within {PATIENCE:?}"))
                .and_then(|r| r);
            (stream, answered)
        });
    }
    let mut back = Vec::with_capacity(tasks.len());
    let mut failures = Failures::default();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((s, answered)) => {
                if let Err(e) = answered {
                    failures.add(&e);
                }
                back.push(s);
            }
            Err(e) => failures.add(&anyhow::anyhow!("the task failed: {e}")),
        }
    }
    (back, failures)
}

async fn check_one(stream: &mut TcpStream) -> anyhow::Result<()> {
    let mut buf = Vec::with_capacity(64);
    let reply = rpc(
        stream,
        &mut buf,
        Msg {
            tag: 1,
            body: Body::Twalk {
                fid: ROOT,
                newfid: CHECK,
                wnames: Names::from_slice(&[]).map_err(|_| anyhow::anyhow!("no names"))?,
            },
        },
    )
    .await
    .context("Twalk of the root")?;
    match reply {
        Reply::Walk(0) => Ok(()),
        other => bail!("Twalk of the root answered with {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that refuses every connection costs [`GIVE_UP`]
    /// failures, not one per connection asked for.
    #[test]
    fn gives_up_after_enough_failures() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        // A port nothing listens on: connections are refused at once.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let dial = Dial {
            addr,
            aname: Arc::from(""),
            sources: Arc::from([Ipv4Addr::LOCALHOST].as_slice()),
            per: 1_000,
            in_flight: 4,
        };
        let held = rt.block_on(open_all(&dial, 1_000));
        assert!(held.streams.is_empty());
        let f = held.failures;
        assert!((GIVE_UP..GIVE_UP + 4).contains(&f.count), "{}", f.count);
        assert_eq!(f.count + f.skipped, 1_000);
        assert!(f.first.is_some_and(|e| e.contains("connecting to")));
    }
}
