//! Making the child without copying the runner's memory: `clone3` with
//! `CLONE_VM | CLONE_VFORK`, the child on a stack of its own (x86_64).
//!
//! A fork-like clone copies the runner's page tables and every one of its
//! memory mappings, and marks its pages copy-on-write for both: its cost
//! grows with the runner, which holds a few threads (each with its stacks)
//! for every running agent's mount. With 200 agents running it took 5 ms
//! of every spawn on the development VM, 1,200 threads and 5,000
//! mappings; sharing the memory takes a few microseconds, whatever the
//! runner's size.
//!
//! The child then runs in the runner's memory while the calling thread
//! is suspended until the child has exec'd or exited (`CLONE_VFORK`),
//! which is how `posix_spawn` does it. So the runner's part between the
//! clone and the child's go-ahead (the id maps of its user namespace)
//! is done by a helper thread, once the child says it is there: the
//! child writes one byte on a pipe, and the helper reads the child's pid
//! where the kernel wrote it before the child ran (`CLONE_PARENT_SETTID`).
//!
//! What the child touches of the shared memory is what it would read in
//! a copy: the [`ChildArgs`] and what they point to, which the suspended
//! caller keeps alive, and its own stack. The C library's `errno` it
//! writes is the calling thread's, which is suspended meanwhile.
//!
//! It shares the runner's descriptor table too (`CLONE_FILES`) until its
//! first call takes a copy of the bottom of it for its own, where the
//! runner has lent it its descriptors (see `slots`): copying the whole
//! table, and closing each of its descriptors at the exec, cost up to
//! 2 ms of every spawn with 1,000 agents running.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use super::slots::Slots;
use super::{CLONE_INTO_CGROUP, ChildArgs, CloneArgs, child_main, errno, pipe};
use crate::error::StartError;

/// The slots children's descriptors are lent to (see `slots`), made at
/// the first spawn; spawns take turns with them.
static SLOTS: std::sync::Mutex<Option<Slots>> = std::sync::Mutex::new(None);

/// The child's stack: its set-up makes only system calls, on small
/// locals; 256 KiB leaves room for the C library's wrappers many times
/// over.
const STACK: usize = 256 << 10;

/// `CLONE_VM` and `CLONE_VFORK` (linux/sched.h).
const SHARED: u64 = (libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PARENT_SETTID) as u64;

/// Whether the kernel lets `clone3` share memory with a child in new
/// namespaces: cleared for good when it refuses (ENOSYS, E2BIG, EINVAL),
/// and the fork-like clone is used from then on.
static WORKS: AtomicBool = AtomicBool::new(true);

/// What [`spawn`] made: the child's pid, whether it was made in its v2
/// cgroup, and how placing it went (`place`'s result; `Ok` when the
/// child ended before it asked, which its report then says).
pub(super) type Spawned = (i32, bool, Result<(), StartError>);

/// Make the child with shared memory, in its v2 cgroup `into` if given;
/// `place(pid, made_in_cgroup)` runs on a helper thread once the child
/// has started, and must end by sending the go-ahead (or killing it).
/// Returns once the child has exec'd or exited; `None` when it could
/// not be made so (the caller makes it the fork-like way).
pub(super) fn spawn(
    flags: libc::c_int,
    into: Option<&File>,
    args: &ChildArgs<'_>,
    place: &(dyn Fn(i32, bool) -> Result<(), StartError> + Sync),
) -> Result<Option<Spawned>, StartError> {
    if !WORKS.load(Ordering::Relaxed) {
        return Ok(None);
    }
    let Some(stack) = Stack::new() else {
        return Ok(None);
    };
    let (hello_r, hello_w) = pipe()?;
    let mut own = *args;
    own.hello_w = hello_w.as_raw_fd();
    // The child shares the descriptor table, and keeps only the slots
    // (see `slots`); where they cannot be had it gets a copy of all.
    let mut slots = SLOTS.lock().unwrap_or_else(|p| p.into_inner());
    if slots.is_none() {
        *slots = Slots::new();
    }
    let mut args = own;
    let mut files = 0;
    if let Some(s) = slots.as_mut() {
        if lend_all(s, &mut args).is_some() {
            args.fd_bound = s.bound;
            files = libc::CLONE_FILES as u64;
        } else {
            s.restore();
            args = own;
        }
    }
    // Written by the kernel before the child runs; read by the helper
    // after the child's byte, so after the write.
    let tid = AtomicI32::new(0);
    let made_in_cgroup = into.is_some();
    let clone_args = CloneArgs {
        flags: flags as u64 | SHARED | files | into.map_or(0, |_| CLONE_INTO_CGROUP),
        parent_tid: tid.as_ptr() as u64,
        exit_signal: libc::SIGCHLD as u64,
        stack: stack.base as u64,
        stack_size: STACK as u64,
        cgroup: into.map_or(0, |d| d.as_raw_fd() as u64),
        ..CloneArgs::default()
    };
    std::thread::scope(|s| {
        let helper = std::thread::Builder::new()
            .name("cell0-spawn".into())
            .spawn_scoped(s, || {
                let mut byte = 0u8;
                loop {
                    // SAFETY: a one-byte read into a local.
                    let n = unsafe { libc::read(hello_r.as_raw_fd(), (&raw mut byte).cast(), 1) };
                    if n == 1 {
                        return Some(place(tid.load(Ordering::SeqCst), made_in_cgroup));
                    }
                    if n < 0 && errno() == libc::EINTR {
                        continue;
                    }
                    // End of file: no child, or one that ended first.
                    return None;
                }
            });
        let Ok(helper) = helper else {
            // The runner's copies go, before the fork-like clone's pipes
            // are waited on.
            if let Some(s) = slots.as_mut() {
                s.restore();
            }
            return Ok(None);
        };
        // SAFETY: `clone_args` and `args` are alive across the call, and
        // the stack until after it (the call returns once the child has
        // exec'd or exited, and with it left the stack); see `clone3`.
        let pid = unsafe { clone3(&clone_args, &args) };
        // The child has its own table by now (or is gone): the runner's
        // copies in the slots go, or its pipes would never end.
        if let Some(s) = slots.as_mut() {
            s.restore();
        }
        drop(slots);
        // The child's copy is closed by now: end of file for a helper
        // still waiting.
        drop(hello_w);
        let placed = helper.join().unwrap_or(None);
        if pid < 0 {
            if matches!(-pid as i32, libc::ENOSYS | libc::E2BIG | libc::EINVAL) {
                WORKS.store(false, Ordering::Relaxed);
            }
            return Ok(None);
        }
        Ok(Some((pid as i32, made_in_cgroup, placed.unwrap_or(Ok(())))))
    })
}

/// Lend every descriptor the child uses to a slot, naming the slots in
/// `args` instead; `None` if they do not all fit.
fn lend_all(slots: &mut Slots, args: &mut ChildArgs<'_>) -> Option<()> {
    for fd in [
        &mut args.go_r,
        &mut args.go_w,
        &mut args.hello_w,
        &mut args.out_w,
        &mut args.err_w,
        &mut args.report_w,
        &mut args.program_fd,
    ] {
        *fd = slots.lend(*fd)?;
    }
    for fd in args.passed.iter_mut().take(args.passed_len) {
        *fd = slots.lend(*fd)?;
    }
    for fd in args.v1_tasks.iter_mut().take(args.v1_len) {
        *fd = slots.lend(*fd)?;
    }
    Some(())
}

/// A mapping the child runs on, with a guard page below it.
struct Stack {
    map: *mut libc::c_void,
    /// The lowest usable address (above the guard page).
    base: *mut u8,
}

impl Stack {
    fn new() -> Option<Stack> {
        let page = 4096;
        // SAFETY: a fresh anonymous mapping; no existing memory is named.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                STACK + page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return None;
        }
        // SAFETY: the first page of the mapping just made.
        unsafe { libc::mprotect(map, page, libc::PROT_NONE) };
        Some(Stack {
            map,
            // SAFETY: within the mapping.
            base: unsafe { map.cast::<u8>().add(page) },
        })
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, used by no one any more.
        unsafe { libc::munmap(self.map, STACK + 4096) };
    }
}

/// Where the child starts, on its own stack.
extern "C" fn child_entry(args: *const libc::c_void) -> ! {
    // SAFETY: `clone3` passes the `ChildArgs` its caller keeps alive.
    unsafe { child_main(&*args.cast::<ChildArgs<'_>>()) }
}

/// `clone3(clone_args)` with every signal blocked in the calling thread
/// (the child resets them before it unblocks them); in the child, which
/// the kernel starts on `clone_args`'s stack, `child_entry(args)`. The
/// pid, or minus the errno.
///
/// # Safety
/// `clone_args` asks for `CLONE_VM | CLONE_VFORK` and a stack that stays
/// mapped until this returns; `args` is valid until then.
unsafe fn clone3(clone_args: &CloneArgs, args: &ChildArgs<'_>) -> libc::c_long {
    let ret: libc::c_long;
    // SAFETY: sigfillset/pthread_sigmask on local sets. The system call
    // returns in the parent like any other (it clobbers rcx and r11 only,
    // and reads `clone_args`); the child starts on the new stack (16-byte
    // aligned, as `call` wants it) with every register as the parent's,
    // so r12 and r13 hold the argument and the entry point; the entry
    // never returns (ud2 is never reached).
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") clone_args as *const CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") (args as *const ChildArgs<'_>).cast::<libc::c_void>(),
            in("r13") child_entry as extern "C" fn(*const libc::c_void) -> !,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        ret
    }
}
