//! What is done to a child process once it runs: signal it, see whether
//! it has ended, reap it and say how it ended, read its pipes.

use std::os::fd::{AsRawFd, OwnedFd};

use crate::child::errno;

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
    /// Its status was taken by someone else (the host program reaps
    /// children it did not start, or ignores SIGCHLD).
    Unknown,
}

impl ExitStatus {
    /// Whether it exited with code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    /// From a `waitpid` status word.
    fn from_wait(status: libc::c_int) -> ExitStatus {
        if libc::WIFEXITED(status) {
            ExitStatus::Code(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            ExitStatus::Signal(libc::WTERMSIG(status))
        } else {
            ExitStatus::Unknown
        }
    }
}

/// A signal's name without `SIG` (`KILL`), or its number.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "HUP",
        libc::SIGINT => "INT",
        libc::SIGQUIT => "QUIT",
        libc::SIGILL => "ILL",
        libc::SIGTRAP => "TRAP",
        libc::SIGABRT => "ABRT",
        libc::SIGBUS => "BUS",
        libc::SIGFPE => "FPE",
        libc::SIGKILL => "KILL",
        libc::SIGUSR1 => "USR1",
        libc::SIGSEGV => "SEGV",
        libc::SIGUSR2 => "USR2",
        libc::SIGPIPE => "PIPE",
        libc::SIGALRM => "ALRM",
        libc::SIGTERM => "TERM",
        libc::SIGXCPU => "XCPU",
        libc::SIGXFSZ => "XFSZ",
        libc::SIGSYS => "SYS",
        _ => return signal.to_string(),
    };
    name.to_string()
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "code={c}"),
            ExitStatus::Signal(s) => write!(f, "signal={}", signal_name(*s)),
            ExitStatus::Unknown => f.write_str("unknown"),
        }
    }
}

/// Whether child `pid` has ended, without reaping it: while it is not
/// reaped its pid (and process group id) cannot be reused, so the rest
/// of its group can still be killed safely.
pub(crate) fn has_ended(pid: i32) -> bool {
    // SAFETY: waitid writes into the zeroed siginfo we pass.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        // ECHILD: someone else reaped it; it has ended all the same.
        (r == 0 && info.si_pid() != 0) || (r < 0 && errno() == libc::ECHILD)
    }
}

/// Reap child `pid`, waiting for it to end, and say how it ended.
pub(crate) fn reap(pid: i32) -> ExitStatus {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes the status into a local.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return ExitStatus::from_wait(status);
        }
        if r < 0 && errno() == libc::EINTR {
            continue;
        }
        return ExitStatus::Unknown;
    }
}

/// Whether process `pid` neither handles nor blocks `signal` (as its
/// `/proc/PID/status` says). As pid 1 of a namespace, such a process
/// never receives the signal from outside (the kernel drops it), unless
/// it is KILL or STOP. `false` when that cannot be read.
pub(crate) fn deaf_to(pid: i32, signal: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let bit = 1u64 << (signal - 1);
    let mask = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    };
    match (mask("SigCgt:"), mask("SigBlk:")) {
        (Some(caught), Some(blocked)) => (caught | blocked) & bit == 0,
        _ => false,
    }
}

/// Whether process `pid` has a child that has not ended (zombies do not
/// count), as `/proc/PID/task/PID/children` says.
pub(crate) fn has_live_children(pid: i32) -> bool {
    let Ok(list) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) else {
        // Cannot tell: assume so, and let the grace period decide.
        return true;
    };
    list.split_whitespace().any(|c| {
        std::fs::read_to_string(format!("/proc/{c}/stat"))
            // The state follows the command's closing parenthesis.
            .map(|st| {
                st.rsplit_once(')')
                    .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
    })
}

/// Send `signal` to process `pid`.
pub(crate) fn signal_pid(pid: i32, signal: i32) {
    // SAFETY: kill takes plain integers; a pid that has just ended gives
    // ESRCH, which is fine. Callers pass pids read from their agent's
    // cgroup, which hold only its processes.
    unsafe { libc::kill(pid, signal) };
}

/// Send `signal` to the process group `pgid` (every process of the
/// agent that did not leave it).
pub(crate) fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: kill with a negative pid signals a process group; the
    // group is our unreaped child's, so its id is not reused.
    unsafe { libc::kill(-pgid, signal) };
}

/// Read what is available from a non-blocking descriptor into `sink`,
/// at most `limit` bytes. Returns `false` at end of file or on an error
/// (the descriptor is then done).
pub(crate) fn read_available(fd: &OwnedFd, limit: usize, sink: &mut dyn FnMut(&[u8])) -> bool {
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0;
    while total < limit {
        // SAFETY: reading into a local buffer of the given size.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            let n = n as usize;
            sink(&buf[..n]);
            total += n;
            continue;
        }
        if n == 0 {
            return false;
        }
        return match errno() {
            libc::EINTR => continue,
            libc::EAGAIN => true,
            _ => false,
        };
    }
    true
}
