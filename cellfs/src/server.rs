//! The server: connections, requests, and the log that commits mutations.
//! (Skeleton: the public surface transports are written against.)

use alloc::string::String;

use crate::clock::Clock;
use crate::log::Log;
use crate::outbox::{ConnId, Outbox};

/// Settings fixed when a node starts.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's name, shown in `/status`.
    pub node_id: String,
    /// The largest msize the server agrees to (clients may ask for less).
    pub max_msize: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config { node_id: String::from("cell0"), max_msize: 1 << 20 }
    }
}

/// The 9P server core of one node.
pub struct Server<L: Log, C: Clock> {
    log: L,
    clock: C,
    config: Config,
}

impl<L: Log, C: Clock> Server<L, C> {
    /// A server over `log` (whose already-committed entries are replayed on
    /// the first [`Server::poll`]) and `clock`.
    pub fn new(config: Config, log: L, clock: C) -> Self {
        Server { log, clock, config }
    }

    /// Register a new client connection.
    pub fn connect(&mut self) -> ConnId {
        todo!()
    }

    /// The connection is gone: clunk its fids and drop its parked requests.
    pub fn disconnect(&mut self, conn: ConnId, out: &mut Outbox) {
        let _ = (conn, out);
        todo!()
    }

    /// The largest frame `conn` may send now (its negotiated msize).
    pub fn msize(&self, conn: ConnId) -> u32 {
        let _ = conn;
        self.config.max_msize
    }

    /// Handle one whole frame from `conn`. Replies (to `conn`, and to any
    /// connection whose parked request this one completes) go to `out`; a
    /// frame too broken to answer asks `out` to close the connection.
    pub fn handle(&mut self, conn: ConnId, frame: &[u8], out: &mut Outbox) {
        let _ = (conn, frame, out, &self.clock, &mut self.log);
        todo!()
    }

    /// Apply whatever the log has committed since the last call and answer
    /// the requests that were waiting on it. Call after every batch of
    /// `handle` calls and whenever the log signals progress.
    pub fn poll(&mut self, out: &mut Outbox) {
        let _ = out;
        todo!()
    }
}
