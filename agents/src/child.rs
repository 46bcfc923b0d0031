//! Starting one process, and the calls made on it afterwards (signal,
//! wait for its end, reap it).
//!
//! A process is made with the raw `clone3(2)` system call sharing the
//! runner's memory until its exec, on a stack of its own (on x86_64, see
//! `shared`: a copy of the runner's memory costs more the more agents
//! run), or else fork-like (`clone3` or `clone(2)`, no new stack). With
//! namespaces it gets, in the same
//! call, a user namespace of its own (`CLONE_NEWUSER`, see below), and
//! pid, mount, UTS and IPC namespaces owned by it (`CLONE_NEWPID |
//! CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC`), and a network namespace
//! (`CLONE_NEWNET`) when it may not use the host's network. So the agent
//! is pid 1 of a pid namespace of its own and still a direct child of the
//! runner: the runner waits for it and signals it like any child, and
//! when it ends the kernel kills every process left in its namespace.
//! `std::process::Command` cannot do this: `unshare(2)` of a pid
//! namespace only applies to the caller's next child, so its `pre_exec`
//! hook would need a second fork with a process in between.
//!
//! The user namespace maps its root (uid and gid 0) to one unprivileged
//! id of the host and nothing else, and `setgroups` is denied in it. Its
//! root can mount, name its host and set up its network inside its own
//! namespaces, but holds no privilege over anything of the host: a file of
//! the host is to it what it is to that unprivileged id, a host process
//! is out of its reach, and a host setting (`/proc/sys`, the clock) is
//! refused to it.
//!
//! When the run has a cgroup v2 directory, the process is made in it:
//! `clone3` with `CLONE_INTO_CGROUP` (Linux 5.7+) and a descriptor of the
//! directory. That is no migration, so it does not take the kernel's
//! `cgroup_threadgroup_rwsem` for writing, whose first writer after a
//! while waits for an RCU grace period (some 20 ms): a write to
//! `cgroup.procs` did, on every spawn. Where `clone3` cannot do that
//! (older kernel, a seccomp filter, a cgroup it refuses) the process is
//! made with `clone` and the runner moves it into its cgroup by a write.
//!
//! Between the clone and the child's go-ahead, the runner writes the user
//! namespace's id maps (`/proc/PID/uid_map`, `gid_map`, `setgroups`): the
//! child could not, being no one on the host once in its user namespace.
//!
//! The child joins its v1 cgroups itself, by writing `0` to each one's
//! `tasks` file, opened for it by the runner before the clone (the kernel
//! checks the opener's ids). The kernel moves a thread that moves itself
//! without taking `cgroup_threadgroup_rwsem` (`cgroup_procs_write_start`:
//! pid 0 in `tasks`), so this migration waits for no RCU grace period,
//! where the runner's write of the child's pid to `cgroup.procs` waited
//! up to 20 ms (5 to 50 ms on a busy host) on every spawn with a limit.
//! The child is one thread here, so its thread is the whole process.
//!
//! Between `clone` and `execve` the new process runs in (or in a copy
//! of) the memory of a multi-threaded one, so it only makes system calls,
//! on data prepared before the clone: no allocation, no locks, no panics.
//! In order:
//!
//! 1. every signal back to its default action, then unblocked (the
//!    runner blocks all of them around the clone, so that no handler of
//!    the host program runs in the copy);
//! 2. `PR_SET_PDEATHSIG(SIGKILL)`, then (sharing the runner's memory)
//!    one byte to the runner's helper thread to say it is there, then a
//!    read of one byte the runner writes once the id maps are in place:
//!    if the runner died
//!    before the death signal was set, the read sees end of file and the
//!    process exits (the kernel clears the death signal when the ids
//!    change, so a process that takes its namespace's ids in step 4 sets
//!    it again and checks the runner is still there); then it joins its
//!    v1 cgroups (see above);
//! 3. `setsid`: a session and process group of its own;
//! 4. with a user namespace, a cgroup namespace whose root is the cgroup
//!    it is now in (so it sees no cgroup above its own); the devices the
//!    caller names opened while it still has the runner's ids; then the
//!    ids of its namespace's root;
//! 5. with namespaces, make every mount private (nothing it mounts
//!    reaches the host) and mount a `/proc` of its pid namespace;
//! 6. stdin from `/dev/null`, stdout and stderr to the runner's pipes,
//!    the descriptors the caller passes as 3, 4, …, working directory
//!    `/`, every other descriptor closed on exec;
//! 7. `execve` with exactly the environment given; where the program's
//!    path is out of the user namespace's reach (a directory the host's
//!    unprivileged id cannot enter), `execveat` of a descriptor the runner
//!    opened for it.
//!
//! A failure in any step is written to a close-on-exec pipe as the step
//! and its `errno`; the runner reads that pipe until end of file, which
//! comes at the `execve` (success) or the process's exit (failure).

use std::ffi::{CString, c_char};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::StartError;
use crate::process::{ExitStatus, reap};
use idmap::{write_file, write_id_maps};

mod idmap;
#[cfg(target_arch = "x86_64")]
mod shared;
#[cfg(target_arch = "x86_64")]
mod slots;

/// The host ids a user namespace's root (uid and gid 0) maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IdMap {
    /// The host uid.
    pub(crate) uid: u32,
    /// The host gid.
    pub(crate) gid: u32,
}

/// The namespaces a process gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Namespaces {
    /// New pid and mount namespaces (always together: the new `/proc`
    /// needs a mount namespace of its own).
    pub(crate) pid_mount: bool,
    /// A new network namespace.
    pub(crate) net: bool,
    /// A new user namespace whose root is this host id, with new UTS, IPC
    /// and cgroup namespaces (only with `pid_mount`).
    pub(crate) user: Option<IdMap>,
}

impl Namespaces {
    fn clone_flags(self) -> libc::c_int {
        let mut flags = 0;
        if self.pid_mount {
            flags |= libc::CLONE_NEWPID | libc::CLONE_NEWNS;
            if self.user.is_some() {
                flags |= libc::CLONE_NEWUSER | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
            }
        }
        if self.net {
            flags |= libc::CLONE_NEWNET;
        }
        flags
    }

    /// The user namespace's map, if it gets one.
    fn user(self) -> Option<IdMap> {
        self.user.filter(|_| self.pid_mount)
    }
}

/// The most descriptors a caller may pass to a process (as 3, 4, …).
pub(crate) const MAX_PASSED: usize = 8;

/// The most v1 cgroups a process joins (one per controller with a limit,
/// and the first hierarchy: four at most).
const MAX_V1: usize = 8;

/// What to start.
pub(crate) struct Launch<'a> {
    /// The program (absolute).
    pub(crate) program: &'a Path,
    /// Its arguments, after its own name.
    pub(crate) args: &'a [String],
    /// `KEY=VALUE` strings: the whole environment.
    pub(crate) env: &'a [String],
    /// Its namespaces.
    pub(crate) namespaces: Namespaces,
    /// Its cgroup v2 directory, if any: it is made in it (`clone3` with
    /// `CLONE_INTO_CGROUP`), or else joins it through its `cgroup.procs`.
    pub(crate) cgroup_v2: Option<PathBuf>,
    /// The v1 cgroup directories it joins (by writing `0` to their
    /// `tasks` files itself, see the module's documentation).
    pub(crate) cgroup_v1: Vec<PathBuf>,
    /// Descriptors it gets as 3, 4, … (at most [`MAX_PASSED`] with
    /// `devices`), open across its exec; every other one of the runner's
    /// is closed.
    pub(crate) fds: &'a [RawFd],
    /// Devices it opens (read-write) while it still has the runner's ids,
    /// before it becomes its user namespace's root (which could not open
    /// a device only the host's root may): it gets them after `fds`.
    pub(crate) devices: &'a [CString],
}

/// A started process.
#[derive(Debug)]
pub(crate) struct Child {
    /// Its pid (in the runner's namespace); also its process group.
    pub(crate) pid: i32,
    /// A pidfd, readable when it has ended (`None` before Linux 5.3:
    /// the runner then asks `waitid` on a timer).
    pub(crate) pidfd: Option<OwnedFd>,
    /// The read end of its stdout (non-blocking).
    pub(crate) stdout: Option<OwnedFd>,
    /// The read end of its stderr (non-blocking).
    pub(crate) stderr: Option<OwnedFd>,
    /// It was made in its cgroup v2 directory by `clone3` (rather than
    /// joining it by a write). Only the tests look.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) made_in_cgroup: bool,
}

/// The last OS error's number.
pub(crate) fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// A close-on-exec pipe, both ends at descriptors 3 or above (so that
/// the child's `dup2` onto 0, 1 and 2 never clobbers one of them).
fn pipe() -> Result<(OwnedFd, OwnedFd), StartError> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(StartError::Os {
            what: "pipe",
            errno: errno(),
        });
    }
    // SAFETY: pipe2 succeeded, so both are open descriptors owned by
    // nothing else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let high = |fd: OwnedFd| -> Result<OwnedFd, StartError> {
        if fd.as_raw_fd() > 2 {
            return Ok(fd);
        }
        // try_clone duplicates with F_DUPFD_CLOEXEC from 3 up.
        fd.try_clone().map_err(|e| StartError::Os {
            what: "dup",
            errno: e.raw_os_error().unwrap_or(libc::EIO),
        })
    };
    Ok((high(r)?, high(w)?))
}

fn set_nonblocking(fd: &OwnedFd) {
    // SAFETY: fcntl on a descriptor we own, with integer arguments.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

fn cstring(s: &[u8], what: &'static str) -> Result<CString, StartError> {
    // `Spec::check` refuses NUL bytes; this is the last guard.
    CString::new(s).map_err(|_| StartError::Spec(crate::spec::SpecError::Nul(what)))
}

/// The steps of the child's set-up, as written to the report pipe.
const STEPS: [&str; 12] = [
    "reset signals",
    "set the death signal",
    "make a session",
    "make a cgroup namespace",
    "become the root of its user namespace",
    "open a device",
    "make mounts private",
    "mount /proc",
    "set up stdin, stdout and stderr",
    "pass descriptors",
    "exec",
    "join the cgroup",
];
const STEP_PDEATHSIG: u32 = 1;
const STEP_SETSID: u32 = 2;
const STEP_CGROUPNS: u32 = 3;
const STEP_IDS: u32 = 4;
const STEP_DEVICE: u32 = 5;
const STEP_PRIVATE: u32 = 6;
const STEP_PROC: u32 = 7;
const STEP_STDIO: u32 = 8;
const STEP_FDS: u32 = 9;
const STEP_EXEC: u32 = 10;
const STEP_CGROUP_V1: u32 = 11;

/// Descriptors the child moves its own to before it places the passed
/// ones at 3, 4, …: above any of those.
const HIGH_FD: libc::c_int = 64;

/// Everything the child needs, prepared before the clone so that it
/// allocates nothing.
struct Prepared {
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
}

/// Raw views of [`Prepared`] and the descriptors, for the child.
#[derive(Clone, Copy)]
struct ChildArgs<'a> {
    program: &'a CString,
    /// The program opened by the runner (`O_PATH`), to exec when its
    /// path is out of the user namespace's reach; -1 for none.
    program_fd: RawFd,
    argv: *const *const c_char,
    envp: *const *const c_char,
    pid_mount: bool,
    user: bool,
    probe: bool,
    go_r: RawFd,
    go_w: RawFd,
    /// Where it says it has started, before it waits for the go-ahead
    /// (-1: nowhere; see `shared`).
    hello_w: RawFd,
    out_w: RawFd,
    err_w: RawFd,
    report_w: RawFd,
    passed: [RawFd; MAX_PASSED],
    passed_len: usize,
    devices: [*const c_char; MAX_PASSED],
    devices_len: usize,
    /// The `tasks` files of its v1 cgroups, open for writing.
    v1_tasks: [RawFd; MAX_V1],
    v1_len: usize,
    /// It shares the runner's descriptor table, and must first take a
    /// copy of the descriptors below this for its own (see `slots`); 0:
    /// it has its own already.
    fd_bound: libc::c_uint,
}

/// Start `launch`. Returns once the program runs (its `execve`
/// succeeded) or with why it could not.
pub(crate) fn spawn(launch: &Launch<'_>) -> Result<Child, StartError> {
    start(launch, false)?.ok_or(StartError::Os {
        what: "spawn",
        errno: libc::EIO,
    })
}

/// Whether a process with `namespaces` can be made and set up here: one
/// is made, set up as an agent would be (without a cgroup), and ends
/// before it would exec.
pub(crate) fn probe(namespaces: Namespaces) -> Result<(), StartError> {
    let launch = Launch {
        program: Path::new("/"),
        args: &[],
        env: &[],
        namespaces,
        cgroup_v2: None,
        cgroup_v1: Vec::new(),
        fds: &[],
        devices: &[],
    };
    start(&launch, true).map(|_| ())
}

fn start(launch: &Launch<'_>, probe: bool) -> Result<Option<Child>, StartError> {
    if launch.fds.len() + launch.devices.len() > MAX_PASSED || launch.cgroup_v1.len() > MAX_V1 {
        return Err(StartError::Os {
            what: "pass descriptors",
            errno: libc::EMFILE,
        });
    }
    let prepared = Prepared {
        program: cstring(launch.program.as_os_str().as_bytes(), "the program path")?,
        argv: std::iter::once(Ok(launch.program.as_os_str().as_bytes().to_vec()))
            .chain(launch.args.iter().map(|a| Ok(a.clone().into_bytes())))
            .map(|a: Result<Vec<u8>, StartError>| cstring(&a?, "an argument"))
            .collect::<Result<_, _>>()?,
        envp: launch
            .env
            .iter()
            .map(|e| cstring(e.as_bytes(), "an environment value"))
            .collect::<Result<_, _>>()?,
    };
    let user = launch.namespaces.user();
    // In its user namespace the child is an unprivileged id of the host,
    // which may not be able to reach the program's path (a directory of
    // root's, mode 0700): the runner opens it for it.
    let program_fd = match user {
        Some(_) if !probe => Some(open_path(&prepared.program)?),
        _ => None,
    };
    // The v2 directory, for clone3. If it cannot be opened, the child is
    // moved in by a write to its `cgroup.procs` (which says why that
    // fails).
    let cgroup_dir = launch
        .cgroup_v2
        .as_ref()
        .filter(|_| CLONE3_INTO_CGROUP.load(Ordering::Relaxed))
        .and_then(|d| {
            OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
                .open(d)
                .ok()
        });
    // Opened here, with the runner's ids (which the kernel checks when
    // the child writes), so the child needs no path and no privilege.
    let v1_files: Vec<File> = launch
        .cgroup_v1
        .iter()
        .map(|d| {
            OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(d.join("tasks"))
                .map_err(|e| StartError::Sandbox {
                    step: "join the cgroup",
                    errno: e.raw_os_error().unwrap_or(libc::EIO),
                })
        })
        .collect::<Result<_, _>>()?;
    let mut v1_tasks = [-1; MAX_V1];
    for (slot, f) in v1_tasks.iter_mut().zip(&v1_files) {
        *slot = f.as_raw_fd();
    }
    let argv: Vec<*const c_char> = prepared
        .argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(ptr::null()))
        .collect();
    let envp: Vec<*const c_char> = prepared
        .envp
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(ptr::null()))
        .collect();

    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    let (report_r, report_w) = pipe()?;
    let mut passed = [-1; MAX_PASSED];
    passed[..launch.fds.len()].copy_from_slice(launch.fds);
    let mut devices = [ptr::null(); MAX_PASSED];
    for (d, path) in devices.iter_mut().zip(launch.devices) {
        *d = path.as_ptr();
    }
    let args = ChildArgs {
        program: &prepared.program,
        program_fd: program_fd.as_ref().map_or(-1, |f| f.as_raw_fd()),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        pid_mount: launch.namespaces.pid_mount,
        user: user.is_some(),
        probe,
        go_r: go_r.as_raw_fd(),
        go_w: go_w.as_raw_fd(),
        hello_w: -1,
        out_w: out_w.as_raw_fd(),
        err_w: err_w.as_raw_fd(),
        report_w: report_w.as_raw_fd(),
        passed,
        passed_len: launch.fds.len(),
        devices,
        devices_len: launch.devices.len(),
        v1_tasks,
        v1_len: v1_files.len(),
        fd_bound: 0,
    };

    // Before the go-ahead: the id maps of its user namespace, and its v2
    // cgroup unless it was made in it (its v1 ones it joins itself). A
    // failure kills it before it runs anything.
    let place = |pid: i32, made_in_cgroup: bool| {
        let placed =
            user.map_or(Ok(()), |map| write_id_maps(pid, map))
                .and_then(|()| match &launch.cgroup_v2 {
                    Some(d) if !made_in_cgroup => {
                        write_file(&d.join("cgroup.procs"), pid.to_string().as_bytes()).map_err(
                            |errno| StartError::Sandbox {
                                step: "join the cgroup",
                                errno,
                            },
                        )
                    }
                    _ => Ok(()),
                });
        if placed.is_err() {
            // SAFETY: kill takes plain integers; `pid` is our unreaped
            // child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return placed;
        }
        // The child now has its death signal set, or will once it reads.
        // The pipe stays open until the child has exec'd (or failed): a
        // child whose ids change sets its death signal again (the kernel
        // clears it with the ids), then sees from this end whether the
        // runner is still there.
        // SAFETY: writing one byte from a valid buffer to a pipe we own.
        unsafe { libc::write(go_w.as_raw_fd(), b"g".as_ptr().cast(), 1) };
        Ok(())
    };
    let flags = launch.namespaces.clone_flags();
    #[cfg(target_arch = "x86_64")]
    let spawned = shared::spawn(flags, cgroup_dir.as_ref(), &args, &place)?;
    #[cfg(not(target_arch = "x86_64"))]
    let spawned = None;
    let (pid, made_in_cgroup, placed) = match spawned {
        Some(spawned) => spawned,
        None => {
            let (pid, made_in_cgroup) = clone_blocking_signals(flags, cgroup_dir.as_ref(), &args)?;
            (pid, made_in_cgroup, place(pid, made_in_cgroup))
        }
    };
    drop((cgroup_dir, v1_files));

    // The child's ends, which the runner must not hold (or it would
    // never see end of file on the report pipe).
    drop((out_w, err_w, go_r, report_w));
    if let Err(e) = placed {
        reap(pid);
        return Err(e);
    }

    let mut report = [0u8; 8];
    let mut got = 0;
    while got < report.len() {
        // SAFETY: reading into the unfilled rest of `report`.
        let n = unsafe {
            libc::read(
                report_r.as_raw_fd(),
                report[got..].as_mut_ptr().cast(),
                report.len() - got,
            )
        };
        match n {
            0 => break,
            n if n > 0 => got += n as usize,
            _ if errno() == libc::EINTR => continue,
            _ => break,
        }
    }
    drop((program_fd, go_w));
    if got == report.len() || probe {
        let status = reap(pid);
        if got == report.len() {
            let step = u32::from_ne_bytes([report[0], report[1], report[2], report[3]]);
            let errno = i32::from_ne_bytes([report[4], report[5], report[6], report[7]]);
            return Err(if step == STEP_EXEC {
                StartError::Exec {
                    program: launch.program.display().to_string(),
                    errno,
                }
            } else {
                StartError::Sandbox {
                    step: STEPS.get(step as usize).copied().unwrap_or("set-up"),
                    errno,
                }
            });
        }
        return match status {
            ExitStatus::Code(0) => Ok(None),
            other => Err(StartError::Sandbox {
                step: "probe",
                errno: if other == ExitStatus::Unknown {
                    libc::ECHILD
                } else {
                    libc::EIO
                },
            }),
        };
    }

    set_nonblocking(&out_r);
    set_nonblocking(&err_r);
    Ok(Some(Child {
        pid,
        pidfd: pidfd_open(pid),
        stdout: Some(out_r),
        stderr: Some(err_r),
        made_in_cgroup,
    }))
}

/// `path` opened with `O_PATH` (close-on-exec): something to exec, not
/// to read.
fn open_path(path: &CString) -> Result<OwnedFd, StartError> {
    // SAFETY: `path` is NUL-terminated; on success the descriptor is new
    // and ours alone.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(StartError::Os {
            what: "open the program",
            errno: errno(),
        });
    }
    // SAFETY: just opened, owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `clone3`'s arguments (`struct clone_args` of linux/sched.h, as of
/// Linux 5.7: `CLONE_ARGS_SIZE_VER2`, 88 bytes). The layout is the
/// kernel's on every architecture: 64-bit fields, 8-byte aligned.
#[repr(C, align(8))]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `CLONE_INTO_CGROUP` (clone3 only; libc's constant is an overflowing
/// `c_int`).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Whether `clone3` with `CLONE_INTO_CGROUP` is worth trying: cleared
/// for good once the kernel says it has neither (ENOSYS, E2BIG).
static CLONE3_INTO_CGROUP: AtomicBool = AtomicBool::new(true);

/// Clone with every signal blocked in the calling thread, so that no
/// handler of the host program runs in the child before it resets them.
/// `flags` are the namespace flags. With `into` (the run's cgroup v2
/// directory) the child is made there by `clone3`; otherwise, or if that
/// fails, by `clone`. Returns the child's pid in the parent, and whether
/// it was made in the cgroup; the child never returns.
fn clone_blocking_signals(
    flags: libc::c_int,
    into: Option<&File>,
    args: &ChildArgs<'_>,
) -> Result<(i32, bool), StartError> {
    // SAFETY: sigfillset/pthread_sigmask on local sets. A raw clone3 or
    // clone without CLONE_VM and without a new stack (clone3's stack and
    // stack_size 0) is fork: the child gets a copy of this thread's
    // stack and memory and continues here with return value 0. It then
    // runs only `child_main`, which makes only async-signal-safe system
    // calls on its arguments (valid in the copy) and never returns.
    // clone3 reads `clone_args` (a local, alive across the call) during
    // the call only, and the directory's descriptor in it, which stays
    // open until the caller drops it after this returns (the child's
    // copy is close-on-exec). clone's arguments are
    // (flags, stack, parent_tid, child_tid, tls) on x86_64 and (flags,
    // stack, parent_tid, tls, child_tid) on aarch64 and riscv64; all but
    // the flags are 0 here, so the order does not matter on either.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let mut made_in_cgroup = false;
        let mut pid = -1;
        if let Some(dir) = into {
            let clone_args = CloneArgs {
                flags: flags as u64 | CLONE_INTO_CGROUP,
                exit_signal: libc::SIGCHLD as u64,
                cgroup: dir.as_raw_fd() as u64,
                ..CloneArgs::default()
            };
            pid = libc::syscall(
                libc::SYS_clone3,
                &clone_args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            );
            if pid == 0 {
                child_main(args);
            }
            if pid > 0 {
                made_in_cgroup = true;
            } else {
                // Whatever the reason, the plain clone is tried next: it
                // gets on where clone3 cannot (ENOSYS: before Linux 5.3,
                // or a seccomp filter such as container runtimes' that
                // makes callers fall back; E2BIG: before 5.7, which has
                // no `cgroup` field; EINVAL, EOPNOTSUPP, EBUSY, EPERM,
                // EACCES: a cgroup clone3 refuses to start a process in,
                // which the write to `cgroup.procs` then reports with
                // its own errno), and where the failure has nothing to
                // do with the cgroup it fails the same way and says so.
                // Only a kernel without the call is remembered.
                if matches!(errno(), libc::ENOSYS | libc::E2BIG) {
                    CLONE3_INTO_CGROUP.store(false, Ordering::Relaxed);
                }
            }
        }
        if !made_in_cgroup {
            pid = libc::syscall(
                libc::SYS_clone,
                (flags | libc::SIGCHLD) as libc::c_long,
                0usize,
                0usize,
                0usize,
                0usize,
            );
            if pid == 0 {
                child_main(args);
            }
        }
        let err = errno();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, ptr::null_mut());
        if pid < 0 {
            return Err(StartError::Os {
                what: "clone",
                errno: err,
            });
        }
        Ok((pid as i32, made_in_cgroup))
    }
}

/// Tell the runner that `step` failed with `errno`, and exit.
///
/// # Safety
/// Only in the child; `fd` is the report pipe.
unsafe fn fail(fd: RawFd, step: u32, errno: i32) -> ! {
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&step.to_ne_bytes());
    msg[4..].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: a write of a local buffer, then _exit (no atexit handlers,
    // no flushing of the parent's copied stdio buffers).
    unsafe {
        libc::write(fd, msg.as_ptr().cast(), msg.len());
        libc::_exit(127)
    }
}

/// The child's side, from the clone to the exec (see the module's
/// documentation for the steps).
///
/// # Safety
/// Only in the child of a fork-like clone, with `args` prepared by
/// `start`. It makes only async-signal-safe calls and never returns.
unsafe fn child_main(args: &ChildArgs<'_>) -> ! {
    // SAFETY: every call below is a system call wrapper taking integers,
    // pointers into `args` (NUL-terminated strings and NULL-terminated
    // arrays built before the clone) or local buffers. None allocates or
    // takes a lock, and nothing here can panic.
    unsafe {
        let e = || *libc::__errno_location();
        // A table of its own before anything else, holding only what the
        // runner lent it: until then every descriptor is the runner's.
        // (Only the report pipe is written if that fails, and exiting
        // closes nothing of a shared table.)
        if args.fd_bound > 0
            && libc::syscall(
                libc::SYS_close_range,
                args.fd_bound,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_UNSHARE,
            ) != 0
        {
            fail(args.report_w, STEP_FDS, e());
        }
        // Above the descriptors that will be passed as 3, 4, …, so
        // placing those never closes it.
        let report = libc::fcntl(args.report_w, libc::F_DUPFD_CLOEXEC, HIGH_FD);
        let report = if report < 0 { args.report_w } else { report };

        // 1. Signals: default actions (handlers do not survive exec, but
        // ignored signals would: Rust ignores SIGPIPE), then unblocked.
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                // Fails for the C library's own signals; harmless.
                libc::sigaction(sig, &dfl, ptr::null_mut());
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, ptr::null_mut());

        // 2. Die with the runner's thread; then make sure it was alive
        // when that was set, and wait until it has mapped the user
        // namespace and placed the cgroups.
        libc::close(args.go_w);
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            fail(report, STEP_PDEATHSIG, e());
        }
        if args.hello_w >= 0 {
            libc::write(args.hello_w, b"h".as_ptr().cast(), 1);
            libc::close(args.hello_w);
        }
        let mut byte = 0u8;
        loop {
            let n = libc::read(args.go_r, (&mut byte as *mut u8).cast(), 1);
            if n == 1 {
                break;
            }
            if n < 0 && e() == libc::EINTR {
                continue;
            }
            libc::_exit(1);
        }
        // Its v1 cgroups, by moving itself (see the module's
        // documentation): before its cgroup namespace is made, whose
        // root is the cgroup it is in then.
        for &fd in args.v1_tasks.iter().take(args.v1_len) {
            if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                fail(report, STEP_CGROUP_V1, e());
            }
            libc::close(fd);
        }

        // 3. Its own session and process group.
        if libc::setsid() < 0 {
            fail(report, STEP_SETSID, e());
        }

        // 4. A cgroup namespace rooted at the cgroup it is in by now;
        // and its ids: a process made in a user namespace keeps the
        // runner's until it sets them to the namespace's root, which is
        // the host id mapped, with no supplementary group of the
        // runner's (a root runner's include the host's root group).
        if args.user && libc::unshare(libc::CLONE_NEWCGROUP) != 0 {
            fail(report, STEP_CGROUPNS, e());
        }
        // The devices, opened with the runner's ids (a device file that
        // only the host's root may open, such as /dev/fuse).
        let mut opened = [-1; MAX_PASSED];
        for (slot, &path) in opened.iter_mut().zip(&args.devices).take(args.devices_len) {
            let fd = libc::open(path, libc::O_RDWR | libc::O_CLOEXEC);
            let high = if fd < 0 {
                fd
            } else {
                libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, HIGH_FD)
            };
            if high < 0 {
                fail(report, STEP_DEVICE, e());
            }
            libc::close(fd);
            *slot = high;
        }
        if args.user {
            // Raw system calls: the C library's wrappers of these set
            // the ids of every thread, by signalling the threads of the
            // copied process, which do not exist here (it would wait for
            // them forever). Refused (EPERM) where the runner is not
            // root: its `setgroups` is denied, and the groups are its own.
            if libc::syscall(libc::SYS_setgroups, 0, ptr::null::<libc::gid_t>()) != 0
                && e() != libc::EPERM
            {
                fail(report, STEP_IDS, e());
            }
            if libc::syscall(libc::SYS_setresgid, 0, 0, 0) != 0
                || libc::syscall(libc::SYS_setresuid, 0, 0, 0) != 0
            {
                fail(report, STEP_IDS, e());
            }
            // The kernel cleared the death signal with the old ids: set
            // it again, then make sure the runner did not die meanwhile
            // (its end of the go-ahead pipe is open until the exec).
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                fail(report, STEP_PDEATHSIG, e());
            }
            let mut pfd = libc::pollfd {
                fd: args.go_r,
                events: libc::POLLIN,
                revents: 0,
            };
            if libc::poll(&mut pfd, 1, 0) != 0 && pfd.revents & libc::POLLHUP != 0 {
                libc::_exit(1);
            }
        }
        libc::close(args.go_r);

        // 5. Mounts: private, and a /proc of its own pid namespace.
        if args.pid_mount {
            if libc::mount(
                ptr::null(),
                c"/".as_ptr(),
                ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                ptr::null(),
            ) != 0
            {
                fail(report, STEP_PRIVATE, e());
            }
            if libc::mount(
                c"proc".as_ptr(),
                c"/proc".as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                ptr::null(),
            ) != 0
            {
                fail(report, STEP_PROC, e());
            }
        }

        if args.probe {
            libc::_exit(0);
        }

        // 6. stdin from /dev/null (opened without close-on-exec: if it
        // lands on 0 already, dup2 leaves the flags as they are),
        // stdout and stderr to the pipes (which are above 2).
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
        if null < 0
            || libc::dup2(null, 0) < 0
            || libc::dup2(args.out_w, 1) < 0
            || libc::dup2(args.err_w, 2) < 0
        {
            fail(report, STEP_STDIO, e());
        }
        if null > 2 {
            libc::close(null);
        }
        if libc::chdir(c"/".as_ptr()) != 0 {
            fail(report, STEP_STDIO, e());
        }
        // The passed descriptors at 3, 4, …: first all of them out of
        // the way (one may sit where another goes), then in place, open
        // across the exec (dup2 clears close-on-exec).
        // The devices opened above are at or above HIGH_FD already.
        let mut high = [-1; MAX_PASSED];
        for (slot, &fd) in high.iter_mut().zip(&args.passed).take(args.passed_len) {
            *slot = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, HIGH_FD);
            if *slot < 0 {
                fail(report, STEP_FDS, e());
            }
        }
        let total = args.passed_len + args.devices_len;
        high[args.passed_len..total].copy_from_slice(&opened[..args.devices_len]);
        for (i, &fd) in high.iter().enumerate().take(total) {
            if libc::dup2(fd, 3 + i as libc::c_int) < 0 {
                fail(report, STEP_FDS, e());
            }
        }
        // Nothing else of the runner's reaches the agent: every other
        // descriptor closes at exec. (ENOSYS before Linux 5.11: then
        // only those opened close-on-exec do, which is all of Rust's.)
        libc::syscall(
            libc::SYS_close_range,
            3 + total as u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );

        // 7. Run it: by its path, or by the runner's descriptor where
        // the path is out of this user's reach.
        libc::execve(args.program.as_ptr(), args.argv, args.envp);
        if e() == libc::EACCES && args.program_fd >= 0 {
            libc::syscall(
                libc::SYS_execveat,
                args.program_fd,
                c"".as_ptr(),
                args.argv,
                args.envp,
                libc::AT_EMPTY_PATH,
            );
        }
        fail(report, STEP_EXEC, e())
    }
}

/// A pidfd for `pid`, or `None` where the kernel has none.
fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags; on success the result is
    // a new descriptor that nothing else owns. `pid` is our unreaped
    // child, so it cannot name another process.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::*;

    #[test]
    fn statuses_read_as_the_tree_writes_them() {
        assert_eq!(ExitStatus::Code(1).to_string(), "code=1");
        assert_eq!(ExitStatus::Signal(libc::SIGKILL).to_string(), "signal=KILL");
        assert_eq!(ExitStatus::Signal(60).to_string(), "signal=60");
        assert!(ExitStatus::Code(0).success());
        assert!(!ExitStatus::Signal(9).success());
    }

    #[test]
    fn a_plain_child_runs_and_its_status_is_read() {
        let env = vec!["PATH=/usr/bin:/bin".to_string()];
        let launch = Launch {
            program: Path::new("/bin/sh"),
            args: &[
                "-c".to_string(),
                "echo out; echo err >&2; exit 3".to_string(),
            ],
            env: &env,
            namespaces: Namespaces::default(),
            cgroup_v2: None,
            cgroup_v1: Vec::new(),
            fds: &[],
            devices: &[],
        };
        let child = spawn(&launch).unwrap();
        assert_eq!(reap(child.pid), ExitStatus::Code(3));
        let mut out = Vec::new();
        read_available(child.stdout.as_ref().unwrap(), 1 << 20, &mut |b| {
            out.extend_from_slice(b)
        });
        assert_eq!(out, b"out\n");
    }

    #[test]
    fn a_child_is_made_in_its_v2_cgroup() {
        let cgroups = crate::cgroup::Cgroups::discover("cell0");
        let (Some(cg), _, _) = cgroups.create(
            &crate::cgroup::run_name("child-test", 0),
            &crate::spec::Limits::default(),
        ) else {
            return; // No cgroups here (not root).
        };
        let Some(v2) = cg.v2_dir() else {
            let _ = cg.remove();
            return; // No cgroup v2 here.
        };
        let launch = Launch {
            program: Path::new("/bin/sh"),
            args: &[
                "-c".to_string(),
                "while read -r l; do echo \"$l\"; done < /proc/self/cgroup".to_string(),
            ],
            env: &[],
            namespaces: Namespaces::default(),
            cgroup_v2: Some(v2.to_path_buf()),
            cgroup_v1: cg.v1_dirs(),
            fds: &[],
            devices: &[],
        };
        let child = spawn(&launch).unwrap();
        let status = reap(child.pid);
        let mut out = Vec::new();
        read_available(child.stdout.as_ref().unwrap(), 1 << 20, &mut |b| {
            out.extend_from_slice(b)
        });
        let _ = cg.remove();
        assert_eq!(status, ExitStatus::Code(0));
        let out = String::from_utf8(out).unwrap();
        let line = out.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
        assert!(
            line.len() > 1 && v2.to_string_lossy().ends_with(line),
            "{out}"
        );
        // clone3 with CLONE_INTO_CGROUP was used, not the slow write to
        // cgroup.procs, unless the kernel (or a seccomp filter) says it
        // has no such call.
        assert!(child.made_in_cgroup || !CLONE3_INTO_CGROUP.load(Ordering::Relaxed));
    }

    #[test]
    fn a_child_has_only_its_own_descriptors() {
        // Descriptors of the runner's, low and high, none of which may
        // reach the child (one of them left open across exec).
        let null = File::open("/dev/null").unwrap();
        let raw = null.as_raw_fd();
        // SAFETY: duplicating a descriptor we own, to a free number.
        let high = unsafe { libc::fcntl(raw, libc::F_DUPFD, 900) };
        assert!(high >= 900);
        let passed = File::open("/dev/zero").unwrap();
        let launch = Launch {
            program: Path::new("/bin/sh"),
            args: &["-c".to_string(), "cd /proc/self/fd && echo *".to_string()],
            env: &[],
            namespaces: Namespaces::default(),
            cgroup_v2: None,
            cgroup_v1: Vec::new(),
            fds: &[passed.as_raw_fd()],
            devices: &[],
        };
        let child = spawn(&launch).unwrap();
        let status = reap(child.pid);
        // SAFETY: closing the duplicate made above.
        unsafe { libc::close(high) };
        let mut out = Vec::new();
        read_available(child.stdout.as_ref().unwrap(), 1 << 20, &mut |b| {
            out.extend_from_slice(b)
        });
        assert_eq!(status, ExitStatus::Code(0));
        // The shell's own: its streams, the one passed, and the
        // directory it lists.
        let fds: Vec<u32> = String::from_utf8(out)
            .unwrap()
            .split_whitespace()
            .map(|f| f.parse().unwrap())
            .collect();
        assert!(fds.starts_with(&[0, 1, 2, 3]), "{fds:?}");
        assert!(fds.len() <= 5 && fds.iter().all(|&f| f < 64), "{fds:?}");
    }

    #[test]
    fn a_missing_program_is_an_exec_error() {
        let launch = Launch {
            program: Path::new("/nonexistent/program"),
            args: &[],
            env: &[],
            namespaces: Namespaces::default(),
            cgroup_v2: None,
            cgroup_v1: Vec::new(),
            fds: &[],
            devices: &[],
        };
        let err = spawn(&launch).unwrap_err();
        assert_eq!(
            err,
            StartError::Exec {
                program: "/nonexistent/program".to_string(),
                errno: libc::ENOENT
            }
        );
    }
}
