//! A bare 9P connection for tests that need to send exactly the bytes they
//! choose (malformed frames, reused tags) and see exactly what comes back.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use ninep::{Body, Dialect, Msg, NOFID, NOTAG, Names};

/// One TCP connection speaking raw 9P.
pub struct Raw {
    stream: TcpStream,
    /// The dialect replies are decoded with.
    pub dialect: Dialect,
}

impl Raw {
    /// Connect to `addr` (nothing is sent yet).
    pub fn connect(addr: &str) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect to node");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            dialect: Dialect::P2000,
        }
    }

    /// Connect, negotiate `dialect`, attach fid 0 with `aname` (which
    /// carries the capability: `token=c0.…`).
    pub fn attached(addr: &str, dialect: Dialect, aname: &str) -> Raw {
        let mut r = Raw::connect(addr);
        let v = r.rpc(
            NOTAG,
            Body::Tversion {
                msize: 65536,
                version: dialect.version(),
            },
        );
        r.dialect = dialect;
        assert_eq!(r.text(&v), "Rversion");
        let n_uname = (dialect != Dialect::P2000).then_some(0);
        let a = r.rpc(
            1,
            Body::Tattach {
                fid: 0,
                afid: NOFID,
                uname: "test",
                aname,
                n_uname,
            },
        );
        assert_eq!(r.text(&a), "Rattach");
        r
    }

    /// Send raw bytes.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Send one message.
    pub fn send(&mut self, tag: u16, body: Body<'_>) {
        let mut frame = Vec::new();
        ninep::encode(&Msg { tag, body }, &mut frame).expect("encode");
        self.send_bytes(&frame);
    }

    /// The next reply frame; `None` if the server closed the connection.
    pub fn recv(&mut self) -> Option<Vec<u8>> {
        let mut size = [0u8; 4];
        match self.stream.read_exact(&mut size) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
                ) =>
            {
                return None;
            }
            Err(e) => panic!("no reply: {e}"),
        }
        let n = u32::from_le_bytes(size) as usize;
        let mut frame = size.to_vec();
        frame.resize(n, 0);
        self.stream.read_exact(&mut frame[4..]).ok()?;
        Some(frame)
    }

    /// Whether anything arrives within `ms` milliseconds.
    pub fn quiet_for(&mut self, ms: u64) -> bool {
        self.stream
            .set_read_timeout(Some(Duration::from_millis(ms)))
            .unwrap();
        let mut b = [0u8; 1];
        let quiet = matches!(self.stream.peek(&mut b), Err(ref e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
        self.stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        quiet
    }

    /// Send one message and wait for one reply.
    pub fn rpc(&mut self, tag: u16, body: Body<'_>) -> Vec<u8> {
        self.send(tag, body);
        self.recv().expect("server replied")
    }

    /// A one-line summary of a reply: `Rread <data>`, `Rerror <text>`,
    /// `Rlerror <errno>`, or the message type.
    pub fn text(&self, frame: &[u8]) -> String {
        match ninep::decode(frame, self.dialect) {
            Ok(m) => match m.body {
                Body::Rread { data } => format!("Rread {}", String::from_utf8_lossy(data)),
                Body::Rerror { ename, .. } => format!("Rerror {ename}"),
                Body::Rlerror { ecode } => format!("Rlerror {ecode}"),
                other => format!("{:?}", other.msg_type()),
            },
            Err(e) => format!("undecodable reply: {e}"),
        }
    }

    /// Walk from fid 0 along `path` into `newfid`; the reply summary.
    pub fn walk(&mut self, newfid: u32, path: &str) -> String {
        let mut wnames = Names::new();
        for p in path.split('/').filter(|p| !p.is_empty()) {
            wnames.push(p).expect("at most 16 names");
        }
        let r = self.rpc(
            2,
            Body::Twalk {
                fid: 0,
                newfid,
                wnames,
            },
        );
        self.text(&r)
    }

    /// Walk to `path`, open it (9P2000 mode byte or Linux flags), read
    /// once, clunk; returns the summary of the read.
    pub fn cat(&mut self, path: &str) -> String {
        assert_eq!(self.walk(99, path), "Rwalk", "walk {path}");
        let open = match self.dialect {
            Dialect::L => self.rpc(3, Body::Tlopen { fid: 99, flags: 0 }),
            Dialect::P2000 | Dialect::U => self.rpc(3, Body::Topen { fid: 99, mode: 0 }),
        };
        assert!(
            self.text(&open).starts_with("R") && !self.text(&open).contains("error"),
            "open {path}"
        );
        let r = self.rpc(
            4,
            Body::Tread {
                fid: 99,
                offset: 0,
                count: 8192,
            },
        );
        let text = self.text(&r);
        self.rpc(5, Body::Tclunk { fid: 99 });
        text
    }
}
