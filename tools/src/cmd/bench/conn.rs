//! The benchmark's client connection: one request at a time on the
//! caller's thread, with buffers reused between requests.
//!
//! The tool's [`crate::client::Client`] hands every reply from a reader
//! thread to the waiting caller, which is right for a mount (many requests
//! in flight, Tflush) but costs two thread switches per round trip. Timing
//! servers through it would mostly time the client, so the benchmark
//! speaks 9P directly.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use anyhow::{Context, bail};
use ninep::{Body, Dialect, Msg, NOFID, NOTAG, Names};

/// The msize the benchmark asks for.
const MSIZE: u32 = 64 * 1024;

/// One 9P2000.L connection, attached with fid 0 on the root.
pub struct Conn {
    stream: TcpStream,
    out: Vec<u8>,
    reply: Vec<u8>,
    /// Nanoseconds of every round trip made, when recording.
    pub round_trips: Vec<u64>,
    recording: bool,
}

/// The fid of the attached root.
pub const ROOT: u32 = 0;

impl Conn {
    /// Connect to `addr`, negotiate 9P2000.L and attach `aname`.
    pub fn open(addr: &str, aname: &str) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let mut c = Conn {
            stream,
            out: Vec::with_capacity(256),
            reply: Vec::with_capacity(MSIZE as usize),
            round_trips: Vec::new(),
            recording: false,
        };
        c.rpc_tag(
            NOTAG,
            Body::Tversion {
                msize: MSIZE,
                version: Dialect::L.version(),
            },
        )?;
        c.rpc(Body::Tattach {
            fid: ROOT,
            afid: NOFID,
            uname: "bench",
            aname,
            n_uname: Some(0),
        })?;
        Ok(c)
    }

    /// Start keeping the latency of every round trip.
    pub fn record(&mut self) {
        self.recording = true;
        self.round_trips.reserve(1 << 18);
    }

    /// Send `body` and wait for its reply; error replies become errors.
    pub fn rpc(&mut self, body: Body<'_>) -> anyhow::Result<Msg<'_>> {
        self.rpc_tag(1, body)
    }

    fn rpc_tag(&mut self, tag: u16, body: Body<'_>) -> anyhow::Result<Msg<'_>> {
        self.out.clear();
        ninep::encode(&Msg { tag, body }, &mut self.out)?;
        let t0 = Instant::now();
        self.stream.write_all(&self.out)?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let n = u32::from_le_bytes(size) as usize;
        if !(7..=MSIZE as usize).contains(&n) {
            bail!("reply of {n} bytes is not a 9P frame");
        }
        self.reply.resize(n, 0);
        self.reply[..4].copy_from_slice(&size);
        self.stream.read_exact(&mut self.reply[4..])?;
        if self.recording {
            self.round_trips.push(t0.elapsed().as_nanos() as u64);
        }
        let msg = ninep::decode(&self.reply, Dialect::L)
            .map_err(|e| anyhow::anyhow!("undecodable reply: {e}"))?;
        match msg.body {
            Body::Rlerror { ecode } => Err(anyhow::anyhow!(
                "{}",
                std::io::Error::from_raw_os_error(ecode as i32)
            )),
            _ => Ok(msg),
        }
    }

    /// Walk `names` from the root to `newfid`.
    pub fn walk(&mut self, newfid: u32, names: &[&str]) -> anyhow::Result<()> {
        let wnames = Names::from_slice(names).map_err(|_| anyhow::anyhow!("too many names"))?;
        match self.rpc(Body::Twalk {
            fid: ROOT,
            newfid,
            wnames,
        })? {
            Msg {
                body: Body::Rwalk { wqids },
                ..
            } if wqids.len() == names.len() => Ok(()),
            _ => bail!("walk to {} did not reach it", names.join("/")),
        }
    }

    /// Open `fid` with Linux open flags.
    pub fn lopen(&mut self, fid: u32, flags: u32) -> anyhow::Result<()> {
        self.rpc(Body::Tlopen { fid, flags })?;
        Ok(())
    }

    /// Read up to `count` bytes; how many came.
    pub fn read(&mut self, fid: u32, count: u32) -> anyhow::Result<usize> {
        match self.rpc(Body::Tread {
            fid,
            offset: 0,
            count,
        })? {
            Msg {
                body: Body::Rread { data },
                ..
            } => Ok(data.len()),
            _ => bail!("Tread answered with something other than Rread"),
        }
    }

    /// Write `data` at offset 0.
    pub fn write(&mut self, fid: u32, data: &[u8]) -> anyhow::Result<()> {
        self.rpc(Body::Twrite {
            fid,
            offset: 0,
            data,
        })?;
        Ok(())
    }

    /// Forget `fid`.
    pub fn clunk(&mut self, fid: u32) -> anyhow::Result<()> {
        self.rpc(Body::Tclunk { fid })?;
        Ok(())
    }

    /// The attached socket, for a caller that goes on to keep several
    /// requests in flight (tag 1 is free again: no request is pending).
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }
}
