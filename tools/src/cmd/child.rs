//! Child processes that `cell0 up` and `cell0 boot` run and must not leave
//! behind: stopped in order on the way out, and on an early error.

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::bail;

/// How long a child may take to start or to stop.
pub const WAIT: Duration = Duration::from_secs(15);

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped,
/// so an early error leaves nothing running.
pub struct Running {
    /// What the child is, for messages ("node", "mount", …).
    pub what: &'static str,
    /// The process.
    pub child: Child,
}

impl Running {
    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, wait up to [`WAIT`], then SIGKILL.
    pub fn stop(&mut self) -> Option<ExitStatus> {
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
        self.kill()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if let Some(s) = self.exited() {
            return Some(s);
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stop every child: SIGTERM to all of them first, so they shut down side
/// by side (nodes of one cluster each wait on the others otherwise), then
/// wait for each as [`Running::stop`] does; their exit statuses in order.
pub fn stop_all(children: &mut [Running]) -> Vec<Option<ExitStatus>> {
    for c in children.iter_mut() {
        if c.exited().is_none() {
            // SAFETY: as in `stop`: our own child, not yet reaped.
            unsafe { libc::kill(c.child.id() as libc::pid_t, libc::SIGTERM) };
        }
    }
    children.iter_mut().map(Running::stop).collect()
}

/// Put the child in a process group of its own (so the terminal's Ctrl-C
/// reaches only us, and we stop it in order) and have the kernel kill it
/// if we die without stopping it, so it is never left behind.
pub fn own_group_dies_with_us(cmd: &mut Command) -> &mut Command {
    cmd.process_group(0);
    // SAFETY: prctl(2) with PR_SET_PDEATHSIG is async-signal-safe and
    // touches no memory of the parent; it is all that runs between fork
    // and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// Poll `ready` until it holds; fail if the child exits or `wait` passes.
pub fn wait_until(
    child: &mut Running,
    wait: Duration,
    mut ready: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + wait;
    while !ready() {
        if let Some(status) = child.exited() {
            bail!(
                "the {} exited while starting ({status}); see its messages above",
                child.what
            );
        }
        if Instant::now() > deadline {
            bail!("the {} did not start within {wait:?}", child.what);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// An exit status for a message ("unknown" if it could not be had).
pub fn describe(s: Option<ExitStatus>) -> String {
    s.map_or_else(|| "unknown".into(), |s| s.to_string())
}

/// Ctrl-C (SIGINT) and SIGTERM, caught from the moment this is made.
pub struct Signals {
    rt: tokio::runtime::Runtime,
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    /// Start catching SIGINT and SIGTERM.
    pub fn catch() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (int, term) = rt.block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
            ))
        })?;
        Ok(Signals { rt, int, term })
    }

    /// Wait up to `wait` for a signal; whether one came.
    pub fn caught_within(&mut self, wait: Duration) -> bool {
        let (int, term) = (&mut self.int, &mut self.term);
        self.rt.block_on(async {
            tokio::select! {
                biased;
                _ = int.recv() => true,
                _ = term.recv() => true,
                _ = tokio::time::sleep(wait) => false,
            }
        })
    }
}
