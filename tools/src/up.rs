//! `cell0 up`: a node on default settings, mounted, until Ctrl-C.
//!
//! It runs `cell0 serve` and `cell0 mount --foreground` as child processes
//! in their own process groups, so the terminal's Ctrl-C reaches only this
//! process, which then takes things down in order: unmount first (no
//! process is left with a dead mount), then stop the node (which finishes
//! its log writes).

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ninep::Dialect;

use crate::client::Client;
use crate::config::{DEFAULT_ADDR, default_data_dir};
use crate::mount::{check_fuse, is_mounted};

/// Flags of `cell0 up`.
#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Where to mount the tree (created if missing).
    #[arg(default_value = "cell")]
    pub dir: PathBuf,
    /// Address the node listens on.
    #[arg(long, default_value = DEFAULT_ADDR)]
    pub listen: String,
    /// Data directory [default: $XDG_DATA_HOME/cell0]
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// How long each child may take to start or to stop.
const WAIT: Duration = Duration::from_secs(15);

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped,
/// so an early error leaves nothing running.
struct Running {
    what: &'static str,
    child: Child,
}

impl Running {
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, wait up to [`WAIT`], then SIGKILL.
    fn stop(&mut self) -> Option<ExitStatus> {
        if let Some(s) = self.exited() {
            return Some(s);
        }
        // SAFETY: kill(2) sends a signal to our own child, which has not
        // been reaped (try_wait said so), so the pid is still ours.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "cell0: the {} did not stop within {WAIT:?}; killing it",
            self.what
        );
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serve and mount until Ctrl-C (or SIGTERM), then unmount and stop.
pub fn run(args: UpArgs) -> anyhow::Result<()> {
    check_fuse()?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating mount point {}", args.dir.display()))?;
    let dir = std::fs::canonicalize(&args.dir)?;
    anyhow::ensure!(
        !is_mounted(&dir),
        "{} is already mounted (a cell0 up already running? `cell0 umount {}` frees it)",
        dir.display(),
        args.dir.display()
    );
    if std::net::TcpStream::connect(&args.listen).is_ok() {
        bail!(
            "something already listens on {} (another cell0 node?); stop it, or pick another address with --listen",
            args.listen
        );
    }
    let data = args.data.unwrap_or_else(default_data_dir);
    let exe = std::env::current_exe()?;

    let mut node = Running {
        what: "node",
        child: Command::new(&exe)
            .args(["serve", "--listen", &args.listen, "--data"])
            .arg(&data)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting the node")?,
    };
    wait_until(&mut node, || {
        Client::connect(&args.listen, Dialect::L).is_ok()
    })?;

    let mut mount = Running {
        what: "mount",
        child: Command::new(&exe)
            .args(["mount", "--foreground", "--addr", &args.listen])
            .arg(&dir)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting the mount")?,
    };
    wait_until(&mut mount, || is_mounted(&dir))?;

    print_hints(&args.dir, &args.listen, &data);
    let why = wait_for_signal_or_exit(&mut node, &mut mount)?;

    let mount_status = mount.stop();
    if is_mounted(&dir) {
        // The mount process died without unmounting; do it for it.
        crate::mount::umount(&dir)?;
    }
    let node_status = node.stop();
    eprintln!(
        "cell0: unmounted {} and stopped the node",
        args.dir.display()
    );
    match why {
        Stopped::Signal => Ok(()),
        Stopped::Exited(what) => bail!(
            "the {what} stopped on its own (node {}, mount {}); see its messages above",
            describe(node_status),
            describe(mount_status)
        ),
    }
}

fn describe(s: Option<ExitStatus>) -> String {
    s.map_or_else(|| "unknown".into(), |s| s.to_string())
}

/// Poll `ready` until it holds; fail if the child exits or time runs out.
fn wait_until(child: &mut Running, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    while !ready() {
        if let Some(status) = child.exited() {
            bail!(
                "the {} exited while starting ({status}); see its messages above",
                child.what
            );
        }
        if Instant::now() > deadline {
            bail!("the {} did not start within {WAIT:?}", child.what);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

enum Stopped {
    /// Ctrl-C or SIGTERM.
    Signal,
    /// A child exited by itself.
    Exited(&'static str),
}

fn wait_for_signal_or_exit(node: &mut Running, mount: &mut Running) -> anyhow::Result<Stopped> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(Stopped::Signal),
                _ = term.recv() => return Ok(Stopped::Signal),
                _ = tick.tick() => {
                    for c in [&mut *node, &mut *mount] {
                        if c.exited().is_some() {
                            return Ok(Stopped::Exited(c.what));
                        }
                    }
                }
            }
        }
    })
}

fn print_hints(dir: &Path, addr: &str, data: &Path) {
    let d = dir.display();
    eprintln!(
        "\ncell0 is up: the node at {addr} (data in {}) is mounted on {d}\n\
         \n\
         Try, from another terminal in this directory:\n\
         \x20   ls {d}\n\
         \x20   cat {d}/status\n\
         \x20   mkdir {d}/chan/alerts\n\
         \x20   cat {d}/chan/alerts/data &\n\
         \x20   echo hello > {d}/chan/alerts/data\n\
         \x20   cat {d}/events            # follows; errors of refused writes land here\n\
         \n\
         Manual: man -l man/man1/cell0.1 (and man3/chan.3, man4/cellfs.4)\n\
         Press Ctrl-C to unmount and stop the node.\n",
        data.display()
    );
}
