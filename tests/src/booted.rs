//! `cell0 boot` running under a test: started on a free port with its
//! console in a scratch directory, awaited until it serves, interrupted
//! like a user's Ctrl-C, and killed if the test fails half-way.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{cell0_bin, free_port};

/// What `cell0 boot` prints once the kernel serves.
pub const SERVING: &str = "kernel serving 9P on ";

/// A running `cell0 boot`.
pub struct Booted {
    child: Option<Child>,
    said: Arc<Mutex<String>>,
    /// The loopback address forwarded to the kernel's 9P port.
    pub addr: String,
    /// Its console file.
    pub console: PathBuf,
    dir: TempDir,
}

impl Booted {
    /// Run `cell0 boot --listen ADDR --console FILE` with whatever
    /// `configure` adds (`--kernel`, `--mount`, environment), and wait up
    /// to `secs` for it to say it serves. Panics with its output if it
    /// exits or takes longer.
    pub fn start(secs: u64, configure: impl FnOnce(&mut Command)) -> Booted {
        let mut b = Booted::spawn(configure);
        b.wait_for(SERVING, secs);
        b
    }

    /// The owner token `cell0 boot` kept next to the console file, if the
    /// kernel printed one (a kernel that predates capabilities does not).
    pub fn token(&self) -> Option<PathBuf> {
        let p = self.console.with_extension("token");
        p.exists().then_some(p)
    }

    /// Run `cell0 boot` as [`Booted::start`] does, without waiting.
    pub fn spawn(configure: impl FnOnce(&mut Command)) -> Booted {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = format!("127.0.0.1:{}", free_port());
        let console = dir.path().join("console.log");
        let mut cmd = Command::new(cell0_bin());
        cmd.args(["boot", "--listen", &addr, "--console"])
            .arg(&console)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        configure(&mut cmd);
        let mut child = cmd.spawn().expect("cell0 boot starts");
        let said = Arc::new(Mutex::new(String::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let said = said.clone();
            std::thread::spawn(move || {
                let mut pipe = pipe;
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    said.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        Booted {
            child: Some(child),
            said,
            addr,
            console,
            dir,
        }
    }

    /// Everything `cell0 boot` printed so far (standard output and error).
    pub fn said(&self) -> String {
        self.said.lock().unwrap().clone()
    }

    /// The port part of [`Booted::addr`].
    pub fn port(&self) -> u16 {
        self.addr.rsplit_once(':').unwrap().1.parse().unwrap()
    }

    /// A scratch directory that lives as long as this.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// Wait until `cell0 boot` has printed `text`.
    pub fn wait_for(&mut self, text: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.said().contains(text) {
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                self.child = None;
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "cell0 boot exited ({st}) before it printed {text:?}:\n{}",
                    self.said()
                );
            }
            assert!(
                Instant::now() < deadline,
                "cell0 boot did not print {text:?} within {secs} s:\n{}\nconsole:\n{}",
                self.said(),
                std::fs::read_to_string(&self.console).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait up to `secs` for `cell0 boot` to exit by itself.
    pub fn wait_exit(&mut self, secs: u64) -> ExitStatus {
        let child = self.child.as_mut().expect("cell0 boot was started");
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                // Let the pipe readers catch the last words.
                std::thread::sleep(Duration::from_millis(100));
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "cell0 boot still runs after {secs} s:\n{}",
                self.said()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Ctrl-C (SIGINT); returns its exit status once it has exited.
    pub fn interrupt(&mut self) -> ExitStatus {
        let pid = self.child.as_ref().expect("cell0 boot runs").id();
        // SAFETY: kill(2) on our own, not yet reaped, child.
        unsafe { libc::kill(pid as i32, libc::SIGINT) };
        self.wait_exit(60)
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Processes (other than this one) whose command line contains `needle`,
/// as `pid: command line`.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == me || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!("{name}: {}", cmdline.trim_end()));
        }
    }
    found
}
