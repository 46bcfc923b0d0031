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
    /// An attach succeeded since the last Tversion: until then the
    /// connection is a stranger, held to [`PREAUTH_FRAME`].
    pub attached: bool,
}

/// The largest frame a connection may send before it has attached: room
/// for a version, an auth exchange with a long token, and an attach, but
/// not for a stranger to make the node hold a megabyte per connection.
pub const PREAUTH_FRAME: u32 = 64 * 1024;
