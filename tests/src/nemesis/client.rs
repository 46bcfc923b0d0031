//! A small blocking 9P2000.u client for the workload: one request at a
//! time on one connection, every wait bounded by a deadline, so that each
//! operation's end (or its lack of one) is known precisely. A connection
//! whose request timed out is dropped (a late answer could be taken for
//! the next one's).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ninep::{Body, Dialect, Msg, NOFID, NOTAG, Names};

/// The root fid, and the one fid each operation walks to.
const ROOT: u32 = 0;
const WORK: u32 = 1;
/// Permission bit of a directory (`DMDIR`).
const DMDIR: u32 = 0x8000_0000;
/// The msize asked for.
const MSIZE: u32 = 1 << 16;

/// Why a request got no result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Nothing was sent: the connection could not be made (the request
    /// cannot have taken effect).
    Unsent(String),
    /// The node answered with an error, its text.
    Refused(String),
    /// The request was sent and no answer came in time, or the
    /// connection broke: it may or may not have taken effect.
    Lost(String),
}

/// A failure of a step before the request that changes anything: that
/// request was never sent.
fn unsent(f: Failure) -> Failure {
    match f {
        Failure::Lost(e) | Failure::Refused(e) | Failure::Unsent(e) => Failure::Unsent(e),
    }
}

/// One attached 9P connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// A request got no answer in time, or the connection broke: the
    /// connection must not be used again.
    broken: bool,
}

impl Conn {
    /// Connect to `addr`, negotiate 9P2000.u (whose errors carry the node's message) and attach the root with
    /// `aname` (which carries the capability: `token=c0.…`), all within
    /// `limit`.
    pub fn connect(addr: &str, aname: &str, limit: Duration) -> Result<Conn, Failure> {
        let deadline = Instant::now() + limit;
        let sa: SocketAddr = addr.parse().map_err(|e| Failure::Unsent(format!("{e}")))?;
        let stream = TcpStream::connect_timeout(&sa, limit)
            .map_err(|e| Failure::Unsent(format!("connect: {e}")))?;
        stream.set_nodelay(true).ok();
        let mut c = Conn {
            stream,
            buf: Vec::new(),
            broken: false,
        };
        c.rpc(
            Body::Tversion {
                msize: MSIZE,
                version: Dialect::U.version(),
            },
            deadline,
        )
        .map_err(unsent)?;
        c.rpc(
            Body::Tattach {
                fid: ROOT,
                afid: NOFID,
                uname: "nemesis",
                aname,
                n_uname: Some(0),
            },
            deadline,
        )
        .map_err(unsent)?;
        Ok(c)
    }

    /// Whether a request on it went unanswered (or it broke): its next
    /// answer could belong to that request, so it must be dropped.
    pub fn broken(&self) -> bool {
        self.broken
    }

    /// Send `body`, wait until `deadline` for the answer; an Rerror is
    /// [`Failure::Refused`]. The answer's bytes are kept in `self.buf`.
    fn rpc(&mut self, body: Body<'_>, deadline: Instant) -> Result<(), Failure> {
        if self.broken {
            return Err(Failure::Unsent("the connection is broken".into()));
        }
        let r = self.exchange(body, deadline);
        if matches!(r, Err(Failure::Lost(_))) {
            self.broken = true;
        }
        r
    }

    fn exchange(&mut self, body: Body<'_>, deadline: Instant) -> Result<(), Failure> {
        let lost = |e: std::io::Error| Failure::Lost(e.to_string());
        let mut frame = Vec::new();
        let tag = if matches!(&body, Body::Tversion { .. }) {
            NOTAG
        } else {
            1
        };
        ninep::encode(&Msg { tag, body }, &mut frame)
            .map_err(|e| Failure::Unsent(format!("encode: {e:?}")))?;
        let left = |d: Instant| {
            d.checked_duration_since(Instant::now())
                .filter(|t| !t.is_zero())
                .ok_or_else(|| Failure::Lost("timed out".into()))
        };
        self.stream.set_write_timeout(Some(left(deadline)?)).ok();
        self.stream.write_all(&frame).map_err(lost)?;
        let mut size = [0u8; 4];
        self.read_exact(&mut size, deadline)?;
        let n = u32::from_le_bytes(size) as usize;
        if !(7..=MSIZE as usize).contains(&n) {
            return Err(Failure::Lost(format!("bad frame size {n}")));
        }
        self.buf.clear();
        self.buf.extend_from_slice(&size);
        self.buf.resize(n, 0);
        let mut rest = std::mem::take(&mut self.buf);
        let r = self.read_exact(&mut rest[4..], deadline);
        self.buf = rest;
        r?;
        let msg = ninep::decode(&self.buf, Dialect::U)
            .map_err(|e| Failure::Lost(format!("undecodable answer: {e:?}")))?;
        match msg.body {
            Body::Rerror { ename, .. } => Err(Failure::Refused(ename.to_string())),
            _ => Ok(()),
        }
    }

    fn read_exact(&mut self, mut buf: &mut [u8], deadline: Instant) -> Result<(), Failure> {
        while !buf.is_empty() {
            let left = deadline
                .checked_duration_since(Instant::now())
                .filter(|t| !t.is_zero())
                .ok_or_else(|| Failure::Lost("timed out".into()))?;
            self.stream.set_read_timeout(Some(left)).ok();
            match self.stream.read(buf) {
                Ok(0) => return Err(Failure::Lost("connection closed".into())),
                Ok(k) => buf = &mut buf[k..],
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(Failure::Lost(e.to_string())),
            }
        }
        Ok(())
    }

    /// The decoded last answer.
    fn answer(&self) -> Body<'_> {
        ninep::decode(&self.buf, Dialect::U)
            .expect("decoded once already")
            .body
    }

    /// Walk from the root along `names` to [`WORK`]; whether every name
    /// exists (a walk that stops early made no fid).
    fn walk(&mut self, names: &[&str], deadline: Instant) -> Result<bool, Failure> {
        let wnames = Names::from_slice(names).expect("at most 16 names");
        let r = self.rpc(
            Body::Twalk {
                fid: ROOT,
                newfid: WORK,
                wnames,
            },
            deadline,
        );
        match r {
            Ok(()) => match self.answer() {
                Body::Rwalk { wqids } => Ok(wqids.len() == names.len()),
                other => Err(Failure::Lost(format!(
                    "walk answered {:?}",
                    other.msg_type()
                ))),
            },
            // 9P2000 answers an error only when the first name fails:
            // that is no answer about the last.
            Err(e) => Err(e),
        }
    }

    fn clunk(&mut self, deadline: Instant) -> Result<(), Failure> {
        self.rpc(Body::Tclunk { fid: WORK }, deadline)
    }

    /// Whether `/chan/NAME` exists (a walk to it).
    pub fn exists(&mut self, name: &str, deadline: Instant) -> Result<bool, Failure> {
        let found = self.walk(&["chan", name], deadline)?;
        if found {
            // The answer is in; a clunk that fails only breaks the
            // connection.
            let _ = self.clunk(deadline);
        }
        Ok(found)
    }

    /// `mkdir /chan/NAME`: `true` if this made it, `false` if the node
    /// said it exists.
    pub fn create(&mut self, name: &str, deadline: Instant) -> Result<bool, Failure> {
        if !self.walk(&["chan"], deadline).map_err(unsent)? {
            return Err(Failure::Unsent("no /chan".into()));
        }
        let r = self.rpc(
            Body::Tcreate {
                fid: WORK,
                name,
                perm: DMDIR | 0o775,
                mode: ninep::mode::OREAD,
                extension: Some(""),
            },
            deadline,
        );
        // The fid is the new directory, or still /chan: clunk it either
        // way (a clunk that fails only breaks the connection).
        let result = match r {
            Ok(()) => Ok(true),
            Err(Failure::Refused(e)) if e.contains("already exists") => Ok(false),
            Err(e) => Err(e),
        };
        let _ = self.clunk(deadline);
        result
    }

    /// Remove `/chan/NAME`: `true` if this removed it, `false` if there was
    /// none (the walk to it failed, or the node said so). With
    /// `trust_walk` false, a walk that finds no channel is not taken as
    /// an answer: the remove is then [`Failure::Unsent`].
    pub fn remove(
        &mut self,
        name: &str,
        trust_walk: bool,
        deadline: Instant,
    ) -> Result<bool, Failure> {
        if !self.walk(&["chan", name], deadline).map_err(unsent)? {
            if trust_walk {
                return Ok(false);
            }
            return Err(Failure::Unsent("the walk found no channel".into()));
        }
        // Tremove clunks the fid whatever the answer.
        match self.rpc(Body::Tremove { fid: WORK }, deadline) {
            Ok(()) => Ok(true),
            Err(Failure::Refused(e))
                if e.contains("does not exist") || e.contains("no channel") =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The names in directory `/chan`, from a read of it from its start
    /// (a read from the start is linearizable; raft(3) READS).
    pub fn list_chan(&mut self, deadline: Instant) -> Result<Vec<String>, Failure> {
        let bytes = self.read_until("/chan", deadline, |_| false)?;
        let mut names = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let (stat, used) = ninep::decode::decode_stat(rest)
                .map_err(|e| Failure::Lost(format!("bad directory entry: {e:?}")))?;
            names.push(stat.name.to_string());
            rest = &rest[used..];
        }
        Ok(names)
    }

    /// Open `path` (walked from the root) with `mode` on [`WORK`].
    fn open(&mut self, path: &str, mode: u8, deadline: Instant) -> Result<(), Failure> {
        let names: Vec<&str> = path.split('/').filter(|n| !n.is_empty()).collect();
        if !self.walk(&names, deadline)? {
            return Err(Failure::Refused(format!("{path} does not exist")));
        }
        if let Err(e) = self.rpc(Body::Topen { fid: WORK, mode }, deadline) {
            let _ = self.clunk(deadline);
            return Err(e);
        }
        Ok(())
    }

    /// Write `data` to `path` in one Twrite.
    pub fn write(&mut self, path: &str, data: &[u8], deadline: Instant) -> Result<(), Failure> {
        self.open(path, ninep::mode::OWRITE, deadline)
            .map_err(unsent)?;
        let r = self.rpc(
            Body::Twrite {
                fid: WORK,
                offset: 0,
                data,
            },
            deadline,
        );
        // The answer is in; a clunk that fails only breaks the connection.
        let _ = self.clunk(deadline);
        r
    }

    /// Read `path` from its start with reads of up to `count` bytes until
    /// `enough` holds for what was read, an empty read, or `deadline`
    /// (then what came so far, as [`Failure::Lost`] if nothing did).
    pub fn read_until(
        &mut self,
        path: &str,
        deadline: Instant,
        mut enough: impl FnMut(&[u8]) -> bool,
    ) -> Result<Vec<u8>, Failure> {
        self.open(path, ninep::mode::OREAD, deadline)?;
        let mut out = Vec::new();
        let mut offset = 0u64;
        loop {
            let r = self.rpc(
                Body::Tread {
                    fid: WORK,
                    offset,
                    count: MSIZE - ninep::IOHDRSZ,
                },
                deadline,
            );
            if let Err(e) = r {
                let _ = self.clunk(deadline);
                return Err(e);
            }
            let Body::Rread { data } = self.answer() else {
                return Err(Failure::Lost("read answered something else".into()));
            };
            if data.is_empty() {
                break;
            }
            offset += data.len() as u64;
            out.extend_from_slice(data);
            if enough(&out) {
                break;
            }
        }
        self.clunk(deadline)?;
        Ok(out)
    }

    /// The whole text of a status-like file.
    pub fn cat(&mut self, path: &str, deadline: Instant) -> Result<String, Failure> {
        let bytes = self.read_until(path, deadline, |_| false)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}
