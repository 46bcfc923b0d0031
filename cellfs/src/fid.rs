//! Fids: a connection's handles on files.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;

use crate::cap::Grant;

use crate::dev::Aux;
use crate::error::Error;
use crate::file::File;

/// How a fid was opened (read, write or both).
pub use ninep::mode::Access as Mode;

/// 9P2000's "remove on clunk" open bit.
pub use ninep::mode::ORCLOSE;

/// Where a 9P2000 directory read left off.
#[derive(Clone, Copy, Debug, Default)]
pub struct DirCursor {
    /// The byte offset the next read must ask for.
    pub offset: u64,
    /// The entry it starts at.
    pub index: usize,
}

/// What a fid may do: an auth fid waiting for (or holding) a verified
/// capability, or an attached fid with its capability and scope root.
#[derive(Clone, Debug)]
pub enum Access {
    /// An auth fid (Tauth): the grant of the token written to it, if any.
    Auth(Option<Arc<Grant>>),
    /// A fid descended from an attach: the capability it was attached
    /// with (verified once, shared by every fid walked from it) and the
    /// node of its scope, which is its root (`..` there stays there).
    Attached {
        /// The verified capability.
        grant: Arc<Grant>,
        /// The scope's node.
        root: File,
    },
}

/// One fid.
#[derive(Debug)]
pub struct Fid {
    /// The file it points at.
    pub node: File,
    /// Its capability.
    pub access: Access,
    /// Set once opened; walks are refused after that.
    pub open: Option<Mode>,
    /// The device's per-open memory (text snapshot, stream cursor).
    pub aux: Aux,
    /// Directory read position (9P2000 reads of a directory).
    pub dir: DirCursor,
    /// Remove the file when the fid is clunked (ORCLOSE).
    pub rclose: bool,
    /// Reads parked on this fid, so clunk knows whether to look for them.
    pub parked: u32,
    /// A read just handed over less than it asked for, in a dialect whose
    /// clients read until a read returns nothing (Linux's): the next read
    /// that would wait answers no bytes instead, once (cellfs(4) STREAMS).
    pub batch_end: bool,
}

impl Fid {
    /// A fresh, unopened fid on `node` with `access`.
    pub fn new(node: File, access: Access) -> Fid {
        Fid {
            node,
            access,
            open: None,
            aux: Aux::None,
            dir: DirCursor::default(),
            batch_end: false,
            rclose: false,
            parked: 0,
        }
    }
}

/// The fids of one connection.
#[derive(Debug, Default)]
pub struct Fids {
    map: BTreeMap<u32, Fid>,
}

impl Fids {
    /// The fid numbered `n`.
    pub fn get(&self, n: u32) -> Result<&Fid, Error> {
        self.map.get(&n).ok_or(Error::UnknownFid(n))
    }

    /// The fid numbered `n`, to change.
    pub fn get_mut(&mut self, n: u32) -> Result<&mut Fid, Error> {
        self.map.get_mut(&n).ok_or(Error::UnknownFid(n))
    }

    /// Refuse `n` if it is taken.
    pub fn check_free(&self, n: u32) -> Result<(), Error> {
        if self.map.contains_key(&n) {
            Err(Error::FidInUse(n))
        } else {
            Ok(())
        }
    }

    /// Put `fid` under `n` (replacing what was there: the caller checked).
    pub fn insert(&mut self, n: u32, fid: Fid) -> bool {
        self.map.insert(n, fid).is_none()
    }

    /// Take fid `n` away.
    pub fn remove(&mut self, n: u32) -> Option<Fid> {
        self.map.remove(&n)
    }

    /// How many fids are in use.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every fid, by number.
    pub fn iter(&self) -> impl Iterator<Item = &Fid> {
        self.map.values()
    }

    /// Drop every fid.
    pub fn clear(&mut self) {
        self.map.clear();
    }
}
