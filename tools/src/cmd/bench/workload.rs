//! What the benchmark's connections do, and timing them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ninep::Body;
use ninep::mode::AT_REMOVEDIR;

use super::conn::Conn;
use super::servers::Target;

/// The message size of the channel case.
const MESSAGE: usize = 64;
/// Fids the loops use (the root is 0).
const FILE: u32 = 1;
const DIR: u32 = 2;
const WRITER: u32 = 3;
const READER: u32 = 4;

/// What one connection does, over and over.
#[derive(Clone, Copy, PartialEq)]
pub enum Workload {
    /// walk + open + read + clunk of a small file.
    ReadSmall,
    /// Write a 64-byte message, then read it back.
    Message,
}

impl Workload {
    /// How the case is called in the table.
    pub fn label(self) -> &'static str {
        match self {
            Workload::ReadSmall => "walk+open+read+clunk small file",
            Workload::Message => "write+read 64-byte message",
        }
    }
}

/// Results of one case.
pub struct Figures {
    elapsed: Duration,
    /// Sorted nanoseconds of each pass of the workload.
    pub ops: Vec<u64>,
    /// Sorted nanoseconds of each 9P round trip.
    pub round_trips: Vec<u64>,
}

impl Figures {
    /// Passes of the workload per second, over all connections.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops.len() as f64 / self.elapsed.as_secs_f64()
    }
    /// 9P requests answered per second, over all connections.
    pub fn round_trips_per_sec(&self) -> f64 {
        self.round_trips.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// The `p` quantile of sorted nanoseconds, in microseconds.
pub fn percentile_us(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Run `workload` on `conns` connections for `span`.
pub fn measure(
    t: &Target,
    workload: Workload,
    conns: usize,
    span: Duration,
) -> anyhow::Result<Figures> {
    let stop = Arc::new(AtomicBool::new(false));
    // Connect and set up first, so the timed span is the workload only.
    let mut ready = Vec::with_capacity(conns);
    for i in 0..conns {
        let mut c = Conn::open(&t.addr, &t.aname)?;
        let name = format!("bench{}-{i}", std::process::id());
        match workload {
            Workload::ReadSmall => {}
            Workload::Message => set_up_message(&mut c, t.channels, &name)?,
        }
        ready.push((c, name));
    }
    let start = Instant::now();
    let threads: Vec<_> = ready
        .into_iter()
        .map(|(mut c, name)| {
            let stop = stop.clone();
            let (small, channels) = (t.small.clone(), t.channels);
            std::thread::spawn(move || -> anyhow::Result<(Vec<u64>, Vec<u64>)> {
                c.record();
                let ops = match workload {
                    Workload::ReadSmall => read_loop(&mut c, &small, &stop)?,
                    Workload::Message => message_loop(&mut c, &stop)?,
                };
                let round_trips = std::mem::take(&mut c.round_trips);
                if workload == Workload::Message {
                    tear_down_message(&mut c, channels, &name)?;
                }
                Ok((ops, round_trips))
            })
        })
        .collect();
    std::thread::sleep(span);
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let mut f = Figures {
        elapsed,
        ops: Vec::new(),
        round_trips: Vec::new(),
    };
    for t in threads {
        let (ops, rts) = t
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        f.ops.extend(ops);
        f.round_trips.extend(rts);
    }
    f.ops.sort_unstable();
    f.round_trips.sort_unstable();
    Ok(f)
}

fn read_loop(c: &mut Conn, small: &str, stop: &AtomicBool) -> anyhow::Result<Vec<u64>> {
    let mut lat = Vec::with_capacity(1 << 16);
    let names: Vec<&str> = small.split('/').filter(|n| !n.is_empty()).collect();
    while !stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        c.walk(FILE, &names)?;
        c.lopen(FILE, libc::O_RDONLY as u32)?;
        let n = c.read(FILE, 8192)?;
        c.clunk(FILE)?;
        lat.push(t0.elapsed().as_nanos() as u64);
        anyhow::ensure!(n > 0, "{small} read empty");
    }
    Ok(lat)
}

/// Make the connection's channel (Cell0) or file (diod) and open it on
/// WRITER and READER.
fn set_up_message(c: &mut Conn, channels: bool, name: &str) -> anyhow::Result<()> {
    if channels {
        c.walk(DIR, &["chan"])?;
        c.rpc(Body::Tmkdir {
            dfid: DIR,
            name,
            mode: 0o755,
            gid: 0,
        })?;
        c.walk(WRITER, &["chan", name, "data"])?;
        c.lopen(WRITER, libc::O_WRONLY as u32)?;
    } else {
        c.walk(DIR, &[])?;
        c.walk(WRITER, &[])?;
        c.rpc(Body::Tlcreate {
            fid: WRITER,
            name,
            flags: libc::O_RDWR as u32,
            mode: 0o644,
            gid: 0,
        })?;
    }
    // A channel's reader dequeues; a plain file's reader rereads offset 0.
    if channels {
        c.walk(READER, &["chan", name, "data"])?;
    } else {
        c.walk(READER, &[name])?;
    }
    c.lopen(READER, libc::O_RDONLY as u32)?;
    Ok(())
}

fn message_loop(c: &mut Conn, stop: &AtomicBool) -> anyhow::Result<Vec<u64>> {
    let msg = [b'm'; MESSAGE];
    let mut lat = Vec::with_capacity(1 << 14);
    while !stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        c.write(WRITER, &msg)?;
        let n = c.read(READER, MESSAGE as u32)?;
        lat.push(t0.elapsed().as_nanos() as u64);
        anyhow::ensure!(n == MESSAGE, "read back {n} bytes, not {MESSAGE}");
    }
    Ok(lat)
}

fn tear_down_message(c: &mut Conn, channels: bool, name: &str) -> anyhow::Result<()> {
    c.clunk(WRITER)?;
    c.clunk(READER)?;
    if channels {
        c.rpc(Body::Tunlinkat {
            dirfid: DIR,
            name,
            flags: AT_REMOVEDIR,
        })?;
    } else {
        // diod answers Tunlinkat with EOPNOTSUPP; Tremove it is.
        c.walk(FILE, &[name])?;
        c.rpc(Body::Tremove { fid: FILE })?;
    }
    c.clunk(DIR)
}
