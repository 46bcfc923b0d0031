//! The yardstick: Redis pub/sub, spoken in RESP by a small client of our
//! own.
//!
//! Redis rather than NATS because a PUBLISH is answered (with how many
//! subscribers it reached), as a Twrite is with an Rwrite, so both writers
//! run the same loop: up to [`WINDOW`] writes unanswered, a new one sent
//! as each answer comes. A core NATS PUB is answered by nothing, so a
//! NATS writer would either send blind (no window at all) or need a
//! protocol extra (verbose `+OK`, a PING per batch) that its users do not
//! run with. Both are at-most-once fan-out to the subscribers connected at
//! the time, which is what the readers here are.
//!
//! The server gets a scratch directory, a free port and no persistence
//! (pub/sub messages are never kept by Redis in any setting), and is
//! killed when the benchmark is done. The durable peer (a stream, see
//! [`super::redis_stream`]) is a second server started the same way with
//! its append-only file fsynced before each answer.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::ops::Range;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::load::{MESSAGE, Receiver, Sender, WINDOW};
use super::wire::{Fill, InBuf};
use crate::cmd::bench::servers::{Process, scratch_dir};

/// How long the server may take to answer its first PING.
const START_WAIT: Duration = Duration::from_secs(15);

/// The longest a publisher waits for an answer.
const ANSWER_WAIT: Duration = Duration::from_secs(30);

/// How long a subscriber's socket read waits before its driver looks at
/// the clock.
const POLL: Duration = Duration::from_millis(50);

/// The installed redis-server's version, or how to install it.
pub fn version() -> anyhow::Result<String> {
    crate::cmd::bench::servers::peer_version(
        "redis-server",
        "install redis-server: apt-get install redis-server",
        |text| {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix("v="))
                .map(String::from)
        },
    )
}

/// What a started redis-server keeps on disk.
#[derive(Clone, Copy, PartialEq)]
pub enum Persistence {
    /// Nothing: pub/sub, whose messages Redis never keeps; the scratch
    /// directory is on tmpfs.
    None,
    /// An append-only file fsynced before each command is answered
    /// (`appendonly yes`, `appendfsync always`), in a scratch directory
    /// on the same file system as the node's log, so both pay for the
    /// same disk.
    AppendFsyncAlways,
}

/// A redis-server started for the benchmark.
pub struct Redis {
    /// Where it listens (HOST:PORT).
    pub addr: String,
    process: Process,
}

impl Redis {
    /// Start one on a free loopback port, keeping what `persistence`
    /// says, and wait until it answers.
    pub fn start(persistence: Persistence) -> anyhow::Result<Redis> {
        let shm = Path::new("/dev/shm");
        let dir = match persistence {
            Persistence::None if shm.is_dir() => scratch_dir(shm, "redis")?,
            Persistence::None => scratch_dir(&std::env::temp_dir(), "redis")?,
            Persistence::AppendFsyncAlways => scratch_dir(&std::env::temp_dir(), "redis-aof")?,
        };
        let keep: &[&str] = match persistence {
            Persistence::None => &["--save", "", "--appendonly", "no"],
            Persistence::AppendFsyncAlways => &[
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ],
        };
        let addr = crate::config::free_loopback_addrs(1)?.remove(0);
        let port = addr.rsplit(':').next().unwrap_or_default().to_string();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--protected-mode",
                "no",
            ])
            .args(keep)
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            // By default Redis disconnects a subscriber more than 32 MiB
            // behind; the benchmark wants every reader to get every
            // message, as the node's channel retains them.
            .args(["--client-output-buffer-limit", "pubsub 0 0 0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server")?;
        let mut redis = Redis {
            addr,
            process: Process::new(child, dir),
        };
        redis.wait_ready()?;
        Ok(redis)
    }

    /// Its peak resident memory so far, in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.process.peak_rss_kib()
    }

    /// The server process (for its CPU time).
    pub fn process(&self) -> &Process {
        &self.process
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_WAIT;
        loop {
            if self.ping().is_ok() {
                return Ok(());
            }
            if let Some(s) = self.process.exited() {
                bail!(
                    "redis-server exited ({s}); its log is {}",
                    self.process.dir.join("redis.log").display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "redis-server did not answer on {} within {START_WAIT:?}",
                    self.addr
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ping(&self) -> anyhow::Result<()> {
        let mut s = TcpStream::connect(&self.addr)?;
        s.set_read_timeout(Some(Duration::from_secs(1)))?;
        s.write_all(b"PING\r\n")?;
        let mut pong = [0u8; 7];
        s.read_exact(&mut pong)?;
        anyhow::ensure!(&pong == b"+PONG\r\n", "not a PONG");
        Ok(())
    }
}

/// One RESP value at the front of some bytes; ranges are into them.
#[derive(Debug, PartialEq)]
pub(super) enum Value {
    Simple(Range<usize>),
    Error(Range<usize>),
    Int(i64),
    Bulk(Range<usize>),
    Nil,
    Array(usize),
}

/// The RESP value starting at `at` in `buf` and where the next one
/// starts, or `None` if it has not all arrived yet.
pub(super) fn value(buf: &[u8], at: usize) -> anyhow::Result<Option<(Value, usize)>> {
    let Some(eol) = buf
        .get(at + 1..)
        .and_then(|b| b.windows(2).position(|w| w == b"\r\n"))
        .map(|p| at + 1 + p)
    else {
        return Ok(None);
    };
    let (head, text, next) = (buf[at], at + 1..eol, eol + 2);
    let number = || -> anyhow::Result<i64> {
        std::str::from_utf8(&buf[text.clone()])
            .ok()
            .and_then(|t| t.parse().ok())
            .with_context(|| {
                format!(
                    "a RESP number that is not one: {:?}",
                    String::from_utf8_lossy(&buf[text.clone()])
                )
            })
    };
    Ok(Some(match head {
        b'+' => (Value::Simple(text), next),
        b'-' => (Value::Error(text), next),
        b':' => (Value::Int(number()?), next),
        b'*' => (Value::Array(number()?.max(0) as usize), next),
        b'$' => match number()? {
            n if n < 0 => (Value::Nil, next),
            n => {
                let end = next + n as usize;
                if buf.len() < end + 2 {
                    return Ok(None);
                }
                (Value::Bulk(next..end), end + 2)
            }
        },
        other => bail!("a RESP reply starting with byte {other:#x}"),
    }))
}

/// A RESP command of bulk strings.
pub(super) fn command(words: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", words.len()).as_bytes());
    for w in words {
        out.extend_from_slice(format!("${}\r\n", w.len()).as_bytes());
        out.extend_from_slice(w);
        out.extend_from_slice(b"\r\n");
    }
}

/// A writer: one command per message (PUBLISH, or XADD to a stream),
/// pipelined on its own connection.
pub struct RedisSender {
    stream: TcpStream,
    /// Everything of the command before the message.
    prefix: Vec<u8>,
    /// The command's name, for messages.
    verb: &'static str,
    /// Whether a reply is the command's success.
    ack: fn(&Value) -> bool,
    out: Vec<u8>,
    inbuf: InBuf,
}

impl RedisSender {
    /// Connect to `addr`, to publish on `channel`.
    pub fn open(addr: &str, channel: &str) -> anyhow::Result<RedisSender> {
        // Answered with the number of subscribers it reached.
        RedisSender::connect(addr, "PUBLISH", &[channel.as_bytes()], |v| {
            matches!(v, Value::Int(_))
        })
    }

    /// Connect to `addr`, to append to the stream `key` (XADD; see
    /// [`super::redis_stream`]).
    pub fn xadd(addr: &str, key: &str) -> anyhow::Result<RedisSender> {
        // Answered with the new entry's ID.
        RedisSender::connect(addr, "XADD", &[key.as_bytes(), b"*", b"m"], |v| {
            matches!(v, Value::Bulk(_))
        })
    }

    /// Connect to `addr` to send `verb` with `args` and then each
    /// message, answered by what `ack` accepts.
    fn connect(
        addr: &str,
        verb: &'static str,
        args: &[&[u8]],
        ack: fn(&Value) -> bool,
    ) -> anyhow::Result<RedisSender> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(ANSWER_WAIT))?;
        // The command with the message as its last word: the message and
        // its CRLF go on per message.
        let mut prefix = format!("*{}\r\n", args.len() + 2).into_bytes();
        for w in std::iter::once(&verb.as_bytes()).chain(args) {
            prefix.extend_from_slice(format!("${}\r\n", w.len()).as_bytes());
            prefix.extend_from_slice(w);
            prefix.extend_from_slice(b"\r\n");
        }
        prefix.extend_from_slice(format!("${MESSAGE}\r\n").as_bytes());
        Ok(RedisSender {
            stream,
            prefix,
            verb,
            ack,
            out: Vec::with_capacity(WINDOW * 128),
            inbuf: InBuf::new(),
        })
    }
}

impl Sender for RedisSender {
    fn queue(&mut self, msg: &[u8; MESSAGE]) -> anyhow::Result<()> {
        self.out.extend_from_slice(&self.prefix);
        self.out.extend_from_slice(msg);
        self.out.extend_from_slice(b"\r\n");
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.stream.write_all(&self.out)?;
        self.out.clear();
        Ok(())
    }

    fn acks(&mut self) -> anyhow::Result<usize> {
        let verb = self.verb;
        loop {
            let mut n = 0;
            while let Some((v, next)) = value(self.inbuf.data(), 0)? {
                match v {
                    v if (self.ack)(&v) => n += 1,
                    Value::Error(e) => bail!(
                        "redis refused a {verb}: {}",
                        String::from_utf8_lossy(&self.inbuf.data()[e])
                    ),
                    other => bail!("redis answered a {verb} with {other:?}"),
                }
                self.inbuf.take(next);
            }
            if n > 0 {
                return Ok(n);
            }
            if let Fill::TimedOut = self.inbuf.fill(&mut self.stream)? {
                bail!("redis answered no {verb} within {ANSWER_WAIT:?}");
            }
        }
    }
}

/// A reader: a connection subscribed to the channel.
pub struct RedisReceiver {
    stream: TcpStream,
    inbuf: InBuf,
}

/// A pushed array of three (`message`, the channel, the payload) at the
/// front of `buf`: its first and last words, and its length.
fn push(buf: &[u8]) -> anyhow::Result<Option<(Range<usize>, Value, usize)>> {
    let Some((head, mut at)) = value(buf, 0)? else {
        return Ok(None);
    };
    anyhow::ensure!(
        head == Value::Array(3),
        "redis pushed {head:?}, not an array of three"
    );
    let (mut first, mut last) = (0..0, Value::Nil);
    for i in 0..3 {
        let Some((v, next)) = value(buf, at)? else {
            return Ok(None);
        };
        at = next;
        match (i, v) {
            (0, Value::Bulk(r)) => first = r,
            (0, v) => bail!("redis pushed an array starting with {v:?}"),
            (1, _) => {}
            (_, v) => last = v,
        }
    }
    Ok(Some((first, last, at)))
}

impl RedisReceiver {
    /// Connect to `addr` and subscribe to `channel`; returns once Redis
    /// confirmed, so a message published after it reaches this reader.
    pub fn open(addr: &str, channel: &str) -> anyhow::Result<RedisReceiver> {
        let mut stream =
            TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(ANSWER_WAIT))?;
        let mut out = Vec::new();
        command(&[b"SUBSCRIBE", channel.as_bytes()], &mut out);
        stream.write_all(&out)?;
        let mut inbuf = InBuf::new();
        loop {
            if let Some((first, _, len)) = push(inbuf.data())? {
                anyhow::ensure!(
                    &inbuf.data()[first] == b"subscribe",
                    "redis did not confirm SUBSCRIBE"
                );
                inbuf.take(len);
                break;
            }
            if let Fill::TimedOut = inbuf.fill(&mut stream)? {
                bail!("redis did not confirm SUBSCRIBE within {ANSWER_WAIT:?}");
            }
        }
        stream.set_read_timeout(Some(POLL))?;
        Ok(RedisReceiver { stream, inbuf })
    }
}

impl Receiver for RedisReceiver {
    fn recv(&mut self) -> anyhow::Result<Option<&[u8]>> {
        loop {
            if let Some((first, last, len)) = push(self.inbuf.data())? {
                anyhow::ensure!(
                    &self.inbuf.data()[first] == b"message",
                    "redis pushed something other than a message"
                );
                let Value::Bulk(payload) = last else {
                    bail!("redis pushed a message without a payload");
                };
                let at = self.inbuf.take(len).start;
                return Ok(Some(self.inbuf.at(at + payload.start..at + payload.end)));
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
    fn values_parse_whole_or_not_at_all() {
        let msg = b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$5\r\nhello\r\n";
        for cut in 0..msg.len() {
            assert!(push(&msg[..cut]).unwrap().is_none(), "cut at {cut}");
        }
        let (first, last, len) = push(msg).unwrap().unwrap();
        assert_eq!(&msg[first], b"message");
        assert_eq!(last, Value::Bulk(msg.len() - 7..msg.len() - 2));
        assert_eq!(len, msg.len());
        assert_eq!(value(b":12\r\n", 0).unwrap(), Some((Value::Int(12), 5)));
        assert_eq!(
            value(b"-ERR no\r\n", 0).unwrap(),
            Some((Value::Error(1..7), 9))
        );
        assert!(value(b"?\r\n", 0).is_err());
    }

    #[test]
    fn a_publish_is_one_resp_command() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut s = RedisSender::open(&l.local_addr().unwrap().to_string(), "ch").unwrap();
        s.queue(&[b'x'; MESSAGE]).unwrap();
        let want = format!(
            "*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n${MESSAGE}\r\n{}\r\n",
            "x".repeat(MESSAGE)
        );
        assert_eq!(s.out, want.as_bytes());
    }

    #[test]
    fn an_xadd_is_one_resp_command() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut s = RedisSender::xadd(&l.local_addr().unwrap().to_string(), "k").unwrap();
        s.queue(&[b'x'; MESSAGE]).unwrap();
        let want = format!(
            "*5\r\n$4\r\nXADD\r\n$1\r\nk\r\n$1\r\n*\r\n$1\r\nm\r\n${MESSAGE}\r\n{}\r\n",
            "x".repeat(MESSAGE)
        );
        assert_eq!(s.out, want.as_bytes());
    }
}
