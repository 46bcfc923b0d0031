//! `cell0 up`: a node on default settings, mounted, until Ctrl-C.
//!
//! It runs `cell0 serve` and `cell0 mount --foreground` as child processes
//! in their own process groups, so the terminal's Ctrl-C reaches only this
//! process, which then takes things down in order: unmount first (no
//! process is left with a dead mount), then stop the node (which finishes
//! its log writes).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use ninep::Dialect;

use crate::client::{Client, Options};
use crate::cmd::child::{Running, Signals, WAIT, describe, own_group_dies_with_us, wait_until};
use crate::config::{DEFAULT_ADDR, default_data_dir};
use crate::identity::ClientToken;
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
    /// Mount with this capability instead of the node's owner token.
    #[arg(long, value_name = "FILE")]
    pub token: Option<PathBuf>,
    /// Run the node with `serve --insecure` (attaches need no capability).
    #[arg(long)]
    pub insecure: bool,
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
    // Read before anything starts, so a bad --token fails at once.
    let mount_token = match &args.token {
        Some(p) => Some(crate::identity::read_token(p)?.to_text()),
        None => None,
    };
    let exe = std::env::current_exe()?;
    let mut signals = Signals::catch()?;

    let mut node = Running {
        what: "node",
        child: own_group_dies_with_us(
            Command::new(&exe)
                .args(["serve", "--listen", &args.listen, "--data"])
                .arg(&data)
                .args(args.insecure.then_some("--insecure"))
                .stdin(Stdio::null()),
        )
        .spawn()
        .context("starting the node")?,
    };
    wait_until(&mut node, WAIT, || {
        // The node writes its owner token before it listens.
        ClientToken::resolve(None, Some(&data)).is_ok_and(|t| {
            let opts = Options::new(Dialect::L).with_token(&t);
            Client::connect_with(&args.listen, &opts).is_ok()
        })
    })?;

    let mut mount = Running {
        what: "mount",
        child: own_group_dies_with_us(
            Command::new(&exe)
                .args(["mount", "--foreground", "--addr", &args.listen, "--data"])
                .arg(&data)
                .args(
                    mount_token
                        .is_some()
                        .then_some(["--token", "-"])
                        .into_iter()
                        .flatten(),
                )
                .arg(&dir)
                .stdin(if mount_token.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                }),
        )
        .spawn()
        .context("starting the mount")?,
    };
    if let (Some(mut stdin), Some(text)) = (mount.child.stdin.take(), &mount_token) {
        use std::io::Write as _;
        stdin.write_all(text.as_bytes())?;
    }
    wait_until(&mut mount, WAIT, || is_mounted(&dir))?;

    print_hints(&args.dir, &args.listen, &data);
    let why = wait_for_signal_or_exit(&mut signals, &mut [&mut node, &mut mount]);

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

/// Why the foreground wait ended.
pub(crate) enum Stopped {
    /// Ctrl-C or SIGTERM.
    Signal,
    /// A child exited by itself.
    Exited(&'static str),
}

/// Wait for Ctrl-C or SIGTERM, or for one of `children` to exit.
pub(crate) fn wait_for_signal_or_exit(
    signals: &mut Signals,
    children: &mut [&mut Running],
) -> Stopped {
    loop {
        if signals.caught_within(Duration::from_millis(200)) {
            return Stopped::Signal;
        }
        for c in children.iter_mut() {
            if c.exited().is_some() {
                return Stopped::Exited(c.what);
            }
        }
    }
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
         The mount holds the node's owner token ({}/owner.token, every right);\n\
         hand others narrower ones: cell0 cap attenuate --help, man -l man/man3/cap.3\n\
         \n\
         Manual: man -l man/man1/cell0.1 (and man3/chan.3, man4/cellfs.4)\n\
         Press Ctrl-C to unmount and stop the node.\n",
        data.display(),
        data.display()
    );
}
