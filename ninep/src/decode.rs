//! The decoder: one frame in, one [`Msg`] out (to be implemented).

use crate::error::DecodeError;
use crate::msg::{Dialect, Msg};
use crate::stat::{Dirent, Stat};

/// Decode one whole frame (starting with its size[4] field) as a message of
/// `dialect`. Any T- or R-message is accepted; a server rejects R-messages
/// itself. Never panics.
pub fn decode(frame: &[u8], dialect: Dialect) -> Result<Msg<'_>, DecodeError> {
    let _ = (frame, dialect);
    todo!()
}

/// Decode one stat record (with its leading size[2]) from the start of `buf`,
/// as found in a 9P2000 directory read; returns it and the bytes it used.
pub fn decode_stat(buf: &[u8]) -> Result<(Stat<'_>, usize), DecodeError> {
    let _ = buf;
    todo!()
}

/// Decode one 9P2000.L directory entry from the start of `buf`; returns it
/// and the bytes it used.
pub fn decode_dirent(buf: &[u8]) -> Result<(Dirent<'_>, usize), DecodeError> {
    let _ = buf;
    todo!()
}
