//! One TCP connection: the writer, the reader thread, and the requests in
//! flight.
//!
//! Any thread may send; the reader thread hands each answer to whoever
//! waits on its tag: a channel (a blocked caller) or a callback (the FUSE
//! read path, which answers the kernel straight from the reader thread).
//! Only the connection's own locks are taken, never across the network
//! read; the writer lock is held for exactly one frame.

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use ninep::{Body, Dialect, Msg};

use super::error::{ClientError, Result};
use super::reply::{Reply, classify};
use super::tag::{RequestId, Tags};

/// The most requests one connection keeps in flight; callers beyond it
/// wait for a tag to free up.
pub const MAX_IN_FLIGHT: usize = 4096;

/// Frames above this size are never buffered once a connection has
/// settled its msize (a little slack for servers that round up).
const FRAME_SLACK: u32 = 64;

/// What runs when an answer (or the end of the connection) arrives.
///
/// Callbacks run on the reader thread: they must be quick and must not
/// wait for another answer on the same connection.
pub type Callback = Box<dyn FnOnce(Result<Reply>) + Send>;

/// Who waits for an answer.
pub(crate) enum Waiter {
    /// A thread blocked on the other end.
    Channel(SyncSender<Result<Reply>>),
    /// Code to run on the reader thread.
    Callback(Callback),
}

impl Waiter {
    fn deliver(self, r: Result<Reply>) {
        match self {
            Waiter::Channel(tx) => {
                // The receiver may have given up (a timed-out wait); fine.
                let _ = tx.send(r);
            }
            Waiter::Callback(f) => f(r),
        }
    }
}

struct State {
    tags: Tags<Waiter>,
    /// Why the connection is gone, once it is.
    broken: Option<String>,
}

/// What the reader thread and the senders share.
struct Shared {
    state: Mutex<State>,
    /// Signalled when a tag frees up or the connection breaks.
    room: Condvar,
    dialect: Dialect,
    /// The negotiated message size (the client's proposal until Rversion).
    msize: AtomicU32,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking callback must not wedge every later request.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Writer {
    stream: TcpStream,
    /// Reused encoding buffer, so sending allocates nothing in the steady
    /// state.
    buf: Vec<u8>,
}

/// A connection to a node. Dropping it shuts the socket, which ends the
/// reader thread and fails whatever still waits.
pub(crate) struct Conn {
    writer: Mutex<Writer>,
    shared: Arc<Shared>,
}

impl Conn {
    /// Dial `addr` and start the reader thread. No message is sent yet.
    pub fn open(addr: &str, dialect: Dialect, msize: u32) -> Result<Conn> {
        let connect_err = |e: std::io::Error| ClientError::Connect {
            addr: addr.to_string(),
            reason: e.to_string(),
        };
        let stream = TcpStream::connect(addr).map_err(connect_err)?;
        // Small requests must not wait for Nagle's timer.
        stream.set_nodelay(true).map_err(connect_err)?;
        let reader = stream.try_clone().map_err(connect_err)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                tags: Tags::new(MAX_IN_FLIGHT),
                broken: None,
            }),
            room: Condvar::new(),
            dialect,
            msize: AtomicU32::new(msize),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("cell0-9p-reader".into())
            .spawn(move || read_answers(reader, &s))
            .map_err(connect_err)?;
        Ok(Conn {
            writer: Mutex::new(Writer {
                stream,
                buf: Vec::with_capacity(256),
            }),
            shared,
        })
    }

    /// The dialect the connection was opened for.
    pub fn dialect(&self) -> Dialect {
        self.shared.dialect
    }

    /// The negotiated message size.
    pub fn msize(&self) -> u32 {
        self.shared.msize.load(Ordering::Relaxed)
    }

    /// Record the msize the server settled on.
    pub fn set_msize(&self, msize: u32) {
        self.shared.msize.store(msize, Ordering::Relaxed);
    }

    /// Why the connection is gone, if it is.
    pub fn broken(&self) -> Option<String> {
        self.shared.lock().broken.clone()
    }

    /// Send `body` under a fresh tag (or [`ninep::NOTAG`] for Tversion);
    /// `waiter` gets the answer. Waits while [`MAX_IN_FLIGHT`] requests are
    /// out. If the request cannot be sent, the waiter gets the error at
    /// once and `None` is returned.
    pub fn send(&self, body: &Body<'_>, waiter: Waiter) -> Option<RequestId> {
        let expect = body.msg_type() as u8 + 1;
        let is_version = matches!(body, Body::Tversion { .. });
        let mut waiter = waiter;
        let id = {
            let mut st = self.shared.lock();
            loop {
                if let Some(why) = &st.broken {
                    let err = ClientError::Closed(why.clone());
                    drop(st);
                    waiter.deliver(Err(err));
                    return None;
                }
                let got = if is_version {
                    st.tags.alloc_notag(expect, waiter)
                } else {
                    st.tags.alloc(expect, waiter)
                };
                match got {
                    Ok(id) => break id,
                    Err(w) if is_version => {
                        drop(st);
                        let e = ClientError::Protocol("a Tversion is already out".into());
                        w.deliver(Err(e));
                        return None;
                    }
                    Err(w) => {
                        waiter = w;
                        st = self.shared.room.wait(st).unwrap_or_else(|e| e.into_inner());
                    }
                }
            }
        };
        if let Err(e) = self.write_frame(id.tag, body) {
            let w = self.shared.lock().tags.cancel(id);
            self.shared.room.notify_one();
            if let Some(w) = w {
                w.deliver(Err(e));
            }
            return None;
        }
        Some(id)
    }

    fn write_frame(&self, tag: u16, body: &Body<'_>) -> Result<()> {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let Writer { stream, buf } = &mut *w;
        buf.clear();
        let msg = Msg {
            tag,
            body: body.clone(),
        };
        ninep::encode(&msg, buf).map_err(|e| ClientError::Protocol(e.to_string()))?;
        if buf.len() > self.msize() as usize {
            return Err(ClientError::Protocol(format!(
                "request of {} bytes exceeds the msize {}",
                buf.len(),
                self.msize()
            )));
        }
        let r = stream.write_all(buf);
        // One large write must not pin a megabyte for the connection's life.
        if buf.capacity() > 64 * 1024 {
            *buf = Vec::with_capacity(256);
        }
        r.map_err(|e| ClientError::Closed(e.to_string()))
    }

    /// Cancel request `id` with Tflush. Its waiter gets the original answer
    /// if the node sends it before Rflush (flush(5) says such an answer
    /// counts), else [`ClientError::Flushed`]. Does not wait.
    pub fn flush(&self, id: RequestId) {
        if !self.shared.lock().tags.begin_flush(id) {
            return; // Already answered: nothing to cancel.
        }
        let shared = self.shared.clone();
        let done = Waiter::Callback(Box::new(move |_rflush| {
            // Rflush, or the connection ended: either way the old tag is
            // free now and, if unanswered, its request was cancelled.
            let w = shared.lock().tags.end_flush(id);
            shared.room.notify_all();
            if let Some(w) = w {
                w.deliver(Err(ClientError::Flushed));
            }
        }));
        self.send(&Body::Tflush { oldtag: id.tag }, done);
    }
}

impl Conn {
    /// Shut the socket now: the reader thread ends and every request
    /// waiting, or sent later, fails.
    pub fn shut(&self) {
        let w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let _ = w.stream.shutdown(Shutdown::Both);
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.shut();
    }
}

/// The reader thread: route every answer to whoever waits on its tag.
fn read_answers(stream: TcpStream, shared: &Shared) {
    let mut stream = BufReader::with_capacity(64 * 1024, stream);
    let why = loop {
        let mut size = [0u8; 4];
        if let Err(e) = stream.read_exact(&mut size) {
            break closed_reason(&e);
        }
        let n = u32::from_le_bytes(size);
        let max = shared
            .msize
            .load(Ordering::Relaxed)
            .saturating_add(FRAME_SLACK);
        if n < 7 || n > max {
            break format!("the node sent a frame of {n} bytes (msize {max})");
        }
        let mut frame = vec![0u8; n as usize];
        frame[..4].copy_from_slice(&size);
        if let Err(e) = stream.read_exact(&mut frame[4..]) {
            break closed_reason(&e);
        }
        let tag = u16::from_le_bytes([frame[5], frame[6]]);
        let answer = shared.lock().tags.complete(tag);
        shared.room.notify_one();
        // An answer to a tag nobody holds (a server answering a request
        // after its Rflush) has no one to go to; it is dropped.
        if let Some(a) = answer {
            a.waiter.deliver(classify(frame, a.expect, shared.dialect));
        }
    };
    let waiters = {
        let mut st = shared.lock();
        st.broken = Some(why.clone());
        st.tags.drain()
    };
    shared.room.notify_all();
    for w in waiters {
        w.deliver(Err(ClientError::Closed(why.clone())));
    }
    let _ = stream.get_ref().shutdown(Shutdown::Both);
}

fn closed_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => "the node closed the connection".to_string(),
        _ => e.to_string(),
    }
}
