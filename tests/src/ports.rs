//! Free loopback ports for the servers a test starts.

use std::net::TcpListener;

/// A loopback port nothing listens on right now, below Linux's ephemeral
/// range (a free port there can be taken by an outgoing connection before
/// the node binds it), never the same twice in this process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = (std::process::id() % 700) * 16 + 4;
    for _ in 0..SPAN {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (start + k) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between 20000 and 32000");
}

/// `127.0.0.1:PORT` with a [`free_port`] (for a server, or a node's raft
/// transport).
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// The first of `len` consecutive loopback ports that were all free a
/// moment ago (for commands that number their ports from a base).
pub fn free_port_run(len: u16) -> u16 {
    // Start somewhere that differs between concurrent test processes,
    // and stay below Linux's ephemeral range (32768 and up by default):
    // a port there that is free now can be taken by any outgoing
    // connection before the node binds it.
    let mut base = 20_000 + (std::process::id() % 700) as u16 * 16;
    for _ in 0..200 {
        let held: Vec<TcpListener> = (0..len)
            .map_while(|i| TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if held.len() == len as usize {
            return base;
        }
        base = if base + len + 7 >= 32_000 {
            20_000
        } else {
            base + len + 7
        };
    }
    panic!("no {len} consecutive free ports on loopback");
}
