//! A 9P client for the `cell0` tool: the FUSE mount (9P2000.L) and the
//! script verbs (9P2000, whose Rerror carries the node's message).
//!
//! One TCP connection carries many requests at once. Callers on any thread
//! send under a fresh tag; a reader thread hands each answer to whoever
//! waits on its tag: a blocked caller ([`Client::call`], [`Pending`]) or a
//! callback ([`Client::start_with`]). A blocked read therefore holds up
//! nobody else, and [`Client::flush`] cancels it with Tflush.
//!
//! ```ignore
//! let c = Client::connect("127.0.0.1:5640", ninep::Dialect::U)?;
//! let fid = c.walk_path("/status")?;
//! let opened = c.open(fid, mode::OREAD)?;
//! let text = c.read_all(fid, opened.iounit)?;
//! c.clunk(fid)?;
//! ```
//!
//! Modules: [`conn`] the socket and reader thread, `tag` and `fid` the
//! number pools, [`reply`] answers, `walk` paths, `file` reads and writes,
//! `plan9` the 9P2000-only calls, `linux` the 9P2000.L-only calls.

// This is the tool's client library: the mount, the verbs, the benchmark
// and tests each use a different part of it, so parts unused by one build
// of the binary are expected.
#![allow(dead_code, unused_imports)]

mod conn;
mod error;
mod fid;
mod file;
pub use file::ask_again;
mod linux;
mod plan9;
mod reply;
mod tag;
mod walk;

pub use conn::{Callback, MAX_IN_FLIGHT};
pub use error::{ClientError, Result};
pub use fid::ROOT;
pub use linux::{AT_REMOVEDIR, DirEntry, SetAttr, setattr};
pub use plan9::{OwnedStat, mode};
pub use reply::Reply;
pub use tag::RequestId;
pub use walk::split_path;

use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ninep::{Body, Dialect, NOFID, Qid};

use conn::{Conn, Waiter};
use fid::FidPool;

/// The msize the client asks for: the node's maximum.
pub const MSIZE: u32 = 1 << 20;

/// How to open a session.
#[derive(Clone, Debug)]
pub struct Options {
    /// 9P2000 for the node's messages, 9P2000.L for errnos and Linux calls.
    pub dialect: Dialect,
    /// The tree to attach (cellfs ignores it; diod wants its export path).
    pub aname: String,
    /// The user name sent in Tattach.
    pub uname: String,
    /// The largest message to propose.
    pub msize: u32,
    /// A capability's text form (`c0.…`) to present with Tauth; see
    /// cap(3).
    pub token: Option<String>,
    /// Whether the token was asked for (`--token`): if so a node that
    /// refuses Tauth is an error; if not (the default owner token) the
    /// client attaches without one, as servers with no auth (diod) want.
    pub token_explicit: bool,
}

impl Options {
    /// Defaults for `dialect`: aname "", the login name, [`MSIZE`].
    pub fn new(dialect: Dialect) -> Options {
        Options {
            dialect,
            aname: String::new(),
            uname: std::env::var("USER")
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "cell0".into()),
            msize: MSIZE,
            token: None,
            token_explicit: false,
        }
    }

    /// These options presenting `token` (from [`crate::identity::ClientToken`]).
    pub fn with_token(mut self, token: &crate::identity::ClientToken) -> Options {
        self.token = token.text.clone();
        self.token_explicit = token.explicit;
        self
    }
}

/// A session with a node, attached to its root as fid [`ROOT`].
///
/// Cheap to clone; clones share the connection, which closes when the last
/// one is dropped.
#[derive(Clone)]
pub struct Client {
    conn: Arc<Conn>,
    fids: Arc<Mutex<FidPool>>,
    root_qid: Qid,
}

/// What an open (or create) returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The file's qid.
    pub qid: Qid,
    /// The largest read or write to send in one message (never 0: the
    /// node's iounit, else what the msize allows).
    pub iounit: u32,
}

impl Client {
    /// Connect to `addr`, settle on `dialect` and attach the root with
    /// default [`Options`].
    pub fn connect(addr: &str, dialect: Dialect) -> Result<Client> {
        Client::connect_with(addr, &Options::new(dialect))
    }

    /// Connect to `addr` with `opts`: Tversion, then Tattach of [`ROOT`].
    pub fn connect_with(addr: &str, opts: &Options) -> Result<Client> {
        let refused = |reason: String| ClientError::Connect {
            addr: addr.to_string(),
            reason,
        };
        let conn = Conn::open(addr, opts.dialect, opts.msize.max(4096))?;
        let client = Client {
            conn: Arc::new(conn),
            fids: Arc::new(Mutex::new(FidPool::new())),
            root_qid: Qid::default(),
        };
        let want = opts.dialect.version();
        let reply = client
            .call(&Body::Tversion {
                msize: opts.msize,
                version: want,
            })
            .map_err(|e| refused(format!("Tversion failed: {e}")))?;
        let msize = match reply.body()? {
            Body::Rversion { msize, version } if version == want => msize,
            Body::Rversion { version, .. } => {
                return Err(refused(format!("it speaks {version:?}, not {want}")));
            }
            other => return Err(refused(format!("Tversion answered {other:?}"))),
        };
        if !(ninep::IOHDRSZ + 1..=opts.msize).contains(&msize) {
            return Err(refused(format!("it offered an unusable msize {msize}")));
        }
        client.conn.set_msize(msize);
        // SAFETY: getuid(2) has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        let afid = match &opts.token {
            Some(token) => client
                .authenticate(opts, uid, token)
                .map_err(|e| refused(e.to_string()))?,
            None => NOFID,
        };
        let attach = Body::Tattach {
            fid: ROOT,
            afid,
            uname: &opts.uname,
            aname: &opts.aname,
            n_uname: matches!(opts.dialect, Dialect::L | Dialect::U).then_some(uid),
        };
        let attached = client.call(&attach);
        if afid != NOFID {
            // The attach holds the capability now; the afid has done its job.
            let _ = client.clunk(afid);
        }
        let root_qid = match attached {
            Ok(r) => match r.body()? {
                Body::Rattach { qid } => qid,
                other => return Err(reply::unexpected("attach", &other)),
            },
            Err(e) => {
                let aname = &opts.aname;
                let with = if afid == NOFID { "" } else { " with the token" };
                return Err(refused(format!("attach of {aname:?}{with} refused: {e}")));
            }
        };
        Ok(Client { root_qid, ..client })
    }

    /// Tauth, then write `token` to the afid at offset 0: the afid to
    /// attach with, or NOFID if the node has no authentication and the
    /// token was not asked for explicitly.
    fn authenticate(&self, opts: &Options, uid: u32, token: &str) -> Result<u32> {
        let afid = self.alloc_fid()?;
        // The node opens an auth fid only when asked for capabilities.
        let aname = format!("{} {}", opts.aname, cellfs::server::AUTH_WORD);
        let auth = Body::Tauth {
            afid,
            uname: &opts.uname,
            aname: aname.trim_start(),
            n_uname: matches!(opts.dialect, Dialect::L | Dialect::U).then_some(uid),
        };
        match self.call(&auth) {
            Ok(r) => match r.body()? {
                Body::Rauth { .. } => {}
                other => return Err(reply::unexpected("auth", &other)),
            },
            Err(e) => {
                self.free_fid(afid);
                if !opts.token_explicit {
                    return Ok(NOFID);
                }
                return Err(ClientError::Protocol(format!(
                    "it does not take a capability (Tauth refused: {e})"
                )));
            }
        }
        if let Err(e) = self.write(afid, 0, token.as_bytes()) {
            let _ = self.clunk(afid);
            return Err(ClientError::Server(format!("the token was refused: {e}")));
        }
        Ok(afid)
    }

    /// The dialect of this session.
    pub fn dialect(&self) -> Dialect {
        self.conn.dialect()
    }

    /// The negotiated message size.
    pub fn msize(&self) -> u32 {
        self.conn.msize()
    }

    /// The largest payload one read or write message can carry.
    pub fn iounit(&self) -> u32 {
        self.msize() - ninep::IOHDRSZ
    }

    /// The qid of the attached root.
    pub fn root_qid(&self) -> Qid {
        self.root_qid
    }

    /// End the session now, for every clone of it: what waits for an
    /// answer fails at once, and so does every later request.
    pub fn shut(&self) {
        self.conn.shut();
    }

    /// Why the connection is gone, or `None` while it works.
    pub fn closed(&self) -> Option<String> {
        self.conn.broken()
    }

    /// A fid number not in use (to walk to; [`Client::walk`] does this
    /// itself).
    pub fn alloc_fid(&self) -> Result<u32> {
        let mut p = self.fids.lock().unwrap_or_else(|e| e.into_inner());
        p.alloc()
            .ok_or_else(|| ClientError::Protocol("every fid number is in use".into()))
    }

    /// Return a fid number the node no longer knows.
    pub fn free_fid(&self, fid: u32) {
        if fid != ROOT {
            self.fids
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .free(fid);
        }
    }

    /// Send a request and wait for its answer; Rerror/Rlerror become
    /// errors.
    pub fn call(&self, body: &Body<'_>) -> Result<Reply> {
        self.start(body)?.wait()
    }

    /// Send a request without waiting; the answer comes to the returned
    /// [`Pending`], which may be waited on from any thread.
    pub fn start(&self, body: &Body<'_>) -> Result<Pending> {
        let (tx, rx) = sync_channel(1);
        match self.conn.send(body, Waiter::Channel(tx)) {
            Some(id) => Ok(Pending {
                client: self.clone(),
                id,
                rx,
            }),
            // The waiter was handed the reason.
            None => Err(rx
                .try_recv()
                .ok()
                .and_then(|r| r.err())
                .unwrap_or_else(|| ClientError::Closed("request not sent".into()))),
        }
    }

    /// Send a request; `done` runs on the reader thread with the answer,
    /// exactly once (at once, on this thread, if it cannot be sent). `done`
    /// must be quick and must not wait for another answer of this
    /// connection. Returns the id to [`Client::flush`] it with, if sent.
    pub fn start_with(
        &self,
        body: &Body<'_>,
        done: impl FnOnce(Result<Reply>) + Send + 'static,
    ) -> Option<RequestId> {
        self.conn.send(body, Waiter::Callback(Box::new(done)))
    }

    /// Cancel request `id` with Tflush, without waiting. Its waiter gets
    /// the original answer if the node sends it before Rflush (flush(5)),
    /// else [`ClientError::Flushed`]. Nothing happens if it already ended.
    pub fn flush(&self, id: RequestId) {
        self.conn.flush(id);
    }
}

/// A request on its way: wait for it, or cancel it.
pub struct Pending {
    client: Client,
    id: RequestId,
    rx: Receiver<Result<Reply>>,
}

impl Pending {
    /// The request's id (its tag on the wire).
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// Wait for the answer.
    pub fn wait(self) -> Result<Reply> {
        self.rx
            .recv()
            .unwrap_or_else(|_| Err(ClientError::Closed("the reader thread ended".into())))
    }

    /// Wait up to `timeout`; `None` if nothing came yet.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<Reply>> {
        match self.rx.recv_timeout(timeout) {
            Ok(r) => Some(r),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                Some(Err(ClientError::Closed("the reader thread ended".into())))
            }
        }
    }

    /// Cancel with Tflush and wait until the node confirms. Returns the
    /// original answer if it came first, else [`ClientError::Flushed`].
    pub fn flush(self) -> Result<Reply> {
        self.client.flush(self.id);
        self.wait()
    }
}
