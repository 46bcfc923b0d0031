//! The server core driven message by message, as a transport would.

use std::cell::RefCell;
use std::rc::Rc;

use cellfs::cap::NodeKey;
use cellfs::{
    Commit, Config, ConnId, Entry, FixedClock, Index, Log, LogError, Outbox, ProposalId, Server,
};
use ninep::{Body, Dialect, Msg, NOFID, NOTAG, Names};

/// A log the test controls: it keeps every committed entry (to replay into
/// a second server) and can hold proposals back to model a slow fsync.
#[derive(Default)]
struct Disk {
    durable: Vec<Vec<u8>>,
    pending: Vec<Vec<u8>>,
    ready: Vec<Commit>,
    hold: bool,
}

#[derive(Clone, Default)]
struct TestLog(Rc<RefCell<Disk>>);

impl TestLog {
    fn commit_held(&self) {
        let mut d = self.0.borrow_mut();
        let pending = std::mem::take(&mut d.pending);
        for data in pending {
            d.durable.push(data.clone());
            let index = d.durable.len() as Index;
            d.ready.push(Commit::Entry {
                entry: Entry {
                    index,
                    term: 1,
                    origin: 0,
                    data,
                },
                proposal: Some(index),
            });
        }
    }

    /// A log holding what this one made durable, as after a restart.
    fn reopened(&self) -> TestLog {
        let d = self.0.borrow();
        let ready = d
            .durable
            .iter()
            .enumerate()
            .map(|(i, data)| Commit::Entry {
                entry: Entry {
                    index: i as Index + 1,
                    term: 1,
                    origin: 0,
                    data: data.clone(),
                },
                proposal: None,
            })
            .collect();
        TestLog(Rc::new(RefCell::new(Disk {
            durable: d.durable.clone(),
            ready,
            ..Disk::default()
        })))
    }
}

impl Log for TestLog {
    fn propose(&mut self, data: Vec<u8>) -> Result<ProposalId, LogError> {
        let mut d = self.0.borrow_mut();
        d.pending.push(data);
        let index = (d.durable.len() + d.pending.len()) as Index;
        drop(d);
        if !self.0.borrow().hold {
            self.commit_held();
        }
        Ok(index)
    }

    fn take_committed(&mut self, out: &mut Vec<Commit>) {
        out.append(&mut self.0.borrow_mut().ready);
    }
}

struct Node {
    server: Server<TestLog, FixedClock>,
    log: TestLog,
    out: Outbox,
    dialects: std::collections::HashMap<ConnId, Dialect>,
}

/// A decoded reply, owned so tests can hold several.
#[derive(Debug, Clone, PartialEq)]
struct Reply {
    conn: ConnId,
    tag: u16,
    text: String,
    frame: Vec<u8>,
}

impl Node {
    fn new() -> Node {
        Node::with_log(TestLog::default())
    }

    fn with_log(log: TestLog) -> Node {
        let clock = FixedClock {
            unix: 1_700_000_000_000_000_000,
            mono: 5_000_000_000,
        };
        let config = Config {
            max_msize: 65536,
            // Capabilities have their own tests; these are about 9P.
            insecure: true,
            ..Config::new("test", NodeKey::from_seed(&[1; 32]))
        };
        let mut server = Server::new(config, log.clone(), clock);
        let mut out = Outbox::new();
        server.poll(&mut out);
        Node {
            server,
            log,
            out,
            dialects: Default::default(),
        }
    }

    /// Send one message; return every reply it caused, to any connection.
    fn send(&mut self, conn: ConnId, tag: u16, body: Body<'_>) -> Vec<Reply> {
        let mut frame = Vec::new();
        ninep::encode(&Msg { tag, body }, &mut frame).unwrap();
        self.raw(conn, &frame)
    }

    fn raw(&mut self, conn: ConnId, frame: &[u8]) -> Vec<Reply> {
        self.out.clear();
        self.server.handle(conn, frame, &mut self.out);
        self.server.poll(&mut self.out);
        self.collect()
    }

    fn poll(&mut self) -> Vec<Reply> {
        self.out.clear();
        self.server.poll(&mut self.out);
        self.collect()
    }

    fn collect(&mut self) -> Vec<Reply> {
        let mut replies = Vec::new();
        for (c, f) in self.out.frames() {
            let dialect = self.dialects.get(&c).copied().unwrap_or_default();
            let msg = ninep::decode(f, dialect).expect("server replies decode");
            let text = match &msg.body {
                Body::Rread { data } => format!("Rread {}", String::from_utf8_lossy(data)),
                Body::Rerror { ename, .. } => format!("Rerror {ename}"),
                Body::Rlerror { ecode } => format!("Rlerror {ecode}"),
                other => format!("{:?}", other.msg_type()),
            };
            replies.push(Reply {
                conn: c,
                tag: msg.tag,
                text,
                frame: f.to_vec(),
            });
        }
        replies
    }

    /// Send and expect exactly one reply, to the sender.
    fn call(&mut self, conn: ConnId, tag: u16, body: Body<'_>) -> String {
        let r = self.send(conn, tag, body);
        assert_eq!(r.len(), 1, "one reply expected, got {r:?}");
        assert_eq!((r[0].conn, r[0].tag), (conn, tag));
        r[0].text.clone()
    }

    /// A connection that has negotiated `dialect` and attached fid 0 to /.
    fn client(&mut self, dialect: Dialect) -> ConnId {
        let c = self.server.connect();
        self.dialects.insert(c, dialect);
        let v = self.call(
            c,
            NOTAG,
            Body::Tversion {
                msize: 8192,
                version: dialect.version(),
            },
        );
        assert_eq!(v, "Rversion");
        let n_uname = matches!(dialect, Dialect::L | Dialect::U).then_some(0);
        let a = self.call(
            c,
            1,
            Body::Tattach {
                fid: 0,
                afid: NOFID,
                uname: "u",
                aname: "",
                n_uname,
            },
        );
        assert_eq!(a, "Rattach");
        c
    }

    fn walk(&mut self, c: ConnId, fid: u32, newfid: u32, path: &str) -> String {
        let mut wnames = Names::new();
        for p in path.split('/').filter(|p| !p.is_empty()) {
            wnames.push(p).unwrap();
        }
        self.call(
            c,
            2,
            Body::Twalk {
                fid,
                newfid,
                wnames,
            },
        )
    }

    /// Walk from the root to `path` into `fid` and open it with `mode`.
    fn open(&mut self, c: ConnId, fid: u32, path: &str, mode: u8) -> String {
        let w = self.walk(c, 0, fid, path);
        assert_eq!(w, "Rwalk", "walk {path}");
        self.call(c, 3, Body::Topen { fid, mode })
    }

    fn read(&mut self, c: ConnId, fid: u32) -> String {
        self.call(
            c,
            4,
            Body::Tread {
                fid,
                offset: 0,
                count: 4096,
            },
        )
    }

    fn write(&mut self, c: ConnId, fid: u32, data: &str) -> String {
        self.call(
            c,
            5,
            Body::Twrite {
                fid,
                offset: 0,
                data: data.as_bytes(),
            },
        )
    }

    fn cat(&mut self, c: ConnId, path: &str) -> String {
        assert_eq!(self.open(c, 90, path, 0), "Ropen");
        let text = self.read(c, 90);
        assert_eq!(self.call(c, 6, Body::Tclunk { fid: 90 }), "Rclunk");
        text
    }

    /// Make consumer group `group` on channel `chan` (fid 81).
    fn group(&mut self, c: ConnId, chan: &str, group: &str) {
        assert_eq!(self.open(c, 81, &format!("chan/{chan}/ctl"), 1), "Ropen");
        assert_eq!(self.write(c, 81, &format!("group {group}")), "Rwrite");
        assert_eq!(self.call(c, 6, Body::Tclunk { fid: 81 }), "Rclunk");
    }

    fn mkchan(&mut self, c: ConnId, name: &str) {
        let w = self.walk(c, 0, 80, "chan");
        assert_eq!(w, "Rwalk");
        let r = self.call(
            c,
            7,
            Body::Tcreate {
                fid: 80,
                name,
                perm: ninep::stat::DMDIR | 0o755,
                mode: 0,
                extension: (self.dialects.get(&c) == Some(&Dialect::U)).then_some(""),
            },
        );
        assert_eq!(r, "Rcreate");
        assert_eq!(self.call(c, 6, Body::Tclunk { fid: 80 }), "Rclunk");
    }
}

#[test]
fn version_negotiation_and_dialects() {
    let mut n = Node::new();
    let c = n.server.connect();
    let r = n.send(
        c,
        NOTAG,
        Body::Tversion {
            msize: 1 << 30,
            version: "9P2000.L",
        },
    );
    let m = ninep::decode(&r[0].frame, Dialect::L).unwrap();
    assert_eq!(
        m.body,
        Body::Rversion {
            msize: 65536,
            version: "9P2000.L"
        }
    );
    let r = n.send(
        c,
        NOTAG,
        Body::Tversion {
            msize: 8192,
            version: "9P2000.u",
        },
    );
    let m = ninep::decode(&r[0].frame, Dialect::U).unwrap();
    assert_eq!(
        m.body,
        Body::Rversion {
            msize: 8192,
            version: "9P2000.u"
        }
    );
    // A suffix this server does not speak falls back to plain 9P2000.
    let r = n.send(
        c,
        NOTAG,
        Body::Tversion {
            msize: 8192,
            version: "9P2000.x",
        },
    );
    let m = ninep::decode(&r[0].frame, Dialect::P2000).unwrap();
    assert_eq!(
        m.body,
        Body::Rversion {
            msize: 8192,
            version: "9P2000"
        }
    );
    let r = n.send(
        c,
        NOTAG,
        Body::Tversion {
            msize: 8192,
            version: "9P3000",
        },
    );
    let m = ninep::decode(&r[0].frame, Dialect::P2000).unwrap();
    assert_eq!(
        m.body,
        Body::Rversion {
            msize: 8192,
            version: "unknown"
        }
    );
    assert!(
        n.call(
            c,
            NOTAG,
            Body::Tversion {
                msize: 16,
                version: "9P2000"
            }
        )
        .starts_with("Rerror msize 16")
    );
}

#[test]
fn dialect_9p2000u_carries_errnos_numeric_ids_and_refuses_special_files() {
    let mut n = Node::new();
    let c = n.client(Dialect::U);
    // An error: the whole text and its errno.
    let r = n.send(c, 2, Body::Tstat { fid: 7 });
    let m = ninep::decode(&r[0].frame, Dialect::U).unwrap();
    assert_eq!(
        m.body,
        Body::Rerror {
            ename: "unknown fid 7",
            errno: Some(9)
        }
    );
    // A stat, alone and in a directory listing, has the .u fields.
    let r = n.send(c, 2, Body::Tstat { fid: 0 });
    let Body::Rstat { stat } = ninep::decode(&r[0].frame, Dialect::U).unwrap().body else {
        panic!("{:?}", r[0].text)
    };
    let ext = stat.ext.expect("9P2000.u fields in Rstat");
    assert_eq!((ext.extension, ext.n_uid), ("", 0));
    assert_eq!(n.open(c, 5, "", 0), "Ropen");
    let r = n.send(
        c,
        4,
        Body::Tread {
            fid: 5,
            offset: 0,
            count: 4096,
        },
    );
    let Body::Rread { data } = ninep::decode(&r[0].frame, Dialect::U).unwrap().body else {
        panic!("{:?}", r[0].text)
    };
    let (first, used) = ninep::decode::decode_stat(data).unwrap();
    assert!(first.ext.is_some() && used > 0, "{first:?}");
    // Making a channel works as in 9P2000; a symlink or a device does not.
    n.mkchan(c, "u1");
    assert_eq!(n.walk(c, 0, 80, "chan"), "Rwalk");
    let r = n.call(
        c,
        7,
        Body::Tcreate {
            fid: 80,
            name: "link",
            perm: ninep::stat::DMSYMLINK | 0o777,
            mode: 0,
            extension: Some("/etc/passwd"),
        },
    );
    assert!(r.contains("symbolic links"), "{r}");
    assert!(n.walk(c, 80, 81, "link").starts_with("Rerror"));
    // Making what is already there is EEXIST wherever it is, not EPERM.
    assert_eq!(n.walk(c, 0, 82, ""), "Rwalk");
    let r = n.send(
        c,
        7,
        Body::Tcreate {
            fid: 82,
            name: "chan",
            perm: ninep::stat::DMDIR | 0o755,
            mode: 0,
            extension: Some(""),
        },
    );
    let m = ninep::decode(&r[0].frame, Dialect::U).unwrap();
    assert_eq!(
        m.body,
        Body::Rerror {
            ename: "/chan already exists",
            errno: Some(17)
        }
    );
}

#[test]
fn plain_9p2000_errors_are_the_words_unix_clients_map_to_an_errno() {
    let mut n = Node::new();
    let c = n.client(Dialect::P2000);
    // Linux's 9P2000 client maps these exact strings (net/9p/error.c);
    // anything else would reach its programs as ESERVERFAULT.
    assert_eq!(
        n.walk(c, 0, 1, "nosuch"),
        "Rerror No such file or directory"
    );
    n.mkchan(c, "p");
    assert_eq!(n.walk(c, 0, 80, "chan"), "Rwalk");
    let r = n.call(
        c,
        7,
        Body::Tcreate {
            fid: 80,
            name: "p",
            perm: ninep::stat::DMDIR | 0o755,
            mode: 0,
            extension: None,
        },
    );
    assert_eq!(r, "Rerror File exists");
    // The whole message of a failed change is on /events.
    park_events_read(&mut n, c);
    assert_eq!(n.open(c, 81, "chan/p/ctl", 1), "Ropen");
    let r = n.send(
        c,
        5,
        Body::Twrite {
            fid: 81,
            offset: 0,
            data: b"qoss",
        },
    );
    let texts: Vec<&str> = r.iter().map(|r| r.text.as_str()).collect();
    assert!(texts.contains(&"Rerror Invalid argument"), "{texts:?}");
    assert!(
        texts.iter().any(|t| t.contains("unknown verb \"qoss\"")),
        "{texts:?}"
    );
}

#[test]
fn a_create_of_an_existing_file_opens_it_unless_exclusive() {
    let mut n = Node::new();
    let c = n.client(Dialect::L);
    n.mkchan(c, "w");
    let lcreate = |flags: u32| Body::Tlcreate {
        fid: 70,
        name: "data",
        flags,
        mode: 0o644,
        gid: 0,
    };
    // O_CREAT|O_EXCL (the flags are Linux's): EEXIST, the fid stays.
    assert_eq!(n.walk(c, 0, 70, "chan/w"), "Rwalk");
    assert_eq!(n.call(c, 8, lcreate(0o301)), "Rlerror 17");
    // O_WRONLY|O_CREAT|O_TRUNC: the existing data file, opened to write.
    assert_eq!(n.call(c, 8, lcreate(0o1101)), "Rlcreate");
    assert_eq!(n.write(c, 70, "created into"), "Rwrite");
    assert!(n.cat(c, "chan/w/status").contains("retained 1\n"));
}

#[test]
fn nothing_is_served_before_version() {
    let mut n = Node::new();
    let c = n.server.connect();
    let r = n.call(
        c,
        1,
        Body::Tattach {
            fid: 0,
            afid: NOFID,
            uname: "u",
            aname: "",
            n_uname: None,
        },
    );
    assert!(r.starts_with("Rerror no Tversion"), "{r}");
}

#[test]
fn status_reads_key_value_lines() {
    let mut n = Node::new();
    let c = n.client(Dialect::U);
    let text = n.cat(c, "status");
    assert!(text.starts_with("Rread node test\nversion "), "{text}");
    assert!(text.contains("\nconnections 1\n"), "{text}");
    assert!(text.contains("\nchannels 0\n"), "{text}");
    assert!(text.contains("\nuptime 0\n"), "{text}");
}

#[test]
fn walk_rules_of_walk5() {
    let mut n = Node::new();
    let c = n.client(Dialect::U);
    // `..` at the root is the root; a partial walk returns the qids it got
    // and does not create the new fid.
    let r = n.send(
        c,
        2,
        Body::Twalk {
            fid: 0,
            newfid: 1,
            wnames: Names::from_slice(&["..", "chan", "nope"]).unwrap(),
        },
    );
    let m = ninep::decode(&r[0].frame, Dialect::U).unwrap();
    let Body::Rwalk { wqids } = m.body else {
        panic!("{m:?}")
    };
    assert_eq!(wqids.len(), 2);
    assert!(
        n.call(c, 3, Body::Topen { fid: 1, mode: 0 })
            .starts_with("Rerror unknown fid 1")
    );
    // An error only when the first name fails.
    assert_eq!(n.walk(c, 0, 1, "nope"), "Rerror 'nope' does not exist");
    // Walking from a file fails; so does reusing a live fid.
    assert_eq!(n.walk(c, 0, 1, "status"), "Rwalk");
    assert_eq!(n.walk(c, 1, 2, "x"), "Rerror not a directory");
    assert_eq!(n.walk(c, 0, 1, "chan"), "Rerror fid 1 already in use");
    // Seventeen names are refused by the decoder; the connection lives on.
    let mut frame = Vec::new();
    let names = Names::from_slice(&["chan"; 16]).unwrap();
    ninep::encode(
        &Msg {
            tag: 9,
            body: Body::Twalk {
                fid: 0,
                newfid: 5,
                wnames: names,
            },
        },
        &mut frame,
    )
    .unwrap();
    // Patch nwname to 17 and append one more name.
    let nw = 4 + 1 + 2 + 4 + 4;
    frame[nw..nw + 2].copy_from_slice(&17u16.to_le_bytes());
    frame.extend_from_slice(&4u16.to_le_bytes());
    frame.extend_from_slice(b"chan");
    let len = frame.len() as u32;
    frame[..4].copy_from_slice(&len.to_le_bytes());
    let r = n.raw(c, &frame);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].tag, 9);
    assert!(r[0].text.starts_with("Rerror bad message"), "{:?}", r[0]);
    assert!(n.cat(c, "status").contains("node test"));
}

#[test]
fn bad_input_is_refused_and_the_node_keeps_serving() {
    let mut n = Node::new();
    let c = n.client(Dialect::U);
    let other = n.client(Dialect::L);
    // Unknown message type with a readable header: an error under its tag.
    let r = n.raw(c, &[7, 0, 0, 0, 200, 3, 0]);
    assert_eq!(
        (r[0].tag, r[0].text.starts_with("Rerror bad message")),
        (3, true)
    );
    // A frame whose size field lies: the connection is closed.
    n.out.clear();
    n.server.handle(c, &[9, 0, 0], &mut n.out);
    assert_eq!(n.out.closes(), &[c]);
    // A read on an unopened fid.
    assert_eq!(n.walk(other, 0, 1, "status"), "Rwalk");
    assert_eq!(n.read(other, 1), "Rlerror 9");
    // Replies are not requests.
    assert!(n.call(c, 4, Body::Rclunk).starts_with("Rerror"));
    assert!(n.cat(other, "status").contains("connections 2"));
}

#[test]
fn channels_mkdir_write_read_remove() {
    let mut n = Node::new();
    let c = n.client(Dialect::L);
    let w = n.walk(c, 0, 1, "chan");
    assert_eq!(w, "Rwalk");
    assert_eq!(
        n.call(
            c,
            7,
            Body::Tmkdir {
                dfid: 1,
                name: "alerts",
                mode: 0o755,
                gid: 0
            }
        ),
        "Rmkdir"
    );
    assert_eq!(
        n.call(
            c,
            7,
            Body::Tmkdir {
                dfid: 1,
                name: "alerts",
                mode: 0o755,
                gid: 0
            }
        ),
        "Rlerror 17"
    );
    assert_eq!(
        n.call(
            c,
            7,
            Body::Tmkdir {
                dfid: 1,
                name: ".hidden",
                mode: 0o755,
                gid: 0
            }
        ),
        "Rlerror 22"
    );
    assert_eq!(
        n.call(
            c,
            7,
            Body::Tlcreate {
                fid: 1,
                name: "f",
                flags: 1,
                mode: 0o644,
                gid: 0
            }
        ),
        "Rlerror 1"
    );
    assert_eq!(n.open(c, 2, "chan/alerts/data", 2), "Ropen");
    assert_eq!(n.write(c, 2, "one"), "Rwrite");
    assert_eq!(n.write(c, 2, "two"), "Rwrite");
    assert_eq!(n.read(c, 2), "Rread one");
    assert_eq!(n.read(c, 2), "Rread two");
    // Directory listings in .L.
    let d = n.open(c, 3, "chan/alerts", 0);
    assert_eq!(d, "Ropen");
    let r = n.send(
        c,
        8,
        Body::Treaddir {
            fid: 3,
            offset: 0,
            count: 4096,
        },
    );
    let m = ninep::decode(&r[0].frame, Dialect::L).unwrap();
    let Body::Rreaddir { data } = m.body else {
        panic!()
    };
    let mut names = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let (d, used) = ninep::decode::decode_dirent(rest).unwrap();
        names.push(d.name.to_string());
        rest = &rest[used..];
    }
    assert_eq!(names, ["ctl", "data", "groups", "msgs", "status"]);
    // Removing an object's own file changes nothing; removing the
    // directory removes the channel.
    assert_eq!(n.walk(c, 0, 4, "chan/alerts"), "Rwalk");
    assert_eq!(
        n.call(
            c,
            9,
            Body::Tunlinkat {
                dirfid: 4,
                name: "data",
                flags: 0
            }
        ),
        "Runlinkat"
    );
    assert!(n.cat(c, "chan/alerts/status").contains("name alerts"));
    assert_eq!(
        n.call(
            c,
            9,
            Body::Tunlinkat {
                dirfid: 1,
                name: "alerts",
                flags: 0
            }
        ),
        "Rlerror 21"
    );
    assert_eq!(
        n.call(
            c,
            9,
            Body::Tunlinkat {
                dirfid: 1,
                name: "alerts",
                flags: 0x200
            }
        ),
        "Runlinkat"
    );
    assert_eq!(n.walk(c, 1, 5, "alerts"), "Rlerror 2");
}

#[test]
fn blocking_read_is_answered_by_another_connections_write() {
    let mut n = Node::new();
    let reader = n.client(Dialect::U);
    let writer = n.client(Dialect::U);
    n.mkchan(writer, "x");
    assert_eq!(n.open(reader, 1, "chan/x/data", 0), "Ropen");
    assert_eq!(n.open(writer, 1, "chan/x/data", 1), "Ropen");
    let r = n.send(
        reader,
        40,
        Body::Tread {
            fid: 1,
            offset: 0,
            count: 100,
        },
    );
    assert!(r.is_empty(), "a read of an empty channel waits: {r:?}");
    assert!(n.cat(writer, "chan/x/status").contains("waiting 1"));
    let r = n.send(
        writer,
        41,
        Body::Twrite {
            fid: 1,
            offset: 0,
            data: b"hi",
        },
    );
    let mut got: Vec<(ConnId, u16, String)> =
        r.into_iter().map(|r| (r.conn, r.tag, r.text)).collect();
    got.sort_by_key(|g| g.1);
    assert_eq!(
        got,
        [
            (reader, 40, "Rread hi".to_string()),
            (writer, 41, "Rwrite".to_string())
        ]
    );
}

/// Read fid 1 of `c` (count 100) under tag 60: the answer, or "" if it
/// waits.
fn read_now(n: &mut Node, c: ConnId) -> String {
    let r = n.send(
        c,
        60,
        Body::Tread {
            fid: 1,
            offset: 0,
            count: 100,
        },
    );
    r.into_iter()
        .find(|r| r.conn == c && r.tag == 60)
        .map_or(String::new(), |r| r.text)
}

#[test]
fn streams_end_a_batch_with_one_empty_read_for_clients_that_read_until_one() {
    let mut n = Node::new();
    let writer = n.client(Dialect::U);
    n.mkchan(writer, "b");
    assert_eq!(n.open(writer, 1, "chan/b/data", 1), "Ropen");
    // A plain 9P2000 client attached with reads=batch (Linux mounted with
    // version=9p2000), then 9P2000.L: both get one empty read after a
    // batch, then wait for the next message.
    let p = n.server.connect();
    n.dialects.insert(p, Dialect::P2000);
    let v = n.call(
        p,
        NOTAG,
        Body::Tversion {
            msize: 8192,
            version: "9P2000",
        },
    );
    assert_eq!(v, "Rversion");
    let a = Body::Tattach {
        fid: 0,
        afid: NOFID,
        uname: "u",
        aname: "reads=batch",
        n_uname: None,
    };
    assert_eq!(n.call(p, 1, a), "Rattach");
    let l = n.client(Dialect::L);
    for c in [p, l] {
        assert_eq!(n.open(c, 1, "chan/b/data", 0), "Ropen");
    }
    assert_eq!(n.write(writer, 1, "m1"), "Rwrite");
    for c in [p, l] {
        assert_eq!(read_now(&mut n, c), "Rread m1");
        assert_eq!(
            read_now(&mut n, c),
            "Rread ",
            "the batch ends with one empty read"
        );
        assert_eq!(read_now(&mut n, c), "", "then the read waits");
    }
    let r = n.send(
        writer,
        5,
        Body::Twrite {
            fid: 1,
            offset: 0,
            data: b"m2",
        },
    );
    for c in [p, l] {
        assert!(
            r.iter()
                .any(|r| r.conn == c && r.tag == 60 && r.text == "Rread m2"),
            "{r:?}"
        );
    }
    // A plain 9P2000 client (Plan 9's kind) is never handed an empty read
    // while the stream is open: its next read waits.
    let plan9 = n.client(Dialect::P2000);
    assert_eq!(n.open(plan9, 1, "chan/b/data", 0), "Ropen");
    assert_eq!(n.write(writer, 1, "m3"), "Rwrite");
    assert_eq!(read_now(&mut n, plan9), "Rread m1");
    assert_eq!(read_now(&mut n, plan9), "Rread m2");
    assert_eq!(read_now(&mut n, plan9), "Rread m3");
    assert_eq!(read_now(&mut n, plan9), "", "a Plan 9 reader waits");
}

#[test]
fn flush_cancels_a_parked_read_and_the_message_stays() {
    let mut n = Node::new();
    let c = n.client(Dialect::U);
    n.mkchan(c, "x");
    assert_eq!(n.open(c, 1, "chan/x/data", 2), "Ropen");
    assert!(
        n.send(
            c,
            40,
            Body::Tread {
                fid: 1,
                offset: 0,
                count: 100
            }
        )
        .is_empty()
    );
    // The same tag cannot be used twice while the read waits.
    let r = n.send(c, 40, Body::Tclunk { fid: 99 });
    assert!(r[0].text.starts_with("Rerror tag 40 is already in use"));
    let mut n = Node::new();
    let c = n.client(Dialect::U);
    n.mkchan(c, "x");
    assert_eq!(n.open(c, 1, "chan/x/data", 2), "Ropen");
    assert!(
        n.send(
            c,
            40,
            Body::Tread {
                fid: 1,
                offset: 0,
                count: 100
            }
        )
        .is_empty()
    );
    assert_eq!(n.call(c, 41, Body::Tflush { oldtag: 40 }), "Rflush");
    assert_eq!(n.write(c, 1, "kept"), "Rwrite");
    assert!(n.cat(c, "chan/x/status").contains("retained 1"));
    assert_eq!(n.read(c, 1), "Rread kept");
}

#[test]
fn flush_of_a_committing_read_follows_its_answer() {
    let mut n = Node::new();
    let c = n.client(Dialect::U);
    n.mkchan(c, "x");
    n.group(c, "x", "g");
    assert_eq!(n.open(c, 1, "chan/x/data", 2), "Ropen");
    assert_eq!(n.write(c, 1, "m"), "Rwrite");
    assert_eq!(n.open(c, 2, "chan/x/groups/g", 0), "Ropen");
    n.log.0.borrow_mut().hold = true;
    assert!(
        n.send(
            c,
            40,
            Body::Tread {
                fid: 2,
                offset: 0,
                count: 100
            }
        )
        .is_empty()
    );
    assert!(n.send(c, 41, Body::Tflush { oldtag: 40 }).is_empty());
    n.log.commit_held();
    let r: Vec<(u16, String)> = n.poll().into_iter().map(|r| (r.tag, r.text)).collect();
    assert_eq!(r, [(40, "Rread m".to_string()), (41, "Rflush".to_string())]);
}

#[test]
fn a_reader_gone_before_commit_loses_no_message() {
    let mut n = Node::new();
    let c = n.client(Dialect::U);
    n.mkchan(c, "x");
    n.group(c, "x", "g");
    assert_eq!(n.open(c, 1, "chan/x/data", 2), "Ropen");
    assert_eq!(n.write(c, 1, "precious"), "Rwrite");
    assert_eq!(n.open(c, 2, "chan/x/groups/g", 0), "Ropen");
    n.log.0.borrow_mut().hold = true;
    assert!(
        n.send(
            c,
            40,
            Body::Tread {
                fid: 2,
                offset: 0,
                count: 100
            }
        )
        .is_empty()
    );
    let mut out = Outbox::new();
    n.server.disconnect(c, &mut out);
    n.log.commit_held();
    n.poll();
    n.log.commit_held();
    n.log.0.borrow_mut().hold = false;
    n.poll();
    let c2 = n.client(Dialect::U);
    assert_eq!(n.open(c2, 1, "chan/x/groups/g", 0), "Ropen");
    assert_eq!(n.read(c2, 1), "Rread precious", "given back to the group");
}

#[test]
fn a_group_message_read_in_part_by_a_fid_that_goes_is_given_back_whole() {
    let mut n = Node::new();
    let c = n.client(Dialect::U);
    n.mkchan(c, "x");
    n.group(c, "x", "g");
    assert_eq!(n.open(c, 1, "chan/x/data", 2), "Ropen");
    assert_eq!(n.write(c, 1, "precious cargo"), "Rwrite");
    assert_eq!(n.open(c, 2, "chan/x/groups/g", 0), "Ropen");
    let small = |n: &mut Node, fid| {
        n.call(
            c,
            40,
            Body::Tread {
                fid,
                offset: 0,
                count: 8,
            },
        )
    };
    assert_eq!(small(&mut n, 2), "Rread precious");
    // The reader goes with " cargo" unread: the message was not delivered.
    assert_eq!(n.call(c, 6, Body::Tclunk { fid: 2 }), "Rclunk");
    n.poll();
    assert_eq!(n.open(c, 3, "chan/x/groups/g", 0), "Ropen");
    assert_eq!(n.read(c, 3), "Rread precious cargo", "given back whole");
    // Read to the end, nothing is given back.
    assert_eq!(n.call(c, 6, Body::Tclunk { fid: 3 }), "Rclunk");
    n.poll();
    let status = n.cat(c, "chan/x/status");
    assert!(status.contains("pending=0 taken=1"), "{status}");
}

/// Open `/events` on fid 1 and leave a read parked there under tag 50.
fn park_events_read(n: &mut Node, c: ConnId) {
    assert_eq!(n.open(c, 1, "events", 0), "Ropen");
    let r = n.send(
        c,
        50,
        Body::Tread {
            fid: 1,
            offset: 0,
            count: 4096,
        },
    );
    assert!(r.is_empty(), "{r:?}");
}

#[test]
fn bad_ctl_changes_nothing_and_reaches_events() {
    let mut n = Node::new();
    let c = n.client(Dialect::U);
    n.mkchan(c, "alerts");
    park_events_read(&mut n, c);
    assert_eq!(n.open(c, 2, "chan/alerts/ctl", 1), "Ropen");
    let r = n.send(
        c,
        51,
        Body::Twrite {
            fid: 2,
            offset: 0,
            data: b"close\nqoss rate=1\n",
        },
    );
    let mut texts: Vec<(u16, String)> = r.into_iter().map(|r| (r.tag, r.text)).collect();
    texts.sort();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(texts[0].1.starts_with("Rread 2 "), "{texts:?}");
    assert!(
        texts[0].1.ends_with(" error /chan/alerts/ctl: chan alerts: unknown verb \"qoss\"; expected clear, close, open, retain, qos, full, group, ungroup, connect, disconnect\n"),
        "{texts:?}"
    );
    assert_eq!(
        texts[1].1,
        "Rerror chan alerts: unknown verb \"qoss\"; expected clear, close, open, retain, qos, full, group, ungroup, connect, disconnect"
    );
    assert!(
        n.cat(c, "chan/alerts/status").contains("state open"),
        "the valid first line was not applied"
    );
    assert_eq!(n.write(c, 2, "close\n"), "Rwrite");
    assert!(n.cat(c, "chan/alerts/status").contains("state closed"));
}

#[test]
fn an_error_that_names_its_file_is_not_named_twice_on_events() {
    let mut n = Node::new();
    let c = n.client(Dialect::U);
    park_events_read(&mut n, c);
    assert_eq!(n.open(c, 2, "ctl", 1), "Ropen");
    let r = n.send(
        c,
        51,
        Body::Twrite {
            fid: 2,
            offset: 0,
            data: b"sink\n",
        },
    );
    let event = r
        .iter()
        .find(|r| r.tag == 50)
        .map(|r| r.text.clone())
        .expect("the parked events read is answered");
    assert!(
        event.ends_with(" error /ctl: unknown verb \"sink\"; expected note, sync\n"),
        "{event}"
    );
}

#[test]
fn removing_a_channel_ends_its_parked_reads() {
    let mut n = Node::new();
    let c = n.client(Dialect::U);
    n.mkchan(c, "x");
    assert_eq!(n.open(c, 1, "chan/x/data", 0), "Ropen");
    assert!(
        n.send(
            c,
            40,
            Body::Tread {
                fid: 1,
                offset: 0,
                count: 100
            }
        )
        .is_empty()
    );
    assert_eq!(n.walk(c, 0, 2, "chan/x"), "Rwalk");
    let r = n.send(c, 41, Body::Tremove { fid: 2 });
    let mut texts: Vec<(u16, String)> = r.into_iter().map(|r| (r.tag, r.text)).collect();
    texts.sort();
    assert_eq!(texts[1], (41, "Rremove".to_string()));
    assert!(
        texts[0].1.starts_with("Rerror") && texts[0].0 == 40,
        "{texts:?}"
    );
}

#[test]
fn state_is_rebuilt_from_the_log() {
    let mut n = Node::new();
    let c = n.client(Dialect::U);
    n.mkchan(c, "a");
    n.mkchan(c, "b");
    assert_eq!(n.open(c, 1, "chan/a/data", 2), "Ropen");
    for m in ["1", "2", "3"] {
        assert_eq!(n.write(c, 1, m), "Rwrite");
    }
    assert_eq!(n.read(c, 1), "Rread 1");
    let mut again = Node::with_log(n.log.reopened());
    let c = again.client(Dialect::U);
    let status = again.cat(c, "status");
    assert!(status.contains("channels 2\nretained 3\n"), "{status}");
    assert_eq!(again.open(c, 1, "chan/a/data", 0), "Ropen");
    assert_eq!(
        again.read(c, 1),
        "Rread 1",
        "a new reader starts at the oldest retained"
    );
}

#[test]
fn nine_p2000_directory_reads_and_stat() {
    let mut n = Node::new();
    let c = n.client(Dialect::U);
    assert_eq!(n.open(c, 1, "", 0), "Ropen");
    let r = n.send(
        c,
        4,
        Body::Tread {
            fid: 1,
            offset: 0,
            count: 4096,
        },
    );
    let m = ninep::decode(&r[0].frame, Dialect::U).unwrap();
    let Body::Rread { data } = m.body else {
        panic!()
    };
    let mut names = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let (s, used) = ninep::decode::decode_stat(rest).unwrap();
        names.push(s.name.to_string());
        rest = &rest[used..];
    }
    assert_eq!(
        names,
        [
            "ctl", "status", "events", "chan", "proof", "cap", "raft", "agent", "swarm"
        ]
    );
    // Offsets must continue where the last read ended.
    assert!(
        n.call(
            c,
            4,
            Body::Tread {
                fid: 1,
                offset: 3,
                count: 4096
            }
        )
        .starts_with("Rerror directory read")
    );
    assert_eq!(n.walk(c, 0, 2, "chan"), "Rwalk");
    let r = n.send(c, 5, Body::Tstat { fid: 2 });
    let m = ninep::decode(&r[0].frame, Dialect::U).unwrap();
    let Body::Rstat { stat } = m.body else {
        panic!()
    };
    assert_eq!(
        (stat.name, stat.mode & ninep::stat::DMDIR != 0),
        ("chan", true)
    );
    // Status is read-only, ctl write-only.
    assert_eq!(n.walk(c, 0, 3, "status"), "Rwalk");
    assert_eq!(
        n.call(c, 3, Body::Topen { fid: 3, mode: 1 }),
        "Rerror /status is read-only"
    );
    assert_eq!(n.walk(c, 0, 4, "ctl"), "Rwalk");
    assert_eq!(
        n.call(c, 3, Body::Topen { fid: 4, mode: 0 }),
        "Rerror /ctl is write-only"
    );
}

#[test]
fn node_ctl_notes_and_syncs() {
    let mut n = Node::new();
    let c = n.client(Dialect::U);
    assert_eq!(n.open(c, 1, "events", 0), "Ropen");
    assert_eq!(n.open(c, 2, "ctl", 1), "Ropen");
    assert_eq!(n.write(c, 2, "note deploy started\nsync\n"), "Rwrite");
    let e = n.read(c, 1);
    assert!(e.ends_with(" note deploy started\n"), "{e}");
    assert!(
        n.write(c, 2, "reboot")
            .starts_with("Rerror /ctl: unknown verb \"reboot\"; expected note, sync")
    );
}

#[test]
fn every_reader_sees_every_message_and_a_late_one_starts_at_the_oldest_retained() {
    let mut n = Node::new();
    let c = n.client(Dialect::U);
    n.mkchan(c, "x");
    assert_eq!(n.open(c, 1, "chan/x/data", 1), "Ropen");
    assert_eq!(n.open(c, 2, "chan/x/data", 0), "Ropen");
    assert_eq!(n.open(c, 3, "chan/x/data", 0), "Ropen");
    for m in ["a", "b"] {
        assert_eq!(n.write(c, 1, m), "Rwrite");
    }
    for fid in [2, 3] {
        assert_eq!(n.read(c, fid), "Rread a");
        assert_eq!(n.read(c, fid), "Rread b");
    }
    assert_eq!(n.open(c, 4, "chan/x/data", 0), "Ropen");
    assert_eq!(
        n.read(c, 4),
        "Rread a",
        "a late reader starts at the oldest retained"
    );
    let status = n.cat(c, "chan/x/status");
    assert!(
        status.contains("sent 2\n") && status.contains("delivered 5\n"),
        "{status}"
    );
}

#[test]
fn a_writer_to_a_full_blocking_channel_waits_for_its_group_and_can_be_flushed() {
    let mut n = Node::new();
    let c = n.client(Dialect::U);
    n.mkchan(c, "x");
    assert_eq!(n.open(c, 9, "chan/x/ctl", 1), "Ropen");
    assert_eq!(
        n.write(c, 9, "retain count=1\nfull=block\ngroup g"),
        "Rwrite"
    );
    assert_eq!(n.open(c, 1, "chan/x/data", 1), "Ropen");
    assert_eq!(n.open(c, 2, "chan/x/groups/g", 0), "Ropen");
    assert_eq!(n.write(c, 1, "one"), "Rwrite");
    let two = Body::Twrite {
        fid: 1,
        offset: 0,
        data: b"two",
    };
    assert!(n.send(c, 40, two).is_empty(), "the writer waits");
    assert!(n.cat(c, "chan/x/status").contains("blocked 1\n"));
    let r: Vec<(u16, String)> = n
        .send(
            c,
            41,
            Body::Tread {
                fid: 2,
                offset: 0,
                count: 100,
            },
        )
        .into_iter()
        .map(|r| (r.tag, r.text))
        .collect();
    assert!(r.contains(&(41, "Rread one".to_string())), "{r:?}");
    assert!(
        r.contains(&(40, "Rwrite".to_string())),
        "taking made room: {r:?}"
    );
    assert_eq!(n.read(c, 2), "Rread two");
    // A waiting write that is flushed is never sent.
    assert_eq!(n.write(c, 1, "three"), "Rwrite");
    let four = Body::Twrite {
        fid: 1,
        offset: 0,
        data: b"four",
    };
    assert!(n.send(c, 42, four).is_empty());
    assert_eq!(n.call(c, 43, Body::Tflush { oldtag: 42 }), "Rflush");
    assert_eq!(n.read(c, 2), "Rread three");
    let status = n.cat(c, "chan/x/status");
    assert!(
        status.contains("sent 3\n") && status.contains("blocked 0\n"),
        "{status}"
    );
}

#[test]
fn msgs_shows_each_message_with_its_stamp_and_a_good_signature() {
    let mut n = Node::new();
    let c = n.client(Dialect::U);
    n.mkchan(c, "x");
    assert_eq!(n.open(c, 1, "chan/x/data", 1), "Ropen");
    assert_eq!(n.write(c, 1, "hi"), "Rwrite");
    assert_eq!(n.open(c, 2, "chan/x/msgs", 0), "Ropen");
    let line = n.read(c, 2);
    assert!(line.starts_with("Rread seq=1 time="), "{line}");
    for want in [" chan=x ", " verified=yes ", " len=2 data=6869\n"] {
        assert!(line.contains(want), "{want} in {line}");
    }
}

#[test]
fn writers_waiting_for_room_go_one_at_a_time_and_none_is_refused() {
    let mut n = Node::new();
    let c = n.client(Dialect::U);
    n.mkchan(c, "x");
    assert_eq!(n.open(c, 9, "chan/x/ctl", 1), "Ropen");
    assert_eq!(
        n.write(c, 9, "retain count=1\nfull=block\ngroup g"),
        "Rwrite"
    );
    assert_eq!(n.open(c, 1, "chan/x/data", 1), "Ropen");
    assert_eq!(n.open(c, 2, "chan/x/groups/g", 0), "Ropen");
    assert_eq!(n.write(c, 1, "m0"), "Rwrite");
    for (tag, m) in [(40u16, "m1"), (41, "m2"), (42, "m3")] {
        let w = Body::Twrite {
            fid: 1,
            offset: 0,
            data: m.as_bytes(),
        };
        assert!(n.send(c, tag, w).is_empty(), "{m} waits");
    }
    for (i, want) in ["m0", "m1", "m2", "m3"].iter().enumerate() {
        let r: Vec<(u16, String)> = n
            .send(
                c,
                50,
                Body::Tread {
                    fid: 2,
                    offset: 0,
                    count: 100,
                },
            )
            .into_iter()
            .map(|r| (r.tag, r.text))
            .collect();
        assert!(r.contains(&(50, format!("Rread {want}"))), "{r:?}");
        if i < 3 {
            assert!(
                r.contains(&(40 + i as u16, "Rwrite".to_string())),
                "the next writer in line goes on: {r:?}"
            );
            assert!(r.iter().all(|(_, t)| !t.starts_with("Rerror")), "{r:?}");
        }
    }
}

#[test]
fn lines_of_text_come_several_to_a_read_and_other_messages_alone() {
    let mut n = Node::new();
    let c = n.client(Dialect::U);
    n.mkchan(c, "x");
    assert_eq!(n.open(c, 1, "chan/x/data", 1), "Ropen");
    for m in ["l1\n", "l2\n", "bin", "l3\n"] {
        assert_eq!(n.write(c, 1, m), "Rwrite");
    }
    assert_eq!(n.open(c, 2, "chan/x/data", 0), "Ropen");
    assert_eq!(n.read(c, 2), "Rread l1\nl2\n");
    assert_eq!(
        n.read(c, 2),
        "Rread bin",
        "a message that is not a line keeps its bounds"
    );
    assert_eq!(n.read(c, 2), "Rread l3\n");
    assert!(n.cat(c, "chan/x/status").contains("delivered 4\n"));
}

/// Handle `writes` (connection, tag, fid, payload) in one turn, as a
/// node does with the frames one read of its sockets brought, then poll.
fn write_in_one_turn(n: &mut Node, writes: &[(ConnId, u16, u32, &str)]) -> Vec<Reply> {
    for &(c, tag, fid, data) in writes {
        let mut frame = Vec::new();
        let body = Body::Twrite {
            fid,
            offset: 0,
            data: data.as_bytes(),
        };
        ninep::encode(&Msg { tag, body }, &mut frame).unwrap();
        n.server.handle(c, &frame, &mut n.out);
    }
    n.poll()
}

#[test]
fn messages_of_one_turn_are_one_log_entry_a_batch_and_each_writer_is_answered() {
    let mut n = Node::new();
    let a = n.client(Dialect::L);
    let b = n.client(Dialect::L);
    n.mkchan(a, "x");
    n.mkchan(a, "y");
    assert_eq!(n.open(a, 1, "chan/x/data", 1), "Ropen");
    assert_eq!(n.open(b, 1, "chan/x/data", 1), "Ropen");
    assert_eq!(n.open(b, 2, "chan/y/data", 1), "Ropen");
    let entries = n.log.0.borrow().durable.len();
    let replies = write_in_one_turn(
        &mut n,
        &[
            (a, 10, 1, "a1"),
            (b, 11, 1, "b1"),
            (a, 12, 1, "a2"),
            (b, 13, 2, "y1"),
        ],
    );
    let mut got: Vec<(ConnId, u16, String)> = replies
        .into_iter()
        .map(|r| (r.conn, r.tag, r.text))
        .collect();
    got.sort_by_key(|g| g.1);
    let want = [(a, 10), (b, 11), (a, 12), (b, 13)]
        .map(|(c, t)| (c, t, "Rwrite".to_string()))
        .to_vec();
    assert_eq!(got, want);
    assert_eq!(n.log.0.borrow().durable.len(), entries + 1, "one entry");
    assert_eq!(n.open(a, 5, "chan/x/data", 0), "Ropen");
    for m in ["a1", "b1", "a2"] {
        assert_eq!(n.read(a, 5), format!("Rread {m}"));
    }
    assert_eq!(n.open(a, 6, "chan/y/data", 0), "Ropen");
    assert_eq!(n.read(a, 6), "Rread y1");
    let journal = n.cat(a, "raft/log");
    let last = journal.lines().last().unwrap();
    assert!(
        last.ends_with("write /chan/x/data 3 messages 6 bytes sender=insecure; write /chan/y/data 2 bytes sender=insecure"),
        "{last}"
    );
    // Each message keeps its own place in the signed batch.
    assert_eq!(n.open(a, 3, "chan/x/msgs", 0), "Ropen");
    let msgs = n.read(a, 3);
    assert!(
        msgs.contains("seq=1 ") && msgs.contains(" verified=yes "),
        "{msgs}"
    );
}

#[test]
fn a_message_refused_inside_a_batch_fails_alone() {
    let mut n = Node::new();
    let c = n.client(Dialect::L);
    n.mkchan(c, "x");
    assert_eq!(n.open(c, 9, "chan/x/ctl", 1), "Ropen");
    assert_eq!(
        n.write(c, 9, "retain count=2\nfull=refuse\ngroup g"),
        "Rwrite"
    );
    assert_eq!(n.open(c, 1, "chan/x/data", 1), "Ropen");
    let replies = write_in_one_turn(
        &mut n,
        &[(c, 20, 1, "m1"), (c, 21, 1, "m2"), (c, 22, 1, "m3")],
    );
    let mut got: Vec<(u16, String)> = replies.into_iter().map(|r| (r.tag, r.text)).collect();
    got.sort();
    assert_eq!(got[0], (20, "Rwrite".to_string()), "{got:?}");
    assert_eq!(got[1], (21, "Rwrite".to_string()), "{got:?}");
    assert_eq!(got[2].0, 22, "{got:?}");
    assert!(
        got[2].1.starts_with("Rlerror") || got[2].1.starts_with("Rerror"),
        "{got:?}"
    );
    assert_eq!(n.open(c, 5, "chan/x/data", 0), "Ropen");
    assert_eq!(n.read(c, 5), "Rread m1");
    assert_eq!(n.read(c, 5), "Rread m2");
    let status = n.cat(c, "chan/x/status");
    assert!(
        status.contains("\nretained 2\n"),
        "the refused one changed nothing: {status}"
    );
}
