//! A 9P client for the `cell0` tool: the FUSE mount (9P2000.L) and the
//! script verbs (9P2000, whose Rerror carries the node's message).
//!
//! One TCP connection carries many requests at once: callers on any thread
//! send under a fresh tag and wait; a reader thread hands each reply to the
//! caller waiting on its tag. A blocked read therefore holds up nobody else,
//! and can be cancelled with Tflush.

mod error;
mod ops;

pub use error::{ClientError, Result};
pub use ops::read_data;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use ninep::{Body, Dialect, Msg, NOFID, NOTAG};

/// The msize the client asks for.
pub const MSIZE: u32 = 1 << 20;

/// The fid the client attaches the root to.
pub const ROOT: u32 = 0;

struct Waiting {
    /// Callers waiting for the reply to a tag.
    replies: HashMap<u16, SyncSender<Result<Vec<u8>>>>,
    next_tag: u16,
    /// Why the connection is gone, once it is.
    broken: Option<String>,
}

struct FidPool {
    next: u32,
    free: Vec<u32>,
}

/// A connection to a node, attached to its root.
pub struct Client {
    writer: Mutex<TcpStream>,
    waiting: Arc<Mutex<Waiting>>,
    fids: Mutex<FidPool>,
    /// The dialect both sides settled on.
    pub dialect: Dialect,
    /// The negotiated message size.
    pub msize: u32,
}

/// A request on its way: wait for it, or cancel it.
pub struct Pending<'a> {
    client: &'a Client,
    tag: u16,
    rx: Receiver<Result<Vec<u8>>>,
}

impl Client {
    /// Connect to `addr`, negotiate `dialect`, and attach fid [`ROOT`].
    pub fn connect(addr: &str, dialect: Dialect) -> Result<Client> {
        let stream =
            TcpStream::connect(addr).map_err(|e| ClientError::Io(format!("{addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let reader = stream
            .try_clone()
            .map_err(|e| ClientError::Io(e.to_string()))?;
        let waiting = Arc::new(Mutex::new(Waiting {
            replies: HashMap::new(),
            next_tag: 1,
            broken: None,
        }));
        let w = waiting.clone();
        std::thread::Builder::new()
            .name("cell0-9p-reader".into())
            .spawn(move || read_replies(reader, w))
            .map_err(|e| ClientError::Io(e.to_string()))?;
        let mut client = Client {
            writer: Mutex::new(stream),
            waiting,
            fids: Mutex::new(FidPool {
                next: ROOT + 1,
                free: Vec::new(),
            }),
            dialect,
            msize: MSIZE,
        };
        let reply = client.rpc_tagged(
            NOTAG,
            &Body::Tversion {
                msize: MSIZE,
                version: dialect.version(),
            },
        )?;
        match ninep::decode(&reply, Dialect::P2000).map(|m| m.body) {
            Ok(Body::Rversion { msize, version }) if version == dialect.version() => {
                client.msize = msize
            }
            Ok(Body::Rversion { version, .. }) => {
                return Err(ClientError::Protocol(format!(
                    "node speaks {version}, not {}",
                    dialect.version()
                )));
            }
            other => {
                return Err(ClientError::Protocol(format!(
                    "bad Tversion answer: {other:?}"
                )));
            }
        }
        let uname = std::env::var("USER").unwrap_or_else(|_| "cell0".into());
        // SAFETY: getuid(2) has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        let n_uname = (dialect == Dialect::L).then_some(uid);
        client.call(&Body::Tattach {
            fid: ROOT,
            afid: NOFID,
            uname: &uname,
            aname: "",
            n_uname,
        })?;
        Ok(client)
    }

    /// The largest payload of one read or write.
    pub fn iounit(&self) -> u32 {
        self.msize - ninep::IOHDRSZ
    }

    /// A fid number not in use.
    pub fn alloc_fid(&self) -> u32 {
        let mut p = self.fids.lock().unwrap_or_else(|e| e.into_inner());
        p.free.pop().unwrap_or_else(|| {
            p.next += 1;
            p.next
        })
    }

    /// Return a fid number that the node no longer knows.
    pub fn free_fid(&self, fid: u32) {
        self.fids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .free
            .push(fid);
    }

    /// Send a request; the answer comes to the returned [`Pending`].
    pub fn start(&self, body: &Body<'_>) -> Result<Pending<'_>> {
        let (tx, rx) = sync_channel(1);
        let tag = {
            let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(why) = &w.broken {
                return Err(ClientError::Io(why.clone()));
            }
            let mut tag = w.next_tag;
            while tag == NOTAG || w.replies.contains_key(&tag) {
                tag = tag.wrapping_add(1);
            }
            w.next_tag = tag.wrapping_add(1);
            w.replies.insert(tag, tx);
            tag
        };
        if let Err(e) = self.send(tag, body) {
            self.waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .replies
                .remove(&tag);
            return Err(e);
        }
        Ok(Pending {
            client: self,
            tag,
            rx,
        })
    }

    fn send(&self, tag: u16, body: &Body<'_>) -> Result<()> {
        let mut frame = Vec::new();
        ninep::encode(
            &Msg {
                tag,
                body: body.clone(),
            },
            &mut frame,
        )
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_all(&frame)
            .map_err(|e| ClientError::Io(e.to_string()))
    }

    /// Send under a fixed tag (Tversion's NOTAG) and wait.
    fn rpc_tagged(&self, tag: u16, body: &Body<'_>) -> Result<Vec<u8>> {
        let (tx, rx) = sync_channel(1);
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replies
            .insert(tag, tx);
        self.send(tag, body)?;
        rx.recv()
            .map_err(|_| ClientError::Io("connection closed".into()))?
    }

    /// Send a request and wait for its answer; error replies become errors.
    pub fn call(&self, body: &Body<'_>) -> Result<Vec<u8>> {
        self.start(body)?.wait()
    }
}

impl Pending<'_> {
    /// Wait for the answer.
    pub fn wait(self) -> Result<Vec<u8>> {
        let frame = self
            .rx
            .recv()
            .map_err(|_| ClientError::Io("connection closed".into()))??;
        check(frame, self.client.dialect)
    }

    /// Wait up to `timeout`; `None` if nothing came yet.
    pub fn wait_timeout(&self, timeout: std::time::Duration) -> Option<Result<Vec<u8>>> {
        match self.rx.recv_timeout(timeout) {
            Ok(r) => Some(r.and_then(|f| check(f, self.client.dialect))),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
            Err(_) => Some(Err(ClientError::Io("connection closed".into()))),
        }
    }

    /// Cancel the request with Tflush. If its answer arrives first it is
    /// returned (flush(5): such an answer must be honoured).
    pub fn flush(self) -> Result<Vec<u8>> {
        let flush = self.client.start(&Body::Tflush { oldtag: self.tag })?;
        let rflush = flush.rx.recv();
        match self.rx.try_recv() {
            Ok(r) => r.and_then(|f| check(f, self.client.dialect)),
            Err(_) => {
                self.client
                    .waiting
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .replies
                    .remove(&self.tag);
                rflush.map_err(|_| ClientError::Io("connection closed".into()))??;
                Err(ClientError::Flushed)
            }
        }
    }
}

/// Turn Rerror/Rlerror frames into errors.
fn check(frame: Vec<u8>, dialect: Dialect) -> Result<Vec<u8>> {
    let err = match ninep::decode(&frame, dialect) {
        Ok(Msg {
            body: Body::Rerror { ename },
            ..
        }) => Some(ClientError::Server(ename.to_string())),
        Ok(Msg {
            body: Body::Rlerror { ecode },
            ..
        }) => Some(ClientError::Errno(ecode)),
        Ok(_) => None,
        Err(e) => Some(ClientError::Protocol(format!("undecodable reply: {e}"))),
    };
    match err {
        Some(e) => Err(e),
        None => Ok(frame),
    }
}

/// The reader thread: route every reply to the caller waiting on its tag.
fn read_replies(mut stream: TcpStream, waiting: Arc<Mutex<Waiting>>) {
    let why = loop {
        let mut size = [0u8; 4];
        if let Err(e) = stream.read_exact(&mut size) {
            break format!("connection closed: {e}");
        }
        let n = u32::from_le_bytes(size) as usize;
        if !(7..=MSIZE as usize + 64).contains(&n) {
            break format!("reply of {n} bytes is not a 9P frame");
        }
        let mut frame = vec![0u8; n];
        frame[..4].copy_from_slice(&size);
        if let Err(e) = stream.read_exact(&mut frame[4..]) {
            break format!("connection closed: {e}");
        }
        let tag = u16::from_le_bytes([frame[5], frame[6]]);
        let tx = waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replies
            .remove(&tag);
        if let Some(tx) = tx {
            let _ = tx.send(Ok(frame));
        }
    };
    let mut w = waiting.lock().unwrap_or_else(|e| e.into_inner());
    for (_, tx) in w.replies.drain() {
        let _ = tx.send(Err(ClientError::Io(why.clone())));
    }
    w.broken = Some(why);
}
