//! Agents through the server core: mkdir, ctl verbs, the files, spawn,
//! removal, capabilities bounding intents, and replay. See agent(3).

mod common;

use std::cell::Cell;
use std::rc::Rc;

use cellfs::cap::{Claims, NodeKey, Rights, Token};
use cellfs::{Config, ConnId, Outbox, Server};
use common::{TestClock, TestLog};
use ninep::{Body, Dialect, Msg, NOFID, Names};

const NOW: u64 = 1_700_000_000;

fn key() -> NodeKey {
    NodeKey::from_seed(&[7; 32])
}

struct Node {
    server: Server<TestLog, TestClock>,
    log: TestLog,
    time: Rc<Cell<u64>>,
    out: Outbox,
}

impl Node {
    fn new() -> Node {
        Node::with(TestLog::default(), key())
    }

    fn with(log: TestLog, key: NodeKey) -> Node {
        let time = Rc::new(Cell::new(NOW));
        let config = Config::new("test", key);
        let mut server = Server::new(config, log.clone(), TestClock(time.clone()));
        let mut out = Outbox::new();
        server.poll(&mut out);
        Node {
            server,
            log,
            time,
            out,
        }
    }

    fn frames(&mut self, conn: ConnId, body: Body<'_>) -> Vec<Vec<u8>> {
        let mut frame = Vec::new();
        ninep::encode(&Msg { tag: 1, body }, &mut frame).unwrap();
        self.out.clear();
        self.server.handle(conn, &frame, &mut self.out);
        self.server.poll(&mut self.out);
        self.out.frames().map(|(_, f)| f.to_vec()).collect()
    }

    fn call(&mut self, conn: ConnId, body: Body<'_>) -> String {
        let frames = self.frames(conn, body);
        assert_eq!(frames.len(), 1);
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
                version: "9P2000.u",
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

    fn walk(&mut self, c: ConnId, newfid: u32, path: &str) -> String {
        let mut wnames = Names::new();
        for p in path.split('/').filter(|p| !p.is_empty()) {
            wnames.push(p).unwrap();
        }
        self.call(
            c,
            Body::Twalk {
                fid: 0,
                newfid,
                wnames,
            },
        )
    }

    /// Walk to `path` into `fid` and open it with `mode`; the error if
    /// either fails (the fid is then free again).
    fn open(&mut self, c: ConnId, fid: u32, path: &str, mode: u8) -> String {
        let w = self.walk(c, fid, path);
        if w != "Rwalk" {
            return w;
        }
        let o = self.call(c, Body::Topen { fid, mode });
        if o != "Ropen" {
            self.call(c, Body::Tclunk { fid });
        }
        o
    }

    fn cat(&mut self, c: ConnId, path: &str) -> String {
        let o = self.open(c, 90, path, 0);
        if o != "Ropen" {
            return o;
        }
        let text = self.call(
            c,
            Body::Tread {
                fid: 90,
                offset: 0,
                count: 4096,
            },
        );
        self.call(c, Body::Tclunk { fid: 90 });
        text.strip_prefix("Rread ")
            .map_or(text.clone(), String::from)
    }

    /// Write `text` to the file at `path`.
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
        assert_eq!(self.walk(c, 80, dir), "Rwalk");
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

    fn rm(&mut self, c: ConnId, path: &str) -> String {
        let w = self.walk(c, 81, path);
        if w != "Rwalk" {
            return w;
        }
        // Tremove clunks the fid whatever the outcome.
        self.call(c, Body::Tremove { fid: 81 })
    }

    /// The names in directory `path`.
    fn ls(&mut self, c: ConnId, path: &str) -> Vec<String> {
        assert_eq!(self.open(c, 92, path, 0), "Ropen");
        let frames = self.frames(
            c,
            Body::Tread {
                fid: 92,
                offset: 0,
                count: 8192,
            },
        );
        let Body::Rread { data } = ninep::decode(&frames[0], Dialect::U).unwrap().body else {
            panic!("ls {path}")
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

    /// The whole of the file at `path`, however many reads it takes.
    fn cat_all(&mut self, c: ConnId, path: &str) -> String {
        assert_eq!(self.open(c, 93, path, 0), "Ropen");
        let mut text = String::new();
        loop {
            let r = self.call(
                c,
                Body::Tread {
                    fid: 93,
                    offset: text.len() as u64,
                    count: 4096,
                },
            );
            let chunk = r.strip_prefix("Rread ").expect(&r).to_string();
            if chunk.is_empty() {
                break;
            }
            text.push_str(&chunk);
        }
        self.call(c, Body::Tclunk { fid: 93 });
        text
    }

    /// Attach a new connection with `token`: the reply.
    fn attach(&mut self, token: &Token) -> String {
        let c = self.server.connect();
        self.call(
            c,
            Body::Tversion {
                msize: 8192,
                version: "9P2000.u",
            },
        );
        let aname = format!("token={}", token.to_text());
        self.call(
            c,
            Body::Tattach {
                fid: 0,
                afid: NOFID,
                uname: "u",
                aname: &aname,
                n_uname: Some(0),
            },
        )
    }

    /// Open `/events` on fid 95 (from its current end).
    fn follow_events(&mut self, c: ConnId) {
        assert_eq!(self.open(c, 95, "events", 0), "Ropen");
    }

    /// What happened since [`Node::follow_events`] (or the last call).
    fn events(&mut self, c: ConnId) -> String {
        let r = self.call(
            c,
            Body::Tread {
                fid: 95,
                offset: 0,
                count: 8000,
            },
        );
        r.strip_prefix("Rread ").expect(&r).to_string()
    }

    /// The value of `key` in the status file at `path`.
    fn stat_of(&mut self, c: ConnId, path: &str, key: &str) -> String {
        let text = self.cat(c, path);
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {key} in {text}"))
            .to_string()
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

/// A node with an owner connection.
fn setup() -> (Node, ConnId) {
    let mut n = Node::new();
    let o = n.client(&owner());
    (n, o)
}

#[test]
fn mkdir_makes_an_agent_with_its_files_and_key() {
    let (mut n, o) = setup();
    assert!(n.ls(o, "/").contains(&"agent".to_string()));
    assert_eq!(n.mkdir(o, "agent", "a"), "Rcreate");
    assert_eq!(n.ls(o, "agent"), ["a"]);
    assert_eq!(
        n.ls(o, "agent/a"),
        [
            "children", "ctl", "intent", "key", "log", "spec", "status", "trace"
        ]
    );
    let status = n.cat(o, "agent/a/status");
    assert_eq!(
        status,
        format!(
            "name a\nstate created\nwant stopped\npid -\nnode -\nrestarts 0\nlast-exit -\nsince {NOW}\ncreated {NOW}\nparent -\nexec -\nenv -\npolicy never max=5 window=60s\nlimits cpu=100 mem=512M pids=256\ndrift -\ndrift-at -\nreason -\nrunner -\nresumes 0\nmade-by -\ntree a agents=1 quota=64\nsandbox none\nplaced -\nepoch 0\nplaced-at -\nplace spread\nmove-to -\n"
        )
    );
    let k = n.cat(o, "agent/a/key");
    assert_eq!(k.len(), 65, "{k}");
    assert!(k.ends_with('\n'));
    assert!(
        k[..64]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    for empty in ["intent", "log", "trace", "children"] {
        assert_eq!(n.cat(o, &format!("agent/a/{empty}")), "", "{empty}");
    }
    // A second agent gets another key; the same name again is refused.
    assert_eq!(n.mkdir(o, "agent", "b"), "Rcreate");
    assert_ne!(n.cat(o, "agent/b/key"), k);
    assert_eq!(n.mkdir(o, "agent", "a"), "Rerror agent a already exists");
    let bad = n.mkdir(o, "agent", ".hidden");
    assert!(
        bad.starts_with("Rerror bad name: agent \".hidden\""),
        "{bad}"
    );
    // The journal shows the public key, never the seed.
    let log = n.cat(o, "raft/log");
    assert!(
        log.contains(&format!("mkdir /agent/a key={}", &k[..64])),
        "{log}"
    );
}

#[test]
fn ctl_verbs_show_in_status_and_intent() {
    let (mut n, o) = setup();
    n.mkdir(o, "agent", "w");
    n.time.set(NOW + 5);
    let w = n.put(
        o,
        "agent/w/ctl",
        "exec /usr/bin/worker --queue jobs\nenv QUEUE=jobs\nenv HOME=/tmp\nintent rw /chan/jobs r /cap\nlimit cpu=50 mem=256M pids=64\nrestart policy=on-failure max=3 window=2m\nstart\n",
    );
    assert_eq!(w, "Rwrite");
    let s = n.cat(o, "agent/w/status");
    for line in [
        "state pending\n",
        "want running\n",
        &format!("since {}\n", NOW + 5),
        &format!("created {NOW}\n"),
        "exec /usr/bin/worker --queue jobs\n",
        "env HOME QUEUE\n",
        "policy on-failure max=3 window=120s\n",
        "limits cpu=50 mem=256M pids=64\n",
    ] {
        assert!(s.contains(line), "{line:?} in {s}");
    }
    assert!(
        !s.contains("jobs\nenv QUEUE=jobs"),
        "env values are not shown"
    );
    assert_eq!(n.cat(o, "agent/w/intent"), "r /cap\nrw /chan/jobs\n");
    n.time.set(NOW + 9);
    assert_eq!(n.put(o, "agent/w/ctl", "env QUEUE=\nkill"), "Rwrite");
    assert_eq!(n.stat_of(o, "agent/w/status", "state"), "stopped");
    assert_eq!(n.stat_of(o, "agent/w/status", "want"), "killed");
    assert_eq!(
        n.stat_of(o, "agent/w/status", "since"),
        (NOW + 9).to_string()
    );
    assert_eq!(n.stat_of(o, "agent/w/status", "env"), "HOME");
    assert_eq!(n.put(o, "agent/w/ctl", "limit cpu=max"), "Rwrite");
    assert_eq!(
        n.stat_of(o, "agent/w/status", "limits"),
        "cpu=max mem=256M pids=64"
    );
    let log = n.cat(o, "raft/log");
    assert!(
        log.contains("/agent/w/ctl exec /usr/bin/worker --queue jobs; env QUEUE=…; env HOME=…; intent r /cap rw /chan/jobs;"),
        "{log}"
    );
    assert!(log.contains("/agent/w/ctl env QUEUE=; kill"), "{log}");
}

#[test]
fn bad_input_is_refused_whole_and_changes_nothing() {
    let (mut n, o) = setup();
    n.mkdir(o, "agent", "a");
    let before = n.cat(o, "agent/a/status");
    let entries = n.log.entries().len();
    for (write, error) in [
        (
            "exec /bin/x\nqoss",
            "Rerror agent a: unknown verb \"qoss\"; expected exec, env, intent, limit, restart, start, stop, kill, spawn, report, stderr, log, place, move, epoch",
        ),
        (
            "exec bin/x",
            "Rerror agent a: exec: \"bin/x\" is not a program's absolute path",
        ),
        (
            "exec /bin/x\nlimit cpu=0",
            "Rerror agent a: limit: cpu=\"0\" is out of range: 1 to 10000 percent of one CPU, or max for no limit",
        ),
        (
            "limit mem=10",
            "Rerror agent a: limit: mem=\"10\" is out of range: 1M to 1T",
        ),
        (
            "restart policy=maybe",
            "Rerror agent a: restart: policy=\"maybe\": expected always, on-failure or never",
        ),
        (
            "env 9LIVES=x",
            "Rerror agent a: env: \"9LIVES\" is not a variable name",
        ),
        (
            "intent rwx /chan",
            "Rerror agent a: intent: \"rwx\": 'x' is not a right",
        ),
        (
            "env A=b\nstart",
            "Rerror agent a: start: there is no program to run; write 'exec PATH [ARG…]' first",
        ),
        ("spawn a", "Rerror agent a: spawn: agent a already exists"),
        (
            "spawn x\nspawn x",
            "Rerror agent a: spawn: agent x already exists",
        ),
    ] {
        let got = n.put(o, "agent/a/ctl", write);
        assert!(got.starts_with(error), "{write:?}: {got}");
    }
    assert_eq!(n.cat(o, "agent/a/status"), before);
    assert_eq!(n.ls(o, "agent"), ["a"]);
    assert_eq!(n.log.entries().len(), entries, "nothing was proposed");
    // Files other than ctl are read-only; ctl is write-only; nothing but
    // agents can be made.
    assert!(
        n.put(o, "agent/a/status", "x")
            .starts_with("Rerror agent a: only ctl")
    );
    assert!(
        n.cat(o, "agent/a/ctl")
            .starts_with("Rerror agent a: ctl is write-only")
    );
    let f = n.mkdir(o, "agent/a", "x");
    assert!(f.contains("make sub-agents with 'spawn x'"), "{f}");
}

#[test]
fn spawn_makes_a_narrower_child_and_removal_keeps_no_orphans() {
    let (mut n, o) = setup();
    n.mkdir(o, "agent", "boss");
    assert_eq!(n.put(o, "agent/boss/ctl", "intent rw /chan"), "Rwrite");
    assert_eq!(
        n.put(o, "agent/boss/ctl", "spawn w1\nspawn w2 r /chan/jobs"),
        "Rwrite"
    );
    assert_eq!(n.ls(o, "agent"), ["boss", "w1", "w2"]);
    assert_eq!(n.cat(o, "agent/boss/children"), "w1\nw2\n");
    assert_eq!(n.cat(o, "agent/w1/intent"), "rw /chan\n", "the parent's");
    assert_eq!(n.cat(o, "agent/w2/intent"), "r /chan/jobs\n");
    assert_eq!(n.stat_of(o, "agent/w2/status", "parent"), "boss");
    let keys: Vec<String> = ["boss", "w1", "w2"]
        .iter()
        .map(|a| n.cat(o, &format!("agent/{a}/key")))
        .collect();
    assert!(keys[0] != keys[1] && keys[1] != keys[2] && keys[0] != keys[2]);
    // Wider than the parent: refused, nothing made.
    let wide = n.put(o, "agent/boss/ctl", "spawn w3 rw /cap");
    assert!(
        wide.starts_with(
            "Rerror agent boss: spawn w3: \"rw /cap\" is wider than boss's intent (rw /chan)"
        ),
        "{wide}"
    );
    let up = n.put(o, "agent/w2/ctl", "intent rwc /chan/jobs");
    assert!(
        up.contains("wider than the intent of its parent boss"),
        "{up}"
    );
    let narrow = n.put(o, "agent/boss/ctl", "intent r /chan");
    assert!(
        narrow.contains("its sub-agent w1 holds \"rw /chan\""),
        "{narrow}"
    );
    assert_eq!(n.ls(o, "agent"), ["boss", "w1", "w2"]);
    // A parent goes only after its children; rm -r of a child's files
    // changes nothing.
    let busy = n.rm(o, "agent/boss");
    assert!(
        busy.starts_with("Rerror agent boss: it has sub-agents (w1, w2); remove them first"),
        "{busy}"
    );
    assert_eq!(n.rm(o, "agent/w1/status"), "Rremove");
    assert_eq!(n.put(o, "agent/w2/ctl", "exec /bin/true\nstart"), "Rwrite");
    let running = n.rm(o, "agent/w2");
    assert!(
        running.contains("wanted running; write 'stop'"),
        "{running}"
    );
    assert_eq!(n.put(o, "agent/w2/ctl", "stop"), "Rwrite");
    assert_eq!(n.rm(o, "agent/w1"), "Rremove");
    assert_eq!(n.rm(o, "agent/w2"), "Rremove");
    assert_eq!(n.cat(o, "agent/boss/children"), "");
    assert_eq!(n.rm(o, "agent/boss"), "Rremove");
    assert!(n.ls(o, "agent").is_empty());
    assert!(n.rm(o, "agent").starts_with("Rerror cannot remove /agent"));
}

#[test]
fn an_intent_is_never_wider_than_the_writers_capability() {
    let (mut n, o) = setup();
    n.mkdir(o, "agent", "a");
    // Reaches everything, but may only read and write.
    let rw = key().mint(claims(1, "alice", "/", "rw")).unwrap();
    let c = n.client(&rw);
    assert_eq!(n.put(c, "agent/a/ctl", "intent rw /chan/jobs"), "Rwrite");
    let wide = n.put(c, "agent/a/ctl", "intent rwc /chan/jobs");
    assert_eq!(
        wide,
        "Rerror agent a: intent: \"rwc /chan/jobs\" is beyond capability 'alice' (scope /, rights rw); an intent may not be wider than the capability that declares it"
    );
    // Spawning is creating: it needs the create right, as mkdir would.
    let spawn = n.put(c, "agent/a/ctl", "spawn b");
    assert!(spawn.contains("lacks the create right"), "{spawn}");
    // Scoped to the agent itself: an intent outside that scope is refused.
    let own = key().mint(claims(2, "a", "/agent/a", "rwc")).unwrap();
    let d = n.client(&own);
    let out = n.put(d, "ctl", "intent r /chan/jobs");
    assert!(
        out.contains("is beyond capability 'a' (scope /agent/a"),
        "{out}"
    );
    assert_eq!(n.put(d, "ctl", "intent r /agent/a"), "Rwrite");
    let spawn = n.put(d, "ctl", "spawn b");
    assert!(spawn.contains("does not reach /agent/b"), "{spawn}");
    assert_eq!(n.cat(o, "agent/a/intent"), "r /agent/a\n");
}

#[test]
fn agents_survive_replay_with_the_same_keys_on_every_replica() {
    let (mut n, o) = setup();
    n.mkdir(o, "agent", "p");
    n.put(
        o,
        "agent/p/ctl",
        "exec /bin/sleep 60\nintent r /chan\nspawn c\nstart",
    );
    let files = |n: &mut Node, c: ConnId| -> Vec<String> {
        [
            "p/status",
            "p/key",
            "p/intent",
            "p/children",
            "c/key",
            "c/status",
        ]
        .iter()
        .map(|f| n.cat(c, &format!("agent/{f}")))
        .collect()
    };
    let before = files(&mut n, o);
    // A restart of this node, and a replica with another key, apply the
    // same log: the same agents, with the same keys.
    for node_key in [key(), NodeKey::from_seed(&[8; 32])] {
        let mut m = Node::with(n.log.reopened(), node_key.clone());
        let t = node_key.mint(claims(0, "owner", "/", "rwcda")).unwrap();
        let c = m.client(&t);
        assert_eq!(files(&mut m, c), before);
    }
}

/// A node with channels `in` (holding one message) and `out`, and agent
/// `a` running with intent `r /chan/in`; its capability (holder
/// `agent/a`, scope /, rights rw, as a runner mints one).
fn with_agent() -> (Node, ConnId, Token) {
    let (mut n, o) = setup();
    assert_eq!(n.mkdir(o, "chan", "in"), "Rcreate");
    assert_eq!(n.mkdir(o, "chan", "out"), "Rcreate");
    assert_eq!(n.put(o, "chan/in/data", "job 1"), "Rwrite");
    n.mkdir(o, "agent", "a");
    let w = n.put(
        o,
        "agent/a/ctl",
        "exec /bin/worker\nintent r /chan/in\nstart\nreport running pid=42 node=n1",
    );
    assert_eq!(w, "Rwrite");
    let t = key().mint(claims(5, "agent/a", "/", "rw")).unwrap();
    (n, o, t)
}

#[test]
fn an_agent_sees_only_its_intent_and_is_halted_when_it_drifts() {
    let (mut n, o, t) = with_agent();
    let a = n.client(&t);
    n.follow_events(o);
    // Within its intent, and the way to it.
    assert_eq!(n.cat(a, "chan/in/data"), "job 1");
    assert_eq!(n.ls(a, "/"), ["chan"]);
    assert_eq!(n.ls(a, "chan"), ["in"]);
    assert!(n.ls(a, "chan/in").contains(&"data".to_string()));
    assert_eq!(n.stat_of(o, "agent/a/status", "state"), "running");
    // A write inside what it sees, but outside what it may do: refused,
    // and the agent is halted.
    n.time.set(NOW + 7);
    let w = n.put(a, "chan/in/data", "forged");
    assert_eq!(
        w,
        "Rerror agent a: write /chan/in/data is outside its intent (r /chan/in); it is halted (halted-drift) until 'start' is written to /agent/a/ctl"
    );
    assert_eq!(n.stat_of(o, "agent/a/status", "state"), "halted-drift");
    assert_eq!(n.stat_of(o, "agent/a/status", "want"), "stopped");
    assert_eq!(
        n.stat_of(o, "agent/a/status", "drift"),
        "write /chan/in/data"
    );
    assert_eq!(
        n.stat_of(o, "agent/a/status", "drift-at"),
        (NOW + 7).to_string()
    );
    let trace = n.cat(o, "agent/a/trace");
    assert_eq!(
        trace,
        format!(
            "drift {t} write /chan/in/data\n  intent r /chan/in\n  op {NOW} read /chan/in/data\n  before {NOW} read /chan/in/data seq=1\n",
            t = NOW + 7
        )
    );
    let events = n.events(o);
    assert!(
        events.contains(
            " drift agent a: write /chan/in/data is outside its intent (r /chan/in); halted until start\n"
        ),
        "{events}"
    );
    assert!(
        n.cat(o, "raft/log")
            .contains("/agent/a drift write /chan/in/data\n")
    );
    // Everything it asks now is refused, however harmless.
    let halted = format!(
        "Rerror agent a is halted for drift (write /chan/in/data at {}): nothing it asks is done until 'start' is written to /agent/a/ctl",
        NOW + 7
    );
    assert_eq!(n.cat(a, "chan/in/data"), halted);
    assert_eq!(n.walk(a, 60, "chan"), halted);
    assert_eq!(n.attach(&t), halted);
    // Until its owner starts it again.
    assert_eq!(n.put(o, "agent/a/ctl", "start"), "Rwrite");
    assert_eq!(n.stat_of(o, "agent/a/status", "state"), "pending");
    assert_eq!(n.stat_of(o, "agent/a/status", "drift"), "-");
    assert_eq!(n.ls(a, "chan"), ["in"]);
    // Walking where it cannot see is drift too, whether the name exists
    // or not.
    let w = n.walk(a, 61, "chan/out");
    assert!(
        w.starts_with("Rerror agent a: walk /chan/out is outside its intent (r /chan/in)"),
        "{w}"
    );
    assert_eq!(n.stat_of(o, "agent/a/status", "drift"), "walk /chan/out");
    assert_eq!(n.put(o, "agent/a/ctl", "start"), "Rwrite");
    let w = n.walk(a, 61, "cap/nothing/here");
    assert!(w.contains("walk /cap is outside its intent"), "{w}");
    let trace = n.cat(o, "agent/a/trace");
    assert_eq!(trace.matches("\ndrift ").count(), 2, "{trace}");
    assert!(trace.contains("  before "), "{trace}");
}

#[test]
fn a_new_intent_applies_at_once_and_other_holders_are_unaffected() {
    let (mut n, o, t) = with_agent();
    let a = n.client(&t);
    assert_eq!(
        n.put(o, "agent/a/ctl", "intent r /chan/in w /chan/out/data"),
        "Rwrite"
    );
    assert_eq!(n.ls(a, "chan"), ["in", "out"]);
    assert_eq!(n.ls(a, "chan/out"), ["data"]);
    assert_eq!(n.put(a, "chan/out/data", "done 1"), "Rwrite");
    assert_eq!(n.stat_of(o, "agent/a/status", "state"), "running");
    // Holders that are not agents: as before.
    let alice = key().mint(claims(6, "alice", "/", "rw")).unwrap();
    let c = n.client(&alice);
    assert!(n.ls(c, "/").len() > 2);
    assert_eq!(n.put(c, "chan/in/data", "job 2"), "Rwrite");
    assert!(n.cat(c, "cap/ctl").starts_with("Rerror"), "write-only");
    assert_eq!(n.stat_of(o, "agent/a/status", "state"), "running");
    // An agent's capability without its agent opens nothing.
    let ghost = key().mint(claims(7, "agent/ghost", "/", "rw")).unwrap();
    assert_eq!(
        n.attach(&ghost),
        "Rerror capability 'agent/ghost' is agent ghost's, and there is no agent ghost"
    );
    // An empty intent sees nothing.
    assert_eq!(n.put(o, "agent/a/ctl", "intent none"), "Rwrite");
    let r = n.open(a, 62, "/", 0);
    assert!(r.contains("read / is outside its intent (none)"), "{r}");
}

#[test]
fn a_runner_reports_through_ctl_into_status_trace_and_log() {
    let (mut n, o, t) = with_agent();
    let a = n.client(&t);
    assert_eq!(n.cat(a, "chan/in/data"), "job 1");
    // Without the admin right: refused, nothing changed.
    let alice = key().mint(claims(6, "alice", "/", "rw")).unwrap();
    let c = n.client(&alice);
    let before = n.cat(o, "agent/a/status");
    let entries = n.log.entries().len();
    for (write, error) in [
        (
            "report exit code=1",
            "Rerror report /agent/a/ctl: capability 'alice' (scope /, rights rw) lacks the admin right",
        ),
        (
            "log hello",
            "Rerror log /agent/a/ctl: capability 'alice' (scope /, rights rw) lacks the admin right",
        ),
    ] {
        assert_eq!(n.put(c, "agent/a/ctl", write), error);
    }
    // Bad syntax: a clear error, nothing changed.
    for (write, error) in [
        (
            "report runing",
            "Rerror agent a: report: unknown state \"runing\"; expected running, exit, crashloop, failed, stopped, claim, release, resumed",
        ),
        (
            "report exit code=1\nreport exit code=nine",
            "Rerror agent a: report: exit: code=\"nine\" is not an exit status (0 to 255)",
        ),
        (
            "stderr boom",
            "Rerror agent a: stderr: a stderr line must follow a 'report exit' line (or another stderr line) in the same write",
        ),
    ] {
        assert_eq!(n.put(o, "agent/a/ctl", write), error);
    }
    assert_eq!(n.cat(o, "agent/a/status"), before);
    assert_eq!(n.log.entries().len(), entries, "nothing was proposed");
    // An exit with the last lines of its stderr.
    n.time.set(NOW + 3);
    let w = n.put(
        o,
        "agent/a/ctl",
        "report exit code=3 restarting=yes\nstderr panic: boom\nstderr   at main.rs:3",
    );
    assert_eq!(w, "Rwrite");
    let status = |n: &mut Node, k: &str| n.stat_of(o, "agent/a/status", k);
    assert_eq!(status(&mut n, "state"), "exited");
    assert_eq!(status(&mut n, "restarts"), "1");
    assert_eq!(status(&mut n, "last-exit"), "code=3");
    assert_eq!(status(&mut n, "pid"), "-");
    assert_eq!(status(&mut n, "node"), "n1");
    assert_eq!(
        n.cat(o, "agent/a/trace"),
        format!(
            "exit {t} code=3 restarting=yes pid=42 node=n1\n  stderr panic: boom\n  stderr at main.rs:3\n  op {NOW} read /chan/in/data\n  before {NOW} read /chan/in/data seq=1\n",
            t = NOW + 3
        )
    );
    // Restarted, killed by a signal, given up on.
    n.time.set(NOW + 4);
    let w = n.put(
        o,
        "agent/a/ctl",
        "report running pid=43 node=n2\nreport exit signal=SEGV restarting=yes\nreport crashloop",
    );
    assert_eq!(w, "Rwrite");
    assert_eq!(status(&mut n, "state"), "crashloop");
    assert_eq!(status(&mut n, "restarts"), "2");
    assert_eq!(status(&mut n, "last-exit"), "signal=SEGV");
    let trace = n.cat(o, "agent/a/trace");
    assert!(
        trace.ends_with(&format!(
            "\n\nexit {} signal=SEGV restarting=yes pid=43 node=n2\n  before {NOW} read /chan/in/data seq=1\n",
            NOW + 4
        )),
        "{trace}"
    );
    // Start clears it back to pending; a failure keeps its reason.
    assert_eq!(n.put(o, "agent/a/ctl", "start"), "Rwrite");
    assert_eq!(status(&mut n, "state"), "pending");
    assert_eq!(
        n.put(
            o,
            "agent/a/ctl",
            "report failed no such program: /bin/worker"
        ),
        "Rwrite"
    );
    assert_eq!(status(&mut n, "state"), "failed");
    assert_eq!(status(&mut n, "reason"), "no such program: /bin/worker");
    assert_eq!(n.put(o, "agent/a/ctl", "report stopped"), "Rwrite");
    assert_eq!(status(&mut n, "state"), "stopped");
    // The log keeps the last 1000 lines.
    for batch in 0..11 {
        let text: String = (0..100)
            .map(|i| format!("log line {}\n", batch * 100 + i))
            .collect();
        assert_eq!(n.put(o, "agent/a/ctl", &text), "Rwrite");
    }
    let log = n.cat_all(o, "agent/a/log");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 1000);
    assert_eq!(lines[0], "line 100");
    assert_eq!(lines[999], "line 1099");
    // The journal has the reports, never the output or stderr.
    let journal = n.cat_all(o, "raft/log");
    assert!(
        journal.contains("/agent/a/ctl report exit code=3 restarting=yes stderr=2 lines\n"),
        "{journal}"
    );
    assert!(journal.contains("/agent/a/ctl log 100 lines\n"));
    assert!(!journal.contains("boom") && !journal.contains("line 5"));
    // Restarting the node replays all of it.
    let files = |n: &mut Node, c: ConnId| -> Vec<String> {
        ["status", "trace", "log"]
            .iter()
            .map(|f| n.cat_all(c, &format!("agent/a/{f}")))
            .collect()
    };
    let before = files(&mut n, o);
    let mut m = Node::with(n.log.reopened(), key());
    let c = m.client(&owner());
    assert_eq!(files(&mut m, c), before);
}

#[test]
fn an_agent_declares_and_administers_only_within_its_intent() {
    let (mut n, o, _) = with_agent();
    let w = n.put(
        o,
        "agent/a/ctl",
        "intent r /chan/in w /agent/a/ctl c /agent/helper",
    );
    assert_eq!(w, "Rwrite");
    let all = key().mint(claims(8, "agent/a", "/", "rwcda")).unwrap();
    let a = n.client(&all);
    // Its own ctl: no wider intent, even within its capability.
    let wide = n.put(a, "agent/a/ctl", "intent rw /chan/in");
    assert_eq!(
        wide,
        "Rerror agent a: intent: \"rw /chan/in\" is beyond the intent of agent a (w /agent/a/ctl c /agent/helper r /chan/in); an agent may not declare more than it may do"
    );
    assert_eq!(
        n.put(a, "agent/a/ctl", "intent r /chan/in w /agent/a/ctl"),
        "Rwrite"
    );
    assert_eq!(n.stat_of(o, "agent/a/status", "state"), "running");
    // Reporting on itself needs the admin right there: drift.
    let r = n.put(a, "agent/a/ctl", "report running pid=1 node=x");
    assert!(
        r.starts_with("Rerror agent a: report /agent/a/ctl is outside its intent"),
        "{r}"
    );
    assert_eq!(
        n.stat_of(o, "agent/a/status", "drift"),
        "report /agent/a/ctl"
    );
    // Minting a capability is administering its scope.
    assert_eq!(
        n.put(o, "agent/a/ctl", "start\nintent w /cap/ctl"),
        "Rwrite"
    );
    let m = n.put(a, "cap/ctl", "mint holder=x scope=/ rights=r ttl=1h");
    assert!(
        m.starts_with("Rerror agent a: mint / is outside its intent (w /cap/ctl)"),
        "{m}"
    );
    assert_eq!(n.stat_of(o, "agent/a/status", "state"), "halted-drift");
}

#[test]
fn a_drift_survives_replay() {
    let (mut n, o, t) = with_agent();
    let a = n.client(&t);
    assert!(
        n.walk(a, 60, "cap")
            .starts_with("Rerror agent a: walk /cap")
    );
    let before: Vec<String> = ["status", "trace"]
        .iter()
        .map(|f| n.cat(o, &format!("agent/a/{f}")))
        .collect();
    let mut m = Node::with(n.log.reopened(), key());
    let c = m.client(&owner());
    let after: Vec<String> = ["status", "trace"]
        .iter()
        .map(|f| m.cat(c, &format!("agent/a/{f}")))
        .collect();
    assert_eq!(after, before);
    assert!(after[0].contains("state halted-drift\n"));
    // Still halted after the restart.
    assert_eq!(
        m.attach(&t),
        format!(
            "Rerror agent a is halted for drift (walk /cap at {NOW}): nothing it asks is done until 'start' is written to /agent/a/ctl"
        )
    );
}

#[test]
fn the_manual_lists_every_verb() {
    let page = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../man/man3/agent.3"),
    )
    .expect("man/man3/agent.3");
    for v in cellfs::agent::CTL_VERBS {
        assert!(
            page.contains(&format!(".BI \"{} ", v.name))
                || page.contains(&format!(".B {}\n", v.name)),
            "agent(3) does not document ctl verb {}",
            v.name
        );
    }
    for file in [
        "ctl", "status", "spec", "intent", "key", "log", "trace", "children",
    ] {
        assert!(
            page.contains(&format!(".B {file}\n")),
            "agent(3) lacks {file}"
        );
    }
}

#[test]
fn spec_is_for_the_admin_right_and_holds_what_a_runner_needs() {
    let (mut n, o) = setup();
    n.mkdir(o, "agent", "w");
    let w = n.put(
        o,
        "agent/w/ctl",
        "exec /bin/sh -c 'echo \"hi  there\"' ''\nenv TOKEN=s3cr3t 'x'\nintent rw /net r /chan/in\nlimit mem=1G\nstart",
    );
    assert_eq!(w, "Rwrite");
    let text = n.cat(o, "agent/w/spec");
    assert_eq!(
        text,
        "name w\nwant running\nstarts 1\nphase pending\nrunner -\nexec /bin/sh -c 'echo \"hi  there\"' ''\nenv TOKEN='s3cr3t '\\''x'\\'''\nlimits cpu=100 mem=1G pids=256\npolicy never max=5 window=60s\nintent r /chan/in rw /net\nnetwork yes\nplaced -\nepoch 0\nleave no\n"
    );
    let spec = cellfs::agent::RunSpec::parse(&text).unwrap();
    assert_eq!(spec.exec.unwrap().args, ["-c", "echo \"hi  there\"", ""]);
    assert_eq!(spec.env["TOKEN"], "s3cr3t 'x'");
    assert_eq!(
        n.stat_of(o, "agent/w/status", "exec"),
        "/bin/sh -c 'echo \"hi  there\"' ''"
    );
    assert_eq!(n.stat_of(o, "agent/w/status", "env"), "TOKEN");
    // Without the admin right: refused, with why.
    let reader = key().mint(claims(6, "alice", "/", "rw")).unwrap();
    let c = n.client(&reader);
    assert_eq!(
        n.open(c, 20, "agent/w/spec", 0),
        "Rerror read /agent/w/spec: capability 'alice' (scope /, rights rw) lacks the admin right"
    );
    assert!(n.cat(c, "agent/w/status").contains("env TOKEN\n"));
    // Without the read right, admin is not enough either.
    let admin = key().mint(claims(7, "bob", "/", "wa")).unwrap();
    let c = n.client(&admin);
    let r = n.open(c, 21, "agent/w/spec", 0);
    assert!(r.contains("lacks the read right"), "{r}");
    // An agent reading its own spec needs the admin right there in its
    // intent: anything else is drift.
    let t = key().mint(claims(8, "agent/w", "/", "rwa")).unwrap();
    let a = n.client(&t);
    let r = n.open(a, 22, "agent/w/spec", 0);
    assert!(r.starts_with("Rerror agent w: walk /agent"), "{r}");
    assert_eq!(n.stat_of(o, "agent/w/status", "state"), "halted-drift");
}

#[test]
fn one_runner_claims_an_agent_and_the_claim_is_committed() {
    let (mut n, o) = setup();
    n.mkdir(o, "agent", "a");
    let w = n.put(
        o,
        "agent/a/ctl",
        "exec /bin/worker\nstart\nreport claim runner=h1\nreport running pid=42 node=h1",
    );
    assert_eq!(w, "Rwrite");
    assert_eq!(n.stat_of(o, "agent/a/status", "runner"), "h1");
    assert_eq!(n.stat_of(o, "agent/a/spec", "runner"), "h1");
    // Another runner: refused, and nothing of the write is done.
    let files = |n: &mut Node, c: ConnId| -> Vec<String> {
        ["status", "spec", "trace"]
            .iter()
            .map(|f| n.cat(c, &format!("agent/a/{f}")))
            .collect()
    };
    let before = files(&mut n, o);
    let entries = n.log.entries().len();
    assert_eq!(
        n.put(o, "agent/a/ctl", "stop\nreport claim runner=h2"),
        "Rerror agent a is run by runner h1; runner h2 may claim it once h1 releases it (report release, or report stopped, crashloop or failed)"
    );
    for (write, error) in [
        (
            "report claim",
            "Rerror agent a: report: claim: say runner=NAME",
        ),
        (
            "report claim runner=../h",
            "Rerror agent a: report: claim: runner \"../h\": names are 1-64 of A-Z a-z 0-9 . _ - and do not start with '.'",
        ),
        (
            "report release now",
            "Rerror agent a: report: release: unexpected argument \"now\"",
        ),
    ] {
        assert_eq!(n.put(o, "agent/a/ctl", write), error);
    }
    let alice = key().mint(claims(6, "alice", "/", "rw")).unwrap();
    let c = n.client(&alice);
    assert_eq!(
        n.put(c, "agent/a/ctl", "report claim runner=h2"),
        "Rerror report /agent/a/ctl: capability 'alice' (scope /, rights rw) lacks the admin right"
    );
    assert_eq!(files(&mut n, o), before);
    assert_eq!(n.log.entries().len(), entries, "nothing was proposed");
    // Its runner restarted and lost the process: it resumes it.
    n.time.set(NOW + 7);
    assert_eq!(
        n.put(o, "agent/a/ctl", "report claim runner=h1\nreport resumed"),
        "Rwrite"
    );
    assert_eq!(
        n.cat(o, "agent/a/trace"),
        format!(
            "resume {} runner=h1 pid=42 node=h1\n  before {NOW} ctl exec /bin/worker; start\n",
            NOW + 7
        )
    );
    assert_eq!(n.stat_of(o, "agent/a/status", "state"), "pending");
    assert_eq!(n.stat_of(o, "agent/a/status", "resumes"), "1");
    assert_eq!(n.stat_of(o, "agent/a/status", "pid"), "-");
    // The claim survives a restart (replay) and a snapshot.
    let before = files(&mut n, o);
    let mut m = Node::with(n.log.reopened(), key());
    let c = m.client(&owner());
    assert_eq!(files(&mut m, c), before);
    let mut state = cellfs::state::State::default();
    for (i, bytes) in n.log.entries().iter().enumerate() {
        let cmd = cellfs::Command::decode(bytes).unwrap();
        let _ = state.apply(i as u64 + 1, &cmd);
    }
    let log = TestLog::default();
    log.push(cellfs::Commit::Snapshot(cellfs::Snapshot {
        index: n.log.entries().len() as u64,
        term: 1,
        data: state.encode(),
    }));
    let mut s = Node::with(log, key());
    let sc = s.client(&owner());
    assert_eq!(files(&mut s, sc), before);
    // Still h1's after the restart; stopped lets it go.
    let r = m.put(c, "agent/a/ctl", "report claim runner=h2");
    assert!(r.contains("is run by runner h1"), "{r}");
    assert_eq!(
        m.put(c, "agent/a/ctl", "report stopped\nreport claim runner=h2"),
        "Rwrite"
    );
    assert_eq!(m.stat_of(c, "agent/a/status", "runner"), "h2");
    assert_eq!(m.put(c, "agent/a/ctl", "report release"), "Rwrite");
    assert_eq!(m.stat_of(c, "agent/a/status", "runner"), "-");
}

/// The `limits` line of agent `name`'s status, and of its spec.
fn limits(n: &mut Node, o: ConnId, name: &str) -> (String, String) {
    (
        n.stat_of(o, &format!("agent/{name}/status"), "limits"),
        n.stat_of(o, &format!("agent/{name}/spec"), "limits"),
    )
}

/// Every file of the agents named, to show that a refused write changed
/// nothing.
fn files_of(n: &mut Node, o: ConnId, names: &[&str]) -> Vec<String> {
    let mut all = n.ls(o, "agent");
    for a in names {
        for f in ["status", "spec", "children", "log"] {
            all.push(n.cat_all(o, &format!("agent/{a}/{f}")));
        }
    }
    all
}

#[test]
fn every_agent_runs_under_default_limits_shown_in_status_and_spec() {
    let (mut n, o) = setup();
    n.mkdir(o, "agent", "a");
    let defaults = String::from("cpu=100 mem=512M pids=256");
    assert_eq!(limits(&mut n, o, "a"), (defaults.clone(), defaults.clone()));
    let spec = cellfs::agent::RunSpec::parse(&n.cat(o, "agent/a/spec")).unwrap();
    assert_eq!(spec.limits, cellfs::agent::DEFAULT_LIMITS);
    // One key changed, the others stay the defaults; max lifts one.
    assert_eq!(n.put(o, "agent/a/ctl", "limit mem=1G pids=max"), "Rwrite");
    let lifted = String::from("cpu=100 mem=1G pids=max");
    assert_eq!(limits(&mut n, o, "a"), (lifted.clone(), lifted));
    // A sub-agent starts with the defaults too.
    assert_eq!(n.put(o, "agent/a/ctl", "spawn c none"), "Rwrite");
    assert_eq!(limits(&mut n, o, "c"), (defaults.clone(), defaults));
}

#[test]
fn a_sub_agent_runs_within_its_ancestors_limits_and_cannot_be_set_above_them() {
    let (mut n, o) = setup();
    n.mkdir(o, "agent", "p");
    let w = n.put(o, "agent/p/ctl", "limit pids=64 mem=1G\nspawn c none");
    assert_eq!(w, "Rwrite");
    assert_eq!(n.put(o, "agent/c/ctl", "spawn g none"), "Rwrite");
    // Its own defaults, clamped by p's.
    let c = String::from("cpu=100 mem=512M pids=64");
    assert_eq!(limits(&mut n, o, "c"), (c.clone(), c.clone()));
    assert_eq!(limits(&mut n, o, "g"), (c.clone(), c));
    // Above an ancestor's, or max under a limited one: refused, naming
    // the key, the value and the ancestor's limit; nothing changes.
    let before = files_of(&mut n, o, &["p", "c", "g"]);
    let entries = n.log.entries().len();
    for (agent, write, error) in [
        (
            "c",
            "limit mem=2G",
            "Rerror agent c: limit: mem=2G is above the limit of its ancestor p (mem=1G); a sub-agent's limits stay within its ancestors'",
        ),
        (
            "c",
            "limit cpu=50\nlimit pids=max",
            "Rerror agent c: limit: pids=max is above the limit of its ancestor p (pids=64)",
        ),
        (
            "g",
            "limit pids=65",
            "Rerror agent g: limit: pids=65 is above the limit of its ancestor p (pids=64)",
        ),
    ] {
        let got = n.put(o, &format!("agent/{agent}/ctl"), write);
        assert!(got.starts_with(error), "{write:?}: {got}");
    }
    assert_eq!(files_of(&mut n, o, &["p", "c", "g"]), before);
    assert_eq!(n.log.entries().len(), entries, "nothing was proposed");
    // Within them: fine, and the nearest tighter ancestor is named.
    assert_eq!(n.put(o, "agent/c/ctl", "limit pids=32 cpu=50"), "Rwrite");
    assert_eq!(n.put(o, "agent/g/ctl", "limit pids=8"), "Rwrite");
    let got = n.put(o, "agent/g/ctl", "limit pids=33");
    assert!(
        got.starts_with(
            "Rerror agent g: limit: pids=33 is above the limit of its ancestor c (pids=32)"
        ),
        "{got}"
    );
    let g = String::from("cpu=50 mem=512M pids=8");
    assert_eq!(limits(&mut n, o, "g"), (g.clone(), g));
    // A parent lowered below its sub-agents clamps them at once; lifted
    // again, they run under their own.
    assert_eq!(n.put(o, "agent/p/ctl", "limit pids=4"), "Rwrite");
    assert_eq!(limits(&mut n, o, "c").0, "cpu=50 mem=512M pids=4");
    assert_eq!(limits(&mut n, o, "g").1, "cpu=50 mem=512M pids=4");
    assert_eq!(
        n.put(o, "agent/p/ctl", "limit pids=max mem=max cpu=max"),
        "Rwrite"
    );
    assert_eq!(limits(&mut n, o, "p").0, "cpu=max mem=max pids=max");
    assert_eq!(limits(&mut n, o, "c").0, "cpu=50 mem=512M pids=32");
    assert_eq!(limits(&mut n, o, "g").0, "cpu=50 mem=512M pids=8");
    // A replay gives the same.
    let before = files_of(&mut n, o, &["p", "c", "g"]);
    let mut m = Node::with(n.log.reopened(), key());
    let mo = m.client(&owner());
    assert_eq!(files_of(&mut m, mo, &["p", "c", "g"]), before);
}

/// A node with agent `a`, made by the owner, whose intent is `rwc
/// /agent` (it may make agents and write any agent's ctl), and other
/// agent `b`; `a`'s capability.
fn with_maker() -> (Node, ConnId, Token) {
    let (mut n, o) = setup();
    n.mkdir(o, "agent", "a");
    n.mkdir(o, "agent", "b");
    assert_eq!(n.put(o, "agent/a/ctl", "intent rwc /agent"), "Rwrite");
    let t = key().mint(claims(5, "agent/a", "/", "rwc")).unwrap();
    (n, o, t)
}

#[test]
fn an_agent_never_sets_a_limit_above_its_own() {
    let (mut n, o, t) = with_maker();
    let a = n.client(&t);
    assert_eq!(n.put(o, "agent/a/ctl", "limit pids=100"), "Rwrite");
    let names = ["a", "b"];
    let before = files_of(&mut n, o, &names);
    let entries = n.log.entries().len();
    for (agent, write, error) in [
        (
            "a",
            "limit pids=200",
            "Rerror agent a: limit: pids=200 is above the limit of agent a (pids=100), whose capability wrote it; an agent may not set a limit above its own",
        ),
        (
            "a",
            "limit cpu=max",
            "Rerror agent a: limit: cpu=max is above the limit of agent a (cpu=100)",
        ),
        (
            "b",
            "limit pids=101",
            "Rerror agent b: limit: pids=101 is above the limit of agent a (pids=100)",
        ),
        (
            "a",
            "limit agents=1000",
            "Rerror agent a: limit: agents= is an administrator's: capability 'agent/a' is an agent's, and agents may not set the quota of a tree",
        ),
    ] {
        let got = n.put(a, &format!("agent/{agent}/ctl"), write);
        assert!(got.starts_with(error), "{write:?}: {got}");
    }
    assert_eq!(files_of(&mut n, o, &names), before);
    assert_eq!(n.log.entries().len(), entries, "nothing was proposed");
    assert_eq!(
        n.stat_of(o, "agent/a/status", "state"),
        "created",
        "no drift"
    );
    // Lower is fine; then the lower is its ceiling.
    assert_eq!(n.put(a, "agent/a/ctl", "limit pids=50"), "Rwrite");
    let up = n.put(a, "agent/a/ctl", "limit pids=100");
    assert!(
        up.contains("pids=100 is above the limit of agent a (pids=50)"),
        "{up}"
    );
    assert_eq!(n.put(a, "agent/b/ctl", "limit pids=40 mem=64M"), "Rwrite");
    assert_eq!(limits(&mut n, o, "b").0, "cpu=100 mem=64M pids=40");
    // What it makes runs within its limits, and it may not lift them.
    assert_eq!(n.mkdir(a, "agent", "m"), "Rcreate");
    assert_eq!(limits(&mut n, o, "m").1, "cpu=100 mem=512M pids=50");
    let lift = n.put(a, "agent/m/ctl", "limit pids=max");
    assert!(
        lift.contains("pids=max is above the limit of its ancestor a (pids=50)"),
        "{lift}"
    );
    // The owner may lift the agent's own.
    assert_eq!(n.put(o, "agent/a/ctl", "limit pids=max"), "Rwrite");
    assert_eq!(limits(&mut n, o, "m").1, "cpu=100 mem=512M pids=256");
    // Who wrote it is in the journal.
    let journal = n.cat_all(o, "raft/log");
    assert!(
        journal.contains("/agent/b/ctl by agent/a; limit mem=64M pids=40\n"),
        "{journal}"
    );
}

#[test]
fn what_an_agent_makes_is_in_its_tree_and_a_tree_has_a_quota() {
    let (mut n, o, t) = with_maker();
    let a = n.client(&t);
    // An agent's mkdir makes a sub-agent of its own.
    assert_eq!(n.mkdir(a, "agent", "x0"), "Rcreate");
    assert_eq!(n.stat_of(o, "agent/x0/status", "parent"), "a");
    assert_eq!(n.stat_of(o, "agent/x0/status", "made-by"), "a");
    assert_eq!(
        n.stat_of(o, "agent/x0/status", "tree"),
        "a agents=2 quota=64"
    );
    assert_eq!(n.cat(o, "agent/a/children"), "x0\n");
    assert_eq!(n.cat(o, "agent/x0/intent"), "");
    // Spawned by it, on another's ctl: in that one's tree, made by a.
    assert_eq!(n.put(a, "agent/b/ctl", "spawn y none"), "Rwrite");
    assert_eq!(n.stat_of(o, "agent/y/status", "parent"), "b");
    assert_eq!(n.stat_of(o, "agent/y/status", "made-by"), "a");
    assert_eq!(
        n.stat_of(o, "agent/b/status", "tree"),
        "b agents=2 quota=64"
    );
    // Attack 8: mkdir as fast as it can. Its tree stops at its quota.
    for i in 1..63 {
        assert_eq!(n.mkdir(a, "agent", &format!("x{i}")), "Rcreate", "x{i}");
    }
    let before = files_of(&mut n, o, &["a"]);
    let entries = n.log.entries().len();
    let over = "Rerror agent a: spawn x63: the agent tree of a holds 64 agents, its quota (64); remove one, or raise the quota with 'limit agents=N' on /agent/a/ctl (with a capability that is not an agent's)";
    assert_eq!(n.mkdir(a, "agent", "x63"), over);
    // A sub-agent's spawn counts in the same tree.
    let got = n.put(a, "agent/x5/ctl", "spawn x63 none");
    assert!(
        got.starts_with("Rerror agent x5: spawn x63: the agent tree of a holds 64 agents"),
        "{got}"
    );
    let got = n.put(o, "agent/x5/ctl", "spawn x63 none");
    assert!(
        got.contains("its quota (64)"),
        "the owner's spawn in it too: {got}"
    );
    assert_eq!(files_of(&mut n, o, &["a"]), before);
    assert_eq!(n.log.entries().len(), entries, "nothing was proposed");
    // The owner's own mkdir makes a tree of its own.
    assert_eq!(n.mkdir(o, "agent", "fresh"), "Rcreate");
    assert_eq!(
        n.stat_of(o, "agent/fresh/status", "tree"),
        "fresh agents=1 quota=64"
    );
    // Only its root takes agents=, and only from an administrator that
    // is not an agent.
    let got = n.put(o, "agent/x5/ctl", "limit agents=100");
    assert!(
        got.starts_with("Rerror agent x5: limit: agents= is set on the root of its agent tree: write it to /agent/a/ctl"),
        "{got}"
    );
    let rw = key().mint(claims(6, "alice", "/", "rw")).unwrap();
    let c = n.client(&rw);
    let got = n.put(c, "agent/a/ctl", "limit agents=100");
    assert!(got.contains("lacks the admin right"), "{got}");
    assert!(
        n.put(o, "agent/a/ctl", "limit agents=0")
            .contains("agents=\"0\" is out of range")
    );
    assert_eq!(n.put(o, "agent/a/ctl", "limit agents=65"), "Rwrite");
    assert_eq!(
        n.stat_of(o, "agent/x7/status", "tree"),
        "a agents=64 quota=65"
    );
    assert_eq!(n.mkdir(a, "agent", "x63"), "Rcreate");
    assert!(
        n.mkdir(a, "agent", "x64")
            .contains("holds 65 agents, its quota (65)")
    );
    assert_eq!(n.put(o, "agent/a/ctl", "limit agents=max"), "Rwrite");
    assert_eq!(
        n.stat_of(o, "agent/a/status", "tree"),
        "a agents=65 quota=max"
    );
    assert_eq!(n.mkdir(a, "agent", "x64"), "Rcreate");
    // Stopping the maker stops all it made.
    assert_eq!(n.put(o, "agent/x3/ctl", "exec /bin/true\nstart"), "Rwrite");
    assert_eq!(n.put(o, "agent/a/ctl", "kill"), "Rwrite");
    assert_eq!(n.stat_of(o, "agent/x3/status", "want"), "killed");
    // All of it replays.
    let before = files_of(&mut n, o, &["a", "b", "x0", "y", "x64"]);
    let mut m = Node::with(n.log.reopened(), key());
    let mo = m.client(&owner());
    assert_eq!(files_of(&mut m, mo, &["a", "b", "x0", "y", "x64"]), before);
}

#[test]
fn agents_never_take_the_last_places_of_the_node() {
    let (mut n, o, t) = with_maker();
    assert_eq!(n.put(o, "agent/a/ctl", "limit agents=max"), "Rwrite");
    let a = n.client(&t);
    let last = cellfs::agent::MAX_AGENTS - cellfs::agent::AGENT_RESERVE;
    // a and b exist: the agent makes the rest up to the reserve.
    for i in 2..last {
        let r = n.mkdir(a, "agent", &format!("x{i}"));
        assert_eq!(r, "Rcreate", "x{i}");
    }
    let full = n.mkdir(a, "agent", "more");
    assert_eq!(
        full,
        format!(
            "Rerror agent a: spawn more: the node holds {last} agents; the last 64 of its 16384 are kept for capabilities that are not agents'"
        )
    );
    // The owner's mkdir still works, up to the node's own cap.
    for i in 0..cellfs::agent::AGENT_RESERVE {
        assert_eq!(n.mkdir(o, "agent", &format!("o{i}")), "Rcreate", "o{i}");
    }
    let cap = n.mkdir(o, "agent", "one-more");
    assert!(cap.contains("the node holds at most 16384 agents"), "{cap}");
}

#[test]
fn the_node_bounds_how_fast_an_agents_output_is_committed() {
    let (mut n, o) = setup();
    n.mkdir(o, "agent", "a");
    n.mkdir(o, "agent", "b");
    let lines = |count: usize, tag: &str| -> String {
        (0..count)
            .map(|i| format!("log {tag}{i:03} {}\n", "x".repeat(995)))
            .collect()
    };
    // Lines of 1000 bytes, 1001 with their newlines: 64 KiB at once.
    assert_eq!(n.put(o, "agent/a/ctl", &lines(60, "a")), "Rwrite");
    let before = files_of(&mut n, o, &["a"]);
    let entries = n.log.entries().len();
    let over = n.put(o, "agent/a/ctl", &lines(10, "b"));
    assert_eq!(
        over,
        "Rerror agent a: log: 10010 bytes of output are over its rate (8 KiB/s, at most 64 KiB at once): 5476 bytes may be logged now; nothing was logged"
    );
    assert_eq!(files_of(&mut n, o, &["a"]), before);
    assert_eq!(n.log.entries().len(), entries, "nothing was proposed");
    // What fits is taken; another agent has its own.
    assert_eq!(n.put(o, "agent/a/ctl", &lines(5, "c")), "Rwrite");
    assert!(
        n.put(o, "agent/a/ctl", &lines(1, "z"))
            .starts_with("Rerror agent a: log: 1001 bytes")
    );
    assert_eq!(n.put(o, "agent/b/ctl", &lines(60, "d")), "Rwrite");
    // A second later: 8 KiB more, no more.
    n.time.set(NOW + 1);
    assert_eq!(n.put(o, "agent/a/ctl", &lines(8, "e")), "Rwrite");
    assert!(
        n.put(o, "agent/a/ctl", &lines(1, "f"))
            .contains("over its rate")
    );
    // Exit reports and their stderr are not output: they still go in.
    let w = n.put(
        o,
        "agent/a/ctl",
        "exec /bin/x\nstart\nreport exit code=1\nstderr the last words",
    );
    assert_eq!(w, "Rwrite");
    assert!(
        n.cat(o, "agent/a/trace")
            .contains("  stderr the last words\n")
    );
    // A quiet minute fills it up to 64 KiB, not more.
    n.time.set(NOW + 61);
    assert_eq!(n.put(o, "agent/a/ctl", &lines(65, "g")), "Rwrite");
    assert!(
        n.put(o, "agent/a/ctl", &lines(1, "h"))
            .contains("over its rate")
    );
    // The rate is committed state: a replay refuses the same.
    let before = files_of(&mut n, o, &["a", "b"]);
    let mut m = Node::with(n.log.reopened(), key());
    m.time.set(NOW + 61);
    let mo = m.client(&owner());
    assert_eq!(files_of(&mut m, mo, &["a", "b"]), before);
    assert!(
        m.put(mo, "agent/a/ctl", &lines(1, "i"))
            .contains("over its rate")
    );
}

#[test]
fn a_runner_says_what_sandbox_an_agent_runs_in() {
    let (mut n, o) = setup();
    n.mkdir(o, "agent", "a");
    assert_eq!(n.stat_of(o, "agent/a/status", "sandbox"), "none");
    let w = n.put(
        o,
        "agent/a/ctl",
        "exec /bin/x\nstart\nreport running pid=7 node=n1 sandbox=userns,pid,mount,net,uts,ipc,cgroup,seccomp,nonewprivs,nocaps,root",
    );
    assert_eq!(w, "Rwrite");
    assert_eq!(
        n.stat_of(o, "agent/a/status", "sandbox"),
        "userns,pid,mount,net,uts,ipc,cgroup,seccomp,nonewprivs,nocaps,root"
    );
    assert_eq!(n.stat_of(o, "agent/a/status", "pid"), "7");
    assert_eq!(n.stat_of(o, "agent/a/status", "state"), "running");
    // Bad words: refused, nothing changed.
    let before = n.cat(o, "agent/a/status");
    for bad in [
        "Userns",
        "userns,,pid",
        "",
        "user ns",
        "pid,",
        &"a".repeat(257),
    ] {
        let got = n.put(
            o,
            "agent/a/ctl",
            &format!("report running pid=8 node=n1 sandbox={bad}"),
        );
        assert!(
            got.contains("is not a list of protections: comma-separated words of a-z, 0-9 and -")
                || got.contains("unexpected argument"),
            "{bad:?}: {got}"
        );
    }
    assert_eq!(n.cat(o, "agent/a/status"), before);
    // Each run says its own; unconfined is said as such.
    let w = n.put(
        o,
        "agent/a/ctl",
        "report running pid=9 node=n1 sandbox=unconfined",
    );
    assert_eq!(w, "Rwrite");
    assert_eq!(n.stat_of(o, "agent/a/status", "sandbox"), "unconfined");
    let journal = n.cat_all(o, "raft/log");
    assert!(
        journal.contains("/agent/a/ctl report running pid=9 node=n1 sandbox=unconfined\n"),
        "{journal}"
    );
    let mut m = Node::with(n.log.reopened(), key());
    let mo = m.client(&owner());
    assert_eq!(m.stat_of(mo, "agent/a/status", "sandbox"), "unconfined");
    // A runner that says nothing of it: none.
    assert_eq!(
        n.put(o, "agent/a/ctl", "report running pid=10 node=n1"),
        "Rwrite"
    );
    assert_eq!(n.stat_of(o, "agent/a/status", "sandbox"), "none");
}
