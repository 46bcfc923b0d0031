//! FUSE mounts made by `cell0 mount`, unmounted when dropped.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use tempfile::TempDir;

use crate::node::{Served, cell0_bin};
use crate::procs::default_signals;

/// Whether the kernel lists `dir` (an absolute path) as a mount point.
pub fn is_mounted(dir: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let p = dir.to_string_lossy().into_owned();
    mounts
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(p.as_str()))
}

/// A FUSE mount of a server made by `cell0 mount` on a fresh directory,
/// unmounted when dropped.
pub struct Mount {
    dir: TempDir,
    /// The background server's log, as `cell0 mount` printed it.
    pub log: PathBuf,
    /// The background server's pid, as `cell0 mount` printed it.
    pub pid: u32,
}

impl Mount {
    /// Mount the node at `addr` (with the default token, if any).
    pub fn new(addr: &str) -> Mount {
        Mount::with_token(addr, None)
    }

    /// Mount the node at `addr` with `--token TOKEN`.
    pub fn with_token(addr: &str, token: Option<&Path>) -> Mount {
        match Mount::try_with_token(addr, token) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`Mount::with_token`], or what `cell0 mount` said if it failed.
    pub fn try_with_token(addr: &str, token: Option<&Path>) -> Result<Mount, String> {
        let mut flags: Vec<OsString> = vec!["--addr".into(), addr.into()];
        if let Some(t) = token {
            flags.extend(["--token".into(), t.into()]);
        }
        Mount::try_with(&flags)
    }

    /// Mount `server` attaching `aname`, with the token in its data
    /// directory if it has one.
    pub fn on(server: &impl Served, aname: &str) -> Mount {
        let flags: Vec<OsString> = vec![
            "--addr".into(),
            server.addr().into(),
            "--aname".into(),
            aname.into(),
            "--data".into(),
            server.data().into(),
        ];
        match Mount::try_with(&flags) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    /// `cell0 mount FLAGS DIR` on a fresh directory.
    fn try_with(flags: &[OsString]) -> Result<Mount, String> {
        crate::require_tool("fusermount3", "apt-get install fuse3");
        assert!(
            Path::new("/dev/fuse").exists(),
            "/dev/fuse is missing: load the fuse module (modprobe fuse)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new(cell0_bin())
            .arg("mount")
            .args(flags)
            .arg(dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("cell0 mount runs");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            return Err(format!(
                "cell0 mount failed:\n{}{stderr}",
                String::from_utf8_lossy(&out.stdout),
            ));
        }
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
            let _ = Command::new(cell0_bin())
                .arg("umount")
                .arg(self.path())
                .status();
        }
        if self.is_mounted() {
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(self.path())
                .status();
        }
    }
}
