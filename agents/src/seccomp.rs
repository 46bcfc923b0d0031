//! The system-call filter an agent's program runs under (seccomp-bpf,
//! compiled by the `seccompiler` crate): it refuses the calls that let a
//! process change its sandbox, reach into other processes or change the
//! host, and allows everything else.
//!
//! It allows by default because an agent may run any program: a list of
//! allowed calls would break programs nobody tested. The namespaces and
//! the dropped capabilities ([`crate::privs`]) are what confine an agent;
//! the filter takes away the kernel interfaces that a root of a user
//! namespace may still reach, and that have been the way out of
//! sandboxes before. [`DENIED`] lists what it refuses, and why in words
//! a manual can show.
//!
//! A refused call returns `EPERM`, as it would for a process without the
//! capability, except `clone3`, which returns `ENOSYS`: its flags are
//! behind a pointer that a filter cannot read, and on `ENOSYS` the C
//! library falls back to `clone`, whose flags the filter does read.
//! `seccompiler` gives one action per program, so the filter is two
//! programs, one per errno, installed one after the other; the kernel
//! runs both and the refusal wins.
//!
//! Architectures: the programs are built for the one this runs on
//! (x86_64 or aarch64; elsewhere [`Filter::agent`] says so). A call made
//! under another architecture's convention (32-bit `int 0x80` on x86_64)
//! ends the process: that is `seccompiler`'s check of the audit
//! architecture. The x32 convention of x86_64 has the same architecture
//! and numbers with bit 30 set, so every refused call is refused under
//! its x32 number too; the kernel runs the filter before it looks at the
//! number, so this holds whether or not the kernel has x32 at all.
//!
//! Applying it must work between `fork` and `exec` of a multi-threaded
//! program: everything is compiled by [`Filter::agent`] beforehand, and
//! [`Filter::apply`] only makes system calls on it.

use std::collections::BTreeMap;
use std::fmt;
use std::io;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// One system call the filter refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Denied {
    /// The call's name, as its manual page has it.
    pub name: &'static str,
    /// The error it returns (`EPERM`, or `ENOSYS` for `clone3`).
    pub errno: i32,
    /// Which of its uses are refused.
    args: Args,
}

impl Denied {
    /// Which uses are refused, in words (`None`: every use).
    pub fn when(&self) -> Option<&'static str> {
        match self.args {
            Args::Any => None,
            Args::RawOrPacketSocket => {
                Some("domain AF_PACKET, or type SOCK_RAW or SOCK_PACKET (raw and packet sockets)")
            }
            Args::NewNamespace => Some("with a CLONE_NEW* flag (a new namespace)"),
            Args::OtherPersona => Some(
                "with a persona other than PER_LINUX, PER_LINUX32, UNAME26 or the query 0xffffffff",
            ),
        }
    }
}

/// The arguments a rule looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Args {
    /// None: the call is refused whatever they are.
    Any,
    /// `socket(domain, type, protocol)`.
    RawOrPacketSocket,
    /// `clone(flags, ...)`: flags are the first argument on x86_64 and
    /// aarch64 alike.
    NewNamespace,
    /// `personality(persona)`.
    OtherPersona,
}

const fn eperm(name: &'static str) -> Denied {
    Denied {
        name,
        errno: libc::EPERM,
        args: Args::Any,
    }
}

const fn eperm_if(name: &'static str, args: Args) -> Denied {
    Denied {
        name,
        errno: libc::EPERM,
        args,
    }
}

/// Every system call the agent filter refuses. A name the running
/// architecture has no such call for (`iopl` on aarch64) is left out of
/// its filter: the call cannot be made there at all.
pub const DENIED: &[Denied] = &[
    // Mounts: the sandbox's root, its read-only binds and its /proc are
    // mounts, and so is everything that would hide or reveal the host's.
    eperm("mount"),
    eperm("umount2"),
    eperm("pivot_root"),
    eperm("chroot"),
    eperm("move_mount"),
    eperm("open_tree"),
    eperm("open_tree_attr"),
    eperm("fsopen"),
    eperm("fsconfig"),
    eperm("fsmount"),
    eperm("fspick"),
    eperm("mount_setattr"),
    // Namespaces: a new user namespace gives back every capability (in
    // it), and with it the rest of the kernel's surface; entering one
    // leaves the sandbox.
    eperm("unshare"),
    eperm("setns"),
    eperm_if("clone", Args::NewNamespace),
    Denied {
        name: "clone3",
        errno: libc::ENOSYS,
        args: Args::Any,
    },
    // Other processes' memory and descriptors.
    eperm("ptrace"),
    eperm("process_vm_readv"),
    eperm("process_vm_writev"),
    eperm("process_madvise"),
    eperm("pidfd_getfd"),
    // Code in the kernel, and its observability interfaces.
    eperm("init_module"),
    eperm("finit_module"),
    eperm("delete_module"),
    eperm("kexec_load"),
    eperm("kexec_file_load"),
    eperm("bpf"),
    eperm("perf_event_open"),
    // io_uring runs operations (sockets among them) that no seccomp
    // filter sees.
    eperm("io_uring_setup"),
    eperm("io_uring_enter"),
    eperm("io_uring_register"),
    // The kernel's keyrings are shared across namespaces.
    eperm("keyctl"),
    eperm("add_key"),
    eperm("request_key"),
    // The clock is the host's.
    eperm("clock_settime"),
    eperm("clock_adjtime"),
    eperm("settimeofday"),
    eperm("adjtimex"),
    eperm("sethostname"),
    eperm("setdomainname"),
    // The host's devices, accounting and log.
    eperm("swapon"),
    eperm("swapoff"),
    eperm("reboot"),
    eperm("acct"),
    eperm("quotactl"),
    eperm("quotactl_fd"),
    eperm("syslog"),
    eperm("vhangup"),
    eperm("lookup_dcookie"),
    eperm("iopl"),
    eperm("ioperm"),
    // Files by handle bypass the paths (and so the mounts) that hide
    // them.
    eperm("open_by_handle_at"),
    eperm("name_to_handle_at"),
    // Lets a process stop the kernel at a page fault of its choice, the
    // usual helper of a kernel exploit.
    eperm("userfaultfd"),
    // Raw and packet sockets see and forge any traffic of their network
    // namespace.
    eperm_if("socket", Args::RawOrPacketSocket),
    // Personas that change the address-space layout or exec semantics.
    eperm_if("personality", Args::OtherPersona),
];

/// Why the agent filter could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterError {
    /// No system-call table for this architecture.
    Arch(&'static str),
    /// `seccompiler` refused the rules (a bug here): its message.
    Compile(String),
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilterError::Arch(arch) => write!(
                f,
                "seccomp filter: architecture {arch:?} is not supported (x86_64 and aarch64 are); \
                 agents can only run unconfined here"
            ),
            FilterError::Compile(e) => write!(f, "seccomp filter: the rules do not compile: {e}"),
        }
    }
}

impl std::error::Error for FilterError {}

/// The agent filter, compiled: built once, applied in each agent's
/// process just before it execs its program.
#[derive(Clone, Debug)]
pub struct Filter {
    /// One program per errno, installed in this order.
    programs: Vec<BpfProgram>,
}

impl Filter {
    /// Compile the filter of [`DENIED`] for the running architecture.
    pub fn agent() -> Result<Filter, FilterError> {
        let arch = target_arch()?;
        let mut errnos: Vec<i32> = DENIED.iter().map(|d| d.errno).collect();
        errnos.sort_unstable();
        errnos.dedup();
        let programs = errnos
            .into_iter()
            .map(|errno| program(errno, arch))
            .collect::<Result<_, _>>()?;
        Ok(Filter { programs })
    }

    /// Install the filter on the calling thread (and so on every process
    /// it starts and program it execs), after setting `no_new_privs`,
    /// which an unprivileged thread needs to install one. Usable between
    /// `fork` and `exec`: it allocates nothing, takes no lock and does
    /// not panic. On an error (the kernel's errno) part of the filter
    /// may be installed: the caller must not exec the program.
    pub fn apply(&self) -> io::Result<()> {
        for program in &self.programs {
            // seccompiler 0.5 makes a prctl and a seccomp call on the
            // borrowed program, and its errors come from errno: nothing
            // here allocates.
            seccompiler::apply_filter(program).map_err(os_error)?;
        }
        Ok(())
    }

    /// Install the filter on every thread of this process at once
    /// (`SECCOMP_FILTER_FLAG_TSYNC`). Not for use between `fork` and
    /// `exec` (where [`Filter::apply`] does the same, the process having
    /// one thread): the error that names a thread allocates.
    pub fn apply_all_threads(&self) -> io::Result<()> {
        for program in &self.programs {
            seccompiler::apply_filter_all_threads(program).map_err(|e| match e {
                seccompiler::Error::ThreadSync(tid) => io::Error::other(format!(
                    "seccomp filter: thread {tid} of this process cannot take it \
                     (it has a filter of its own)"
                )),
                other => os_error(other),
            })?;
        }
        Ok(())
    }

    /// The size of the filter, in BPF instructions (all programs).
    pub fn instructions(&self) -> usize {
        self.programs.iter().map(Vec::len).sum()
    }
}

/// The OS error in a `seccompiler` error, without allocating.
fn os_error(e: seccompiler::Error) -> io::Error {
    match e {
        seccompiler::Error::Prctl(e) | seccompiler::Error::Seccomp(e) => e,
        // An empty program (never built here) or a thread that could not
        // sync (only with TSYNC): neither has an errno of its own.
        _ => io::Error::from_raw_os_error(libc::EINVAL),
    }
}

#[cfg(target_arch = "x86_64")]
fn target_arch() -> Result<TargetArch, FilterError> {
    Ok(TargetArch::x86_64)
}

#[cfg(target_arch = "aarch64")]
fn target_arch() -> Result<TargetArch, FilterError> {
    Ok(TargetArch::aarch64)
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn target_arch() -> Result<TargetArch, FilterError> {
    Err(FilterError::Arch(std::env::consts::ARCH))
}

/// The program that answers `errno` to the calls of [`DENIED`] that
/// return it.
fn program(errno: i32, arch: TargetArch) -> Result<BpfProgram, FilterError> {
    let compile = |e: seccompiler::BackendError| FilterError::Compile(e.to_string());
    let mut rules = BTreeMap::new();
    for denied in DENIED.iter().filter(|d| d.errno == errno) {
        let conditions = denied.args.rules().map_err(compile)?;
        for nr in numbers(denied.name) {
            rules.insert(nr, conditions.clone());
        }
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        arch,
    )
    .map_err(compile)?;
    filter.try_into().map_err(compile)
}

impl Args {
    /// The rules (any one matching refuses the call); none: every use
    /// is refused.
    fn rules(self) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
        // Every argument looked at is an int (or, for clone's flags, an
        // unsigned long whose flags all sit in its low 32 bits).
        let arg =
            |index, op, value| SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value);
        let has_bits = |index, bits: u64| arg(index, SeccompCmpOp::MaskedEq(bits), bits);
        match self {
            Args::Any => Ok(Vec::new()),
            Args::RawOrPacketSocket => {
                // The type's low bits are the type; SOCK_NONBLOCK and
                // SOCK_CLOEXEC may be or-ed above them.
                const SOCK_TYPE_MASK: u64 = 0xf;
                // SOCK_PACKET: the old packet socket (AF_INET), which the
                // libc crate marks deprecated.
                const SOCK_PACKET: i32 = 10;
                let of_type = |t: i32| arg(1, SeccompCmpOp::MaskedEq(SOCK_TYPE_MASK), t as u64);
                Ok(vec![
                    SeccompRule::new(vec![arg(0, SeccompCmpOp::Eq, libc::AF_PACKET as u64)?])?,
                    SeccompRule::new(vec![of_type(libc::SOCK_RAW)?])?,
                    SeccompRule::new(vec![of_type(SOCK_PACKET)?])?,
                ])
            }
            Args::NewNamespace => NEW_NAMESPACE_FLAGS
                .iter()
                .map(|&flag| SeccompRule::new(vec![has_bits(0, flag as u64)?]))
                .collect(),
            Args::OtherPersona => Ok(vec![SeccompRule::new(
                ALLOWED_PERSONAS
                    .iter()
                    .map(|&p| arg(0, SeccompCmpOp::Ne, p as u64))
                    .collect::<Result<_, _>>()?,
            )?]),
        }
    }
}

/// The flags of `clone` that make a new namespace. For `clone`,
/// `CLONE_NEWTIME` is a bit of the exit signal, where no valid signal
/// has it: refusing it costs nothing and holds should a kernel ever read
/// it as the flag.
const NEW_NAMESPACE_FLAGS: [libc::c_int; 8] = [
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWNS,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWCGROUP,
    CLONE_NEWTIME,
];
const CLONE_NEWTIME: libc::c_int = 0x80;

/// The personas a program may ask for: PER_LINUX, PER_LINUX32, UNAME26
/// (alone and with PER_LINUX32) and the query that changes nothing.
const ALLOWED_PERSONAS: [u32; 5] = [0, 0x0008, 0x0002_0000, 0x0002_0008, 0xffff_ffff];

/// The x32 convention of x86_64: the same numbers, with this bit.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: i64 = 0x4000_0000;

/// The numbers a call has on this architecture (none if it has no such
/// call), with its x32 numbers on x86_64.
fn numbers(name: &str) -> Vec<i64> {
    let native = number(name);
    native
        .into_iter()
        .chain(x32_numbers(name, native))
        .collect()
}

/// A call's numbers in the x32 convention: its 64-bit number with the
/// x32 bit, and for the calls whose x32 entry differs (they take
/// structures of another layout), that entry too.
#[cfg(target_arch = "x86_64")]
fn x32_numbers(name: &str, native: Option<i64>) -> Vec<i64> {
    let own = match name {
        "ptrace" => Some(521),
        "kexec_load" => Some(528),
        "process_vm_readv" => Some(539),
        "process_vm_writev" => Some(540),
        _ => None,
    };
    native
        .into_iter()
        .chain(own)
        .map(|nr| nr | X32_SYSCALL_BIT)
        .collect()
}

#[cfg(not(target_arch = "x86_64"))]
fn x32_numbers(_name: &str, _native: Option<i64>) -> Vec<i64> {
    Vec::new()
}

/// `open_tree_attr` (Linux 6.15), which the `libc` crate does not name
/// yet: the same number on every architecture.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const SYS_OPEN_TREE_ATTR: i64 = 467;

/// A call's number on this architecture.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn number(name: &str) -> Option<i64> {
    Some(match name {
        "mount" => libc::SYS_mount,
        "umount2" => libc::SYS_umount2,
        "pivot_root" => libc::SYS_pivot_root,
        "chroot" => libc::SYS_chroot,
        "move_mount" => libc::SYS_move_mount,
        "open_tree" => libc::SYS_open_tree,
        "open_tree_attr" => SYS_OPEN_TREE_ATTR,
        "fsopen" => libc::SYS_fsopen,
        "fsconfig" => libc::SYS_fsconfig,
        "fsmount" => libc::SYS_fsmount,
        "fspick" => libc::SYS_fspick,
        "mount_setattr" => libc::SYS_mount_setattr,
        "unshare" => libc::SYS_unshare,
        "setns" => libc::SYS_setns,
        "clone" => libc::SYS_clone,
        "clone3" => libc::SYS_clone3,
        "ptrace" => libc::SYS_ptrace,
        "process_vm_readv" => libc::SYS_process_vm_readv,
        "process_vm_writev" => libc::SYS_process_vm_writev,
        "process_madvise" => libc::SYS_process_madvise,
        "pidfd_getfd" => libc::SYS_pidfd_getfd,
        "init_module" => libc::SYS_init_module,
        "finit_module" => libc::SYS_finit_module,
        "delete_module" => libc::SYS_delete_module,
        "kexec_load" => libc::SYS_kexec_load,
        "kexec_file_load" => libc::SYS_kexec_file_load,
        "bpf" => libc::SYS_bpf,
        "perf_event_open" => libc::SYS_perf_event_open,
        "io_uring_setup" => libc::SYS_io_uring_setup,
        "io_uring_enter" => libc::SYS_io_uring_enter,
        "io_uring_register" => libc::SYS_io_uring_register,
        "keyctl" => libc::SYS_keyctl,
        "add_key" => libc::SYS_add_key,
        "request_key" => libc::SYS_request_key,
        "clock_settime" => libc::SYS_clock_settime,
        "clock_adjtime" => libc::SYS_clock_adjtime,
        "settimeofday" => libc::SYS_settimeofday,
        "adjtimex" => libc::SYS_adjtimex,
        "sethostname" => libc::SYS_sethostname,
        "setdomainname" => libc::SYS_setdomainname,
        "swapon" => libc::SYS_swapon,
        "swapoff" => libc::SYS_swapoff,
        "reboot" => libc::SYS_reboot,
        "acct" => libc::SYS_acct,
        "quotactl" => libc::SYS_quotactl,
        "quotactl_fd" => libc::SYS_quotactl_fd,
        "syslog" => libc::SYS_syslog,
        "vhangup" => libc::SYS_vhangup,
        "lookup_dcookie" => libc::SYS_lookup_dcookie,
        #[cfg(target_arch = "x86_64")]
        "iopl" => libc::SYS_iopl,
        #[cfg(target_arch = "x86_64")]
        "ioperm" => libc::SYS_ioperm,
        "open_by_handle_at" => libc::SYS_open_by_handle_at,
        "name_to_handle_at" => libc::SYS_name_to_handle_at,
        "userfaultfd" => libc::SYS_userfaultfd,
        "socket" => libc::SYS_socket,
        "personality" => libc::SYS_personality,
        _ => return None,
    })
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn number(_name: &str) -> Option<i64> {
    None
}

#[cfg(all(test, any(target_arch = "x86_64", target_arch = "aarch64")))]
mod tests {
    //! The compiled programs are run here by a small interpreter of the
    //! classic BPF that seccomp uses, on made-up calls: each rule is
    //! checked without a kernel (tests/confine.rs makes the real calls).

    use super::*;

    /// What the kernel passes a filter (`struct seccomp_data`).
    struct Call {
        nr: i64,
        arch: u32,
        args: [u64; 6],
    }

    const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
    const AUDIT_ARCH_AARCH64: u32 = 183 | 0x8000_0000 | 0x4000_0000;
    const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
    #[cfg(target_arch = "x86_64")]
    const NATIVE: u32 = AUDIT_ARCH_X86_64;
    #[cfg(target_arch = "aarch64")]
    const NATIVE: u32 = AUDIT_ARCH_AARCH64;

    fn call(name: &str, args: &[u64]) -> Call {
        let nr = number(name).unwrap_or_else(|| panic!("{name}: no number here"));
        call_nr(nr, args)
    }

    fn call_nr(nr: i64, args: &[u64]) -> Call {
        let mut a = [0; 6];
        a[..args.len()].copy_from_slice(args);
        Call {
            nr,
            arch: NATIVE,
            args: a,
        }
    }

    impl Call {
        /// The 32-bit word at `offset` of `struct seccomp_data`.
        fn word(&self, offset: u32) -> u32 {
            match offset {
                0 => self.nr as u32,
                4 => self.arch,
                16..=63 => {
                    let arg = self.args[(offset as usize - 16) / 8];
                    if offset.is_multiple_of(8) {
                        arg as u32
                    } else {
                        (arg >> 32) as u32
                    }
                }
                _ => panic!("load at offset {offset}"),
            }
        }
    }

    /// Run one program on `call`: its return value.
    fn run(program: &[seccompiler::sock_filter], call: &Call) -> u32 {
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let ins = &program[pc];
            pc += 1;
            let jump = |cond: bool| usize::from(if cond { ins.jt } else { ins.jf });
            match ins.code {
                0x20 => acc = call.word(ins.k),       // BPF_LD | BPF_W | BPF_ABS
                0x54 => acc &= ins.k,                 // BPF_ALU | BPF_AND | BPF_K
                0x05 => pc += ins.k as usize,         // BPF_JMP | BPF_JA
                0x15 => pc += jump(acc == ins.k),     // BPF_JMP | BPF_JEQ | BPF_K
                0x25 => pc += jump(acc > ins.k),      // BPF_JMP | BPF_JGT | BPF_K
                0x35 => pc += jump(acc >= ins.k),     // BPF_JMP | BPF_JGE | BPF_K
                0x45 => pc += jump(acc & ins.k != 0), // BPF_JMP | BPF_JSET | BPF_K
                0x06 => return ins.k,                 // BPF_RET | BPF_K
                code => panic!("instruction {code:#x} at {}", pc - 1),
            }
        }
    }

    /// What the kernel does with `call` under the whole filter: the most
    /// restrictive action (their numeric order) of all programs.
    fn verdict(filter: &Filter, call: &Call) -> Verdict {
        let ret = filter
            .programs
            .iter()
            .map(|p| run(p, call))
            .min_by_key(|&r| (r & libc::SECCOMP_RET_ACTION_FULL) as i32)
            .unwrap();
        match ret & libc::SECCOMP_RET_ACTION_FULL {
            libc::SECCOMP_RET_ALLOW => Verdict::Allow,
            libc::SECCOMP_RET_ERRNO => Verdict::Errno((ret & libc::SECCOMP_RET_DATA) as i32),
            libc::SECCOMP_RET_KILL_PROCESS => Verdict::Kill,
            other => panic!("action {other:#x}"),
        }
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Verdict {
        Allow,
        Errno(i32),
        Kill,
    }

    fn filter() -> Filter {
        Filter::agent().unwrap()
    }

    #[test]
    fn every_name_is_a_call_of_this_architecture_once() {
        let mut names: Vec<&str> = DENIED.iter().map(|d| d.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "a call is listed twice");
        // Only these are missing on an architecture (x86-only calls).
        let arch_only: &[&str] = if cfg!(target_arch = "x86_64") {
            &[]
        } else {
            &["iopl", "ioperm"]
        };
        for d in DENIED {
            assert_eq!(
                number(d.name).is_none(),
                arch_only.contains(&d.name),
                "{}: no number on {}",
                d.name,
                std::env::consts::ARCH
            );
        }
    }

    #[test]
    fn every_listed_call_is_refused_with_its_errno() {
        let filter = filter();
        for d in DENIED.iter().filter(|d| number(d.name).is_some()) {
            // Arguments that every conditional rule refuses.
            let args: &[u64] = match d.args {
                Args::Any => &[],
                Args::RawOrPacketSocket => &[libc::AF_PACKET as u64, libc::SOCK_RAW as u64],
                Args::NewNamespace => &[(libc::CLONE_NEWUSER | libc::SIGCHLD) as u64],
                Args::OtherPersona => &[0x0040_0000], // READ_IMPLIES_EXEC
            };
            assert_eq!(
                verdict(&filter, &call(d.name, args)),
                Verdict::Errno(d.errno),
                "{}",
                d.name
            );
            assert_eq!(d.when().is_none(), d.args == Args::Any, "{}", d.name);
        }
    }

    #[test]
    fn other_calls_are_allowed() {
        let filter = filter();
        for nr in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_openat,
            libc::SYS_execve,
            libc::SYS_getpid,
            libc::SYS_prctl,
            libc::SYS_capset,
            libc::SYS_seccomp,
            libc::SYS_socketpair,
            libc::SYS_connect,
        ] {
            assert_eq!(
                verdict(&filter, &call_nr(nr, &[1, 2, 3])),
                Verdict::Allow,
                "{nr}"
            );
        }
    }

    #[test]
    fn sockets_are_refused_by_domain_and_type_only() {
        let filter = filter();
        let socket =
            |domain: i32, ty: i32| verdict(&filter, &call("socket", &[domain as u64, ty as u64]));
        let eperm = Verdict::Errno(libc::EPERM);
        assert_eq!(socket(libc::AF_INET, libc::SOCK_STREAM), Verdict::Allow);
        assert_eq!(
            socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC),
            Verdict::Allow
        );
        assert_eq!(socket(libc::AF_UNIX, libc::SOCK_SEQPACKET), Verdict::Allow);
        assert_eq!(socket(libc::AF_NETLINK, libc::SOCK_DGRAM), Verdict::Allow);
        assert_eq!(socket(libc::AF_PACKET, libc::SOCK_DGRAM), eperm);
        assert_eq!(socket(libc::AF_INET, libc::SOCK_RAW), eperm);
        assert_eq!(
            socket(
                libc::AF_INET6,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC
            ),
            eperm
        );
        assert_eq!(socket(libc::AF_INET, 10), eperm); // SOCK_PACKET
        // The upper half of a 64-bit argument is not the int the kernel
        // reads: garbage there changes nothing.
        assert_eq!(
            verdict(
                &filter,
                &call("socket", &[(1 << 32) | libc::AF_PACKET as u64, 1])
            ),
            eperm
        );
    }

    #[test]
    fn clone_is_refused_with_any_namespace_flag_only() {
        let filter = filter();
        let clone = |flags: i32| verdict(&filter, &call("clone", &[flags as u64]));
        // What fork, vfork and pthread_create pass.
        assert_eq!(clone(libc::SIGCHLD), Verdict::Allow);
        assert_eq!(
            clone(libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD),
            Verdict::Allow
        );
        let thread = libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM
            | libc::CLONE_SETTLS
            | libc::CLONE_PARENT_SETTID
            | libc::CLONE_CHILD_CLEARTID;
        assert_eq!(clone(thread), Verdict::Allow);
        for flag in NEW_NAMESPACE_FLAGS {
            assert_eq!(
                clone(flag | libc::SIGCHLD),
                Verdict::Errno(libc::EPERM),
                "{flag:#x}"
            );
        }
        assert_eq!(
            verdict(&filter, &call("clone3", &[0, 88])),
            Verdict::Errno(libc::ENOSYS)
        );
    }

    #[test]
    fn personality_may_be_asked_but_only_set_to_plain_personas() {
        let filter = filter();
        let personality = |p: u64| verdict(&filter, &call("personality", &[p]));
        for p in ALLOWED_PERSONAS {
            assert_eq!(personality(p as u64), Verdict::Allow, "{p:#x}");
        }
        // ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, PER_BSD.
        for p in [0x0004_0000, 0x0040_0000, 0x0006] {
            assert_eq!(personality(p), Verdict::Errno(libc::EPERM), "{p:#x}");
        }
    }

    #[test]
    fn another_architecture_ends_the_process() {
        let filter = filter();
        for arch in [AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, AUDIT_ARCH_AARCH64] {
            let mut getpid = call_nr(libc::SYS_getpid, &[]);
            getpid.arch = arch;
            let expected = if arch == NATIVE {
                Verdict::Allow
            } else {
                Verdict::Kill
            };
            assert_eq!(verdict(&filter, &getpid), expected, "{arch:#x}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x32_numbers_are_refused_too() {
        let filter = filter();
        let eperm = Verdict::Errno(libc::EPERM);
        let x32 = |nr: i64, args: &[u64]| verdict(&filter, &call_nr(nr | X32_SYSCALL_BIT, args));
        assert_eq!(x32(libc::SYS_mount, &[]), eperm);
        assert_eq!(x32(libc::SYS_unshare, &[]), eperm);
        assert_eq!(x32(521, &[]), eperm, "x32 ptrace");
        assert_eq!(x32(539, &[]), eperm, "x32 process_vm_readv");
        assert_eq!(x32(libc::SYS_clone3, &[]), Verdict::Errno(libc::ENOSYS));
        assert_eq!(x32(libc::SYS_socket, &[libc::AF_PACKET as u64, 2]), eperm);
        assert_eq!(
            x32(libc::SYS_socket, &[libc::AF_INET as u64, 1]),
            Verdict::Allow
        );
        assert_eq!(x32(libc::SYS_getpid, &[]), Verdict::Allow);
    }

    #[test]
    fn the_filter_is_small_and_the_errors_say_what() {
        let filter = filter();
        // Far under the kernel's 4096, and cheap: the kernel caches the
        // verdict of calls whose arguments no rule reads.
        assert!(filter.instructions() < 1024, "{}", filter.instructions());
        assert_eq!(filter.programs.len(), 2);
        let e = FilterError::Arch("mips64").to_string();
        assert!(e.contains("\"mips64\"") && e.contains("x86_64"), "{e}");
    }
}
