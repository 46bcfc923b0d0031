//! Per-connection protocol state.

use alloc::collections::BTreeSet;
use ninep::Dialect;

use crate::fid::Fids;

/// One client connection.
#[derive(Debug, Default)]
pub struct Conn {
    /// What Tversion settled on; nothing but Tversion is served before.
    pub dialect: Option<Dialect>,
    /// The negotiated largest message.
    pub msize: u32,
    /// The connection's fids.
    pub fids: Fids,
    /// Tags of requests not yet answered (parked or waiting for commit).
    pub live_tags: BTreeSet<u16>,
}
