//! Target 3: the ctl parsers. Lines are generated from each ctl file's
//! own verb table (`verb [arg…] [key=value…]`) with arguments drawn from
//! values each verb takes and values it must refuse, then sometimes
//! mutated byte by byte. Each write goes, through 9P, to a ctl file of a
//! live server (`/ctl`, `/chan/x/ctl`, `/agent/a/ctl`, `/raft/ctl`,
//! `/cap/ctl`, `/cap/N/ctl`): it must not panic, and a refused write must
//! leave the committed objects exactly as they were. The same bytes go
//! to every public parser too, with the round trips they promise
//! (`/raft/ctl` changes print as they parse, `quote` and `split_words`,
//! `size_word` and `parse_size`, scopes normalise to themselves).

use std::sync::atomic::{AtomicU64, Ordering};

use cellfs::ctl::Verb;
use cellfs::{Outbox, Server};
use ninep::{Body, Dialect, NOFID, NOTAG, Names};

use super::engine::{Rng, edit, hex};
use super::node::{FuzzClock, FuzzLog, config, frame};

/// The ctl files, their tables, and lines each should accept.
const FILES: &[(&str, &[Verb], &[&str])] = &[
    (
        "ctl",
        cellfs::root::CTL_VERBS,
        &["note hello world", "sync"],
    ),
    (
        "chan/x/ctl",
        cellfs::chan::CTL_VERBS,
        &[
            "clear",
            "close",
            "open",
            "retain count=10",
            "retain age=1h",
            "retain count=5 age=90s",
            "qos rate=10 burst=5",
            "qos rate=100",
            "qos off",
            "full=block",
            "full=refuse",
            "full block",
            "full refuse",
            "group g1",
            "ungroup g1",
            "connect y",
            "disconnect y",
        ],
    ),
    (
        "agent/a/ctl",
        cellfs::agent::CTL_VERBS,
        &[
            "exec /bin/sh -c 'echo hi'",
            "env KEY=VALUE",
            "env KEY=",
            "intent rw /chan/x r /cap",
            "intent none",
            "limit cpu=50 mem=256M pids=10 agents=2",
            "restart policy=always max=3 window=1m",
            "start",
            "stop",
            "kill",
            "spawn c1",
            "spawn c2 rw /chan/x",
            "report running pid=42 node=n1",
            "report exit code=0",
            "report exit signal=KILL restarting=yes",
            "report crashloop",
            "report failed boom",
            "report stopped",
            "report claim runner=r1",
            "report release",
            "report resumed",
            "stderr oops",
            "log hello",
        ],
    ),
    (
        "raft/ctl",
        cellfs::raft::device::CTL_VERBS,
        &[
            "add id=2 addr=10.0.0.2:5642 key=d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "remove id=2",
            "transfer id=2",
            "snapshot",
            "learner id=3 addr=10.0.0.3:5642 key=3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "promote id=3",
            "demote id=2",
            "replace out=2 with=3",
        ],
    ),
    (
        "cap/ctl",
        cellfs::cap::device::CTL_VERBS,
        &[
            "mint scope=/chan rights=rw ttl=1h holder=h",
            "mint scope=/ rights=r ttl=5m holder=x",
            "revoke 1",
        ],
    ),
    ("cap/N/ctl", cellfs::cap::device::CAP_CTL_VERBS, &["revoke"]),
    (
        "swarm/ctl",
        cellfs::swarm::ctl::CTL_VERBS,
        &[
            "join id=2 key=d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a addr=10.0.0.2:5640 gossip=10.0.0.2:5751 raft=10.0.0.2:5751 name=n2",
            "voters 5",
            "voters 1",
            "remove 2",
            "leave",
        ],
    ),
];

/// Writes per file: accepted, refused, left waiting.
pub static COUNTS: [[AtomicU64; 3]; 7] = [const { [const { AtomicU64::new(0) }; 3] }; 7];

/// The counts, one line per file.
pub fn summary() -> String {
    let mut s = String::new();
    for (i, (path, _, _)) in FILES.iter().enumerate() {
        let [a, r, w] = &COUNTS[i];
        let (a, r, w) = (
            a.load(Ordering::Relaxed),
            r.load(Ordering::Relaxed),
            w.load(Ordering::Relaxed),
        );
        s.push_str(&format!(
            "  /{path}: {a} accepted, {r} refused, {w} waiting\n"
        ));
    }
    s
}

/// Values worth giving any argument: good ones for some verb, and bad.
const VALUES: &[&str] = &[
    "1",
    "0",
    "2",
    "100",
    "1000001",
    "18446744073709551615",
    "18446744073709551616",
    "-1",
    "",
    "abc",
    "10s",
    "5m",
    "2h",
    "7d",
    "0s",
    "3650d",
    "3651d",
    "99999999999999999999d",
    "block",
    "refuse",
    "off",
    "always",
    "on-failure",
    "never",
    "yes",
    "no",
    "/",
    "/chan",
    "/chan/x",
    "/chan/",
    "..",
    "/chan/../cap",
    "//",
    "rw",
    "rwcda",
    "-",
    "z",
    "127.0.0.1:1",
    "host:99999",
    ":",
    "x",
    "y",
    "a",
    "b",
    "g",
    "é",
    "=",
    "==",
    "1k",
    "2M",
    "3G",
    "7T",
    "16E",
    "50",
    "101",
    "running",
    "exit",
    "crashloop",
    "failed",
    "stopped",
    "claim",
    "release",
    "resumed",
    "pid=1",
    "node=n",
    "code=0",
    "code=-1",
    "signal=KILL",
    "signal=",
    "restarting=yes",
    "runner=r",
    "sandbox=x",
    "'a b'",
    "\"q\\\"\"",
    "'",
    "\"",
    "\\",
    "a\\ b",
    "#",
    "KEY=VALUE",
    "PATH=/bin",
    "LD_PRELOAD=x",
    "none",
    "r",
    "w",
    "/bin/sh",
    "-c",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
];

/// Keys that no table has, and keys every table has somewhere.
const KEYS: &[&str] = &[
    "id", "rate", "full", "count", "policy", "x", "", "scope", "ttl",
];

fn word(rng: &mut Rng, s: &mut String) {
    match rng.below(16) {
        0 => s.push_str(&"v".repeat(rng.below(600))),
        1 => s.push_str(&rng.edgy().to_string()),
        _ => s.push_str(rng.pick::<&str>(VALUES)),
    }
}

/// One line for file `f`: half the time one it accepts, perhaps with a
/// word changed; else a verb of its table with plausible arguments.
fn line(rng: &mut Rng, f: usize, s: &mut String) {
    let (_, table, good) = FILES[f];
    if rng.one_in(2) {
        let words: Vec<&str> = rng.pick(good).split(' ').collect();
        let change = if rng.one_in(3) {
            rng.below(words.len())
        } else {
            usize::MAX
        };
        for (i, w) in words.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            match w.split_once('=') {
                Some((k, _)) if i == change && rng.one_in(2) => {
                    s.push_str(k);
                    s.push('=');
                    word(rng, s);
                }
                _ if i == change => word(rng, s),
                _ => s.push_str(w),
            }
        }
        return;
    }
    let verb = &table[rng.below(table.len())];
    if rng.one_in(16) {
        word(rng, s);
    } else if !verb.keys.is_empty() && rng.one_in(6) {
        // The `full=block` form: a key as the verb.
        s.push_str(rng.pick::<&str>(verb.keys));
        s.push('=');
        word(rng, s);
    } else {
        s.push_str(verb.name);
    }
    for _ in 0..rng.below(5) {
        s.push(if rng.one_in(8) { '\t' } else { ' ' });
        if !rng.one_in(3) {
            word(rng, s);
            continue;
        }
        let key = if verb.keys.is_empty() || rng.one_in(8) {
            rng.pick(KEYS)
        } else {
            rng.pick(verb.keys)
        };
        s.push_str(key);
        s.push('=');
        word(rng, s);
    }
}

/// A whole write for file `f`: one to three lines, with blank lines,
/// comments and line ends of every kind; mutated one time in four.
pub fn write(rng: &mut Rng, f: usize) -> Vec<u8> {
    let mut s = String::new();
    for i in 0..1 + rng.below(3) {
        if i > 0 {
            s.push_str(rng.pick::<&str>(&["\n", "\r\n", "\n\n", "\n# note\n", "\n   \n"]));
        }
        line(rng, f, &mut s);
    }
    if rng.one_in(3) {
        s.push('\n');
    }
    let mut b = s.into_bytes();
    if rng.one_in(4) {
        let other = b.clone();
        edit(rng, &mut b, &other, 3);
    }
    b
}

/// A write for any ctl file (the server target's write data).
pub fn any_lines(rng: &mut Rng) -> Vec<u8> {
    let f = rng.below(FILES.len());
    write(rng, f)
}

/// The committed objects, as bytes: what a refused write must not change
/// (the log's own records, the journal and the chain, grow with every
/// entry, refused or not).
fn objects<L: cellfs::Log>(s: &Server<L, FuzzClock>) -> Vec<u8> {
    let st = s.state();
    let mut v = postcard::to_allocvec(&st.chans).unwrap();
    v.extend(postcard::to_allocvec(&st.caps).unwrap());
    v.extend(postcard::to_allocvec(&st.agents).unwrap());
    v.extend(postcard::to_allocvec(&st.membership).unwrap());
    v.extend(postcard::to_allocvec(&st.swarm).unwrap());
    v
}

/// A server with one of each object and a fid open on each ctl file.
pub struct Bench {
    s: Server<FuzzLog, FuzzClock>,
    conn: cellfs::ConnId,
    out: Outbox,
    /// The fid open on each of [`FILES`], if it could be opened.
    fids: Vec<Option<u32>>,
    tag: u16,
}

impl Bench {
    pub fn new(rng: &mut Rng) -> Bench {
        let mut log = FuzzLog::new(Rng::new(rng.next(), 2));
        log.chaos = false;
        let s = Server::new(config(), log, FuzzClock::default());
        let mut b = Bench {
            s,
            conn: cellfs::ConnId(0),
            out: Outbox::new(),
            fids: Vec::new(),
            tag: 1,
        };
        b.conn = b.s.connect();
        b.call(frame(
            NOTAG,
            Body::Tversion {
                msize: 65536,
                version: "9P2000",
            },
        ));
        b.call(frame(
            1,
            Body::Tattach {
                fid: 0,
                afid: NOFID,
                uname: "u",
                aname: "",
                n_uname: None,
            },
        ));
        for (dir, name) in [("chan", "x"), ("chan", "y"), ("agent", "a"), ("agent", "b")] {
            b.walk(&[dir], 1);
            b.call(frame(
                1,
                Body::Tcreate {
                    fid: 1,
                    name,
                    perm: ninep::stat::DMDIR | 0o755,
                    mode: 0,
                    extension: None,
                },
            ));
            b.call(frame(1, Body::Tclunk { fid: 1 }));
        }
        b.walk(&["cap", "ctl"], 1);
        b.call(frame(1, Body::Topen { fid: 1, mode: 1 }));
        let mint = b"mint scope=/chan rights=rw ttl=1h holder=h";
        b.call(frame(
            1,
            Body::Twrite {
                fid: 1,
                offset: 0,
                data: mint,
            },
        ));
        b.call(frame(1, Body::Tclunk { fid: 1 }));
        let cap_dir = (0..4)
            .map(|n| n.to_string())
            .find(|n| b.walk(&["cap", n], 1))
            .unwrap_or_default();
        b.call(frame(1, Body::Tclunk { fid: 1 }));
        for (i, (path, _, _)) in FILES.iter().enumerate() {
            let fid = 10 + i as u32;
            let path = path.replace('N', &cap_dir);
            let names: Vec<&str> = path.split('/').collect();
            let ok = b.walk(&names, fid) && b.open(fid);
            b.fids.push(ok.then_some(fid));
        }
        assert!(
            b.fids.iter().all(Option::is_some),
            "the bench opens its ctl files: {:?}",
            b.fids
        );
        b.s.log_mut().chaos = true;
        b
    }

    /// One request and its reply, decoded.
    fn call(&mut self, f: Vec<u8>) -> Option<Body<'static>> {
        self.out.clear();
        self.s.handle(self.conn, &f, &mut self.out);
        self.s.poll(&mut self.out);
        let reply = self.out.frames().next().map(|(_, r)| r.to_vec())?;
        let msg = ninep::decode(&reply, Dialect::P2000).expect("a reply decodes");
        // Keep only what callers look at, owned.
        Some(match msg.body {
            Body::Rerror { .. } => Body::Rerror {
                ename: "",
                errno: None,
            },
            Body::Rwalk { wqids } => Body::Rwalk { wqids },
            Body::Rwrite { count } => Body::Rwrite { count },
            _ => Body::Rclunk,
        })
    }

    fn walk(&mut self, names: &[&str], fid: u32) -> bool {
        let wnames = Names::from_slice(names).unwrap();
        matches!(self.call(frame(1, Body::Twalk { fid: 0, newfid: fid, wnames })),
            Some(Body::Rwalk { wqids }) if wqids.len() == names.len())
    }

    fn open(&mut self, fid: u32) -> bool {
        !matches!(
            self.call(frame(1, Body::Topen { fid, mode: 1 })),
            Some(Body::Rerror { .. }) | None
        )
    }

    /// Write `data` to ctl file `i`; a refused write must change nothing.
    pub fn write(&mut self, i: usize, data: &[u8]) {
        let Some(fid) = self.fids[i] else { return };
        let before = objects(&self.s);
        self.tag = self.tag % 1000 + 1;
        let tag = self.tag;
        let reply = self.call(frame(
            tag,
            Body::Twrite {
                fid,
                offset: 0,
                data,
            },
        ));
        match reply {
            Some(Body::Rerror { .. }) => {
                COUNTS[i][1].fetch_add(1, Ordering::Relaxed);
                if objects(&self.s) != before {
                    panic!("a refused write to /{} changed the state", FILES[i].0);
                }
            }
            Some(Body::Rwrite { count }) => {
                COUNTS[i][0].fetch_add(1, Ordering::Relaxed);
                assert_eq!(count as usize, data.len(), "a ctl write is taken whole");
            }
            Some(_) => panic!("a ctl write answered with neither Rwrite nor Rerror"),
            None => {
                // Waiting (a log that gates): flush it; that must answer.
                COUNTS[i][2].fetch_add(1, Ordering::Relaxed);
                let f = frame(tag + 1000, Body::Tflush { oldtag: tag });
                assert!(
                    self.call(f).is_some(),
                    "a flush of a waiting ctl write is answered"
                );
            }
        }
    }
}

/// Every public parser on `data`, with the round trips they promise.
pub fn parsers(data: &[u8]) {
    for (_, table, _) in FILES {
        if let Ok(lines) = cellfs::ctl::parse("fuzz", table, data) {
            for l in lines {
                let v = table
                    .iter()
                    .find(|v| v.name == l.verb)
                    .expect("a parsed verb is in its table");
                if v.max_args != usize::MAX {
                    assert!(
                        (v.min_args..=v.max_args).contains(&l.args.len()),
                        "argument count of {l:?}"
                    );
                    for (k, _) in &l.kv {
                        assert!(v.keys.contains(k), "key {k} not in the table");
                    }
                }
            }
        }
    }
    if let Ok(change) = cellfs::raft::device::parse_change(data) {
        let text = change.to_string();
        let back = text
            .strip_prefix("/raft/ctl ")
            .expect("a change prints as its ctl line");
        assert_eq!(
            cellfs::raft::device::parse_change(back.as_bytes()).ok(),
            Some(change),
            "{text}"
        );
    }
    let _ = cellfs::swarm::ctl::parse(data);
    let _ = cellfs::swarm::ctl::parse_node(2, data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for l in text.lines() {
        if let Ok(words) = cellfs::agent::split_words(l) {
            let quoted: Vec<String> = words.iter().map(|w| cellfs::agent::quote(w)).collect();
            assert_eq!(
                cellfs::agent::split_words(&quoted.join(" ")).as_ref(),
                Ok(&words),
                "quote of {l:?}"
            );
        }
        let _ = cellfs::agent::RunSpec::parse(l);
        let ws: Vec<&str> = l.split_ascii_whitespace().collect();
        let _ = cellfs::agent::intent::parse(&ws);
        if ws.len() > 1 {
            let _ = cellfs::agent::intent::parse(&ws[1..]);
        }
        for w in ws {
            let v = w.split_once('=').map_or(w, |(_, v)| v);
            let _ = cellfs::ctl::parse_duration(v);
            let _ = cellfs::cap::device::parse_ttl(v);
            let _ = cellfs::cap::Rights::parse(v);
            let _ = cellfs::agent::check_name(v);
            if let Some(n) = cellfs::agent::parse_size(v) {
                assert_eq!(
                    cellfs::agent::parse_size(&cellfs::agent::size_word(n)),
                    Some(n),
                    "size {v}"
                );
            }
            if let Ok(s) = cellfs::cap::scope::normalize(v) {
                assert_eq!(
                    cellfs::cap::scope::normalize(&s).as_ref(),
                    Ok(&s),
                    "scope {v}"
                );
            }
        }
    }
}

/// Which file and what bytes unit `rng` writes.
fn input(rng: &mut Rng) -> (usize, Vec<u8>) {
    let i = rng.below(FILES.len());
    let data = write(rng, i);
    (i, data)
}

/// Units that share one bench, which is built afresh by the first.
pub const BLOCK: u64 = 256;

/// Unit `n`: a write through the server (on `bench`, rebuilt at each
/// block of [`BLOCK`] units so that a block replays alone) and to every
/// parser.
pub fn unit(n: u64, rng: &mut Rng, bench: &mut Option<Bench>) -> u64 {
    let (i, data) = input(rng);
    parsers(&data);
    if bench.is_none() || n.is_multiple_of(BLOCK) {
        *bench = Some(Bench::new(rng));
    }
    bench.as_mut().unwrap().write(i, &data);
    1
}

/// The file and bytes of unit `n`, for a failure report.
pub fn describe(n: u64, rng: &mut Rng) -> String {
    let (i, data) = input(rng);
    format!(
        "/{}: {} ({:?})\n(the bench is shared by a block of units: replay from unit {} to include the writes before)",
        FILES[i].0,
        hex(&data),
        String::from_utf8_lossy(&data),
        n - n % BLOCK
    )
}
