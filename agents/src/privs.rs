//! Dropping every privilege of a process just before it execs an
//! agent's program, so that neither it nor anything it execs holds or
//! can regain a capability, even as uid 0 (the root of its user
//! namespace).
//!
//! [`drop_all`], in order:
//!
//! 1. empties the capability bounding set, so that no exec (of a
//!    file with capabilities, or as root) can add one;
//! 2. sets and locks the securebits: root is not special at exec
//!    (`NOROOT`), a change of uid neither adds nor removes
//!    capabilities (`NO_SETUID_FIXUP`), `KEEP_CAPS` stays off, and no
//!    ambient capability can be raised (`NO_CAP_AMBIENT_RAISE`);
//! 3. clears the ambient set;
//! 4. sets the effective, permitted and inheritable sets to nothing;
//! 5. sets `no_new_privs`, so that no exec of a set-uid or file
//!    capability program gives anything back.
//!
//! The first two need `CAP_SETPCAP`, which the last takes away, hence
//! the order. The dumpable flag is left alone: the sandbox decides it.
//!
//! [`drop_all`] runs between `fork` and `exec` of a multi-threaded
//! program, so it only makes system calls: [`last_cap`], which reads a
//! file, is called before the fork.

use std::io;

/// The highest capability number of the kernel, from
/// `/proc/sys/kernel/cap_last_cap`; where that cannot be read, the last
/// one this code knows (`CAP_CHECKPOINT_RESTORE`, Linux 5.9). Call it
/// before the fork: it allocates.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|&cap| cap <= MAX_CAP)
        .unwrap_or(KNOWN_LAST_CAP)
}

/// `CAP_CHECKPOINT_RESTORE`.
const KNOWN_LAST_CAP: u32 = 40;
/// Capability sets are 64 bits wide.
const MAX_CAP: u32 = 63;

/// The securebits [`drop_all`] sets and locks.
const SECUREBITS: libc::c_int = libc::SECBIT_NOROOT
    | libc::SECBIT_NOROOT_LOCKED
    | libc::SECBIT_NO_SETUID_FIXUP
    | libc::SECBIT_NO_SETUID_FIXUP_LOCKED
    | libc::SECBIT_KEEP_CAPS_LOCKED
    | libc::SECBIT_NO_CAP_AMBIENT_RAISE
    | libc::SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;

/// Drop every capability of the calling process for good (see the
/// module's documentation for the steps). `last_cap` is [`last_cap`],
/// read before the fork; capabilities above it that the kernel still
/// knows are dropped as well, and numbers up to it that it does not
/// know are passed over, so the bounding set ends empty either way.
///
/// Usable between `fork` and `exec`: it allocates nothing, takes no
/// lock and does not panic. An error is the kernel's errno (`EPERM`: the
/// caller lacks `CAP_SETPCAP` and its bounding set or securebits are not
/// already as wanted); the process may then have lost some of its
/// privileges but not all, and must not exec the program. Calling it
/// again after it succeeded succeeds and changes nothing.
pub fn drop_all(last_cap: u32) -> io::Result<()> {
    drop_bounding_set(last_cap)?;
    lock_securebits()?;
    clear_ambient()?;
    clear_capability_sets()?;
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
}

fn drop_bounding_set(last_cap: u32) -> io::Result<()> {
    for cap in 0..=MAX_CAP {
        // SAFETY: prctl with integer arguments only.
        let held = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) };
        if held < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(e);
            }
            // EINVAL: the kernel has no such capability. Past the last
            // one it was said to have, the list is over.
            if cap > last_cap {
                return Ok(());
            }
            continue;
        }
        if held == 1 {
            // SAFETY: prctl with integer arguments only.
            check(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) })?;
        }
    }
    Ok(())
}

fn lock_securebits() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let bits = unsafe { libc::prctl(libc::PR_GET_SECUREBITS, 0, 0, 0, 0) };
    check(bits)?;
    let wanted = (bits | SECUREBITS) & !libc::SECBIT_KEEP_CAPS;
    if bits == wanted {
        // Already so (a second call): setting them needs CAP_SETPCAP,
        // which is gone by now.
        return Ok(());
    }
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_SECUREBITS, wanted as libc::c_ulong, 0, 0, 0) })
}

fn clear_ambient() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    match check(r) {
        // Before Linux 4.3 there is no ambient set to clear.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        other => other,
    }
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`: one per 32 capabilities.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets, in two `CapData`.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

fn clear_capability_sets() -> io::Result<()> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0, // the calling thread
    };
    let none = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset reads a version 3 header and the two data
    // structures version 3 takes, both alive for the call (it may write
    // the header's version, hence `mut`). The libc crate has no wrapper.
    check(unsafe { libc::syscall(libc::SYS_capset, &mut header, none.as_ptr()) } as libc::c_int)
}

/// A system call's `-1` as its errno.
fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_cap_is_the_kernels() {
        let cap = last_cap();
        // Every kernel this runs on has CAP_AUDIT_READ (37, Linux 3.16).
        assert!((37..=MAX_CAP).contains(&cap), "{cap}");
        // SAFETY: prctl with integer arguments only.
        let read =
            |cap: u32| unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) };
        assert!(read(cap) >= 0, "the kernel has no capability {cap}");
        assert!(read(cap + 1) < 0, "the kernel has a capability {}", cap + 1);
    }

    #[test]
    fn the_securebits_leave_keep_caps_off_and_lock_it() {
        assert_eq!(SECUREBITS & libc::SECBIT_KEEP_CAPS, 0);
        for (bit, lock) in [
            (libc::SECBIT_NOROOT, libc::SECBIT_NOROOT_LOCKED),
            (
                libc::SECBIT_NO_SETUID_FIXUP,
                libc::SECBIT_NO_SETUID_FIXUP_LOCKED,
            ),
            (
                libc::SECBIT_NO_CAP_AMBIENT_RAISE,
                libc::SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
            ),
            (0, libc::SECBIT_KEEP_CAPS_LOCKED),
        ] {
            assert_eq!(SECUREBITS & (bit | lock), bit | lock);
        }
    }
}
