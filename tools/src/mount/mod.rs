//! `cell0 mount` / `cell0 umount`: the tree on the host's file system.
//!
//! `cell0 mount DIR` starts itself again as `cell0 mount --foreground` in
//! its own process group (so the terminal's Ctrl-C does not reach it), with
//! its output in a log file, and returns once the kernel lists DIR as
//! mounted, as sshfs does. The foreground process is the FUSE server; it
//! exits when DIR is unmounted, or unmounts on SIGINT/SIGTERM.

mod fs;
mod interrupt;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ninep::Dialect;

use crate::client::Client;

/// Flags of `cell0 mount`.
#[derive(clap::Args, Debug)]
pub struct MountArgs {
    /// Mount point.
    pub dir: PathBuf,
    #[command(flatten)]
    pub addr: crate::AddrArg,
    /// Stay in the foreground instead of returning once mounted.
    #[arg(long)]
    pub foreground: bool,
}

/// How long `cell0 mount` waits for the mount to appear.
const MOUNT_WAIT: Duration = Duration::from_secs(15);

/// Mount and serve (in the foreground), or start a background server and
/// return once the mount is usable.
pub fn run(args: MountArgs) -> anyhow::Result<()> {
    let addr = args.addr.resolve();
    let dir = std::fs::canonicalize(&args.dir).with_context(|| {
        format!(
            "mount point {}: create it first (mkdir -p)",
            args.dir.display()
        )
    })?;
    anyhow::ensure!(
        dir.is_dir(),
        "mount point {} is not a directory",
        dir.display()
    );
    anyhow::ensure!(!is_mounted(&dir), "{} is already mounted", dir.display());
    check_fuse()?;
    if args.foreground {
        return serve(&addr, &dir);
    }
    // Fail here, with the reason, rather than in the background.
    Client::connect(&addr, Dialect::L)
        .with_context(|| format!("cannot reach a node at {addr} (start one with `cell0 serve`)"))?;
    let log = log_path(&dir);
    let out = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["mount", "--foreground", "--addr", &addr])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()
        .context("starting the mount process")?;
    let deadline = Instant::now() + MOUNT_WAIT;
    while !is_mounted(&dir) {
        if let Some(status) = child.try_wait()? {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("the mount process exited ({status}):\n{text}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!(
                "{} did not appear as mounted within {MOUNT_WAIT:?}; see {}",
                dir.display(),
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "cell0: mounted {addr} on {} (log {})",
        dir.display(),
        log.display()
    );
    Ok(())
}

use std::os::unix::process::CommandExt as _;

fn serve(addr: &str, dir: &Path) -> anyhow::Result<()> {
    let client = Client::connect(addr, Dialect::L)
        .with_context(|| format!("cannot reach a node at {addr}"))?;
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName(format!("cell0@{addr}")),
        fuser::MountOption::Subtype("cell0".into()),
        fuser::MountOption::NoAtime,
    ];
    config.n_threads = Some(4);
    let session = fuser::spawn_mount(fs::CellFs::new(Arc::new(client)), dir, &config)
        .with_context(|| format!("mounting on {}", dir.display()))?;
    eprintln!("cell0: serving {addr} on {}", dir.display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stop = rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok::<bool, std::io::Error>(true),
                _ = term.recv() => return Ok(true),
                _ = tick.tick() => if session.guard.is_finished() { return Ok(false) },
            }
        }
    })?;
    if stop {
        session
            .umount_and_join()
            .with_context(|| format!("unmounting {}", dir.display()))?;
    } else {
        let _ = session.join();
    }
    eprintln!("cell0: unmounted {}", dir.display());
    Ok(())
}

/// Unmount `dir`.
pub fn umount(dir: &Path) -> anyhow::Result<()> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    anyhow::ensure!(is_mounted(&dir), "{} is not mounted", dir.display());
    let fusermount = Command::new("fusermount3").arg("-u").arg(&dir).status();
    if !matches!(fusermount, Ok(s) if s.success()) {
        let status = Command::new("umount")
            .arg(&dir)
            .status()
            .context("running umount")?;
        anyhow::ensure!(status.success(), "could not unmount {}", dir.display());
    }
    Ok(())
}

/// Whether the kernel lists `dir` as a mount point.
pub fn is_mounted(dir: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = dir.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|p| unescape(p) == want))
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Check what a FUSE mount needs, saying how to get what is missing.
pub fn check_fuse() -> anyhow::Result<()> {
    if !Path::new("/dev/fuse").exists() {
        bail!(
            "/dev/fuse is missing: load the fuse module (modprobe fuse) or install fuse3 (apt-get install fuse3)"
        );
    }
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    // Root mounts with mount(2); anyone else needs the setuid helper.
    if !root && !on_path("fusermount3") {
        bail!(
            "fusermount3 is missing, and mounting without root needs it: install fuse3 (apt-get install fuse3)"
        );
    }
    Ok(())
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
}

fn log_path(dir: &Path) -> PathBuf {
    let name: String = dir
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    std::env::temp_dir().join(format!("cell0-mount{name}.log"))
}
