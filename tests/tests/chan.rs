//! Channels through real FUSE mounts with shell tools: fan-out to every
//! reader, a late reader, a consumer group, QoS per sender, bad input,
//! large messages and signatures. See chan(3).

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cell0_tests::{Mount, Node, cell0_bin, sh, sh_ok};

/// `cat FILE > OUT` in `dir`, in its own process group (killed at the end).
fn follow(dir: &Path, file: &str, out: &Path) -> Child {
    Command::new("bash")
        .arg("-c")
        .arg(format!("exec cat {file} > {}", out.display()))
        .current_dir(dir)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap()
}

fn stop(mut c: Child) {
    // SAFETY: kill(2) of the process group this test's child leads.
    unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
    let _ = c.wait();
}

/// Wait up to 20 s for `cond`, failing with `what`.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// The value of `key` in a status text.
fn field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {key} in {status}"))
        .to_string()
}

/// The value of `key=` in a msgs line.
fn field_eq<'a>(line: &'a str, key: &str) -> &'a str {
    line.split(' ')
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

fn mounted(node: &Node) -> Mount {
    Mount::with_token(&node.addr, Some(&node.owner_token()))
}

#[test]
fn two_readers_each_get_every_line_of_two_writers_in_one_order() {
    let node = Node::start();
    let m = mounted(&node);
    let d = m.path();
    sh_ok(d, "mkdir chan/f");
    let scratch = tempfile::tempdir().unwrap();
    let (o1, o2) = (scratch.path().join("r1"), scratch.path().join("r2"));
    let r1 = follow(d, "chan/f/data", &o1);
    let r2 = follow(d, "chan/f/data", &o2);
    wait_for("both readers to wait", || {
        field(&sh_ok(d, "cat chan/f/status"), "waiting") == "2"
    });
    let writers: Vec<_> = ["a", "b"]
        .iter()
        .map(|w| {
            let dir = d.to_path_buf();
            let w = w.to_string();
            std::thread::spawn(move || {
                sh_ok(
                    &dir,
                    &format!("for i in $(seq 1 50); do echo {w}-$i > chan/f/data; done"),
                )
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    wait_for("both readers to have 100 lines", || {
        lines(&o1).len() == 100 && lines(&o2).len() == 100
    });
    stop(r1);
    stop(r2);
    let (l1, l2) = (lines(&o1), lines(&o2));
    assert_eq!(l1, l2, "both readers saw the same order");
    for w in ["a", "b"] {
        let mine: Vec<&String> = l1.iter().filter(|l| l.starts_with(w)).collect();
        let want: Vec<String> = (1..=50).map(|i| format!("{w}-{i}")).collect();
        assert_eq!(
            mine,
            want.iter().collect::<Vec<_>>(),
            "writer {w}'s lines in order"
        );
    }
}

#[test]
fn a_late_reader_sees_what_is_retained_and_a_group_of_two_splits_the_work() {
    let node = Node::start();
    let m = mounted(&node);
    let d = m.path();
    sh_ok(
        d,
        "mkdir chan/late && echo 'retain count=3' > chan/late/ctl",
    );
    sh_ok(d, "for i in 1 2 3 4 5; do echo m$i > chan/late/data; done");
    assert_eq!(sh_ok(d, "head -n 3 chan/late/data"), "m3\nm4\nm5\n");

    // Past its age, a message is gone for a reader that comes later,
    // though nothing was written since.
    sh_ok(
        d,
        "mkdir chan/aged && echo 'retain age=2s' > chan/aged/ctl && echo stale > chan/aged/data && echo close > chan/aged/ctl",
    );
    assert_eq!(sh_ok(d, "cat chan/aged/data"), "stale\n");
    std::thread::sleep(Duration::from_millis(2_200));
    assert_eq!(sh_ok(d, "cat chan/aged/data"), "");

    sh_ok(d, "mkdir chan/jobs && echo 'group w' > chan/jobs/ctl");
    let scratch = tempfile::tempdir().unwrap();
    let (o1, o2) = (scratch.path().join("w1"), scratch.path().join("w2"));
    let w1 = follow(d, "chan/jobs/groups/w", &o1);
    let w2 = follow(d, "chan/jobs/groups/w", &o2);
    wait_for("both workers to wait", || {
        sh_ok(d, "cat chan/jobs/status").contains("group w next=1 pending=0 taken=0 waiting=2")
    });
    sh_ok(
        d,
        "for i in $(seq 1 200); do echo job-$i > chan/jobs/data; done",
    );
    wait_for("the group to take all 200", || {
        lines(&o1).len() + lines(&o2).len() >= 200
    });
    std::thread::sleep(Duration::from_millis(200));
    stop(w1);
    stop(w2);
    let (a, b) = (lines(&o1), lines(&o2));
    let mut all: Vec<String> = a.iter().chain(&b).cloned().collect();
    assert_eq!(all.len(), 200, "none doubled: {} + {}", a.len(), b.len());
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 200, "none lost or doubled");
    let status = sh_ok(d, "cat chan/jobs/status");
    assert!(status.contains("pending=0 taken=200"), "{status}");
}

/// A token file for holder `who`, attenuated from the owner's.
fn holder_token(node: &Node, dir: &Path, who: &str) -> PathBuf {
    let out = Command::new(cell0_bin())
        .args(["cap", "attenuate", "--holder", who])
        .arg(node.owner_token())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = dir.join(who);
    std::fs::write(&p, &out.stdout).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

#[test]
fn a_sender_over_its_rate_gets_eagain_and_another_is_unaffected() {
    let node = Node::start();
    let scratch = tempfile::tempdir().unwrap();
    let owner = mounted(&node);
    sh_ok(
        owner.path(),
        "mkdir chan/q && echo 'qos rate=1 burst=5' > chan/q/ctl",
    );
    let alice = Mount::with_token(
        &node.addr,
        Some(&holder_token(&node, scratch.path(), "alice")),
    );
    let bob = Mount::with_token(
        &node.addr,
        Some(&holder_token(&node, scratch.path(), "bob")),
    );
    let mut results = Vec::new();
    for i in 0..7 {
        results.push(sh(alice.path(), &format!("echo a{i} > chan/q/data")));
    }
    for (i, r) in results.iter().take(5).enumerate() {
        assert!(r.status.success(), "write {i} within the burst failed");
    }
    let refused = &results[5];
    assert!(
        !refused.status.success(),
        "the 6th write within a second passed"
    );
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("Resource temporarily unavailable"), "{err}");
    sh_ok(bob.path(), "echo b > chan/q/data");
    let status = sh_ok(owner.path(), "cat chan/q/status");
    assert!(status.contains("qos rate=1 burst=5\n"), "{status}");
    let alice_line = status
        .lines()
        .find(|l| l.starts_with("sender alice "))
        .unwrap();
    assert!(alice_line.starts_with("sender alice sent=5 "), "{status}");
    assert!(!alice_line.contains(" refused=0 "), "{status}");
    // One node: its own bucket refused her, so the log never had to.
    assert!(alice_line.ends_with(" limited=0"), "{status}");
    assert!(status.contains("sender bob sent=1 "), "{status}");
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("sender bob ") && l.contains(" refused=0 "))
    );
    assert_ne!(field(&status, "refused"), "0");
}

#[test]
fn bad_ctl_writes_fail_and_change_nothing() {
    let node = Node::start();
    let m = mounted(&node);
    let d = m.path();
    sh_ok(d, "mkdir chan/a chan/b && echo 'connect b' > chan/a/ctl");
    let before = (sh_ok(d, "cat chan/a/status"), sh_ok(d, "cat chan/b/status"));
    let graph = sh_ok(d, "cat chan/graph");
    assert_eq!(graph, "a b\n");
    for (file, text, errno) in [
        ("a", "qoss rate=1", "Invalid argument"),
        ("a", "qos rate=-1", "Invalid argument"),
        ("a", "qos rate=0", "Invalid argument"),
        ("a", "qos rate=99999999999", "Invalid argument"),
        ("a", "retain count=0", "Invalid argument"),
        ("a", "connect missing", "No such file or directory"),
        ("b", "connect a", "Invalid argument"),
        ("a", "connect a", "Invalid argument"),
        ("a", "close\nfull=sometimes", "Invalid argument"),
    ] {
        let out = sh(
            d,
            &format!(
                "env printf '{}\\n' > chan/{file}/ctl",
                text.replace('\n', "\\n")
            ),
        );
        assert!(!out.status.success(), "{text:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(errno), "{text:?}: {err}");
    }
    assert_eq!(
        (sh_ok(d, "cat chan/a/status"), sh_ok(d, "cat chan/b/status")),
        before,
        "nothing changed"
    );
    assert_eq!(sh_ok(d, "cat chan/graph"), graph);
}

#[test]
fn a_write_larger_than_a_message_is_refused_and_one_of_1020_kib_is_one_message() {
    let node = Node::start();
    let m = mounted(&node);
    let d = m.path();
    sh_ok(d, "mkdir chan/big");
    // One write(2) of 2 MiB (the shell's tools write in smaller blocks).
    let out = sh(
        d,
        "python3 -c 'import os; fd = os.open(\"chan/big/data\", os.O_WRONLY); os.write(fd, b\"x\" * 2097152)'",
    );
    assert!(!out.status.success(), "a 2 MiB write was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Message too long"), "{err}");
    assert_eq!(field(&sh_ok(d, "cat chan/big/status"), "sent"), "0");
    sh_ok(
        d,
        "python3 -c 'import os; fd = os.open(\"chan/big/data\", os.O_WRONLY); os.write(fd, b\"x\" * 1044480)'",
    );
    let status = sh_ok(d, "cat chan/big/status");
    assert_eq!(field(&status, "sent"), "1", "{status}");
    assert_eq!(field(&status, "bytes"), "1044480", "{status}");
}

#[test]
fn msgs_lines_verify_offline_and_a_changed_one_is_named() {
    let node = Node::start();
    let m = mounted(&node);
    let d = m.path();
    sh_ok(
        d,
        "mkdir chan/s && echo one > chan/s/data && echo two > chan/s/data",
    );
    let text = sh_ok(d, "head -n 2 chan/s/msgs");
    assert_eq!(text.matches(" verified=yes ").count(), 2, "{text}");
    assert!(text.contains(" sender=owner "), "{text}");
    // The sender's own numbers, signed with the rest.
    let nths: Vec<&str> = text.lines().map(|l| field_eq(l, "nth")).collect();
    assert_eq!(nths, ["1", "2"], "{text}");
    let scratch = tempfile::tempdir().unwrap();
    let saved = scratch.path().join("msgs");
    std::fs::write(&saved, &text).unwrap();
    let key = sh_ok(d, "cat cap/key").trim().to_string();
    let check = |p: &Path| {
        Command::new(cell0_bin())
            .args(["chan", "verify", "--key", &key])
            .arg(p)
            .output()
            .unwrap()
    };
    let ok = check(&saved);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // One hex digit of the second message's payload changed.
    let at = text.rfind("data=").unwrap() + 5;
    let mut bytes = text.into_bytes();
    bytes[at] = if bytes[at] == b'7' { b'6' } else { b'7' };
    std::fs::write(&saved, &bytes).unwrap();
    let bad = check(&saved);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("seq 2: the signature does not match"), "{err}");
}
