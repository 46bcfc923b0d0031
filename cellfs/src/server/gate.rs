//! The read gate: a request that reads the tree's shape (attach, walk,
//! open, create, stat, a directory listing from its start, unlink) is
//! served only once the log confirms that this node has applied every
//! change acknowledged anywhere before the request arrived: the read index
//! that a file's contents already wait for (raft(3) READS). So a channel
//! made through one node can be walked to through any other at once.
//!
//! Later requests of the same connection wait behind a held one, in
//! order, so a pipelined open still follows the walk that made its fid.
//! Tversion and Tflush never wait: one ends the session, the other may
//! take back a held request.

use alloc::format;

use ninep::Body;

use crate::clock::Clock;
use crate::conn::{Held, MAX_HELD, MAX_HELD_BYTES, MAX_HELD_TOTAL};
use crate::error::Error;
use crate::log::{Log, LogError, ProposalId, ReadGate};
use crate::outbox::{ConnId, Outbox};

use super::*;

/// Whether `body` reads the tree's shape, so must see every change
/// acknowledged before it.
fn reads_shape(body: &Body<'_>) -> bool {
    match body {
        Body::Tattach { .. }
        | Body::Twalk { .. }
        | Body::Topen { .. }
        | Body::Tlopen { .. }
        | Body::Tcreate { .. }
        | Body::Tlcreate { .. }
        | Body::Tmkdir { .. }
        | Body::Tstat { .. }
        | Body::Tgetattr { .. }
        | Body::Tunlinkat { .. } => true,
        Body::Treaddir { offset, .. } => *offset == 0,
        _ => false,
    }
}

impl<L: Log, C: Clock> Server<L, C> {
    /// Hold `frame` (request `tag` of `conn`) back if it must wait for the
    /// log or behind an earlier held request: `Ok(true)` if it was held.
    pub(super) fn hold(
        &mut self,
        conn: ConnId,
        tag: u16,
        body: &Body<'_>,
        frame: &[u8],
    ) -> Result<bool, Error> {
        if matches!(body, Body::Tversion { .. } | Body::Tflush { .. }) {
            return Ok(false);
        }
        let shape = reads_shape(body);
        let c = self.conn(conn)?;
        let behind = !c.held.is_empty();
        if !behind && !shape {
            return Ok(false);
        }
        if c.held.len() >= MAX_HELD || c.held_bytes + frame.len() > MAX_HELD_BYTES {
            return Err(Error::Again(format!(
                "{} requests of this connection already wait for the log to confirm \
                 this node is current; wait for their answers",
                c.held.len()
            )));
        }
        if self.held_total + frame.len() > MAX_HELD_TOTAL {
            return Err(Error::Again(format!(
                "{} MiB of requests already wait on this node for the log to confirm \
                 it is current; try again",
                MAX_HELD_TOTAL >> 20
            )));
        }
        let gate = if shape {
            match self.log.read()? {
                ReadGate::Now => None,
                ReadGate::Wait(p) => Some(p),
            }
        } else {
            None
        };
        if gate.is_none() && !behind {
            return Ok(false);
        }
        let c = self.conn(conn)?;
        c.held.push_back(Held {
            frame: frame.to_vec(),
            tag,
            gate,
        });
        c.held_bytes += frame.len();
        c.live_tags.insert(tag);
        self.held_total += frame.len();
        if let Some(p) = gate {
            self.gates.insert(p, conn);
        }
        Ok(true)
    }

    /// The log answered the read `proposal` asked for: serve what waited
    /// on it (or tell it why not) and whatever queued behind it.
    pub(super) fn gate_opened(
        &mut self,
        proposal: ProposalId,
        result: Result<(), LogError>,
        out: &mut Outbox,
    ) {
        let Some(conn) = self.gates.remove(&proposal) else {
            return;
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(i) = c.held.iter().position(|h| h.gate == Some(proposal)) else {
            return;
        };
        match result {
            Ok(()) => c.held[i].gate = None,
            Err(e) => {
                if let Some(h) = c.held.remove(i) {
                    c.held_bytes -= h.frame.len();
                    c.live_tags.remove(&h.tag);
                    self.held_total -= h.frame.len();
                    self.reply_err(conn, h.tag, &Error::Log(e), out);
                }
            }
        }
        self.release(conn, out);
    }

    /// Serve, in order, the held requests of `conn` that wait no more.
    fn release(&mut self, conn: ConnId, out: &mut Outbox) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if c.held.front().is_none_or(|h| h.gate.is_some()) {
                return;
            }
            let Some(h) = c.held.pop_front() else {
                return;
            };
            c.held_bytes -= h.frame.len();
            c.live_tags.remove(&h.tag);
            self.held_total -= h.frame.len();
            self.serve(conn, &h.frame, true, out);
        }
    }

    /// Take back held request `oldtag` of `conn` (a Tflush): whether
    /// there was one. Nothing of it was done, so nothing is answered.
    pub(super) fn unhold(&mut self, conn: ConnId, oldtag: u16, out: &mut Outbox) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        let Some(i) = c.held.iter().position(|h| h.tag == oldtag) else {
            return false;
        };
        if let Some(h) = c.held.remove(i) {
            c.held_bytes -= h.frame.len();
            c.live_tags.remove(&h.tag);
            self.held_total -= h.frame.len();
            if let Some(p) = h.gate {
                self.gates.remove(&p);
            }
        }
        self.release(conn, out);
        true
    }

    /// Forget what `conn` holds back (its session ended).
    pub(super) fn drop_held(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.held.clear();
            self.held_total -= c.held_bytes;
            c.held_bytes = 0;
        }
        self.gates.retain(|_, c| *c != conn);
    }
}
