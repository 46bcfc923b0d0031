//! The encoder: one [`Msg`] in, one size-prefixed frame appended (to be
//! implemented).

use alloc::vec::Vec;

use crate::error::EncodeError;
use crate::msg::Msg;
use crate::stat::{Dirent, Stat};

/// Append `msg` to `out` as one frame, size[4] first. On error `out` is left
/// as it was.
pub fn encode(msg: &Msg<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let _ = (msg, out);
    todo!()
}

/// Append one stat record, with its leading size[2], as a 9P2000 directory
/// read carries it.
pub fn encode_stat(stat: &Stat<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let _ = (stat, out);
    todo!()
}

/// Append one 9P2000.L directory entry.
pub fn encode_dirent(d: &Dirent<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let _ = (d, out);
    todo!()
}

impl Stat<'_> {
    /// Bytes [`encode_stat`] appends for this record, including its size[2].
    pub fn encoded_len(&self) -> usize {
        2 + 2
            + 4
            + crate::qid::QID_SIZE
            + 4
            + 4
            + 4
            + 8
            + 2
            + self.name.len()
            + 2
            + self.uid.len()
            + 2
            + self.gid.len()
            + 2
            + self.muid.len()
    }
}

impl Dirent<'_> {
    /// Bytes [`encode_dirent`] appends for this entry.
    pub fn encoded_len(&self) -> usize {
        crate::qid::QID_SIZE + 8 + 1 + 2 + self.name.len()
    }
}
