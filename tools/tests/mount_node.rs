//! `cell0 mount` of a hosted node: blocking reads through FUSE, and what
//! a signal to a blocked reader does (the mount answers it with Tflush).

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use cell0_tests::{Mount, Node, kill, proc_state, wait_for};

/// The `key value` of a status file through the mount.
fn status(m: &Mount, file: &str, key: &str) -> String {
    let text = m.sh_ok(&format!("cat {file}"));
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {key} in {file}:\n{text}"))
        .to_string()
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let mut status = None;
    wait_for("the reader to exit", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status.unwrap()
}

/// A Python reader: one read(2) of `path`; prints what it got, or
/// `interrupted` (exit 3) if SIGINT arrived. SIGINT runs Python's handler
/// (a caught signal); SIGTSTP keeps its default (stop).
fn py_reader(m: &Mount, path: &str, out: &Path) -> Child {
    let script = "import os, signal, sys\n\
        signal.signal(signal.SIGINT, signal.default_int_handler)\n\
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)\n\
        fd = os.open(sys.argv[1], os.O_RDONLY)\n\
        try:\n    print('got', os.read(fd, 4096), flush=True)\n\
        except KeyboardInterrupt:\n    print('interrupted', flush=True); sys.exit(3)\n";
    m.spawn(&["python3", "-c", script, path], out)
}

#[test]
fn a_blocked_cat_ends_on_sigint_and_the_read_is_flushed() {
    let node = Node::start();
    let m = Mount::on(&node, "");
    m.sh_ok("mkdir chan/p");
    let out = node.dir.path().join("cat.out");
    let mut cat = m.spawn(&["cat", "chan/p/data"], &out);
    wait_for("the reader to park", || {
        status(&m, "chan/p/status", "waiting") == "1"
    });
    m.sh_ok("echo one > chan/p/data");
    wait_for("the line", || {
        std::fs::read_to_string(&out).unwrap() == "one\n"
    });
    wait_for("the reader to park again", || {
        status(&m, "chan/p/status", "waiting") == "1"
    });

    kill(cat.id(), libc::SIGINT);
    let st = wait_exit(&mut cat);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(libc::SIGINT), "{st:?}");
    assert!(
        m.log_text()
            .contains("read /chan/p/data: the reader was interrupted; cancelled with Tflush"),
        "{}",
        m.log_text()
    );
    assert_eq!(status(&m, "chan/p/status", "waiting"), "0");
    // The cancelled read lost nothing: a new reader sees both messages.
    m.sh_ok("echo two > chan/p/data");
    assert_eq!(m.sh_ok("head -n2 chan/p/data"), "one\ntwo\n");
}

#[test]
fn a_caught_sigint_interrupts_the_read_and_runs_the_handler() {
    let node = Node::start();
    let m = Mount::on(&node, "");
    m.sh_ok("mkdir chan/p");
    let out = node.dir.path().join("py.out");
    let mut py = py_reader(&m, "chan/p/data", &out);
    wait_for("the reader to park", || {
        status(&m, "chan/p/status", "waiting") == "1"
    });
    kill(py.id(), libc::SIGINT);
    assert_eq!(wait_exit(&mut py).code(), Some(3));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "interrupted\n");
    assert_eq!(status(&m, "chan/p/status", "waiting"), "0");
}

#[test]
fn ctrl_z_does_not_abort_a_blocked_read() {
    let node = Node::start();
    let m = Mount::on(&node, "");
    m.sh_ok("mkdir chan/p");
    let out = node.dir.path().join("py.out");
    let mut py = py_reader(&m, "chan/p/data", &out);
    wait_for("the reader to park", || {
        status(&m, "chan/p/status", "waiting") == "1"
    });
    kill(py.id(), libc::SIGTSTP);
    // Several watcher rounds pass; the read must still be waiting.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(status(&m, "chan/p/status", "waiting"), "1");
    m.sh_ok("echo late > chan/p/data");
    wait_for("the reader to stop once its read returned", || {
        proc_state(py.id()) == Some('T')
    });
    kill(py.id(), libc::SIGCONT);
    assert_eq!(wait_exit(&mut py).code(), Some(0));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "got b'late\\n'\n");
}

#[test]
fn blocked_readers_do_not_hold_up_the_rest_of_the_mount() {
    let node = Node::start();
    let m = Mount::on(&node, "");
    // More blocked readers than the mount has FUSE worker threads.
    let mut readers = Vec::new();
    for i in 0..8 {
        m.sh_ok(&format!("mkdir chan/c{i}"));
        let out = node.dir.path().join(format!("c{i}.out"));
        readers.push((m.spawn(&["cat", &format!("chan/c{i}/data")], &out), out));
    }
    for i in 0..8 {
        wait_for("every reader to park", || {
            status(&m, &format!("chan/c{i}/status"), "waiting") == "1"
        });
    }
    assert_eq!(status(&m, "status", "channels"), "8");
    // The eight channels and /chan/graph.
    assert_eq!(m.sh_ok("ls chan | wc -l").trim(), "9");
    for i in 0..8 {
        m.sh_ok(&format!("echo msg{i} > chan/c{i}/data"));
    }
    for (i, (child, out)) in readers.iter_mut().enumerate() {
        let want = format!("msg{i}\n");
        wait_for("each reader's message", || {
            std::fs::read_to_string(&*out).unwrap() == want
        });
        kill(child.id(), libc::SIGTERM);
        wait_exit(child);
    }
}

#[test]
fn events_follow_through_the_mount_and_stop_on_sigint() {
    let node = Node::start();
    let m = Mount::on(&node, "");
    let out = node.dir.path().join("events.out");
    let mut cat = m.spawn(&["cat", "events"], &out);
    // The follower opens at the end; give it time to park.
    std::thread::sleep(Duration::from_millis(300));
    m.sh_ok("mkdir chan/seen");
    wait_for("a create event", || {
        std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .any(|l| l.split(' ').nth(2) == Some("create") && l.contains("seen"))
    });
    kill(cat.id(), libc::SIGINT);
    wait_exit(&mut cat);
}

#[test]
fn a_refused_ctl_write_fails_with_the_errno_and_the_log_has_the_nodes_words() {
    let node = Node::start();
    let m = Mount::on(&node, "");
    m.sh_ok("mkdir chan/a");
    let before = m.sh_ok("cat chan/a/status");
    let bad = m.sh("echo qoss > chan/a/ctl");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("Invalid argument"),
        "{bad:?}"
    );
    assert_eq!(m.sh_ok("cat chan/a/status"), before, "nothing changed");
    wait_for("the node's message in the mount log", || {
        m.log_text().contains("unknown verb \"qoss\"")
    });
    assert!(m.log_text().contains("write /chan/a/ctl: Invalid argument"));
    // A good ctl write goes through O_TRUNC (setattr size 0) and works.
    m.sh_ok("echo close > chan/a/ctl");
    assert_eq!(status(&m, "chan/a/status", "state"), "closed");
}

#[test]
fn status_files_are_never_stale_and_files_have_their_kinds() {
    let node = Node::start();
    let m = Mount::on(&node, "");
    let listing = m.sh_ok("ls -p");
    assert_eq!(
        listing.split_whitespace().collect::<Vec<_>>(),
        [
            "agent/", "cap/", "chan/", "ctl", "events", "proof/", "raft/", "status", "swarm/"
        ]
    );
    assert_eq!(status(&m, "status", "channels"), "0");
    m.sh_ok("mkdir chan/a chan/b");
    assert_eq!(status(&m, "status", "channels"), "2");
    m.sh_ok("rm -r chan/a");
    assert_eq!(status(&m, "status", "channels"), "1");
    assert_eq!(m.sh_ok("ls chan"), "b\ngraph\n");
    assert_eq!(m.sh_ok("stat -c %i ."), "1\n");
    let created = m.sh("echo x > chan/file");
    assert!(
        !created.status.success(),
        "plain files cannot be made in /chan"
    );
    assert!(m.sh_ok("df -P .").contains("cell0@"));
}

#[test]
fn when_the_node_dies_readers_get_eio_and_the_mount_goes_away() {
    let mut node = Node::start();
    let m = Mount::on(&node, "");
    m.sh_ok("mkdir chan/p");
    let out = node.dir.path().join("cat.out");
    let mut cat = m.spawn(&["cat", "chan/p/data"], &out);
    wait_for("the reader to park", || {
        status(&m, "chan/p/status", "waiting") == "1"
    });
    node.crash();
    assert_eq!(wait_exit(&mut cat).code(), Some(1));
    let said = std::fs::read_to_string(&out).unwrap();
    assert!(said.contains("Input/output error"), "{said}");
    wait_for("the mount to go away", || !m.is_mounted());
    wait_for("the mount's server to exit", || {
        matches!(proc_state(m.pid), None | Some('Z'))
    });
    assert!(m.log_text().contains("unmounting"), "{}", m.log_text());
}

#[test]
fn long_directories_list_completely_across_several_readdirs() {
    let node = Node::start();
    let m = Mount::on(&node, "");
    m.sh_ok("mkdir chan/channel-with-a-longish-name-{1..300}");
    let listed = m.sh_ok("ls chan");
    let mut names: Vec<&str> = listed.lines().filter(|n| *n != "graph").collect();
    assert_eq!(names.len(), 300);
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 300, "no entry listed twice");
    assert_eq!(status(&m, "status", "channels"), "300");
}

#[test]
fn a_writer_waiting_for_room_ends_on_sigint_and_sends_nothing() {
    let node = Node::start();
    let m = Mount::on(&node, "");
    m.sh_ok("mkdir chan/f");
    m.sh_ok("env printf 'retain count=1\\nfull=block\\ngroup g\\n' > chan/f/ctl");
    m.sh_ok("echo one > chan/f/data");
    let out = node.dir.path().join("writer.out");
    let mut writer = m.spawn(&["bash", "-c", "echo two > chan/f/data"], &out);
    wait_for("the writer to wait for room", || {
        status(&m, "chan/f/status", "blocked") == "1"
    });
    kill(writer.id(), libc::SIGINT);
    let st = wait_exit(&mut writer);
    assert!(!st.success(), "{st:?}");
    assert_eq!(status(&m, "chan/f/status", "blocked"), "0");
    assert_eq!(status(&m, "chan/f/status", "sent"), "1", "nothing was sent");
    assert!(
        m.log_text()
            .contains("the writer was interrupted; cancelled with Tflush"),
        "{}",
        m.log_text()
    );
}
