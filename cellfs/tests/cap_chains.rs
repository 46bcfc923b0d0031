//! Random attenuation chains, checked through the real server with 9P
//! messages: a chain is never allowed more than the intersection of every
//! link's scope and rights and, when a link names an agent, that agent's
//! committed intent; `verify` refuses every link that breaks the id,
//! holder or naming rules, however it was made (cap(3) HOLDERS, LINK IDS).

mod common;

use std::cell::Cell;
use std::rc::Rc;

use cellfs::cap::token::CapError;
use cellfs::cap::{Claims, NodeKey, PublicKey, Rights, Token};
use cellfs::{Config, ConnId, Outbox, Server};
use common::{TestClock, TestLog, forge};
use ninep::{Body, Dialect, Msg, NOFID, Names, Qid};
use proptest::prelude::*;

const NOW: u64 = 1_700_000_000;

/// The scopes links draw from: nested and disjoint subtrees.
const SCOPES: &[&str] = &[
    "/", "/chan", "/chan/a", "/chan/b", "/agent", "/agent/x", "/cap",
];
/// The holders links draw from: the owner, plain names, a sub-name, and
/// two agents.
const HOLDERS: &[&str] = &[
    "owner",
    "alice",
    "alice/bob",
    "bob",
    "agent/x",
    "agent/y",
    "x",
];
/// Names no holder may have.
const BAD_HOLDERS: &[&str] = &[
    "a b",
    "\u{202e}x",
    "x\u{7}",
    "",
    "caf\u{e9}",
    "agent/",
    "agent/x/y",
];
/// The intents agents x and y draw from.
const INTENTS: &[&str] = &["r /chan/a", "rw /chan/a", "rwcd /chan", "r /", "w /chan/b"];
const LETTERS: &[(char, u8)] = &[('r', 1), ('w', 2), ('c', 4), ('d', 8), ('a', 16)];

fn key() -> NodeKey {
    NodeKey::from_seed(&[7; 32])
}

fn trusted(k: &PublicKey) -> bool {
    *k == key().public()
}

fn rights(bits: u8) -> Rights {
    let letters: String = LETTERS
        .iter()
        .filter(|(_, b)| bits & b != 0)
        .map(|(c, _)| *c)
        .collect();
    Rights::parse(if letters.is_empty() { "-" } else { &letters }).unwrap()
}

fn bits(r: Rights) -> u8 {
    LETTERS
        .iter()
        .filter(|(c, _)| r.to_string().contains(*c))
        .fold(0, |acc, (_, b)| acc | b)
}

/// Whether the path `p` is `scope` or below it (by whole names).
fn within(scope: &str, p: &str) -> bool {
    scope == "/" || p == scope || p.starts_with(&format!("{scope}/"))
}

/// cap(3)'s holder rules, written from the manual.
fn holder_ok(parent: &Claims, holder: &str) -> bool {
    let admin = bits(parent.rights) & 16 != 0;
    if parent.holder.starts_with("agent/") {
        return holder == parent.holder;
    }
    if holder == parent.holder {
        return true;
    }
    if let Some(name) = holder.strip_prefix("agent/") {
        return admin && within(&parent.scope, &format!("/agent/{name}"));
    }
    if holder == "owner" {
        return false;
    }
    admin || holder.starts_with(&format!("{}/", parent.holder))
}

fn narrows(parent: &Claims, child: &Claims) -> bool {
    within(&parent.scope, &child.scope)
        && bits(child.rights) & !bits(parent.rights) == 0
        && child.expires <= parent.expires
        && child.not_before >= parent.not_before
}

/// One attempted attenuation.
#[derive(Clone, Debug)]
struct Step {
    /// An index into HOLDERS, or past it for the parent's holder.
    holder: usize,
    /// An index into SCOPES or, with `inside`, into those inside the
    /// parent's scope.
    scope: usize,
    inside: bool,
    /// Rights bits, or (32 and above) the parent's.
    rights: u8,
    /// Rights drawn freely (else within the parent's).
    any_rights: bool,
    /// Expire 10 minutes before the parent.
    shorter: bool,
    /// Try to outlive the parent.
    longer: bool,
    /// Also forge the link with this id instead of its own.
    chosen_id: Option<u64>,
    /// Also forge the link with a bad holder name.
    bad_holder: Option<usize>,
}

fn step() -> impl Strategy<Value = Step> {
    (
        (
            0..HOLDERS.len() * 2,
            (0..SCOPES.len(), prop::bool::weighted(0.8)),
            0u8..56,
            prop::bool::weighted(0.2),
        ),
        (
            any::<bool>(),
            prop::bool::weighted(0.1),
            prop::option::weighted(0.3, any::<u64>()),
            prop::option::weighted(0.2, 0..BAD_HOLDERS.len()),
        ),
    )
        .prop_map(
            |(
                (holder, (scope, inside), rights, any_rights),
                (shorter, longer, chosen_id, bad_holder),
            )| {
                Step {
                    holder,
                    scope,
                    inside,
                    rights,
                    any_rights,
                    shorter,
                    longer,
                    chosen_id,
                    bad_holder,
                }
            },
        )
}

/// A reply, kept past its frame.
#[derive(Debug)]
enum Reply {
    Error(String),
    Walked(Vec<Qid>),
    Data(Vec<u8>),
    Wrote,
    Done,
}

/// A node served through 9P messages, its log committing at once.
struct Node {
    server: Server<TestLog, TestClock>,
    out: Outbox,
}

impl Node {
    fn new() -> Node {
        let time = Rc::new(Cell::new(NOW));
        let mut server = Server::new(
            Config::new("chains", key()),
            TestLog::default(),
            TestClock(time),
        );
        let mut out = Outbox::new();
        server.poll(&mut out);
        Node { server, out }
    }

    fn call(&mut self, conn: ConnId, body: Body<'_>) -> Reply {
        let mut frame = Vec::new();
        ninep::encode(&Msg { tag: 1, body }, &mut frame).unwrap();
        self.out.clear();
        self.server.handle(conn, &frame, &mut self.out);
        self.server.poll(&mut self.out);
        let frames: Vec<Vec<u8>> = self.out.frames().map(|(_, f)| f.to_vec()).collect();
        assert_eq!(frames.len(), 1, "one reply");
        match ninep::decode(&frames[0], Dialect::U).unwrap().body {
            Body::Rerror { ename, .. } => Reply::Error(ename.to_string()),
            Body::Rwalk { wqids } => Reply::Walked(wqids.iter().copied().collect()),
            Body::Rread { data } => Reply::Data(data.to_vec()),
            Body::Rwrite { .. } => Reply::Wrote,
            _ => Reply::Done,
        }
    }

    fn ok(&mut self, conn: ConnId, body: Body<'_>) -> bool {
        !matches!(self.call(conn, body), Reply::Error(_))
    }

    fn attach(&mut self, token: &Token) -> Result<ConnId, String> {
        let c = self.server.connect();
        let v = self.call(
            c,
            Body::Tversion {
                msize: 8192,
                version: "9P2000.u",
            },
        );
        assert!(matches!(v, Reply::Done), "{v:?}");
        let aname = format!("token={}", token.to_text());
        match self.call(
            c,
            Body::Tattach {
                fid: 0,
                afid: NOFID,
                uname: "u",
                aname: &aname,
                n_uname: Some(0),
            },
        ) {
            Reply::Error(e) => Err(e),
            _ => Ok(c),
        }
    }

    /// Walk `names` from fid 0 to `newfid`: the last qid if every name
    /// was walked.
    fn walk(&mut self, c: ConnId, newfid: u32, names: &[&str]) -> Option<Qid> {
        let mut wnames = Names::new();
        for n in names {
            wnames.push(n).unwrap();
        }
        match self.call(
            c,
            Body::Twalk {
                fid: 0,
                newfid,
                wnames,
            },
        ) {
            Reply::Walked(qids) if qids.len() == names.len() => {
                Some(qids.last().copied().unwrap_or(Qid {
                    ty: ninep::QidType::DIR,
                    version: 0,
                    path: u64::MAX,
                }))
            }
            _ => None,
        }
    }

    fn clunk(&mut self, c: ConnId, fid: u32) {
        let _ = self.call(c, Body::Tclunk { fid });
    }

    fn put(&mut self, c: ConnId, path: &str, text: &str) {
        let names = names(path);
        assert!(self.walk(c, 9, &names).is_some(), "{path}");
        assert!(self.ok(c, Body::Topen { fid: 9, mode: 1 }), "{path}");
        let w = self.call(
            c,
            Body::Twrite {
                fid: 9,
                offset: 0,
                data: text.as_bytes(),
            },
        );
        assert!(matches!(w, Reply::Wrote), "{path}: {w:?}");
        self.clunk(c, 9);
    }

    fn mkdir(&mut self, c: ConnId, dir: &str, name: &str) -> bool {
        let names = names(dir);
        if self.walk(c, 8, &names).is_none() {
            return false;
        }
        let r = self.ok(
            c,
            Body::Tcreate {
                fid: 8,
                name,
                perm: ninep::stat::DMDIR | 0o755,
                mode: 0,
                extension: Some(""),
            },
        );
        self.clunk(c, 8);
        r
    }

    fn cat(&mut self, c: ConnId, path: &str) -> String {
        assert!(self.walk(c, 7, &names(path)).is_some(), "{path}");
        assert!(self.ok(c, Body::Topen { fid: 7, mode: 0 }));
        let r = self.call(
            c,
            Body::Tread {
                fid: 7,
                offset: 0,
                count: 4096,
            },
        );
        self.clunk(c, 7);
        match r {
            Reply::Data(data) => String::from_utf8_lossy(&data).into_owned(),
            other => panic!("{path}: {other:?}"),
        }
    }
}

fn names(path: &str) -> Vec<&str> {
    path.split('/').filter(|n| !n.is_empty()).collect()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Read,
    Write,
    Create,
    Remove,
}

impl Op {
    fn bit(self) -> u8 {
        match self {
            Op::Read => 1,
            Op::Write => 2,
            Op::Create => 4,
            Op::Remove => 8,
        }
    }
}

/// What is tried, in this order (the changes last).
const PROBES: &[(&str, Op, bool)] = &[
    ("/status", Op::Read, false),
    ("/chan", Op::Read, true),
    ("/chan/a/status", Op::Read, false),
    ("/chan/b/status", Op::Read, false),
    ("/agent/x/status", Op::Read, false),
    ("/cap/key", Op::Read, false),
    ("/chan/a/data", Op::Write, false),
    ("/chan/b/data", Op::Write, false),
    ("/chan/new1", Op::Create, true),
    ("/chan/z", Op::Remove, true),
];

/// The entries of an intent: (rights bits, path).
fn intent(text: &str) -> Vec<(u8, String)> {
    let (letters, path) = text.split_once(' ').unwrap();
    vec![(bits(Rights::parse(letters).unwrap()), path.to_string())]
}

/// Whether `intent` lets an agent do `op` on `path` (a directory if
/// `dir`): agent(3)'s rule, written from the manual.
fn intent_allows(intent: &[(u8, String)], path: &str, op: Op, dir: bool) -> bool {
    let grants = intent
        .iter()
        .any(|(b, p)| b & op.bit() != 0 && within(p, path));
    let on_the_way = op == Op::Read
        && dir
        && intent
            .iter()
            .any(|(_, p)| within(path, p) && path != p.as_str());
    grants || on_the_way
}

/// Try `op` on `target` with connection `c`, whose root is `scope`:
/// whether the node allowed it. A target outside the scope is tried
/// by walking `..` and its absolute names, and must not be reached.
fn attempt(
    n: &mut Node,
    o: ConnId,
    c: ConnId,
    scope: &str,
    target: &str,
    op: Op,
) -> Result<bool, TestCaseError> {
    if !within(scope, target) {
        let mut escape = vec![".."];
        escape.extend(names(target));
        if let Some(reached) = n.walk(c, 50, &escape) {
            n.clunk(c, 50);
            if op != Op::Create {
                let real = n.walk(o, 51, &names(target));
                n.clunk(o, 51);
                prop_assert_ne!(
                    Some(reached.path),
                    real.map(|q| q.path),
                    "{} left {}",
                    target,
                    scope
                );
            }
        }
        return Ok(false);
    }
    let rel = &target[if scope == "/" { 0 } else { scope.len() }..];
    let mut path = names(rel);
    let allowed = match op {
        Op::Read | Op::Write => {
            if n.walk(c, 50, &path).is_none() {
                return Ok(false);
            }
            let write = op == Op::Write;
            let mode = if write { 1 } else { 0 };
            let ok = n.ok(c, Body::Topen { fid: 50, mode })
                && if write {
                    matches!(
                        n.call(
                            c,
                            Body::Twrite {
                                fid: 50,
                                offset: 0,
                                data: b"m",
                            }
                        ),
                        Reply::Wrote
                    )
                } else {
                    matches!(
                        n.call(
                            c,
                            Body::Tread {
                                fid: 50,
                                offset: 0,
                                count: 4096,
                            }
                        ),
                        Reply::Data(_)
                    )
                };
            n.clunk(c, 50);
            ok
        }
        Op::Create => {
            let name = path.pop().unwrap();
            if n.walk(c, 50, &path).is_none() {
                return Ok(false);
            }
            let ok = n.ok(
                c,
                Body::Tcreate {
                    fid: 50,
                    name,
                    perm: ninep::stat::DMDIR | 0o755,
                    mode: 0,
                    extension: Some(""),
                },
            );
            n.clunk(c, 50);
            ok
        }
        Op::Remove => n.walk(c, 50, &path).is_some() && n.ok(c, Body::Tremove { fid: 50 }),
    };
    Ok(allowed)
}

fn run(
    first: (usize, usize, u8, u64),
    steps: Vec<Step>,
    intents: (usize, usize),
) -> Result<(), TestCaseError> {
    let (holder, scope, rights_bits, id) = first;
    let mut chain = vec![Claims {
        id,
        holder: HOLDERS[holder].into(),
        scope: SCOPES[scope].into(),
        rights: rights(rights_bits),
        not_before: NOW - 10,
        expires: NOW + 3600,
    }];
    let mut token = key().mint(chain[0].clone()).unwrap();
    for s in &steps {
        let parent = chain.last().unwrap().clone();
        let child = Claims {
            id: 0,
            holder: HOLDERS
                .get(s.holder)
                .map_or(parent.holder.clone(), |h| h.to_string()),
            scope: if s.inside {
                let inside: Vec<&str> = SCOPES
                    .iter()
                    .copied()
                    .filter(|p| within(&parent.scope, p))
                    .collect();
                inside[s.scope % inside.len()].into()
            } else {
                SCOPES[s.scope].into()
            },
            // 32 and above: the parent's rights, unchanged.
            rights: rights(if s.rights >= 32 {
                bits(parent.rights)
            } else if s.any_rights {
                s.rights
            } else {
                s.rights & bits(parent.rights)
            }),
            not_before: parent.not_before,
            expires: parent.expires - if s.shorter { 600 } else { 0 }
                + if s.longer { 100 } else { 0 },
        };
        let expect = narrows(&parent, &child) && holder_ok(&parent, &child.holder);
        let made = token.attenuate(
            &child.holder,
            &child.scope,
            child.rights,
            child.not_before,
            child.expires,
        );
        prop_assert_eq!(
            made.is_ok(),
            expect,
            "attenuate {:?} from {:?}: {:?}",
            child,
            parent,
            made
        );
        // The same link made by hand: verify agrees, and says why.
        let forged = forge(&token, child.clone(), true).verify(trusted);
        prop_assert_eq!(forged.is_ok(), expect, "forged {:?}: {:?}", child, forged);
        if narrows(&parent, &child) && !expect {
            prop_assert!(
                matches!(forged, Err(CapError::Holder { .. })),
                "{:?}",
                forged
            );
        }
        // Rule 1: no chosen id.
        if let Some(chosen) = s.chosen_id
            && expect
        {
            let f = forge(
                &token,
                Claims {
                    id: chosen,
                    ..child.clone()
                },
                false,
            );
            let derived = forge(&token, child.clone(), true).claims().id;
            if chosen != derived {
                let v = f.verify(trusted);
                prop_assert!(
                    matches!(v, Err(CapError::LinkId { .. })),
                    "id {}: {:?}",
                    chosen,
                    v
                );
            }
        }
        // Rule 3: no bad name, whatever else the link does.
        if let Some(b) = s.bad_holder {
            let bad = Claims {
                holder: BAD_HOLDERS[b].into(),
                ..child.clone()
            };
            let v = forge(&token, bad, true).verify(trusted);
            prop_assert!(
                matches!(v, Err(CapError::BadHolder { .. })),
                "{:?}: {:?}",
                BAD_HOLDERS[b],
                v
            );
        }
        if let Ok(t) = made {
            token = t;
            chain.push(child);
        }
    }
    prop_assert!(token.verify(trusted).is_ok());

    // What the chain may do, from every link.
    let mut scope = String::from("/");
    let mut may = 31u8;
    for link in &chain {
        if within(&scope, &link.scope) {
            scope = link.scope.clone();
        } else {
            prop_assert!(within(&link.scope, &scope), "disjoint scopes verified");
        }
        may &= bits(link.rights);
    }
    let agent = chain
        .iter()
        .find_map(|l| l.holder.strip_prefix("agent/").map(str::to_string));

    let mut n = Node::new();
    let owner = key()
        .mint(Claims {
            id: 0,
            holder: "owner".into(),
            scope: "/".into(),
            rights: Rights::ALL,
            not_before: NOW - 10,
            expires: NOW + 3600,
        })
        .unwrap();
    let o = n.attach(&owner).unwrap();
    for ch in ["a", "b", "z"] {
        assert!(n.mkdir(o, "/chan", ch));
    }
    for a in ["x", "y"] {
        assert!(n.mkdir(o, "/agent", a));
    }
    let (ix, iy) = intents;
    n.put(
        o,
        "/agent/x/ctl",
        &format!("exec /bin/w\nintent {}", INTENTS[ix]),
    );
    n.put(
        o,
        "/agent/y/ctl",
        &format!("exec /bin/w\nintent {}", INTENTS[iy]),
    );
    let intent_of = |name: &str| intent(INTENTS[if name == "x" { ix } else { iy }]);

    let c = match n.attach(&token) {
        Ok(c) => c,
        Err(e) => return Err(TestCaseError::fail(format!("attach refused: {e}"))),
    };
    for &(target, op, dir) in PROBES {
        let halted = agent.as_ref().is_some_and(|a| {
            n.cat(o, &format!("/agent/{a}/status"))
                .contains("state halted-drift")
        });
        let model = within(&scope, target)
            && may & op.bit() != 0
            && agent
                .as_ref()
                .is_none_or(|a| intent_allows(&intent_of(a), target, op, dir));
        let allowed = attempt(&mut n, o, c, &scope, target, op)?;
        prop_assert!(
            !allowed || model,
            "{:?} {} was allowed beyond scope {}, rights {}, agent {:?}",
            op,
            target,
            scope,
            rights(may),
            agent
        );
        if !halted {
            prop_assert_eq!(
                allowed,
                model,
                "{:?} {}: scope {}, rights {}, agent {:?}",
                op,
                target,
                scope,
                rights(may),
                agent
            );
        } else {
            prop_assert!(!allowed, "a halted agent's {:?} {} was allowed", op, target);
        }
        // A drift halts the agent; start it again, so the next probe is
        // judged on its own.
        if let Some(a) = &agent
            && n.cat(o, &format!("/agent/{a}/status"))
                .contains("state halted-drift")
        {
            n.put(o, &format!("/agent/{a}/ctl"), "start");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_chain_reaches_beyond_every_link_and_the_agents_intent(
        first in (0..HOLDERS.len(), 0..SCOPES.len(), 0u8..32, 0u64..(1 << 48)),
        steps in prop::collection::vec(step(), 0..6),
        intents in (0..INTENTS.len(), 0..INTENTS.len()),
    ) {
        run(first, steps, intents)?;
    }
}
