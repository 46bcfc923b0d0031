//! The program's own network namespace, holding only loopback.
//!
//! unshare(CLONE_NEWNET) moves only the calling thread: the shim's main
//! thread, which starts the program (the child inherits the thread's
//! namespaces). The mount's threads were started before and keep the
//! host's network, as does their connection to the node.

use anyhow::bail;

/// Move this thread into a new network namespace and bring its loopback
/// up. A refusal fails the start: the program must not run with the
/// host's network when it was not granted it.
pub fn isolate() -> anyhow::Result<()> {
    // SAFETY: unshare(2) with a flag that affects only this thread.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        let e = std::io::Error::last_os_error();
        let hint = if e.raw_os_error() == Some(libc::EPERM) {
            " (the shim needs CAP_SYS_ADMIN)"
        } else {
            ""
        };
        bail!(
            "cannot give the program a network namespace of its own: unshare(CLONE_NEWNET): {e}{hint}; \
             not running it with the host's network, which it was not granted ($CELL0_NET is not 1)"
        );
    }
    // Best effort: a program that talks to itself over 127.0.0.1 works;
    // without it, nothing is reachable either way.
    let _ = loopback_up();
    Ok(())
}

/// Set IFF_UP on `lo` in this thread's network namespace.
fn loopback_up() -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: socket(2) returns a new descriptor or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned by no one else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo") {
        *d = *s as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq that SIOCGIFFLAGS fills in and
    // SIOCSIFFLAGS reads; the union's flags member is the one both use.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
