//! The shim as init: signals arrive on a signalfd (blocked everywhere,
//! so no handler of the mount's runs), are forwarded to the program, and
//! every child that ends is reaped.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The signals passed on to the program.
pub const FORWARDED: [libc::c_int; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// The forwarded signals and SIGCHLD, blocked in every thread and read
/// from a signalfd.
pub struct Signals {
    fd: OwnedFd,
}

impl Signals {
    /// Block the signals in this thread (threads started later inherit
    /// the mask) and open a signalfd for them. Call it before any thread
    /// is started.
    pub fn block() -> io::Result<Signals> {
        // SAFETY: sigset_t is plain data that sigemptyset initializes.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t owned by this frame; the calls
        // only write it or read it.
        unsafe {
            libc::sigemptyset(&mut set);
            for sig in FORWARDED.into_iter().chain([libc::SIGCHLD]) {
                libc::sigaddset(&mut set, sig);
            }
            let r = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if r != 0 {
                return Err(io::Error::from_raw_os_error(r));
            }
        }
        // SAFETY: `set` is initialized; -1 asks for a new descriptor.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: signalfd just returned this descriptor, owned by no one.
        Ok(Signals {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// The next signal, waiting for one.
    pub fn next(&self) -> io::Result<libc::c_int> {
        // SAFETY: plain data, filled in by read(2).
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        loop {
            // SAFETY: `info` is a writable buffer of `size` bytes.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    (&raw mut info).cast::<libc::c_void>(),
                    size,
                )
            };
            if n == size as isize {
                return Ok(info.ssi_signo as libc::c_int);
            }
            let e = io::Error::last_os_error();
            if n < 0 && e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(if n < 0 {
                e
            } else {
                io::Error::other(format!("signalfd read {n} bytes"))
            });
        }
    }
}

/// Give the program an empty signal mask and the default action for
/// every signal the shim handles (or inherited as ignored): a forwarded
/// SIGTERM must reach a program that can die of it.
pub fn default_signals(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: the closure runs in the child between fork and exec and
    // calls only sigemptyset, sigprocmask and signal, which are
    // async-signal-safe, on its own stack data.
    unsafe {
        cmd.pre_exec(|| {
            for sig in FORWARDED.into_iter().chain([libc::SIGCHLD, libc::SIGPIPE]) {
                libc::signal(sig, libc::SIG_DFL);
            }
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Forward signals to `child` and reap every child until `child` ends;
/// its exit code, or 128+N if signal N killed it.
pub fn supervise(child: libc::pid_t, signals: &Signals) -> io::Result<i32> {
    loop {
        // Reap before waiting: a SIGCHLD read earlier may stand for
        // several children, and one that ends after this pass raises a
        // new one.
        if let Some(code) = reap(child) {
            return Ok(code);
        }
        let sig = signals.next()?;
        if sig != libc::SIGCHLD {
            // SAFETY: kill(2) touches no memory; `child` is not reaped
            // yet, so its pid is still its own.
            unsafe { libc::kill(child, sig) };
        }
    }
}

/// Reap every child that has ended; `child`'s status if it was one.
fn reap(child: libc::pid_t) -> Option<i32> {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid int for waitpid to write.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            // 0: children remain, none ended; -1: ECHILD (or EINTR, and
            // the next signal brings us back).
            return None;
        }
        if pid == child {
            return Some(exit_code(status));
        }
    }
}

/// A shell's view of a wait status: the exit code, or 128+N for signal N.
pub fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        libc::WEXITSTATUS(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_a_shell_reads_them() {
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(0), 0);
        assert_eq!(exit_code(libc::SIGTERM), 143);
        assert_eq!(exit_code(libc::SIGKILL | 0x80), 137); // core dumped
    }
}
