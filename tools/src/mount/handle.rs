//! Open files: what a FUSE file handle stands for.
//!
//! A handle is the number of the opened fid itself, so the table only adds
//! what the read and write paths need besides it: the iounit the node gave
//! and the path (for messages).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// One open file.
#[derive(Debug)]
pub struct Handle {
    /// The opened fid (also the FUSE file handle).
    pub fid: u32,
    /// The largest read or write to send at once.
    pub iounit: u32,
    /// Where the file is, for messages.
    pub path: Arc<str>,
    /// Its qid says append-only: each write is one message (a channel's
    /// data), so a write is never split.
    pub message: bool,
}

/// Open files by handle.
#[derive(Debug, Default)]
pub struct Handles {
    table: Mutex<HashMap<u64, Arc<Handle>>>,
}

impl Handles {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Handle>>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record an open file; returns its FUSE handle.
    pub fn insert(&self, h: Handle) -> u64 {
        let fh = u64::from(h.fid);
        self.lock().insert(fh, Arc::new(h));
        fh
    }

    /// The open file behind `fh`.
    pub fn get(&self, fh: u64) -> Option<Arc<Handle>> {
        self.lock().get(&fh).cloned()
    }

    /// Forget `fh` (on release); returns it to clunk.
    pub fn remove(&self, fh: u64) -> Option<Arc<Handle>> {
        self.lock().remove(&fh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_is_its_fid_until_released() {
        let t = Handles::default();
        let fh = t.insert(Handle {
            fid: 9,
            iounit: 100,
            path: Arc::from("/status"),
            message: false,
        });
        assert_eq!(fh, 9);
        assert_eq!(t.get(9).unwrap().iounit, 100);
        assert_eq!(t.remove(9).unwrap().fid, 9);
        assert!(t.get(9).is_none());
    }
}
