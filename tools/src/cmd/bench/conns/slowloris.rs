//! Slowloris connections: each sends the first bytes of a Tversion and
//! then nothing, holding a connection (and whatever the server gives it)
//! without ever becoming a client. A node closes such strangers after a
//! while (cellfs(4) LIMITS); this counts how many the server closed and
//! when.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::Context;
use ninep::{Body, Dialect, Msg, NOTAG};

/// How often the stalled connections are looked at.
const POLL: Duration = Duration::from_millis(50);

/// Stalled connections, each having sent half a frame.
pub struct Stalled {
    /// Each connection, until it is seen closed, and when it sent its
    /// bytes.
    streams: Vec<(Option<TcpStream>, Instant)>,
    /// How many bytes each sent, of a frame of how many.
    pub sent: (usize, usize),
    /// How long opening them took, one after the other (a server that
    /// stops accepting while strangers stall shows here).
    pub opening: Duration,
}

/// When the server closed the stalled connections.
pub struct Closed {
    /// How many it closed within the watch.
    pub count: usize,
    /// The shortest and the longest a closed one lived after sending
    /// its bytes (to within the poll, 50 ms).
    pub shortest: Option<Duration>,
    /// See `shortest`.
    pub longest: Option<Duration>,
}

/// Open `count` connections to `addr`, each sending half a Tversion.
pub fn open(addr: &str, count: usize) -> anyhow::Result<Stalled> {
    let mut frame = Vec::new();
    ninep::encode(
        &Msg {
            tag: NOTAG,
            body: Body::Tversion {
                msize: 64 * 1024,
                version: Dialect::L.version(),
            },
        },
        &mut frame,
    )?;
    let half = &frame[..frame.len() / 2];
    let start = Instant::now();
    let mut streams = Vec::with_capacity(count);
    for i in 0..count {
        let mut s = TcpStream::connect(addr)
            .with_context(|| format!("slowloris connection {} of {count} to {addr}", i + 1))?;
        s.set_nodelay(true)?;
        s.write_all(half)?;
        s.set_nonblocking(true)?;
        streams.push((Some(s), Instant::now()));
    }
    Ok(Stalled {
        streams,
        sent: (half.len(), frame.len()),
        opening: start.elapsed(),
    })
}

impl Stalled {
    /// Watch until every connection is closed or `span` has passed since
    /// the last one stalled.
    pub fn watch(mut self, span: Duration) -> Closed {
        let mut closed = Closed {
            count: 0,
            shortest: None,
            longest: None,
        };
        let end = self.streams.last().map_or_else(Instant::now, |s| s.1) + span;
        let mut buf = [0u8; 256];
        loop {
            let now = Instant::now();
            for (slot, since) in &mut self.streams {
                let Some(s) = slot else { continue };
                let gone = match s.read(&mut buf) {
                    Ok(0) => true,
                    // A stranger may be answered (an Rlerror) before it is
                    // closed: still open until the read says otherwise.
                    Ok(_) => false,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => false,
                    Err(_) => true,
                };
                if gone {
                    *slot = None;
                    closed.count += 1;
                    let lived = now.duration_since(*since);
                    closed.shortest = Some(closed.shortest.map_or(lived, |s| s.min(lived)));
                    closed.longest = Some(closed.longest.map_or(lived, |l| l.max(lived)));
                }
            }
            if closed.count == self.streams.len() || now >= end {
                return closed;
            }
            std::thread::sleep(POLL);
        }
    }
}
