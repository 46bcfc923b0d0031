//! Real parts for the tool's integration tests: a `cell0 serve` node, a
//! diod server, a `cell0 mount`, and shell commands run in a mount.
//! Everything is cleaned up when dropped; a missing tool fails the test
//! with how to install it.

#![allow(dead_code)] // Each test file uses a different part.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod cluster;
pub mod owner;

/// The `cell0` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cell0")
}

/// A loopback address free now, below Linux's ephemeral range (a free
/// port there can be taken by an outgoing connection before the node
/// binds it), never the same twice in this process.
fn free_addr() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = (std::process::id() % 700) * 16 + 8;
    for _ in 0..SPAN {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (start + k) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return format!("127.0.0.1:{port}");
        }
    }
    panic!("no free loopback port between 20000 and 32000");
}

/// Wait until `cond` holds, failing with `what` after 10 s.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_listening(addr: &str, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        if let Some(st) = child.try_wait().unwrap() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            panic!("server exited with {st}:\n{text}");
        }
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server process on a free loopback port.
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: String,
    /// Its scratch directory (data, export, log).
    pub dir: TempDir,
}

impl Server {
    /// A hosted node: `cell0 serve`.
    pub fn node() -> Server {
        Server::node_with(tempfile::tempdir().unwrap(), None, &[])
    }

    /// A hosted node in `dir` (a restart, when it held one before), on
    /// `addr` or a free port, with extra `serve` flags.
    pub fn node_with(dir: TempDir, addr: Option<String>, extra: &[&str]) -> Server {
        Server::node_with_env(dir, addr, extra, &[])
    }

    /// [`Server::node_with`], with extra environment variables.
    pub fn node_with_env(
        dir: TempDir,
        addr: Option<String>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let addr = addr.unwrap_or_else(free_addr);
        let log = dir.path().join("server.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut child = Command::new(bin())
            .args(["serve", "--listen", &addr])
            .args(extra)
            .envs(env.iter().copied())
            .arg("--data")
            .arg(dir.path().join("data"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("cell0 serve starts");
        wait_listening(&addr, &mut child, &log);
        Server { child, addr, dir }
    }

    /// diod (Debian's 9P2000.L server) exporting [`Server::export`].
    pub fn diod() -> Server {
        let diod = ["/usr/sbin/diod", "/usr/bin/diod"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("diod is not installed: apt-get install diod");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("export")).unwrap();
        let addr = free_addr();
        let log = dir.path().join("server.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(diod)
            .args(["-f", "-n", "-L", "stderr", "-l", &addr, "-e"])
            .arg(dir.path().join("export"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("diod starts");
        wait_listening(&addr, &mut child, &log);
        Server { child, addr, dir }
    }

    /// A free loopback address (for a node's raft transport).
    pub fn free_addr() -> String {
        free_addr()
    }

    /// Stop the process (SIGKILL) and give back its directory, to start
    /// it again.
    pub fn kill_keep(mut self) -> (TempDir, String) {
        self.crash();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (dir, self.addr.clone())
    }

    /// Kill the server with SIGKILL and reap it.
    pub fn crash(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// A node's data directory (its owner token is the clients' default);
    /// for diod, a directory that does not exist (so no token).
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The directory diod exports (its aname).
    pub fn export(&self) -> PathBuf {
        self.dir.path().join("export")
    }

    /// Run `cell0 ARGS --addr ADDR` with `stdin`; (success, stdout, stderr).
    /// A command still running after [`CLIENT_LIMIT`] is killed and fails,
    /// so that a server that never answers fails the test instead of
    /// hanging it.
    pub fn cell0(&self, args: &[&str], stdin: &[u8]) -> (bool, String, String) {
        use std::io::Write;
        let mut child = Command::new("timeout")
            .args(["-s", "KILL", CLIENT_LIMIT, bin()])
            .args(args)
            .args(["--addr", &self.addr, "--data"])
            .arg(self.data())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cell0 runs");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `cell0 mount` of a server on a fresh directory, unmounted on drop.
pub struct Mount {
    dir: TempDir,
    /// The background server's log, as `cell0 mount` printed it.
    pub log: PathBuf,
    /// The background server's pid, as `cell0 mount` printed it.
    pub pid: u32,
}

impl Mount {
    /// Mount `server` (attaching `aname`) with the token in its data
    /// directory, if it has one.
    pub fn new(server: &Server, aname: &str) -> Mount {
        let addr = &server.addr;
        assert!(
            Path::new("/dev/fuse").exists(),
            "/dev/fuse is missing: modprobe fuse, apt-get install fuse3"
        );
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(bin())
            .args(["mount", "--addr", addr, "--aname", aname, "--data"])
            .arg(server.data())
            .arg(dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("cell0 mount runs");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "cell0 mount failed:\n{stderr}");
        let field = |key: &str| -> String {
            let rest = &stderr[stderr
                .find(key)
                .unwrap_or_else(|| panic!("{key}: {stderr}"))
                + key.len()..];
            rest.split([',', ';', ')'])
                .next()
                .unwrap()
                .trim()
                .to_string()
        };
        let m = Mount {
            log: PathBuf::from(field(" log ")),
            pid: field("server pid ").parse().unwrap(),
            dir,
        };
        assert!(
            m.is_mounted(),
            "cell0 mount returned before the mount was there"
        );
        m
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the kernel lists the mount point.
    pub fn is_mounted(&self) -> bool {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let p = self.path().to_string_lossy().into_owned();
        info.lines()
            .any(|l| l.split(' ').nth(4) == Some(p.as_str()))
    }

    /// What the mount's server logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Run `script` with bash in the mount.
    pub fn sh(&self, script: &str) -> Output {
        Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(self.path())
            .stdin(Stdio::null())
            .output()
            .expect("bash runs")
    }

    /// Run `script` in the mount; its stdout, or a panic with its stderr.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "`{script}` failed ({}):\n{}\nmount log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Start `argv` in the mount with default signal dispositions, its
    /// output going to `out`. It leads a process group of its own whose
    /// parent (this test) is in another group of the same session: a
    /// group that is orphaned (as when the tests run from a detached
    /// script) has stop signals discarded, and Ctrl-Z tests would hang.
    pub fn spawn(&self, argv: &[&str], out: &Path) -> Child {
        use std::os::unix::process::CommandExt;
        let f = std::fs::File::create(out).unwrap();
        default_signals(&mut Command::new(argv[0]))
            .args(&argv[1..])
            .process_group(0)
            .current_dir(self.path())
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.is_mounted() {
            let _ = Command::new(bin()).arg("umount").arg(self.path()).status();
        }
        if self.is_mounted() {
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(self.path())
                .status();
        }
    }
}

/// Send `sig` to `pid`.
pub fn kill(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid of a process this test started; no memory
    // is involved.
    let r = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(r, 0, "kill({pid}, {sig})");
}

/// Give the program `cmd` starts the default action for the signals
/// tests send it: a shell that runs a job in the background without job
/// control (a CI runner's) leaves SIGINT and SIGQUIT ignored, and exec
/// keeps them so.
pub fn default_signals(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec, where
    // signal(2) is async-signal-safe and changes only the child.
    unsafe {
        cmd.pre_exec(|| {
            for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGTSTP] {
                libc::signal(sig, libc::SIG_DFL);
            }
            Ok(())
        })
    }
}

/// The state letter of process `pid` (R, S, D, T, Z…), if it exists.
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// How long a client command may take before a test gives up on it
/// (`timeout(1)`'s syntax).
pub const CLIENT_LIMIT: &str = "120s";

/// Run `cell0 ARGS` with no standard input, killed after
/// [`CLIENT_LIMIT`]; (success, stdout, stderr).
pub fn run_cell0(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("timeout")
        .args(["-s", "KILL", CLIENT_LIMIT, bin()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cell0 runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The first of `len` consecutive loopback ports that were all free a
/// moment ago (for commands that number their ports from a base).
pub fn free_port_run(len: u16) -> u16 {
    // Start somewhere that differs between concurrent test processes,
    // and stay below Linux's ephemeral range (32768 and up by default):
    // a port there that is free now can be taken by any outgoing
    // connection before the node binds it.
    let mut base = 20_000 + (std::process::id() % 700) as u16 * 16;
    for _ in 0..200 {
        let held: Vec<TcpListener> = (0..len)
            .map_while(|i| TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if held.len() == len as usize {
            return base;
        }
        base = if base + len + 7 >= 32_000 {
            20_000
        } else {
            base + len + 7
        };
    }
    panic!("no {len} consecutive free ports on loopback");
}

/// Every process on this host now, from /proc.
pub fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// The pids of the live children of process `pid`, from /proc.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for child in pids() {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": the comm may hold spaces.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}
