//! The tree at `$CELL0_MOUNT`: `cell0 mount --foreground` run on a thread
//! of the shim, awaited without polling.
//!
//! The mount's code takes its capability from a file; the shim hands it
//! `$CELL0_TOKEN` as a memfd reached through `/proc/self/fd/N` (the
//! sandbox's /proc), so the token is never written to a disk or shown
//! on a command line. The mount's own log lines ("serving …", and the
//! node's error messages for refused writes) go to the shim's standard
//! error, which is the agent's.

use std::fs::File;
use std::io::Write as _;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{Context, bail};

use super::init::Signals;
use crate::mount::{MountArgs, is_mounted};

/// A mount being made on its thread.
pub struct Pending {
    dir: PathBuf,
    /// `/proc/self/mountinfo`, opened before the mount started: poll(2)
    /// on it reports every change of the mount table since.
    mountinfo: File,
    /// Readable (at end of file) once the mount's thread has ended.
    ended: OwnedFd,
    result: mpsc::Receiver<anyhow::Result<()>>,
    /// The token's memfd: kept open until the mount has read it.
    _token: File,
}

/// How the wait for the mount ended.
pub enum Waited {
    /// The mount point (canonical) is mounted.
    Mounted(PathBuf),
    /// Signal N arrived first.
    Signal(i32),
}

/// Start mounting the node's tree on `dir` (created if missing) with the
/// token in `$CELL0_TOKEN`, on a thread of its own.
pub fn start(dir: &Path) -> anyhow::Result<Pending> {
    let token = std::env::var("CELL0_TOKEN").unwrap_or_default();
    if token.trim().is_empty() {
        bail!("$CELL0_TOKEN is not set: no capability to mount with");
    }
    cellfs::cap::Token::from_text(token.trim())
        .map_err(|e| anyhow::anyhow!("$CELL0_TOKEN is not a Cell0 token: {e}"))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = std::fs::canonicalize(dir).with_context(|| format!("{}", dir.display()))?;
    crate::mount::check_fuse()?;

    let token_file = memfd(&token)?;
    let token_path = PathBuf::from(format!("/proc/self/fd/{}", token_file.as_raw_fd()));
    if !token_path.exists() {
        bail!("/proc is not mounted here: the token cannot be handed to the mount");
    }
    let mountinfo = File::open("/proc/self/mountinfo").context("opening /proc/self/mountinfo")?;
    let (ended, ended_w) = pipe()?;
    let (tx, result) = mpsc::channel();
    let args = MountArgs {
        dir: dir.clone(),
        node: crate::ClientArgs {
            addr: crate::AddrArg {
                addr: std::env::var("CELL0_ADDR").ok().filter(|a| !a.is_empty()),
            },
            token: Some(token_path),
            data: None,
        },
        foreground: true,
        aname: String::new(),
    };
    std::thread::Builder::new()
        .name("cell0-mount".into())
        .spawn(move || {
            let r = crate::mount::run(args);
            let _ = tx.send(r);
            // Closing the pipe's write end (also on a panic) wakes the wait.
            drop(ended_w);
        })
        .context("starting the mount's thread")?;
    Ok(Pending {
        dir,
        mountinfo,
        ended,
        result,
        _token: token_file,
    })
}

impl Pending {
    /// The mount point.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Wait until the mount is there, the mount fails, `deadline` passes,
    /// or one of the forwarded signals arrives.
    pub fn wait(self, signals: &Signals, deadline: Instant) -> anyhow::Result<Waited> {
        loop {
            if is_mounted(&self.dir) {
                return Ok(Waited::Mounted(self.dir));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let mut fds = [
                poll_fd(self.mountinfo.as_raw_fd(), libc::POLLPRI),
                poll_fd(self.ended.as_raw_fd(), libc::POLLIN),
                poll_fd(signals.raw(), libc::POLLIN),
            ];
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: `fds` is a valid array of 3 pollfd for the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e).context("waiting for the mount");
            }
            if n == 0 {
                let addr = crate::config::client_addr(None);
                bail!(
                    "the node at {addr} did not answer within {:?}",
                    super::MOUNT_WAIT
                );
            }
            if fds[1].revents != 0 {
                return match self.result.try_recv() {
                    Ok(Err(e)) => Err(e),
                    Ok(Ok(())) => bail!("the mount ended as soon as it started"),
                    Err(_) => bail!("the mount's thread failed (panicked)"),
                };
            }
            if fds[2].revents != 0 {
                let sig = signals.next().context("reading a signal")?;
                if sig != libc::SIGCHLD {
                    return Ok(Waited::Signal(sig));
                }
            }
            // Else the mount table changed: look again.
        }
    }
}

/// Detach the mount at `dir` (the shim is about to exit; in its own mount
/// namespace this only saves the kernel the work, elsewhere it leaves no
/// dead mount behind).
pub fn detach(dir: &Path) {
    use std::os::unix::ffi::OsStrExt as _;
    if let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) {
        // SAFETY: `path` is NUL-terminated and outlives the call.
        unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
    }
}

fn poll_fd(fd: i32, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// An anonymous, close-on-exec file holding `text`.
fn memfd(text: &str) -> anyhow::Result<File> {
    // SAFETY: the name is a NUL-terminated literal.
    let fd = unsafe { libc::memfd_create(c"cell0-token".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("memfd_create");
    }
    // SAFETY: a fresh descriptor owned by no one else.
    let mut f = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    f.write_all(text.as_bytes())
        .context("writing the token to a memfd")?;
    Ok(f)
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("pipe2");
    }
    // SAFETY: pipe2 just returned these, owned by no one else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
