//! The durable Redis peer: a stream, XADD by the writers and XREAD by
//! each reader from its own position, on a server whose append-only file
//! is fsynced before it answers (see [`super::redis::Persistence`]).
//!
//! A stream rather than a list: BRPOP hands each message to one reader,
//! a work queue, while every reader of a stream reads every entry, which
//! is the fan-out the node's channel does. Redis with `appendfsync
//! always` writes and fsyncs the file once per turn of its event loop,
//! before sending that turn's replies, so an XADD answered is on disk
//! and a pipeline of them shares one fsync, as a window of Twrites shares
//! the node's. Its writers are [`super::redis::RedisSender::xadd`].

use std::io::Write;
use std::net::TcpStream;
use std::ops::Range;
use std::time::Duration;

use anyhow::{Context, bail};

use super::load::{MESSAGE, Receiver};
use super::redis::{Value, command, value};
use super::wire::{Fill, InBuf};

/// How long a reader's socket read waits before its driver looks at the
/// clock.
const POLL: Duration = Duration::from_millis(50);

/// Entries one XREAD returns at most: a reply of this many (about 130
/// bytes each) stays well inside the reader's buffer.
const COUNT: &str = "512";

/// Milliseconds an XREAD blocks with nothing new, so an idle reader's
/// request is answered (empty) and sent again now and then rather than
/// hanging on a connection nobody reads any more.
const BLOCK_MS: &str = "1000";

/// A reader: XREAD BLOCK from the last entry it has, one request always
/// outstanding.
pub struct StreamReceiver {
    stream: TcpStream,
    key: Vec<u8>,
    inbuf: InBuf,
    /// Payloads of the last reply, one after another, and how many of
    /// them were handed out.
    batch: Vec<u8>,
    handed: usize,
    /// The ID of the last entry received: the next XREAD starts after it.
    last: Vec<u8>,
}

/// One stream entry in a reply: where its payload and its ID are.
type Entry = (Range<usize>, Range<usize>);

/// An XREAD reply at the front of `buf`: each entry (ranges into `buf`)
/// and the reply's length; `None` if it has not all arrived yet. A reply
/// with no entries (the BLOCK timed out) has none.
fn xread_reply(buf: &[u8]) -> anyhow::Result<Option<(Vec<Entry>, usize)>> {
    // Each step: the next value, or not all here yet.
    macro_rules! next {
        ($at:expr) => {
            match value(buf, $at)? {
                Some(v) => v,
                None => return Ok(None),
            }
        };
    }
    let mut entries = Vec::new();
    let (head, mut at) = next!(0);
    let streams = match head {
        Value::Array(n) => n,
        Value::Nil => 0,
        Value::Error(e) => bail!(
            "redis refused an XREAD: {}",
            String::from_utf8_lossy(&buf[e])
        ),
        other => bail!("redis answered an XREAD with {other:?}"),
    };
    for _ in 0..streams {
        // [key, [entry...]]
        let (_, a) = next!(at);
        let (_key, a) = next!(a);
        let (list, a) = next!(a);
        at = a;
        let Value::Array(n) = list else {
            bail!("an XREAD reply whose entries are {list:?}");
        };
        for _ in 0..n {
            // [id, [field, value]]
            let (_, a) = next!(at);
            let (id, a) = next!(a);
            let (fields, a) = next!(a);
            at = a;
            let (Value::Bulk(id), Value::Array(f)) = (id, fields) else {
                bail!("an XREAD entry that is not an ID and fields");
            };
            let mut payload = None;
            for i in 0..f {
                let (v, a) = next!(at);
                at = a;
                if let (1, Value::Bulk(r)) = (i % 2, v) {
                    payload = payload.or(Some(r));
                }
            }
            let payload = payload.context("an XREAD entry without a value")?;
            entries.push((payload, id));
        }
    }
    Ok(Some((entries, at)))
}

impl StreamReceiver {
    /// Connect to `addr` and start reading the stream `key` from its
    /// first entry, so a message added after this returns reaches the
    /// reader (so does one added before: the stream starts empty).
    pub fn open(addr: &str, key: &str) -> anyhow::Result<StreamReceiver> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(POLL))?;
        let mut r = StreamReceiver {
            stream,
            key: key.as_bytes().to_vec(),
            inbuf: InBuf::new(),
            batch: Vec::with_capacity(512 * MESSAGE),
            handed: 0,
            last: b"0-0".to_vec(),
        };
        r.ask()?;
        Ok(r)
    }

    /// Send the next XREAD, for what comes after the last entry received.
    fn ask(&mut self) -> anyhow::Result<()> {
        let mut out = Vec::with_capacity(128);
        command(
            &[
                b"XREAD",
                b"COUNT",
                COUNT.as_bytes(),
                b"BLOCK",
                BLOCK_MS.as_bytes(),
                b"STREAMS",
                &self.key,
                &self.last,
            ],
            &mut out,
        );
        self.stream.write_all(&out)?;
        Ok(())
    }
}

impl Receiver for StreamReceiver {
    fn recv(&mut self) -> anyhow::Result<Option<&[u8]>> {
        loop {
            if self.handed * MESSAGE < self.batch.len() {
                let at = self.handed * MESSAGE;
                self.handed += 1;
                return Ok(Some(&self.batch[at..at + MESSAGE]));
            }
            if let Some((entries, len)) = xread_reply(self.inbuf.data())? {
                let data = self.inbuf.data();
                self.batch.clear();
                self.handed = 0;
                for (payload, _) in &entries {
                    anyhow::ensure!(
                        payload.len() == MESSAGE,
                        "a stream entry of {} bytes: no writer sent it",
                        payload.len()
                    );
                    self.batch.extend_from_slice(&data[payload.clone()]);
                }
                if let Some((_, id)) = entries.last() {
                    self.last = data[id.clone()].to_vec();
                }
                self.inbuf.take(len);
                // The next request goes out before this batch is handed
                // out, so Redis gathers the next while the driver works.
                self.ask()?;
                continue;
            }
            if let Fill::TimedOut = self.inbuf.fill(&mut self.stream)? {
                return Ok(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_xread_reply_parses_whole_or_not_at_all() {
        let reply = b"*1\r\n*2\r\n$1\r\nk\r\n*2\r\n\
            *2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nm\r\n$2\r\nab\r\n\
            *2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nm\r\n$2\r\ncd\r\n";
        for cut in 0..reply.len() {
            assert!(xread_reply(&reply[..cut]).unwrap().is_none(), "cut {cut}");
        }
        let (entries, len) = xread_reply(reply).unwrap().unwrap();
        assert_eq!(len, reply.len());
        let got: Vec<_> = entries
            .iter()
            .map(|(p, id)| (&reply[p.clone()], &reply[id.clone()]))
            .collect();
        assert_eq!(got, [(&b"ab"[..], &b"1-0"[..]), (b"cd", b"1-1")]);
        // A BLOCK that timed out: a null array, no entries.
        assert_eq!(xread_reply(b"*-1\r\n").unwrap().unwrap(), (vec![], 5));
        assert!(xread_reply(b"-ERR no\r\n").is_err());
    }
}
