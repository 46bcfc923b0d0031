//! Fid numbers: which ones the client may hand to the node next.
//!
//! The node owns what a fid points at; the client only has to never use a
//! number twice at once. Freed numbers are reused first so that a long-lived
//! mount does not march through the whole 32-bit space.

/// The fid the client attaches the root to; never handed out.
pub const ROOT: u32 = 0;

/// Fid numbers in use and free.
#[derive(Debug, Default)]
pub(crate) struct FidPool {
    /// The next never-used number.
    next: u32,
    /// Numbers returned, reused first.
    free: Vec<u32>,
}

impl FidPool {
    /// A pool whose numbers start after [`ROOT`].
    pub fn new() -> FidPool {
        FidPool {
            next: ROOT + 1,
            free: Vec::new(),
        }
    }

    /// A number not in use, or `None` once every number but ROOT and
    /// NOFID is taken.
    pub fn alloc(&mut self) -> Option<u32> {
        if let Some(f) = self.free.pop() {
            return Some(f);
        }
        if self.next == ninep::NOFID {
            return None;
        }
        let f = self.next;
        self.next += 1;
        Some(f)
    }

    /// Give back a number the node no longer knows.
    pub fn free(&mut self, fid: u32) {
        debug_assert!(fid != ROOT && fid != ninep::NOFID);
        if fid != ROOT && fid != ninep::NOFID {
            self.free.push(fid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fids_are_distinct_skip_root_and_are_reused() {
        let mut p = FidPool::new();
        let a = p.alloc().unwrap();
        let b = p.alloc().unwrap();
        assert!(a != ROOT && b != ROOT && a != b);
        p.free(a);
        assert_eq!(p.alloc(), Some(a));
        assert_ne!(p.alloc(), Some(b));
    }

    #[test]
    fn the_pool_runs_out_instead_of_handing_out_nofid() {
        let mut p = FidPool {
            next: ninep::NOFID - 1,
            free: Vec::new(),
        };
        assert_eq!(p.alloc(), Some(ninep::NOFID - 1));
        assert_eq!(p.alloc(), None);
        p.free(7);
        assert_eq!(p.alloc(), Some(7));
    }
}
