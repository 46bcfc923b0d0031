//! The system measured: a channel of a fresh node, written and read over
//! 9P2000.L with several requests in flight on each connection.
//!
//! [`Conn`] makes one request at a time, which is what the other cases
//! time; here each connection is set up with it (version, attach, walk,
//! open) and then taken over: a writer keeps up to [`WINDOW`] Twrites
//! unanswered under tags of their own, and a reader keeps [`READS`] Treads
//! on its fid of `data`, each answered with one whole message.

use std::io::Write;
use std::net::TcpStream;
use std::ops::Range;
use std::time::Duration;

use anyhow::{Context, bail};
use ninep::{Body, Dialect, Msg};

use super::load::{MESSAGE, Receiver, Sender, WINDOW};
use super::wire::{Fill, InBuf};
use crate::cmd::bench::conn::Conn;
use crate::cmd::bench::servers::Target;

/// What the benchmark writes to a channel's ctl before writers start:
/// enough retention that a reader a little behind misses nothing.
pub const RETAIN: &str = "retain count=65536";

/// Treads each reader keeps outstanding on its fid: as many as a writer
/// keeps Twrites, so a reader can take a writer's whole window in one
/// round trip. With 4 a reader fell behind a single writer (1→1 p50 about
/// 6 ms against 2 ms with 32, on a node whose CPU the writes already
/// fill), which timed the reader's round trips more than the channel.
pub const READS: usize = 32;

/// How many bytes each Tread asks for: room for 64 messages, which come
/// several to a read because each is a line (the reader splits them; a
/// reply that is not whole messages shows as bytes no writer sent).
const READ_COUNT: u32 = 64 * MESSAGE as u32;

/// The longest a writer waits for an Rwrite before giving up on the node.
const ANSWER_WAIT: Duration = Duration::from_secs(30);

/// How long a reader's socket read waits before its driver looks at the
/// clock.
const POLL: Duration = Duration::from_millis(50);

/// Fids (the root is 0).
const DIR: u32 = 1;
const CTL: u32 = 2;
const DATA: u32 = 3;

/// Make `/chan/NAME` on the node and set its retention; a note to print
/// if the node would not take [`RETAIN`] (the benchmark carries on with
/// the channel's default retention).
pub fn make_channel(node: &Target, name: &str) -> anyhow::Result<Option<String>> {
    let mut c = Conn::open(&node.addr, &node.aname)?;
    c.walk(DIR, &["chan"])?;
    c.rpc(Body::Tmkdir {
        dfid: DIR,
        name,
        mode: 0o755,
        gid: 0,
    })
    .with_context(|| format!("mkdir /chan/{name}"))?;
    c.walk(CTL, &["chan", name, "ctl"])?;
    c.lopen(CTL, libc::O_WRONLY as u32)?;
    // 9P2000.L carries only an errno back, so "unknown verb" reads as
    // EINVAL here; any refusal is noted rather than fatal, since the
    // figures stand without it (a slow reader may just miss messages).
    Ok(c.write(CTL, RETAIN.as_bytes()).err().map(|e| {
        format!(
            "/chan/{name}/ctl refused `{RETAIN}` ({e}); the channel keeps its default retention"
        )
    }))
    // The channel is left on the node: the node is thrown away after the
    // run, and removing it here would race the readers' disconnects.
}

/// Open `/chan/NAME/data` on a connection of its own, for `flags`.
fn open_data(node: &Target, name: &str, flags: i32) -> anyhow::Result<TcpStream> {
    let mut c = Conn::open(&node.addr, &node.aname)?;
    c.walk(DATA, &["chan", name, "data"])?;
    c.lopen(DATA, flags as u32)?;
    Ok(c.into_stream())
}

/// The next whole 9P frame in `inbuf`, if one is there.
fn next_frame(inbuf: &mut InBuf) -> anyhow::Result<Option<Range<usize>>> {
    let data = inbuf.data();
    let Some(size) = data.get(..4) else {
        return Ok(None);
    };
    let size = u32::from_le_bytes([size[0], size[1], size[2], size[3]]) as usize;
    anyhow::ensure!(size >= 7, "a reply of {size} bytes is not a 9P frame");
    Ok((data.len() >= size).then(|| inbuf.take(size)))
}

/// An error reply, or a reply of the wrong kind, as an error.
fn unexpected(msg: &Msg<'_>, asked: &str) -> anyhow::Error {
    match msg.body {
        Body::Rlerror { ecode } => anyhow::anyhow!(
            "the node refused a {asked}: {}",
            std::io::Error::from_raw_os_error(ecode as i32)
        ),
        _ => anyhow::anyhow!("a {asked} was answered with {:?}", msg.body),
    }
}

/// A writer: `data` open for writing, Twrites pipelined.
pub struct Cell0Sender {
    stream: TcpStream,
    out: Vec<u8>,
    inbuf: InBuf,
    /// Tags of no Twrite in flight.
    free: Vec<u16>,
}

impl Cell0Sender {
    /// Connect to `node` and open `/chan/NAME/data` for writing.
    pub fn open(node: &Target, name: &str) -> anyhow::Result<Cell0Sender> {
        let stream = open_data(node, name, libc::O_WRONLY)?;
        stream.set_read_timeout(Some(ANSWER_WAIT))?;
        Ok(Cell0Sender {
            stream,
            out: Vec::with_capacity(WINDOW * 128),
            inbuf: InBuf::new(),
            free: (1..=WINDOW as u16).collect(),
        })
    }
}

impl Sender for Cell0Sender {
    fn queue(&mut self, msg: &[u8; MESSAGE]) -> anyhow::Result<()> {
        let tag = self
            .free
            .pop()
            .context("more Twrites queued than the window holds")?;
        let body = Body::Twrite {
            fid: DATA,
            offset: 0,
            data: msg,
        };
        ninep::encode(&Msg { tag, body }, &mut self.out)?;
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.stream.write_all(&self.out)?;
        self.out.clear();
        Ok(())
    }

    fn acks(&mut self) -> anyhow::Result<usize> {
        loop {
            let mut n = 0;
            while let Some(r) = next_frame(&mut self.inbuf)? {
                let msg = ninep::decode(self.inbuf.at(r), Dialect::L)
                    .map_err(|e| anyhow::anyhow!("undecodable reply: {e}"))?;
                match msg.body {
                    Body::Rwrite { count } if count as usize == MESSAGE => {}
                    _ => return Err(unexpected(&msg, "Twrite")),
                }
                self.free.push(msg.tag);
                n += 1;
            }
            if n > 0 {
                return Ok(n);
            }
            if let Fill::TimedOut = self.inbuf.fill(&mut self.stream)? {
                bail!("the node answered no Twrite within {ANSWER_WAIT:?}");
            }
        }
    }
}

/// A reader: its own fid of `data`, so its own cursor, with [`READS`]
/// Treads outstanding.
pub struct Cell0Receiver {
    stream: TcpStream,
    out: Vec<u8>,
    inbuf: InBuf,
    /// Tags whose Tread was answered and is not sent again yet.
    owed: Vec<u16>,
    /// Messages of the last Rread not handed out yet (lines come several
    /// to a read), as a range of `inbuf`.
    pending: std::ops::Range<usize>,
}

impl Cell0Receiver {
    /// Connect to `node`, open `/chan/NAME/data` for reading and send the
    /// first Treads, which wait on the node until messages come.
    pub fn open(node: &Target, name: &str) -> anyhow::Result<Cell0Receiver> {
        let stream = open_data(node, name, libc::O_RDONLY)?;
        stream.set_read_timeout(Some(POLL))?;
        let mut r = Cell0Receiver {
            stream,
            out: Vec::with_capacity(READS * 32),
            inbuf: InBuf::new(),
            owed: (1..=READS as u16).collect(),
            pending: 0..0,
        };
        r.send_owed()?;
        Ok(r)
    }

    /// Send a Tread for every tag answered since the last time, together.
    fn send_owed(&mut self) -> anyhow::Result<()> {
        for &tag in &self.owed {
            let body = Body::Tread {
                fid: DATA,
                offset: 0,
                count: READ_COUNT,
            };
            ninep::encode(&Msg { tag, body }, &mut self.out)?;
        }
        self.owed.clear();
        self.stream.write_all(&self.out)?;
        self.out.clear();
        Ok(())
    }
}

impl Receiver for Cell0Receiver {
    fn recv(&mut self) -> anyhow::Result<Option<&[u8]>> {
        loop {
            if !self.pending.is_empty() {
                let start = self.pending.start;
                let end = (start + MESSAGE).min(self.pending.end);
                self.pending.start = end;
                return Ok(Some(self.inbuf.at(start..end)));
            }
            if let Some(r) = next_frame(&mut self.inbuf)? {
                let end = r.end;
                let msg = ninep::decode(self.inbuf.at(r), Dialect::L)
                    .map_err(|e| anyhow::anyhow!("undecodable reply: {e}"))?;
                let Body::Rread { data } = msg.body else {
                    return Err(unexpected(&msg, "Tread"));
                };
                // Sent again once the replies already here are handled,
                // so a burst of answers costs one write.
                self.owed.push(msg.tag);
                let len = data.len();
                self.pending = end - len..end;
                continue;
            }
            if !self.owed.is_empty() {
                self.send_owed()?;
            }
            if let Fill::TimedOut = self.inbuf.fill(&mut self.stream)? {
                return Ok(None);
            }
        }
    }
}
