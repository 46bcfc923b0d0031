//! Replies the server has produced, each addressed to a connection.
//!
//! One buffer holds every encoded frame of a batch, so answering a request
//! does not allocate; the transport copies each frame to its connection.

use alloc::vec::Vec;
use core::ops::Range;

/// Identifies one client connection to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// Encoded reply frames, each for one connection, in the order produced.
#[derive(Debug, Default)]
pub struct Outbox {
    buf: Vec<u8>,
    items: Vec<(ConnId, Range<usize>)>,
    closes: Vec<ConnId>,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forget every frame, keeping the memory for the next batch.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.items.clear();
        self.closes.clear();
    }

    /// Whether nothing is waiting to be sent or closed.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && self.closes.is_empty()
    }

    /// Every frame with the connection it is for, in order.
    pub fn frames(&self) -> impl Iterator<Item = (ConnId, &[u8])> {
        self.items.iter().map(|(c, r)| (*c, &self.buf[r.clone()]))
    }

    /// Connections the server wants closed (after their frames are sent).
    pub fn closes(&self) -> &[ConnId] {
        &self.closes
    }

    /// Encode a frame for `conn` straight into the shared buffer.
    pub(crate) fn push_with<E>(
        &mut self,
        conn: ConnId,
        f: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let start = self.buf.len();
        match f(&mut self.buf) {
            Ok(()) => {
                self.items.push((conn, start..self.buf.len()));
                Ok(())
            }
            Err(e) => {
                self.buf.truncate(start);
                Err(e)
            }
        }
    }

    /// Ask the transport to close `conn`.
    pub(crate) fn close(&mut self, conn: ConnId) {
        self.closes.push(conn);
    }
}
