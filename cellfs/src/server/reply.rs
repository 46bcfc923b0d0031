//! Replies, and how a failed change is put on `/events`.

use crate::clock::Clock;
use crate::error::Error;
use crate::events::Kind;
use crate::log::Log;
use crate::outbox::{ConnId, Outbox};
use crate::root;
use crate::walk;
use alloc::format;
use alloc::string::{String, ToString};
use ninep::{Body, DecodeError, Dialect, Msg};

use super::*;

impl<L: Log, C: Clock> Server<L, C> {
    /// The path a fid points at, with `name` appended: for messages.
    pub(super) fn fid_path(&self, conn: ConnId, fid: u32, name: Option<&str>) -> String {
        let node = self
            .conns
            .get(&conn)
            .and_then(|c| c.fids.get(fid).ok())
            .map(|f| f.node);
        let mut path = match node {
            Some(n) => walk::path_of(&self.world.ctx(), n),
            None => format!("fid {fid}"),
        };
        if let Some(name) = name {
            if !path.ends_with('/') {
                path.push('/');
            }
            path.push_str(name);
        }
        path
    }

    /// Put a failed change on `/events`, so a FUSE user, who only sees an
    /// errno, can read the whole message.
    /// A ctl error already names its file; it is not named twice.
    pub(super) fn error_event(&mut self, subject: &str, e: &Error) {
        let text = e.to_string();
        let named = text
            .strip_prefix(subject)
            .is_some_and(|rest| rest.starts_with(": "));
        if named {
            self.world.event(Kind::Error, &text);
        } else {
            self.world.event(Kind::Error, &format!("{subject}: {text}"));
        }
        self.wakes.push(root::EVENTS);
    }

    /// Answer a frame that does not decode: with an error under its tag if
    /// the header is readable, else by closing the connection.
    pub(super) fn bad_frame(
        &mut self,
        conn: ConnId,
        frame: &[u8],
        e: DecodeError,
        out: &mut Outbox,
    ) {
        let sized = frame.len() >= 7 && frame[..4] == (frame.len() as u32).to_le_bytes();
        if sized {
            let tag = u16::from_le_bytes([frame[5], frame[6]]);
            let e = Error::Protocol(format!("bad message: {e}"));
            self.reply_err(conn, tag, &e, out);
        } else {
            out.close(conn);
        }
    }

    pub(super) fn reply(&mut self, conn: ConnId, tag: u16, body: Body<'_>, out: &mut Outbox) {
        encode_reply(out, conn, tag, body);
    }

    /// The dialect `conn` negotiated (plain 9P2000 before it has).
    pub(super) fn dialect(&self, conn: ConnId) -> Dialect {
        self.conns
            .get(&conn)
            .and_then(|c| c.dialect)
            .unwrap_or_default()
    }

    pub(super) fn reply_err(&mut self, conn: ConnId, tag: u16, e: &Error, out: &mut Outbox) {
        let negotiated = self.conns.get(&conn).and_then(|c| c.dialect);
        // Like any reply, an error fits the connection's msize (a message
        // may quote a long name): cut to what is left after size[4]
        // type[1] tag[2] len[2] errno[4] and the `…`.
        let room = self.msize(conn).min(u32::from(u16::MAX)).saturating_sub(16);
        let text = || crate::ctl::cut(&e.to_string(), room as usize);
        match negotiated.unwrap_or(Dialect::U) {
            // Before a dialect is settled (a refused Tversion, a request
            // before one), the whole message: it is about the protocol.
            _ if negotiated.is_none() => {
                let text = text();
                let body = Body::Rerror {
                    ename: &text,
                    errno: None,
                };
                encode_reply(out, conn, tag, body);
            }
            Dialect::L => encode_reply(out, conn, tag, Body::Rlerror { ecode: e.errno() }),
            // Only the C library's words for the errno, which Unix
            // clients (Linux's v9fs among them) map back to it; the whole
            // message of a failed change is on /events.
            Dialect::P2000 => {
                let body = Body::Rerror {
                    ename: crate::error::strerror(e.errno()),
                    errno: None,
                };
                encode_reply(out, conn, tag, body);
            }
            Dialect::U => {
                let text = text();
                let body = Body::Rerror {
                    ename: &text,
                    errno: Some(e.errno()),
                };
                encode_reply(out, conn, tag, body);
            }
        }
    }
}

/// Encode a reply into the outbox. The messages the server builds always
/// encode (names and errors are far below 64 KiB), so a failure can only
/// mean a bug; the client then gets a generic error rather than silence.
pub(super) fn encode_reply(out: &mut Outbox, conn: ConnId, tag: u16, body: Body<'_>) {
    let msg = Msg { tag, body };
    if out.push_with(conn, |buf| ninep::encode(&msg, buf)).is_err() {
        let fallback = Msg {
            tag,
            body: Body::Rerror {
                ename: "reply too large to encode",
                errno: None,
            },
        };
        let _ = out.push_with(conn, |buf| ninep::encode(&fallback, buf));
    }
}
