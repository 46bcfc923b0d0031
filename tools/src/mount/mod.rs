//! `cell0 mount` / `cell0 umount`: the tree on the host's file system.
//!
//! `cell0 mount DIR` checks that the node answers, starts itself again as
//! `cell0 mount --foreground` in a session of its own (so the terminal's
//! Ctrl-C and hang-up do not reach it) with its output in a log file, and
//! returns once the kernel lists DIR as mounted, as sshfs does. The
//! foreground process is the FUSE server: it exits when DIR is unmounted,
//! unmounts on SIGINT/SIGTERM, and unmounts itself if the node goes away.

mod daemon;
mod events;
mod fs;
mod handle;
mod inode;
mod interrupt;
pub(crate) mod log;
mod mountinfo;
mod read;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use ninep::Dialect;

use crate::client::{Client, Options};
use crate::identity::ClientToken;
use log::log;
pub use mountinfo::is_mounted;

/// Flags of `cell0 mount`.
#[derive(clap::Args, Debug)]
pub struct MountArgs {
    /// Mount point.
    pub dir: PathBuf,
    #[command(flatten)]
    pub node: crate::args::ClientArgs,
    /// Stay in the foreground instead of returning once mounted.
    #[arg(long)]
    pub foreground: bool,
    /// The tree to attach: a Cell0 node ignores it; other 9P2000.L servers
    /// (diod) want their export path.
    #[arg(long, default_value = "")]
    pub aname: String,
}

/// How often the server checks that it is still mounted and connected.
const TICK: Duration = Duration::from_millis(100);

/// Mount and serve (in the foreground), or start a background server and
/// return once the mount is usable.
pub fn run(args: MountArgs) -> anyhow::Result<()> {
    let addr = args.node.addr.resolve();
    let token = ClientToken::resolve(args.node.token.as_deref(), args.node.data.as_deref())?;
    let dir = std::fs::canonicalize(&args.dir).map_err(|e| {
        let shown = args.dir.display();
        match e.raw_os_error() {
            Some(libc::ENOTCONN) => anyhow::anyhow!(
                "{shown}: a mount whose server is gone is still there; `cell0 umount {shown}` first"
            ),
            Some(libc::ENOENT) => {
                anyhow::anyhow!("mount point {shown} does not exist: create it first (mkdir -p)")
            }
            _ => anyhow::anyhow!("mount point {shown}: {e}"),
        }
    })?;
    anyhow::ensure!(
        dir.is_dir(),
        "mount point {} is not a directory",
        dir.display()
    );
    anyhow::ensure!(!is_mounted(&dir), "{} is already mounted", dir.display());
    check_fuse()?;
    let client = connect(&addr, &args.aname, &token)?;
    if args.foreground {
        return serve(client, &addr, &dir, &token);
    }
    // The background server makes its own connection; this one only
    // proved that the node answers, so failures show here, not in a log.
    let _ = client.clunk(crate::client::ROOT);
    drop(client);
    daemon::start(&addr, &args.aname, &dir, &token, args.node.data.as_deref())
}

fn connect(addr: &str, aname: &str, token: &ClientToken) -> anyhow::Result<Client> {
    let opts = Options {
        aname: aname.to_string(),
        ..Options::new(Dialect::L).with_token(token)
    };
    match Client::connect_with(addr, &opts) {
        Ok(c) => Ok(c),
        Err(e) => {
            // 9P2000.L refusals carry only an errno; 9P2000.u carries the
            // node's reason ("token expired …"), so ask again for it.
            let plain = Options {
                dialect: Dialect::U,
                ..opts
            };
            // Only a refusal of the attach itself is worth showing: a
            // server that speaks 9P2000.L alone (diod) refuses the version.
            let e = match Client::connect_with(addr, &plain) {
                Err(why) if is_attach_refusal(&why) => why,
                _ => e,
            };
            Err(anyhow::Error::new(e)
                .context(format!("mounting {addr} (is `cell0 serve` running there?)")))
        }
    }
}

/// Whether `token` is an agent's (holder `agent/NAME`, see agent(3)).
fn agents_token(token: &ClientToken) -> bool {
    token
        .text
        .as_deref()
        .and_then(|t| cellfs::cap::Token::from_text(t).ok())
        .is_some_and(|t| t.claims().holder.starts_with(cellfs::agent::HOLDER))
}

/// Whether `e` is a node refusing an attach (rather than, say, a version
/// it does not speak).
fn is_attach_refusal(e: &crate::client::ClientError) -> bool {
    matches!(e, crate::client::ClientError::Connect { reason, .. } if !reason.starts_with("Tversion"))
}

/// Be the FUSE server until DIR is unmounted (or a signal or the loss of
/// the node ends it).
fn serve(client: Client, addr: &str, dir: &Path, token: &ClientToken) -> anyhow::Result<()> {
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName(format!("cell0@{addr}")),
        fuser::MountOption::Subtype("cell0".into()),
        fuser::MountOption::NoAtime,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
    ];
    config.n_threads = Some(4);
    // An agent's capability reaches only its intent; /events is outside
    // it (walking there would be drift, see agent(3)), and what the node
    // refuses an agent is in its own trace.
    if !agents_token(token) {
        events::follow(client.clone());
    }
    let fs = fs::CellFs::new(client.clone(), fs::Place::here())
        .context("starting the mount's threads")?;
    let session = fuser::spawn_mount(fs, dir, &config)
        .with_context(|| format!("mounting on {}", dir.display()))?;
    log!(
        "serving {addr} on {} (pid {})",
        dir.display(),
        std::process::id()
    );
    let why = wait_for_end(&session, &client)?;
    match why {
        End::Unmounted => {
            let _ = session.join();
            log!("{} was unmounted; exiting", dir.display());
            Ok(())
        }
        End::Signal => {
            log!("signalled: unmounting {}", dir.display());
            session
                .umount_and_join()
                .with_context(|| format!("unmounting {}", dir.display()))
        }
        End::NodeGone(reason) => {
            log!("{reason}: unmounting {}", dir.display());
            let _ = session.umount_and_join();
            bail!("{reason}")
        }
    }
}

/// Serve the tree over `client` on `fuse`, the descriptor of a FUSE
/// connection mounted elsewhere (an agent's sandbox: see the runner),
/// until that mount is gone. `proc` is the `/proc` of the sandbox's pid
/// namespace, `log` where the mount's lines go (the agent's stderr). One
/// thread answers the kernel; blocking reads are answered from the
/// client's reader thread, as in any mount.
pub(crate) fn serve_connection(
    client: Client,
    fuse: std::os::fd::OwnedFd,
    proc: PathBuf,
    log: log::Sink,
) -> anyhow::Result<()> {
    let fs =
        fs::CellFs::new(client, fs::Place { proc, log }).context("starting the mount's threads")?;
    let mut config = fuser::Config::default();
    config.n_threads = Some(1);
    // Requests come from the sandbox's own root, whatever the runner's
    // user: every one is let through (the mount is the sandbox's alone).
    let session = fuser::Session::from_fd(fs, fuse, fuser::SessionACL::All, config)
        .context("the FUSE handshake")?;
    session.run().context("serving the mount")
}

enum End {
    Unmounted,
    Signal,
    NodeGone(String),
}

fn wait_for_end(session: &fuser::BackgroundSession, client: &Client) -> anyhow::Result<End> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                _ = int.recv() => return Ok(End::Signal),
                _ = term.recv() => return Ok(End::Signal),
                _ = hup.recv() => return Ok(End::Signal),
                _ = tick.tick() => {
                    if session.guard.is_finished() {
                        return Ok(End::Unmounted);
                    }
                    if let Some(why) = client.closed() {
                        return Ok(End::NodeGone(why));
                    }
                }
            }
        }
    })
}

/// Unmount `dir`: `fusermount3 -u`, else umount2(2) (as root).
pub fn umount(dir: &Path) -> anyhow::Result<()> {
    // A mount whose server died cannot be canonicalized (ENOTCONN); the
    // path as given is then the best there is.
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    anyhow::ensure!(is_mounted(&dir), "{} is not mounted", dir.display());
    let fusermount = Command::new("fusermount3").arg("-u").arg(&dir).output();
    if matches!(&fusermount, Ok(o) if o.status.success()) {
        return Ok(());
    }
    let path = CString::new(dir.as_os_str().as_bytes())
        .with_context(|| format!("{} contains a NUL byte", dir.display()))?;
    // SAFETY: `path` is a valid NUL-terminated string that outlives the
    // call; umount2(2) only reads it.
    if unsafe { libc::umount2(path.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    let fuse_said = match fusermount {
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
        Err(e) => format!("fusermount3: {e}"),
    };
    if err.raw_os_error() == Some(libc::EBUSY) {
        bail!(
            "{} is busy: a process has a file open or its directory there ({fuse_said})",
            dir.display()
        );
    }
    bail!("could not unmount {}: {err} ({fuse_said})", dir.display())
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
    if !root && !crate::config::on_path("fusermount3") {
        bail!(
            "fusermount3 is missing, and mounting without root needs it: install fuse3 (apt-get install fuse3)"
        );
    }
    Ok(())
}
