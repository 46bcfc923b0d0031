//! A FUSE read: one Tread, and once more when it comes back empty.
//!
//! A stream (a channel's `data` or `msgs`, `/events`) that has just handed
//! a reader what it had answers that reader's next read with no bytes
//! rather than keeping it waiting, so that Linux's own 9P client, which
//! reads until its buffer fills or a read returns nothing, gives its
//! program what arrived (cellfs(4) STREAMS). A program reading through
//! FUSE would take those empty bytes for the end of the file, so an empty
//! answer past the start is asked for once more: a stream then waits for
//! its next message, and a file at its end answers empty again.

use std::sync::Arc;

use fuser::{Errno, ReplyData};
use ninep::Body;

use super::interrupt::{Key, Watcher};
use super::log::Sink;
use crate::client::{Client, ClientError, ask_again};

/// What one FUSE read asks of the node.
pub struct Read {
    /// The client the read goes through.
    pub client: Client,
    /// Cancels the read with Tflush if its caller is interrupted.
    pub watcher: Arc<Watcher>,
    /// The caller's registration with `watcher` (none for the kernel).
    pub key: Option<Key>,
    /// Where failures are logged.
    pub log: Sink,
    /// The file's path, for messages.
    pub path: Arc<str>,
    /// The open fid.
    pub fid: u32,
    /// Where the read starts.
    pub offset: u64,
    /// Bytes asked of the node (at most the fid's iounit).
    pub count: u32,
    /// Bytes the caller asked for.
    pub size: u32,
}

impl Read {
    /// Send the read; `reply` gets its answer. `again` is whether this is
    /// the second asking after an empty answer.
    pub fn send(self, reply: ReplyData, again: bool) {
        let body = Body::Tread {
            fid: self.fid,
            offset: self.offset,
            count: self.count,
        };
        let client = self.client.clone();
        let (watcher, key) = (self.watcher.clone(), self.key);
        let sent = client.start_with(&body, move |answer| {
            if !again
                && let Ok(r) = &answer
                && ask_again(self.offset, r)
            {
                // Asked again from a thread of its own: this one reads the
                // connection, and must not wait to write on it.
                let _ = std::thread::Builder::new()
                    .name("cell0-read-again".into())
                    .spawn(move || self.send(reply, true));
                return;
            }
            if let Some(k) = self.key {
                self.watcher.done(k);
            }
            match answer {
                Ok(r) => match r.read_data() {
                    Ok(d) => reply.data(&d[..d.len().min(self.size as usize)]),
                    Err(e) => reply.error(super::fs::fail(&self.log, "read", &self.path, &e)),
                },
                Err(ClientError::Flushed) => {
                    self.log.line(format_args!(
                        "read {}: the reader was interrupted; cancelled with Tflush",
                        self.path
                    ));
                    reply.error(Errno::EINTR);
                }
                Err(e) => reply.error(super::fs::fail(&self.log, "read", &self.path, &e)),
            }
        });
        if let (Some(k), Some(id)) = (key, sent) {
            watcher.sent(k, id, again);
        }
    }
}
