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
    /// Requests held back in arrival order (see [`Held`]).
    pub held: alloc::collections::VecDeque<Held>,
    /// The bytes of the frames in `held`.
    pub held_bytes: usize,
    /// An attach asked for `reads=batch`: streams end each batch with an
    /// empty read here even in plain 9P2000.
    pub batch_reads: bool,
}

/// The largest frame a connection may send before it has attached: room
/// for a version, an auth exchange with a long token, and an attach, but
/// not for a stranger to make the node hold a megabyte per connection.
pub const PREAUTH_FRAME: u32 = 64 * 1024;

/// A request held back until the log confirms this node is current (see
/// `server/gate.rs`), or waiting behind one of its connection's that is.
#[derive(Debug)]
pub struct Held {
    /// The request as it arrived.
    pub frame: alloc::vec::Vec<u8>,
    /// Its tag (kept live meanwhile).
    pub tag: u16,
    /// The read the log has yet to confirm; `None` once it has (or for a
    /// request that only waits its turn).
    pub gate: Option<crate::log::ProposalId>,
}

/// Most requests a connection may have held back at once; past it, a
/// request is refused with EAGAIN.
pub const MAX_HELD: usize = 256;

/// Most bytes of requests a connection may have held back at once.
pub const MAX_HELD_BYTES: usize = 4 << 20;

/// Most bytes of requests held back across every connection at once.
pub const MAX_HELD_TOTAL: usize = 64 << 20;
