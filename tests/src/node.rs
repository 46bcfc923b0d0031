//! Real nodes and real mounts, cleaned up when dropped.

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

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

/// The `cell0` binary of this workspace, built once per test run so that a
/// plain `cargo test` never exercises a stale binary.
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

/// A loopback port nothing listens on right now, below Linux's ephemeral
/// range (a free port there can be taken by an outgoing connection before
/// the node binds it), never the same twice in this process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = (std::process::id() % 700) * 16 + 4;
    for _ in 0..SPAN {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (start + k) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between 20000 and 32000");
}

/// A hosted node (`cell0 serve`) with its own data directory.
pub struct Node {
    child: Option<Child>,
    /// Where it listens.
    pub addr: String,
    dir: TempDir,
}

impl Node {
    /// Start a node on a free loopback port with a fresh data directory.
    pub fn start() -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = format!("127.0.0.1:{}", free_port());
        let mut node = Node {
            child: None,
            addr,
            dir,
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

    /// The node's data directory.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// What the node printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("node.log")).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("node.log"))
            .unwrap();
        let child = Command::new(cell0_bin())
            .args(["serve", "--listen", &self.addr, "--data"])
            .arg(self.data())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cell0 serve starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&self.addr).is_err() {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("cell0 serve exited with {st}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "node did not listen on {}:\n{}",
                self.addr,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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

    /// Run `cell0 ARGS --addr ADDR`; returns (success, stdout, stderr).
    pub fn cell0(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(cell0_bin())
            .args(args)
            .args(["--addr", &self.addr, "--data"])
            .arg(self.data())
            .stdin(Stdio::null())
            .output()
            .expect("cell0 runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
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

/// Whether the kernel lists `dir` (an absolute path) as a mount point.
pub fn is_mounted(dir: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let p = dir.to_string_lossy().into_owned();
    mounts
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(p.as_str()))
}

/// A FUSE mount of a node made by `cell0 mount`, unmounted when dropped.
pub struct Mount {
    dir: TempDir,
}

impl Mount {
    /// Mount the node at `addr` on a fresh directory (with the default
    /// token, if any).
    pub fn new(addr: &str) -> Mount {
        Mount::with_token(addr, None)
    }

    /// Mount the node at `addr` with `--token TOKEN` on a fresh directory.
    pub fn with_token(addr: &str, token: Option<&Path>) -> Mount {
        let m = Mount::try_with_token(addr, token);
        match m {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`Mount::with_token`], or what `cell0 mount` said if it failed.
    pub fn try_with_token(addr: &str, token: Option<&Path>) -> Result<Mount, String> {
        crate::require_tool("fusermount3", "apt-get install fuse3");
        assert!(
            Path::new("/dev/fuse").exists(),
            "/dev/fuse is missing: load the fuse module (modprobe fuse)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new(cell0_bin());
        cmd.args(["mount", "--addr", addr]);
        if let Some(t) = token {
            cmd.arg("--token").arg(t);
        }
        let out = cmd
            .arg(dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("cell0 mount runs");
        if !out.status.success() {
            return Err(format!(
                "cell0 mount failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let m = Mount { dir };
        assert!(
            m.is_mounted(),
            "cell0 mount returned but {} is not mounted",
            m.path().display()
        );
        Ok(m)
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the kernel lists the mount point as mounted.
    pub fn is_mounted(&self) -> bool {
        is_mounted(self.path())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new(cell0_bin())
            .arg("umount")
            .arg(self.path())
            .status();
        if self.is_mounted() {
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(self.path())
                .status();
        }
    }
}
