//! The conformance suite: what any server of the Cell0 tree must do,
//! checked through clients this project did not write (shell tools on a
//! FUSE mount, p9fs, diod's tools), given only its address. The hosted
//! node's tests and the kernel's run the same checks.
//!
//! Each check uses channels of its own name and removes them, so checks
//! can run one after another against one server.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Mount, cell0_bin, output_within, require_tool, sh, sh_ok};

/// The names every Cell0 root holds.
pub const ROOT_NAMES: [&str; 9] = [
    "agent", "cap", "chan", "ctl", "events", "proof", "raft", "status", "swarm",
];

/// Every shell-tool check through one FUSE mount of `addr`, made with
/// `token` (a token file; `None` for a server that takes none).
pub fn fuse_suite(addr: &str, token: Option<&Path>) {
    let m = Mount::with_token(addr, token);
    let d = m.path();
    tree(d);
    channel_round_trip(d);
    blocking_read(d);
    bad_ctl(d);
    let proof = proof_boot(d);
    assert!(!proof.is_empty());
}

/// `ls` of the root shows [`ROOT_NAMES`]; `status` starts `node NAME` and
/// counts channels as they are made; `mkdir` of an existing channel fails.
pub fn tree(d: &Path) {
    let ls = sh_ok(d, "ls");
    let names: Vec<&str> = ls.split_whitespace().collect();
    for name in ROOT_NAMES {
        assert!(names.contains(&name), "ls of the root shows {names:?}");
    }
    let status = sh_ok(d, "cat status");
    let first = status.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("node ") && first.len() > "node ".len(),
        "status starts {first:?}"
    );
    let channels = || -> u64 {
        sh_ok(d, "awk '$1==\"channels\"{print $2}' status")
            .trim()
            .parse()
            .expect("status has a channels count")
    };
    let before = channels();
    sh_ok(d, "mkdir chan/tree");
    assert_eq!(channels(), before + 1, "status is not stale");
    assert_eq!(
        sh_ok(d, "ls chan/tree")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["ctl", "data", "groups", "msgs", "status"]
    );
    let again = sh(d, "mkdir chan/tree");
    assert!(
        !again.status.success(),
        "mkdir of an existing channel fails"
    );
    sh_ok(d, "rm -r chan/tree");
    assert_eq!(channels(), before);
}

/// `echo hi > chan/NAME/data` sends a message that every reader gets, one
/// message per read, from the oldest retained; `rm -r` removes the channel.
pub fn channel_round_trip(d: &Path) {
    sh_ok(d, "mkdir chan/alerts");
    sh_ok(d, "echo hi > chan/alerts/data");
    sh_ok(d, "echo world > chan/alerts/data");
    assert!(sh_ok(d, "cat chan/alerts/status").contains("retained 2\n"));
    assert_eq!(sh_ok(d, "head -c 3 chan/alerts/data"), "hi\n");
    assert_eq!(sh_ok(d, "head -n 2 chan/alerts/data"), "hi\nworld\n");
    assert_eq!(
        sh_ok(d, "head -n 2 chan/alerts/data"),
        "hi\nworld\n",
        "reading does not consume: every reader sees every message"
    );
    let status = sh_ok(d, "cat chan/alerts/status");
    assert!(status.contains("sent 2\n"), "{status}");
    assert!(sh_ok(d, "head -n 1 chan/alerts/msgs").contains(" verified=yes "));
    sh_ok(d, "rm -r chan/alerts");
    let left = sh_ok(d, "ls chan");
    assert!(
        !left.split_whitespace().any(|n| n == "alerts"),
        "chan/alerts is still listed: {left}"
    );
}

/// A `cat` blocked on an empty channel receives lines written later by
/// another process; Ctrl-C ends it (Tflush) and loses nothing.
pub fn blocking_read(d: &Path) {
    sh_ok(d, "mkdir chan/pipe");
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("received");
    let mut reader = crate::shell::default_signals(&mut Command::new("bash"))
        .arg("-c")
        .arg(format!("exec cat chan/pipe/data > {}", out.display()))
        .current_dir(d)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // The reader is blocked on an empty channel.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sh_ok(d, "cat chan/pipe/status").contains("waiting 1") {
        assert!(Instant::now() < deadline, "reader never blocked");
        std::thread::sleep(Duration::from_millis(20));
    }
    for line in ["one", "two", "three"] {
        sh_ok(d, &format!("echo {line} > chan/pipe/data"));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = std::fs::read_to_string(&out).unwrap_or_default();
        if got == "one\ntwo\nthree\n" {
            break;
        }
        assert!(Instant::now() < deadline, "reader got {got:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Ctrl-C on the blocked cat ends it (the mount answers with Tflush).
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(reader.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while reader.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "cat did not end on SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Nothing was lost by the interrupted read: a new reader gets all.
    sh_ok(d, "echo four > chan/pipe/data");
    assert_eq!(
        sh_ok(d, "head -n4 chan/pipe/data"),
        "one\ntwo\nthree\nfour\n"
    );
    sh_ok(d, "rm -r chan/pipe");
}

/// A ctl write with a bad verb fails (EINVAL), applies none of its lines,
/// and its message appears on `/events`.
pub fn bad_ctl(d: &Path) {
    sh_ok(d, "mkdir chan/badctl");
    let scratch = tempfile::tempdir().unwrap();
    let events = scratch.path().join("events.txt");
    let mut follower = crate::shell::default_signals(&mut Command::new("bash"))
        .arg("-c")
        .arg(format!("exec cat events > {}", events.display()))
        .current_dir(d)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let before = sh_ok(d, "cat chan/badctl/status");
    // One write of two lines (cat copies the file in one read and one
    // write; the shell's printf may write line by line).
    let two_lines = scratch.path().join("two-lines");
    std::fs::write(&two_lines, "close\nqoss rate=100\n").unwrap();
    let bad = sh(d, &format!("cat {} > chan/badctl/ctl", two_lines.display()));
    assert!(!bad.status.success(), "a bad ctl write must fail");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("Invalid argument"), "{err}");
    assert_eq!(
        sh_ok(d, "cat chan/badctl/status"),
        before,
        "the valid first line was not applied"
    );
    let want = "error /chan/badctl/ctl: chan badctl: unknown verb \"qoss\"; expected clear, close, open, retain, qos, full, group, ungroup, connect, disconnect";
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = std::fs::read_to_string(&events).unwrap_or_default();
        if got.contains(want) {
            break;
        }
        assert!(Instant::now() < deadline, "events shows {got:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Ctrl-C, as a user ends `cat events` (the mount cancels its blocked
    // read with Tflush); a read that is never answered must not hang the
    // suite: past 10 s the follower is killed and left, and said so.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(follower.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while follower.try_wait().ok().flatten().is_none() {
        if Instant::now() >= deadline {
            eprintln!("bad_ctl: `cat events` did not end within 10 s of SIGINT; killed and left");
            let _ = follower.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    sh_ok(d, "rm -r chan/badctl");
}

/// `/proof/boot` reads with `cat`; every line is a marker or a `#`
/// comment. Returns its text.
pub fn proof_boot(d: &Path) -> String {
    assert!(sh_ok(d, "ls proof").split_whitespace().any(|n| n == "boot"));
    let text = sh_ok(d, "cat proof/boot");
    assert!(!text.is_empty(), "/proof/boot is empty");
    for line in text.lines() {
        assert!(line.starts_with('#'), "/proof/boot has {line:?}");
    }
    text
}

/// Run a client, failing (not hanging) if it takes more than a minute.
fn run(cmd: &mut Command) -> String {
    let out = output_within(60, cmd);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{text}",
        out.status
    );
    text
}

/// `cell0 ARGS --addr ADDR [--token FILE]`; returns (success, stdout,
/// stderr).
pub fn cell0(addr: &str, token: Option<&Path>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(cell0_bin());
    cmd.args(args).args(["--addr", addr]);
    if let Some(t) = token {
        cmd.arg("--token").arg(t);
    }
    let out = output_within(60, &mut cmd);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The p9fs checks (tests/clients/p9fs_check.py) in every dialect.
pub fn p9fs_suite(addr: &str, token: Option<&Path>) {
    p9fs(addr, "9P2000", token);
    p9fs(addr, "9P2000.u", token);
    p9fs(addr, "9P2000.L", token);
}

/// The aname that carries `token` (a token file): `token=c0.…`, or "" for
/// none.
pub fn token_aname(token: Option<&Path>) -> String {
    match token {
        Some(t) => {
            let text = std::fs::read_to_string(t)
                .unwrap_or_else(|e| panic!("reading token file {}: {e}", t.display()));
            format!("token={}", text.trim())
        }
        None => String::new(),
    }
}

/// The p9fs checks in `version` (`9P2000`, `9P2000.u` or `9P2000.L`): ls of the root,
/// /status, /proof/boot, a channel made, written, read, a bad ctl verb
/// refused, the channel removed.
pub fn p9fs(addr: &str, version: &str, token: Option<&Path>) {
    require_tool("python3", "apt-get install python3");
    let ok = Command::new("python3")
        .args(["-c", "import p9fs"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the p9fs Python package is missing: python3 -m pip install p9fs (tests/run installs it)"
    );
    let (host, port) = addr.rsplit_once(':').expect("addr is HOST:PORT");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/p9fs_check.py");
    let out = run(Command::new("python3")
        .arg(script)
        .args([host, port, version])
        .arg(token_aname(token)));
    assert!(out.contains(&format!("p9fs {version} ok")), "{out}");
}

/// diod's `diodls` and `diodcat` (9P2000.L) list the root and read
/// /status, /proof/boot and a closed channel's message to its end.
pub fn diod_suite(addr: &str, token: Option<&Path>) {
    require_tool("diodls", "apt-get install diod");
    require_tool("diodcat", "apt-get install diod");
    let ok = |r: (bool, String, String)| assert!(r.0, "cell0 failed: {}{}", r.1, r.2);
    ok(cell0(addr, token, &["mkdir", "/chan/diod"]));
    ok(cell0(
        addr,
        token,
        &["write", "/chan/diod/data", "via diodcat"],
    ));
    // A closed channel gives end of file once drained, so diodcat, which
    // reads to the end, stops.
    ok(cell0(addr, token, &["write", "/chan/diod/ctl", "close"]));
    let aname = match token {
        Some(_) => token_aname(token),
        None => "/".to_string(),
    };
    let ls = run(Command::new("diodls").args(["-t", "20", "-s", addr, "-a", &aname, "/"]));
    for name in ROOT_NAMES {
        assert!(
            ls.lines()
                .any(|l| l.trim() == name || l.ends_with(&format!(" {name}"))),
            "diodls shows {ls}"
        );
    }
    let diodcat = |path: &str| {
        run(Command::new("diodcat").args(["-t", "20", "-s", addr, "-a", &aname, path]))
    };
    let status = diodcat("status");
    assert!(status.starts_with("node "), "{status}");
    let proof = diodcat("proof/boot");
    assert!(proof.starts_with('#'), "{proof}");
    assert_eq!(diodcat("chan/diod/data"), "via diodcat\n");
    ok(cell0(addr, token, &["rm", "/chan/diod"]));
}
