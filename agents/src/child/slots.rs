//! Low descriptor numbers the child's descriptors are lent to, so that a
//! child sharing the runner's descriptor table can take a copy of only
//! the bottom of it.
//!
//! A child made with its own copy of the table gets every descriptor of
//! the runner (some seven per running agent: 7,000 with 1,000 running),
//! and the kernel closes each one at its exec (they are close-on-exec):
//! 1.2 ms for 7,000, measured alone. Instead the child shares the table
//! (`CLONE_FILES`) and its first call, `close_range(bound, ~0,
//! CLOSE_RANGE_UNSHARE)`, gives it a table of its own holding only the
//! descriptors below `bound`, where the runner has put a copy of each
//! one the child needs: the slots, reserved once (numbers from 11 up,
//! clear of the 3 to 10 the child places its passed descriptors at, so
//! placing them never closes one it still needs).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Descriptors one child needs at most: its pipes (go-ahead both ends,
/// hello, stdout, stderr, report), the program, what it is passed, its
/// v1 cgroups.
const SLOTS: usize = 7 + super::MAX_PASSED + super::MAX_V1;
/// The lowest slot: above 3 + `MAX_PASSED`.
const FLOOR: RawFd = 3 + super::MAX_PASSED as RawFd;

/// The reserved numbers, each holding a placeholder (`/dev/null`) when
/// not lent.
pub(super) struct Slots {
    null: OwnedFd,
    slots: Vec<OwnedFd>,
    /// How many are lent.
    lent: usize,
    /// One above the highest slot.
    pub(super) bound: libc::c_uint,
}

impl Slots {
    /// Reserve the slots; `None` if the descriptors cannot be had.
    pub(super) fn new() -> Option<Slots> {
        let null = std::fs::File::open("/dev/null").ok().map(OwnedFd::from)?;
        let mut slots = Vec::with_capacity(SLOTS);
        for _ in 0..SLOTS {
            // SAFETY: fcntl on a descriptor we own; on success the new
            // one is ours alone.
            let fd = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, FLOOR) };
            if fd < 0 {
                return None;
            }
            // SAFETY: just made, owned by no one else.
            slots.push(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) });
        }
        let bound = slots.iter().map(AsRawFd::as_raw_fd).max()? as libc::c_uint + 1;
        Some(Slots {
            null,
            slots,
            lent: 0,
            bound,
        })
    }

    /// Put a copy of `fd` (if it is one: -1 is none) in the next slot,
    /// close-on-exec; the slot's number. `None` if none is left or the
    /// copy fails.
    pub(super) fn lend(&mut self, fd: RawFd) -> Option<RawFd> {
        if fd < 0 {
            return Some(fd);
        }
        let slot = self.slots.get(self.lent)?.as_raw_fd();
        // SAFETY: dup3 onto a descriptor this struct owns, which it
        // replaces atomically.
        if unsafe { libc::dup3(fd, slot, libc::O_CLOEXEC) } < 0 {
            return None;
        }
        self.lent += 1;
        Some(slot)
    }

    /// Put the placeholders back, letting go of every copy lent.
    pub(super) fn restore(&mut self) {
        for slot in &self.slots[..self.lent] {
            // SAFETY: as in `lend`; the copy it held is closed.
            unsafe { libc::dup3(self.null.as_raw_fd(), slot.as_raw_fd(), libc::O_CLOEXEC) };
        }
        self.lent = 0;
    }
}
