//! The other durable peer: NATS JetStream with file storage, spoken in
//! the NATS text protocol by a small client of our own.
//!
//! A writer publishes to the stream's subject with a reply subject of its
//! own, so JetStream answers each message once it is stored (the publish
//! ack), and keeps up to [`WINDOW`] unanswered, as the other writers do.
//! Each reader has an ephemeral push consumer of its own that delivers
//! the stream from its first message, so every reader gets every message
//! (fan-out), with flow control on as the NATS clients' ordered consumers
//! run it: without it a reader that falls behind is cut off as a slow
//! consumer rather than slowed down.
//!
//! How the server keeps messages: nats-server 2.9 writes each message to
//! its block file (a `write`, not an fsync) before the publish ack, and
//! fsyncs every block file on a timer (`SyncInterval`, 2 minutes, not settable in a
//! 2.9 configuration; `sync_interval`, with `always`, came in 2.10). See
//! [`SYNC_NOTE`].

use std::io::Write;
use std::net::TcpStream;
use std::ops::Range;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::load::{MESSAGE, Receiver, Sender, WINDOW};
use super::wire::{Fill, InBuf};
use crate::cmd::bench::servers::{Process, scratch_dir};

/// How nats-server 2.9 makes a stored message durable, for the header.
pub const SYNC_NOTE: &str = "a publish is acked once the message is written to the stream's block file (write(2), no fsync); 2.9 fsyncs them on a timer, every 2 min (sync_interval, and its `always`, came in 2.10)";

/// How long the server may take to greet a client.
const START_WAIT: Duration = Duration::from_secs(15);

/// The longest a writer waits for a publish ack, or anyone for the
/// answer to a JetStream API request.
const ANSWER_WAIT: Duration = Duration::from_secs(30);

/// How long a reader's socket read waits before its driver looks at the
/// clock.
const POLL: Duration = Duration::from_millis(50);

/// Nanoseconds between a consumer's idle heartbeats, which JetStream
/// requires of a consumer with flow control.
const HEARTBEAT_NS: u64 = 5_000_000_000;

/// Numbers the inboxes of this process's connections apart.
static INBOXES: AtomicUsize = AtomicUsize::new(0);

/// The installed nats-server's version, or how to install it.
pub fn version() -> anyhow::Result<String> {
    crate::cmd::bench::servers::peer_version(
        "nats-server",
        "install nats-server: apt-get install nats-server",
        |text| {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix('v'))
                .map(String::from)
        },
    )
}

/// A nats-server with JetStream started for the benchmark.
pub struct Nats {
    /// Where it listens (HOST:PORT).
    pub addr: String,
    process: Process,
}

impl Nats {
    /// Start one with JetStream, its store in a scratch directory on the
    /// same file system as the node's log, on a free loopback port; wait
    /// until it greets a client.
    pub fn start() -> anyhow::Result<Nats> {
        let dir = scratch_dir(&std::env::temp_dir(), "nats")?;
        let addr = crate::config::free_loopback_addrs(1)?.remove(0);
        let port = addr.rsplit(':').next().unwrap_or_default().to_string();
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port, "-sd"])
            .arg(dir.join("store"))
            .arg("-l")
            .arg(dir.join("nats.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nats-server")?;
        let mut nats = Nats {
            addr,
            process: Process::new(child, dir),
        };
        let deadline = Instant::now() + START_WAIT;
        while Client::connect(&nats.addr).is_err() {
            if let Some(s) = nats.process.exited() {
                bail!(
                    "nats-server exited ({s}); its log is {}",
                    nats.log().display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "nats-server did not answer on {} within {START_WAIT:?}; its log is {}",
                    nats.addr,
                    nats.log().display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(nats)
    }

    fn log(&self) -> PathBuf {
        self.process.dir.join("nats.log")
    }

    /// Its peak resident memory so far, in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.process.peak_rss_kib()
    }

    /// The server process (for its CPU time).
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// Make a stream `name` in file storage, taking the subject `name`.
    pub fn create_stream(&self, name: &str) -> anyhow::Result<()> {
        let mut c = Client::connect(&self.addr)?;
        let body = format!(r#"{{"name":"{name}","subjects":["{name}"],"storage":"file"}}"#);
        let answer = c.request(&format!("$JS.API.STREAM.CREATE.{name}"), &body)?;
        check_api(&answer).with_context(|| format!("creating the JetStream stream {name}"))
    }
}

/// An error a JetStream API answer carries, as an error.
fn check_api(answer: &[u8]) -> anyhow::Result<()> {
    let text = String::from_utf8_lossy(answer);
    if text.contains("\"error\"") {
        bail!("nats-server answered {text}");
    }
    Ok(())
}

/// One thing the server sent, with ranges into the bytes it came in.
#[derive(Debug, PartialEq)]
enum Frame {
    /// A message for subscription `sid`; `status` is true for a header
    /// only message (a heartbeat or a flow control request).
    Msg {
        sid: Range<usize>,
        reply: Option<Range<usize>>,
        payload: Range<usize>,
        status: bool,
    },
    Ping,
    /// PONG, +OK and INFO: nothing to do.
    Other,
    Err(Range<usize>),
}

/// The frame at the front of `buf` and its length, or `None` if it has
/// not all arrived yet.
fn frame(buf: &[u8]) -> anyhow::Result<Option<(Frame, usize)>> {
    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = &buf[..eol];
    let next = eol + 2;
    // Words of the line, as ranges into it.
    let mut words = Vec::with_capacity(6);
    let mut at = 0;
    for w in line.split(|&b| b == b' ' || b == b'\t') {
        if !w.is_empty() {
            words.push(at..at + w.len());
        }
        at += w.len() + 1;
    }
    let op = words.first().map(|r| &line[r.clone()]).unwrap_or_default();
    let number = |r: &Range<usize>| -> anyhow::Result<usize> {
        std::str::from_utf8(&line[r.clone()])
            .ok()
            .and_then(|t| t.parse().ok())
            .with_context(|| {
                format!(
                    "a NATS line with a length that is not a number: {:?}",
                    String::from_utf8_lossy(line)
                )
            })
    };
    let frame = if op.eq_ignore_ascii_case(b"MSG") || op.eq_ignore_ascii_case(b"HMSG") {
        let headers = op.len() == 4;
        // MSG subject sid [reply] size; HMSG subject sid [reply] hsize size
        let fixed = if headers { 5 } else { 4 };
        anyhow::ensure!(
            words.len() == fixed || words.len() == fixed + 1,
            "a NATS message line of {} words: {:?}",
            words.len(),
            String::from_utf8_lossy(line)
        );
        let total = number(&words[words.len() - 1])?;
        let head = if headers {
            number(&words[words.len() - 2])?
        } else {
            0
        };
        anyhow::ensure!(head <= total, "a NATS message with more header than bytes");
        let end = next + total;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        let reply = (words.len() == fixed + 1).then(|| words[3].clone());
        return Ok(Some((
            Frame::Msg {
                sid: words[2].clone(),
                reply,
                payload: next + head..end,
                status: headers && head == total,
            },
            end + 2,
        )));
    } else if op.eq_ignore_ascii_case(b"PING") {
        Frame::Ping
    } else if op.eq_ignore_ascii_case(b"-ERR") {
        Frame::Err(words.first().map_or(0, |r| r.end + 1).min(eol)..eol)
    } else if op.eq_ignore_ascii_case(b"PONG")
        || op.eq_ignore_ascii_case(b"+OK")
        || op.eq_ignore_ascii_case(b"INFO")
    {
        Frame::Other
    } else {
        bail!("nats-server sent {:?}", String::from_utf8_lossy(line))
    };
    Ok(Some((frame, next)))
}

/// A connection: the handshake, the pings the server sends, the flow
/// control requests a consumer sends, and messages.
struct Client {
    stream: TcpStream,
    inbuf: InBuf,
    /// This connection's inbox prefix: replies come to subjects under it.
    inbox: String,
}

impl Client {
    /// Connect and greet; returns once the server answered a PING, so a
    /// subscription made before the next request is in place by then.
    fn connect(addr: &str) -> anyhow::Result<Client> {
        let mut stream =
            TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(ANSWER_WAIT))?;
        stream.write_all(
            b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1,\"lang\":\"cell0-bench\",\"version\":\"0\"}\r\nPING\r\n",
        )?;
        let n = INBOXES.fetch_add(1, Ordering::Relaxed);
        let mut c = Client {
            stream,
            inbuf: InBuf::new(),
            inbox: format!("_INBOX.cell0bench{}.{n}", std::process::id()),
        };
        c.pong()?;
        Ok(c)
    }

    /// Wait for the PONG to a PING sent.
    fn pong(&mut self) -> anyhow::Result<()> {
        loop {
            while let Some((f, len)) = frame(self.inbuf.data())? {
                let pong = self.inbuf.data()[..len].eq_ignore_ascii_case(b"PONG\r\n");
                match f {
                    Frame::Err(e) => bail!(
                        "nats-server refused: {}",
                        String::from_utf8_lossy(&self.inbuf.data()[e])
                    ),
                    Frame::Ping => self.stream.write_all(b"PONG\r\n")?,
                    _ => {}
                }
                self.inbuf.take(len);
                if pong {
                    return Ok(());
                }
            }
            if let Fill::TimedOut = self.inbuf.fill(&mut self.stream)? {
                bail!("nats-server did not answer a PING within {ANSWER_WAIT:?}");
            }
        }
    }

    /// The next message already in the buffer, answering what else is
    /// there on the way; `None` once no whole message is left in it. The
    /// payload stays where it is until the next [`Client::fill`].
    fn buffered(&mut self) -> anyhow::Result<Option<(u32, Range<usize>)>> {
        while let Some((f, len)) = frame(self.inbuf.data())? {
            let data = self.inbuf.data();
            match f {
                Frame::Msg {
                    sid,
                    reply,
                    payload,
                    status,
                } => {
                    if status {
                        // A heartbeat (no reply) or a flow control
                        // request, answered with an empty message.
                        if let Some(r) = reply {
                            let mut out = b"PUB ".to_vec();
                            out.extend_from_slice(&data[r]);
                            out.extend_from_slice(b" 0\r\n\r\n");
                            self.stream.write_all(&out)?;
                        }
                        self.inbuf.take(len);
                        continue;
                    }
                    let sid = std::str::from_utf8(&data[sid])
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .context("a NATS message for a subscription that is not a number")?;
                    let at = self.inbuf.take(len).start;
                    return Ok(Some((sid, at + payload.start..at + payload.end)));
                }
                Frame::Ping => self.stream.write_all(b"PONG\r\n")?,
                Frame::Err(e) => bail!(
                    "nats-server said -ERR {}",
                    String::from_utf8_lossy(&data[e])
                ),
                Frame::Other => {}
            }
            self.inbuf.take(len);
        }
        Ok(None)
    }

    /// Read what the socket has; false if nothing came within its read
    /// timeout.
    fn fill(&mut self) -> anyhow::Result<bool> {
        Ok(matches!(self.inbuf.fill(&mut self.stream)?, Fill::Some))
    }

    /// The next message, or `None` if none came within the socket's read
    /// timeout.
    fn next(&mut self) -> anyhow::Result<Option<(u32, Range<usize>)>> {
        loop {
            if let Some(m) = self.buffered()? {
                return Ok(Some(m));
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// Send `body` to `subject` and wait for the one answer, on a
    /// subscription (sid 1000) to this connection's request inbox.
    fn request(&mut self, subject: &str, body: &str) -> anyhow::Result<Vec<u8>> {
        const SID: u32 = 1000;
        let reply = format!("{}.api", self.inbox);
        let out = format!(
            "SUB {reply} {SID}\r\nPUB {subject} {reply} {}\r\n{body}\r\n",
            body.len()
        );
        self.stream.write_all(out.as_bytes())?;
        let deadline = Instant::now() + ANSWER_WAIT;
        loop {
            if let Some((sid, payload)) = self.next()?
                && sid == SID
            {
                let answer = self.inbuf.at(payload).to_vec();
                self.stream
                    .write_all(format!("UNSUB {SID}\r\n").as_bytes())?;
                return Ok(answer);
            }
            if Instant::now() > deadline {
                bail!("nats-server did not answer {subject} within {ANSWER_WAIT:?}");
            }
        }
    }
}

/// A writer: publishes pipelined on its own connection, each acked by
/// JetStream to the connection's inbox.
pub struct NatsSender {
    client: Client,
    /// Everything of a PUB before the message.
    prefix: Vec<u8>,
    out: Vec<u8>,
}

/// The subscription publish acks come to.
const ACKS: u32 = 1;

impl NatsSender {
    /// Connect to `addr`, to publish to the stream (and subject) `name`.
    pub fn open(addr: &str, name: &str) -> anyhow::Result<NatsSender> {
        let mut client = Client::connect(addr)?;
        let acks = format!("{}.ack", client.inbox);
        client
            .stream
            .write_all(format!("SUB {acks} {ACKS}\r\nPING\r\n").as_bytes())?;
        client.pong()?;
        Ok(NatsSender {
            client,
            prefix: format!("PUB {name} {acks} {MESSAGE}\r\n").into_bytes(),
            out: Vec::with_capacity(WINDOW * 128),
        })
    }
}

impl Sender for NatsSender {
    fn queue(&mut self, msg: &[u8; MESSAGE]) -> anyhow::Result<()> {
        self.out.extend_from_slice(&self.prefix);
        self.out.extend_from_slice(msg);
        self.out.extend_from_slice(b"\r\n");
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.client.stream.write_all(&self.out)?;
        self.out.clear();
        Ok(())
    }

    fn acks(&mut self) -> anyhow::Result<usize> {
        loop {
            let mut n = 0;
            while let Some((sid, payload)) = self.client.buffered()? {
                if sid == ACKS {
                    check_api(self.client.inbuf.at(payload))
                        .context("JetStream refused a message")?;
                    n += 1;
                }
            }
            if n > 0 {
                return Ok(n);
            }
            if !self.client.fill()? {
                bail!("nats-server acked no message within {ANSWER_WAIT:?}");
            }
        }
    }
}

/// A reader: an ephemeral push consumer of its own, delivering the whole
/// stream to a subject this connection subscribes to.
pub struct NatsReceiver {
    client: Client,
    /// Where the last message's payload is in the client's buffer.
    last: Range<usize>,
}

/// The subscription a reader's consumer delivers to.
const DELIVER: u32 = 1;

impl NatsReceiver {
    /// Connect to `addr` and make a consumer of the stream `name` that
    /// delivers every message from the first; returns once JetStream
    /// confirmed it.
    pub fn open(addr: &str, name: &str) -> anyhow::Result<NatsReceiver> {
        let mut client = Client::connect(addr)?;
        let deliver = format!("{}.deliver", client.inbox);
        client
            .stream
            .write_all(format!("SUB {deliver} {DELIVER}\r\n").as_bytes())?;
        let body = format!(
            r#"{{"stream_name":"{name}","config":{{"deliver_subject":"{deliver}","deliver_policy":"all","ack_policy":"none","flow_control":true,"idle_heartbeat":{HEARTBEAT_NS}}}}}"#
        );
        let answer = client.request(&format!("$JS.API.CONSUMER.CREATE.{name}"), &body)?;
        check_api(&answer).with_context(|| format!("making a consumer of the stream {name}"))?;
        client.stream.set_read_timeout(Some(POLL))?;
        Ok(NatsReceiver { client, last: 0..0 })
    }
}

impl Receiver for NatsReceiver {
    fn recv(&mut self) -> anyhow::Result<Option<&[u8]>> {
        loop {
            match self.client.next()? {
                Some((sid, payload)) if sid == DELIVER => {
                    self.last = payload;
                    return Ok(Some(self.client.inbuf.at(self.last.clone())));
                }
                Some(_) => {}
                None => return Ok(None),
            }
        }
    }
}

/// Every whole frame in `buf`, with ranges into it.
#[cfg(test)]
fn frames(buf: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some((f, len)) = frame(&buf[at..]).unwrap() {
        out.push(match f {
            Frame::Msg {
                sid,
                reply,
                payload,
                status,
            } => Frame::Msg {
                sid: at + sid.start..at + sid.end,
                reply: reply.map(|r| at + r.start..at + r.end),
                payload: at + payload.start..at + payload.end,
                status,
            },
            other => other,
        });
        at += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_whole_or_not_at_all() {
        let bytes = b"PING\r\nMSG s 1 r.x 5\r\nhello\r\nHMSG s 2 fc.1 16 16\r\nNATS/1.0 100\r\n\r\n\r\n+OK\r\n";
        let got = frames(bytes);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], Frame::Ping);
        let Frame::Msg {
            sid,
            reply,
            payload,
            status,
        } = &got[1]
        else {
            panic!("{:?}", got[1]);
        };
        assert_eq!(
            (&bytes[sid.clone()], &bytes[reply.clone().unwrap()]),
            (&b"1"[..], &b"r.x"[..])
        );
        assert_eq!((&bytes[payload.clone()], *status), (&b"hello"[..], false));
        let Frame::Msg { reply, status, .. } = &got[2] else {
            panic!("{:?}", got[2]);
        };
        assert_eq!(
            (&bytes[reply.clone().unwrap()], *status),
            (&b"fc.1"[..], true)
        );
        // A message cut anywhere is not there yet.
        let msg = b"MSG s 1 5\r\nhello\r\n";
        for cut in 0..msg.len() {
            assert!(frame(&msg[..cut]).unwrap().is_none(), "cut {cut}");
        }
        assert!(frame(b"WHAT\r\n").is_err());
        let Some((Frame::Err(e), _)) = frame(b"-ERR 'Unknown'\r\n").unwrap() else {
            panic!("not an error");
        };
        assert_eq!(&b"-ERR 'Unknown'"[e], b"'Unknown'");
    }

    #[test]
    fn api_errors_are_errors() {
        assert!(check_api(br#"{"type":"x","error":{"code":400}}"#).is_err());
        assert!(check_api(br#"{"stream":"s","seq":1}"#).is_ok());
    }
}
