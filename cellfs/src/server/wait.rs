//! Requests that wait: parked reads and writes woken when their file
//! changes, ended when their capability no longer serves, and flushed.

use crate::clock::Clock;
use crate::dev::Waiting;
use crate::error::Error;
use crate::fid::Access;
use crate::log::Log;
use crate::outbox::{ConnId, Outbox};
use alloc::vec::Vec;
use ninep::Body;

use super::*;

impl<L: Log, C: Clock> Server<L, C> {
    pub(super) fn flush(&mut self, conn: ConnId, tag: u16, oldtag: u16, out: &mut Outbox) {
        if self.unhold(conn, oldtag, out) {
            return self.reply(conn, tag, Body::Rflush, out);
        }
        let parked = self
            .world
            .parked
            .remove_where(|r| r.conn == conn && r.tag == oldtag);
        let writes = self
            .world
            .parked
            .remove_writes_where(|w| w.conn == conn && w.tag == oldtag);
        if let Some(c) = self.conns.get_mut(&conn) {
            for r in &parked {
                c.live_tags.remove(&r.tag);
                if let Ok(f) = c.fids.get_mut(r.fid) {
                    f.parked = f.parked.saturating_sub(1);
                }
            }
            for w in &writes {
                c.live_tags.remove(&w.tag);
            }
        }
        // A command not prepared yet (a message not signed) is not
        // proposed at all.
        if let Some(i) = self
            .batched
            .iter()
            .position(|u| u.conn == conn && u.tag == oldtag)
        {
            self.batched.remove(i);
            if let Some(c) = self.conns.get_mut(&conn) {
                c.live_tags.remove(&oldtag);
            }
        }
        // A Tflush still waiting for its request (below) is a pending
        // request too: flushed, its Rflush is not sent. (flush(5) asks
        // clients to name the first request, but one may name the Tflush.)
        let mut dropped = false;
        for w in self.waiters_mut().filter(|w| w.conn == conn) {
            if let Some(i) = w.flushes.iter().position(|t| *t == oldtag) {
                w.flushes.remove(i);
                dropped = true;
            }
        }
        if dropped && let Some(c) = self.conns.get_mut(&conn) {
            c.live_tags.remove(&oldtag);
        }
        // A request already proposed will be answered when it commits (its
        // effect cannot be taken back); per flush(5) the Rflush follows it.
        let waiting = self
            .waiters_mut()
            .find(|w| w.conn == conn && w.tag == oldtag && !w.cancelled)
            .map(|w| w.flushes.push(tag))
            .is_some();
        if !waiting {
            return self.reply(conn, tag, Body::Rflush, out);
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.live_tags.insert(tag);
        }
    }

    /// Answer, with the reason, every parked request whose capability can
    /// no longer be used (revoked, or expired): left parked, it would wait
    /// for its file to change, perhaps for ever, and then be refused
    /// anyway. Called when a revocation applies and, for expiries, by
    /// [`Server::poll`] once the earliest one has passed (the core has
    /// no timer: a driver that polls only on traffic answers them at its
    /// next poll).
    pub(super) fn end_unusable_waits(&mut self, out: &mut Outbox) {
        let mut ended: Vec<(ConnId, u32, Error)> = Vec::new();
        let mut next = u64::MAX;
        for (conn, fid) in self.world.parked.fids() {
            if ended.iter().any(|e| e.0 == conn && e.1 == fid) {
                continue;
            }
            let access = self
                .conns
                .get(&conn)
                .and_then(|c| c.fids.get(fid).ok())
                .map(|f| &f.access);
            let Some(Access::Attached { grant, .. }) = access else {
                continue;
            };
            match self.world.check(grant) {
                Ok(()) => next = next.min(grant.expires),
                Err(e) => ended.push((conn, fid, e)),
            }
        }
        self.parked_expiry = next;
        for (conn, fid, e) in ended {
            let reads = self
                .world
                .parked
                .remove_where(|r| r.conn == conn && r.fid == fid);
            let writes = self
                .world
                .parked
                .remove_writes_where(|w| w.conn == conn && w.fid == fid);
            if !writes.is_empty() {
                let subject = self.fid_path(conn, fid, None);
                self.error_event(&subject, &e);
            }
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            if let Ok(f) = c.fids.get_mut(fid) {
                f.parked = f.parked.saturating_sub(reads.len() as u32);
            }
            let tags: Vec<u16> = reads
                .iter()
                .map(|r| r.tag)
                .chain(writes.iter().map(|w| w.tag))
                .collect();
            for tag in &tags {
                c.live_tags.remove(tag);
            }
            for tag in tags {
                self.reply_err(conn, tag, &e, out);
            }
        }
    }

    /// Retry the reads parked on every node that changed.
    pub(super) fn run_wakes(&mut self, out: &mut Outbox) {
        while let Some(node) = self.wakes.pop() {
            // Writers wait in line: the first one that is proposed (or
            // still has no room) keeps the rest parked behind it, since
            // the room it takes is not committed yet. The others go on
            // when its message applies, which wakes this node again.
            let mut writes = self.world.parked.take_writes(node);
            while let Some(w) = writes.pop_front() {
                if let Some(c) = self.conns.get_mut(&w.conn) {
                    c.live_tags.remove(&w.tag);
                }
                if self.retry_write(w, out) {
                    for rest in writes.drain(..) {
                        // They were parked a moment ago, so they fit.
                        let _ = self.world.parked.park_write(node, rest);
                    }
                }
            }
            // A fid whose read blocked again will block for its other
            // reads parked here too (nothing changes while they are
            // retried): they stay parked without being read again.
            let mut blocked: Vec<(ConnId, u32)> = Vec::new();
            for r in self.world.parked.take(node) {
                if blocked.contains(&(r.conn, r.fid)) {
                    self.world.parked.park(node, r);
                    continue;
                }
                let Some(c) = self.conns.get_mut(&r.conn) else {
                    continue;
                };
                c.live_tags.remove(&r.tag);
                if let Ok(f) = c.fids.get_mut(r.fid) {
                    f.parked = f.parked.saturating_sub(1);
                }
                // Woken by a change applied after the read began: what it
                // reads now is at least as fresh as a confirmation gives.
                let before = self.world.parked.waiting(node);
                if let Err(e) = self.read(r, true, out) {
                    self.reply_err(r.conn, r.tag, &e, out);
                }
                if self.world.parked.waiting(node) > before {
                    blocked.push((r.conn, r.fid));
                }
            }
        }
    }
}
