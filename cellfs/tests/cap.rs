//! Capabilities enforced by the server core: attach, scope, rights,
//! revocation, the /cap tree and replay. See cap(3).

mod common;

use std::cell::Cell;
use std::rc::Rc;

use cellfs::cap::{Claims, NodeKey, Rights, Token};
use cellfs::{Config, ConnId, Outbox, Server};
use common::{TestClock, TestLog};
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
            dialect: Dialect::P2000,
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
        let msg = ninep::decode(&frames[0], self.dialect).unwrap();
        match &msg.body {
            Body::Rread { data } => format!("Rread {}", String::from_utf8_lossy(data)),
            Body::Rerror { ename } => format!("Rerror {ename}"),
            Body::Rlerror { ecode } => format!("Rlerror {ecode}"),
            other => format!("{:?}", other.msg_type()),
        }
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
                n_uname: (self.dialect == Dialect::L).then_some(0),
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
            n_uname: None,
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
            n_uname: None,
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
            n_uname: None,
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
            n_uname: None,
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
            n_uname: None,
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
            "kid",
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
            n_uname: None,
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
        ("", "empty"),
        (long.as_str(), "at most 255 bytes"),
    ] {
        let r = n.walk(c, 0, 3, &[name]);
        assert!(r.starts_with("Rerror bad name") && r.contains(why), "{r}");
    }
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
