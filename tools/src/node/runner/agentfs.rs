//! An agent's view of the tree, served from the runner.
//!
//! For each run of a sandboxed agent, the runner makes a socket pair and
//! hands the run one end, the agent's capability and its program's file
//! (see `cell0 agent-shim`, which gets them as descriptors 3 to 5, and
//! opens `/dev/fuse` as 6 in its own user namespace). Once the shim has
//! mounted the tree it hands the FUSE connection over the socket; a
//! thread of the runner then connects to the node with the agent's
//! capability and answers the kernel's requests for that mount, until
//! the sandbox ends and the kernel drops the mount. The FUSE server thus
//! lives outside the sandbox, in a process the agent cannot see, signal
//! or enter, and its connection to the node is not in the sandbox's
//! network namespace (which can then be loopback alone).

use std::fs::File;
use std::io::{self, Write as _};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ninep::Dialect;

use crate::client::{Client, Options};
use crate::identity::ClientToken;
use crate::mount::log::Sink;

/// The 9P sessions the runner's agents' mounts are served over, so that
/// a runner that must stop its agents at once (its node lost its lease)
/// can end them: a program blocked in a request on its mount (which no
/// KILL interrupts once the request is read) then gets an error and
/// dies, instead of waiting for a node that is cut off.
#[derive(Clone, Default)]
pub struct Sessions(Arc<Mutex<Vec<(u64, Client)>>>);

impl Sessions {
    fn add(&self, client: &Client) -> u64 {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        self.lock().push((id, client.clone()));
        id
    }

    fn remove(&self, id: u64) {
        self.lock().retain(|(i, _)| *i != id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Client)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// End every session: requests on the mounts fail from now on.
    pub fn shut_all(&self) {
        for (_, c) in self.lock().iter() {
            c.shut();
        }
    }
}

/// The descriptors one run of an agent gets, in the order the shim
/// expects them (`READY_FD` to `PROGRAM_FD`); the thread that will serve
/// its mount is started, its session kept in `sessions`.
pub fn descriptors(
    agent: &str,
    addr: &str,
    token: &str,
    program: &Path,
    sessions: &Sessions,
) -> io::Result<Vec<OwnedFd>> {
    let (ready, for_run) = socket_pair()?;
    let token_fd = memfd(token)?;
    let program = program_mount(program)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", program.display())))?;
    let (agent, addr, token) = (agent.to_string(), addr.to_string(), token.to_string());
    let sessions = sessions.clone();
    std::thread::Builder::new()
        .name(format!("cell0-agentfs-{agent}"))
        .spawn(move || {
            if let Err(e) = serve(ready, &addr, &token, &sessions) {
                eprintln!("cell0 runner: agent {agent}'s mount of the tree: {e:#}");
            }
        })?;
    Ok(vec![for_run, token_fd, program])
}

/// A detached, read-only mount of the program's file (open_tree(2)), for
/// the sandbox to attach in its root: a mount of the runner's namespace
/// cannot be bound into the sandbox's, and the program's directory may
/// be out of the sandbox's reach (a directory of root's, mode 0700).
fn program_mount(program: &Path) -> io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt as _;
    /// open_tree(2)'s flags (linux/mount.h): a copy of the mount, not
    /// the mount itself; close-on-exec.
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;
    let path = std::ffi::CString::new(program.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `path` is NUL-terminated and outlives the call; on success
    // the result is a new descriptor that nothing else owns.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    crate::node::shim::set_mount_attrs(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        c"",
        libc::AT_EMPTY_PATH,
        crate::node::shim::MOUNT_ATTR_RDONLY
            | crate::node::shim::MOUNT_ATTR_NOSUID
            | crate::node::shim::MOUNT_ATTR_NODEV,
    )?;
    Ok(fd)
}

/// Wait until the sandbox hands over its mounted FUSE connection on
/// `ready` (end of file: it never mounted), then serve it.
fn serve(ready: OwnedFd, addr: &str, token: &str, sessions: &Sessions) -> anyhow::Result<()> {
    let Some(Handed { fuse, stderr, pid }) = receive(&ready)? else {
        return Ok(());
    };
    drop(ready);
    // The callers' thread ids are the sandbox's: read them in its /proc,
    // through its root (the shim is its pid 1).
    let proc = PathBuf::from(format!("/proc/{pid}/root/proc"));
    let log = Sink::File(Arc::new(File::from(stderr)));
    let opts = Options::new(Dialect::L).with_token(&ClientToken {
        text: Some(token.to_string()),
        explicit: true,
    });
    // If this fails, dropping `fuse` (its last descriptor: the shim
    // closed its own) aborts the connection, and the program's calls on
    // the mount fail (ENOTCONN) instead of waiting.
    let client = Client::connect_with(addr, &opts)?;
    let id = sessions.add(&client);
    let r = crate::mount::serve_connection(client, fuse, proc, log);
    sessions.remove(id);
    r
}

/// A close-on-exec pair of connected Unix sockets (SOCK_SEQPACKET); the
/// first (the runner's) receives its peer's credentials with each message.
fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    use std::os::fd::AsRawFd as _;
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair just returned these, owned by no one else.
    let (mine, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads an int from a local for its length.
    let r = unsafe {
        libc::setsockopt(
            mine.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((mine, theirs))
}

/// What the sandbox hands over once it has mounted the tree.
struct Handed {
    /// The FUSE connection.
    fuse: OwnedFd,
    /// The shim's standard error: the agent's.
    stderr: OwnedFd,
    /// The shim's pid, in the runner's pid namespace.
    pid: libc::pid_t,
}

/// The message the shim sends on `sock` (one byte, two descriptors, and
/// the kernel's word for who sent it); `None` at end of file (the other
/// end closed without sending).
fn receive(sock: &OwnedFd) -> io::Result<Option<Handed>> {
    use std::os::fd::AsRawFd as _;
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut space = [0u64; 16];
    let (mut fds, mut pid) = (Vec::new(), None);
    loop {
        // SAFETY: msghdr is plain data; its pointers are to locals that
        // outlive the call; CMSG_* walk within `space`, whose size is
        // given; descriptors received are new and owned by no one else.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = space.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&space) as _;
            let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Ok(None);
            }
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                let data = libc::CMSG_DATA(cmsg);
                let len = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                    (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                        for i in 0..len / std::mem::size_of::<libc::c_int>() {
                            let fd = std::ptr::read_unaligned(data.cast::<libc::c_int>().add(i));
                            fds.push(OwnedFd::from_raw_fd(fd));
                        }
                    }
                    (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) => {
                        let cred = std::ptr::read_unaligned(data.cast::<libc::ucred>());
                        pid = Some(cred.pid);
                    }
                    _ => {}
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
            break;
        }
    }
    let mut fds = fds.into_iter();
    match (fds.next(), fds.next(), pid) {
        (Some(fuse), Some(stderr), Some(pid)) if pid > 0 => Ok(Some(Handed { fuse, stderr, pid })),
        _ => Err(io::Error::other(
            "the sandbox said it mounted the tree, without handing the mount over",
        )),
    }
}

/// An anonymous, close-on-exec file holding `text`, sealed so that no
/// one who gets it can change it.
pub fn memfd(text: &str) -> io::Result<OwnedFd> {
    // SAFETY: the name is a NUL-terminated literal.
    let fd = unsafe {
        libc::memfd_create(
            c"cell0-token".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned by no one else.
    let mut f = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    f.write_all(text.as_bytes())?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on a descriptor we own, with integer arguments.
    if unsafe {
        libc::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            libc::F_ADD_SEALS,
            seals,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(OwnedFd::from(f))
}
