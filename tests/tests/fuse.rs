//! The tree through a real FUSE mount, driven by shell tools only.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cell0_tests::{Mount, Node, sh, sh_ok};

#[test]
fn shell_tools_use_the_tree() {
    let node = Node::start();
    let m = Mount::new(&node.addr);
    let d = m.path();

    let ls = sh_ok(d, "ls");
    assert_eq!(
        ls.split_whitespace().collect::<Vec<_>>(),
        ["chan", "ctl", "events", "proof", "status"]
    );
    let status = sh_ok(d, "cat status");
    assert!(status.starts_with("node "), "{status}");
    assert_eq!(
        sh_ok(d, "awk '$1==\"channels\"{print $2}' status").trim(),
        "0"
    );

    sh_ok(d, "mkdir chan/alerts");
    assert_eq!(
        sh_ok(d, "ls chan/alerts")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["ctl", "data", "status"]
    );
    assert_eq!(
        sh_ok(d, "awk '$1==\"channels\"{print $2}' status").trim(),
        "1",
        "status is not stale"
    );
    let again = sh(d, "mkdir chan/alerts");
    assert!(
        !again.status.success(),
        "mkdir of an existing channel fails"
    );

    sh_ok(d, "echo hello > chan/alerts/data");
    sh_ok(d, "echo world > chan/alerts/data");
    assert!(sh_ok(d, "cat chan/alerts/status").contains("queued 2\n"));
    assert_eq!(sh_ok(d, "head -c 6 chan/alerts/data"), "hello\n");

    sh_ok(d, "rm -r chan/alerts");
    assert_eq!(sh_ok(d, "ls chan"), "");
}

#[test]
fn a_blocking_cat_receives_lines_written_by_another_process() {
    let node = Node::start();
    let m = Mount::new(&node.addr);
    let d = m.path();
    sh_ok(d, "mkdir chan/pipe");
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("received");
    let _ = std::fs::remove_file(&out);
    let mut reader = Command::new("bash")
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
    loop {
        if reader.try_wait().unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "cat did not end on SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Nothing was lost by the interrupted read: a new message still arrives.
    sh_ok(d, "echo four > chan/pipe/data");
    assert_eq!(sh_ok(d, "head -n1 chan/pipe/data"), "four\n");
    let _ = std::fs::remove_file(&out);
}

#[test]
fn a_bad_ctl_write_fails_changes_nothing_and_says_why_on_events() {
    let node = Node::start();
    let m = Mount::new(&node.addr);
    let d = m.path();
    sh_ok(d, "mkdir chan/alerts");
    let scratch = tempfile::tempdir().unwrap();
    let events = scratch.path().join("events.txt");
    let mut follower = Command::new("bash")
        .arg("-c")
        .arg(format!("exec cat events > {}", events.display()))
        .current_dir(d)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let before = sh_ok(d, "cat chan/alerts/status");
    // One write of two lines (cat copies the file in one read and one
    // write; the shell's printf may write line by line).
    let two_lines = scratch.path().join("two-lines");
    std::fs::write(&two_lines, "close\nqoss rate=100\n").unwrap();
    let bad = sh(d, &format!("cat {} > chan/alerts/ctl", two_lines.display()));
    let _ = std::fs::remove_file(&two_lines);
    assert!(!bad.status.success(), "a bad ctl write must fail");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("Invalid argument"), "{err}");
    assert_eq!(
        sh_ok(d, "cat chan/alerts/status"),
        before,
        "the valid first line was not applied"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = std::fs::read_to_string(&events).unwrap_or_default();
        if got.contains("error /chan/alerts/ctl: chan alerts: unknown verb \"qoss\"; expected clear, close, open") {
            break;
        }
        assert!(Instant::now() < deadline, "events shows {got:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = follower.kill();
    let _ = follower.wait();
    let _ = std::fs::remove_file(&events);
}
