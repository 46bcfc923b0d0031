//! `/proof/chain` and `/proof/head` served by the server core: the chain
//! covers every committed entry with its bytes, reads in pieces give one
//! consistent text, the head is signed by the node, and a node restored
//! from a snapshot serves the same chain under its own key.

mod common;

use cellfs::cap::NodeKey;
use cellfs::proof::chain::{self, unhex};
use cellfs::proof::head::Head;
use cellfs::{Commit, Config, ConnId, FixedClock, Index, Outbox, Server, Snapshot};
use common::TestLog;
use ninep::{Body, Msg, NOFID, NOTAG, Names};

struct Node {
    server: Server<TestLog, FixedClock>,
    log: TestLog,
    out: Outbox,
    conn: ConnId,
}

impl Node {
    fn new(seed: u8, log: TestLog) -> Node {
        let clock = FixedClock {
            unix: 1_700_000_000_000_000_000,
            mono: 5_000_000_000,
        };
        let config = Config {
            insecure: true,
            ..Config::new("test", NodeKey::from_seed(&[seed; 32]))
        };
        let mut server = Server::new(config, log.clone(), clock);
        let conn = server.connect();
        let mut n = Node {
            server,
            log,
            out: Outbox::new(),
            conn,
        };
        n.poll();
        let v = n.call(Body::Tversion {
            msize: 8192,
            version: "9P2000.u",
        });
        assert_eq!(v, "Rversion");
        let a = n.call(Body::Tattach {
            fid: 0,
            afid: NOFID,
            uname: "u",
            aname: "",
            n_uname: Some(0),
        });
        assert_eq!(a, "Rattach");
        n
    }

    fn poll(&mut self) {
        self.out.clear();
        self.server.poll(&mut self.out);
    }

    /// One request; its reply as text (`Rread DATA`, `Rerror ...`, or the
    /// message type).
    fn call(&mut self, body: Body<'_>) -> String {
        let mut frame = Vec::new();
        ninep::encode(&Msg { tag: NOTAG, body }, &mut frame).unwrap();
        self.out.clear();
        self.server.handle(self.conn, &frame, &mut self.out);
        self.server.poll(&mut self.out);
        let frames: Vec<Vec<u8>> = self.out.frames().map(|(_, f)| f.to_vec()).collect();
        assert_eq!(frames.len(), 1, "one reply expected");
        let msg = ninep::decode(&frames[0], ninep::Dialect::U).unwrap();
        match &msg.body {
            Body::Rread { data } => format!("Rread {}", String::from_utf8_lossy(data)),
            Body::Rerror { ename, .. } => format!("Rerror {ename}"),
            other => format!("{:?}", other.msg_type()),
        }
    }

    fn walk(&mut self, newfid: u32, path: &str) -> String {
        let mut wnames = Names::new();
        for p in path.split('/').filter(|p| !p.is_empty()) {
            wnames.push(p).unwrap();
        }
        self.call(Body::Twalk {
            fid: 0,
            newfid,
            wnames,
        })
    }

    fn mkdir(&mut self, dir: &str, name: &str) {
        assert_eq!(self.walk(80, dir), "Rwalk");
        let r = self.call(Body::Tcreate {
            fid: 80,
            name,
            perm: ninep::stat::DMDIR | 0o755,
            mode: 0,
            extension: Some(""),
        });
        assert_eq!(r, "Rcreate");
        self.call(Body::Tclunk { fid: 80 });
    }

    fn put(&mut self, path: &str, text: &str) -> String {
        assert_eq!(self.walk(81, path), "Rwalk");
        assert_eq!(self.call(Body::Topen { fid: 81, mode: 1 }), "Ropen");
        let r = self.call(Body::Twrite {
            fid: 81,
            offset: 0,
            data: text.as_bytes(),
        });
        self.call(Body::Tclunk { fid: 81 });
        r
    }

    /// Read a whole file `count` bytes at a time.
    fn cat(&mut self, path: &str, count: u32) -> String {
        assert_eq!(self.walk(90, path), "Rwalk", "{path}");
        assert_eq!(self.call(Body::Topen { fid: 90, mode: 0 }), "Ropen");
        let mut text = String::new();
        loop {
            let r = self.call(Body::Tread {
                fid: 90,
                offset: text.len() as u64,
                count,
            });
            let piece = r.strip_prefix("Rread ").unwrap_or_else(|| panic!("{r}"));
            if piece.is_empty() {
                break;
            }
            text.push_str(piece);
        }
        self.call(Body::Tclunk { fid: 90 });
        text
    }
}

#[test]
fn an_empty_chain_serves_a_signed_genesis_head() {
    let mut n = Node::new(1, TestLog::with_term(2));
    assert_eq!(n.cat("/proof/chain", 100), "");
    let head = n.cat("/proof/head", 8192);
    let v = chain::verify("", &head, Some(&NodeKey::from_seed(&[1; 32]).public())).unwrap();
    assert_eq!((v.entries, v.head.index, v.head.hash), (0, 0, [0; 32]));
}

#[test]
fn the_chain_covers_every_entry_and_survives_a_snapshot() {
    let key = NodeKey::from_seed(&[1; 32]);
    let mut n = Node::new(1, TestLog::with_term(2));
    n.mkdir("/chan", "x");
    assert_eq!(n.put("/chan/x/data", "hello"), "Rwrite");
    assert_eq!(n.put("/chan/x/data", "world"), "Rwrite");

    // Read in small pieces while more commits land: the fid keeps the
    // text it rendered at offset 0.
    assert_eq!(n.walk(91, "/proof/chain"), "Rwalk");
    assert_eq!(n.call(Body::Topen { fid: 91, mode: 0 }), "Ropen");
    let first = n.call(Body::Tread {
        fid: 91,
        offset: 0,
        count: 10,
    });
    assert_eq!(n.put("/chan/x/data", "later"), "Rwrite");
    let mut text = first.strip_prefix("Rread ").unwrap().to_string();
    loop {
        let r = n.call(Body::Tread {
            fid: 91,
            offset: text.len() as u64,
            count: 7,
        });
        let piece = r.strip_prefix("Rread ").unwrap().to_string();
        if piece.is_empty() {
            break;
        }
        text.push_str(&piece);
    }
    let entries = n.log.entries();
    assert_eq!(text.lines().count(), entries.len() - 1, "{text}");

    let chain_text = n.cat("/proof/chain", 13);
    assert_eq!(chain_text, n.server.state().chain.render());
    assert!(chain_text.starts_with(&text));
    for (line, data) in chain_text.lines().zip(&entries) {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields[1], "2", "{line}");
        assert_eq!(unhex(fields[3]).as_ref(), Some(data), "{line}");
    }
    let head = n.cat("/proof/head", 8192);
    let v = chain::verify(&chain_text, &head, Some(&key.public())).unwrap();
    assert_eq!(v.entries, entries.len());
    assert_eq!(v.head.index, entries.len() as Index);

    // Read-only.
    assert_eq!(n.walk(92, "/proof/chain"), "Rwalk");
    let r = n.call(Body::Topen { fid: 92, mode: 1 });
    assert!(r.starts_with("Rerror") && r.contains("read-only"), "{r}");
    assert_eq!(n.walk(93, "/proof/head"), "Rwalk");
    let r = n.call(Body::Topen { fid: 93, mode: 1 });
    assert!(r.starts_with("Rerror") && r.contains("read-only"), "{r}");

    // A node restored from a snapshot serves the same chain, with every
    // entry's bytes, and signs the head with its own key.
    let log = TestLog::with_term(2);
    log.push(Commit::Snapshot(Snapshot {
        index: v.head.index,
        term: 2,
        data: n.server.state().encode(),
    }));
    let mut m = Node::new(2, log);
    assert_eq!(m.cat("/proof/chain", 8192), chain_text);
    let other = m.cat("/proof/head", 8192);
    let w = chain::verify(&chain_text, &other, None).unwrap();
    assert_eq!((w.head.index, w.head.hash), (v.head.index, v.head.hash));
    assert_eq!(w.head.key, NodeKey::from_seed(&[2; 32]).public());
    assert_ne!(other, head);
    assert!(chain::verify(&chain_text, &other, Some(&key.public())).is_err());
    assert_eq!(Head::parse(&other).unwrap(), w.head);
}
