//! `cell0 bench`: operations per second and latency over 9P on loopback.
//!
//! It starts its own node (a fresh data directory, so the figures include
//! the write-ahead log's fsync) and, as a yardstick, diod serving a small
//! file from tmpfs; the same client runs the same workload against both,
//! with 1 and with many connections, each connection on its own thread
//! issuing one request at a time. Figures are printed, never asserted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ninep::Dialect;

use crate::client::{Client, ROOT};

/// Flags of `cell0 bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Seconds each case runs.
    #[arg(long, default_value_t = 3)]
    pub secs: u64,
    /// Connection counts to run each case with (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    pub conns: Vec<usize>,
}

/// How long a server may take to accept its first connection.
const START_WAIT: Duration = Duration::from_secs(15);
/// The message size of the channel case.
const MESSAGE: usize = 64;
/// `AT_REMOVEDIR` for Tunlinkat.
const AT_REMOVEDIR: u32 = 0x200;

/// What one connection does, over and over.
#[derive(Clone, Copy, PartialEq)]
enum Workload {
    /// walk + open + read + clunk of a small file.
    ReadSmall,
    /// Write a 64-byte message, then read it back.
    Message,
}

impl Workload {
    fn label(self) -> &'static str {
        match self {
            Workload::ReadSmall => "walk+open+read+clunk small file",
            Workload::Message => "write+read 64-byte message",
        }
    }
}

/// A server under test.
struct Target {
    name: &'static str,
    addr: String,
    aname: String,
    /// The file the read case reads.
    small: &'static str,
    /// Whether messages go through channels (Cell0) or plain files (diod).
    channels: bool,
    process: Process,
}

/// A child process killed when dropped.
struct Process {
    child: Child,
    /// Removed when the process is dropped.
    dir: PathBuf,
}

impl Process {
    /// Peak resident memory in KiB, from /proc.
    fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Results of one case.
struct Figures {
    ops: u64,
    elapsed: Duration,
    /// Sorted latencies in nanoseconds.
    latencies: Vec<u64>,
}

impl Figures {
    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile_us(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[i] as f64 / 1000.0
    }
}

/// Run the benchmarks and print the figures.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.secs > 0, "--secs must be at least 1");
    anyhow::ensure!(
        !args.conns.is_empty() && args.conns.iter().all(|&n| (1..=256).contains(&n)),
        "--conns takes connection counts from 1 to 256, such as 1,16"
    );
    let targets = [start_node()?, start_diod()?];
    println!(
        "cell0 bench: {} s per case; 9P2000.L over loopback TCP; one client thread per connection, one request at a time",
        args.secs
    );
    println!(
        "cell0: a fresh node, its log on {} (each message fsynced before it is answered)",
        targets[0].process.dir.display()
    );
    println!(
        "diod:  {} on tmpfs (writes are not fsynced)",
        targets[1].process.dir.display()
    );
    println!();
    println!(
        "{:<34} {:<6} {:>5} {:>10} {:>9} {:>9}",
        "case", "server", "conns", "ops/s", "p50 µs", "p99 µs"
    );
    let mut ratios = Vec::new();
    for workload in [Workload::ReadSmall, Workload::Message] {
        for &conns in &args.conns {
            let mut rates = Vec::new();
            for t in &targets {
                let f = measure(t, workload, conns, Duration::from_secs(args.secs))
                    .with_context(|| format!("{} against {}", workload.label(), t.name))?;
                println!(
                    "{:<34} {:<6} {:>5} {:>10.0} {:>9.1} {:>9.1}",
                    workload.label(),
                    t.name,
                    conns,
                    f.ops_per_sec(),
                    f.percentile_us(0.50),
                    f.percentile_us(0.99)
                );
                rates.push(f.ops_per_sec());
            }
            ratios.push((workload, conns, rates[0] / rates[1]));
        }
    }
    println!();
    for (workload, conns, ratio) in ratios {
        println!(
            "cell0/diod ops/s, {}, {conns} conn{}: {ratio:.2}",
            workload.label(),
            if conns == 1 { "" } else { "s" }
        );
    }
    for t in &targets {
        if let Some(kib) = t.process.peak_rss_kib() {
            println!(
                "{} peak resident memory: {:.1} MiB",
                t.name,
                kib as f64 / 1024.0
            );
        }
    }
    Ok(())
}

/// Run `workload` on `conns` connections for `span`.
fn measure(
    t: &Target,
    workload: Workload,
    conns: usize,
    span: Duration,
) -> anyhow::Result<Figures> {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let threads: Vec<_> = (0..conns)
        .map(|i| {
            let stop = stop.clone();
            let (addr, aname, small, channels) =
                (t.addr.clone(), t.aname.clone(), t.small, t.channels);
            std::thread::spawn(move || -> anyhow::Result<Vec<u64>> {
                let c = Client::connect_to(&addr, Dialect::L, &aname)?;
                match workload {
                    Workload::ReadSmall => read_loop(&c, small, &stop),
                    Workload::Message => message_loop(&c, channels, i, &stop),
                }
            })
        })
        .collect();
    std::thread::sleep(span);
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let mut latencies = Vec::new();
    for t in threads {
        let mine = t
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        latencies.extend(mine);
    }
    latencies.sort_unstable();
    Ok(Figures {
        ops: latencies.len() as u64,
        elapsed,
        latencies,
    })
}

fn read_loop(c: &Client, small: &str, stop: &AtomicBool) -> anyhow::Result<Vec<u64>> {
    let mut lat = Vec::with_capacity(1 << 16);
    while !stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        let fid = c.walk(ROOT, &[small])?;
        c.open(fid, libc::O_RDONLY as u32)?;
        let data = c.read(fid, 0, 8192)?;
        c.clunk(fid)?;
        lat.push(t0.elapsed().as_nanos() as u64);
        anyhow::ensure!(!data.is_empty(), "{small} read empty");
    }
    Ok(lat)
}

fn message_loop(
    c: &Client,
    channels: bool,
    i: usize,
    stop: &AtomicBool,
) -> anyhow::Result<Vec<u64>> {
    let name = format!("bench{}-{i}", std::process::id());
    let (wfid, rfid, dir) = if channels {
        let dir = c.walk(ROOT, &["chan"])?;
        c.mkdir(dir, &name, 0o755, 0)?;
        let w = c.walk(ROOT, &["chan", &name, "data"])?;
        c.open(w, libc::O_WRONLY as u32)?;
        let r = c.walk(ROOT, &["chan", &name, "data"])?;
        c.open(r, libc::O_RDONLY as u32)?;
        (w, r, dir)
    } else {
        let dir = c.walk(ROOT, &[])?;
        let f = c.walk(ROOT, &[])?;
        c.lcreate(f, &name, libc::O_RDWR as u32, 0o644, 0)?;
        (f, f, dir)
    };
    let msg = [b'm'; MESSAGE];
    let mut lat = Vec::with_capacity(1 << 14);
    while !stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        c.write(wfid, 0, &msg)?;
        let got = c.read(rfid, 0, MESSAGE as u32)?;
        lat.push(t0.elapsed().as_nanos() as u64);
        anyhow::ensure!(
            got.len() == MESSAGE,
            "read back {} bytes, not {MESSAGE}",
            got.len()
        );
    }
    c.clunk(wfid)?;
    if rfid != wfid {
        c.clunk(rfid)?;
    }
    if channels {
        c.unlinkat(dir, &name, AT_REMOVEDIR)?;
    } else {
        // diod answers Tunlinkat with EOPNOTSUPP; Tremove it is.
        c.remove(c.walk(ROOT, &[&name])?)?;
    }
    c.clunk(dir)?;
    Ok(lat)
}

fn free_addr() -> anyhow::Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.to_string())
}

fn scratch_dir(base: &Path, what: &str) -> anyhow::Result<PathBuf> {
    let dir = base.join(format!("cell0-bench-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Wait until `addr` answers a 9P attach of `aname`, or the process dies.
fn wait_ready(p: &mut Process, addr: &str, aname: &str, name: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_WAIT;
    loop {
        if Client::connect_to(addr, Dialect::L, aname).is_ok() {
            return Ok(());
        }
        if let Some(status) = p.child.try_wait()? {
            bail!("{name} exited before serving ({status})");
        }
        if Instant::now() > deadline {
            bail!("{name} did not answer on {addr} within {START_WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start_node() -> anyhow::Result<Target> {
    let dir = scratch_dir(&std::env::temp_dir(), "node")?;
    let addr = free_addr()?;
    let child = Command::new(std::env::current_exe()?)
        .args(["serve", "--listen", &addr, "--data"])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting a node")?;
    let mut process = Process { child, dir };
    wait_ready(&mut process, &addr, "", "the node")?;
    Ok(Target {
        name: "cell0",
        addr,
        aname: String::new(),
        small: "status",
        channels: true,
        process,
    })
}

fn start_diod() -> anyhow::Result<Target> {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let dir = scratch_dir(&base, "diod")?;
    // About the size of a node's /status.
    std::fs::write(dir.join("status"), "x".repeat(150))?;
    let addr = free_addr()?;
    let child = Command::new("diod")
        .args(["-f", "-n", "-L", "stderr", "-l", &addr, "-e"])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let _ = std::fs::remove_dir_all(&dir);
            bail!("diod is not installed; the benchmark compares against it: apt-get install diod")
        }
        Err(e) => return Err(e).context("starting diod"),
    };
    let aname = dir.to_string_lossy().into_owned();
    let mut process = Process { child, dir };
    wait_ready(&mut process, &addr, &aname, "diod")?;
    Ok(Target {
        name: "diod",
        addr,
        aname,
        small: "status",
        channels: false,
        process,
    })
}
