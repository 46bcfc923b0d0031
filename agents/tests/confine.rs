//! The agent's confinement, on real system calls: the seccomp filter
//! ([`Filter`]) and the dropping of capabilities ([`privs::drop_all`]),
//! each applied in a forked child (as the sandbox applies them between
//! fork and exec), which then makes the calls and reports what they
//! returned through a pipe.
//!
//! Every refusal is also tried without the filter, where the call must
//! not return the refusal's errno: so it is the filter that refuses. A
//! call that would change the host if it succeeded is not tried
//! unconfined, or is made so that it cannot: the child has private
//! mount and UTS namespaces and no controlling terminal, clocks are set
//! to what they are, and paths or descriptors are ones that do not
//! exist. These tests need root (the runner's tests run as root).

#![cfg(target_os = "linux")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::CStr;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cell0_agents::privs;
use cell0_agents::seccomp::{DENIED, Filter};

/// Counts allocations, so that a test can show that applying the
/// confinement allocates nothing.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A system call's result as a probe reports it: 0, or its errno.
fn res(r: libc::c_long) -> i32 {
    if r < 0 { errno() } else { 0 }
}

/// The same for a call that returns a descriptor, which is closed.
fn fd_res(r: libc::c_int) -> i32 {
    if r < 0 {
        return errno();
    }
    // SAFETY: closing the descriptor the probe just got.
    unsafe { libc::close(r) };
    0
}

/// How a child is confined before its probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Confine {
    Nothing,
    Filter,
    Drop,
    Both,
}

/// A system call tried in a child: its result, or -errno.
type Probe = fn() -> i32;

/// Run `probes` in a forked child confined by `confine`, in mount and
/// UTS namespaces of its own and a session of its own: what each
/// returned (0 or its errno).
fn in_child(filter: &Filter, confine: Confine, probes: &[fn() -> i32]) -> Vec<i32> {
    let last_cap = privs::last_cap();
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let (r, w) = (fds[0], fds[1]);
    // SAFETY: the child only makes system calls and runs the probes,
    // then leaves by _exit; glibc's fork leaves its allocator usable.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
    if pid == 0 {
        let code =
            std::panic::catch_unwind(|| child(filter, confine, last_cap, probes, w)).unwrap_or(101);
        // SAFETY: ending the child without running the test's exit code.
        unsafe { libc::_exit(code) };
    }
    // SAFETY: closing our copy of the write end.
    unsafe { libc::close(w) };
    let out = read_all(r, pid);
    let status = wait(pid);
    assert_eq!(
        status.code(),
        Some(0),
        "the child failed ({status:?}; code 10: namespaces, 11: private mounts, \
         12: the filter, 13: drop_all) after {} of its {} probes",
        out.len() / 4,
        probes.len()
    );
    assert_eq!(out.len(), probes.len() * 4, "the child's report is short");
    out.chunks(4)
        .map(|c| i32::from_ne_bytes(c.try_into().unwrap()))
        .collect()
}

fn child(
    filter: &Filter,
    confine: Confine,
    last_cap: u32,
    probes: &[fn() -> i32],
    w: libc::c_int,
) -> i32 {
    // SAFETY: plain system calls on constant arguments.
    unsafe {
        // No controlling terminal, for vhangup.
        libc::setsid();
        if libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWUTS) != 0 {
            return 10;
        }
        if libc::mount(
            ptr::null(),
            c"/".as_ptr(),
            ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            ptr::null(),
        ) != 0
        {
            return 11;
        }
    }
    if matches!(confine, Confine::Filter | Confine::Both) && filter.apply().is_err() {
        return 12;
    }
    if matches!(confine, Confine::Drop | Confine::Both) && privs::drop_all(last_cap).is_err() {
        return 13;
    }
    for probe in probes {
        let r = probe().to_ne_bytes();
        // SAFETY: writing a local buffer to our pipe.
        unsafe { libc::write(w, r.as_ptr().cast(), r.len()) };
    }
    0
}

/// Read `fd` to its end, at most 30 s (then `pid` is killed).
fn read_all(fd: libc::c_int, pid: libc::pid_t) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polling one descriptor we own.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as libc::c_int) };
        if n == 0 {
            // SAFETY: killing our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            wait(pid);
            panic!("the child hung");
        }
        let mut buf = [0u8; 4096];
        // SAFETY: reading into a local buffer.
        let got = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if got > 0 {
            out.extend_from_slice(&buf[..got as usize]);
        } else if got == 0 || errno() != libc::EINTR {
            break;
        }
    }
    // SAFETY: closing the read end we own.
    unsafe { libc::close(fd) };
    out
}

fn wait(pid: libc::pid_t) -> std::process::ExitStatus {
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return std::process::ExitStatus::from_raw(status);
        }
        assert_eq!(errno(), libc::EINTR, "waitpid");
    }
}

fn filter() -> Filter {
    Filter::agent().expect("the agent filter")
}

/// One refused call: how it is made, what it returns under the filter,
/// and whether it is also made without the filter.
struct Refused {
    /// The call's name in [`DENIED`].
    name: &'static str,
    /// What is tried, for messages.
    what: &'static str,
    call: fn() -> i32,
    errno: i32,
    /// Also tried without the filter (where it must not return `errno`).
    control: bool,
}

/// The capability `capabilities(7)` numbers 21.
const CAP_SYS_ADMIN: u32 = 21;

const NOWHERE: &CStr = c"/nonexistent-cell0-confine";
/// Where the tmpfs is mounted: in the child's own mount namespace.
const MOUNT_POINT: &CStr = c"/tmp";

fn mount_tmpfs() -> i32 {
    // SAFETY: mount with constant strings.
    res(unsafe {
        libc::mount(
            c"cell0-confine".as_ptr(),
            MOUNT_POINT.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            c"size=1m".as_ptr().cast(),
        )
    } as libc::c_long)
}

fn hostname() -> [u8; 65] {
    let mut name = [0u8; 65];
    // SAFETY: gethostname writes at most `len` bytes into `name`.
    unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len() - 1) };
    name
}

fn now(clock: libc::clockid_t) -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into `ts`.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts
}

/// `clone(flags)` with `CLONE_THREAD` but not `CLONE_SIGHAND`, which the
/// kernel refuses (EINVAL) before it makes anything.
fn clone_invalid(flags: libc::c_int) -> i32 {
    // SAFETY: a clone the kernel refuses; should it ever not, the new
    // process ends at once.
    let r = unsafe { libc::syscall(libc::SYS_clone, flags | libc::CLONE_THREAD, 0, 0, 0, 0) };
    if r == 0 {
        unsafe { libc::_exit(0) };
    }
    res(r)
}

/// `unshare(flags)` in a forked child (so that nothing else of this one
/// changes): 0 or its errno.
fn unshare_in_child(flags: libc::c_int) -> i32 {
    // SAFETY: the child makes one system call and exits.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            let r = libc::unshare(flags);
            libc::_exit(if r == 0 { 0 } else { errno() });
        }
        if pid < 0 {
            return 1000 + errno();
        }
        wait(pid).code().unwrap_or(1000)
    }
}

fn socket(domain: libc::c_int, ty: libc::c_int, protocol: libc::c_int) -> i32 {
    // SAFETY: socket takes integers.
    fd_res(unsafe { libc::socket(domain, ty, protocol) })
}

fn timex() -> libc::timex {
    // SAFETY: timex is plain data; modes 0 reads and changes nothing.
    unsafe { std::mem::zeroed() }
}

// SAFETY (for every probe below): system calls whose pointer arguments
// are null, constant strings or locals that outlive the call.
const REFUSED: &[Refused] = &[
    Refused {
        name: "mount",
        what: "mount a tmpfs",
        call: mount_tmpfs,
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "umount2",
        what: "unmount that tmpfs",
        call: || res(unsafe { libc::umount2(MOUNT_POINT.as_ptr(), 0) } as libc::c_long),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "pivot_root",
        what: "pivot_root to a missing directory",
        call: || {
            res(unsafe { libc::syscall(libc::SYS_pivot_root, NOWHERE.as_ptr(), NOWHERE.as_ptr()) })
        },
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "chroot",
        what: "chroot to a missing directory",
        call: || res(unsafe { libc::chroot(NOWHERE.as_ptr()) } as libc::c_long),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "move_mount",
        what: "move_mount of nothing",
        call: || {
            res(unsafe {
                libc::syscall(libc::SYS_move_mount, -1, c"".as_ptr(), -1, c"".as_ptr(), 0)
            })
        },
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "open_tree",
        what: "open_tree of a missing path",
        call: || res(unsafe { libc::syscall(libc::SYS_open_tree, -1, NOWHERE.as_ptr(), 0) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "open_tree_attr",
        what: "open_tree_attr of a missing path",
        call: || res(unsafe { libc::syscall(467, -1, NOWHERE.as_ptr(), 0, 0, 0) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "fsopen",
        what: "fsopen of an unknown file system",
        call: || res(unsafe { libc::syscall(libc::SYS_fsopen, c"cell0-none".as_ptr(), 0) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "fsconfig",
        what: "fsconfig of no descriptor",
        call: || res(unsafe { libc::syscall(libc::SYS_fsconfig, -1, 0, 0, 0, 0) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "fsmount",
        what: "fsmount of no descriptor",
        call: || res(unsafe { libc::syscall(libc::SYS_fsmount, -1, 0, 0) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "fspick",
        what: "fspick of a missing path",
        call: || res(unsafe { libc::syscall(libc::SYS_fspick, -1, NOWHERE.as_ptr(), 0) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "mount_setattr",
        what: "mount_setattr of a missing path",
        call: || {
            res(unsafe { libc::syscall(libc::SYS_mount_setattr, -1, NOWHERE.as_ptr(), 0, 0, 0) })
        },
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "unshare",
        what: "unshare(CLONE_NEWUSER) in a forked child",
        call: || unshare_in_child(libc::CLONE_NEWUSER),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "unshare",
        what: "unshare(CLONE_NEWNET) in a forked child",
        call: || unshare_in_child(libc::CLONE_NEWNET),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "setns",
        what: "setns into its own UTS namespace",
        call: || unsafe {
            let fd = libc::open(
                c"/proc/self/ns/uts".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            );
            if fd < 0 {
                return 1000 + errno();
            }
            let r = res(libc::setns(fd, libc::CLONE_NEWUTS) as libc::c_long);
            libc::close(fd);
            r
        },
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "clone",
        what: "clone(CLONE_NEWUSER)",
        call: || clone_invalid(libc::CLONE_NEWUSER),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "clone",
        what: "clone(CLONE_NEWNS)",
        call: || clone_invalid(libc::CLONE_NEWNS),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "clone",
        what: "clone(CLONE_NEWPID)",
        call: || clone_invalid(libc::CLONE_NEWPID),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "clone",
        what: "clone(CLONE_NEWNET)",
        call: || clone_invalid(libc::CLONE_NEWNET),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "clone",
        what: "clone(CLONE_NEWUTS)",
        call: || clone_invalid(libc::CLONE_NEWUTS),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "clone",
        what: "clone(CLONE_NEWIPC)",
        call: || clone_invalid(libc::CLONE_NEWIPC),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "clone",
        what: "clone(CLONE_NEWCGROUP)",
        call: || clone_invalid(libc::CLONE_NEWCGROUP),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "clone",
        what: "clone(CLONE_NEWTIME)",
        call: || clone_invalid(0x80),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "clone3",
        what: "clone3 (ENOSYS, so that the C library falls back to clone)",
        call: || res(unsafe { libc::syscall(libc::SYS_clone3, ptr::null::<u8>(), 0) }),
        errno: libc::ENOSYS,
        control: true,
    },
    Refused {
        name: "ptrace",
        what: "ptrace(PTRACE_TRACEME)",
        call: || res(unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) }),
        errno: libc::EPERM,
        control: false,
    },
    Refused {
        name: "ptrace",
        what: "ptrace(PTRACE_PEEKDATA) of the parent, which it does not trace",
        call: || res(unsafe { libc::ptrace(libc::PTRACE_PEEKDATA, libc::getppid(), 0, 0) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "process_vm_readv",
        what: "process_vm_readv of nothing from itself",
        call: || {
            res(
                unsafe { libc::process_vm_readv(libc::getpid(), ptr::null(), 0, ptr::null(), 0, 0) }
                    as libc::c_long,
            )
        },
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "process_vm_writev",
        what: "process_vm_writev of nothing to itself",
        call: || {
            res(unsafe {
                libc::process_vm_writev(libc::getpid(), ptr::null(), 0, ptr::null(), 0, 0)
            } as libc::c_long)
        },
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "process_madvise",
        what: "process_madvise of no pidfd",
        call: || res(unsafe { libc::syscall(libc::SYS_process_madvise, -1, 0, 0, 0, 0) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "pidfd_getfd",
        what: "pidfd_getfd of no pidfd",
        call: || res(unsafe { libc::syscall(libc::SYS_pidfd_getfd, -1, 0, 0) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "init_module",
        what: "init_module of nothing",
        call: || res(unsafe { libc::syscall(libc::SYS_init_module, 0, 0, c"".as_ptr()) }),
        errno: libc::EPERM,
        control: false,
    },
    Refused {
        name: "finit_module",
        what: "finit_module of no descriptor",
        call: || res(unsafe { libc::syscall(libc::SYS_finit_module, -1, c"".as_ptr(), 0) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "delete_module",
        what: "delete_module of a module that is not loaded",
        call: || {
            res(unsafe {
                libc::syscall(
                    libc::SYS_delete_module,
                    c"cell0_confine_none".as_ptr(),
                    libc::O_NONBLOCK,
                )
            })
        },
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "kexec_load",
        what: "kexec_load of too many segments",
        call: || res(unsafe { libc::syscall(libc::SYS_kexec_load, 0, 1000, 0, 0) }),
        errno: libc::EPERM,
        control: false,
    },
    Refused {
        name: "kexec_file_load",
        what: "kexec_file_load of no descriptor",
        call: || res(unsafe { libc::syscall(libc::SYS_kexec_file_load, -1, -1, 0, 0, 0) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "bpf",
        what: "bpf with an unknown command",
        call: || res(unsafe { libc::syscall(libc::SYS_bpf, 0xfff, 0, 0) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "perf_event_open",
        what: "perf_event_open of no attributes",
        call: || res(unsafe { libc::syscall(libc::SYS_perf_event_open, 0, 0, -1, -1, 0) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "io_uring_setup",
        what: "io_uring_setup with no parameters",
        call: || res(unsafe { libc::syscall(libc::SYS_io_uring_setup, 0, 0) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "io_uring_enter",
        what: "io_uring_enter of no ring",
        call: || res(unsafe { libc::syscall(libc::SYS_io_uring_enter, -1, 0, 0, 0, 0, 0) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "io_uring_register",
        what: "io_uring_register of no ring",
        call: || res(unsafe { libc::syscall(libc::SYS_io_uring_register, -1, 0, 0, 0) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "keyctl",
        what: "keyctl with an unknown operation",
        call: || res(unsafe { libc::syscall(libc::SYS_keyctl, 0xdead, 0, 0, 0, 0) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "add_key",
        what: "add_key of nothing",
        call: || res(unsafe { libc::syscall(libc::SYS_add_key, 0, 0, 0, 0, 0) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "request_key",
        what: "request_key of nothing",
        call: || res(unsafe { libc::syscall(libc::SYS_request_key, 0, 0, 0, 0) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "clock_settime",
        what: "clock_settime(CLOCK_REALTIME) to the current time",
        call: || {
            let ts = now(libc::CLOCK_REALTIME);
            res(unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } as libc::c_long)
        },
        errno: libc::EPERM,
        control: false,
    },
    Refused {
        name: "clock_settime",
        what: "clock_settime(CLOCK_MONOTONIC), which no one may set",
        call: || {
            let ts = now(libc::CLOCK_MONOTONIC);
            res(unsafe { libc::clock_settime(libc::CLOCK_MONOTONIC, &ts) } as libc::c_long)
        },
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "clock_adjtime",
        what: "clock_adjtime that only reads",
        call: || {
            let mut t = timex();
            res(unsafe { libc::clock_adjtime(libc::CLOCK_REALTIME, &mut t) } as libc::c_long)
        },
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "settimeofday",
        what: "settimeofday of nothing",
        call: || res(unsafe { libc::syscall(libc::SYS_settimeofday, 0, 0) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "adjtimex",
        what: "adjtimex that only reads",
        call: || {
            let mut t = timex();
            res(unsafe { libc::adjtimex(&mut t) } as libc::c_long)
        },
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "sethostname",
        what: "sethostname to its own name",
        call: || {
            let name = hostname();
            let len = name.iter().position(|&b| b == 0).unwrap_or(64);
            res(unsafe { libc::sethostname(name.as_ptr().cast(), len) } as libc::c_long)
        },
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "setdomainname",
        what: "setdomainname to its own name",
        call: || {
            let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
            unsafe { libc::uname(&mut uts) };
            let name = uts.domainname;
            let len = name.iter().position(|&b| b == 0).unwrap_or(64);
            res(unsafe { libc::setdomainname(name.as_ptr(), len) } as libc::c_long)
        },
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "swapon",
        what: "swapon of a missing file",
        call: || res(unsafe { libc::syscall(libc::SYS_swapon, NOWHERE.as_ptr(), 0) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "swapoff",
        what: "swapoff of a missing file",
        call: || res(unsafe { libc::syscall(libc::SYS_swapoff, NOWHERE.as_ptr()) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "reboot",
        what: "reboot with wrong magic numbers",
        call: || res(unsafe { libc::syscall(libc::SYS_reboot, 0, 0, 0, 0) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "acct",
        what: "acct to a missing file",
        call: || res(unsafe { libc::acct(NOWHERE.as_ptr()) } as libc::c_long),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "quotactl",
        what: "quotactl of nothing",
        call: || res(unsafe { libc::syscall(libc::SYS_quotactl, 0, 0, 0, 0) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "quotactl_fd",
        what: "quotactl_fd of no descriptor",
        call: || res(unsafe { libc::syscall(libc::SYS_quotactl_fd, -1, 0, 0, 0) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "syslog",
        what: "syslog's size of the kernel log",
        call: || res(unsafe { libc::syscall(libc::SYS_syslog, 10, 0, 0) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "vhangup",
        what: "vhangup without a terminal",
        call: || res(unsafe { libc::syscall(libc::SYS_vhangup) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "lookup_dcookie",
        what: "lookup_dcookie of nothing",
        call: || res(unsafe { libc::syscall(libc::SYS_lookup_dcookie, 0, 0, 0) }),
        errno: libc::EPERM,
        control: true,
    },
    #[cfg(target_arch = "x86_64")]
    Refused {
        name: "iopl",
        what: "iopl(0)",
        call: || res(unsafe { libc::syscall(libc::SYS_iopl, 0) }),
        errno: libc::EPERM,
        control: true,
    },
    #[cfg(target_arch = "x86_64")]
    Refused {
        name: "ioperm",
        what: "ioperm of no port",
        call: || res(unsafe { libc::syscall(libc::SYS_ioperm, 0, 0, 0) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "open_by_handle_at",
        what: "open_by_handle_at of no handle",
        call: || res(unsafe { libc::syscall(libc::SYS_open_by_handle_at, -1, 0, 0) }),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "name_to_handle_at",
        what: "name_to_handle_at of a missing path",
        call: || {
            res(unsafe {
                libc::syscall(libc::SYS_name_to_handle_at, -1, NOWHERE.as_ptr(), 0, 0, 0)
            })
        },
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "userfaultfd",
        what: "userfaultfd",
        call: || {
            fd_res(unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) } as libc::c_int)
        },
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "socket",
        what: "socket(AF_PACKET, SOCK_RAW)",
        call: || socket(libc::AF_PACKET, libc::SOCK_RAW, 0),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "socket",
        what: "socket(AF_PACKET, SOCK_DGRAM)",
        call: || socket(libc::AF_PACKET, libc::SOCK_DGRAM, 0),
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "socket",
        what: "socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP)",
        call: || {
            socket(
                libc::AF_INET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::IPPROTO_ICMP,
            )
        },
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "socket",
        what: "socket(AF_INET, SOCK_PACKET)",
        call: || {
            socket(
                libc::AF_INET,
                10,
                (libc::ETH_P_ALL as u16).to_be() as libc::c_int,
            )
        },
        errno: libc::EPERM,
        control: true,
    },
    Refused {
        name: "personality",
        what: "personality(ADDR_NO_RANDOMIZE)",
        call: || {
            res(
                unsafe { libc::personality(libc::ADDR_NO_RANDOMIZE as libc::c_ulong) }
                    as libc::c_long,
            )
        },
        errno: libc::EPERM,
        control: true,
    },
    #[cfg(target_arch = "x86_64")]
    Refused {
        name: "mount",
        what: "mount by its x32 number",
        call: || {
            res(unsafe {
                libc::syscall(
                    0x4000_0000 | libc::SYS_mount,
                    c"cell0-confine".as_ptr(),
                    NOWHERE.as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    0,
                )
            })
        },
        errno: libc::EPERM,
        control: true,
    },
];

#[test]
fn every_denied_call_is_refused_by_the_filter_and_not_without_it() {
    let filter = filter();
    // Every name of DENIED that this architecture has is tried.
    for d in DENIED {
        let here = cfg!(target_arch = "x86_64") || !matches!(d.name, "iopl" | "ioperm");
        assert_eq!(
            REFUSED.iter().any(|r| r.name == d.name),
            here,
            "{}: no probe",
            d.name
        );
        if let Some(r) = REFUSED.iter().find(|r| r.name == d.name) {
            assert_eq!(r.errno, d.errno, "{}", d.name);
        }
    }

    for r in REFUSED {
        assert!(
            DENIED.iter().any(|d| d.name == r.name),
            "{}: not denied",
            r.name
        );
    }

    let calls: Vec<fn() -> i32> = REFUSED.iter().map(|r| r.call).collect();
    let confined = in_child(&filter, Confine::Filter, &calls);
    let controls: Vec<fn() -> i32> = REFUSED
        .iter()
        .filter(|r| r.control)
        .map(|r| r.call)
        .collect();
    let free = in_child(&filter, Confine::Nothing, &controls);

    let mut wrong = Vec::new();
    for (r, got) in REFUSED.iter().zip(&confined) {
        if *got != r.errno {
            wrong.push(format!(
                "{}: {} under the filter (wanted {})",
                r.what, got, r.errno
            ));
        }
    }
    for (r, got) in REFUSED.iter().filter(|r| r.control).zip(&free) {
        if *got == r.errno {
            wrong.push(format!("{}: {} without the filter too", r.what, got));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_controls_that_succeed_without_the_filter_do() {
    // The calls a root process may make: without the filter they work,
    // so the refusals above are the filter's, not a lack of privilege.
    let succeed = [
        "mount a tmpfs",
        "unmount that tmpfs",
        "unshare(CLONE_NEWUSER) in a forked child",
        "setns into its own UTS namespace",
        "sethostname to its own name",
        "socket(AF_PACKET, SOCK_RAW)",
        "socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP)",
        "personality(ADDR_NO_RANDOMIZE)",
        "process_vm_readv of nothing from itself",
        "settimeofday of nothing",
    ];
    let probes: Vec<&Refused> = succeed
        .iter()
        .map(|w| REFUSED.iter().find(|r| r.what == *w).expect(w))
        .collect();
    let calls: Vec<fn() -> i32> = probes.iter().map(|r| r.call).collect();
    let got = in_child(&filter(), Confine::Nothing, &calls);
    for (r, got) in probes.iter().zip(got) {
        assert_eq!(got, 0, "{} without the filter", r.what);
    }
}

#[test]
fn threads_processes_and_ordinary_sockets_still_work_under_the_filter() {
    let probes: [(&str, Probe); 9] = [
        ("socket(AF_INET, SOCK_STREAM)", || {
            socket(libc::AF_INET, libc::SOCK_STREAM, 0)
        }),
        ("socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK)", || {
            socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK, 0)
        }),
        ("socket(AF_UNIX, SOCK_STREAM)", || {
            socket(libc::AF_UNIX, libc::SOCK_STREAM, 0)
        }),
        ("personality query", || {
            res(unsafe { libc::personality(0xffff_ffff) } as libc::c_long)
        }),
        ("clone3 gives ENOSYS", || {
            let r = res(unsafe { libc::syscall(libc::SYS_clone3, ptr::null::<u8>(), 0) });
            if r == libc::ENOSYS { 0 } else { 2000 + r }
        }),
        // glibc's pthread_create tries clone3 first, then clone.
        ("a thread", || match std::thread::spawn(|| 7).join() {
            Ok(7) => 0,
            _ => 1,
        }),
        ("fork", || unsafe {
            let pid = libc::fork();
            if pid == 0 {
                libc::_exit(0);
            }
            if pid < 0 {
                return errno();
            }
            wait(pid).code().map_or(1, |c| c)
        }),
        // posix_spawn, as std runs programs: clone3, then clone(CLONE_VM
        // | CLONE_VFORK).
        ("spawn /bin/true", || {
            match Command::new("/bin/true").status() {
                Ok(s) if s.success() => 0,
                Ok(_) => 1,
                Err(e) => e.raw_os_error().unwrap_or(1),
            }
        }),
        ("a thread after the other probes", || {
            std::thread::scope(|s| s.spawn(|| 0).join().unwrap_or(1))
        }),
    ];
    let calls: Vec<fn() -> i32> = probes.iter().map(|p| p.1).collect();
    let got = in_child(&filter(), Confine::Both, &calls);
    for ((what, _), got) in probes.iter().zip(got) {
        assert_eq!(got, 0, "{what} under the filter and drop_all");
    }
}

/// Run `/bin/sh -c script` (as uid 0), confined by `confine` between
/// fork and exec: its standard output.
fn sh(confine: Confine, script: &str) -> String {
    let filter = filter();
    let last_cap = privs::last_cap();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", script]);
    // SAFETY: the hook only applies the prepared filter and drops
    // privileges, neither of which allocates, locks or panics.
    unsafe {
        cmd.pre_exec(move || {
            if matches!(confine, Confine::Filter | Confine::Both) {
                filter.apply()?;
            }
            if matches!(confine, Confine::Drop | Confine::Both) {
                privs::drop_all(last_cap)?;
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run /bin/sh");
    assert!(
        out.status.success(),
        "{script}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The fields of `/proc/self/status` a confined shell reports.
fn status_fields(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn a_root_exec_after_drop_all_has_no_capability_and_the_filter() {
    let script = "grep -E '^(Uid|Cap[A-Za-z]+|NoNewPrivs|Seccomp):' /proc/self/status";
    let confined = status_fields(&sh(Confine::Both, script));
    let zero = "0000000000000000";
    assert!(confined["Uid"].starts_with("0\t"), "{confined:?}");
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(confined[cap], zero, "{cap}: {confined:?}");
    }
    assert_eq!(confined["NoNewPrivs"], "1");
    assert_eq!(confined["Seccomp"], "2");

    // The same shell without: root with its capabilities.
    let free = status_fields(&sh(Confine::Nothing, script));
    assert!(free["Uid"].starts_with("0\t"), "{free:?}");
    for cap in ["CapPrm", "CapEff", "CapBnd"] {
        assert_ne!(free[cap], zero, "{cap}: {free:?}");
    }
    assert_eq!(free["NoNewPrivs"], "0");

    // drop_all alone: no filter, every capability gone.
    let dropped = status_fields(&sh(Confine::Drop, script));
    assert_eq!(dropped["CapEff"], zero);
    assert_eq!(dropped["CapBnd"], zero);
    assert_eq!(dropped["NoNewPrivs"], "1");
    assert_eq!(dropped["Seccomp"], "0");
}

#[test]
fn drop_all_alone_refuses_what_needs_a_capability_and_cannot_be_undone() {
    let probes: [(&str, Probe); 7] = [
        ("mount a tmpfs", mount_tmpfs),
        ("socket(AF_PACKET, SOCK_RAW)", || {
            socket(libc::AF_PACKET, libc::SOCK_RAW, 0)
        }),
        ("sethostname", || {
            let name = hostname();
            let len = name.iter().position(|&b| b == 0).unwrap_or(64);
            res(unsafe { libc::sethostname(name.as_ptr().cast(), len) } as libc::c_long)
        }),
        ("capset raising CAP_SYS_ADMIN", || {
            // Version 3 header, then effective, permitted, inheritable
            // for capabilities 0-31 and 32-63.
            let mut header = [0x2008_0522u32, 0];
            let mut sets = [[0u32; 3]; 2];
            if unsafe { libc::syscall(libc::SYS_capget, header.as_mut_ptr(), sets.as_mut_ptr()) }
                < 0
            {
                return 1000 + errno();
            }
            let admin = 1 << CAP_SYS_ADMIN;
            sets[0][0] |= admin;
            sets[0][1] |= admin;
            res(unsafe { libc::syscall(libc::SYS_capset, header.as_mut_ptr(), sets.as_ptr()) })
        }),
        ("raise an ambient capability", || {
            res(unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    CAP_SYS_ADMIN as libc::c_ulong,
                    0,
                    0,
                )
            } as libc::c_long)
        }),
        ("unlock the securebits", || {
            res(unsafe { libc::prctl(libc::PR_SET_SECUREBITS, 0, 0, 0, 0) } as libc::c_long)
        }),
        ("clear no_new_privs", || {
            res(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 0, 0, 0, 0) } as libc::c_long)
        }),
    ];
    let calls: Vec<fn() -> i32> = probes.iter().map(|p| p.1).collect();
    let got = in_child(&filter(), Confine::Drop, &calls);
    for ((what, _), got) in probes.iter().zip(&got) {
        // EINVAL for no_new_privs: it cannot be cleared at all.
        assert!(
            [libc::EPERM, libc::EINVAL].contains(got),
            "{what} after drop_all: {got}"
        );
    }
    // The same with every capability: these work.
    let free = in_child(&filter(), Confine::Nothing, &calls[..4]);
    assert_eq!(
        free,
        [0; 4],
        "{:?}",
        &probes[..4].iter().map(|p| p.0).collect::<Vec<_>>()
    );

    // A second drop_all (nothing left to drop) succeeds.
    let again = in_child(
        &filter(),
        Confine::Drop,
        &[|| match privs::drop_all(privs::last_cap()) {
            Ok(()) => 0,
            Err(e) => e.raw_os_error().unwrap_or(1),
        }],
    );
    assert_eq!(again, [0]);
}

#[test]
fn applying_the_filter_and_dropping_privileges_allocate_nothing() {
    let filter = filter();
    let last_cap = privs::last_cap();
    let mut cmd = Command::new("/bin/true");
    // SAFETY: between fork and exec only atomics are read, plus the
    // one allocation that shows the count works here.
    unsafe {
        cmd.pre_exec(move || {
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            std::hint::black_box(Box::new(1u8));
            if ALLOCATIONS.load(Ordering::Relaxed) == before {
                return Err(io::Error::from_raw_os_error(libc::EPROTO));
            }
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            filter.apply()?;
            privs::drop_all(last_cap)?;
            if ALLOCATIONS.load(Ordering::Relaxed) != before {
                return Err(io::Error::from_raw_os_error(libc::ENOTRECOVERABLE));
            }
            Ok(())
        });
    }
    // EPROTO: the count does not work; ENOTRECOVERABLE: one allocated.
    let status = cmd.status().expect("the confinement allocated, or failed");
    assert!(status.success());
}

#[test]
fn apply_all_threads_reaches_the_other_threads_and_apply_does_not() {
    fn other_thread_sethostname(all: bool) -> i32 {
        let filter = filter();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            if wait.recv().is_err() {
                return 3000;
            }
            let name = hostname();
            let len = name.iter().position(|&b| b == 0).unwrap_or(64);
            res(unsafe { libc::sethostname(name.as_ptr().cast(), len) } as libc::c_long)
        });
        let applied = if all {
            filter.apply_all_threads()
        } else {
            filter.apply()
        };
        if let Err(e) = applied {
            return 4000 + e.raw_os_error().unwrap_or(0);
        }
        let _ = go.send(());
        thread.join().unwrap_or(5000)
    }
    let all = in_child(
        &filter(),
        Confine::Nothing,
        &[|| other_thread_sethostname(true)],
    );
    assert_eq!(all, [libc::EPERM], "apply_all_threads: the other thread");
    let control = in_child(
        &filter(),
        Confine::Nothing,
        &[|| other_thread_sethostname(false)],
    );
    assert_eq!(control, [0], "apply: the other thread is not filtered");
}

/// A 32-bit system call (`int 0x80`) is another architecture to the
/// filter: the process ends (SIGSYS).
#[cfg(target_arch = "x86_64")]
#[test]
fn a_32_bit_system_call_ends_the_process() {
    fn getpid_32() -> i32 {
        let ret: i32;
        // SAFETY: the i386 getpid (20) takes no argument and touches no
        // memory.
        unsafe {
            std::arch::asm!(
                "int 0x80",
                inlateout("eax") 20 => ret,
                out("r8") _, out("r9") _, out("r10") _, out("r11") _,
                options(nostack),
            );
        }
        if ret > 0 { 0 } else { -ret }
    }
    let filter = filter();
    let run = |confine| {
        // SAFETY: the child makes the call and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            if confine == Confine::Filter && filter.apply().is_err() {
                unsafe { libc::_exit(12) };
            }
            unsafe { libc::_exit(getpid_32()) };
        }
        wait(pid)
    };
    assert_eq!(
        run(Confine::Nothing).code(),
        Some(0),
        "int 0x80 getpid without the filter"
    );
    assert_eq!(run(Confine::Filter).signal(), Some(libc::SIGSYS));
}
