//! The red-team suite: agent(3) and cap(3)'s threat model, tried the way
//! a hostile agent would try it (issue 17).
//!
//! The threat: an agent's program is hostile (a prompt injection away
//! from it). It may do anything its sandbox lets it do, and it has an
//! accomplice outside, who reads what it prints and may run `cell0`
//! with whatever it leaks. What the node trusts is its key, its owner
//! token and its runner; an agent gets its intent, and nothing more:
//! not another agent's, not the owner's, not the host's.
//!
//! Every test here runs a real agent: a shell script, started by the
//! real runner of `cell0 serve` in its real sandbox. The script is
//! `redteam/NAME.sh` after `redteam/lib.sh` (its capability in `$TOKEN`,
//! the tree at `$M`, `try`, `host_proc`, `fork_many`). It prints one line
//! per attempt (`LABEL: ok` or `LABEL: refused`, or what it stole) and
//! ends with a `done` line; its output is its log, which the test reads
//! as the node's owner. Then the test asserts that the attack failed on
//! the host's real state (the secret never reached the log, the host's
//! `core_pattern` and hostname are what they were, the test's listener
//! took no connection, the target process's memory is unchanged, the
//! cgroup's limit is still there, nothing was stamped as someone else),
//! not on what the agent says alone. `attack_NN_*` tests are the attacks
//! of issue 17, numbered as there, and fail on a runner without its
//! fixes; `hold_*` tests are what held before and must keep holding.
//!
//! Agents use only what the sandbox holds: `/bin/sh` (dash), coreutils,
//! util-linux and `python3` (stdlib); no `cell0`. Where an attack needs
//! `cell0 cap`, the agent prints its token and the test plays the
//! accomplice with the CLI, or signs links by hand ([`Wire`]) as anyone
//! holding a token's proof can. A few faults of the capability layer
//! alone (the issue's CLI reproduction of attack 1, and attack 11's
//! scoped mint, aname and holder names) are shown without an agent's
//! process, with tokens derived from the owner's.
//!
//! To add an attack: write `redteam/NAME.sh` (each attempt in its own
//! command, quiet, with a line saying how it went, then `done`), add a
//! test that starts it with [`agent`] (its intent, `env` values for what
//! it must find), waits with [`wait_done`], checks with [`tried`] that
//! the attempts ran at all (a tool missing from the sandbox must not
//! pass for a defence), and asserts on the host. Anything that changes
//! host state when the attack succeeds (today's runner lets it) must be
//! undone by a guard: [`HostFile`] for a file of `/proc/sys`, made
//! before the node (so that it drops after the agent is gone), or
//! [`CgroupLimits`] for the agent's cgroup files, made once it runs.
//! Keep each test to a few seconds: they run in parallel, each with a
//! node of its own, and share no host state but through those guards.

mod common;

use std::net::TcpListener;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cell0::client::{Client, Options};
use cell0_tests::Node;
use cell0_tests::cell0_bin;
use cell0_tests::cluster::{field, wait};
use common::owner::{cat, mkdir, status, try_write, write};

/// What every agent's program starts with.
const LIB: &str = include_str!("redteam/lib.sh");

/// How long an agent has to try everything and say `done`.
const AGENT_SECS: u64 = 30;

// ---- the node, as its owner ----

/// The names in directory `path` of `node`, as its owner sees them.
fn ls(node: &Node, path: &str) -> Vec<String> {
    let (ok, out, err) = node.cell0(&["ls", path]);
    assert!(ok, "ls {path}: {err}");
    out.lines()
        .map(|l| l.trim_end_matches('/').to_string())
        .collect()
}

/// How many messages channel `chan` took.
fn sent(node: &Node, chan: &str) -> u64 {
    let text = cat(node, &format!("/chan/{chan}/status"));
    field(&text, "sent")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sent in /chan/{chan}/status:\n{text}"))
}

/// What `node` streams from `path` (a blocking file) in `secs` seconds.
fn read_for(node: &Node, path: &str, secs: u32) -> String {
    let out = Command::new("timeout")
        .args(["-s", "KILL", &secs.to_string()])
        .arg(cell0_bin())
        .args(["cat", path])
        .args(["--addr", &node.addr, "--data"])
        .arg(node.data())
        .stdin(Stdio::null())
        .output()
        .expect("cell0 cat runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---- agents ----

/// The program of agent `name`: `script` (one of redteam/) after lib.sh,
/// an executable file in the node's directory.
fn program(node: &Node, name: &str, script: &str) -> PathBuf {
    let path = node.dir.path().join(format!("{name}.sh"));
    std::fs::write(&path, format!("#!/bin/sh\n{LIB}\n{script}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Make agent `name` running `script` with ctl `lines` (intent, env,
/// limit…), and start it; its program's path.
fn agent(node: &Node, name: &str, script: &str, lines: &[&str]) -> PathBuf {
    let prog = program(node, name, script);
    mkdir(node, &format!("/agent/{name}"));
    let ctl = format!("/agent/{name}/ctl");
    write(node, &ctl, &format!("exec {}", prog.display()));
    for l in lines {
        write(node, &ctl, l);
    }
    write(node, &ctl, "start");
    prog
}

/// Agent `name`'s log once `done` holds of it; a failure after `secs`
/// that shows the agent's status and log.
fn wait_log(
    node: &Node,
    name: &str,
    secs: u64,
    what: &str,
    mut done: impl FnMut(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (_, log, _) = node.cell0(&["cat", &format!("/agent/{name}/log")]);
        if done(&log) {
            return log;
        }
        if Instant::now() > deadline {
            let (_, st, _) = node.cell0(&["cat", &format!("/agent/{name}/status")]);
            panic!("agent {name}: no {what} after {secs} s\nstatus:\n{st}\nlog:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Agent `name`'s log once it says `done`.
fn wait_done(node: &Node, name: &str) -> String {
    wait_log(node, name, AGENT_SECS, "`done` line", |l| {
        has_line(l, "done")
    })
}

/// Whether `log` has the line `line`.
fn has_line(log: &str, line: &str) -> bool {
    log.lines().any(|l| l == line)
}

/// Fail unless `log` has a line starting with each of `labels`: an
/// attempt that never ran (a tool missing from the sandbox, a script
/// that stopped early) proves nothing.
fn tried(log: &str, labels: &[&str]) {
    for label in labels {
        assert!(
            log.lines().any(|l| l.starts_with(label)),
            "the agent never tried {label:?}, so the test shows nothing:\n{log}"
        );
    }
}

/// The attempts `log` says succeeded.
fn succeeded(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.ends_with(": ok")).collect()
}

/// K of a `forked K of N` line.
fn forked(log: &str) -> u32 {
    log.lines()
        .find_map(|l| l.strip_prefix("forked ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no `forked K of N` line:\n{log}"))
}

/// The capability agent `name` printed (see redteam/exfil.sh).
fn exfiltrated_token(node: &Node, name: &str) -> String {
    let log = wait_log(node, name, AGENT_SECS, "token line", |l| {
        l.lines().any(|x| x.contains("token c0."))
    });
    log.lines()
        .find_map(|l| Some(&l[l.find("token c0.")? + 6..]))
        .unwrap()
        .trim()
        .to_string()
}

/// `token` in a file of the node's directory (mode 0600), for `--token`.
fn token_file(node: &Node, label: &str, token: &str) -> PathBuf {
    let path = node.dir.path().join(format!("{label}.token"));
    std::fs::write(&path, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// `cell0 cap attenuate ARGS PARENT`: the new token, or the refusal.
fn attenuate(parent: &Path, args: &[&str]) -> Result<String, String> {
    let parent = parent.display().to_string();
    let mut all = vec!["cap", "attenuate"];
    all.extend_from_slice(args);
    all.push(&parent);
    let (ok, out, err) = cell0_tests::run_cell0(&all);
    if ok {
        Ok(out.trim().to_string())
    } else {
        Err(err)
    }
}

/// `cell0 write PATH TEXT --token TOKEN` on `node`: the refusal, if any.
fn write_with(node: &Node, token: &Path, path: &str, text: &str) -> Result<(), String> {
    let t = token.display().to_string();
    let (ok, _, err) = node.cell0(&["write", path, text, "--token", &t]);
    if ok { Ok(()) } else { Err(err) }
}

/// `cell0 cat PATH --token TOKEN` on `node`: the text, or the refusal.
fn cat_with(node: &Node, token: &Path, path: &str) -> Result<String, String> {
    let t = token.display().to_string();
    let (ok, out, err) = node.cell0(&["cat", path, "--token", &t]);
    if ok { Ok(out) } else { Err(err) }
}

// ---- the host ----

/// The arguments of process `pid`.
fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The environment of process `pid`, `KEY=VALUE` each.
fn environ(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|b| {
            b.split(|&c| c == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The process of `cell0 serve` for `node`.
fn node_pid(node: &Node) -> u32 {
    cell0_tests::pids()
        .into_iter()
        .find(|&pid| {
            let args = cmdline(pid);
            args.iter().any(|a| a == "serve")
                && args
                    .windows(2)
                    .any(|w| w[0] == "--listen" && w[1] == node.addr)
        })
        .expect("the node's process")
}

/// The live processes on this host of agent `name` of the node at `addr`
/// (their environment says so; every process of an agent inherits it).
fn agent_pids(addr: &str, name: &str) -> Vec<u32> {
    let want_agent = format!("CELL0_AGENT={name}");
    let want_addr = format!("CELL0_ADDR={addr}");
    cell0_tests::pids()
        .into_iter()
        .filter(|&pid| {
            let env = environ(pid);
            env.contains(&want_agent)
                && env.contains(&want_addr)
                && cell0_tests::proc_state(pid) != Some('Z')
        })
        .collect()
}

/// The process running agent `name`'s program `prog` (`/bin/sh PROG`).
fn program_pid(node: &Node, name: &str, prog: &Path) -> u32 {
    let shown = prog.display().to_string();
    let mut found = None;
    wait(&format!("agent {name}'s program on the host"), 10, || {
        found = agent_pids(&node.addr, name)
            .into_iter()
            .find(|&p| cmdline(p).contains(&shown));
        found.is_some()
    });
    found.unwrap()
}

/// The live processes whose arguments include `arg`.
fn processes_with_arg(arg: &str) -> Vec<u32> {
    cell0_tests::pids()
        .into_iter()
        .filter(|&p| cmdline(p).iter().any(|a| a == arg) && cell0_tests::proc_state(p) != Some('Z'))
        .collect()
}

/// A file of the host's (such as one of `/proc/sys`) as it was, written
/// back when dropped if it changed: what a test that lets an agent try
/// to change it makes first.
struct HostFile {
    path: PathBuf,
    saved: String,
}

impl HostFile {
    fn save(path: impl Into<PathBuf>) -> HostFile {
        let path = path.into();
        let saved =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        HostFile { path, saved }
    }

    fn now(&self) -> String {
        std::fs::read_to_string(&self.path).unwrap_or_default()
    }
}

impl Drop for HostFile {
    fn drop(&mut self) {
        if self.now() != self.saved {
            let _ = std::fs::write(&self.path, self.saved.trim_end().as_bytes());
        }
    }
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A listener of the test's on the host, counting who connects to it.
struct Listener {
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Poll `accept` (non-blocking: true when a connection came) until
    /// dropped.
    fn start(mut accept: impl FnMut() -> bool + Send + 'static) -> Listener {
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hits.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if accept() {
                    h.fetch_add(1, Ordering::Relaxed);
                } else {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        });
        Listener {
            hits,
            stop,
            thread: Some(thread),
        }
    }

    /// On 127.0.0.1 of the host's network; and its port.
    fn tcp() -> (Listener, u16) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        (Listener::start(move || l.accept().is_ok()), port)
    }

    /// On a unix socket: abstract (in the host's network namespace) or
    /// at a path.
    fn unix(addr: &SocketAddr) -> Listener {
        let l = UnixListener::bind_addr(addr).unwrap();
        l.set_nonblocking(true).unwrap();
        Listener::start(move || l.accept().is_ok())
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::Relaxed)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The kinds of limit a cgroup puts on its processes.
#[derive(Clone, Copy, Debug)]
enum Limit {
    Pids,
    Memory,
}

impl Limit {
    /// Its file in a cgroup v1 hierarchy of `controller`, or v2.
    fn file(self, v2: bool) -> &'static str {
        match (self, v2) {
            (Limit::Pids, _) => "pids.max",
            (Limit::Memory, false) => "memory.limit_in_bytes",
            (Limit::Memory, true) => "memory.max",
        }
    }

    fn controller(self) -> &'static str {
        match self {
            Limit::Pids => "pids",
            Limit::Memory => "memory",
        }
    }
}

/// Limit files that lift a limit when "no limit" is written to them.
const LIMIT_FILES: [&str; 6] = [
    "pids.max",
    "memory.max",
    "memory.limit_in_bytes",
    "memory.memsw.limit_in_bytes",
    "cpu.max",
    "cpu.cfs_quota_us",
];

/// One cgroup hierarchy a process is in: its mount point on the host,
/// whether it is v2, the v1 controllers, and the process's path in it.
struct Hierarchy {
    mount: PathBuf,
    v2: bool,
    controllers: Vec<String>,
    path: String,
}

/// The cgroup hierarchies process `pid` is in, with their host mounts.
fn hierarchies(pid: u32) -> Vec<Hierarchy> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mounts: Vec<(PathBuf, bool, Vec<String>)> = info
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let right: Vec<&str> = right.split(' ').collect();
            let v2 = match *right.first()? {
                "cgroup2" => true,
                "cgroup" => false,
                _ => return None,
            };
            let opts = right.get(2)?.split(',').map(String::from).collect();
            Some((PathBuf::from(left.split(' ').nth(4)?), v2, opts))
        })
        .collect();
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    own.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctl, path) = (parts.next()?, parts.next()?, parts.next()?);
            let v2 = ctl.is_empty();
            let ctls: Vec<String> = ctl.split(',').map(String::from).collect();
            let (mount, _, opts) = mounts.iter().find(|(_, mv2, opts)| {
                *mv2 == v2 && (v2 || ctls.iter().all(|c| opts.contains(c)))
            })?;
            Some(Hierarchy {
                mount: mount.clone(),
                v2,
                controllers: if v2 { Vec::new() } else { opts.clone() },
                path: path.to_string(),
            })
        })
        .collect()
}

/// The cgroup directories that bound process `pid`: its cgroups and
/// their ancestors, leaving out those this test is in too (the limits
/// of whatever runs the tests are not the agent's).
fn bounding_dirs(pid: u32) -> Vec<(PathBuf, bool, Vec<String>)> {
    let ours = hierarchies(std::process::id());
    let mut dirs = Vec::new();
    for h in hierarchies(pid) {
        let mine = ours
            .iter()
            .find(|o| o.mount == h.mount)
            .map(|o| o.path.clone())
            .unwrap_or_else(|| "/".into());
        let mut path = h.path.clone();
        while path != "/" && !path.is_empty() {
            let shared = mine == path || mine.starts_with(&format!("{path}/"));
            if !shared {
                dirs.push((
                    h.mount.join(path.trim_start_matches('/')),
                    h.v2,
                    h.controllers.clone(),
                ));
            }
            path = Path::new(&path)
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
        }
    }
    dirs
}

/// The tightest `limit` on process `pid` (in its cgroups and their
/// ancestors, not the test's own), or None when there is none.
fn effective_limit(pid: u32, limit: Limit) -> Option<u64> {
    bounding_dirs(pid)
        .into_iter()
        .filter(|(_, v2, ctls)| *v2 || ctls.iter().any(|c| c == limit.controller()))
        .filter_map(|(dir, v2, _)| {
            let text = std::fs::read_to_string(dir.join(limit.file(v2))).ok()?;
            // "max", or v1's "no limit" (a page-rounded i64::MAX).
            text.trim().parse::<u64>().ok().filter(|&n| n < 1 << 62)
        })
        .min()
}

/// The limit files of the cgroups bounding a process, as they were,
/// written back when dropped if they changed.
struct CgroupLimits(Vec<HostFile>);

impl CgroupLimits {
    fn save(pid: u32) -> CgroupLimits {
        let mut files = Vec::new();
        for (dir, _, _) in bounding_dirs(pid) {
            for name in LIMIT_FILES {
                let path = dir.join(name);
                if path.exists() {
                    files.push(HostFile::save(path));
                }
            }
        }
        CgroupLimits(files)
    }

    /// The files that differ from what they held when saved.
    fn changed(&self) -> Vec<String> {
        self.0
            .iter()
            .filter(|f| f.now() != f.saved)
            .map(|f| {
                format!(
                    "{}: {} -> {}",
                    f.path.display(),
                    f.saved.trim(),
                    f.now().trim()
                )
            })
            .collect()
    }
}

/// The lowest address of process `pid`'s stack mapping.
fn stack_start(pid: u32) -> u64 {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    maps.lines()
        .find(|l| l.trim_end().ends_with("[stack]"))
        .and_then(|l| u64::from_str_radix(l.split('-').next()?, 16).ok())
        .expect("a [stack] mapping")
}

/// `len` bytes of process `pid`'s memory at `addr`.
fn read_memory(pid: u32, addr: u64, len: usize) -> Vec<u8> {
    let f = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut buf = vec![0; len];
    f.read_exact_at(&mut buf, addr).unwrap();
    buf
}

/// The bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

// ---- tokens, by hand ----

/// cap(3)'s token in its binary form (postcard: varints, strings with a
/// varint length, arrays as they are), read and written by hand so that
/// a test can sign a link that `cell0 cap attenuate` would never make,
/// as an attacker holding a token's proof can. [`Wire::forger`] checks
/// first that this still is the format the node speaks.
#[derive(Clone, Debug, PartialEq)]
struct Wire {
    issuer: [u8; 32],
    links: Vec<WireLink>,
    proof: [u8; 32],
}

/// One link of a [`Wire`].
#[derive(Clone, Debug, PartialEq)]
struct WireLink {
    id: u64,
    holder: String,
    scope: String,
    rights: u8,
    not_before: u64,
    expires: u64,
    next_key: [u8; 32],
    signature: Vec<u8>,
}

/// What a link's signature covers first (cap(3): links are signed over
/// the previous signature, the claims and the next key).
const LINK_DOMAIN: &[u8] = b"cell0 capability link v1";

/// Reading a [`Wire`].
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn bytes(&mut self, n: usize) -> &[u8] {
        assert!(self.0.len() >= n, "token too short");
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn varint(&mut self) -> u64 {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.bytes(1)[0];
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return n;
            }
        }
        panic!("varint too long")
    }
    fn string(&mut self) -> String {
        let n = self.varint() as usize;
        String::from_utf8(self.bytes(n).to_vec()).unwrap()
    }
    fn key(&mut self) -> [u8; 32] {
        self.bytes(32).try_into().unwrap()
    }
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

impl WireLink {
    /// The claims as signed.
    fn claims(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, self.id);
        put_string(&mut out, &self.holder);
        put_string(&mut out, &self.scope);
        out.push(self.rights);
        put_varint(&mut out, self.not_before);
        put_varint(&mut out, self.expires);
        out
    }
}

impl Wire {
    fn parse(text: &str) -> Wire {
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim().strip_prefix("c0.").expect("a c0. token"))
            .expect("base64url");
        let mut c = Cursor(&bytes);
        let issuer = c.key();
        let n = c.varint();
        let links = (0..n)
            .map(|_| WireLink {
                id: c.varint(),
                holder: c.string(),
                scope: c.string(),
                rights: c.bytes(1)[0],
                not_before: c.varint(),
                expires: c.varint(),
                next_key: c.key(),
                signature: c.bytes(64).to_vec(),
            })
            .collect();
        let proof = c.key();
        assert!(c.0.is_empty(), "bytes after the token");
        Wire {
            issuer,
            links,
            proof,
        }
    }

    fn text(&self) -> String {
        let mut out = self.issuer.to_vec();
        put_varint(&mut out, self.links.len() as u64);
        for l in &self.links {
            out.extend(l.claims());
            out.extend_from_slice(&l.next_key);
            out.extend_from_slice(&l.signature);
        }
        out.extend_from_slice(&self.proof);
        format!("c0.{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// This token with `link` appended, signed with this token's proof;
    /// `proof` is the secret of `link.next_key`.
    fn sign(&self, mut link: WireLink, proof: [u8; 32]) -> Wire {
        let mut msg = LINK_DOMAIN.to_vec();
        msg.extend_from_slice(&self.links.last().unwrap().signature);
        msg.extend(link.claims());
        msg.extend_from_slice(&link.next_key);
        link.signature = cellfs::cap::NodeKey::from_seed(&self.proof)
            .sign(&msg)
            .to_vec();
        let mut links = self.links.clone();
        links.push(link);
        Wire {
            issuer: self.issuer,
            links,
            proof,
        }
    }

    /// What forges links onto `parent`: the last link of `honest` (a
    /// token `cell0 cap attenuate` made from `parent`), to be changed
    /// and signed again with [`Forger::forge`]. Signed again unchanged,
    /// it must give `honest` byte for byte (ed25519 is deterministic):
    /// else this file no longer speaks the node's token format, and
    /// every forged token would be refused for that reason alone.
    fn forger(parent: &str, honest: &str) -> Forger {
        let parent = Wire::parse(parent);
        let honest_wire = Wire::parse(honest);
        let link = honest_wire.links.last().unwrap().clone();
        let again = parent.sign(link.clone(), honest_wire.proof);
        assert_eq!(
            again.text(),
            honest.trim(),
            "the red-team suite's token forging (Wire, LINK_DOMAIN) no longer matches cap(3)'s token format: update them"
        );
        Forger {
            parent,
            link,
            proof: honest_wire.proof,
        }
    }
}

/// Forges links onto a token (see [`Wire::forger`]).
struct Forger {
    parent: Wire,
    link: WireLink,
    proof: [u8; 32],
}

impl Forger {
    /// The token with its honest link changed by `change`, signed again.
    fn forge(&self, change: impl FnOnce(&mut WireLink)) -> String {
        let mut link = self.link.clone();
        change(&mut link);
        self.parent.sign(link, self.proof).text()
    }
}

// ---- 9P at the attach ----

/// Attach to the node at `addr` with `aname` and no auth fid, as a 9P
/// client that passes its token in the aname does: Ok, or why the node
/// refused.
fn attach_with_aname(addr: &str, aname: &str) -> Result<(), String> {
    let mut opts = Options::new(ninep::Dialect::P2000);
    opts.aname = aname.to_string();
    opts.uname = "redteam".to_string();
    opts.msize = 8192;
    Client::connect_with(addr, &opts)
        .map(drop)
        .map_err(|e| e.to_string())
}

// ---- attack 1: attenuation drops the intent ----

#[test]
fn attack_01_an_agents_token_narrowed_to_another_holder_is_still_held_to_its_intent() {
    let node = Node::start();
    for c in ["in", "out", "other"] {
        mkdir(&node, &format!("/chan/{c}"));
    }
    let peer_prog = agent(
        &node,
        "peer",
        include_str!("redteam/idle.sh"),
        &["intent r /chan/in"],
    );
    wait_done(&node, "peer");
    agent(
        &node,
        "thief",
        include_str!("redteam/exfil.sh"),
        &["intent r /chan/in w /chan/out"],
    );
    let stolen = exfiltrated_token(&node, "thief");
    let token = token_file(&node, "thief", &stolen);
    let same = attenuate(&token, &[]).expect("an attenuation that changes nothing");
    let forger = Wire::forger(&stolen, &same);

    // The accomplice outside narrows the agent's token, naming another
    // holder, with the tool and past it (signing the link by hand), and
    // uses it.
    let mut outcomes: Vec<String> = Vec::new();
    let mut attempt = |label: &str, holder: &str, path: &str, text: &str| {
        let by_hand = forger.forge(|l| l.holder = holder.to_string());
        for (how, made) in [
            (
                "cell0 cap attenuate",
                attenuate(&token, &["--holder", holder]),
            ),
            ("signed by hand", Ok(by_hand)),
        ] {
            let outcome = match made {
                Err(e) => format!("attenuate refused: {}", e.trim()),
                Ok(t) => {
                    let f = token_file(&node, "as-other", &t);
                    match write_with(&node, &f, path, text) {
                        Ok(()) => "WRITTEN".to_string(),
                        Err(e) => format!("refused: {}", e.trim()),
                    }
                }
            };
            outcomes.push(format!("{label} ({how}): {outcome}"));
        }
    };
    attempt(
        "x posts outside the intent",
        "x",
        "/chan/other/data",
        "as x",
    );
    attempt(
        "x widens the thief's intent",
        "x",
        "/agent/thief/ctl",
        "intent rw /",
    );
    attempt(
        "x sets another agent's program",
        "x",
        "/agent/peer/ctl",
        "exec /bin/true",
    );
    attempt(
        "owner spoofs the sender",
        "owner",
        "/chan/out/data",
        "from the owner",
    );
    attempt(
        "agent/peer drifts for the peer",
        "agent/peer",
        "/chan/other/data",
        "as peer",
    );
    let tried = outcomes.join("\n");

    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        sent(&node, "other"),
        0,
        "a message reached /chan/other:\n{tried}"
    );
    let out = cat(&node, "/chan/out/status");
    assert!(
        !out.lines().any(|l| l.starts_with("sender owner")),
        "a message was stamped as the owner's:\n{out}\n{tried}"
    );
    assert_eq!(
        cat(&node, "/agent/thief/intent"),
        "r /chan/in\nw /chan/out\n",
        "the thief widened its intent:\n{tried}"
    );
    assert_eq!(
        status(&node, "peer", "exec"),
        peer_prog.display().to_string(),
        "the thief set the peer's program:\n{tried}"
    );
    assert_eq!(
        status(&node, "peer", "state"),
        "running",
        "the thief made the peer drift:\n{tried}"
    );
}

#[test]
fn attack_01_cli_a_token_of_agent_foo_narrowed_to_holder_x_cannot_write_outside_foos_intent() {
    // The issue's reproduction, without an agent's process.
    let node = Node::start();
    mkdir(&node, "/chan/in");
    mkdir(&node, "/chan/other");
    mkdir(&node, "/agent/foo");
    write(&node, "/agent/foo/ctl", "intent r /chan/in");
    let (ok, minted, err) = node.cell0(&[
        "cap",
        "mint",
        "--scope",
        "/",
        "--rights",
        "rw",
        "--ttl",
        "1h",
        "--holder",
        "agent/foo",
    ]);
    assert!(ok, "mint for agent/foo: {err}");
    let foo = token_file(&node, "foo", minted.trim());
    if let Ok(x) = attenuate(&foo, &["--holder", "x"]) {
        let x = token_file(&node, "x", &x);
        let r = write_with(&node, &x, "/chan/other/data", "stolen");
        assert!(
            r.is_err(),
            "holder x wrote /chan/other/data with agent foo's token (intent r /chan/in)"
        );
    }
    assert_eq!(sent(&node, "other"), 0);
}

// ---- attack 2: the node's key and owner token ----

#[test]
fn attack_02_the_nodes_key_and_owner_token_stay_out_of_an_agents_reach() {
    let node = Node::start();
    let data = std::fs::canonicalize(node.data()).unwrap();
    let owner = std::fs::read_to_string(data.join("owner.token")).unwrap();
    let key = std::fs::read_to_string(data.join("node.key")).unwrap();
    let (owner, key) = (owner.trim(), key.trim());
    agent(
        &node,
        "thief",
        include_str!("redteam/secrets.sh"),
        &[
            "intent r /chan",
            &format!("env DATA={}", data.display()),
            &format!("env NODE_PID={}", node_pid(&node)),
        ],
    );
    let log = wait_done(&node, "thief");
    tried(
        &log,
        &[
            "plain-token:",
            "umount the cover",
            "umount /proc:",
            "proc-1-root-token:",
        ],
    );
    let leaks: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(owner) || l.contains(key))
        .map(|l| l.split(':').next().unwrap_or(l))
        .collect();
    assert!(
        leaks.is_empty(),
        "the agent read the node's secrets by: {leaks:?}\nattempts that succeeded: {:?}",
        succeeded(&log)
    );
    let found: Vec<&str> = log.lines().filter(|l| l.starts_with("found ")).collect();
    assert!(
        found.is_empty(),
        "the agent found owner tokens or node keys on the host: {found:?}"
    );
}

// ---- attack 3: core_pattern ----

#[test]
fn attack_03_core_pattern_helper_never_runs_on_the_host() {
    // Before the node: dropped after it, so after the agent is gone.
    let pattern = HostFile::save("/proc/sys/kernel/core_pattern");
    let node = Node::start();
    let marker = node.dir.path().join("core-helper-ran");
    agent(
        &node,
        "crasher",
        include_str!("redteam/core.sh"),
        &[
            "intent r /chan",
            &format!("env MARKER={}", marker.display()),
        ],
    );
    let log = wait_done(&node, "crasher");
    tried(
        &log,
        &[
            "core_pattern:",
            "umount /proc:",
            "mount a new proc:",
            "crashed",
        ],
    );
    // A helper the kernel started for the crash has had its second.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        pattern.now(),
        pattern.saved,
        "the agent changed the host's core_pattern (restored now): {:?}",
        succeeded(&log)
    );
    assert!(
        !marker.exists(),
        "the host's kernel ran the agent's helper as root: {:?}",
        succeeded(&log)
    );
}

// ---- attack 4: the network ----

#[test]
fn attack_04_an_agent_without_the_network_reaches_no_socket_of_the_host() {
    let node = Node::start();
    let (tcp, port) = Listener::tcp();
    let name = format!("cell0-redteam-{}-{port}", std::process::id());
    let abs = Listener::unix(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap());
    let sock = node.dir.path().join("redteam.sock");
    let path = Listener::unix(&SocketAddr::from_pathname(&sock).unwrap());
    agent(
        &node,
        "netcat",
        include_str!("redteam/net.sh"),
        &[
            "intent r /chan",
            &format!("env TCP_PORT={port}"),
            &format!("env ABSTRACT={name}"),
            &format!("env UNIX_PATH={}", sock.display()),
        ],
    );
    let log = wait_done(&node, "netcat");
    let own = ["tcp", "abstract", "unix", "raw", "packet"].map(|s| format!("{s} via its own"));
    tried(&log, &own.each_ref().map(String::as_str));
    let ok = succeeded(&log);
    assert_eq!(tcp.hits(), 0, "the agent reached the host's TCP: {ok:?}");
    assert_eq!(
        abs.hits(),
        0,
        "the agent reached the host's abstract socket: {ok:?}"
    );
    assert_eq!(
        path.hits(),
        0,
        "the agent reached a unix socket of the host: {ok:?}"
    );
    let sockets: Vec<&&str> = ok
        .iter()
        .filter(|l| l.starts_with("raw ") || l.starts_with("packet "))
        .collect();
    assert!(
        sockets.is_empty(),
        "the agent opened raw or packet sockets: {sockets:?}"
    );
}

// ---- attack 5: host processes and settings ----

/// What the agent of attack 5 writes into a host process's stack (where
/// nothing lives: its lowest bytes).
const MEMORY_MARK: &[u8] = b"RED-TEAM-WAS-HERE";

#[test]
fn attack_05_the_hosts_processes_and_the_owners_mount_are_out_of_reach() {
    let node = Node::start();
    let owner_mount = cell0_tests::Mount::on(&node, "");
    let target = Killed(
        Command::new("sleep")
            .arg("300")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = target.0.id();
    let stack = stack_start(pid);
    let before = read_memory(pid, stack, MEMORY_MARK.len());
    agent(
        &node,
        "prowler",
        include_str!("redteam/hostproc.sh"),
        &[
            "intent r /chan",
            &format!("env TARGET_PID={pid}"),
            &format!("env MARK={}", String::from_utf8_lossy(MEMORY_MARK)),
            &format!("env NODE_PID={}", node_pid(&node)),
            &format!("env OWNER_MOUNT={}", owner_mount.path().display()),
        ],
    );
    let log = wait_done(&node, "prowler");
    tried(
        &log,
        &[
            "host process",
            "write its memory:",
            "mkdir through the owner's mount",
        ],
    );
    let ok = succeeded(&log);
    let after = read_memory(pid, stack, MEMORY_MARK.len());
    assert!(
        after == before && after != MEMORY_MARK,
        "the agent wrote the memory of a host process ({:?} at {stack:#x}): {ok:?}",
        String::from_utf8_lossy(&after)
    );
    let made: Vec<String> = ls(&node, "/chan")
        .into_iter()
        .filter(|c| c.starts_with("pwned"))
        .collect();
    assert!(
        made.is_empty(),
        "the agent used the owner's mount of the tree ({made:?}): {ok:?}"
    );
    assert!(
        has_line(&log, &format!("host process {pid}: hidden")),
        "the agent sees the host's processes: {ok:?}"
    );
}

#[test]
fn attack_05_the_hostname_clock_and_kernel_settings_stay_the_hosts() {
    // Before the node: dropped after it, so after the agent is gone.
    let hostname = HostFile::save("/proc/sys/kernel/hostname");
    let sysctl = HostFile::save("/proc/sys/kernel/printk_ratelimit_burst");
    let node = Node::start();
    let value: u64 = sysctl.saved.trim().parse().unwrap();
    agent(
        &node,
        "tinker",
        include_str!("redteam/settings.sh"),
        &[
            "intent r /chan",
            &format!("env NEW_HOSTNAME=redteam-{}", std::process::id()),
            "env SYSCTL=kernel/printk_ratelimit_burst",
            &format!("env SYSCTL_VALUE={}", value + 7),
        ],
    );
    let log = wait_done(&node, "tinker");
    tried(
        &log,
        &["hostname:", "sethostname:", "clock_settime:", "sysctl "],
    );
    let ok = succeeded(&log);
    assert_eq!(
        hostname.now(),
        hostname.saved,
        "the agent renamed the host (restored now): {ok:?}"
    );
    assert_eq!(
        sysctl.now(),
        sysctl.saved,
        "the agent wrote the host's /proc/sys (restored now): {ok:?}"
    );
    assert!(
        !has_line(&log, "clock_settime: ok"),
        "the agent may set the host's clock: {ok:?}"
    );
}

// ---- attack 6: agents reach each other ----

#[test]
fn attack_06_an_agent_can_neither_steal_another_agents_token_nor_post_as_it() {
    let node = Node::start();
    mkdir(&node, "/chan/vic");
    agent(
        &node,
        "victim",
        include_str!("redteam/idle.sh"),
        &["intent w /chan/vic"],
    );
    wait_done(&node, "victim");
    // The victim's capability, as the host sees it.
    let tokens: Vec<String> = agent_pids(&node.addr, "victim")
        .into_iter()
        .flat_map(|p| {
            let env = environ(p)
                .into_iter()
                .filter_map(|v| v.strip_prefix("CELL0_TOKEN=").map(String::from));
            let file = std::fs::read_to_string(format!("/proc/{p}/root/run/cell0/token"));
            env.chain(file.ok()).collect::<Vec<_>>()
        })
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    agent(
        &node,
        "spy",
        include_str!("redteam/peer.sh"),
        &["intent r /chan", "env VICTIM=victim"],
    );
    let log = wait_done(&node, "spy");
    tried(&log, &["umount /proc:"]);
    let ok = succeeded(&log);
    assert_eq!(
        sent(&node, "vic"),
        0,
        "the spy posted as the victim: {ok:?}"
    );
    let stolen: Vec<&str> = log.lines().filter(|l| l.starts_with("stolen")).collect();
    assert!(
        stolen.is_empty() && !tokens.iter().any(|t| log.contains(t.as_str())),
        "the spy stole the victim's capability: {stolen:?}"
    );
    assert_eq!(status(&node, "victim", "state"), "running");
}

// ---- attack 7: limits ----

#[test]
fn attack_07_an_agent_cannot_lift_its_limits_from_inside() {
    let node = Node::start();
    mkdir(&node, "/chan/go");
    let prog = agent(
        &node,
        "lifter",
        include_str!("redteam/cgroups.sh"),
        &["intent r /chan/go", "limit pids=64 mem=256M"],
    );
    wait_log(&node, "lifter", AGENT_SECS, "`ready` line", |l| {
        has_line(l, "ready")
    });
    let pid = program_pid(&node, "lifter", &prog);
    // Whatever it lifts is put back when the test ends.
    let saved = CgroupLimits::save(pid);
    write(&node, "/chan/go/data", "go");
    let log = wait_done(&node, "lifter");
    tried(&log, &["mount cgroup2:", "mount cgroup:pids:", "forked "]);
    let ok = succeeded(&log);
    let changed = saved.changed();
    assert!(
        changed.is_empty(),
        "it changed the limit files of its cgroups (restored now): {changed:?}\n{ok:?}"
    );
    let pids = effective_limit(pid, Limit::Pids);
    assert!(
        pids.is_some_and(|n| n <= 64),
        "its pids limit is {pids:?} after the attack, not 64 at most: {ok:?}"
    );
    let mem = effective_limit(pid, Limit::Memory);
    assert!(
        mem.is_some_and(|n| n <= 256 << 20),
        "its memory limit is {mem:?} after the attack, not 256M at most: {ok:?}"
    );
    let n = forked(&log);
    assert!(n < 64, "it forked {n} processes under pids=64: {ok:?}");
}

#[test]
fn attack_07_a_sub_agent_gets_no_more_than_its_parents_limits() {
    let node = Node::start();
    let kid = program(&node, "kid", include_str!("redteam/forker.sh"));
    agent(
        &node,
        "boss",
        include_str!("redteam/spawn.sh"),
        &[
            "intent rwc /agent",
            "limit pids=32",
            &format!("env KID_EXEC={}", kid.display()),
        ],
    );
    let log = wait_done(&node, "boss");
    tried(&log, &["spawn kid:", "limit pids=max", "start:"]);
    if !has_line(&log, "start: ok") {
        // Not started: nothing of it may run.
        std::thread::sleep(Duration::from_millis(500));
        assert!(agent_pids(&node.addr, "kid").is_empty(), "{log}");
        return;
    }
    let kid_log = wait_done(&node, "kid");
    let n = forked(&kid_log);
    let pid = program_pid(&node, "kid", &kid);
    let limit = effective_limit(pid, Limit::Pids);
    assert!(
        limit.is_some_and(|l| l <= 32) && n < 32,
        "the sub-agent of a parent under pids=32 has a pids limit of {limit:?} and forked {n}; its parent did: {:?}",
        succeeded(&log)
    );
}

#[test]
fn attack_07_an_agent_given_no_limit_still_has_limits() {
    let node = Node::start();
    let prog = agent(
        &node,
        "plain",
        include_str!("redteam/idle.sh"),
        &["intent r /chan"],
    );
    wait_done(&node, "plain");
    let pid = program_pid(&node, "plain", &prog);
    let pids = effective_limit(pid, Limit::Pids);
    let mem = effective_limit(pid, Limit::Memory);
    assert!(
        pids.is_some() && mem.is_some(),
        "an agent without `limit` runs with a pids limit of {pids:?} and a memory limit of {mem:?}"
    );
}

// ---- attack 8: one agent fills the tree ----

#[test]
fn attack_08_an_agent_making_agents_in_a_loop_stops_at_its_quota() {
    let node = Node::start();
    let prog = program(&node, "breeder", include_str!("redteam/breeder.sh"));
    mkdir(&node, "/agent/breeder");
    let ctl = "/agent/breeder/ctl";
    // The quota of its tree (an older node has none: it refuses the key).
    let quota = try_write(&node, ctl, "limit agents=16");
    write(&node, ctl, &format!("exec {}", prog.display()));
    write(&node, ctl, "intent rwc /agent");
    write(&node, ctl, "start");
    let log = wait_done(&node, "breeder");
    tried(&log, &["made "]);
    let made = ls(&node, "/agent")
        .iter()
        .filter(|a| a.starts_with("flood-"))
        .count();
    assert!(
        made <= 16,
        "the agent made {made} agents (limit agents=16: {quota:?}):\n{log}"
    );
    // The owner is not locked out of the tree it shares.
    mkdir(&node, "/agent/owners-own");
}

// ---- attack 9: log flooding ----

/// The most the node's log and data may grow while one agent floods its
/// output for five seconds: an unbounded node grew by some 1.7 MB here,
/// one that rate-limits what it commits by some 56 KB.
const FLOOD_BOUND: u64 = 256 << 10;

#[test]
fn attack_09_a_flooding_agent_costs_the_node_a_bounded_amount() {
    let node = Node::start();
    let log_bytes = |node: &Node| -> u64 {
        let s = cat(node, "/raft/status");
        field(&s, "log_bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no log_bytes in /raft/status:\n{s}"))
    };
    let (log_before, disk_before) = (log_bytes(&node), dir_bytes(&node.data()));
    agent(
        &node,
        "flood",
        include_str!("redteam/flood.sh"),
        &["intent r /chan"],
    );
    wait_done(&node, "flood");
    let grew_log = log_bytes(&node).saturating_sub(log_before);
    let grew_disk = dir_bytes(&node.data()).saturating_sub(disk_before);
    assert!(
        grew_log <= FLOOD_BOUND && grew_disk <= FLOOD_BOUND,
        "five seconds of one agent's output grew the node's log by {grew_log} bytes and its data by {grew_disk} (at most {FLOOD_BOUND})"
    );
    // Whatever was dropped, the agent's record says so.
    let says = |node: &Node| {
        ["log", "status", "trace"].iter().any(|f| {
            cat(node, &format!("/agent/flood/{f}"))
                .to_lowercase()
                .contains("drop")
        })
    };
    wait("a line saying the agent's output was dropped", 10, || {
        says(&node)
    });
}

// ---- attack 10: a link's id ----

#[test]
fn attack_10_a_link_id_chosen_by_its_maker_is_not_taken() {
    let node = Node::start();
    mkdir(&node, "/chan/a");
    agent(
        &node,
        "maker",
        include_str!("redteam/exfil.sh"),
        &["intent rw /chan/a", "env WAIT_CHAN=a"],
    );
    let token = exfiltrated_token(&node, "maker");
    let parent = token_file(&node, "maker", &token);
    // Another capability, whose id a forged link copies.
    let (ok, bob, err) = node.cell0(&[
        "cap", "mint", "--scope", "/chan/a", "--rights", "r", "--ttl", "1h", "--holder", "bob",
    ]);
    assert!(ok, "mint bob: {err}");
    let bob_id = Wire::parse(&bob).links[0].id;
    let honest = attenuate(&parent, &["--scope", "/chan/a"]).expect("an honest narrowing");
    let forger = Wire::forger(&token, &honest);
    // A token scoped to /chan/a attaches there (cap(3)): its data is /data.
    write_with(
        &node,
        &token_file(&node, "honest", &honest),
        "/data",
        "honest",
    )
    .expect("the honest narrowing writes within the intent");

    let mut accepted = Vec::new();
    let choices: [(&str, u64, Option<&str>); 4] = [
        ("id 0", 0, None),
        ("id 0 as owner", 0, Some("owner")),
        ("id 3", 3, None),
        ("bob's id", bob_id, None),
    ];
    for (label, id, holder) in choices {
        let forged = forger.forge(|l| {
            l.id = id;
            if let Some(h) = holder {
                l.holder = h.to_string();
            }
        });
        let f = token_file(&node, &format!("forged-{id}"), &forged);
        if write_with(&node, &f, "/data", label).is_ok() {
            accepted.push(label);
        }
    }
    // Whatever was accepted is not stamped with the id its maker chose.
    let msgs = read_for(&node, "/chan/a/msgs", 3);
    assert!(
        msgs.lines().any(|l| l.contains(" data=686f6e657374")),
        "the honest message is in msgs:\n{msgs}"
    );
    for chosen in [0, 3, bob_id] {
        let stamped: Vec<&str> = msgs
            .lines()
            .filter(|l| l.contains(&format!(" cap={chosen} ")))
            .collect();
        assert!(
            stamped.is_empty(),
            "messages stamped with the chosen id {chosen} (forged tokens accepted: {accepted:?}):\n{}",
            stamped.join("\n")
        );
    }
    assert!(
        !msgs.contains(" sender=owner "),
        "a forged link posted as the owner (accepted: {accepted:?})"
    );
}

// ---- attack 11: the smaller ones ----

#[test]
fn attack_11_a_scoped_admin_capability_mints_within_its_scope() {
    // A capability-layer fault, shown with the CLI: cap(3) says a token
    // with the admin right mints within its scope.
    let node = Node::start();
    mkdir(&node, "/chan/team");
    let owner = node.data().join("owner.token");
    let lead = attenuate(
        &owner,
        &["--scope", "/chan", "--rights", "rwcda", "--holder", "lead"],
    )
    .expect("narrowing the owner's token");
    let lead = token_file(&node, "lead", &lead).display().to_string();
    let mint = |scope: &str| {
        node.cell0(&[
            "cap", "mint", "--scope", scope, "--rights", "r", "--ttl", "300s", "--holder",
            "helper", "--token", &lead,
        ])
    };
    let (ok, helper, err) = mint("/chan/team");
    assert!(
        ok,
        "a token with rwcda over /chan cannot mint for /chan/team: {err}"
    );
    let helper = token_file(&node, "helper", helper.trim());
    // Scoped to /chan/team, it attaches there: its status is /status.
    cat_with(&node, &helper, "/status").expect("the minted token reads its scope");
    let (ok, _, _) = mint("/raft");
    assert!(!ok, "a token scoped to /chan minted for /raft");
}

#[test]
fn attack_11_an_aname_with_two_tokens_is_refused() {
    // A protocol-level fault, shown with the 9P client at the attach.
    let node = Node::start();
    mkdir(&node, "/chan/x");
    let owner = std::fs::read_to_string(node.data().join("owner.token")).unwrap();
    let weak = attenuate(
        &node.data().join("owner.token"),
        &["--scope", "/chan/x", "--rights", "r", "--holder", "weak"],
    )
    .unwrap();
    for aname in [
        format!("token={weak} token={}", owner.trim()),
        format!("token={} token={weak}", owner.trim()),
    ] {
        let r = attach_with_aname(&node.addr, &aname);
        assert!(r.is_err(), "an attach with two token= words was taken");
    }
    // One token alone attaches (the refusal above is not for the form).
    attach_with_aname(&node.addr, &format!("token={weak}")).expect("one token= attaches");
}

#[test]
fn attack_11_a_holder_with_bidi_or_control_characters_is_refused() {
    let node = Node::start();
    mkdir(&node, "/chan/c");
    let owner_file = node.data().join("owner.token");
    let owner = std::fs::read_to_string(&owner_file).unwrap();
    let holder = "evil\u{202e}renwo";
    // Through the tool …
    let mut accepted = Vec::new();
    if let Ok(t) = attenuate(
        &owner_file,
        &["--scope", "/chan/c", "--rights", "rw", "--holder", holder],
    ) {
        let f = token_file(&node, "bidi", &t);
        // Scoped to /chan/c, it attaches there: its data is /data.
        if write_with(&node, &f, "/data", "via the tool").is_ok() {
            accepted.push("U+202E through cell0 cap attenuate");
        }
    }
    // … and past it, signed by hand.
    let honest = attenuate(
        &owner_file,
        &["--scope", "/chan/c", "--rights", "rw", "--holder", "plain"],
    )
    .unwrap();
    let forger = Wire::forger(&owner, &honest);
    for (label, h) in [
        ("U+202E signed by hand", holder),
        ("ESC signed by hand", "evil\u{1b}[31m"),
    ] {
        let forged = forger.forge(|l| l.holder = h.to_string());
        let f = token_file(&node, "forged-holder", &forged);
        if write_with(&node, &f, "/data", label).is_ok() {
            accepted.push(label);
        }
    }
    let st = cat(&node, "/chan/c/status");
    assert!(
        accepted.is_empty() && !st.contains('\u{202e}') && !st.contains('\u{1b}'),
        "holders with bidi or control characters were taken ({accepted:?}):\n{st}"
    );
}

#[test]
fn attack_11_a_parked_read_is_answered_when_its_capability_is_revoked() {
    let node = Node::start();
    mkdir(&node, "/chan/q");
    agent(
        &node,
        "waiter",
        include_str!("redteam/exfil.sh"),
        &["intent r /chan/q", "env WAIT_CHAN=q"],
    );
    let token = token_file(&node, "waiter", &exfiltrated_token(&node, "waiter"));
    wait("the agent's read to park", 15, || {
        field(&cat(&node, "/chan/q/status"), "waiting").is_some_and(|w| w != "0")
    });
    let t = token.display().to_string();
    let (ok, _, err) = node.cell0(&["cap", "revoke", &t]);
    assert!(ok, "revoking the agent's capability: {err}");
    wait_log(&node, "waiter", 10, "answer to its parked read", |l| {
        l.lines().any(|x| x.starts_with("read returned"))
    });
}

// ---- what holds ----

#[test]
fn hold_an_agents_token_used_outside_its_intent_halts_the_agent() {
    let node = Node::start();
    for c in ["in", "out", "other"] {
        mkdir(&node, &format!("/chan/{c}"));
    }
    agent(
        &node,
        "drifter",
        include_str!("redteam/exfil.sh"),
        &["intent r /chan/in w /chan/out"],
    );
    let token = token_file(&node, "drifter", &exfiltrated_token(&node, "drifter"));
    let r = write_with(&node, &token, "/chan/other/data", "outside");
    assert!(r.is_err(), "the agent's token wrote outside its intent");
    wait("the agent halted for drift", 10, || {
        status(&node, "drifter", "state") == "halted-drift"
    });
    assert_eq!(sent(&node, "other"), 0);
    wait("the agent's processes to end", 10, || {
        agent_pids(&node.addr, "drifter").is_empty()
    });
}

#[test]
fn hold_attenuation_never_widens_rights_or_expiry() {
    let node = Node::start();
    mkdir(&node, "/chan/in");
    agent(
        &node,
        "narrow",
        include_str!("redteam/exfil.sh"),
        &["intent r /chan/in"],
    );
    let token = exfiltrated_token(&node, "narrow");
    let parent = token_file(&node, "narrow", &token);
    let r = attenuate(&parent, &["--rights", "rwcda"]);
    assert!(r.is_err(), "cell0 cap attenuate widened the rights");
    let r = attenuate(&parent, &["--ttl", "36500d"]);
    assert!(r.is_err(), "cell0 cap attenuate widened the expiry");
    // Past the tool, signed by hand: the node refuses the token itself,
    // even for a read its intent allows.
    let honest = attenuate(&parent, &[]).expect("an attenuation that changes nothing");
    let forger = Wire::forger(&token, &honest);
    let wider_rights = forger.forge(|l| l.rights = 0x1f); // rwcda
    let later = forger.forge(|l| l.expires += 100 * 365 * 86400);
    for (label, forged) in [("wider rights", wider_rights), ("a later expiry", later)] {
        let f = token_file(&node, "wider", &forged);
        let r = cat_with(&node, &f, "/chan/in/status");
        assert!(r.is_err(), "the node took a link with {label}");
    }
    assert_eq!(status(&node, "narrow", "state"), "running");
}

#[test]
fn hold_stop_and_killing_the_node_end_everything_an_agent_started() {
    let node = Node::start();
    mkdir(&node, "/chan/in");
    // A sleep(1) argument no other process has.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let mark = format!("3000.{}{nanos:09}", std::process::id());
    agent(
        &node,
        "tree",
        include_str!("redteam/tree.sh"),
        &["intent r /chan/in", &format!("env MARK={mark}")],
    );
    wait_done(&node, "tree");
    wait("the agent's nine processes", 10, || {
        processes_with_arg(&mark).len() >= 9
    });
    write(&node, "/agent/tree/ctl", "stop");
    wait("every process of it to end after stop", 15, || {
        processes_with_arg(&mark).is_empty()
    });
    write(&node, "/agent/tree/ctl", "start");
    wait("the agent's nine processes again", 15, || {
        processes_with_arg(&mark).len() >= 9
    });
    let (_dir, _addr) = node.kill_keep();
    wait("every process of it to end with the node", 10, || {
        processes_with_arg(&mark).is_empty()
    });
}

#[test]
fn hold_a_fork_bomb_under_limit_pids_64_is_held() {
    let node = Node::start();
    agent(
        &node,
        "bomb",
        include_str!("redteam/forker.sh"),
        &["intent r /chan", "limit pids=64", "env FORKS=1000"],
    );
    let log = wait_done(&node, "bomb");
    let n = forked(&log);
    assert!(n < 64, "it forked {n} processes under pids=64");
    let live = agent_pids(&node.addr, "bomb").len();
    assert!(live <= 64, "{live} processes of the agent under pids=64");
    write(&node, "/agent/bomb/ctl", "stop");
    wait("every process of the bomb to end", 15, || {
        agent_pids(&node.addr, "bomb").is_empty()
    });
}
