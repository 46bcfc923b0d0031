//! The tree at `/cell0`: a FUSE mount made in the sandbox, served from
//! outside it.
//!
//! The sandbox opens `/dev/fuse` ([`super::FUSE_FD`], opened in its user
//! namespace: the kernel mounts FUSE for a namespace only with a
//! descriptor opened in it); the shim mounts a `fuse` file system with
//! it on the mount point and hands it to the runner over
//! [`super::READY_FD`] (SCM_RIGHTS, with the shim's standard error, where
//! the mount's lines go: the agent's own log). The runner then answers the kernel's
//! requests for that mount on its own threads, over its own 9P
//! connection made with the agent's capability. So the sandbox holds no FUSE server, no
//! connection to the node and no thread that lives in the host's
//! namespaces: there is nothing of the mount for the agent to enter or
//! take over, and its network namespace can hold nothing but loopback.
//! Requests the program makes before the runner answers the mount's
//! first message wait in the kernel.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Context, bail};

/// Mount the FUSE connection `fuse` on `dir`, named after the node at
/// `addr`, and hand it to the runner over the socket `ready` (both
/// descriptors are closed after).
pub fn mount(dir: &Path, fuse: RawFd, ready: RawFd, addr: &str) -> anyhow::Result<()> {
    let target = CString::new(dir.as_os_str().as_bytes()).context("the mount point")?;
    let source = CString::new(format!("cell0@{addr}")).context("the node's address")?;
    // The root of the tree is a directory (rootmode); requests come from
    // the sandbox's root, which is the one user that may use the mount.
    let data = CString::new(format!("fd={fuse},rootmode=40000,user_id=0,group_id=0"))
        .context("mount options")?;
    // SAFETY: every pointer is a NUL-terminated string that outlives the
    // call; mount(2) only reads them.
    let r = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            c"fuse.cell0".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOATIME,
            data.as_ptr().cast(),
        )
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        bail!("mounting the tree on {}: {e}", dir.display());
    }
    let sent = send_fds(ready, [fuse, libc::STDERR_FILENO]);
    // SAFETY: closing two descriptors this process owns and uses no more.
    unsafe {
        libc::close(fuse);
        libc::close(ready);
    }
    sent.context("handing the mount to the runner")?;
    Ok(())
}

/// Send one byte and the descriptors `fds` over the Unix socket `sock`.
fn send_fds(sock: RawFd, fds: [RawFd; 2]) -> std::io::Result<()> {
    let mut byte = *b"m";
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // Room for one cmsghdr and two ints, aligned as cmsghdr wants.
    let mut space = [0u64; 4];
    let data_len = std::mem::size_of_val(&fds) as u32;
    // SAFETY: msghdr is plain data; every pointer set below is to a local
    // that outlives the sendmsg call; CMSG_* compute offsets within
    // `space`, which is large enough for two descriptors (checked).
    unsafe {
        let len = libc::CMSG_SPACE(data_len) as usize;
        assert!(len <= std::mem::size_of_val(&space));
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = space.as_mut_ptr().cast();
        msg.msg_controllen = len as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(data_len) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<[RawFd; 2]>(), fds);
        if libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) != 1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
