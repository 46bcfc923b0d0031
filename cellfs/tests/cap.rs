//! Capabilities enforced by the server core: attach, scope, rights,
//! revocation, the /cap tree and replay. See cap(3).

mod common;

use std::cell::Cell;
use std::rc::Rc;

use cellfs::cap::token::{CapError, HolderRefusal};
use cellfs::cap::{Claims, NodeKey, Rights, Token};
use cellfs::{Config, ConnId, Outbox, Server};
use common::{TestClock, TestLog, forge};
use ninep::{Body, Dialect, Msg, NOFID, Names, Qid};

const NOW: u64 = 1_700_000_000;

fn key() -> NodeKey {
    NodeKey::from_seed(&[7; 32])
}

struct Node {
    server: Server<TestLog, TestClock>,
    log: TestLog,
    time: Rc<Cell<u64>>,
    out: Outbox,
    dialect: Dialect,
}

impl Node {
    fn new(insecure: bool) -> Node {
        Node::with_log(TestLog::default(), insecure)
    }

    fn with_log(log: TestLog, insecure: bool) -> Node {
        let time = Rc::new(Cell::new(NOW));
        let config = Config {
            insecure,
            ..Config::new("test", key())
        };
        let mut server = Server::new(config, log.clone(), TestClock(time.clone()));
        let mut out = Outbox::new();
        server.poll(&mut out);
        Node {
            server,
            log,
            time,
            out,
            dialect: Dialect::U,
        }
    }

    fn frames(&mut self, conn: ConnId, tag: u16, body: Body<'_>) -> Vec<Vec<u8>> {
        let mut frame = Vec::new();
        ninep::encode(&Msg { tag, body }, &mut frame).unwrap();
        self.out.clear();
        self.server.handle(conn, &frame, &mut self.out);
        self.server.poll(&mut self.out);
        self.out.frames().map(|(_, f)| f.to_vec()).collect()
    }

    fn call(&mut self, conn: ConnId, body: Body<'_>) -> String {
        let frames = self.frames(conn, 1, body);
        assert_eq!(frames.len(), 1);
        self.show(&frames[0])
    }

    /// A reply as text: `Rread DATA`, `Rerror MESSAGE`, or its type.
    fn show(&self, frame: &[u8]) -> String {
        let msg = ninep::decode(frame, self.dialect).unwrap();
        match &msg.body {
            Body::Rread { data } => format!("Rread {}", String::from_utf8_lossy(data)),
            Body::Rerror { ename, .. } => format!("Rerror {ename}"),
            Body::Rlerror { ecode } => format!("Rlerror {ecode}"),
            other => format!("{:?}", other.msg_type()),
        }
    }

    /// Send a request under `tag` and give every reply it caused, on any
    /// connection: (connection, tag, reply).
    fn send(&mut self, conn: ConnId, tag: u16, body: Body<'_>) -> Vec<(ConnId, u16, String)> {
        let mut frame = Vec::new();
        ninep::encode(&Msg { tag, body }, &mut frame).unwrap();
        self.out.clear();
        self.server.handle(conn, &frame, &mut self.out);
        self.server.poll(&mut self.out);
        let frames: Vec<(ConnId, Vec<u8>)> =
            self.out.frames().map(|(c, f)| (c, f.to_vec())).collect();
        frames
            .iter()
            .map(|(c, f)| {
                let tag = ninep::decode(f, self.dialect).unwrap().tag;
                (*c, tag, self.show(f))
            })
            .collect()
    }

    /// Whether an attach with `aname` is refused, and why.
    fn attach_with(&mut self, aname: &str) -> (ConnId, String) {
        let c = self.version();
        let r = self.attach_aname(c, 0, aname);
        (c, r)
    }

    /// The qid of a one-reply request (Rattach, Rwalk's last, Rauth).
    fn qid(&mut self, conn: ConnId, body: Body<'_>) -> Qid {
        let frames = self.frames(conn, 1, body);
        match ninep::decode(&frames[0], self.dialect).unwrap().body {
            Body::Rattach { qid } => qid,
            Body::Rauth { aqid } => aqid,
            Body::Rwalk { wqids } => *wqids.last().unwrap(),
            other => panic!("{other:?}"),
        }
    }

    fn version(&mut self) -> ConnId {
        let c = self.server.connect();
        let v = self.call(
            c,
            Body::Tversion {
                msize: 8192,
                version: self.dialect.version(),
            },
        );
        assert_eq!(v, "Rversion");
        c
    }

    fn attach_aname(&mut self, c: ConnId, fid: u32, aname: &str) -> String {
        self.call(
            c,
            Body::Tattach {
                fid,
                afid: NOFID,
                uname: "u",
                aname,
                n_uname: (self.dialect != Dialect::P2000).then_some(0),
            },
        )
    }

    /// A connection attached (fid 0) with `token` in the aname.
    fn client(&mut self, token: &Token) -> ConnId {
        let c = self.version();
        let a = self.attach_aname(c, 0, &format!("token={}", token.to_text()));
        assert_eq!(a, "Rattach");
        c
    }

    fn walk(&mut self, c: ConnId, fid: u32, newfid: u32, names: &[&str]) -> String {
        let mut wnames = Names::new();
        for n in names {
            wnames.push(n).unwrap();
        }
        self.call(
            c,
            Body::Twalk {
                fid,
                newfid,
                wnames,
            },
        )
    }

    fn open(&mut self, c: ConnId, fid: u32, path: &str, mode: u8) -> String {
        let names: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let w = self.walk(c, 0, fid, &names);
        if w != "Rwalk" {
            return w;
        }
        self.call(c, Body::Topen { fid, mode })
    }

    fn write(&mut self, c: ConnId, fid: u32, data: &str) -> String {
        self.call(
            c,
            Body::Twrite {
                fid,
                offset: 0,
                data: data.as_bytes(),
            },
        )
    }

    fn read(&mut self, c: ConnId, fid: u32) -> String {
        self.call(
            c,
            Body::Tread {
                fid,
                offset: 0,
                count: 4096,
            },
        )
    }

    fn clunk(&mut self, c: ConnId, fid: u32) {
        assert_eq!(self.call(c, Body::Tclunk { fid }), "Rclunk");
    }

    fn cat(&mut self, c: ConnId, path: &str) -> String {
        let o = self.open(c, 90, path, 0);
        if o != "Ropen" {
            self.call(c, Body::Tclunk { fid: 90 });
            return o;
        }
        let text = self.read(c, 90);
        self.clunk(c, 90);
        text
    }

    /// Write `text` to the file at `path`.
    fn put(&mut self, c: ConnId, path: &str, text: &str) -> String {
        let o = self.open(c, 91, path, 1);
        if o != "Ropen" {
            self.call(c, Body::Tclunk { fid: 91 });
            return o;
        }
        let w = self.write(c, 91, text);
        self.clunk(c, 91);
        w
    }

    fn mkdir(&mut self, c: ConnId, dir: &str, name: &str) -> String {
        let names: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
        assert_eq!(self.walk(c, 0, 80, &names), "Rwalk");
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
}

fn claims(id: u64, holder: &str, scope: &str, rights: &str) -> Claims {
    Claims {
        id,
        holder: holder.into(),
        scope: scope.into(),
        rights: Rights::parse(rights).unwrap(),
        not_before: NOW - 10,
        expires: NOW + 3600,
    }
}

fn owner() -> Token {
    key().mint(claims(0, "owner", "/", "rwcda")).unwrap()
}

/// A node with /chan/alerts and /chan/other, and an owner connection.
fn setup() -> (Node, ConnId) {
    let mut n = Node::new(false);
    let o = n.client(&owner());
    assert_eq!(n.mkdir(o, "chan", "alerts"), "Rcreate");
    assert_eq!(n.mkdir(o, "chan", "other"), "Rcreate");
    (n, o)
}

#[test]
fn attach_through_an_auth_fid() {
    let (mut n, _) = setup();
    let c = n.version();
    // Without the word that asks for capabilities, no auth fid is opened
    // (clients that cannot follow an Rauth give up on one).
    let plain = n.call(
        c,
        Body::Tauth {
            afid: 5,
            uname: "u",
            aname: "",
            n_uname: Some(0),
        },
    );
    assert!(
        plain.starts_with("Rerror authentication not required"),
        "{plain}"
    );
    let aqid = n.qid(
        c,
        Body::Tauth {
            afid: 5,
            uname: "u",
            aname: cellfs::server::AUTH_WORD,
            n_uname: Some(0),
        },
    );
    assert_eq!(aqid.ty.0, 0x08, "QTAUTH");
    // An attach before a token is written is refused.
    let early = n.call(
        c,
        Body::Tattach {
            fid: 0,
            afid: 5,
            uname: "u",
            aname: "",
            n_uname: Some(0),
        },
    );
    assert!(early.contains("holds no valid capability"), "{early}");
    // A bad token is refused at the write.
    let bad = n.write(c, 5, "c0.nonsense\n");
    assert!(bad.starts_with("Rerror not a capability token"), "{bad}");
    let text = format!("{}\n", owner().to_text());
    assert_eq!(n.write(c, 5, &text), "Rwrite");
    assert_eq!(n.read(c, 5), "Rread ");
    let a = n.call(
        c,
        Body::Tattach {
            fid: 0,
            afid: 5,
            uname: "u",
            aname: "",
            n_uname: Some(0),
        },
    );
    assert_eq!(a, "Rattach");
    let status = n.cat(c, "status");
    let hex: String = key().public().iter().map(|b| format!("{b:02x}")).collect();
    assert!(status.contains(&format!("\nkey {hex}\n")), "{status}");
    assert_eq!(n.cat(c, "cap/key"), format!("Rread {hex}\n"));
}

#[test]
fn attach_through_the_aname_and_without_a_token() {
    let (mut n, _) = setup();
    let c = n.version();
    let none = n.attach_aname(c, 0, "");
    assert_eq!(
        none,
        "Rerror attach needs a capability: write a token to an auth fid or pass token=… in aname; see cap(3)"
    );
    let other = n.attach_aname(c, 0, "/etc");
    assert!(other.starts_with("Rerror"), "{other}");
    // A client that always tries Tauth first, with its token in the aname,
    // is told no auth fid is needed, and attaches with the aname.
    let aname = format!("/ token={}", owner().to_text());
    let t = n.call(
        c,
        Body::Tauth {
            afid: 5,
            uname: "u",
            aname: &aname,
            n_uname: Some(0),
        },
    );
    assert!(t.starts_with("Rerror authentication not required"), "{t}");
    let a = n.attach_aname(c, 0, &aname);
    assert_eq!(a, "Rattach");
    // 9P2000.L gets EACCES.
    n.dialect = Dialect::L;
    let l = n.version();
    assert_eq!(n.attach_aname(l, 0, ""), "Rlerror 13");
}

#[test]
fn the_insecure_switch_lets_attaches_in() {
    let mut n = Node::new(true);
    let c = n.version();
    assert_eq!(n.attach_aname(c, 0, ""), "Rattach");
    assert_eq!(n.mkdir(c, "chan", "x"), "Rcreate");
    // A token still works, and still limits.
    let r = key().mint(claims(0, "ro", "/", "r")).unwrap();
    let c2 = n.client(&r);
    assert!(n.mkdir(c2, "chan", "y").contains("lacks the create right"));
}

#[test]
fn bad_tokens_are_refused_and_change_nothing() {
    let (mut n, o) = setup();
    let before = n.server.state().applied;
    let refuse = |n: &mut Node, token: &str, want: &str| {
        let c = n.version();
        let a = n.attach_aname(c, 0, &format!("token={token}"));
        assert!(
            a.starts_with("Rerror") && a.contains(want),
            "want {want:?}, got {a}"
        );
    };
    // One flipped bit, in the middle of the signed bytes.
    let mut bytes = owner().to_bytes();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    let flipped = match Token::from_bytes(&bytes) {
        Ok(t) => t.to_text(),
        Err(_) => "c0.AAAA".into(),
    };
    refuse(&mut n, &flipped, "capabilit");
    let stranger = NodeKey::from_seed(&[9; 32]);
    let foreign = stranger.mint(claims(0, "owner", "/", "rwcda")).unwrap();
    refuse(&mut n, &foreign.to_text(), "unknown key");
    let mut old = claims(0, "old", "/", "r");
    old.not_before = NOW - 100;
    old.expires = NOW - 1;
    refuse(&mut n, &key().mint(old).unwrap().to_text(), "expired");
    let mut early = claims(0, "early", "/", "r");
    early.not_before = NOW + 100;
    refuse(
        &mut n,
        &key().mint(early).unwrap().to_text(),
        "not valid before",
    );
    // Revoked, and a child of a revoked parent.
    let parent = key().mint(claims(42, "p", "/chan", "rw")).unwrap();
    let child = parent
        .attenuate(
            "p/kid",
            "/chan/alerts",
            Rights::parse("r").unwrap(),
            NOW - 5,
            NOW + 60,
        )
        .unwrap();
    n.client(&child);
    assert_eq!(n.put(o, "cap/ctl", "revoke 42\n"), "Rwrite");
    let after_revoke = n.server.state().applied;
    refuse(&mut n, &parent.to_text(), "capability 42 was revoked");
    refuse(&mut n, &child.to_text(), "capability 42 was revoked");
    // An attenuation that widens (its link edited after signing).
    let mut wide = child.clone();
    wide.links[1].claims.scope = "/".into();
    refuse(&mut n, &wide.to_text(), "widens its parent's scope");
    let mut more = child.clone();
    more.links[1].claims.rights = Rights::parse("rwa").unwrap();
    refuse(&mut n, &more.to_text(), "widens its parent's rights");
    let mut later = child;
    later.links[1].claims.expires = NOW + 7200;
    refuse(&mut n, &later.to_text(), "widens its parent's expiry");
    // Nothing was committed by any refusal.
    assert_eq!(before + 1, after_revoke);
    assert_eq!(n.server.state().applied, after_revoke);
}

#[test]
fn the_scope_is_the_root_and_dotdot_cannot_leave_it() {
    let (mut n, _) = setup();
    let t = key().mint(claims(0, "agent", "/chan/alerts", "r")).unwrap();
    let c = n.version();
    let root = n.qid(
        c,
        Body::Tattach {
            fid: 0,
            afid: NOFID,
            uname: "u",
            aname: &format!("token={}", t.to_text()),
            n_uname: Some(0),
        },
    );
    let mut up = Names::new();
    for _ in 0..5 {
        up.push("..").unwrap();
    }
    let q = n.qid(
        c,
        Body::Twalk {
            fid: 0,
            newfid: 1,
            wnames: up,
        },
    );
    assert_eq!(q, root, "'..' at the scope's root is the root");
    // From inside, '..' comes back to the root and no further.
    assert_eq!(n.walk(c, 0, 2, &["..", "..", "ctl"]), "Rwalk");
    assert_eq!(
        n.cat(c, "status").lines().next().unwrap(),
        "Rread name alerts"
    );
    // Names outside the scope do not exist.
    assert!(n.walk(c, 0, 3, &["other"]).contains("does not exist"));
    assert!(n.walk(c, 0, 3, &["events"]).contains("does not exist"));
    assert!(n.walk(c, 0, 3, &["cap"]).contains("does not exist"));
    // Bad names are refused with a reason.
    let long = "x".repeat(300);
    for (name, why) in [
        ("a/b", "'/' or NUL"),
        ("..\0x", "'/' or NUL"),
        (long.as_str(), "at most 255 bytes"),
    ] {
        let r = n.walk(c, 0, 3, &[name]);
        assert!(r.starts_with("Rerror bad name") && r.contains(why), "{r}");
    }
    // An empty name is the directory itself (as diod takes it): a walk of
    // "" then ".." from the scope's root stays there.
    assert_eq!(n.walk(c, 0, 3, &["", ".."]), "Rwalk");
    assert_eq!(n.walk(c, 3, 4, &["status"]), "Rwalk");
    // A scope that does not exist cannot be attached to.
    let gone = key().mint(claims(0, "g", "/chan/nope", "r")).unwrap();
    let c2 = n.version();
    let a = n.attach_aname(c2, 0, &format!("token={}", gone.to_text()));
    assert_eq!(
        a,
        "Rerror capability scope /chan/nope does not exist on this node"
    );
}

#[test]
fn every_right_is_enforced() {
    let (mut n, o) = setup();
    assert_eq!(n.put(o, "chan/alerts/data", "hello\n"), "Rwrite");
    let ro = key().mint(claims(0, "agent", "/chan/alerts", "r")).unwrap();
    let c = n.client(&ro);
    assert!(n.cat(c, "status").starts_with("Rread name alerts"));
    let w = n.open(c, 10, "data", 1);
    assert_eq!(
        w,
        "Rerror write /chan/alerts/data: capability 'agent' (scope /chan/alerts, rights r) lacks the write right"
    );
    n.call(c, Body::Tclunk { fid: 10 });
    assert!(n.put(c, "ctl", "close\n").contains("lacks the write right"));
    let cr = n.call(
        c,
        Body::Tcreate {
            fid: 0,
            name: "x",
            perm: 0o644,
            mode: 0,
            extension: Some(""),
        },
    );
    assert!(
        cr.contains("create /chan/alerts/x") && cr.contains("lacks the create right"),
        "{cr}"
    );
    assert_eq!(n.walk(c, 0, 11, &["status"]), "Rwalk");
    let rm = n.call(c, Body::Tremove { fid: 11 });
    assert!(
        rm.contains("remove /chan/alerts/status") && rm.contains("lacks the remove right"),
        "{rm}"
    );
    assert_eq!(n.walk(c, 0, 12, &["data"]), "Rwalk");
    let orclose = n.call(
        c,
        Body::Topen {
            fid: 12,
            mode: 0x40,
        },
    );
    assert!(orclose.contains("lacks the remove right"), "{orclose}");
    // Write-only: no reading, no listing.
    let wo = key().mint(claims(0, "pen", "/chan/alerts", "w")).unwrap();
    let c = n.client(&wo);
    assert!(n.cat(c, "status").contains("lacks the read right"));
    let ls = n.call(c, Body::Topen { fid: 0, mode: 0 });
    assert!(
        ls.contains("read /chan/alerts:") && ls.contains("lacks the read right"),
        "{ls}"
    );
    assert_eq!(n.put(c, "data", "from pen\n"), "Rwrite");
    // Create and remove with c and d.
    let cd = key().mint(claims(0, "maker", "/chan", "rcd")).unwrap();
    let c = n.client(&cd);
    assert_eq!(n.mkdir(c, "", "made"), "Rcreate");
    assert_eq!(n.walk(c, 0, 13, &["made"]), "Rwalk");
    assert_eq!(n.call(c, Body::Tremove { fid: 13 }), "Rremove");
    // The scope's root itself cannot be removed.
    assert_eq!(n.walk(c, 0, 14, &[]), "Rwalk");
    assert!(
        n.call(c, Body::Tremove { fid: 14 })
            .starts_with("Rerror remove /chan")
    );
    // 9P2000.L: EACCES.
    n.dialect = Dialect::L;
    let l = n.version();
    let a = n.attach_aname(l, 0, &format!("token={}", ro.to_text()));
    assert_eq!(a, "Rattach");
    assert_eq!(n.walk(l, 0, 1, &["data"]), "Rwalk");
    assert_eq!(n.call(l, Body::Tlopen { fid: 1, flags: 1 }), "Rlerror 13");
}

#[test]
fn a_fid_fails_once_its_capability_is_revoked_or_expires() {
    let (mut n, o) = setup();
    assert_eq!(
        n.put(
            o,
            "cap/ctl",
            "mint scope=/chan/alerts rights=r ttl=5m holder=agent\n"
        ),
        "Rwrite"
    );
    let token = n.cat(o, "cap/1/token");
    let token = Token::from_text(token.strip_prefix("Rread ").unwrap()).unwrap();
    let a = n.client(&token);
    assert_eq!(n.walk(a, 0, 1, &["status"]), "Rwalk");
    assert_eq!(n.call(a, Body::Topen { fid: 1, mode: 0 }), "Ropen");
    assert_eq!(n.put(o, "cap/1/ctl", "revoke\n"), "Rwrite");
    assert_eq!(
        n.read(a, 1),
        "Rread capability 1 was revoked".replace("Rread", "Rerror")
    );
    assert_eq!(
        n.call(a, Body::Tstat { fid: 0 }),
        "Rerror capability 1 was revoked"
    );
    assert_eq!(n.cat(o, "cap/revoked"), "Rread 1\n");
    assert!(n.cat(o, "cap/1/status").contains("\nstate revoked\n"));
    // Expiry: a 60s capability stops working after 60s.
    let short = key()
        .mint(Claims {
            expires: NOW + 60,
            ..claims(0, "short", "/", "r")
        })
        .unwrap();
    let s = n.client(&short);
    assert!(n.cat(s, "status").starts_with("Rread node test"));
    n.time.set(NOW + 61);
    let e = n.call(s, Body::Tstat { fid: 0 });
    assert_eq!(
        e,
        format!("Rerror capability expired at {} (Unix seconds)", NOW + 60)
    );
}

#[test]
fn mint_and_revoke_through_cap_ctl_survive_replay() {
    let (mut n, o) = setup();
    let mint = "mint scope=/chan/alerts rights=rw ttl=2h holder=agent\n";
    assert_eq!(n.put(o, "cap/ctl", mint), "Rwrite");
    assert_eq!(
        n.put(
            o,
            "cap/ctl",
            "mint scope=/chan rights=r ttl=7d holder=reader\n"
        ),
        "Rwrite"
    );
    let status = n.cat(o, "cap/1/status");
    // A minted capability never outlives its minter's (the owner's here
    // ends in an hour, before the 2h asked for).
    assert_eq!(
        status,
        format!(
            "Rread id 1\nholder agent\nscope /chan/alerts\nrights rw\nnot_before {NOW}\nexpires {}\nstate valid\n",
            NOW + 3600
        )
    );
    let ls = n.walk(o, 0, 5, &["cap", "2", "token"]);
    assert_eq!(ls, "Rwalk");
    n.clunk(o, 5);
    // Errors: each clear, nothing changes.
    let applied = n.server.state().applied;
    for (line, want) in [
        (
            "frob\n",
            "/cap/ctl: unknown verb \"frob\"; expected mint, revoke",
        ),
        (
            "mint scope=chan rights=r ttl=5m holder=x\n",
            "absolute path",
        ),
        (
            "mint scope=/a/../b rights=r ttl=5m holder=x\n",
            "not a name a scope may hold",
        ),
        (
            "mint scope=/chan rights=rq ttl=5m holder=x\n",
            "'q' is not a right",
        ),
        (
            "mint scope=/chan rights=r ttl=0s holder=x\n",
            "more than 0s",
        ),
        (
            "mint scope=/chan rights=r ttl=-5m holder=x\n",
            "not a duration",
        ),
        (
            "mint scope=/chan rights=r ttl=4000d holder=x\n",
            "longer than ten years",
        ),
        ("mint scope=/chan rights=r ttl=5m\n", "holder= is missing"),
        ("revoke x\n", "not a capability id"),
        ("revoke 0\n", "the owner capability cannot be revoked"),
    ] {
        let r = n.put(o, "cap/ctl", line);
        assert!(r.starts_with("Rerror") && r.contains(want), "{line}: {r}");
    }
    assert_eq!(n.server.state().applied, applied);
    // A holder without admin can neither mint nor read tokens.
    let t = Token::from_text(n.cat(o, "cap/1/token").strip_prefix("Rread ").unwrap()).unwrap();
    let agent = key().mint(claims(0, "agent", "/", "rw")).unwrap();
    let a = n.client(&agent);
    let r = n.put(a, "cap/ctl", "mint scope=/chan rights=r ttl=5m holder=x\n");
    assert!(r.contains("lacks the admin right"), "{r}");
    assert!(n.cat(a, "cap/1/token").contains("lacks the admin right"));
    assert!(
        n.put(a, "cap/1/ctl", "revoke\n")
            .contains("lacks the admin right")
    );
    // An admin mints only rights it holds (and writing ctl needs w).
    let admin = key().mint(claims(0, "chanadmin", "/", "rwa")).unwrap();
    let ad = n.client(&admin);
    let r = n.put(
        ad,
        "cap/ctl",
        "mint scope=/chan rights=rwc ttl=5m holder=x\n",
    );
    assert!(r.contains("not within"), "{r}");
    assert_eq!(
        n.put(ad, "cap/ctl", "mint scope=/chan rights=r ttl=5m holder=x\n"),
        "Rwrite"
    );
    // Revoke by id on /cap/ctl, and by /cap/N/ctl.
    assert_eq!(n.put(o, "cap/ctl", "revoke 2\n"), "Rwrite");
    assert_eq!(n.put(o, "cap/1/ctl", "revoke\n"), "Rwrite");
    assert!(
        n.put(o, "cap/1/ctl", "revoke now\n")
            .contains("unexpected argument")
    );
    assert_eq!(n.cat(o, "cap/revoked"), "Rread 1\n2\n");
    // Replay: the same revocations and the same minted tokens.
    let mut m = Node::with_log(n.log.reopened(), false);
    let o2 = m.client(&owner());
    assert_eq!(m.cat(o2, "cap/revoked"), "Rread 1\n2\n");
    let again = m.cat(o2, "cap/1/token");
    assert_eq!(again, format!("Rread {}\n", t.to_text()));
    assert!(m.cat(o2, "cap/1/status").contains("\nstate revoked\n"));
    assert!(m.cat(o2, "cap/3/status").contains("\nstate valid\n"));
    let c = m.version();
    let r = m.attach_aname(c, 0, &format!("token={}", t.to_text()));
    assert_eq!(r, "Rerror capability 1 was revoked");
}

#[test]
fn a_chain_is_verified_once_per_attach() {
    let (mut n, _) = setup();
    let before = n.server.verifications();
    let t = key().mint(claims(0, "agent", "/chan/alerts", "r")).unwrap();
    let c = n.client(&t);
    for i in 0..20 {
        assert_eq!(n.walk(c, 0, 100 + i, &["status"]), "Rwalk");
        assert_eq!(n.call(c, Body::Tstat { fid: 100 + i }), "Rstat");
    }
    assert!(n.cat(c, "status").starts_with("Rread name alerts"));
    assert_eq!(n.server.verifications(), before + 1);
}

#[test]
fn ttl_parses_units() {
    use cellfs::cap::device::parse_ttl;
    assert_eq!(parse_ttl("300s"), Ok(300));
    assert_eq!(parse_ttl("5m"), Ok(300));
    assert_eq!(parse_ttl("2h"), Ok(7200));
    assert_eq!(parse_ttl("7d"), Ok(7 * 86400));
    assert_eq!(parse_ttl("90"), Ok(90));
    assert!(parse_ttl("5w").is_err());
    assert!(parse_ttl("0m").is_err());
    assert!(parse_ttl("").is_err());
    assert!(parse_ttl("99999999999999999999d").is_err());
}

/// The token minted as `/cap/N`, read with the owner's connection.
fn minted(n: &mut Node, o: ConnId, number: u64) -> Token {
    let text = n.cat(o, &format!("cap/{number}/token"));
    Token::from_text(text.strip_prefix("Rread ").unwrap()).unwrap()
}

/// The issue's first attack: agent foo may only read /chan/in; its
/// capability, renamed by attenuation, must not write elsewhere.
#[test]
fn a_token_derived_from_an_agents_stays_the_agents() {
    let (mut n, o) = setup();
    assert_eq!(n.mkdir(o, "chan", "in"), "Rcreate");
    assert_eq!(n.mkdir(o, "agent", "foo"), "Rcreate");
    assert_eq!(n.mkdir(o, "agent", "peer"), "Rcreate");
    assert_eq!(n.put(o, "agent/foo/ctl", "intent r /chan/in"), "Rwrite");
    assert_eq!(n.put(o, "agent/peer/ctl", "intent rw /chan"), "Rwrite");
    let mint = "mint scope=/ rights=rw ttl=1h holder=agent/foo\n";
    assert_eq!(n.put(o, "cap/ctl", mint), "Rwrite");
    let foo = minted(&mut n, o, 1);
    let rw = Rights::parse("rw").unwrap();
    // Attenuation refuses every other holder, early.
    for other in ["x", "owner", "agent/peer", "agent/foo/x"] {
        assert!(
            foo.attenuate(other, "/", rw, NOW, NOW + 60).is_err(),
            "{other}"
        );
    }
    match foo.attenuate("x", "/", rw, NOW, NOW + 60) {
        Err(CapError::Holder {
            link: 1,
            why: HolderRefusal::StaysAgent { agent, asked },
        }) => assert_eq!((agent.as_str(), asked.as_str()), ("foo", "x")),
        other => panic!("{other:?}"),
    }
    // A link made by hand (signed with the token's proof, its id the
    // derived one) is refused by the node, with the reason.
    let before = n.server.state().applied;
    for (holder, why) in [
        ("x", "stays agent foo's"),
        ("owner", "stays agent foo's"),
        ("agent/peer", "stays agent foo's"),
    ] {
        let t = forge(
            &foo,
            Claims {
                holder: holder.into(),
                not_before: NOW,
                ..claims(0, "", "/", "rw")
            },
            true,
        );
        let (_, r) = n.attach_with(&format!("token={}", t.to_text()));
        assert!(
            r.starts_with("Rerror capability link 1: holder") && r.contains(why),
            "{holder}: {r}"
        );
    }
    // So the write the issue made succeed is drift, whatever the chain.
    let kept = foo
        .attenuate("agent/foo", "/chan", rw, NOW, NOW + 60)
        .unwrap();
    let k = n.client(&kept);
    let w = n.put(k, "other/data", "forged");
    assert!(
        w.starts_with("Rerror agent foo: walk /chan/other is outside its intent (r /chan/in)"),
        "{w}"
    );
    let status = n.cat(o, "chan/other/status");
    assert!(
        status.contains("\nretained 0\n"),
        "nothing was sent: {status}"
    );
    // The drift halted foo, not peer.
    assert!(n.cat(o, "agent/foo/status").contains("state halted-drift"));
    assert!(!n.cat(o, "agent/peer/status").contains("halted"));
    assert!(n.server.state().applied > before);
}

/// The issue's attack 10: link ids are chosen by nobody.
#[test]
fn link_ids_cannot_be_chosen_and_revocation_names_one_link() {
    let (mut n, o) = setup();
    let mint = "mint scope=/chan/alerts rights=rw ttl=1h holder=alice\n";
    assert_eq!(n.put(o, "cap/ctl", mint), "Rwrite");
    let alice = minted(&mut n, o, 1);
    // From a token for /chan/alerts: links claiming the owner's id 0,
    // the minted id 1, or any id at all, are refused.
    let mut seen = Vec::new();
    for chosen in [0u64, 1, 3, 99, u64::MAX] {
        let t = forge(
            &alice,
            Claims {
                id: chosen,
                not_before: NOW,
                ..claims(0, "alice", "/chan/alerts", "rw")
            },
            false,
        );
        let (_, r) = n.attach_with(&format!("token={}", t.to_text()));
        assert!(
            r.starts_with(&format!("Rerror capability link 1 carries id {chosen},"))
                && r.contains("ids cannot be chosen"),
            "{chosen}: {r}"
        );
        seen.push(r);
    }
    // Holder owner with id 0: refused for the holder and for the id.
    let spoof = forge(
        &alice,
        Claims {
            id: 0,
            not_before: NOW,
            ..claims(0, "owner", "/chan/alerts", "rw")
        },
        false,
    );
    let (_, r) = n.attach_with(&format!("token={}", spoof.to_text()));
    assert!(r.contains("'owner' refused"), "{r}");
    // Two honest links from one parent: each its own id, and revoking
    // one leaves the other.
    let rw = Rights::parse("rw").unwrap();
    let a = alice
        .attenuate("alice/a", "/chan/alerts", rw, NOW, NOW + 60)
        .unwrap();
    let b = alice
        .attenuate("alice/b", "/chan/alerts", rw, NOW, NOW + 60)
        .unwrap();
    let (ida, idb) = (a.claims().id, b.claims().id);
    assert_ne!(ida, idb);
    assert!(ida >> 63 == 1 && idb >> 63 == 1);
    let ca = n.client(&a);
    let cb = n.client(&b);
    assert_eq!(n.put(o, "cap/ctl", &format!("revoke {ida}\n")), "Rwrite");
    assert_eq!(
        n.call(ca, Body::Tstat { fid: 0 }),
        format!("Rerror capability {ida} was revoked")
    );
    assert_eq!(n.call(cb, Body::Tstat { fid: 0 }), "Rstat");
    assert_eq!(n.put(cb, "data", "still here"), "Rwrite");
    let msgs = n.cat(o, "chan/alerts/msgs");
    assert!(
        msgs.contains("sender=alice/b ") && msgs.contains(&format!(" cap={idb} ")),
        "{msgs}"
    );
    // The node never assigns an id with bit 63 set, so none meets a
    // derived one; a first link carrying one is refused.
    let high = Claims {
        id: 1 << 63,
        ..claims(0, "x", "/", "r")
    };
    assert_eq!(key().mint(high), Err(CapError::FirstId(1 << 63)));
}

/// The issue's attack 11: a holder name that scrambles sender= lines.
#[test]
fn holder_names_are_printable_ascii() {
    let (mut n, o) = setup();
    let applied = n.server.state().applied;
    for (holder, why) in [
        ("ali\u{202e}ecila", "U+202E"),
        ("a\u{7}b", "control character"),
        ("caf\u{e9}", "not ASCII"),
        ("agent/a/b", "not an agent's name"),
    ] {
        let r = n.put(
            o,
            "cap/ctl",
            &format!("mint scope=/chan rights=r ttl=5m holder={holder}\n"),
        );
        assert!(
            r.starts_with("Rerror /cap/ctl: mint: capability holder") && r.contains(why),
            "{holder:?}: {r}"
        );
        assert!(r.is_ascii(), "the message itself is plain: {r}");
        assert!(
            owner()
                .attenuate(
                    holder,
                    "/chan",
                    Rights::parse("r").unwrap(),
                    NOW - 10,
                    NOW + 60
                )
                .is_err()
        );
        let t = forge(
            &owner(),
            Claims {
                holder: holder.into(),
                ..claims(0, "", "/chan", "r")
            },
            true,
        );
        let (_, r) = n.attach_with(&format!("token={}", t.to_text()));
        assert!(r.contains("capability holder") && r.contains(why), "{r}");
    }
    // owner is reserved: not even the owner mints one.
    let r = n.put(
        o,
        "cap/ctl",
        "mint scope=/chan rights=r ttl=5m holder=owner\n",
    );
    assert!(r.contains("holder=owner is reserved"), "{r}");
    assert_eq!(n.server.state().applied, applied);
}

/// The issue's attack 11: an aname with two tokens.
#[test]
fn an_aname_gives_each_word_once() {
    let (mut n, _) = setup();
    let ro = key().mint(claims(3, "ro", "/chan/alerts", "r")).unwrap();
    let all = owner().to_text();
    for aname in [
        format!("token={} token={all}", ro.to_text()),
        format!("token={all} token={all}"),
        format!("/ / token={all}"),
        format!("/ /cap token={all}"),
        format!("auth=cap auth=cap token={all}"),
    ] {
        let (_, r) = n.attach_with(&aname);
        assert!(
            r.starts_with("Rerror aname holds") && r.contains("twice: give it once"),
            "{r}"
        );
    }
    // A token in an auth fid and another in the aname: two as well.
    let c = n.version();
    let aqid = n.qid(
        c,
        Body::Tauth {
            afid: 5,
            uname: "u",
            aname: cellfs::server::AUTH_WORD,
            n_uname: Some(0),
        },
    );
    assert_eq!(aqid.ty.0, 0x08);
    assert_eq!(n.write(c, 5, &ro.to_text()), "Rwrite");
    let aname = format!("token={all}");
    let r = n.call(
        c,
        Body::Tattach {
            fid: 0,
            afid: 5,
            uname: "u",
            aname: &aname,
            n_uname: Some(0),
        },
    );
    assert!(r.contains("two capabilities"), "{r}");
    // One of each is still fine.
    let (_, r) = n.attach_with(&format!("/ auth=cap token={all}"));
    assert_eq!(r, "Rattach");
}

/// The issue's attack 11: an admin over /chan mints and revokes within
/// /chan, reaching /cap by attaching there, and sees nothing else.
#[test]
fn a_scoped_admin_mints_and_revokes_within_its_scope() {
    let (mut n, o) = setup();
    for line in [
        "mint scope=/chan rights=rwa ttl=1h holder=chanadmin\n",
        "mint scope=/agent rights=r ttl=1h holder=other\n",
        "mint scope=/chan rights=r ttl=1h holder=reader\n",
    ] {
        assert_eq!(n.put(o, "cap/ctl", line), "Rwrite");
    }
    let admin = minted(&mut n, o, 1);
    // Its own attach is rooted at /chan, where there is no cap.
    let plain = n.client(&admin);
    assert!(n.walk(plain, 0, 1, &["cap"]).contains("does not exist"));
    // Attached at /cap, it sees ctl and the capabilities within /chan.
    let (c, r) = n.attach_with(&format!("/cap token={}", admin.to_text()));
    assert_eq!(r, "Rattach");
    let ls = |n: &mut Node, c: ConnId| -> Vec<String> {
        assert_eq!(n.walk(c, 0, 70, &[]), "Rwalk");
        assert_eq!(n.call(c, Body::Topen { fid: 70, mode: 0 }), "Ropen");
        let frames = n.frames(
            c,
            1,
            Body::Tread {
                fid: 70,
                offset: 0,
                count: 8192,
            },
        );
        n.clunk(c, 70);
        let Body::Rread { data } = ninep::decode(&frames[0], Dialect::U).unwrap().body else {
            panic!("no Rread");
        };
        let mut names = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let (st, used) = ninep::decode::decode_stat(rest).unwrap();
            names.push(st.name.to_string());
            rest = &rest[used..];
        }
        names
    };
    assert_eq!(ls(&mut n, c), ["ctl", "1", "3"]);
    for hidden in ["key", "revoked", "2", "4"] {
        assert!(
            n.walk(c, 0, 2, &[hidden]).contains("does not exist"),
            "{hidden}"
        );
    }
    // '..' at /cap stays there: a partial walk, and no new fid.
    assert_eq!(n.walk(c, 0, 2, &["..", "..", "chan"]), "Rwalk");
    assert!(n.call(c, Body::Tstat { fid: 2 }).contains("unknown fid"));
    assert!(n.cat(c, "3/status").contains("holder reader"));
    // Mint within /chan: yes; outside, or for an agent, or as owner: no.
    let r = n.put(
        c,
        "ctl",
        "mint scope=/chan/alerts rights=r ttl=5m holder=x\n",
    );
    assert_eq!(r, "Rwrite");
    assert_eq!(ls(&mut n, c), ["ctl", "1", "3", "4"]);
    assert!(n.cat(c, "4/token").starts_with("Rread c0."));
    let applied = n.server.state().applied;
    for (line, why) in [
        (
            "mint scope=/agent rights=r ttl=5m holder=x\n",
            "does not reach scope /agent",
        ),
        (
            "mint scope=/chan rights=r ttl=5m holder=agent/foo\n",
            "needs the admin right over a scope containing /agent/foo",
        ),
        ("mint scope=/chan rights=rc ttl=5m holder=x\n", "not within"),
        ("revoke 2\n", "does not reach scope /agent"),
        ("revoke 0\n", "cannot be revoked"),
    ] {
        let r = n.put(c, "ctl", line);
        assert!(r.starts_with("Rerror") && r.contains(why), "{line}: {r}");
    }
    assert_eq!(n.server.state().applied, applied);
    // Revoke within its scope, by /cap/ctl and by /cap/N/ctl.
    assert_eq!(n.put(c, "4/ctl", "revoke\n"), "Rwrite");
    assert_eq!(n.put(c, "ctl", "revoke 3\n"), "Rwrite");
    assert_eq!(n.cat(o, "cap/revoked"), "Rread 3\n4\n");
    // A capability without the admin right cannot attach at /cap (unless
    // its scope holds it).
    let reader = minted(&mut n, o, 2);
    let (_, r) = n.attach_with(&format!("/cap token={}", reader.to_text()));
    assert!(r.contains("nor holds the admin right"), "{r}");
    let ro = key().mint(claims(7, "ro", "/", "r")).unwrap();
    let (_, r) = n.attach_with(&format!("/cap token={}", ro.to_text()));
    assert_eq!(r, "Rattach");
}

/// The issue's attack 11: a read parked when its capability is revoked
/// is answered then, not when data next comes; so is one whose
/// capability expires (at the node's next poll).
#[test]
fn a_parked_read_ends_when_its_capability_is_revoked_or_expires() {
    let (mut n, o) = setup();
    let mint = "mint scope=/chan/alerts rights=r ttl=1h holder=reader\n";
    assert_eq!(n.put(o, "cap/ctl", mint), "Rwrite");
    let reader = minted(&mut n, o, 1);
    let a = n.client(&reader);
    let b = n.client(&reader);
    let stay = n.client(&key().mint(claims(9, "stay", "/chan/alerts", "r")).unwrap());
    let read = |fid| Body::Tread {
        fid,
        offset: 0,
        count: 4096,
    };
    for c in [a, b, stay] {
        assert_eq!(n.open(c, 1, "data", 0), "Ropen");
        assert!(n.send(c, 7, read(1)).is_empty(), "parked");
    }
    let done = n.send(o, 1, Body::Tstat { fid: 0 });
    assert_eq!(done.len(), 1, "only the owner's reply: {done:?}");
    // The revocation answers both of the reader's parked reads.
    assert_eq!(n.open(o, 91, "cap/1/ctl", 1), "Ropen");
    let replies = n.send(
        o,
        2,
        Body::Twrite {
            fid: 91,
            offset: 0,
            data: b"revoke\n",
        },
    );
    let mut want = vec![
        (o, 2, "Rwrite".to_string()),
        (a, 7, "Rerror capability 1 was revoked".to_string()),
        (b, 7, "Rerror capability 1 was revoked".to_string()),
    ];
    let mut got = replies.clone();
    got.sort_by_key(|r| (r.0, r.1));
    want.sort_by_key(|r| (r.0, r.1));
    assert_eq!(got, want);
    // Its tag is free again; the other holder's read still waits and
    // gets the next message.
    assert!(n.call(a, Body::Tstat { fid: 0 }).contains("revoked"));
    n.clunk(o, 91);
    let sent = n.send(
        o,
        3,
        Body::Twalk {
            fid: 0,
            newfid: 92,
            wnames: {
                let mut w = Names::new();
                for p in ["chan", "alerts", "data"] {
                    w.push(p).unwrap();
                }
                w
            },
        },
    );
    assert_eq!(sent.len(), 1);
    assert_eq!(n.call(o, Body::Topen { fid: 92, mode: 1 }), "Ropen");
    let replies = n.send(
        o,
        4,
        Body::Twrite {
            fid: 92,
            offset: 0,
            data: b"hello",
        },
    );
    assert!(
        replies.contains(&(stay, 7, "Rread hello".to_string())),
        "{replies:?}"
    );
    // Expiry: a 60s capability's parked read ends once 60s have passed,
    // at the next thing the node does.
    let short = key()
        .mint(Claims {
            expires: NOW + 60,
            ..claims(11, "short", "/chan/other", "r")
        })
        .unwrap();
    let s = n.client(&short);
    assert_eq!(n.open(s, 1, "data", 0), "Ropen");
    assert!(n.send(s, 8, read(1)).is_empty(), "parked");
    n.time.set(NOW + 61);
    let replies = n.send(o, 5, Body::Tstat { fid: 0 });
    assert!(
        replies.contains(&(
            s,
            8,
            format!("Rerror capability expired at {} (Unix seconds)", NOW + 60)
        )),
        "{replies:?}"
    );
}

/// What an agent's capability mints on /cap/ctl is the agent's too.
#[test]
fn what_an_agents_capability_mints_stays_the_agents() {
    let (mut n, o) = setup();
    assert_eq!(n.mkdir(o, "agent", "boss"), "Rcreate");
    let intent = "intent rwa /chan w /cap/ctl";
    assert_eq!(n.put(o, "agent/boss/ctl", intent), "Rwrite");
    let boss = key().mint(claims(4, "agent/boss", "/", "rwa")).unwrap();
    let b = n.client(&boss);
    let applied = n.server.state().applied;
    for (holder, why) in [
        (
            "x",
            "'x' refused: a capability derived from agent boss's stays agent boss's",
        ),
        ("agent/other", "stays agent boss's"),
        ("owner", "reserved"),
    ] {
        let r = n.put(
            b,
            "cap/ctl",
            &format!("mint scope=/chan/alerts rights=r ttl=5m holder={holder}\n"),
        );
        assert!(
            r.starts_with("Rerror /cap/ctl: mint: ") && r.contains(why),
            "{r}"
        );
    }
    assert_eq!(n.server.state().applied, applied);
    let r = n.put(
        b,
        "cap/ctl",
        "mint scope=/chan/alerts rights=r ttl=5m holder=agent/boss\n",
    );
    assert_eq!(r, "Rwrite");
    assert!(n.cat(o, "cap/1/status").contains("\nholder agent/boss\n"));
}
