//! Real nodes (`cell0 serve`), each with its own data directory, stopped
//! when dropped; and the `cell0` binary that runs them.

use std::fs::File;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::ports::free_addr;

/// Run `cargo build ARGS` in this workspace, failing the test with `why`
/// if it fails, and return the target directory the build wrote to.
pub fn cargo_build(args: &[&str], why: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet"])
        .args(args)
        .current_dir(&root)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "{why}");
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// The `cell0` binary of this workspace (`$CELL0_BIN` if set), built once
/// per test run so that a plain `cargo test` never exercises a stale
/// binary.
pub fn cell0_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("CELL0_BIN") {
            return PathBuf::from(p);
        }
        let target = cargo_build(&["-p", "cell0", "--bin", "cell0"], "building cell0 failed");
        let bin = target.join("debug").join("cell0");
        assert!(bin.exists(), "{} missing after build", bin.display());
        bin
    })
    .clone()
}

/// How long a client command may take before a test gives up on it
/// (`timeout(1)`'s syntax).
pub const CLIENT_LIMIT: &str = "120s";

/// `timeout -s KILL` [`CLIENT_LIMIT`] `cell0`: a command that never
/// finishes fails the test instead of hanging it.
fn cell0_limited() -> Command {
    let mut cmd = Command::new("timeout");
    cmd.args(["-s", "KILL", CLIENT_LIMIT]).arg(cell0_bin());
    cmd
}

/// (success, stdout, stderr) of a finished command.
fn outcome(out: std::process::Output) -> (bool, String, String) {
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run `cell0 ARGS` with no standard input, killed after
/// [`CLIENT_LIMIT`]; (success, stdout, stderr).
pub fn run_cell0(args: &[&str]) -> (bool, String, String) {
    let out = cell0_limited()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cell0 runs");
    outcome(out)
}

/// Wait until `addr` accepts connections, failing (with `log`) if `child`
/// exits first or nothing listens within 20 s.
pub(crate) fn wait_listening(addr: &str, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        if let Some(st) = child.try_wait().unwrap() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            panic!("server exited with {st}:\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "nothing listens on {addr}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A hosted node (`cell0 serve`) with its own scratch directory (its data
/// directory is `data` in it, its output goes to `node.log`).
pub struct Node {
    child: Option<Child>,
    /// Where it listens.
    pub addr: String,
    /// Its scratch directory (data, log, whatever a test keeps there).
    pub dir: TempDir,
    /// Extra `serve` flags, given again at each restart.
    extra: Vec<String>,
    /// Extra environment variables, set again at each restart.
    env: Vec<(String, String)>,
}

impl Node {
    /// The node's process id (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Start a node on a free loopback port with a fresh data directory.
    pub fn start() -> Node {
        Node::start_in(tempfile::tempdir().expect("tempdir"), None, &[])
    }

    /// Start a node in `dir` (a restart, when it held one before), on
    /// `addr` or a free port, with extra `serve` flags.
    pub fn start_in(dir: TempDir, addr: Option<String>, extra: &[&str]) -> Node {
        Node::start_with_env(dir, addr, extra, &[])
    }

    /// [`Node::start_in`], with extra environment variables.
    pub fn start_with_env(
        dir: TempDir,
        addr: Option<String>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Node {
        let mut node = Node {
            child: None,
            addr: addr.unwrap_or_else(free_addr),
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        node.spawn();
        node
    }

    /// The owner token the node wrote in its data directory.
    pub fn owner_token(&self) -> PathBuf {
        self.data().join("owner.token")
    }

    /// An attach aname that carries the owner token (`token=c0.…`).
    pub fn aname(&self) -> String {
        crate::conformance::token_aname(Some(&self.owner_token()))
    }

    /// The node's data directory (its owner token is the clients'
    /// default).
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("node.log")
    }

    /// What the node printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut child = Command::new(cell0_bin())
            .args(["serve", "--listen", &self.addr])
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--data")
            .arg(self.data())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cell0 serve starts");
        wait_listening(&self.addr, &mut child, &self.log_path());
        self.child = Some(child);
    }

    /// Send `sig` and wait for the process; returns its exit status.
    pub fn stop_with(&mut self, sig: i32) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("node running");
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe { libc::kill(child.id() as i32, sig) };
        child.wait().expect("wait for node")
    }

    /// Stop cleanly (SIGTERM) and start again on the same data and port.
    pub fn restart(&mut self) {
        let st = self.stop_with(libc::SIGTERM);
        assert!(
            st.success(),
            "node exited with {st} on SIGTERM:\n{}",
            self.log()
        );
        self.spawn();
    }

    /// Kill with SIGKILL (no chance to flush anything) and start again.
    pub fn crash_and_restart(&mut self) {
        self.stop_with(libc::SIGKILL);
        self.spawn();
    }

    /// Kill the node with SIGKILL and reap it.
    pub fn crash(&mut self) {
        let mut child = self.child.take().expect("node running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Stop the node (SIGKILL) and give back its directory and address,
    /// to start it again.
    pub fn kill_keep(mut self) -> (TempDir, String) {
        self.crash();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (dir, self.addr.clone())
    }

    /// Run `cell0 ARGS --addr ADDR --data DATA` with no input;
    /// (success, stdout, stderr). A command still running after
    /// [`CLIENT_LIMIT`] is killed and fails.
    pub fn cell0(&self, args: &[&str]) -> (bool, String, String) {
        self.cell0_in(args, b"")
    }

    /// [`Node::cell0`] with `stdin` as its standard input.
    pub fn cell0_in(&self, args: &[&str], stdin: &[u8]) -> (bool, String, String) {
        use std::io::Write;
        let mut child = cell0_limited()
            .args(args)
            .args(["--addr", &self.addr, "--data"])
            .arg(self.data())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cell0 runs");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        outcome(child.wait_with_output().unwrap())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// diod (Debian's 9P2000.L server) exporting [`Diod::export`], on a free
/// loopback port; stopped when dropped.
pub struct Diod {
    child: Child,
    /// Where it listens.
    pub addr: String,
    /// Its scratch directory (the export and its log).
    pub dir: TempDir,
}

impl Diod {
    /// Start diod; fails the test with how to install it if it is missing.
    pub fn start() -> Diod {
        let diod = ["/usr/sbin/diod", "/usr/bin/diod"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("diod is not installed: apt-get install diod");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("export")).unwrap();
        let addr = free_addr();
        let log = dir.path().join("server.log");
        let out = File::create(&log).unwrap();
        let mut child = Command::new(diod)
            .args(["-f", "-n", "-L", "stderr", "-l", &addr, "-e"])
            .arg(dir.path().join("export"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("diod starts");
        wait_listening(&addr, &mut child, &log);
        Diod { child, addr, dir }
    }

    /// The directory diod exports (its aname).
    pub fn export(&self) -> PathBuf {
        self.dir.path().join("export")
    }
}

impl Drop for Diod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A 9P server a test can mount: where it listens, and the data directory
/// whose owner token `cell0 mount` presents by default.
pub trait Served {
    /// Where it listens.
    fn addr(&self) -> &str;
    /// The data directory clients default to (for diod, one that does not
    /// exist, so no token).
    fn data(&self) -> PathBuf;
}

impl Served for Node {
    fn addr(&self) -> &str {
        &self.addr
    }
    fn data(&self) -> PathBuf {
        Node::data(self)
    }
}

impl Served for Diod {
    fn addr(&self) -> &str {
        &self.addr
    }
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}
