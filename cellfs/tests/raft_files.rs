//! The `/raft` tree served by the core: status, log, peers and ctl. See
//! raft(3).

use std::cell::RefCell;
use std::rc::Rc;

use cellfs::cap::{Claims, NodeKey, Rights, Token};
use cellfs::log::PeerStatus;
use cellfs::raft::{Member, Membership};
use cellfs::{
    Change, Command, Commit, Config, ConnId, Entry, FixedClock, Log, LogError, LogStatus, MemLog,
    Outbox, ProposalId, Server,
};
use ninep::{Body, Dialect, Msg, NOFID, Names};

const NOW: u64 = 1_700_000_000;

fn key() -> NodeKey {
    NodeKey::from_seed(&[9; 32])
}

fn token(id: u64, holder: &str, scope: &str, rights: &str) -> Token {
    key()
        .mint(Claims {
            id,
            holder: holder.into(),
            scope: scope.into(),
            rights: Rights::parse(rights).unwrap(),
            not_before: NOW - 10,
            expires: NOW + 3600,
        })
        .unwrap()
}

fn owner() -> Token {
    token(0, "owner", "/", "rwcda")
}

/// What the replicated test log holds: entries to report, the changes it
/// was asked for, and the status it shows.
#[derive(Default)]
struct Inner {
    next: u64,
    ready: Vec<Commit>,
    changes: Vec<Change>,
    status: LogStatus,
}

/// A log that commits at once, accepts every raft change (reporting it
/// done) and shows a cluster view the test sets.
#[derive(Clone, Default)]
struct ClusterLog(Rc<RefCell<Inner>>);

impl ClusterLog {
    /// Commit `cmd` as if proposed on node `origin`.
    fn commit(&self, cmd: &Command, origin: u64) {
        let mut d = self.0.borrow_mut();
        d.next += 1;
        let index = d.next;
        d.ready.push(Commit::Entry {
            entry: Entry {
                index,
                term: 3,
                origin,
                data: cmd.encode(),
            },
            proposal: None,
        });
    }
}

impl Log for ClusterLog {
    fn propose(&mut self, data: Vec<u8>) -> Result<ProposalId, LogError> {
        let mut d = self.0.borrow_mut();
        d.next += 1;
        let index = d.next;
        d.ready.push(Commit::Entry {
            entry: Entry {
                index,
                term: 3,
                origin: 1,
                data,
            },
            proposal: Some(1000 + index),
        });
        Ok(1000 + index)
    }

    fn change(&mut self, change: Change) -> Result<ProposalId, LogError> {
        let mut d = self.0.borrow_mut();
        d.changes.push(change);
        let proposal = 5000 + d.changes.len() as u64;
        d.ready.push(Commit::Done {
            proposal,
            result: Ok(()),
        });
        Ok(proposal)
    }

    fn take_committed(&mut self, out: &mut Vec<Commit>) {
        out.append(&mut self.0.borrow_mut().ready);
    }

    fn status(&self) -> LogStatus {
        let d = self.0.borrow();
        LogStatus {
            commit: d.next,
            last_index: d.next,
            ..d.status.clone()
        }
    }
}

struct Node<L: Log> {
    server: Server<L, FixedClock>,
    out: Outbox,
}

impl<L: Log> Node<L> {
    fn new(log: L) -> Node<L> {
        let clock = FixedClock {
            unix: NOW * 1_000_000_000,
            mono: 5_000_000_000,
        };
        let config = Config::new("test", key());
        let mut server = Server::new(config, log, clock);
        let mut out = Outbox::new();
        server.poll(&mut out);
        Node { server, out }
    }

    fn call(&mut self, conn: ConnId, body: Body<'_>) -> String {
        let mut frame = Vec::new();
        ninep::encode(&Msg { tag: 1, body }, &mut frame).unwrap();
        self.out.clear();
        self.server.handle(conn, &frame, &mut self.out);
        self.server.poll(&mut self.out);
        let frames: Vec<Vec<u8>> = self.out.frames().map(|(_, f)| f.to_vec()).collect();
        assert_eq!(frames.len(), 1, "one reply");
        let msg = ninep::decode(&frames[0], Dialect::U).unwrap();
        match &msg.body {
            Body::Rread { data } => format!("Rread {}", String::from_utf8_lossy(data)),
            Body::Rerror { ename, .. } => format!("Rerror {ename}"),
            other => format!("{:?}", other.msg_type()),
        }
    }

    /// A connection attached (fid 0) with `token`.
    fn client(&mut self, token: &Token) -> ConnId {
        let c = self.server.connect();
        let v = self.call(
            c,
            Body::Tversion {
                msize: 8192,
                version: Dialect::U.version(),
            },
        );
        assert_eq!(v, "Rversion");
        let aname = format!("token={}", token.to_text());
        let a = self.call(
            c,
            Body::Tattach {
                fid: 0,
                afid: NOFID,
                uname: "u",
                aname: &aname,
                n_uname: Some(0),
            },
        );
        assert_eq!(a, "Rattach");
        c
    }

    fn open(&mut self, c: ConnId, fid: u32, path: &str, mode: u8) -> String {
        let mut wnames = Names::new();
        for p in path.split('/').filter(|p| !p.is_empty()) {
            wnames.push(p).unwrap();
        }
        let w = self.call(
            c,
            Body::Twalk {
                fid: 0,
                newfid: fid,
                wnames,
            },
        );
        if w != "Rwalk" {
            return w;
        }
        let o = self.call(c, Body::Topen { fid, mode });
        if o != "Ropen" {
            self.call(c, Body::Tclunk { fid });
        }
        o
    }

    /// The whole text of the file at `path` (reads until end of file).
    fn cat(&mut self, c: ConnId, path: &str) -> String {
        let o = self.open(c, 90, path, 0);
        if o != "Ropen" {
            return o;
        }
        let mut text = String::new();
        loop {
            let r = self.call(
                c,
                Body::Tread {
                    fid: 90,
                    offset: text.len() as u64,
                    count: 4096,
                },
            );
            let Some(got) = r.strip_prefix("Rread ") else {
                text = r;
                break;
            };
            if got.is_empty() {
                break;
            }
            text.push_str(got);
        }
        self.call(c, Body::Tclunk { fid: 90 });
        text
    }

    /// Write `text` to the file at `path`: `Rwrite` or the error.
    fn put(&mut self, c: ConnId, path: &str, text: &str) -> String {
        let o = self.open(c, 91, path, 1);
        if o != "Ropen" {
            return o;
        }
        let w = self.call(
            c,
            Body::Twrite {
                fid: 91,
                offset: 0,
                data: text.as_bytes(),
            },
        );
        self.call(c, Body::Tclunk { fid: 91 });
        w
    }

    fn mkdir(&mut self, c: ConnId, dir: &str, name: &str) -> String {
        let mut wnames = Names::new();
        for p in dir.split('/').filter(|p| !p.is_empty()) {
            wnames.push(p).unwrap();
        }
        let w = self.call(
            c,
            Body::Twalk {
                fid: 0,
                newfid: 80,
                wnames,
            },
        );
        assert_eq!(w, "Rwalk");
        let r = self.call(
            c,
            Body::Tcreate {
                fid: 80,
                name,
                perm: ninep::stat::DMDIR | 0o755,
                mode: 0,
                extension: Some(""),
            },
        );
        self.call(c, Body::Tclunk { fid: 80 });
        r
    }

    /// The names in directory `path`.
    fn ls(&mut self, c: ConnId, path: &str) -> Vec<String> {
        assert_eq!(self.open(c, 92, path, 0), "Ropen", "open {path}");
        let mut frame = Vec::new();
        ninep::encode(
            &Msg {
                tag: 1,
                body: Body::Tread {
                    fid: 92,
                    offset: 0,
                    count: 8000,
                },
            },
            &mut frame,
        )
        .unwrap();
        self.out.clear();
        self.server.handle(c, &frame, &mut self.out);
        let reply = self.out.frames().next().unwrap().1.to_vec();
        let msg = ninep::decode(&reply, Dialect::U).unwrap();
        let Body::Rread { data } = msg.body else {
            panic!("{:?}", msg.body)
        };
        let mut names = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let (s, used) = ninep::decode::decode_stat(rest).unwrap();
            names.push(s.name.to_string());
            rest = &rest[used..];
        }
        self.call(c, Body::Tclunk { fid: 92 });
        names
    }
}

/// `key value` lines as pairs.
fn fields(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').expect("key value line");
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn field(text: &str, key: &str) -> String {
    fields(text)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key} in {text}"))
}

#[test]
fn the_tree_lists_its_files() {
    let mut n = Node::new(MemLog::default());
    let o = n.client(&owner());
    assert!(n.ls(o, "/").contains(&"raft".to_string()));
    assert_eq!(n.ls(o, "raft"), ["ctl", "log", "peers", "status"]);
    assert!(n.ls(o, "raft/peers").is_empty());
    assert!(
        n.cat(o, "raft/ctl").contains("write-only"),
        "ctl is not readable"
    );
    assert!(n.put(o, "raft/status", "x").contains("read-only"));
}

#[test]
fn status_and_log_follow_committed_changes() {
    let mut n = Node::new(MemLog::default());
    let o = n.client(&owner());
    assert_eq!(n.mkdir(o, "chan", "x"), "Rcreate");
    assert_eq!(n.put(o, "chan/x/data", "hello"), "Rwrite");
    assert_eq!(n.put(o, "chan/x/ctl", "close\nopen"), "Rwrite");
    assert_eq!(n.put(o, "ctl", "note deploy done"), "Rwrite");

    let status = n.cat(o, "raft/status");
    let keys: Vec<String> = fields(&status).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        [
            "id",
            "role",
            "term",
            "leader",
            "lease",
            "commit",
            "applied",
            "last_index",
            "snapshot_index",
            "members",
            "log_files",
            "log_bytes",
            "syncs"
        ]
    );
    assert_eq!(field(&status, "role"), "leader");
    assert_eq!(field(&status, "leader"), "1");
    assert_eq!(field(&status, "applied"), "4");
    assert_eq!(field(&status, "commit"), "4");
    assert_eq!(field(&status, "members"), "0");
    // The in-memory log has no leases: its node always holds its agents.
    assert_eq!(field(&status, "lease"), "-");

    let log = n.cat(o, "raft/log");
    assert_eq!(
        log,
        "1 1 0 mkdir /chan/x\n\
         2 1 0 write /chan/x/data 5 bytes sender=owner\n\
         3 1 0 /chan/x/ctl close; open\n\
         4 1 0 /ctl note deploy done\n"
    );
    // A consumer group's receive is a committed change too; the payload
    // never shows.
    assert_eq!(n.put(o, "chan/x/ctl", "group g"), "Rwrite");
    assert_eq!(n.open(o, 93, "chan/x/groups/g", 0), "Ropen");
    let got = n.call(
        o,
        Body::Tread {
            fid: 93,
            offset: 0,
            count: 4096,
        },
    );
    assert_eq!(got, "Rread hello");
    let log = n.cat(o, "raft/log");
    assert!(log.ends_with("6 1 0 read /chan/x/groups/g\n"), "{log}");
    assert!(!log.contains("hello"));
}

#[test]
fn ctl_errors_name_the_word_and_change_nothing() {
    let mut n = Node::new(MemLog::default());
    let o = n.client(&owner());
    assert_eq!(n.mkdir(o, "chan", "x"), "Rcreate");
    let before = (n.cat(o, "raft/log"), n.cat(o, "raft/status"));
    let key = "0f".repeat(32);
    for (text, want) in [
        (
            "adds id=2".to_string(),
            "/raft/ctl: unknown verb \"adds\"; expected add, remove, transfer, snapshot",
        ),
        (
            "remove id=zero".to_string(),
            "/raft/ctl: remove: id=\"zero\" is not a raft id",
        ),
        (
            "transfer id=0".to_string(),
            "/raft/ctl: transfer: id=\"0\" is not a raft id",
        ),
        (
            format!("add id=2 addr=h:1 key={}", &key[..10]),
            "/raft/ctl: add: key=\"0f0f0f0f0f\" is not an ed25519 public key",
        ),
        (
            format!("add id=2 addr=nohost key={key}"),
            "/raft/ctl: add: addr=\"nohost\" is not HOST:PORT",
        ),
        (
            format!("add id=2 addr=h:99999 key={key}"),
            "/raft/ctl: add: addr=\"h:99999\" is not HOST:PORT",
        ),
        (
            format!("add id=2 key={key}"),
            "/raft/ctl: add: addr= is missing; usage: add id=ID addr=HOST:PORT key=PUBKEYHEX",
        ),
        (
            "snapshot\ntransfer id=2".to_string(),
            "/raft/ctl: 2 changes in one write; the log makes one change at a time",
        ),
    ] {
        let r = n.put(o, "raft/ctl", &text);
        assert!(r.starts_with(&format!("Rerror {want}")), "{text:?}: {r}");
    }
    assert_eq!((n.cat(o, "raft/log"), n.cat(o, "raft/status")), before);
}

#[test]
fn ctl_needs_the_admin_right() {
    let mut n = Node::new(MemLog::default());
    let o = n.client(&owner());
    assert_eq!(n.mkdir(o, "chan", "x"), "Rcreate");
    let before = n.cat(o, "raft/log");
    let agent = token(5, "agent", "/", "rwcd");
    let a = n.client(&agent);
    let r = n.put(a, "raft/ctl", "snapshot");
    assert_eq!(
        r,
        "Rerror write /raft/ctl: capability 'agent' (scope /, rights rwcd) lacks the admin right"
    );
    // Reading needs only the read right.
    assert!(n.cat(a, "raft/status").starts_with("id "));
    assert_eq!(n.cat(o, "raft/log"), before);
}

#[test]
fn a_change_on_an_unreplicated_log_is_refused() {
    let mut n = Node::new(MemLog::default());
    let o = n.client(&owner());
    assert_eq!(n.mkdir(o, "chan", "x"), "Rcreate");
    let before = (n.cat(o, "raft/log"), n.cat(o, "raft/status"));
    let r = n.put(
        o,
        "raft/ctl",
        &format!("add id=2 addr=127.0.0.1:5642 key={}", "ab".repeat(32)),
    );
    assert_eq!(
        r,
        "Rerror this node's log is not replicated: raft changes are not available; nothing was changed"
    );
    assert_eq!(
        n.put(o, "raft/ctl", "snapshot").split(';').next(),
        r.split(';').next()
    );
    assert_eq!((n.cat(o, "raft/log"), n.cat(o, "raft/status")), before);
}

#[test]
fn changes_reach_the_log_and_peers_merge_both_views() {
    let log = ClusterLog::default();
    log.0.borrow_mut().status = LogStatus {
        id: 1,
        role: "leader",
        term: 3,
        leader: Some(1),
        snapshot_index: 0,
        lease_ms: Some(1234),
        peers: vec![
            PeerStatus {
                id: 1,
                addr: "10.0.0.1:5642".into(),
                key: [1; 32],
                role: "voter",
                match_index: 0,
                last_contact_ms: Some(0),
                state: "up",
                lease_over: false,
            },
            PeerStatus {
                id: 2,
                addr: "10.0.0.2:5642".into(),
                key: [2; 32],
                role: "voter",
                match_index: 7,
                last_contact_ms: Some(40),
                state: "up",
                lease_over: false,
            },
        ],
        ..LogStatus::default()
    };
    let members = |ids: &[u64]| Membership {
        voters: ids.to_vec(),
        members: ids
            .iter()
            .map(|&id| Member {
                id,
                addr: format!("10.0.0.{id}:5642"),
                key: [id as u8; 32],
            })
            .collect(),
        ..Membership::default()
    };
    log.commit(&Command::Members(members(&[1, 2, 3])), 1);
    let mut n = Node::new(log.clone());
    let o = n.client(&owner());

    assert_eq!(n.ls(o, "raft/peers"), ["1", "2", "3"]);
    let p2 = n.cat(o, "raft/peers/2");
    assert_eq!(
        p2,
        format!(
            "id 2\naddr 10.0.0.2:5642\nkey {}\nrole voter\nmatch 7\nlast_contact_ms 40\nstate up\n",
            "02".repeat(32)
        )
    );
    // Known only from the committed configuration.
    let p3 = n.cat(o, "raft/peers/3");
    assert_eq!(field(&p3, "addr"), "10.0.0.3:5642");
    assert_eq!(field(&p3, "role"), "voter");
    assert_eq!(field(&p3, "last_contact_ms"), "never");
    assert_eq!(field(&p3, "state"), "unknown");
    assert!(n.cat(o, "raft/peers/4").starts_with("Rerror"));
    assert!(n.cat(o, "raft/peers/02").starts_with("Rerror"));

    let status = n.cat(o, "raft/status");
    assert_eq!(field(&status, "members"), "3");
    assert_eq!(field(&status, "term"), "3");
    assert_eq!(field(&status, "lease"), "1234");
    assert_eq!(n.cat(o, "raft/log"), "1 3 1 members voters=1,2,3\n");

    // A change goes to Log::change, not into the log as a command.
    let key = "ab".repeat(32);
    let add = format!("add id=4 addr=node4.example:5642 key={key}");
    assert_eq!(n.put(o, "raft/ctl", &add), "Rwrite");
    assert_eq!(n.put(o, "raft/ctl", "transfer id=2"), "Rwrite");
    assert_eq!(
        log.0.borrow().changes,
        [
            Change::Add {
                id: 4,
                addr: "node4.example:5642".into(),
                key: [0xab; 32]
            },
            Change::Transfer { id: 2 }
        ]
    );
    assert_eq!(n.cat(o, "raft/log"), "1 3 1 members voters=1,2,3\n");

    // The configuration with 4 commits: 4 appears; 3 leaves once a
    // configuration without it commits (and no live view names it).
    log.commit(&Command::Members(members(&[1, 2, 4])), 2);
    n.server.poll(&mut n.out);
    assert_eq!(n.ls(o, "raft/peers"), ["1", "2", "4"]);
    assert!(
        n.cat(o, "raft/log")
            .ends_with("2 3 2 members voters=1,2,4\n")
    );
}
