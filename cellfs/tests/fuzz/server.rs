//! Target 2: the server's request handling. Sequences of generated and
//! mutated requests on several connections go into an in-process
//! `cellfs::Server` over a log that commits at once, late, or fails, and a
//! clock that jumps. Besides "no panic", every reply is checked against a
//! model of each connection: it decodes, fits the msize, answers a request
//! that is waiting (so no request is answered twice) with its own type or
//! the dialect's error, and a Tflush is answered only with Rflush and ends
//! the request it flushes; nothing reaches a closed connection. At the end
//! of a sequence every waiting request is flushed, every connection
//! closed, and a fresh one must see `connections 1` and only its own fids
//! in `/status`; every snapshot the log took must decode, and the log
//! replayed into a new server (from the last snapshot) must rebuild the
//! same state.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use cellfs::state::State;
use cellfs::{Config, ConnId, Outbox, Server};
use ninep::{Body, Dialect, Msg, MsgType, NOFID, NOTAG, Names};

use super::ctl;
use super::engine::{Rng, hex, mutate};
use super::node::{FuzzClock, FuzzLog, config, frame, token_anames};
use super::requests::{PATHS, Parts, request};

/// Replies seen, by type, over the run (to see how deep requests go).
pub static REPLIES: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

/// The reply counts, on one line.
pub fn summary() -> String {
    let r = REPLIES.lock().unwrap();
    let words: Vec<String> = r.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!("  replies: {}\n", words.join(", "))
}

/// What a waiting request expects of its reply.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// Its type plus one, or an error.
    Plain(MsgType),
    Version {
        msize: u32,
    },
    Walk {
        names: usize,
    },
    Read {
        count: u32,
        fid: u32,
    },
    Readdir {
        count: u32,
        fid: u32,
    },
    Write {
        len: usize,
        fid: u32,
    },
    Flush {
        old: u16,
    },
    /// A Tclunk or Tremove (type `t`) of `fid`.
    Clunk {
        t: MsgType,
        fid: u32,
    },
}

impl Want {
    /// The fid of a request that may wait on it.
    fn parked_on(&self) -> Option<u32> {
        match *self {
            Want::Read { fid, .. } | Want::Readdir { fid, .. } | Want::Write { fid, .. } => {
                Some(fid)
            }
            _ => None,
        }
    }
}

/// The harness's picture of one connection.
#[derive(Debug)]
struct Model {
    id: ConnId,
    open: bool,
    dialect: Option<Dialect>,
    msize: u32,
    waiting: HashMap<u16, Want>,
    /// Waiting reads and writes whose fid was clunked: the server ends
    /// a parked one without a reply (`take_fid`: "its reads end with
    /// it"), and one already proposed is still answered.
    quiet: std::collections::HashSet<u16>,
    /// Tags of requests refused before they were requests (a bad frame,
    /// a request before Tversion, a tag in use): an error may answer each.
    strays: Vec<u16>,
}

impl Model {
    fn new(id: ConnId, msize: u32) -> Model {
        Model {
            id,
            open: true,
            dialect: None,
            msize,
            waiting: HashMap::new(),
            quiet: Default::default(),
            strays: Vec::new(),
        }
    }
}

/// One sequence: the server, the connections' models, what was sent.
struct Run {
    config: Config,
    /// Replies by type in this sequence, added to [`REPLIES`] at the end.
    seen: HashMap<u8, (MsgType, u64)>,
    s: Server<FuzzLog, FuzzClock>,
    clock: FuzzClock,
    conns: Vec<Model>,
    out: Outbox,
    /// (connection number, frame) of everything sent, for the report.
    sent: Vec<(usize, Vec<u8>)>,
    frames: u64,
}

fn fail(sent: &[(usize, Vec<u8>)], why: String) -> ! {
    panic!("{why} (after {} frames)", sent.len());
}

thread_local! {
    /// The frames of the last sequence that panicked, for [`describe`].
    static LAST: std::cell::RefCell<Vec<(usize, Vec<u8>)>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Drop for Run {
    fn drop(&mut self) {
        if std::thread::panicking() {
            LAST.with(|l| *l.borrow_mut() = core::mem::take(&mut self.sent));
        }
    }
}

/// Whether `CELL0_FUZZ_TRACE` asks for every frame and reply on stderr.
fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("CELL0_FUZZ_TRACE").is_some())
}

fn is_error(b: &Body<'_>) -> bool {
    matches!(b, Body::Rerror { .. } | Body::Rlerror { .. })
}

impl Run {
    fn new(rng: &mut Rng) -> Run {
        let clock = FuzzClock::default();
        let log = FuzzLog::new(Rng::new(rng.next(), 1));
        // One sequence in three checks capabilities.
        let config = Config {
            insecure: !rng.one_in(3),
            ..config()
        };
        Run {
            config: config.clone(),
            seen: HashMap::new(),
            s: Server::new(config, log, clock.clone()),
            clock,
            conns: Vec::new(),
            out: Outbox::new(),
            sent: Vec::new(),
            frames: 0,
        }
    }

    fn connect(&mut self) -> usize {
        let id = self.s.connect();
        self.conns.push(Model::new(id, config().max_msize));
        self.conns.len() - 1
    }

    /// Send `frame` on connection `i`, with the model's expectations.
    fn send(&mut self, i: usize, frame: &[u8], poll: bool) {
        self.frames += 1;
        self.sent.push((i, frame.to_vec()));
        let m = &mut self.conns[i];
        if trace() {
            let msg = ninep::decode(frame, m.dialect.unwrap_or_default());
            eprintln!("> {:?} {:?}", m.id, msg.map(|m| (m.tag, m.body.msg_type())));
        }
        match ninep::decode(frame, m.dialect.unwrap_or_default()) {
            Err(_) => {
                if frame.len() >= 7 {
                    m.strays.push(u16::from_le_bytes([frame[5], frame[6]]));
                }
            }
            Ok(msg) => {
                let want = match msg.body {
                    Body::Tversion { msize, .. } => {
                        // Everything in flight is abandoned, and the
                        // dialect is unknown until the Rversion.
                        m.waiting.clear();
                        m.dialect = None;
                        Some(Want::Version { msize })
                    }
                    _ if m.dialect.is_none() || m.waiting.contains_key(&msg.tag) => {
                        m.strays.push(msg.tag);
                        None
                    }
                    Body::Twalk { ref wnames, .. } => Some(Want::Walk {
                        names: wnames.len(),
                    }),
                    Body::Tread { count, fid, .. } => Some(Want::Read { count, fid }),
                    Body::Treaddir { count, fid, .. } => Some(Want::Readdir { count, fid }),
                    Body::Twrite { data, fid, .. } => Some(Want::Write {
                        len: data.len(),
                        fid,
                    }),
                    Body::Tclunk { fid } | Body::Tremove { fid } => Some(Want::Clunk {
                        t: msg.body.msg_type(),
                        fid,
                    }),
                    Body::Tflush { oldtag } => Some(Want::Flush { old: oldtag }),
                    ref b => Some(Want::Plain(b.msg_type())),
                };
                if let Some(w) = want {
                    m.waiting.insert(msg.tag, w);
                }
            }
        }
        self.out.clear();
        let id = self.conns[i].id;
        self.s.handle(id, frame, &mut self.out);
        self.check_out();
        if poll {
            self.poll();
        }
        // A refused frame is answered or its connection closed, at once.
        let m = &mut self.conns[i];
        if m.open && !m.strays.is_empty() {
            let strays = m.strays.clone();
            fail(
                &self.sent,
                format!("no answer to a refused frame (tags {strays:?})"),
            );
        }
    }

    fn poll(&mut self) {
        self.out.clear();
        self.s.poll(&mut self.out);
        self.check_out();
    }

    /// Check every frame in the outbox against the models, then close
    /// what the server asked to close, as a transport would.
    fn check_out(&mut self) {
        let frames: Vec<(ConnId, Vec<u8>)> =
            self.out.frames().map(|(c, f)| (c, f.to_vec())).collect();
        let closes = self.out.closes().to_vec();
        for (id, f) in &frames {
            self.check_reply(*id, f);
        }
        for id in closes {
            let Some(i) = self.conns.iter().position(|m| m.id == id && m.open) else {
                continue;
            };
            self.close(i);
        }
    }

    fn check_reply(&mut self, id: ConnId, f: &[u8]) {
        let Some(m) = self.conns.iter_mut().find(|m| m.id == id) else {
            fail(&self.sent, format!("a reply to unknown connection {id:?}"));
        };
        if !m.open {
            fail(
                &self.sent,
                format!("a reply to closed connection {id:?}: {}", hex(f)),
            );
        }
        if f.len() as u64 > u64::from(m.msize) {
            let what = ninep::decode(f, m.dialect.unwrap_or_default());
            fail(
                &self.sent,
                format!("a {}-byte reply over msize {}: {what:?}", f.len(), m.msize),
            );
        }
        let dialect = m.dialect.unwrap_or_default();
        let msg = match ninep::decode(f, dialect) {
            Ok(msg) if trace() => {
                eprintln!("< {id:?} {} {:?}", msg.tag, msg.body);
                msg
            }
            Ok(msg) => msg,
            Err(e) => fail(
                &self.sent,
                format!("a reply does not decode ({e}): {}", hex(f)),
            ),
        };
        let t = msg.body.msg_type();
        self.seen.entry(t as u8).or_insert((t, 0)).1 += 1;
        // Each dialect's error; before one is settled, plain 9P2000's.
        let err_ok = match m.dialect {
            Some(Dialect::L) => matches!(msg.body, Body::Rlerror { ecode } if ecode != 0),
            Some(Dialect::U) => matches!(msg.body,
                Body::Rerror { ename, errno: Some(e) } if !ename.is_empty() && e != 0),
            _ => matches!(msg.body, Body::Rerror { ename, errno: None } if !ename.is_empty()),
        };
        if is_error(&msg.body) && !err_ok {
            fail(
                &self.sent,
                format!("wrong error for {dialect:?}: {:?}", msg.body),
            );
        }
        if is_error(&msg.body)
            && let Some(k) = m.strays.iter().position(|t| *t == msg.tag)
        {
            m.strays.remove(k);
            return;
        }
        m.quiet.remove(&msg.tag);
        let Some(want) = m.waiting.remove(&msg.tag) else {
            let (w, q) = (&m.waiting, &m.quiet);
            let why =
                format!("a reply no request awaits on {id:?}: {msg:?}; waiting {w:?}, quiet {q:?}");
            fail(&self.sent, why);
        };
        let bad =
            |why: &str| -> ! { fail(&self.sent, format!("{why}: {want:?} answered by {msg:?}")) };
        let iounit_ok = |iounit: u32| iounit <= m.msize.saturating_sub(ninep::IOHDRSZ);
        match (want, &msg.body) {
            (Want::Flush { old }, Body::Rflush) => {
                // The flushed request is over: no reply may follow.
                if old != msg.tag {
                    m.waiting.remove(&old);
                    m.quiet.remove(&old);
                }
            }
            (Want::Flush { .. }, _) => bad("a Tflush not answered by Rflush"),
            (
                Want::Version { msize },
                Body::Rversion {
                    msize: got,
                    version,
                },
            ) => {
                if *got > msize || *got < cellfs::server::MIN_MSIZE {
                    bad("msize");
                }
                m.msize = *got;
                m.dialect = match *version {
                    "9P2000" => Some(Dialect::P2000),
                    "9P2000.L" => Some(Dialect::L),
                    "9P2000.u" => Some(Dialect::U),
                    "unknown" => None,
                    _ => bad("version"),
                };
            }
            (Want::Version { .. }, b) if is_error(b) => m.dialect = None,
            (Want::Clunk { t, fid }, b) => {
                // remove(5): the fid goes even if the remove fails.
                if !is_error(b) && b.msg_type() as u8 != t as u8 + 1 {
                    bad("wrong reply type");
                }
                let ended = m.waiting.iter().filter(|(_, w)| w.parked_on() == Some(fid));
                let tags: Vec<u16> = ended.map(|(t, _)| *t).collect();
                m.quiet.extend(tags);
            }
            (_, b) if is_error(b) => {}
            (Want::Walk { names }, Body::Rwalk { wqids }) => {
                if wqids.len() > names || (names > 0 && wqids.is_empty()) {
                    bad("walk(5): 1..=nwname qids");
                }
            }
            (Want::Read { count, .. }, Body::Rread { data })
                if data.len() as u64 > u64::from(count) =>
            {
                bad("more than count")
            }
            (Want::Read { .. }, Body::Rread { .. }) => {}
            (Want::Readdir { count, .. }, Body::Rreaddir { data }) => {
                if data.len() as u64 > u64::from(count) {
                    bad("more than count");
                }
                let mut rest: &[u8] = data;
                while !rest.is_empty() {
                    match ninep::decode::decode_dirent(rest) {
                        Ok((_, n)) => rest = &rest[n..],
                        Err(_) => bad("a dirent does not decode"),
                    }
                }
            }
            (Want::Write { len, .. }, Body::Rwrite { count }) => {
                if *count as usize > len {
                    bad("wrote more than sent");
                }
            }
            (Want::Plain(t), b) => {
                if b.msg_type() as u8 != t as u8 + 1 {
                    bad("wrong reply type");
                }
                if let Body::Ropen { iounit, .. }
                | Body::Rlopen { iounit, .. }
                | Body::Rcreate { iounit, .. }
                | Body::Rlcreate { iounit, .. } = b
                    && !iounit_ok(*iounit)
                {
                    bad("iounit over msize");
                }
            }
            _ => bad("wrong reply type"),
        }
    }

    /// Close connection `i` as a transport does.
    fn close(&mut self, i: usize) {
        let id = self.conns[i].id;
        self.conns[i].open = false;
        self.out.clear();
        self.s.disconnect(id, &mut self.out);
        self.check_out();
    }

    /// The end of a sequence: release the log, flush what waits, close
    /// everything, and look at what is left.
    fn finish(&mut self) {
        self.s.log_mut().hold = false;
        self.poll();
        for i in 0..self.conns.len() {
            let m = &self.conns[i];
            if !m.open || m.dialect.is_none() {
                continue;
            }
            let tags: Vec<u16> = m.waiting.keys().copied().collect();
            let Some(free) = (0..u16::MAX).find(|t| !m.waiting.contains_key(t)) else {
                continue;
            };
            for old in tags {
                self.send(i, &frame(free, Body::Tflush { oldtag: old }), true);
                self.poll();
                let m = &self.conns[i];
                if m.open && !m.waiting.is_empty() && m.waiting.contains_key(&old) {
                    let w = m.waiting.clone();
                    fail(
                        &self.sent,
                        format!("tag {old} still waits after its flush: {w:?}"),
                    );
                }
            }
        }
        for i in 0..self.conns.len() {
            if self.conns[i].open {
                self.close(i);
            }
        }
        // A fresh connection sees only itself.
        let p = self.connect();
        let text = self.probe_status(p);
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.trim().parse::<u64>().ok())
        };
        if field("connections ") != Some(1) || field("fids ") != Some(2) {
            fail(
                &self.sent,
                format!("after every connection closed, /status says:\n{text}"),
            );
        }
        self.close(p);
        let mut all = REPLIES.lock().unwrap();
        for (_, (t, n)) in self.seen.drain() {
            *all.entry(format!("{t:?}")).or_default() += n;
        }
        drop(all);
        // A snapshot round trip and a replay rebuild the same state.
        let now = self.s.state().encode();
        let again = State::decode(&now).expect("the state decodes").encode();
        assert_eq!(again, now, "state snapshot round trip");
        let replay = self.s.log_mut().replayed();
        let mut r = Server::new(self.config.clone(), replay, self.clock.clone());
        let mut out = Outbox::new();
        r.poll(&mut out);
        if r.state().encode() != now {
            fail(
                &self.sent,
                format!(
                    "a replay of the log builds another state:\n{:?}\nnot\n{:?}",
                    r.state(),
                    self.s.state()
                ),
            );
        }
    }

    /// Walk to a file on a fresh fid, open it, read or write it a few
    /// times, perhaps clunk it; tags not in use.
    fn script(&mut self, rng: &mut Rng, i: usize) {
        let Some(dialect) = self.conns[i].dialect else {
            return;
        };
        let fid = 1 + rng.below(7) as u32;
        let mode = *rng.pick(&[0u8, 1, 2, 0x10, 0x40, 1, 1]);
        // Writes go where writes are taken, with what each file takes.
        const WRITABLE: &[(&[&str], Option<usize>)] = &[
            (&["chan", "x", "data"], None),
            (&["chan", "y", "data"], None),
            (&["ctl"], Some(0)),
            (&["chan", "x", "ctl"], Some(1)),
            (&["agent", "a", "ctl"], Some(2)),
            (&["raft", "ctl"], Some(3)),
            (&["cap", "ctl"], Some(4)),
        ];
        let (path, lines) = if mode & 3 == 0 || rng.one_in(8) {
            (*rng.pick(&PATHS[1..]), None)
        } else {
            *rng.pick(WRITABLE)
        };
        let tag = |m: &Model, rng: &mut Rng| {
            let mut t = rng.below(8) as u16;
            while m.waiting.contains_key(&t) {
                t = t.wrapping_add(1);
            }
            t
        };
        let t = tag(&self.conns[i], rng);
        self.send(i, &frame(t, Body::Tclunk { fid }), true);
        let t = tag(&self.conns[i], rng);
        let wnames = Names::from_slice(path).unwrap();
        self.send(
            i,
            &frame(
                t,
                Body::Twalk {
                    fid: 0,
                    newfid: fid,
                    wnames,
                },
            ),
            true,
        );
        let t = tag(&self.conns[i], rng);
        let body = match dialect {
            Dialect::L => Body::Tlopen {
                fid,
                flags: u32::from(mode & 3),
            },
            Dialect::P2000 | Dialect::U => Body::Topen { fid, mode },
        };
        self.send(i, &frame(t, body), true);
        for _ in 0..1 + rng.below(3) {
            let t = tag(&self.conns[i], rng);
            let data = if let Some(f) = lines {
                ctl::write(rng, f)
            } else if path.last() == Some(&"ctl") {
                ctl::any_lines(rng)
            } else {
                (0..rng.below(200)).map(|_| rng.next() as u8).collect()
            };
            let body = if mode & 3 == 0 {
                Body::Tread {
                    fid,
                    offset: rng.below(4) as u64 * 100,
                    count: 1 + rng.below(9000) as u32,
                }
            } else {
                Body::Twrite {
                    fid,
                    offset: 0,
                    data: &data,
                }
            };
            self.send(i, &frame(t, body), !rng.one_in(4));
        }
        if rng.one_in(2) {
            let t = tag(&self.conns[i], rng);
            self.send(i, &frame(t, Body::Tclunk { fid }), true);
        }
    }

    /// Most connections start as a client does: Tversion, Tattach, and
    /// objects to play with.
    fn hello(&mut self, rng: &mut Rng, i: usize) {
        if rng.one_in(8) {
            return;
        }
        let version = if rng.one_in(2) {
            "9P2000.L"
        } else {
            *rng.pick(&["9P2000", "9P2000.u"])
        };
        let msize = 8192 << rng.below(4);
        self.send(i, &frame(NOTAG, Body::Tversion { msize, version }), true);
        let plain = self.conns[i].dialect == Some(Dialect::P2000);
        let n_uname = (!plain).then_some(0);
        let aname = if self.config.insecure {
            ""
        } else {
            rng.pick(&token_anames()[..4]).as_str()
        };
        if !self.config.insecure && rng.one_in(3) {
            // The token through an auth fid (cap(3)).
            let token = aname.rsplit('=').next().unwrap_or_default().as_bytes();
            self.send(
                i,
                &frame(
                    0,
                    Body::Tauth {
                        afid: 8,
                        uname: "u",
                        aname: "auth=cap",
                        n_uname,
                    },
                ),
                true,
            );
            self.send(
                i,
                &frame(
                    0,
                    Body::Twrite {
                        fid: 8,
                        offset: 0,
                        data: token,
                    },
                ),
                true,
            );
            self.send(
                i,
                &frame(
                    0,
                    Body::Tattach {
                        fid: 0,
                        afid: 8,
                        uname: "u",
                        aname: "",
                        n_uname,
                    },
                ),
                true,
            );
        } else {
            self.send(
                i,
                &frame(
                    0,
                    Body::Tattach {
                        fid: 0,
                        afid: NOFID,
                        uname: "u",
                        aname,
                        n_uname,
                    },
                ),
                true,
            );
        }
        if rng.one_in(2) {
            for (dir, name) in [("chan", "x"), ("agent", "a")] {
                let wnames = Names::from_slice(&[dir]).unwrap();
                self.send(
                    i,
                    &frame(
                        0,
                        Body::Twalk {
                            fid: 0,
                            newfid: 9,
                            wnames,
                        },
                    ),
                    true,
                );
                self.send(
                    i,
                    &frame(
                        0,
                        Body::Tmkdir {
                            dfid: 9,
                            name,
                            mode: 0o755,
                            gid: 0,
                        },
                    ),
                    true,
                );
                self.send(i, &frame(0, Body::Tclunk { fid: 9 }), true);
            }
        }
    }

    /// Read `/status` on connection `i` (which has not spoken yet).
    fn probe_status(&mut self, i: usize) -> String {
        let id = self.conns[i].id;
        let aname = if self.config.insecure {
            ""
        } else {
            token_anames()[0].as_str()
        };
        let reqs = [
            frame(
                NOTAG,
                Body::Tversion {
                    msize: 8192,
                    version: "9P2000",
                },
            ),
            frame(
                1,
                Body::Tattach {
                    fid: 0,
                    afid: NOFID,
                    uname: "u",
                    aname,
                    n_uname: None,
                },
            ),
            frame(
                1,
                Body::Twalk {
                    fid: 0,
                    newfid: 1,
                    wnames: Names::from_slice(&["status"]).unwrap(),
                },
            ),
            frame(1, Body::Topen { fid: 1, mode: 0 }),
            frame(
                1,
                Body::Tread {
                    fid: 1,
                    offset: 0,
                    count: 4096,
                },
            ),
        ];
        let mut last = Vec::new();
        for r in &reqs {
            self.out.clear();
            self.s.handle(id, r, &mut self.out);
            self.s.poll(&mut self.out);
            last = self
                .out
                .frames()
                .map(|(_, f)| f.to_vec())
                .next()
                .unwrap_or_default();
        }
        match ninep::decode(&last, Dialect::P2000) {
            Ok(Msg {
                body: Body::Rread { data },
                ..
            }) => String::from_utf8_lossy(data).into_owned(),
            other => fail(&self.sent, format!("cannot read /status: {other:?}")),
        }
    }
}

/// Run one sequence; returns the frames handled.
pub fn unit(_: u64, rng: &mut Rng) -> u64 {
    let mut run = Run::new(rng);
    let mut p = Parts::default();
    let nconns = 1 + rng.below(4);
    for _ in 0..nconns {
        run.connect();
    }
    for i in 0..nconns {
        run.hello(rng, i);
    }
    let len = 8 + rng.below(120);
    for _ in 0..len {
        match rng.below(64) {
            0 => {
                // A connection goes, another comes.
                let open: Vec<usize> = (0..run.conns.len())
                    .filter(|&i| run.conns[i].open)
                    .collect();
                if let Some(&i) = open.get(rng.below(open.len().max(1))) {
                    run.close(i);
                }
                let i = run.connect();
                run.hello(rng, i);
                continue;
            }
            1 => {
                let s = run.s.log_mut();
                s.hold = !s.hold;
                continue;
            }
            3..=14 => {
                // What a client does most: walk to a file, open it, read
                // or write it, and perhaps clunk it.
                let open: Vec<usize> = (0..run.conns.len())
                    .filter(|&i| run.conns[i].open)
                    .collect();
                if let Some(&i) = open.get(rng.below(open.len().max(1))) {
                    run.script(rng, i);
                }
                continue;
            }
            2 => {
                // Time passes: seconds, or a day.
                let step = if rng.one_in(4) {
                    86_400_000_000_000
                } else {
                    rng.below(5_000) as u64 * 1_000_000
                };
                run.clock.0.set(run.clock.0.get() + step);
                run.poll();
                continue;
            }
            _ => {}
        }
        let open: Vec<usize> = (0..run.conns.len())
            .filter(|&i| run.conns[i].open)
            .collect();
        let Some(&i) = open.get(rng.below(open.len().max(1))) else {
            run.connect();
            continue;
        };
        let m = &run.conns[i];
        let dialect = m.dialect.unwrap_or_default();
        let msize = m.msize;
        let mut tag = rng.below(8) as u16;
        // Mostly a tag not in use, as a sane client would; never one the
        // server may or may not still hold.
        let sane = !rng.one_in(16);
        while (sane && m.waiting.contains_key(&tag)) || m.quiet.contains(&tag) {
            tag = tag.wrapping_add(1);
        }
        let body = request(rng, &mut p, dialect, msize);
        let mut f = Vec::new();
        if ninep::encode(&Msg { tag, body }, &mut f).is_err() {
            continue;
        }
        if rng.one_in(8) {
            let other = f.clone();
            mutate(rng, &mut f, &other, 3);
            // A mutated tag may name a quiet request, which the server may
            // or may not still hold: the model cannot tell, so skip it.
            let quiet = &run.conns[i].quiet;
            if f.len() >= 7 && quiet.contains(&u16::from_le_bytes([f[5], f[6]])) {
                continue;
            }
        }
        // Several requests in one turn now and then, as a busy
        // transport hands them over.
        run.send(i, &f, !rng.one_in(4));
    }
    run.finish();
    run.frames
}

/// The frames the failed sequence sent, one a line (`conn N: HEX`; long
/// frames cut at 2 KiB).
pub fn describe(_: u64, _: &mut Rng) -> String {
    LAST.with(|l| {
        let mut text = String::new();
        for (c, f) in l.borrow().iter() {
            let cut = &f[..f.len().min(2048)];
            let more = if cut.len() < f.len() { "…" } else { "" };
            text.push_str(&format!("conn {c}: {}{more}\n", hex(cut)));
        }
        text
    })
}
