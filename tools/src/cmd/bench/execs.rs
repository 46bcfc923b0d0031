//! The agents whose program starts: every exec of one file, seen with
//! fanotify (`FAN_OPEN_EXEC`, Linux 5.0, root), named by the agent the
//! process belongs to (`CELL0_AGENT` in its environment).
//!
//! An agent's program runs in a sandbox that reaches nothing of the host
//! but the program's own file (see agent(3)): it cannot tell the
//! benchmark that it runs through a file or socket of the host's. The
//! kernel can: a mark on the program's inode sees it opened for exec in
//! any mount namespace, which is the moment the program starts.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::mpsc;

use anyhow::Context;

/// The agents whose processes exec `program`, as they do.
pub fn watch(program: &Path) -> anyhow::Result<mpsc::Receiver<String>> {
    // SAFETY: fanotify_init takes flags; on success the descriptor is new
    // and owned by no one else.
    let fd = unsafe {
        libc::fanotify_init(
            libc::FAN_CLASS_NOTIF | libc::FAN_CLOEXEC,
            (libc::O_RDONLY | libc::O_CLOEXEC) as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .context("fanotify_init (bench agents needs root, as agents' sandboxes do)");
    }
    // SAFETY: as above.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let path = std::ffi::CString::new(program.as_os_str().as_bytes())?;
    // SAFETY: `path` is NUL-terminated and outlives the call.
    let r = unsafe {
        libc::fanotify_mark(
            fd.as_raw_fd(),
            libc::FAN_MARK_ADD,
            libc::FAN_OPEN_EXEC,
            libc::AT_FDCWD,
            path.as_ptr(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("fanotify_mark {}", program.display()));
    }
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("bench-agents-execs".into())
        .spawn(move || follow(&fd, &tx))?;
    Ok(rx)
}

/// Read events until the receiver is gone.
fn follow(fd: &OwnedFd, tx: &mpsc::Sender<String>) {
    let mut buf = [0u8; 4096];
    let size = std::mem::size_of::<libc::fanotify_event_metadata>();
    loop {
        // SAFETY: reading into a local buffer of its own size.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        let n = n as usize;
        let mut at = 0;
        while at + size <= n {
            // SAFETY: `at + size <= n` bytes were read; the struct is
            // plain data, read unaligned.
            let ev: libc::fanotify_event_metadata =
                unsafe { std::ptr::read_unaligned(buf[at..].as_ptr().cast()) };
            if ev.fd >= 0 {
                // SAFETY: the event's descriptor is ours to close.
                drop(unsafe { OwnedFd::from_raw_fd(ev.fd) });
            }
            if let Some(name) = agent_of(ev.pid)
                && tx.send(name).is_err()
            {
                return;
            }
            if ev.event_len == 0 {
                break;
            }
            at += ev.event_len as usize;
        }
    }
}

/// The agent process `pid` belongs to (its `CELL0_AGENT`), from its
/// environment or, while its exec has not yet set one up (the kernel
/// shows an empty one then), from its parent's (the sandbox's shim).
fn agent_of(pid: i32) -> Option<String> {
    named_in(pid).or_else(|| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let ppid = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))?
            .trim()
            .parse()
            .ok()?;
        named_in(ppid)
    })
}

/// `CELL0_AGENT` in the environment of process `pid`.
fn named_in(pid: i32) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|&b| b == 0).find_map(|v| {
        v.strip_prefix(b"CELL0_AGENT=")
            .map(|n| String::from_utf8_lossy(n).into_owned())
    })
}
