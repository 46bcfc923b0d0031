//! The servers the benchmark measures: a fresh Cell0 node and diod.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::conn::Conn;

/// How long a server may take to accept its first connection.
const START_WAIT: Duration = Duration::from_secs(15);

/// A server under test.
pub struct Target {
    /// How the table names it.
    pub name: &'static str,
    /// Its 9P address.
    pub addr: String,
    /// What to attach.
    pub aname: String,
    /// The file the read case reads.
    pub small: String,
    /// Whether messages go through channels (Cell0) or plain files (diod).
    pub channels: bool,
    /// The server, when the benchmark started it.
    pub process: Option<Process>,
}

impl Target {
    /// The same server, without owning its process.
    pub fn clone_without_process(&self) -> Target {
        Target {
            name: self.name,
            addr: self.addr.clone(),
            aname: self.aname.clone(),
            small: self.small.clone(),
            channels: self.channels,
            process: None,
        }
    }
}

/// A child process killed when dropped.
pub struct Process {
    child: Child,
    /// Removed when the process is dropped.
    pub dir: PathBuf,
}

impl Process {
    /// Own `child`, whose scratch directory is `dir`.
    pub fn new(child: Child, dir: PathBuf) -> Process {
        Process { child, dir }
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL it and reap it (its directory stays until it is dropped).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Peak resident memory in KiB, from /proc.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.status_kib("VmHWM:")
    }

    /// CPU time it has used so far, user and system, all its threads, in
    /// microseconds (from /proc, at the kernel's tick: 10 ms here).
    pub fn cpu_us(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // The command name (field 2) may hold spaces: count after its `)`.
        let rest = &stat[stat.rfind(')')? + 1..];
        let mut fields = rest.split_whitespace().skip(11);
        let utime: u64 = fields.next()?.parse().ok()?;
        let stime: u64 = fields.next()?.parse().ok()?;
        // SAFETY: sysconf reads a constant of the C library; no memory
        // of ours is involved.
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let tick = u64::try_from(tick).ok().filter(|&t| t > 0)?;
        Some((utime + stime) * 1_000_000 / tick)
    }

    /// Resident memory now, in KiB, from /proc.
    pub fn rss_kib(&self) -> Option<u64> {
        self.status_kib("VmRSS:")
    }

    fn status_kib(&self, key: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
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

fn free_addr() -> anyhow::Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.to_string())
}

/// The version a peer program (`redis-server`, `etcd`) prints for
/// `PROGRAM --version`, as `pick` finds it in that output; or `install`
/// (how to get the program) when it is not installed.
pub fn peer_version(
    program: &str,
    install: &str,
    pick: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<String> {
    let out = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => {
            Ok(pick(&String::from_utf8_lossy(&o.stdout)).unwrap_or_else(|| "unknown".into()))
        }
        Ok(o) => bail!("{program} --version failed ({})", o.status),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("{install}"),
        Err(e) => Err(e).context(format!("running {program} --version")),
    }
}

/// A fresh directory `BASE/cell0-bench-WHAT-PID`, emptied if a run that
/// died left it behind.
pub fn scratch_dir(base: &Path, what: &str) -> anyhow::Result<PathBuf> {
    let dir = base.join(format!("cell0-bench-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Wait until `addr` answers a 9P attach of `aname`, or the process dies.
fn wait_ready(p: &mut Process, addr: &str, aname: &str, name: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_WAIT;
    loop {
        if Conn::open(addr, aname).is_ok() {
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

/// A server someone else runs at `addr`: the read case reads `small`;
/// the message case runs if it has a Cell0 `/chan`.
pub fn existing(addr: &str, aname: &str, small: &str) -> anyhow::Result<Target> {
    let mut c = Conn::open(addr, aname)
        .with_context(|| format!("attaching {addr} (is a 9P server listening there?)"))?;
    c.walk(1, &[small])
        .with_context(|| format!("{addr} has no /{small} to read (pick one with --file)"))?;
    c.clunk(1)?;
    let channels = c.walk(2, &["chan"]).is_ok();
    Ok(Target {
        name: "server",
        addr: addr.to_string(),
        aname: aname.to_string(),
        small: small.to_string(),
        channels,
        process: None,
    })
}

/// Start a fresh node on a free port, with a data directory of its own.
pub fn start_node() -> anyhow::Result<(Target, cellfs::cap::Token)> {
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
    let token = wait_owner_token(&mut process)?;
    let owner = token.clone();
    let aname = format!("token={}", token.to_text());
    wait_ready(&mut process, &addr, &aname, "the node")?;
    Ok((
        Target {
            name: "cell0",
            addr,
            aname,
            small: "status".into(),
            channels: true,
            process: Some(process),
        },
        owner,
    ))
}

/// The owner token a node started by the benchmark writes at start.
fn wait_owner_token(p: &mut Process) -> anyhow::Result<cellfs::cap::Token> {
    let path = crate::identity::owner_token_path(&p.dir);
    let deadline = Instant::now() + START_WAIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(t) = cellfs::cap::Token::from_text(text.trim())
        {
            return Ok(t);
        }
        if let Some(status) = p.child.try_wait()? {
            bail!("the node exited before serving ({status})");
        }
        if Instant::now() > deadline {
            bail!("the node wrote no {} within {START_WAIT:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Start diod exporting a small file on tmpfs, on a free port.
pub fn start_diod() -> anyhow::Result<Target> {
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
        small: "status".into(),
        channels: false,
        process: Some(process),
    })
}
